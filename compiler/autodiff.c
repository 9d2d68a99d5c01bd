/* autodiff.c — see autodiff.h; the emission helpers of grad.h. */
#include "autodiff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grad.h"
#include "shape.h"

extern const pippy_grad_rule pippy_grad_rules_matmul[];
extern const pippy_grad_rule pippy_grad_rules_binary[];
extern const pippy_grad_rule pippy_grad_rules_eltwise[];
extern const pippy_grad_rule pippy_grad_rules_reduce[];
extern const pippy_grad_rule pippy_grad_rules_shape[];
extern const pippy_grad_rule pippy_grad_rules_norm[];
extern const pippy_grad_rule pippy_grad_rules_conv[];
extern const pippy_grad_rule pippy_grad_rules_softmax[];

static const pippy_grad_rule *const pippy_grad_families[] = {
    pippy_grad_rules_matmul, pippy_grad_rules_binary, pippy_grad_rules_eltwise, pippy_grad_rules_reduce,
    pippy_grad_rules_shape,  pippy_grad_rules_norm,   pippy_grad_rules_conv,    pippy_grad_rules_softmax,
};

const pippy_grad_rule *pippy_grad_rule_find(const char *domain, const char *op)
{
    const char *dm = domain && strcmp(domain, "ai.onnx") ? domain : "";
    for (size_t f = 0; f < sizeof pippy_grad_families / sizeof pippy_grad_families[0]; f++)
        for (const pippy_grad_rule *r = pippy_grad_families[f]; r->op; r++)
            if (!strcmp(r->op, op) && !strcmp(r->domain, dm))
                return r;
    return NULL;
}

int pippy_op_accumulates(const char *domain, const char *op)
{
    static const char *const onnx[] = {"MatMul"};
    static const char *const pippy[] = {"SumTo", "GatherGrad", "ConvGradWeight", "LayerNormalizationWeightGrad",
                                        "BatchNormalizationWeightGrad", "Accumulate"};
    int is_pippy = domain && !strcmp(domain, "pippy");
    const char *const *list = is_pippy ? pippy : onnx;
    size_t n = is_pippy ? sizeof pippy / sizeof pippy[0] : sizeof onnx / sizeof onnx[0];
    if (!is_pippy && domain && domain[0])
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i], op))
            return 1;
    return 0;
}

/* ---------------------------------------------------------------- emission helpers */

static __thread pippy_status pippy_grad_last = PIPPY_OK;

pippy_status pippy_grad_error(void) { return pippy_grad_last != PIPPY_OK ? pippy_grad_last : PIPPY_ERR_INTERNAL; }

static int32_t pippy_grad_failed(pippy_status st)
{
    pippy_grad_last = st;
    return -1;
}

/* A fresh value named after the forward node: "<node>/grad<k>". */
static int32_t pippy_grad_value(pippy_grad_ctx *c, const char *what)
{
    char name[1024];
    const char *base = c->g->nodes[c->node].name;
    for (;;) {
        snprintf(name, sizeof name, "%s/grad%d_%s", base, c->n_emitted++, what);
        if (pippy_graph_find(c->g, name) < 0)
            break;
    }
    int32_t v = pippy_graph_value(c->g, name);
    if (v < 0)
        return pippy_grad_failed(pippy_fail(PIPPY_ERR_NOMEM, "out of memory differentiating '%s'", base));
    return v;
}

int32_t pippy_grad_emit(pippy_grad_ctx *c, const char *domain, const char *op, int32_t n_in, const int32_t *in,
                        const pippy_attr *attrs, int32_t n_attrs, int32_t n_out, int32_t *out)
{
    pippy_graph *g = c->g;
    int32_t outs[PIPPY_MAX_IO];
    if (n_out > PIPPY_MAX_IO || n_in > PIPPY_MAX_IO)
        return pippy_grad_failed(pippy_fail(PIPPY_ERR_INTERNAL, "gradient node %s with too many inputs", op));
    for (int32_t o = 0; o < n_out; o++)
        if ((outs[o] = pippy_grad_value(c, op)) < 0)
            return -1;
    int32_t k;
    pippy_status st = pippy_graph_emit(g, g->values[outs[0]].name, domain, op, n_in, in, attrs, n_attrs, n_out, outs, &k);
    if (st != PIPPY_OK)
        return pippy_grad_failed(pippy_error_prefix(st, "differentiating node '%s' (%s)", g->nodes[c->node].name,
                                                    g->nodes[c->node].op));
    g->nodes[k].phase = PIPPY_PHASE_B;
    g->nodes[k].stage = c->stage;
    for (int32_t o = 0; o < n_out && out; o++)
        out[o] = outs[o];
    return outs[0];
}

