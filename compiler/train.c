/* train.c — see train.h. */
#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shape.h"

/* A new intermediate value "<base><suffix>" (made unique). */
static int32_t pippy_train_value(pippy_graph *g, const char *base, const char *suffix)
{
    char name[1024];
    snprintf(name, sizeof name, "%s%s", base, suffix);
    for (int k = 1; pippy_graph_find(g, name) >= 0; k++)
        snprintf(name, sizeof name, "%s%s_%d", base, suffix, k);
    int32_t v = pippy_graph_value(g, name);
    if (v < 0)
        pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    return v;
}

/* out = op(in...), a new value named after the loss. */
static pippy_status pippy_train_op(pippy_graph *g, const char *op, int32_t n_in, const int32_t *in,
                                   const pippy_attr *attrs, int32_t n_attrs, const char *what, int32_t *out)
{
    *out = pippy_train_value(g, "pippy::loss/", what);
    if (*out < 0)
        return PIPPY_ERR_NOMEM;
    return pippy_graph_emit(g, g->values[*out].name, "", op, n_in, in, attrs, n_attrs, 1, out, NULL);
}

static pippy_status pippy_train_const_ints(pippy_graph *g, const char *what, int32_t n, const int64_t *v, int32_t *out)
{
    *out = pippy_train_value(g, "pippy::loss/", what);
    if (*out < 0)
        return PIPPY_ERR_NOMEM;
    pippy_value *x = &g->values[*out];
    x->kind = PIPPY_VAL_CONST;
    x->t = (pippy_tdesc){PIPPY_DT_INT64, 1, {n}};
    x->shape_known = 1;
    x->data = malloc((size_t)n * sizeof(int64_t) + 1);
    if (!x->data)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    x->data_owned = 1;
    memcpy(x->data, v, (size_t)n * sizeof(int64_t));
    return PIPPY_OK;
}

/* The labels input of --loss: a new graph input of type t. */
static pippy_status pippy_train_labels(pippy_graph *g, const char *name, const pippy_tdesc *t, int32_t *out)
{
    if (pippy_graph_find(g, name) >= 0)
        return pippy_fail(PIPPY_ERR_USAGE,
                          "--labels %s: the model already has a value of that name; choose a name for the new input",
                          name);
    int32_t v = pippy_graph_value(g, name);
    int32_t *ins = realloc(g->inputs, ((size_t)g->n_inputs + 1) * sizeof *ins);
    if (v < 0 || !ins)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    g->inputs = ins;
    g->inputs[g->n_inputs++] = v;
    g->values[v].kind = PIPPY_VAL_INPUT;
    g->values[v].t = *t;
    g->values[v].shape_known = 1;
    *out = v;
    return PIPPY_OK;
}

/* mean((y - t)^2) over every element, against labels of y's shape. */
static pippy_status pippy_train_mse(pippy_graph *g, int32_t y, const char *labels, int32_t *loss)
{
    int32_t t = -1, d, sq;
    PIPPY_TRY(pippy_train_labels(g, labels, &g->values[y].t, &t));
    int32_t in[2] = {y, t};
    PIPPY_TRY(pippy_train_op(g, "Sub", 2, in, NULL, 0, "diff", &d));
    int32_t in2[2] = {d, d};
    PIPPY_TRY(pippy_train_op(g, "Mul", 2, in2, NULL, 0, "square", &sq));
    pippy_attr keep = {.name = "keepdims", .type = PIPPY_ATTR_INT, .i = 0};
    return pippy_train_op(g, "ReduceMean", 1, &sq, &keep, 1, "mse", loss);
}

/* F.cross_entropy(y.reshape(-1, V), labels.reshape(-1)): classes on y's last axis, int64 labels
 * of y's shape without it. */
