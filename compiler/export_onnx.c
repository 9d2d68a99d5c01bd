/* export_onnx.c — see export_onnx.h.
 *
 * The model is unpacked with protobuf-c; each initializer's data fields are pointed at the bytes
 * it should have (a new value, its external data mapped from disk, or its own raw_data) and the
 * message is packed again. The original field values are saved first and put back before the
 * message is freed, so protobuf-c frees only what it allocated. */
#include "export_onnx.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "ckpt.h"
#include "fileio.h"
#include "hash.h"
#include "onnx.pb-c.h"

#define PIPPY_EXPORT_INLINE_LIMIT (((size_t)2 << 30) - ((size_t)1 << 20))
#define PIPPY_EXPORT_EXTERNAL_MIN 1024 /* smallest initializer moved to the data file */
#define PIPPY_EXPORT_ALIGN 64

typedef struct {
    Onnx__TensorProto *tp;
    /* the fields as unpacked, put back before the message is freed */
    protobuf_c_boolean has_raw, has_loc;
    ProtobufCBinaryData raw;
    size_t n_float, n_ext;
    float *float_data;
    Onnx__TensorProto__DataLocation loc;
    Onnx__StringStringEntryProto **ext;
    /* what the output holds */
    const void *data; /* NULL: the tensor keeps its fields as they are */
    size_t bytes;
    int replaced, to_file;
    uint64_t offset; /* in the external data file */
    Onnx__StringStringEntryProto kv[3], *kvp[3];
    char off_s[24], len_s[24];
} pippy_ex_init;

typedef struct {
    void *addr;
    size_t len;
    dev_t dev;
    ino_t ino;
    char *path;
} pippy_ex_map;

typedef struct {
    const char *in, *out;
    char *in_dir, *data_path, *data_name;
    Onnx__ModelProto *m;
    pippy_ex_init *inits;
    size_t n_inits;
    int32_t *index; /* open addressing over inits by name */
    size_t index_cap;
    pippy_ex_map *maps;
    int n_maps;
    /* Identity(P) nodes replaced by an initializer of their output's name (a parameter the training
     * compile untied, compiler/train.h): the graph's arrays as unpacked (put back before the message
     * is freed), and ours */
    Onnx__NodeProto **node0;
    size_t n_node0;
    Onnx__TensorProto **init0;
    size_t n_init0;
    Onnx__NodeProto **nodes;
    Onnx__TensorProto **inits_new, *added;
    size_t n_added;
    /* BatchNormalization nodes written in inference form: their output counts as unpacked */
    Onnx__NodeProto **bn;
    size_t *bn_outputs, n_bn;
} pippy_exporter;

static pippy_status pippy_ex_nomem(const pippy_exporter *x)
{
    return pippy_fail(PIPPY_ERR_NOMEM, "export of %s: out of memory", x->in);
}

/* ---- the input model ---- */

static pippy_status pippy_ex_read(pippy_exporter *x)
{
    void *addr;
    size_t len;
    PIPPY_TRY(pippy_map_file(x->in, &addr, &len));
    if (len > (size_t)INT32_MAX) {
        pippy_unmap_file(addr, len);
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: %zu bytes; protobuf cannot parse 2 GiB or more", x->in, len);
    }
    x->m = len ? onnx__model_proto__unpack(NULL, len, addr) : NULL;
    pippy_unmap_file(addr, len);
    if (!x->m)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: not an ONNX model (protobuf could not parse its %zu bytes)", x->in,
                          len);
    if (!x->m->graph)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: the model has no graph", x->in);
    const char *slash = strrchr(x->in, '/');
    x->in_dir = slash ? strndup(x->in, (size_t)(slash - x->in) + (slash == x->in)) : strdup(".");
    return x->in_dir ? PIPPY_OK : pippy_ex_nomem(x);
}

static size_t pippy_ex_slot(const pippy_exporter *x, const char *name)
{
    size_t mask = x->index_cap - 1, h = (size_t)pippy_fnv1a(name, strlen(name), PIPPY_FNV_SEED) & mask;
    while (x->index[h] >= 0 && strcmp(x->inits[x->index[h]].tp->name, name) != 0)
        h = (h + 1) & mask;
    return h;
}

