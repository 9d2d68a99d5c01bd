/* fuse.c — graph rewrites that let one kernel do the work of two.
 *
 * Conv / Gemm / MatMul followed by Relu, where the Relu is the only reader of
 * the product and the product is not a graph output, becomes one node with
 * the pippyc-private attribute "pippy.activation" = "Relu" (a oneDNN post-op).
 * The Relu node is dropped and its output is written by the fused node.
 *
 * Conv followed by an inference BatchNormalization (all of whose inputs are
 * stored data) becomes one Conv with scaled weights and a new bias:
 *   s = scale / sqrt(var + eps);  W' = W * s (per output channel);  b' = (b - mean) * s + B
 *
 * PyTorch's exact GELU, exported at opsets before 20 as Div/Erf/Add/Mul/Mul, becomes one Gelu
 * node (oneDNN's gelu_erf for large tensors).
 *
 * MatMul followed by the Add of a bias vector (how PyTorch exports a Linear on 3-D input) becomes
 * one MatMul with the private attribute "pippy.bias" and the bias as a third input.
 *
 * MatMul reading a Transpose that swaps only the last two dims (a Linear's weight exported
 * without constant folding, Transpose(W) -> MatMul, or attention's K^T) reads the Transpose's
 * input instead, with "pippy.trans_a" / "pippy.trans_b": oneDNN takes the operand strided, no
 * copy is made, and in training the gradient flows straight to W. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuse.h"

int32_t pippy_fuse_activations(pippy_graph *g)
{
    int32_t *readers = calloc((size_t)g->n_values + 1, sizeof *readers);
    if (!readers)
        return 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].removed)
            continue;
        for (int32_t k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] >= 0)
                readers[g->nodes[i].in[k]]++;
    }
    int32_t fused = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        pippy_node *r = &g->nodes[i];
        if (r->removed || strcmp(r->op, "Relu") != 0 || r->domain[0] || r->n_in != 1 || r->in[0] < 0)
            continue;
        pippy_value *mid = &g->values[r->in[0]];
        if (mid->producer < 0 || readers[r->in[0]] != 1 || mid->is_output)
            continue;
        pippy_node *p = &g->nodes[mid->producer];
        if (p->removed || p->domain[0] || p->n_out != 1 ||
            (strcmp(p->op, "Conv") && strcmp(p->op, "Gemm") && strcmp(p->op, "MatMul")))
            continue;
        int has = 0;
        for (int32_t a = 0; a < p->n_attrs; a++)
            has |= strcmp(p->attrs[a].name, "pippy.activation") == 0;
        if (has)
            continue;
        pippy_attr relu = {.name = "pippy.activation", .type = PIPPY_ATTR_STRING, .s = "Relu"};
        if (pippy_node_add_attr(p, &relu) != PIPPY_OK)
            break;
        /* the fused node writes the Relu's output; the intermediate goes away */
        int32_t out = r->out[0];
        p->out[0] = out;
        g->values[out].producer = mid->producer;
        mid->producer = -1;
        r->removed = 1;
        fused++;
    }
    free(readers);
    return fused;
}

static const float *pippy_stored_floats(const pippy_graph *g, int32_t v, int64_t n)
{
    if (v < 0)
        return NULL;
    const pippy_value *x = &g->values[v];
    if ((x->kind != PIPPY_VAL_PARAM && x->kind != PIPPY_VAL_CONST) || !x->data || x->t.dtype != PIPPY_DT_FLOAT ||
        pippy_value_numel(x) != n)
        return NULL;
    return x->data;
}

/* A new stored float value named base+suffix holding data (taken over, also on failure), made from
 * parameter root (param_of; -1 when from constants only). */
static int32_t pippy_new_stored(pippy_graph *g, const char *base, const char *suffix, const pippy_tdesc *t,
                                float *data, int32_t root)
{
    char name[1024];
    snprintf(name, sizeof name, "%s%s", base, suffix);
    int32_t v = pippy_graph_const(g, name, t, data);
    if (v >= 0)
        g->values[v].param_of = root;
    return v;
}

