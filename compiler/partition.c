/* partition.c — where to cut: PipeSplit annotations, the model's
 * "pippy.split_before" metadata, --split-before, or the cost model.
 *
 * Stages are contiguous ranges of the (topological) node order. Automatic
 * splitting chooses the ranges by dynamic programming so that the slowest
 * stage, counting what it sends on, is as fast as possible. In training a
 * node's cost includes its backward: the nodes the autodiff makes for it. */
#include "plan.h"

#include "autodiff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *pippy_split_source_name(int32_t s)
{
    switch (s) {
    case PIPPY_SPLIT_PIPESPLIT: return "annotation (PipeSplit)";
    case PIPPY_SPLIT_METADATA: return "annotation (metadata pippy.split_before)";
    case PIPPY_SPLIT_CLI: return "command line (--split-before)";
    case PIPPY_SPLIT_AUTO: return "cost model";
    default: return "none (one stage)";
    }
}

static int pippy_is_pipesplit(const pippy_node *n)
{
    return strcmp(n->domain, "pippy") == 0 && strcmp(n->op, "PipeSplit") == 0;
}

int32_t pippy_pipesplit_points(const pippy_graph *g, const char **names, int32_t cap)
{
    int32_t k = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const pippy_node *n = &g->nodes[i];
        if (!pippy_is_pipesplit(n) || n->n_in < 1 || n->in[0] < 0)
            continue;
        int32_t prod = g->values[n->in[0]].producer;
        if (k < cap)
            names[k] = prod >= 0 ? g->nodes[prod].name : g->values[n->in[0]].name;
        k++;
    }
    return k;
}

/* Replace every use of value `from` by `to`. */
static void pippy_rewire(pippy_graph *g, int32_t from, int32_t to)
{
    for (int32_t i = 0; i < g->n_nodes; i++)
        for (int32_t k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] == from)
                g->nodes[i].in[k] = to;
    for (int32_t o = 0; o < g->n_outputs; o++)
        if (g->outputs[o] == from) {
            g->outputs[o] = to;
            g->values[to].is_output = 1;
        }
}

/* Marks cut before live position `pos` (positions index the live-node list). */
static void pippy_add_cut(char *cut, int32_t n_live, int32_t pos)
{
    if (pos > 0 && pos < n_live)
        cut[pos] = 1;
}

/* Resolve a --split-before entry: exact node name, else the first node whose name
 * starts with it. Returns the live position the stage starts at, or -1. A node
 * folded away maps to the next live node. */
static int32_t pippy_resolve_split(const pippy_graph *g, const int32_t *live_pos, const char *name)
{
    int32_t hit = -1;
    for (int32_t i = 0; i < g->n_nodes && hit < 0; i++)
        if (strcmp(g->nodes[i].name, name) == 0)
            hit = i;
    size_t nl = strlen(name);
    for (int32_t i = 0; i < g->n_nodes && hit < 0; i++)
        if (!g->nodes[i].removed && strncmp(g->nodes[i].name, name, nl) == 0)
            hit = i;
    if (hit < 0)
        return -1;
    for (int32_t i = hit; i < g->n_nodes; i++)
        if (live_pos[i] >= 0)
            return live_pos[i];
    return -1;
}