/* Save every initializer's data fields and index them by name. */
static pippy_status pippy_ex_index(pippy_exporter *x)
{
    Onnx__GraphProto *g = x->m->graph;
    x->n_inits = g->n_initializer;
    x->inits = calloc(x->n_inits + 1, sizeof *x->inits);
    for (x->index_cap = 16; x->index_cap < 2 * x->n_inits; x->index_cap *= 2)
        ;
    x->index = malloc(x->index_cap * sizeof *x->index);
    if (!x->inits || !x->index)
        return pippy_ex_nomem(x);
    memset(x->index, 0xff, x->index_cap * sizeof *x->index);
    for (size_t i = 0; i < x->n_inits; i++) {
        pippy_ex_init *e = &x->inits[i];
        Onnx__TensorProto *tp = e->tp = g->initializer[i];
        e->has_raw = tp->has_raw_data;
        e->raw = tp->raw_data;
        e->n_float = tp->n_float_data;
        e->float_data = tp->float_data;
        e->has_loc = tp->has_data_location;
        e->loc = tp->data_location;
        e->n_ext = tp->n_external_data;
        e->ext = tp->external_data;
        if (!tp->name || !tp->name[0])
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: initializer %zu has no name", x->in, i);
        size_t h = pippy_ex_slot(x, tp->name);
        if (x->index[h] >= 0)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: two initializers are named '%s'", x->in, tp->name);
        x->index[h] = (int32_t)i;
    }
    return PIPPY_OK;
}

/* Put the saved fields back (before onnx__model_proto__free_unpacked). */
static void pippy_ex_restore(pippy_exporter *x)
{
    for (size_t i = 0; x->inits && i < x->n_inits; i++) {
        pippy_ex_init *e = &x->inits[i];
        Onnx__TensorProto *tp = e->tp;
        if (!tp)
            continue;
        tp->has_raw_data = e->has_raw;
        tp->raw_data = e->raw;
        tp->n_float_data = e->n_float;
        tp->float_data = e->float_data;
        tp->has_data_location = e->has_loc;
        tp->data_location = e->loc;
        tp->n_external_data = e->n_ext;
        tp->external_data = e->ext;
    }
}

/* ---- external data of the input ---- */

static int pippy_ex_location_ok(const char *loc)
{
    if (!loc[0] || loc[0] == '/')
        return 0;
    for (const char *p = loc; *p;) { /* no ".." component */
        size_t k = strcspn(p, "/");
        if (k == 2 && p[0] == '.' && p[1] == '.')
            return 0;
        p += k + (p[k] == '/');
    }
    return 1;
}

static pippy_status pippy_ex_map_file(pippy_exporter *x, const char *path, pippy_ex_map **out)
{
    for (int i = 0; i < x->n_maps; i++)
        if (!strcmp(x->maps[i].path, path)) {
            *out = &x->maps[i];
            return PIPPY_OK;
        }
    pippy_ex_map *m = realloc(x->maps, (size_t)(x->n_maps + 1) * sizeof *m);
    if (!m)
        return pippy_ex_nomem(x);
    x->maps = m;
    m = &x->maps[x->n_maps];
    memset(m, 0, sizeof *m);
    struct stat st;
    if (stat(path, &st) == 0) {
        m->dev = st.st_dev;
        m->ino = st.st_ino;
    }
    PIPPY_TRY(pippy_map_file(path, &m->addr, &m->len));
    m->path = strdup(path);
    x->n_maps++;
    if (!m->path)
        return pippy_ex_nomem(x);
    *out = m;
    return PIPPY_OK;
}

/* e's bytes from its external data file. */
static pippy_status pippy_ex_external(pippy_exporter *x, pippy_ex_init *e)
{
    const char *loc = NULL, *off_s = "0", *len_s = NULL, *name = e->tp->name;
    for (size_t k = 0; k < e->n_ext; k++) {
        const Onnx__StringStringEntryProto *kv = e->ext[k];
        if (!kv || !kv->key || !kv->value)
            continue;
        if (!strcmp(kv->key, "location"))
            loc = kv->value;
        else if (!strcmp(kv->key, "offset"))
            off_s = kv->value;
        else if (!strcmp(kv->key, "length"))
            len_s = kv->value;
    }
    if (!loc || !pippy_ex_location_ok(loc))
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: initializer '%s': external data location '%s' (expected a path "
                          "relative to the model's folder, without '..')", x->in, name, loc ? loc : "(none)");
    char *end;
    errno = 0;
    unsigned long long off = strtoull(off_s, &end, 10), len = 0;
    int bad = errno || *end || off_s[0] == '-';
    if (len_s) {
        len = strtoull(len_s, &end, 10);
        bad |= errno || *end || len_s[0] == '-';
    }
    if (bad)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: initializer '%s': external data offset '%s' / length '%s' are not "
                          "whole numbers", x->in, name, off_s, len_s ? len_s : "");
    size_t n = strlen(x->in_dir) + strlen(loc) + 2;
    char *path = malloc(n);
    if (!path)
        return pippy_ex_nomem(x);
    snprintf(path, n, "%s/%s", x->in_dir, loc);
    pippy_ex_map *m = NULL;
    pippy_status st = pippy_ex_map_file(x, path, &m);
    free(path);
    if (st != PIPPY_OK)
        return pippy_error_prefix(st, "%s: initializer '%s'", x->in, name);
    if (!len_s)
        len = off <= m->len ? m->len - off : 0;
    if (off > m->len || len > m->len - off)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: initializer '%s': external data at offset %llu, length %llu, but %s "
                          "is %zu bytes", x->in, name, off, len, m->path, m->len);
    e->data = len ? (const char *)m->addr + off : "";
    e->bytes = (size_t)len;
    return PIPPY_OK;
}

