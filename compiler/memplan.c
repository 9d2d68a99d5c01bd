/* memplan.c — the static memory plan of each stage.
 *
 * A stage runs its nodes in phases: F (forward), then for training B (activation gradients) and
 * W (weight gradients), each phase of one microbatch at a time, while other microbatches' phases
 * run in between (1F1B). So every value the stage computes lives in one of:
 *   - the stash: values read in a later phase than the one that made them (saved for backward:
 *     an activation F makes and B reads, a gradient B makes and W reads). One stash slot per
 *     microbatch in flight. A slot belongs to one microbatch from its F to its W, and its phases
 *     run the stage's nodes in order (F's, then B's, then W's), so within a slot values are placed
 *     first fit by lifetime too: a gradient B keeps for W takes the bytes of an activation whose
 *     last reader, earlier in B, has run (7-12% of the stash on the GPTs).
 *   - the arena: everything else. Its values never outlive their phase, so one arena serves every
 *     phase of every microbatch: values are placed in node order, first-fit into the gaps left by
 *     values whose last reader has already run.
 * Stage inputs and outputs live in runtime-owned slots (one per microbatch); parameters and
 * constants in the weights (trained parameters first, so the optimizer and the gradient buffer
 * cover one range); a trained parameter's gradient (PIPPY_VAL_GRAD) at the same offset in the
 * gradient buffer.
 *
 * Ops that only relabel their input (Reshape, Flatten, Squeeze, Unsqueeze, Identity, inference
 * Dropout) become views when input and output both live in the stage's own memory: the output
 * takes the input's bytes, the two share one block that lives until the last reader of either,
 * and no kernel runs. */
#include "plan.h"

#include <stdlib.h>
#include <string.h>

#include "checked.h"

#define PIPPY_ALIGN 64

/* Every value passed pippy_tdesc_check (at most PIPPY_MAX_TENSOR_BYTES), so aligning one cannot
 * overflow; sums of many are checked where they are made. */
static uint64_t pippy_align(uint64_t x) { return (x + PIPPY_ALIGN - 1) & ~(uint64_t)(PIPPY_ALIGN - 1); }

static pippy_status pippy_memplan_overflow(const pippy_stage *sg, const char *what)
{
    return pippy_fail(PIPPY_ERR_SHAPE, "stage %d: its %s overflow 64 bits", sg->index, what);
}

typedef struct {
    uint64_t off, size;
    int32_t last; /* position of the last reader */
} pippy_block;

static int pippy_is_view_op(const pippy_node *n)
{
    return n->in && n->n_in >= 1 && n->in[0] >= 0 && pippy_op_is_view(n->domain, n->op, n->n_in, n->n_out);
}