static pippy_status pippy_cuts_from_list(const pippy_graph *g, const int32_t *live_pos, int32_t n_live,
                                         const char *list, const char *what, char *cut)
{
    char *copy = strdup(list);
    if (!copy)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    pippy_status st = PIPPY_OK;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (!*tok)
            continue;
        int32_t pos = pippy_resolve_split(g, live_pos, tok);
        if (pos < 0) {
            /* suggest names sharing the longest prefix */
            char hint[512] = "";
            size_t best = 0, k = 0;
            for (int32_t i = 0; i < g->n_nodes; i++) {
                size_t c = 0;
                while (tok[c] && tok[c] == g->nodes[i].name[c])
                    c++;
                if (c > best)
                    best = c;
            }
            for (int32_t i = 0, shown = 0; i < g->n_nodes && shown < 4 && best > 0; i++) {
                if (g->nodes[i].removed || strncmp(g->nodes[i].name, tok, best) != 0)
                    continue;
                k += (size_t)snprintf(hint + k, sizeof hint - k, "%s'%s'", shown ? ", " : "", g->nodes[i].name);
                shown++;
                if (k >= sizeof hint)
                    break;
            }
            st = pippy_fail(PIPPY_ERR_USAGE, "%s '%s': no node name is or starts with it%s%s%s", what, tok,
                            hint[0] ? " (close: " : "", hint, hint[0] ? ")" : "");
            break;
        }
        if (pos == 0) {
            st = pippy_fail(PIPPY_ERR_USAGE, "%s '%s': that is the first node, so the stage before it would be empty",
                            what, tok);
            break;
        }
        pippy_add_cut(cut, n_live, pos);
    }
    free(copy);
    return st;
}

typedef struct {
    const char *name;
    int32_t pos;
} pippy_named_pos;

static int pippy_named_pos_cmp(const void *a, const void *b)
{
    return strcmp(((const pippy_named_pos *)a)->name, ((const pippy_named_pos *)b)->name);
}

/* The forward node a backward node was made for: its name is "<forward node>/grad<k>_<op>". */
static int32_t pippy_grad_owner(const char *name, const pippy_named_pos *names, int32_t n)
{
    const char *at = NULL;
    for (const char *q = strstr(name, "/grad"); q; q = strstr(q + 1, "/grad"))
        if (q[5] >= '0' && q[5] <= '9')
            at = q;
    if (!at || at - name >= 1024)
        return -1;
    char base[1024];
    memcpy(base, name, (size_t)(at - name));
    base[at - name] = 0;
    pippy_named_pos key = {base, 0};
    const pippy_named_pos *hit = bsearch(&key, names, (size_t)n, sizeof *names, pippy_named_pos_cmp);
    return hit ? hit->pos : -1;
}

/* Training: add to cost[k] (live node k's forward cost) the cost of the backward nodes the
 * autodiff makes for it, differentiating a copy of the graph as one stage. A first layer whose
 * input needs no gradient, or a loss with a costly gradient, weighs what it will really cost;
 * the forward alone would misplace the cut. Left as it is when the copy cannot be
 * differentiated (the real autodiff, after the cut, reports why). */
static pippy_status pippy_partition_backward_costs(pippy_plan *p, const int32_t *live, int32_t n_live, double *cost)
{
    pippy_graph *c = NULL;
    PIPPY_TRY(pippy_graph_clone(p->g, &c));
    pippy_named_pos *names = malloc(((size_t)n_live + 1) * sizeof *names);
    if (!names) {
        pippy_graph_free(c);
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory partitioning");
    }
    for (int32_t k = 0; k < n_live; k++) {
        c->nodes[live[k]].stage = 0;
        names[k] = (pippy_named_pos){c->nodes[live[k]].name, k};
    }
    qsort(names, (size_t)n_live, sizeof *names, pippy_named_pos_cmp);
    int32_t first = c->n_nodes;
    pippy_autodiff_opts ao = {p->loss, p->microbatches};
    if (pippy_autodiff(c, &ao) == PIPPY_OK) {
        for (int32_t i = first; i < c->n_nodes; i++) {
            if (c->nodes[i].removed)
                continue;
            int32_t k = pippy_grad_owner(c->nodes[i].name, names, n_live);
            if (k < 0)
                continue;
            pippy_op_desc d;
            pippy_graph_op_desc(c, i, &d);
            cost[k] += pippy_cost_node_s(&p->cost, &d, pippy_graph_far_share(c, i));
        }
    }
    free(names);
    pippy_graph_free(c);
    return PIPPY_OK;
}

