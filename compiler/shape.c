/* shape.c — see shape.h. */
#include "shape.h"

#include "checked.h"
#include "sequence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pippy_status pippy_shape_parse_arg(pippy_shape_bind_opts *o, const char *arg)
{
    const char *eq = strrchr(arg, '=');
    if (!eq || eq == arg || !eq[1])
        return pippy_fail(PIPPY_ERR_USAGE, "--shape takes NAME=D1xD2x..., found '%s'", arg);
    if (o->n_shapes >= PIPPY_MAX_BIND)
        return pippy_fail(PIPPY_ERR_USAGE, "too many --shape options (at most %d)", PIPPY_MAX_BIND);
    size_t nl = (size_t)(eq - arg);
    if (nl >= sizeof o->shapes[0].name)
        return pippy_fail(PIPPY_ERR_USAGE, "--shape: input name too long");
    typeof(o->shapes[0]) *s = &o->shapes[o->n_shapes];
    memcpy(s->name, arg, nl);
    s->name[nl] = 0;
    s->rank = 0;
    const char *p = eq + 1;
    if (strcmp(p, "scalar") != 0) {
        while (*p) {
            char *end;
            long long d = strtoll(p, &end, 10);
            if (end == p || d < 0 || s->rank >= PIPPY_MAX_RANK || (*end && *end != 'x' && *end != ','))
                return pippy_fail(PIPPY_ERR_USAGE, "--shape %s: expected dims like 8x16, found '%s'", s->name,
                                  eq + 1);
            s->dims[s->rank++] = d;
            p = *end ? end + 1 : end;
        }
    }
    o->n_shapes++;
    return PIPPY_OK;
}

pippy_status pippy_shape_bind(pippy_graph *g, const pippy_shape_bind_opts *o)
{
    for (int32_t s = 0; s < o->n_shapes; s++) {
        int32_t v = pippy_graph_find(g, o->shapes[s].name);
        if (v < 0 || g->values[v].kind != PIPPY_VAL_INPUT) {
            char names[1024] = "";
            size_t k = 0;
            for (int32_t i = 0; i < g->n_inputs && k < sizeof names - 64; i++)
                k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", i ? ", " : "",
                                      g->values[g->inputs[i]].name);
            return pippy_fail(PIPPY_ERR_USAGE, "--shape %s: the model has no graph input of that name (inputs: %s)",
                              o->shapes[s].name, names);
        }
    }
    for (int32_t i = 0; i < g->n_inputs; i++) {
        pippy_value *v = &g->values[g->inputs[i]];
        int bound = 0;
        for (int32_t s = 0; s < o->n_shapes; s++) {
            if (strcmp(o->shapes[s].name, v->name) != 0)
                continue;
            if (v->t.rank != o->shapes[s].rank && v->t.rank > 0)
                return pippy_fail(PIPPY_ERR_SHAPE, "--shape %s: the model declares rank %d, found %d dims",
                                  v->name, v->t.rank, o->shapes[s].rank);
            for (int32_t d = 0; d < v->t.rank; d++)
                if (v->t.dims[d] >= 0 && v->t.dims[d] != o->shapes[s].dims[d] && !(d == 0 && o->batch > 0))
                    return pippy_fail(PIPPY_ERR_SHAPE,
                                      "--shape %s: dim %d is fixed to %lld in the model, found %lld", v->name, d,
                                      (long long)v->t.dims[d], (long long)o->shapes[s].dims[d]);
            v->t.rank = o->shapes[s].rank;
            memcpy(v->t.dims, o->shapes[s].dims, sizeof v->t.dims);
            bound = 1;
        }
        if (!bound && !v->shape_known && v->t.rank == 0)
            return pippy_fail(PIPPY_ERR_SHAPE, "%s: graph input '%s' has no shape in the model: give --shape %s=D1xD2...",
                              g->path, v->name, v->name);
        if (!bound && o->batch > 0 && v->t.rank > 0)
            v->t.dims[0] = o->batch;
        for (int32_t d = 0; d < v->t.rank; d++)
            if (v->t.dims[d] < 0)
                return pippy_fail(PIPPY_ERR_SHAPE,
                                  "%s: graph input '%s' has an unknown dim %d%s%s%s: bind it with --batch N (the "
                                  "leading dim) or --shape %s=D1xD2x...",
                                  g->path, v->name, d, v->dim_param[d] ? " ('" : "",
                                  v->dim_param[d] ? v->dim_param[d] : "", v->dim_param[d] ? "')" : "", v->name);
        uint64_t bytes;
        if (pippy_tdesc_check(&v->t, &bytes)) {
            char sh[200];
            return pippy_fail(PIPPY_ERR_SHAPE, "%s: graph input '%s' would be %s: more than %llu bytes", g->path,
                              v->name, pippy_tdesc_str(&v->t, sh, sizeof sh),
                              (unsigned long long)PIPPY_MAX_TENSOR_BYTES);
        }
        v->shape_known = 1;
    }
    return PIPPY_OK;
}

