/* compile.c — see compile.h. */
#include "compile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "checked.h"
#include "device.h"
#include "emit.h"
#include "fuse.h"
#include "autodiff.h"
#include "onnx_load.h"
#include "optim.h"
#include "schedule.h"
#include "train.h"

pippy_status pippy_load_and_infer(const char *path, const pippy_shape_bind_opts *b, int lenient, pippy_graph **out)
{
    pippy_graph *g = NULL;
    pippy_status st = pippy_onnx_load(path, &g);
    if (st == PIPPY_OK)
        st = pippy_shape_bind(g, b);
    if (st == PIPPY_OK)
        st = pippy_shape_infer(g, 1, lenient);
    if (st != PIPPY_OK) {
        pippy_graph_free(g);
        *out = NULL;
        return st;
    }
    *out = g;
    return PIPPY_OK;
}

pippy_status pippy_mkdir_p(const char *dir)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return pippy_fail(PIPPY_ERR_IO, "cannot create folder %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return pippy_fail(PIPPY_ERR_IO, "cannot create folder %s: %s", buf, strerror(errno));
    struct stat sb;
    if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return pippy_fail(PIPPY_ERR_IO, "%s exists and is not a folder", buf);
    return PIPPY_OK;
}

typedef struct {
    char cc[256], root[PATH_MAX], builddir[PATH_MAX], sanflags[512], libs[1024];
} pippy_stage_env;

/* build/stage.env, written by the Makefile next to the pippyc binary. */
static pippy_status pippy_stage_env_read(pippy_stage_env *e)
{
    char exe[PATH_MAX], path[PATH_MAX + 16];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return pippy_fail(PIPPY_ERR_IO, "cannot find the pippyc executable (/proc/self/exe)");
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = 0;
    snprintf(path, sizeof path, "%s/stage.env", exe);
    FILE *f = fopen(path, "r");
    if (!f)
        return pippy_fail(PIPPY_ERR_IO, "cannot read %s (written by `make`): %s", path, strerror(errno));
    memset(e, 0, sizeof *e);
    char line[2048];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = 0;
        const char *v = eq + 1;
        if (!strcmp(line, "CC"))
            snprintf(e->cc, sizeof e->cc, "%s", v);
        else if (!strcmp(line, "ROOT"))
            snprintf(e->root, sizeof e->root, "%s", v);
        else if (!strcmp(line, "BUILDDIR"))
            snprintf(e->builddir, sizeof e->builddir, "%s", v);
        else if (!strcmp(line, "SANFLAGS"))
            snprintf(e->sanflags, sizeof e->sanflags, "%s", v);
        else if (!strcmp(line, "LIBS"))
            snprintf(e->libs, sizeof e->libs, "%s", v);
    }
    fclose(f);
    if (!e->root[0] || !e->builddir[0])
        return pippy_fail(PIPPY_ERR_FORMAT, "%s lacks ROOT or BUILDDIR; rerun `make`", path);
    return PIPPY_OK;
}

static pippy_status pippy_write_makefile(const pippy_plan *p, const pippy_stage_env *e, const char *cc,
                                         const char *dir)
{
    FILE *f;
    char tmp[PATH_MAX];
    PIPPY_TRY(pippy_file_begin(dir, "Makefile", &f, tmp, sizeof tmp));
    fprintf(f, "# Rebuilds the stage programs of this folder (written by pippyc %s).\n", PIPPY_VERSION);
    fputs("# On another host: make PIPPY_ROOT=/path/to/pippyc PIPPY_BUILD=/path/to/pippyc/build\n", f);
    fprintf(f, "PIPPY_ROOT ?= %s\nPIPPY_BUILD ?= %s\nCC = %s\n", e->root, e->builddir, cc);
    fprintf(f, "CFLAGS = -std=gnu11 -O2 -g -Wall -Wextra -Werror %s -I$(PIPPY_ROOT)/common -I$(PIPPY_ROOT)/backend "
               "-I$(PIPPY_ROOT)/runtime\n",
            e->sanflags);
    fprintf(f, "LDLIBS = %s -L$(PIPPY_BUILD) %s\n\nall:", e->sanflags, e->libs);
    char prog[64];
    for (int32_t r = 0; r < p->n_ranks; r++) {
        pippy_rank_program(p, r, prog, sizeof prog);
        fprintf(f, " %s", prog);
    }
    fputs("\n\nstage%: stage%.c\n\t$(CC) $(CFLAGS) $< -o $@ $(LDLIBS)\n", f);
    for (int32_t r = 0; r < p->n_ranks; r++) { /* a rank running several stages */
        int32_t st[PIPPY_MAX_STAGES], n = pippy_rank_stages(p, r, st);
        if (n < 2)
            continue;
        fprintf(f, "\nrank%d:", r);
        for (int32_t k = 0; k < n; k++)
            fprintf(f, " stage%d.c", st[k]);
        fprintf(f, " rank%d.c\n\t$(CC) $(CFLAGS) -DPIPPY_NO_MAIN $^ -o $@ $(LDLIBS)\n", r);
    }
    fputs("\n.PHONY: all\n", f);
    return pippy_file_commit(f, tmp);
}

static pippy_status pippy_write_hosts(const pippy_plan *p, int32_t base, const char *dir)
{
    FILE *f;
    char tmp[PATH_MAX];
    PIPPY_TRY(pippy_file_begin(dir, "hosts", &f, tmp, sizeof tmp));
    fputs("# host:port of each rank, one line per rank (rank 0 first). Edit for several hosts.\n", f);
    for (int32_t r = 0; r < p->n_ranks * (p->dp > 1 ? p->dp : 1); r++)
        fprintf(f, "127.0.0.1:%d\n", base + r);
    return pippy_file_commit(f, tmp);
}

