/* onnx_load.c — see onnx_load.h.
 *
 * Order of work: map + hash + unpack the file; versions, producer, metadata;
 * initializers; graph inputs; nodes (names made unique, attributes converted);
 * graph outputs; checks that every value has at most one writer; topological
 * sort; checks that every graph output is defined. The protobuf message is
 * unpacked with an allocator of our own (plain malloc/free) so that raw_data
 * buffers can be taken over by the IR instead of copied a second time. */
#include "onnx_load.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx.pb-c.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ONNX raw_data is little-endian and pippyc uses it in place: big-endian hosts are not supported"
#endif

/* A failed libc call: the message carries where it was made (docs/ARCHITECTURE.md, Style). */
#define PIPPY_ONNX_SYS_FAIL(st, fmt, ...) pippy_fail((st), "%s:%d: " fmt, __FILE__, __LINE__, __VA_ARGS__)

/* protobuf-c cannot parse messages of 2 GiB or more. */
#define PIPPY_ONNX_MAX_FILE ((size_t)INT32_MAX)

/* ---- protobuf allocator: plain malloc/free, so raw_data buffers can be taken over ---- */

static void *pippy_pb_alloc(void *d, size_t n)
{
    (void)d;
    return malloc(n ? n : 1);
}

static void pippy_pb_free(void *d, void *p)
{
    (void)d;
    free(p);
}

static ProtobufCAllocator pippy_pb_allocator = {pippy_pb_alloc, pippy_pb_free, NULL};

/* ---- loader state ---- */

typedef struct {
    char *file; /* resolved path */
    void *addr; /* NULL for an empty file */
    size_t len;
} pippy_ext_file;

typedef struct {
    const char *path; /* the model file, for messages */
    char *dir;        /* its folder: external data locations are relative to it */
    pippy_graph *g;
    pippy_ext_file *ext;
    int32_t n_ext;
    /* node names in use (open addressing over pointers into g->nodes[].name / file strings) */
    const char **names;
    size_t names_cap;
} pippy_loader;

static pippy_status pippy_onnx_nomem(const pippy_loader *L)
{
    return pippy_fail(PIPPY_ERR_NOMEM, "%s: out of memory loading the model", L->path);
}

static char *pippy_strdup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

/* A NUL-terminated copy of a protobuf bytes field. */
static char *pippy_bytes_str(const ProtobufCBinaryData *b)
{
    char *s = malloc(b->len + 1);
    if (!s)
        return NULL;
    if (b->len)
        memcpy(s, b->data, b->len);
    s[b->len] = 0;
    return s;
}

/* ---- dtypes ---- */

/* Element types the front end accepts (those with a size and a use in pippyc). */
static int pippy_onnx_dtype_ok(int32_t dt)
{
    switch (dt) {
    case PIPPY_DT_FLOAT:
    case PIPPY_DT_UINT8:
    case PIPPY_DT_INT8:
    case PIPPY_DT_INT32:
    case PIPPY_DT_INT64:
    case PIPPY_DT_BOOL:
    case PIPPY_DT_DOUBLE:
        return 1;
    default:
        return 0;
    }
}

#define PIPPY_ONNX_DTYPES "float, double, int64, int32, int8, uint8 and bool"

/* ---- tensors (initializers and TENSOR attributes) ---- */

/* Type and shape of a TensorProto; *bytes its dense size. what: "initializer 'W'". */
static pippy_status pippy_onnx_tensor_desc(const pippy_loader *L, const char *what, const Onnx__TensorProto *tp,
                                           pippy_tdesc *t, size_t *bytes)
{
    memset(t, 0, sizeof *t);
    int32_t dt = tp->has_data_type ? tp->data_type : PIPPY_DT_UNDEFINED;
    if (!pippy_onnx_dtype_ok(dt))
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: %s has dtype %s (%d); pippyc handles " PIPPY_ONNX_DTYPES,
                          L->path, what, pippy_dtype_name(dt), (int)dt);
    if (tp->n_dims > PIPPY_MAX_RANK)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: %s has rank %zu; pippyc handles rank <= %d", L->path, what,
                          tp->n_dims, PIPPY_MAX_RANK);
    t->dtype = dt;
    t->rank = (int32_t)tp->n_dims;
    int64_t numel = 1;
    for (size_t i = 0; i < tp->n_dims; i++) {
        int64_t d = tp->dims[i];
        if (d < 0)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: %s has dimension %zu of size %" PRId64 " (expected >= 0)",
                              L->path, what, i, d);
        t->dims[i] = d;
        if (__builtin_mul_overflow(numel, d, &numel))
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: %s has a shape whose element count overflows 64 bits",
                              L->path, what);
    }
    size_t es = pippy_dtype_size(dt);
    if ((uint64_t)numel > (uint64_t)INT64_MAX / es)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: %s has %" PRId64 " elements, too many to address", L->path, what,
                          numel);
    *bytes = (size_t)numel * es;
    return PIPPY_OK;
}

/* Parse a non-negative decimal (external data offset / length). */
static int pippy_parse_u64(const char *s, uint64_t *v)
{
    if (!s || !*s)
        return -1;
    uint64_t r = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        if (__builtin_mul_overflow(r, 10, &r) || __builtin_add_overflow(r, (uint64_t)(*p - '0'), &r))
            return -1;
    }
    *v = r;
    return 0;
}

/* An external data location must name a file inside the model's folder, as the ONNX checker
 * requires: relative, without ".." components (the symlink part is checked once it is open). */