/* ---- the new values ---- */

static void pippy_ex_shape_str(const Onnx__TensorProto *tp, char *b, size_t n)
{
    pippy_tdesc t = {.dtype = tp->has_data_type ? tp->data_type : 0, .rank = (int32_t)tp->n_dims};
    if (tp->n_dims > PIPPY_MAX_RANK) {
        snprintf(b, n, "%s of rank %zu", pippy_dtype_name(t.dtype), tp->n_dims);
        return;
    }
    for (size_t i = 0; i < tp->n_dims; i++)
        t.dims[i] = tp->dims[i];
    pippy_tdesc_str(&t, b, n);
}

static pippy_status pippy_ex_replace(pippy_exporter *x, const pippy_export_tensor *t)
{
    if (!t->name)
        return pippy_fail(PIPPY_ERR_INVALID, "export: a tensor without a name");
    int32_t i = x->index[pippy_ex_slot(x, t->name)];
    if (i < 0)
        return pippy_fail(PIPPY_ERR_INVALID, "export: tensor '%s': %s has no initializer of that name", t->name, x->in);
    pippy_ex_init *e = &x->inits[i];
    if (e->replaced)
        return pippy_fail(PIPPY_ERR_INVALID, "export: tensor '%s' given twice", t->name);
    const Onnx__TensorProto *tp = e->tp;
    int same = tp->has_data_type && tp->data_type == t->t.dtype && t->t.dtype == PIPPY_DT_FLOAT &&
               tp->n_dims == (size_t)t->t.rank;
    for (size_t k = 0; same && k < tp->n_dims; k++)
        same = tp->dims[k] == t->t.dims[k];
    if (!same) {
        char want[160], got[160];
        pippy_ex_shape_str(tp, want, sizeof want);
        pippy_tdesc_str(&t->t, got, sizeof got);
        return pippy_fail(PIPPY_ERR_SHAPE, "export: initializer '%s' is %s in %s, the new value is %s%s", t->name,
                          want, x->in, got, t->t.dtype != PIPPY_DT_FLOAT ? " (only float values are exported)" : "");
    }
    e->replaced = 1;
    e->data = t->data;
    e->bytes = pippy_tdesc_bytes(&t->t);
    return PIPPY_OK;
}

/* ---- parameters that are an Identity of an initializer in the file ---- */

static int pippy_ex_is_init(const Onnx__GraphProto *g, const char *name)
{
    for (size_t i = 0; i < g->n_initializer; i++)
        if (g->initializer[i]->name && !strcmp(g->initializer[i]->name, name))
            return 1;
    return 0;
}

/* The node Identity(initializer) -> name, or -1. */
static ssize_t pippy_ex_identity_of_init(const Onnx__GraphProto *g, const char *name)
{
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *n = g->node[i];
        if (n->op_type && !strcmp(n->op_type, "Identity") && (!n->domain || !n->domain[0]) && n->n_output == 1 &&
            n->output[0] && !strcmp(n->output[0], name) && n->n_input >= 1 && n->input[0] &&
            pippy_ex_is_init(g, n->input[0]))
            return (ssize_t)i;
    }
    return -1;
}

/* Each tensor named by the output of an Identity of an initializer (torch.onnx stores parameters
 * with equal values once; a training compile trains them apart) becomes an initializer of that
 * name, and the Identity goes: the model computes what was trained. The new initializers get their
 * type here and their data from pippy_ex_replace. */
static pippy_status pippy_ex_promote(pippy_exporter *x, const pippy_export_tensor *t, int n)
{
    Onnx__GraphProto *g = x->m->graph;
    char *drop = calloc(g->n_node + 1, 1);
    x->added = calloc((size_t)n + 1, sizeof *x->added);
    if (!drop || !x->added) {
        free(drop);
        return pippy_ex_nomem(x);
    }
    for (int i = 0; i < n; i++) {
        ssize_t k = t[i].name && !pippy_ex_is_init(g, t[i].name) ? pippy_ex_identity_of_init(g, t[i].name) : -1;
        if (k < 0 || drop[k])
            continue;
        drop[k] = 1;
        Onnx__TensorProto *tp = &x->added[x->n_added++];
        onnx__tensor_proto__init(tp);
        tp->name = (char *)t[i].name;
        tp->has_data_type = 1;
        tp->data_type = t[i].t.dtype;
        tp->n_dims = (size_t)t[i].t.rank;
        tp->dims = (int64_t *)t[i].t.dims;
    }
    pippy_status st = PIPPY_OK;
    if (x->n_added) {
        x->nodes = malloc((g->n_node + 1) * sizeof *x->nodes);
        x->inits_new = malloc((g->n_initializer + x->n_added + 1) * sizeof *x->inits_new);
        if (x->nodes && x->inits_new) {
            x->node0 = g->node, x->n_node0 = g->n_node, x->init0 = g->initializer, x->n_init0 = g->n_initializer;
            size_t k = 0;
            for (size_t i = 0; i < g->n_node; i++)
                if (!drop[i])
                    x->nodes[k++] = g->node[i];
            memcpy(x->inits_new, g->initializer, g->n_initializer * sizeof *x->inits_new);
            for (size_t i = 0; i < x->n_added; i++)
                x->inits_new[g->n_initializer + i] = &x->added[i];
            g->node = x->nodes, g->n_node = k;
            g->initializer = x->inits_new, g->n_initializer += x->n_added;
        } else {
            st = pippy_ex_nomem(x);
        }
    }
    free(drop);
    return st;
}

