/* conv.c — placeholder until the op family lands. */
#include "backend.h"
const pippy_op_info pippy_cpu_ops_conv[] = {{0}};
