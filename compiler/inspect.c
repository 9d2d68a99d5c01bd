/* inspect.c — see inspect.h. */
#include "inspect.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_load.h"
#include "plan.h"

void pippy_mark_trainable(const pippy_graph *g, char *grad)
{
    memset(grad, 0, (size_t)g->n_values);
    for (int32_t o = 0; o < g->n_outputs; o++)
        if (g->values[g->outputs[o]].t.dtype == PIPPY_DT_FLOAT || g->values[g->outputs[o]].t.dtype == 0)
            grad[g->outputs[o]] = 1;
    for (int32_t i = g->n_nodes - 1; i >= 0; i--) {
        const pippy_node *n = &g->nodes[i];
        int live = 0;
        for (int32_t q = 0; q < n->n_out; q++)
            live |= grad[n->out[q]];
        if (!live)
            continue;
        int bn = strcmp(n->op, "BatchNormalization") == 0;
        for (int32_t q = 0; q < n->n_in; q++) {
            if (n->in[q] < 0 || (bn && q >= 3))
                continue;
            int32_t dt = g->values[n->in[q]].t.dtype; /* unknown (past an unsupported op): assume float */
            if (dt == PIPPY_DT_FLOAT || dt == PIPPY_DT_UNDEFINED)
                grad[n->in[q]] = 1;
        }
    }
}

/* The reasons a compile would fail, as the shape walk finds them. */
#define PIPPY_MAX_PROBLEMS 256
typedef struct {
    int32_t n, dropped;
    int32_t node[PIPPY_MAX_PROBLEMS];
    char *msg[PIPPY_MAX_PROBLEMS];
} pippy_problems;

static void pippy_problem_add(void *ctx, const pippy_graph *g, int32_t node, pippy_status st, const char *msg)
{
    pippy_problems *p = ctx;
    (void)g, (void)st;
    if (p->n >= PIPPY_MAX_PROBLEMS || !(p->msg[p->n] = strdup(msg))) {
        p->dropped++;
        return;
    }
    p->node[p->n++] = node;
}

static void pippy_problems_free(pippy_problems *p)
{
    for (int32_t k = 0; k < p->n; k++)
        free(p->msg[k]);
}

/* Nodes left unchecked: some input's shape is unknown, past a problem the walk could not go beyond. */
static int32_t pippy_unchecked_nodes(const pippy_graph *g)
{
    int32_t n = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const pippy_node *nd = &g->nodes[i];
        int known = 1;
        for (int32_t q = 0; q < nd->n_out; q++)
            known &= g->values[nd->out[q]].shape_known;
        n += !known && !nd->removed && pippy_op_find(nd->domain, nd->op) != NULL;
    }
    return n;
}

static void pippy_problems_print(const pippy_graph *g, const pippy_problems *p, FILE *out)
{
    int32_t unchecked = pippy_unchecked_nodes(g);
    if (p->n == 0 && !p->dropped) {
        fprintf(out, "problems: none (the model compiles at these shapes)\n");
        return;
    }
    fprintf(out, "problems (each stops a compile at these shapes):\n");
    for (int32_t k = 0; k < p->n; k++)
        fprintf(out, "  %s\n", p->msg[k]);
    if (p->dropped)
        fprintf(out, "  ... and %d more\n", p->dropped);
    if (unchecked)
        fprintf(out, "  %d later node%s not checked: %s input shapes depend on a problem above\n", unchecked,
                unchecked == 1 ? "" : "s", unchecked == 1 ? "its" : "their");
}

static void pippy_problems_json(const pippy_graph *g, const pippy_problems *p, cJSON *root)
{
    cJSON *arr = cJSON_AddArrayToObject(root, "problems");
    for (int32_t k = 0; k < p->n; k++) {
        const pippy_node *n = &g->nodes[p->node[k]];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "node", n->name);
        cJSON_AddStringToObject(e, "op", n->op);
        cJSON_AddStringToObject(e, "error", p->msg[k]);
        cJSON_AddItemToArray(arr, e);
    }
    cJSON_AddNumberToObject(root, "problems_not_listed", p->dropped);
    cJSON_AddNumberToObject(root, "nodes_not_checked", pippy_unchecked_nodes(g));
}

