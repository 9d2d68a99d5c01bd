/* batch.c — see batch.h. */
#include "batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIPPY_BATCH_MAXN 64 /* elements of a shape input we look at (ONNX ranks are far smaller) */

typedef struct {
    pippy_graph *g;          /* at the microbatch size: the graph being compiled */
    pippy_graph *g1;         /* a copy at the export batch, where the file's constants hold */
    int64_t B, mb;
    int32_t *axis;           /* per value: the axis carrying the batch, -1 none, -2 not one clean axis */
    int64_t *inner;          /* per value: elements of that axis after the batch in row-major order, 0 unknown */
    int32_t cap;             /* entries of axis/inner */
    int32_t pend_v;          /* a Reshape output whose inner factor the layout analysis found */
    int64_t pend_inner;
    char other[320];         /* a dim of size B that is not the batch, for messages ("" when none) */
    const pippy_batch_dims *dims;
    pippy_batch_report *rep;
} pippy_bctx;

pippy_status pippy_batch_dims_parse(pippy_batch_dims *d, const char *arg)
{
    const char *p = arg;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[300];
        if (len == 0 || len >= sizeof item)
            return pippy_fail(PIPPY_ERR_USAGE, "--batch-dims takes NODE=K[,NODE=K...], found '%s'", arg);
        memcpy(item, p, len);
        item[len] = 0;
        char *eq = strrchr(item, '=');
        if (!eq || eq == item || !eq[1])
            return pippy_fail(PIPPY_ERR_USAGE, "--batch-dims: expected NODE=K (K an element or 'none'), found '%s'",
                              item);
        *eq = 0;
        if (d->n >= PIPPY_MAX_BATCH_DIMS || strlen(item) >= sizeof d->at[0].node)
            return pippy_fail(PIPPY_ERR_USAGE, "--batch-dims: too many entries or a node name too long");
        int32_t k = -1;
        if (strcmp(eq + 1, "none") != 0) {
            char *e;
            long x = strtol(eq + 1, &e, 10);
            if (*e || x < 0 || x >= PIPPY_BATCH_MAXN)
                return pippy_fail(PIPPY_ERR_USAGE, "--batch-dims %s: '%s' is not an element index (0..%d) or 'none'",
                                  item, eq + 1, PIPPY_BATCH_MAXN - 1);
            k = (int32_t)x;
        }
        memcpy(d->at[d->n].node, item, strlen(item) + 1); /* fits: checked above */
        d->at[d->n++].elem = k;
        p += len;
        if (*p == ',')
            p++;
    }
    return PIPPY_OK;
}

int64_t pippy_batch_exported(const pippy_graph *g)
{
    for (int32_t i = 0; i < g->n_inputs; i++) {
        const pippy_value *v = &g->values[g->inputs[i]];
        if (v->t.rank > 0 && v->t.dims[0] > 0 && !v->dim_param[0])
            return v->t.dims[0];
    }
    return 0;
}

/* ---- small helpers --------------------------------------------------------------------------------- */

/* The int32/int64 constant data of value v as int64 (n elements); -1 when v is not such a constant. */
static int32_t pippy_read_ints(const pippy_graph *g, int32_t v, int64_t *out)
{
    return pippy_value_ints(g, v, out, PIPPY_BATCH_MAXN);
}

/* --batch-dims for node i: -2 when not given, -1 for 'none', else the element. */
static int32_t pippy_batch_spec(const pippy_bctx *c, int32_t i)
{
    for (int32_t k = 0; c->dims && k < c->dims->n; k++)
        if (strcmp(c->dims->at[k].node, c->g->nodes[i].name) == 0)
            return c->dims->at[k].elem;
    return -2;
}

/* What to tell a user who hits an ambiguity. */
static const char *pippy_batch_hint(const pippy_bctx *c, const char *node, char *buf, size_t n)
{
    const char *in = c->g->n_inputs ? c->g->values[c->g->inputs[0]].name : "x";
    snprintf(buf, n,
             "say which with --batch-dims '%s=K' (K: the element that is the batch; 'none': no element is), or "
             "export the model with a dynamic batch: torch.onnx.export(..., dynamic_axes={'%s': {0: 'batch'}, ...})",
             node, in);
    return buf;
}

/* A stored value of rank >= 2 whose leading dim is the export batch and whose slices along it are all
 * equal (byte for byte): a constant broadcast over the batch, as an exporter writes a folded Expand of
 * a class token. Its first mb slices are the same constant at the microbatch size. */
static int pippy_batch_broadcast_const(const pippy_bctx *c, int32_t v)
{
    const pippy_value *x = &c->g1->values[v];
    if ((x->kind != PIPPY_VAL_CONST && x->kind != PIPPY_VAL_PARAM) || !x->data || !x->shape_known || x->t.rank < 2 ||
        x->t.dims[0] != c->B || c->B < 2)
        return 0;
    size_t slice = pippy_tdesc_bytes(&x->t) / (size_t)c->B;
    for (int64_t k = 1; k < c->B; k++)
        if (memcmp((const char *)x->data + (size_t)k * slice, x->data, slice) != 0)
            return 0;
    return 1;
}

