/* emit_json.c — writes out/schedule.json, the single source of truth for a
 * run (described by schemas/schedule.schema.json). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "emit.h"
#include "schedule_sim.h"

static cJSON *pippy_json_shape(const pippy_tdesc *t)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < t->rank; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)t->dims[i]));
    return a;
}

static void pippy_json_hex(cJSON *o, const char *key, uint64_t h)
{
    char b[32];
    snprintf(b, sizeof b, "%016llx", (unsigned long long)h);
    cJSON_AddStringToObject(o, key, b);
}

static const char *pippy_phase_name(int32_t ph) { return ph == PIPPY_PHASE_F ? "activation" : "gradient"; }

static void pippy_json_value(cJSON *e, const pippy_value *v)
{
    cJSON_AddStringToObject(e, "name", v->name);
    cJSON_AddItemToObject(e, "shape", pippy_json_shape(&v->t));
    cJSON_AddStringToObject(e, "dtype", pippy_dtype_name(v->t.dtype));
}

static void pippy_json_config(cJSON *root, const pippy_plan *p, const pippy_emit_opts *o)
{
    cJSON *cfg = cJSON_AddObjectToObject(root, "config");
    cJSON_AddNumberToObject(cfg, "stages", p->n_stages);
    cJSON_AddNumberToObject(cfg, "ranks", p->n_ranks * (p->dp > 1 ? p->dp : 1));
    cJSON_AddNumberToObject(cfg, "dp", p->dp > 1 ? p->dp : 1);
    cJSON_AddNumberToObject(cfg, "microbatches", p->microbatches);
    cJSON_AddNumberToObject(cfg, "microbatch_size", (double)p->microbatch_size);
    cJSON_AddNumberToObject(cfg, "batch", (double)p->batch);
    cJSON_AddStringToObject(cfg, "schedule", p->schedule);
    if (p->window > 0)
        cJSON_AddNumberToObject(cfg, "window", p->window);
    cJSON_AddStringToObject(cfg, "mode", p->training ? "training" : "inference");
    cJSON_AddStringToObject(cfg, "split_source", pippy_split_source_name(p->split_source));
    if (!p->training)
        return;
    cJSON *tr = cJSON_AddObjectToObject(root, "training");
    cJSON_AddStringToObject(tr, "loss", p->g->values[p->loss].name);
    cJSON_AddStringToObject(tr, "tied", p->tied_transmit ? "transmit" : "replicate");
    cJSON *opt = o->optimizer_json ? cJSON_Parse(o->optimizer_json) : NULL;
    cJSON_AddItemToObject(tr, "optimizer", opt ? opt : cJSON_CreateObject());
}

/* Trained parameters, state and the other stored values of stage s, with their places. */
static cJSON *pippy_json_parameters(const pippy_plan *p, const pippy_stage *sg)
{
    cJSON *a = cJSON_CreateArray();
    for (int32_t q = 0; q < sg->n_params; q++) {
        const pippy_value *v = &p->g->values[sg->params[q]];
        if (v->kind != PIPPY_VAL_PARAM)
            continue;
        cJSON *e = cJSON_CreateObject();
        pippy_json_value(e, v);
        cJSON_AddNumberToObject(e, "offset", (double)sg->param_off[q]);
        cJSON_AddNumberToObject(e, "bytes", (double)pippy_value_bytes(v));
        cJSON_AddStringToObject(e, "kind", v->trainable == PIPPY_TRAIN_PARAM   ? "trainable"
                                           : v->trainable == PIPPY_TRAIN_STATE ? "buffer"
                                                                                : "constant");
        cJSON_AddItemToArray(a, e);
    }
    return a;
}

static cJSON *pippy_json_stage_inputs(const pippy_plan *p, const pippy_stage *sg)
{
    cJSON *ins = cJSON_CreateArray();
    for (int32_t q = 0; q < sg->n_in; q++) {
        cJSON *e = cJSON_CreateObject();
        pippy_json_value(e, &p->g->values[sg->in[q].value]);
        if (sg->in[q].from_stage < 0)
            cJSON_AddStringToObject(e, "from", "input");
        else
            cJSON_AddNumberToObject(e, "from", sg->in[q].from_stage);
        cJSON_AddNumberToObject(e, "edge", sg->in[q].edge);
        cJSON_AddBoolToObject(e, "graph_output", sg->in[q].graph_output);
        cJSON_AddStringToObject(e, "phase", pippy_phase_name(sg->in[q].phase));
        cJSON_AddItemToArray(ins, e);
    }
    return ins;
}

