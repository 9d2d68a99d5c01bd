/* stage_main.c — the main() of every stage program.
 *
 * Reads the arguments and schedule.json (schedule_read.c), maps the weights, creates the
 * kernels, sizes every buffer once (arena, stash slots, one input and output slot per
 * microbatch, gradients), connects to the peer ranks, then runs this rank's action list
 * (executor.c) once at inference, or step after step in training (train.c), and at inference,
 * on the stage holding graph outputs, writes them. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rt.h"
#include "auth.h"
#include "schedule_read.h"
#include "stage.h"
#include "tensor_io.h"
#include "trace.h"
#include "transport.h"
#include "weights_format.h"


static void pippy_stage_usage(const pippy_stage_program *p)
{
    fprintf(stderr,
            "usage: stage%d [--rank R] [--schedule FILE] [--hosts FILE] [--input NAME=FILE ...]\n"
            "              [--output NAME=FILE ...] [--timeout SEC] [--trace FILE] [--threads N]\n"
            "              [--job-secret-file FILE]\n"
            "training:     [--steps N | --epochs E] [--loss-log FILE] [--checkpoint DIR] [--checkpoint-every K]\n"
            "              [--resume DIR] [--save-checkpoint DIR] [--shuffle SEED]\n"
            "device:       [--backend cpu|cuda|cuda,cpu] (default: the compiled one, or PIPPY_BACKEND; a list\n"
            "              falls back in order; the GPU: PIPPY_DEVICE, else rank modulo the GPU count)\n"
            "Runs stage %d of %d (compiled by pippyc %s from %s). Tensor files: .pb (ONNX TensorProto) or .npy.\n"
            "Training: each --input is a whole dataset (samples along dim 0); step k uses samples\n"
            "[k*batch, (k+1)*batch) modulo its size (shuffled per epoch with --shuffle).\n"
            "Rank: --rank, else PIPPY_RANK, OMPI_COMM_WORLD_RANK, PMI_RANK or SLURM_PROCID.\n"
            "Peers: --hosts FILE (host:port per rank), else PIPPY_HOSTS (comma-separated), else the hosts file\n"
            "next to schedule.json.\n"
            "Job secret (ranks prove they hold it): --job-secret-file FILE, else PIPPY_JOB_SECRET, else the\n"
            "launcher's job id (with a warning); pippyrun makes one for its ranks.\n",
            p->stage, p->stage, p->n_stages, p->pippyc_version, p->source);
}

static pippy_status pippy_parse_args(int argc, char **argv, pippy_args *a, const pippy_stage_program *p)
{
    memset(a, 0, sizeof *a);
    a->rank = -1;
    a->timeout_s = 60;
    a->threads = 1;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            pippy_stage_usage(p);
            exit(0);
        }
        if (!strcmp(k, "--quiet") || !strcmp(k, "-q")) {
            a->quiet = 1;
            continue;
        }
        if (!v)
            return pippy_fail(PIPPY_ERR_USAGE, "%s needs a value (see --help)", k);
        char *end;
        if (!strcmp(k, "--rank")) {
            a->rank = (int)strtol(v, &end, 10);
            if (*end || a->rank < 0)
                return pippy_fail(PIPPY_ERR_USAGE, "--rank takes a whole number >= 0, found '%s'", v);
        } else if (!strcmp(k, "--schedule")) {
            a->schedule_path = v;
        } else if (!strcmp(k, "--hosts")) {
            a->hosts_path = v;
        } else if (!strcmp(k, "--trace")) {
            a->trace_path = v;
        } else if (!strcmp(k, "--input") || !strcmp(k, "--output")) {
            if (!strchr(v, '=') || v[0] == '=')
                return pippy_fail(PIPPY_ERR_USAGE, "%s takes NAME=FILE, found '%s'", k, v);
            int *n = k[2] == 'i' ? &a->n_inputs : &a->n_outputs;
            if (*n >= PIPPY_MAX_ARGS)
                return pippy_fail(PIPPY_ERR_USAGE, "too many %s options", k);
            (k[2] == 'i' ? a->inputs : a->outputs)[(*n)++] = v;
        } else if (!strcmp(k, "--timeout")) {
            a->timeout_s = strtod(v, &end);
            if (*end || a->timeout_s <= 0)
                return pippy_fail(PIPPY_ERR_USAGE, "--timeout takes seconds > 0, found '%s'", v);
        } else if (!strcmp(k, "--threads")) {
            a->threads = (int)strtol(v, &end, 10);
            if (*end || a->threads < 1)
                return pippy_fail(PIPPY_ERR_USAGE, "--threads takes a whole number >= 1, found '%s'", v);
        } else if (!strcmp(k, "--job-secret-file")) {
            a->secret_file = v;
        } else if (!strcmp(k, "--job-token")) {
            return pippy_fail(PIPPY_ERR_USAGE, "--job-token is gone: give every rank the same secret with "
                                               "--job-secret-file FILE or PIPPY_JOB_SECRET");
        } else if (!strcmp(k, "--steps") || !strcmp(k, "--epochs") || !strcmp(k, "--checkpoint-every")) {
            long long x = strtoll(v, &end, 10);
            if (*end || x < 1)
                return pippy_fail(PIPPY_ERR_USAGE, "%s takes a whole number >= 1, found '%s'", k, v);
            *(k[2] == 's' ? &a->steps : k[2] == 'e' ? &a->epochs : &a->checkpoint_every) = x;
        } else if (!strcmp(k, "--shuffle")) {
            a->shuffle_seed = strtoull(v, &end, 0);
            if (*end)
                return pippy_fail(PIPPY_ERR_USAGE, "--shuffle takes a seed (a whole number), found '%s'", v);
            a->shuffle = 1;
        } else if (!strcmp(k, "--backend")) {
            a->backend = v;
        } else if (!strcmp(k, "--loss-log")) {
            a->loss_log = v;
        } else if (!strcmp(k, "--checkpoint")) {
            a->checkpoint_dir = v;
        } else if (!strcmp(k, "--resume")) {
            a->resume_dir = v;
        } else if (!strcmp(k, "--save-checkpoint")) {
            a->save_dir = v;
        } else {
            return pippy_fail(PIPPY_ERR_USAGE, "unknown option '%s' (see --help)", k);
        }
        i++;
    }
    if (a->rank < 0) {
        const char *envs[] = {"PIPPY_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"};
        for (size_t e = 0; e < sizeof envs / sizeof envs[0] && a->rank < 0; e++) {
            const char *s = getenv(envs[e]);
            if (s && *s)
                a->rank = atoi(s);
        }
    }
    return PIPPY_OK;
}


static char *pippy_read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)(n > 0 ? n : 0) + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b)
        b[n] = 0;
    fclose(f);
    if (len)
        *len = (size_t)n;
    return b;
}


static pippy_status pippy_read_hosts(const char *path, char ***hosts, int *n)
{
    char *text = NULL;
    const char *env = getenv("PIPPY_HOSTS");
    const char *src = path;
    if (!path && env && *env) {
        text = strdup(env);
        src = "PIPPY_HOSTS";
        for (char *c = text; c && *c; c++)
            if (*c == ',')
                *c = '\n';
    } else {
        text = pippy_read_text(path, NULL);
        if (!text)
            return pippy_fail(PIPPY_ERR_IO, "cannot read the hosts file %s: %s", path, strerror(errno));
    }
    int cap = 16, k = 0;
    char **h = malloc((size_t)cap * sizeof *h);
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); h && line; line = strtok_r(NULL, "\n", &save)) {
        while (*line == ' ' || *line == '\t')
            line++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        size_t l = strlen(line);
        while (l && (line[l - 1] == ' ' || line[l - 1] == '\r' || line[l - 1] == '\t'))
            line[--l] = 0;
        if (!l)
            continue;
        if (!strrchr(line, ':')) {
            free(text);
            for (int q = 0; q < k; q++)
                free(h[q]);
            free(h);
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: line '%s' is not host:port", src, line);
        }
        if (k == cap) {
            cap *= 2;
            h = realloc(h, (size_t)cap * sizeof *h);
        }
        if (h)
            h[k++] = strdup(line);
    }
    free(text);
    *hosts = h;
    *n = k;
    return PIPPY_OK;
}

/* stageK.weights, mapped private: writable in training (the file itself is never written). */
static pippy_status pippy_map_weights(const char *path, const pippy_stage_program *p, void **map, size_t *len,
                                      uint8_t **W)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return pippy_fail(PIPPY_ERR_IO, "cannot open the weights %s: %s", path, strerror(errno));
    struct stat sb;
    fstat(fd, &sb);
    *len = (size_t)sb.st_size;
    pippy_weights_header h;
    if (*len < sizeof h) {
        close(fd);
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: too short for a weights file (%zu bytes)", path, *len);
    }
    *map = mmap(NULL, *len, p->training ? PROT_READ | PROT_WRITE : PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (*map == MAP_FAILED)
        return pippy_fail(PIPPY_ERR_IO, "cannot map %s: %s", path, strerror(errno));
    memcpy(&h, *map, sizeof h);
    if (memcmp(h.magic, PIPPY_WEIGHTS_MAGIC, 8) != 0)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s is not a pippyc weights file", path);
    if (h.hash != p->hash)
        return pippy_fail(PIPPY_ERR_INVALID, "%s is from another compile (hash %016llx, this program: %016llx)", path,
                          (unsigned long long)h.hash, (unsigned long long)p->hash);
    if (h.data_bytes != p->weights_bytes || h.data_offset + h.data_bytes > *len)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: expected %llu bytes of weights, found %llu (file truncated?)", path,
                          (unsigned long long)p->weights_bytes,
                          (unsigned long long)(*len > h.data_offset ? *len - h.data_offset : 0));
    *W = (uint8_t *)*map + h.data_offset;
    return PIPPY_OK;
}

