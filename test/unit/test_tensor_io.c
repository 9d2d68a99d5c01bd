/* test_tensor_io.c — .pb / .npy tensor files: round trips, files from numpy and onnx
 * (test/fixtures/tensors, made by test/fixtures/make_tensor_files.py), and bad files. */
#define _GNU_SOURCE /* memmem */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* A FIFO (or anything that is not a regular file) is refused at once, never waited on. */
START_TEST(test_fifo_refused)
{
    char path[256];
    snprintf(path, sizeof path, "%s/pipe.npy", tmpdir);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    alarm(10); /* the old code blocked here forever */
    pippy_tensor_file tf;
    ck_assert_int_eq(pippy_tensor_read(path, &tf), PIPPY_ERR_IO);
    alarm(0);
    ck_assert_msg(strstr(pippy_last_error(), "not a regular file") && strstr(pippy_last_error(), path), "%s",
                  pippy_last_error());
}
END_TEST

/* A .pb that declares a huge shape over a few bytes of data fails before allocating for it. */
START_TEST(test_pb_huge_shape)
{
    static unsigned char buf[256];
    char path[256];
    int64_t dims[3] = {1 << 20, 1 << 10, 1 << 4}; /* 64 GiB declared, 4 bytes given */
    Onnx__TensorProto tp = ONNX__TENSOR_PROTO__INIT;
    tp.n_dims = 3;
    tp.dims = dims;
    tp.has_data_type = 1;
    tp.data_type = PIPPY_DT_FLOAT;
    float one = 1;
    tp.n_float_data = 1;
    tp.float_data = &one;
    size_t n = onnx__tensor_proto__pack(&tp, buf);
    snprintf(path, sizeof path, "%s/huge.pb", tmpdir);
    write_bytes(path, buf, n);
    expect_error(path, PIPPY_ERR_FORMAT, "more than a file of");
    dims[0] = (int64_t)1 << 62; /* the element count overflows */
    n = onnx__tensor_proto__pack(&tp, buf);
    write_bytes(path, buf, n);
    expect_error(path, PIPPY_ERR_FORMAT, "too large");
}
END_TEST

/* The tensor-file mutator: every fixture, bytes flipped, set to edge values, cut short, header
 * text replaced; each read must give a well-formed tensor or a clear error naming the file. */
static uint64_t tf_rng = 0x2545F4914F6CDD1DULL;
static uint64_t tf_next(void) { return pippy_test_rand(&tf_rng); }

static void tf_try(const char *path, const unsigned char *buf, size_t n, int *ok)
{
    write_bytes(path, buf, n);
    pippy_tensor_file tf;
    pippy_error_clear();
    pippy_status st = pippy_tensor_read(path, &tf);
    if (st == PIPPY_OK) {
        uint64_t bytes;
        ck_assert_msg(pippy_tdesc_check(&tf.t, &bytes) == 0, "%s: accepted an invalid shape", path);
        volatile unsigned char sink = 0;
        for (uint64_t b = 0; b < bytes; b++) /* every byte readable */
            sink ^= ((const unsigned char *)tf.data)[b];
        (void)sink;
        pippy_tensor_file_free(&tf);
        (*ok)++;
        return;
    }
    ck_assert_msg(st != PIPPY_ERR_INTERNAL && pippy_last_error()[0] && strstr(pippy_last_error(), path),
                  "%s: status %d, message '%s'", path, (int)st, pippy_last_error());
}

START_TEST(test_fuzz_tensor_files)
{
    static unsigned char seed[4096], buf[8192];
    static const unsigned char edge[] = {0x00, 0xff, 0x7f, 0x80, '(', ')', ',', '9', '-', '\'', ' ', 'L'};
    static const char *const shapes[] = {"(99999999999, 99999999999)", "(-3,)", "(4611686018427387904, 4)",
                                         "()", "(0, 3)", "(2, 3, 1, 1, 1, 1, 1, 1, 1)", "(1e3,)", "(2,3"};
    DIR *d = opendir(FIX);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    int files = 0, cases = 0, ok = 0;
    char src[512], path[512];
    while ((e = readdir(d))) {
        size_t nl = strlen(e->d_name);
        if (nl < 4 || (strcmp(e->d_name + nl - 4, ".npy") && strcmp(e->d_name + nl - 3, ".pb")))
            continue;
        snprintf(src, sizeof src, FIX "%s", e->d_name);
        size_t n = read_bytes(src, seed, sizeof seed);
        snprintf(path, sizeof path, "%s/m%s", tmpdir, e->d_name + nl - (e->d_name[nl - 1] == 'y' ? 4 : 3));
        files++;
        for (int c = 0; c < 100; c++, cases++) {
            size_t m = n;
            memcpy(buf, seed, n);
            int kind = (int)(tf_next() % 4);
            if (kind == 0) { /* cut short */
                m = (size_t)(tf_next() % n);
            } else if (kind == 3 && buf[0] == 0x93) { /* a .npy shape from the list */
                char *s = memmem(buf, n, "'shape': ", 9), *t = s ? memchr(s, ')', n - (size_t)(s - (char *)buf)) : NULL;
                const char *sh = shapes[tf_next() % (sizeof shapes / sizeof shapes[0])];
                if (s && t && (size_t)(t + 1 - (s + 9)) >= strlen(sh)) {
                    memset(s + 9, ' ', (size_t)(t + 1 - (s + 9)));
                    memcpy(s + 9, sh, strlen(sh));
                }
            } else { /* bytes: flipped or set to edge values, more of them near the header */
                for (int f = 1 + (int)(tf_next() % 6); f > 0; f--) {
                    size_t at = (size_t)(tf_next() % (tf_next() % 2 ? (n < 128 ? n : 128) : n));
                    buf[at] = kind == 1 ? (unsigned char)(buf[at] ^ (1u << (tf_next() % 8)))
                                        : edge[tf_next() % sizeof edge];
                }
            }
            tf_try(path, buf, m, &ok);
        }
    }
    closedir(d);
    ck_assert_int_gt(files, 15);
    ck_assert_int_gt(ok, 0);
    ck_assert_int_lt(ok, cases);
    fprintf(stderr, "tensor-file mutator: %d cases from %d files: %d read, %d clear errors\n", cases, files, ok,
            cases - ok);
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
    tcase_add_test(tc, test_fifo_refused);
    tcase_add_test(tc, test_pb_huge_shape);
    suite_add_tcase(s, tc);
    TCase *fz = tcase_create("mutator");
    tcase_add_checked_fixture(fz, tmp_setup, tmp_teardown);
    tcase_set_timeout(fz, 120);
    tcase_add_test(fz, test_fuzz_tensor_files);
    suite_add_tcase(s, fz);
    return s;
}
PIPPY_TEST_SUITE(tensor_io_suite)
