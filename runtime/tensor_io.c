/* tensor_io.c — see tensor_io.h. */
#include "tensor_io.h"

#include "checked.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx.pb-c.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tensor_io assumes a little-endian host (.npy '<' and TensorProto raw_data)"
#endif

#define NPY_MAGIC "\x93NUMPY"
#define MAX_HEADER (1u << 20)

enum { FMT_PB = 1, FMT_NPY = 2 };

static int format_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (dot && strcasecmp(dot, ".pb") == 0)
        return FMT_PB;
    if (dot && strcasecmp(dot, ".npy") == 0)
        return FMT_NPY;
    return 0;
}

static pippy_status bad_ext(const char *path)
{
    return pippy_fail(PIPPY_ERR_USAGE, "%s: unknown tensor file type (the name must end in .pb "
                      "for an ONNX TensorProto or .npy for NumPy)", path);
}

static int io_dtype_ok(int32_t dt)
{
    switch (dt) {
    case PIPPY_DT_FLOAT: case PIPPY_DT_DOUBLE: case PIPPY_DT_FLOAT16: case PIPPY_DT_INT32:
    case PIPPY_DT_INT64: case PIPPY_DT_INT8: case PIPPY_DT_UINT8: case PIPPY_DT_BOOL:
        return 1;
    default:
        return 0;
    }
}

/* numel and bytes of dims, refusing negative dims and overflow. */
static pippy_status shape_bytes(const char *path, const pippy_tdesc *t, size_t *bytes)
{
    int64_t n;
    uint64_t b;
    for (int i = 0; i < t->rank; i++)
        if (t->dims[i] < 0)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: dimension %d is negative (%lld)", path, i,
                              (long long)t->dims[i]);
    if (pippy_dims_product(t->dims, t->rank, &n) || pippy_elems_bytes(n, pippy_dtype_size(t->dtype), &b))
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: the shape is too large (over %llu bytes)", path,
                          (unsigned long long)PIPPY_MAX_TENSOR_BYTES);
    *bytes = (size_t)b;
    return PIPPY_OK;
}

static pippy_status read_full(int fd, const char *path, void *buf, size_t n, size_t at)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, (char *)buf + got, n - got, (off_t)(at + got));
        if (k < 0 && errno == EINTR)
            continue;
        PIPPY_CHECK_SYS(k >= 0, PIPPY_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        if (k == 0)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: truncated (file ends after %zu bytes)", path,
                              at + got);
        got += (size_t)k;
    }
    return PIPPY_OK;
}

/* ---- .npy ---- */

static const struct {
    const char *code; /* descr without the byte-order character */
    int32_t dtype;
} npy_types[] = {
    {"f4", PIPPY_DT_FLOAT}, {"f8", PIPPY_DT_DOUBLE}, {"f2", PIPPY_DT_FLOAT16},
    {"i4", PIPPY_DT_INT32}, {"i8", PIPPY_DT_INT64},  {"i1", PIPPY_DT_INT8},
    {"u1", PIPPY_DT_UINT8}, {"b1", PIPPY_DT_BOOL},
};

typedef struct {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int eat(cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

static int parse_str(cursor *c, char *out, size_t n)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return 0;
    char q = *c->p++;
    size_t k = 0;
    while (c->p < c->end && *c->p != q) {
        if (k + 1 >= n)
            return 0;
        out[k++] = *c->p++;
    }
    if (c->p >= c->end)
        return 0;
    c->p++;
    out[k] = 0;
    return 1;
}

static int parse_word(cursor *c, const char *w)
{
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, w, n) == 0) {
        c->p += n;
        return 1;
    }
    return 0;
}

/* "(2, 3)", "(4,)", "()"; -1 bad syntax, -2 too many dims. */
static int parse_shape(cursor *c, pippy_tdesc *t)
{
    t->rank = 0;
    if (!eat(c, '('))
        return -1;
    for (;;) {
        if (eat(c, ')'))
            return 0;
        skip_ws(c);
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return -1;
        int64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (v > (INT64_MAX - 9) / 10)
                return -1;
            v = v * 10 + (*c->p++ - '0');
        }
        if (c->p < c->end && *c->p == 'L') /* Python 2 longs */
            c->p++;
        if (t->rank == PIPPY_MAX_RANK)
            return -2;
        t->dims[t->rank++] = v;
        if (!eat(c, ',')) {
            return eat(c, ')') ? 0 : -1;
        }
    }
}

