/* train.c — a rank's training run: step after step of the action list, each step fed its batch
 * of the datasets, ended by the STEP action (optimizer), with checkpoints, resume and the final
 * save.
 *
 * Data: every graph input a stage of this rank reads is a whole dataset (samples along dim 0;
 * all of the same length N >= batch). Step k uses the samples at positions [k*B, (k+1)*B) of an
 * endless sequence: epoch after epoch of 0..N-1, or of a permutation per epoch (--shuffle SEED:
 * Fisher-Yates driven by splitmix64 of SEED and the epoch). So a step's batch depends only on
 * its number, and a resumed run sees exactly the batches an uninterrupted one would.
 * STEP: every rank adds what it has (the last stage: the step's M microbatch losses; every stage:
 * the sum of squares of its gradients, a tied gradient counted once) and whether anything is
 * not finite; one all-reduce over every rank gives each the same totals. A non-finite loss or
 * gradient stops the run there, naming the step, before anything is saved. Otherwise each stage
 * clips (torch's clip_grad_norm_ coefficient, applied as the gradients are read), takes the
 * optimizer step over its trained parameters and clears its gradients; rank 0 logs the loss.
 * ALLREDUCE sums a tied parameter's gradient over the stages that hold a copy, so every copy
 * takes the same step and stays bit-identical.
 * Checkpoints (runtime/ckpt.c): each stage's weights (parameters and running statistics) and
 * optimizer state; once every rank has written, rank 0 commits the set. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "collective.h"
#include "optim.h"
#include "rt.h"
#include "tensor_io.h"

#define PIPPY_WORLD_REDUCTION 0xfffff /* the reduction id of STEP's all-reduce over every rank */

typedef struct {
    pippy_rt_input *x;      /* the stage input it feeds */
    pippy_tensor_file file; /* the whole dataset */
    size_t row;             /* bytes of one sample */
} pippy_dataset;

typedef struct {
    int id;
    int stage;              /* the local member */
    size_t off, count;      /* its gradient: byte offset in G, floats */
    int counts_norm;        /* 1 for the lowest member: the norm counts the gradient there */
    int owner;              /* 1 for the lowest member (the owner of a transmitted tie) */
    int last_local;         /* 1 for the last member on this rank: it runs the collective for them all */
    int ranks[PIPPY_RT_MAX_RANKS];
    pippy_group group;      /* the members' distinct ranks, the owner's first */
} pippy_tie;

struct pippy_train {
    pippy_optim_config opt;
    int64_t steps, start, batch, n_samples;
    pippy_dataset *data;
    int n_data;
    int64_t *perm, perm_epoch;
    int world_ranks[PIPPY_RT_MAX_RANKS];
    pippy_group world;
    pippy_tie *ties;
    int n_ties;
    void *scratch;          /* of the collectives */
    FILE *log;
    double t_step, t_print, t_start;
    double cpu_step;        /* process CPU time at the last step report, µs */
};

/* ---------------------------------------------------------------- data */

static uint64_t pippy_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The sample at position pos of the endless sequence. */
static int64_t pippy_train_sample(pippy_rt *rt, int64_t pos)
{
    pippy_train *tr = rt->train;
    int64_t N = tr->n_samples, epoch = pos / N;
    if (!rt->a.shuffle)
        return pos % N;
    if (epoch != tr->perm_epoch) {
        uint64_t s = rt->a.shuffle_seed ^ (0x5851f42d4c957f2dull * (uint64_t)(epoch + 1));
        for (int64_t i = 0; i < N; i++)
            tr->perm[i] = i;
        for (int64_t i = N - 1; i > 0; i--) {
            int64_t j = (int64_t)(pippy_splitmix64(&s) % (uint64_t)(i + 1)), t = tr->perm[i];
            tr->perm[i] = tr->perm[j];
            tr->perm[j] = t;
        }
        tr->perm_epoch = epoch;
    }
    return tr->perm[pos % N];
}

