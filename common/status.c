/* status.c — see status.h. */
#include "status.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char pippy_err_msg[4096];

const char *pippy_status_string(pippy_status s)
{
    switch (s) {
    case PIPPY_OK: return "ok";
    case PIPPY_ERR_USAGE: return "usage error";
    case PIPPY_ERR_IO: return "I/O error";
    case PIPPY_ERR_FORMAT: return "bad file format";
    case PIPPY_ERR_INVALID: return "invalid model or input";
    case PIPPY_ERR_UNSUPPORTED: return "unsupported";
    case PIPPY_ERR_SHAPE: return "shape error";
    case PIPPY_ERR_NOMEM: return "out of memory";
    case PIPPY_ERR_BACKEND: return "kernel backend error";
    case PIPPY_ERR_TRANSPORT: return "transport error";
    case PIPPY_ERR_TIMEOUT: return "timeout";
    case PIPPY_ERR_PEER: return "peer error";
    case PIPPY_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

pippy_status pippy_fail(pippy_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pippy_err_msg, sizeof pippy_err_msg, fmt, ap);
    va_end(ap);
    return s;
}

pippy_status pippy_error_prefix(pippy_status s, const char *fmt, ...)
{
    char prefix[1024], old[sizeof pippy_err_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, pippy_err_msg, sizeof old);
    size_t k = strlen(prefix);
    if (k > sizeof pippy_err_msg - 3)
        k = sizeof pippy_err_msg - 3;
    memcpy(pippy_err_msg, prefix, k);
    memcpy(pippy_err_msg + k, ": ", 2);
    size_t rest = sizeof pippy_err_msg - k - 3;
    size_t ol = strnlen(old, rest);
    memcpy(pippy_err_msg + k + 2, old, ol);
    pippy_err_msg[k + 2 + ol] = 0;
    return s;
}

const char *pippy_last_error(void) { return pippy_err_msg; }

void pippy_error_clear(void) { pippy_err_msg[0] = 0; }

int pippy_status_exit_code(pippy_status s)
{
    if (s == PIPPY_OK)
        return 0;
    return s == PIPPY_ERR_USAGE ? 2 : 1;
}