/* Split s at spaces into words appended to argv (no quoting, no shell). Returns the new count,
 * or -1 when argv is full. s is modified. */
static int pippy_split_words(char *s, char **argv, int n, int cap)
{
    for (char *save = NULL, *w = strtok_r(s, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
        if (n >= cap - 1)
            return -1;
        argv[n++] = w;
    }
    return n;
}

/* Start the C compiler on rank r's program in dir: a plain argv (the paths are never seen by a
 * shell), output into dir/.PROGRAM.log. A rank running several stages is built from their sources
 * and rankR.c, with -DPIPPY_NO_MAIN. Returns the child's pid, or -1. */
static pid_t pippy_build_one(const pippy_plan *p, const pippy_stage_env *e, const char *cc, const char *dir, int32_t r)
{
    char ccw[2048], san1[512], san2[512], libs[1024];
    char inc[3][PATH_MAX + 16], lib[PATH_MAX + 8], prog[64], tmp[80], log[80];
    char src[PIPPY_MAX_STAGES + 1][32];
    char *argv[256 + PIPPY_MAX_STAGES];
    int32_t st[PIPPY_MAX_STAGES], ns = pippy_rank_stages(p, r, st);
    snprintf(ccw, sizeof ccw, "%s", cc);
    snprintf(san1, sizeof san1, "%s", e->sanflags);
    snprintf(san2, sizeof san2, "%s", e->sanflags);
    snprintf(libs, sizeof libs, "%s", e->libs);
    snprintf(inc[0], sizeof inc[0], "-I%s/common", e->root);
    snprintf(inc[1], sizeof inc[1], "-I%s/backend", e->root);
    snprintf(inc[2], sizeof inc[2], "-I%s/runtime", e->root);
    snprintf(lib, sizeof lib, "-L%s", e->builddir);
    pippy_rank_program(p, r, prog, sizeof prog);
    snprintf(tmp, sizeof tmp, ".%s.tmp", prog);
    snprintf(log, sizeof log, ".%s.log", prog);
    char *const mid[] = {"-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Werror"};
    int n = pippy_split_words(ccw, argv, 0, 200);
    for (size_t i = 0; n > 0 && i < 6; i++)
        argv[n++] = mid[i];
    if (n > 0)
        n = pippy_split_words(san1, argv, n, 200);
    if (n > 0) {
        argv[n++] = inc[0], argv[n++] = inc[1], argv[n++] = inc[2];
        if (ns > 1)
            argv[n++] = "-DPIPPY_NO_MAIN";
        for (int32_t k = 0; k < ns; k++)
            snprintf(src[k], sizeof src[k], "stage%d.c", st[k]), argv[n++] = src[k];
        if (ns > 1)
            snprintf(src[ns], sizeof src[ns], "rank%d.c", r), argv[n++] = src[ns];
        argv[n++] = "-o", argv[n++] = tmp;
        n = pippy_split_words(san2, argv, n, 240 + PIPPY_MAX_STAGES);
    }
    if (n > 0) {
        argv[n++] = lib;
        n = pippy_split_words(libs, argv, n, 256 + PIPPY_MAX_STAGES);
    }
    if (n <= 0) {
        errno = n == 0 ? EINVAL : E2BIG;
        return -1;
    }
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        int fd = chdir(dir) == 0 ? open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(126);
        execvp(argv[0], argv);
        fprintf(stderr, "cannot run the C compiler '%s': %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

/* Compile every rank's program, in parallel; on failure show the compiler's output. */
static pippy_status pippy_build_stages(const pippy_plan *p, const pippy_stage_env *e, const char *cc, const char *dir)
{
    pid_t pids[PIPPY_MAX_STAGES];
    int32_t started = 0;
    pippy_status st = PIPPY_OK;
    for (int32_t r = 0; r < p->n_ranks; r++, started++) {
        pids[r] = pippy_build_one(p, e, cc, dir, r);
        if (pids[r] < 0) {
            st = pippy_fail(PIPPY_ERR_IO, "cannot start the C compiler '%s': %s", cc, strerror(errno));
            break;
        }
    }
    int32_t bad = -1;
    for (int32_t r = 0; r < started; r++) {
        int status = 0;
        while (waitpid(pids[r], &status, 0) < 0 && errno == EINTR)
            ;
        if ((!WIFEXITED(status) || WEXITSTATUS(status) != 0) && bad < 0)
            bad = r;
    }
    if (st != PIPPY_OK)
        return st;
    char prog[64];
    for (int32_t r = 0; r < p->n_ranks && bad < 0; r++) {
        char a[PATH_MAX + 96], b[PATH_MAX + 96];
        pippy_rank_program(p, r, prog, sizeof prog);
        snprintf(a, sizeof a, "%s/.%s.tmp", dir, prog);
        snprintf(b, sizeof b, "%s/%s", dir, prog);
        if (rename(a, b) != 0)
            return pippy_fail(PIPPY_ERR_IO, "cannot move %s to %s: %s", a, b, strerror(errno));
        snprintf(a, sizeof a, "%s/.%s.log", dir, prog);
        unlink(a);
    }
    if (bad >= 0) {
        char log[PATH_MAX + 96], text[2048] = "";
        pippy_rank_program(p, bad, prog, sizeof prog);
        snprintf(log, sizeof log, "%s/.%s.log", dir, prog);
        FILE *f = fopen(log, "r");
        if (f) {
            size_t n = fread(text, 1, sizeof text - 1, f);
            text[n] = 0;
            fclose(f);
        }
        return pippy_fail(PIPPY_ERR_IO, "compiling %s/%s (rank %d) with '%s' failed (full log: %s):\n%s", dir, prog,
                          bad, cc, log, text);
    }
    return PIPPY_OK;
}

/* Remove the staging folder and whatever is in it (only files we write there). */
static void pippy_rm_staging(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[PATH_MAX + 256];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* Move one file of the staging folder into OUT (absent and optional: nothing to do). */
static pippy_status pippy_publish_one(const char *from, const char *to, const char *name, int optional)
{
    char a[2 * PATH_MAX + 2], b[2 * PATH_MAX + 2];
    snprintf(a, sizeof a, "%s/%s", from, name);
    snprintf(b, sizeof b, "%s/%s", to, name);
    if (optional && access(a, F_OK) != 0)
        return PIPPY_OK;
    if (rename(a, b) != 0)
        return pippy_fail(PIPPY_ERR_IO, "cannot move %s to %s: %s", a, b, strerror(errno));
    return PIPPY_OK;
}

/* Move the finished files from the staging folder into OUT; schedule.json last. Programs and
 * sources of an earlier compile that this one does not write are removed, so none is left stale. */
static pippy_status pippy_publish(const pippy_plan *p, const char *from, const char *to, int emit_only)
{
    char name[80], b[PATH_MAX + 96];
    for (int32_t k = 0; k < PIPPY_MAX_STAGES; k++) { /* what an earlier compile may have left */
        const char *kinds[] = {"stage%d.c", "stage%d.weights", "stage%d", "rank%d.c", "rank%d"};
        for (int i = 0; i < 5; i++) {
            snprintf(name, sizeof name, kinds[i], k);
            snprintf(b, sizeof b, "%s/%s", to, name);
            unlink(b);
        }
    }
    for (int32_t s = 0; s < p->n_stages; s++) {
        snprintf(name, sizeof name, "stage%d.c", s);
        PIPPY_TRY(pippy_publish_one(from, to, name, 0));
        snprintf(name, sizeof name, "stage%d.weights", s);
        PIPPY_TRY(pippy_publish_one(from, to, name, 0));
    }
    for (int32_t r = 0; r < p->n_ranks; r++) {
        snprintf(name, sizeof name, "rank%d.c", r);
        PIPPY_TRY(pippy_publish_one(from, to, name, 1));
        pippy_rank_program(p, r, name, sizeof name);
        if (!emit_only)
            PIPPY_TRY(pippy_publish_one(from, to, name, 0));
    }
    const char *fixed[] = {"Makefile", "hosts", "schedule.json"};
    for (int k = 0; k < 3; k++)
        PIPPY_TRY(pippy_publish_one(from, to, fixed[k], 0));
    return PIPPY_OK;
}

/* A graph output that folding turned into a constant (a model that only computes shapes, say)
 * is written by an Identity node reading the constant, so the last stage still produces it. */
static pippy_status pippy_materialize_const_outputs(pippy_graph *g, int32_t microbatches)
{
    for (int32_t o = 0; o < g->n_outputs; o++) {
        int32_t v = g->outputs[o];
        if (g->values[v].kind != PIPPY_VAL_CONST && g->values[v].kind != PIPPY_VAL_PARAM)
            continue;
        if (microbatches > 1)
            return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                              "%s: graph output '%s' is a constant (it depends on no input), so it cannot be split "
                              "into %d microbatches; use --microbatches 1",
                              g->path, g->values[v].name, microbatches);
        char name[1024];
        snprintf(name, sizeof name, "%s::constant", g->values[v].name);
        int32_t c = pippy_graph_value(g, name);
        if (c < 0)
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
        pippy_value *src = &g->values[v], *dst = &g->values[c];
        dst->kind = src->kind;
        dst->param_of = src->param_of;
        dst->t = src->t;
        dst->shape_known = 1;
        dst->data = src->data;
        dst->data_owned = src->data_owned;
        src->data = NULL;
        src->data_owned = 0;
        src->kind = PIPPY_VAL_INTERMEDIATE;
        snprintf(name, sizeof name, "%s::write", g->values[v].name);
        int32_t n = pippy_graph_add_node(g, name, "Identity", "", 1, &c, 1, &v);
        if (n < 0)
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
        g->values[v].producer = n;
    }
    return PIPPY_OK;
}

/* What each stage program will allocate (arena, one input/output slot per microbatch, weights),
 * estimated now: a stage that cannot fit is an error here, not an out-of-memory kill later.
 * limit 0: this machine's memory. */
static pippy_status pippy_check_stage_memory(const pippy_plan *p, uint64_t limit)
{
    const char *why = "--max-memory";
    if (!limit) {
        limit = pippy_machine_memory();
        why = "this machine's memory; pippyc --max-memory GB sets another";
    }
    for (int32_t s = 0; s < p->n_stages && limit; s++) {
        const pippy_stage *sg = &p->stages[s];
        uint64_t need, slots;
        if (pippy_mul_u64(sg->io_bytes, (uint64_t)p->microbatches, &slots) ||
            pippy_add_u64(sg->arena_bytes, slots, &need) || pippy_add_u64(need, sg->weights_bytes, &need))
            need = UINT64_MAX;
        if (need > limit)
            return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                              "stage %d would need %.3g GB (arena %.3g GB, %d microbatch slots of %.3g GB, weights "
                              "%.3g GB), more than the limit of %.3g GB (%s)",
                              s, need / 1e9, sg->arena_bytes / 1e9, p->microbatches, sg->io_bytes / 1e9,
                              sg->weights_bytes / 1e9, limit / 1e9, why);
    }
    return PIPPY_OK;
}

static uint64_t pippy_mix(uint64_t h, int64_t x) { return pippy_fnv1a(&x, sizeof x, h); }

/* The full batch: --batch, else the leading dim of --shape or of the model's first input. */
static int64_t pippy_full_batch(const pippy_graph *g, const pippy_shape_bind_opts *bind)
{
    int64_t batch = bind->batch;
    for (int32_t i = 0; i < g->n_inputs && batch <= 0; i++) {
        const pippy_value *v = &g->values[g->inputs[i]];
        for (int32_t s = 0; s < bind->n_shapes; s++)
            if (!strcmp(bind->shapes[s].name, v->name) && bind->shapes[s].rank > 0)
                batch = bind->shapes[s].dims[0];
        if (batch <= 0 && v->t.rank > 0 && v->t.dims[0] > 0)
            batch = v->t.dims[0];
    }
    return batch;
}

/* What the summary says besides the plan. */
typedef struct {
    pippy_batch_report batch; /* static-batch rewrites */
    char cost_note[2048];     /* where the cost model's rates came from */
    pippy_schedule_report schedule; /* the schedules compared (--schedule auto, --memory-per-rank) */
    pippy_train_report exported;    /* training: parameters of the export untied / re-tied */
    int32_t cuts_tried, cuts_kept;  /* cost-model cuts with several stages per rank: candidates
                                       simulated, and the one kept (0: the evened cuts) */
    double cuts_first_ms, cuts_kept_ms, cuts_fastest_ms; /* predicted steps: evened, kept, fastest */
    double cuts_first_peak, cuts_kept_peak; /* the busiest rank's predicted peak bytes */
    int32_t cuts_kept_first, cuts_kept_last; /* the kept cuts' first and last stage: live nodes */
} pippy_compile_notes;

/* Inference: a BatchNormalization exported in training mode (training_mode=1, or the statistics
 * outputs of opsets 9-13) would normalize with the batch's statistics; refused with what to do. */
static pippy_status pippy_compile_refuse_training_bn(const pippy_graph *g)
{
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const pippy_node *n = &g->nodes[i];
        if (n->removed || n->domain[0] || strcmp(n->op, "BatchNormalization"))
            continue;
        int mode = n->n_out > 1;
        for (int32_t a = 0; a < n->n_attrs; a++)
            if (!strcmp(n->attrs[a].name, "training_mode") && n->attrs[a].i != 0)
                mode = 1;
        if (mode)
            return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                              "node '%s' (BatchNormalization) is in training mode (the model was exported from train "
                              "mode): for inference export it after model.eval(); to train it, compile with --train",
                              n->name);
    }
    return PIPPY_OK;
}