/* Every BatchNormalization in inference form: training_mode 0 and only Y (the running statistics
 * are initializers, as trained). Training from the written model is the same (pippyc --train puts
 * batch statistics in place of every BatchNormalization); inference uses the trained statistics. */
static pippy_status pippy_ex_bn_inference(pippy_exporter *x)
{
    Onnx__GraphProto *g = x->m->graph;
    x->bn = calloc(g->n_node + 1, sizeof *x->bn);
    x->bn_outputs = calloc(g->n_node + 1, sizeof *x->bn_outputs);
    if (!x->bn || !x->bn_outputs)
        return pippy_ex_nomem(x);
    for (size_t i = 0; i < g->n_node; i++) {
        Onnx__NodeProto *n = g->node[i];
        if (!n->op_type || strcmp(n->op_type, "BatchNormalization") || (n->domain && n->domain[0]))
            continue;
        for (size_t a = 0; a < n->n_attribute; a++)
            if (n->attribute[a]->name && !strcmp(n->attribute[a]->name, "training_mode"))
                n->attribute[a]->i = 0;
        if (n->n_output > 1) {
            x->bn[x->n_bn] = n;
            x->bn_outputs[x->n_bn++] = n->n_output;
            n->n_output = 1;
        }
    }
    return PIPPY_OK;
}

/* ---- the output ---- */

/* Point tp's data at e->data: inline raw_data, or a reference into the data file. */
static void pippy_ex_set(pippy_exporter *x, pippy_ex_init *e)
{
    Onnx__TensorProto *tp = e->tp;
    tp->n_float_data = 0;
    tp->float_data = NULL;
    if (!e->to_file) {
        tp->has_raw_data = 1;
        tp->raw_data.len = e->bytes;
        tp->raw_data.data = (uint8_t *)e->data;
        tp->has_data_location = 0;
        tp->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
        tp->n_external_data = 0;
        tp->external_data = NULL;
        return;
    }
    snprintf(e->off_s, sizeof e->off_s, "%" PRIu64, e->offset);
    snprintf(e->len_s, sizeof e->len_s, "%zu", e->bytes);
    const char *keys[3] = {"location", "offset", "length"}, *vals[3] = {x->data_name, e->off_s, e->len_s};
    for (int k = 0; k < 3; k++) {
        onnx__string_string_entry_proto__init(&e->kv[k]);
        e->kv[k].key = (char *)keys[k];
        e->kv[k].value = (char *)vals[k];
        e->kvp[k] = &e->kv[k];
    }
    tp->has_raw_data = 0;
    tp->raw_data.len = 0;
    tp->raw_data.data = NULL;
    tp->has_data_location = 1;
    tp->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    tp->n_external_data = 3;
    tp->external_data = e->kvp;
}

