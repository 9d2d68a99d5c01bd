/* emit_c.c — writes out/stageK.c: readable C for one stage.
 *
 * Layout of the file: a provenance header; one typed #define per buffer named v_<ONNX name>
 * (stage inputs and outputs are runtime slots, parameters offsets into the weights, their
 * gradients offsets into the gradient buffer, values kept from one phase to a later one offsets
 * into the microbatch's stash, everything else offsets into the arena); one descriptor per
 * kernel (op, attributes, shapes); init(), which creates every kernel once; forward() and, for
 * training, backward() (input gradients) and weight() (weight gradients): straight-line calls
 * into the backend, each under a comment with the node, its kernel, what was fused into it and
 * the shapes; a table of every value (for PIPPY_DUMP); and main(). */
#include "emit.h"
#include "place.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void pippy_c_ident(const char *name, char *buf, size_t n)
{
    size_t k = 0;
    if (n < 4)
        return;
    buf[k++] = 'v';
    buf[k++] = '_';
    for (const char *c = name; *c && k + 1 < n; c++)
        buf[k++] = isalnum((unsigned char)*c) ? *c : '_';
    buf[k] = 0;
}

pippy_status pippy_file_begin(const char *dir, const char *name, FILE **f, char *tmp_path, size_t n)
{
    snprintf(tmp_path, n, "%s/.%s.tmp", dir, name);
    *f = fopen(tmp_path, "wb");
    if (!*f)
        return pippy_fail(PIPPY_ERR_IO, "cannot write %s: %s", tmp_path, strerror(errno));
    return PIPPY_OK;
}

pippy_status pippy_file_commit(FILE *f, const char *tmp_path)
{
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        unlink(tmp_path);
        return pippy_fail(PIPPY_ERR_IO, "writing %s failed: %s", tmp_path, strerror(errno));
    }
    char final[4096];
    const char *slash = strrchr(tmp_path, '/');
    size_t dl = (size_t)(slash - tmp_path);
    /* ".name.tmp" -> "name" */
    snprintf(final, sizeof final, "%.*s/%.*s", (int)dl, tmp_path, (int)(strlen(slash + 2) - 4), slash + 2);
    if (rename(tmp_path, final) != 0) {
        unlink(tmp_path);
        return pippy_fail(PIPPY_ERR_IO, "cannot rename %s to %s: %s", tmp_path, final, strerror(errno));
    }
    return PIPPY_OK;
}

static const char *pippy_dt_macro(int32_t dt)
{
    switch (dt) {
    case PIPPY_DT_FLOAT: return "FLOAT";
    case PIPPY_DT_UINT8: return "UINT8";
    case PIPPY_DT_INT8: return "INT8";
    case PIPPY_DT_INT32: return "INT32";
    case PIPPY_DT_INT64: return "INT64";
    case PIPPY_DT_BOOL: return "BOOL";
    case PIPPY_DT_FLOAT16: return "FLOAT16";
    case PIPPY_DT_DOUBLE: return "DOUBLE";
    default: return "UNDEFINED";
    }
}

static void pippy_put_tdesc(FILE *f, const pippy_tdesc *t)
{
    fprintf(f, "PIPPY_T(%s, %d", pippy_dt_macro(t->dtype), t->rank);
    for (int i = 0; i < t->rank; i++)
        fprintf(f, ", %lld", (long long)t->dims[i]);
    fprintf(f, ")");
}

/* A C string literal. */
static void pippy_put_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 32 || c >= 127)
            fprintf(f, "\\%03o", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* Text safe inside a C comment. */
static void pippy_put_comment(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (s[0] == '*' && s[1] == '/')
            fputs("* ", f);
        else if ((unsigned char)*s < 32)
            fputc(' ', f);
        else
            fputc(*s, f);
    }
}

static void pippy_put_float(FILE *f, double x)
{
    if (isnan(x))
        fputs("NAN", f);
    else if (isinf(x))
        fputs(x > 0 ? "INFINITY" : "-INFINITY", f);
    else
        fprintf(f, "%.9g", x);
}

/* An int64 as a C literal (INT64_MIN has none: -9223372036854775808 is minus a literal too big). */
static void pippy_put_i64(FILE *f, int64_t v)
{
    if (v == INT64_MIN)
        fputs("(-9223372036854775807LL - 1)", f);
    else
        fprintf(f, "%lldLL", (long long)v);
}

