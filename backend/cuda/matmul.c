/* matmul.c — MatMul and Gemm on cuBLASLt (float32).
 *
 * Row-major C[M,N] = A[M,K] B[K,N] is column-major C^T = B^T A^T, so cuBLASLt's first operand is
 * our B and its second our A; the transposes (MatMul's pippy.trans_a / trans_b, Gemm's transA /
 * transB) become its operations. Epilogues: a bias vector (MatMul's pippy.bias, Gemm's C of [N]
 * with beta = 1) is cuBLASLt's BIAS epilogue, a fused ReLU (pippy.activation) its RELU / RELU_BIAS;
 * cuBLASLt's GELU epilogue is the tanh approximation, which no node pippyc makes asks for. A
 * Gemm C of another shape, or with beta != 1, is broadcast into Y first and added with beta;
 * pippy.accumulate is beta = 1 over Y.
 * Batches: a B without batch (weights) folds A's batch into M (one GEMM); otherwise the output
 * batch dims are collapsed with both operands' strides (0 where broadcast) and the innermost runs
 * as one strided-batched call, the others as a loop of calls.
 * Precision: CUBLAS_COMPUTE_32F (no TF32) unless the backend allows TF32 (--tf32).
 * Algorithms are chosen at create by cuBLASLt's heuristic, twice: for 16-byte aligned operands and
 * for 4-byte aligned ones; run takes the first when every pointer is 16-byte aligned. */
#include <stdint.h>
#include <string.h>

#include "cpu/geom.h"
#include "cpu/walk.h"
#include "cubackend.h"

#define PIPPY_CU_MM_WS (32u << 20) /* the largest workspace cuBLASLt may ask for */

typedef struct {
    pippy_cuda_kernel k;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, ld; /* cuBLASLt's A (our B), B (our A), C = D (Y) */
    cublasLtMatmulAlgo_t algo[2];      /* [0]: 16-byte aligned operands, [1]: 4-byte */
    int has_algo[2];
    float alpha, beta;
    int bias_in;                       /* input bound to the BIAS epilogue, -1: none */
    int c_in;                          /* Gemm: input broadcast into Y before the product, -1: none */
    pippy_cu_copy c_copy;
    int outer_rank;                    /* batch dims run as a loop of calls */
    int64_t outer_n, odims[PIPPY_MAX_RANK], osa[PIPPY_MAX_RANK], osb[PIPPY_MAX_RANK], osd;
} pippy_cu_mm_kernel;

static void pippy_cu_mm_release(pippy_kernel *kb)
{
    pippy_cu_mm_kernel *k = (pippy_cu_mm_kernel *)kb;
    if (k->ld)
        cublasLtMatrixLayoutDestroy(k->ld);
    if (k->lb)
        cublasLtMatrixLayoutDestroy(k->lb);
    if (k->la)
        cublasLtMatrixLayoutDestroy(k->la);
    if (k->op)
        cublasLtMatmulDescDestroy(k->op);
}

static int pippy_cu_aligned(const void *p) { return ((uintptr_t)p & 15u) == 0; }

static void pippy_cu_mm_k(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_cu_mm_kernel *k = (pippy_cu_mm_kernel *)kb;
    pippy_cuda_ctx *c = k->k.ctx;
    const float *A = in[0], *B = in[1];
    float *Y = out[0];
    if (k->c_in >= 0)
        pippy_cu_copy_run(&k->c_copy, in[k->c_in], Y, &c->exec);
    const void *bias = k->bias_in >= 0 ? in[k->bias_in] : NULL;
    if (bias && cublasLtMatmulDescSetAttribute(k->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias) !=
                    CUBLAS_STATUS_SUCCESS) {
        pippy_cuda_run_error(c, "cublasLtMatmulDescSetAttribute", "the bias pointer was refused");
        return;
    }
    int a = k->has_algo[0] && pippy_cu_aligned(A) && pippy_cu_aligned(B) && pippy_cu_aligned(Y) &&
                    (!bias || pippy_cu_aligned(bias))
                ? 0
                : 1;
    for (int64_t o = 0; o < k->outer_n; o++) {
        int64_t r = o, oa = 0, ob = 0;
        for (int d = k->outer_rank - 1; d >= 0; d--) {
            int64_t i = r % k->odims[d];
            oa += i * k->osa[d];
            ob += i * k->osb[d];
            r /= k->odims[d];
        }
        float *D = Y + o * k->osd;
        cublasStatus_t s = cublasLtMatmul(c->lt, k->op, &k->alpha, B + ob, k->la, A + oa, k->lb, &k->beta, D, k->ld, D,
                                          k->ld, &k->algo[a], c->ws, c->ws_bytes, c->exec.stream);
        if (s != CUBLAS_STATUS_SUCCESS) {
            pippy_cuda_run_error(c, "cublasLtMatmul", cublasLtGetStatusString(s));
            return;
        }
    }
}