int32_t pippy_grad_op1(pippy_grad_ctx *c, const char *op, int32_t a)
{
    return pippy_grad_emit(c, "", op, 1, &a, NULL, 0, 1, NULL);
}

int32_t pippy_grad_op2(pippy_grad_ctx *c, const char *op, int32_t a, int32_t b)
{
    int32_t in[2] = {a, b};
    return pippy_grad_emit(c, "", op, 2, in, NULL, 0, 1, NULL);
}

static int32_t pippy_grad_const(pippy_grad_ctx *c, const pippy_tdesc *t, const void *data)
{
    int32_t v = pippy_grad_value(c, "const");
    if (v < 0)
        return -1;
    size_t bytes = pippy_tdesc_bytes(t);
    void *copy = malloc(bytes ? bytes : 1);
    if (!copy)
        return pippy_grad_failed(pippy_fail(PIPPY_ERR_NOMEM, "out of memory"));
    memcpy(copy, data, bytes);
    pippy_value *x = &c->g->values[v];
    x->kind = PIPPY_VAL_CONST;
    x->t = *t;
    x->shape_known = 1;
    x->data = copy;
    x->data_owned = 1;
    return v;
}

int32_t pippy_grad_scalar(pippy_grad_ctx *c, float x)
{
    pippy_tdesc t = {PIPPY_DT_FLOAT, 0, {0}};
    return pippy_grad_const(c, &t, &x);
}

int32_t pippy_grad_ints(pippy_grad_ctx *c, int32_t n, const int64_t *v)
{
    pippy_tdesc t = {PIPPY_DT_INT64, 1, {n}};
    return pippy_grad_const(c, &t, v);
}

/* The helpers below copy their type argument first: callers pass pippy_grad_type() of a value,
 * which points into the values array that emitting a node may move. */

int32_t pippy_grad_sum_to(pippy_grad_ctx *c, int32_t v, const pippy_tdesc *t)
{
    pippy_tdesc tt = *t;
    if (v < 0 || pippy_tdesc_equal(&c->g->values[v].t, &tt))
        return v;
    pippy_attr a = {.name = "shape", .type = PIPPY_ATTR_INTS, .n = tt.rank, .ints = tt.dims};
    return pippy_grad_emit(c, "pippy", "SumTo", 1, &v, &a, 1, 1, NULL);
}

/* op(v, the int64 constant of t's dims): Reshape or Expand. */
static int32_t pippy_grad_shape_input_op(pippy_grad_ctx *c, const char *op, int32_t v, const pippy_tdesc *t)
{
    pippy_tdesc tt = *t;
    if (v < 0 || pippy_tdesc_equal(&c->g->values[v].t, &tt))
        return v;
    int32_t shape = pippy_grad_ints(c, tt.rank, tt.dims);
    if (shape < 0)
        return -1;
    return pippy_grad_op2(c, op, v, shape);
}

int32_t pippy_grad_reshape(pippy_grad_ctx *c, int32_t v, const pippy_tdesc *t)
{
    return pippy_grad_shape_input_op(c, "Reshape", v, t);
}

int32_t pippy_grad_expand(pippy_grad_ctx *c, int32_t v, const pippy_tdesc *t)
{
    return pippy_grad_shape_input_op(c, "Expand", v, t);
}

pippy_node *pippy_grad_fwd(pippy_grad_ctx *c) { return &c->g->nodes[c->node]; }
int32_t pippy_grad_in(pippy_grad_ctx *c, int32_t i)
{
    const pippy_node *n = pippy_grad_fwd(c);
    return i < n->n_in ? n->in[i] : -1;
}
int32_t pippy_grad_out(pippy_grad_ctx *c, int32_t o)
{
    const pippy_node *n = pippy_grad_fwd(c);
    return o < n->n_out ? n->out[o] : -1;
}
const pippy_tdesc *pippy_grad_type(pippy_grad_ctx *c, int32_t v) { return &c->g->values[v].t; }

