/* reduce.cu — CUDA kernels that fold windows of their input: Reduce* (one thread per output
 * element, walking its reduced elements) and the pools (one thread per output element, walking
 * its window). The rules are the CPU kernels' (backend/cpu/reduce.c, pool.c): float sums
 * accumulate in double, integer sums and products wrap, float max/min propagate NaN, an integer
 * mean truncates, an empty float mean is NaN. Each also runs on the host (pippy_cu_exec.host)
 * for the emulation tests. */
#include <float.h>

#include "cu_common.cuh"

template <typename T> struct pippy_cu_acc { typedef T t; };      /* what a sum accumulates in */
template <> struct pippy_cu_acc<float> { typedef double t; };
template <> struct pippy_cu_acc<int8_t> { typedef uint32_t t; };
template <> struct pippy_cu_acc<uint8_t> { typedef uint32_t t; };
template <> struct pippy_cu_acc<int32_t> { typedef uint32_t t; };
template <> struct pippy_cu_acc<int64_t> { typedef uint64_t t; };

template <typename T> __host__ __device__ inline T pippy_cu_lowest();
template <typename T> __host__ __device__ inline T pippy_cu_highest();
#define PIPPY_CU_LIMITS(T, LO, HI)                                      \
    template <> __host__ __device__ inline T pippy_cu_lowest<T>() { return LO; } \
    template <> __host__ __device__ inline T pippy_cu_highest<T>() { return HI; }
PIPPY_CU_LIMITS(float, -INFINITY, INFINITY)
PIPPY_CU_LIMITS(double, -INFINITY, INFINITY)
PIPPY_CU_LIMITS(int8_t, INT8_MIN, INT8_MAX)
PIPPY_CU_LIMITS(uint8_t, 0, UINT8_MAX)
PIPPY_CU_LIMITS(int32_t, INT32_MIN, INT32_MAX)
PIPPY_CU_LIMITS(int64_t, INT64_MIN, INT64_MAX)

struct pippy_cu_rgeom {
    int krank, rrank;
    int64_t count;
    int64_t kdims[PIPPY_CU_MAX_BDIMS], kstr[PIPPY_CU_MAX_BDIMS], rdims[PIPPY_CU_MAX_BDIMS], rstr[PIPPY_CU_MAX_BDIMS];
};

template <typename T>
static void pippy_cu_reduce_t(const pippy_cu_reduce *p, const T *in, T *out, const pippy_cu_exec *x)
{
    pippy_cu_rgeom g;
    g.krank = p->krank;
    g.rrank = p->rrank;
    g.count = p->count;
    for (int d = 0; d < PIPPY_CU_MAX_BDIMS; d++) {
        g.kdims[d] = p->kdims[d];
        g.kstr[d] = p->kstr[d];
        g.rdims[d] = p->rdims[d];
        g.rstr[d] = p->rstr[d];
    }
    int op = p->op;
    const bool fl = pippy_cu_is_float_t<T>::v;
    pippy_cu_each(x, p->n_out, [=] __host__ __device__(int64_t o) {
        typedef typename pippy_cu_acc<T>::t A;
        int64_t base = pippy_cu_offset(o, g.krank, g.kdims, g.kstr);
        A sum = op == PIPPY_CU_RPROD ? (A)1 : (A)0;
        T best = op == PIPPY_CU_RMAX ? pippy_cu_lowest<T>() : pippy_cu_highest<T>();
        for (int64_t j = 0; j < g.count; j++) {
            T v = in[base + pippy_cu_offset(j, g.rrank, g.rdims, g.rstr)];
            if (op == PIPPY_CU_RSUM || op == PIPPY_CU_RMEAN)
                sum = (A)(sum + (A)v);
            else if (op == PIPPY_CU_RPROD)
                sum = (A)(sum * (A)v);
            else if (op == PIPPY_CU_RMAX)
                best = (v > best || (fl && v != v)) ? v : best;
            else
                best = (v < best || (fl && v != v)) ? v : best;
        }
        T r;
        if (op == PIPPY_CU_RMAX || op == PIPPY_CU_RMIN)
            r = best;
        else if (op == PIPPY_CU_RMEAN && fl)
            r = (T)((double)sum / (double)g.count); /* 0/0: NaN for an empty mean */
        else if (op == PIPPY_CU_RMEAN)
            r = g.count ? (T)((int64_t)(T)sum / g.count) : (T)sum;
        else
            r = (T)sum;
        out[o] = r;
    });
}

void pippy_cu_reduce_run(const pippy_cu_reduce *p, const void *in, void *out, const pippy_cu_exec *x)
{
    if (p->dtype == PIPPY_DT_BOOL) { /* max / min of 0/1 values */
        pippy_cu_reduce_t<uint8_t>(p, (const uint8_t *)in, (uint8_t *)out, x);
        return;
    }
    PIPPY_CU_NUMERIC(p->dtype, T, pippy_cu_reduce_t<T>(p, (const T *)in, (T *)out, x))
}

/* ---- pools ---- */

void pippy_cu_pool_run(const pippy_cu_pool *p, const float *in, float *out, const pippy_cu_exec *x)
{
    pippy_cu_pool g = *p;
    pippy_cu_each(x, g.n, [=] __host__ __device__(int64_t i) {
        int64_t o[3], r = i;
        for (int d = 2; d >= 0; d--) {
            o[d] = r % g.out[d];
            r /= g.out[d];
        }
        const float *xc = in + r * g.in[0] * g.in[1] * g.in[2]; /* r: the (n, c) plane */
        double sum = 0;
        float mx = -FLT_MAX;
        int64_t n_in = 0, n_padded = 0;
        for (int64_t kd = 0; kd < g.k[0]; kd++)
            for (int64_t kh = 0; kh < g.k[1]; kh++)
                for (int64_t kw = 0; kw < g.k[2]; kw++) {
                    int64_t q[3] = {o[0] * g.s[0] - g.pl[0] + kd * g.dl[0], o[1] * g.s[1] - g.pl[1] + kh * g.dl[1],
                                    o[2] * g.s[2] - g.pl[2] + kw * g.dl[2]};
                    int inside = 1, in_padded = 1;
                    for (int d = 0; d < 3; d++) {
                        inside &= q[d] >= 0 && q[d] < g.in[d];
                        in_padded &= q[d] >= -g.pl[d] && q[d] < g.in[d] + g.pr[d];
                    }
                    n_padded += in_padded;
                    if (!inside)
                        continue;
                    float v = xc[(q[0] * g.in[1] + q[1]) * g.in[2] + q[2]];
                    n_in++;
                    sum += v;
                    mx = v > mx ? v : mx;
                }
        int64_t cnt = g.include_pad ? n_padded : n_in;
        out[i] = g.max ? mx : cnt ? (float)(sum / (double)cnt) : 0.0f;
    });
}