int32_t pippy_fold_batchnorm(pippy_graph *g)
{
    int32_t folded = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        pippy_node *bn = &g->nodes[i];
        if (bn->removed || strcmp(bn->op, "BatchNormalization") || bn->domain[0] || bn->n_in < 5 || bn->n_out != 1 ||
            bn->in[0] < 0)
            continue;
        int32_t mid = bn->in[0];
        int32_t cv = g->values[mid].producer;
        if (cv < 0 || g->values[mid].is_output || pippy_value_readers(g, mid) != 1)
            continue;
        pippy_node *c = &g->nodes[cv];
        if (c->removed || strcmp(c->op, "Conv") || c->domain[0] || c->n_out != 1 || c->n_in < 2)
            continue;
        int mode = 0;
        for (int32_t a = 0; a < bn->n_attrs; a++)
            if (!strcmp(bn->attrs[a].name, "training_mode"))
                mode = (int)bn->attrs[a].i;
        if (mode)
            continue;
        float eps = 1e-5f;
        for (int32_t a = 0; a < bn->n_attrs; a++)
            if (!strcmp(bn->attrs[a].name, "epsilon"))
                eps = bn->attrs[a].f;
        const pippy_value *wv = &g->values[c->in[1]];
        if (wv->t.rank < 3)
            continue;
        int64_t co = wv->t.dims[0], per = pippy_value_numel(wv) / (co ? co : 1);
        const float *w = pippy_stored_floats(g, c->in[1], co * per);
        const float *b = c->n_in > 2 ? pippy_stored_floats(g, c->in[2], co) : NULL;
        const float *scale = pippy_stored_floats(g, bn->in[1], co), *shift = pippy_stored_floats(g, bn->in[2], co);
        const float *mean = pippy_stored_floats(g, bn->in[3], co), *var = pippy_stored_floats(g, bn->in[4], co);
        if (!w || (c->n_in > 2 && c->in[2] >= 0 && !b) || !scale || !shift || !mean || !var)
            continue;
        float *nw = malloc((size_t)(co * per) * sizeof *nw), *nb = malloc((size_t)co * sizeof *nb);
        if (!nw || !nb) {
            free(nw), free(nb);
            break;
        }
        for (int64_t o = 0; o < co; o++) {
            float s = scale[o] / sqrtf(var[o] + eps);
            for (int64_t j = 0; j < per; j++)
                nw[o * per + j] = w[o * per + j] * s;
            nb[o] = ((b ? b[o] : 0.0f) - mean[o]) * s + shift[o];
        }
        pippy_tdesc bt = {PIPPY_DT_FLOAT, 1, {co}}, wt = wv->t; /* a copy: adding values may move g->values */
        char base[512];
        snprintf(base, sizeof base, "%s", wv->name);
        /* W' stands for the convolution's weight, b' for its bias (else BatchNorm's shift) */
        int32_t rw = pippy_value_param_root(g, c->in[1]);
        int32_t rb = c->n_in > 2 && c->in[2] >= 0 ? pippy_value_param_root(g, c->in[2]) : pippy_value_param_root(g, bn->in[2]);
        int32_t vw = pippy_new_stored(g, base, "::bn_folded", &wt, nw, rw); /* frees nw when it fails */
        if (vw < 0) {
            free(nb);
            break;
        }
        int32_t vb = pippy_new_stored(g, base, "::bn_folded_bias", &bt, nb, rb);
        if (vb < 0)
            break;
        c = &g->nodes[cv]; /* the node array does not move, but keep the pointers fresh after allocation */
        bn = &g->nodes[i];
        if (c->n_in < 3) {
            int32_t *in = realloc(c->in, 3 * sizeof *in);
            if (!in)
                break;
            c->in = in;
            c->n_in = 3;
        }
        c->in[1] = vw;
        c->in[2] = vb;
        int32_t out = bn->out[0];
        c->out[0] = out;
        g->values[out].producer = cv;
        g->values[mid].producer = -1;
        bn->removed = 1;
        folded++;
    }
    return folded;
}

/* The one live node reading v, or -1 (none, several, or v is a graph output). */
static int32_t pippy_sole_reader(const pippy_graph *g, int32_t v)
{
    if (v < 0 || g->values[v].is_output)
        return -1;
    int32_t who = -1;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const pippy_node *n = &g->nodes[i];
        if (n->removed)
            continue;
        for (int32_t k = 0; k < n->n_in; k++)
            if (n->in[k] == v) {
                if (who >= 0 && who != i)
                    return -1;
                who = i;
            }
    }
    return who;
}