static void pippy_put_data(FILE *f, const char *cname, const pippy_tdesc *t, const void *data)
{
    int64_t n = pippy_tdesc_numel(t);
    const char *ctype = "uint8_t";
    switch (t->dtype) {
    case PIPPY_DT_FLOAT: ctype = "float"; break;
    case PIPPY_DT_DOUBLE: ctype = "double"; break;
    case PIPPY_DT_INT64: ctype = "int64_t"; break;
    case PIPPY_DT_INT32: ctype = "int32_t"; break;
    case PIPPY_DT_INT8: ctype = "int8_t"; break;
    case PIPPY_DT_FLOAT16: ctype = "uint16_t"; break;
    default: break;
    }
    fprintf(f, "static const %s %s[%lld] = {", ctype, cname, (long long)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        if (i)
            fputs(", ", f);
        switch (t->dtype) {
        case PIPPY_DT_FLOAT: pippy_put_float(f, ((const float *)data)[i]); break;
        case PIPPY_DT_DOUBLE: pippy_put_float(f, ((const double *)data)[i]); break;
        case PIPPY_DT_INT64: pippy_put_i64(f, ((const int64_t *)data)[i]); break;
        case PIPPY_DT_INT32: fprintf(f, "%d", ((const int32_t *)data)[i]); break;
        case PIPPY_DT_INT8: fprintf(f, "%d", ((const int8_t *)data)[i]); break;
        case PIPPY_DT_FLOAT16: fprintf(f, "%u", ((const uint16_t *)data)[i]); break;
        default: fprintf(f, "%u", ((const uint8_t *)data)[i]); break;
        }
    }
    if (!n)
        fputs("0", f);
    fputs("};\n", f);
}

static const char *pippy_attr_type_macro(int32_t t)
{
    switch (t) {
    case PIPPY_ATTR_FLOAT: return "PIPPY_ATTR_FLOAT";
    case PIPPY_ATTR_INT: return "PIPPY_ATTR_INT";
    case PIPPY_ATTR_STRING: return "PIPPY_ATTR_STRING";
    case PIPPY_ATTR_TENSOR: return "PIPPY_ATTR_TENSOR";
    case PIPPY_ATTR_FLOATS: return "PIPPY_ATTR_FLOATS";
    case PIPPY_ATTR_INTS: return "PIPPY_ATTR_INTS";
    case PIPPY_ATTR_STRINGS: return "PIPPY_ATTR_STRINGS";
    default: return "0";
    }
}

static void pippy_put_attrs(FILE *f, int32_t k, const pippy_node *n)
{
    if (!n->n_attrs)
        return;
    char nm[64];
    for (int32_t a = 0; a < n->n_attrs; a++) {
        const pippy_attr *at = &n->attrs[a];
        snprintf(nm, sizeof nm, "A%d_%d", k, a);
        if (at->type == PIPPY_ATTR_INTS) {
            fprintf(f, "static const int64_t %s[] = {", nm);
            for (int32_t i = 0; i < at->n; i++)
                fputs(i ? ", " : "", f), pippy_put_i64(f, at->ints[i]);
            fprintf(f, "%s};\n", at->n ? "" : "0");
        } else if (at->type == PIPPY_ATTR_FLOATS) {
            fprintf(f, "static const float %s[] = {", nm);
            for (int32_t i = 0; i < at->n; i++) {
                fputs(i ? ", " : "", f);
                pippy_put_float(f, at->floats[i]);
            }
            fprintf(f, "%s};\n", at->n ? "" : "0");
        } else if (at->type == PIPPY_ATTR_STRINGS) {
            fprintf(f, "static const char *const %s[] = {", nm);
            for (int32_t i = 0; i < at->n; i++) {
                fputs(i ? ", " : "", f);
                pippy_put_str(f, at->strings[i]);
            }
            fprintf(f, "%s};\n", at->n ? "" : "0");
        } else if (at->type == PIPPY_ATTR_TENSOR && at->t_data) {
            pippy_put_data(f, nm, &at->t, at->t_data);
        }
    }
    fprintf(f, "static const pippy_attr A%d[] = {\n", k);
    for (int32_t a = 0; a < n->n_attrs; a++) {
        const pippy_attr *at = &n->attrs[a];
        fprintf(f, "    {.name = ");
        pippy_put_str(f, at->name);
        fprintf(f, ", .type = %s", pippy_attr_type_macro(at->type));
        switch (at->type) {
        case PIPPY_ATTR_INT: fputs(", .i = ", f), pippy_put_i64(f, at->i); break;
        case PIPPY_ATTR_FLOAT:
            fputs(", .f = ", f);
            pippy_put_float(f, at->f);
            break;
        case PIPPY_ATTR_STRING:
            fputs(", .s = ", f);
            pippy_put_str(f, at->s ? at->s : "");
            break;
        case PIPPY_ATTR_INTS: fprintf(f, ", .n = %d, .ints = A%d_%d", at->n, k, a); break;
        case PIPPY_ATTR_FLOATS: fprintf(f, ", .n = %d, .floats = A%d_%d", at->n, k, a); break;
        case PIPPY_ATTR_STRINGS: fprintf(f, ", .n = %d, .strings = A%d_%d", at->n, k, a); break;
        case PIPPY_ATTR_TENSOR:
            fputs(", .t = ", f);
            pippy_put_tdesc(f, &at->t);
            if (at->t_data)
                fprintf(f, ", .t_data = A%d_%d", k, a);
            break;
        default: break;
        }
        fputs("},\n", f);
    }
    fputs("};\n", f);
}