static int pippy_node_foldable(const pippy_graph *g, const pippy_node *n)
{
    if (strcmp(n->op, "Shape") == 0 || strcmp(n->op, "Size") == 0)
        return n->n_in > 0 && n->in[0] >= 0 && g->values[n->in[0]].shape_known;
    if (strcmp(n->domain, "pippy") == 0)
        return 0; /* PipeSplit stays: it marks a cut */
    for (int32_t k = 0; k < n->n_in; k++) {
        if (n->in[k] < 0)
            continue;
        /* parameters are constants too at inference (e.g. Identity or Transpose of a weight),
         * not in training */
        if (!pippy_value_is_const(g, &g->values[n->in[k]]))
            return 0;
    }
    return 1;
}

/* The parameter a folded node's outputs derive from: its parameter input (the largest when it reads
 * several, e.g. Mul(W, scale)); -1 for Shape and Size, which read only shapes. */
static int32_t pippy_fold_root(const pippy_graph *g, const pippy_node *n)
{
    if (strcmp(n->op, "Shape") == 0 || strcmp(n->op, "Size") == 0)
        return -1;
    int32_t best = -1;
    for (int32_t k = 0; k < n->n_in; k++) {
        int32_t r = pippy_value_param_root(g, n->in[k]);
        if (r >= 0 && (best < 0 || pippy_value_numel(&g->values[r]) > pippy_value_numel(&g->values[best])))
            best = r;
    }
    return best;
}

static pippy_status pippy_fold_node(pippy_graph *g, int32_t i, pippy_op_desc *d)
{
    pippy_node *n = &g->nodes[i];
    pippy_kernel *k = NULL;
    d->reference = 1; /* the plain C reference: every dtype the spec allows */
    /* Shape/Size read only the descriptor; give them a non-NULL input so kernels need not care. */
    static const int64_t pippy_dummy[1];
    if ((strcmp(n->op, "Shape") == 0 || strcmp(n->op, "Size") == 0) && !d->in_const[0])
        d->in_const[0] = pippy_dummy;
    /* estimated before anything is allocated (the outputs passed pippy_tdesc_check) */
    uint64_t need = 0;
    for (int32_t o = 0; o < d->n_out; o++)
        need += pippy_tdesc_bytes(&d->out[o]) + 8;
    if (need > g->mem_limit || g->mem_folded > g->mem_limit - need)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "node '%s' (%s): folding it into a constant needs %.3g GB more (%.3g GB folded so far), "
                          "past the compiler's memory limit of %.3g GB (pippyc --max-memory)",
                          n->name, n->op, need / 1e9, g->mem_folded / 1e9, g->mem_limit / 1e9);
    PIPPY_TRY(pippy_kernel_create(d, &k));
    void *outs[PIPPY_MAX_IO] = {0};
    for (int32_t o = 0; o < d->n_out; o++) {
        outs[o] = calloc(1, pippy_tdesc_bytes(&d->out[o]) + 8);
        if (!outs[o]) {
            for (int32_t q = 0; q < o; q++)
                free(outs[q]);
            pippy_kernel_destroy(k);
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory folding node '%s'", n->name);
        }
    }
    pippy_run_error_clear();
    pippy_kernel_run(k, d->in_const, outs);
    pippy_kernel_destroy(k);
    g->mem_folded += need;
    if (pippy_run_error()) {
        for (int32_t o = 0; o < d->n_out; o++)
            free(outs[o]);
        return pippy_fail(PIPPY_ERR_INVALID, "folding constants: %s", pippy_run_error());
    }
    int32_t root = pippy_fold_root(g, n);
    for (int32_t o = 0; o < d->n_out; o++) {
        pippy_value *v = &g->values[n->out[o]];
        if (v->data_owned)
            free(v->data);
        v->data = outs[o];
        v->data_owned = 1;
        v->kind = PIPPY_VAL_CONST;
        /* a re-layout or slice of a parameter (Transpose(W), Identity(W), Gather(W, idx)) is still W */
        v->param_of = root >= 0 && v->t.dtype == g->values[root].t.dtype ? root : -1;
    }
    n->removed = 1;
    return PIPPY_OK;
}