/* Step k's batch into the input slots (microbatch m = rows [m*mb, (m+1)*mb) of the batch). */
static void pippy_train_load(pippy_rt *rt, int64_t k)
{
    pippy_train *tr = rt->train;
    int64_t mine = tr->batch / rt->dp; /* replica d takes rows d*mine .. of the step's batch */
    for (int64_t i = 0; i < mine && tr->n_data > 0; i++) {
        int64_t s = pippy_train_sample(rt, k * tr->batch + rt->replica * mine + i);
        for (int d = 0; d < tr->n_data; d++) {
            pippy_dataset *ds = &tr->data[d];
            memcpy(ds->x->buf + (size_t)i * ds->row, (const uint8_t *)ds->file.data + (size_t)s * ds->row, ds->row);
        }
    }
}

static const char *pippy_arg_value(const char *const *list, int n, const char *name)
{
    size_t nl = strlen(name);
    for (int i = 0; i < n; i++)
        if (strncmp(list[i], name, nl) == 0 && list[i][nl] == '=')
            return list[i] + nl + 1;
    return NULL;
}

/* One dataset: the file's samples must have the stage input's per-sample type. */
static pippy_status pippy_train_dataset(pippy_rt *rt, pippy_rt_stage *sx, int q, pippy_dataset *ds)
{
    pippy_rt_input *x = &sx->in[q];
    const pippy_tdesc *want = &sx->p->inputs[q].t;
    const char *file = pippy_arg_value(rt->a.inputs, rt->a.n_inputs, x->name);
    if (!file)
        return pippy_fail(PIPPY_ERR_USAGE, "graph input '%s' is not given: add --input %s=FILE (a dataset: .npy or .pb)",
                          x->name, x->name);
    PIPPY_TRY(pippy_tensor_read(file, &ds->file));
    const pippy_tdesc *got = &ds->file.t;
    int same = got->dtype == want->dtype && got->rank == want->rank && want->rank >= 1;
    for (int d = 1; same && d < want->rank; d++)
        same = got->dims[d] == want->dims[d];
    if (!same) {
        char a[128], b[128];
        pippy_tdesc w = *want;
        pippy_tdesc_str(&w, a, sizeof a);
        pippy_tdesc_str(got, b, sizeof b);
        return pippy_fail(PIPPY_ERR_SHAPE,
                          "dataset '%s' (%s): expected samples of %s with any number of them in dim 0 (one "
                          "microbatch is %s), found %s",
                          x->name, file, pippy_dtype_name(want->dtype), a, b);
    }
    ds->x = x;
    ds->row = want->dims[0] > 0 ? x->bytes / (size_t)want->dims[0] : 0;
    return PIPPY_OK;
}

static pippy_status pippy_train_datasets(pippy_rt *rt)
{
    pippy_train *tr = rt->train;
    int n = 0;
    for (int i = 0; i < rt->n_st; i++)
        for (int q = 0; q < rt->st[i].n_in; q++)
            n += rt->st[i].in[q].from < 0;
    tr->data = calloc((size_t)n + 1, sizeof *tr->data);
    if (!tr->data)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    const char *first = NULL;
    for (int i = 0; i < rt->n_st; i++)
        for (int q = 0; q < rt->st[i].n_in; q++) {
            if (rt->st[i].in[q].from >= 0)
                continue;
            pippy_dataset *ds = &tr->data[tr->n_data++];
            PIPPY_TRY(pippy_train_dataset(rt, &rt->st[i], q, ds));
            int64_t N = ds->file.t.dims[0];
            if (first && N != tr->n_samples)
                return pippy_fail(PIPPY_ERR_SHAPE, "the datasets differ in length: '%s' has %lld samples, '%s' %lld",
                                  first, (long long)tr->n_samples, ds->x->name, (long long)N);
            if (N < tr->batch)
                return pippy_fail(PIPPY_ERR_SHAPE, "dataset '%s' has %lld samples, fewer than one batch of %lld",
                                  ds->x->name, (long long)N, (long long)tr->batch);
            first = ds->x->name;
            tr->n_samples = N;
        }
    if (rt->a.shuffle && tr->n_samples > 0) {
        tr->perm = malloc((size_t)tr->n_samples * sizeof *tr->perm);
        if (!tr->perm)
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    }
    tr->perm_epoch = -1;
    return PIPPY_OK;
}