static pippy_status npy_descr(const char *path, const char *descr, int32_t *dt)
{
    char order = descr[0];
    const char *code = descr + (order == '<' || order == '>' || order == '|' || order == '=');
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++) {
        if (strcmp(code, npy_types[i].code) != 0)
            continue;
        if (order == '>' && pippy_dtype_size(npy_types[i].dtype) > 1)
            return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: big-endian dtype '%s' is not supported "
                              "(save it little-endian: a.astype(a.dtype.newbyteorder('<')))",
                              path, descr);
        *dt = npy_types[i].dtype;
        return PIPPY_OK;
    }
    return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: unsupported dtype '%s' (supported: <f4 <f8 <f2 "
                      "<i4 <i8 |i1 |u1 |b1)", path, descr);
}

static pippy_status npy_parse_header(const char *path, const char *h, size_t n, pippy_tdesc *t)
{
    cursor c = {h, h + n};
    int have_descr = 0, have_order = 0, have_shape = 0;
    char descr[64];
    if (!eat(&c, '{'))
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: bad .npy header (no dictionary)", path);
    while (!eat(&c, '}')) {
        char key[64];
        if (!parse_str(&c, key, sizeof key) || !eat(&c, ':'))
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: bad .npy header \"%.*s\"", path, (int)n, h);
        if (strcmp(key, "descr") == 0) {
            if (!parse_str(&c, descr, sizeof descr))
                return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: structured dtypes are not "
                                  "supported", path);
            PIPPY_TRY(npy_descr(path, descr, &t->dtype));
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (parse_word(&c, "True"))
                return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: the array is in Fortran order; "
                                  "save it in C order (np.save(f, np.ascontiguousarray(a)))",
                                  path);
            if (!parse_word(&c, "False"))
                return pippy_fail(PIPPY_ERR_FORMAT, "%s: bad fortran_order in the .npy header",
                                  path);
            have_order = 1;
        } else if (strcmp(key, "shape") == 0) {
            int e = parse_shape(&c, t);
            if (e == -2)
                return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: more than %d dimensions", path,
                                  PIPPY_MAX_RANK);
            if (e)
                return pippy_fail(PIPPY_ERR_FORMAT, "%s: bad shape in the .npy header \"%.*s\"",
                                  path, (int)n, h);
            have_shape = 1;
        } else {
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: unknown key '%s' in the .npy header", path,
                              key);
        }
        if (!eat(&c, ',')) {
            if (!eat(&c, '}'))
                return pippy_fail(PIPPY_ERR_FORMAT, "%s: bad .npy header \"%.*s\"", path, (int)n,
                                  h);
            break;
        }
    }
    if (!have_descr || !have_order || !have_shape)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: the .npy header lacks %s", path,
                          !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
    return PIPPY_OK;
}

static void npy_name(const char *path, char *name, size_t n)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t len = dot ? (size_t)(dot - base) : strlen(base);
    if (len >= n)
        len = n - 1;
    memcpy(name, base, len);
    name[len] = 0;
}

static pippy_status npy_read(const char *path, int fd, size_t fsize, pippy_tensor_file *out)
{
    unsigned char pre[12];
    if (fsize < 10)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: not a .npy file (only %zu bytes)", path, fsize);
    PIPPY_TRY(read_full(fd, path, pre, 10, 0));
    if (memcmp(pre, NPY_MAGIC, 6) != 0)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: not a .npy file (no \\x93NUMPY magic)", path);
    unsigned major = pre[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (fsize < 12)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: truncated .npy header", path);
        PIPPY_TRY(read_full(fd, path, pre + 10, 2, 10));
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 |
               (size_t)pre[11] << 24;
        hstart = 12;
    } else {
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: .npy format version %u.%u is not supported "
                          "(1.0, 2.0 and 3.0 are)", path, major, pre[7]);
    }
    if (hlen > MAX_HEADER || hstart + hlen > fsize)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: truncated .npy header (%zu bytes announced, "
                          "the file has %zu)", path, hlen, fsize);
    char *h = malloc(hlen + 1);
    if (!h)
        return pippy_fail(PIPPY_ERR_NOMEM, "%s: out of memory", path);
    pippy_status st = read_full(fd, path, h, hlen, hstart);
    h[hlen] = 0;
    if (st == PIPPY_OK)
        st = npy_parse_header(path, h, hlen, &out->t);
    free(h);
    PIPPY_TRY(st);
    size_t bytes;
    PIPPY_TRY(shape_bytes(path, &out->t, &bytes));
    size_t avail = fsize - hstart - hlen;
    char desc[160];
    if (avail < bytes)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: truncated: %s needs %zu bytes of data, the file "
                          "has %zu", path, pippy_tdesc_str(&out->t, desc, sizeof desc), bytes,
                          avail);
    if (avail > bytes)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: %zu bytes after the data of %s (not one array?)",
                          path, avail - bytes, pippy_tdesc_str(&out->t, desc, sizeof desc));
    if (bytes) {
        out->data = malloc(bytes);
        if (!out->data)
            return pippy_fail(PIPPY_ERR_NOMEM, "%s: out of memory for %zu bytes", path, bytes);
        PIPPY_TRY(read_full(fd, path, out->data, bytes, hstart + hlen));
    }
    npy_name(path, out->name, sizeof out->name);
    return PIPPY_OK;
}