/* Remember the first dim of size B that is not the batch (of a parameter or a value computed at run time). */
static void pippy_batch_note_dims(pippy_bctx *c, int32_t v)
{
    const pippy_value *x = &c->g1->values[v];
    if (c->other[0] || !x->shape_known || c->axis[v] == -2 || x->kind == PIPPY_VAL_CONST ||
        pippy_batch_broadcast_const(c, v))
        return;
    for (int32_t d = 0; d < x->t.rank; d++)
        if (d != c->axis[v] && x->t.dims[d] == c->B) {
            snprintf(c->other, sizeof c->other, "%s '%s' dim %d",
                     x->kind == PIPPY_VAL_PARAM ? "parameter"
                     : x->kind == PIPPY_VAL_INPUT ? "input"
                                                  : "value",
                     x->name, d);
            return;
        }
}

/* Which axis of v carries the batch, from its shapes in the two graphs. */
static void pippy_batch_classify(pippy_bctx *c, int32_t v, const pippy_node *n)
{
    const pippy_value *a = &c->g1->values[v], *b = &c->g->values[v];
    c->axis[v] = -1;
    c->inner[v] = 0;
    if (!a->shape_known || !b->shape_known)
        return;
    if (a->t.rank != b->t.rank) {
        c->axis[v] = -2;
        return;
    }
    int32_t k = -1;
    for (int32_t d = 0; d < a->t.rank; d++)
        if (a->t.dims[d] != b->t.dims[d]) {
            if (k >= 0) {
                c->axis[v] = -2;
                return;
            }
            k = d;
        }
    if (k < 0)
        return;
    if (b->t.dims[k] * c->B != a->t.dims[k] * c->mb) { /* not proportional to the batch */
        c->axis[v] = -2;
        return;
    }
    c->axis[v] = k;
    if (a->t.dims[k] == c->B)
        c->inner[v] = 1;
    else if (v == c->pend_v)
        c->inner[v] = c->pend_inner;
    else /* an op that keeps dims whole (element-wise, MatMul, Transpose...): as the input of that size */
        for (int32_t q = 0; n && q < n->n_in && !c->inner[v]; q++) {
            int32_t u = n->in[q];
            if (u >= 0 && u < c->g1->n_values && c->axis[u] >= 0 && c->inner[u] > 0 &&
                c->g1->values[u].t.dims[c->axis[u]] == a->t.dims[k])
                c->inner[v] = c->inner[u];
        }
}

/* Node i reads `want` as input k from now on (a new constant), unless it already does. */
static pippy_status pippy_batch_apply(pippy_bctx *c, int32_t i, int32_t k, const int64_t *want, int32_t n)
{
    int64_t t1[PIPPY_BATCH_MAXN], t2[PIPPY_BATCH_MAXN];
    int32_t n1 = pippy_read_ints(c->g1, c->g1->nodes[i].in[k], t1);
    int32_t n2 = pippy_read_ints(c->g, c->g->nodes[i].in[k], t2);
    if (n2 == n && memcmp(t2, want, (size_t)n * sizeof *want) == 0)
        return PIPPY_OK; /* it follows the batch already (a dynamic shape) */
    const pippy_node *nd = &c->g->nodes[i];
    char s1[256], s2[256], s3[256];
    if (n1 != n || n2 != n || memcmp(t1, t2, (size_t)n * sizeof *t1) != 0)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "node '%s' (%s): its input %d is %s at the export batch %lld and %s at the microbatch size "
                          "%lld, where %s was expected: it follows the batch only in part",
                          nd->name, nd->op, k, pippy_ints_str(t1, n1, s1, sizeof s1), (long long)c->B,
                          pippy_ints_str(t2, n2, s2, sizeof s2), (long long)c->mb,
                          pippy_ints_str(want, n, s3, sizeof s3));
    const pippy_value *old = &c->g->values[nd->in[k]];
    pippy_tdesc t = old->t;
    char name[600];
    snprintf(name, sizeof name, "%s::batch%lld", nd->name, (long long)c->mb);
    void *data = malloc((size_t)n * 8 + 8);
    if (!data)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    for (int32_t q = 0; q < n; q++) {
        if (t.dtype == PIPPY_DT_INT64)
            ((int64_t *)data)[q] = want[q];
        else
            ((int32_t *)data)[q] = (int32_t)want[q];
    }
    if (c->g->n_values >= c->cap)
        free(data);
    int32_t v = c->g->n_values < c->cap ? pippy_graph_const(c->g, name, &t, data) : -1;
    if (v < 0)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    c->g->nodes[i].in[k] = v;
    if (!c->rep->rewritten++)
        snprintf(c->rep->first, sizeof c->rep->first, "%s: %s -> %s", nd->name, pippy_ints_str(t1, n, s1, sizeof s1),
                 pippy_ints_str(want, n, s2, sizeof s2));
    return PIPPY_OK;
}

/* Elements equal to the export batch that no input explains (cand[0..nc)): the batch when that is
 * unambiguous, or as --batch-dims says. */
