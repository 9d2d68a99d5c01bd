/* sequence.c — see sequence.h. */
#include "sequence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t pippy_seq_attr(const pippy_node *n, const char *name, int64_t dflt)
{
    for (int32_t a = 0; a < n->n_attrs; a++)
        if (!strcmp(n->attrs[a].name, name) && n->attrs[a].type == PIPPY_ATTR_INT)
            return n->attrs[a].i;
    return dflt;
}

/* A new int64 constant of `rank` (0 or 1) holding vals, named after node `base`. */
static int32_t pippy_seq_const(pippy_graph *g, const char *base, const char *what, const int64_t *vals, int32_t n,
                               int32_t rank)
{
    char name[1024];
    snprintf(name, sizeof name, "%s::%s", base, what);
    int64_t *data = malloc((size_t)n * sizeof *data);
    if (!data)
        return -1;
    memcpy(data, vals, (size_t)n * sizeof *data);
    pippy_tdesc t = {.dtype = PIPPY_DT_INT64, .rank = rank, .dims = {n}};
    return pippy_graph_const(g, name, &t, data);
}

pippy_status pippy_sequence_check(const pippy_graph *g, int32_t i)
{
    const pippy_node *n = &g->nodes[i];
    int32_t s = n->out[0];
    if (s >= 0 && g->values[s].is_output)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "node '%s' (SplitToSequence): its sequence '%s' is a graph output; "
                                                 "pippyc's values are tensors", n->name, g->values[s].name);
    for (int32_t j = 0; j < g->n_nodes; j++) {
        const pippy_node *r = &g->nodes[j];
        for (int32_t k = 0; !r->removed && k < r->n_in; k++)
            if (r->in[k] == s && (k != 0 || r->domain[0] || strcmp(r->op, "SequenceAt")))
                return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                                  "node '%s' (SplitToSequence): its sequence is read by node '%s' (%s); pippyc takes a "
                                  "sequence only apart, by SequenceAt at constant positions",
                                  n->name, r->name, r->op);
    }
    return PIPPY_OK;
}

/* Where part k of the split lies along the axis: start, length, and the count of parts. */
static pippy_status pippy_seq_part(const pippy_graph *g, const pippy_node *sp, int64_t dim, int64_t *k,
                                   int64_t *start, int64_t *len)
{
    int64_t split[4096];
    int32_t ns = sp->n_in > 1 && sp->in[1] >= 0 ? pippy_value_ints(g, sp->in[1], split, 4096) : 0;
    if (ns < 0 || (sp->n_in > 1 && sp->in[1] >= 0 && g->values[sp->in[1]].t.rank == 0 && split[0] <= 0))
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "node '%s' (SplitToSequence): its split must be a constant (a positive "
                                                 "chunk size, or the sizes)", sp->name);
    int scalar = ns == 1 && g->values[sp->in[1]].t.rank == 0;
    int64_t parts = ns == 0 ? dim : scalar ? (dim + split[0] - 1) / split[0] : ns;
    if (*k < 0)
        *k += parts;
    if (*k < 0 || *k >= parts)
        return pippy_fail(PIPPY_ERR_INVALID, "node '%s' (SplitToSequence): position %lld is outside its %lld parts",
                          sp->name, (long long)*k, (long long)parts);
    *start = ns == 0 ? *k : scalar ? *k * split[0] : 0;
    for (int64_t q = 0; !scalar && ns > 0 && q < *k; q++)
        *start += split[q];
    *len = ns == 0 ? 1 : scalar ? (dim - *start < split[0] ? dim - *start : split[0]) : split[*k];
    return PIPPY_OK;
}

pippy_status pippy_sequence_at_lower(pippy_graph *g, int32_t i)
{
    const pippy_node *n = &g->nodes[i];
    int32_t s = n->n_in == 2 ? n->in[0] : -1, p = s >= 0 ? g->values[s].producer : -1;
    if (p < 0 || g->nodes[p].domain[0] || strcmp(g->nodes[p].op, "SplitToSequence"))
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "node '%s' (SequenceAt): its sequence is not made by SplitToSequence",
                          n->name);
    const pippy_node *sp = &g->nodes[p];
    int32_t x = sp->in[0];
    const pippy_tdesc *xt = &g->values[x].t;
    int64_t axis = pippy_seq_attr(sp, "axis", 0), keep = pippy_seq_attr(sp, "keepdims", 1), k, start, len;
    if (axis < 0)
        axis += xt->rank;
    if (axis < 0 || axis >= xt->rank || pippy_value_ints(g, n->in[1], &k, 1) != 1)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "node '%s' (SequenceAt): needs a constant position and an axis of "
                                                 "the split input", n->name);
    PIPPY_TRY(pippy_seq_part(g, sp, xt->dims[axis], &k, &start, &len));
    int32_t in[4] = {x, -1, -1, -1}, n_in;
    char base[512];
    snprintf(base, sizeof base, "%s", n->name);
    pippy_attr at = {.name = "axis", .type = PIPPY_ATTR_INT, .i = axis};
    int gather = (sp->n_in < 2 || sp->in[1] < 0) && !keep; /* one element, its axis dropped */
    if (gather) {
        in[1] = pippy_seq_const(g, base, "index", &k, 1, 0);
        n_in = 2;
    } else {
        int64_t end = start + len;
        in[1] = pippy_seq_const(g, base, "starts", &start, 1, 1);
        in[2] = pippy_seq_const(g, base, "ends", &end, 1, 1);
        in[3] = pippy_seq_const(g, base, "axes", &axis, 1, 1);
        n_in = 4;
    }
    pippy_node *w = &g->nodes[i];
    int32_t *nin = malloc(sizeof in);
    char *op = strdup(gather ? "Gather" : "Slice");
    if (!nin || !op || in[1] < 0 || (!gather && (in[2] < 0 || in[3] < 0))) {
        free(nin), free(op);
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    }
    PIPPY_TRY(pippy_node_set_attrs(w, &at, gather ? 1 : 0));
    memcpy(nin, in, sizeof in);
    free(w->in), free(w->op);
    w->in = nin;
    w->n_in = n_in;
    w->op = op;
    return PIPPY_OK;
}