static pippy_status pippy_onnx_ext_location_ok(const pippy_loader *L, const char *what, const char *loc)
{
    if (loc[0] == '/')
        return pippy_fail(PIPPY_ERR_INVALID,
                          "%s: %s: external data location '%s' is an absolute path; it must be relative to the "
                          "model's folder",
                          L->path, what, loc);
    for (const char *c = loc; *c;) {
        size_t k = strcspn(c, "/");
        if (k == 2 && c[0] == '.' && c[1] == '.')
            return pippy_fail(PIPPY_ERR_INVALID,
                              "%s: %s: external data location '%s' contains '..'; it must stay inside the model's "
                              "folder",
                              L->path, what, loc);
        c += k;
        c += *c == '/';
    }
    return PIPPY_OK;
}

/* The file open on fd lies inside the model's folder (no symlinked folder leads out of it). */
static pippy_status pippy_onnx_ext_inside(const pippy_loader *L, const char *what, const char *location, int fd)
{
    char link[64], real[PATH_MAX], base[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, real, sizeof real - 1);
    if (n <= 0 || !realpath(L->dir, base))
        return PIPPY_ONNX_SYS_FAIL(PIPPY_ERR_IO, "%s: %s: cannot resolve external data file '%s': %s", L->path,
                                   what, location, strerror(errno));
    real[n] = 0;
    size_t bl = strlen(base);
    if (strncmp(real, base, bl) != 0 || (real[bl] != '/' && strcmp(base, "/") != 0))
        return pippy_fail(PIPPY_ERR_INVALID,
                          "%s: %s: external data location '%s' leads out of the model's folder %s (to %s)", L->path,
                          what, location, base, real);
    return PIPPY_OK;
}

/* Map an external data file once per load; registered with the graph. */
static pippy_status pippy_onnx_ext_map(pippy_loader *L, const char *what, const char *file, const char *location,
                                       size_t need, uint64_t offset, pippy_ext_file **out)
{
    for (int32_t i = 0; i < L->n_ext; i++)
        if (strcmp(L->ext[i].file, file) == 0) {
            *out = &L->ext[i];
            return PIPPY_OK;
        }
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0 && errno == ELOOP)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: %s: external data file '%s' (location '%s') is a symbolic link",
                          L->path, what, file, location);
    if (fd < 0)
        return PIPPY_ONNX_SYS_FAIL(PIPPY_ERR_IO,
                                   "%s: %s: cannot open external data file '%s' (location '%s'): %s (expected %zu "
                                   "bytes at offset %" PRIu64 ")",
                                   L->path, what, file, location, strerror(errno), need, offset);
    pippy_status inside = pippy_onnx_ext_inside(L, what, location, fd);
    if (inside != PIPPY_OK) {
        close(fd);
        return inside;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return PIPPY_ONNX_SYS_FAIL(PIPPY_ERR_IO, "%s: %s: cannot stat external data file '%s': %s", L->path, what,
                                   file, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return pippy_fail(PIPPY_ERR_IO, "%s: %s: external data file '%s' (location '%s') is not a regular file",
                          L->path, what, file, location);
    }
    size_t len = (size_t)st.st_size;
    void *addr = NULL;
    if (len) {
        addr = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (addr == MAP_FAILED) {
            int e = errno;
            close(fd);
            return PIPPY_ONNX_SYS_FAIL(PIPPY_ERR_IO, "%s: %s: cannot map external data file '%s' (%zu bytes): %s",
                                       L->path, what, file, len, strerror(e));
        }
    }
    close(fd);
    if (addr && pippy_graph_keep_map(L->g, addr, len) != PIPPY_OK) {
        munmap(addr, len);
        return pippy_onnx_nomem(L);
    }
    pippy_ext_file *e = realloc(L->ext, (size_t)(L->n_ext + 1) * sizeof *e);
    if (!e)
        return pippy_onnx_nomem(L); /* the mapping is already owned by the graph */
    L->ext = e;
    e[L->n_ext].file = strdup(file);
    if (!e[L->n_ext].file)
        return pippy_onnx_nomem(L);
    e[L->n_ext].addr = addr;
    e[L->n_ext].len = len;
    *out = &e[L->n_ext++];
    return PIPPY_OK;
}

static pippy_status pippy_onnx_tensor_external(pippy_loader *L, const char *what, const Onnx__TensorProto *tp,
                                               const pippy_tdesc *t, size_t bytes, void **data, int32_t *owned)
{
    const char *loc = NULL, *off_s = NULL, *len_s = NULL;
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const Onnx__StringStringEntryProto *kv = tp->external_data[i];
        if (!kv || !kv->key)
            continue;
        const char *val = kv->value ? kv->value : "";
        if (strcmp(kv->key, "location") == 0)
            loc = val;
        else if (strcmp(kv->key, "offset") == 0)
            off_s = val;
        else if (strcmp(kv->key, "length") == 0)
            len_s = val;
    }
    char tbuf[160];
    pippy_tdesc_str(t, tbuf, sizeof tbuf);
    if (!loc || !*loc)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: %s: data_location is EXTERNAL but external_data has no 'location'",
                          L->path, what);
    uint64_t offset = 0, length = bytes;
    if (off_s && pippy_parse_u64(off_s, &offset) != 0)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: %s: external data offset '%s' is not a non-negative integer",
                          L->path, what, off_s);
    if (len_s && pippy_parse_u64(len_s, &length) != 0)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: %s: external data length '%s' is not a non-negative integer",
                          L->path, what, len_s);
    if (length != bytes)
        return pippy_fail(PIPPY_ERR_FORMAT,
                          "%s: %s: expected %zu bytes for %s in external data file '%s', found length %" PRIu64,
                          L->path, what, bytes, tbuf, loc, length);
    PIPPY_TRY(pippy_onnx_ext_location_ok(L, what, loc));
    size_t n = strlen(L->dir) + strlen(loc) + 2;
    char *file = malloc(n);
    if (!file)
        return pippy_onnx_nomem(L);
    snprintf(file, n, "%s/%s", L->dir, loc);
    pippy_ext_file *f = NULL;
    pippy_status st = pippy_onnx_ext_map(L, what, file, loc, bytes, offset, &f);
    if (st == PIPPY_OK && (offset > f->len || f->len - offset < bytes))
        st = pippy_fail(PIPPY_ERR_IO,
                        "%s: %s: external data file '%s' is %zu bytes; expected at least %" PRIu64
                        " (offset %" PRIu64 " + length %zu for %s)",
                        L->path, what, file, f->len, offset + (uint64_t)bytes, offset, bytes, tbuf);
    free(file);
    if (st != PIPPY_OK)
        return st;
    if (bytes == 0) {
        *data = malloc(1);
        *owned = 1;
        return *data ? PIPPY_OK : pippy_onnx_nomem(L);
    }
    unsigned char *p = (unsigned char *)f->addr + offset;
    if ((uintptr_t)p % pippy_dtype_size(t->dtype) == 0) {
        *data = p; /* read-only, lives as long as the graph */
        *owned = 0;
        return PIPPY_OK;
    }
    /* Misaligned for its element type: copy. */
    *data = malloc(bytes);
    if (!*data)
        return pippy_onnx_nomem(L);
    memcpy(*data, p, bytes);
    *owned = 1;
    return PIPPY_OK;
}