/* Load, bind at the microbatch size, infer and fold, make it a training graph if asked, prune and
 * fuse. Sets the plan's batch figures. */
static pippy_status pippy_compile_graph(const pippy_compile_opts *o, pippy_plan *plan, pippy_graph **out,
                                        pippy_compile_notes *notes)
{
    pippy_shape_bind_opts bind = o->bind;
    int32_t M = o->microbatches > 0 ? o->microbatches : 1;
    pippy_graph *g = NULL;
    PIPPY_TRY(pippy_onnx_load(o->model_path, &g));
    *out = g;
    if (o->max_memory)
        g->mem_limit = o->max_memory;
    g->training = o->train;
    int64_t batch = pippy_full_batch(g, &bind);
    int32_t D = o->dp > 1 ? o->dp : 1;
    if (D > 1 && !o->train)
        return pippy_fail(PIPPY_ERR_USAGE, "--dp %d is for training (replicas average their gradients); for inference "
                                           "run %d jobs on parts of the batch", D, D);
    if (M * D > 1 && batch <= 0)
        return pippy_fail(PIPPY_ERR_USAGE, "--microbatches %d: the batch size is unknown; give --batch N", M);
    if (batch > 0 && batch % ((int64_t)M * D) != 0)
        return pippy_fail(PIPPY_ERR_USAGE,
                          "--microbatches %d%s does not divide the batch of %lld (microbatches must be equal); choose "
                          "a divisor of %lld",
                          M * D, D > 1 ? " (x --dp)" : "", (long long)batch, (long long)batch);
    int64_t mb = batch > 0 ? batch / ((int64_t)M * D) : 0;
    /* the graph is compiled at the microbatch size; a static export's constants hold at its own batch
     * (a dynamic export, whose inputs name their batch dim, computes its shapes from the inputs) */
    int64_t exported = pippy_batch_exported(g);
    pippy_shape_bind_opts full = bind;
    if (M * D > 1 || bind.batch > 0) {
        bind.batch = mb;
        full.batch = exported;
        for (int32_t s = 0; s < bind.n_shapes; s++)
            if (bind.shapes[s].rank > 0)
                bind.shapes[s].dims[0] = mb, full.shapes[s].dims[0] = exported;
    }
    pippy_status st = pippy_batch_infer(g, &full, &bind, exported, mb, &o->batch_dims, &notes->batch);
    if (st != PIPPY_OK)
        return M > 1 ? pippy_error_prefix(st, "at microbatch size %lld", (long long)mb) : st;
    if (o->train) {
        pippy_train_opts to = {o->loss, o->labels, g->hash, &notes->exported, o->padding_idx};
        PIPPY_TRY(pippy_train_prepare(g, &to, &plan->loss));
    } else {
        PIPPY_TRY(pippy_compile_refuse_training_bn(g));
        PIPPY_TRY(pippy_materialize_const_outputs(g, M));
    }
    pippy_graph_prune(g);
    if (!o->train)
        pippy_fold_batchnorm(g);
    pippy_fuse_matmul_bias(g);
    pippy_fuse_activations(g);
    pippy_fuse_gelu(g);
    pippy_fuse_transpose_matmul(g);
    if (mb <= 0 && g->n_inputs > 0 && g->values[g->inputs[0]].t.rank > 0)
        mb = g->values[g->inputs[0]].t.dims[0];
    plan->g = g;
    plan->dp = D;
    plan->microbatches = M;
    plan->microbatch_size = mb;
    plan->batch = batch > 0 ? batch : mb;
    plan->training = o->train;
    plan->tied_transmit = o->tied_transmit;
    return PIPPY_OK;
}