typedef struct {
    const pippy_plan *p;
    const pippy_stage *sg;
    int32_t s;
    char **cname;  /* per graph value: its C name in this stage, NULL when the stage does not touch it */
    FILE *f;
} pippy_emit;

static const char *pippy_c_type(int32_t dt)
{
    switch (dt) {
    case PIPPY_DT_FLOAT: return "float";
    case PIPPY_DT_DOUBLE: return "double";
    case PIPPY_DT_INT64: return "int64_t";
    case PIPPY_DT_INT32: return "int32_t";
    case PIPPY_DT_INT8: return "int8_t";
    case PIPPY_DT_FLOAT16: return "uint16_t";
    default: return "uint8_t";
    }
}

/* Index of v in the stage's inputs / outputs / parameters, or -1. */
static int32_t pippy_find_in(const pippy_stage *sg, int32_t v)
{
    for (int32_t q = 0; q < sg->n_in; q++)
        if (sg->in[q].value == v)
            return q;
    return -1;
}
static int32_t pippy_find_out(const pippy_stage *sg, int32_t v)
{
    for (int32_t q = 0; q < sg->n_out; q++)
        if (sg->out[q].value == v && sg->out[q].passthrough < 0)
            return q;
    return -1;
}
static int32_t pippy_find_param(const pippy_stage *sg, int32_t v)
{
    for (int32_t q = 0; q < sg->n_params; q++)
        if (sg->params[q] == v)
            return q;
    return -1;
}

/* Where v lives in this stage: PIPPY_PLACE_* and the slot or byte offset; -1 when nowhere. */
static int32_t pippy_place(const pippy_emit *e, int32_t v, uint64_t *at)
{
    const pippy_stage *sg = e->sg;
    const pippy_value *x = &e->p->g->values[v];
    int32_t q;
    if ((q = pippy_find_in(sg, v)) >= 0)
        return *at = (uint64_t)q, PIPPY_PLACE_IN;
    if ((q = pippy_find_out(sg, v)) >= 0)
        return *at = (uint64_t)q, PIPPY_PLACE_OUT;
    if ((q = pippy_find_param(sg, v)) >= 0)
        return *at = sg->param_off[q], PIPPY_PLACE_WEIGHTS;
    if (x->kind == PIPPY_VAL_GRAD && (q = pippy_find_param(sg, x->grad_of)) >= 0)
        return *at = sg->param_off[q], PIPPY_PLACE_GRADS;
    if (sg->stash_off[v] >= 0)
        return *at = (uint64_t)sg->stash_off[v], PIPPY_PLACE_STASH;
    if (sg->arena_off[v] >= 0)
        return *at = (uint64_t)sg->arena_off[v], PIPPY_PLACE_ARENA;
    return -1;
}

