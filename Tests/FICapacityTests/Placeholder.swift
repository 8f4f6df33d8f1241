// Tests for FICapacity live in this target.
