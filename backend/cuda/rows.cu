/* rows.cu — CUDA kernels that normalise rows: Softmax / LogSoftmax and LayerNormalization. One
 * warp per row (8 rows per block of 256 threads), lanes striding along the row, statistics
 * combined with warp shuffles. Float statistics: max-subtracted exp sums for softmax, two-pass
 * mean and variance for the layer norm. No host emulation (warp shuffles); tested on a GPU
 * against the CPU reference kernels. */
#include "cu_common.cuh"

#define PIPPY_CU_WARPS 8

__device__ inline float pippy_cu_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ inline float pippy_cu_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static unsigned pippy_cu_row_blocks(int64_t rows)
{
    int64_t b = (rows + PIPPY_CU_WARPS - 1) / PIPPY_CU_WARPS;
    return (unsigned)(b > (1 << 20) ? (1 << 20) : b);
}

__global__ void pippy_cu_softmax_kernel(pippy_cu_softmax p, const float *in, float *out)
{
    int lane = threadIdx.x & 31;
    int64_t rows = p.outer * p.inner, step = (int64_t)gridDim.x * PIPPY_CU_WARPS;
    for (int64_t r = (int64_t)blockIdx.x * PIPPY_CU_WARPS + (threadIdx.x >> 5); r < rows; r += step) {
        int64_t o = r / p.inner, i = r - o * p.inner;
        const float *x = in + o * p.len * p.inner + i;
        float *y = out + o * p.len * p.inner + i;
        float mx = -INFINITY;
        for (int64_t j = lane; j < p.len; j += 32)
            mx = fmaxf(mx, x[j * p.inner]);
        mx = pippy_cu_warp_max(mx);
        float sum = 0;
        for (int64_t j = lane; j < p.len; j += 32)
            sum += expf(x[j * p.inner] - mx);
        sum = pippy_cu_warp_sum(sum);
        if (p.log) {
            float ls = logf(sum);
            for (int64_t j = lane; j < p.len; j += 32)
                y[j * p.inner] = x[j * p.inner] - mx - ls;
        } else {
            float inv = 1.0f / sum;
            for (int64_t j = lane; j < p.len; j += 32)
                y[j * p.inner] = expf(x[j * p.inner] - mx) * inv;
        }
    }
}

void pippy_cu_softmax_run(const pippy_cu_softmax *p, const float *in, float *out, cudaStream_t s)
{
    int64_t rows = p->outer * p->inner;
    if (rows <= 0 || p->len <= 0)
        return;
    pippy_cu_softmax_kernel<<<pippy_cu_row_blocks(rows), 32 * PIPPY_CU_WARPS, 0, s>>>(*p, in, out);
}

__global__ void pippy_cu_layernorm_kernel(pippy_cu_layernorm p, const float *in, const float *scale,
                                          const int64_t *sidx, const float *b, const int64_t *bidx, float *out,
                                          float *mean_out, float *inv_out)
{
    int lane = threadIdx.x & 31;
    int64_t step = (int64_t)gridDim.x * PIPPY_CU_WARPS;
    for (int64_t r = (int64_t)blockIdx.x * PIPPY_CU_WARPS + (threadIdx.x >> 5); r < p.rows; r += step) {
        const float *x = in + r * p.len;
        float *y = out + r * p.len;
        float s = 0;
        for (int64_t j = lane; j < p.len; j += 32)
            s += x[j];
        float mean = pippy_cu_warp_sum(s) / (float)p.len;
        float v = 0;
        for (int64_t j = lane; j < p.len; j += 32) {
            float d = x[j] - mean;
            v += d * d;
        }
        float inv = 1.0f / sqrtf(pippy_cu_warp_sum(v) / (float)p.len + p.eps);
        for (int64_t j = lane; j < p.len; j += 32) {
            float t = (x[j] - mean) * inv * scale[sidx ? sidx[j] : j];
            y[j] = b ? t + b[bidx ? bidx[j] : j] : t;
        }
        if (lane == 0 && mean_out)
            mean_out[r] = mean;
        if (lane == 0 && inv_out)
            inv_out[r] = inv;
    }
}

void pippy_cu_layernorm_run(const pippy_cu_layernorm *p, const float *in, const float *scale, const int64_t *sidx,
                            const float *b, const int64_t *bidx, float *out, float *mean, float *inv, cudaStream_t s)
{
    if (p->rows <= 0 || p->len <= 0)
        return;
    pippy_cu_layernorm_kernel<<<pippy_cu_row_blocks(p->rows), 32 * PIPPY_CU_WARPS, 0, s>>>(*p, in, scale, sidx, b, bidx,
                                                                                         out, mean, inv);
}