static pippy_status npy_header(const char *path, const pippy_tdesc *t, char *h, size_t *hlen)
{
    const char *code = NULL;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (npy_types[i].dtype == t->dtype)
            code = npy_types[i].code;
    if (!code)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: cannot write dtype %s to .npy", path,
                          pippy_dtype_name(t->dtype));
    char dict[512];
    size_t k = (size_t)snprintf(dict, sizeof dict, "{'descr': '%c%s', 'fortran_order': False, "
                                "'shape': (", pippy_dtype_size(t->dtype) == 1 ? '|' : '<', code);
    for (int i = 0; i < t->rank; i++)
        k += (size_t)snprintf(dict + k, sizeof dict - k, "%s%lld", i ? ", " : "",
                              (long long)t->dims[i]);
    k += (size_t)snprintf(dict + k, sizeof dict - k, "%s), }", t->rank == 1 ? "," : "");
    /* magic(6) version(2) len(2) dict, spaces, '\n'; total a multiple of 64 */
    size_t total = (10 + k + 1 + 63) / 64 * 64;
    memcpy(h, NPY_MAGIC "\x01\x00", 8);
    size_t len = total - 10;
    h[8] = (char)(len & 0xff);
    h[9] = (char)(len >> 8);
    memcpy(h + 10, dict, k);
    memset(h + 10 + k, ' ', total - 10 - k - 1);
    h[total - 1] = '\n';
    *hlen = total;
    return PIPPY_OK;
}

/* ---- .pb ---- */

static pippy_status pb_typed(const char *path, const Onnx__TensorProto *tp, pippy_tensor_file *out,
                             size_t numel)
{
    const char *field = NULL;
    size_t have = 0;
    void *d = out->data;
    switch (out->t.dtype) {
    case PIPPY_DT_FLOAT:
        field = "float_data";
        have = tp->n_float_data;
        if (have == numel)
            memcpy(d, tp->float_data, numel * 4);
        break;
    case PIPPY_DT_DOUBLE:
        field = "double_data";
        have = tp->n_double_data;
        if (have == numel)
            memcpy(d, tp->double_data, numel * 8);
        break;
    case PIPPY_DT_INT64:
        field = "int64_data";
        have = tp->n_int64_data;
        if (have == numel)
            memcpy(d, tp->int64_data, numel * 8);
        break;
    case PIPPY_DT_INT32:
        field = "int32_data";
        have = tp->n_int32_data;
        if (have == numel)
            memcpy(d, tp->int32_data, numel * 4);
        break;
    case PIPPY_DT_FLOAT16: /* the bits, one per int32 */
        field = "int32_data";
        have = tp->n_int32_data;
        for (size_t i = 0; have == numel && i < numel; i++)
            ((uint16_t *)d)[i] = (uint16_t)tp->int32_data[i];
        break;
    default: /* int8, uint8, bool: one per int32 */
        field = "int32_data";
        have = tp->n_int32_data;
        for (size_t i = 0; have == numel && i < numel; i++)
            ((uint8_t *)d)[i] = out->t.dtype == PIPPY_DT_BOOL ? tp->int32_data[i] != 0
                                                              : (uint8_t)tp->int32_data[i];
        break;
    }
    if (have != numel) {
        char desc[160];
        if (have == 0)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: the tensor %s has no data (neither raw_data "
                              "nor %s)", path, pippy_tdesc_str(&out->t, desc, sizeof desc), field);
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: %s has %zu values, the shape %s needs %zu", path,
                          field, have, pippy_tdesc_str(&out->t, desc, sizeof desc), numel);
    }
    return PIPPY_OK;
}