/* C names for every value this stage touches ("v_<name>", made unique with _2, _3, ...). */
static pippy_status pippy_emit_names(pippy_emit *e)
{
    const pippy_graph *g = e->p->g;
    const pippy_stage *sg = e->sg;
    int32_t cap = 64;
    while (cap < 4 * (g->n_values + 1))
        cap *= 2;
    char **seen = calloc((size_t)cap, sizeof *seen); /* open addressing over the names given so far */
    if (!seen)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory emitting stage %d", e->s);
    pippy_status st = PIPPY_OK;
    for (int32_t v = 0; v < g->n_values && st == PIPPY_OK; v++) {
        uint64_t at;
        if (pippy_place(e, v, &at) < 0)
            continue;
        char base[160], cand[192];
        pippy_c_ident(g->values[v].name, base, sizeof base);
        snprintf(cand, sizeof cand, "%s", base);
        for (int dup = 2;; dup++) {
            uint32_t h = (uint32_t)pippy_fnv1a(cand, strlen(cand), PIPPY_FNV_SEED) & (uint32_t)(cap - 1);
            while (seen[h] && strcmp(seen[h], cand) != 0)
                h = (h + 1) & (uint32_t)(cap - 1);
            if (!seen[h]) {
                seen[h] = e->cname[v] = strdup(cand);
                if (!e->cname[v])
                    st = pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
                break;
            }
            snprintf(cand, sizeof cand, "%s_%d", base, dup);
        }
    }
    free(seen); /* the strings belong to cname */
    (void)sg;
    return st;
}

static void pippy_emit_header(pippy_emit *e, const pippy_emit_opts *o)
{
    const pippy_plan *p = e->p;
    const pippy_stage *sg = e->sg;
    FILE *f = e->f;
    fprintf(f, "/* stage%d.c — generated by pippyc %s. Rebuild with `make` in this folder.\n", e->s, PIPPY_VERSION);
    fputs(" * command:   ", f);
    pippy_put_comment(f, o->command_line ? o->command_line : "");
    fputs("\n * model:     ", f);
    pippy_put_comment(f, p->g->path);
    fprintf(f, " (opset %d, model hash %016llx)\n", p->g->opset, (unsigned long long)p->g->hash);
    fprintf(f, " * compile:   hash %016llx; stage %d of %d; microbatch size %lld; %d microbatches; %s\n",
            (unsigned long long)p->hash, e->s, p->n_stages, (long long)p->microbatch_size, p->microbatches,
            p->training ? "training" : "inference");
    fprintf(f, " * this stage: %d forward nodes, %.3g MFLOP per microbatch, arena %llu bytes, weights %llu bytes",
            sg->phase_begin[1], sg->flops / 1e6, (unsigned long long)sg->arena_bytes,
            (unsigned long long)sg->weights_bytes);
    if (p->training)
        fprintf(f, ",\n *             %d backward nodes (B), %d weight-gradient nodes (W), stash %llu bytes x %d",
                sg->phase_begin[2] - sg->phase_begin[1], sg->phase_begin[3] - sg->phase_begin[2],
                (unsigned long long)sg->stash_bytes, sg->stash_slots);
    fputs("\n */\n#include <math.h>\n#include <stddef.h>\n#include <stdint.h>\n\n#include \"stage.h\"\n\n", f);
}

static const char *const pippy_place_what[] = {"stage input", "stage output", "weights", "gradient", "stash",
                                               "arena"};