static pippy_status pippy_batch_choose(pippy_bctx *c, int32_t i, const int64_t *t1, int32_t n, const int32_t *cand,
                                       int32_t nc, int64_t *want)
{
    const pippy_node *nd = &c->g->nodes[i];
    int32_t spec = pippy_batch_spec(c, i);
    char s[256], hint[600];
    if (spec == -1)
        return PIPPY_OK;
    if (spec >= 0) {
        if (spec >= n || t1[spec] != c->B)
            return pippy_fail(PIPPY_ERR_USAGE,
                              "--batch-dims %s=%d: element %d of the node's shape input %s is not the export batch "
                              "%lld",
                              nd->name, spec, spec, pippy_ints_str(t1, n, s, sizeof s), (long long)c->B);
        want[spec] = c->mb;
        return PIPPY_OK;
    }
    if (nc == 0 || c->B == 1)
        return PIPPY_OK; /* exported with batch 1: a dim of 1 broadcasts over any batch as it is */
    if (nc == 1 && !c->other[0]) {
        want[cand[0]] = c->mb;
        return PIPPY_OK;
    }
    char at[128] = "";
    size_t k = 0;
    for (int32_t q = 0; q < nc && k < sizeof at; q++)
        k += (size_t)snprintf(at + k, sizeof at - k, "%s%d", q ? ", " : "", cand[q]);
    char why[400];
    if (c->other[0])
        snprintf(why, sizeof why, "%lld is also the size of %s, which is not the batch", (long long)c->B, c->other);
    else
        snprintf(why, sizeof why, "more than one element holds it");
    return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                      "node '%s' (%s): its shape input %s holds %lld, the batch size the model was exported with, at "
                      "element%s %s, and %s, so pippyc cannot tell whether it is the batch (to make it %lld for "
                      "microbatches); %s",
                      nd->name, nd->op, pippy_ints_str(t1, n, s, sizeof s), (long long)c->B, nc > 1 ? "s" : "", at,
                      why, (long long)c->mb, pippy_batch_hint(c, nd->name, hint, sizeof hint));
}

/* ---- the ops ----------------------------------------------------------------------------------------- */

static pippy_status pippy_batch_reshape(pippy_bctx *c, int32_t i)
{
    const pippy_node *nd = &c->g->nodes[i];
    int64_t t1[PIPPY_BATCH_MAXN], want[PIPPY_BATCH_MAXN];
    int32_t n = nd->n_in > 1 ? pippy_read_ints(c->g1, nd->in[1], t1) : -1, x = nd->in[0], spec = pippy_batch_spec(c, i);
    if (n < 0 || x < 0 || spec == -1)
        return PIPPY_OK; /* not a constant shape: the shape rule says so */
    memcpy(want, t1, (size_t)n * sizeof *t1);
    char s1[256], s2[256], hint[600];
    if (spec >= 0) {
        if (spec >= n || t1[spec] <= 0 || t1[spec] % c->B)
            return pippy_fail(PIPPY_ERR_USAGE, "--batch-dims %s=%d: element %d of %s is not a multiple of the export "
                              "batch %lld", nd->name, spec, spec, pippy_ints_str(t1, n, s1, sizeof s1), (long long)c->B);
        want[spec] = t1[spec] / c->B * c->mb;
        return pippy_batch_apply(c, i, 1, want, n);
    }
    int32_t a = c->axis[x];
    if (a == -1)
        return PIPPY_OK;
    const pippy_tdesc *D = &c->g1->values[x].t, *T = &c->g1->values[nd->out[0]].t;
    if (a == -2)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "node '%s' (Reshape): the batch is not one axis of its input '%s' (%s), so pippyc cannot "
                          "find it in the target shape %s; %s",
                          nd->name, c->g1->values[x].name, pippy_tdesc_str(D, s1, sizeof s1),
                          pippy_ints_str(t1, n, s2, sizeof s2), pippy_batch_hint(c, nd->name, hint, sizeof hint));
    int64_t in = c->inner[x] > 0 ? c->inner[x] : D->dims[a] == c->B ? 1 : 0;
    if (in <= 0 || D->dims[a] % (c->B * in))
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "node '%s' (Reshape): axis %d of its input %s holds the batch together with other data in an "
                          "order pippyc cannot tell; %s",
                          nd->name, a, pippy_tdesc_str(D, s1, sizeof s1), pippy_batch_hint(c, nd->name, hint, sizeof hint));
    /* row-major: O elements come before the batch in both shapes; find the output dim that spans it */
    int64_t O = D->dims[a] / (c->B * in);
    for (int32_t d = 0; d < a; d++)
        O *= D->dims[d];
    int64_t cj = 1;
    for (int32_t j = 0; j < T->rank; j++) {
        int64_t cn = cj * T->dims[j];
        if (O % cj == 0 && cn % (O * c->B) == 0) {
            c->pend_v = nd->out[0];
            c->pend_inner = cn / (O * c->B);
            int allowzero = 0;
            for (int32_t q = 0; q < nd->n_attrs; q++)
                if (!strcmp(nd->attrs[q].name, "allowzero"))
                    allowzero = (int)nd->attrs[q].i;
            if (j < n && t1[j] != -1 && !(t1[j] == 0 && !allowzero))
                want[j] = T->dims[j] / c->B * c->mb;
            return pippy_batch_apply(c, i, 1, want, n);
        }
        cj = cn;
    }
    return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                      "node '%s' (Reshape): reshaping %s to %s splits the batch (axis %d) across dims or mixes it with "
                      "others, so it cannot be cut into microbatches; %s",
                      nd->name, pippy_tdesc_str(D, s1, sizeof s1), pippy_tdesc_str(T, s2, sizeof s2), a,
                      pippy_batch_hint(c, nd->name, hint, sizeof hint));
}

