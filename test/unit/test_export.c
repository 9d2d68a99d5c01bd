/* test_export.c — compiler/export_onnx: initializers replaced in ONNX files
 * (test/fixtures/export, made by test/fixtures/make_export_models.py), read back through the
 * project's loader; everything else byte-identical once the data fields are put back, fields
 * outside pippyc's proto subset kept; external data in and out; bad inputs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export_onnx.h"
#include "fileio.h"
#include "harness.h"
#include "hash.h"
#include "onnx.pb-c.h"
#include "onnx_load.h"

#define FIX "test/fixtures/export/"

static char tmp[64], out[128];

static void setup(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/pippy_export_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    snprintf(out, sizeof out, "%s/trained.onnx", tmp);
}

static void teardown(void) { pippy_test_rmtree(tmp); }

/* New values: W1 (raw_data in the fixture), b1 (float_data), b2 (raw_data). */
static float w1[65 * 15], b1[65], b2[8];

static void new_values(pippy_export_tensor t[3])
{
    for (int i = 0; i < 65 * 15; i++)
        w1[i] = (float)i * 0.25f - 100.0f;
    for (int i = 0; i < 65; i++)
        b1[i] = -(float)i;
    for (int i = 0; i < 8; i++)
        b2[i] = 1000.0f + (float)i;
    t[0] = (pippy_export_tensor){"W1", {PIPPY_DT_FLOAT, 2, {65, 15}}, w1};
    t[1] = (pippy_export_tensor){"b1", {PIPPY_DT_FLOAT, 1, {65}}, b1};
    t[2] = (pippy_export_tensor){"b2", {PIPPY_DT_FLOAT, 1, {8}}, b2};
}

static const pippy_value *value_of(const pippy_graph *g, const char *name)
{
    int32_t v = pippy_graph_find(g, name);
    ck_assert_msg(v >= 0, "no value %s", name);
    return &g->values[v];
}

/* Load path with the project's loader and check the new values, and W2 / shape as in ref. */
static void check_loaded(const char *path, const char *ref)
{
    pippy_graph *g = NULL, *r = NULL;
    ck_assert_msg(pippy_onnx_load(path, &g) == PIPPY_OK, "%s: %s", path, pippy_last_error());
    ck_assert_msg(pippy_onnx_load(ref, &r) == PIPPY_OK, "%s: %s", ref, pippy_last_error());
    ck_assert_mem_eq(value_of(g, "W1")->data, w1, sizeof w1);
    ck_assert_mem_eq(value_of(g, "b1")->data, b1, sizeof b1);
    ck_assert_mem_eq(value_of(g, "b2")->data, b2, sizeof b2);
    ck_assert_mem_eq(value_of(g, "W2")->data, value_of(r, "W2")->data, 8 * 65 * 4);
    ck_assert_mem_eq(value_of(g, "shape")->data, value_of(r, "shape")->data, 16);
    ck_assert_int_eq(g->n_nodes, r->n_nodes);
    pippy_graph_free(g);
    pippy_graph_free(r);
}

static Onnx__ModelProto *unpack(const char *path)
{
    char *buf;
    size_t len;
    ck_assert_msg(pippy_read_file(path, &buf, &len) == PIPPY_OK, "%s", pippy_last_error());
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, (uint8_t *)buf);
    free(buf);
    ck_assert_ptr_nonnull(m);
    return m;
}

static Onnx__TensorProto *init_of(Onnx__ModelProto *m, const char *name)
{
    for (size_t i = 0; i < m->graph->n_initializer; i++)
        if (!strcmp(m->graph->initializer[i]->name, name))
            return m->graph->initializer[i];
    ck_abort_msg("no initializer %s", name);
    return NULL;
}

static size_t packed(Onnx__ModelProto *m, uint8_t **buf)
{
    size_t n = onnx__model_proto__get_packed_size(m);
    *buf = malloc(n);
    ck_assert_uint_eq(onnx__model_proto__pack(m, *buf), n);
    return n;
}

