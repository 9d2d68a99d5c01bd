/* tensor.c — see tensor.h. */
#include "tensor.h"

#include <stdio.h>
#include <string.h>

size_t pippy_dtype_size(int32_t dtype)
{
    switch (dtype) {
    case PIPPY_DT_FLOAT: return 4;
    case PIPPY_DT_UINT8: return 1;
    case PIPPY_DT_INT8: return 1;
    case PIPPY_DT_INT32: return 4;
    case PIPPY_DT_INT64: return 8;
    case PIPPY_DT_BOOL: return 1;
    case PIPPY_DT_FLOAT16: return 2;
    case PIPPY_DT_DOUBLE: return 8;
    default: return 0;
    }
}

const char *pippy_dtype_name(int32_t dtype)
{
    switch (dtype) {
    case PIPPY_DT_UNDEFINED: return "undefined";
    case PIPPY_DT_FLOAT: return "float";
    case PIPPY_DT_UINT8: return "uint8";
    case PIPPY_DT_INT8: return "int8";
    case 4: return "uint16";
    case 5: return "int16";
    case PIPPY_DT_INT32: return "int32";
    case PIPPY_DT_INT64: return "int64";
    case 8: return "string";
    case PIPPY_DT_BOOL: return "bool";
    case PIPPY_DT_FLOAT16: return "float16";
    case PIPPY_DT_DOUBLE: return "double";
    case 12: return "uint32";
    case 13: return "uint64";
    case 14: return "complex64";
    case 15: return "complex128";
    case 16: return "bfloat16";
    case 17: return "float8e4m3fn";
    case 18: return "float8e4m3fnuz";
    case 19: return "float8e5m2";
    case 20: return "float8e5m2fnuz";
    case 21: return "uint4";
    case 22: return "int4";
    case 23: return "float4e2m1";
    case 24: return "float8e8m0";
    case 25: return "uint2";
    case 26: return "int2";
    default: return "unknown-dtype";
    }
}

int64_t pippy_tdesc_numel(const pippy_tdesc *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->dims[i];
    return n;
}

size_t pippy_tdesc_bytes(const pippy_tdesc *t)
{
    return (size_t)pippy_tdesc_numel(t) * pippy_dtype_size(t->dtype);
}

int pippy_tdesc_equal(const pippy_tdesc *a, const pippy_tdesc *b)
{
    if (a->dtype != b->dtype || a->rank != b->rank)
        return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i])
            return 0;
    return 1;
}

char *pippy_ints_str(const int64_t *v, int n, char *buf, size_t cap)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? "," : "", (long long)v[i]);
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
    return buf;
}

char *pippy_tdesc_str(const pippy_tdesc *t, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "%s", pippy_dtype_name(t->dtype));
    if (k < n)
        pippy_ints_str(t->dims, t->rank, buf + k, n - k);
    return buf;
}