static int pippy_block_cmp(const void *a, const void *b)
{
    const pippy_block *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

typedef struct {
    int32_t *root;      /* per value: the value whose bytes it uses (itself unless a view) */
    int32_t *def, *last;/* per root: position of its producer, of its last reader (any member) */
    char *late;         /* per root: read in a later phase than made */
    char *own;          /* per value: made by this stage, in its own memory (not io, not grad) */
} pippy_mp;

/* Views, roots and lifetimes over the stage's node order. */
static void pippy_memplan_lifetimes(const pippy_graph *g, pippy_stage *sg, pippy_mp *m)
{
    int32_t V = g->n_values;
    for (int32_t v = 0; v < V; v++) {
        m->root[v] = v;
        m->def[v] = m->last[v] = -1;
    }
    for (int32_t k = 0; k < sg->n_nodes; k++) {
        const pippy_node *n = &g->nodes[sg->nodes[k]];
        for (int32_t o = 0; o < n->n_out; o++)
            if (n->out[o] >= 0 && m->own[n->out[o]]) {
                m->def[n->out[o]] = k;
                m->last[n->out[o]] = k;
            }
        if (pippy_is_view_op(n) && m->own[n->out[0]] && m->own[n->in[0]] &&
            g->values[n->in[0]].t.dtype == g->values[n->out[0]].t.dtype) {
            m->root[n->out[0]] = m->root[n->in[0]];
            sg->view_of[n->out[0]] = m->root[n->in[0]];
            sg->is_view[k] = 1;
        }
    }
    for (int32_t k = 0; k < sg->n_nodes; k++) {
        const pippy_node *n = &g->nodes[sg->nodes[k]];
        int32_t ph = n->phase;
        for (int32_t q = 0; q < n->n_in; q++) {
            int32_t v = n->in[q];
            if (v < 0 || !m->own[v])
                continue;
            int32_t r = m->root[v];
            if (k > m->last[r])
                m->last[r] = k;
            if (m->def[r] >= 0 && ph > g->nodes[sg->nodes[m->def[r]]].phase)
                m->late[r] = 1;
        }
    }
}

/* First fit by lifetime, over the stage's node order (F's nodes, then B's, then W's: the order one
 * microbatch's phases run in). late = 1 places the stash (one slot's layout: the slot belongs to one
 * microbatch from its F to its W, so a value F keeps for B can give its bytes to a gradient B makes
 * for W once its last reader has run); late = 0 the arena. Returns nonzero if a sum would overflow. */
static int pippy_memplan_fit(const pippy_graph *g, pippy_stage *sg, const pippy_mp *m, pippy_block *blocks,
                             char late, int64_t *off, uint64_t *bytes)
{
    int32_t nb = 0;
    uint64_t top = 0;
    int over = 0;
    for (int32_t k = 0; k < sg->n_nodes; k++) {
        const pippy_node *n = &g->nodes[sg->nodes[k]];
        int32_t w = 0;
        for (int32_t b = 0; b < nb; b++)
            if (blocks[b].last >= k)
                blocks[w++] = blocks[b];
        nb = w;
        qsort(blocks, (size_t)nb, sizeof *blocks, pippy_block_cmp);
        for (int32_t o = 0; o < n->n_out; o++) {
            int32_t v = n->out[o];
            if (v < 0 || !m->own[v] || m->root[v] != v || m->late[v] != late)
                continue;
            uint64_t size = pippy_align(pippy_value_bytes(&g->values[v]));
            if (size == 0)
                size = PIPPY_ALIGN;
            uint64_t at = 0;
            int32_t pos = 0;
            for (; pos < nb; pos++) {
                if (blocks[pos].off >= at + size)
                    break;
                if (blocks[pos].off + blocks[pos].size > at)
                    at = blocks[pos].off + blocks[pos].size;
            }
            over |= at > UINT64_MAX / 2 || size > UINT64_MAX / 2; /* keeps every sum above exact */
            memmove(&blocks[pos + 1], &blocks[pos], (size_t)(nb - pos) * sizeof *blocks);
            blocks[pos] = (pippy_block){at, size, m->last[v] > k ? m->last[v] : k};
            nb++;
            off[v] = (int64_t)at;
            if (at + size > top)
                top = at + size;
        }
    }
    *bytes = top;
    return over;
}

static pippy_status pippy_memplan_stage(pippy_plan *p, pippy_stage *sg)
{
    const pippy_graph *g = p->g;
    int32_t V = g->n_values;
    pippy_mp m;
    m.root = malloc(((size_t)V + 1) * sizeof *m.root);
    m.def = malloc(((size_t)V + 1) * sizeof *m.def);
    m.last = malloc(((size_t)V + 1) * sizeof *m.last);
    m.late = calloc((size_t)V + 1, 1);
    m.own = calloc((size_t)V + 1, 1);
    pippy_block *blocks = malloc(((size_t)V + 1) * sizeof *blocks);
    if (!m.root || !m.def || !m.last || !m.late || !m.own || !blocks) {
        free(m.root), free(m.def), free(m.last), free(m.late), free(m.own), free(blocks);
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory planning memory");
    }
    for (int32_t k = 0; k < sg->n_nodes; k++) {
        const pippy_node *n = &g->nodes[sg->nodes[k]];
        for (int32_t o = 0; o < n->n_out; o++)
            if (n->out[o] >= 0 && g->values[n->out[o]].kind == PIPPY_VAL_INTERMEDIATE)
                m.own[n->out[o]] = 1;
    }
    sg->io_bytes = 0;
    int over = 0;
    for (int32_t q = 0; q < sg->n_out; q++) {
        m.own[sg->out[q].value] = 0;
        if (sg->out[q].passthrough < 0)
            over |= pippy_add_u64(sg->io_bytes, pippy_value_bytes(&g->values[sg->out[q].value]), &sg->io_bytes);
    }
    for (int32_t q = 0; q < sg->n_in; q++) {
        m.own[sg->in[q].value] = 0;
        over |= pippy_add_u64(sg->io_bytes, pippy_value_bytes(&g->values[sg->in[q].value]), &sg->io_bytes);
    }
    pippy_memplan_lifetimes(g, sg, &m);
    uint64_t stash, top;
    over |= pippy_memplan_fit(g, sg, &m, blocks, 1, sg->stash_off, &stash);
    over |= pippy_memplan_fit(g, sg, &m, blocks, 0, sg->arena_off, &top);
    /* views take their root's place */
    for (int32_t v = 0; v < V; v++)
        if (m.own[v] && m.root[v] != v) {
            sg->arena_off[v] = sg->arena_off[m.root[v]];
            sg->stash_off[v] = sg->stash_off[m.root[v]];
        }
    sg->arena_bytes = top;
    sg->stash_bytes = stash;
    free(m.root), free(m.def), free(m.last), free(m.late), free(m.own), free(blocks);
    return over ? pippy_memplan_overflow(sg, "buffers") : PIPPY_OK;
}

pippy_status pippy_memplan(pippy_plan *p)
{
    for (int32_t s = 0; s < p->n_stages; s++) {
        pippy_stage *sg = &p->stages[s];
        PIPPY_TRY(pippy_memplan_stage(p, sg));
        /* weights: trained parameters first (the optimizer's range), then the rest, aligned */
        uint64_t off = 0;
        for (int32_t q = 0; q < sg->n_params; q++) {
            sg->param_off[q] = off;
            if (pippy_add_u64(off, pippy_align(pippy_value_bytes(&p->g->values[sg->params[q]])), &off))
                return pippy_memplan_overflow(sg, "weights");
            if (q + 1 == sg->n_trainable)
                sg->trainable_bytes = off;
        }
        sg->weights_bytes = off;
    }
    return PIPPY_OK;
}