/* Out equals in byte for byte once every initializer's data fields are copied from in. */
static void check_same_but_data(const char *in_path, const char *out_path)
{
    Onnx__ModelProto *a = unpack(in_path), *b = unpack(out_path);
    ck_assert_uint_eq(a->graph->n_initializer, b->graph->n_initializer);
    Onnx__TensorProto saved[64];
    ck_assert_uint_le(b->graph->n_initializer, 64);
    for (size_t i = 0; i < b->graph->n_initializer; i++) {
        Onnx__TensorProto *x = a->graph->initializer[i], *y = b->graph->initializer[i];
        ck_assert_str_eq(x->name, y->name);
        saved[i] = *y;
        y->has_raw_data = x->has_raw_data;
        y->raw_data = x->raw_data;
        y->n_float_data = x->n_float_data;
        y->float_data = x->float_data;
        y->has_data_location = x->has_data_location;
        y->data_location = x->data_location;
        y->n_external_data = x->n_external_data;
        y->external_data = x->external_data;
    }
    uint8_t *pa, *pb;
    size_t na = packed(a, &pa), nb = packed(b, &pb);
    ck_assert_uint_eq(na, nb);
    ck_assert_msg(memcmp(pa, pb, na) == 0, "%s and %s differ beyond the initializers' data", in_path, out_path);
    for (size_t i = 0; i < b->graph->n_initializer; i++)
        *b->graph->initializer[i] = saved[i];
    free(pa);
    free(pb);
    onnx__model_proto__free_unpacked(a, NULL);
    onnx__model_proto__free_unpacked(b, NULL);
}

static uint64_t file_hash(const char *path)
{
    char *buf;
    size_t len;
    ck_assert(pippy_read_file(path, &buf, &len) == PIPPY_OK);
    uint64_t h = pippy_fnv1a(buf, len, PIPPY_FNV_SEED);
    free(buf);
    return h;
}

START_TEST(test_replace_inline)
{
    pippy_export_tensor t[3];
    new_values(t);
    uint64_t before = file_hash(FIX "export_plain.onnx");
    ck_assert_msg(pippy_onnx_export(FIX "export_plain.onnx", out, t, 3, NULL) == PIPPY_OK, "%s", pippy_last_error());
    check_loaded(out, FIX "export_plain.onnx");
    check_same_but_data(FIX "export_plain.onnx", out);
    ck_assert(file_hash(FIX "export_plain.onnx") == before);
    /* fields outside the subset: present in the fixture, and still there */
    Onnx__ModelProto *m = unpack(out);
    ck_assert_uint_ge(m->base.n_unknown_fields, 2);      /* functions, training_info */
    ck_assert_uint_ge(m->graph->base.n_unknown_fields, 2); /* sparse_initializer, quantization_annotation */
    ck_assert_uint_ge(m->graph->n_metadata_props, 1);      /* a field of pippyc's subset now, kept */
    ck_assert_uint_ge(m->graph->node[0]->base.n_unknown_fields, 1);
    ck_assert_uint_ge(init_of(m, "W2")->base.n_unknown_fields, 1);
    ck_assert_uint_ge(init_of(m, "b2")->base.n_unknown_fields, 1); /* segment */
    /* b1 was float_data: now raw_data only */
    Onnx__TensorProto *tb = init_of(m, "b1");
    ck_assert(tb->has_raw_data && tb->raw_data.len == sizeof b1 && tb->n_float_data == 0);
    onnx__model_proto__free_unpacked(m, NULL);
    /* no tensor at all: a faithful copy */
    ck_assert_int_eq(pippy_onnx_export(FIX "export_plain.onnx", out, NULL, 0, NULL), PIPPY_OK);
    char *a, *b;
    size_t la, lb;
    ck_assert(pippy_read_file(FIX "export_plain.onnx", &a, &la) == PIPPY_OK);
    ck_assert(pippy_read_file(out, &b, &lb) == PIPPY_OK);
    check_same_but_data(FIX "export_plain.onnx", out);
    ck_assert_uint_eq(la, lb);
    free(a);
    free(b);
}
END_TEST

/* b3 = Identity(b2) in the file (torch.onnx's storage of two parameters with equal values): a
 * tensor named b3 gets an initializer of its own in place of the Identity, b2 keeps its values,
 * and the rest of the model is the file's. */