static const char *pippy_arg_file(const char *const *list, int n, const char *name)
{
    size_t nl = strlen(name);
    for (int i = 0; i < n; i++)
        if (strncmp(list[i], name, nl) == 0 && list[i][nl] == '=')
            return list[i] + nl + 1;
    return NULL;
}

static void *pippy_alloc(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0)
        return NULL;
    memset(p, 0, n ? n : 64);
    return p;
}


#define PIPPY_TAG_READY PIPPY_TRANSPORT_TAG_MAX
#define PIPPY_TAG_DONE (PIPPY_TRANSPORT_TAG_MAX - 1)
#define PIPPY_TAG_MAPPED (PIPPY_TRANSPORT_TAG_MAX - 2)

/* Start together: every rank tells each peer it is connected and waits for the same from each.
 * A peer says so only once its own peers are connected, and a rank connects only after its
 * set-up, so when this returns the ranks this one depends on are all ready to run. The same
 * exchange at the end (PIPPY_TAG_DONE) makes a rank whose peer died fail instead of
 * succeeding on sends that merely left its buffers. */
static pippy_status pippy_rt_exchange(pippy_rt *rt, const int *peers, int n_peers, uint64_t tag, const char *what)
{
    uint64_t mine = (uint64_t)rt->rank, theirs[256];
    pippy_request *rq[512];
    int n = 0;
    for (int i = 0; i < n_peers; i++) {
        PIPPY_TRY(pippy_transport_irecv(rt->t, peers[i], tag, &theirs[i], sizeof theirs[i], &rq[n]));
        n++;
        PIPPY_TRY(pippy_transport_isend(rt->t, peers[i], tag, &mine, sizeof mine, &rq[n]));
        n++;
    }
    for (int i = 0; i < n; i++) {
        pippy_status st = pippy_transport_wait(rt->t, rq[i]);
        if (st != PIPPY_OK)
            return pippy_error_prefix(st, "rank %d waiting for its peers to %s", rt->rank, what);
    }
    return PIPPY_OK;
}