/* ---------------------------------------------------------------- set-up */

/* The tied reductions with a member on this rank, from schedule.json's "reductions". */
static pippy_status pippy_train_ties(pippy_rt *rt)
{
    pippy_train *tr = rt->train;
    const cJSON *reds = cJSON_GetObjectItemCaseSensitive(rt->sched, "reductions"), *r;
    tr->ties = calloc((size_t)cJSON_GetArraySize(reds) * (size_t)rt->n_st + 1, sizeof *tr->ties);
    if (!tr->ties)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    int id = 0;
    cJSON_ArrayForEach(r, reds)
    {
        const cJSON *sts = cJSON_GetObjectItemCaseSensitive(r, "stages");
        const cJSON *offs = cJSON_GetObjectItemCaseSensitive(r, "offsets");
        const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(r, "bytes");
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(r, "kind");
        int dp = cJSON_IsString(kind) && !strcmp(kind->valuestring, "data_parallel");
        int n = cJSON_GetArraySize(sts);
        for (int k = 0; k < n; k++) {
            int s = (int)cJSON_GetArrayItem(sts, k)->valuedouble;
            pippy_rt_stage *sx = pippy_rt_stage_of(rt, s);
            const cJSON *off = cJSON_GetArrayItem(offs, k);
            if (!sx)
                continue;
            if (!cJSON_IsNumber(off) || !cJSON_IsNumber(bytes) || off->valuedouble < 0 ||
                off->valuedouble + bytes->valuedouble > (double)sx->p->trainable_bytes)
                return pippy_fail(PIPPY_ERR_FORMAT, "schedule.json: reduction %d: stage %d's range is outside its %llu "
                                                    "bytes of trained parameters",
                                  id, s, (unsigned long long)sx->p->trainable_bytes);
            pippy_tie *t = &tr->ties[tr->n_ties++];
            t->id = id;
            t->stage = s;
            t->off = (size_t)off->valuedouble;
            t->count = (size_t)bytes->valuedouble / sizeof(float);
            t->counts_norm = t->owner = k == 0;
            int nr = 0, me = 0;
            for (int j = 0; dp && j < rt->dp; j++) /* the stage in every replica */
                me = j == rt->replica ? j : me, t->ranks[nr++] = j * rt->pp_ranks + rt->stage_rank[s] % rt->pp_ranks;
            for (int j = 0; !dp && j < n; j++) {
                int rk = rt->stage_rank[(int)cJSON_GetArrayItem(sts, j)->valuedouble], seen = 0;
                for (int q = 0; q < nr; q++)
                    seen |= t->ranks[q] == rk;
                if (!seen)
                    me = rk == rt->rank ? nr : me, t->ranks[nr++] = rk;
            }
            t->group = (pippy_group){t->ranks, nr, me};
        }
        id++;
    }
    /* the member whose collective comes last in this rank's list runs it for the members here */
    for (int k = 0; k < rt->n_acts; k++) {
        const pippy_action *a = &rt->acts[k];
        if (!pippy_act_info_of(a->kind)->collective || a->kind == PIPPY_ACT_STEP)
            continue;
        for (int i = 0; i < tr->n_ties; i++)
            if (tr->ties[i].id == a->peer)
                tr->ties[i].last_local = tr->ties[i].stage == a->stage;
    }
    return PIPPY_OK;
}

