#ifndef CHIREDIS_SHIM_H
#define CHIREDIS_SHIM_H

#include <hiredis/hiredis.h>
#include <errno.h>

// Reply type constants are macros; expose them as functions Swift can call.
static inline int CHiredis_REPLY_STRING(void) { return REDIS_REPLY_STRING; }
static inline int CHiredis_REPLY_ARRAY(void) { return REDIS_REPLY_ARRAY; }
static inline int CHiredis_REPLY_INTEGER(void) { return REDIS_REPLY_INTEGER; }
static inline int CHiredis_REPLY_NIL(void) { return REDIS_REPLY_NIL; }
static inline int CHiredis_REPLY_STATUS(void) { return REDIS_REPLY_STATUS; }
static inline int CHiredis_REPLY_ERROR(void) { return REDIS_REPLY_ERROR; }
static inline int CHiredis_OK(void) { return REDIS_OK; }
static inline int CHiredis_ERR(void) { return REDIS_ERR; }

// Context error kinds (redisContext.err).
static inline int CHiredis_ERR_IO(void) { return REDIS_ERR_IO; }
static inline int CHiredis_ERR_EOF(void) { return REDIS_ERR_EOF; }
static inline int CHiredis_ERR_PROTOCOL(void) { return REDIS_ERR_PROTOCOL; }

// errno is a macro on glibc.
static inline int CHiredis_errno(void) { return errno; }
static inline int CHiredis_EAGAIN(void) { return EAGAIN; }

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// A "flat" reply builder for hiredis' reader: instead of a malloc'd redisReply
// per element, every element of a reply is appended, in order (pre-order: an
// array before its elements), to one growable buffer that lives as long as
// the connection. Each element is a 1-byte kind, an 8-byte native-endian
// value (string length, array count, integer) and, for strings, the bytes.
// Swift walks the buffer once (FIQueue's FlatReply). The objects handed back
// to hiredis are only tokens (the builder's address); freeObject is a no-op.
typedef struct CHiredis_Flat {
    redisReplyObjectFunctions fn;
    unsigned char *buf;
    size_t len;
    size_t cap;
} CHiredis_Flat;

enum {
    CHiredis_FLAT_STRING = 1,
    CHiredis_FLAT_ARRAY = 2,
    CHiredis_FLAT_INTEGER = 3,
    CHiredis_FLAT_NIL = 4,
    CHiredis_FLAT_STATUS = 5,
    CHiredis_FLAT_ERROR = 6,
};

static inline CHiredis_Flat *CHiredis_flatOf(const redisReadTask *task) {
    while (task->parent != NULL) task = task->parent;
    return (CHiredis_Flat *)task->privdata;
}

// Appends one element; the root element of a reply starts the buffer afresh.
static inline void *CHiredis_flatPut(const redisReadTask *task, unsigned char kind, int64_t value, const char *bytes, size_t n) {
    CHiredis_Flat *flat = CHiredis_flatOf(task);
    if (flat == NULL) return NULL;
    if (task->parent == NULL) flat->len = 0;
    size_t need = flat->len + 9 + n;
    if (need > flat->cap) {
        size_t cap = flat->cap ? flat->cap : 4096;
        while (cap < need) cap *= 2;
        unsigned char *grown = (unsigned char *)realloc(flat->buf, cap);
        if (grown == NULL) return NULL; // hiredis reports out of memory
        flat->buf = grown;
        flat->cap = cap;
    }
    unsigned char *p = flat->buf + flat->len;
    p[0] = kind;
    memcpy(p + 1, &value, 8);
    if (n > 0) memcpy(p + 9, bytes, n);
    flat->len = need;
    return flat;
}

static inline void *CHiredis_flatString(const redisReadTask *task, char *str, size_t len) {
    unsigned char kind = task->type == REDIS_REPLY_ERROR ? CHiredis_FLAT_ERROR
        : task->type == REDIS_REPLY_STATUS ? CHiredis_FLAT_STATUS : CHiredis_FLAT_STRING;
    return CHiredis_flatPut(task, kind, (int64_t)len, str, len);
}
static inline void *CHiredis_flatArray(const redisReadTask *task, int elements) {
    return CHiredis_flatPut(task, CHiredis_FLAT_ARRAY, elements, NULL, 0);
}
static inline void *CHiredis_flatInteger(const redisReadTask *task, long long value) {
    return CHiredis_flatPut(task, CHiredis_FLAT_INTEGER, value, NULL, 0);
}
static inline void *CHiredis_flatNil(const redisReadTask *task) {
    return CHiredis_flatPut(task, CHiredis_FLAT_NIL, 0, NULL, 0);
}
static inline void CHiredis_flatFree(void *object) { (void)object; }

static inline CHiredis_Flat *CHiredis_flatCreate(void) {
    CHiredis_Flat *flat = (CHiredis_Flat *)calloc(1, sizeof(CHiredis_Flat));
    if (flat == NULL) return NULL;
    flat->fn.createString = CHiredis_flatString;
    flat->fn.createArray = CHiredis_flatArray;
    flat->fn.createInteger = CHiredis_flatInteger;
    flat->fn.createNil = CHiredis_flatNil;
    flat->fn.freeObject = CHiredis_flatFree;
    return flat;
}

static inline void CHiredis_flatDestroy(CHiredis_Flat *flat) {
    if (flat == NULL) return;
    free(flat->buf);
    free(flat);
}

// Forgets a large buffer after a large reply, so one huge reply does not pin its memory.
static inline void CHiredis_flatTrim(CHiredis_Flat *flat, size_t keep) {
    if (flat->cap > keep) {
        free(flat->buf);
        flat->buf = NULL;
        flat->cap = 0;
        flat->len = 0;
    }
}

// Makes a reader build flat replies into `flat` (which must outlive the reader).
static inline void CHiredis_flatInstall(redisReader *reader, CHiredis_Flat *flat) {
    reader->fn = &flat->fn;
    reader->privdata = flat;
}

static inline void *CHiredis_flatBytes(const CHiredis_Flat *flat) { return flat->buf; }
static inline size_t CHiredis_flatLength(const CHiredis_Flat *flat) { return flat->len; }

#endif