/* The time of stage [i, j) of the node order as the partition prices it: its nodes, what it sends
 * at j and half of what it receives at i (pre: prefix sums of node costs; xfer: transfer at each
 * cut position). */
static double pippy_span_s(const double *pre, const double *xfer, int32_t i, int32_t j)
{
    return pre[j] - pre[i] + xfer[j] + 0.5 * xfer[i];
}

/* Of the stages at[0] = 0 < at[1] < ... < at[S] (stage s on rank s % R): the busiest rank's total
 * and the slowest stage. */
static void pippy_cuts_score(const double *pre, const double *xfer, const int32_t *at, int32_t S, int32_t R,
                             double *rank_max, double *stage_max)
{
    double rank[PIPPY_MAX_STAGES] = {0};
    *rank_max = *stage_max = 0;
    for (int32_t s = 0; s < S; s++) {
        double t = pippy_span_s(pre, xfer, at[s], at[s + 1]);
        rank[s % R] += t;
        *stage_max = t > *stage_max ? t : *stage_max;
    }
    for (int32_t r = 0; r < R; r++)
        *rank_max = rank[r] > *rank_max ? rank[r] : *rank_max;
}

/* Several stages per rank (interleaved-1f1b): a rank runs all its stages' work every microbatch, so
 * the step follows the busiest rank's total more than the slowest stage. The minimax cuts make the
 * slowest stage as fast as it can be but may leave one rank with the two heavier stages (the GPT in
 * 4 stages on 2 ranks: 27.4 + 27.2 ms against 24.1 + 23.9). Moves one of the cuts lo..hi at a time to
 * where it lowers the busiest rank's total (equal totals: the slowest stage), until no move does. */
static void pippy_cuts_balance_ranks(const double *pre, const double *xfer, int32_t *at, int32_t S, int32_t R,
                                     int32_t lo, int32_t hi)
{
    double best_rank, best_stage;
    pippy_cuts_score(pre, xfer, at, S, R, &best_rank, &best_stage);
    for (int moved = 1, pass = 0; moved && pass < 64; pass++) {
        moved = 0;
        for (int32_t s = lo; s <= hi; s++) {
            int32_t keep = at[s], to = keep;
            for (at[s] = at[s - 1] + 1; at[s] < at[s + 1]; at[s]++) {
                double rk, st, tol = 1e-9 * best_rank;
                pippy_cuts_score(pre, xfer, at, S, R, &rk, &st);
                if (rk < best_rank - tol || (rk <= best_rank + tol && st < best_stage - tol)) {
                    best_rank = rk, best_stage = st, to = at[s];
                }
            }
            at[s] = to;
            moved |= to != keep;
        }
    }
}

/* A variant of the cuts at (pippy_partition): the first stage cut to about f0 of its priced time,
 * the last to about fl, and the cuts between moved to even the ranks again. */
static void pippy_cuts_variant(const double *pre, const double *xfer, const int32_t *at, int32_t S, int32_t R,
                               double f0, double fl, int32_t *out)
{
    int32_t n = at[S];
    memcpy(out, at, ((size_t)S + 1) * sizeof *out);
    double t0 = f0 * pippy_span_s(pre, xfer, 0, at[1]), tl = fl * pippy_span_s(pre, xfer, at[S - 1], n);
    while (f0 < 1 && out[1] > 1 && pippy_span_s(pre, xfer, 0, out[1] - 1) >= t0)
        out[1]--;
    while (fl < 1 && out[S - 1] + 1 < n && pippy_span_s(pre, xfer, out[S - 1] + 1, n) >= tl)
        out[S - 1]++;
    pippy_cuts_balance_ranks(pre, xfer, out, S, R, f0 < 1 ? 2 : 1, fl < 1 ? S - 2 : S - 1);
}

/* The cuts to simulate: at first, then its variants (pippy_cuts_variant, first and last stage at
 * 1, 3/4, 1/2, 1/4) whose busiest rank is priced within 5% of at's, each once. */