static pippy_status pippy_train_optimizer(pippy_rt *rt)
{
    pippy_train *tr = rt->train;
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(rt->sched, "training"),
                                                      "optimizer");
    pippy_status st = pippy_optim_from_json(j, &tr->opt);
    if (st != PIPPY_OK)
        return pippy_error_prefix(st, "schedule.json");
    for (int i = 0; i < rt->n_st; i++) {
        pippy_rt_stage *sx = &rt->st[i];
        size_t n = pippy_optim_state_floats(&tr->opt, sx->p->trainable_bytes / sizeof(float));
        sx->opt = calloc(n ? n : 1, sizeof *sx->opt);
        sx->opt_bytes = n * sizeof *sx->opt;
        if (!sx->opt)
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory for the optimizer state (%zu floats)", n);
    }
    return PIPPY_OK;
}

static pippy_status pippy_train_resume(pippy_rt *rt);

pippy_status pippy_train_setup(pippy_rt *rt)
{
    pippy_train *tr = calloc(1, sizeof *tr);
    if (!tr)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    rt->train = tr;
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(rt->sched, "config");
    const cJSON *batch = cJSON_GetObjectItemCaseSensitive(cfg, "batch");
    tr->batch = cJSON_IsNumber(batch) ? (int64_t)batch->valuedouble : 0;
    if (tr->batch < 1)
        return pippy_fail(PIPPY_ERR_FORMAT, "schedule.json: config.batch is missing");
    PIPPY_TRY(pippy_train_optimizer(rt));
    PIPPY_TRY(pippy_train_datasets(rt));
    PIPPY_TRY(pippy_train_ties(rt));
    for (int r = 0; r < rt->nranks; r++)
        tr->world_ranks[r] = r;
    tr->world = (pippy_group){tr->world_ranks, rt->nranks, rt->rank};
    size_t scratch = pippy_allreduce_scratch_elems(rt->nranks, 4) * sizeof(double);
    for (int i = 0; i < tr->n_ties; i++) {
        size_t a = pippy_allreduce_scratch_elems(tr->ties[i].group.n, tr->ties[i].count);
        size_t r = pippy_reduce_scratch_elems(tr->ties[i].group.n, tr->ties[i].count);
        size_t b = (a > r ? a : r) * sizeof(float);
        scratch = b > scratch ? b : scratch;
    }
    tr->scratch = calloc(1, scratch + 64);
    if (!tr->scratch)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    if (rt->a.steps <= 0 && rt->a.epochs <= 0)
        return pippy_fail(PIPPY_ERR_USAGE, "how long? give --steps N or --epochs E");
    return PIPPY_OK;
}

/* v[0..4) summed over every rank (a barrier too); nothing to do for a job of one rank. */
static pippy_status pippy_train_world_sum(pippy_rt *rt, double *v)
{
    if (rt->nranks == 1)
        return PIPPY_OK;
    uint64_t tag = pippy_tag_make(PIPPY_TAG_REDUCTION, PIPPY_WORLD_REDUCTION, 0);
    return pippy_allreduce_f64(rt->t, &rt->train->world, v, 4, PIPPY_REDUCE_SUM, tag, rt->train->scratch);
}

/* ---------------------------------------------------------------- checkpoints */

static pippy_status pippy_train_ckpt_parts(pippy_rt_stage *sx, const pippy_train *tr, int64_t *meta,
                                           pippy_ckpt_part *parts)
{
    parts[0] = (pippy_ckpt_part){"params", sx->W, sx->p->weights_bytes};
    parts[1] = (pippy_ckpt_part){
        "optim", sx->opt, pippy_optim_state_floats(&tr->opt, sx->p->trainable_bytes / sizeof(float)) * sizeof(float)};
    parts[2] = (pippy_ckpt_part){"meta", meta, 4 * sizeof *meta};
    return PIPPY_OK;
}