static void pippy_emit_buffers(pippy_emit *e)
{
    const pippy_graph *g = e->p->g;
    FILE *f = e->f;
    fputs("/* ---- buffers ---------------------------------------------------------------------------------\n"
          " * in_[i] / out_[i]: this microbatch's input / output slots (the runtime's); W_: the weights\n"
          " * (stageK.weights; trained parameters first); G_: their gradients (training); S_: this\n"
          " * microbatch's stash (values kept for a later phase); A_: the arena (one phase's scratch) */\n",
          f);
    static const char *const base[] = {"in_", "out_", "W_", "G_", "S_", "A_"};
    char sh[256], expr[96];
    for (int32_t pl = PIPPY_PLACE_IN; pl <= PIPPY_PLACE_ARENA; pl++)
        for (int32_t v = 0; v < g->n_values; v++) {
            uint64_t at;
            const pippy_value *x = &g->values[v];
            if (!e->cname[v] || pippy_place(e, v, &at) != pl)
                continue;
            const char *cst = pl == PIPPY_PLACE_IN ? "const " : "";
            if (pl <= PIPPY_PLACE_OUT)
                snprintf(expr, sizeof expr, "((%s%s *)%s[%llu])", cst, pippy_c_type(x->t.dtype), base[pl],
                         (unsigned long long)at);
            else
                snprintf(expr, sizeof expr, "((%s *)(%s + %llu))", pippy_c_type(x->t.dtype), base[pl],
                         (unsigned long long)at);
            fprintf(f, "#define %-44s %s /* %s %s", e->cname[v], expr, pippy_tdesc_str(&x->t, sh, sizeof sh),
                    pippy_place_what[pl]);
            if (pl == PIPPY_PLACE_WEIGHTS && x->kind == PIPPY_VAL_CONST && x->param_of >= 0)
                fprintf(f, ": made from parameter %s", g->values[x->param_of].name);
            else if (pl == PIPPY_PLACE_WEIGHTS)
                fputs(x->kind == PIPPY_VAL_CONST                ? ": constant"
                      : x->trainable == PIPPY_TRAIN_PARAM       ? ": trained parameter"
                      : x->trainable == PIPPY_TRAIN_STATE       ? ": running state"
                                                                 : ": parameter",
                      f);
            if (e->sg->view_of[v] >= 0)
                fprintf(f, ", a view of %s", e->cname[e->sg->view_of[v]]);
            fputs(" */\n", f);
        }
}

static void pippy_emit_descs(pippy_emit *e)
{
    const pippy_graph *g = e->p->g;
    const pippy_stage *sg = e->sg;
    FILE *f = e->f;
    fputs("\n/* ---- kernels: op, attributes, shapes (K[k] is made from Dk) ------------------------------ */\n", f);
    for (int32_t k = 0; k < sg->n_nodes; k++) {
        const pippy_node *n = &g->nodes[sg->nodes[k]];
        if (sg->is_view[k])
            continue;
        pippy_op_desc d;
        pippy_graph_op_desc(g, sg->nodes[k], &d);
        fprintf(f, "\n/* K[%d]: %s%s%s \"", k, n->domain[0] ? n->domain : "", n->domain[0] ? "::" : "", n->op);
        pippy_put_comment(f, n->name);
        fputs("\" */\n", f);
        pippy_put_attrs(f, k, n);
        fprintf(f, "static const pippy_op_desc D%d = {\n    .op = ", k);
        pippy_put_str(f, n->op);
        fputs(", .domain = ", f);
        pippy_put_str(f, n->domain);
        fprintf(f, ", .opset = %d, .name = ", g->opset);
        pippy_put_str(f, n->name);
        if (n->n_attrs)
            fprintf(f, ",\n    .n_attrs = %d, .attrs = A%d,", n->n_attrs, k);
        else
            fputs(",", f);
        fprintf(f, "\n    .n_in = %d, .in = {", d.n_in);
        for (int32_t q = 0; q < d.n_in; q++) {
            fputs(q ? ", " : "", f);
            pippy_put_tdesc(f, &d.in[q]);
        }
        fprintf(f, "},\n    .n_out = %d, .out = {", d.n_out);
        for (int32_t q = 0; q < d.n_out; q++) {
            fputs(q ? ", " : "", f);
            pippy_put_tdesc(f, &d.out[q]);
        }
        fputs("},\n};\n", f);
    }
}

static void pippy_emit_init(pippy_emit *e)
{
    const pippy_graph *g = e->p->g;
    const pippy_stage *sg = e->sg;
    FILE *f = e->f;
    fputs("\n/* ---- init: every kernel is made once, before the first microbatch ---------------------------\n"
          " * Inputs known when compiling are handed over here (constants; at inference also the parameters,\n"
          " * which kernels may pre-pack); in training the parameters change every step and are read at run. */\n",
          f);
    fputs("static pippy_status stage_init(pippy_backend *B, pippy_kernel **K, const uint8_t *W_)\n{\n"
          "    pippy_op_desc d;\n", f);
    int uses_w = 0;
    for (int32_t k = 0; k < sg->n_nodes; k++) {
        const pippy_node *n = &g->nodes[sg->nodes[k]];
        if (sg->is_view[k])
            continue;
        fprintf(f, "    d = D%d;", k);
        for (int32_t q = 0; q < n->n_in; q++) {
            int32_t v = n->in[q];
            if (v < 0 || !pippy_value_is_const(g, &g->values[v]) || pippy_find_param(sg, v) < 0)
                continue;
            fprintf(f, " d.in_const[%d] = %s;", q, e->cname[v]);
            uses_w = 1;
        }
        fprintf(f, "\n    PIPPY_TRY(pippy_backend_kernel_create(B, &d, &K[%d]));\n", k);
    }
    if (!uses_w)
        fputs("    (void)W_;\n", f);
    fputs("    (void)d;\n    return PIPPY_OK;\n}\n", f);
}

