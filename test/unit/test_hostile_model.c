/* test_hostile_model.c — regression tests for crafted models (issue 11): shape arithmetic that
 * used to wrap around (Reshape, Tile, Range, Slice, Conv), attributes of the wrong type, ops
 * outside the model's opset, memory that used to be taken before failing, Gather indices out
 * of range, and the checked-arithmetic helpers themselves. Each model is built here with
 * protobuf-c and goes through pippy_compile_plan (what pippyc does before writing files). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checked.h"
#include "compile.h"
#include "harness.h"
#include "onnx.pb-c.h"

/* ---- a tiny model builder (everything malloc'd, freed by free_unpacked-like teardown) ---- */

#define HM_CAP 16
static void *hm_allocs[4096];
static int hm_n;

static void *hm_alloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_lt(hm_n, 4096);
    hm_allocs[hm_n++] = p;
    return p;
}

static char *hm_str(const char *s)
{
    char *p = hm_alloc(strlen(s) + 1);
    strcpy(p, s);
    return p;
}

static void hm_free_all(void)
{
    while (hm_n)
        free(hm_allocs[--hm_n]);
}

static Onnx__ModelProto *hm_model(int64_t opset)
{
    Onnx__ModelProto *m = hm_alloc(sizeof *m);
    onnx__model_proto__init(m);
    m->has_ir_version = 1;
    m->ir_version = 8;
    m->opset_import = hm_alloc(sizeof *m->opset_import);
    m->opset_import[0] = hm_alloc(sizeof **m->opset_import);
    onnx__operator_set_id_proto__init(m->opset_import[0]);
    m->opset_import[0]->has_version = 1;
    m->opset_import[0]->version = opset;
    m->n_opset_import = 1;
    m->graph = hm_alloc(sizeof *m->graph);
    onnx__graph_proto__init(m->graph);
    m->graph->node = hm_alloc(HM_CAP * sizeof *m->graph->node);
    m->graph->initializer = hm_alloc(HM_CAP * sizeof *m->graph->initializer);
    m->graph->input = hm_alloc(HM_CAP * sizeof *m->graph->input);
    m->graph->output = hm_alloc(HM_CAP * sizeof *m->graph->output);
    return m;
}

