// Tests for FIStorage live in this target.