START_TEST(test_identity_output_becomes_initializer)
{
    float b3[8];
    for (int i = 0; i < 8; i++)
        b3[i] = 0.5f * (float)i - 7.0f;
    pippy_export_tensor t[1] = {{"b3", {PIPPY_DT_FLOAT, 1, {8}}, b3}};
    ck_assert_msg(pippy_onnx_export(FIX "export_identity.onnx", out, t, 1, NULL) == PIPPY_OK, "%s", pippy_last_error());
    pippy_graph *g = NULL, *r = NULL;
    ck_assert_msg(pippy_onnx_load(out, &g) == PIPPY_OK, "%s", pippy_last_error());
    ck_assert_msg(pippy_onnx_load(FIX "export_identity.onnx", &r) == PIPPY_OK, "%s", pippy_last_error());
    ck_assert_int_eq(value_of(g, "b3")->kind, PIPPY_VAL_PARAM);
    ck_assert_mem_eq(value_of(g, "b3")->data, b3, sizeof b3);
    ck_assert_mem_eq(value_of(g, "b2")->data, value_of(r, "b2")->data, sizeof b3);
    ck_assert_mem_eq(value_of(g, "W2")->data, value_of(r, "W2")->data, 8 * 65 * 4);
    ck_assert_int_eq(g->n_nodes, r->n_nodes - 1);
    for (int32_t i = 0; i < g->n_nodes; i++)
        ck_assert_str_ne(g->nodes[i].op, "Identity");
    pippy_graph_free(g);
    pippy_graph_free(r);
    Onnx__ModelProto *m = unpack(out);
    ck_assert_uint_eq(m->graph->n_initializer, 5);
    ck_assert_str_eq(m->graph->initializer[4]->name, "b3");
    onnx__model_proto__free_unpacked(m, NULL);
    /* a name that is neither an initializer nor an Identity of one is still refused */
    pippy_export_tensor bad[1] = {{"h", {PIPPY_DT_FLOAT, 1, {8}}, b3}};
    ck_assert_int_eq(pippy_onnx_export(FIX "export_identity.onnx", out, bad, 1, NULL), PIPPY_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "'h'"));
}
END_TEST

START_TEST(test_external_in_inline_out)
{
    pippy_export_tensor t[3];
    new_values(t);
    uint64_t h1 = file_hash(FIX "export_external.onnx"), h2 = file_hash(FIX "export_external.data");
    ck_assert_msg(pippy_onnx_export(FIX "export_external.onnx", out, t, 3, NULL) == PIPPY_OK, "%s",
                  pippy_last_error());
    check_loaded(out, FIX "export_external.onnx");
    Onnx__ModelProto *m = unpack(out);
    for (size_t i = 0; i < m->graph->n_initializer; i++) /* everything inline now */
        ck_assert(!m->graph->initializer[i]->has_data_location || m->graph->initializer[i]->data_location == 0);
    onnx__model_proto__free_unpacked(m, NULL);
    char data[160];
    snprintf(data, sizeof data, "%s.data", out);
    ck_assert_int_ne(access(data, F_OK), 0);
    ck_assert(file_hash(FIX "export_external.onnx") == h1 && file_hash(FIX "export_external.data") == h2);
}
END_TEST

START_TEST(test_external_out)
{
    pippy_export_tensor t[3];
    new_values(t);
    pippy_export_opts o = {.inline_limit = 3000}; /* the model is ~7 KB inline */
    const char *ins[2] = {FIX "export_plain.onnx", FIX "export_external.onnx"};
    for (int k = 0; k < 2; k++) {
        ck_assert_msg(pippy_onnx_export(ins[k], out, t, 3, &o) == PIPPY_OK, "%s", pippy_last_error());
        check_loaded(out, ins[k]);
        Onnx__ModelProto *m = unpack(out);
        struct stat st;
        ck_assert_int_eq(stat(out, &st), 0);
        ck_assert_int_le(st.st_size, 3000);
        ck_assert_int_eq(init_of(m, "W1")->data_location, ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL);
        ck_assert_int_eq(init_of(m, "W2")->data_location, ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL);
        ck_assert(!init_of(m, "b2")->has_data_location); /* 32 bytes: stays inline */
        ck_assert_str_eq(init_of(m, "W1")->external_data[0]->value, "trained.onnx.data");
        onnx__model_proto__free_unpacked(m, NULL);
    }
    /* a model that cannot get under the limit */
    o.inline_limit = 100;
    ck_assert_int_eq(pippy_onnx_export(FIX "export_plain.onnx", out, t, 3, &o), PIPPY_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(pippy_last_error(), "even with its initializers"), "%s", pippy_last_error());
}
END_TEST

static void export_fails(const char *in, const char *o, const pippy_export_tensor *t, int n, pippy_status want,
                         const char *msg)
{
    pippy_status st = pippy_onnx_export(in, o, t, n, NULL);
    ck_assert_msg(st == want, "status %d, expected %d: %s", st, want, pippy_last_error());
    ck_assert_msg(strstr(pippy_last_error(), msg), "'%s' lacks '%s'", pippy_last_error(), msg);
}