/* Infer node i's outputs (reference: with the rule of the reference kernels, which take every
 * dtype the ONNX spec allows) and record them in the graph. */
static pippy_status pippy_infer_node(pippy_graph *g, int32_t i, int reference, pippy_op_desc *d)
{
    const pippy_node *n = &g->nodes[i];
    if (n->n_in > PIPPY_MAX_IO || n->n_out > PIPPY_MAX_IO)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "node '%s' (%s): more than %d inputs or outputs", n->name, n->op,
                          PIPPY_MAX_IO);
    pippy_graph_op_desc(g, i, d);
    d->reference = reference;
    for (int32_t o = 0; o < d->n_out; o++)
        memset(&d->out[o], 0, sizeof d->out[o]);
    PIPPY_TRY(pippy_op_infer(d));
    for (int32_t o = 0; o < n->n_out; o++) {
        if (n->out[o] < 0)
            continue;
        pippy_value *v = &g->values[n->out[o]];
        if (d->out[o].dtype == PIPPY_DT_UNDEFINED || pippy_dtype_size(d->out[o].dtype) == 0)
            return pippy_fail(PIPPY_ERR_INTERNAL, "node '%s' (%s): shape rule gave no type for output %d", n->name,
                              n->op, o);
        v->t = d->out[o];
        v->shape_known = 1;
        v->producer = i;
    }
    return PIPPY_OK;
}

pippy_status pippy_node_infer(pippy_graph *g, int32_t i, pippy_op_desc *d) { return pippy_infer_node(g, i, 0, d); }

pippy_status pippy_graph_emit(pippy_graph *g, const char *name, const char *domain, const char *op, int32_t n_in,
                              const int32_t *in, const pippy_attr *attrs, int32_t n_attrs, int32_t n_out,
                              const int32_t *out, int32_t *node)
{
    int32_t k = pippy_graph_add_node(g, name, op, domain, n_in, in, n_out, out);
    if (k < 0)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory adding node '%s'", name);
    if (n_attrs)
        PIPPY_TRY(pippy_node_set_attrs(&g->nodes[k], attrs, n_attrs));
    pippy_op_desc d;
    PIPPY_TRY(pippy_node_infer(g, k, &d));
    if (node)
        *node = k;
    return PIPPY_OK;
}

/* One node: its shapes, then folding. A node that will fold (every input constant) is
 * inferred with the reference rule: folding runs the reference kernels, which cover every
 * dtype the spec allows (double, the integers, ...), while a node left for the stage
 * programs must suit their kernels. */