/* This rank's stage: weights, kernels, arena, stash slots and (training) gradients. */
static pippy_status pippy_rt_stage_buffers(pippy_rt *rt, pippy_rt_stage *sx)
{
    const pippy_stage_program *p = sx->p;
    const cJSON *stage = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(rt->sched, "stages"), sx->stage);
    const cJSON *wname = cJSON_GetObjectItemCaseSensitive(stage, "weights");
    char path[8192];
    const char *wn = cJSON_IsString(wname) ? wname->valuestring : "";
    if (!wn[0] || strchr(wn, '/') || !strcmp(wn, "..") || !strcmp(wn, "."))
        return pippy_fail(PIPPY_ERR_FORMAT, "stage %d: 'weights' must name a file in %s, found '%s'", sx->stage, rt->dir,
                          wn);
    snprintf(path, sizeof path, "%s/%s", rt->dir, wn);
    PIPPY_TRY(pippy_map_weights(path, p, &sx->wmap, &sx->wlen, &sx->W));
    sx->K = calloc((size_t)p->n_kernels + 1, sizeof *sx->K);
    sx->A = pippy_alloc(p->arena_bytes);
    int slots = p->training ? (p->stash_slots > 0 ? p->stash_slots : 1) : 1;
    sx->S = p->stash_bytes ? pippy_alloc(p->stash_bytes * (size_t)slots) : NULL;
    sx->stash_n = slots;
    sx->slot_of = malloc((size_t)rt->M * sizeof *sx->slot_of);
    sx->free_slot = malloc((size_t)slots * sizeof *sx->free_slot);
    sx->G = p->training ? pippy_alloc(p->trainable_bytes) : NULL;
    if (!sx->K || !sx->A || (p->stash_bytes && !sx->S) || !sx->slot_of || !sx->free_slot || (p->training && !sx->G))
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory for stage %d's buffers (arena %llu bytes, stash %llu x %d)",
                          sx->stage, (unsigned long long)p->arena_bytes, (unsigned long long)p->stash_bytes, slots);
    for (int m = 0; m < rt->M; m++)
        sx->slot_of[m] = -1;
    for (int k = 0; k < slots; k++)
        sx->free_slot[sx->n_free++] = slots - 1 - k;
    PIPPY_TRY(p->init(rt->be, sx->K, sx->W));
    return pippy_rt_device_setup(rt, sx);
}

