/* plan.c — stage inputs and outputs, the edges between stages, each stage's
 * parameters (tied ones copied into every stage that uses them).
 *
 * Graph inputs belong to stage 0, which reads them from files and passes on
 * those that later stages use; graph outputs are written by the last stage,
 * which receives those made earlier. A value made in one stage and read in
 * another is an edge: an activation (made in F) goes to later stages, a partial
 * gradient (made in B) goes back to the stage that made the forward value. */
#include "plan.h"

#include "inspect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pippy_status pippy_oom(void) { return pippy_fail(PIPPY_ERR_NOMEM, "out of memory building the plan"); }

/* Edge of value v, created on first use. */
static int32_t pippy_edge_of(pippy_plan *p, int32_t *edge_of, int32_t v, int32_t producer, int32_t phase)
{
    if (edge_of[v] >= 0)
        return edge_of[v];
    pippy_edge *e = &p->edges[p->n_edges];
    memset(e, 0, sizeof *e);
    e->id = p->n_edges;
    e->value = v;
    e->producer = producer;
    e->phase = phase;
    e->bytes = pippy_value_bytes(&p->g->values[v]);
    edge_of[v] = p->n_edges++;
    return edge_of[v];
}

/* Per stage: the PARAM and CONST values it reads (params) and the trainable parameters behind
 * them (roots), each once. A folded Transpose(W) or a BatchNorm-folded W still stands for W. */
static pippy_status pippy_plan_roots(pippy_plan *p)
{
    const pippy_graph *g = p->g;
    int32_t S = p->n_stages, V = g->n_values;
    char *trainable = calloc((size_t)V + 1, 1), *seen = calloc((size_t)V + 1, 1);
    if (!trainable || !seen) {
        free(trainable);
        free(seen);
        return pippy_oom();
    }
    pippy_mark_trainable(g, trainable);
    for (int32_t s = 0; s < S; s++) {
        pippy_stage *sg = &p->stages[s];
        sg->roots = malloc(((size_t)V + 1) * sizeof *sg->roots);
        if (!sg->roots)
            break;
        memset(seen, 0, (size_t)V);
        for (int32_t q = 0; q < sg->n_params; q++) {
            int32_t v = sg->params[q];
            int32_t r = pippy_value_param_root(g, v);
            if (r >= 0 && trainable[v])
                seen[r] = 1;
        }
        for (int32_t v = 0; v < V; v++)
            if (seen[v]) {
                sg->roots[sg->n_roots++] = v;
                sg->parameter_bytes += pippy_value_bytes(&g->values[v]);
            }
    }
    free(trainable);
    free(seen);
    for (int32_t s = 0; s < S; s++)
        if (!p->stages[s].roots)
            return pippy_oom();
    return PIPPY_OK;
}

static void pippy_edge_add_consumer(pippy_edge *e, int32_t s)
{
    for (int32_t i = 0; i < e->n_consumers; i++)
        if (e->consumers[i] == s)
            return;
    e->consumers[e->n_consumers++] = s;
}

/* A trained parameter several stages hold: one reduction over those stages. */
static pippy_status pippy_plan_reductions(pippy_plan *p, const char *uses)
{
    const pippy_graph *g = p->g;
    int32_t S = p->n_stages;
    p->reductions = calloc((size_t)g->n_values + (size_t)S + 1, sizeof *p->reductions);
    if (!p->reductions)
        return pippy_oom();
    for (int32_t v = 0; v < g->n_values; v++) {
        if (g->values[v].trainable != PIPPY_TRAIN_PARAM)
            continue;
        pippy_reduction *r = &p->reductions[p->n_reductions];
        r->param = v;
        r->transmit = p->tied_transmit;
        r->n_stages = 0;
        for (int32_t s = 0; s < S; s++)
            if (uses[(size_t)v * S + s])
                r->stages[r->n_stages++] = s;
        if (r->n_stages > 1)
            p->n_reductions++;
    }
    for (int32_t s = 0; s < S && p->dp > 1; s++) { /* data parallelism: every stage's gradients */
        pippy_reduction *r = &p->reductions[p->n_reductions++];
        memset(r, 0, sizeof *r);
        r->param = -1;
        r->data_parallel = 1;
        r->n_stages = 1;
        r->stages[0] = s;
    }
    return PIPPY_OK;
}