static cJSON *pippy_json_stage_outputs(const pippy_plan *p, const pippy_stage *sg)
{
    cJSON *outs = cJSON_CreateArray();
    for (int32_t q = 0; q < sg->n_out; q++) {
        cJSON *e = cJSON_CreateObject();
        pippy_json_value(e, &p->g->values[sg->out[q].value]);
        cJSON *to = cJSON_AddArrayToObject(e, "to");
        if (sg->out[q].edge >= 0) {
            const pippy_edge *ed = &p->edges[sg->out[q].edge];
            for (int32_t c = 0; c < ed->n_consumers; c++)
                cJSON_AddItemToArray(to, cJSON_CreateNumber(ed->consumers[c]));
        }
        cJSON_AddNumberToObject(e, "edge", sg->out[q].edge);
        cJSON_AddBoolToObject(e, "graph_output", sg->out[q].graph_output);
        cJSON_AddNumberToObject(e, "passthrough", sg->out[q].passthrough);
        cJSON_AddStringToObject(e, "phase", pippy_phase_name(sg->out[q].phase));
        cJSON_AddItemToArray(outs, e);
    }
    return outs;
}

static void pippy_json_stages(cJSON *root, const pippy_plan *p)
{
    const pippy_graph *g = p->g;
    cJSON *stages = cJSON_AddArrayToObject(root, "stages");
    for (int32_t s = 0; s < p->n_stages; s++) {
        const pippy_stage *sg = &p->stages[s];
        cJSON *js = cJSON_CreateObject();
        cJSON_AddItemToArray(stages, js);
        char b[64];
        cJSON_AddNumberToObject(js, "index", s);
        cJSON_AddNumberToObject(js, "rank", sg->rank);
        pippy_rank_program(p, sg->rank, b, sizeof b);
        cJSON_AddStringToObject(js, "program", b);
        snprintf(b, sizeof b, "stage%d.c", s);
        cJSON_AddStringToObject(js, "source", b);
        snprintf(b, sizeof b, "stage%d.weights", s);
        cJSON_AddStringToObject(js, "weights", b);
        cJSON *nodes = cJSON_AddArrayToObject(js, "nodes");
        for (int32_t k = sg->phase_begin[PIPPY_PHASE_F]; k < sg->phase_begin[PIPPY_PHASE_F + 1]; k++)
            cJSON_AddItemToArray(nodes, cJSON_CreateString(g->nodes[sg->nodes[k]].name));
        cJSON_AddNumberToObject(js, "flops", sg->flops);
        cJSON_AddNumberToObject(js, "parameter_bytes", (double)sg->parameter_bytes);
        cJSON_AddNumberToObject(js, "weights_bytes", (double)sg->weights_bytes);
        cJSON_AddNumberToObject(js, "activation_bytes", (double)sg->activation_bytes);
        cJSON_AddNumberToObject(js, "arena_bytes", (double)sg->arena_bytes);
        cJSON_AddNumberToObject(js, "io_bytes_per_microbatch", (double)sg->io_bytes);
        cJSON_AddNumberToObject(js, "predicted_forward_ms", sg->pred_forward_ms);
        if (p->training) {
            cJSON_AddNumberToObject(js, "backward_nodes", sg->phase_begin[PIPPY_PHASE_W] - sg->phase_begin[PIPPY_PHASE_B]);
            cJSON_AddNumberToObject(js, "weight_gradient_nodes",
                                    sg->phase_begin[PIPPY_PHASES] - sg->phase_begin[PIPPY_PHASE_W]);
            cJSON_AddNumberToObject(js, "predicted_backward_ms", sg->pred_backward_ms);
            cJSON_AddNumberToObject(js, "predicted_weight_ms", sg->pred_weight_ms);
            cJSON_AddNumberToObject(js, "predicted_optimizer_ms", sg->pred_optimizer_ms);
            cJSON_AddNumberToObject(js, "trainable_bytes", (double)sg->trainable_bytes);
            cJSON_AddNumberToObject(js, "stash_bytes", (double)sg->stash_bytes);
            cJSON_AddNumberToObject(js, "stash_slots", sg->stash_slots);
            cJSON_AddItemToObject(js, "parameters", pippy_json_parameters(p, sg));
        }
        cJSON_AddItemToObject(js, "inputs", pippy_json_stage_inputs(p, sg));
        cJSON_AddItemToObject(js, "outputs", pippy_json_stage_outputs(p, sg));
    }
}

