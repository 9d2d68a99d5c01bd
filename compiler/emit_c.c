/* emit_c.c — writes out/stageK.c: readable C for one stage.
 *
 * Layout of the file: a provenance header; one #define per buffer (stage
 * inputs and outputs are runtime slots, parameters are offsets into the
 * weights, everything else an offset into the planned arena) named
 * v_<ONNX name>; one descriptor per node (op, attributes, shapes); init(),
 * which creates every kernel once; forward(), straight-line calls into the
 * backend, one commented block per ONNX node; and main(). */
#include "emit.h"

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
        case PIPPY_DT_INT64: fprintf(f, "%lldLL", (long long)((const int64_t *)data)[i]); break;
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
                fprintf(f, "%s%lldLL", i ? ", " : "", (long long)at->ints[i]);
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
        case PIPPY_ATTR_INT: fprintf(f, ", .i = %lldLL", (long long)at->i); break;
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

pippy_status pippy_emit_stage_c(const pippy_plan *p, int32_t s, const pippy_emit_opts *o)
{
    const pippy_graph *g = p->g;
    const pippy_stage *sg = &p->stages[s];
    int32_t V = g->n_values;
    char **cname = calloc((size_t)V + 1, sizeof *cname);
    if (!cname)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory emitting stage %d", s);
    /* C names for every value this stage touches, made unique. */
    pippy_status st = PIPPY_OK;
    for (int32_t k = 0; k < sg->n_nodes && st == PIPPY_OK; k++) {
        const pippy_node *n = &g->nodes[sg->nodes[k]];
        for (int32_t pass = 0; pass < 2; pass++) {
            int32_t cnt = pass ? n->n_out : n->n_in;
            const int32_t *vals = pass ? n->out : n->in;
            for (int32_t q = 0; q < cnt; q++) {
                int32_t v = vals[q];
                if (v < 0 || cname[v])
                    continue;
                char base[160], cand[192];
                pippy_c_ident(g->values[v].name, base, sizeof base);
                snprintf(cand, sizeof cand, "%s", base);
                for (int dup = 1;; dup++) {
                    int clash = 0;
                    for (int32_t w = 0; w < V && !clash; w++)
                        clash = cname[w] && strcmp(cname[w], cand) == 0;
                    if (!clash)
                        break;
                    snprintf(cand, sizeof cand, "%s_%d", base, dup);
                }
                cname[v] = strdup(cand);
                if (!cname[v])
                    st = pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
            }
        }
    }
    for (int32_t q = 0; q < sg->n_in && st == PIPPY_OK; q++)
        if (!cname[sg->in[q].value]) {
            char b[160];
            pippy_c_ident(g->values[sg->in[q].value].name, b, sizeof b);
            cname[sg->in[q].value] = strdup(b);
        }
    char fname[64], tmp[4096];
    snprintf(fname, sizeof fname, "stage%d.c", s);
    FILE *f = NULL;
    if (st == PIPPY_OK)
        st = pippy_file_begin(o->out_dir, fname, &f, tmp, sizeof tmp);
    if (st != PIPPY_OK) {
        for (int32_t v = 0; v < V; v++)
            free(cname[v]);
        free(cname);
        return st;
    }
    char sh[256];
    fprintf(f, "/* stage%d.c — generated by pippyc %s. Rebuild with `make` in this folder.\n", s, PIPPY_VERSION);
    fputs(" * command:   ", f);
    pippy_put_comment(f, o->command_line ? o->command_line : "");
    fputs("\n * model:     ", f);
    pippy_put_comment(f, g->path);
    fprintf(f, " (opset %d, model hash %016llx)\n", g->opset, (unsigned long long)g->hash);
    fprintf(f, " * compile:   hash %016llx; stage %d of %d; microbatch size %lld; %d microbatches\n",
            (unsigned long long)p->hash, s, p->n_stages, (long long)p->microbatch_size, p->microbatches);
    fprintf(f, " * this stage: %d nodes, %.3g MFLOP per microbatch, arena %llu bytes, weights %llu bytes\n */\n",
            sg->n_nodes, sg->flops / 1e6, (unsigned long long)sg->arena_bytes,
            (unsigned long long)sg->weights_bytes);
    fputs("#include <math.h>\n#include <stddef.h>\n#include <stdint.h>\n\n#include \"stage.h\"\n\n", f);

    fputs("/* ---- buffers ------------------------------------------------------------\n"
          " * in_[i]/out_[i]: this microbatch's input/output slots (owned by the runtime)\n"
          " * W_: the weights (stageK.weights), A_: the arena (one microbatch's working memory) */\n",
          f);
    for (int32_t q = 0; q < sg->n_in; q++) {
        const pippy_value *v = &g->values[sg->in[q].value];
        fprintf(f, "#define %-40s ((const uint8_t *)in_[%d]) /* %s ", cname[sg->in[q].value], q,
                pippy_tdesc_str(&v->t, sh, sizeof sh));
        if (sg->in[q].from_stage < 0)
            fputs("graph input", f);
        else
            fprintf(f, "from stage %d", sg->in[q].from_stage);
        fputs(" */\n", f);
    }
    for (int32_t q = 0; q < sg->n_out; q++) {
        if (sg->out[q].passthrough >= 0 || !cname[sg->out[q].value])
            continue;
        const pippy_value *v = &g->values[sg->out[q].value];
        fprintf(f, "#define %-40s ((uint8_t *)out_[%d]) /* %s%s */\n", cname[sg->out[q].value], q,
                pippy_tdesc_str(&v->t, sh, sizeof sh), sg->out[q].graph_output ? " graph output" : " sent on");
    }
    for (int32_t q = 0; q < sg->n_params; q++) {
        const pippy_value *v = &g->values[sg->params[q]];
        if (!cname[sg->params[q]])
            continue;
        fprintf(f, "#define %-40s (W_ + %llu) /* %s %s%s */\n", cname[sg->params[q]],
                (unsigned long long)sg->param_off[q], pippy_tdesc_str(&v->t, sh, sizeof sh),
                v->kind == PIPPY_VAL_PARAM ? "parameter" : v->param_of >= 0 ? "made from parameter " : "constant",
                v->kind != PIPPY_VAL_PARAM && v->param_of >= 0 ? g->values[v->param_of].name : "");
    }
    for (int32_t v = 0; v < V; v++) {
        if (sg->arena_off[v] < 0 || !cname[v])
            continue;
        fprintf(f, "#define %-40s (A_ + %lld) /* %s */\n", cname[v], (long long)sg->arena_off[v],
                pippy_tdesc_str(&g->values[v].t, sh, sizeof sh));
    }

    fputs("\n/* ---- nodes: op, attributes, shapes --------------------------------------- */\n", f);
    for (int32_t k = 0; k < sg->n_nodes; k++) {
        const pippy_node *n = &g->nodes[sg->nodes[k]];
        pippy_op_desc d;
        pippy_graph_op_desc(g, sg->nodes[k], &d);
        fprintf(f, "\n/* node %d: %s \"", k, n->op);
        pippy_put_comment(f, n->name);
        fputs(sg->is_view[k] ? "\": a view of its input, no kernel */\n" : "\" */\n", f);
        if (sg->is_view[k])
            continue;
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

    fputs("\n/* ---- init: every kernel is made once, before the first microbatch ------- */\n", f);
    fprintf(f, "static pippy_status stage_init(pippy_kernel **K, const uint8_t *W_)\n{\n    pippy_op_desc d;\n");
    int uses_w = 0;
    for (int32_t k = 0; k < sg->n_nodes; k++) {
        const pippy_node *n = &g->nodes[sg->nodes[k]];
        if (sg->is_view[k])
            continue;
        fprintf(f, "    d = D%d;", k);
        for (int32_t q = 0; q < n->n_in; q++) {
            int32_t v = n->in[q];
            if (v < 0 || (g->values[v].kind != PIPPY_VAL_PARAM && g->values[v].kind != PIPPY_VAL_CONST))
                continue;
            fprintf(f, " d.in_const[%d] = %s;", q, cname[v]);
            uses_w = 1;
        }
        fprintf(f, "\n    PIPPY_TRY(pippy_kernel_create(&d, &K[%d]));\n", k);
    }
    if (!uses_w)
        fputs("    (void)W_;\n", f);
    fputs("    (void)d;\n    return PIPPY_OK;\n}\n", f);

    fputs("\n/* ---- forward: one microbatch ------------------------------------------------ */\n", f);
    fputs("static void stage_forward(pippy_kernel *const *K, uint8_t *A_, const uint8_t *W_, const void *const *in_,\n"
          "                          void *const *out_)\n{\n    (void)A_, (void)W_, (void)in_, (void)out_;\n",
          f);
    for (int32_t k = 0; k < sg->n_nodes; k++) {
        const pippy_node *n = &g->nodes[sg->nodes[k]];
        fprintf(f, "    /* %s \"", n->op);
        pippy_put_comment(f, n->name);
        fputs("\": ", f);
        for (int32_t q = 0; q < n->n_in; q++) {
            if (n->in[q] < 0) {
                fputs(q ? ", -" : "-", f);
                continue;
            }
            fputs(q ? ", " : "", f);
            pippy_put_comment(f, g->values[n->in[q]].name);
            fprintf(f, " %s", pippy_tdesc_str(&g->values[n->in[q]].t, sh, sizeof sh));
        }
        fputs(" -> ", f);
        for (int32_t q = 0; q < n->n_out; q++) {
            fputs(q ? ", " : "", f);
            pippy_put_comment(f, g->values[n->out[q]].name);
            fprintf(f, " %s", pippy_tdesc_str(&g->values[n->out[q]].t, sh, sizeof sh));
        }
        if (sg->is_view[k]) {
            fprintf(f, " */\n    /* a view: %s shares the bytes of %s, nothing to run */\n", cname[n->out[0]],
                    cname[n->in[0]]);
            continue;
        }
        fprintf(f, " */\n    pippy_kernel_run(K[%d], PIPPY_IN(", k);
        for (int32_t q = 0; q < n->n_in; q++)
            fprintf(f, "%s%s", q ? ", " : "", n->in[q] >= 0 ? cname[n->in[q]] : "NULL");
        if (!n->n_in)
            fputs("NULL", f);
        fputs("), PIPPY_OUT(", f);
        for (int32_t q = 0; q < n->n_out; q++)
            fprintf(f, "%s%s", q ? ", " : "", cname[n->out[q]]);
        fputs("));\n", f);
        if (!n->domain[0] && (!strcmp(n->op, "MatMul") || !strcmp(n->op, "Gemm") || !strcmp(n->op, "Conv")))
            fputs("    pippy_stage_progress(); /* let transfers in flight move */\n", f);
    }
    fputs("}\n", f);

    fputs("\n/* ---- what the runtime needs to know ---------------------------------------- */\n", f);
    fprintf(f, "static const pippy_stage_value stage_inputs[%d] = {\n", sg->n_in ? sg->n_in : 1);
    for (int32_t q = 0; q < sg->n_in; q++) {
        fputs("    {", f);
        pippy_put_str(f, g->values[sg->in[q].value].name);
        fputs(", ", f);
        pippy_put_tdesc(f, &g->values[sg->in[q].value].t);
        fputs("},\n", f);
    }
    fprintf(f, "};\nstatic const pippy_stage_value stage_outputs[%d] = {\n", sg->n_out ? sg->n_out : 1);
    for (int32_t q = 0; q < sg->n_out; q++) {
        fputs("    {", f);
        pippy_put_str(f, g->values[sg->out[q].value].name);
        fputs(", ", f);
        pippy_put_tdesc(f, &g->values[sg->out[q].value].t);
        fputs("},\n", f);
    }
    fputs("};\n\nstatic const pippy_stage_program stage_program = {\n", f);
    fprintf(f, "    .pippyc_version = \"%s\",\n    .source = \"stage%d.c\",\n    .hash = 0x%016llxULL,\n", PIPPY_VERSION, s,
            (unsigned long long)p->hash);
    fprintf(f, "    .stage = %d,\n    .n_stages = %d,\n    .arena_bytes = %llu,\n    .weights_bytes = %llu,\n", s,
            p->n_stages, (unsigned long long)sg->arena_bytes, (unsigned long long)sg->weights_bytes);
    fprintf(f, "    .n_inputs = %d,\n    .inputs = stage_inputs,\n    .n_outputs = %d,\n    .outputs = stage_outputs,\n",
            sg->n_in, sg->n_out);
    fprintf(f, "    .n_kernels = %d,\n    .init = stage_init,\n    .forward = stage_forward,\n};\n\n", sg->n_nodes);
    fputs("int main(int argc, char **argv) { return pippy_stage_main(argc, argv, &stage_program); }\n", f);
    for (int32_t v = 0; v < V; v++)
        free(cname[v]);
    free(cname);
    return pippy_file_commit(f, tmp);
}
