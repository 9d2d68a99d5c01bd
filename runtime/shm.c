/* shm.c — zero-copy between ranks on one machine (see rt.h).
 *
 * A value sent to a stage on the same machine lives in POSIX shared memory that its producer
 * creates (all microbatch slots) and each such consumer maps; SEND_F/RECV_F then move an 8-byte
 * note instead of the bytes. The note is sent after the slot is written, and UCX's shared-memory
 * path orders it after those writes. PIPPY_SHM=0 turns this off (every byte goes through UCX).
 *
 * Names cannot collide and are never taken over: "/pippy-<job tag>-<128 random bits>", created
 * with O_EXCL and mode 0600 (the job tag, from the job key, lets pippyrun find what a killed rank
 * left). The producer tells each consumer the names over the authenticated transport (one
 * message per consumer, tag PIPPY_SHM_NAMES_TAG); a consumer maps only names of its own job whose
 * size is exactly what it expects. Names are unlinked as soon as every consumer has mapped them,
 * on every error path, and on SIGTERM, SIGINT and SIGHUP before the signal takes its course.
 * Between two stages of one rank (interleaved-1f1b) nothing moves at all: the consumer's input is
 * the producer's output slots (pippy_rt_link_local), and a SEND only marks the microbatch arrived. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "rt.h"

#define PIPPY_SHM_NAMES_TAG (PIPPY_TRANSPORT_TAG_MAX - 3) /* READY, DONE, MAPPED are the 3 above */
#define PIPPY_SHM_ENTRY 64                                  /* int32 edge + the name, NUL-padded */
#define PIPPY_SHM_MAX_NAMES 256

/* ---- names that a signal handler can unlink ---- */

static char pippy_shm_paths[PIPPY_SHM_MAX_NAMES][112]; /* "/dev/shm/pippy-..." */
static volatile sig_atomic_t pippy_shm_live[PIPPY_SHM_MAX_NAMES];

static void pippy_shm_on_signal(int sig)
{
    for (int i = 0; i < PIPPY_SHM_MAX_NAMES; i++)
        if (pippy_shm_live[i])
            unlink(pippy_shm_paths[i]); /* async-signal-safe */
    signal(sig, SIG_DFL);
    raise(sig);
}

static void pippy_shm_guard(void)
{
    static int installed;
    if (installed)
        return;
    installed = 1;
    const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old, sa = {.sa_handler = pippy_shm_on_signal};
        sigemptyset(&sa.sa_mask);
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL)
            sigaction(sigs[i], &sa, NULL);
    }
}

static int pippy_shm_register(const char *name)
{
    for (int i = 0; i < PIPPY_SHM_MAX_NAMES; i++)
        if (!pippy_shm_live[i]) {
            snprintf(pippy_shm_paths[i], sizeof pippy_shm_paths[i], "/dev/shm%s", name);
            pippy_shm_live[i] = 1;
            pippy_shm_guard();
            return 0;
        }
    return -1;
}

static void pippy_shm_forget(const char *name)
{
    for (int i = 0; i < PIPPY_SHM_MAX_NAMES; i++)
        if (pippy_shm_live[i] && !strcmp(pippy_shm_paths[i] + 8, name))
            pippy_shm_live[i] = 0;
}

/* ---- one segment ---- */

/* A fresh segment of bytes for this job, its name into name. */
static void *pippy_shm_create(const char *job_tag, size_t bytes, char *name, size_t n, pippy_status *st)
{
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 8; tries++) {
        uint8_t r[16];
        if ((*st = pippy_random_bytes(r, sizeof r)) != PIPPY_OK)
            return NULL;
        int k = snprintf(name, n, "/pippy-%s-", job_tag);
        for (int i = 0; i < 16; i++)
            k += snprintf(name + k, n - (size_t)k, "%02x", r[i]);
        fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0 || pippy_shm_register(name) != 0) {
        *st = pippy_fail(PIPPY_ERR_IO, "shared memory %s: %s", name, fd < 0 ? strerror(errno) : "too many segments");
        if (fd >= 0) {
            close(fd);
            shm_unlink(name);
        }
        return NULL;
    }
    void *m = MAP_FAILED;
    if (ftruncate(fd, (off_t)(bytes ? bytes : 1)) == 0) /* populated now: no page faults inside F */
        m = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) {
        *st = pippy_fail(PIPPY_ERR_IO, "shared memory %s (%zu bytes): %s", name, bytes, strerror(e));
        shm_unlink(name);
        pippy_shm_forget(name);
        return NULL;
    }
    return m;
}

