/* stage_main.c — the main() of every stage program.
 *
 * Reads the arguments and schedule.json, maps the weights, creates the
 * kernels, sizes every buffer once (arena, one input and output slot per
 * microbatch), connects to the peer ranks, then runs this rank's action list
 * (executor.c) and, on the stage holding graph outputs, writes them. */
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
#include "sched_check.h"
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
            "Runs stage %d of %d (compiled by pippyc %s from %s). Tensor files: .pb (ONNX TensorProto) or .npy.\n"
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

static int pippy_json_int(const cJSON *o, const char *k, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : dflt;
}

/* hosts: file lines "host:port" (# comments), or PIPPY_HOSTS "a:1,b:2". */
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

static pippy_status pippy_map_weights(const char *path, const pippy_stage_program *p, void **map, size_t *len,
                                      const uint8_t **W)
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
    *map = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
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
    *W = (const uint8_t *)*map + h.data_offset;
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

static pippy_status pippy_rt_setup(pippy_rt *rt, int argc, char **argv)
{
    const pippy_stage_program *p = rt->p;
    PIPPY_TRY(pippy_parse_args(argc, argv, &rt->a, p));
    /* schedule.json: by default next to this program */
    char dir[PATH_MAX], path[PATH_MAX + 64];
    if (rt->a.schedule_path) {
        snprintf(dir, sizeof dir, "%s", rt->a.schedule_path);
        char *sl = strrchr(dir, '/');
        if (sl)
            *sl = 0;
        else
            snprintf(dir, sizeof dir, ".");
    } else {
        ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
        if (n <= 0)
            return pippy_fail(PIPPY_ERR_IO, "cannot find this program's folder; give --schedule");
        dir[n] = 0;
        char *sl = strrchr(dir, '/');
        if (sl)
            *sl = 0;
    }
    if (rt->a.schedule_path)
        snprintf(path, sizeof path, "%s", rt->a.schedule_path);
    else
        snprintf(path, sizeof path, "%s/schedule.json", dir);
    char *text = pippy_read_text(path, NULL);
    if (!text)
        return pippy_fail(PIPPY_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    rt->sched = cJSON_Parse(text);
    free(text);
    if (!rt->sched)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s is not valid JSON (near: %.40s)", path,
                          cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "?");
    const cJSON *hash = cJSON_GetObjectItemCaseSensitive(rt->sched, "hash");
    char mine[32];
    snprintf(mine, sizeof mine, "%016llx", (unsigned long long)p->hash);
    if (!cJSON_IsString(hash) || strcmp(hash->valuestring, mine) != 0)
        return pippy_fail(PIPPY_ERR_INVALID,
                          "%s is from another compile (hash %s); this program (%s) was compiled as %s — recompile or "
                          "use the matching schedule",
                          path, cJSON_IsString(hash) ? hash->valuestring : "missing", p->source, mine);
    PIPPY_TRY(pippy_sched_check(rt->sched, path, p->n_stages, p->stage)); /* every field used below */
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(rt->sched, "config");
    rt->M = pippy_json_int(cfg, "microbatches", 0);
    if (rt->M < 1)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: config.microbatches is missing or < 1", path);
    const cJSON *ranks = cJSON_GetObjectItemCaseSensitive(rt->sched, "ranks");
    rt->nranks = cJSON_GetArraySize(ranks);
    if (rt->nranks < 1 || rt->nranks > 256)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: 'ranks' must list 1 to 256 ranks", path);
    if (rt->a.rank < 0 && rt->nranks == 1)
        rt->a.rank = 0;
    if (rt->a.rank < 0)
        return pippy_fail(PIPPY_ERR_USAGE, "which rank is this? give --rank or set PIPPY_RANK (or start it with "
                                           "mpirun / srun, or use pippyrun)");
    rt->rank = rt->a.rank;
    if (rt->rank >= rt->nranks)
        return pippy_fail(PIPPY_ERR_USAGE, "rank %d: %s has only %d ranks", rt->rank, path, rt->nranks);
    const cJSON *me = NULL, *r;
    for (int s = 0; s < 256; s++)
        rt->stage_rank[s] = -1;
    cJSON_ArrayForEach(r, ranks)
    {
        int rk = pippy_json_int(r, "rank", -1), st = pippy_json_int(r, "stage", -1);
        if (st >= 0 && st < 256)
            rt->stage_rank[st] = rk;
        if (rk == rt->rank)
            me = r;
    }
    if (!me)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: rank %d is not listed under 'ranks'", path, rt->rank);
    if (pippy_json_int(me, "stage", -1) != p->stage)
        return pippy_fail(PIPPY_ERR_USAGE, "rank %d runs stage %d according to %s, but this is the program of stage %d",
                          rt->rank, pippy_json_int(me, "stage", -1), path, p->stage);
    const cJSON *stage = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(rt->sched, "stages"), p->stage);
    if (!stage)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: no entry for stage %d under 'stages'", path, p->stage);

    /* inputs and outputs: schedule.json's lists must be the ones compiled in */
    const cJSON *ins = cJSON_GetObjectItemCaseSensitive(stage, "inputs");
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(stage, "outputs");
    if (cJSON_GetArraySize(ins) != p->n_inputs || cJSON_GetArraySize(outs) != p->n_outputs)
        return pippy_fail(PIPPY_ERR_FORMAT,
                          "%s: stage %d lists %d inputs and %d outputs, the program has %d and %d", path, p->stage,
                          cJSON_GetArraySize(ins), cJSON_GetArraySize(outs), p->n_inputs, p->n_outputs);
    rt->n_in = p->n_inputs;
    rt->n_out = p->n_outputs;
    rt->in = calloc((size_t)rt->n_in + 1, sizeof *rt->in);
    rt->out = calloc((size_t)rt->n_out + 1, sizeof *rt->out);
    rt->in_ptr = calloc((size_t)rt->n_in + 1, sizeof *rt->in_ptr);
    rt->out_ptr = calloc((size_t)rt->n_out + 1, sizeof *rt->out_ptr);
    if (!rt->in || !rt->out || !rt->in_ptr || !rt->out_ptr)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    for (int q = 0; q < rt->n_in; q++) {
        const cJSON *e = cJSON_GetArrayItem(ins, q);
        pippy_rt_input *x = &rt->in[q];
        x->name = p->inputs[q].name;
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (!cJSON_IsString(nm) || strcmp(nm->valuestring, x->name) != 0)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: stage %d input %d should be '%s'", path, p->stage, q, x->name);
        const cJSON *from = cJSON_GetObjectItemCaseSensitive(e, "from");
        x->from = cJSON_IsNumber(from) ? (int)from->valuedouble : -1;
        x->edge = pippy_json_int(e, "edge", -1);
        x->graph_output = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "graph_output"));
        x->bytes = pippy_tdesc_bytes(&p->inputs[q].t);
        x->buf = pippy_alloc(x->bytes * (size_t)rt->M);
        x->req = calloc((size_t)rt->M, sizeof *x->req);
        x->post_us = calloc((size_t)rt->M, sizeof *x->post_us);
        x->arrived = calloc((size_t)rt->M, 1);
        if (!x->buf || !x->req || !x->post_us || !x->arrived)
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory for input '%s' (%zu bytes x %d microbatches)", x->name,
                              x->bytes, rt->M);
    }
    for (int q = 0; q < rt->n_out; q++) {
        const cJSON *e = cJSON_GetArrayItem(outs, q), *c;
        pippy_rt_output *y = &rt->out[q];
        y->name = p->outputs[q].name;
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (!cJSON_IsString(nm) || strcmp(nm->valuestring, y->name) != 0)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: stage %d output %d should be '%s'", path, p->stage, q, y->name);
        y->edge = pippy_json_int(e, "edge", -1);
        y->graph_output = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "graph_output"));
        y->passthrough = pippy_json_int(e, "passthrough", -1);
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(e, "to"))
        {
            if (y->n_to < 64 && cJSON_IsNumber(c))
                y->to[y->n_to++] = (int)c->valuedouble;
        }
        y->bytes = pippy_tdesc_bytes(&p->outputs[q].t);
        if (y->passthrough >= 0 && y->passthrough < rt->n_in)
            y->buf = rt->in[y->passthrough].buf;
        else
            y->buf = pippy_alloc(y->bytes * (size_t)rt->M);
        y->req = calloc((size_t)rt->M * (size_t)(y->n_to ? y->n_to : 1), sizeof *y->req);
        y->post_us = calloc((size_t)rt->M * (size_t)(y->n_to ? y->n_to : 1), sizeof *y->post_us);
        if (!y->buf || !y->req || !y->post_us)
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory for output '%s'", y->name);
    }
    /* the action list */
    const cJSON *acts = cJSON_GetObjectItemCaseSensitive(me, "actions"), *ac;
    rt->n_acts = cJSON_GetArraySize(acts);
    rt->acts = calloc((size_t)rt->n_acts + 1, sizeof *rt->acts);
    int k = 0;
    cJSON_ArrayForEach(ac, acts)
    {
        const cJSON *op = cJSON_GetObjectItemCaseSensitive(ac, "op");
        pippy_rt_action *x = &rt->acts[k];
        x->mb = pippy_json_int(ac, "mb", -1);
        x->peer = pippy_json_int(ac, "peer", -1);
        if (!cJSON_IsString(op))
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: rank %d action %d has no 'op'", path, rt->rank, k);
        if (!strcmp(op->valuestring, "RECV_F"))
            x->op = 0;
        else if (!strcmp(op->valuestring, "F"))
            x->op = 1;
        else if (!strcmp(op->valuestring, "SEND_F"))
            x->op = 2;
        else
            return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                              "%s: rank %d action %d: '%s' is not an inference action (RECV_F, F, SEND_F)", path,
                              rt->rank, k, op->valuestring);
        if (x->mb < 0 || x->mb >= rt->M)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: rank %d action %d (%s): microbatch %d is outside 0..%d", path,
                              rt->rank, k, op->valuestring, x->mb, rt->M - 1);
        if (x->op != 1 && (x->peer < 0 || x->peer >= 256 || rt->stage_rank[x->peer] < 0))
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: rank %d action %d (%s): peer stage %d does not exist", path,
                              rt->rank, k, op->valuestring, x->peer);
        k++;
    }
    /* graph inputs this stage reads from files */
    for (int q = 0; q < rt->n_in; q++) {
        pippy_rt_input *x = &rt->in[q];
        if (x->from >= 0)
            continue;
        const char *file = pippy_arg_file(rt->a.inputs, rt->a.n_inputs, x->name);
        if (!file)
            return pippy_fail(PIPPY_ERR_USAGE, "graph input '%s' is not given: add --input %s=FILE (.pb or .npy)",
                              x->name, x->name);
        pippy_tensor_file tf;
        PIPPY_TRY(pippy_tensor_read(file, &tf));
        pippy_tdesc want = p->inputs[q].t;
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
    for (int i = 0; i < rt->a.n_inputs && p->stage == 0; i++) {
        int known = 0;
        for (int q = 0; q < rt->n_in; q++)
            known |= rt->in[q].from < 0 && strncmp(rt->a.inputs[i], rt->in[q].name, strlen(rt->in[q].name)) == 0 &&
                     rt->a.inputs[i][strlen(rt->in[q].name)] == '=';
        if (!known)
            return pippy_fail(PIPPY_ERR_USAGE, "--input %s: the model has no graph input of that name", rt->a.inputs[i]);
    }
    /* weights, kernels, arena */
    const cJSON *wname = cJSON_GetObjectItemCaseSensitive(stage, "weights");
    snprintf(path, sizeof path, "%s/%s", dir, cJSON_IsString(wname) ? wname->valuestring : "stage.weights");
    PIPPY_TRY(pippy_map_weights(path, p, &rt->wmap, &rt->wlen, &rt->W));
    pippy_backend_set_threads(rt->a.threads);
    rt->K = calloc((size_t)p->n_kernels + 1, sizeof *rt->K);
    rt->A = pippy_alloc(p->arena_bytes);
    if (!rt->K || !rt->A)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory for the arena (%llu bytes)",
                          (unsigned long long)p->arena_bytes);
    PIPPY_TRY(p->init(rt->K, rt->W));
    /* peers */
    int peers[256], n_peers = 0;
    char seen[256] = {0};
    for (int q = 0; q < rt->n_in; q++)
        if (rt->in[q].from >= 0 && rt->in[q].from < 256)
            seen[rt->in[q].from] = 1;
    for (int q = 0; q < rt->n_out; q++)
        for (int c = 0; c < rt->out[q].n_to; c++)
            if (rt->out[q].to[c] >= 0 && rt->out[q].to[c] < 256)
                seen[rt->out[q].to[c]] = 1;
    for (int s = 0; s < 256; s++)
        if (seen[s]) {
            if (rt->stage_rank[s] < 0)
                return pippy_fail(PIPPY_ERR_FORMAT, "%s: no rank runs stage %d", path, s);
            peers[n_peers++] = rt->stage_rank[s];
        }
    if (rt->a.trace_path)
        PIPPY_TRY(pippy_trace_init(&rt->trace, rt->rank, p->stage,
                                   16 + 4 * (size_t)rt->n_acts * (size_t)(rt->n_in + rt->n_out + 1)));
    if (n_peers > 0) {
        char **hosts = NULL;
        int n_hosts = 0;
        if (!rt->a.hosts_path && !getenv("PIPPY_HOSTS"))
            snprintf(path, sizeof path, "%s/hosts", dir);
        PIPPY_TRY(pippy_read_hosts(rt->a.hosts_path ? rt->a.hosts_path : (getenv("PIPPY_HOSTS") ? NULL : path),
                                   &hosts, &n_hosts));
        pippy_status st = PIPPY_OK;
        pippy_job_key key;
        char warn[400];
        if (n_hosts < rt->nranks)
            st = pippy_fail(PIPPY_ERR_USAGE, "the hosts list (%s) has %d entr%s, the schedule has %d ranks",
                            rt->a.hosts_path ? rt->a.hosts_path : (getenv("PIPPY_HOSTS") ? "PIPPY_HOSTS" : path),
                            n_hosts, n_hosts == 1 ? "y" : "ies", rt->nranks);
        if (st == PIPPY_OK)
            st = pippy_job_key_load(rt->a.secret_file, &key, warn, sizeof warn);
        if (st == PIPPY_OK && warn[0])
            fprintf(stderr, "stage%d: %s\n", p->stage, warn);
        if (st == PIPPY_OK)
            pippy_job_key_tag(&key, rt->job_tag);
        if (st == PIPPY_OK && rt->use_shm) {
            char mine[256], theirs[256];
            pippy_host_of(hosts[rt->rank], mine, sizeof mine);
            for (int r = 0; r < rt->nranks && r < 256; r++) {
                pippy_host_of(hosts[r], theirs, sizeof theirs);
                rt->same_host[r] = strcmp(mine, theirs) == 0;
            }
            st = pippy_rt_share_outputs(rt);
        }
        if (st == PIPPY_OK) {
            pippy_transport_config tc = {rt->rank, rt->nranks, (const char *const *)hosts, p->hash, &key,
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
        /* once every consumer has mapped them, the names can go: nothing is left in /dev/shm
         * even if a rank is killed later */
        PIPPY_TRY(pippy_rt_exchange(rt, peers, n_peers, PIPPY_TAG_MAPPED, "map shared buffers"));
        pippy_rt_unlink_shared(rt);
        memcpy(rt->peers, peers, sizeof peers[0] * (size_t)n_peers);
        rt->n_peers = n_peers;
    }
    return PIPPY_OK;
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

/* The graph outputs this stage holds: write those asked for, summarise the rest. */
static pippy_status pippy_rt_write_outputs(pippy_rt *rt)
{
    const pippy_stage_program *p = rt->p;
    int wrote = 0, holds = 0;
    for (int q = 0; q < rt->n_out; q++)
        holds |= rt->out[q].graph_output;
    for (int q = 0; q < rt->n_in; q++)
        holds |= rt->in[q].graph_output;
    if (!holds)
        return PIPPY_OK; /* the stage holding the graph outputs checks the --output names */
    for (int pass = 0; pass < 2; pass++) {
        int n = pass ? rt->n_out : rt->n_in;
        for (int q = 0; q < n; q++) {
            int go = pass ? rt->out[q].graph_output : rt->in[q].graph_output;
            if (!go)
                continue;
            const char *name = pass ? rt->out[q].name : rt->in[q].name;
            const uint8_t *buf = pass ? rt->out[q].buf : rt->in[q].buf;
            pippy_tdesc t = pass ? p->outputs[q].t : p->inputs[q].t;
            if (t.rank > 0)
                t.dims[0] *= rt->M;
            const char *file = pippy_arg_file(rt->a.outputs, rt->a.n_outputs, name);
            if (file) {
                PIPPY_TRY(pippy_tensor_write(file, &t, buf, name));
                wrote++;
            }
            if (!rt->a.quiet)
                pippy_print_summary(name, &t, buf);
        }
    }
    for (int i = 0; i < rt->a.n_outputs; i++) {
        int known = 0;
        for (int q = 0; q < rt->n_out; q++)
            known |= rt->out[q].graph_output && !strncmp(rt->a.outputs[i], rt->out[q].name, strlen(rt->out[q].name)) &&
                     rt->a.outputs[i][strlen(rt->out[q].name)] == '=';
        for (int q = 0; q < rt->n_in; q++)
            known |= rt->in[q].graph_output && !strncmp(rt->a.outputs[i], rt->in[q].name, strlen(rt->in[q].name)) &&
                     rt->a.outputs[i][strlen(rt->in[q].name)] == '=';
        if (!known)
            return pippy_fail(PIPPY_ERR_USAGE, "--output %s: the model has no graph output of that name",
                              rt->a.outputs[i]);
    }
    (void)wrote;
    return PIPPY_OK;
}

static void pippy_rt_free(pippy_rt *rt)
{
    pippy_transport_close(rt->t);
    if (rt->K)
        for (int k = 0; k < rt->p->n_kernels; k++)
            pippy_kernel_destroy(rt->K[k]);
    free(rt->K);
    free(rt->A);
    pippy_rt_unshare(rt);
    for (int q = 0; rt->in && q < rt->n_in; q++) {
        size_t bytes = rt->in[q].bytes * (size_t)rt->M;
        if (rt->in[q].shm)
            munmap(rt->in[q].buf, bytes ? bytes : 1);
        else
            free(rt->in[q].buf);
        free(rt->in[q].note);
        free(rt->in[q].req);
        free(rt->in[q].post_us);
        free(rt->in[q].arrived);
    }
    for (int q = 0; rt->out && q < rt->n_out; q++) {
        if (!rt->out[q].shm && (rt->out[q].passthrough < 0 || rt->out[q].passthrough >= rt->n_in))
            free(rt->out[q].buf);
        free(rt->out[q].req);
        free(rt->out[q].post_us);
    }
    free(rt->in);
    free(rt->out);
    free(rt->in_ptr);
    free(rt->out_ptr);
    free(rt->acts);
    if (rt->wmap && rt->wmap != MAP_FAILED)
        munmap(rt->wmap, rt->wlen);
    pippy_trace_free(rt->trace);
    cJSON_Delete(rt->sched);
}

int pippy_stage_main(int argc, char **argv, const pippy_stage_program *p)
{
    pippy_rt rt;
    memset(&rt, 0, sizeof rt);
    rt.p = p;
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *shm = getenv("PIPPY_SHM");
    rt.use_shm = !(shm && !strcmp(shm, "0"));
    const char *delay = getenv("PIPPY_FAULT_DELAY_MS");
    rt.fault_delay_us = delay ? atol(delay) * 1000 : 0;
    double t0 = pippy_rt_now_us(), compute = 0, wait = 0;
    pippy_status st = pippy_rt_setup(&rt, argc, argv);
    double t1 = pippy_rt_now_us();
    pippy_rt_set_progress(rt.t);
    if (st == PIPPY_OK)
        st = pippy_rt_run(&rt, &compute, &wait);
    pippy_rt_set_progress(NULL);
    if (st == PIPPY_OK && rt.t)
        st = pippy_rt_exchange(&rt, rt.peers, rt.n_peers, PIPPY_TAG_DONE, "finish");
    double t2 = pippy_rt_now_us();
    if (st == PIPPY_OK)
        st = pippy_rt_write_outputs(&rt);
    if (st == PIPPY_OK && rt.trace)
        st = pippy_trace_write(rt.trace, rt.a.trace_path);
    if (st == PIPPY_OK && !rt.a.quiet) {
        int shared = 0;
        for (int q = 0; q < rt.n_in; q++)
            shared += rt.in[q].shm;
        printf("stage %d (rank %d): %d microbatch%s in %.3f ms (compute %.3f ms, waiting %.3f ms; start-up %.1f ms)",
               p->stage, rt.rank, rt.M, rt.M == 1 ? "" : "es", (t2 - t1) / 1e3, compute / 1e3, wait / 1e3,
               (t1 - t0) / 1e3);
        if (shared)
            printf("; %d input%s shared in memory", shared, shared == 1 ? "" : "s");
        printf("\n");
    }
    if (st != PIPPY_OK)
        fprintf(stderr, "stage%d: error: %s\n", p->stage,
                pippy_last_error()[0] ? pippy_last_error() : pippy_status_string(st));
    pippy_rt_free(&rt);
    return pippy_status_exit_code(st);
}