static pippy_status pippy_train_cross_entropy(pippy_graph *g, int32_t y, const char *labels, int32_t *loss)
{
    const pippy_tdesc yt = g->values[y].t;
    if (yt.rank < 1 || yt.dtype != PIPPY_DT_FLOAT)
        return pippy_fail(PIPPY_ERR_USAGE, "--loss cross_entropy: the model's output '%s' must be float logits with "
                                           "the classes on the last axis",
                          g->values[y].name);
    pippy_tdesc lt = yt;
    lt.rank--;
    lt.dtype = PIPPY_DT_INT64;
    int32_t t = -1, s2, s1, y2, t1;
    PIPPY_TRY(pippy_train_labels(g, labels, &lt, &t));
    int64_t d2[2] = {-1, yt.dims[yt.rank - 1]}, d1[1] = {-1};
    PIPPY_TRY(pippy_train_const_ints(g, "shape2", 2, d2, &s2));
    PIPPY_TRY(pippy_train_const_ints(g, "shape1", 1, d1, &s1));
    int32_t a[2] = {y, s2}, b[2] = {t, s1};
    PIPPY_TRY(pippy_train_op(g, "Reshape", 2, a, NULL, 0, "logits", &y2));
    PIPPY_TRY(pippy_train_op(g, "Reshape", 2, b, NULL, 0, "labels", &t1));
    int32_t c[2] = {y2, t1};
    pippy_attr mean = {.name = "reduction", .type = PIPPY_ATTR_STRING, .s = "mean"};
    return pippy_train_op(g, "SoftmaxCrossEntropyLoss", 2, c, &mean, 1, "cross_entropy", loss);
}

/* The model's own loss: its one float scalar output. */
static pippy_status pippy_train_own_loss(pippy_graph *g, int32_t *loss)
{
    *loss = -1;
    for (int32_t o = 0; o < g->n_outputs; o++) {
        const pippy_value *v = &g->values[g->outputs[o]];
        if (v->t.dtype != PIPPY_DT_FLOAT || pippy_tdesc_numel(&v->t) != 1)
            continue;
        if (*loss >= 0)
            return pippy_fail(PIPPY_ERR_USAGE,
                              "%s: the outputs '%s' and '%s' are both scalars: which is the loss? (export only the "
                              "loss, or give --loss with --labels)",
                              g->path, g->values[*loss].name, v->name);
        *loss = g->outputs[o];
    }
    if (*loss >= 0)
        return PIPPY_OK;
    char list[512] = "", sh[96];
    size_t k = 0;
    for (int32_t o = 0; o < g->n_outputs && k < sizeof list - 128; o++)
        k += (size_t)snprintf(list + k, sizeof list - k, "%s'%s' %s", o ? ", " : "", g->values[g->outputs[o]].name,
                              pippy_tdesc_str(&g->values[g->outputs[o]].t, sh, sizeof sh));
    return pippy_fail(PIPPY_ERR_USAGE,
                      "%s: --train without --loss needs a model whose output is its loss (a float scalar), found %s; "
                      "give --loss mse|cross_entropy --labels NAME",
                      g->path, list);
}

/* Node i becomes domain::op with outputs outs and attributes at, in place (so the node order stays
 * topological), and its outputs are inferred again. */
static pippy_status pippy_train_rewrite(pippy_graph *g, int32_t i, const char *domain, const char *op, int32_t n_in,
                                        int32_t n_out, const int32_t *outs, const pippy_attr *at, int32_t n_at)
{
    pippy_node *n = &g->nodes[i];
    char *nop = strdup(op), *ndom = strdup(domain);
    int32_t *no = malloc((size_t)n_out * sizeof *no);
    if (!nop || !ndom || !no) {
        free(nop), free(ndom), free(no);
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    }
    PIPPY_TRY(pippy_node_set_attrs(n, at, n_at));
    free(n->op), free(n->domain), free(n->out);
    n->op = nop;
    n->domain = ndom;
    memcpy(no, outs, (size_t)n_out * sizeof *no);
    n->out = no;
    n->n_out = n_out;
    n->n_in = n_in;
    pippy_op_desc d;
    return pippy_node_infer(g, i, &d);
}

