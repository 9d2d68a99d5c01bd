/* move.cu — CUDA kernels that move data without arithmetic: the strided copy behind Transpose,
 * Expand, Tile, Slice, Concat and Split; Gather; Trilu; a fill. One thread per output element;
 * each also runs on the host (pippy_cu_exec.host) for the emulation tests. */
#include <string.h>

#include "cu_common.cuh"

template <typename T> static void pippy_cu_copy_t(const pippy_cu_copy *p, const T *in, T *out, const pippy_cu_exec *x)
{
    pippy_cu_copy q = *p;
    pippy_cu_each(x, q.n, [=] __host__ __device__(int64_t i) {
        int64_t io = q.ibase, oo = q.obase, r = i;
        for (int d = q.rank - 1; d >= 0; d--) {
            int64_t t = r / q.dims[d], k = r - t * q.dims[d];
            io += k * q.istr[d];
            oo += k * q.ostr[d];
            r = t;
        }
        out[oo] = in[io];
    });
}

void pippy_cu_copy_run(const pippy_cu_copy *p, const void *in, void *out, const pippy_cu_exec *x)
{
    PIPPY_CU_BYSIZE(p->esize, T, pippy_cu_copy_t<T>(p, (const T *)in, (T *)out, x))
}

template <typename T, typename I>
static void pippy_cu_gather_t(const pippy_cu_gather *p, const T *data, const I *idx, T *out, const pippy_cu_exec *x)
{
    pippy_cu_gather q = *p;
    pippy_cu_each(x, q.n, [=] __host__ __device__(int64_t i) {
        int64_t r = i % q.inner, t = i / q.inner, j = t % q.n_idx, o = t / q.n_idx;
        int64_t k = (int64_t)idx[j];
        if (k < 0)
            k += q.axis_dim;
        out[i] = k >= 0 && k < q.axis_dim ? data[(o * q.axis_dim + k) * q.inner + r] : (T)0;
    });
}

void pippy_cu_gather_run(const pippy_cu_gather *p, const void *data, const void *idx, void *out, const pippy_cu_exec *x)
{
    if (p->idx64) {
        PIPPY_CU_BYSIZE(p->esize, T, pippy_cu_gather_t<T, int64_t>(p, (const T *)data, (const int64_t *)idx, (T *)out, x))
    } else {
        PIPPY_CU_BYSIZE(p->esize, T, pippy_cu_gather_t<T, int32_t>(p, (const T *)data, (const int32_t *)idx, (T *)out, x))
    }
}

template <typename T>
static void pippy_cu_trilu_t(const pippy_cu_trilu *p, const T *in, const int64_t *kp, T *out, const pippy_cu_exec *x)
{
    pippy_cu_trilu q = *p;
    pippy_cu_each(x, q.n, [=] __host__ __device__(int64_t i) {
        int64_t k = kp ? *kp : 0, c = i % q.cols, r = (i / q.cols) % q.rows;
        int keep = q.upper ? c - r >= k : c - r <= k;
        out[i] = keep ? in[i] : (T)0;
    });
}

void pippy_cu_trilu_run(const pippy_cu_trilu *p, const void *in, const int64_t *kp, void *out, const pippy_cu_exec *x)
{
    PIPPY_CU_BYSIZE(p->esize, T, pippy_cu_trilu_t<T>(p, (const T *)in, kp, (T *)out, x))
}

template <typename T> static void pippy_cu_fill_t(const pippy_cu_fill *p, T *out, const pippy_cu_exec *x)
{
    T v;
    memcpy(&v, p->value, sizeof v);
    pippy_cu_each(x, p->n, [=] __host__ __device__(int64_t i) { out[i] = v; });
}

void pippy_cu_fill_run(const pippy_cu_fill *p, void *out, const pippy_cu_exec *x)
{
    PIPPY_CU_BYSIZE(p->esize, T, pippy_cu_fill_t<T>(p, (T *)out, x))
}