/* --backend (before anything is read): the backend exists in this build and takes the options. */
static pippy_status pippy_check_backend_opts(const pippy_compile_opts *o)
{
    const char *name = o->backend ? o->backend : "cpu";
    const pippy_backend_iface *bi = pippy_backend_find(name);
    if (!bi)
        return pippy_error_prefix(PIPPY_ERR_UNSUPPORTED, "--backend %s", name);
    if (o->tf32 && bi->host_memory)
        return pippy_fail(PIPPY_ERR_USAGE, "--tf32 applies to --backend cuda only");
    if (o->train && !bi->host_memory)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "--backend %s: training is not implemented there yet (the backward "
                                                 "kernels, the optimizer and the gradient buffers run on the CPU only)",
                          name);
    return PIPPY_OK;
}

/* --backend: a kernel there for every live node (the message names the first node that has none,
 * and why). */
static pippy_status pippy_check_backend(const pippy_compile_opts *o, const pippy_graph *g)
{
    const char *name = o->backend ? o->backend : "cpu";
    const pippy_backend_iface *bi = pippy_backend_find(name);
    for (int32_t i = 0; bi && i < g->n_nodes; i++) {
        if (g->nodes[i].removed)
            continue;
        pippy_op_desc d;
        pippy_graph_op_desc(g, i, &d);
        pippy_status st = pippy_backend_check_op(bi, &d);
        if (st != PIPPY_OK)
            return pippy_error_prefix(st, "--backend %s", name);
    }
    return PIPPY_OK;
}

