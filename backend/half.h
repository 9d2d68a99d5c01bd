/* half.h — float16 <-> float32 conversion (round to nearest even), one definition for the CPU's
 * Cast (backend/cpu/shape.c) and the CUDA Cast kernel (backend/cuda/ew.cu, where PIPPY_HD makes
 * these host and device functions). */
#ifndef PIPPY_HALF_H
#define PIPPY_HALF_H

#include <math.h>
#include <stdint.h>

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

#endif