pippy_status pippy_plan_build(pippy_plan *p)
{
    pippy_graph *g = p->g;
    int32_t S = p->n_stages, V = g->n_values, last = S - 1;
    p->stages = calloc((size_t)S, sizeof *p->stages);
    p->edges = calloc((size_t)V + 1, sizeof *p->edges);
    int32_t *edge_of = malloc(((size_t)V + 1) * sizeof *edge_of);
    /* uses[v * S + s]: stage s reads v */
    char *uses = calloc((size_t)V * (size_t)S + 1, 1);
    if (!p->stages || !p->edges || !edge_of || !uses) {
        free(edge_of);
        free(uses);
        return pippy_oom();
    }
    for (int32_t v = 0; v < V; v++)
        edge_of[v] = -1;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        int32_t s = p->node_stage[i];
        if (s < 0)
            continue;
        const pippy_node *n = &g->nodes[i];
        for (int32_t k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0)
                uses[(size_t)n->in[k] * S + s] = 1;
    }
    pippy_status st = PIPPY_OK;
    for (int32_t s = 0; s < S && st == PIPPY_OK; s++) {
        pippy_stage *sg = &p->stages[s];
        sg->index = s;
        sg->rank = p->n_ranks > 0 ? s % p->n_ranks : s;
        sg->nodes = malloc(((size_t)g->n_nodes + 1) * sizeof *sg->nodes);
        sg->in = calloc((size_t)V + 1, sizeof *sg->in);
        sg->out = calloc((size_t)V + 1, sizeof *sg->out);
        sg->params = malloc(((size_t)V + 1) * sizeof *sg->params);
        sg->param_off = calloc((size_t)V + 1, sizeof *sg->param_off);
        sg->arena_off = malloc(((size_t)V + 1) * sizeof *sg->arena_off);
        sg->view_of = malloc(((size_t)V + 1) * sizeof *sg->view_of);
        sg->is_view = calloc((size_t)g->n_nodes + 1, 1);
        sg->stash_off = malloc(((size_t)V + 1) * sizeof *sg->stash_off);
        if (!sg->nodes || !sg->in || !sg->out || !sg->params || !sg->param_off || !sg->arena_off || !sg->view_of ||
            !sg->is_view || !sg->stash_off) {
            st = pippy_oom();
            break;
        }
        for (int32_t v = 0; v < V; v++)
            sg->arena_off[v] = sg->view_of[v] = sg->stash_off[v] = -1;
        /* F nodes, then B, then W, each in graph order */
        for (int32_t ph = 0; ph < PIPPY_PHASES; ph++) {
            sg->phase_begin[ph] = sg->n_nodes;
            for (int32_t i = 0; i < g->n_nodes; i++)
                if (p->node_stage[i] == s && g->nodes[i].phase == ph)
                    sg->nodes[sg->n_nodes++] = i;
        }
        sg->phase_begin[PIPPY_PHASES] = sg->n_nodes;
    }
    if (st != PIPPY_OK)
        goto done;

    /* Graph inputs: stage 0 reads every one (in file order), passes on what later stages use. */
    for (int32_t q = 0; q < g->n_inputs; q++) {
        int32_t v = g->inputs[q];
        pippy_stage *s0 = &p->stages[0];
        s0->in[s0->n_in++] = (pippy_stage_input){v, -1, -1, 0, PIPPY_PHASE_F};
        for (int32_t s = 1; s < S; s++) {
            if (!uses[(size_t)v * S + s] && !(s == last && g->values[v].is_output))
                continue;
            int32_t e = pippy_edge_of(p, edge_of, v, 0, PIPPY_PHASE_F);
            pippy_edge_add_consumer(&p->edges[e], s);
        }
        if (edge_of[v] >= 0)
            s0->out[s0->n_out++] = (pippy_stage_output){v, edge_of[v], 0, s0->n_in - 1, PIPPY_PHASE_F};
        if (g->values[v].is_output) {
            if (S == 1)
                s0->out[s0->n_out++] = (pippy_stage_output){v, -1, 1, s0->n_in - 1, PIPPY_PHASE_F};
        }
    }
    /* Values made by nodes: stage outputs when used elsewhere or when graph outputs. */
    for (int32_t s = 0; s < S; s++) {
        pippy_stage *sg = &p->stages[s];
        for (int32_t k = 0; k < sg->n_nodes; k++) {
            const pippy_node *n = &g->nodes[sg->nodes[k]];
            for (int32_t o = 0; o < n->n_out; o++) {
                int32_t v = n->out[o];
                if (v < 0 || g->values[v].kind == PIPPY_VAL_GRAD)
                    continue;
                for (int32_t c = 0; c < S; c++)
                    if (c != s && (uses[(size_t)v * S + c] || (c == last && g->values[v].is_output))) {
                        if (n->phase == PIPPY_PHASE_W || (n->phase == PIPPY_PHASE_F) != (c > s)) {
                            st = pippy_fail(PIPPY_ERR_INTERNAL, "value '%s' of stage %d (phase %d) is read by stage %d",
                                            g->values[v].name, s, n->phase, c);
                            goto done;
                        }
                        int32_t e = pippy_edge_of(p, edge_of, v, s, n->phase);
                        pippy_edge_add_consumer(&p->edges[e], c);
                    }
                int graph_out = g->values[v].is_output && s == last;
                if (edge_of[v] >= 0 || graph_out)
                    sg->out[sg->n_out++] = (pippy_stage_output){v, edge_of[v], graph_out, -1, n->phase};
            }
        }
    }
    /* Constant graph outputs are not something a pipeline can produce. */
    for (int32_t q = 0; q < g->n_outputs; q++) {
        const pippy_value *v = &g->values[g->outputs[q]];
        if (v->kind == PIPPY_VAL_CONST || v->kind == PIPPY_VAL_PARAM) {
            st = pippy_fail(PIPPY_ERR_UNSUPPORTED,
                            "%s: graph output '%s' is a constant (it depends on no input); pippyc cannot pipeline it",
                            g->path, v->name);
            goto done;
        }
    }
    /* Receiving side of every edge (in edge order, which follows the node order). */
    for (int32_t e = 0; e < p->n_edges; e++) {
        const pippy_edge *ed = &p->edges[e];
        for (int32_t c = 0; c < ed->n_consumers; c++) {
            pippy_stage *sg = &p->stages[ed->consumers[c]];
            int graph_out = g->values[ed->value].is_output && ed->consumers[c] == last;
            sg->in[sg->n_in++] = (pippy_stage_input){ed->value, ed->producer, e, graph_out, ed->phase};
        }
    }
    /* Parameters and constants each stage reads (trained ones first), the model parameters behind
     * them; cost figures. */
    for (int32_t s = 0; s < S; s++) {
        pippy_stage *sg = &p->stages[s];
        for (int32_t pass = 0; pass < 3; pass++)
            for (int32_t v = 0; v < V; v++) {
                const pippy_value *val = &g->values[v];
                int kind = val->kind == PIPPY_VAL_CONST ? 2 : val->trainable == PIPPY_TRAIN_PARAM ? 0 : 1;
                if ((val->kind != PIPPY_VAL_PARAM && val->kind != PIPPY_VAL_CONST) || !uses[(size_t)v * S + s] ||
                    kind != pass)
                    continue;
                sg->params[sg->n_params++] = v;
                sg->n_trainable += pass == 0;
            }
    }
    st = pippy_plan_roots(p);
    for (int32_t s = 0; s < S && st == PIPPY_OK; s++) {
        pippy_stage *sg = &p->stages[s];
        double t[PIPPY_PHASES] = {0};
        for (int32_t k = 0; k < sg->n_nodes; k++) {
            pippy_op_desc d;
            pippy_graph_op_desc(g, sg->nodes[k], &d);
            sg->flops += pippy_op_flops(&d);
            t[g->nodes[sg->nodes[k]].phase] += pippy_cost_node_s(&p->cost, &d, pippy_graph_far_share(g, sg->nodes[k]));
            for (int32_t o = 0; o < d.n_out && g->nodes[sg->nodes[k]].phase == PIPPY_PHASE_F; o++)
                sg->activation_bytes += pippy_tdesc_bytes(&d.out[o]);
        }
        sg->pred_forward_ms = t[PIPPY_PHASE_F] * 1e3;
        sg->pred_backward_ms = t[PIPPY_PHASE_B] * 1e3;
        sg->pred_weight_ms = t[PIPPY_PHASE_W] * 1e3;
    }
    if (p->training)
        st = pippy_plan_reductions(p, uses);