/* Every live node's stage into the plan's node_stage (after the autodiff added nodes). */
static pippy_status pippy_node_stages(pippy_plan *p)
{
    int32_t *ns = realloc(p->node_stage, ((size_t)p->g->n_nodes + 1) * sizeof *ns);
    if (!ns)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    p->node_stage = ns;
    for (int32_t i = 0; i < p->g->n_nodes; i++)
        ns[i] = p->g->nodes[i].removed ? -1 : p->g->nodes[i].stage;
    return PIPPY_OK;
}

/* How many processes run the stages: one per stage, or (interleaved-1f1b, dynamic) R, rank r
 * holding stages r, r+R, ... (the looping placement). */
static pippy_status pippy_compile_ranks(const pippy_compile_opts *o, pippy_plan *plan)
{
    int32_t S = plan->n_stages, R = o->ranks > 0 ? o->ranks : S;
    int interleaved = !strcmp(plan->schedule, "interleaved-1f1b") || !strcmp(plan->schedule, "auto") ||
                      !strcmp(plan->schedule, "dynamic") || !strcmp(plan->schedule, "zb-h1");
    if (R > S)
        return pippy_fail(PIPPY_ERR_USAGE, "--ranks %d: more ranks than the %d stages", R, S);
    if (R < S && !interleaved)
        return pippy_fail(PIPPY_ERR_USAGE,
                          "--ranks %d with %d stages: several stages per rank need --schedule interleaved-1f1b, "
                          "zb-h1 or dynamic", R, S);
    if (S % R)
        return pippy_fail(PIPPY_ERR_USAGE, "--ranks %d: the %d stages must be a multiple of the ranks (rank r runs "
                                           "stages r, r+%d, ...)", R, S, R);
    if (interleaved && R < S && plan->microbatches % R)
        return pippy_fail(PIPPY_ERR_USAGE, "--schedule %s: --microbatches %d must be a multiple of --ranks %d "
                                           "(microbatches go round the ranks in groups of %d)",
                          plan->schedule, plan->microbatches, R, R);
    plan->n_ranks = R;
    return PIPPY_OK;
}

/* Each stage's optimizer step (the STEP after its backwards), priced by the cost model. */
static pippy_status pippy_price_optimizer(const pippy_compile_opts *o, pippy_plan *plan)
{
    if (!plan->training || !o->optimizer_json)
        return PIPPY_OK;
    pippy_optim_config c;
    cJSON *j = cJSON_Parse(o->optimizer_json);
    pippy_status st = j ? pippy_optim_from_json(j, &c)
                        : pippy_fail(PIPPY_ERR_USAGE, "the optimizer settings are not JSON: \"%.60s\"", o->optimizer_json);
    cJSON_Delete(j);
    PIPPY_TRY(st);
    for (int32_t s = 0; s < plan->n_stages; s++) {
        pippy_stage *sg = &plan->stages[s];
        sg->pred_optimizer_ms = pippy_cost_optimizer_s(&plan->cost, &c, sg->trainable_bytes / sizeof(float)) * 1e3;
    }
    return PIPPY_OK;
}

