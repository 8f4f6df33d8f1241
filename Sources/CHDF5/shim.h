#ifndef CHDF5_SHIM_H
#define CHDF5_SHIM_H

#include <hdf5.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/syscall.h>

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
static inline hid_t CHDF5_T_STD_I64LE(void) { return H5T_STD_I64LE; }
static inline hid_t CHDF5_T_STD_U64LE(void) { return H5T_STD_U64LE; }
static inline hid_t CHDF5_T_STD_U8LE(void) { return H5T_STD_U8LE; }
static inline hid_t CHDF5_T_C_S1(void) { return H5T_C_S1; }
static inline hid_t CHDF5_P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline hid_t CHDF5_P_FILE_CREATE(void) { return H5P_FILE_CREATE; }
static inline hid_t CHDF5_P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t CHDF5_P_DATASET_ACCESS(void) { return H5P_DATASET_ACCESS; }
static inline hid_t CHDF5_P_LINK_CREATE(void) { return H5P_LINK_CREATE; }
static inline hid_t CHDF5_E_DEFAULT(void) { return H5E_DEFAULT; }
static inline H5F_libver_t CHDF5_F_LIBVER_LATEST(void) { return H5F_LIBVER_LATEST; }

// Turn off HDF5's automatic printing of error stacks (per thread in
// thread-safe builds, so callers do this before each batch of calls).
static inline herr_t CHDF5_silence_errors(void) { return H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

// `H5Pset(fapl, "clear_status_flags", &true)`: what `h5clear -s` does, through
// the API. The property is private to the library, hence a shim.
static inline herr_t CHDF5_set_clear_status_flags(hid_t fapl) {
    hbool_t on = 1;
    return H5Pset(fapl, "clear_status_flags", &on);
}

// The sec2 driver's POSIX file descriptor, for fsync; -1 on failure.
static inline int CHDF5_file_descriptor(hid_t file) {
    void *handle = NULL;
    if (H5Fget_vfd_handle(file, H5P_DEFAULT, &handle) < 0 || handle == NULL) return -1;
    return *(int *)handle;
}

// The calling thread's nice value (Linux: per thread), and setting it; FIStorage's
// background checksums run at a lower priority than appends. Not HDF5's, but
// this is FIStorage's one C shim.
static inline int CHDF5_thread_nice(void) {
    return getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
}
static inline int CHDF5_set_thread_nice(int value) {
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), value);
}

typedef struct { char *buf; size_t cap; size_t len; } CHDF5_error_sink;

static inline herr_t CHDF5_error_walker(unsigned n, const H5E_error2_t *err, void *client) {
    CHDF5_error_sink *sink = (CHDF5_error_sink *)client;
    if (sink->len + 1 >= sink->cap) return 0;
    char minor[128] = {0};
    H5Eget_msg(err->min_num, NULL, minor, sizeof minor);
    int w = snprintf(sink->buf + sink->len, sink->cap - sink->len, "%s%s(): %s%s%s",
                     n == 0 ? "" : "; ",
                     err->func_name ? err->func_name : "?",
                     err->desc ? err->desc : "",
                     minor[0] ? " — " : "", minor);
    if (w > 0) sink->len += (size_t)w < sink->cap - sink->len ? (size_t)w : sink->cap - sink->len - 1;
    return 0;
}

// Walks the thread's error stack (the API call first, then the library frames
// that failed inside it) into buf, then clears it.
// Returns the number of bytes written (buf is always NUL-terminated).
static inline size_t CHDF5_take_error_stack(char *buf, size_t cap) {
    if (cap == 0) return 0;
    buf[0] = 0;
    CHDF5_error_sink sink = { buf, cap, 0 };
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, CHDF5_error_walker, &sink);
    H5Eclear2(H5E_DEFAULT);
    return sink.len;
}

#endif
