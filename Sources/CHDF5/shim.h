#ifndef CHDF5_SHIM_H
#define CHDF5_SHIM_H

#include <hdf5.h>

// HDF5 exposes its predefined types, access flags and defaults as macros that
// expand to function calls or casts Swift cannot import. One-liners here.
static inline hid_t CHDF5_P_DEFAULT(void) { return H5P_DEFAULT; }
static inline hid_t CHDF5_S_ALL(void) { return H5S_ALL; }
static inline hsize_t CHDF5_S_UNLIMITED(void) { return H5S_UNLIMITED; }
static inline unsigned CHDF5_F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned CHDF5_F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline unsigned CHDF5_F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned CHDF5_F_ACC_EXCL(void) { return H5F_ACC_EXCL; }
static inline unsigned CHDF5_F_ACC_SWMR_WRITE(void) { return H5F_ACC_SWMR_WRITE; }
static inline unsigned CHDF5_F_ACC_SWMR_READ(void) { return H5F_ACC_SWMR_READ; }
static inline hid_t CHDF5_T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline hid_t CHDF5_T_NATIVE_UINT64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t CHDF5_T_NATIVE_UINT8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t CHDF5_T_C_S1(void) { return H5T_C_S1; }
static inline hid_t CHDF5_P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline hid_t CHDF5_P_FILE_CREATE(void) { return H5P_FILE_CREATE; }
static inline hid_t CHDF5_P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t CHDF5_P_LINK_CREATE(void) { return H5P_LINK_CREATE; }

#endif