static pippy_status pb_read(const char *path, int fd, size_t fsize, pippy_tensor_file *out)
{
    if (fsize > (size_t)INT32_MAX)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: %zu bytes; protobuf messages over 2 GB do not "
                          "parse (use .npy)", path, fsize);
    uint8_t *buf = malloc(fsize ? fsize : 1);
    if (!buf)
        return pippy_fail(PIPPY_ERR_NOMEM, "%s: out of memory", path);
    pippy_status st = read_full(fd, path, buf, fsize, 0);
    if (st != PIPPY_OK) {
        free(buf);
        return st;
    }
    Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, fsize, buf);
    free(buf);
    if (!tp)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: not an ONNX TensorProto (the protobuf does not "
                          "parse: truncated or another kind of file)", path);
    char desc[160];
    size_t bytes = 0;
    out->t.dtype = tp->has_data_type ? tp->data_type : PIPPY_DT_UNDEFINED;
    if (tp->name)
        snprintf(out->name, sizeof out->name, "%s", tp->name);
    if (!io_dtype_ok(out->t.dtype)) {
        st = pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: tensor \"%s\" has data type %s (%d), which "
                        "pippy does not read (float, double, float16, int64, int32, int8, uint8, "
                        "bool)", path, out->name, pippy_dtype_name(out->t.dtype), out->t.dtype);
        goto done;
    }
    if (tp->n_dims > PIPPY_MAX_RANK) {
        st = pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: %zu dimensions (at most %d)", path, tp->n_dims,
                        PIPPY_MAX_RANK);
        goto done;
    }
    out->t.rank = (int32_t)tp->n_dims;
    for (size_t i = 0; i < tp->n_dims; i++)
        out->t.dims[i] = tp->dims[i];
    if ((st = shape_bytes(path, &out->t, &bytes)) != PIPPY_OK)
        goto done;
    /* every value takes at least one byte of the file: check before allocating for them */
    if (bytes / pippy_dtype_size(out->t.dtype) > fsize) {
        st = pippy_fail(PIPPY_ERR_FORMAT, "%s: the shape %s needs %zu values, more than a file of %zu "
                        "bytes can hold", path, pippy_tdesc_str(&out->t, desc, sizeof desc),
                        bytes / pippy_dtype_size(out->t.dtype), fsize);
        goto done;
    }
    if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        st = pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: the data is in an external file; tensor files "
                        "must hold their data", path);
        goto done;
    }
    if (bytes) {
        out->data = malloc(bytes);
        if (!out->data) {
            st = pippy_fail(PIPPY_ERR_NOMEM, "%s: out of memory for %zu bytes", path, bytes);
            goto done;
        }
    }
    if (tp->has_raw_data && tp->raw_data.len > 0) {
        if (tp->raw_data.len != bytes) {
            st = pippy_fail(PIPPY_ERR_FORMAT, "%s: raw_data has %zu bytes, %s needs %zu", path,
                            tp->raw_data.len, pippy_tdesc_str(&out->t, desc, sizeof desc), bytes);
            goto done;
        }
        memcpy(out->data, tp->raw_data.data, bytes);
    } else if (bytes) {
        st = pb_typed(path, tp, out, bytes / pippy_dtype_size(out->t.dtype));
    }
done:
    onnx__tensor_proto__free_unpacked(tp, NULL);
    return st;
}

/* ---- files ---- */

pippy_status pippy_tensor_read(const char *path, pippy_tensor_file *out)
{
    memset(out, 0, sizeof *out);
    int fmt = format_of(path);
    if (!fmt)
        return bad_ext(path);
    /* O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; it is refused below */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    PIPPY_CHECK_SYS(fd >= 0, PIPPY_ERR_IO, "cannot open tensor file %s: %s", path,
                    strerror(errno));
    struct stat sb;
    pippy_status st;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        st = pippy_fail(PIPPY_ERR_IO, "%s:%d: %s: not a regular file (a tensor file must be one)", __FILE__,
                        __LINE__, path);
    } else {
        st = fmt == FMT_NPY ? npy_read(path, fd, (size_t)sb.st_size, out)
                            : pb_read(path, fd, (size_t)sb.st_size, out);
    }
    close(fd);
    if (st != PIPPY_OK)
        pippy_tensor_file_free(out);
    return st;
}