/* Dense data of tp: *data malloc'd (*owned = 1) or pointing into an external mapping (*owned = 0).
 * May take over tp's raw_data buffer. */
static pippy_status pippy_onnx_tensor_data(pippy_loader *L, const char *what, Onnx__TensorProto *tp,
                                           const pippy_tdesc *t, size_t bytes, void **data, int32_t *owned)
{
    *data = NULL;
    *owned = 0;
    char tbuf[160];
    pippy_tdesc_str(t, tbuf, sizeof tbuf);
    if (tp->has_data_location && tp->data_location != ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT) {
        if (tp->data_location != ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: %s has data_location %d (expected 0 DEFAULT or 1 EXTERNAL)",
                              L->path, what, (int)tp->data_location);
        return pippy_onnx_tensor_external(L, what, tp, t, bytes, data, owned);
    }
    if (tp->has_raw_data) {
        if (tp->raw_data.len != bytes)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: %s: expected %zu bytes for %s, found %zu", L->path, what, bytes,
                              tbuf, tp->raw_data.len);
        if (bytes && tp->raw_data.data) {
            /* Take over the buffer protobuf-c allocated with pippy_pb_allocator (malloc). */
            *data = tp->raw_data.data;
            tp->raw_data.data = NULL;
            tp->raw_data.len = 0;
        } else {
            *data = malloc(1);
        }
        *owned = 1;
        return *data ? PIPPY_OK : pippy_onnx_nomem(L);
    }
    /* Typed fields. */
    size_t numel = bytes / pippy_dtype_size(t->dtype);
    const char *field;
    size_t found;
    switch (t->dtype) {
    case PIPPY_DT_FLOAT: field = "float_data"; found = tp->n_float_data; break;
    case PIPPY_DT_INT64: field = "int64_data"; found = tp->n_int64_data; break;
    case PIPPY_DT_DOUBLE: field = "double_data"; found = tp->n_double_data; break;
    default: field = "int32_data"; found = tp->n_int32_data; break;
    }
    if (found != numel)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: %s: expected %zu values in %s for %s, found %zu%s", L->path, what,
                          numel, field, tbuf, found, found ? "" : " (and no raw_data)");
    unsigned char *d = malloc(bytes ? bytes : 1);
    if (!d)
        return pippy_onnx_nomem(L);
    if (!bytes) { /* zero elements: the typed arrays are NULL */
        *data = d;
        *owned = 1;
        return PIPPY_OK;
    }
    switch (t->dtype) {
    case PIPPY_DT_FLOAT: memcpy(d, tp->float_data, bytes); break;
    case PIPPY_DT_INT64: memcpy(d, tp->int64_data, bytes); break;
    case PIPPY_DT_DOUBLE: memcpy(d, tp->double_data, bytes); break;
    case PIPPY_DT_INT32: memcpy(d, tp->int32_data, bytes); break;
    case PIPPY_DT_INT8:
        for (size_t i = 0; i < numel; i++)
            ((int8_t *)d)[i] = (int8_t)tp->int32_data[i];
        break;
    case PIPPY_DT_UINT8:
        for (size_t i = 0; i < numel; i++)
            d[i] = (uint8_t)tp->int32_data[i];
        break;
    case PIPPY_DT_BOOL:
        for (size_t i = 0; i < numel; i++)
            d[i] = tp->int32_data[i] != 0;
        break;
    default:
        free(d);
        return pippy_fail(PIPPY_ERR_INTERNAL, "%s: %s: no typed-field reader for %s", L->path, what, tbuf);
    }
    *data = d;
    *owned = 1;
    return PIPPY_OK;
}

/* ---- value types of graph inputs / outputs ---- */

/* Copy the declared type of vi into v. need: 1 for graph inputs (a tensor type with an element type
 * required). No shape at all leaves rank 0 and shape_known 0. */