/* 1 when v is a stored float scalar (any rank, one element) within 1e-4 of want. */
static int pippy_is_scalar(const pippy_graph *g, int32_t v, float want)
{
    if (v < 0)
        return 0;
    const pippy_value *x = &g->values[v];
    if ((x->kind != PIPPY_VAL_CONST && x->kind != PIPPY_VAL_PARAM) || !x->data || x->t.dtype != PIPPY_DT_FLOAT ||
        pippy_value_numel(x) != 1)
        return 0;
    return fabsf(*(const float *)x->data - want) < 1e-4f * (fabsf(want) > 1 ? fabsf(want) : 1);
}

static int pippy_is_op(const pippy_graph *g, int32_t i, const char *op)
{
    return i >= 0 && !g->nodes[i].removed && !g->nodes[i].domain[0] && strcmp(g->nodes[i].op, op) == 0;
}

/* For a two-input node i, the input that is not `known` (-1 when neither is). */
static int32_t pippy_other_input(const pippy_node *n, int32_t known)
{
    if (n->n_in != 2)
        return -1;
    return n->in[0] == known ? n->in[1] : n->in[1] == known ? n->in[0] : -1;
}

int32_t pippy_fuse_gelu(pippy_graph *g)
{
    int32_t fused = 0;
    for (int32_t e = 0; e < g->n_nodes; e++) {
        if (!pippy_is_op(g, e, "Erf") || g->nodes[e].n_in != 1)
            continue;
        /* x / sqrt(2)  or  x * (1 / sqrt(2)) */
        int32_t scaled = g->nodes[e].in[0], p = g->values[scaled].producer, x = -1;
        if (p < 0 || pippy_sole_reader(g, scaled) != e)
            continue;
        const pippy_node *pn = &g->nodes[p];
        if (pippy_is_op(g, p, "Div") && pn->n_in == 2 && pippy_is_scalar(g, pn->in[1], 1.41421356f))
            x = pn->in[0];
        else if (pippy_is_op(g, p, "Mul") && pn->n_in == 2)
            x = pippy_is_scalar(g, pn->in[1], 0.70710678f)   ? pn->in[0]
                : pippy_is_scalar(g, pn->in[0], 0.70710678f) ? pn->in[1]
                                                              : -1;
        if (x < 0)
            continue;
        /* 1 + erf(.) */
        int32_t a = pippy_sole_reader(g, g->nodes[e].out[0]);
        if (!pippy_is_op(g, a, "Add") || !pippy_is_scalar(g, pippy_other_input(&g->nodes[a], g->nodes[e].out[0]), 1.0f))
            continue;
        int32_t sum = g->nodes[a].out[0];
        int32_t m1 = pippy_sole_reader(g, sum);
        if (!pippy_is_op(g, m1, "Mul"))
            continue;
        int32_t other = pippy_other_input(&g->nodes[m1], sum), last = -1, half = -1;
        if (other == x) { /* (x * (1 + erf)) * 0.5 */
            int32_t m2 = pippy_sole_reader(g, g->nodes[m1].out[0]);
            if (pippy_is_op(g, m2, "Mul") && pippy_is_scalar(g, pippy_other_input(&g->nodes[m2], g->nodes[m1].out[0]), 0.5f))
                last = m2, half = m1;
        } else if (other >= 0) { /* (x * 0.5) * (1 + erf) */
            int32_t h = g->values[other].producer;
            if (pippy_is_op(g, h, "Mul") && pippy_sole_reader(g, other) == m1 &&
                pippy_other_input(&g->nodes[h], x) >= 0 && pippy_is_scalar(g, pippy_other_input(&g->nodes[h], x), 0.5f))
                last = m1, half = h;
        }
        if (last < 0)
            continue;
        if (g->values[x].t.dtype != PIPPY_DT_FLOAT)
            continue;
        /* the last node becomes Gelu(x); the others go */
        pippy_node *n = &g->nodes[last];
        char *op = strdup("Gelu");
        if (!op || pippy_node_set_attrs(n, NULL, 0) != PIPPY_OK) {
            free(op);
            break;
        }
        free(n->op);
        n->op = op;
        n->in[0] = x;
        n->n_in = 1;
        g->nodes[p].removed = g->nodes[e].removed = g->nodes[a].removed = 1;
        g->nodes[half].removed = 1;
        fused++;
    }
    return fused;
}