/* Value v is Shape(x) of an x none of whose dims carries the batch (a mask's shape vector whose length
 * happens to equal the batch): none of its elements is the batch. */
static int pippy_batch_shape_of_batchless(const pippy_bctx *c, int32_t v)
{
    int32_t p = v >= 0 ? c->g->values[v].producer : -1;
    if (p < 0 || c->g->nodes[p].domain[0] || strcmp(c->g->nodes[p].op, "Shape") || c->g->nodes[p].n_in < 1)
        return 0;
    int32_t x = c->g->nodes[p].in[0];
    return x >= 0 && x < c->cap && c->axis[x] == -1;
}

/* Every use of value v, followed through element-wise and gathering ops, ends as the shape input of a
 * Reshape, Expand, Tile or ConstantOfShape: v is shape arithmetic (e.g. ConstantOfShape([4]) of a
 * rank-4 mask's shape, which the exporter folded to a constant), and a length in it is a rank. */
static int pippy_batch_feeds_shapes_only(const pippy_graph *g, int32_t v)
{
    static const char *const pass[] = {"Cast", "Unsqueeze", "Squeeze", "Identity", "Concat", "Add", "Sub", "Mul",
                                       "Div", "Equal", "Where", "Gather", "Slice", "Abs", "Neg", "Max", "Min"};
    int32_t todo[64], n = 0, uses = 0;
    todo[n++] = v;
    while (n > 0) {
        int32_t x = todo[--n];
        if (g->values[x].is_output)
            return 0;
        for (int32_t i = 0; i < g->n_nodes; i++) {
            const pippy_node *nd = &g->nodes[i];
            for (int32_t k = 0; k < nd->n_in && !nd->removed && !nd->domain[0]; k++) {
                if (nd->in[k] != x)
                    continue;
                uses++;
                if ((k == 1 && (!strcmp(nd->op, "Reshape") || !strcmp(nd->op, "Expand") || !strcmp(nd->op, "Tile"))) ||
                    (k == 0 && !strcmp(nd->op, "ConstantOfShape")))
                    continue;
                int ok = 0;
                for (size_t q = 0; q < sizeof pass / sizeof pass[0]; q++)
                    ok |= !strcmp(nd->op, pass[q]);
                if (!ok || n + nd->n_out > 64)
                    return 0;
                for (int32_t o = 0; o < nd->n_out; o++)
                    todo[n++] = nd->out[o];
            }
        }
    }
    return uses > 0;
}

/* Expand (broadcast shape, right-aligned with the input) and Tile (repeats, one per input axis). */
static pippy_status pippy_batch_expand_tile(pippy_bctx *c, int32_t i, int tile)
{
    const pippy_node *nd = &c->g->nodes[i];
    int64_t t1[PIPPY_BATCH_MAXN], want[PIPPY_BATCH_MAXN];
    int32_t n = nd->n_in > 1 ? pippy_read_ints(c->g1, nd->in[1], t1) : -1, x = nd->in[0], cand[PIPPY_BATCH_MAXN], nc = 0;
    if (n < 0 || x < 0 || pippy_batch_shape_of_batchless(c, nd->in[1]))
        return PIPPY_OK;
    memcpy(want, t1, (size_t)n * sizeof *t1);
    const pippy_tdesc *D = &c->g1->values[x].t, *D2 = &c->g->values[x].t;
    for (int32_t j = 0; j < n; j++) {
        int32_t a = tile ? j : j - (n - D->rank);
        int carries = a >= 0 && a < D->rank && D->rank == D2->rank && D->dims[a] != D2->dims[a];
        if (carries && !tile && t1[j] == D->dims[a])
            want[j] = D2->dims[a]; /* Expand to the input's own (batch) size */
        else if (!carries && t1[j] == c->B && (a < 0 || a >= D->rank || D->dims[a] == 1))
            cand[nc++] = j;        /* a constant broadcast or tiled over what may be the batch */
    }
    PIPPY_TRY(pippy_batch_choose(c, i, t1, n, cand, nc, want));
    return pippy_batch_apply(c, i, 1, want, n);
}

static pippy_status pippy_batch_const_of_shape(pippy_bctx *c, int32_t i)
{
    const pippy_node *nd = &c->g->nodes[i];
    int64_t t1[PIPPY_BATCH_MAXN], want[PIPPY_BATCH_MAXN];
    int32_t n = nd->n_in > 0 ? pippy_read_ints(c->g1, nd->in[0], t1) : -1, cand[PIPPY_BATCH_MAXN], nc = 0;
    if (n < 0 || pippy_batch_shape_of_batchless(c, nd->in[0]) || pippy_batch_feeds_shapes_only(c->g, nd->out[0]))
        return PIPPY_OK;
    memcpy(want, t1, (size_t)n * sizeof *t1);
    for (int32_t j = 0; j < n; j++)
        if (t1[j] == c->B)
            cand[nc++] = j;
    PIPPY_TRY(pippy_batch_choose(c, i, t1, n, cand, nc, want));
    return pippy_batch_apply(c, i, 0, want, n);
}

