/* grad.h — gradient rules: how the autodiff (autodiff.c) differentiates each op.
 *
 * A rule sees one forward node and the gradients of its outputs, and appends ordinary
 * nodes to the graph that compute the gradients of the inputs it is asked for. It
 * uses forward ops where they suffice (MatMul's gradients are MatMuls, Add's is a
 * SumTo over the broadcast axes) and the backend's dedicated backward ops (pippy::*Grad)
 * where those pay. Every emitted node goes through the backend's shape rule at once,
 * so a rule that builds something malformed fails at compile time, naming the node.
 *
 * Rules live one file per op family, mirroring backend/cpu/: grad_matmul.c,
 * grad_eltwise.c, grad_binary.c, grad_reduce.c, grad_shape.c, grad_norm.c,
 * grad_conv.c (conv and pooling), grad_softmax.c (softmax and the losses).
 * Each file exports `const pippy_grad_rule pippy_grad_rules_<family>[]`, ended by {0}. */
#ifndef PIPPY_GRAD_H
#define PIPPY_GRAD_H

#include "ir.h"

typedef struct {
    pippy_graph *g;
    int32_t node;                  /* the forward node being differentiated */
    int32_t stage;                 /* its stage: every emitted node runs there */
    const char *want;              /* want[i]: input i needs a gradient */
    int32_t n_emitted;             /* for unique names */
} pippy_grad_ctx;

/* dy[o]: the gradient of output o (-1: none flows there, i.e. zero). The rule sets dx[i] for
 * every input with want[i] (it may leave -1 where the gradient is zero). */
typedef pippy_status (*pippy_grad_fn)(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx);

typedef struct {
    const char *op;
    const char *domain;  /* "" for ONNX */
    uint32_t nondiff;    /* bit i: input i gets no gradient even when it is float (statistics,
                            ratios, bounds) */
    pippy_grad_fn grad;
} pippy_grad_rule;

const pippy_grad_rule *pippy_grad_rule_find(const char *domain, const char *op);

/* ---- what rules build with. Each returns the new value's index, or -1 with the error
 * recorded (the rule returns PIPPY_ERR_* then: use PIPPY_GRAD_TRY). ---- */

/* Node op(in...) with attributes and n_out outputs (outputs' values into out, if not NULL);
 * returns the first output. Shapes come from the backend's shape rule. */
int32_t pippy_grad_emit(pippy_grad_ctx *c, const char *domain, const char *op, int32_t n_in, const int32_t *in,
                        const pippy_attr *attrs, int32_t n_attrs, int32_t n_out, int32_t *out);
/* Shorthands for ONNX ops with one output. */
int32_t pippy_grad_op1(pippy_grad_ctx *c, const char *op, int32_t a);
int32_t pippy_grad_op2(pippy_grad_ctx *c, const char *op, int32_t a, int32_t b);
/* A float scalar constant (rank 0), and a 1-D int64 constant. */
int32_t pippy_grad_scalar(pippy_grad_ctx *c, float x);
int32_t pippy_grad_ints(pippy_grad_ctx *c, int32_t n, const int64_t *v);
/* v reduced to shape t by summing over broadcast axes (v itself when the shapes match). */
int32_t pippy_grad_sum_to(pippy_grad_ctx *c, int32_t v, const pippy_tdesc *t);
/* v viewed with shape t (same element count; v itself when equal). */
int32_t pippy_grad_reshape(pippy_grad_ctx *c, int32_t v, const pippy_tdesc *t);
/* v broadcast to shape t (Expand; v itself when equal). */
int32_t pippy_grad_expand(pippy_grad_ctx *c, int32_t v, const pippy_tdesc *t);

/* The forward node, its input / output value indices, and their types. */
pippy_node *pippy_grad_fwd(pippy_grad_ctx *c);
int32_t pippy_grad_in(pippy_grad_ctx *c, int32_t i);
int32_t pippy_grad_out(pippy_grad_ctx *c, int32_t o);
const pippy_tdesc *pippy_grad_type(pippy_grad_ctx *c, int32_t v);

/* Adds output `name` to the forward node (e.g. LayerNormalization's InvStdDev) when it has fewer
 * than o+1 outputs, so the backward can read it; returns its value. */
int32_t pippy_grad_fwd_output(pippy_grad_ctx *c, int32_t o, const pippy_tdesc *t);

#define PIPPY_GRAD_TRY(expr)                         \
    do {                                             \
        if ((expr) < 0)                              \
            return pippy_grad_error();               \
    } while (0)
/* The status of the last failed emission. */
pippy_status pippy_grad_error(void);

/* Attribute look-ups on the forward node. */
int64_t pippy_grad_attr_int(pippy_grad_ctx *c, const char *name, int64_t dflt);
float pippy_grad_attr_float(pippy_grad_ctx *c, const char *name, float dflt);
const pippy_attr *pippy_grad_attr(pippy_grad_ctx *c, const char *name);

#endif