/* Given the cuts (plan->node_stage): differentiate (training), plan memory (checked against the
 * limit) and the schedule. */
static pippy_status pippy_compile_stages(const pippy_compile_opts *o, pippy_plan *plan, pippy_compile_notes *notes)
{
    pippy_graph *g = plan->g;
    for (int32_t i = 0; i < g->n_nodes; i++)
        g->nodes[i].stage = plan->node_stage[i];
    PIPPY_TRY(pippy_compile_ranks(o, plan));
    if (o->train) {
        /* each microbatch's loss counts 1/(M*dp): summed over the microbatches and the replicas, the
         * gradients are the whole batch's mean */
        pippy_autodiff_opts ao = {plan->loss, plan->microbatches * (plan->dp > 1 ? plan->dp : 1)};
        PIPPY_TRY(pippy_autodiff(g, &ao));
        PIPPY_TRY(pippy_node_stages(plan));
    }
    PIPPY_TRY(pippy_plan_build(plan));
    PIPPY_TRY(pippy_memplan(plan));
    PIPPY_TRY(pippy_check_stage_memory(plan, o->max_memory));
    uint64_t h = pippy_mix(g->hash, plan->n_stages);
    h = pippy_mix(h, plan->n_ranks);
    h = pippy_mix(h, plan->dp);
    h = pippy_mix(h, plan->microbatch_size);
    h = pippy_mix(h, plan->microbatches);
    h = pippy_mix(h, o->train);
    h = pippy_mix(h, g->n_nodes);
    for (int32_t i = 0; i < g->n_nodes; i++)
        h = pippy_mix(h, plan->node_stage[i]);
    for (int32_t i = 0; i < g->n_inputs; i++)
        for (int32_t d = 0; d < g->values[g->inputs[i]].t.rank; d++)
            h = pippy_mix(h, g->values[g->inputs[i]].t.dims[d]);
    plan->hash = h;
    PIPPY_TRY(pippy_price_optimizer(o, plan));
    pippy_schedule_opts so = {o->schedule ? o->schedule : "gpipe", o->memory_per_rank, o->optimizer_state};
    return pippy_schedule_choose(plan, &so, &notes->schedule);
}

/* Compiles cuts `at` on a copy of the plan's graph (not yet differentiated): its predicted step
 * in *ms and the busiest rank's predicted peak bytes in *peak. The copy shares the plan's cost model. */
static pippy_status pippy_compile_try_cuts(const pippy_compile_opts *o, pippy_plan *plan, pippy_partition_opts po,
                                           const int32_t *at, double *ms, double *peak)
{
    pippy_plan t;
    pippy_compile_notes scratch;
    memset(&t, 0, sizeof t);
    memcpy(t.schedule, plan->schedule, sizeof t.schedule);
    t.window = plan->window, t.loss = plan->loss, t.dp = plan->dp, t.training = plan->training;
    t.microbatches = plan->microbatches, t.microbatch_size = plan->microbatch_size, t.batch = plan->batch;
    t.tied_transmit = plan->tied_transmit, t.cost = plan->cost;
    po.at = at, po.candidates = NULL;
    pippy_status st = pippy_graph_clone(plan->g, &t.g);
    if (st == PIPPY_OK)
        st = pippy_partition(&t, &po);
    if (st == PIPPY_OK)
        st = pippy_compile_stages(o, &t, &scratch);
    *ms = t.pred_step_ms, *peak = 0;
    for (int32_t r = 0; st == PIPPY_OK && r < t.n_ranks; r++) {
        double b = pippy_schedule_rank_bytes(&t, r, o->optimizer_state);
        *peak = b > *peak ? b : *peak;
    }
    plan->cost = t.cost; /* its kernel table may have grown */
    memset(&t.cost, 0, sizeof t.cost);
    pippy_graph_free(t.g);
    t.g = NULL;
    pippy_plan_free(&t);
    return st;
}

/* The cost model's cuts with several stages per rank: simulate each candidate (pippy_partition) and
 * cut the plan at the one that holds the least memory on its busiest rank among those predicted
 * within 1% of the fastest (closer than the cost model can tell apart; what a rank holds costs
 * time the prediction does not see: its stash is read back from farther caches). Ties keep the
 * earlier. Candidates that do not compile (say they break --memory-per-rank) are passed over; when
 * none does, the evened cuts stay, and their compile says why. */
static pippy_status pippy_compile_pick_cuts(const pippy_compile_opts *o, pippy_plan *plan, pippy_partition_opts po,
                                            const pippy_cuts *c, pippy_compile_notes *notes)
{
    double ms[PIPPY_MAX_CUT_CANDIDATES], peak[PIPPY_MAX_CUT_CANDIDATES], fastest = -1;
    for (int32_t k = 0; k < c->n; k++) {
        if (pippy_compile_try_cuts(o, plan, po, c->at[k], &ms[k], &peak[k]) != PIPPY_OK)
            ms[k] = -1;
        else if (fastest < 0 || ms[k] < fastest)
            fastest = ms[k];
    }
    pippy_error_clear();
    int32_t best = -1;
    for (int32_t k = 0; k < c->n; k++)
        if (ms[k] >= 0 && ms[k] <= 1.01 * fastest && (best < 0 || peak[k] < peak[best] * (1 - 1e-9)))
            best = k;
    if (best >= 0) {
        notes->cuts_tried = c->n, notes->cuts_kept = best, notes->cuts_fastest_ms = fastest;
        notes->cuts_first_ms = ms[0], notes->cuts_kept_ms = ms[best];
        notes->cuts_first_peak = peak[0], notes->cuts_kept_peak = peak[best];
        notes->cuts_kept_first = c->at[best][1];
        notes->cuts_kept_last = c->at[best][plan->n_stages] - c->at[best][plan->n_stages - 1];
    }
    free(plan->node_stage);
    plan->node_stage = NULL;
    po.at = c->at[best >= 0 ? best : 0], po.candidates = NULL;
    return pippy_partition(plan, &po);
}

