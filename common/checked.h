/* checked.h — overflow-checked size and shape arithmetic.
 *
 * Every size, count, offset or dimension computed from numbers that come from outside (model
 * files, tensor files, schedule.json, attributes) goes through these helpers, so that a crafted
 * value makes a clear error instead of wrapping around into a small, plausible, wrong size. Each
 * helper returns 0 when the exact result fits and 1 when it does not (the output is then
 * unspecified); callers turn a 1 into pippy_fail with what overflowed.
 *
 * PIPPY_MAX_TENSOR_BYTES bounds one tensor (1 TiB): far above any real activation or weight,
 * far below where sums of a few thousand of them could overflow 64 bits. */
#ifndef PIPPY_CHECKED_H
#define PIPPY_CHECKED_H

#include <stddef.h>
#include <stdint.h>

#define PIPPY_MAX_TENSOR_BYTES (1ull << 40)

static inline int pippy_add_i64(int64_t a, int64_t b, int64_t *out) { return __builtin_add_overflow(a, b, out); }
static inline int pippy_sub_i64(int64_t a, int64_t b, int64_t *out) { return __builtin_sub_overflow(a, b, out); }
static inline int pippy_mul_i64(int64_t a, int64_t b, int64_t *out) { return __builtin_mul_overflow(a, b, out); }
static inline int pippy_add_u64(uint64_t a, uint64_t b, uint64_t *out) { return __builtin_add_overflow(a, b, out); }
static inline int pippy_mul_u64(uint64_t a, uint64_t b, uint64_t *out) { return __builtin_mul_overflow(a, b, out); }
static inline int pippy_add_size(size_t a, size_t b, size_t *out) { return __builtin_add_overflow(a, b, out); }
static inline int pippy_mul_size(size_t a, size_t b, size_t *out) { return __builtin_mul_overflow(a, b, out); }

/* Product of n dims, each >= 0; 1 when a dim is negative or the product exceeds INT64_MAX. */
static inline int pippy_dims_product(const int64_t *dims, int n, int64_t *out)
{
    int64_t p = 1;
    for (int i = 0; i < n; i++)
        if (dims[i] < 0 || pippy_mul_i64(p, dims[i], &p))
            return 1;
    *out = p;
    return 0;
}

/* Bytes of count elements of esize bytes, within PIPPY_MAX_TENSOR_BYTES. */
static inline int pippy_elems_bytes(int64_t count, size_t esize, uint64_t *out)
{
    uint64_t b;
    if (count < 0 || pippy_mul_u64((uint64_t)count, (uint64_t)esize, &b) || b > PIPPY_MAX_TENSOR_BYTES)
        return 1;
    *out = b;
    return 0;
}

/* x rounded up to a multiple of a (a power of two); 1 on overflow. */
static inline int pippy_align_u64(uint64_t x, uint64_t a, uint64_t *out)
{
    uint64_t y;
    if (pippy_add_u64(x, a - 1, &y))
        return 1;
    *out = y & ~(a - 1);
    return 0;
}

#endif