done:
    free(edge_of);
    free(uses);
    return st;
}

uint64_t pippy_reduction_bytes(const pippy_plan *p, int32_t id)
{
    const pippy_reduction *r = &p->reductions[id];
    return r->data_parallel ? p->stages[r->stages[0]].trainable_bytes : pippy_value_bytes(&p->g->values[r->param]);
}

int32_t pippy_rank_stages(const pippy_plan *p, int32_t r, int32_t *stages)
{
    int32_t n = 0;
    for (int32_t s = 0; s < p->n_stages; s++)
        if (p->stages[s].rank == r)
            stages[n++] = s;
    return n;
}

void pippy_rank_program(const pippy_plan *p, int32_t r, char *buf, size_t n)
{
    int32_t st[PIPPY_MAX_STAGES], k = pippy_rank_stages(p, r, st);
    if (k == 1)
        snprintf(buf, n, "stage%d", st[0]);
    else
        snprintf(buf, n, "rank%d", r);
}

void pippy_plan_free(pippy_plan *p)
{
    if (!p)
        return;
    for (int32_t s = 0; p->stages && s < p->n_stages; s++) {
        pippy_stage *sg = &p->stages[s];
        free(sg->nodes);
        free(sg->in);
        free(sg->out);
        free(sg->params);
        free(sg->roots);
        free(sg->param_off);
        free(sg->arena_off);
        free(sg->view_of);
        free(sg->is_view);
        free(sg->stash_off);
    }
    for (int32_t r = 0; p->actions && r < p->n_ranks; r++)
        free(p->actions[r]);
    free(p->actions);
    free(p->n_actions);
    free(p->pred_idle_ms);
    free(p->reductions);
    free(p->stages);
    free(p->edges);
    free(p->node_stage);
    pippy_cost_free(&p->cost);
    memset(p, 0, sizeof *p);
}