/* Every BatchNormalization: statistics of the microbatch, running statistics as state. */
static pippy_status pippy_train_batchnorm(pippy_graph *g, int32_t i)
{
    pippy_node *n = &g->nodes[i];
    if (n->n_in != 5 || n->in[0] < 0)
        return PIPPY_OK;
    for (int32_t o = 1; o < n->n_out; o++) {
        if (n->out[o] >= 0 && g->values[n->out[o]].is_output)
            return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                              "node '%s' (BatchNormalization): its statistics output '%s' is a graph output; pippyc "
                              "updates the running statistics in place in training (pippyrun --save writes them)",
                              n->name, g->values[n->out[o]].name);
        for (int32_t j = 0; j < g->n_nodes && n->out[o] >= 0; j++)
            for (int32_t k = 0; !g->nodes[j].removed && k < g->nodes[j].n_in; k++)
                if (g->nodes[j].in[k] == n->out[o])
                    return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                                      "node '%s' (BatchNormalization): its running-statistics outputs are read by "
                                      "node '%s'; pippyc updates them in place in training",
                                      n->name, g->nodes[j].name);
    }
    for (int32_t k = 3; k < 5; k++) {
        pippy_value *st = &g->values[n->in[k]];
        if (st->kind != PIPPY_VAL_PARAM || st->t.dtype != PIPPY_DT_FLOAT)
            return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                              "node '%s' (BatchNormalization): the running statistics must be float initializers",
                              n->name);
        st->trainable = PIPPY_TRAIN_STATE;
    }
    int32_t outs[3] = {n->out[0], pippy_train_value(g, n->name, "::saved_mean"),
                       pippy_train_value(g, n->name, "::saved_inv_std")};
    if (outs[1] < 0 || outs[2] < 0)
        return PIPPY_ERR_NOMEM;
    n = &g->nodes[i];
    pippy_attr at[2] = {{.name = "epsilon", .type = PIPPY_ATTR_FLOAT, .f = 1e-5f},
                        {.name = "momentum", .type = PIPPY_ATTR_FLOAT, .f = 0.9f}};
    for (int32_t a = 0; a < n->n_attrs; a++)
        for (int32_t q = 0; q < 2; q++)
            if (!strcmp(n->attrs[a].name, at[q].name) && n->attrs[a].type == PIPPY_ATTR_FLOAT)
                at[q].f = n->attrs[a].f;
    return pippy_train_rewrite(g, i, "pippy", "BatchNormalizationTraining", 5, 3, outs, at, 2);
}

/* A Dropout whose training_mode input is a constant true (and whose ratio is > 0). */
static pippy_status pippy_train_dropout(pippy_graph *g, int32_t i, uint64_t seed)
{
    pippy_node *n = &g->nodes[i];
    if (n->n_in < 3 || n->in[2] < 0 || n->in[0] < 0)
        return PIPPY_OK;
    const pippy_value *mode = &g->values[n->in[2]], *ratio = n->in[1] >= 0 ? &g->values[n->in[1]] : NULL;
    if (!mode->data || mode->t.dtype != PIPPY_DT_BOOL || !*(const uint8_t *)mode->data)
        return PIPPY_OK;
    float r = 0.5f;
    if (ratio && ratio->data && ratio->t.dtype == PIPPY_DT_FLOAT)
        r = *(const float *)ratio->data;
    if (r <= 0.0f)
        return PIPPY_OK;
    int32_t outs[2] = {n->out[0], n->n_out > 1 && n->out[1] >= 0 ? n->out[1] : pippy_train_value(g, n->name, "::mask")};
    if (outs[1] < 0)
        return PIPPY_ERR_NOMEM;
    n = &g->nodes[i];
    pippy_attr at[2] = {{.name = "ratio", .type = PIPPY_ATTR_FLOAT, .f = r},
                        {.name = "seed", .type = PIPPY_ATTR_INT, .i = (int64_t)(seed + (uint64_t)i)}};
    return pippy_train_rewrite(g, i, "pippy", "DropoutTrain", 1, 2, outs, at, 2);
}

/* A stored float parameter (an initializer with its data). */
static int pippy_train_is_param(const pippy_graph *g, int32_t v)
{
    return v >= 0 && g->values[v].kind == PIPPY_VAL_PARAM && g->values[v].data &&
           g->values[v].t.dtype == PIPPY_DT_FLOAT;
}

/* One more undone merge or fold; the first is named in the report. */
static void pippy_train_report_one(int *count, char *first, size_t cap, const char *a, const char *how, const char *b)
{
    if ((*count)++ == 0)
        snprintf(first, cap, "%s %s %s", a, how, b);
}