int32_t pippy_grad_fwd_output(pippy_grad_ctx *c, int32_t o, const pippy_tdesc *t)
{
    pippy_tdesc tt = *t; /* t may point into the values array, which pippy_grad_value may move */
    pippy_node *n = pippy_grad_fwd(c);
    if (o < n->n_out && n->out[o] >= 0)
        return n->out[o];
    int32_t *out = realloc(n->out, (size_t)(o + 1) * sizeof *out);
    if (!out)
        return pippy_grad_failed(pippy_fail(PIPPY_ERR_NOMEM, "out of memory"));
    n->out = out;
    for (int32_t k = n->n_out; k <= o; k++)
        out[k] = -1;
    n->n_out = o + 1;
    int32_t v = pippy_grad_value(c, "saved");
    if (v < 0)
        return -1;
    n = pippy_grad_fwd(c);
    n->out[o] = v;
    pippy_value *x = &c->g->values[v];
    x->t = tt;
    x->shape_known = 1;
    x->producer = c->node;
    return v;
}

const pippy_attr *pippy_grad_attr(pippy_grad_ctx *c, const char *name)
{
    const pippy_node *n = pippy_grad_fwd(c);
    for (int32_t a = 0; a < n->n_attrs; a++)
        if (!strcmp(n->attrs[a].name, name))
            return &n->attrs[a];
    return NULL;
}

int64_t pippy_grad_attr_int(pippy_grad_ctx *c, const char *name, int64_t dflt)
{
    const pippy_attr *a = pippy_grad_attr(c, name);
    return a && a->type == PIPPY_ATTR_INT ? a->i : dflt;
}

float pippy_grad_attr_float(pippy_grad_ctx *c, const char *name, float dflt)
{
    const pippy_attr *a = pippy_grad_attr(c, name);
    return a && a->type == PIPPY_ATTR_FLOAT ? a->f : dflt;
}

/* ---------------------------------------------------------------- the driver */

typedef struct {
    pippy_graph *g;
    int32_t n_fwd;       /* forward nodes: indices below this */
    int32_t n_vals;      /* values before differentiation */
    char *rg;            /* per value: depends on a float parameter */
    char *need;          /* per value: the loss depends on it */
    /* contributions to the gradient of each value: a linked list over cvals */
    int32_t *head;       /* per value: first contribution, -1 none */
    int32_t *cval, *cstage, *cnext;
    int32_t n_contrib, cap_contrib;
} pippy_ad;

static int pippy_ad_diff_input(const pippy_graph *g, const pippy_node *n, int32_t k)
{
    if (n->in[k] < 0 || g->values[n->in[k]].t.dtype != PIPPY_DT_FLOAT)
        return 0;
    const pippy_grad_rule *r = pippy_grad_rule_find(n->domain, n->op);
    return !(r && k < 32 && (r->nondiff >> k) & 1);
}

static pippy_status pippy_ad_add(pippy_ad *ad, int32_t v, int32_t grad, int32_t stage)
{
    if (ad->n_contrib == ad->cap_contrib) {
        int32_t cap = ad->cap_contrib ? 2 * ad->cap_contrib : 256;
        int32_t *a = realloc(ad->cval, (size_t)cap * sizeof *a), *b = a ? realloc(ad->cstage, (size_t)cap * sizeof *b) : NULL;
        if (a)
            ad->cval = a;
        if (b)
            ad->cstage = b;
        int32_t *n = b ? realloc(ad->cnext, (size_t)cap * sizeof *n) : NULL;
        if (!n)
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory differentiating");
        ad->cnext = n;
        ad->cap_contrib = cap;
    }
    int32_t k = ad->n_contrib++;
    ad->cval[k] = grad;
    ad->cstage[k] = stage;
    ad->cnext[k] = ad->head[v];
    ad->head[v] = k;
    return PIPPY_OK;
}

