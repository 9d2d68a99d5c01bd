/* shm.c — zero-copy between ranks on one machine (see rt.h).
 *
 * A value sent to a stage on the same machine lives in POSIX shared memory that its producer
 * creates (all microbatch slots) and each such consumer maps; SEND_F/RECV_F then move an 8-byte
 * note instead of the bytes. The note is sent after the slot is written, and UCX's shared-memory
 * path orders it after those writes. PIPPY_SHM=0 turns this off (every byte goes through UCX).
 * Names are unlinked as soon as every consumer has mapped them. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rt.h"


static void pippy_shm_name(char *buf, size_t n, uint64_t hash, uint64_t token, int edge)
{
    snprintf(buf, n, "/pippy-%016llx-%llx-e%d", (unsigned long long)hash, (unsigned long long)token, edge);
}

static void *pippy_shm_map(const char *name, size_t bytes, int create, pippy_status *st)
{
    int fd = shm_open(name, create ? O_CREAT | O_EXCL | O_RDWR : O_RDWR, 0600);
    if (fd < 0 && create && errno == EEXIST) { /* left by a job that died: take it over */
        shm_unlink(name);
        fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    }
    if (fd < 0) {
        *st = pippy_fail(PIPPY_ERR_IO, "shared memory %s: %s", name, strerror(errno));
        return NULL;
    }
    if (create && ftruncate(fd, (off_t)(bytes ? bytes : 1)) != 0) {
        *st = pippy_fail(PIPPY_ERR_IO, "shared memory %s (%zu bytes): %s", name, bytes, strerror(errno));
        close(fd);
        shm_unlink(name);
        return NULL;
    }
    /* populated now, so no page is faulted in while a stage computes */
    void *m = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        *st = pippy_fail(PIPPY_ERR_IO, "cannot map shared memory %s: %s", name, strerror(errno));
        if (create)
            shm_unlink(name);
        return NULL;
    }
    return m;
}

/* Producer side, before the ready exchange: outputs with a consumer on this machine move into
 * shared memory (a passed-through graph input moves with its data). */
static pippy_status pippy_rt_share_stage(pippy_rt *rt, pippy_rt_stage *sx)
{
    for (int q = 0; q < sx->n_out; q++) {
        pippy_rt_output *y = &sx->out[q];
        int local = 0;
        for (int c = 0; c < y->n_to; c++)
            local |= rt->same_host[rt->stage_rank[y->to[c]]];
        if (y->edge < 0 || !local)
            continue;
        size_t bytes = y->bytes * (size_t)rt->M;
        pippy_status st = PIPPY_OK;
        pippy_shm_name(y->shm_name, sizeof y->shm_name, sx->p->hash, rt->a.job_token, y->edge);
        uint8_t *m = pippy_shm_map(y->shm_name, bytes, 1, &st);
        if (!m)
            return st;
        y->note = calloc((size_t)rt->M, sizeof *y->note);
        if (!y->note) {
            munmap(m, bytes ? bytes : 1);
            shm_unlink(y->shm_name);
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

/* Consumer side, after the ready exchange: map what producers on this machine shared. */
static pippy_status pippy_rt_map_stage(pippy_rt *rt, pippy_rt_stage *sx)
{
    for (int q = 0; q < sx->n_in; q++) {
        pippy_rt_input *x = &sx->in[q];
        if (x->from < 0 || !rt->same_host[rt->stage_rank[x->from]])
            continue;
        char name[96];
        size_t bytes = x->bytes * (size_t)rt->M;
        pippy_status st = PIPPY_OK;
        pippy_shm_name(name, sizeof name, sx->p->hash, rt->a.job_token, x->edge);
        uint8_t *m = pippy_shm_map(name, bytes, 0, &st);
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
    }
    return PIPPY_OK;
}

pippy_status pippy_rt_map_inputs(pippy_rt *rt)
{
    for (int i = 0; i < rt->n_st; i++)
        PIPPY_TRY(pippy_rt_map_stage(rt, &rt->st[i]));
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
    for (int i = 0; i < rt->n_st; i++)
        for (int q = 0; q < rt->st[i].n_out; q++) {
            pippy_rt_output *y = &rt->st[i].out[q];
            if (y->shm && y->shm_name[0]) {
                shm_unlink(y->shm_name);
                y->shm_name[0] = 0;
            }
        }
}

/* Unmap (and unlink, if still named) what this rank shared; a passed-through input's buffer
 * went with its output. */
void pippy_rt_unshare(pippy_rt *rt)
{
    for (int i = 0; rt->st && i < rt->n_st; i++) {
        pippy_rt_stage *sx = &rt->st[i];
        for (int q = 0; sx->out && q < sx->n_out; q++) {
            pippy_rt_output *y = &sx->out[q];
            if (!y->shm)
                continue;
            size_t bytes = y->bytes * (size_t)rt->M;
            munmap(y->buf, bytes ? bytes : 1);
            if (y->shm_name[0])
                shm_unlink(y->shm_name);
            if (y->passthrough >= 0 && y->passthrough < sx->n_in)
                sx->in[y->passthrough].buf = NULL;
            y->buf = NULL;
            free(y->note);
            y->note = NULL;
            y->shm = 0;
        }
    }
}