/* Node i = Identity(P), P an initializer: its output becomes a parameter of its own, with a copy
 * of P's values. */
static pippy_status pippy_train_untie(pippy_graph *g, int32_t i, pippy_train_report *rep)
{
    pippy_node *n = &g->nodes[i];
    int32_t p = n->in[0], v = n->out[0];
    size_t bytes = pippy_value_bytes(&g->values[p]);
    void *copy = malloc(bytes ? bytes : 1);
    if (!copy)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    memcpy(copy, g->values[p].data, bytes);
    pippy_value *x = &g->values[v];
    x->kind = PIPPY_VAL_PARAM;
    x->data = copy;
    x->data_owned = 1;
    x->producer = -1;
    n->removed = 1;
    pippy_train_report_one(&rep->untied, rep->untied_first, sizeof rep->untied_first, x->name, "from",
                           g->values[p].name);
    return PIPPY_OK;
}

/* The 2-D parameter whose transpose equals a bit for bit, or -1. A constant a (all its values
 * equal: zeros, ones) proves nothing and gets -1. */
static int32_t pippy_train_transpose_of(const pippy_graph *g, int32_t a)
{
    const pippy_value *x = &g->values[a];
    int64_t R = x->t.dims[0], C = x->t.dims[1];
    const float *xa = x->data;
    int64_t k = 1;
    while (k < R * C && xa[k] == xa[0])
        k++;
    if (k >= R * C)
        return -1;
    for (int32_t b = 0; b < g->n_values; b++) {
        const pippy_value *y = &g->values[b];
        if (b == a || !pippy_train_is_param(g, b) || y->t.rank != 2 || y->t.dims[0] != C || y->t.dims[1] != R)
            continue;
        const float *yb = y->data;
        int64_t r = 0, c = 0;
        for (r = 0; r < R; r++) {
            for (c = 0; c < C && !memcmp(&xa[r * C + c], &yb[c * R + r], sizeof(float)); c++)
                ;
            if (c < C)
                break;
        }
        if (r == R)
            return b;
    }
    return -1;
}

/* a, a folded transpose of parameter b, is made Transpose(b) again. */
static pippy_status pippy_train_retie(pippy_graph *g, int32_t a, int32_t b, pippy_train_report *rep)
{
    pippy_value *x = &g->values[a];
    if (x->data_owned)
        free(x->data);
    x->data = NULL;
    x->data_owned = 0;
    x->kind = PIPPY_VAL_INTERMEDIATE;
    x->transpose_of = b;
    char name[1024];
    snprintf(name, sizeof name, "%s::transpose_of_parameter", x->name);
    static const int64_t perm[2] = {1, 0};
    pippy_attr at = {.name = "perm", .type = PIPPY_ATTR_INTS, .n = 2, .ints = perm};
    PIPPY_TRY(pippy_graph_emit(g, name, "", "Transpose", 1, &b, &at, 1, 1, &a, NULL));
    pippy_train_report_one(&rep->retied, rep->retied_first, sizeof rep->retied_first, g->values[a].name,
                           "= Transpose of", g->values[b].name);
    return PIPPY_OK;
}

/* What torch.export's graph signature says of each value: per line "<placeholder>: KIND target='NAME'",
 * kind[v] = 1 for a PARAMETER, 2 for another kind (BUFFER, CONSTANT_TENSOR, ...). The count of
 * PARAMETERs with no float initializer of their name. */
static int32_t pippy_train_signature_kinds(const pippy_graph *g, const char *sig, char *kind)
{
    int32_t missing = 0;
    for (const char *l = sig; *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l)) {
        const char *c = strstr(l, ": "), *e = strchr(l, '\n'), *t = c ? strstr(c, " target='") : NULL;
        if (!t || (e && t > e))
            continue;
        int param = !strncmp(c + 2, "PARAMETER target='", 18);
        t += strlen(" target='");
        const char *q = strchr(t, '\'');
        char name[1024];
        snprintf(name, sizeof name, "%.*s", q && (!e || q < e) ? (int)(q - t) : 0, t);
        int32_t v = pippy_graph_find(g, name);
        if (v >= 0)
            kind[v] = param ? 1 : 2;
        missing += param && !pippy_train_is_param(g, v);
    }
    return missing;
}