/* " — fused: ReLU, bias; B transposed; adds into its output" for the private attributes. */
static void pippy_emit_fused(FILE *f, const pippy_node *n)
{
    const char *parts[6];
    int np = 0;
    for (int32_t a = 0; a < n->n_attrs; a++) {
        const pippy_attr *at = &n->attrs[a];
        if (!strcmp(at->name, "pippy.activation"))
            parts[np++] = "+ ReLU";
        else if (!strcmp(at->name, "pippy.bias") && at->i)
            parts[np++] = "+ bias";
        else if (!strcmp(at->name, "pippy.trans_a") && at->i)
            parts[np++] = "A transposed";
        else if (!strcmp(at->name, "pippy.trans_b") && at->i)
            parts[np++] = "B transposed";
        else if (!strcmp(at->name, "pippy.accumulate") && at->i)
            parts[np++] = "adds into its output";
    }
    for (int i = 0; i < np; i++)
        fprintf(f, "%s%s", i ? ", " : " — ", parts[i]);
}

/* "name float[4,64]" for each of vals, comma-separated. */
static void pippy_emit_value_list(pippy_emit *e, const int32_t *vals, int32_t n)
{
    char sh[256];
    for (int32_t q = 0; q < n; q++) {
        fputs(q ? ", " : "", e->f);
        if (vals[q] < 0) {
            fputs("-", e->f);
            continue;
        }
        pippy_put_comment(e->f, e->cname[vals[q]] ? e->cname[vals[q]] : e->p->g->values[vals[q]].name);
        fprintf(e->f, " %s", pippy_tdesc_str(&e->p->g->values[vals[q]].t, sh, sizeof sh));
    }
}

static void pippy_emit_node(pippy_emit *e, int32_t k)
{
    const pippy_node *n = &e->p->g->nodes[e->sg->nodes[k]];
    FILE *f = e->f;
    fprintf(f, "    /* [%d] %s%s%s \"", k, n->domain[0] ? n->domain : "", n->domain[0] ? "::" : "", n->op);
    pippy_put_comment(f, n->name);
    fputc('"', f);
    pippy_emit_fused(f, n);
    fputs("\n     *   in:  ", f);
    pippy_emit_value_list(e, n->in, n->n_in);
    fputs("\n     *   out: ", f);
    pippy_emit_value_list(e, n->out, n->n_out);
    if (e->sg->is_view[k]) {
        fprintf(f, "\n     * a view: %s is %s's bytes, nothing to run */\n", e->cname[n->out[0]], e->cname[n->in[0]]);
        return;
    }
    fprintf(f, " */\n    pippy_kernel_run(K[%d], PIPPY_IN(", k);
    for (int32_t q = 0; q < n->n_in; q++)
        fprintf(f, "%s%s", q ? ", " : "", n->in[q] >= 0 ? e->cname[n->in[q]] : "NULL");
    if (!n->n_in)
        fputs("NULL", f);
    fputs("), PIPPY_OUT(", f);
    for (int32_t q = 0; q < n->n_out; q++)
        fprintf(f, "%s%s", q ? ", " : "", n->out[q] >= 0 ? e->cname[n->out[q]] : "NULL");
    fprintf(f, "));\n    PIPPY_AFTER(%d);\n", k);
    static const char *const long_ops[] = {"MatMul", "Gemm", "Conv", "ConvGradInput", "ConvGradWeight"};
    for (size_t i = 0; i < sizeof long_ops / sizeof long_ops[0]; i++)
        if (!strcmp(n->op, long_ops[i]))
            fputs("    pippy_stage_progress(); /* let transfers in flight move */\n", f);
}