/* Every stage of this rank writes its file of step `done`; after all ranks did, rank 0 commits. */
static pippy_status pippy_train_checkpoint(pippy_rt *rt, const char *dir, int64_t done)
{
    pippy_train *tr = rt->train;
    pippy_status st = PIPPY_OK;
    for (int i = 0; i < rt->n_st && st == PIPPY_OK && rt->replica == 0; i++) { /* the replicas are equal */
        pippy_rt_stage *sx = &rt->st[i];
        int64_t meta[4] = {done, tr->batch, rt->M, (int64_t)tr->opt.kind};
        pippy_ckpt_part parts[3];
        pippy_train_ckpt_parts(sx, tr, meta, parts);
        st = pippy_ckpt_write(dir, done, sx->stage, sx->p->hash, parts, 3);
    }
    double ok[4] = {st == PIPPY_OK ? 0.0 : 1.0, 0, 0, 0};
    if (st != PIPPY_OK)
        return pippy_error_prefix(st, "checkpoint of step %lld", (long long)done);
    PIPPY_TRY(pippy_train_world_sum(rt, ok));
    if (ok[0] > 0)
        return pippy_fail(PIPPY_ERR_IO, "checkpoint of step %lld: another rank could not write its part",
                          (long long)done);
    int n_stages = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(rt->sched, "stages"));
    return rt->rank == 0 ? pippy_ckpt_commit(dir, done, n_stages) : PIPPY_OK;
}

static pippy_status pippy_train_resume(pippy_rt *rt)
{
    pippy_train *tr = rt->train;
    int64_t done = -1;
    PIPPY_TRY(pippy_ckpt_latest(rt->a.resume_dir, &done));
    if (done < 0)
        return pippy_fail(PIPPY_ERR_IO, "--resume %s: no complete checkpoint there", rt->a.resume_dir);
    for (int i = 0; i < rt->n_st; i++) {
        pippy_rt_stage *sx = &rt->st[i];
        int64_t meta[4];
        pippy_ckpt_part parts[3];
        pippy_train_ckpt_parts(sx, tr, meta, parts);
        PIPPY_TRY(pippy_ckpt_read(rt->a.resume_dir, done, sx->stage, sx->p->hash, parts, 3));
        if (meta[0] != done || meta[1] != tr->batch || meta[2] != rt->M)
            return pippy_fail(PIPPY_ERR_INVALID, "--resume %s: step %lld was saved with batch %lld x %lld microbatches, "
                                                 "this run has %lld x %d",
                              rt->a.resume_dir, (long long)done, (long long)meta[1], (long long)meta[2],
                              (long long)tr->batch, rt->M);
    }
    tr->start = done;
    if (done >= tr->steps)
        return pippy_fail(PIPPY_ERR_USAGE, "--resume %s: the checkpoint is at step %lld, and --steps is %lld: nothing "
                                           "left to run",
                          rt->a.resume_dir, (long long)done, (long long)tr->steps);
    return PIPPY_OK;
}

/* ---------------------------------------------------------------- actions */

/* ALLREDUCE: a replicated tie's gradient summed on every holder; REDUCE: a transmitted tie's
 * gradient summed into its owner; BROADCAST: the owner's parameter copied to the other holders. */
/* Tie entry i's gradient (grad) or parameter (else). */
static float *pippy_tie_buf(pippy_rt *rt, const pippy_tie *t, int grad)
{
    pippy_rt_stage *sx = pippy_rt_stage_of(rt, t->stage);
    return (float *)((grad ? sx->G : sx->W) + t->off);
}

/* The collective of tie t (its last member on this rank): the members on this rank are summed (or
 * copied) locally, the distinct ranks exchange once. */
