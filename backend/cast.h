/* cast.h — Cast's element rules, one definition for the CPU's Cast (backend/cpu/shape.c: its
 * reference loop) and the CUDA Cast kernel (backend/cuda/ew.cu, where PIPPY_HD makes these host and
 * device functions): float16 <-> float32 (round to nearest even), and one element of any Cast. */
#ifndef PIPPY_CAST_H
#define PIPPY_CAST_H

#include <math.h>
#include <stdint.h>

#include "tensor.h"

#ifdef __CUDACC__
#define PIPPY_HD __host__ __device__
#else
#define PIPPY_HD
#endif

static inline PIPPY_HD float pippy_half_to_float(uint16_t h)
{
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 0x400), e - 25);
    return (h & 0x8000) ? -v : v;
}

static inline PIPPY_HD uint16_t pippy_float_to_half(float f)
{
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    float a = fabsf(f);
    if (isnan(f))
        return sign | 0x7e00;
    if (a >= 65520.0f) /* rounds to infinity */
        return sign | 0x7c00;
    if (a < 6.103515625e-05f) /* subnormal: m * 2^-24 (m = 1024 is the smallest normal, same bits) */
        return (uint16_t)(sign | (uint16_t)nearbyintf(a * 16777216.0f));
    int e;
    float fr = frexpf(a, &e); /* a = fr * 2^e, fr in [0.5, 1) */
    int m = (int)nearbyintf((fr * 2.0f - 1.0f) * 1024.0f), he = e - 1 + 15;
    if (m == 1024) {
        m = 0;
        he++;
    }
    return he >= 31 ? (uint16_t)(sign | 0x7c00) : (uint16_t)(sign | (he << 10) | m);
}

/* y[i] = x[i] converted from ONNX dtype `from` to `to` (float, double, float16, int8, uint8, int32,
 * int64, bool): every element through double (floats) or int64 (integers, bool); floats to
 * integers truncate toward zero, to bool x != 0. */
static inline PIPPY_HD void pippy_cast_one(int32_t from, int32_t to, const void *x, void *y, int64_t i)
{
    int from_int = from != PIPPY_DT_FLOAT && from != PIPPY_DT_DOUBLE && from != PIPPY_DT_FLOAT16;
    int64_t vi = 0;
    double vf = 0;
    switch (from) {
    case PIPPY_DT_FLOAT: vf = ((const float *)x)[i]; break;
    case PIPPY_DT_DOUBLE: vf = ((const double *)x)[i]; break;
    case PIPPY_DT_FLOAT16: vf = pippy_half_to_float(((const uint16_t *)x)[i]); break;
    case PIPPY_DT_INT8: vi = ((const int8_t *)x)[i]; break;
    case PIPPY_DT_UINT8: vi = ((const uint8_t *)x)[i]; break;
    case PIPPY_DT_BOOL: vi = ((const uint8_t *)x)[i] != 0; break;
    case PIPPY_DT_INT32: vi = ((const int32_t *)x)[i]; break;
    case PIPPY_DT_INT64: vi = ((const int64_t *)x)[i]; break;
    default: break;
    }
    if (from_int)
        vf = (double)vi;
    else if (to != PIPPY_DT_FLOAT && to != PIPPY_DT_DOUBLE && to != PIPPY_DT_FLOAT16 && to != PIPPY_DT_BOOL)
        vi = (int64_t)vf; /* truncates toward zero */
    switch (to) {
    case PIPPY_DT_FLOAT: ((float *)y)[i] = from_int ? (float)vi : (float)vf; break;
    case PIPPY_DT_DOUBLE: ((double *)y)[i] = vf; break;
    case PIPPY_DT_FLOAT16: ((uint16_t *)y)[i] = pippy_float_to_half(from_int ? (float)vi : (float)vf); break;
    case PIPPY_DT_BOOL: ((uint8_t *)y)[i] = from_int ? vi != 0 : vf != 0; break;
    case PIPPY_DT_INT8: ((int8_t *)y)[i] = (int8_t)vi; break;
    case PIPPY_DT_UINT8: ((uint8_t *)y)[i] = (uint8_t)vi; break;
    case PIPPY_DT_INT32: ((int32_t *)y)[i] = (int32_t)vi; break;
    case PIPPY_DT_INT64: ((int64_t *)y)[i] = vi; break;
    default: break;
    }
}

#endif