static Onnx__ValueInfoProto *hm_vi(const char *name, int dt, int rank, const int64_t *dims)
{
    Onnx__ValueInfoProto *v = hm_alloc(sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = hm_str(name);
    v->type = hm_alloc(sizeof *v->type);
    onnx__type_proto__init(v->type);
    v->type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    v->type->tensor_type = hm_alloc(sizeof *v->type->tensor_type);
    onnx__type_proto__tensor__init(v->type->tensor_type);
    v->type->tensor_type->has_elem_type = 1;
    v->type->tensor_type->elem_type = dt;
    if (rank < 0)
        return v;
    Onnx__TensorShapeProto *sh = hm_alloc(sizeof *sh);
    onnx__tensor_shape_proto__init(sh);
    sh->dim = hm_alloc((size_t)(rank + 1) * sizeof *sh->dim);
    for (int i = 0; i < rank; i++) {
        Onnx__TensorShapeProto__Dimension *d = hm_alloc(sizeof *d);
        onnx__tensor_shape_proto__dimension__init(d);
        d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        d->dim_value = dims[i];
        sh->dim[sh->n_dim++] = d;
    }
    v->type->tensor_type->shape = sh;
    return v;
}

static void hm_io(Onnx__ModelProto *m, const char *in, int rank, const int64_t *dims, const char *out)
{
    m->graph->input[m->graph->n_input++] = hm_vi(in, PIPPY_DT_FLOAT, rank, dims);
    m->graph->output[m->graph->n_output++] = hm_vi(out, PIPPY_DT_FLOAT, -1, NULL);
}

static void hm_init(Onnx__ModelProto *m, const char *name, int dt, int rank, const int64_t *dims, const void *data,
                    size_t bytes)
{
    Onnx__TensorProto *t = hm_alloc(sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = hm_str(name);
    t->has_data_type = 1;
    t->data_type = dt;
    t->dims = hm_alloc((size_t)(rank + 1) * sizeof *t->dims);
    memcpy(t->dims, dims, (size_t)rank * sizeof *dims);
    t->n_dims = (size_t)rank;
    t->has_raw_data = 1;
    t->raw_data.len = bytes;
    t->raw_data.data = hm_alloc(bytes);
    memcpy(t->raw_data.data, data, bytes);
    m->graph->initializer[m->graph->n_initializer++] = t;
}

static void hm_i64(Onnx__ModelProto *m, const char *name, int n, const int64_t *v)
{
    int64_t d[1] = {n};
    hm_init(m, name, PIPPY_DT_INT64, n ? 1 : 0, d, v, (size_t)(n ? n : 1) * 8);
}

#define HL(...) ((const char *const[]){__VA_ARGS__, NULL})

static Onnx__NodeProto *hm_node(Onnx__ModelProto *m, const char *op, const char *const *ins, const char *const *outs)
{
    Onnx__NodeProto *n = hm_alloc(sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = hm_str(op);
    n->name = hm_str(op);
    n->input = hm_alloc(HM_CAP * sizeof *n->input);
    n->output = hm_alloc(HM_CAP * sizeof *n->output);
    n->attribute = hm_alloc(HM_CAP * sizeof *n->attribute);
    for (; *ins; ins++)
        n->input[n->n_input++] = hm_str(*ins);
    for (; *outs; outs++)
        n->output[n->n_output++] = hm_str(*outs);
    m->graph->node[m->graph->n_node++] = n;
    return n;
}

static Onnx__AttributeProto *hm_attr(Onnx__NodeProto *n, const char *name, int type)
{
    Onnx__AttributeProto *a = hm_alloc(sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = hm_str(name);
    a->has_type = 1;
    a->type = type;
    n->attribute[n->n_attribute++] = a;
    return a;
}

static void hm_ints(Onnx__NodeProto *n, const char *name, int k, const int64_t *v)
{
    Onnx__AttributeProto *a = hm_attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->ints = hm_alloc((size_t)k * 8);
    memcpy(a->ints, v, (size_t)k * 8);
    a->n_ints = (size_t)k;
}

static char hm_dir[64], hm_path[128], hm_out[128];

static void hm_setup(void)
{
    strcpy(hm_dir, "/tmp/pippy_hostile_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(hm_dir));
    snprintf(hm_path, sizeof hm_path, "%s/m.onnx", hm_dir);
    snprintf(hm_out, sizeof hm_out, "%s/out", hm_dir);
}

static void hm_teardown(void)
{
    hm_free_all();
    unlink(hm_path);
    rmdir(hm_dir);
}

/* Compile m (batch 2, 1 stage); on success *g and *plan are the result when g is given, else freed. */
static pippy_status hm_compile(const Onnx__ModelProto *m, uint64_t max_memory, pippy_graph **g, pippy_plan *plan)
{
    size_t n = onnx__model_proto__get_packed_size(m);
    uint8_t *buf = malloc(n);
    ck_assert_uint_eq(onnx__model_proto__pack(m, buf), n);
    FILE *f = fopen(hm_path, "wb");
    ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
    free(buf);
    pippy_compile_opts o;
    memset(&o, 0, sizeof o);
    o.model_path = hm_path;
    o.out_dir = hm_out;
    o.microbatches = 1;
    o.max_memory = max_memory;
    o.no_calibration = 1;
    pippy_graph *gg = NULL;
    pippy_plan pp;
    pippy_error_clear();
    pippy_status st = pippy_compile_plan(&o, &gg, &pp);
    if (getenv("PIPPY_TEST_VERBOSE"))
        fprintf(stderr, "[%s] %s\n", pippy_status_string(st), pippy_last_error());
    if (st == PIPPY_OK && g) {
        *g = gg;
        *plan = pp;
    } else if (st == PIPPY_OK) {
        pippy_plan_free(&pp);
        pippy_graph_free(gg);
    }
    return st;
}

static void hm_expect(const Onnx__ModelProto *m, pippy_status want, const char *const *needles)
{
    pippy_status st = hm_compile(m, 1ull << 30, NULL, NULL);
    const char *msg = pippy_last_error();
    ck_assert_msg(st == want, "expected %s, got %s: %s", pippy_status_string(want), pippy_status_string(st), msg);
    for (; needles && *needles; needles++)
        ck_assert_msg(strstr(msg, *needles), "message lacks '%s': %s", *needles, msg);
}

static const int64_t hm_x2x256[2] = {2, 256};

/* ---- the defects ---- */

START_TEST(test_reshape_overflow)
{
    /* [4, 2^62 + 128] has 512 elements modulo 2^64, the input's count: it used to be accepted */
    Onnx__ModelProto *m = hm_model(17);
    hm_io(m, "x", 2, hm_x2x256, "y");
    hm_i64(m, "s", 2, (const int64_t[]){4, (1LL << 62) + 128});
    hm_node(m, "Reshape", HL("x", "s"), HL("y"));
    hm_expect(m, PIPPY_ERR_SHAPE, HL("Reshape", "overflows"));
}
END_TEST

START_TEST(test_tile_overflow)
{
    Onnx__ModelProto *m = hm_model(17);
    hm_io(m, "x", 2, hm_x2x256, "y");
    hm_i64(m, "r", 2, (const int64_t[]){1LL << 62, 1LL << 62});
    hm_node(m, "Tile", HL("x", "r"), HL("y"));
    hm_expect(m, PIPPY_ERR_SHAPE, HL("Tile", "overflows"));
    /* a product that fits but is absurd: refused by the size bound, not allocated */
    m = hm_model(17);
    hm_io(m, "x", 2, hm_x2x256, "y");
    hm_i64(m, "r", 2, (const int64_t[]){1LL << 20, 1LL << 20});
    hm_node(m, "Tile", HL("x", "r"), HL("y"));
    hm_expect(m, PIPPY_ERR_SHAPE, HL("Tile", "bytes"));
}
END_TEST

START_TEST(test_range_overflow)
{
    Onnx__ModelProto *m = hm_model(17);
    hm_io(m, "x", 2, hm_x2x256, "y");
    int64_t d0[1] = {0};
    hm_init(m, "a", PIPPY_DT_INT64, 0, d0, (const int64_t[]){INT64_MIN}, 8);
    hm_init(m, "b", PIPPY_DT_INT64, 0, d0, (const int64_t[]){INT64_MAX}, 8);
    hm_init(m, "c", PIPPY_DT_INT64, 0, d0, (const int64_t[]){1}, 8);
    hm_node(m, "Range", HL("a", "b", "c"), HL("r"));
    Onnx__NodeProto *cast = hm_node(m, "Cast", HL("r"), HL("rf"));
    Onnx__AttributeProto *to = hm_attr(cast, "to", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    to->has_i = 1;
    to->i = PIPPY_DT_FLOAT;
    hm_node(m, "Add", HL("x", "rf"), HL("y"));
    hm_expect(m, PIPPY_ERR_SHAPE, HL("Range", "too many elements"));
}
END_TEST

/* A step of 2^62 over a dim of 256 takes one element (it used to overflow computing the count
 * and the strides): the output is that element, read within the input. */
START_TEST(test_slice_huge_step)
{
    Onnx__ModelProto *m = hm_model(17);
    hm_io(m, "x", 2, hm_x2x256, "y");
    hm_i64(m, "st", 1, (const int64_t[]){INT64_MIN + 1});
    hm_i64(m, "en", 1, (const int64_t[]){INT64_MAX});
    hm_i64(m, "ax", 1, (const int64_t[]){1});
    hm_i64(m, "sp", 1, (const int64_t[]){1LL << 62});
    hm_node(m, "Slice", HL("x", "st", "en", "ax", "sp"), HL("y"));
    pippy_graph *g;
    pippy_plan plan;
    ck_assert_msg(hm_compile(m, 1ull << 30, &g, &plan) == PIPPY_OK, "%s", pippy_last_error());
    const pippy_value *y = &g->values[g->outputs[0]];
    ck_assert_int_eq(y->t.rank, 2);
    ck_assert_int_eq(y->t.dims[0], 2);
    ck_assert_int_eq(y->t.dims[1], 1);
    /* run the kernel on exact buffers: row r of x is r*1000 + column */
    pippy_op_desc d;
    int32_t node = plan.stages[0].nodes[0];
    pippy_graph_op_desc(g, node, &d);
    pippy_kernel *k;
    ck_assert_int_eq(pippy_kernel_create(&d, &k), PIPPY_OK);
    float *x = malloc(512 * sizeof *x), *out = malloc(2 * sizeof *out);
    for (int i = 0; i < 512; i++)
        x[i] = (float)(i / 256 * 1000 + i % 256);
    const void *in[5] = {x, d.in_const[1], d.in_const[2], d.in_const[3], d.in_const[4]};
    void *outs[1] = {out};
    pippy_kernel_run(k, in, outs);
    ck_assert(out[0] == 0.0f && out[1] == 1000.0f);
    pippy_kernel_destroy(k);
    free(x);
    free(out);
    pippy_plan_free(&plan);
    pippy_graph_free(g);
}
END_TEST

START_TEST(test_conv_overflow)
{
    const int64_t xd[4] = {1, 1, 8, 8}, wd[4] = {1, 1, 3, 3};
    float w[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    const char *const needles[2][3] = {{"Conv", "pads", "overflow"}, {"Conv", "dilation", "overflows"}};
    for (int c = 0; c < 2; c++) {
        Onnx__ModelProto *m = hm_model(17);
        hm_io(m, "x", 4, xd, "y");
        hm_init(m, "w", PIPPY_DT_FLOAT, 4, wd, w, sizeof w);
        Onnx__NodeProto *n = hm_node(m, "Conv", HL("x", "w"), HL("y"));
        if (c == 0)
            hm_ints(n, "pads", 4, (const int64_t[]){1LL << 62, 1LL << 62, 1LL << 62, 1LL << 62});
        else
            hm_ints(n, "dilations", 2, (const int64_t[]){1LL << 62, 1LL << 62});
        hm_expect(m, PIPPY_ERR_INVALID,
                  (const char *const[]){needles[c][0], needles[c][1], needles[c][2], NULL});
    }
}
END_TEST

START_TEST(test_attr_wrong_type)
{
    const int64_t xd[2] = {2, 4}, wd[2] = {3, 4};
    float w[12] = {0};
    Onnx__ModelProto *m = hm_model(17);
    hm_io(m, "x", 2, xd, "y");
    hm_init(m, "w", PIPPY_DT_FLOAT, 2, wd, w, sizeof w);
    Onnx__NodeProto *n = hm_node(m, "Gemm", HL("x", "w"), HL("y"));
    Onnx__AttributeProto *a = hm_attr(n, "transB", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = 1.0f; /* was silently ignored: transB = 0, then "inner dims differ" or a wrong result */
    hm_expect(m, PIPPY_ERR_INVALID, HL("Gemm", "attribute 'transB' has type FLOAT, expected INT"));
}
END_TEST

START_TEST(test_op_outside_opset)
{
    const int64_t xd[2] = {2, 4};
    Onnx__ModelProto *m = hm_model(17);
    hm_io(m, "x", 2, xd, "y");
    hm_node(m, "Gelu", HL("x"), HL("y")); /* Gelu came in opset 20 */
    hm_expect(m, PIPPY_ERR_INVALID, HL("Gelu does not exist in opset 17", "added in opset 20"));
    m = hm_model(28);
    hm_io(m, "x", 2, xd, "y");
    hm_node(m, "Gelu", HL("x"), HL("y"));
    ck_assert_int_eq(hm_compile(m, 1ull << 30, NULL, NULL), PIPPY_OK);
}
END_TEST

/* A declared dim of 2^31 feeding a folded ConstantOfShape: refused before the 34 GB are taken
 * (it used to take 11 GB before failing). */
START_TEST(test_memory_estimated_first)
{
    const int64_t xd[2] = {1LL << 31, 4};
    Onnx__ModelProto *m = hm_model(17);
    m->graph->input[m->graph->n_input++] = hm_vi("x", PIPPY_DT_FLOAT, 2, xd);
    m->graph->output[m->graph->n_output++] = hm_vi("y", PIPPY_DT_FLOAT, -1, NULL);
    hm_node(m, "Shape", HL("x"), HL("s"));
    hm_node(m, "ConstantOfShape", HL("s"), HL("c"));
    hm_node(m, "Add", HL("x", "c"), HL("y"));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    hm_expect(m, PIPPY_ERR_UNSUPPORTED, HL("ConstantOfShape", "memory limit", "--max-memory"));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_msg(t1.tv_sec - t0.tv_sec < 5, "took %ld s: it allocated first", (long)(t1.tv_sec - t0.tv_sec));
    /* no folding: the stage's own memory is estimated at compile time */
    m = hm_model(17);
    m->graph->input[m->graph->n_input++] = hm_vi("x", PIPPY_DT_FLOAT, 2, xd);
    m->graph->output[m->graph->n_output++] = hm_vi("y", PIPPY_DT_FLOAT, -1, NULL);
    hm_node(m, "Relu", HL("x"), HL("y"));
    hm_expect(m, PIPPY_ERR_UNSUPPORTED, HL("stage 0 would need", "limit"));
}
END_TEST

/* Gather indices out of range: an error naming node and index, when folding and when running. */
START_TEST(test_gather_out_of_range)
{
    const int64_t xd[2] = {2, 4}, td[1] = {5};
    float tbl[5] = {1, 2, 3, 4, 5};
    Onnx__ModelProto *m = hm_model(17);
    hm_io(m, "x", 2, xd, "y");
    hm_init(m, "t", PIPPY_DT_FLOAT, 1, td, tbl, sizeof tbl);
    hm_i64(m, "i", 1, (const int64_t[]){12});
    hm_node(m, "Gather", HL("t", "i"), HL("g"));
    hm_node(m, "Add", HL("x", "g"), HL("y"));
    hm_expect(m, PIPPY_ERR_INVALID, HL("Gather", "index 12", "out of range", "size 5"));
    /* at run time: the kernel zeroes the slice and records the error */
    pippy_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = "Gather";
    d.domain = "";
    d.opset = 17;
    d.name = "lookup";
    d.n_in = 2;
    d.n_out = 1;
    d.in[0] = (pippy_tdesc){PIPPY_DT_FLOAT, 1, {5}};
    d.in[1] = (pippy_tdesc){PIPPY_DT_INT64, 1, {2}};
    ck_assert_int_eq(pippy_op_infer(&d), PIPPY_OK);
    pippy_kernel *k;
    ck_assert_int_eq(pippy_kernel_create(&d, &k), PIPPY_OK);
    int64_t idx[2] = {-2, 5};
    float out[2] = {9, 9};
    pippy_run_error_clear();
    pippy_kernel_run(k, (const void *const[]){tbl, idx}, (void *const[]){out});
    ck_assert(out[0] == 4.0f && out[1] == 0.0f);
    ck_assert_ptr_nonnull(pippy_run_error());
    ck_assert_msg(strstr(pippy_run_error(), "node 'lookup' (Gather): index 5"), "%s", pippy_run_error());
    pippy_run_error_clear();
    ck_assert_ptr_null(pippy_run_error());
    pippy_kernel_destroy(k);
}
END_TEST

START_TEST(test_checked_helpers)
{
    int64_t v;
    uint64_t u;
    ck_assert_int_eq(pippy_mul_i64(1LL << 62, 2, &v), 1);
    ck_assert_int_eq(pippy_mul_i64(1LL << 31, 1LL << 31, &v), 0);
    ck_assert(v == 1LL << 62);
    ck_assert_int_eq(pippy_add_i64(INT64_MAX, 1, &v), 1);
    ck_assert_int_eq(pippy_dims_product((const int64_t[]){4, (1LL << 62) + 128}, 2, &v), 1);
    ck_assert_int_eq(pippy_dims_product((const int64_t[]){4, -1}, 2, &v), 1);
    ck_assert_int_eq(pippy_dims_product((const int64_t[]){0, INT64_MAX}, 2, &v), 0);
    ck_assert(v == 0);
    ck_assert_int_eq(pippy_elems_bytes(1LL << 38, 4, &u), 0);
    ck_assert_int_eq(pippy_elems_bytes((1LL << 38) + 1, 4, &u), 1); /* over 1 TiB */
    ck_assert_int_eq(pippy_align_u64(UINT64_MAX - 3, 64, &u), 1);
    pippy_tdesc t = {PIPPY_DT_FLOAT, 2, {4, (1LL << 62) + 128}};
    ck_assert_int_eq(pippy_tdesc_check(&t, &u), 1);
    t.dims[1] = 128;
    ck_assert_int_eq(pippy_tdesc_check(&t, &u), 0);
    ck_assert(u == 2048);
    t.rank = 9;
    ck_assert_int_eq(pippy_tdesc_check(&t, &u), 1);
}
END_TEST

static Suite *hostile_model_suite(void)
{
    Suite *s = suite_create("hostile_model");
    TCase *tc = tcase_create("crafted");
    tcase_add_checked_fixture(tc, hm_setup, hm_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_reshape_overflow);
    tcase_add_test(tc, test_tile_overflow);
    tcase_add_test(tc, test_range_overflow);
    tcase_add_test(tc, test_slice_huge_step);
    tcase_add_test(tc, test_conv_overflow);
    tcase_add_test(tc, test_attr_wrong_type);
    tcase_add_test(tc, test_op_outside_opset);
    tcase_add_test(tc, test_memory_estimated_first);
    tcase_add_test(tc, test_gather_out_of_range);
    tcase_add_test(tc, test_checked_helpers);
    suite_add_tcase(s, tc);
    return s;
}

PIPPY_TEST_SUITE(hostile_model_suite)