/* A file the output would replace must not be one of the inputs. */
static pippy_status pippy_ex_not_input(const pippy_exporter *x, const char *path)
{
    struct stat a, b;
    if (stat(path, &a) != 0)
        return PIPPY_OK;
    if (stat(x->in, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        return pippy_fail(PIPPY_ERR_USAGE, "export: %s is the input model %s (write the trained model elsewhere)",
                          path, x->in);
    for (int i = 0; i < x->n_maps; i++)
        if (a.st_dev == x->maps[i].dev && a.st_ino == x->maps[i].ino)
            return pippy_fail(PIPPY_ERR_USAGE, "export: %s is the input's external data file %s", path,
                              x->maps[i].path);
    return PIPPY_OK;
}

/* Move every initializer of at least EXTERNAL_MIN bytes with raw data to the data file. */
static pippy_status pippy_ex_plan_file(pippy_exporter *x)
{
    size_t n = strlen(x->out) + 6;
    x->data_path = malloc(n);
    if (!x->data_path)
        return pippy_ex_nomem(x);
    snprintf(x->data_path, n, "%s.data", x->out);
    const char *slash = strrchr(x->data_path, '/');
    x->data_name = slash ? (char *)slash + 1 : x->data_path;
    PIPPY_TRY(pippy_ex_not_input(x, x->data_path));
    uint64_t at = 0;
    for (size_t i = 0; i < x->n_inits; i++) {
        pippy_ex_init *e = &x->inits[i];
        if (!e->data && e->has_raw && e->raw.len >= PIPPY_EXPORT_EXTERNAL_MIN) {
            e->data = e->raw.data;
            e->bytes = e->raw.len;
        }
        if (!e->data || e->bytes < PIPPY_EXPORT_EXTERNAL_MIN)
            continue;
        e->to_file = 1;
        e->offset = at;
        at = (at + e->bytes + PIPPY_EXPORT_ALIGN - 1) / PIPPY_EXPORT_ALIGN * PIPPY_EXPORT_ALIGN;
        pippy_ex_set(x, e);
    }
    return PIPPY_OK;
}

static pippy_status pippy_ex_write_data(pippy_exporter *x)
{
    static const char zeros[PIPPY_EXPORT_ALIGN];
    pippy_atomic_file f;
    PIPPY_TRY(pippy_atomic_open(&f, x->data_path));
    uint64_t at = 0;
    pippy_status st = PIPPY_OK;
    for (size_t i = 0; st == PIPPY_OK && i < x->n_inits; i++) {
        const pippy_ex_init *e = &x->inits[i];
        if (!e->to_file)
            continue;
        st = pippy_atomic_write(&f, zeros, (size_t)(e->offset - at));
        if (st == PIPPY_OK)
            st = pippy_atomic_write(&f, e->data, e->bytes);
        at = e->offset + e->bytes;
    }
    if (st != PIPPY_OK) {
        pippy_atomic_abort(&f);
        return st;
    }
    return pippy_atomic_commit(&f);
}

static pippy_status pippy_ex_write(pippy_exporter *x, size_t limit)
{
    for (size_t i = 0; i < x->n_inits; i++)
        if (x->inits[i].data)
            pippy_ex_set(x, &x->inits[i]);
    size_t size = onnx__model_proto__get_packed_size(x->m);
    if (size > limit) {
        PIPPY_TRY(pippy_ex_plan_file(x));
        size = onnx__model_proto__get_packed_size(x->m);
        if (size > limit)
            return pippy_fail(PIPPY_ERR_UNSUPPORTED, "export: %s would be %zu bytes even with its initializers of "
                              "%d bytes or more in %s (limit %zu)", x->out, size, PIPPY_EXPORT_EXTERNAL_MIN,
                              x->data_path, limit);
        PIPPY_TRY(pippy_ex_write_data(x));
    }
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return pippy_ex_nomem(x);
    size_t k = onnx__model_proto__pack(x->m, buf);
    pippy_status st = k == size ? pippy_atomic_write_file(x->out, buf, size)
                                : pippy_fail(PIPPY_ERR_INTERNAL, "export: packed %zu bytes, expected %zu", k, size);
    free(buf);
    return st;
}

static void pippy_ex_free(pippy_exporter *x)
{
    pippy_ex_restore(x);
    for (size_t i = 0; i < x->n_bn; i++)
        x->bn[i]->n_output = x->bn_outputs[i];
    free(x->bn);
    free(x->bn_outputs);
    if (x->node0) {
        x->m->graph->node = x->node0, x->m->graph->n_node = x->n_node0;
        x->m->graph->initializer = x->init0, x->m->graph->n_initializer = x->n_init0;
    }
    free(x->nodes);
    free(x->inits_new);
    free(x->added);
    if (x->m)
        onnx__model_proto__free_unpacked(x->m, NULL);
    for (int i = 0; i < x->n_maps; i++) {
        pippy_unmap_file(x->maps[i].addr, x->maps[i].len);
        free(x->maps[i].path);
    }
    free(x->maps);
    free(x->inits);
    free(x->index);
    free(x->in_dir);
    free(x->data_path);
}

pippy_status pippy_onnx_export(const char *model_in, const char *model_out, const pippy_export_tensor *t, int n,
                               const pippy_export_opts *opts)
{
    if (!model_in || !model_out || !model_out[0] || n < 0 || (n && !t))
        return pippy_fail(PIPPY_ERR_USAGE, "export: needs an input model, an output file and the tensors");
    pippy_exporter x;
    memset(&x, 0, sizeof x);
    x.in = model_in;
    x.out = model_out;
    size_t limit = opts && opts->inline_limit ? opts->inline_limit : PIPPY_EXPORT_INLINE_LIMIT;
    pippy_status st = pippy_ex_read(&x);
    if (st == PIPPY_OK)
        st = pippy_ex_promote(&x, t, n);
    if (st == PIPPY_OK)
        st = pippy_ex_bn_inference(&x);
    if (st == PIPPY_OK)
        st = pippy_ex_index(&x);
    for (size_t i = 0; st == PIPPY_OK && i < x.n_inits; i++) {
        pippy_ex_init *e = &x.inits[i];
        if (e->has_loc && e->loc == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
            st = pippy_ex_external(&x, e);
    }
    for (int i = 0; st == PIPPY_OK && i < n; i++)
        st = pippy_ex_replace(&x, &t[i]);
    if (st == PIPPY_OK)
        st = pippy_ex_not_input(&x, model_out);
    if (st == PIPPY_OK)
        st = pippy_ex_write(&x, limit);
    pippy_ex_free(&x);
    return st;
}

/* ---- from a checkpoint (pippyc export) ---- */

typedef struct {
    const pippy_export_args *a;
    char sched_path[4096];
    cJSON *sched;
    uint64_t hash;
    int64_t step;
    int n_stages;
    pippy_ckpt_part *params; /* "params" of each stage */
    pippy_export_tensor *t;
    int n_t, n_tied;
    char *model;
    float **transposed; /* the data of model.transposed_initializers, made here */
    int n_transposed;
} pippy_ckpt_export;

static pippy_status pippy_ce_schedule(pippy_ckpt_export *c)
{
    char *text;
    size_t len;
    snprintf(c->sched_path, sizeof c->sched_path, "%s/schedule.json", c->a->out_dir);
    PIPPY_TRY(pippy_read_file(c->sched_path, &text, &len));
    c->sched = cJSON_Parse(text);
    free(text);
    if (!c->sched)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: not valid JSON", c->sched_path);
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(c->sched, "hash");
    char *end = NULL;
    if (cJSON_IsString(h) && h->valuestring[0])
        c->hash = strtoull(h->valuestring, &end, 16);
    if (!end || *end)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: no compile hash (\"hash\": a hex string)", c->sched_path);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(c->sched, "stages");
    c->n_stages = cJSON_GetArraySize(st);
    if (!cJSON_IsArray(st) || c->n_stages < 1)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: no stages", c->sched_path);
    c->params = calloc((size_t)c->n_stages, sizeof *c->params);
    return c->params ? PIPPY_OK : pippy_fail(PIPPY_ERR_NOMEM, "export: out of memory");
}

static pippy_status pippy_ce_step(pippy_ckpt_export *c)
{
    const char *dir = c->a->ckpt_dir;
    int64_t latest;
    PIPPY_TRY(pippy_ckpt_latest(dir, &latest));
    c->step = c->a->step >= 0 ? c->a->step : latest;
    if (c->step < 0)
        return pippy_fail(PIPPY_ERR_IO, "export: no checkpoint in %s (%s/latest does not exist)", dir, dir);
    char sdir[4200];
    struct stat st;
    snprintf(sdir, sizeof sdir, "%s/step-%" PRId64, dir, c->step);
    if (stat(sdir, &st) != 0 || !S_ISDIR(st.st_mode))
        return pippy_fail(PIPPY_ERR_IO, "export: checkpoint %s has no step %" PRId64 " (%s is missing; latest: %"
                          PRId64 ")", dir, c->step, sdir, latest);
    for (int k = 0; k < c->n_stages; k++) {
        c->params[k].name = "params";
        pippy_status s = pippy_ckpt_read(dir, c->step, k, c->hash, &c->params[k], 1);
        if (s != PIPPY_OK)
            return pippy_error_prefix(s, "export: stage %d of step %" PRId64, k, c->step);
    }
    return PIPPY_OK;
}

/* A whole number >= 0 of a JSON object, or -1. */
static int64_t pippy_ce_count(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return -1;
    return (int64_t)v->valuedouble;
}

/* Entry p of stage k's "parameters" into an export tensor pointing into that stage's region. */
static pippy_status pippy_ce_param(pippy_ckpt_export *c, int k, int i, const cJSON *p, pippy_export_tensor *t)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(p, "name"), *dt = cJSON_GetObjectItemCaseSensitive(p, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(p, "shape"), *kind = cJSON_GetObjectItemCaseSensitive(p, "kind"), *d;
    if (!cJSON_IsString(name) || !name->valuestring[0])
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: stage %d parameter %d has no name", c->sched_path, k, i);
    const char *nm = name->valuestring;
    if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "float") != 0)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: stage %d parameter '%s' has dtype %s (only float parameters "
                          "are exported)", c->sched_path, k, nm, cJSON_IsString(dt) ? dt->valuestring : "(none)");
    if (!cJSON_IsString(kind) || (strcmp(kind->valuestring, "trainable") && strcmp(kind->valuestring, "buffer")))
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: stage %d parameter '%s': kind must be \"trainable\", "
                          "\"buffer\" or \"constant\"", c->sched_path, k, nm);
    memset(t, 0, sizeof *t);
    t->name = nm;
    t->t.dtype = PIPPY_DT_FLOAT;
    t->t.rank = cJSON_GetArraySize(shape);
    if (!cJSON_IsArray(shape) || t->t.rank > PIPPY_MAX_RANK)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: stage %d parameter '%s': shape must be a list of at most %d sizes",
                          c->sched_path, k, nm, PIPPY_MAX_RANK);
    int r = 0;
    cJSON_ArrayForEach(d, shape)
    {
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble != (double)(int64_t)d->valuedouble ||
            d->valuedouble > 1e15)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: stage %d parameter '%s': shape has a size that is not a whole "
                              "number >= 0", c->sched_path, k, nm);
        t->t.dims[r++] = (int64_t)d->valuedouble;
    }
    int64_t off = pippy_ce_count(p, "offset"), bytes = pippy_ce_count(p, "bytes");
    size_t want = pippy_tdesc_bytes(&t->t), have = c->params[k].bytes;
    char ts[160];
    pippy_tdesc_str(&t->t, ts, sizeof ts);
    if (off < 0 || bytes < 0 || (size_t)bytes != want)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: stage %d parameter '%s' (%s): offset %" PRId64 ", bytes %" PRId64
                          " (expected whole numbers, bytes = %zu)", c->sched_path, k, nm, ts, off, bytes, want);
    if ((uint64_t)off > have || (uint64_t)bytes > have - (uint64_t)off)
        return pippy_fail(PIPPY_ERR_FORMAT, "export: stage %d parameter '%s' lies at bytes %" PRId64 "..%" PRId64
                          " of the parameter region, but the checkpoint's region is %zu bytes", k, nm, off,
                          off + bytes, have);
    t->data = (const char *)c->params[k].data + off;
    return PIPPY_OK;
}