/* An export of torch.onnx.export(dynamo=True) carries torch.export's graph signature (train.h): its
 * PARAMETERs are what PyTorch trains; every other initializer (buffers, constants the exporter stored
 * as initializers: an epsilon, a rotary table) is not trained (a BatchNorm's running statistics are
 * still updated by it, as buffers in PyTorch). An export whose graph optimizer folded
 * parameters into new initializers is refused. */
static pippy_status pippy_train_torch_export(pippy_graph *g, pippy_train_report *rep)
{
    const char *sig = pippy_graph_meta(g, "pkg.torch.export.ExportedProgram.graph_signature");
    if (!sig)
        return PIPPY_OK;
    char *kind = calloc((size_t)g->n_values + 1, 1);
    if (!kind)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    int32_t missing = pippy_train_signature_kinds(g, sig, kind), folded = -1;
    for (int32_t v = 0; v < g->n_values; v++) {
        if (!pippy_train_is_param(g, v) || kind[v] == 1)
            continue;
        if (g->values[v].t.rank > 0 && kind[v] == 0 && folded < 0)
            folded = v; /* named by no line of the signature: made by the exporter */
        g->values[v].trainable = PIPPY_TRAIN_STATE;
        rep->frozen++;
    }
    free(kind);
    if (missing && folded >= 0) {
        char s[160];
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "%s: exported by torch.onnx.export(dynamo=True) with its graph optimizer on, which folded "
                          "parameters into new initializers (e.g. '%s', %s; %d of the graph signature's parameters "
                          "are not in the file) and may store equal parameters once: pippyc cannot tell what PyTorch "
                          "trains. Export it with torch.onnx.export(..., dynamo=True, optimize=False) to train it "
                          "(inference takes either)",
                          g->path, g->values[folded].name, pippy_tdesc_str(&g->values[folded].t, s, sizeof s), missing);
    }
    rep->tied_params = missing;
    return PIPPY_OK;
}

/* Undo what torch.onnx's export did to the parameters (train.h). */
static pippy_status pippy_train_exported_params(pippy_graph *g, pippy_train_report *rep)
{
    PIPPY_TRY(pippy_train_torch_export(g, rep));
    int32_t n_fwd = g->n_nodes;
    for (int32_t i = 0; i < n_fwd; i++) {
        const pippy_node *n = &g->nodes[i];
        if (!n->removed && !n->domain[0] && !strcmp(n->op, "Identity") && n->n_in >= 1 && n->n_out == 1 &&
            pippy_train_is_param(g, n->in[0]) && n->out[0] >= 0 && !g->values[n->out[0]].is_output)
            PIPPY_TRY(pippy_train_untie(g, i, rep));
    }
    int retied = rep->retied;
    for (int32_t a = 0; a < g->n_values; a++) {
        if (!pippy_train_is_param(g, a) || strncmp(g->values[a].name, "onnx::", 6) || g->values[a].t.rank != 2)
            continue;
        int32_t b = pippy_train_transpose_of(g, a);
        if (b >= 0)
            PIPPY_TRY(pippy_train_retie(g, a, b, rep));
    }
    return rep->retied > retied ? pippy_graph_toposort(g) : PIPPY_OK; /* the Transposes were appended */
}