/* The first node that reads value v other than as positions into a tensor: v flows, through ops that
 * keep positions positions (Cast, Unsqueeze, Add of an offset, ...), into something other than the
 * indices of a Gather. -1 when every use is such an index. */
static int32_t pippy_batch_non_index_use(const pippy_graph *g, int32_t v)
{
    static const char *const pass[] = {"Cast", "Unsqueeze", "Squeeze", "Reshape", "Expand", "Identity", "Concat",
                                       "Add", "Sub", "Mul", "Flatten", "Transpose"};
    int32_t todo[64], n = 0;
    todo[n++] = v;
    while (n > 0) {
        int32_t x = todo[--n];
        if (g->values[x].is_output)
            return g->values[x].producer;
        for (int32_t i = 0; i < g->n_nodes; i++) {
            const pippy_node *nd = &g->nodes[i];
            for (int32_t k = 0; k < nd->n_in && !nd->removed; k++) {
                if (nd->in[k] != x)
                    continue;
                if (!nd->domain[0] && k == 1 && !strncmp(nd->op, "Gather", 6))
                    continue; /* Gather, GatherElements, GatherND indices */
                if (!nd->domain[0] && !strcmp(nd->op, "Shape"))
                    continue; /* its shape follows the batch with it */
                int ok = 0;
                for (size_t q = 0; q < sizeof pass / sizeof pass[0] && !nd->domain[0]; q++)
                    ok |= !strcmp(nd->op, pass[q]);
                if (!ok || n + nd->n_out > 64)
                    return i;
                for (int32_t o = 0; o < nd->n_out; o++)
                    todo[n++] = nd->out[o];
            }
        }
    }
    return -1;
}

/* Range(0, B, 1) counts the samples of the batch. Cut into microbatches, each counts its own:
 * right where the count indexes rows (x[arange(B), ...] exports as Gather indices), wrong where it
 * is data. Rewritten in the first case, refused in the second unless --batch-dims says (element 0:
 * the limit). */
static pippy_status pippy_batch_range(pippy_bctx *c, int32_t i)
{
    const pippy_node *nd = &c->g->nodes[i];
    int64_t s[PIPPY_BATCH_MAXN], l[PIPPY_BATCH_MAXN], d[PIPPY_BATCH_MAXN];
    if (nd->n_in < 3 || pippy_read_ints(c->g1, nd->in[0], s) != 1 || pippy_read_ints(c->g1, nd->in[1], l) != 1 ||
        pippy_read_ints(c->g1, nd->in[2], d) != 1)
        return PIPPY_OK;
    int32_t cand[1] = {0}, counts = s[0] == 0 && d[0] == 1 && l[0] == c->B;
    int64_t want[1] = {l[0]};
    int32_t use = counts && pippy_batch_spec(c, i) == -2 ? pippy_batch_non_index_use(c->g, nd->out[0]) : -1;
    if (use >= 0) {
        char hint[600];
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "node '%s' (Range): Range(0, %lld, 1) counts the samples of the whole batch; in microbatches "
                          "of %lld each would count 0..%lld. pippyc rewrites it only where the count indexes rows "
                          "(Gather indices), and here it reaches node '%s' (%s). If each microbatch should count its "
                          "own samples, %s; else compile with --microbatches 1",
                          nd->name, (long long)c->B, (long long)c->mb, (long long)c->mb - 1, c->g->nodes[use].name,
                          c->g->nodes[use].op, pippy_batch_hint(c, nd->name, hint, sizeof hint));
    }
    PIPPY_TRY(pippy_batch_choose(c, i, l, 1, cand, counts, want));
    return pippy_batch_apply(c, i, 1, want, 1);
}

/* A Slice of the batch axis must take all of it (its end then clamps to the microbatch). */
static pippy_status pippy_batch_slice(pippy_bctx *c, int32_t i)
{
    const pippy_node *nd = &c->g->nodes[i];
    int64_t st[PIPPY_BATCH_MAXN], en[PIPPY_BATCH_MAXN], ax[PIPPY_BATCH_MAXN], sp[PIPPY_BATCH_MAXN];
    int32_t x = nd->n_in > 2 ? nd->in[0] : -1;
    int32_t n = x >= 0 ? pippy_read_ints(c->g1, nd->in[1], st) : -1;
    if (n < 0 || pippy_read_ints(c->g1, nd->in[2], en) != n || c->axis[x] == -1)
        return PIPPY_OK;
    int has_axes = nd->n_in > 3 && pippy_read_ints(c->g1, nd->in[3], ax) == n;
    int has_steps = nd->n_in > 4 && pippy_read_ints(c->g1, nd->in[4], sp) == n;
    const pippy_tdesc *D = &c->g1->values[x].t, *D2 = &c->g->values[x].t;
    for (int32_t q = 0; q < n && D->rank == D2->rank; q++) {
        int64_t a = has_axes ? ax[q] : q;
        if (a < 0)
            a += D->rank;
        if (a < 0 || a >= D->rank || D->dims[a] == D2->dims[a])
            continue;
        int64_t dim = D->dims[a], s0 = st[q] < 0 ? st[q] + dim : st[q], e0 = en[q] < 0 ? en[q] + dim : en[q];
        s0 = s0 < 0 ? 0 : s0 > dim ? dim : s0;
        e0 = e0 < 0 ? 0 : e0 > dim ? dim : e0;
        if (s0 != 0 || e0 != dim || (has_steps && sp[q] != 1))
            return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                              "node '%s' (Slice) takes elements %lld..%lld%s of axis %lld of '%s', which is the batch "
                              "(%lld): a part of the batch cannot be cut into microbatches; export the model with a "
                              "dynamic batch, or compile with --microbatches 1",
                              nd->name, (long long)s0, (long long)e0, has_steps && sp[q] != 1 ? " with a step" : "",
                              (long long)a, c->g1->values[x].name, (long long)dim);
    }
    return PIPPY_OK;
}

