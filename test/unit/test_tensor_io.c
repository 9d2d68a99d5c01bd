/* test_tensor_io.c — .pb / .npy tensor files: round trips, files from numpy and onnx
 * (test/fixtures/tensors, made by test/fixtures/make_tensor_files.py), and bad files. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "onnx.pb-c.h"
#include "tensor_io.h"

#define FIX "test/fixtures/tensors/"

static char tmpdir[64];

static void tmp_setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pippy_tio_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static int count_files(void)
{
    DIR *d = opendir(tmpdir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static void tmp_teardown(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(tmpdir);
}

static void write_bytes(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
}

static size_t read_bytes(const char *path, void *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static const int32_t all_dtypes[] = {PIPPY_DT_FLOAT, PIPPY_DT_DOUBLE, PIPPY_DT_FLOAT16,
                                     PIPPY_DT_INT32, PIPPY_DT_INT64, PIPPY_DT_INT8,
                                     PIPPY_DT_UINT8, PIPPY_DT_BOOL};
#define N_DTYPES (int)(sizeof all_dtypes / sizeof all_dtypes[0])

/* Every dtype, rank 0..4, both formats: write, read back, compare. */
START_TEST(test_round_trip)
{
    static const int64_t dims[4] = {2, 3, 1, 4};
    const char *ext[2] = {"npy", "pb"};
    for (int f = 0; f < 2; f++)
        for (int d = 0; d < N_DTYPES; d++)
            for (int rank = 0; rank <= 4; rank++) {
                pippy_tdesc t = {.dtype = all_dtypes[d], .rank = rank};
                for (int i = 0; i < rank; i++)
                    t.dims[i] = dims[i];
                size_t n = pippy_tdesc_bytes(&t);
                unsigned char *data = malloc(n);
                for (size_t i = 0; i < n; i++)
                    data[i] = t.dtype == PIPPY_DT_BOOL ? (unsigned char)(i % 3 == 0)
                                                       : (unsigned char)(i * 37 + rank + d);
                char path[256], name[64];
                snprintf(name, sizeof name, "t_%s_r%d", pippy_dtype_name(t.dtype), rank);
                snprintf(path, sizeof path, "%s/%s.%s", tmpdir, name, ext[f]);
                pippy_status s = pippy_tensor_write(path, &t, data, name);
                ck_assert_msg(s == PIPPY_OK, "%s: %s", path, pippy_last_error());
                pippy_tensor_file tf;
                s = pippy_tensor_read(path, &tf);
                ck_assert_msg(s == PIPPY_OK, "%s: %s", path, pippy_last_error());
                char a[128], b[128];
                ck_assert_msg(pippy_tdesc_equal(&tf.t, &t), "%s: read %s, wrote %s", path,
                              pippy_tdesc_str(&tf.t, a, sizeof a), pippy_tdesc_str(&t, b, sizeof b));
                ck_assert_msg(memcmp(tf.data, data, n) == 0, "%s: data differs", path);
                ck_assert_str_eq(tf.name, name);
                pippy_tensor_file_free(&tf);
                free(data);
            }
    /* a zero-sized tensor too */
    pippy_tdesc z = {.dtype = PIPPY_DT_FLOAT, .rank = 2, .dims = {0, 3}};
    for (int f = 0; f < 2; f++) {
        char path[256];
        snprintf(path, sizeof path, "%s/zero.%s", tmpdir, ext[f]);
        ck_assert_int_eq(pippy_tensor_write(path, &z, NULL, "zero"), PIPPY_OK);
        pippy_tensor_file tf;
        ck_assert_msg(pippy_tensor_read(path, &tf) == PIPPY_OK, "%s", pippy_last_error());
        ck_assert(pippy_tdesc_equal(&tf.t, &z));
        pippy_tensor_file_free(&tf);
    }
    /* nothing but the written files is left in the folder (no temporaries) */
    ck_assert_int_eq(count_files(), 2 * N_DTYPES * 5 + 2);
}
END_TEST