static pippy_status pippy_shape_node(pippy_graph *g, int32_t i, int fold, pippy_shape_problem_fn report, void *ctx)
{
    pippy_node *n = &g->nodes[i];
    if (!n->domain[0] && !strcmp(n->op, "SplitToSequence")) /* a sequence: its SequenceAt become tensors */
        return report ? PIPPY_OK : pippy_sequence_check(g, i);
    if (!n->domain[0] && !strcmp(n->op, "SequenceAt")) {
        pippy_status st = pippy_sequence_at_lower(g, i);
        if (st != PIPPY_OK && report) {
            report(ctx, g, i, st, pippy_last_error());
            pippy_error_clear();
            return PIPPY_OK;
        }
        PIPPY_TRY(st);
        n = &g->nodes[i];
    }
    for (int32_t k = 0; k < n->n_in; k++) {
        if (n->in[k] >= 0 && !g->values[n->in[k]].shape_known) {
            if (report)
                return PIPPY_OK; /* after a problem already reported: nothing to check here */
            return pippy_fail(PIPPY_ERR_SHAPE, "node '%s' (%s): the shape of input '%s' is unknown", n->name, n->op,
                              g->values[n->in[k]].name);
        }
    }
    int foldable = fold && pippy_node_foldable(g, n);
    pippy_op_desc d;
    pippy_status st = pippy_infer_node(g, i, foldable, &d);
    if (st != PIPPY_OK && report && st != PIPPY_ERR_NOMEM) {
        report(ctx, g, i, st, pippy_last_error());
        /* go on past it where the reference rule knows the outputs, so later nodes get checked */
        if (!foldable && pippy_op_find(n->domain, n->op))
            pippy_infer_node(g, i, 1, &d);
        pippy_error_clear();
        return PIPPY_OK;
    }
    PIPPY_TRY(st);
    if (foldable) {
        st = pippy_fold_node(g, i, &d);
        if (st != PIPPY_OK && report && st != PIPPY_ERR_NOMEM) {
            report(ctx, g, i, st, pippy_last_error());
            pippy_error_clear();
            return PIPPY_OK;
        }
    }
    return st;
}

static void pippy_problem_ignore(void *ctx, const pippy_graph *g, int32_t node, pippy_status st, const char *msg)
{
    (void)ctx, (void)g, (void)node, (void)st, (void)msg;
}

pippy_status pippy_shape_infer_node(pippy_graph *g, int32_t i, int fold, int lenient)
{
    if (g->nodes[i].removed)
        return PIPPY_OK;
    return pippy_shape_node(g, i, fold, lenient ? pippy_problem_ignore : NULL, NULL);
}

pippy_status pippy_shape_check_outputs(const pippy_graph *g)
{
    for (int32_t o = 0; o < g->n_outputs; o++) {
        const pippy_value *v = &g->values[g->outputs[o]];
        if (!v->shape_known)
            return pippy_fail(PIPPY_ERR_SHAPE, "graph output '%s' has no producer with a known shape", v->name);
    }
    return PIPPY_OK;
}

pippy_status pippy_shape_check(pippy_graph *g, int fold, pippy_shape_problem_fn report, void *ctx)
{
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i].removed)
            PIPPY_TRY(pippy_shape_node(g, i, fold, report, ctx));
    return report ? PIPPY_OK : pippy_shape_check_outputs(g);
}

pippy_status pippy_shape_infer(pippy_graph *g, int fold, int lenient)
{
    return pippy_shape_check(g, fold, lenient ? pippy_problem_ignore : NULL, NULL);
}

int32_t pippy_graph_prune(pippy_graph *g)
{
    char *live = calloc((size_t)g->n_values + 1, 1);
    if (!live)
        return 0;
    for (int32_t o = 0; o < g->n_outputs; o++)
        live[g->outputs[o]] = 1;
    int32_t dropped = 0;
    for (int32_t i = g->n_nodes - 1; i >= 0; i--) {
        pippy_node *n = &g->nodes[i];
        if (n->removed)
            continue;
        int used = 0;
        for (int32_t o = 0; o < n->n_out; o++)
            used |= live[n->out[o]];
        if (!used) {
            n->removed = 1;
            dropped++;
            continue;
        }
        for (int32_t k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0)
                live[n->in[k]] = 1;
    }
    free(live);
    return dropped;
}
