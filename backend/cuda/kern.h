/* kern.h — the CUDA C kernels of the cuda backend (the .cu files of backend/cuda/) as the host
 * code sees them: one parameter struct per kernel family, plain C, passed by value to the device,
 * and one launcher per family.
 *
 * Every launcher takes a pippy_cu_exec: the stream to launch on, or host = 1 to run the same
 * per-element code on the CPU (host emulation, for the unit tests on machines without a GPU; the
 * pointers are then host memory). The row kernels (softmax, layer norm) use warp shuffles and have
 * no host emulation.
 *
 * dtypes are ONNX numbers (tensor.h). Index arithmetic is int64 throughout. */
#ifndef PIPPY_CUDA_KERN_H
#define PIPPY_CUDA_KERN_H

#include <stdint.h>

#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PIPPY_CU_MAX_DIMS 16 /* a walk's rank (Tile walks each axis as two) */
#define PIPPY_CU_MAX_BDIMS 8 /* the broadcasting families' rank */

typedef struct {
    cudaStream_t stream;
    int host; /* 1: run on the CPU (host emulation) */
} pippy_cu_exec;

/* ---- move.cu ---- */

/* out[obase + sum(idx*ostr)] = in[ibase + sum(idx*istr)] for every idx over dims (elements). */
typedef struct {
    int32_t rank, esize;
    int64_t n;
    int64_t dims[PIPPY_CU_MAX_DIMS];
    int64_t istr[PIPPY_CU_MAX_DIMS], ostr[PIPPY_CU_MAX_DIMS];
    int64_t ibase, obase;
} pippy_cu_copy;
void pippy_cu_copy_run(const pippy_cu_copy *p, const void *in, void *out, const pippy_cu_exec *x);

/* out[o, j, r] = data[o, idx[j], r] (esize-byte elements); a negative index counts from the end,
 * one still out of range gives zeros. */
typedef struct {
    int32_t esize, idx64;
    int64_t outer, axis_dim, n_idx, inner, n;
} pippy_cu_gather;
void pippy_cu_gather_run(const pippy_cu_gather *p, const void *data, const void *idx, void *out,
                         const pippy_cu_exec *x);

/* Trilu over [batch, rows, cols]: keeps j - i >= k (upper) or j - i <= k; k from *kp (int64, device)
 * or 0 when kp is NULL. */
typedef struct {
    int32_t esize, upper;
    int64_t rows, cols, n;
} pippy_cu_trilu;
void pippy_cu_trilu_run(const pippy_cu_trilu *p, const void *in, const int64_t *kp, void *out,
                        const pippy_cu_exec *x);

/* out[i] = value (esize bytes, esize <= 8) for i < n. */
typedef struct {
    int32_t esize;
    int64_t n;
    uint8_t value[8];
} pippy_cu_fill;
void pippy_cu_fill_run(const pippy_cu_fill *p, void *out, const pippy_cu_exec *x);

/* ---- ew.cu ---- */

enum {
    PIPPY_CU_RELU, PIPPY_CU_LEAKY_RELU, PIPPY_CU_TANH, PIPPY_CU_SIGMOID, PIPPY_CU_ERF, PIPPY_CU_SQRT,
    PIPPY_CU_RECIPROCAL, PIPPY_CU_GELU, PIPPY_CU_GELU_TANH, PIPPY_CU_NEG, PIPPY_CU_EXP, PIPPY_CU_LOG,
    PIPPY_CU_ABS, PIPPY_CU_SOFTPLUS, PIPPY_CU_CLIP, PIPPY_CU_NOT, PIPPY_CU_SCALE,
};
/* y = f(x) on n elements of dtype. CLIP: bounds from lo / hi (device scalars of dtype, either may
 * be NULL) when clip_inputs, else alpha / beta (float). SCALE: y = x * alpha (float), x * dscale
 * (double). */
typedef struct {
    int32_t op, dtype, clip_inputs;
    int64_t n;
    float alpha, beta;
    double dscale;
} pippy_cu_unary;
void pippy_cu_unary_run(const pippy_cu_unary *p, const void *in, void *out, const void *lo, const void *hi,
                        const pippy_cu_exec *x);

enum {
    PIPPY_CU_ADD, PIPPY_CU_SUB, PIPPY_CU_MUL, PIPPY_CU_DIV, PIPPY_CU_POW, PIPPY_CU_MAX, PIPPY_CU_MIN,
    PIPPY_CU_EQ, PIPPY_CU_LT, PIPPY_CU_GT, PIPPY_CU_LE, PIPPY_CU_GE, PIPPY_CU_AND, PIPPY_CU_OR, PIPPY_CU_XOR,
};
/* out = a op b with broadcasting: output index idx over dims reads a[sum(idx*sa)], b[sum(idx*sb)].
 * ta / tb: the operands' dtypes (differ only for Pow); comparisons write bool. */