static pippy_status pippy_onnx_value_type(const pippy_loader *L, const char *what, const Onnx__ValueInfoProto *vi,
                                          pippy_value *v, int need)
{
    const Onnx__TypeProto *tp = vi->type;
    if (!tp)
        return need ? pippy_fail(PIPPY_ERR_INVALID, "%s: %s '%s' declares no type", L->path, what, vi->name)
                    : PIPPY_OK;
    if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return need ? pippy_fail(PIPPY_ERR_UNSUPPORTED,
                                 "%s: %s '%s' is not a tensor (sequence, map and optional types are not supported)",
                                 L->path, what, vi->name)
                    : PIPPY_OK;
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    int32_t dt = tt->has_elem_type ? tt->elem_type : PIPPY_DT_UNDEFINED;
    if (dt == PIPPY_DT_UNDEFINED) {
        if (need)
            return pippy_fail(PIPPY_ERR_INVALID, "%s: %s '%s' declares no element type", L->path, what, vi->name);
    } else if (!pippy_onnx_dtype_ok(dt)) {
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: %s '%s' has dtype %s (%d); pippyc handles " PIPPY_ONNX_DTYPES,
                          L->path, what, vi->name, pippy_dtype_name(dt), (int)dt);
    }
    v->t.dtype = dt;
    const Onnx__TensorShapeProto *sh = tt->shape;
    if (!sh)
        return PIPPY_OK; /* rank unknown: rank 0 with shape_known 0, for --shape to bind */
    if (sh->n_dim > PIPPY_MAX_RANK)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: %s '%s' has rank %zu; pippyc handles rank <= %d", L->path,
                          what, vi->name, sh->n_dim, PIPPY_MAX_RANK);
    v->t.rank = (int32_t)sh->n_dim;
    int known = 1;
    int64_t numel = 1;
    for (size_t i = 0; i < sh->n_dim; i++) {
        const Onnx__TensorShapeProto__Dimension *d = sh->dim[i];
        free(v->dim_param[i]);
        v->dim_param[i] = NULL;
        v->t.dims[i] = -1;
        if (!d)
            continue;
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value >= 0) {
            v->t.dims[i] = d->dim_value;
            if (__builtin_mul_overflow(numel, d->dim_value, &numel))
                return pippy_fail(PIPPY_ERR_SHAPE, "%s: %s '%s' has a shape whose element count overflows 64 bits",
                                  L->path, what, vi->name);
        } else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && d->dim_param &&
                   d->dim_param[0]) {
            v->dim_param[i] = strdup(d->dim_param);
            if (!v->dim_param[i])
                return pippy_onnx_nomem(L);
        }
        if (v->t.dims[i] < 0)
            known = 0;
    }
    v->shape_known = known && dt != PIPPY_DT_UNDEFINED;
    return PIPPY_OK;
}

/* ---- node names ---- */

static size_t pippy_names_slot(const pippy_loader *L, const char *s)
{
    size_t mask = L->names_cap - 1;
    size_t h = (size_t)pippy_fnv1a(s, strlen(s), PIPPY_FNV_SEED) & mask;
    while (L->names[h] && strcmp(L->names[h], s) != 0)
        h = (h + 1) & mask;
    return h;
}

static int pippy_names_has(const pippy_loader *L, const char *s) { return L->names[pippy_names_slot(L, s)] != NULL; }

/* s must outlive the loader's use of the set. */
static void pippy_names_add(pippy_loader *L, const char *s) { L->names[pippy_names_slot(L, s)] = s; }

/* ---- attributes ---- */

static const char *pippy_onnx_attr_type_name(int t)
{
    switch (t) {
    case 0: return "UNDEFINED";
    case 1: return "FLOAT";
    case 2: return "INT";
    case 3: return "STRING";
    case 4: return "TENSOR";
    case 5: return "GRAPH";
    case 6: return "FLOATS";
    case 7: return "INTS";
    case 8: return "STRINGS";
    case 9: return "TENSORS";
    case 10: return "GRAPHS";
    case 11: return "SPARSE_TENSOR";
    case 12: return "SPARSE_TENSORS";
    case 13: return "TYPE_PROTO";
    case 14: return "TYPE_PROTOS";
    default: return "unknown";
    }
}

/* Attribute type from the field that is set (files written before AttributeProto.type existed). */
static int pippy_onnx_attr_guess(const Onnx__AttributeProto *ap)
{
    if (ap->has_f) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    if (ap->has_i) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    if (ap->has_s) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    if (ap->t) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
    if (ap->g) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
    if (ap->n_floats) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
    if (ap->n_ints) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    if (ap->n_strings) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS;
    if (ap->n_tensors) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSORS;
    if (ap->n_graphs) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPHS;
    return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED;
}

/* Temporaries of one node's attribute conversion. */
typedef struct {
    void **p;
    size_t n, cap;
} pippy_scratch;

static int pippy_scratch_add(pippy_scratch *s, void *p)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        void **q = realloc(s->p, cap * sizeof *q);
        if (!q)
            return -1;
        s->p = q;
        s->cap = cap;
    }
    s->p[s->n++] = p;
    return 0;
}

static void pippy_scratch_free(pippy_scratch *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->p[i]);
    free(s->p);
}