static void pippy_emit_phase(pippy_emit *e, int32_t ph, const char *fn, const char *what)
{
    FILE *f = e->f;
    fprintf(f, "\n/* ---- %s: one microbatch %.*s */\n", what, (int)(88 - strlen(what)),
            "----------------------------------------------------------------------------------------------");
    fprintf(f, "static void %s(pippy_kernel *const *K, uint8_t *A_, uint8_t *S_, uint8_t *W_, uint8_t *G_,\n"
               "%*sconst void *const *in_, void *const *out_)\n{\n"
               "    (void)K, (void)A_, (void)S_, (void)W_, (void)G_, (void)in_, (void)out_;\n",
            fn, (int)strlen(fn) + 13, "");
    for (int32_t k = e->sg->phase_begin[ph]; k < e->sg->phase_begin[ph + 1]; k++)
        pippy_emit_node(e, k);
    fputs("}\n", f);
}

static void pippy_emit_value_table(pippy_emit *e, const char *name, const pippy_stage_input *in, int32_t n_in,
                                   const pippy_stage_output *out, int32_t n_out)
{
    const pippy_graph *g = e->p->g;
    int32_t n = in ? n_in : n_out;
    fprintf(e->f, "static const pippy_stage_value %s[%d] = {\n", name, n ? n : 1);
    for (int32_t q = 0; q < n; q++) {
        const pippy_value *v = &g->values[in ? in[q].value : out[q].value];
        fputs("    {", e->f);
        pippy_put_str(e->f, v->name);
        fputs(", ", e->f);
        pippy_put_tdesc(e->f, &v->t);
        fputs("},\n", e->f);
    }
    fputs("};\n", e->f);
}

/* Every value with its place and the kernel that completes it, for PIPPY_DUMP. */
static int32_t pippy_emit_dump_table(pippy_emit *e)
{
    const pippy_graph *g = e->p->g;
    int32_t *after = malloc(((size_t)g->n_values + 1) * sizeof *after), n = 0;
    if (!after)
        return -1;
    for (int32_t v = 0; v < g->n_values; v++)
        after[v] = -1;
    for (int32_t k = 0; k < e->sg->n_nodes; k++) {
        const pippy_node *nd = &g->nodes[e->sg->nodes[k]];
        for (int32_t o = 0; o < nd->n_out; o++)
            if (nd->out[o] >= 0)
                after[nd->out[o]] = k;
    }
    fputs("static const pippy_stage_value_info stage_values[] = {\n", e->f);
    static const char *const places[] = {"IN", "OUT", "WEIGHTS", "GRADS", "STASH", "ARENA"};
    for (int32_t v = 0; v < g->n_values; v++) {
        uint64_t at;
        int32_t pl = e->cname[v] ? pippy_place(e, v, &at) : -1;
        if (pl < 0)
            continue;
        fputs("    {", e->f);
        pippy_put_str(e->f, g->values[v].name);
        fputs(", ", e->f);
        pippy_put_tdesc(e->f, &g->values[v].t);
        fprintf(e->f, ", PIPPY_PLACE_%s, %llu, %d},\n", places[pl], (unsigned long long)at, after[v]);
        n++;
    }
    if (!n)
        fputs("    {0},\n", e->f);
    fputs("};\n", e->f);
    free(after);
    return n;
}

