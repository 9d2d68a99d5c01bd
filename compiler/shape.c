/* shape.c — see shape.h. */
#include "shape.h"

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
    d->reference = 1;
    /* Shape/Size read only the descriptor; give them a non-NULL input so kernels need not care. */
    static const int64_t pippy_dummy[1];
    if ((strcmp(n->op, "Shape") == 0 || strcmp(n->op, "Size") == 0) && !d->in_const[0])
        d->in_const[0] = pippy_dummy;
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
    pippy_kernel_run(k, d->in_const, outs);
    pippy_kernel_destroy(k);
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

pippy_status pippy_node_infer(pippy_graph *g, int32_t i, pippy_op_desc *d)
{
    const pippy_node *n = &g->nodes[i];
    if (n->n_in > PIPPY_MAX_IO || n->n_out > PIPPY_MAX_IO)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "node '%s' (%s): more than %d inputs or outputs", n->name, n->op,
                          PIPPY_MAX_IO);
    pippy_graph_op_desc(g, i, d);
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

pippy_status pippy_shape_infer_node(pippy_graph *g, int32_t i, int fold, int lenient)
{
    pippy_node *n = &g->nodes[i];
    if (n->removed)
        return PIPPY_OK;
    int unknown = 0;
    for (int32_t k = 0; k < n->n_in; k++)
        unknown |= n->in[k] >= 0 && !g->values[n->in[k]].shape_known;
    if (lenient && (unknown || !pippy_op_find(n->domain, n->op)))
        return PIPPY_OK;
    for (int32_t k = 0; k < n->n_in; k++) {
        if (n->in[k] >= 0 && !g->values[n->in[k]].shape_known)
            return pippy_fail(PIPPY_ERR_SHAPE, "node '%s' (%s): the shape of input '%s' is unknown", n->name, n->op,
                              g->values[n->in[k]].name);
    }
    pippy_op_desc d;
    pippy_status st = pippy_node_infer(g, i, &d);
    if (st != PIPPY_OK)
        return lenient ? PIPPY_OK : st;
    if (fold && pippy_node_foldable(g, n))
        PIPPY_TRY(pippy_fold_node(g, i, &d));
    return PIPPY_OK;
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

pippy_status pippy_shape_infer(pippy_graph *g, int fold, int lenient)
{
    for (int32_t i = 0; i < g->n_nodes; i++)
        PIPPY_TRY(pippy_shape_infer_node(g, i, fold, lenient));
    return lenient ? PIPPY_OK : pippy_shape_check_outputs(g);
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