/* Inference: the graph inputs this rank reads, each the whole batch. */
static pippy_status pippy_rt_read_inputs(pippy_rt *rt)
{
    for (int i = 0; i < rt->n_st; i++) {
        pippy_rt_stage *sx = &rt->st[i];
        for (int q = 0; q < sx->n_in; q++) {
            pippy_rt_input *x = &sx->in[q];
            if (x->from >= 0)
                continue;
            const char *file = pippy_arg_file(rt->a.inputs, rt->a.n_inputs, x->name);
            if (!file)
                return pippy_fail(PIPPY_ERR_USAGE, "graph input '%s' is not given: add --input %s=FILE (.pb or .npy)",
                                  x->name, x->name);
            pippy_tensor_file tf;
            PIPPY_TRY(pippy_tensor_read(file, &tf));
            pippy_tdesc want = sx->p->inputs[q].t;
            if (want.rank > 0)
                want.dims[0] *= rt->M;
            if (!pippy_tdesc_equal(&tf.t, &want)) {
                char a[128], b[128];
                pippy_tdesc_str(&want, a, sizeof a);
                pippy_tdesc_str(&tf.t, b, sizeof b);
                pippy_tensor_file_free(&tf);
                return pippy_fail(PIPPY_ERR_SHAPE, "input '%s' from %s: expected %s, found %s", x->name, file, a, b);
            }
            if (x->bytes)
                memcpy(x->buf, tf.data, x->bytes * (size_t)rt->M);
            pippy_tensor_file_free(&tf);
        }
    }
    return PIPPY_OK;
}