static pippy_status pippy_onnx_attr(pippy_loader *L, const char *node_what, Onnx__AttributeProto *ap, pippy_attr *a,
                                    pippy_scratch *sc)
{
    const char *an = ap->name;
    memset(a, 0, sizeof *a);
    a->name = an;
    if (ap->ref_attr_name)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "%s: %s: attribute '%s' refers to function attribute '%s' (functions are not supported)",
                          L->path, node_what, an, ap->ref_attr_name);
    int type = ap->has_type ? (int)ap->type : pippy_onnx_attr_guess(ap);
    a->type = type;
    switch (type) {
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT:
        a->f = ap->f;
        return PIPPY_OK;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT:
        a->i = ap->i;
        return PIPPY_OK;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING: {
        char *s = pippy_bytes_str(&ap->s);
        if (!s || pippy_scratch_add(sc, s) != 0) {
            free(s);
            return pippy_onnx_nomem(L);
        }
        a->s = s;
        return PIPPY_OK;
    }
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
        if (ap->n_floats > INT32_MAX)
            break;
        a->n = (int32_t)ap->n_floats;
        a->floats = ap->floats;
        return PIPPY_OK;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
        if (ap->n_ints > INT32_MAX)
            break;
        a->n = (int32_t)ap->n_ints;
        a->ints = ap->ints;
        return PIPPY_OK;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS: {
        if (ap->n_strings > INT32_MAX)
            break;
        const char **ss = calloc(ap->n_strings + 1, sizeof *ss);
        if (!ss || pippy_scratch_add(sc, ss) != 0) {
            free(ss);
            return pippy_onnx_nomem(L);
        }
        for (size_t k = 0; k < ap->n_strings; k++) {
            char *s = pippy_bytes_str(&ap->strings[k]);
            if (!s || pippy_scratch_add(sc, s) != 0) {
                free(s);
                return pippy_onnx_nomem(L);
            }
            ss[k] = s;
        }
        a->n = (int32_t)ap->n_strings;
        a->strings = ss;
        return PIPPY_OK;
    }
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR: {
        if (!ap->t)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: %s: attribute '%s' has type TENSOR but holds no tensor",
                              L->path, node_what, an);
        char what[640];
        snprintf(what, sizeof what, "%s: attribute '%s'", node_what, an);
        size_t bytes;
        void *data;
        int32_t owned;
        PIPPY_TRY(pippy_onnx_tensor_desc(L, what, ap->t, &a->t, &bytes));
        PIPPY_TRY(pippy_onnx_tensor_data(L, what, ap->t, &a->t, bytes, &data, &owned));
        if (owned && pippy_scratch_add(sc, data) != 0) {
            free(data);
            return pippy_onnx_nomem(L);
        }
        a->t_data = data;
        return PIPPY_OK;
    }
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH:
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPHS:
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "%s: %s: attribute '%s' is a subgraph (%s); control flow (If, Loop, Scan) is not supported",
                          L->path, node_what, an, pippy_onnx_attr_type_name(type));
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED:
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: %s: attribute '%s' has no type and no value", L->path, node_what,
                          an);
    default:
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "%s: %s: attribute '%s' has type %s (%d), which pippyc does not handle", L->path, node_what,
                          an, pippy_onnx_attr_type_name(type), type);
    }
    return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: %s: attribute '%s' has too many elements", L->path, node_what, an);
}

static pippy_status pippy_onnx_node_attrs(pippy_loader *L, Onnx__NodeProto *np, int32_t idx)
{
    size_t na = np->n_attribute;
    if (!na)
        return PIPPY_OK;
    const pippy_node *n = &L->g->nodes[idx];
    char node_what[512];
    snprintf(node_what, sizeof node_what, "node '%s' (%s)", n->name, n->op);
    if (na > INT32_MAX)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: %s has too many attributes", L->path, node_what);
    pippy_attr *a = calloc(na, sizeof *a);
    if (!a)
        return pippy_onnx_nomem(L);
    pippy_scratch sc = {0};
    pippy_status st = PIPPY_OK;
    for (size_t k = 0; k < na && st == PIPPY_OK; k++) {
        Onnx__AttributeProto *ap = np->attribute[k];
        if (!ap || !ap->name || !ap->name[0]) {
            st = pippy_fail(PIPPY_ERR_FORMAT, "%s: %s: attribute #%zu has no name", L->path, node_what, k);
            break;
        }
        for (size_t j = 0; j < k; j++)
            if (strcmp(np->attribute[j]->name, ap->name) == 0) {
                st = pippy_fail(PIPPY_ERR_INVALID, "%s: %s: attribute '%s' appears twice", L->path, node_what,
                                ap->name);
                break;
            }
        if (st == PIPPY_OK)
            st = pippy_onnx_attr(L, node_what, ap, &a[k], &sc);
    }
    if (st == PIPPY_OK)
        st = pippy_node_set_attrs(&L->g->nodes[idx], a, (int32_t)na);
    pippy_scratch_free(&sc);
    free(a);
    return st;
}

/* ---- the graph ---- */

static pippy_status pippy_onnx_versions(pippy_loader *L, const Onnx__ModelProto *m)
{
    pippy_graph *g = L->g;
    g->ir_version = m->has_ir_version ? m->ir_version : 0;
    if (g->ir_version < PIPPY_ONNX_MIN_IR_VERSION)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: ONNX IR version too old (expected >= %d, found %" PRId64 ")",
                          L->path, PIPPY_ONNX_MIN_IR_VERSION, g->ir_version);
    int64_t opset = 0;
    int found = 0;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if (!o || (o->domain && o->domain[0] && strcmp(o->domain, "ai.onnx") != 0))
            continue;
        int64_t v = o->has_version ? o->version : 0;
        if (found++ && v != opset)
            return pippy_fail(PIPPY_ERR_INVALID,
                              "%s: opset_import lists the default ONNX domain twice (versions %" PRId64 " and %" PRId64
                              ")",
                              L->path, opset, v);
        opset = v;
    }
    if (!found)
        return pippy_fail(PIPPY_ERR_INVALID,
                          "%s: opset_import has no entry for the default ONNX domain (expected opset >= %d, found "
                          "none)",
                          L->path, PIPPY_ONNX_MIN_OPSET);
    if (opset < PIPPY_ONNX_MIN_OPSET)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "%s: opset too old (expected default-domain opset >= %d, found %" PRId64
                          "); convert the model with onnx.version_converter",
                          L->path, PIPPY_ONNX_MIN_OPSET, opset);
    if (opset > pippy_onnx_max_opset)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "%s: default-domain opset %" PRId64 " is newer than the newest this pippyc knows (%d)",
                          L->path, opset, pippy_onnx_max_opset);
    g->opset = (int32_t)opset;

    const char *pn = m->producer_name ? m->producer_name : "";
    const char *pv = m->producer_version ? m->producer_version : "";
    size_t n = strlen(pn) + strlen(pv) + 2;
    g->producer = malloc(n);
    if (!g->producer)
        return pippy_onnx_nomem(L);
    snprintf(g->producer, n, "%s%s%s", pn, pn[0] && pv[0] ? " " : "", pv);

    /* the model's metadata_props, then the graph's (torch.export's graph signature is there) */
    size_t n_graph = m->graph ? m->graph->n_metadata_props : 0, n_all = m->n_metadata_props + n_graph;
    if (n_all) {
        if (n_all > INT32_MAX)
            return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: too many metadata_props", L->path);
        g->meta = calloc(n_all, sizeof *g->meta);
        if (!g->meta)
            return pippy_onnx_nomem(L);
        for (size_t i = 0; i < n_all; i++) {
            const Onnx__StringStringEntryProto *kv =
                i < m->n_metadata_props ? m->metadata_props[i] : m->graph->metadata_props[i - m->n_metadata_props];
            pippy_meta *mm = &g->meta[g->n_meta++];
            mm->key = pippy_strdup_or_empty(kv ? kv->key : NULL);
            mm->value = pippy_strdup_or_empty(kv ? kv->value : NULL);
            if (!mm->key || !mm->value)
                return pippy_onnx_nomem(L);
        }
    }
    return PIPPY_OK;
}