/* Every stage's parameters; a name listed again by a later stage (tied) is skipped. */
static pippy_status pippy_ce_tensors(pippy_ckpt_export *c)
{
    const cJSON *stages = cJSON_GetObjectItemCaseSensitive(c->sched, "stages"), *s, *p;
    int total = 0, k = 0;
    cJSON_ArrayForEach(s, stages)
    {
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(s, "parameters");
        if (!cJSON_IsArray(ps))
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: stage %d lists no \"parameters\" (export needs a compile for "
                              "training)", c->sched_path, k);
        total += cJSON_GetArraySize(ps);
        k++;
    }
    c->t = calloc((size_t)total + 1, sizeof *c->t);
    if (!c->t)
        return pippy_fail(PIPPY_ERR_NOMEM, "export: out of memory");
    k = 0;
    cJSON_ArrayForEach(s, stages)
    {
        int i = 0;
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(s, "parameters"))
        {
            const cJSON *kind = cJSON_GetObjectItemCaseSensitive(p, "kind");
            if (cJSON_IsString(kind) && !strcmp(kind->valuestring, "constant")) {
                i++;
                continue; /* not changed by training: the model's own initializer stays */
            }
            pippy_export_tensor t;
            PIPPY_TRY(pippy_ce_param(c, k, i++, p, &t));
            int j = 0;
            while (j < c->n_t && strcmp(c->t[j].name, t.name) != 0)
                j++;
            if (j == c->n_t) {
                c->t[c->n_t++] = t;
                continue;
            }
            if (!pippy_tdesc_equal(&c->t[j].t, &t.t))
                return pippy_fail(PIPPY_ERR_FORMAT, "%s: parameter '%s' has different shapes in two stages",
                                  c->sched_path, t.name);
            c->n_tied++;
        }
        k++;
    }
    return PIPPY_OK;
}