static void pippy_cuts_candidates(const double *pre, const double *xfer, const int32_t *at, int32_t S, int32_t R,
                                  pippy_cuts *c)
{
    static const double share[] = {1, 0.75, 0.5, 0.25};
    size_t row = ((size_t)S + 1) * sizeof *at;
    memcpy(c->at[0], at, row);
    c->n = 1;
    if (R < 2 || R >= S)
        return;
    double base, stage;
    pippy_cuts_score(pre, xfer, at, S, R, &base, &stage);
    for (int32_t i = 0; i < 4; i++)
        for (int32_t j = 0; j < 4 && c->n < PIPPY_MAX_CUT_CANDIDATES; j++) {
            int32_t *v = c->at[c->n], seen = 0;
            pippy_cuts_variant(pre, xfer, at, S, R, share[i], share[j], v);
            double rk;
            pippy_cuts_score(pre, xfer, v, S, R, &rk, &stage);
            for (int32_t k = 0; k < c->n; k++)
                seen |= !memcmp(c->at[k], v, row);
            c->n += !seen && rk <= 1.05 * base;
        }
}

/* The cost model's prices of the live nodes: pre[k + 1] - pre[k] is live node k's time (training:
 * with its backward), xfer[c] the transfer time of what crosses a cut before live node c. */
static pippy_status pippy_partition_prices(pippy_plan *p, const int32_t *live, const int32_t *live_pos,
                                           int32_t n_live, double *pre, double *xfer)
{
    pippy_graph *g = p->g;
    for (int32_t k = 0; k < n_live; k++) {
        pippy_op_desc d;
        pippy_graph_op_desc(g, live[k], &d);
        pre[k + 1] = pippy_cost_node_s(&p->cost, &d, pippy_graph_far_share(g, live[k]));
    }
    if (p->training && p->loss >= 0)
        PIPPY_TRY(pippy_partition_backward_costs(p, live, n_live, pre + 1));
    for (int32_t k = 0; k < n_live; k++)
        pre[k + 1] += pre[k];
    /* a value crosses cut c when made before c (or a graph input) and used at or after c */
    int32_t *last_use = malloc((size_t)g->n_values * sizeof *last_use);
    double *diff = calloc((size_t)n_live + 2, sizeof *diff);
    if (!last_use || !diff) {
        free(last_use), free(diff);
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory partitioning");
    }
    for (int32_t v = 0; v < g->n_values; v++)
        last_use[v] = -1;
    for (int32_t k = 0; k < n_live; k++) {
        const pippy_node *n = &g->nodes[live[k]];
        for (int32_t q = 0; q < n->n_in; q++)
            if (n->in[q] >= 0)
                last_use[n->in[q]] = k;
    }
    for (int32_t q = 0; q < g->n_outputs; q++)
        last_use[g->outputs[q]] = n_live;
    for (int32_t v = 0; v < g->n_values; v++) {
        const pippy_value *val = &g->values[v];
        if (last_use[v] < 0 || (val->kind != PIPPY_VAL_INPUT && val->kind != PIPPY_VAL_INTERMEDIATE))
            continue;
        int32_t made = val->kind == PIPPY_VAL_INPUT ? 0 : (val->producer >= 0 ? live_pos[val->producer] : 0);
        if (made < 0)
            continue;
        double t = pippy_cost_transfer_s(&p->cost, pippy_value_bytes(val));
        /* crosses cuts made+1 .. last_use */
        diff[made + 1] += t;
        diff[last_use[v] + 1 > n_live ? n_live + 1 : last_use[v] + 1] -= t;
    }
    double run = 0;
    for (int32_t c = 0; c <= n_live; c++) {
        run += diff[c];
        xfer[c] = c == 0 || c == n_live ? 0 : run;
    }
    free(last_use), free(diff);
    return PIPPY_OK;
}