/* Every --input names a graph input of a stage on this rank (checked where stage 0 runs). */
static pippy_status pippy_rt_check_input_names(pippy_rt *rt)
{
    if (!pippy_rt_stage_of(rt, 0))
        return PIPPY_OK;
    for (int i = 0; i < rt->a.n_inputs; i++) {
        int known = 0;
        for (int s = 0; s < rt->n_st; s++)
            for (int q = 0; q < rt->st[s].n_in; q++) {
                const pippy_rt_input *x = &rt->st[s].in[q];
                size_t l = strlen(x->name);
                known |= x->from < 0 && strncmp(rt->a.inputs[i], x->name, l) == 0 && rt->a.inputs[i][l] == '=';
            }
        if (!known)
            return pippy_fail(PIPPY_ERR_USAGE, "--input %s: the model has no graph input of that name", rt->a.inputs[i]);
    }
    return PIPPY_OK;
}

/* The ranks this one exchanges with: its stages' peers; in training every rank (the STEP reduces
 * the loss and gradient norm over all of them). */
static int pippy_rt_peers(pippy_rt *rt, int *peers)
{
    char seen[PIPPY_RT_MAX_RANKS] = {0};
    for (int i = 0; i < rt->n_st; i++) {
        const pippy_rt_stage *sx = &rt->st[i];
        for (int q = 0; q < sx->n_in; q++)
            if (sx->in[q].from >= 0)
                seen[rt->stage_rank[sx->in[q].from]] = 1;
        for (int q = 0; q < sx->n_out; q++)
            for (int c = 0; c < sx->out[q].n_to; c++)
                seen[rt->stage_rank[sx->out[q].to[c]]] = 1;
    }
    for (int r = 0; r < rt->nranks && rt->training; r++)
        seen[r] = 1;
    seen[rt->rank] = 0;
    int n = 0;
    for (int r = 0; r < rt->nranks; r++)
        if (seen[r])
            peers[n++] = r;
    return n;
}

static pippy_status pippy_rt_connect(pippy_rt *rt)
{
    int peers[PIPPY_RT_MAX_RANKS], n_peers = pippy_rt_peers(rt, peers);
    if (!n_peers)
        return PIPPY_OK;
    char **hosts = NULL, path[8192];
    int n_hosts = 0;
    const char *env = getenv("PIPPY_HOSTS");
    snprintf(path, sizeof path, "%s/hosts", rt->dir);
    const char *src = rt->a.hosts_path ? rt->a.hosts_path : env && *env ? NULL : path;
    PIPPY_TRY(pippy_read_hosts(src, &hosts, &n_hosts));
    pippy_status st = PIPPY_OK;
    if (n_hosts < rt->nranks)
        st = pippy_fail(PIPPY_ERR_USAGE, "the hosts list (%s) has %d entr%s, the schedule has %d ranks",
                        src ? src : "PIPPY_HOSTS", n_hosts, n_hosts == 1 ? "y" : "ies", rt->nranks);
    pippy_job_key key;
    char warn[400] = "";
    if (st == PIPPY_OK)
        st = pippy_job_key_load(rt->a.secret_file, &key, warn, sizeof warn);
    if (st == PIPPY_OK && warn[0])
        fprintf(stderr, "rank %d: %s\n", rt->rank, warn);
    if (st == PIPPY_OK)
        pippy_job_key_tag(&key, rt->job_tag);
    if (st == PIPPY_OK && rt->use_shm) {
        char mine[256], theirs[256];
        pippy_host_of(hosts[rt->rank], mine, sizeof mine);
        for (int r = 0; r < rt->nranks; r++) {
            pippy_host_of(hosts[r], theirs, sizeof theirs);
            rt->same_host[r] = strcmp(mine, theirs) == 0;
        }
        st = pippy_rt_share_outputs(rt);
    }
    if (st == PIPPY_OK) {
        pippy_transport_config tc = {rt->rank, rt->nranks, (const char *const *)hosts, rt->st[0].p->hash, &key,
                                     rt->a.timeout_s};
        st = pippy_transport_open(&tc, peers, n_peers, &rt->t);
    }
    memset(&key, 0, sizeof key);
    for (int i = 0; i < n_hosts; i++)
        free(hosts[i]);
    free(hosts);
    PIPPY_TRY(st);
    PIPPY_TRY(pippy_rt_exchange(rt, peers, n_peers, PIPPY_TAG_READY, "be ready"));
    PIPPY_TRY(pippy_rt_map_inputs(rt));
    /* once every consumer has mapped them, the names can go: nothing is left in /dev/shm even if a
     * rank is killed later */
    PIPPY_TRY(pippy_rt_exchange(rt, peers, n_peers, PIPPY_TAG_MAPPED, "map shared buffers"));
    pippy_rt_unlink_shared(rt);
    memcpy(rt->peers, peers, sizeof peers[0] * (size_t)n_peers);
    rt->n_peers = n_peers;
    return PIPPY_OK;
}