static pippy_status pippy_onnx_initializers(pippy_loader *L, const Onnx__GraphProto *gp)
{
    pippy_graph *g = L->g;
    for (size_t i = 0; i < gp->n_initializer; i++) {
        Onnx__TensorProto *tp = gp->initializer[i];
        if (!tp || !tp->name || !tp->name[0])
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: initializer #%zu has no name", L->path, i);
        if (pippy_graph_find(g, tp->name) >= 0)
            return pippy_fail(PIPPY_ERR_INVALID, "%s: initializer '%s' appears twice", L->path, tp->name);
        char what[512];
        snprintf(what, sizeof what, "initializer '%s'", tp->name);
        pippy_tdesc t;
        size_t bytes;
        PIPPY_TRY(pippy_onnx_tensor_desc(L, what, tp, &t, &bytes));
        void *data;
        int32_t owned;
        PIPPY_TRY(pippy_onnx_tensor_data(L, what, tp, &t, bytes, &data, &owned));
        int32_t vi = pippy_graph_value(g, tp->name);
        if (vi < 0) {
            if (owned)
                free(data);
            return pippy_onnx_nomem(L);
        }
        pippy_value *v = &g->values[vi];
        v->kind = t.dtype == PIPPY_DT_FLOAT ? PIPPY_VAL_PARAM : PIPPY_VAL_CONST;
        v->t = t;
        v->shape_known = 1;
        v->data = data;
        v->data_owned = owned;
    }
    return PIPPY_OK;
}

static pippy_status pippy_onnx_inputs(pippy_loader *L, const Onnx__GraphProto *gp)
{
    pippy_graph *g = L->g;
    g->inputs = malloc((gp->n_input ? gp->n_input : 1) * sizeof *g->inputs);
    if (!g->inputs)
        return pippy_onnx_nomem(L);
    for (size_t i = 0; i < gp->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        if (!vi || !vi->name || !vi->name[0])
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: graph input #%zu has no name", L->path, i);
        int32_t id = pippy_graph_find(g, vi->name);
        if (id >= 0) {
            if (g->values[id].kind == PIPPY_VAL_INPUT)
                return pippy_fail(PIPPY_ERR_INVALID, "%s: graph input '%s' is listed twice", L->path, vi->name);
            continue; /* shadowed by an initializer: a parameter, not a runtime input */
        }
        id = pippy_graph_value(g, vi->name);
        if (id < 0)
            return pippy_onnx_nomem(L);
        pippy_value *v = &g->values[id];
        v->kind = PIPPY_VAL_INPUT;
        PIPPY_TRY(pippy_onnx_value_type(L, "graph input", vi, v, 1));
        g->inputs[g->n_inputs++] = id;
    }
    return PIPPY_OK;
}