/* "/pippy-<job_tag>-" and 32 hex digits: a name this job made. */
static int pippy_shm_name_ok(const char *name, const char *job_tag)
{
    char prefix[40];
    int k = snprintf(prefix, sizeof prefix, "/pippy-%s-", job_tag);
    if (strncmp(name, prefix, (size_t)k) != 0 || strlen(name + k) != 32)
        return 0;
    return strspn(name + k, "0123456789abcdef") == 32;
}

/* Map a producer's segment, which must be exactly bytes long. */
static void *pippy_shm_attach(const char *name, size_t bytes, pippy_status *st)
{
    int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        *st = pippy_fail(PIPPY_ERR_IO, "shared memory %s: %s", name, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != (uint64_t)(bytes ? bytes : 1)) {
        close(fd);
        *st = pippy_fail(PIPPY_ERR_INVALID, "shared memory %s is %lld bytes, expected %zu", name,
                         (long long)sb.st_size, bytes ? bytes : 1);
        return NULL;
    }
    void *m = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) {
        *st = pippy_fail(PIPPY_ERR_IO, "cannot map shared memory %s: %s", name, strerror(e));
        return NULL;
    }
    return m;
}

/* ---- producer side ---- */

/* Before the peers connect: outputs of stage sx with a consumer on this machine move into shared
 * memory (all their slots; a passed-through graph input moves with its data). */
static pippy_status pippy_rt_share_stage(pippy_rt *rt, pippy_rt_stage *sx)
{
    for (int q = 0; q < sx->n_out; q++) {
        pippy_rt_output *y = &sx->out[q];
        int local = 0;
        for (int c = 0; c < y->n_to; c++) /* a consumer on this rank reads the slots directly */
            local |= rt->stage_rank[y->to[c]] != rt->rank && rt->same_host[rt->stage_rank[y->to[c]]];
        if (y->edge < 0 || !local)
            continue;
        size_t bytes = y->bytes * (size_t)y->slots;
        pippy_status st = PIPPY_OK;
        uint8_t *m = pippy_shm_create(rt->job_tag, bytes, y->shm_name, sizeof y->shm_name, &st);
        if (!m)
            return st;
        y->note = calloc((size_t)rt->M, sizeof *y->note);
        if (!y->note) {
            munmap(m, bytes ? bytes : 1);
            shm_unlink(y->shm_name);
            pippy_shm_forget(y->shm_name);
            y->shm_name[0] = 0;
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
        }
        if (y->passthrough >= 0 && y->passthrough < sx->n_in) {
            pippy_rt_input *x = &sx->in[y->passthrough];
            if (bytes)
                memcpy(m, x->buf, bytes);
            free(x->buf);
            x->buf = m; /* owned by the output now */
        } else {
            free(y->buf);
        }
        y->buf = m;
        y->shm = 1;
        for (int mb = 0; mb < rt->M; mb++)
            y->note[mb] = (uint64_t)mb;
    }
    return PIPPY_OK;
}

pippy_status pippy_rt_share_outputs(pippy_rt *rt)
{
    for (int i = 0; i < rt->n_st; i++)
        PIPPY_TRY(pippy_rt_share_stage(rt, &rt->st[i]));
    return PIPPY_OK;
}

/* The entries rank `consumer` gets from us: our shared outputs, one per stage of it that reads
 * them (as many as its inputs from us). With out NULL only counts. */
static int pippy_shm_entries_for(const pippy_rt *rt, int consumer, uint8_t *out)
{
    int n = 0;
    for (int i = 0; i < rt->n_st; i++)
        for (int q = 0; q < rt->st[i].n_out; q++) {
            const pippy_rt_output *y = &rt->st[i].out[q];
            for (int c = 0; c < y->n_to && y->shm; c++) { /* one entry per consuming stage there */
                if (rt->stage_rank[y->to[c]] != consumer)
                    continue;
                if (out) {
                    uint8_t *e = out + (size_t)n * PIPPY_SHM_ENTRY;
                    memset(e, 0, PIPPY_SHM_ENTRY);
                    for (int b = 0; b < 4; b++)
                        e[b] = (uint8_t)((uint32_t)y->edge >> (8 * b));
                    snprintf((char *)e + 4, PIPPY_SHM_ENTRY - 4, "%.59s", y->shm_name);
                }
                n++;
            }
        }
    return n;
}