static pippy_status pippy_tie_collective(pippy_rt *rt, const pippy_tie *t, int kind)
{
    pippy_train *tr = rt->train;
    const pippy_tie *lead = t; /* the buffer that takes part: the owner's when it is here */
    for (int i = 0; i < tr->n_ties; i++)
        if (tr->ties[i].id == t->id && tr->ties[i].owner)
            lead = &tr->ties[i];
    float *buf = pippy_tie_buf(rt, lead, kind != PIPPY_ACT_BROADCAST);
    for (int i = 0; i < tr->n_ties && kind != PIPPY_ACT_BROADCAST; i++)
        if (tr->ties[i].id == t->id && &tr->ties[i] != lead)
            pippy_optim_add(buf, pippy_tie_buf(rt, &tr->ties[i], 1), t->count);
    uint64_t tag = pippy_tag_make(PIPPY_TAG_REDUCTION, t->id * 4 + (kind - PIPPY_ACT_ALLREDUCE), 0);
    pippy_status st = PIPPY_OK;
    if (t->group.n > 1 && kind == PIPPY_ACT_ALLREDUCE)
        st = pippy_allreduce_f32(rt->t, &t->group, buf, t->count, PIPPY_REDUCE_SUM, tag, tr->scratch);
    else if (t->group.n > 1 && kind == PIPPY_ACT_REDUCE)
        st = pippy_reduce(rt->t, &t->group, 0, PIPPY_DT_FLOAT, buf, t->count, PIPPY_REDUCE_SUM, tag, tr->scratch);
    else if (t->group.n > 1)
        st = pippy_broadcast(rt->t, &t->group, 0, buf, t->count * sizeof(float), tag);
    for (int i = 0; i < tr->n_ties && st == PIPPY_OK && kind != PIPPY_ACT_REDUCE; i++)
        if (tr->ties[i].id == t->id && &tr->ties[i] != lead)
            memcpy(pippy_tie_buf(rt, &tr->ties[i], kind == PIPPY_ACT_ALLREDUCE), buf, t->count * sizeof(float));
    return st;
}

/* ALLREDUCE: a replicated tie's gradient summed on every holder; REDUCE: a transmitted tie's
 * gradient summed into its owner; BROADCAST: the owner's parameter copied to the other holders.
 * Members on one rank: the earlier ones only contribute (their buffers are read by the last). */
pippy_status pippy_train_collective(pippy_rt *rt, const pippy_action *a)
{
    pippy_train *tr = rt->train;
    for (int i = 0; i < tr->n_ties; i++) {
        pippy_tie *t = &tr->ties[i];
        if (t->id != a->peer || t->stage != a->stage)
            continue;
        if (!t->last_local)
            return PIPPY_OK;
        double t0 = pippy_rt_now_us();
        pippy_status st = pippy_tie_collective(rt, t, a->kind);
        if (rt->trace) { /* from the call (waiting for the other members included) to its end */
            pippy_trace_arg args[3] = {{"reduction", t->id}, {"bytes", (int64_t)(t->count * sizeof(float))},
                                       {"processes", t->group.n}};
            pippy_trace_event_args(rt->trace, PIPPY_LANE_COMPUTE, pippy_act_info_of(a->kind)->name, "collective",
                                   (uint64_t)t0, (uint64_t)(pippy_rt_now_us() - t0), args, 3);
        }
        return st == PIPPY_OK ? st : pippy_error_prefix(st, "%s of tied parameter %d", pippy_act_info_of(a->kind)->name,
                                                        t->id);
    }
    return pippy_fail(PIPPY_ERR_INVALID, "rank %d: %s of reduction %d for stage %d, which does not hold it", rt->rank,
                      pippy_act_info_of(a->kind)->name, a->peer, a->stage);
}

/* This rank's part of the step's totals: loss sum, gradient sum of squares. */
static void pippy_train_local(pippy_rt *rt, double *loss, double *sumsq)
{
    pippy_train *tr = rt->train;
    *loss = 0;
    *sumsq = 0;
    for (int i = 0; i < rt->n_st; i++) {
        pippy_rt_stage *sx = &rt->st[i];
        if (sx->loss_out >= 0)
            for (int m = 0; m < rt->M; m++)
                *loss += ((const float *)sx->out[sx->loss_out].buf)[m];
        *sumsq += pippy_optim_sumsq((const float *)sx->G, sx->p->trainable_bytes / sizeof(float));
        for (int k = 0; k < tr->n_ties; k++)
            if (tr->ties[k].stage == sx->stage && !tr->ties[k].counts_norm)
                *sumsq -= pippy_optim_sumsq((const float *)(sx->G + tr->ties[k].off), tr->ties[k].count);
    }
}