static pippy_status pippy_onnx_nodes(pippy_loader *L, Onnx__GraphProto *gp)
{
    pippy_graph *g = L->g;
    size_t nn = gp->n_node;
    if (nn > INT32_MAX / 4)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: %zu nodes are too many", L->path, nn);
    for (size_t i = 0; i < nn; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        if (!np || !np->op_type || !np->op_type[0])
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: node #%zu ('%s') has no op_type", L->path, i,
                              np && np->name ? np->name : "");
    }
    /* Names: the file's names where present and unique, then "<op>_<index>" for the rest. */
    L->names_cap = 16;
    while (L->names_cap < 2 * nn + 2)
        L->names_cap *= 2;
    L->names = calloc(L->names_cap, sizeof *L->names);
    char *keep = calloc(nn + 1, 1);
    if (!L->names || !keep) {
        free(keep);
        return pippy_onnx_nomem(L);
    }
    for (size_t i = 0; i < nn; i++) {
        const char *s = gp->node[i]->name;
        if (s && s[0] && !pippy_names_has(L, s)) {
            pippy_names_add(L, s);
            keep[i] = 1;
        }
    }
    pippy_status st = PIPPY_OK;
    int32_t *ins = NULL, *outs = NULL;
    char *gen = NULL;
    for (size_t i = 0; i < nn && st == PIPPY_OK; i++) {
        Onnx__NodeProto *np = gp->node[i];
        const char *name = np->name;
        if (!keep[i]) {
            size_t cap = strlen(np->op_type) + 48;
            gen = malloc(cap);
            if (!gen) {
                st = pippy_onnx_nomem(L);
                break;
            }
            snprintf(gen, cap, "%s_%zu", np->op_type, i);
            for (unsigned k = 1; pippy_names_has(L, gen); k++)
                snprintf(gen, cap, "%s_%zu_%u", np->op_type, i, k);
            name = gen;
        }
        const char *domain = np->domain ? np->domain : "";
        if (strcmp(domain, "ai.onnx") == 0)
            domain = "";
        if (np->n_input > INT32_MAX / 4 || np->n_output > INT32_MAX / 4) {
            st = pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: node '%s' (%s) has too many inputs or outputs", L->path, name,
                            np->op_type);
            break;
        }
        ins = malloc((np->n_input + 1) * sizeof *ins);
        outs = malloc((np->n_output + 1) * sizeof *outs);
        if (!ins || !outs) {
            st = pippy_onnx_nomem(L);
            break;
        }
        for (size_t k = 0; k < np->n_input && st == PIPPY_OK; k++) {
            const char *s = np->input[k];
            ins[k] = (s && s[0]) ? pippy_graph_value(g, s) : -1;
            if (s && s[0] && ins[k] < 0)
                st = pippy_onnx_nomem(L);
        }
        /* Trailing empty outputs are dropped; inner ones become placeholders (-2) named later. */
        size_t no = np->n_output;
        while (no && (!np->output[no - 1] || !np->output[no - 1][0]))
            no--;
        for (size_t k = 0; k < no && st == PIPPY_OK; k++) {
            const char *s = np->output[k];
            outs[k] = (s && s[0]) ? pippy_graph_value(g, s) : -2;
            if (s && s[0] && outs[k] < 0)
                st = pippy_onnx_nomem(L);
        }
        if (st != PIPPY_OK)
            break;
        int32_t idx =
            pippy_graph_add_node(g, name, np->op_type, domain, (int32_t)np->n_input, ins, (int32_t)no, outs);
        if (idx < 0) {
            st = pippy_onnx_nomem(L);
            break;
        }
        if (name == gen)
            pippy_names_add(L, g->nodes[idx].name);
        free(gen);
        gen = NULL;
        free(ins);
        free(outs);
        ins = outs = NULL;
        st = pippy_onnx_node_attrs(L, np, idx);
    }
    free(gen);
    free(ins);
    free(outs);
    free(keep);
    return st;
}

static pippy_status pippy_onnx_outputs(pippy_loader *L, const Onnx__GraphProto *gp)
{
    pippy_graph *g = L->g;
    g->outputs = malloc((gp->n_output ? gp->n_output : 1) * sizeof *g->outputs);
    if (!g->outputs)
        return pippy_onnx_nomem(L);
    for (size_t i = 0; i < gp->n_output; i++) {
        const Onnx__ValueInfoProto *vi = gp->output[i];
        if (!vi || !vi->name || !vi->name[0])
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: graph output #%zu has no name", L->path, i);
        int32_t id = pippy_graph_value(g, vi->name);
        if (id < 0)
            return pippy_onnx_nomem(L);
        pippy_value *v = &g->values[id];
        if (v->is_output)
            return pippy_fail(PIPPY_ERR_INVALID, "%s: graph output '%s' is listed twice", L->path, vi->name);
        v->is_output = 1;
        g->outputs[g->n_outputs++] = id;
        if (v->kind == PIPPY_VAL_INTERMEDIATE)
            PIPPY_TRY(pippy_onnx_value_type(L, "graph output", vi, v, 0));
    }
    return PIPPY_OK;
}

/* Name the placeholder values of inner empty node outputs ("" in the middle of a node's outputs). */
static pippy_status pippy_onnx_placeholders(pippy_loader *L)
{
    pippy_graph *g = L->g;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        for (int32_t k = 0; k < g->nodes[i].n_out; k++) {
            if (g->nodes[i].out[k] != -2)
                continue;
            const char *nn = g->nodes[i].name;
            size_t cap = strlen(nn) + 64;
            char *s = malloc(cap);
            if (!s)
                return pippy_onnx_nomem(L);
            snprintf(s, cap, "%s:unused_output_%d", nn, (int)k);
            for (unsigned j = 1; pippy_graph_find(g, s) >= 0; j++)
                snprintf(s, cap, "%s:unused_output_%d_%u", nn, (int)k, j);
            int32_t id = pippy_graph_value(g, s);
            free(s);
            if (id < 0)
                return pippy_onnx_nomem(L);
            g->nodes[i].out[k] = id;
        }
    }
    return PIPPY_OK;
}

static const char *pippy_kind_name(int32_t kind)
{
    switch (kind) {
    case PIPPY_VAL_INPUT: return "a graph input";
    case PIPPY_VAL_PARAM:
    case PIPPY_VAL_CONST: return "an initializer";
    default: return "an intermediate";
    }
}