/* How many of our inputs rank `producer` shares with us. */
static int pippy_shm_inputs_from(const pippy_rt *rt, int producer)
{
    int n = 0;
    for (int i = 0; i < rt->n_st; i++)
        for (int q = 0; q < rt->st[i].n_in; q++) {
            const pippy_rt_input *x = &rt->st[i].in[q];
            n += x->from >= 0 && rt->stage_rank[x->from] == producer && producer != rt->rank && rt->same_host[producer];
        }
    return n;
}

/* ---- consumer side ---- */

static pippy_status pippy_shm_map_input(pippy_rt *rt, const pippy_rt_stage *sx, pippy_rt_input *x,
                                        const uint8_t *entries, int n)
{
    const char *name = NULL;
    for (int i = 0; i < n && !name; i++) {
        const uint8_t *e = entries + (size_t)i * PIPPY_SHM_ENTRY;
        int32_t edge = (int32_t)(e[0] | e[1] << 8 | e[2] << 16 | (uint32_t)e[3] << 24);
        if (edge == x->edge && memchr(e + 4, 0, PIPPY_SHM_ENTRY - 4))
            name = (const char *)e + 4;
    }
    if (!name || !pippy_shm_name_ok(name, rt->job_tag))
        return pippy_fail(PIPPY_ERR_PEER, "stage %d: stage %d did not name shared memory of this job for '%s'",
                          sx->stage, x->from, x->name);
    size_t bytes = x->bytes * (size_t)x->slots;
    pippy_status st = PIPPY_OK;
    uint8_t *m = pippy_shm_attach(name, bytes, &st);
    if (!m)
        return pippy_error_prefix(st, "stage %d mapping '%s' from stage %d", sx->stage, x->name, x->from);
    x->note = calloc((size_t)rt->M, sizeof *x->note);
    if (!x->note) {
        munmap(m, bytes ? bytes : 1);
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    }
    free(x->buf);
    x->buf = m;
    x->shm = 1;
    return PIPPY_OK;
}

/* Every input of this rank's stages that a producer on this machine shares: mapped from the
 * names in the messages received (buf[i] of count[i] entries from rank peer_of[i]). */
static pippy_status pippy_shm_map_all(pippy_rt *rt, uint8_t *const *buf, const int *count, const int *peer_of,
                                      const int *is_recv, int n_msg)
{
    for (int s = 0; s < rt->n_st; s++)
        for (int q = 0; q < rt->st[s].n_in; q++) {
            pippy_rt_input *x = &rt->st[s].in[q];
            if (x->from < 0 || rt->stage_rank[x->from] == rt->rank || !rt->same_host[rt->stage_rank[x->from]])
                continue;
            for (int i = 0; i < n_msg; i++)
                if (is_recv[i] && peer_of[i] == rt->stage_rank[x->from])
                    PIPPY_TRY(pippy_shm_map_input(rt, &rt->st[s], x, buf[i], count[i]));
        }
    return PIPPY_OK;
}

/* After the ready exchange: every producer tells each consumer on this machine the names of
 * what it shares with it; consumers map them. */
pippy_status pippy_rt_map_inputs(pippy_rt *rt)
{
    int n_msg = 0, count[512];
    uint8_t *buf[512] = {0};
    pippy_request *rq[512];
    int peer_of[512], is_recv[512];
    pippy_status st = PIPPY_OK;
    for (int q = 0; q < rt->nranks && q < 256 && st == PIPPY_OK; q++) {
        for (int dir = 0; dir < 2 && q != rt->rank && st == PIPPY_OK; dir++) {
            int n = dir ? pippy_shm_inputs_from(rt, q) : (rt->same_host[q] ? pippy_shm_entries_for(rt, q, NULL) : 0);
            if (!n)
                continue;
            buf[n_msg] = calloc((size_t)n, PIPPY_SHM_ENTRY);
            if (!buf[n_msg]) {
                st = pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
                break;
            }
            count[n_msg] = n, peer_of[n_msg] = q, is_recv[n_msg] = dir, rq[n_msg] = NULL;
            if (dir)
                st = pippy_transport_irecv(rt->t, q, PIPPY_SHM_NAMES_TAG, buf[n_msg], (size_t)n * PIPPY_SHM_ENTRY,
                                           &rq[n_msg]);
            else if (pippy_shm_entries_for(rt, q, buf[n_msg]) == n)
                st = pippy_transport_isend(rt->t, q, PIPPY_SHM_NAMES_TAG, buf[n_msg], (size_t)n * PIPPY_SHM_ENTRY,
                                           &rq[n_msg]);
            n_msg++;
        }
    }
    for (int i = 0; i < n_msg; i++) {
        pippy_status s = rq[i] ? pippy_transport_wait(rt->t, rq[i]) : PIPPY_OK;
        if (s != PIPPY_OK && st == PIPPY_OK)
            st = pippy_error_prefix(s, "rank %d exchanging shared memory names with rank %d", rt->rank, peer_of[i]);
        rq[i] = NULL;
    }
    if (st == PIPPY_OK)
        st = pippy_shm_map_all(rt, buf, count, peer_of, is_recv, n_msg);
    for (int i = 0; i < n_msg; i++)
        free(buf[i]);
    return st;
}