int32_t pippy_fuse_matmul_bias(pippy_graph *g)
{
    int32_t fused = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        pippy_node *mm = &g->nodes[i];
        if (!pippy_is_op(g, i, "MatMul") || mm->n_in != 2 || mm->n_out != 1 || mm->n_attrs)
            continue;
        const pippy_value *b = &g->values[mm->in[1]];
        if (b->t.rank < 2 || g->values[mm->out[0]].t.dtype != PIPPY_DT_FLOAT)
            continue;
        int64_t N = b->t.dims[b->t.rank - 1];
        int32_t prod = mm->out[0], a = pippy_sole_reader(g, prod);
        if (!pippy_is_op(g, a, "Add") || g->nodes[a].n_out != 1)
            continue;
        int32_t bias = pippy_other_input(&g->nodes[a], prod);
        if (bias < 0)
            continue;
        const pippy_value *bv = &g->values[bias];
        if ((bv->kind != PIPPY_VAL_PARAM && bv->kind != PIPPY_VAL_CONST) || bv->t.dtype != PIPPY_DT_FLOAT ||
            bv->t.rank != 1 || bv->t.dims[0] != N)
            continue;
        /* the Add's output must have the MatMul's shape (the bias only broadcasts over rows) */
        if (!pippy_tdesc_equal(&g->values[g->nodes[a].out[0]].t, &g->values[prod].t))
            continue;
        int32_t *in = realloc(mm->in, 3 * sizeof *in);
        if (!in)
            break;
        mm->in = in;
        mm->in[2] = bias;
        mm->n_in = 3;
        pippy_attr at = {.name = "pippy.bias", .type = PIPPY_ATTR_INT, .i = 1};
        if (pippy_node_set_attrs(mm, &at, 1) != PIPPY_OK)
            break;
        int32_t out = g->nodes[a].out[0];
        mm->out[0] = out;
        g->values[out].producer = i;
        g->values[prod].producer = -1;
        g->nodes[a].removed = 1;
        fused++;
    }
    return fused;
}

/* 1 when node t is a Transpose of rank >= 2 that swaps only the last two dims. */
static int pippy_swaps_last_two(const pippy_graph *g, int32_t t)
{
    if (!pippy_is_op(g, t, "Transpose") || g->nodes[t].n_in != 1 || g->nodes[t].in[0] < 0)
        return 0;
    int32_t r = g->values[g->nodes[t].in[0]].t.rank;
    const int64_t *perm = NULL;
    int32_t np = 0;
    for (int32_t a = 0; a < g->nodes[t].n_attrs; a++)
        if (!strcmp(g->nodes[t].attrs[a].name, "perm") && g->nodes[t].attrs[a].type == PIPPY_ATTR_INTS) {
            perm = g->nodes[t].attrs[a].ints;
            np = g->nodes[t].attrs[a].n;
        }
    if (r < 2 || (perm && np != r))
        return 0;
    for (int32_t d = 0; d < r; d++) {
        int64_t want = d == r - 2 ? r - 1 : d == r - 1 ? r - 2 : d;
        int64_t got = perm ? perm[d] : r - 1 - d;
        if (got != want)
            return 0;
    }
    return 1;
}

int32_t pippy_fuse_transpose_matmul(pippy_graph *g)
{
    int32_t fused = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        for (int32_t side = 0; side < 2; side++) {
            pippy_node *mm = &g->nodes[i];
            if (!pippy_is_op(g, i, "MatMul") || mm->n_in < 2 || mm->in[side] < 0)
                continue;
            const char *flag = side ? "pippy.trans_b" : "pippy.trans_a";
            int has = 0;
            for (int32_t a = 0; a < mm->n_attrs; a++)
                has |= !strcmp(mm->attrs[a].name, flag);
            int32_t t = g->values[mm->in[side]].producer;
            if (has || !pippy_swaps_last_two(g, t))
                continue;
            pippy_attr on = {.name = flag, .type = PIPPY_ATTR_INT, .i = 1};
            if (pippy_node_add_attr(mm, &on) != PIPPY_OK)
                return fused;
            int32_t transposed = mm->in[side];
            mm->in[side] = g->nodes[t].in[0];
            if (!g->values[transposed].is_output && pippy_value_readers(g, transposed) == 0)
                g->nodes[t].removed = 1;
            fused++;
        }
    }
    return fused;
}