/* Sum of the values vals[0..n) in stage s (vals[0] when n == 1): one Sum node, or (more terms than
 * a node takes) Sums of PIPPY_MAX_IO terms, then their sum. */
static int32_t pippy_ad_sum(pippy_ad *ad, int32_t node, int32_t stage, const int32_t *vals, int32_t n)
{
    if (n == 1)
        return vals[0];
    pippy_grad_ctx c = {ad->g, node, stage, NULL, 0};
    if (n <= PIPPY_MAX_IO)
        return pippy_grad_emit(&c, "", "Sum", n, vals, NULL, 0, 1, NULL);
    int32_t part[PIPPY_MAX_IO], n_part = 0, per = (n + PIPPY_MAX_IO - 1) / PIPPY_MAX_IO;
    for (int32_t i = 0; i < n; i += per)
        if ((part[n_part++] = pippy_ad_sum(ad, node, stage, vals + i, n - i < per ? n - i : per)) < 0)
            return -1;
    return pippy_ad_sum(ad, node, stage, part, n_part);
}

/* The gradient of v (made by node `node` in stage `home`): its contributions summed within each
 * stage, then across stages in `home`. -1 when nothing flows to v. */
static int32_t pippy_ad_total(pippy_ad *ad, int32_t v, int32_t node, int32_t home)
{
    int32_t stages[PIPPY_MAX_IO * 4], n_st = 0, partial[PIPPY_MAX_IO * 4];
    int32_t vals[PIPPY_MAX_IO * PIPPY_MAX_IO], n_vals;
    for (int32_t k = ad->head[v]; k >= 0; k = ad->cnext[k]) {
        int seen = 0;
        for (int32_t i = 0; i < n_st; i++)
            seen |= stages[i] == ad->cstage[k];
        if (!seen && n_st == (int32_t)(sizeof stages / sizeof stages[0]))
            return pippy_grad_failed(pippy_fail(PIPPY_ERR_UNSUPPORTED, "'%s' is read in more than %d stages",
                                                ad->g->values[v].name, n_st));
        if (!seen)
            stages[n_st++] = ad->cstage[k];
    }
    if (!n_st)
        return -1;
    for (int32_t i = 0; i < n_st; i++) {
        n_vals = 0;
        for (int32_t k = ad->head[v]; k >= 0; k = ad->cnext[k])
            if (ad->cstage[k] == stages[i]) {
                if (n_vals == (int32_t)(sizeof vals / sizeof vals[0]))
                    return pippy_grad_failed(pippy_fail(PIPPY_ERR_UNSUPPORTED,
                                                        "'%s' has more than %d readers in one stage: pippyc cannot "
                                                        "sum their gradients",
                                                        ad->g->values[v].name, n_vals));
                vals[n_vals++] = ad->cval[k];
            }
        /* the list is newest first; sum in the order the contributions were made */
        for (int32_t a = 0, b = n_vals - 1; a < b; a++, b--) {
            int32_t t = vals[a];
            vals[a] = vals[b];
            vals[b] = t;
        }
        if ((partial[i] = pippy_ad_sum(ad, node, stages[i], vals, n_vals)) < 0)
            return -1;
    }
    return pippy_ad_sum(ad, node, home, partial, n_st);
}

/* requires-grad forward, reaches-the-loss backward, over the forward nodes. */
static void pippy_ad_mark(pippy_ad *ad, int32_t loss)
{
    pippy_graph *g = ad->g;
    for (int32_t v = 0; v < ad->n_vals; v++) {
        const pippy_value *x = &g->values[v];
        ad->rg[v] = x->kind == PIPPY_VAL_PARAM && x->t.dtype == PIPPY_DT_FLOAT && x->data &&
                    x->trainable != PIPPY_TRAIN_STATE;
    }
    for (int32_t i = 0; i < ad->n_fwd; i++) {
        const pippy_node *n = &g->nodes[i];
        if (n->removed)
            continue;
        int any = 0;
        for (int32_t k = 0; k < n->n_in; k++)
            any |= pippy_ad_diff_input(g, n, k) && ad->rg[n->in[k]];
        for (int32_t o = 0; o < n->n_out && any; o++)
            if (n->out[o] >= 0 && g->values[n->out[o]].t.dtype == PIPPY_DT_FLOAT)
                ad->rg[n->out[o]] = 1;
    }
    ad->need[loss] = 1;
    for (int32_t i = ad->n_fwd - 1; i >= 0; i--) {
        const pippy_node *n = &g->nodes[i];
        if (n->removed)
            continue;
        int any = 0;
        for (int32_t o = 0; o < n->n_out; o++)
            any |= n->out[o] >= 0 && ad->need[n->out[o]] && ad->rg[n->out[o]];
        for (int32_t k = 0; k < n->n_in && any; k++)
            if (pippy_ad_diff_input(g, n, k) && ad->rg[n->in[k]])
                ad->need[n->in[k]] = 1;
    }
}