pippy_status pippy_inspect(const char *path, const pippy_shape_bind_opts *b, int json, FILE *out)
{
    pippy_graph *g = NULL;
    pippy_problems problems = {0};
    /* shapes as far as they go: inspect lists every reason a compile would fail instead of stopping */
    PIPPY_TRY(pippy_onnx_load(path, &g));
    pippy_status st = pippy_shape_bind(g, b);
    if (st == PIPPY_OK)
        st = pippy_shape_check(g, 1, pippy_problem_add, &problems);
    if (st != PIPPY_OK) {
        pippy_problems_free(&problems);
        pippy_graph_free(g);
        return st;
    }
    char *grad = calloc((size_t)g->n_values + 1, 1);
    const char *unsupported[PIPPY_MAX_PROBLEMS];
    int32_t n_unsup = 0;
    double total_flops = 0;
    int64_t n_params = 0, param_bytes = 0;
    if (!grad) {
        pippy_problems_free(&problems);
        pippy_graph_free(g);
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    }
    pippy_mark_trainable(g, grad);
    for (int32_t v = 0; v < g->n_values; v++)
        if (g->values[v].kind == PIPPY_VAL_PARAM && grad[v]) {
            n_params += pippy_value_numel(&g->values[v]);
            param_bytes += (int64_t)pippy_value_bytes(&g->values[v]);
        }
    cJSON *ops = cJSON_CreateObject();
    if (!json) {
        fprintf(out, "%s: ir_version %lld, opset %d, producer %s\n", g->path, (long long)g->ir_version, g->opset,
                g->producer ? g->producer : "?");
        fprintf(out, "%5s  %-20s %-40s %-28s %12s %12s\n", "#", "op", "name", "output shapes", "FLOPs", "param bytes");
    }
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const pippy_node *n = &g->nodes[i];
        char opname[128];
        snprintf(opname, sizeof opname, "%s%s%s", n->domain[0] ? n->domain : "", n->domain[0] ? "::" : "", n->op);
        cJSON *c = cJSON_GetObjectItem(ops, opname);
        if (c)
            cJSON_SetNumberValue(c, c->valuedouble + 1);
        else
            cJSON_AddNumberToObject(ops, opname, 1);
        int supported = pippy_op_find(n->domain, n->op) != NULL;
        if (!supported) {
            int seen = 0;
            for (int32_t k = 0; k < n_unsup; k++)
                seen |= strcmp(unsupported[k], n->op) == 0;
            if (!seen && n_unsup < PIPPY_MAX_PROBLEMS)
                unsupported[n_unsup++] = n->op;
        }
        int known = 1;
        for (int32_t q = 0; q < n->n_out; q++)
            known &= g->values[n->out[q]].shape_known;
        double fl = 0;
        int64_t pb = 0;
        if (known && supported && !n->removed) {
            pippy_op_desc d;
            pippy_graph_op_desc(g, i, &d);
            fl = pippy_op_flops(&d);
        }
        for (int32_t q = 0; q < n->n_in; q++)
            if (n->in[q] >= 0 && g->values[n->in[q]].kind == PIPPY_VAL_PARAM)
                pb += (int64_t)pippy_value_bytes(&g->values[n->in[q]]);
        total_flops += fl;
        if (json)
            continue;
        char shapes[256] = "", sh[96];
        size_t k = 0;
        for (int32_t q = 0; q < n->n_out && k < sizeof shapes; q++) {
            const pippy_value *v = &g->values[n->out[q]];
            if (v->shape_known)
                pippy_tdesc_str(&v->t, sh, sizeof sh);
            else
                snprintf(sh, sizeof sh, "?");
            k += (size_t)snprintf(shapes + k, sizeof shapes - k, "%s%s", q ? " " : "", sh);
        }
        int problem = 0;
        for (int32_t k = 0; k < problems.n; k++)
            problem |= problems.node[k] == i;
        fprintf(out, "%5d  %-20s %-40s %-28s %12.0f %12lld%s\n", i, opname, n->name, shapes, fl, (long long)pb,
                !supported ? "  (unsupported)" : problem ? "  (problem, see below)" : "");
    }
    const char *splits[256];
    int32_t n_splits = pippy_pipesplit_points(g, splits, 256);
    if (n_splits > 256)
        n_splits = 256;
    const char *meta_split = pippy_graph_meta(g, "pippy.split_before");
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "model", g->path);
        cJSON_AddNumberToObject(root, "opset", g->opset);
        cJSON_AddNumberToObject(root, "nodes", g->n_nodes);
        cJSON_AddNumberToObject(root, "parameters", (double)n_params);
        cJSON_AddNumberToObject(root, "parameter_bytes", (double)param_bytes);
        cJSON_AddNumberToObject(root, "flops", total_flops);
        cJSON *sp = cJSON_AddArrayToObject(root, "split_points");
        for (int32_t k = 0; k < n_splits; k++)
            cJSON_AddItemToArray(sp, cJSON_CreateString(splits[k]));
        cJSON_AddStringToObject(root, "split_before", meta_split ? meta_split : "");
        cJSON *un = cJSON_AddArrayToObject(root, "unsupported");
        for (int32_t k = 0; k < n_unsup; k++)
            cJSON_AddItemToArray(un, cJSON_CreateString(unsupported[k]));
        pippy_problems_json(g, &problems, root);
        cJSON_AddItemToObject(root, "ops", ops);
        ops = NULL;
        cJSON *ins = cJSON_AddArrayToObject(root, "inputs");
        for (int32_t q = 0; q < g->n_inputs; q++) {
            const pippy_value *v = &g->values[g->inputs[q]];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", v->name);
            cJSON_AddStringToObject(e, "dtype", pippy_dtype_name(v->t.dtype));
            cJSON *s = cJSON_AddArrayToObject(e, "shape");
            for (int32_t d = 0; d < v->t.rank; d++)
                cJSON_AddItemToArray(s, cJSON_CreateNumber((double)v->t.dims[d]));
            cJSON_AddItemToArray(ins, e);
        }
        cJSON *outs = cJSON_AddArrayToObject(root, "outputs");
        for (int32_t q = 0; q < g->n_outputs; q++) {
            const pippy_value *v = &g->values[g->outputs[q]];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", v->name);
            cJSON_AddStringToObject(e, "dtype", pippy_dtype_name(v->t.dtype));
            cJSON *s = cJSON_AddArrayToObject(e, "shape");
            for (int32_t d = 0; v->shape_known && d < v->t.rank; d++)
                cJSON_AddItemToArray(s, cJSON_CreateNumber((double)v->t.dims[d]));
            cJSON_AddItemToArray(outs, e);
        }
        char *text = cJSON_Print(root);
        fprintf(out, "%s\n", text ? text : "{}");
        free(text);
        cJSON_Delete(root);
    } else {
        fprintf(out, "\ntotals: %d nodes, %lld parameters (%.2f MiB), %.4g FLOPs per forward pass\n", g->n_nodes,
                (long long)n_params, (double)param_bytes / 1048576.0, total_flops);
        for (int32_t q = 0; q < g->n_outputs; q++) {
            const pippy_value *v = &g->values[g->outputs[q]];
            char sh[96];
            fprintf(out, "output %s: %s\n", v->name, v->shape_known ? pippy_tdesc_str(&v->t, sh, sizeof sh) : "?");
        }
        fprintf(out, "split points (PipeSplit after):");
        for (int32_t k = 0; k < n_splits; k++)
            fprintf(out, " %s", splits[k]);
        fprintf(out, "%s\n", n_splits ? "" : " none");
        if (meta_split)
            fprintf(out, "split points (metadata pippy.split_before): %s\n", meta_split);
        fprintf(out, "unsupported ops:");
        for (int32_t k = 0; k < n_unsup; k++)
            fprintf(out, " %s", unsupported[k]);
        fprintf(out, "%s\n", n_unsup ? "  (see `pippyc inspect --ops` for the supported list)" : " none");
        pippy_problems_print(g, &problems, out);
    }
    pippy_problems_free(&problems);
    cJSON_Delete(ops);
    free(grad);
    pippy_graph_free(g);
    return PIPPY_OK;
}