static pippy_status pippy_rt_setup(pippy_rt *rt, int argc, char **argv, const pippy_stage_program *const *progs,
                                   int n)
{
    PIPPY_TRY(pippy_parse_args(argc, argv, &rt->a, progs[0]));
    char path[8192];
    /* schedule.json: by default next to this program */
    if (rt->a.schedule_path) {
        snprintf(rt->dir, sizeof rt->dir, "%s", rt->a.schedule_path);
        char *sl = strrchr(rt->dir, '/');
        if (sl)
            *sl = 0;
        else
            snprintf(rt->dir, sizeof rt->dir, ".");
        snprintf(path, sizeof path, "%s", rt->a.schedule_path);
    } else {
        ssize_t k = readlink("/proc/self/exe", rt->dir, sizeof rt->dir - 1);
        if (k <= 0)
            return pippy_fail(PIPPY_ERR_IO, "cannot find this program's folder; give --schedule");
        rt->dir[k] = 0;
        char *sl = strrchr(rt->dir, '/');
        if (sl)
            *sl = 0;
        snprintf(path, sizeof path, "%s/schedule.json", rt->dir);
    }
    PIPPY_TRY(pippy_schedule_read(rt, path, progs, n));
    PIPPY_TRY(pippy_rt_check_input_names(rt));
    pippy_backend_set_threads(rt->a.threads);
    PIPPY_TRY(pippy_rt_backend_open(rt));
    for (int i = 0; i < rt->n_st; i++)
        PIPPY_TRY(pippy_rt_stage_buffers(rt, &rt->st[i]));
    if (rt->training)
        PIPPY_TRY(pippy_train_setup(rt));
    else
        PIPPY_TRY(pippy_rt_read_inputs(rt));
    PIPPY_TRY(pippy_dump_setup(rt));
    if (rt->a.trace_path) {
        size_t per = 16;
        for (int i = 0; i < rt->n_st; i++)
            per += (size_t)(rt->st[i].n_in + rt->st[i].n_out + 1);
        PIPPY_TRY(pippy_trace_init(&rt->trace, rt->rank, rt->st[0].stage,
                                   16 + 4 * (size_t)rt->n_acts * per * (size_t)(rt->training ? 2 : 1)));
    }
    PIPPY_TRY(pippy_rt_warmup_start(rt)); /* runs while the peers connect (warmup.c) */
    pippy_status st = pippy_rt_connect(rt);
    if (st == PIPPY_OK)
        st = pippy_rt_link_local(rt);
    PIPPY_TRY(pippy_rt_warmup_finish(rt, st));
    return pippy_rt_device_slots(rt);
}

static void pippy_print_summary(const char *name, const pippy_tdesc *t, const void *data)
{
    char sh[128];
    printf("output %s %s:", name, pippy_tdesc_str(t, sh, sizeof sh));
    int64_t n = pippy_tdesc_numel(t);
    for (int64_t i = 0; i < n && i < 6; i++) {
        if (t->dtype == PIPPY_DT_FLOAT)
            printf(" %.5g", ((const float *)data)[i]);
        else if (t->dtype == PIPPY_DT_INT64)
            printf(" %lld", (long long)((const int64_t *)data)[i]);
        else if (t->dtype == PIPPY_DT_BOOL || t->dtype == PIPPY_DT_UINT8)
            printf(" %u", ((const uint8_t *)data)[i]);
    }
    printf("%s\n", n > 6 ? " ..." : "");
}

