/* conv.c — Conv on cuDNN (float32, 1 to 3 spatial dims, groups, dilations, strides).
 *
 * The geometry is the CPU's (pippy_conv_geom_of: kernel_shape, pads, auto_pad, ...). cuDNN takes
 * tensors of 4 or 5 dims and one padding per spatial dim: a 1-D convolution runs as 2-D with a
 * height of 1, and padding that differs before and after (auto_pad SAME_*, explicit pads) is
 * made explicit: X is copied into the inside of a zero-bordered kernel buffer and cuDNN pads
 * nothing. The bias and a fused ReLU (pippy.activation) follow in one element-wise pass.
 * The algorithm is chosen at create by cudnnFindConvolutionForwardAlgorithm (measured), among
 * those needing at most 256 MiB of workspace; without --tf32 the convolution descriptor asks for
 * FMA math (no TF32 tensor cores), and results reporting tensor-core math are skipped. */
#include <string.h>

#include "cpu/geom.h"
#include "cpu/walk.h"
#include "cubackend.h"

#define PIPPY_CU_CONV_WS_MAX ((size_t)256 << 20)

typedef struct {
    pippy_cuda_kernel k;
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    cudnnConvolutionFwdAlgo_t algo;
    int pad_copy;        /* X goes into xpad first */
    pippy_cu_copy into;  /* X -> the inside of xpad */
    float *xpad;
    int post;            /* bias and/or ReLU after */
    int has_b;
    pippy_cu_bias_act act;
} pippy_cu_conv_kernel;

static void pippy_cu_conv_release(pippy_kernel *kb)
{
    pippy_cu_conv_kernel *k = (pippy_cu_conv_kernel *)kb;
    if (k->cd)
        cudnnDestroyConvolutionDescriptor(k->cd);
    if (k->wd)
        cudnnDestroyFilterDescriptor(k->wd);
    if (k->yd)
        cudnnDestroyTensorDescriptor(k->yd);
    if (k->xd)
        cudnnDestroyTensorDescriptor(k->xd);
}

static void pippy_cu_conv_k(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_cu_conv_kernel *k = (pippy_cu_conv_kernel *)kb;
    pippy_cuda_ctx *c = k->k.ctx;
    const float *X = in[0];
    if (k->pad_copy) {
        pippy_cu_copy_run(&k->into, X, k->xpad, &c->exec);
        X = k->xpad;
    }
    const float one = 1.0f, zero = 0.0f;
    cudnnStatus_t s = cudnnConvolutionForward(c->dnn, &one, k->xd, X, k->wd, in[1], k->cd, k->algo, c->ws, c->ws_bytes,
                                              &zero, k->yd, out[0]);
    if (s != CUDNN_STATUS_SUCCESS) {
        pippy_cuda_run_error(c, "cudnnConvolutionForward", cudnnGetErrorString(s));
        return;
    }
    if (k->post)
        pippy_cu_bias_act_run(&k->act, k->has_b ? in[2] : NULL, out[0], &c->exec);
}

static const int pippy_cu_conv_inputs[3] = {0, 1, 2};

static pippy_status pippy_cu_conv_geom(const pippy_op_desc *d, pippy_conv_geom *g)
{
    PIPPY_TRY(pippy_cuda_want_float(d, pippy_cu_conv_inputs, 3));
    int has_b = d->n_in > 2 && d->in[2].dtype != PIPPY_DT_UNDEFINED;
    return pippy_conv_geom_of(d, &d->in[0], &d->in[1], has_b ? &d->in[2] : NULL, g);
}

pippy_status pippy_cuda_check_conv(const pippy_op_desc *d)
{
    pippy_conv_geom g;
    return pippy_cu_conv_geom(d, &g);
}

/* The padded input's copy: X [N, C, in...] into xp [N, C, in + pl + pr ...] at offset pl. */
static void pippy_cu_conv_pad_plan(const pippy_conv_geom *g, pippy_cu_copy *p)
{
    int ns = g->w.ns, r = 2 + ns;
    int64_t dims[5] = {g->N, g->C}, pdims[5] = {g->N, g->C}, istr[5], ostr[5], base = 0;
    for (int i = 0; i < ns; i++) {
        dims[2 + i] = g->w.in[i];
        pdims[2 + i] = g->w.in[i] + g->w.pl[i] + g->w.pr[i];
    }
    int64_t si = 1, so = 1;
    for (int i = r - 1; i >= 0; i--) {
        istr[i] = si;
        ostr[i] = so;
        if (i >= 2)
            base += g->w.pl[i - 2] * so;
        si *= dims[i];
        so *= pdims[i];
    }
    memset(p, 0, sizeof *p);
    p->n = 1;
    for (int i = 0; i < r; i++) {
        p->dims[i] = dims[i];
        p->istr[i] = istr[i];
        p->ostr[i] = ostr[i];
        p->n *= dims[i];
    }
    int64_t *lists[2] = {p->istr, p->ostr};
    p->rank = pippy_walk_collapse(r, p->dims, 2, lists, 1);
    p->obase = base;
    p->esize = 4;
}

