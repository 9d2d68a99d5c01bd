/* plan.c — stage inputs and outputs, the edges between stages, each stage's
 * parameters (tied ones copied into every stage that uses them).
 *
 * Graph inputs belong to stage 0, which reads them from files and passes on
 * those that later stages use; graph outputs are written by the last stage,
 * which receives those made earlier. */
#include "plan.h"

#include "inspect.h"

#include <stdlib.h>
#include <string.h>

static pippy_status pippy_oom(void) { return pippy_fail(PIPPY_ERR_NOMEM, "out of memory building the plan"); }

/* Edge of value v, created on first use. */
static int32_t pippy_edge_of(pippy_plan *p, int32_t *edge_of, int32_t v, int32_t producer)
{
    if (edge_of[v] >= 0)
        return edge_of[v];
    pippy_edge *e = &p->edges[p->n_edges];
    memset(e, 0, sizeof *e);
    e->id = p->n_edges;
    e->value = v;
    e->producer = producer;
    e->bytes = pippy_value_bytes(&p->g->values[v]);
    edge_of[v] = p->n_edges++;
    return edge_of[v];
}

/* Per stage: the PARAM and CONST values it reads (params) and the trainable parameters behind
 * them (roots), each once. A folded Transpose(W) or a BatchNorm-folded W still stands for W. */
static pippy_status pippy_plan_roots(pippy_plan *p, const char *uses)
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
        for (int32_t v = 0; v < V; v++) {
            const pippy_value *val = &g->values[v];
            if ((val->kind != PIPPY_VAL_PARAM && val->kind != PIPPY_VAL_CONST) || !uses[(size_t)v * S + s])
                continue;
            sg->params[sg->n_params++] = v;
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
        sg->rank = s;
        sg->nodes = malloc(((size_t)g->n_nodes + 1) * sizeof *sg->nodes);
        sg->in = calloc((size_t)V + 1, sizeof *sg->in);
        sg->out = calloc((size_t)V + 1, sizeof *sg->out);
        sg->params = malloc(((size_t)V + 1) * sizeof *sg->params);
        sg->param_off = calloc((size_t)V + 1, sizeof *sg->param_off);
        sg->arena_off = malloc(((size_t)V + 1) * sizeof *sg->arena_off);
        sg->view_of = malloc(((size_t)V + 1) * sizeof *sg->view_of);
        sg->is_view = calloc((size_t)g->n_nodes + 1, 1);
        if (!sg->nodes || !sg->in || !sg->out || !sg->params || !sg->param_off || !sg->arena_off || !sg->view_of ||
            !sg->is_view) {
            st = pippy_oom();
            break;
        }
        for (int32_t v = 0; v < V; v++)
            sg->arena_off[v] = sg->view_of[v] = -1;
        for (int32_t i = 0; i < g->n_nodes; i++)
            if (p->node_stage[i] == s)
                sg->nodes[sg->n_nodes++] = i;
    }
    if (st != PIPPY_OK)
        goto done;

    /* Graph inputs: stage 0 reads every one (in file order), passes on what later stages use. */
    for (int32_t q = 0; q < g->n_inputs; q++) {
        int32_t v = g->inputs[q];
        pippy_stage *s0 = &p->stages[0];
        s0->in[s0->n_in++] = (pippy_stage_input){v, -1, -1, 0};
        for (int32_t s = 1; s < S; s++) {
            if (!uses[(size_t)v * S + s] && !(s == last && g->values[v].is_output))
                continue;
            int32_t e = pippy_edge_of(p, edge_of, v, 0);
            pippy_edge_add_consumer(&p->edges[e], s);
        }
        if (edge_of[v] >= 0)
            s0->out[s0->n_out++] = (pippy_stage_output){v, edge_of[v], 0, s0->n_in - 1};
        if (g->values[v].is_output) {
            if (S == 1)
                s0->out[s0->n_out++] = (pippy_stage_output){v, -1, 1, s0->n_in - 1};
        }
    }
    /* Values made by nodes: stage outputs when used elsewhere or when graph outputs. */
    for (int32_t s = 0; s < S; s++) {
        pippy_stage *sg = &p->stages[s];
        for (int32_t k = 0; k < sg->n_nodes; k++) {
            const pippy_node *n = &g->nodes[sg->nodes[k]];
            for (int32_t o = 0; o < n->n_out; o++) {
                int32_t v = n->out[o];
                for (int32_t c = s + 1; c < S; c++)
                    if (uses[(size_t)v * S + c] || (c == last && g->values[v].is_output)) {
                        int32_t e = pippy_edge_of(p, edge_of, v, s);
                        pippy_edge_add_consumer(&p->edges[e], c);
                    }
                int graph_out = g->values[v].is_output && s == last;
                if (edge_of[v] >= 0 || graph_out)
                    sg->out[sg->n_out++] = (pippy_stage_output){v, edge_of[v], graph_out, -1};
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
            sg->in[sg->n_in++] = (pippy_stage_input){ed->value, ed->producer, e, graph_out};
        }
    }
    /* Parameters and constants each stage reads, the model parameters behind them; cost figures. */
    st = pippy_plan_roots(p, uses);
    for (int32_t s = 0; s < S && st == PIPPY_OK; s++) {
        pippy_stage *sg = &p->stages[s];
        double t = 0;
        for (int32_t k = 0; k < sg->n_nodes; k++) {
            pippy_op_desc d;
            pippy_graph_op_desc(g, sg->nodes[k], &d);
            sg->flops += pippy_op_flops(&d);
            t += pippy_cost_node_s(&p->cost, &d);
            for (int32_t o = 0; o < d.n_out; o++)
                sg->activation_bytes += pippy_tdesc_bytes(&d.out[o]);
        }
        sg->pred_forward_ms = t * 1e3;
    }
done:
    free(edge_of);
    free(uses);
    return st;
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
    }
    for (int32_t r = 0; p->actions && r < p->n_stages; r++)
        free(p->actions[r]);
    free(p->actions);
    free(p->n_actions);
    free(p->stages);
    free(p->edges);
    free(p->node_stage);
    memset(p, 0, sizeof *p);
}