/* Differentiate forward node i given the gradients of its outputs. */
static pippy_status pippy_ad_node(pippy_ad *ad, int32_t i)
{
    pippy_graph *g = ad->g;
    int32_t dy[PIPPY_MAX_IO], dx[PIPPY_MAX_IO], any = 0;
    char want[PIPPY_MAX_IO] = {0};
    const pippy_node *n = &g->nodes[i];
    int32_t n_out = n->n_out < PIPPY_MAX_IO ? n->n_out : PIPPY_MAX_IO;
    for (int32_t o = 0; o < n_out; o++) {
        dy[o] = n->out[o] >= 0 ? pippy_ad_total(ad, n->out[o], i, n->stage) : -1;
        n = &g->nodes[i]; /* summing emitted nodes: the array may have moved */
        if (n->out[o] >= 0 && dy[o] < 0 && ad->head[n->out[o]] >= 0)
            return pippy_grad_error();
        any |= dy[o] >= 0;
    }
    if (!any)
        return PIPPY_OK;
    int wants = 0;
    for (int32_t k = 0; k < n->n_in && k < PIPPY_MAX_IO; k++) {
        want[k] = pippy_ad_diff_input(g, n, k) && ad->rg[n->in[k]] && ad->need[n->in[k]];
        wants |= want[k];
        dx[k] = -1;
    }
    if (!wants)
        return PIPPY_OK;
    const pippy_grad_rule *r = pippy_grad_rule_find(n->domain, n->op);
    if (!r)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "%s: node '%s' (%s%s%s) lies between a parameter and the loss, and pippyc has no gradient "
                          "rule for %s",
                          g->path, n->name, n->domain[0] ? n->domain : "", n->domain[0] ? "::" : "", n->op, n->op);
    pippy_grad_ctx c = {g, i, n->stage, want, 0};
    PIPPY_TRY(r->grad(&c, dy, dx));
    n = &g->nodes[i];
    for (int32_t k = 0; k < n->n_in && k < PIPPY_MAX_IO; k++) {
        if (!want[k] || dx[k] < 0)
            continue;
        if (!pippy_tdesc_equal(&g->values[dx[k]].t, &g->values[n->in[k]].t)) {
            char a[128], b[128];
            return pippy_fail(PIPPY_ERR_INTERNAL, "gradient rule of %s (node '%s') gave %s for input %d of type %s",
                              n->op, n->name, pippy_tdesc_str(&g->values[dx[k]].t, a, sizeof a), k,
                              pippy_tdesc_str(&g->values[n->in[k]].t, b, sizeof b));
        }
        PIPPY_TRY(pippy_ad_add(ad, n->in[k], dx[k], n->stage));
    }
    return PIPPY_OK;
}

/* Parameter p's contributions: one Accumulate node each into p's gradient buffer of the
 * stage that made it. */
