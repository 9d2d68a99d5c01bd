/* emit_json.c — writes out/schedule.json, the single source of truth for a
 * run (described by schemas/schedule.schema.json). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "emit.h"

static cJSON *pippy_json_shape(const pippy_tdesc *t)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < t->rank; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)t->dims[i]));
    return a;
}

static const char *pippy_action_name(int32_t op)
{
    switch (op) {
    case PIPPY_ACT_RECV_F: return "RECV_F";
    case PIPPY_ACT_F: return "F";
    case PIPPY_ACT_SEND_F: return "SEND_F";
    default: return "?";
    }
}

static void pippy_json_hex(cJSON *o, const char *key, uint64_t h)
{
    char b[32];
    snprintf(b, sizeof b, "%016llx", (unsigned long long)h);
    cJSON_AddStringToObject(o, key, b);
}

pippy_status pippy_emit_schedule_json(const pippy_plan *p, const pippy_emit_opts *o)
{
    const pippy_graph *g = p->g;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "pippyc_version", PIPPY_VERSION);
    cJSON_AddStringToObject(root, "command", o->command_line ? o->command_line : "");
    pippy_json_hex(root, "hash", p->hash);
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "path", g->path);
    pippy_json_hex(model, "file_hash", g->hash);
    cJSON_AddNumberToObject(model, "opset", g->opset);

    cJSON *cfg = cJSON_AddObjectToObject(root, "config");
    cJSON_AddNumberToObject(cfg, "stages", p->n_stages);
    cJSON_AddNumberToObject(cfg, "ranks", p->n_stages);
    cJSON_AddNumberToObject(cfg, "dp", 1);
    cJSON_AddNumberToObject(cfg, "microbatches", p->microbatches);
    cJSON_AddNumberToObject(cfg, "microbatch_size", (double)p->microbatch_size);
    cJSON_AddNumberToObject(cfg, "batch", (double)p->batch);
    cJSON_AddStringToObject(cfg, "schedule", p->schedule);
    cJSON_AddStringToObject(cfg, "mode", "inference");
    cJSON_AddStringToObject(cfg, "split_source", pippy_split_source_name(p->split_source));

    cJSON *stages = cJSON_AddArrayToObject(root, "stages");
    for (int32_t s = 0; s < p->n_stages; s++) {
        const pippy_stage *sg = &p->stages[s];
        cJSON *js = cJSON_CreateObject();
        cJSON_AddItemToArray(stages, js);
        char b[64];
        cJSON_AddNumberToObject(js, "index", s);
        cJSON_AddNumberToObject(js, "rank", sg->rank);
        snprintf(b, sizeof b, "stage%d", s);
        cJSON_AddStringToObject(js, "program", b);
        snprintf(b, sizeof b, "stage%d.c", s);
        cJSON_AddStringToObject(js, "source", b);
        snprintf(b, sizeof b, "stage%d.weights", s);
        cJSON_AddStringToObject(js, "weights", b);
        cJSON *nodes = cJSON_AddArrayToObject(js, "nodes");
        for (int32_t k = 0; k < sg->n_nodes; k++)
            cJSON_AddItemToArray(nodes, cJSON_CreateString(g->nodes[sg->nodes[k]].name));
        cJSON_AddNumberToObject(js, "flops", sg->flops);
        cJSON_AddNumberToObject(js, "parameter_bytes", (double)sg->parameter_bytes);
        cJSON_AddNumberToObject(js, "weights_bytes", (double)sg->weights_bytes);
        cJSON_AddNumberToObject(js, "activation_bytes", (double)sg->activation_bytes);
        cJSON_AddNumberToObject(js, "arena_bytes", (double)sg->arena_bytes);
        cJSON_AddNumberToObject(js, "io_bytes_per_microbatch", (double)sg->io_bytes);
        cJSON_AddNumberToObject(js, "predicted_forward_ms", sg->pred_forward_ms);
        cJSON *ins = cJSON_AddArrayToObject(js, "inputs");
        for (int32_t q = 0; q < sg->n_in; q++) {
            const pippy_value *v = &g->values[sg->in[q].value];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", v->name);
            cJSON_AddItemToObject(e, "shape", pippy_json_shape(&v->t));
            cJSON_AddStringToObject(e, "dtype", pippy_dtype_name(v->t.dtype));
            if (sg->in[q].from_stage < 0)
                cJSON_AddStringToObject(e, "from", "input");
            else
                cJSON_AddNumberToObject(e, "from", sg->in[q].from_stage);
            cJSON_AddNumberToObject(e, "edge", sg->in[q].edge);
            cJSON_AddBoolToObject(e, "graph_output", sg->in[q].graph_output);
            cJSON_AddItemToArray(ins, e);
        }
        cJSON *outs = cJSON_AddArrayToObject(js, "outputs");
        for (int32_t q = 0; q < sg->n_out; q++) {
            const pippy_value *v = &g->values[sg->out[q].value];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", v->name);
            cJSON_AddItemToObject(e, "shape", pippy_json_shape(&v->t));
            cJSON_AddStringToObject(e, "dtype", pippy_dtype_name(v->t.dtype));
            cJSON *to = cJSON_AddArrayToObject(e, "to");
            if (sg->out[q].edge >= 0) {
                const pippy_edge *ed = &p->edges[sg->out[q].edge];
                for (int32_t c = 0; c < ed->n_consumers; c++)
                    cJSON_AddItemToArray(to, cJSON_CreateNumber(ed->consumers[c]));
            }
            cJSON_AddNumberToObject(e, "edge", sg->out[q].edge);
            cJSON_AddBoolToObject(e, "graph_output", sg->out[q].graph_output);
            cJSON_AddNumberToObject(e, "passthrough", sg->out[q].passthrough);
            cJSON_AddItemToArray(outs, e);
        }
    }

    cJSON *edges = cJSON_AddArrayToObject(root, "edges");
    for (int32_t e = 0; e < p->n_edges; e++) {
        const pippy_edge *ed = &p->edges[e];
        cJSON *je = cJSON_CreateObject();
        cJSON_AddNumberToObject(je, "id", e);
        cJSON_AddStringToObject(je, "value", g->values[ed->value].name);
        cJSON_AddNumberToObject(je, "producer", ed->producer);
        cJSON *c = cJSON_AddArrayToObject(je, "consumers");
        for (int32_t k = 0; k < ed->n_consumers; k++)
            cJSON_AddItemToArray(c, cJSON_CreateNumber(ed->consumers[k]));
        cJSON_AddNumberToObject(je, "bytes", (double)ed->bytes);
        cJSON_AddItemToArray(edges, je);
    }

    cJSON *tied = cJSON_AddArrayToObject(root, "tied");
    for (int32_t v = 0; v < g->n_values; v++) {
        if (g->values[v].kind != PIPPY_VAL_PARAM)
            continue;
        int32_t in_stages[PIPPY_MAX_STAGES], n = 0;
        for (int32_t s = 0; s < p->n_stages; s++)
            for (int32_t q = 0; q < p->stages[s].n_roots; q++)
                if (p->stages[s].roots[q] == v)
                    in_stages[n++] = s;
        if (n < 2)
            continue;
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "name", g->values[v].name);
        cJSON_AddNumberToObject(t, "bytes", (double)pippy_value_bytes(&g->values[v]));
        cJSON *sa = cJSON_AddArrayToObject(t, "stages");
        for (int32_t k = 0; k < n; k++)
            cJSON_AddItemToArray(sa, cJSON_CreateNumber(in_stages[k]));
        cJSON_AddItemToArray(tied, t);
    }

    cJSON *ranks = cJSON_AddArrayToObject(root, "ranks");
    for (int32_t r = 0; r < p->n_stages; r++) {
        cJSON *jr = cJSON_CreateObject();
        char b[64];
        cJSON_AddNumberToObject(jr, "rank", r);
        cJSON_AddNumberToObject(jr, "stage", r);
        snprintf(b, sizeof b, "stage%d", r);
        cJSON_AddStringToObject(jr, "program", b);
        cJSON *acts = cJSON_AddArrayToObject(jr, "actions");
        for (int32_t k = 0; k < p->n_actions[r]; k++) {
            const pippy_action *a = &p->actions[r][k];
            cJSON *ja = cJSON_CreateObject();
            cJSON_AddStringToObject(ja, "op", pippy_action_name(a->op));
            cJSON_AddNumberToObject(ja, "mb", a->mb);
            if (a->peer >= 0)
                cJSON_AddNumberToObject(ja, "peer", a->peer);
            cJSON_AddItemToArray(acts, ja);
        }
        cJSON_AddItemToArray(ranks, jr);
    }

    cJSON *pred = cJSON_AddObjectToObject(root, "prediction");
    cJSON_AddNumberToObject(pred, "step_ms", p->pred_step_ms);
    cJSON_AddNumberToObject(pred, "bubble_fraction", p->pred_bubble);
    cJSON_AddNumberToObject(pred, "ideal_bubble_fraction",
                            (double)(p->n_stages - 1) / (double)(p->microbatches + p->n_stages - 1));
    cJSON *peak = cJSON_AddArrayToObject(pred, "peak_memory_bytes");
    for (int32_t s = 0; s < p->n_stages; s++) {
        const pippy_stage *sg = &p->stages[s];
        double bytes = (double)sg->weights_bytes + (double)sg->arena_bytes + (double)sg->io_bytes * p->microbatches;
        cJSON_AddItemToArray(peak, cJSON_CreateNumber(bytes));
    }
    cJSON *cm = cJSON_AddObjectToObject(pred, "cost_model");
    cJSON_AddNumberToObject(cm, "matmul_gflops", p->cost.flops_per_s / 1e9);
    cJSON_AddNumberToObject(cm, "memory_gbytes_per_s", p->cost.bytes_per_s / 1e9);
    cJSON_AddNumberToObject(cm, "link_gbytes_per_s", p->cost.link_bytes_per_s / 1e9);
    cJSON_AddNumberToObject(cm, "link_latency_us", p->cost.link_latency_s * 1e6);
    cJSON_AddNumberToObject(cm, "op_overhead_us", p->cost.op_overhead_s * 1e6);
    cJSON_AddBoolToObject(cm, "calibrated", p->cost.calibrated);
    cJSON_AddStringToObject(cm, "source", p->cost.source);

    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory writing schedule.json");
    FILE *f;
    char tmp[4096];
    pippy_status st = pippy_file_begin(o->out_dir, "schedule.json", &f, tmp, sizeof tmp);
    if (st == PIPPY_OK) {
        fputs(text, f);
        fputc('\n', f);
        st = pippy_file_commit(f, tmp);
    }
    free(text);
    return st;
}