/* The .npy header pippy writes is what numpy writes (a 64-byte multiple, same dict text). */
START_TEST(test_npy_header_matches_numpy)
{
    float v[6] = {-1, -0.5f, 0, 0.5f, 1, 1.5f};
    pippy_tdesc t = {.dtype = PIPPY_DT_FLOAT, .rank = 2, .dims = {2, 3}};
    char path[256];
    snprintf(path, sizeof path, "%s/x.npy", tmpdir);
    ck_assert_int_eq(pippy_tensor_write(path, &t, v, NULL), PIPPY_OK);
    static unsigned char ours[4096], theirs[4096];
    size_t n1 = read_bytes(path, ours, sizeof ours);
    size_t n2 = read_bytes(FIX "f32_2x3.npy", theirs, sizeof theirs);
    ck_assert_uint_eq(n1, n2);
    ck_assert_msg(memcmp(ours, theirs, n1) == 0, "header or data differs from numpy's");
}
END_TEST

typedef struct {
    const char *file, *name;
    int32_t dtype;
    int rank;
    int64_t dims[4];
    const void *values;
} fixture;

static const float f32_2x3[] = {-1, -0.5f, 0, 0.5f, 1, 1.5f};
static const double f64_scalar[] = {3.25};
static const int64_t i64_4[] = {-5, 0, 7, 1ll << 40};
static const int32_t i32_8[] = {-4, -3, -2, -1, 0, 1, 2, 3};
static const uint8_t bool_3[] = {1, 0, 1};
static const uint8_t u8_6[] = {0, 40, 80, 120, 160, 200};
static const int8_t i8_5[] = {-128, -1, 0, 1, 127};
static const uint16_t f16_2[] = {0x3e00, 0xc000}; /* 1.5, -2.0 */
static const float f32_v2[] = {0.25f, -8.0f};
static const float f32_2x2[] = {1.0f, -2.5f, 3.0f, 0.125f};
static const int64_t i64_3[] = {1, -2, 1ll << 40};
static const int32_t i32_2[] = {7, -9};
static const uint8_t u8_2[] = {0, 255};
static const int8_t i8_2[] = {-128, 127};
static const double f64_25[] = {2.5};

static const fixture fixtures[] = {
    {"f32_2x3.npy", "f32_2x3", PIPPY_DT_FLOAT, 2, {2, 3}, f32_2x3},
    {"f64_scalar.npy", "f64_scalar", PIPPY_DT_DOUBLE, 0, {0}, f64_scalar},
    {"i64_4.npy", "i64_4", PIPPY_DT_INT64, 1, {4}, i64_4},
    {"i32_2x2x2.npy", "i32_2x2x2", PIPPY_DT_INT32, 3, {2, 2, 2}, i32_8},
    {"bool_3.npy", "bool_3", PIPPY_DT_BOOL, 1, {3}, bool_3},
    {"u8_1x2x1x3.npy", "u8_1x2x1x3", PIPPY_DT_UINT8, 4, {1, 2, 1, 3}, u8_6},
    {"i8_5.npy", "i8_5", PIPPY_DT_INT8, 1, {5}, i8_5},
    {"f16_2.npy", "f16_2", PIPPY_DT_FLOAT16, 1, {2}, f16_2},
    {"f32_v2_2.npy", "f32_v2_2", PIPPY_DT_FLOAT, 1, {2}, f32_v2},
    {"f32_empty_0x3.npy", "f32_empty_0x3", PIPPY_DT_FLOAT, 2, {0, 3}, NULL},
    {"f32_2x3_raw.pb", "input.1", PIPPY_DT_FLOAT, 2, {2, 3}, f32_2x3},
    {"i64_4_raw.pb", "ids", PIPPY_DT_INT64, 1, {4}, i64_4},
    {"f16_2_raw.pb", "h", PIPPY_DT_FLOAT16, 1, {2}, f16_2},
    {"bool_3_raw.pb", "mask", PIPPY_DT_BOOL, 1, {3}, bool_3},
    {"f32_2x2_typed.pb", "w", PIPPY_DT_FLOAT, 2, {2, 2}, f32_2x2},
    {"i64_3_typed.pb", "i", PIPPY_DT_INT64, 1, {3}, i64_3},
    {"i32_2_typed.pb", "j", PIPPY_DT_INT32, 1, {2}, i32_2},
    {"u8_2_typed.pb", "u", PIPPY_DT_UINT8, 1, {2}, u8_2},
    {"i8_2_typed.pb", "s", PIPPY_DT_INT8, 1, {2}, i8_2},
    {"bool_3_typed.pb", "b", PIPPY_DT_BOOL, 1, {3}, bool_3},
    {"f64_scalar_typed.pb", "d", PIPPY_DT_DOUBLE, 0, {0}, f64_25},
    {"f16_2_typed.pb", "g", PIPPY_DT_FLOAT16, 1, {2}, f16_2},
};