static pippy_status pippy_ad_param(pippy_ad *ad, int32_t p)
{
    pippy_graph *g = ad->g;
    int32_t grad_of_stage[64];
    for (int32_t s = 0; s < 64; s++)
        grad_of_stage[s] = -1;
    for (int32_t k = ad->head[p]; k >= 0; k = ad->cnext[k]) {
        int32_t s = ad->cstage[k];
        if (s < 0 || s >= 64)
            return pippy_fail(PIPPY_ERR_INTERNAL, "gradient of '%s' in stage %d", g->values[p].name, s);
        if (grad_of_stage[s] < 0) {
            char name[1024];
            snprintf(name, sizeof name, "%s::grad@stage%d", g->values[p].name, s);
            int32_t v = pippy_graph_value(g, name);
            if (v < 0)
                return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
            pippy_value *x = &g->values[v];
            x->kind = PIPPY_VAL_GRAD;
            x->t = g->values[p].t;
            x->shape_known = 1;
            x->grad_of = p;
            grad_of_stage[s] = v;
        }
        int32_t c = ad->cval[k];
        pippy_grad_ctx ctx = {g, g->values[c].producer >= 0 ? g->values[c].producer : 0, s, NULL, 0};
        int32_t out = grad_of_stage[s];
        char name[1024];
        snprintf(name, sizeof name, "%s::accumulate%d", g->values[grad_of_stage[s]].name, k);
        int32_t nd = pippy_graph_add_node(g, name, "Accumulate", "pippy", 1, &c, 1, &out);
        if (nd < 0)
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
        g->nodes[nd].phase = PIPPY_PHASE_W;
        g->nodes[nd].stage = s;
        (void)ctx;
    }
    g->values[p].trainable = PIPPY_TRAIN_PARAM;
    return PIPPY_OK;
}

/* Readers of v among live nodes (a count, and the last one). */
static int32_t pippy_ad_readers(const pippy_graph *g, int32_t from, int32_t v, int32_t *who)
{
    int32_t n = 0;
    for (int32_t i = from; i < g->n_nodes; i++) {
        const pippy_node *x = &g->nodes[i];
        if (x->removed)
            continue;
        for (int32_t k = 0; k < x->n_in; k++)
            if (x->in[k] == v) {
                n++;
                *who = i;
            }
    }
    return n;
}

/* An Accumulate whose input's producer can add into its outputs itself disappears: the producer
 * writes the gradient buffer with "pippy.accumulate". Every output of the producer must be such
 * an input (ConvGradWeight's dW and dB both go to gradient buffers), of its own stage: a parameter
 * another stage reads through a node of the parameter's stage (Identity(P), Transpose(P) in the
 * first stage, read by the last) gets its gradient sent back to that stage, which adds it. */
static pippy_status pippy_ad_fold_accumulates(pippy_graph *g, int32_t first)
{
    for (int32_t i = first; i < g->n_nodes; i++) {
        pippy_node *p = &g->nodes[i];
        if (p->removed || !pippy_op_accumulates(p->domain, p->op) || !strcmp(p->op, "Accumulate"))
            continue;
        int32_t acc[PIPPY_MAX_IO], ok = p->n_out <= PIPPY_MAX_IO;
        for (int32_t o = 0; o < p->n_out && ok; o++) {
            int32_t who = -1;
            ok = p->out[o] >= 0 && pippy_ad_readers(g, i + 1, p->out[o], &who) == 1 &&
                 !strcmp(g->nodes[who].op, "Accumulate") && !strcmp(g->nodes[who].domain, "pippy") &&
                 g->nodes[who].stage == p->stage; /* else the gradient crosses stages first */
            acc[o] = who;
        }
        if (!ok)
            continue;
        pippy_attr accumulate = {.name = "pippy.accumulate", .type = PIPPY_ATTR_INT, .i = 1};
        PIPPY_TRY(pippy_node_add_attr(p, &accumulate));
        for (int32_t o = 0; o < p->n_out; o++) {
            pippy_node *a = &g->nodes[acc[o]];
            g->values[p->out[o]].producer = -1;
            p->out[o] = a->out[0];
            a->removed = 1;
        }
        p->phase = PIPPY_PHASE_W;
    }
    return PIPPY_OK;
}

/* Phase of every backward node: B when another stage reads what it makes (directly or through
 * later nodes of its stage), else W. */