/* cuDNN's descriptors: nd = 4 or 5 dims (a 1-D convolution as 2-D with height 1). */
static pippy_status pippy_cu_conv_descs(pippy_cu_conv_kernel *k, const pippy_conv_geom *g, int tf32)
{
    int ns = g->w.ns, lift = ns == 1, sn = ns + lift, nd = 2 + sn;
    int xdims[5] = {(int)g->N, (int)g->C}, ydims[5] = {(int)g->N, (int)g->M}, wdims[5] = {(int)g->M, (int)(g->C / g->G)};
    int pad[3], str[3], dil[3];
    for (int i = 0; i < sn; i++) {
        int j = i - lift; /* the window's dim, -1 for the lifted one */
        int64_t in = j < 0 ? 1 : k->pad_copy ? g->w.in[j] + g->w.pl[j] + g->w.pr[j] : g->w.in[j];
        xdims[2 + i] = (int)in;
        ydims[2 + i] = j < 0 ? 1 : (int)g->w.out[j];
        wdims[2 + i] = j < 0 ? 1 : (int)g->w.k[j];
        pad[i] = j < 0 || k->pad_copy ? 0 : (int)g->w.pl[j];
        str[i] = j < 0 ? 1 : (int)g->w.s[j];
        dil[i] = j < 0 ? 1 : (int)g->w.dl[j];
    }
    int xs[5], ys[5];
    xs[nd - 1] = ys[nd - 1] = 1;
    for (int i = nd - 2; i >= 0; i--) {
        xs[i] = xs[i + 1] * xdims[i + 1];
        ys[i] = ys[i + 1] * ydims[i + 1];
    }
    PIPPY_CUDNN_CHECK(cudnnCreateTensorDescriptor(&k->xd));
    PIPPY_CUDNN_CHECK(cudnnCreateTensorDescriptor(&k->yd));
    PIPPY_CUDNN_CHECK(cudnnCreateFilterDescriptor(&k->wd));
    PIPPY_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&k->cd));
    PIPPY_CUDNN_CHECK(cudnnSetTensorNdDescriptor(k->xd, CUDNN_DATA_FLOAT, nd, xdims, xs));
    PIPPY_CUDNN_CHECK(cudnnSetTensorNdDescriptor(k->yd, CUDNN_DATA_FLOAT, nd, ydims, ys));
    PIPPY_CUDNN_CHECK(cudnnSetFilterNdDescriptor(k->wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, nd, wdims));
    PIPPY_CUDNN_CHECK(cudnnSetConvolutionNdDescriptor(k->cd, sn, pad, str, dil, CUDNN_CROSS_CORRELATION,
                                                      CUDNN_DATA_FLOAT));
    PIPPY_CUDNN_CHECK(cudnnSetConvolutionGroupCount(k->cd, (int)g->G));
    PIPPY_CUDNN_CHECK(cudnnSetConvolutionMathType(k->cd, tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    int got[5];
    PIPPY_CUDNN_CHECK(cudnnGetConvolutionNdForwardOutputDim(k->cd, k->xd, k->wd, nd, got));
    for (int i = 0; i < nd; i++)
        if (got[i] != ydims[i])
            return pippy_fail(PIPPY_ERR_INTERNAL, "%s:%d: cuDNN's output dim %d is %d, the geometry's %d", __FILE__,
                              __LINE__, i, got[i], ydims[i]);
    return PIPPY_OK;
}

/* The fastest measured algorithm within the workspace limit (and FMA math without TF32). */
static pippy_status pippy_cu_conv_algo(pippy_cu_conv_kernel *k, const pippy_op_desc *d)
{
    pippy_cuda_ctx *c = k->k.ctx;
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int n = 0;
    PIPPY_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(c->dnn, k->xd, k->wd, k->cd, k->yd,
                                                           CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf));
    for (int i = 0; i < n; i++) { /* sorted fastest first */
        if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > PIPPY_CU_CONV_WS_MAX)
            continue;
        if (!c->tf32 && (perf[i].mathType == CUDNN_TENSOR_OP_MATH ||
                         perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
            continue;
        k->algo = perf[i].algo;
        if (c->tf32) /* without TF32 the descriptor keeps FMA math, as Find measured it */
            PIPPY_CUDNN_CHECK(cudnnSetConvolutionMathType(k->cd, perf[i].mathType));
        return pippy_cuda_workspace(c, perf[i].memory);
    }
    return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: cuDNN has no forward algorithm for this convolution%s", d->op,
                      c->tf32 ? "" : " without TF32 (try --tf32)");
}

pippy_status pippy_cuda_create_conv(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_conv_geom g;
    int relu;
    PIPPY_TRY(pippy_cu_conv_geom(d, &g));
    PIPPY_TRY(pippy_cuda_need_device(pippy_cuda_ctx_of(b), d, "cuDNN"));
    PIPPY_TRY(pippy_dense_activation(d, &relu));
    pippy_cu_conv_kernel *k;
    PIPPY_TRY(pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_conv_k, (pippy_cuda_kernel **)&k));
    k->k.release = pippy_cu_conv_release;
    for (int i = 0; i < g.w.ns; i++)
        k->pad_copy |= g.w.pl[i] != g.w.pr[i];
    pippy_status st = PIPPY_OK;
    if (k->pad_copy) {
        pippy_cu_conv_pad_plan(&g, &k->into);
        size_t n = (size_t)(g.N * g.C);
        for (int i = 0; i < g.w.ns; i++)
            n *= (size_t)(g.w.in[i] + g.w.pl[i] + g.w.pr[i]);
        st = pippy_cuda_kernel_buffer(&k->k, n * sizeof(float), NULL, (void **)&k->xpad);
    }
    if (st == PIPPY_OK)
        st = pippy_cu_conv_descs(k, &g, k->k.ctx->tf32);
    if (st == PIPPY_OK)
        st = pippy_cu_conv_algo(k, d);
    if (st != PIPPY_OK) {
        pippy_kernel_destroy(&k->k.base);
        return st;
    }
    k->has_b = g.has_b;
    k->post = g.has_b || relu;
    int64_t inner = 1;
    for (int i = 0; i < g.w.ns; i++)
        inner *= g.w.out[i];
    k->act = (pippy_cu_bias_act){.relu = relu, .C = g.M, .inner = inner, .n = pippy_tdesc_numel(&d->out[0])};
    *out = &k->k.base;
    return PIPPY_OK;
}
