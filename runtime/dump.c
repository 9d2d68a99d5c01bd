/* dump.c — PIPPY_DUMP=NAME[,NAME...]: a stage program writes those values of its stages to .npy
 * files as soon as the kernel that makes them has run, for comparing a stage with onnxruntime
 * (e.g. onnx.utils.extract_model up to that value). Files go to PIPPY_DUMP_DIR (default: the
 * current folder) as <name>.stage<S>.mb<M>.npy (and .step<K> in training), the name with every
 * character other than a letter, digit, '.', '-' or '_' replaced by '_'. A graph input or a value
 * received from another stage is written when the microbatch's F starts. Dumping is for debugging:
 * unlike the step loop, it allocates and writes files while the stage runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"
#include "tensor_io.h"

int pippy_stage_dumping;

static struct {
    const char *names;       /* PIPPY_DUMP */
    const char *dir;
    pippy_rt *rt;
    pippy_rt_stage *sx;      /* the stage whose function runs now */
    int mb;
} pippy_dump;

static int pippy_dump_wanted(const char *name)
{
    size_t n = strlen(name);
    for (const char *p = pippy_dump.names; p && *p;) {
        const char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        if (l == n && !strncmp(p, name, n))
            return 1;
        p = c ? c + 1 : NULL;
    }
    return 0;
}

pippy_status pippy_dump_setup(pippy_rt *rt)
{
    const char *names = getenv("PIPPY_DUMP");
    if (!names || !*names)
        return PIPPY_OK;
    pippy_dump.names = names;
    pippy_dump.dir = getenv("PIPPY_DUMP_DIR") && *getenv("PIPPY_DUMP_DIR") ? getenv("PIPPY_DUMP_DIR") : ".";
    pippy_dump.rt = rt;
    int found = 0;
    for (int i = 0; i < rt->n_st; i++)
        for (int v = 0; v < rt->st[i].p->n_values; v++)
            found |= pippy_dump_wanted(rt->st[i].p->values[v].name);
    pippy_stage_dumping = found;
    if (!found && !rt->a.quiet)
        printf("stage %d (rank %d): PIPPY_DUMP names no value of this stage\n", rt->st[0].stage, rt->rank);
    return PIPPY_OK;
}

static void pippy_dump_value(const pippy_stage_value_info *v, const void *data)
{
    char name[256], path[4096 + 512];
    size_t k = 0;
    for (const char *c = v->name; *c && k + 1 < sizeof name; c++)
        name[k++] = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
                            *c == '-' || *c == '_'
                        ? *c
                        : '_';
    name[k] = 0;
    pippy_rt *rt = pippy_dump.rt;
    if (rt->training)
        snprintf(path, sizeof path, "%s/%s.stage%d.mb%d.step%lld.npy", pippy_dump.dir, name, pippy_dump.sx->stage,
                 pippy_dump.mb, (long long)rt->step);
    else
        snprintf(path, sizeof path, "%s/%s.stage%d.mb%d.npy", pippy_dump.dir, name, pippy_dump.sx->stage,
                 pippy_dump.mb);
    if (pippy_tensor_write(path, &v->t, data, v->name) != PIPPY_OK)
        fprintf(stderr, "PIPPY_DUMP: %s\n", pippy_last_error());
}

static const uint8_t *pippy_dump_where(const pippy_stage_value_info *v, uint8_t *A, uint8_t *S, uint8_t *W, uint8_t *G,
                                       const void *const *in, void *const *out)
{
    switch (v->place) {
    case PIPPY_PLACE_IN: return in[v->at];
    case PIPPY_PLACE_OUT: return out[v->at];
    case PIPPY_PLACE_WEIGHTS: return W + v->at;
    case PIPPY_PLACE_GRADS: return G ? G + v->at : NULL;
    case PIPPY_PLACE_STASH: return S ? S + v->at : NULL;
    default: return A + v->at;
    }
}

void pippy_dump_begin(pippy_rt_stage *sx, int mb, int phase)
{
    if (!pippy_stage_dumping)
        return;
    pippy_dump.sx = sx;
    pippy_dump.mb = mb;
    if (phase != PIPPY_PHASE_F)
        return;
    for (int i = 0; i < sx->p->n_values; i++) {
        const pippy_stage_value_info *v = &sx->p->values[i];
        if (v->node < 0 && v->place == PIPPY_PLACE_IN && pippy_dump_wanted(v->name))
            pippy_dump_value(v, sx->in_ptr[v->at]);
    }
}

void pippy_stage_after(int k, uint8_t *A, uint8_t *S, uint8_t *W, uint8_t *G, const void *const *in, void *const *out)
{
    pippy_rt_stage *sx = pippy_dump.sx;
    for (int i = 0; sx && i < sx->p->n_values; i++) {
        const pippy_stage_value_info *v = &sx->p->values[i];
        if (v->node != k || !pippy_dump_wanted(v->name))
            continue;
        const uint8_t *p = pippy_dump_where(v, A, S, W, G, in, out);
        if (p)
            pippy_dump_value(v, p);
    }
}