static pippy_status pippy_ad_phases(pippy_graph *g, int32_t first)
{
    char *b_needed = calloc((size_t)g->n_values + 1, 1);
    if (!b_needed)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    for (int32_t i = first; i < g->n_nodes; i++) {
        const pippy_node *n = &g->nodes[i];
        if (n->removed)
            continue;
        for (int32_t k = 0; k < n->n_in; k++) {
            int32_t v = n->in[k], pr = v >= 0 ? g->values[v].producer : -1;
            if (pr >= first && g->nodes[pr].stage != n->stage)
                b_needed[v] = 1;
        }
    }
    for (int32_t i = g->n_nodes - 1; i >= first; i--) {
        pippy_node *n = &g->nodes[i];
        if (n->removed)
            continue;
        int b = 0;
        for (int32_t o = 0; o < n->n_out; o++)
            b |= n->out[o] >= 0 && b_needed[n->out[o]];
        n->phase = b ? PIPPY_PHASE_B : PIPPY_PHASE_W;
        for (int32_t k = 0; k < n->n_in && b; k++)
            if (n->in[k] >= 0)
                b_needed[n->in[k]] = 1;
    }
    free(b_needed);
    return PIPPY_OK;
}

static void pippy_ad_free(pippy_ad *ad)
{
    free(ad->rg), free(ad->need), free(ad->head), free(ad->cval), free(ad->cstage), free(ad->cnext);
}

pippy_status pippy_autodiff(pippy_graph *g, const pippy_autodiff_opts *o)
{
    pippy_ad ad;
    memset(&ad, 0, sizeof ad);
    ad.g = g;
    ad.n_fwd = g->n_nodes;
    ad.n_vals = g->n_values;
    ad.rg = calloc((size_t)g->n_values + 1, 1);
    ad.need = calloc((size_t)g->n_values + 1, 1);
    ad.head = malloc(((size_t)g->n_values + 1) * sizeof *ad.head);
    if (!ad.rg || !ad.need || !ad.head) {
        pippy_ad_free(&ad);
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory differentiating");
    }
    for (int32_t v = 0; v < g->n_values; v++)
        ad.head[v] = -1;
    const pippy_value *L = &g->values[o->loss];
    pippy_status st = PIPPY_OK;
    if (L->t.dtype != PIPPY_DT_FLOAT || pippy_tdesc_numel(&L->t) != 1 || L->producer < 0)
        st = pippy_fail(PIPPY_ERR_INVALID, "%s: the loss '%s' must be a float scalar computed by the model, found %s",
                        g->path, L->name, pippy_dtype_name(L->t.dtype));
    if (st == PIPPY_OK)
        pippy_ad_mark(&ad, o->loss);
    /* the seed: d(step loss)/d(microbatch loss) = 1/M, in the loss's stage */
    int32_t loss_stage = L->producer >= 0 ? g->nodes[L->producer].stage : 0;
    if (st == PIPPY_OK) {
        pippy_grad_ctx c = {g, L->producer, loss_stage, NULL, 0};
        int32_t seed = pippy_grad_scalar(&c, 1.0f / (float)(o->microbatches > 0 ? o->microbatches : 1));
        if (seed >= 0 && g->values[o->loss].t.rank > 0)
            seed = pippy_grad_reshape(&c, seed, &g->values[o->loss].t);
        st = seed < 0 ? pippy_grad_error() : pippy_ad_add(&ad, o->loss, seed, loss_stage);
    }
    int32_t first = g->n_nodes;
    for (int32_t i = ad.n_fwd - 1; i >= 0 && st == PIPPY_OK; i--)
        if (!g->nodes[i].removed)
            st = pippy_ad_node(&ad, i);
    int32_t trained = 0;
    for (int32_t v = 0; v < ad.n_vals && st == PIPPY_OK; v++)
        if (g->values[v].kind == PIPPY_VAL_PARAM && ad.head[v] >= 0) {
            st = pippy_ad_param(&ad, v);
            trained++;
        }
    if (st == PIPPY_OK && !trained)
        st = pippy_fail(PIPPY_ERR_INVALID, "%s: no parameter reaches the loss '%s': there is nothing to train", g->path,
                        g->values[o->loss].name); /* not L: differentiating moved the values */
    if (st == PIPPY_OK)
        st = pippy_ad_fold_accumulates(g, first);
    if (st == PIPPY_OK)
        st = pippy_ad_phases(g, first);
    pippy_ad_free(&ad);
    return st;
}
