/* geom.h — the shape geometry of the dense families (Conv, the pools, the norms, Softmax),
 * shared by their forward files (conv.c, pool.c, norm.c, softmax.c) and their backward
 * files (conv_grad.c, pool_grad.c, norm_grad.c, softmax_grad.c, loss.c). Each function
 * checks the shapes it is given and records one message naming d->op; the callers check
 * input counts and dtypes (a backward op takes some of these shapes from its "shape"
 * attribute). */
#ifndef PIPPY_CPU_GEOM_H
#define PIPPY_CPU_GEOM_H

#include "dense.h"

/* ---- Conv: X [N,C,spatial...], W [M,C/group,k...], optional B [M] (b NULL: none) ---- */
typedef struct {
    pippy_window w;
    int64_t N, C, M, G;
    int has_b;
} pippy_conv_geom;
/* Uses the attributes group, kernel_shape (must agree with W), strides, dilations, pads, auto_pad. */
pippy_status pippy_conv_geom_of(const pippy_op_desc *d, const pippy_tdesc *x, const pippy_tdesc *w,
                                const pippy_tdesc *b, pippy_conv_geom *g);
/* W as oneDNN sees it: [G, M/G, C/G, k...] when grouped (the same bytes), else [M, C, k...];
 * returns the rank. */
int pippy_conv_wdims(const pippy_conv_geom *g, int64_t *wd);

/* ---- the pools: X [N,C,spatial...] ---- */
enum { PIPPY_POOL_MAX, PIPPY_POOL_AVG, PIPPY_POOL_GAVG };
typedef struct {
    int kind;
    int include_pad;
    int64_t N, C;
    pippy_window w;
} pippy_pool_geom;
/* Uses kernel_shape, strides, dilations, pads, auto_pad, ceil_mode, count_include_pad (AVG). */
pippy_status pippy_pool_geom_of(const pippy_op_desc *d, int kind, const pippy_tdesc *x, pippy_pool_geom *g);
/* oneDNN's end padding for g's windows (ceil_mode as a larger end padding); PIPPY_ERR_UNSUPPORTED
 * where oneDNN has no equivalent (count_include_pad with a ceil_mode window past the padding). */
pippy_status pippy_pool_dnnl_pads(const pippy_op_desc *d, const pippy_pool_geom *g, dnnl_dims_t strides,
                                  dnnl_dims_t kernel, dnnl_dims_t dil, dnnl_dims_t pl, dnnl_dims_t pr);

/* ---- LayerNormalization: X as [outer, inner], inner = prod(X.shape[axis:]) ---- */
typedef struct {
    int axis;
    int64_t outer, inner;
} pippy_ln_rows;
/* From the attribute axis (default -1) against x. */
pippy_status pippy_ln_rows_of(const pippy_op_desc *d, const pippy_tdesc *x, pippy_ln_rows *r);
/* Fails unless p (Scale or B, named what) broadcasts unidirectionally to X.shape[axis:]. */
pippy_status pippy_ln_want_param(const pippy_op_desc *d, const pippy_tdesc *x, int axis, const pippy_tdesc *p,
                                 const char *what);
/* idx[j] for j in a row of X.shape[axis:]: the element of p it reads (p broadcast). */
void pippy_ln_index(const pippy_tdesc *x, int axis, const pippy_tdesc *p, int64_t *idx, int64_t inner);
/* The shape of Mean / InvStdDev: X.shape[:axis] + [1] * (rank - axis). */
void pippy_ln_stat_tdesc(const pippy_tdesc *x, int axis, pippy_tdesc *o);

/* The norms' oneDNN inputs (norm.c). Input i (Scale or B of x, rows from axis, inner elements)
 * as an [inner] memory: bound to in[i] when it has inner elements; a constant that broadcasts is
 * expanded once here; one given at run time is expanded into a kernel buffer before each run
 * (the kernel's prepare hook). */
pippy_status pippy_norm_param(pippy_dnnl_kernel *k, const pippy_op_desc *d, const pippy_tdesc *x, int axis,
                              int64_t inner, int i, dnnl_memory_t *m);
/* Input i holds n values inv = 1/sqrt(var + eps) (a saved InvStdDev); m is a kernel buffer that
 * the prepare hook fills with 1/inv^2 = var + eps before each run, the variance a oneDNN
 * backward normalization created with epsilon 0 wants. */
pippy_status pippy_norm_var_from_inv(pippy_dnnl_kernel *k, int i, int64_t n, dnnl_memory_t *m);

/* ---- BatchNormalization: X as [N, C, S] ---- */
typedef struct {
    int64_t N, C, S;
} pippy_bn_dims;
/* x must be [N,C,...]; each of the inputs in list (indices, n of them, named names[]) must be [C]. */
pippy_status pippy_bn_dims_of(const pippy_op_desc *d, const pippy_tdesc *x, const int *list, int n,
                              const char *const *names, pippy_bn_dims *g);

/* ---- Softmax / LogSoftmax: X as [outer, n, inner] reduced along n ---- */
typedef struct {
    int64_t outer, n, inner;
} pippy_sm_dims;
/* The attribute axis at d->opset: < 13 coerces to 2-D at axis (default 1), >= 13 one axis
 * (default -1). */
pippy_status pippy_sm_dims_of(const pippy_op_desc *d, const pippy_tdesc *x, pippy_sm_dims *g);

#endif
