// FICapacity: capacity planning from measurements (issue 7).