START_TEST(test_fixtures_from_numpy_and_onnx)
{
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        const fixture *fx = &fixtures[i];
        char path[256];
        snprintf(path, sizeof path, FIX "%s", fx->file);
        pippy_tensor_file tf;
        pippy_status s = pippy_tensor_read(path, &tf);
        ck_assert_msg(s == PIPPY_OK, "%s: %s", path, pippy_last_error());
        pippy_tdesc want = {.dtype = fx->dtype, .rank = fx->rank};
        memcpy(want.dims, fx->dims, sizeof fx->dims);
        char a[128], b[128];
        ck_assert_msg(pippy_tdesc_equal(&tf.t, &want), "%s: read %s, expected %s", path,
                      pippy_tdesc_str(&tf.t, a, sizeof a), pippy_tdesc_str(&want, b, sizeof b));
        size_t n = pippy_tdesc_bytes(&want);
        if (n)
            ck_assert_msg(memcmp(tf.data, fx->values, n) == 0, "%s: values differ", path);
        ck_assert_str_eq(tf.name, fx->name);
        pippy_tensor_file_free(&tf);
    }
}
END_TEST

static void expect_error(const char *path, pippy_status want, const char *text)
{
    pippy_tensor_file tf;
    pippy_status s = pippy_tensor_read(path, &tf);
    ck_assert_msg(s == want, "%s: status %d (%s), expected %d", path, s, pippy_last_error(), want);
    ck_assert_msg(strstr(pippy_last_error(), text), "%s: \"%s\" lacks \"%s\"", path,
                  pippy_last_error(), text);
    ck_assert_msg(strstr(pippy_last_error(), path), "\"%s\" does not name the file",
                  pippy_last_error());
    ck_assert_ptr_null(tf.data);
}

START_TEST(test_bad_files)
{
    static unsigned char buf[4096];
    char path[256];
    size_t n = read_bytes(FIX "f32_2x3.npy", buf, sizeof buf);

    snprintf(path, sizeof path, "%s/short.npy", tmpdir); /* data cut */
    write_bytes(path, buf, n - 5);
    expect_error(path, PIPPY_ERR_FORMAT, "truncated");
    snprintf(path, sizeof path, "%s/shorthdr.npy", tmpdir); /* header cut */
    write_bytes(path, buf, 40);
    expect_error(path, PIPPY_ERR_FORMAT, "truncated");
    snprintf(path, sizeof path, "%s/garbage.npy", tmpdir);
    static const char zip[] = "PK\x03\x04 this is a zip, not an array";
    write_bytes(path, zip, sizeof zip - 1);
    expect_error(path, PIPPY_ERR_FORMAT, "not a .npy file");
    snprintf(path, sizeof path, "%s/badhdr.npy", tmpdir);
    memcpy(buf + 10, "{'descr': '<f4', 'fortran_order': Maybe", 39);
    write_bytes(path, buf, n);
    expect_error(path, PIPPY_ERR_FORMAT, "fortran_order");

    expect_error(FIX "f32_fortran.npy", PIPPY_ERR_UNSUPPORTED, "Fortran order");
    expect_error(FIX "f32_bigendian.npy", PIPPY_ERR_UNSUPPORTED, "big-endian");
    expect_error(FIX "u32_2.npy", PIPPY_ERR_UNSUPPORTED, "'<u4'");
    expect_error(FIX "string_typed.pb", PIPPY_ERR_UNSUPPORTED, "string");

    n = read_bytes(FIX "f32_2x3_raw.pb", buf, sizeof buf);
    snprintf(path, sizeof path, "%s/short.pb", tmpdir);
    write_bytes(path, buf, n - 3);
    expect_error(path, PIPPY_ERR_FORMAT, "not an ONNX TensorProto");
    snprintf(path, sizeof path, "%s/garbage.pb", tmpdir);
    write_bytes(path, "\x08\xff\xff", 3);
    expect_error(path, PIPPY_ERR_FORMAT, "not an ONNX TensorProto");

    /* raw_data of the wrong size, and typed data of the wrong count */
    int64_t dims[1] = {3};
    float three[2] = {1, 2};
    Onnx__TensorProto tp = ONNX__TENSOR_PROTO__INIT;
    tp.n_dims = 1;
    tp.dims = dims;
    tp.has_data_type = 1;
    tp.data_type = PIPPY_DT_FLOAT;
    tp.has_raw_data = 1;
    tp.raw_data.len = 8;
    tp.raw_data.data = (uint8_t *)three;
    n = onnx__tensor_proto__pack(&tp, buf);
    snprintf(path, sizeof path, "%s/rawsize.pb", tmpdir);
    write_bytes(path, buf, n);
    expect_error(path, PIPPY_ERR_FORMAT, "raw_data has 8 bytes");
    tp.has_raw_data = 0;
    tp.n_float_data = 2;
    tp.float_data = three;
    n = onnx__tensor_proto__pack(&tp, buf);
    snprintf(path, sizeof path, "%s/count.pb", tmpdir);
    write_bytes(path, buf, n);
    expect_error(path, PIPPY_ERR_FORMAT, "float_data has 2 values");
    tp.n_float_data = 0;
    n = onnx__tensor_proto__pack(&tp, buf);
    snprintf(path, sizeof path, "%s/nodata.pb", tmpdir);
    write_bytes(path, buf, n);
    expect_error(path, PIPPY_ERR_FORMAT, "no data");

    snprintf(path, sizeof path, "%s/missing.npy", tmpdir);
    expect_error(path, PIPPY_ERR_IO, "cannot open");
    snprintf(path, sizeof path, "%s/x.txt", tmpdir);
    expect_error(path, PIPPY_ERR_USAGE, ".pb");
}
END_TEST