/* Input k of node i is computed from the inputs' shapes (a dynamic export's Shape -> Gather chain):
 * it differs between the two batch sizes already, so it follows the batch without a rewrite. */
static int pippy_batch_follows(const pippy_bctx *c, int32_t i, int32_t k)
{
    int64_t t1[PIPPY_BATCH_MAXN], t2[PIPPY_BATCH_MAXN];
    const pippy_node *nd = &c->g->nodes[i];
    if (k >= nd->n_in)
        return 0;
    int32_t n1 = pippy_read_ints(c->g1, nd->in[k], t1), n2 = pippy_read_ints(c->g, nd->in[k], t2);
    return n1 >= 0 && n1 == n2 && memcmp(t1, t2, (size_t)n1 * sizeof *t1) != 0;
}

/* A Constant holding arange(B) along dim 0 ([B, 1, ..., 1], int): the batch's sample numbers, as
 * transformers' mask code bakes them (attention_mask[batch_idx, kv_idx] through flattened Gather
 * indices). Used only as indices, each microbatch counts its own samples: arange(mb). Runs after
 * node i was folded in g. */
static pippy_status pippy_batch_arange_const(pippy_bctx *c, int32_t i)
{
    const pippy_node *nd = &c->g->nodes[i];
    if (nd->domain[0] || strcmp(nd->op, "Constant") || nd->n_out != 1 || c->B < 2)
        return PIPPY_OK;
    pippy_value *v = &c->g->values[nd->out[0]];
    int64_t n = pippy_value_numel(v);
    if (v->kind != PIPPY_VAL_CONST || !v->data || v->t.rank < 1 || v->t.dims[0] != c->B || n != c->B ||
        (v->t.dtype != PIPPY_DT_INT64 && v->t.dtype != PIPPY_DT_INT32))
        return PIPPY_OK;
    for (int64_t k = 0; k < n; k++)
        if ((v->t.dtype == PIPPY_DT_INT64 ? ((int64_t *)v->data)[k] : ((int32_t *)v->data)[k]) != k)
            return PIPPY_OK;
    if (pippy_batch_spec(c, i) == -1 || pippy_batch_non_index_use(c->g, nd->out[0]) >= 0)
        return PIPPY_OK; /* data, not positions: left as it is (the shape rules then say where it clashes) */
    v->t.dims[0] = c->mb; /* the first mb numbers of the same buffer */
    if (!c->rep->rewritten++)
        snprintf(c->rep->first, sizeof c->rep->first, "%s: arange(%lld) -> arange(%lld)", nd->name,
                 (long long)c->B, (long long)c->mb);
    return PIPPY_OK;
}

/* GatherND(data, indices) with constant indices [B, ..., k] whose tuples in slice b all start with b,
 * data batch-major: each sample picks from its own row (a static dynamo export builds the padding mask
 * so: attention_mask[batch_idx, kv_idx]). A microbatch's samples are rows 0..mb-1 of its own data, so
 * the first mb slices are its indices (a prefix of the bytes). */
static void pippy_batch_gather_nd(pippy_bctx *c, int32_t i)
{
    const pippy_node *nd = &c->g->nodes[i];
    if (nd->n_in != 2 || nd->in[0] < 0 || nd->in[1] < 0 || c->axis[nd->in[0]] != 0 || c->inner[nd->in[0]] != 1)
        return;
    for (int32_t a = 0; a < nd->n_attrs; a++)
        if (!strcmp(nd->attrs[a].name, "batch_dims") && nd->attrs[a].i != 0)
            return;
    int32_t v = nd->in[1];
    pippy_value *x = &c->g->values[v];
    const pippy_value *x1 = &c->g1->values[v];
    if ((x->kind != PIPPY_VAL_CONST && x->kind != PIPPY_VAL_PARAM) || !x1->data || x1->t.dtype != PIPPY_DT_INT64 ||
        x1->t.rank < 2 || x1->t.dims[0] != c->B || x->t.dims[0] != c->B || pippy_value_readers(c->g, v) != 1)
        return;
    int64_t k = x1->t.dims[x1->t.rank - 1], n = pippy_value_numel(x1) / (k > 0 ? k : 1), per = n / c->B;
    const int64_t *t = x1->data;
    for (int64_t p = 0; p < n; p++)
        if (t[p * k] != p / per)
            return;
    x->t.dims[0] = c->mb;
    char s1[160];
    if (!c->rep->rewritten++)
        snprintf(c->rep->first, sizeof c->rep->first, "%s (GatherND indices %s): its first %lld slices",
                 nd->name, pippy_tdesc_str(&x1->t, s1, sizeof s1), (long long)c->mb);
}