/* The operation: compute type, transposes (cuBLASLt's A is our B), epilogue. */
static pippy_status pippy_cu_mm_desc(pippy_cu_mm_kernel *k, int tf32, int ta, int tb, int relu, int bias)
{
    PIPPY_CUBLAS_CHECK(cublasLtMatmulDescCreate(&k->op, tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F,
                                                CUDA_R_32F));
    cublasOperation_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    PIPPY_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(k->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    PIPPY_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(k->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    cublasLtEpilogue_t ep = relu && bias ? CUBLASLT_EPILOGUE_RELU_BIAS
                            : relu       ? CUBLASLT_EPILOGUE_RELU
                            : bias       ? CUBLASLT_EPILOGUE_BIAS
                                         : CUBLASLT_EPILOGUE_DEFAULT;
    PIPPY_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(k->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep));
    if (bias) { /* a stand-in, 256-byte aligned, for the heuristic; run sets the real one */
        const void *p = (const void *)(uintptr_t)256;
        PIPPY_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(k->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p, sizeof p));
    }
    return PIPPY_OK;
}

/* A column-major rows x cols layout with leading dimension ld, batch of count with stride. */
static pippy_status pippy_cu_layout(cublasLtMatrixLayout_t *l, int64_t rows, int64_t cols, int64_t ld, int32_t count,
                                    int64_t stride)
{
    PIPPY_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(l, CUDA_R_32F, (uint64_t)rows, (uint64_t)cols, ld));
    if (count > 1) {
        PIPPY_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count));
        PIPPY_CUBLAS_CHECK(
            cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
    }
    return PIPPY_OK;
}