/* Cut, differentiate (training), plan memory (checked against the limit) and the schedule. */
static pippy_status pippy_compile_cut(const pippy_compile_opts *o, pippy_plan *plan, pippy_compile_notes *notes)
{
    snprintf(plan->schedule, sizeof plan->schedule, "%s", o->schedule ? o->schedule : "gpipe");
    plan->window = o->window;
    if (o->window > 0 && strcmp(plan->schedule, "dynamic") != 0) /* before auto tries the others */
        return pippy_fail(PIPPY_ERR_USAGE, "--window %d applies to --schedule dynamic (this is --schedule %s)",
                          o->window, plan->schedule);
    if (o->no_calibration)
        pippy_cost_defaults(&plan->cost);
    else
        PIPPY_TRY(pippy_cost_load(&plan->cost, o->cost_model, notes->cost_note, sizeof notes->cost_note));
    pippy_cuts cands = {0};
    pippy_partition_opts po = {o->stages,         o->split_before, plan->microbatches, plan->batch,
                               plan->schedule,    o->ranks,        NULL,               &cands};
    PIPPY_TRY(pippy_partition(plan, &po));
    if (cands.n > 1)
        PIPPY_TRY(pippy_compile_pick_cuts(o, plan, po, &cands, notes));
    pippy_status st = pippy_compile_stages(o, plan, notes);
    if (st != PIPPY_OK && cands.n > 1 && !notes->cuts_tried) /* none compiled: the evened cuts say why */
        return pippy_error_prefix(st, "none of the %d cuts simulated compiles (the cuts that even the ranks' "
                                      "totals and %d variants with a shallower first or last stage); the first",
                                  cands.n, cands.n - 1);
    PIPPY_TRY(st);
    pippy_cost_flush(&plan->cost, notes->cost_note, sizeof notes->cost_note);
    return PIPPY_OK;
}

pippy_status pippy_compile_plan(const pippy_compile_opts *o, pippy_graph **gp, pippy_plan *plan)
{
    pippy_compile_notes notes;
    memset(&notes, 0, sizeof notes);
    memset(plan, 0, sizeof *plan);
    plan->loss = -1;
    *gp = NULL;
    pippy_graph *g = NULL;
    pippy_status st = pippy_compile_graph(o, plan, &g, &notes);
    if (st == PIPPY_OK)
        st = pippy_compile_cut(o, plan, &notes);
    if (st != PIPPY_OK) {
        pippy_plan_free(plan);
        pippy_graph_free(g);
        memset(plan, 0, sizeof *plan);
        return st;
    }
    *gp = g;
    return PIPPY_OK;
}

/* Everything is written into OUT/.pippyc-staging first and moved into OUT only when the whole
 * compile succeeded: a failed compile leaves an existing OUT as it was. */
static pippy_status pippy_compile_emit(const pippy_compile_opts *o, const pippy_plan *plan)
{
    pippy_stage_env env;
    char stage_dir[PATH_MAX];
    snprintf(stage_dir, sizeof stage_dir, "%s/.pippyc-staging", o->out_dir);
    PIPPY_TRY(pippy_stage_env_read(&env));
    PIPPY_TRY(pippy_mkdir_p(o->out_dir));
    pippy_rm_staging(stage_dir);
    PIPPY_TRY(pippy_mkdir_p(stage_dir));
    const char *cc = o->cc ? o->cc : env.cc;
    pippy_emit_opts eo = {o->command_line, stage_dir, o->optimizer_json, o->optimizer_state, o->backend, o->tf32};
    pippy_status st = PIPPY_OK;
    for (int32_t s = 0; st == PIPPY_OK && s < plan->n_stages; s++) {
        st = pippy_emit_stage_c(plan, s, &eo);
        if (st == PIPPY_OK)
            st = pippy_emit_weights(plan, s, &eo);
    }
    int32_t st_of[PIPPY_MAX_STAGES];
    for (int32_t r = 0; st == PIPPY_OK && r < plan->n_ranks; r++)
        if (pippy_rank_stages(plan, r, st_of) > 1)
            st = pippy_emit_rank_c(plan, r, &eo);
    if (st == PIPPY_OK)
        st = pippy_write_makefile(plan, &env, cc, stage_dir);
    if (st == PIPPY_OK)
        st = pippy_write_hosts(plan, o->base_port > 0 ? o->base_port : 20000 + (int32_t)(plan->hash % 20000),
                               stage_dir);
    if (st == PIPPY_OK && !o->emit_only)
        st = pippy_build_stages(plan, &env, cc, stage_dir);
    if (st == PIPPY_OK)
        st = pippy_emit_schedule_json(plan, &eo);
    if (st == PIPPY_OK)
        st = pippy_publish(plan, stage_dir, o->out_dir, o->emit_only);
    pippy_rm_staging(stage_dir);
    return st;
}