static void pippy_train_report(pippy_rt *rt, double loss, double lr)
{
    pippy_train *tr = rt->train;
    double now = pippy_rt_now_us(), ms = (now - tr->t_step) / 1e3, cpu = pippy_rt_cpu_us(CLOCK_PROCESS_CPUTIME_ID);
    double sps = ms > 0 ? (double)tr->batch * 1e3 / ms : 0;
    if (tr->log) {
        fprintf(tr->log,
                "{\"step\": %lld, \"loss\": %.9g, \"lr\": %.9g, \"ms\": %.3f, \"cpu_ms\": %.3f, \"samples_per_s\": %.1f}\n",
                (long long)rt->step, loss, lr, ms, (cpu - tr->cpu_step) / 1e3, sps);
        fflush(tr->log);
    }
    tr->cpu_step = cpu;
    int last = rt->step + 1 == tr->steps;
    if (rt->rank == 0 && !rt->a.quiet && (now - tr->t_print >= 1e6 || last || rt->step == tr->start)) {
        printf("step %lld/%lld loss %.6f lr %.3g %.1f ms/step %.0f samples/s\n", (long long)rt->step,
               (long long)tr->steps, loss, lr, ms, sps);
        tr->t_print = now;
    }
    tr->t_step = now;
}

pippy_status pippy_train_step(pippy_rt *rt)
{
    pippy_train *tr = rt->train;
    double v[4] = {0, 0, 0, 0};
    pippy_train_local(rt, &v[0], &v[1]);
    v[2] = isfinite(v[0]) && isfinite(v[1]) ? 0.0 : 1.0;
    double w0 = pippy_rt_now_us();
    PIPPY_TRY(pippy_train_world_sum(rt, v));
    if (rt->trace) { /* the step's totals (loss, gradient norm, finite) summed over every rank */
        pippy_trace_arg args[2] = {{"bytes", (int64_t)sizeof v}, {"processes", rt->nranks}};
        pippy_trace_event_args(rt->trace, PIPPY_LANE_COMPUTE, "STEP", "collective", (uint64_t)w0,
                               (uint64_t)(pippy_rt_now_us() - w0), args, 2);
    }
    double loss = v[0] / ((double)rt->M * rt->dp); /* every replica's microbatches */
    v[1] /= rt->dp;                                /* the replicas hold the same (averaged) gradients */
    if (v[2] > 0 || !isfinite(loss) || !isfinite(v[1]))
        return pippy_fail(PIPPY_ERR_INVALID,
                          "step %lld: the %s is not finite (loss %g, gradient norm %g); stopping before the "
                          "optimizer step and without saving",
                          (long long)rt->step, isfinite(loss) ? "gradient" : "loss", loss, sqrt(v[1]));
    double coef = pippy_optim_clip_coef(tr->opt.clip_grad_norm, v[1]);
    double lr = pippy_optim_lr(&tr->opt, rt->step);
    double t0 = pippy_rt_now_us(), c0 = rt->trace ? pippy_rt_cpu_us(CLOCK_THREAD_CPUTIME_ID) : 0;
    for (int i = 0; i < rt->n_st; i++) {
        pippy_rt_stage *sx = &rt->st[i];
        size_t n = sx->p->trainable_bytes / sizeof(float);
        pippy_optim_step(&tr->opt, rt->step + 1, lr, (float)coef, (float *)sx->W, (const float *)sx->G, sx->opt, n);
        memset(sx->G, 0, sx->p->trainable_bytes);
    }
    if (rt->trace) { /* the optimizer step and the clearing of the gradients, on the compute lane */
        pippy_trace_arg arg = {"cpu_us", (int64_t)(pippy_rt_cpu_us(CLOCK_THREAD_CPUTIME_ID) - c0)};
        pippy_trace_event_args(rt->trace, PIPPY_LANE_COMPUTE, "optimizer", "compute", (uint64_t)t0,
                               (uint64_t)(pippy_rt_now_us() - t0), &arg, 1);
    }
    pippy_train_report(rt, loss, lr);
    return PIPPY_OK;
}