/* cuBLASLt's best algorithm for operands aligned to `align` bytes (has = 0 when none). */
static pippy_status pippy_cu_mm_algo(pippy_cu_mm_kernel *k, uint32_t align, cublasLtMatmulAlgo_t *algo, int *has)
{
    pippy_cuda_ctx *c = k->k.ctx;
    cublasLtMatmulPreference_t pref;
    PIPPY_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = PIPPY_CU_MM_WS;
    cublasLtMatmulPreferenceAttributes_t al[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                            sizeof ws);
    for (int i = 0; i < 4 && s == CUBLAS_STATUS_SUCCESS; i++)
        s = cublasLtMatmulPreferenceSetAttribute(pref, al[i], &align, sizeof align);
    cublasLtMatmulHeuristicResult_t res;
    int n = 0;
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulAlgoGetHeuristic(c->lt, k->op, k->la, k->lb, k->ld, k->ld, pref, 1, &res, &n);
    cublasLtMatmulPreferenceDestroy(pref);
    *has = 0;
    if (s == CUBLAS_STATUS_NOT_SUPPORTED || (s == CUBLAS_STATUS_SUCCESS && n == 0))
        return PIPPY_OK;
    if (s != CUBLAS_STATUS_SUCCESS)
        return pippy_cublas_fail(s, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
    *algo = res.algo;
    *has = 1;
    return pippy_cuda_workspace(c, res.workspaceSize);
}

/* The product's shape: M, N, K; the loop and batch of its calls (strides in elements). */
typedef struct {
    int64_t M, N, K;
    int ta, tb;
    int32_t count;           /* strided batch of one call */
    int64_t sa, sb, sd;      /* its strides */
    int outer_rank;
    int64_t odims[PIPPY_MAX_RANK], osa[PIPPY_MAX_RANK], osb[PIPPY_MAX_RANK];
} pippy_cu_mm_shape;

static pippy_status pippy_cu_mm_build(pippy_cu_mm_kernel *k, const pippy_cu_mm_shape *s, int relu, int bias)
{
    int64_t M = s->M, N = s->N, K = s->K;
    PIPPY_TRY(pippy_cu_mm_desc(k, k->k.ctx->tf32, s->ta, s->tb, relu, bias));
    /* cuBLASLt's A = our B (N x K as it multiplies), B = our A (K x M), D = Y^T (N x M) */
    PIPPY_TRY(s->tb ? pippy_cu_layout(&k->la, K, N, K, s->count, s->sb) : pippy_cu_layout(&k->la, N, K, N, s->count, s->sb));
    PIPPY_TRY(s->ta ? pippy_cu_layout(&k->lb, M, K, M, s->count, s->sa) : pippy_cu_layout(&k->lb, K, M, K, s->count, s->sa));
    PIPPY_TRY(pippy_cu_layout(&k->ld, N, M, N, s->count, s->sd));
    int strides16 = (s->sa % 4) == 0 && (s->sb % 4) == 0 && (s->sd % 4) == 0 && (M * N) % 4 == 0;
    for (int d = 0; d < s->outer_rank; d++)
        strides16 &= (s->osa[d] % 4) == 0 && (s->osb[d] % 4) == 0;
    if (strides16)
        PIPPY_TRY(pippy_cu_mm_algo(k, 16, &k->algo[0], &k->has_algo[0]));
    PIPPY_TRY(pippy_cu_mm_algo(k, 4, &k->algo[1], &k->has_algo[1]));
    if (!k->has_algo[1])
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "cuBLASLt has no algorithm for [%lld,%lld] x [%lld,%lld]%s%s",
                          (long long)M, (long long)K, (long long)K, (long long)N, bias ? " with a bias" : "",
                          relu ? " and ReLU" : "");
    k->outer_rank = s->outer_rank;
    k->outer_n = 1;
    for (int d = 0; d < s->outer_rank; d++) {
        k->odims[d] = s->odims[d];
        k->osa[d] = s->osa[d];
        k->osb[d] = s->osb[d];
        k->outer_n *= s->odims[d];
    }
    k->osd = (int64_t)s->count * M * N;
    return PIPPY_OK;
}

/* ---- MatMul ---- */

static const int pippy_cu_mm_inputs[3] = {0, 1, 2};

pippy_status pippy_cuda_check_matmul(const pippy_op_desc *d)
{
    pippy_mm_geom g;
    PIPPY_TRY(pippy_cuda_want_float(d, pippy_cu_mm_inputs, 3));
    return pippy_matmul_geom_of(d, &g);
}

/* MatMul's batch: B without batch folds A's batch into M; else collapse and batch/loop. */
static void pippy_cu_mm_batch(const pippy_mm_geom *g, pippy_cu_mm_shape *s)
{
    int64_t bprod = 1, oprod = 1;
    for (int i = 0; i < g->nb; i++) {
        bprod *= g->bb[i];
        oprod *= g->ob[i];
    }
    s->count = 1;
    s->sa = s->sb = s->sd = 0;
    s->outer_rank = 0;
    if (bprod == 1 && !g->ta) { /* [batch..., M, K] x [K, N]: one GEMM of batch*M rows */
        s->M *= oprod;
        return;
    }
    int64_t dims[PIPPY_MAX_RANK], sa[PIPPY_MAX_RANK], sb[PIPPY_MAX_RANK], ea = g->M * g->K, eb = g->K * g->N;
    for (int i = g->nb - 1; i >= 0; i--) {
        dims[i] = g->ob[i];
        sa[i] = g->ab[i] == 1 ? 0 : ea;
        sb[i] = g->bb[i] == 1 ? 0 : eb;
        ea *= g->ab[i];
        eb *= g->bb[i];
    }
    int64_t *lists[2] = {sa, sb};
    int r = g->nb ? pippy_walk_collapse(g->nb, dims, 2, lists, 0) : 0;
    if (r == 0)
        return;
    s->count = (int32_t)dims[r - 1];
    s->sa = sa[r - 1];
    s->sb = sb[r - 1];
    s->sd = g->M * g->N;
    s->outer_rank = r - 1;
    for (int i = 0; i < r - 1; i++) {
        s->odims[i] = dims[i];
        s->osa[i] = sa[i];
        s->osb[i] = sb[i];
    }
}