static void pippy_compile_summary(const pippy_compile_opts *o, const pippy_plan *plan,
                                  const pippy_compile_notes *notes)
{
    char window[32] = "";
    if (plan->window > 0)
        snprintf(window, sizeof window, " (window %d)", plan->window);
    size_t dl = strlen(o->out_dir);
    while (dl > 1 && o->out_dir[dl - 1] == '/')
        dl--;
    printf("pippyc: %s -> %.*s/: %d stage%s (cuts from %s), batch %lld = %d x %lld, schedule %s%s%s\n", plan->g->path,
           (int)dl, o->out_dir, plan->n_stages, plan->n_stages > 1 ? "s" : "", pippy_split_source_name(plan->split_source),
           (long long)plan->batch, plan->microbatches, (long long)plan->microbatch_size, plan->schedule, window,
           plan->training ? ", training" : "");
    for (int32_t s = 0; s < plan->n_stages; s++) {
        const pippy_stage *sg = &plan->stages[s];
        printf("  stage %d: %4d nodes  %9.3f MFLOP  params %9.1f KiB  arena %9.1f KiB  predicted %.3f ms/mb", s,
               sg->phase_begin[1], sg->flops / 1e6, (double)sg->parameter_bytes / 1024.0,
               (double)sg->arena_bytes / 1024.0, sg->pred_forward_ms);
        if (plan->training)
            printf(" F + %.3f B + %.3f W, optimizer %.3f ms/step; %d backward nodes, stash %.1f KiB x %d",
                   sg->pred_backward_ms, sg->pred_weight_ms, sg->pred_optimizer_ms, sg->n_nodes - sg->phase_begin[1],
                   (double)sg->stash_bytes / 1024.0, sg->stash_slots);
        printf("\n");
    }
    if (notes->batch.rewritten)
        printf("  static batch %lld: %d shape constant%s rewritten for the microbatch size (first %s)\n",
               (long long)notes->batch.export_batch, notes->batch.rewritten, notes->batch.rewritten > 1 ? "s" : "",
               notes->batch.first);
    const pippy_train_report *ex = &notes->exported;
    if (ex->untied)
        printf("  %d parameter%s that the export stored as an Identity of an equal one train%s apart, as in "
               "PyTorch (%s%s)\n",
               ex->untied, ex->untied > 1 ? "s" : "", ex->untied > 1 ? "" : "s", ex->untied_first,
               ex->untied > 1 ? ", ..." : "");
    if (ex->retied)
        printf("  %d initializer%s that the export folded from a parameter's transpose train%s that parameter, "
               "tied as in PyTorch (%s%s)\n",
               ex->retied, ex->retied > 1 ? "s" : "", ex->retied > 1 ? "" : "s", ex->retied_first,
               ex->retied > 1 ? ", ..." : "");
    if (ex->frozen || ex->tied_params)
        printf("  torch.export's graph signature: its parameters train; %d other initializer%s (buffers, "
               "constants) not trained; %d parameter%s stored once with another (tied)\n",
               ex->frozen, ex->frozen == 1 ? "" : "s", ex->tied_params, ex->tied_params == 1 ? "" : "s");
    if (notes->cuts_tried > 1 && notes->cuts_first_ms < 0)
        printf("  cuts: %d candidates simulated; kept a variant (first stage %d nodes, last %d): %.3f ms, busiest "
               "rank %.2f MiB; the cuts that only even the ranks' totals do not compile (the least memory within 1%% "
               "of the fastest that do, %.3f ms)\n",
               notes->cuts_tried, notes->cuts_kept_first, notes->cuts_kept_last, notes->cuts_kept_ms,
               notes->cuts_kept_peak / 1048576.0, notes->cuts_fastest_ms);
    else if (notes->cuts_tried > 1)
        printf("  cuts: %d candidates simulated; kept %s (first stage %d nodes, last %d): %.3f ms, busiest rank "
               "%.2f MiB, against %.3f ms and %.2f MiB for the cuts that only even the ranks' totals (the least "
               "memory within 1%% of the fastest, %.3f ms)\n",
               notes->cuts_tried, notes->cuts_kept ? "a variant" : "the evened cuts", notes->cuts_kept_first,
               notes->cuts_kept_last, notes->cuts_kept_ms, notes->cuts_kept_peak / 1048576.0, notes->cuts_first_ms,
               notes->cuts_first_peak / 1048576.0, notes->cuts_fastest_ms);
    printf("  predicted step %.3f ms, bubble %.1f%%\n", plan->pred_step_ms, 100.0 * plan->pred_bubble);
    pippy_schedule_report_print(stdout, &notes->schedule);
    printf("  %s\n", notes->cost_note);
}

pippy_status pippy_compile(const pippy_compile_opts *o)
{
    pippy_graph *g = NULL;
    pippy_plan plan;
    memset(&plan, 0, sizeof plan);
    plan.loss = -1;
    pippy_compile_notes notes;
    memset(&notes, 0, sizeof notes);
    pippy_status st = pippy_check_backend_opts(o);
    if (st == PIPPY_OK)
        st = pippy_compile_graph(o, &plan, &g, &notes);
    if (st == PIPPY_OK)
        st = pippy_check_backend(o, g);
    if (st == PIPPY_OK)
        st = pippy_compile_cut(o, &plan, &notes);
    if (st == PIPPY_OK)
        st = pippy_compile_emit(o, &plan);
    if (st == PIPPY_OK && !o->quiet)
        pippy_compile_summary(o, &plan, &notes);
    pippy_plan_free(&plan);
    pippy_graph_free(g);
    return st;
}