static void pippy_json_edges(cJSON *root, const pippy_plan *p)
{
    cJSON *edges = cJSON_AddArrayToObject(root, "edges");
    for (int32_t e = 0; e < p->n_edges; e++) {
        const pippy_edge *ed = &p->edges[e];
        cJSON *je = cJSON_CreateObject();
        cJSON_AddNumberToObject(je, "id", e);
        cJSON_AddStringToObject(je, "value", p->g->values[ed->value].name);
        cJSON_AddStringToObject(je, "phase", pippy_phase_name(ed->phase));
        cJSON_AddNumberToObject(je, "producer", ed->producer);
        cJSON *c = cJSON_AddArrayToObject(je, "consumers");
        for (int32_t k = 0; k < ed->n_consumers; k++)
            cJSON_AddItemToArray(c, cJSON_CreateNumber(ed->consumers[k]));
        cJSON_AddNumberToObject(je, "bytes", (double)ed->bytes);
        cJSON_AddItemToArray(edges, je);
    }
}

/* Parameters held by several stages; in training, the reductions that keep them equal. */
static void pippy_json_tied(cJSON *root, const pippy_plan *p)
{
    const pippy_graph *g = p->g;
    cJSON *tied = cJSON_AddArrayToObject(root, "tied");
    for (int32_t v = 0; v < g->n_values; v++) {
        if (g->values[v].kind != PIPPY_VAL_PARAM)
            continue;
        cJSON *sa = cJSON_CreateArray();
        int32_t n = 0;
        for (int32_t s = 0; s < p->n_stages; s++)
            for (int32_t q = 0; q < p->stages[s].n_roots; q++)
                if (p->stages[s].roots[q] == v) {
                    cJSON_AddItemToArray(sa, cJSON_CreateNumber(s));
                    n++;
                }
        if (n < 2) {
            cJSON_Delete(sa);
            continue;
        }
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "name", g->values[v].name);
        cJSON_AddNumberToObject(t, "bytes", (double)pippy_value_bytes(&g->values[v]));
        cJSON_AddItemToObject(t, "stages", sa);
        cJSON_AddItemToArray(tied, t);
    }
    if (!p->training)
        return;
    cJSON *red = cJSON_AddArrayToObject(root, "reductions");
    for (int32_t id = 0; id < p->n_reductions; id++) {
        const pippy_reduction *r = &p->reductions[id];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "id", id);
        if (r->data_parallel) { /* stage s's whole gradient over the replicas */
            cJSON_AddStringToObject(j, "kind", "data_parallel");
            cJSON_AddStringToObject(j, "mode", "replicate");
            cJSON_AddStringToObject(j, "param", "");
            cJSON_AddNumberToObject(j, "bytes", (double)pippy_reduction_bytes(p, id));
            cJSON_AddItemToObject(j, "stages", cJSON_CreateIntArray(&r->stages[0], 1));
            cJSON *off = cJSON_AddArrayToObject(j, "offsets");
            cJSON_AddItemToArray(off, cJSON_CreateNumber(0));
            cJSON_AddItemToArray(red, j);
            continue;
        }
        cJSON_AddStringToObject(j, "kind", "tied");
        cJSON_AddStringToObject(j, "mode", r->transmit ? "transmit" : "replicate");
        cJSON_AddStringToObject(j, "param", g->values[r->param].name);
        cJSON_AddNumberToObject(j, "bytes", (double)pippy_reduction_bytes(p, id));
        cJSON *st = cJSON_AddArrayToObject(j, "stages"), *off = cJSON_AddArrayToObject(j, "offsets");
        for (int32_t k = 0; k < r->n_stages; k++) {
            const pippy_stage *sg = &p->stages[r->stages[k]];
            cJSON_AddItemToArray(st, cJSON_CreateNumber(r->stages[k]));
            for (int32_t q = 0; q < sg->n_params; q++)
                if (sg->params[q] == r->param)
                    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)sg->param_off[q]));
        }
        cJSON_AddItemToArray(red, j);
    }
}