/* ---- stages of one rank ---- */

/* The input of stage `to` (on this rank) that reads edge `edge`, or NULL. */
pippy_rt_input *pippy_rt_local_input(pippy_rt *rt, int to, int edge)
{
    pippy_rt_stage *cx = pippy_rt_stage_of(rt, to);
    for (int q = 0; cx && q < cx->n_in; q++)
        if (cx->in[q].edge == edge)
            return &cx->in[q];
    return NULL;
}

pippy_status pippy_rt_link_local(pippy_rt *rt)
{
    for (int i = 0; i < rt->n_st; i++)
        for (int q = 0; q < rt->st[i].n_out; q++) {
            pippy_rt_output *out = &rt->st[i].out[q];
            for (int c = 0; c < out->n_to; c++) {
                pippy_rt_input *in = rt->stage_rank[out->to[c]] == rt->rank ? pippy_rt_local_input(rt, out->to[c], out->edge)
                                                                            : NULL;
                if (!in)
                    continue;
                if (in->slots != out->slots || in->bytes != out->bytes)
                    return pippy_fail(PIPPY_ERR_INTERNAL, "stage %d's '%s' (%d slots of %zu bytes) does not fit stage "
                                      "%d's input (%d of %zu)", rt->st[i].stage, out->name, out->slots, out->bytes,
                                      out->to[c], in->slots, in->bytes);
                if (!in->local)
                    free(in->buf);
                in->buf = out->buf;
                in->local = 1;
            }
        }
    return PIPPY_OK;
}

/* "host" of "host:port" (brackets of IPv6 kept); loopback names count as one machine. */
void pippy_host_of(const char *hp, char *buf, size_t n)
{
    const char *colon = strrchr(hp, ':');
    size_t l = colon ? (size_t)(colon - hp) : strlen(hp);
    if (l >= n)
        l = n - 1;
    memcpy(buf, hp, l);
    buf[l] = 0;
    if (!strncmp(buf, "127.", 4) || !strcmp(buf, "localhost") || !strcmp(buf, "[::1]"))
        snprintf(buf, n, "loopback");
}

void pippy_rt_unlink_shared(pippy_rt *rt)
{
    for (int i = 0; rt->st && i < rt->n_st; i++)
        for (int q = 0; q < rt->st[i].n_out; q++) {
            pippy_rt_output *y = &rt->st[i].out[q];
            if (y->shm && y->shm_name[0]) {
                shm_unlink(y->shm_name);
                pippy_shm_forget(y->shm_name);
                y->shm_name[0] = 0;
            }
        }
}

/* Unmap (and unlink, if still named) what this rank shared; a passed-through input's buffer
 * went with its output. */
void pippy_rt_unshare(pippy_rt *rt)
{
    pippy_rt_unlink_shared(rt);
    for (int i = 0; rt->st && i < rt->n_st; i++) {
        pippy_rt_stage *sx = &rt->st[i];
        for (int q = 0; sx->out && q < sx->n_out; q++) {
            pippy_rt_output *y = &sx->out[q];
            if (!y->shm)
                continue;
            size_t bytes = y->bytes * (size_t)y->slots;
            munmap(y->buf, bytes ? bytes : 1);
            if (y->passthrough >= 0 && y->passthrough < sx->n_in)
                sx->in[y->passthrough].buf = NULL;
            y->buf = NULL;
            free(y->note);
            y->note = NULL;
            y->shm = 0;
        }
    }
}
