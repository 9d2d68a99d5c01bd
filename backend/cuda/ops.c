/* ops.c — the cuda backend's kernel table: each op it runs, with its family's check and create.
 * Ops missing here (the training ops: pippy::*Grad, SoftmaxCrossEntropyLoss, ...) have no cuda
 * kernel; the compiler refuses a stage that needs one, naming the node. */
#include <string.h>

#include "cubackend.h"

#define OP(name, fam) {name, "", pippy_cuda_check_##fam, pippy_cuda_create_##fam}

static const pippy_backend_op pippy_cuda_ops[] = {
    /* dense: cuBLASLt, cuDNN, warp-row kernels */
    OP("MatMul", matmul), OP("Gemm", gemm), OP("Conv", conv),
    OP("Softmax", softmax), OP("LogSoftmax", softmax), OP("LayerNormalization", layernorm),
    OP("BatchNormalization", bn),
    OP("MaxPool", pool), OP("AveragePool", pool), OP("GlobalAveragePool", pool),
    /* element-wise */
    OP("Relu", unary), OP("LeakyRelu", unary), OP("Tanh", unary), OP("Sigmoid", unary), OP("Erf", unary),
    OP("Sqrt", unary), OP("Reciprocal", unary), OP("Gelu", unary), OP("Neg", unary), OP("Exp", unary),
    OP("Log", unary), OP("Abs", unary), OP("Softplus", unary), OP("Clip", unary), OP("Not", unary),
    OP("Add", binary), OP("Sub", binary), OP("Mul", binary), OP("Div", binary), OP("Pow", binary),
    OP("Max", binary), OP("Min", binary), OP("Sum", binary), OP("Mean", binary), OP("Equal", binary),
    OP("Less", binary), OP("Greater", binary), OP("LessOrEqual", binary), OP("GreaterOrEqual", binary),
    OP("And", binary), OP("Or", binary), OP("Xor", binary), OP("Where", where),
    OP("Cast", cast), OP("CastLike", cast),
    /* reductions */
    OP("ReduceSum", reduce), OP("ReduceMean", reduce), OP("ReduceMax", reduce), OP("ReduceMin", reduce),
    OP("ReduceProd", reduce),
    /* data movement */
    OP("Reshape", copy), OP("Flatten", copy), OP("Squeeze", copy), OP("Unsqueeze", copy), OP("Identity", copy),
    OP("Dropout", copy), {"PipeSplit", "pippy", pippy_cuda_check_copy, pippy_cuda_create_copy},
    OP("Transpose", walk), OP("Expand", walk), OP("Tile", walk), OP("Slice", walk),
    OP("Concat", concat), OP("Split", split), OP("Gather", gather), OP("Trilu", trilu),
    OP("Shape", constant), OP("Size", constant), OP("Constant", constant), OP("ConstantOfShape", constant),
    OP("Range", constant),
};

static int pippy_cuda_domain_is_onnx(const char *d) { return !d || !d[0] || !strcmp(d, "ai.onnx"); }

const pippy_backend_op *pippy_cuda_op_find(const char *domain, const char *op)
{
    for (size_t i = 0; i < sizeof pippy_cuda_ops / sizeof pippy_cuda_ops[0]; i++) {
        const pippy_backend_op *o = &pippy_cuda_ops[i];
        int same = pippy_cuda_domain_is_onnx(o->domain) ? pippy_cuda_domain_is_onnx(domain)
                                                        : domain && !strcmp(domain, o->domain);
        if (same && !strcmp(o->op, op))
            return o;
    }
    return NULL;
}
