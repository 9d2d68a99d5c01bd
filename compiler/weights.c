/* weights.c — writes out/stageK.weights (layout in common/weights_format.h):
 * every parameter and constant the stage reads, a tied parameter copied
 * into each stage that uses it. */
#include <stdlib.h>
#include <string.h>

#include "emit.h"
#include "weights_format.h"

pippy_status pippy_emit_weights(const pippy_plan *p, int32_t s, const pippy_emit_opts *o)
{
    const pippy_graph *g = p->g;
    const pippy_stage *sg = &p->stages[s];
    pippy_weights_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, PIPPY_WEIGHTS_MAGIC, 8);
    h.hash = p->hash;
    h.stage = (uint32_t)s;
    h.n_entries = (uint32_t)sg->n_params;
    uint64_t table = sizeof h + (uint64_t)sg->n_params * sizeof(pippy_weights_entry);
    h.data_offset = (table + 4095) & ~(uint64_t)4095;
    h.data_bytes = sg->weights_bytes;
    char fname[64], tmp[4096];
    snprintf(fname, sizeof fname, "stage%d.weights", s);
    FILE *f;
    PIPPY_TRY(pippy_file_begin(o->out_dir, fname, &f, tmp, sizeof tmp));
    fwrite(&h, sizeof h, 1, f);
    for (int32_t q = 0; q < sg->n_params; q++) {
        const pippy_value *v = &g->values[sg->params[q]];
        pippy_weights_entry e;
        memset(&e, 0, sizeof e);
        snprintf(e.name, sizeof e.name, "%s", v->name);
        e.dtype = v->t.dtype;
        e.rank = v->t.rank;
        for (int32_t d = 0; d < v->t.rank && d < 8; d++) /* dims past the rank are not defined in the IR */
            e.dims[d] = v->t.dims[d];
        e.offset = sg->param_off[q];
        e.bytes = pippy_value_bytes(v);
        fwrite(&e, sizeof e, 1, f);
    }
    static const char zeros[4096];
    uint64_t at = table;
    fwrite(zeros, 1, h.data_offset - at, f);
    at = 0;
    for (int32_t q = 0; q < sg->n_params; q++) {
        const pippy_value *v = &g->values[sg->params[q]];
        while (at < sg->param_off[q]) {
            uint64_t k = sg->param_off[q] - at > sizeof zeros ? sizeof zeros : sg->param_off[q] - at;
            fwrite(zeros, 1, k, f);
            at += k;
        }
        size_t bytes = pippy_value_bytes(v);
        if (bytes && !v->data) {
            fclose(f);
            return pippy_fail(PIPPY_ERR_INTERNAL, "parameter '%s' has no data", v->name);
        }
        fwrite(v->data, 1, bytes, f);
        at += bytes;
    }
    while (at < sg->weights_bytes) {
        uint64_t k = sg->weights_bytes - at > sizeof zeros ? sizeof zeros : sg->weights_bytes - at;
        fwrite(zeros, 1, k, f);
        at += k;
    }
    return pippy_file_commit(f, tmp);
}