/* The minimax cuts into at[0..S]: the slowest stage as fast as it can be (dynamic programming over
 * the node order). */
static pippy_status pippy_cuts_minimax(const double *pre, const double *xfer, int32_t n_live, int32_t S, int32_t *at)
{
    int32_t W = n_live + 1;
    double *best = malloc((size_t)(S + 1) * (size_t)W * sizeof *best);
    int32_t *arg = malloc((size_t)(S + 1) * (size_t)W * sizeof *arg);
    if (!best || !arg) {
        free(best), free(arg);
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory partitioning");
    }
    for (int32_t k = 0; k < (S + 1) * W; k++)
        best[k] = 1e300;
    best[0] = 0;
    for (int32_t s = 1; s <= S; s++)
        for (int32_t j = s; j <= n_live - (S - s); j++)
            for (int32_t i = s - 1; i < j; i++) {
                double prev = best[(s - 1) * W + i];
                if (prev >= 1e300)
                    continue;
                double c = pippy_span_s(pre, xfer, i, j);
                double m = prev > c ? prev : c;
                if (m < best[s * W + j]) {
                    best[s * W + j] = m;
                    arg[s * W + j] = i;
                }
            }
    at[0] = 0;
    at[S] = n_live;
    for (int32_t s = S; s > 1; s--)
        at[s - 1] = arg[s * W + at[s]];
    free(best), free(arg);
    return PIPPY_OK;
}

/* The cost model's cuts into cut[] (o->at when given), and o->candidates. */
static pippy_status pippy_partition_auto(pippy_plan *p, const pippy_partition_opts *o, const int32_t *live,
                                         const int32_t *live_pos, int32_t n_live, char *cut)
{
    int32_t S = p->n_stages, at[PIPPY_MAX_STAGES + 1];
    if (o->at) {
        for (int32_t s = 0; s < S; s++)
            if (o->at[s] < 0 || o->at[s] >= o->at[s + 1] || o->at[S] != n_live || o->at[0] != 0)
                return pippy_fail(PIPPY_ERR_INVALID, "cuts: stage %d starts at node %d of %d, not after stage %d",
                                  s + 1, o->at[s + 1], n_live, s);
        for (int32_t s = 1; s < S; s++)
            cut[o->at[s]] = 1;
        return PIPPY_OK;
    }
    double *pre = calloc((size_t)n_live + 1, sizeof *pre);
    double *xfer = calloc((size_t)n_live + 1, sizeof *xfer);
    pippy_status st = pre && xfer ? PIPPY_OK : pippy_fail(PIPPY_ERR_NOMEM, "out of memory partitioning");
    if (st == PIPPY_OK)
        st = pippy_partition_prices(p, live, live_pos, n_live, pre, xfer);
    if (st == PIPPY_OK)
        st = pippy_cuts_minimax(pre, xfer, n_live, S, at);
    if (st == PIPPY_OK) {
        if (o->ranks > 0 && o->ranks < S)
            pippy_cuts_balance_ranks(pre, xfer, at, S, o->ranks, 1, S - 1);
        if (o->candidates)
            pippy_cuts_candidates(pre, xfer, at, S, o->ranks, o->candidates);
        for (int32_t s = 1; s < S; s++)
            cut[at[s]] = 1;
    }
    free(pre), free(xfer);
    return st;
}

