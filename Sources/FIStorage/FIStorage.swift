// FIStorage: the HDF5 append store for one partition's corpus (issue 4).