static cJSON *pippy_json_action(const pippy_action *a)
{
    const pippy_act_info *i = pippy_act_info_of(a->kind);
    cJSON *ja = cJSON_CreateObject();
    cJSON_AddStringToObject(ja, "op", i ? i->name : "?");
    if (a->kind != PIPPY_ACT_STEP)
        cJSON_AddNumberToObject(ja, "stage", a->stage);
    if (i && i->has_mb)
        cJSON_AddNumberToObject(ja, "mb", a->mb);
    if (i && i->collective && a->kind != PIPPY_ACT_STEP)
        cJSON_AddNumberToObject(ja, "reduction", a->peer);
    else if (i && i->has_peer)
        cJSON_AddNumberToObject(ja, "peer", a->peer);
    return ja;
}

static void pippy_json_ranks(cJSON *root, const pippy_plan *p)
{
    cJSON *ranks = cJSON_AddArrayToObject(root, "ranks");
    int32_t D = p->dp > 1 ? p->dp : 1;
    for (int32_t rr = 0; rr < p->n_ranks * D; rr++) { /* replica d: ranks d*n_ranks .. */
        int32_t r = rr % p->n_ranks;
        cJSON *jr = cJSON_CreateObject();
        char b[64];
        cJSON_AddNumberToObject(jr, "rank", rr);
        if (D > 1)
            cJSON_AddNumberToObject(jr, "replica", rr / p->n_ranks);
        cJSON *st = cJSON_AddArrayToObject(jr, "stages");
        for (int32_t s = 0; s < p->n_stages; s++)
            if (p->stages[s].rank == r)
                cJSON_AddItemToArray(st, cJSON_CreateNumber(s));
        pippy_rank_program(p, r, b, sizeof b);
        cJSON_AddStringToObject(jr, "program", b);
        cJSON *acts = cJSON_AddArrayToObject(jr, "actions");
        for (int32_t k = 0; k < p->n_actions[r]; k++)
            cJSON_AddItemToArray(acts, pippy_json_action(&p->actions[r][k]));
        cJSON_AddItemToArray(ranks, jr);
    }
}

/* The slots of edge e's value, as the stage programs size them (pippy_sched_slots). */
static int32_t pippy_edge_slots(const pippy_plan *p, int32_t e)
{
    const pippy_edge *ed = &p->edges[e];
    int whole = 0;
    int32_t in_flight[PIPPY_MAX_STAGES];
    for (int32_t s = 0; s < p->n_stages; s++)
        in_flight[s] = p->stages[s].stash_slots;
    const pippy_stage *pr = &p->stages[ed->producer];
    for (int32_t q = 0; q < pr->n_out; q++)
        whole |= pr->out[q].edge == e && pr->out[q].passthrough >= 0;
    for (int32_t c = 0; c < ed->n_consumers; c++) {
        const pippy_stage *cs = &p->stages[ed->consumers[c]];
        for (int32_t q = 0; q < cs->n_in; q++)
            whole |= cs->in[q].edge == e && cs->in[q].graph_output;
    }
    return pippy_sched_slots(p->training || p->window > 0, p->microbatches, whole, in_flight, ed->producer, ed->consumers,
                             ed->n_consumers);
}

/* Bytes of stage s's input and output slots. */
static double pippy_stage_slot_bytes(const pippy_plan *p, const pippy_stage *sg)
{
    double bytes = 0;
    for (int32_t q = 0; q < sg->n_in; q++) {
        int32_t e = sg->in[q].edge;
        bytes += (double)pippy_value_bytes(&p->g->values[sg->in[q].value]) *
                 (e < 0 ? p->microbatches : pippy_edge_slots(p, e));
    }
    for (int32_t q = 0; q < sg->n_out; q++) {
        int32_t e = sg->out[q].edge;
        if (sg->out[q].passthrough < 0)
            bytes += (double)pippy_value_bytes(&p->g->values[sg->out[q].value]) *
                     (e < 0 ? p->microbatches : pippy_edge_slots(p, e));
    }
    return bytes;
}

