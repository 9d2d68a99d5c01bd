/* trace.c — see trace.h. */
#include "trace.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CAT_MAX 24

typedef struct {
    uint64_t ts, dur;
    int lane, n_args;
    pippy_trace_arg args[PIPPY_TRACE_MAX_ARGS];
    char name[PIPPY_TRACE_NAME_MAX];
    char cat[CAT_MAX];
} trace_event;

struct pippy_trace {
    int rank, stage;
    size_t cap, n, dropped;
    trace_event *ev;
};

static const char *lane_names[PIPPY_TRACE_LANES] = {"compute", "send", "recv"};

pippy_status pippy_trace_init(pippy_trace **out, int rank, int stage, size_t capacity)
{
    *out = NULL;
    pippy_trace *t = calloc(1, sizeof *t);
    if (!t || !(t->ev = calloc(capacity ? capacity : 1, sizeof *t->ev))) {
        free(t);
        return pippy_fail(PIPPY_ERR_NOMEM, "trace: out of memory for %zu events", capacity);
    }
    t->rank = rank;
    t->stage = stage;
    t->cap = capacity;
    *out = t;
    return PIPPY_OK;
}

void pippy_trace_free(pippy_trace *t)
{
    if (!t)
        return;
    free(t->ev);
    free(t);
}

uint64_t pippy_trace_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void copy_str(char *dst, size_t n, const char *src)
{
    size_t k = src ? strnlen(src, n - 1) : 0;
    if (k)
        memcpy(dst, src, k);
    dst[k] = 0;
}

void pippy_trace_event_args(pippy_trace *t, int lane, const char *name, const char *category,
                            uint64_t start_us, uint64_t dur_us, const pippy_trace_arg *args,
                            int n_args)
{
    if (!t)
        return;
    if (t->n == t->cap) {
        t->dropped++;
        return;
    }
    trace_event *e = &t->ev[t->n++];
    e->ts = start_us;
    e->dur = dur_us;
    e->lane = lane >= 0 && lane < PIPPY_TRACE_LANES ? lane : PIPPY_LANE_COMPUTE;
    e->n_args = 0;
    for (int i = 0; i < n_args && i < PIPPY_TRACE_MAX_ARGS; i++)
        if (args[i].key)
            e->args[e->n_args++] = args[i];
    copy_str(e->name, sizeof e->name, name);
    copy_str(e->cat, sizeof e->cat, category);
}

void pippy_trace_event(pippy_trace *t, int lane, const char *name, const char *category,
                       uint64_t start_us, uint64_t dur_us, int64_t microbatch)
{
    pippy_trace_arg a = {"microbatch", microbatch};
    pippy_trace_event_args(t, lane, name, category, start_us, dur_us, &a, microbatch >= 0);
}

uint64_t pippy_trace_begin(void) { return pippy_trace_now_us(); }

void pippy_trace_end(pippy_trace *t, int lane, const char *name, const char *category,
                     uint64_t start_us, int64_t microbatch)
{
    if (!t)
        return;
    uint64_t now = pippy_trace_now_us();
    pippy_trace_event(t, lane, name, category, start_us, now > start_us ? now - start_us : 0,
                      microbatch);
}

size_t pippy_trace_count(const pippy_trace *t) { return t ? t->n : 0; }
size_t pippy_trace_dropped(const pippy_trace *t) { return t ? t->dropped : 0; }

/* A JSON string literal. */
static void put_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void put_events(const pippy_trace *t, FILE *f)
{
    int pid = t->rank;
    fprintf(f, "[\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,"
            "\"args\":{\"name\":\"rank %d (stage %d)\"}},\n", pid, t->rank, t->stage);
    fprintf(f, "{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,"
            "\"args\":{\"sort_index\":%d}}", pid, t->rank);
    for (int l = 0; l < PIPPY_TRACE_LANES; l++)
        fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,"
                "\"args\":{\"name\":\"%s\"}}", pid, l, lane_names[l]);
    for (size_t i = 0; i < t->n; i++) {
        const trace_event *e = &t->ev[i];
        fputs(",\n{\"name\":", f);
        put_str(f, e->name);
        fputs(",\"cat\":", f);
        put_str(f, e->cat[0] ? e->cat : lane_names[e->lane]);
        fprintf(f, ",\"ph\":\"X\",\"ts\":%llu,\"dur\":%llu,\"pid\":%d,\"tid\":%d",
                (unsigned long long)e->ts, (unsigned long long)e->dur, pid, e->lane);
        if (e->n_args) {
            fputs(",\"args\":{", f);
            for (int a = 0; a < e->n_args; a++) {
                if (a)
                    fputc(',', f);
                put_str(f, e->args[a].key);
                fprintf(f, ":%lld", (long long)e->args[a].value);
            }
            fputc('}', f);
        }
        fputc('}', f);
    }
    if (t->dropped) {
        uint64_t ts = t->n ? t->ev[t->n - 1].ts + t->ev[t->n - 1].dur : pippy_trace_now_us();
        fprintf(f, ",\n{\"name\":\"trace full: %zu events dropped (capacity %zu)\",\"ph\":\"i\","
                "\"s\":\"p\",\"ts\":%llu,\"pid\":%d,\"tid\":0}", t->dropped, t->cap,
                (unsigned long long)ts, pid);
    }
    fputs("\n]\n", f);
}

pippy_status pippy_trace_write(const pippy_trace *t, const char *path)
{
    if (!t)
        return pippy_fail(PIPPY_ERR_INVALID, "trace: no trace to write to %s", path);
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp)
        return pippy_fail(PIPPY_ERR_NOMEM, "trace: out of memory");
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmpXXXXXX", 11);
    int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        pippy_status st = pippy_fail(PIPPY_ERR_IO, "%s:%d: cannot write trace %s: %s", __FILE__,
                                     __LINE__, path, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        free(tmp);
        return st;
    }
    fchmod(fd, 0644);
    put_events(t, f);
    int bad = ferror(f);
    if (fclose(f) != 0)
        bad = 1;
    pippy_status st = PIPPY_OK;
    if (bad || rename(tmp, path) != 0) {
        st = pippy_fail(PIPPY_ERR_IO, "%s:%d: cannot write trace %s: %s", __FILE__, __LINE__, path,
                        strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return st;
}