/* Inference: the graph outputs this rank holds: write those asked for, summarise the rest. */
static pippy_status pippy_rt_write_outputs(pippy_rt *rt)
{
    int holds = 0;
    for (int i = 0; i < rt->n_st; i++) {
        pippy_rt_stage *sx = &rt->st[i];
        for (int pass = 0; pass < 2; pass++)
            for (int q = 0; q < (pass ? sx->n_out : sx->n_in); q++) {
                if (!(pass ? sx->out[q].graph_output : sx->in[q].graph_output))
                    continue;
                holds = 1;
                const char *name = pass ? sx->out[q].name : sx->in[q].name;
                pippy_tdesc t = pass ? sx->p->outputs[q].t : sx->p->inputs[q].t;
                if (t.rank > 0)
                    t.dims[0] *= rt->M;
                const char *file = pippy_arg_file(rt->a.outputs, rt->a.n_outputs, name);
                if (file)
                    PIPPY_TRY(pippy_tensor_write(file, &t, pass ? sx->out[q].buf : sx->in[q].buf, name));
                if (!rt->a.quiet)
                    pippy_print_summary(name, &t, pass ? sx->out[q].buf : sx->in[q].buf);
            }
    }
    if (!holds)
        return PIPPY_OK; /* the rank holding the graph outputs checks the --output names */
    for (int i = 0; i < rt->a.n_outputs; i++) {
        int known = 0;
        for (int s = 0; s < rt->n_st; s++) {
            const pippy_rt_stage *sx = &rt->st[s];
            for (int pass = 0; pass < 2; pass++)
                for (int q = 0; q < (pass ? sx->n_out : sx->n_in); q++) {
                    const char *nm = pass ? sx->out[q].name : sx->in[q].name;
                    int go = pass ? sx->out[q].graph_output : sx->in[q].graph_output;
                    known |= go && !strncmp(rt->a.outputs[i], nm, strlen(nm)) && rt->a.outputs[i][strlen(nm)] == '=';
                }
        }
        if (!known)
            return pippy_fail(PIPPY_ERR_USAGE, "--output %s: the model has no graph output of that name",
                              rt->a.outputs[i]);
    }
    return PIPPY_OK;
}

static void pippy_rt_free_stage(pippy_rt *rt, pippy_rt_stage *sx)
{
    pippy_rt_device_free(rt, sx);
    if (sx->K)
        for (int k = 0; k < sx->p->n_kernels; k++)
            pippy_kernel_destroy(sx->K[k]);
    free(sx->K), free(sx->A), free(sx->S), free(sx->G), free(sx->opt), free(sx->slot_of), free(sx->free_slot);
    free(sx->finished);
    for (int q = 0; sx->in && q < sx->n_in; q++) {
        size_t bytes = sx->in[q].bytes * (size_t)sx->in[q].slots;
        if (sx->in[q].shm)
            munmap(sx->in[q].buf, bytes ? bytes : 1);
        else if (!sx->in[q].local)
            free(sx->in[q].buf);
        free(sx->in[q].note), free(sx->in[q].req), free(sx->in[q].post_us), free(sx->in[q].arrived);
        free(sx->in[q].want), free(sx->in[q].credit);
    }
    for (int q = 0; sx->out && q < sx->n_out; q++) {
        if (!sx->out[q].shm && (sx->out[q].passthrough < 0 || sx->out[q].passthrough >= sx->n_in))
            free(sx->out[q].buf);
        free(sx->out[q].req), free(sx->out[q].post_us), free(sx->out[q].credit), free(sx->out[q].credit_buf);
    }
    free(sx->in), free(sx->out), free(sx->in_ptr), free(sx->out_ptr);
    if (sx->wmap && sx->wmap != MAP_FAILED)
        munmap(sx->wmap, sx->wlen);
}