pippy_status pippy_partition(pippy_plan *p, const pippy_partition_opts *o)
{
    pippy_graph *g = p->g;
    /* 1. PipeSplit: remember where each stood, then take it out. */
    char *after_split = calloc((size_t)g->n_nodes + 1, 1);
    int32_t *live_pos = malloc(((size_t)g->n_nodes + 1) * sizeof *live_pos);
    int32_t *live = malloc(((size_t)g->n_nodes + 1) * sizeof *live);
    char *cut = calloc((size_t)g->n_nodes + 1, 1);
    p->node_stage = malloc(((size_t)g->n_nodes + 1) * sizeof *p->node_stage);
    if (!after_split || !live_pos || !live || !cut || !p->node_stage) {
        free(after_split);
        free(live_pos);
        free(live);
        free(cut);
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory partitioning");
    }
    pippy_status st = PIPPY_OK;
    int32_t n_live = 0, pending_split = 0, n_pipesplit = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        pippy_node *n = &g->nodes[i];
        live_pos[i] = -1;
        if (pippy_is_pipesplit(n)) {
            if (!n->removed && n->n_in >= 1 && n->n_out >= 1 && n->in[0] >= 0) {
                pippy_rewire(g, n->out[0], n->in[0]);
                n->removed = 1;
            }
            pending_split = 1;
            n_pipesplit++;
            continue;
        }
        if (n->removed)
            continue;
        if (pending_split)
            after_split[n_live] = 1;
        pending_split = 0;
        live_pos[i] = n_live;
        live[n_live++] = i;
    }
    if (n_live == 0) {
        st = pippy_fail(PIPPY_ERR_INVALID, "%s: nothing to run: every node was folded into constants", g->path);
        goto done;
    }
    /* 2. The cuts, from the strongest source present. */
    p->split_source = PIPPY_SPLIT_NONE;
    if (o->split_before && o->split_before[0]) {
        st = pippy_cuts_from_list(g, live_pos, n_live, o->split_before, "--split-before", cut);
        p->split_source = PIPPY_SPLIT_CLI;
    } else {
        for (int32_t k = 0; k < n_live; k++)
            if (after_split[k])
                pippy_add_cut(cut, n_live, k);
        if (n_pipesplit)
            p->split_source = PIPPY_SPLIT_PIPESPLIT;
        const char *meta = pippy_graph_meta(g, "pippy.split_before");
        if (meta && meta[0]) {
            st = pippy_cuts_from_list(g, live_pos, n_live, meta, "metadata pippy.split_before", cut);
            if (!n_pipesplit)
                p->split_source = PIPPY_SPLIT_METADATA;
        }
    }
    if (st != PIPPY_OK)
        goto done;
    int32_t n_cuts = 0;
    for (int32_t k = 0; k < n_live; k++)
        n_cuts += cut[k];
    if (p->split_source != PIPPY_SPLIT_NONE) {
        if (o->stages > 0 && o->stages != n_cuts + 1) {
            st = pippy_fail(PIPPY_ERR_USAGE,
                            "--stages %d contradicts the %d stage%s that the %s makes; drop --stages, or give "
                            "--split-before to override",
                            o->stages, n_cuts + 1, n_cuts ? "s" : "", pippy_split_source_name(p->split_source));
            goto done;
        }
        p->n_stages = n_cuts + 1;
    } else {
        p->n_stages = o->stages > 0 ? o->stages : 1;
        if (p->n_stages > n_live) {
            st = pippy_fail(PIPPY_ERR_USAGE, "--stages %d: the model has only %d nodes left to run after folding",
                            p->n_stages, n_live);
            goto done;
        }
        if (p->n_stages > PIPPY_MAX_STAGES) {
            st = pippy_fail(PIPPY_ERR_USAGE, "--stages %d: at most %d stages", p->n_stages, PIPPY_MAX_STAGES);
            goto done;
        }
        if (p->n_stages > 1) {
            p->split_source = PIPPY_SPLIT_AUTO;
            st = pippy_partition_auto(p, o, live, live_pos, n_live, cut);
        }
    }
    if (st != PIPPY_OK)
        goto done;
    /* 3. node -> stage */
    for (int32_t i = 0; i < g->n_nodes; i++)
        p->node_stage[i] = -1;
    for (int32_t k = 0, s = 0; k < n_live; k++) {
        if (k > 0 && cut[k])
            s++;
        p->node_stage[live[k]] = s;
    }
done:
    free(after_split);
    free(live_pos);
    free(live);
    free(cut);
    return st;
}