typedef struct {
    int32_t op, ta, tb, rank;
    int64_t n;
    int64_t dims[PIPPY_CU_MAX_BDIMS], sa[PIPPY_CU_MAX_BDIMS], sb[PIPPY_CU_MAX_BDIMS];
} pippy_cu_binary;
void pippy_cu_binary_run(const pippy_cu_binary *p, const void *a, const void *b, void *out, const pippy_cu_exec *x);

/* out = c ? a : b, broadcasting (strides sc, sa, sb), esize-byte elements. */
typedef struct {
    int32_t esize, rank;
    int64_t n;
    int64_t dims[PIPPY_CU_MAX_BDIMS], sc[PIPPY_CU_MAX_BDIMS], sa[PIPPY_CU_MAX_BDIMS], sb[PIPPY_CU_MAX_BDIMS];
} pippy_cu_where;
void pippy_cu_where_run(const pippy_cu_where *p, const void *c, const void *a, const void *b, void *out,
                        const pippy_cu_exec *x);

/* Cast of n elements (float, double, float16, int8, uint8, int32, int64, bool) with the CPU's
 * rules: floats to integers truncate, to bool x != 0, float16 rounds to nearest even. */
typedef struct {
    int32_t from, to;
    int64_t n;
} pippy_cu_cast;
void pippy_cu_cast_run(const pippy_cu_cast *p, const void *in, void *out, const pippy_cu_exec *x);

/* In place on y [N, C, inner] (float): y += bias[c] (when bias), then max(y, 0) (when relu). */
typedef struct {
    int32_t relu;
    int64_t C, inner, n;
} pippy_cu_bias_act;
void pippy_cu_bias_act_run(const pippy_cu_bias_act *p, const float *bias, float *y, const pippy_cu_exec *x);

/* BatchNormalization (inference) on [N, C, inner]: y = (x - mean) / sqrt(var + eps) * scale + b. */
typedef struct {
    float eps;
    int64_t C, inner, n;
} pippy_cu_bn;
void pippy_cu_bn_run(const pippy_cu_bn *p, const float *xin, const float *scale, const float *b, const float *mean,
                     const float *var, float *y, const pippy_cu_exec *x);

/* ---- reduce.cu ---- */

enum { PIPPY_CU_RSUM, PIPPY_CU_RMEAN, PIPPY_CU_RMAX, PIPPY_CU_RMIN, PIPPY_CU_RPROD };
/* Output element o (row-major over kdims; input offset sum(idx*kstr)) folds the count input
 * elements of the reduced walk (rdims, rstr). */
typedef struct {
    int32_t op, dtype, krank, rrank;
    int64_t n_out, count;
    int64_t kdims[PIPPY_CU_MAX_BDIMS], kstr[PIPPY_CU_MAX_BDIMS];
    int64_t rdims[PIPPY_CU_MAX_BDIMS], rstr[PIPPY_CU_MAX_BDIMS];
} pippy_cu_reduce;
void pippy_cu_reduce_run(const pippy_cu_reduce *p, const void *in, void *out, const pippy_cu_exec *x);

/* MaxPool / AveragePool / GlobalAveragePool over [NC, spatial as 3-D] windows: one output element
 * per thread, with the CPU reference's rules (pads never win a max; the average counts the
 * positions inside the input, or inside the padded input with include_pad). */
typedef struct {
    int32_t max, include_pad;
    int64_t nc, n;
    int64_t in[3], k[3], s[3], dl[3], pl[3], pr[3], out[3];
} pippy_cu_pool;
void pippy_cu_pool_run(const pippy_cu_pool *p, const float *in, float *out, const pippy_cu_exec *x);

/* ---- rows.cu (GPU only) ---- */

/* Softmax / LogSoftmax of x seen as [outer, len, inner] along len: one warp per (outer, inner). */
typedef struct {
    int32_t log;
    int64_t outer, len, inner;
} pippy_cu_softmax;
void pippy_cu_softmax_run(const pippy_cu_softmax *p, const float *in, float *out, cudaStream_t s);

/* LayerNormalization of rows [rows, len]: y = (x - mean) * inv * scale[sidx] + b[bidx], inv =
 * 1/sqrt(var + eps), statistics in float over the row (two passes); sidx / bidx (int64, device)
 * map a row position to the parameter element, NULL when the parameter has len elements. mean and
 * inv (rows values each) may be NULL. One warp per row. */
typedef struct {
    float eps;
    int64_t rows, len;
} pippy_cu_layernorm;
void pippy_cu_layernorm_run(const pippy_cu_layernorm *p, const float *in, const float *scale, const int64_t *sidx,
                            const float *b, const int64_t *bidx, float *out, float *mean, float *inv, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
