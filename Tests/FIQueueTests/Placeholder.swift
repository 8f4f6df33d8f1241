// Tests for FIQueue live in this target.