static pippy_status pippy_batch_fix(pippy_bctx *c, int32_t i)
{
    const pippy_node *nd = &c->g->nodes[i];
    if (nd->domain[0])
        return PIPPY_OK;
    if (!strcmp(nd->op, "GatherND")) {
        pippy_batch_gather_nd(c, i);
        return PIPPY_OK;
    }
    int32_t shape_in = !strcmp(nd->op, "ConstantOfShape") ? 0 : 1; /* Range: its limit */
    if (strcmp(nd->op, "Reshape") && strcmp(nd->op, "Slice") && pippy_batch_follows(c, i, shape_in))
        return PIPPY_OK;
    if (!strcmp(nd->op, "Reshape"))
        return pippy_batch_reshape(c, i);
    if (!strcmp(nd->op, "Expand"))
        return pippy_batch_expand_tile(c, i, 0);
    if (!strcmp(nd->op, "Tile"))
        return pippy_batch_expand_tile(c, i, 1);
    if (!strcmp(nd->op, "ConstantOfShape"))
        return pippy_batch_const_of_shape(c, i);
    if (!strcmp(nd->op, "Range"))
        return pippy_batch_range(c, i);
    if (!strcmp(nd->op, "Slice"))
        return pippy_batch_slice(c, i);
    return PIPPY_OK;
}

/* ---- the pass ---------------------------------------------------------------------------------------- */

/* A stored value upstream of node i (inputs first, then their producers' inputs) that carries the export
 * batch. Pass 0: integer or bool data whose leading dim is the batch and whose slices differ (indices
 * or a mask with the batch in their values: the GatherND indices of a static dynamo export, say); pass
 * 1: a constant broadcast over the batch not cut yet (only an inference compile cuts one, and only
 * where a node reads it directly). Float weights are left out: a weight dim equal to the batch is no
 * evidence. -1 when there is none. */
static int32_t pippy_batch_baked_const(const pippy_bctx *c, int32_t i, char *seen, int pass)
{
    const pippy_node *nd = &c->g1->nodes[i];
    for (int32_t k = 0; k < nd->n_in; k++) {
        int32_t v = nd->in[k];
        if (v < 0 || seen[v])
            continue;
        seen[v] = 1;
        const pippy_value *x = &c->g1->values[v];
        int ints = x->t.dtype == PIPPY_DT_INT64 || x->t.dtype == PIPPY_DT_INT32 || x->t.dtype == PIPPY_DT_BOOL;
        int bcast = pippy_batch_broadcast_const(c, v);
        if (pass == 0 && (x->kind == PIPPY_VAL_CONST || x->kind == PIPPY_VAL_PARAM) && ints && x->t.rank > 1 &&
            x->t.dims[0] == c->B && !bcast)
            return v;
        if (pass == 1 && bcast && c->g->values[v].t.dims[0] == c->B)
            return v;
        int32_t found = x->producer >= 0 ? pippy_batch_baked_const(c, x->producer, seen, pass) : -1;
        if (found >= 0)
            return found;
    }
    return -1;
}

/* Node i's shapes fail at the microbatch size though they hold at the export batch: name the stored
 * value that carries the batch, if one does, and what to do. */
static pippy_status pippy_batch_stuck(const pippy_bctx *c, int32_t i, pippy_status st)
{
    int32_t v = -1;
    for (int pass = 0; pass < 2 && v < 0; pass++) {
        char *seen = calloc((size_t)c->g1->n_values + 1, 1);
        v = seen ? pippy_batch_baked_const(c, i, seen, pass) : -1;
        free(seen);
    }
    const char *in = c->g->n_inputs ? c->g->values[c->g->inputs[0]].name : "x";
    char what[400] = "", s[160];
    if (v >= 0) {
        const pippy_value *x = &c->g1->values[v];
        int32_t reader = -1;
        for (int32_t j = 0; j < c->g1->n_nodes && reader < 0; j++)
            for (int32_t k = 0; k < c->g1->nodes[j].n_in; k++)
                if (c->g1->nodes[j].in[k] == v)
                    reader = j;
        snprintf(what, sizeof what, "; the export's batch (%lld) is built into the stored value '%s' (%s%s%s%s), "
                 "which pippyc cannot re-size", (long long)c->B, x->name, pippy_tdesc_str(&x->t, s, sizeof s),
                 reader >= 0 ? ", read by node '" : "", reader >= 0 ? c->g1->nodes[reader].name : "",
                 reader >= 0 ? "'" : "");
    }
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", pippy_last_error());
    return pippy_fail(st, "%s%s: export the model with a dynamic batch (torch.onnx.export(..., dynamic_shapes=... or "
                      "dynamic_axes={'%s': {0: 'batch'}, ...})), or compile with --microbatches 1 at the batch %lld",
                      msg, what, in, (long long)c->B);
}

/* Inference: node i's shapes fail at the microbatch size; each input that is a constant broadcast over
 * the export batch is cut to its first mb slices (a prefix of its bytes). 1 when one was. Training
 * keeps the export's values (such a constant may be a folded parameter), so it gets the message. */