static pippy_status write_full(int fd, const char *path, const void *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t k = write(fd, (const char *)buf + done, n - done);
        if (k < 0 && errno == EINTR)
            continue;
        PIPPY_CHECK_SYS(k > 0, PIPPY_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        done += (size_t)k;
    }
    return PIPPY_OK;
}

/* Write a then b to a temporary file beside path, then rename it over path. */
static pippy_status write_atomic(const char *path, const void *a, size_t an, const void *b,
                                 size_t bn)
{
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp)
        return pippy_fail(PIPPY_ERR_NOMEM, "%s: out of memory", path);
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmpXXXXXX", 11);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        pippy_status st = pippy_fail(PIPPY_ERR_IO, "%s:%d: cannot create a file beside %s: %s",
                                     __FILE__, __LINE__, path, strerror(errno));
        free(tmp);
        return st;
    }
    pippy_status st = PIPPY_OK;
    if (fchmod(fd, 0644) < 0)
        st = pippy_fail(PIPPY_ERR_IO, "%s:%d: chmod %s: %s", __FILE__, __LINE__, tmp,
                        strerror(errno));
    if (st == PIPPY_OK)
        st = write_full(fd, path, a, an);
    if (st == PIPPY_OK)
        st = write_full(fd, path, b, bn);
    if (st == PIPPY_OK && fsync(fd) < 0)
        st = pippy_fail(PIPPY_ERR_IO, "%s:%d: cannot write %s: %s", __FILE__, __LINE__, path,
                        strerror(errno));
    if (close(fd) < 0 && st == PIPPY_OK)
        st = pippy_fail(PIPPY_ERR_IO, "%s:%d: cannot write %s: %s", __FILE__, __LINE__, path,
                        strerror(errno));
    if (st == PIPPY_OK && rename(tmp, path) < 0)
        st = pippy_fail(PIPPY_ERR_IO, "%s:%d: cannot replace %s: %s", __FILE__, __LINE__, path,
                        strerror(errno));
    if (st != PIPPY_OK)
        unlink(tmp);
    free(tmp);
    return st;
}

pippy_status pippy_tensor_write(const char *path, const pippy_tdesc *t, const void *data,
                                const char *name)
{
    int fmt = format_of(path);
    if (!fmt)
        return bad_ext(path);
    if (!io_dtype_ok(t->dtype))
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: cannot write tensor \"%s\" of data type %s",
                          path, name ? name : "", pippy_dtype_name(t->dtype));
    if (t->rank < 0 || t->rank > PIPPY_MAX_RANK)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: rank %d out of range", path, t->rank);
    size_t bytes;
    PIPPY_TRY(shape_bytes(path, t, &bytes));
    if (bytes && !data)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: no data given", path);
    if (fmt == FMT_NPY) {
        char h[640];
        size_t hl = 0;
        PIPPY_TRY(npy_header(path, t, h, &hl));
        return write_atomic(path, h, hl, data, bytes);
    }
    if (bytes > (size_t)INT32_MAX - 4096)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: %zu bytes is too large for a TensorProto "
                          "(over 2 GB): write .npy", path, bytes);
    Onnx__TensorProto tp = ONNX__TENSOR_PROTO__INIT;
    int64_t dims[PIPPY_MAX_RANK];
    for (int i = 0; i < t->rank; i++)
        dims[i] = t->dims[i];
    tp.n_dims = (size_t)t->rank;
    tp.dims = dims;
    tp.has_data_type = 1;
    tp.data_type = t->dtype;
    tp.name = (char *)(name ? name : "");
    tp.has_raw_data = 1;
    tp.raw_data.len = bytes;
    tp.raw_data.data = (uint8_t *)data;
    size_t n = onnx__tensor_proto__get_packed_size(&tp);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return pippy_fail(PIPPY_ERR_NOMEM, "%s: out of memory for %zu bytes", path, n);
    onnx__tensor_proto__pack(&tp, buf);
    pippy_status st = write_atomic(path, buf, n, NULL, 0);
    free(buf);
    return st;
}

void pippy_tensor_file_free(pippy_tensor_file *f)
{
    if (!f)
        return;
    free(f->data);
    f->data = NULL;
}
