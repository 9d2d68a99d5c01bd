/* status.h — status codes and the one-place error message of pippyc.
 *
 * Library code returns a pippy_status. The code that finds an error records a
 * message once, with context (file, node, tensor, expected vs found), through
 * pippy_fail(); callers that add context use pippy_error_prefix(); the CLI
 * prints pippy_last_error() and exits non-zero. */
#ifndef PIPPY_STATUS_H
#define PIPPY_STATUS_H

#include <stdarg.h>

typedef enum {
    PIPPY_OK = 0,
    PIPPY_ERR_USAGE,       /* bad command line */
    PIPPY_ERR_IO,          /* a file could not be read or written */
    PIPPY_ERR_FORMAT,      /* a file is not what it claims (not ONNX, bad .npy, ...) */
    PIPPY_ERR_INVALID,     /* a well-formed input that breaks a rule (undefined value, ...) */
    PIPPY_ERR_UNSUPPORTED, /* an op, dtype or attribute pippyc does not handle */
    PIPPY_ERR_SHAPE,       /* shapes that do not agree, or a dim left unknown */
    PIPPY_ERR_NOMEM,
    PIPPY_ERR_BACKEND,     /* a kernel library (oneDNN, CUDA) failed */
    PIPPY_ERR_TRANSPORT,   /* UCX failed */
    PIPPY_ERR_TIMEOUT,     /* a peer did not answer in time */
    PIPPY_ERR_PEER,        /* a peer refused us or went away */
    PIPPY_ERR_INTERNAL,
} pippy_status;

const char *pippy_status_string(pippy_status s);

/* Record "msg" as the current error (replacing any earlier one) and return s. */
pippy_status pippy_fail(pippy_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Put "context: " in front of the current error message and return s. */
pippy_status pippy_error_prefix(pippy_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The current message ("" when none). Thread-local. */
const char *pippy_last_error(void);
void pippy_error_clear(void);

/* Exit code the CLIs use for a status: 2 for usage errors, 1 otherwise. */
int pippy_status_exit_code(pippy_status s);

/* Propagate a failing status. */
#define PIPPY_TRY(expr)                      \
    do {                                     \
        pippy_status pippy_s_ = (expr);      \
        if (pippy_s_ != PIPPY_OK)            \
            return pippy_s_;                 \
    } while (0)

/* Wrap a libc call that returns <0 / NULL on failure and sets errno. */
#define PIPPY_CHECK_SYS(cond, st, fmt, ...)                                                    \
    do {                                                                                       \
        if (!(cond))                                                                           \
            return pippy_fail((st), "%s:%d: " fmt, __FILE__, __LINE__, ##__VA_ARGS__);         \
    } while (0)

#endif