/* model.transposed_initializers: each initializer that is the transpose of a trained 2-D
 * parameter gets that parameter's trained values, transposed. */
static pippy_status pippy_ce_transposed(pippy_ckpt_export *c)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c->sched, "model"),
                                                         "transposed_initializers"), *e;
    int n = cJSON_GetArraySize(list);
    if (!n)
        return PIPPY_OK;
    pippy_export_tensor *t = realloc(c->t, ((size_t)c->n_t + (size_t)n + 1) * sizeof *t);
    c->transposed = calloc((size_t)n, sizeof *c->transposed);
    if (t)
        c->t = t;
    if (!t || !c->transposed)
        return pippy_fail(PIPPY_ERR_NOMEM, "export: out of memory");
    cJSON_ArrayForEach(e, list)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name"), *of = cJSON_GetObjectItemCaseSensitive(e, "transpose_of");
        int j = 0;
        while (cJSON_IsString(of) && j < c->n_t && strcmp(c->t[j].name, of->valuestring) != 0)
            j++;
        if (!cJSON_IsString(name) || !cJSON_IsString(of) || j >= c->n_t || c->t[j].t.rank != 2)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: model.transposed_initializers[%d]: expected an initializer's "
                              "name and a trained 2-D parameter's, found '%s' and '%s'",
                              c->sched_path, c->n_transposed, cJSON_IsString(name) ? name->valuestring : "(none)",
                              cJSON_IsString(of) ? of->valuestring : "(none)");
        int64_t R = c->t[j].t.dims[0], C = c->t[j].t.dims[1];
        const float *src = c->t[j].data;
        float *dst = c->transposed[c->n_transposed++] = malloc((size_t)(R * C > 0 ? R * C : 1) * sizeof *dst);
        if (!dst)
            return pippy_fail(PIPPY_ERR_NOMEM, "export: out of memory");
        for (int64_t r = 0; r < R; r++)
            for (int64_t k = 0; k < C; k++)
                memcpy(&dst[k * R + r], &src[r * C + k], sizeof *dst); /* the checkpoint's bytes may be unaligned */
        pippy_export_tensor *x = &c->t[c->n_t++];
        *x = c->t[j];
        x->name = name->valuestring;
        x->t.dims[0] = C, x->t.dims[1] = R;
        x->data = dst;
    }
    return PIPPY_OK;
}

