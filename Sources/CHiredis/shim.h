#ifndef CHIREDIS_SHIM_H
#define CHIREDIS_SHIM_H

#include <hiredis/hiredis.h>
#include <signal.h>
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

// A write to a socket the server closed must fail with EPIPE, not kill the process.
static inline void CHiredis_ignoreSIGPIPE(void) { signal(SIGPIPE, SIG_IGN); }

// errno is a macro on glibc.
static inline int CHiredis_errno(void) { return errno; }
static inline int CHiredis_EAGAIN(void) { return EAGAIN; }

#endif