pippy_status pippy_cuda_create_matmul(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_mm_geom g;
    int relu;
    PIPPY_TRY(pippy_cuda_check_matmul(d));
    PIPPY_TRY(pippy_cuda_need_device(pippy_cuda_ctx_of(b), d, "cuBLASLt"));
    PIPPY_TRY(pippy_matmul_geom_of(d, &g));
    PIPPY_TRY(pippy_dense_activation(d, &relu));
    pippy_cu_mm_kernel *k;
    PIPPY_TRY(pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_mm_k, (pippy_cuda_kernel **)&k));
    k->k.release = pippy_cu_mm_release;
    k->alpha = 1.0f;
    k->beta = g.acc ? 1.0f : 0.0f;
    k->bias_in = g.bias ? 2 : -1;
    k->c_in = -1;
    pippy_cu_mm_shape s = {.M = g.M, .N = g.N, .K = g.K, .ta = g.ta, .tb = g.tb};
    pippy_cu_mm_batch(&g, &s);
    pippy_status st = pippy_cu_mm_build(k, &s, relu, g.bias);
    if (st != PIPPY_OK) {
        pippy_kernel_destroy(&k->k.base);
        return st;
    }
    *out = &k->k.base;
    return PIPPY_OK;
}

/* ---- Gemm ---- */

pippy_status pippy_cuda_check_gemm(const pippy_op_desc *d)
{
    pippy_gemm_geom g;
    PIPPY_TRY(pippy_cuda_want_float(d, pippy_cu_mm_inputs, 3));
    return pippy_gemm_geom_of(d, &g);
}

pippy_status pippy_cuda_create_gemm(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_gemm_geom g;
    int relu;
    PIPPY_TRY(pippy_cuda_check_gemm(d));
    PIPPY_TRY(pippy_cuda_need_device(pippy_cuda_ctx_of(b), d, "cuBLASLt"));
    PIPPY_TRY(pippy_gemm_geom_of(d, &g));
    PIPPY_TRY(pippy_dense_activation(d, &relu));
    pippy_cu_mm_kernel *k;
    PIPPY_TRY(pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_mm_k, (pippy_cuda_kernel **)&k));
    k->k.release = pippy_cu_mm_release;
    k->alpha = g.alpha;
    k->beta = 0.0f;
    k->bias_in = k->c_in = -1;
    int use_c = g.has_c && g.beta != 0.0f;
    if (use_c && g.cr == 1 && g.cc == g.N && g.beta == 1.0f) {
        k->bias_in = 2; /* a bias row: the epilogue */
    } else if (use_c) { /* Y = broadcast C, then Y = alpha*AB + beta*Y */
        k->c_in = 2;
        k->beta = g.beta;
        int64_t dims[2] = {g.M, g.N}, istr[2] = {g.cr == 1 ? 0 : g.cc, g.cc == 1 ? 0 : 1}, ostr[2] = {g.N, 1};
        int64_t *lists[2] = {k->c_copy.istr, k->c_copy.ostr};
        memcpy(k->c_copy.dims, dims, sizeof dims);
        memcpy(k->c_copy.istr, istr, sizeof istr);
        memcpy(k->c_copy.ostr, ostr, sizeof ostr);
        k->c_copy.rank = pippy_walk_collapse(2, k->c_copy.dims, 2, lists, 1);
        k->c_copy.esize = 4;
        k->c_copy.n = g.M * g.N;
    }
    pippy_cu_mm_shape s = {.M = g.M, .N = g.N, .K = g.K, .ta = g.ta, .tb = g.tb, .count = 1};
    pippy_status st = pippy_cu_mm_build(k, &s, relu, k->bias_in >= 0);
    if (st != PIPPY_OK) {
        pippy_kernel_destroy(&k->k.base);
        return st;
    }
    *out = &k->k.base;
    return PIPPY_OK;
}