START_TEST(test_write_errors_leave_files_alone)
{
    char path[256];
    float v[2] = {1, 2};
    pippy_tdesc t = {.dtype = PIPPY_DT_FLOAT, .rank = 1, .dims = {2}};
    snprintf(path, sizeof path, "%s/keep.npy", tmpdir);
    ck_assert_int_eq(pippy_tensor_write(path, &t, v, NULL), PIPPY_OK);
    /* a dtype neither format takes: refused, the old file stays as it was */
    pippy_tdesc bad = {.dtype = 8 /* string */, .rank = 1, .dims = {2}};
    ck_assert_int_eq(pippy_tensor_write(path, &bad, v, NULL), PIPPY_ERR_UNSUPPORTED);
    pippy_tensor_file tf;
    ck_assert_int_eq(pippy_tensor_read(path, &tf), PIPPY_OK);
    ck_assert(memcmp(tf.data, v, sizeof v) == 0);
    pippy_tensor_file_free(&tf);
    /* overwriting replaces it whole */
    float w[3] = {5, 6, 7};
    pippy_tdesc t3 = {.dtype = PIPPY_DT_FLOAT, .rank = 1, .dims = {3}};
    ck_assert_int_eq(pippy_tensor_write(path, &t3, w, NULL), PIPPY_OK);
    ck_assert_int_eq(pippy_tensor_read(path, &tf), PIPPY_OK);
    ck_assert(pippy_tdesc_equal(&tf.t, &t3) && memcmp(tf.data, w, sizeof w) == 0);
    pippy_tensor_file_free(&tf);
    ck_assert_int_eq(count_files(), 1);
    /* a folder that does not exist */
    snprintf(path, sizeof path, "%s/no/such/dir/x.pb", tmpdir);
    ck_assert_int_eq(pippy_tensor_write(path, &t, v, "x"), PIPPY_ERR_IO);
    ck_assert_msg(strstr(pippy_last_error(), path), "%s", pippy_last_error());
}
END_TEST

static Suite *tensor_io_suite(void)
{
    Suite *s = suite_create("tensor_io");
    TCase *tc = tcase_create("files");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_npy_header_matches_numpy);
    tcase_add_test(tc, test_fixtures_from_numpy_and_onnx);
    tcase_add_test(tc, test_bad_files);
    tcase_add_test(tc, test_write_errors_leave_files_alone);
    suite_add_tcase(s, tc);
    return s;
}
PIPPY_TEST_SUITE(tensor_io_suite)