static int pippy_batch_cut_broadcast(pippy_bctx *c, int32_t i)
{
    const pippy_node *nd = &c->g->nodes[i];
    int cut = 0;
    for (int32_t k = 0; !c->g->training && k < nd->n_in; k++) {
        int32_t v = nd->in[k];
        if (v < 0 || !pippy_batch_broadcast_const(c, v) || c->g->values[v].t.dims[0] != c->B)
            continue;
        c->g->values[v].t.dims[0] = c->mb;
        pippy_batch_classify(c, v, NULL);
        char s1[160];
        if (!c->rep->rewritten++)
            snprintf(c->rep->first, sizeof c->rep->first, "%s: %s cut to %lld of its %lld equal slices",
                     c->g->values[v].name, pippy_tdesc_str(&c->g1->values[v].t, s1, sizeof s1), (long long)c->mb,
                     (long long)c->B);
        cut = 1;
    }
    return cut;
}

static pippy_status pippy_batch_walk(pippy_bctx *c)
{
    pippy_graph *g = c->g;
    for (int32_t q = 0; q < g->n_inputs; q++)
        pippy_batch_classify(c, g->inputs[q], NULL);
    for (int32_t v = 0; v < c->g1->n_values; v++)
        if (c->g1->values[v].kind == PIPPY_VAL_PARAM || c->g1->values[v].kind == PIPPY_VAL_INPUT)
            pippy_batch_note_dims(c, v);
    for (int32_t i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].removed)
            continue;
        pippy_status st = pippy_shape_infer_node(c->g1, i, 1, 0);
        if (st != PIPPY_OK)
            return pippy_error_prefix(st, "at the batch size the model was exported with (%lld)", (long long)c->B);
        PIPPY_TRY(pippy_batch_fix(c, i));
        st = pippy_shape_infer_node(g, i, 1, 0);
        if (st != PIPPY_OK && pippy_batch_cut_broadcast(c, i))
            st = pippy_shape_infer_node(g, i, 1, 0);
        if (st != PIPPY_OK)
            return pippy_batch_stuck(c, i, st);
        PIPPY_TRY(pippy_batch_arange_const(c, i));
        const pippy_node *nd = &g->nodes[i];
        for (int32_t o = 0; o < nd->n_out; o++) {
            pippy_batch_classify(c, nd->out[o], nd);
            pippy_batch_note_dims(c, nd->out[o]);
        }
        c->pend_v = -1;
    }
    PIPPY_TRY(pippy_shape_check_outputs(g));
    for (int32_t q = 0; q < g->n_outputs; q++) {
        int32_t v = g->outputs[q];
        char s1[128], s2[128];
        /* in training a scalar output is a loss: the microbatches' losses are averaged, not stacked */
        if (g->training && pippy_value_numel(&g->values[v]) == 1)
            continue;
        if (c->axis[v] != 0 || c->inner[v] != 1)
            return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                              "graph output '%s' is %s at the batch size the model was exported with (%lld) and %s at "
                              "the microbatch size %lld: its leading dim is not the batch, so the microbatches' "
                              "outputs cannot be put back together; compile with --microbatches 1",
                              g->values[v].name, pippy_tdesc_str(&c->g1->values[v].t, s1, sizeof s1), (long long)c->B,
                              pippy_tdesc_str(&g->values[v].t, s2, sizeof s2), (long long)c->mb);
    }
    return PIPPY_OK;
}

pippy_status pippy_batch_infer(pippy_graph *g, const pippy_shape_bind_opts *full, const pippy_shape_bind_opts *micro,
                               int64_t export_batch, int64_t mb, const pippy_batch_dims *dims,
                               pippy_batch_report *report)
{
    memset(report, 0, sizeof *report);
    /* --batch-dims naming a node that does not exist is a mistake worth hearing about */
    for (int32_t k = 0; dims && k < dims->n; k++) {
        int found = 0;
        for (int32_t i = 0; i < g->n_nodes && !found; i++)
            found = strcmp(g->nodes[i].name, dims->at[k].node) == 0;
        if (!found)
            return pippy_fail(PIPPY_ERR_USAGE, "--batch-dims: %s has no node named '%s'", g->path, dims->at[k].node);
    }
    if (export_batch <= 0 || mb <= 0 || export_batch == mb) {
        PIPPY_TRY(pippy_shape_bind(g, micro));
        return pippy_shape_infer(g, 1, 0);
    }
    report->export_batch = export_batch;
    pippy_bctx c;
    memset(&c, 0, sizeof c);
    c.g = g;
    c.B = export_batch;
    c.mb = mb;
    c.dims = dims;
    c.rep = report;
    c.pend_v = -1;
    c.cap = g->n_values + g->n_nodes + 16;
    pippy_status st = pippy_graph_clone(g, &c.g1);
    if (st != PIPPY_OK)
        return st;
    c.axis = calloc((size_t)c.cap, sizeof *c.axis);
    c.inner = calloc((size_t)c.cap, sizeof *c.inner);
    if (!c.axis || !c.inner)
        st = pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    if (st == PIPPY_OK) {
        st = pippy_shape_bind(c.g1, full);
        if (st != PIPPY_OK)
            pippy_error_prefix(st, "at the batch size the model was exported with (%lld)", (long long)export_batch);
    }
    if (st == PIPPY_OK)
        st = pippy_shape_bind(g, micro);
    if (st == PIPPY_OK)
        st = pippy_batch_walk(&c);
    free(c.axis);
    free(c.inner);
    pippy_graph_free(c.g1);
    return st;
}