/* Every value has at most one writer, and no node writes an input or initializer. */
static pippy_status pippy_onnx_writers(pippy_loader *L)
{
    pippy_graph *g = L->g;
    int32_t *writer = malloc((size_t)(g->n_values ? g->n_values : 1) * sizeof *writer);
    if (!writer)
        return pippy_onnx_nomem(L);
    for (int32_t v = 0; v < g->n_values; v++)
        writer[v] = -1;
    pippy_status st = PIPPY_OK;
    for (int32_t i = 0; i < g->n_nodes && st == PIPPY_OK; i++) {
        const pippy_node *n = &g->nodes[i];
        for (int32_t k = 0; k < n->n_out; k++) {
            int32_t v = n->out[k];
            const pippy_value *val = &g->values[v];
            if (val->kind != PIPPY_VAL_INTERMEDIATE) {
                st = pippy_fail(PIPPY_ERR_INVALID, "%s: node '%s' (%s) writes '%s', which is also %s", L->path,
                                n->name, n->op, val->name, pippy_kind_name(val->kind));
                break;
            }
            if (writer[v] >= 0) {
                const pippy_node *o = &g->nodes[writer[v]];
                st = pippy_fail(PIPPY_ERR_INVALID, "%s: value '%s' is written by node '%s' (%s) and by node '%s' (%s)",
                                L->path, val->name, o->name, o->op, n->name, n->op);
                break;
            }
            writer[v] = i;
        }
    }
    free(writer);
    return st;
}

static pippy_status pippy_onnx_check_outputs(pippy_loader *L)
{
    pippy_graph *g = L->g;
    for (int32_t i = 0; i < g->n_outputs; i++) {
        const pippy_value *v = &g->values[g->outputs[i]];
        if (v->kind == PIPPY_VAL_INTERMEDIATE && v->producer < 0)
            return pippy_fail(PIPPY_ERR_INVALID,
                              "%s: graph output '%s' is computed by no node and is no graph input or initializer",
                              L->path, v->name);
    }
    return PIPPY_OK;
}

static pippy_status pippy_onnx_build(pippy_loader *L, Onnx__ModelProto *m)
{
    Onnx__GraphProto *gp = m->graph;
    if (!gp) {
        if (!m->has_ir_version && !m->n_opset_import)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: not an ONNX model (no graph, no ir_version, no opset_import)",
                              L->path);
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: the ONNX model has no graph", L->path);
    }
    PIPPY_TRY(pippy_onnx_versions(L, m));
    PIPPY_TRY(pippy_onnx_initializers(L, gp));
    PIPPY_TRY(pippy_onnx_inputs(L, gp));
    PIPPY_TRY(pippy_onnx_nodes(L, gp));
    PIPPY_TRY(pippy_onnx_outputs(L, gp));
    PIPPY_TRY(pippy_onnx_placeholders(L));
    PIPPY_TRY(pippy_onnx_writers(L));
    PIPPY_TRY(pippy_graph_toposort(L->g));
    return pippy_onnx_check_outputs(L);
}

/* ---- the file ---- */

/* Map, hash and unpack the model file. */
static pippy_status pippy_onnx_read(pippy_loader *L, Onnx__ModelProto **out)
{
    *out = NULL;
    int fd = open(L->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block us */
    if (fd < 0)
        return PIPPY_ONNX_SYS_FAIL(PIPPY_ERR_IO, "%s: cannot open the model: %s", L->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return PIPPY_ONNX_SYS_FAIL(PIPPY_ERR_IO, "%s: cannot stat the model: %s", L->path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return pippy_fail(PIPPY_ERR_IO, "%s: not a regular file (expected an .onnx model file)", L->path);
    }
    size_t len = (size_t)st.st_size;
    if (len == 0) {
        close(fd);
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: not an ONNX model (the file is empty)", L->path);
    }
    if (len > PIPPY_ONNX_MAX_FILE) {
        close(fd);
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "%s: the model file is %zu bytes; protobuf cannot parse 2 GiB or more (expected <= %zu): "
                          "save it with its weights as ONNX external data",
                          L->path, len, PIPPY_ONNX_MAX_FILE);
    }
    void *addr = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (addr == MAP_FAILED)
        return PIPPY_ONNX_SYS_FAIL(PIPPY_ERR_IO, "%s: cannot map the model (%zu bytes): %s", L->path, len,
                                   strerror(e));
    L->g->hash = pippy_fnv1a(addr, len, PIPPY_FNV_SEED);
    Onnx__ModelProto *m = onnx__model_proto__unpack(&pippy_pb_allocator, len, addr);
    munmap(addr, len);
    if (!m)
        return pippy_fail(PIPPY_ERR_FORMAT,
                          "%s: not an ONNX model, or a truncated or corrupt one (protobuf could not parse its %zu "
                          "bytes)",
                          L->path, len);
    *out = m;
    return PIPPY_OK;
}

pippy_status pippy_onnx_load(const char *path, pippy_graph **out)
{
    if (!out)
        return pippy_fail(PIPPY_ERR_INTERNAL, "pippy_onnx_load: out is NULL");
    *out = NULL;
    if (!path || !path[0])
        return pippy_fail(PIPPY_ERR_USAGE, "no model file given (expected a path to an .onnx file)");
    pippy_loader L = {.path = path};
    L.g = pippy_graph_new();
    if (!L.g)
        return pippy_onnx_nomem(&L);
    L.g->path = strdup(path);
    const char *slash = strrchr(path, '/');
    if (!slash)
        L.dir = strdup(".");
    else if (slash == path)
        L.dir = strdup("/");
    else
        L.dir = strndup(path, (size_t)(slash - path));
    pippy_status st = (!L.g->path || !L.dir) ? pippy_onnx_nomem(&L) : PIPPY_OK;
    Onnx__ModelProto *m = NULL;
    if (st == PIPPY_OK)
        st = pippy_onnx_read(&L, &m);
    if (st == PIPPY_OK)
        st = pippy_onnx_build(&L, m);
    if (m)
        onnx__model_proto__free_unpacked(m, &pippy_pb_allocator);
    for (int32_t i = 0; i < L.n_ext; i++)
        free(L.ext[i].file);
    free(L.ext);
    free(L.names);
    free(L.dir);
    if (st != PIPPY_OK) {
        pippy_graph_free(L.g);
        return st;
    }
    *out = L.g;
    return PIPPY_OK;
}
