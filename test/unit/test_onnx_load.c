/* test_onnx_load.c — unit tests of the ONNX front end (compiler/onnx_load.c).
 *
 * Models are built here in C with the protobuf-c types, packed into a fresh
 * folder under /tmp, and loaded back; bad files are written byte by byte. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "onnx.pb-c.h"
#include "onnx_load.h"

/* ---- an arena for the hand-built messages (freed after each test) ---- */

static void **t_ar;
static size_t t_ar_n, t_ar_cap;

static void *t_alloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    ck_assert_ptr_nonnull(p);
    if (t_ar_n == t_ar_cap) {
        t_ar_cap = t_ar_cap ? 2 * t_ar_cap : 256;
        t_ar = realloc(t_ar, t_ar_cap * sizeof *t_ar);
        ck_assert_ptr_nonnull(t_ar);
    }
    t_ar[t_ar_n++] = p;
    return p;
}

static char *t_str(const char *s)
{
    char *p = t_alloc(strlen(s) + 1);
    strcpy(p, s);
    return p;
}

static void *t_dup(const void *p, size_t n)
{
    void *q = t_alloc(n);
    memcpy(q, p, n);
    return q;
}

/* ---- temp folder ---- */

static char t_dir[64];

static int t_rm(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void t_setup(void)
{
    strcpy(t_dir, "/tmp/pippy_onnx_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(t_dir));
}

static void t_teardown(void)
{
    nftw(t_dir, t_rm, 8, FTW_DEPTH | FTW_PHYS);
    for (size_t i = 0; i < t_ar_n; i++)
        free(t_ar[i]);
    free(t_ar);
    t_ar = NULL;
    t_ar_n = t_ar_cap = 0;
}

static char *t_path(const char *name)
{
    char *p = t_alloc(strlen(t_dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", t_dir, name);
    return p;
}

static char *t_write(const char *name, const void *buf, size_t n)
{
    char *p = t_path(name);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    if (n)
        ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
    return p;
}

/* ---- model builders ---- */

#define T_CAP 32

static Onnx__ModelProto *t_model(int64_t ir, int64_t opset)
{
    Onnx__ModelProto *m = t_alloc(sizeof *m);
    onnx__model_proto__init(m);
    m->has_ir_version = 1;
    m->ir_version = ir;
    m->opset_import = t_alloc(T_CAP * sizeof *m->opset_import);
    Onnx__OperatorSetIdProto *o = t_alloc(sizeof *o);
    onnx__operator_set_id_proto__init(o);
    o->domain = t_str("");
    o->has_version = 1;
    o->version = opset;
    m->opset_import[m->n_opset_import++] = o;
    m->producer_name = t_str("pippy-test");
    m->producer_version = t_str("1.0");
    m->metadata_props = t_alloc(T_CAP * sizeof *m->metadata_props);
    Onnx__GraphProto *g = t_alloc(sizeof *g);
    onnx__graph_proto__init(g);
    g->name = t_str("g");
    g->node = t_alloc(T_CAP * sizeof *g->node);
    g->initializer = t_alloc(T_CAP * sizeof *g->initializer);
    g->input = t_alloc(T_CAP * sizeof *g->input);
    g->output = t_alloc(T_CAP * sizeof *g->output);
    m->graph = g;
    return m;
}

static void t_meta(Onnx__ModelProto *m, const char *k, const char *v)
{
    Onnx__StringStringEntryProto *e = t_alloc(sizeof *e);
    onnx__string_string_entry_proto__init(e);
    e->key = t_str(k);
    e->value = t_str(v);
    m->metadata_props[m->n_metadata_props++] = e;
}

static Onnx__TensorProto *t_tensor(const char *name, int32_t dt, int rank, const int64_t *dims)
{
    Onnx__TensorProto *t = t_alloc(sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = t_str(name);
    t->has_data_type = 1;
    t->data_type = dt;
    t->n_dims = (size_t)rank;
    t->dims = t_alloc((size_t)rank * sizeof *dims + 1);
    if (rank)
        memcpy(t->dims, dims, (size_t)rank * sizeof *dims);
    return t;
}

static void t_raw(Onnx__TensorProto *t, const void *data, size_t n)
{
    t->has_raw_data = 1;
    t->raw_data.len = n;
    t->raw_data.data = t_dup(data, n);
}

static void t_ext(Onnx__TensorProto *t, const char *location, const char *offset, const char *length)
{
    t->has_data_location = 1;
    t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    t->external_data = t_alloc(3 * sizeof *t->external_data);
    const char *keys[3] = {"location", "offset", "length"};
    const char *vals[3] = {location, offset, length};
    for (int i = 0; i < 3; i++) {
        if (!vals[i])
            continue;
        Onnx__StringStringEntryProto *e = t_alloc(sizeof *e);
        onnx__string_string_entry_proto__init(e);
        e->key = t_str(keys[i]);
        e->value = t_str(vals[i]);
        t->external_data[t->n_external_data++] = e;
    }
}

static void t_init(Onnx__ModelProto *m, Onnx__TensorProto *t) { m->graph->initializer[m->graph->n_initializer++] = t; }

/* A float initializer with raw data. */
static Onnx__TensorProto *t_init_f(Onnx__ModelProto *m, const char *name, int rank, const int64_t *dims,
                                   const float *data, size_t n)
{
    Onnx__TensorProto *t = t_tensor(name, PIPPY_DT_FLOAT, rank, dims);
    t_raw(t, data, n * sizeof *data);
    t_init(m, t);
    return t;
}

/* dims[i] < 0: symbolic when params[i] is set, else a dimension with no value. */
static Onnx__ValueInfoProto *t_vi(const char *name, int32_t dt, int rank, const int64_t *dims,
                                  const char *const *params)
{
    Onnx__ValueInfoProto *vi = t_alloc(sizeof *vi);
    onnx__value_info_proto__init(vi);
    vi->name = t_str(name);
    if (dt < 0)
        return vi; /* no type */
    Onnx__TypeProto *tp = t_alloc(sizeof *tp);
    onnx__type_proto__init(tp);
    Onnx__TypeProto__Tensor *tt = t_alloc(sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = dt;
    if (rank >= 0) {
        Onnx__TensorShapeProto *sh = t_alloc(sizeof *sh);
        onnx__tensor_shape_proto__init(sh);
        sh->dim = t_alloc((size_t)(rank + 1) * sizeof *sh->dim);
        for (int i = 0; i < rank; i++) {
            Onnx__TensorShapeProto__Dimension *d = t_alloc(sizeof *d);
            onnx__tensor_shape_proto__dimension__init(d);
            if (dims[i] >= 0) {
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
                d->dim_value = dims[i];
            } else if (params && params[i]) {
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
                d->dim_param = t_str(params[i]);
            }
            sh->dim[sh->n_dim++] = d;
        }
        tt->shape = sh;
    }
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->type = tp;
    return vi;
}

static void t_input(Onnx__ModelProto *m, Onnx__ValueInfoProto *vi) { m->graph->input[m->graph->n_input++] = vi; }
static void t_output(Onnx__ModelProto *m, Onnx__ValueInfoProto *vi) { m->graph->output[m->graph->n_output++] = vi; }

/* ins / outs: NULL-terminated lists of value names ("" for an absent one). */
static Onnx__NodeProto *t_node(Onnx__ModelProto *m, const char *name, const char *op, const char *const *ins,
                               const char *const *outs)
{
    Onnx__NodeProto *n = t_alloc(sizeof *n);
    onnx__node_proto__init(n);
    if (name)
        n->name = t_str(name);
    n->op_type = t_str(op);
    n->input = t_alloc(T_CAP * sizeof *n->input);
    n->output = t_alloc(T_CAP * sizeof *n->output);
    n->attribute = t_alloc(T_CAP * sizeof *n->attribute);
    for (; ins && *ins; ins++)
        n->input[n->n_input++] = t_str(*ins);
    for (; outs && *outs; outs++)
        n->output[n->n_output++] = t_str(*outs);
    m->graph->node[m->graph->n_node++] = n;
    return n;
}

#define TL(...) ((const char *const[]){__VA_ARGS__, NULL})

static Onnx__AttributeProto *t_attr(Onnx__NodeProto *n, const char *name, int type)
{
    Onnx__AttributeProto *a = t_alloc(sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = t_str(name);
    a->has_type = 1;
    a->type = type;
    n->attribute[n->n_attribute++] = a;
    return a;
}

static char *t_save(const Onnx__ModelProto *m, const char *name)
{
    size_t n = onnx__model_proto__get_packed_size(m);
    uint8_t *buf = t_alloc(n);
    ck_assert_uint_eq(onnx__model_proto__pack(m, buf), n);
    return t_write(name, buf, n);
}

/* The reference model: y = (x @ W) + B, x: float["batch", 4]. */
static const int64_t t_d44[2] = {4, 4};
static const int64_t t_d4[1] = {4};
static float t_W[16], t_B[4];

static Onnx__ModelProto *t_mlp(void)
{
    for (int i = 0; i < 16; i++)
        t_W[i] = 0.5f * (float)i - 3.0f;
    for (int i = 0; i < 4; i++)
        t_B[i] = (float)i + 0.25f;
    Onnx__ModelProto *m = t_model(8, 17);
    t_init_f(m, "W", 2, t_d44, t_W, 16);
    Onnx__TensorProto *b = t_tensor("B", PIPPY_DT_FLOAT, 1, t_d4);
    b->n_float_data = 4; /* typed data */
    b->float_data = t_dup(t_B, sizeof t_B);
    t_init(m, b);
    const int64_t xd[2] = {-1, 4};
    const char *xp[2] = {"batch", NULL};
    t_input(m, t_vi("x", PIPPY_DT_FLOAT, 2, xd, xp));
    t_node(m, "mm", "MatMul", TL("x", "W"), TL("h"));
    t_node(m, "add", "Add", TL("h", "B"), TL("y"));
    t_output(m, t_vi("y", PIPPY_DT_FLOAT, 2, xd, xp));
    return m;
}

static pippy_graph *t_load_ok(const char *path)
{
    pippy_graph *g = NULL;
    pippy_status st = pippy_onnx_load(path, &g);
    ck_assert_msg(st == PIPPY_OK, "load failed: %s: %s", pippy_status_string(st), pippy_last_error());
    ck_assert_ptr_nonnull(g);
    return g;
}

/* Load expecting failure with status want; the message must hold every needle. */
static void t_load_bad(const char *path, pippy_status want, const char *const *needles)
{
    pippy_graph *g = (pippy_graph *)1;
    pippy_error_clear();
    pippy_status st = pippy_onnx_load(path, &g);
    const char *msg = pippy_last_error();
    if (getenv("PIPPY_TEST_VERBOSE")) /* to read the messages */
        fprintf(stderr, "[%s] %s\n", pippy_status_string(st), msg);
    ck_assert_msg(st == want, "expected %s, got %s (%s)", pippy_status_string(want), pippy_status_string(st), msg);
    ck_assert_ptr_null(g);
    ck_assert_msg(strstr(msg, path) != NULL, "message does not name the file: %s", msg);
    for (; needles && *needles; needles++)
        ck_assert_msg(strstr(msg, *needles) != NULL, "message lacks '%s': %s", *needles, msg);
}

static const pippy_value *t_val(const pippy_graph *g, const char *name)
{
    int32_t i = pippy_graph_find(g, name);
    ck_assert_msg(i >= 0, "no value '%s'", name);
    return &g->values[i];
}

static uint64_t t_file_hash(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    uint64_t h = PIPPY_FNV_SEED;
    unsigned char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        h = pippy_fnv1a(buf, n, h);
    fclose(f);
    return h;
}

/* ---- good models ---- */

START_TEST(test_load_basic)
{
    Onnx__ModelProto *m = t_mlp();
    t_meta(m, "pippy.stages", "2");
    t_meta(m, "author", "test");
    const char *p = t_save(m, "mlp.onnx");
    pippy_graph *g = t_load_ok(p);
    ck_assert_str_eq(g->path, p);
    ck_assert_int_eq(g->ir_version, 8);
    ck_assert_int_eq(g->opset, 17);
    ck_assert_str_eq(g->producer, "pippy-test 1.0");
    ck_assert_uint_eq(g->hash, t_file_hash(p));
    ck_assert_int_eq(g->n_meta, 2);
    ck_assert_str_eq(pippy_graph_meta(g, "pippy.stages"), "2");
    ck_assert_str_eq(pippy_graph_meta(g, "author"), "test");
    ck_assert_ptr_null(pippy_graph_meta(g, "nope"));

    ck_assert_int_eq(g->n_inputs, 1);
    const pippy_value *x = &g->values[g->inputs[0]];
    ck_assert_str_eq(x->name, "x");
    ck_assert_int_eq(x->kind, PIPPY_VAL_INPUT);
    ck_assert_int_eq(x->t.dtype, PIPPY_DT_FLOAT);
    ck_assert_int_eq(x->t.rank, 2);
    ck_assert_int_eq(x->t.dims[0], -1);
    ck_assert_int_eq(x->t.dims[1], 4);
    ck_assert_str_eq(x->dim_param[0], "batch");
    ck_assert_ptr_null(x->dim_param[1]);
    ck_assert_int_eq(x->shape_known, 0);
    ck_assert_ptr_null(x->data);

    const pippy_value *w = t_val(g, "W");
    ck_assert_int_eq(w->kind, PIPPY_VAL_PARAM);
    ck_assert_int_eq(w->shape_known, 1);
    ck_assert_int_eq(w->t.rank, 2);
    ck_assert_int_eq(w->t.dims[0], 4);
    ck_assert_int_eq(w->data_owned, 1);
    ck_assert_mem_eq(w->data, t_W, sizeof t_W);
    const pippy_value *b = t_val(g, "B");
    ck_assert_int_eq(b->kind, PIPPY_VAL_PARAM);
    ck_assert_mem_eq(b->data, t_B, sizeof t_B);

    ck_assert_int_eq(g->n_nodes, 2);
    ck_assert_str_eq(g->nodes[0].name, "mm");
    ck_assert_str_eq(g->nodes[0].op, "MatMul");
    ck_assert_str_eq(g->nodes[0].domain, "");
    ck_assert_int_eq(g->nodes[0].n_in, 2);
    ck_assert_int_eq(g->nodes[0].in[0], g->inputs[0]);
    ck_assert_int_eq(g->nodes[0].in[1], pippy_graph_find(g, "W"));
    ck_assert_str_eq(g->nodes[1].name, "add");
    const pippy_value *h = t_val(g, "h");
    ck_assert_int_eq(h->kind, PIPPY_VAL_INTERMEDIATE);
    ck_assert_int_eq(h->producer, 0);

    ck_assert_int_eq(g->n_outputs, 1);
    const pippy_value *y = &g->values[g->outputs[0]];
    ck_assert_str_eq(y->name, "y");
    ck_assert_int_eq(y->is_output, 1);
    ck_assert_int_eq(y->producer, 1);
    ck_assert_int_eq(y->t.dtype, PIPPY_DT_FLOAT);
    ck_assert_int_eq(y->t.rank, 2);
    ck_assert_str_eq(y->dim_param[0], "batch");
    pippy_graph_free(g);
}
END_TEST

START_TEST(test_load_unsorted)
{
    Onnx__ModelProto *m = t_model(8, 17);
    const int64_t d[1] = {3};
    t_input(m, t_vi("x", PIPPY_DT_FLOAT, 1, d, NULL));
    /* File order: c (needs b), b (needs a), a (needs x). */
    t_node(m, "c", "Relu", TL("b"), TL("y"));
    t_node(m, "b", "Neg", TL("a"), TL("b"));
    t_node(m, "a", "Abs", TL("x"), TL("a"));
    t_output(m, t_vi("y", PIPPY_DT_FLOAT, -1, NULL, NULL));
    pippy_graph *g = t_load_ok(t_save(m, "unsorted.onnx"));
    ck_assert_int_eq(g->n_nodes, 3);
    ck_assert_str_eq(g->nodes[0].name, "a");
    ck_assert_str_eq(g->nodes[1].name, "b");
    ck_assert_str_eq(g->nodes[2].name, "c");
    ck_assert_int_eq(t_val(g, "a")->producer, 0);
    ck_assert_int_eq(t_val(g, "b")->producer, 1);
    ck_assert_int_eq(t_val(g, "y")->producer, 2);
    ck_assert_int_eq(g->values[g->inputs[0]].shape_known, 1);
    /* y declares no shape: left for shape inference. */
    ck_assert_int_eq(t_val(g, "y")->shape_known, 0);
    pippy_graph_free(g);
}
END_TEST

START_TEST(test_load_dtypes)
{
    Onnx__ModelProto *m = t_model(7, 13);
    const int64_t d3[1] = {3};
    Onnx__TensorProto *t;
    const int64_t i64[3] = {-1, 0, 1LL << 40};
    t = t_tensor("i64", PIPPY_DT_INT64, 1, d3);
    t->n_int64_data = 3;
    t->int64_data = t_dup(i64, sizeof i64);
    t_init(m, t);
    const int32_t i32[3] = {7, -8, 9};
    t = t_tensor("i32", PIPPY_DT_INT32, 1, d3);
    t->n_int32_data = 3;
    t->int32_data = t_dup(i32, sizeof i32);
    t_init(m, t);
    const int32_t bools[3] = {0, 1, 5};
    t = t_tensor("b", PIPPY_DT_BOOL, 1, d3);
    t->n_int32_data = 3;
    t->int32_data = t_dup(bools, sizeof bools);
    t_init(m, t);
    const int32_t i8[3] = {-128, 5, 127};
    t = t_tensor("i8", PIPPY_DT_INT8, 1, d3);
    t->n_int32_data = 3;
    t->int32_data = t_dup(i8, sizeof i8);
    t_init(m, t);
    const uint8_t u8[3] = {1, 200, 255};
    t = t_tensor("u8", PIPPY_DT_UINT8, 1, d3);
    t_raw(t, u8, 3);
    t_init(m, t);
    const double dd[3] = {0.5, -1e300, 3};
    t = t_tensor("d", PIPPY_DT_DOUBLE, 1, d3);
    t->n_double_data = 3;
    t->double_data = t_dup(dd, sizeof dd);
    t_init(m, t);
    const int64_t s = 42;
    t = t_tensor("scalar", PIPPY_DT_INT64, 0, NULL);
    t_raw(t, &s, sizeof s);
    t_init(m, t);
    const int64_t d0[2] = {0, 5};
    t = t_tensor("empty", PIPPY_DT_FLOAT, 2, d0); /* no data at all: zero elements */
    t_init(m, t);
    t_node(m, "n", "Concat", TL("i64", "i32", "b", "i8", "u8", "d", "scalar", "empty"), TL("y"));
    t_output(m, t_vi("y", -1, 0, NULL, NULL));
    pippy_graph *g = t_load_ok(t_save(m, "dtypes.onnx"));
    ck_assert_int_eq(g->n_inputs, 0);
    const pippy_value *v = t_val(g, "i64");
    ck_assert_int_eq(v->kind, PIPPY_VAL_CONST);
    ck_assert_mem_eq(v->data, i64, sizeof i64);
    v = t_val(g, "i32");
    ck_assert_int_eq(v->kind, PIPPY_VAL_CONST);
    ck_assert_mem_eq(v->data, i32, sizeof i32);
    v = t_val(g, "b");
    const uint8_t bexp[3] = {0, 1, 1};
    ck_assert_int_eq(v->t.dtype, PIPPY_DT_BOOL);
    ck_assert_mem_eq(v->data, bexp, 3);
    v = t_val(g, "i8");
    const int8_t i8exp[3] = {-128, 5, 127};
    ck_assert_mem_eq(v->data, i8exp, 3);
    v = t_val(g, "u8");
    ck_assert_mem_eq(v->data, u8, 3);
    v = t_val(g, "d");
    ck_assert_int_eq(v->kind, PIPPY_VAL_CONST);
    ck_assert_mem_eq(v->data, dd, sizeof dd);
    v = t_val(g, "scalar");
    ck_assert_int_eq(v->t.rank, 0);
    ck_assert_int_eq(*(const int64_t *)v->data, 42);
    v = t_val(g, "empty");
    ck_assert_int_eq(v->kind, PIPPY_VAL_PARAM);
    ck_assert_ptr_nonnull(v->data);
    ck_assert_int_eq(pippy_value_numel(v), 0);
    pippy_graph_free(g);
}
END_TEST

START_TEST(test_load_external)
{
    /* w.bin: 8 bytes of padding, W (64 bytes) at offset 8, idx (int64[3]) at offset 72,
     * B (16 bytes) at the misaligned offset 97. */
    unsigned char bin[128];
    memset(bin, 0xAB, sizeof bin);
    for (int i = 0; i < 16; i++)
        t_W[i] = (float)i * 1.5f;
    const int64_t idx[3] = {3, 1, 2};
    const float bb[4] = {1, 2, 3, 4};
    memcpy(bin + 8, t_W, sizeof t_W);
    memcpy(bin + 72, idx, sizeof idx);
    memcpy(bin + 97, bb, sizeof bb);
    t_write("w.bin", bin, sizeof bin);
    Onnx__ModelProto *m = t_model(8, 17);
    Onnx__TensorProto *t = t_tensor("W", PIPPY_DT_FLOAT, 2, t_d44);
    t_ext(t, "w.bin", "8", "64");
    t_init(m, t);
    const int64_t d3[1] = {3};
    t = t_tensor("idx", PIPPY_DT_INT64, 1, d3);
    t_ext(t, "w.bin", "72", NULL); /* no length: from the shape */
    t_init(m, t);
    t = t_tensor("B", PIPPY_DT_FLOAT, 1, t_d4);
    t_ext(t, "w.bin", "97", "16");
    t_init(m, t);
    /* A second file in a subfolder ("./" and all), no offset. */
    const float cc[4] = {-1, -2, -3, -4};
    char sub[128];
    snprintf(sub, sizeof sub, "%s/data", t_dir);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    t_write("data/c.bin", cc, sizeof cc);
    t = t_tensor("C", PIPPY_DT_FLOAT, 1, t_d4);
    t_ext(t, "./data/c.bin", NULL, NULL);
    t_init(m, t);
    t_input(m, t_vi("x", PIPPY_DT_FLOAT, 2, t_d44, NULL));
    t_node(m, "mm", "MatMul", TL("x", "W"), TL("h"));
    t_node(m, "add", "Add", TL("h", "B"), TL("h2"));
    t_node(m, "add2", "Add", TL("h2", "C"), TL("h3"));
    t_node(m, "g", "Gather", TL("h3", "idx"), TL("y"));
    t_output(m, t_vi("y", PIPPY_DT_FLOAT, -1, NULL, NULL));
    pippy_graph *g = t_load_ok(t_save(m, "ext.onnx"));
    const pippy_value *w = t_val(g, "W");
    ck_assert_int_eq(w->data_owned, 0);
    ck_assert_mem_eq(w->data, t_W, sizeof t_W);
    const pippy_value *iv = t_val(g, "idx");
    ck_assert_int_eq(iv->kind, PIPPY_VAL_CONST);
    ck_assert_int_eq(iv->data_owned, 0);
    ck_assert_mem_eq(iv->data, idx, sizeof idx);
    const pippy_value *bv = t_val(g, "B");
    ck_assert_int_eq(bv->data_owned, 1); /* misaligned: copied */
    ck_assert_mem_eq(bv->data, bb, sizeof bb);
    const pippy_value *cv = t_val(g, "C");
    ck_assert_int_eq(cv->data_owned, 0);
    ck_assert_mem_eq(cv->data, cc, sizeof cc);
    ck_assert_int_eq(g->n_maps, 2); /* one mapping per file */
    pippy_graph_free(g);
}
END_TEST

START_TEST(test_load_shadowed_input)
{
    Onnx__ModelProto *m = t_mlp();
    /* Old exporters list every initializer among the graph inputs too. */
    t_input(m, t_vi("W", PIPPY_DT_FLOAT, 2, t_d44, NULL));
    t_input(m, t_vi("B", PIPPY_DT_FLOAT, 1, t_d4, NULL));
    pippy_graph *g = t_load_ok(t_save(m, "shadow.onnx"));
    ck_assert_int_eq(g->n_inputs, 1);
    ck_assert_str_eq(g->values[g->inputs[0]].name, "x");
    ck_assert_int_eq(t_val(g, "W")->kind, PIPPY_VAL_PARAM);
    ck_assert_ptr_nonnull(t_val(g, "W")->data);
    pippy_graph_free(g);
}
END_TEST

START_TEST(test_load_dims)
{
    Onnx__ModelProto *m = t_model(8, 17);
    const int64_t d[4] = {-1, -1, 7, -1};
    const char *p[4] = {"batch", NULL, NULL, "seq"};
    t_input(m, t_vi("x", PIPPY_DT_INT64, 4, d, p));
    const int64_t ds[1] = {0};
    t_input(m, t_vi("s", PIPPY_DT_FLOAT, 0, ds, NULL));
    t_node(m, NULL, "Identity", TL("x"), TL("y"));
    t_output(m, t_vi("y", PIPPY_DT_INT64, -1, NULL, NULL));
    t_output(m, t_vi("s", PIPPY_DT_FLOAT, 0, ds, NULL)); /* an input passed through */
    pippy_graph *g = t_load_ok(t_save(m, "dims.onnx"));
    ck_assert_int_eq(g->n_inputs, 2);
    const pippy_value *x = &g->values[g->inputs[0]];
    ck_assert_int_eq(x->t.dtype, PIPPY_DT_INT64);
    ck_assert_int_eq(x->t.rank, 4);
    ck_assert_int_eq(x->t.dims[0], -1);
    ck_assert_int_eq(x->t.dims[1], -1);
    ck_assert_int_eq(x->t.dims[2], 7);
    ck_assert_int_eq(x->t.dims[3], -1);
    ck_assert_str_eq(x->dim_param[0], "batch");
    ck_assert_ptr_null(x->dim_param[1]);
    ck_assert_ptr_null(x->dim_param[2]);
    ck_assert_str_eq(x->dim_param[3], "seq");
    ck_assert_int_eq(x->shape_known, 0);
    const pippy_value *s = &g->values[g->inputs[1]];
    ck_assert_int_eq(s->t.rank, 0);
    ck_assert_int_eq(s->shape_known, 1);
    ck_assert_int_eq(s->is_output, 1);
    ck_assert_int_eq(g->n_outputs, 2);
    ck_assert_str_eq(g->nodes[0].name, "Identity_0");
    pippy_graph_free(g);
    /* An input with no shape at all: rank left 0 and shape unknown, for --shape to bind. */
    m = t_mlp();
    m->graph->input[0] = t_vi("x", PIPPY_DT_FLOAT, -1, NULL, NULL);
    g = t_load_ok(t_save(m, "noshape.onnx"));
    x = &g->values[g->inputs[0]];
    ck_assert_int_eq(x->t.dtype, PIPPY_DT_FLOAT);
    ck_assert_int_eq(x->t.rank, 0);
    ck_assert_int_eq(x->shape_known, 0);
    pippy_graph_free(g);
}
END_TEST

START_TEST(test_load_node_names)
{
    Onnx__ModelProto *m = t_model(8, 17);
    const int64_t d[1] = {2};
    t_input(m, t_vi("x", PIPPY_DT_FLOAT, 1, d, NULL));
    t_node(m, NULL, "Relu", TL("x"), TL("a"));       /* 0: no name -> Relu_0 is taken below -> Relu_0_1 */
    t_node(m, "dup", "Neg", TL("a"), TL("b"));       /* 1 */
    t_node(m, "dup", "Abs", TL("b"), TL("c"));       /* 2: duplicate -> Abs_2 */
    t_node(m, "", "Sigmoid", TL("c"), TL("d"));      /* 3: empty -> Sigmoid_3 */
    t_node(m, "Relu_0", "Tanh", TL("d"), TL("y"));   /* 4: kept */
    Onnx__NodeProto *ps = t_node(m, "split", "PipeSplit", TL("y"), TL("z"));
    ps->domain = t_str("pippy");
    Onnx__NodeProto *ai = t_node(m, "ai", "Relu", TL("z"), TL("w"));
    ai->domain = t_str("ai.onnx");
    t_output(m, t_vi("w", PIPPY_DT_FLOAT, 1, d, NULL));
    pippy_graph *g = t_load_ok(t_save(m, "names.onnx"));
    ck_assert_int_eq(g->n_nodes, 7);
    ck_assert_str_eq(g->nodes[0].name, "Relu_0_1");
    ck_assert_str_eq(g->nodes[1].name, "dup");
    ck_assert_str_eq(g->nodes[2].name, "Abs_2");
    ck_assert_str_eq(g->nodes[3].name, "Sigmoid_3");
    ck_assert_str_eq(g->nodes[4].name, "Relu_0");
    ck_assert_str_eq(g->nodes[5].op, "PipeSplit");
    ck_assert_str_eq(g->nodes[5].domain, "pippy");
    ck_assert_str_eq(g->nodes[6].domain, "");
    pippy_graph_free(g);
}
END_TEST

START_TEST(test_load_attrs)
{
    Onnx__ModelProto *m = t_model(8, 17);
    const int64_t d[2] = {2, 3};
    t_input(m, t_vi("x", PIPPY_DT_FLOAT, 2, d, NULL));
    Onnx__NodeProto *c = t_node(m, "k", "Constant", NULL, TL("kv"));
    Onnx__AttributeProto *a = t_attr(c, "value", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
    const int64_t kv[2] = {3, 2};
    a->t = t_tensor("", PIPPY_DT_INT64, 1, (const int64_t[]){2});
    t_raw(a->t, kv, sizeof kv);
    Onnx__NodeProto *n = t_node(m, "n", "Custom", TL("x", "kv"), TL("y"));
    a = t_attr(n, "f", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = 0.125f;
    a = t_attr(n, "i", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = -7;
    a = t_attr(n, "s", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    a->has_s = 1;
    a->s.data = (uint8_t *)t_str("tanh");
    a->s.len = 4;
    a = t_attr(n, "fs", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS);
    const float fs[3] = {1, 2, 3};
    a->n_floats = 3;
    a->floats = t_dup(fs, sizeof fs);
    a = t_attr(n, "is", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    const int64_t is[2] = {1, -1};
    a->n_ints = 2;
    a->ints = t_dup(is, sizeof is);
    a = t_attr(n, "ss", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS);
    a->n_strings = 2;
    a->strings = t_alloc(2 * sizeof *a->strings);
    a->strings[0].data = (uint8_t *)t_str("ab");
    a->strings[0].len = 2;
    a->strings[1].data = (uint8_t *)t_str("");
    a->strings[1].len = 0;
    a = t_attr(n, "old", 0); /* no type field: taken from the value set */
    a->has_type = 0;
    a->has_i = 1;
    a->i = 5;
    a = t_attr(n, "noints", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS); /* empty list */
    t_output(m, t_vi("y", PIPPY_DT_FLOAT, -1, NULL, NULL));
    pippy_graph *g = t_load_ok(t_save(m, "attrs.onnx"));
    ck_assert_int_eq(g->n_nodes, 2);
    const pippy_node *k = &g->nodes[0];
    ck_assert_str_eq(k->op, "Constant");
    ck_assert_int_eq(k->n_in, 0);
    ck_assert_int_eq(k->n_attrs, 1);
    ck_assert_int_eq(k->attrs[0].type, PIPPY_ATTR_TENSOR);
    ck_assert_int_eq(k->attrs[0].t.dtype, PIPPY_DT_INT64);
    ck_assert_int_eq(k->attrs[0].t.rank, 1);
    ck_assert_int_eq(k->attrs[0].t.dims[0], 2);
    ck_assert_mem_eq(k->attrs[0].t_data, kv, sizeof kv);
    ck_assert_int_eq(t_val(g, "kv")->kind, PIPPY_VAL_INTERMEDIATE);
    pippy_op_desc od;
    pippy_graph_op_desc(g, 1, &od);
    ck_assert_int_eq(od.n_attrs, 8);
    ck_assert_float_eq(pippy_attr_float(&od, "f", 0), 0.125f);
    ck_assert_int_eq(pippy_attr_int(&od, "i", 0), -7);
    ck_assert_str_eq(pippy_attr_string(&od, "s", ""), "tanh");
    const pippy_attr *at = pippy_attr_find(&od, "fs");
    ck_assert_ptr_nonnull(at);
    ck_assert_int_eq(at->type, PIPPY_ATTR_FLOATS);
    ck_assert_int_eq(at->n, 3);
    ck_assert_mem_eq(at->floats, fs, sizeof fs);
    const int64_t *iv;
    ck_assert_int_eq(pippy_attr_ints(&od, "is", &iv), 2);
    ck_assert_mem_eq(iv, is, sizeof is);
    at = pippy_attr_find(&od, "ss");
    ck_assert_ptr_nonnull(at);
    ck_assert_int_eq(at->type, PIPPY_ATTR_STRINGS);
    ck_assert_int_eq(at->n, 2);
    ck_assert_str_eq(at->strings[0], "ab");
    ck_assert_str_eq(at->strings[1], "");
    at = pippy_attr_find(&od, "old");
    ck_assert_int_eq(at->type, PIPPY_ATTR_INT);
    ck_assert_int_eq(at->i, 5);
    at = pippy_attr_find(&od, "noints");
    ck_assert_int_eq(at->type, PIPPY_ATTR_INTS);
    ck_assert_int_eq(at->n, 0);
    pippy_graph_free(g);
}
END_TEST

START_TEST(test_load_optional_io)
{
    Onnx__ModelProto *m = t_model(8, 17);
    const int64_t d[1] = {4};
    t_input(m, t_vi("x", PIPPY_DT_FLOAT, 1, d, NULL));
    /* Clip with its min absent; Dropout with an inner unnamed output and a trailing one dropped. */
    t_node(m, "clip", "Clip", TL("x", "", "x"), TL("c"));
    t_node(m, "drop", "Split3", TL("c"), TL("a", "", "b", "", ""));
    t_node(m, "sum", "Add", TL("a", "b"), TL("y"));
    t_output(m, t_vi("y", PIPPY_DT_FLOAT, 1, d, NULL));
    pippy_graph *g = t_load_ok(t_save(m, "optional.onnx"));
    ck_assert_int_eq(g->nodes[0].n_in, 3);
    ck_assert_int_eq(g->nodes[0].in[1], -1);
    const pippy_node *n = &g->nodes[1];
    ck_assert_int_eq(n->n_out, 3);
    ck_assert_int_eq(n->out[0], pippy_graph_find(g, "a"));
    ck_assert_int_ge(n->out[1], 0);
    ck_assert_int_eq(n->out[2], pippy_graph_find(g, "b"));
    ck_assert_int_eq(g->values[n->out[1]].producer, 1);
    ck_assert_ptr_nonnull(strstr(g->values[n->out[1]].name, "drop"));
    pippy_graph_free(g);
}
END_TEST

START_TEST(test_load_pytorch_fixture)
{
    pippy_graph *g = t_load_ok("test/fixtures/fuzz_mlp.onnx");
    ck_assert_int_eq(g->opset, 17);
    ck_assert_ptr_nonnull(strstr(g->producer, "pytorch"));
    ck_assert_int_eq(g->n_inputs, 1);
    const pippy_value *x = &g->values[g->inputs[0]];
    ck_assert_str_eq(x->dim_param[0], "batch");
    ck_assert_int_eq(x->t.dims[1], 16);
    ck_assert_int_eq(g->n_nodes, 4);
    ck_assert_str_eq(g->nodes[1].op, "LayerNormalization");
    ck_assert_int_eq(t_val(g, "fc1.weight")->kind, PIPPY_VAL_PARAM);
    ck_assert_int_eq(t_val(g, "fc1.weight")->t.dims[0], 32);
    ck_assert_int_eq(g->n_outputs, 1);
    pippy_graph_free(g);
}
END_TEST

/* ---- bad files ---- */

START_TEST(test_bad_truncated)
{
    Onnx__ModelProto *m = t_mlp();
    size_t n = onnx__model_proto__get_packed_size(m);
    uint8_t *buf = t_alloc(n);
    onnx__model_proto__pack(m, buf);
    const char *p = t_write("trunc.onnx", buf, n - 7);
    t_load_bad(p, PIPPY_ERR_FORMAT, TL("not an ONNX model", "truncated"));
}
END_TEST

START_TEST(test_bad_random)
{
    unsigned char buf[1000];
    uint64_t s = 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < sizeof buf; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        buf[i] = (unsigned char)s;
    }
    const char *p = t_write("random.onnx", buf, sizeof buf);
    t_load_bad(p, PIPPY_ERR_FORMAT, TL("not an ONNX model"));
}
END_TEST

START_TEST(test_bad_text)
{
    const char *txt = "This is not an ONNX model, just a text file.\nir_version: 8\n";
    const char *p = t_write("text.onnx", txt, strlen(txt));
    t_load_bad(p, PIPPY_ERR_FORMAT, TL("not an ONNX model"));
}
END_TEST

START_TEST(test_bad_empty)
{
    const char *p = t_write("empty.onnx", "", 0);
    t_load_bad(p, PIPPY_ERR_FORMAT, TL("not an ONNX model", "empty"));
    /* A folder and a missing file. */
    t_load_bad(t_dir, PIPPY_ERR_IO, TL("not a regular file"));
    t_load_bad(t_path("missing.onnx"), PIPPY_ERR_IO, TL("cannot open", "No such file"));
}
END_TEST

START_TEST(test_bad_no_graph)
{
    Onnx__ModelProto *m = t_mlp();
    m->graph = NULL;
    t_load_bad(t_save(m, "nograph.onnx"), PIPPY_ERR_FORMAT, TL("no graph"));
}
END_TEST

START_TEST(test_bad_undefined_input)
{
    Onnx__ModelProto *m = t_mlp();
    t_node(m, "late", "Mul", TL("y", "ghost"), TL("z"));
    t_load_bad(t_save(m, "undef.onnx"), PIPPY_ERR_INVALID, TL("'late'", "'ghost'", "Mul"));
}
END_TEST

START_TEST(test_bad_cycle)
{
    Onnx__ModelProto *m = t_model(8, 17);
    const int64_t d[1] = {2};
    t_input(m, t_vi("x", PIPPY_DT_FLOAT, 1, d, NULL));
    t_node(m, "p", "Add", TL("x", "q_out"), TL("p_out"));
    t_node(m, "q", "Relu", TL("p_out"), TL("q_out"));
    t_output(m, t_vi("q_out", PIPPY_DT_FLOAT, 1, d, NULL));
    t_load_bad(t_save(m, "cycle.onnx"), PIPPY_ERR_INVALID, TL("cycle"));
}
END_TEST

START_TEST(test_bad_dtype)
{
    Onnx__ModelProto *m = t_mlp();
    Onnx__TensorProto *t = t_tensor("half", PIPPY_DT_FLOAT16, 1, t_d4);
    t_raw(t, t_B, 8);
    t_init(m, t);
    t_load_bad(t_save(m, "f16.onnx"), PIPPY_ERR_UNSUPPORTED, TL("initializer 'half'", "float16"));
    m = t_mlp();
    t = t_tensor("names", 8, 1, t_d4);
    t_init(m, t);
    t_load_bad(t_save(m, "str.onnx"), PIPPY_ERR_UNSUPPORTED, TL("initializer 'names'", "string"));
    m = t_mlp();
    const int64_t d[1] = {2};
    t_input(m, t_vi("tok", 8, 1, d, NULL));
    t_load_bad(t_save(m, "strin.onnx"), PIPPY_ERR_UNSUPPORTED, TL("graph input 'tok'", "string"));
}
END_TEST

START_TEST(test_bad_data_size)
{
    Onnx__ModelProto *m = t_model(8, 17);
    const int64_t d[2] = {32, 32};
    float w25[25] = {0};
    t_init_f(m, "W", 2, d, w25, 25); /* 100 bytes */
    t_load_bad(t_save(m, "size.onnx"), PIPPY_ERR_FORMAT,
               TL("initializer 'W': expected 4096 bytes for float[32,32], found 100"));
    m = t_model(8, 17);
    Onnx__TensorProto *t = t_tensor("B", PIPPY_DT_FLOAT, 1, t_d4);
    t->n_float_data = 3;
    t->float_data = t_dup(t_B, 12);
    t_init(m, t);
    t_load_bad(t_save(m, "count.onnx"), PIPPY_ERR_FORMAT, TL("initializer 'B'", "expected 4 values", "found 3"));
    m = t_model(8, 17);
    t = t_tensor("N", PIPPY_DT_FLOAT, 1, (const int64_t[]){-3});
    t_init(m, t);
    t_load_bad(t_save(m, "neg.onnx"), PIPPY_ERR_FORMAT, TL("initializer 'N'", "-3"));
}
END_TEST

START_TEST(test_bad_external_missing)
{
    Onnx__ModelProto *m = t_model(8, 17);
    Onnx__TensorProto *t = t_tensor("W", PIPPY_DT_FLOAT, 2, t_d44);
    t_ext(t, "weights.bin", "0", "64");
    t_init(m, t);
    t_load_bad(t_save(m, "extmiss.onnx"), PIPPY_ERR_IO,
               TL("initializer 'W'", "weights.bin", "No such file", "expected 64 bytes"));
}
END_TEST

/* External data must stay inside the model's folder (as the ONNX checker requires): absolute
 * paths, ".." and symbolic links that lead elsewhere are refused before any byte is read. */
START_TEST(test_bad_external_escape)
{
    char outside[96], link[160], dirlink[160], sub[128];
    snprintf(outside, sizeof outside, "%s.outside", t_dir);
    FILE *f = fopen(outside, "wb");
    ck_assert_ptr_nonnull(f);
    float secret[16] = {42};
    fwrite(secret, 1, sizeof secret, f);
    fclose(f);
    snprintf(link, sizeof link, "%s/link.bin", t_dir);
    ck_assert_int_eq(symlink(outside, link), 0);
    snprintf(sub, sizeof sub, "%s/sub", t_dir);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    snprintf(dirlink, sizeof dirlink, "%s/sub/up", t_dir);
    ck_assert_int_eq(symlink("/tmp", dirlink), 0);
    char via_dir[128];
    snprintf(via_dir, sizeof via_dir, "sub/up/%s", outside + 5); /* outside is /tmp/... */
    struct {
        const char *loc, *needle;
    } cases[] = {
        {outside, "absolute path"},
        {"/etc/passwd", "absolute path"},
        {"../../../etc/passwd", "contains '..'"},
        {"sub/../../x.bin", "contains '..'"},
        {"link.bin", "symbolic link"},
        {via_dir, "leads out of the model's folder"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Onnx__ModelProto *m = t_model(8, 17);
        Onnx__TensorProto *t = t_tensor("W", PIPPY_DT_FLOAT, 2, t_d44);
        t_ext(t, cases[i].loc, "0", "64");
        t_init(m, t);
        t_load_bad(t_save(m, "escape.onnx"), PIPPY_ERR_INVALID, TL("initializer 'W'", cases[i].needle));
    }
    unlink(outside);
}
END_TEST

START_TEST(test_bad_external_short)
{
    unsigned char bin[100] = {0};
    t_write("short.bin", bin, sizeof bin);
    Onnx__ModelProto *m = t_model(8, 17);
    Onnx__TensorProto *t = t_tensor("W", PIPPY_DT_FLOAT, 2, t_d44);
    t_ext(t, "short.bin", "40", "64");
    t_init(m, t);
    t_load_bad(t_save(m, "extshort.onnx"), PIPPY_ERR_IO,
               TL("initializer 'W'", "short.bin", "is 100 bytes", "expected at least 104", "offset 40"));
    /* A length that disagrees with the shape. */
    m = t_model(8, 17);
    t = t_tensor("W", PIPPY_DT_FLOAT, 2, t_d44);
    t_ext(t, "short.bin", "0", "60");
    t_init(m, t);
    t_load_bad(t_save(m, "extlen.onnx"), PIPPY_ERR_FORMAT, TL("initializer 'W'", "expected 64 bytes", "length 60"));
    m = t_model(8, 17);
    t = t_tensor("W", PIPPY_DT_FLOAT, 2, t_d44);
    t_ext(t, "short.bin", "-4", NULL);
    t_init(m, t);
    t_load_bad(t_save(m, "extoff.onnx"), PIPPY_ERR_FORMAT, TL("initializer 'W'", "offset '-4'"));
}
END_TEST

START_TEST(test_bad_versions)
{
    Onnx__ModelProto *m = t_mlp();
    m->opset_import[0]->version = 6;
    t_load_bad(t_save(m, "opset6.onnx"), PIPPY_ERR_UNSUPPORTED, TL("opset", ">= 7", "found 6"));
    m = t_mlp();
    m->opset_import[0]->version = 99; /* from the future: the rules may not match it */
    t_load_bad(t_save(m, "opset99.onnx"), PIPPY_ERR_UNSUPPORTED, TL("opset 99", "newest"));
    m = t_mlp();
    m->ir_version = 2;
    t_load_bad(t_save(m, "ir2.onnx"), PIPPY_ERR_UNSUPPORTED, TL("IR version", ">= 3", "found 2"));
    m = t_mlp();
    m->opset_import[0]->domain = t_str("com.microsoft");
    t_load_bad(t_save(m, "noopset.onnx"), PIPPY_ERR_INVALID, TL("default ONNX domain", "found none"));
    m = t_mlp();
    m->opset_import[0]->domain = t_str("ai.onnx");
    pippy_graph *g = t_load_ok(t_save(m, "aionnx.onnx"));
    ck_assert_int_eq(g->opset, 17);
    pippy_graph_free(g);
}
END_TEST

START_TEST(test_bad_writers)
{
    Onnx__ModelProto *m = t_mlp();
    t_node(m, "again", "Relu", TL("x"), TL("h"));
    t_load_bad(t_save(m, "twice.onnx"), PIPPY_ERR_INVALID, TL("'h'", "node 'mm' (MatMul)", "node 'again' (Relu)"));
    m = t_mlp();
    t_node(m, "clobber", "Relu", TL("x"), TL("W"));
    t_load_bad(t_save(m, "clobber.onnx"), PIPPY_ERR_INVALID, TL("node 'clobber'", "'W'", "initializer"));
    m = t_mlp();
    t_node(m, "clobber", "Relu", TL("h"), TL("x"));
    t_load_bad(t_save(m, "clobber2.onnx"), PIPPY_ERR_INVALID, TL("node 'clobber'", "'x'", "graph input"));
}
END_TEST

START_TEST(test_bad_graph_io)
{
    Onnx__ModelProto *m = t_mlp();
    t_output(m, t_vi("nowhere", PIPPY_DT_FLOAT, -1, NULL, NULL));
    t_load_bad(t_save(m, "out.onnx"), PIPPY_ERR_INVALID, TL("graph output 'nowhere'"));
    m = t_mlp();
    m->graph->input[0] = t_vi("x", -1, 0, NULL, NULL);
    t_load_bad(t_save(m, "notype.onnx"), PIPPY_ERR_INVALID, TL("graph input 'x'", "no type"));
    m = t_mlp();
    t_input(m, t_vi("x", PIPPY_DT_FLOAT, 1, t_d4, NULL));
    t_load_bad(t_save(m, "twicein.onnx"), PIPPY_ERR_INVALID, TL("graph input 'x'", "twice"));
    m = t_mlp();
    t_init_f(m, "W", 2, t_d44, t_W, 16);
    t_load_bad(t_save(m, "twiceinit.onnx"), PIPPY_ERR_INVALID, TL("initializer 'W'", "twice"));
}
END_TEST

START_TEST(test_bad_attrs)
{
    Onnx__ModelProto *m = t_mlp();
    Onnx__NodeProto *n = t_node(m, "branch", "If", TL("y"), TL("z"));
    Onnx__AttributeProto *a = t_attr(n, "then_branch", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH);
    a->g = t_alloc(sizeof *a->g);
    onnx__graph_proto__init(a->g);
    t_load_bad(t_save(m, "graphattr.onnx"), PIPPY_ERR_UNSUPPORTED, TL("node 'branch' (If)", "'then_branch'"));
    m = t_mlp();
    n = t_node(m, "k", "Constant", NULL, TL("z"));
    a = t_attr(n, "value", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
    a->t = t_tensor("", PIPPY_DT_FLOAT16, 1, t_d4);
    t_raw(a->t, t_B, 8);
    t_load_bad(t_save(m, "f16attr.onnx"), PIPPY_ERR_UNSUPPORTED, TL("node 'k' (Constant)", "'value'", "float16"));
    m = t_mlp();
    n = t_node(m, "k", "Constant", NULL, TL("z"));
    t_attr(n, "value", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    t_attr(n, "value", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    t_load_bad(t_save(m, "dupattr.onnx"), PIPPY_ERR_INVALID, TL("node 'k'", "'value'", "twice"));
    m = t_mlp();
    n = t_node(m, NULL, "", TL("y"), TL("z"));
    t_load_bad(t_save(m, "noop.onnx"), PIPPY_ERR_FORMAT, TL("node #2", "no op_type"));
}
END_TEST

static Suite *onnx_load_suite(void)
{
    Suite *s = suite_create("onnx_load");
    TCase *good = tcase_create("good");
    tcase_add_checked_fixture(good, t_setup, t_teardown);
    tcase_add_test(good, test_load_basic);
    tcase_add_test(good, test_load_unsorted);
    tcase_add_test(good, test_load_dtypes);
    tcase_add_test(good, test_load_external);
    tcase_add_test(good, test_load_shadowed_input);
    tcase_add_test(good, test_load_dims);
    tcase_add_test(good, test_load_node_names);
    tcase_add_test(good, test_load_attrs);
    tcase_add_test(good, test_load_optional_io);
    tcase_add_test(good, test_load_pytorch_fixture);
    suite_add_tcase(s, good);
    TCase *bad = tcase_create("bad");
    tcase_add_checked_fixture(bad, t_setup, t_teardown);
    tcase_add_test(bad, test_bad_truncated);
    tcase_add_test(bad, test_bad_random);
    tcase_add_test(bad, test_bad_text);
    tcase_add_test(bad, test_bad_empty);
    tcase_add_test(bad, test_bad_no_graph);
    tcase_add_test(bad, test_bad_undefined_input);
    tcase_add_test(bad, test_bad_cycle);
    tcase_add_test(bad, test_bad_dtype);
    tcase_add_test(bad, test_bad_data_size);
    tcase_add_test(bad, test_bad_external_missing);
    tcase_add_test(bad, test_bad_external_short);
    tcase_add_test(bad, test_bad_external_escape);
    tcase_add_test(bad, test_bad_versions);
    tcase_add_test(bad, test_bad_writers);
    tcase_add_test(bad, test_bad_graph_io);
    tcase_add_test(bad, test_bad_attrs);
    suite_add_tcase(s, bad);
    return s;
}

PIPPY_TEST_SUITE(onnx_load_suite)