static void pippy_rt_free(pippy_rt *rt)
{
    pippy_transport_close(rt->t);
    pippy_train_free(rt);
    pippy_rt_unshare(rt);
    for (int i = 0; rt->st && i < rt->n_st; i++)
        pippy_rt_free_stage(rt, &rt->st[i]);
    free(rt->st);
    pippy_rt_backend_close(rt);
    free(rt->acts);
    pippy_rt_dynamic_free(rt);
    pippy_trace_free(rt->trace);
    cJSON_Delete(rt->sched);
}

static void pippy_rt_report(pippy_rt *rt, double t0, double t1, double t2)
{
    int shared = 0;
    for (int i = 0; i < rt->n_st; i++)
        for (int q = 0; q < rt->st[i].n_in; q++)
            shared += rt->st[i].in[q].shm;
    printf("stage%s", rt->n_st > 1 ? "s" : "");
    for (int i = 0; i < rt->n_st; i++)
        printf("%s %d", i ? "," : "", rt->st[i].stage);
    int64_t ran = rt->step - rt->step0; /* a resumed run starts at step0 */
    if (rt->training)
        printf(" (rank %d): %lld step%s", rt->rank, (long long)ran, ran == 1 ? "" : "s");
    else
        printf(" (rank %d): %d microbatch%s", rt->rank, rt->M, rt->M == 1 ? "" : "es");
    printf(" in %.3f ms (compute %.3f ms, waiting %.3f ms; start-up %.1f ms", (t2 - t1) / 1e3, rt->compute_us / 1e3,
           rt->wait_us / 1e3, (t1 - t0) / 1e3);
    if (rt->warmup_us > 0)
        printf(", warm-up %.1f ms of it", rt->warmup_us / 1e3);
    printf(")");
    if (shared)
        printf("; %d input%s shared in memory", shared, shared == 1 ? "" : "s");
    printf("\n");
    pippy_rt_memory_report(rt);
}

int pippy_rank_main(int argc, char **argv, const pippy_stage_program *const *progs, int n)
{
    pippy_rt rt;
    memset(&rt, 0, sizeof rt);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *shm = getenv("PIPPY_SHM");
    rt.use_shm = !(shm && !strcmp(shm, "0"));
    const char *delay = getenv("PIPPY_FAULT_DELAY_MS");
    rt.fault_delay_us = delay ? atol(delay) * 1000 : 0;
    double t0 = pippy_rt_now_us();
    pippy_status st = pippy_rt_setup(&rt, argc, argv, progs, n);
    double t1 = pippy_rt_now_us();
    pippy_rt_set_progress(rt.t);
    if (st == PIPPY_OK)
        st = rt.training ? pippy_train_run(&rt) : pippy_rt_run(&rt);
    pippy_rt_set_progress(NULL);
    if (st == PIPPY_OK && rt.t)
        st = pippy_rt_exchange(&rt, rt.peers, rt.n_peers, PIPPY_TAG_DONE, "finish");
    double t2 = pippy_rt_now_us();
    if (st == PIPPY_OK && !rt.training)
        st = pippy_rt_write_outputs(&rt);
    if (st == PIPPY_OK && rt.trace)
        st = pippy_trace_write(rt.trace, rt.a.trace_path);
    if (st == PIPPY_OK && !rt.a.quiet)
        pippy_rt_report(&rt, t0, t1, t2);
    if (st != PIPPY_OK)
        fprintf(stderr, "stage%d: error: %s\n", rt.n_st ? rt.st[0].stage : progs[0]->stage,
                pippy_last_error()[0] ? pippy_last_error() : pippy_status_string(st));
    pippy_rt_free(&rt);
    return pippy_status_exit_code(st);
}

int pippy_stage_main(int argc, char **argv, const pippy_stage_program *p)
{
    const pippy_stage_program *progs[1] = {p};
    return pippy_rank_main(argc, argv, progs, 1);
}
