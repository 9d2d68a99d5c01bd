/* memstat.c — what a rank's memory is: the bytes of the buffers it holds for its stages, as
 * allocated (the weights mapping, the arena, the stash slots, one buffer per input and output
 * with its slots, in training the gradients and the optimizer state), against the prediction in
 * schedule.json (prediction.peak_memory_bytes, summed over the rank's stages), and the process's
 * peak resident set (VmHWM of /proc/self/status), which also holds what the prediction leaves out:
 * the program, its libraries, UCX, oneDNN's and the kernels' own buffers, training datasets.
 * An input mapped from a producer's shared memory counts as a buffer of this rank (it is the
 * prediction's input slot; its pages are shared with the producer). Stages on a device hold
 * their buffers there: their host buffers are counted as on the CPU. */
#include <stdio.h>
#include <string.h>

#include "rt.h"

static double pippy_mem_slots(const pippy_rt_stage *sx)
{
    double b = 0;
    for (int q = 0; q < sx->n_in; q++)
        b += (double)sx->in[q].bytes * sx->in[q].slots;
    for (int q = 0; q < sx->n_out; q++)
        if (sx->out[q].passthrough < 0) /* else the input's buffer */
            b += (double)sx->out[q].bytes * sx->out[q].slots;
    return b;
}

/* prediction.peak_memory_bytes[stage], or -1. */
static double pippy_mem_predicted(const pippy_rt *rt, int stage)
{
    const cJSON *pred = cJSON_GetObjectItemCaseSensitive(rt->sched, "prediction");
    const cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pred, "peak_memory_bytes"), stage);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 ? v->valuedouble : -1;
}

/* VmHWM in bytes, or -1. */
static double pippy_mem_hwm(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    double kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf kB", &kb) == 1)
            break;
    fclose(f);
    return kb >= 0 ? kb * 1024 : -1;
}

void pippy_rt_memory(const pippy_rt *rt, pippy_rt_mem *m)
{
    memset(m, 0, sizeof *m);
    for (int i = 0; i < rt->n_st; i++) {
        const pippy_rt_stage *sx = &rt->st[i];
        const pippy_stage_program *p = sx->p;
        m->weights += (double)sx->wlen;
        m->arena += sx->A ? (double)p->arena_bytes : 0;
        m->stash += sx->S ? (double)p->stash_bytes * sx->stash_n : 0;
        m->slots += pippy_mem_slots(sx);
        m->grads += sx->G ? (double)p->trainable_bytes : 0;
        m->optim += sx->opt ? (double)sx->opt_bytes : 0;
        double pr = pippy_mem_predicted(rt, sx->stage);
        m->predicted = m->predicted < 0 || pr < 0 ? -1 : m->predicted + pr;
    }
    m->total = m->weights + m->arena + m->stash + m->slots + m->grads + m->optim;
    m->hwm_bytes = pippy_mem_hwm();
}

void pippy_rt_memory_report(const pippy_rt *rt)
{
    pippy_rt_mem m;
    pippy_rt_memory(rt, &m);
    printf("stage %d (rank %d): memory: buffers %.0f bytes (weights %.0f, arena %.0f, stash %.0f, slots %.0f",
           rt->st[0].stage, rt->rank, m.total, m.weights, m.arena, m.stash, m.slots);
    if (rt->training)
        printf(", gradients %.0f, optimizer %.0f", m.grads, m.optim);
    printf(")");
    if (m.predicted >= 0)
        printf(", predicted %.0f bytes (%+.0f)", m.predicted, m.total - m.predicted);
    if (m.hwm_bytes >= 0)
        printf("; peak resident %.0f bytes (VmHWM)", m.hwm_bytes);
    printf("\n");
}
