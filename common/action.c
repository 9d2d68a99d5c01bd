/* action.c — the action table (see action.h). */
#include "action.h"

#include <stdio.h>
#include <string.h>

static const pippy_act_info pippy_acts[PIPPY_ACT_KINDS] = {
    [PIPPY_ACT_F] = {"F", 0, 1, 0, 1, 0, 0},
    [PIPPY_ACT_B] = {"B", 1, 1, 0, 1, 0, 1},
    [PIPPY_ACT_W] = {"W", 2, 1, 0, 1, 0, 1},
    [PIPPY_ACT_SEND_F] = {"SEND_F", 0, 0, 1, 1, 1, 0},
    [PIPPY_ACT_RECV_F] = {"RECV_F", 0, 0, -1, 1, 1, 0},
    [PIPPY_ACT_SEND_B] = {"SEND_B", 1, 0, 1, 1, 1, 1},
    [PIPPY_ACT_RECV_B] = {"RECV_B", 1, 0, -1, 1, 1, 1},
    [PIPPY_ACT_ALLREDUCE] = {"ALLREDUCE", -1, 0, 0, 0, 1, 1},
    [PIPPY_ACT_STEP] = {"STEP", -1, 0, 0, 0, 0, 1},
};

const pippy_act_info *pippy_act_info_of(int32_t kind)
{
    return kind >= 0 && kind < PIPPY_ACT_KINDS ? &pippy_acts[kind] : NULL;
}

int32_t pippy_act_parse(const char *name)
{
    for (int32_t k = 0; name && k < PIPPY_ACT_KINDS; k++)
        if (!strcmp(pippy_acts[k].name, name))
            return k;
    return -1;
}

char *pippy_act_str(const pippy_action *a, char *buf, int n)
{
    const pippy_act_info *i = pippy_act_info_of(a->kind);
    if (!i)
        snprintf(buf, (size_t)n, "action %d", a->kind);
    else if (a->kind == PIPPY_ACT_STEP)
        snprintf(buf, (size_t)n, "STEP");
    else if (a->kind == PIPPY_ACT_ALLREDUCE)
        snprintf(buf, (size_t)n, "ALLREDUCE(stage %d, reduction %d)", a->stage, a->peer);
    else if (i->transfer)
        snprintf(buf, (size_t)n, "%s(stage %d, mb %d %s stage %d)", i->name, a->stage, a->mb,
                 i->transfer > 0 ? "->" : "<-", a->peer);
    else
        snprintf(buf, (size_t)n, "%s(stage %d, mb %d)", i->name, a->stage, a->mb);
    return buf;
}
