/* memplan.c — the static memory plan of each stage.
 *
 * Every value a stage computes and keeps to itself gets an offset in one
 * arena: values are placed in the order they are made, first-fit into the
 * gaps left by values whose last reader has already run (liveness over the
 * stage's node order). Stage inputs and outputs live in runtime-owned slots
 * (one per microbatch in flight); parameters live in the weights file.
 *
 * Ops that only relabel their input (Reshape, Flatten, Squeeze, Unsqueeze, Identity, inference
 * Dropout) become views when input and output both live in the arena: the output takes the
 * input's bytes, the block lives until the last reader of either, and no kernel runs. */
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
    static const char *const ops[] = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"};
    if (n->domain[0] || n->n_out != 1 || n->n_in < 1 || n->in[0] < 0)
        return 0;
    if (strcmp(n->op, "Dropout") == 0 && n->n_in >= 3)
        return 0; /* a training_mode input: it may really drop */
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strcmp(n->op, ops[i]) == 0)
            return 1;
    return 0;
}

static int pippy_block_cmp(const void *a, const void *b)
{
    const pippy_block *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

static pippy_status pippy_memplan_stage(pippy_plan *p, pippy_stage *sg)
{
    const pippy_graph *g = p->g;
    int32_t V = g->n_values;
    int32_t *last = malloc(((size_t)V + 1) * sizeof *last);
    char *is_io = calloc((size_t)V + 1, 1);
    pippy_block *blocks = malloc(((size_t)V + 1) * sizeof *blocks);
    if (!last || !is_io || !blocks) {
        free(last), free(is_io), free(blocks);
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory planning memory");
    }
    for (int32_t v = 0; v < V; v++)
        last[v] = -1;
    for (int32_t k = 0; k < sg->n_nodes; k++) {
        const pippy_node *n = &g->nodes[sg->nodes[k]];
        for (int32_t q = 0; q < n->n_in; q++)
            if (n->in[q] >= 0)
                last[n->in[q]] = k;
    }
    for (int32_t q = 0; q < sg->n_out; q++)
        is_io[sg->out[q].value] = 1;
    for (int32_t q = 0; q < sg->n_in; q++)
        is_io[sg->in[q].value] = 1;
    int32_t nb = 0;
    uint64_t top = 0;
    sg->io_bytes = 0;
    int over = 0;
    for (int32_t q = 0; q < sg->n_out; q++)
        if (sg->out[q].passthrough < 0)
            over |= pippy_add_u64(sg->io_bytes, pippy_value_bytes(&g->values[sg->out[q].value]), &sg->io_bytes);
    for (int32_t q = 0; q < sg->n_in; q++)
        over |= pippy_add_u64(sg->io_bytes, pippy_value_bytes(&g->values[sg->in[q].value]), &sg->io_bytes);
    for (int32_t k = 0; k < sg->n_nodes; k++) {
        const pippy_node *n = &g->nodes[sg->nodes[k]];
        /* release blocks whose last reader ran before this node */
        int32_t w = 0;
        for (int32_t b = 0; b < nb; b++)
            if (blocks[b].last >= k)
                blocks[w++] = blocks[b];
        nb = w;
        qsort(blocks, (size_t)nb, sizeof *blocks, pippy_block_cmp);
        if (pippy_is_view_op(n) && !is_io[n->out[0]] && sg->arena_off[n->in[0]] >= 0 &&
            g->values[n->in[0]].t.dtype == g->values[n->out[0]].t.dtype) {
            int32_t in = n->in[0], out = n->out[0];
            sg->arena_off[out] = sg->arena_off[in];
            sg->view_of[out] = sg->view_of[in] >= 0 ? sg->view_of[in] : in;
            sg->is_view[k] = 1;
            for (int32_t b = 0; b < nb; b++)
                if (blocks[b].off == (uint64_t)sg->arena_off[in] && last[out] > blocks[b].last)
                    blocks[b].last = last[out];
            continue;
        }
        for (int32_t o = 0; o < n->n_out; o++) {
            int32_t v = n->out[o];
            if (is_io[v])
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
            /* keep blocks sorted by offset */
            memmove(&blocks[pos + 1], &blocks[pos], (size_t)(nb - pos) * sizeof *blocks);
            blocks[pos] = (pippy_block){at, size, last[v] > k ? last[v] : k};
            nb++;
            sg->arena_off[v] = (int64_t)at;
            if (at + size > top)
                top = at + size;
        }
    }
    sg->arena_bytes = top;
    free(last), free(is_io), free(blocks);
    return over ? pippy_memplan_overflow(sg, "buffers") : PIPPY_OK;
}

pippy_status pippy_memplan(pippy_plan *p)
{
    for (int32_t s = 0; s < p->n_stages; s++) {
        pippy_stage *sg = &p->stages[s];
        PIPPY_TRY(pippy_memplan_stage(p, sg));
        /* weights: every parameter and constant, aligned */
        uint64_t off = 0;
        for (int32_t q = 0; q < sg->n_params; q++) {
            sg->param_off[q] = off;
            if (pippy_add_u64(off, pippy_align(pippy_value_bytes(&p->g->values[sg->params[q]])), &off))
                return pippy_memplan_overflow(sg, "weights");
        }
        sg->weights_bytes = off;
    }
    return PIPPY_OK;
}