/* FNV-1a of the file at path (0 and *ok = 0 when it cannot be read). */
static uint64_t pippy_ce_file_hash(const char *path, int *ok)
{
    void *addr;
    size_t len;
    *ok = pippy_map_file(path, &addr, &len) == PIPPY_OK;
    if (!*ok)
        return 0;
    uint64_t h = pippy_fnv1a(addr, len, PIPPY_FNV_SEED);
    pippy_unmap_file(addr, len);
    return h;
}

/* The model: given, else model.path (as is, then relative to OUT) or model.absolute_path, whichever
 * has model.file_hash. */
static pippy_status pippy_ce_model(pippy_ckpt_export *c)
{
    if (c->a->model) {
        c->model = strdup(c->a->model);
        return c->model ? PIPPY_OK : pippy_fail(PIPPY_ERR_NOMEM, "export: out of memory");
    }
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(c->sched, "model");
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(m, "path"), *fh = cJSON_GetObjectItemCaseSensitive(m, "file_hash");
    if (!cJSON_IsString(path) || !path->valuestring[0] || !cJSON_IsString(fh))
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: no model.path / model.file_hash (give the model with --model)",
                          c->sched_path);
    uint64_t want = strtoull(fh->valuestring, NULL, 16);
    const char *p = path->valuestring;
    const cJSON *abs = cJSON_GetObjectItemCaseSensitive(m, "absolute_path");
    char cand[3][4200], tried[13000] = "";
    int n = 1;
    snprintf(cand[0], sizeof cand[0], "%s", p);
    if (p[0] != '/')
        snprintf(cand[n++], sizeof cand[1], "%s/%s", c->a->out_dir, p);
    if (cJSON_IsString(abs) && abs->valuestring[0] == '/' && strcmp(abs->valuestring, p) != 0)
        snprintf(cand[n++], sizeof cand[2], "%s", abs->valuestring);
    for (int i = 0; i < n; i++) {
        int ok;
        uint64_t h = pippy_ce_file_hash(cand[i], &ok);
        if (ok && h == want) {
            c->model = strdup(cand[i]);
            return c->model ? PIPPY_OK : pippy_fail(PIPPY_ERR_NOMEM, "export: out of memory");
        }
        size_t l = strlen(tried);
        if (ok)
            snprintf(tried + l, sizeof tried - l, "%s%s has hash %016" PRIx64, l ? "; " : "", cand[i], h);
        else
            snprintf(tried + l, sizeof tried - l, "%s%s cannot be read", l ? "; " : "", cand[i]);
    }
    return pippy_fail(PIPPY_ERR_IO, "export: the model compiled into %s (hash %s) is not found: %s; give it with "
                      "--model", c->a->out_dir, fh->valuestring, tried);
}

pippy_status pippy_export_checkpoint(const pippy_export_args *a)
{
    if (!a || !a->out_dir || !a->ckpt_dir || !a->output)
        return pippy_fail(PIPPY_ERR_USAGE, "export: needs the compile folder, --checkpoint DIR and -o FILE.onnx");
    pippy_ckpt_export c;
    memset(&c, 0, sizeof c);
    c.a = a;
    pippy_status st = pippy_ce_schedule(&c);
    if (st == PIPPY_OK)
        st = pippy_ce_step(&c);
    if (st == PIPPY_OK)
        st = pippy_ce_tensors(&c);
    if (st == PIPPY_OK)
        st = pippy_ce_transposed(&c);
    if (st == PIPPY_OK)
        st = pippy_ce_model(&c);
    pippy_export_opts o = {.inline_limit = a->inline_limit};
    if (st == PIPPY_OK)
        st = pippy_onnx_export(c.model, a->output, c.t, c.n_t, &o);
    if (st == PIPPY_OK && !a->quiet)
        printf("pippyc: wrote %s (model %s, step %" PRId64 " of %s): %d parameters, %d tied copies skipped\n",
               a->output, c.model, c.step, a->ckpt_dir, c.n_t, c.n_tied);
    for (int k = 0; c.params && k < c.n_stages; k++)
        free(c.params[k].data);
    free(c.params);
    for (int k = 0; k < c.n_transposed; k++)
        free(c.transposed[k]);
    free(c.transposed);
    free(c.t);
    free(c.model);
    cJSON_Delete(c.sched);
    return st;
}