/* --padding-idx TABLE=ROW[,...]: each Gather of the parameter TABLE marks ROW as its padding row. */
static pippy_status pippy_train_padding(pippy_graph *g, const char *spec)
{
    for (const char *p = spec; p && *p;) {
        const char *comma = strchr(p, ','), *eq = memchr(p, '=', comma ? (size_t)(comma - p) : strlen(p));
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char name[1024], *end;
        if (!eq || eq == p || (size_t)(eq - p) >= sizeof name)
            return pippy_fail(PIPPY_ERR_USAGE, "--padding-idx: '%.*s' is not TABLE=ROW", (int)len, p);
        snprintf(name, sizeof name, "%.*s", (int)(eq - p), p);
        long long row = strtoll(eq + 1, &end, 10);
        if (end == eq + 1 || end != p + len)
            return pippy_fail(PIPPY_ERR_USAGE, "--padding-idx %s: the row must be a whole number, found '%.*s'", name,
                              (int)(p + len - eq - 1), eq + 1);
        int32_t v = pippy_graph_find(g, name);
        if (!pippy_train_is_param(g, v) || g->values[v].t.rank < 1)
            return pippy_fail(PIPPY_ERR_USAGE, "--padding-idx %s: the model has no float parameter of that name", name);
        int64_t rows = g->values[v].t.dims[0];
        if (row < -rows || row >= rows)
            return pippy_fail(PIPPY_ERR_USAGE, "--padding-idx %s=%lld: the table has %lld rows", name, row,
                              (long long)rows);
        int found = 0;
        for (int32_t i = 0; i < g->n_nodes; i++) {
            pippy_node *n = &g->nodes[i];
            if (n->removed || n->domain[0] || strcmp(n->op, "Gather") || n->n_in < 2 || n->in[0] != v)
                continue;
            pippy_op_desc d;
            pippy_graph_op_desc(g, i, &d);
            int64_t axis = pippy_attr_int(&d, "axis", 0);
            if (axis != 0 && axis != -g->values[v].t.rank)
                continue;
            if (pippy_attr_int(&d, "pippy.padding_idx", INT64_MIN) != INT64_MIN)
                return pippy_fail(PIPPY_ERR_USAGE, "--padding-idx names %s twice", name);
            pippy_attr pad = {.name = "pippy.padding_idx", .type = PIPPY_ATTR_INT, .i = row};
            PIPPY_TRY(pippy_node_add_attr(n, &pad));
            found++;
        }
        if (!found)
            return pippy_fail(PIPPY_ERR_USAGE, "--padding-idx %s: no Gather along axis 0 reads it (it is not an "
                              "embedding table here)", name);
        p = comma ? comma + 1 : NULL;
    }
    return PIPPY_OK;
}

pippy_status pippy_train_prepare(pippy_graph *g, const pippy_train_opts *o, int32_t *loss)
{
    if (o->loss && !o->labels)
        return pippy_fail(PIPPY_ERR_USAGE, "--loss %s needs --labels NAME (the graph input the labels come in)", o->loss);
    if (!o->loss && o->labels)
        return pippy_fail(PIPPY_ERR_USAGE, "--labels %s needs --loss mse|cross_entropy", o->labels);
    if (o->loss && g->n_outputs != 1)
        return pippy_fail(PIPPY_ERR_USAGE, "--loss %s: the model has %d outputs; it must have one", o->loss,
                          g->n_outputs);
    pippy_train_report none;
    memset(&none, 0, sizeof none);
    PIPPY_TRY(pippy_train_exported_params(g, o->report ? o->report : &none));
    PIPPY_TRY(pippy_train_padding(g, o->padding_idx));
    int32_t n_fwd = g->n_nodes;
    for (int32_t i = 0; i < n_fwd; i++) {
        if (g->nodes[i].removed || g->nodes[i].domain[0])
            continue;
        if (!strcmp(g->nodes[i].op, "BatchNormalization"))
            PIPPY_TRY(pippy_train_batchnorm(g, i));
        else if (!strcmp(g->nodes[i].op, "Dropout"))
            PIPPY_TRY(pippy_train_dropout(g, i, o->seed));
    }
    if (!o->loss)
        PIPPY_TRY(pippy_train_own_loss(g, loss));
    else if (!strcmp(o->loss, "mse"))
        PIPPY_TRY(pippy_train_mse(g, g->outputs[0], o->labels, loss));
    else if (!strcmp(o->loss, "cross_entropy"))
        PIPPY_TRY(pippy_train_cross_entropy(g, g->outputs[0], o->labels, loss));
    else
        return pippy_fail(PIPPY_ERR_USAGE, "--loss %s: known losses are mse and cross_entropy", o->loss);
    for (int32_t k = 0; k < g->n_outputs; k++)
        g->values[g->outputs[k]].is_output = 0;
    g->outputs[0] = *loss;
    g->n_outputs = 1;
    g->values[*loss].is_output = 1;
    return PIPPY_OK;
}