/* After the ranks are connected: the number of steps (--epochs: from the dataset size, which only
 * the ranks that read data know), the cosine decay, resume and the loss log. */
static pippy_status pippy_train_begin(pippy_rt *rt)
{
    pippy_train *tr = rt->train;
    if (rt->a.steps > 0) {
        tr->steps = rt->a.steps;
    } else {
        double v[4] = {(double)tr->n_samples, tr->n_samples > 0, 0, 0};
        PIPPY_TRY(pippy_train_world_sum(rt, v));
        int64_t n = v[1] > 0 ? (int64_t)(v[0] / v[1] + 0.5) : 0;
        if (n < 1)
            return pippy_fail(PIPPY_ERR_USAGE, "--epochs: no rank reads a dataset; give --steps");
        tr->steps = (rt->a.epochs * n + tr->batch - 1) / tr->batch;
    }
    if (tr->opt.schedule == PIPPY_LR_COSINE && tr->opt.decay_steps == 0) {
        tr->opt.decay_steps = tr->steps - tr->opt.warmup_steps;
        if (tr->opt.decay_steps < 1)
            return pippy_fail(PIPPY_ERR_USAGE, "--lr-schedule cosine: %lld steps leave nothing to decay after %lld "
                                               "warm-up steps (give more --steps, or --decay-steps when compiling)",
                              (long long)tr->steps, (long long)tr->opt.warmup_steps);
    }
    if (rt->a.resume_dir)
        PIPPY_TRY(pippy_train_resume(rt));
    /* resuming into the same folder: a later step the killed run left half written goes first (rank 0
     * does it before its first STEP, so before any rank can write again) */
    if (rt->a.resume_dir && rt->a.checkpoint_dir && rt->rank == 0 && !strcmp(rt->a.resume_dir, rt->a.checkpoint_dir))
        PIPPY_TRY(pippy_ckpt_prune(rt->a.checkpoint_dir, tr->start));
    if (rt->rank == 0 && rt->a.loss_log) {
        tr->log = fopen(rt->a.loss_log, tr->start > 0 ? "a" : "w");
        if (!tr->log)
            return pippy_fail(PIPPY_ERR_IO, "cannot write the loss log %s: %s", rt->a.loss_log, strerror(errno));
    }
    return PIPPY_OK;
}

/* ---------------------------------------------------------------- the run */

pippy_status pippy_train_run(pippy_rt *rt)
{
    pippy_train *tr = rt->train;
    PIPPY_TRY(pippy_train_begin(rt));
    rt->step0 = tr->start;
    tr->t_step = tr->t_start = pippy_rt_now_us();
    tr->cpu_step = pippy_rt_cpu_us(CLOCK_PROCESS_CPUTIME_ID);
    for (rt->step = tr->start; rt->step < tr->steps; rt->step++) {
        pippy_train_load(rt, rt->step);
        PIPPY_TRY(pippy_rt_run(rt));
        int64_t done = rt->step + 1;
        if (rt->a.checkpoint_dir && (done == tr->steps || (rt->a.checkpoint_every > 0 && done % rt->a.checkpoint_every == 0)))
            PIPPY_TRY(pippy_train_checkpoint(rt, rt->a.checkpoint_dir, done));
    }
    if (rt->a.save_dir)
        PIPPY_TRY(pippy_train_checkpoint(rt, rt->a.save_dir, rt->step));
    return PIPPY_OK;
}

void pippy_train_free(pippy_rt *rt)
{
    pippy_train *tr = rt->train;
    if (!tr)
        return;
    for (int d = 0; d < tr->n_data; d++)
        pippy_tensor_file_free(&tr->data[d].file);
    free(tr->data), free(tr->perm), free(tr->ties), free(tr->scratch);
    if (tr->log)
        fclose(tr->log);
    free(tr);
    rt->train = NULL;
}