/* Bytes a stage's program holds: weights, arena, stash slots, I/O slots; in training also the
 * gradient buffer and the optimizer state. */
double pippy_stage_peak_bytes(const pippy_plan *p, int32_t s, int32_t optimizer_state)
{
    const pippy_stage *sg = &p->stages[s];
    double bytes = (double)sg->weights_bytes + (double)sg->arena_bytes + pippy_stage_slot_bytes(p, sg);
    if (p->training)
        bytes += (double)sg->stash_bytes * sg->stash_slots + (double)sg->trainable_bytes * (1 + optimizer_state);
    return bytes;
}

static void pippy_json_prediction(cJSON *root, const pippy_plan *p, const pippy_emit_opts *o)
{
    cJSON *pred = cJSON_AddObjectToObject(root, "prediction");
    cJSON_AddNumberToObject(pred, "step_ms", p->pred_step_ms);
    cJSON_AddNumberToObject(pred, "bubble_fraction", p->pred_bubble);
    cJSON_AddNumberToObject(pred, "ideal_bubble_fraction",
                            (double)(p->n_stages - 1) / (double)(p->microbatches + p->n_stages - 1));
    cJSON *idle = cJSON_AddArrayToObject(pred, "idle_ms");
    for (int32_t r = 0; r < p->n_ranks * (p->dp > 1 ? p->dp : 1); r++) /* every replica as the first */
        cJSON_AddItemToArray(idle, cJSON_CreateNumber(p->pred_idle_ms ? p->pred_idle_ms[r % p->n_ranks] : 0));
    cJSON *peak = cJSON_AddArrayToObject(pred, "peak_memory_bytes");
    for (int32_t s = 0; s < p->n_stages; s++)
        cJSON_AddItemToArray(peak, cJSON_CreateNumber(pippy_stage_peak_bytes(p, s, o->optimizer_state)));
    cJSON *cm = cJSON_AddObjectToObject(pred, "cost_model");
    cJSON_AddNumberToObject(cm, "matmul_gflops", p->cost.flops_per_s / 1e9);
    cJSON_AddNumberToObject(cm, "memory_gbytes_per_s", p->cost.bytes_per_s / 1e9);
    cJSON_AddNumberToObject(cm, "link_gbytes_per_s", p->cost.link_bytes_per_s / 1e9);
    cJSON_AddNumberToObject(cm, "link_latency_us", p->cost.link_latency_s * 1e6);
    cJSON_AddNumberToObject(cm, "op_overhead_us", p->cost.op_overhead_s * 1e6);
    cJSON_AddBoolToObject(cm, "calibrated", p->cost.calibrated);
    cJSON_AddStringToObject(cm, "source", p->cost.source);
    cJSON_AddNumberToObject(cm, "timed_kernels", p->cost.n_kernels);
}

/* model.transposed_initializers: the file's initializers the training compile made Transpose(P)
 * again (train.h), for export to write back as the trained P's transpose. */
static void pippy_json_transposed(cJSON *model, const pippy_graph *g)
{
    cJSON *list = NULL;
    for (int32_t v = 0; v < g->n_values; v++) {
        if (g->values[v].transpose_of < 0)
            continue;
        if (!list)
            list = cJSON_AddArrayToObject(model, "transposed_initializers");
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", g->values[v].name);
        cJSON_AddStringToObject(e, "transpose_of", g->values[g->values[v].transpose_of].name);
        cJSON_AddItemToArray(list, e);
    }
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
    char *abs = realpath(g->path, NULL); /* so that --save finds it from any directory */
    if (abs)
        cJSON_AddStringToObject(model, "absolute_path", abs);
    free(abs);
    pippy_json_hex(model, "file_hash", g->hash);
    cJSON_AddNumberToObject(model, "opset", g->opset);
    pippy_json_transposed(model, g);
    pippy_json_config(root, p, o);
    pippy_json_stages(root, p);
    pippy_json_edges(root, p);
    pippy_json_tied(root, p);
    pippy_json_ranks(root, p);
    pippy_json_prediction(root, p, o);

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