static pippy_status pippy_emit_program(pippy_emit *e, const pippy_emit_opts *o)
{
    const pippy_plan *p = e->p;
    const pippy_stage *sg = e->sg;
    FILE *f = e->f;
    fputs("\n/* ---- what the runtime needs to know ------------------------------------------------------ */\n", f);
    pippy_emit_value_table(e, "stage_inputs", sg->in, sg->n_in, NULL, 0);
    pippy_emit_value_table(e, "stage_outputs", NULL, 0, sg->out, sg->n_out);
    int32_t nv = pippy_emit_dump_table(e);
    if (nv < 0)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    fputs("\nconst pippy_stage_program ", f);
    fprintf(f, "pippy_stage_program_%d = {\n", e->s);
    fprintf(f, "    .pippyc_version = \"%s\",\n    .source = \"stage%d.c\",\n    .hash = 0x%016llxULL,\n", PIPPY_VERSION,
            e->s, (unsigned long long)p->hash);
    fprintf(f, "    .stage = %d,\n    .n_stages = %d,\n    .arena_bytes = %llu,\n    .weights_bytes = %llu,\n", e->s,
            p->n_stages, (unsigned long long)sg->arena_bytes, (unsigned long long)sg->weights_bytes);
    fprintf(f, "    .n_inputs = %d,\n    .inputs = stage_inputs,\n    .n_outputs = %d,\n    .outputs = stage_outputs,\n",
            sg->n_in, sg->n_out);
    fprintf(f, "    .n_kernels = %d,\n    .init = stage_init,\n    .forward = stage_forward,\n", sg->n_nodes);
    if (p->training)
        fprintf(f, "    .training = 1,\n    .backward = stage_backward,\n    .weight = stage_weight,\n"
                   "    .stash_bytes = %llu,\n    .stash_slots = %d,\n    .trainable_bytes = %llu,\n",
                (unsigned long long)sg->stash_bytes, sg->stash_slots, (unsigned long long)sg->trainable_bytes);
    fprintf(f, "    .n_values = %d,\n    .values = stage_values,\n    .backend = \"%s\",\n", nv,
            o->backend ? o->backend : "cpu");
    if (o->tf32)
        fputs("    .tf32 = 1,\n", f);
    fputs("};\n\n", f);
    fprintf(f, "#ifndef PIPPY_NO_MAIN\nint main(int argc, char **argv) { return pippy_stage_main(argc, argv, "
               "&pippy_stage_program_%d); }\n#endif\n",
            e->s);
    return PIPPY_OK;
}

pippy_status pippy_emit_rank_c(const pippy_plan *p, int32_t r, const pippy_emit_opts *o)
{
    int32_t st[PIPPY_MAX_STAGES], n = pippy_rank_stages(p, r, st);
    char fname[64], tmp[4096];
    FILE *f;
    snprintf(fname, sizeof fname, "rank%d.c", r);
    PIPPY_TRY(pippy_file_begin(o->out_dir, fname, &f, tmp, sizeof tmp));
    fprintf(f, "/* rank%d.c — the program of rank %d, which runs stages", r, r);
    for (int32_t k = 0; k < n; k++)
        fprintf(f, "%s %d", k ? "," : "", st[k]);
    fprintf(f, " (%s schedule).\n * Written by pippyc %s; built with those stages' sources, compiled with "
               "-DPIPPY_NO_MAIN. */\n#include \"stage.h\"\n\n",
            p->schedule, PIPPY_VERSION);
    for (int32_t k = 0; k < n; k++)
        fprintf(f, "extern const pippy_stage_program pippy_stage_program_%d;\n", st[k]);
    fputs("\nint main(int argc, char **argv)\n{\n    static const pippy_stage_program *const stages[] = {", f);
    for (int32_t k = 0; k < n; k++)
        fprintf(f, "%s&pippy_stage_program_%d", k ? ", " : "", st[k]);
    fprintf(f, "};\n    return pippy_rank_main(argc, argv, stages, %d);\n}\n", n);
    return pippy_file_commit(f, tmp);
}

pippy_status pippy_emit_stage_c(const pippy_plan *p, int32_t s, const pippy_emit_opts *o)
{
    pippy_emit e = {p, &p->stages[s], s, calloc((size_t)p->g->n_values + 1, sizeof(char *)), NULL};
    if (!e.cname)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory emitting stage %d", s);
    char fname[64], tmp[4096];
    snprintf(fname, sizeof fname, "stage%d.c", s);
    pippy_status st = pippy_emit_names(&e);
    if (st == PIPPY_OK)
        st = pippy_file_begin(o->out_dir, fname, &e.f, tmp, sizeof tmp);
    if (st == PIPPY_OK) {
        pippy_emit_header(&e, o);
        pippy_emit_buffers(&e);
        pippy_emit_descs(&e);
        pippy_emit_init(&e);
        pippy_emit_phase(&e, PIPPY_PHASE_F, "stage_forward", "forward (F)");
        if (p->training) {
            pippy_emit_phase(&e, PIPPY_PHASE_B, "stage_backward", "input gradients (B)");
            pippy_emit_phase(&e, PIPPY_PHASE_W, "stage_weight", "weight gradients (W), added into G_");
        }
        st = pippy_emit_program(&e, o);
        if (st == PIPPY_OK)
            st = pippy_file_commit(e.f, tmp);
        else
            fclose(e.f);
    }
    for (int32_t v = 0; v < p->g->n_values; v++)
        free(e.cname[v]);
    free(e.cname);
    return st;
}