/* Write the external fixture again into tmp with W1's location set to loc. */
static void external_with_location(const char *loc, char *path, size_t n)
{
    Onnx__ModelProto *m = unpack(FIX "export_external.onnx");
    Onnx__TensorProto *w = init_of(m, "W1");
    char *old = w->external_data[0]->value;
    ck_assert_str_eq(w->external_data[0]->key, "location");
    w->external_data[0]->value = (char *)loc;
    uint8_t *buf;
    size_t k = packed(m, &buf);
    w->external_data[0]->value = old;
    snprintf(path, n, "%s/ext.onnx", tmp);
    ck_assert(pippy_atomic_write_file(path, buf, k) == PIPPY_OK);
    free(buf);
    onnx__model_proto__free_unpacked(m, NULL);
}

START_TEST(test_bad_inputs)
{
    pippy_export_tensor t[3];
    new_values(t);
    const char *in = FIX "export_plain.onnx";
    pippy_export_tensor bad = t[0];
    bad.name = "W9";
    export_fails(in, out, &bad, 1, PIPPY_ERR_INVALID, "tensor 'W9': " FIX "export_plain.onnx has no initializer");
    bad = t[0];
    bad.t.dims[0] = 15;
    bad.t.dims[1] = 65;
    export_fails(in, out, &bad, 1, PIPPY_ERR_SHAPE, "initializer 'W1' is float[65,15] in " FIX
                 "export_plain.onnx, the new value is float[15,65]");
    bad = (pippy_export_tensor){"shape", {PIPPY_DT_INT64, 1, {2}}, b2};
    export_fails(in, out, &bad, 1, PIPPY_ERR_SHAPE, "initializer 'shape' is int64[2]");
    bad = (pippy_export_tensor){"shape", {PIPPY_DT_FLOAT, 1, {2}}, b2};
    export_fails(in, out, &bad, 1, PIPPY_ERR_SHAPE, "initializer 'shape' is int64[2]");
    pippy_export_tensor twice[2] = {t[1], t[1]};
    export_fails(in, out, twice, 2, PIPPY_ERR_INVALID, "tensor 'b1' given twice");
    export_fails(in, in, t, 3, PIPPY_ERR_USAGE, "is the input model");
    export_fails(FIX "no_such.onnx", out, t, 3, PIPPY_ERR_IO, "cannot open " FIX "no_such.onnx");
    export_fails(FIX "../optim_refs.json", out, t, 3, PIPPY_ERR_FORMAT, "not an ONNX model");
    /* writing the input's external data file */
    char path[160], data[160];
    snprintf(path, sizeof path, "%s/export_external.data.onnx", tmp);
    snprintf(data, sizeof data, "%s/export_external.data.onnx.data", tmp);
    char *real = realpath(FIX "export_external.data", NULL);
    ck_assert_ptr_nonnull(real);
    ck_assert_int_eq(symlink(real, data), 0);
    free(real);
    pippy_export_opts o = {.inline_limit = 3000};
    ck_assert_int_eq(pippy_onnx_export(FIX "export_external.onnx", path, t, 3, &o), PIPPY_ERR_USAGE);
    ck_assert_msg(strstr(pippy_last_error(), "is the input's external data file"), "%s", pippy_last_error());
    /* external locations outside the model's folder, or missing */
    const char *locs[] = {"../export/export_external.data", "/etc/passwd", "missing.data"};
    const char *msgs[] = {"without '..'", "without '..'", "cannot open"};
    for (int i = 0; i < 3; i++) {
        external_with_location(locs[i], path, sizeof path);
        export_fails(path, out, t, 3, i < 2 ? PIPPY_ERR_FORMAT : PIPPY_ERR_IO, msgs[i]);
        ck_assert_msg(strstr(pippy_last_error(), "initializer 'W1'"), "%s", pippy_last_error());
    }
    ck_assert_int_ne(access(out, F_OK), 0); /* nothing was written by a failed export */
}
END_TEST

static Suite *export_suite(void)
{
    Suite *s = suite_create("export");
    TCase *tc = tcase_create("export");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_replace_inline);
    tcase_add_test(tc, test_identity_output_becomes_initializer);
    tcase_add_test(tc, test_external_in_inline_out);
    tcase_add_test(tc, test_external_out);
    tcase_add_test(tc, test_bad_inputs);
    suite_add_tcase(s, tc);
    return s;
}
PIPPY_TEST_SUITE(export_suite)
