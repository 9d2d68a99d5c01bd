/* test_costmodel.c — the cost model's kernel table: keys, prices from the table, timing of shapes
 * the table lacks, the file round trip (values as the file keeps them), merging into a file
 * another compile wrote, hostile files, and the optimizer's step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "costmodel.h"
#include "harness.h"

static pippy_op_desc matmul_desc(int64_t m, int64_t k, int64_t n, const pippy_attr *attrs, int32_t n_attrs)
{
    pippy_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = "MatMul";
    d.domain = "";
    d.opset = 17;
    d.name = "mm";
    d.n_in = 2;
    d.n_out = 1;
    d.in[0] = (pippy_tdesc){PIPPY_DT_FLOAT, 2, {m, k}};
    d.in[1] = (pippy_tdesc){PIPPY_DT_FLOAT, 2, {k, n}};
    d.attrs = attrs;
    d.n_attrs = n_attrs;
    ck_assert(pippy_op_infer(&d) == PIPPY_OK);
    return d;
}

static char *tmp_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "/tmp/pippy-cost-%d-%s", (int)getpid(), name);
    return buf;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(test_kernel_keys)
{
    pippy_attr tb = {.name = "pippy.trans_b", .type = PIPPY_ATTR_INT, .i = 1};
    pippy_op_desc d = matmul_desc(64, 256, 1024, NULL, 0);
    d.in[1] = (pippy_tdesc){PIPPY_DT_FLOAT, 2, {1024, 256}};
    d.attrs = &tb;
    d.n_attrs = 1;
    char key[PIPPY_COST_KEY_MAX];
    ck_assert(pippy_cost_kernel_key(&d, key, sizeof key));
    ck_assert_str_eq(key, "MatMul float[64,256] float[1024,256] pippy.trans_b=1");
    static const float w[1];
    d.in_const[1] = w; /* a constant weight: the kernel may hold it in another layout */
    ck_assert(pippy_cost_kernel_key(&d, key, sizeof key));
    ck_assert_str_eq(key, "MatMul float[64,256] float[1024,256]const pippy.trans_b=1");
    ck_assert(!pippy_cost_kernel_key(&d, key, 20)); /* does not fit: not keyed (priced by the rates) */
    pippy_op_desc r = d; /* every op is keyed; ops of another domain carry it */
    r.op = "Relu";
    r.n_in = 1;
    r.n_attrs = 0;
    ck_assert(pippy_cost_kernel_key(&r, key, sizeof key));
    ck_assert_str_eq(key, "Relu float[64,256]");
    ck_assert(!pippy_cost_is_dense(&r));
    r.op = "GeluGrad";
    r.domain = "pippy";
    ck_assert(pippy_cost_kernel_key(&r, key, sizeof key));
    ck_assert_str_eq(key, "pippy::GeluGrad float[64,256]");
    r.op = "ConvGradWeight";
    ck_assert(pippy_cost_is_dense(&r));
}
END_TEST

START_TEST(test_table_prices_nodes)
{
    pippy_cost_model c;
    pippy_cost_defaults(&c);
    pippy_op_desc d = matmul_desc(64, 256, 1024, NULL, 0);
    double rates = c.op_overhead_s + 2.0 * 64 * 256 * 1024 / c.flops_per_s;
    ck_assert_double_eq_tol(pippy_cost_node_s(&c, &d, 0), rates, 1e-12); /* defaults do not time */
    ck_assert_int_eq(c.n_kernels, 0);
    ck_assert(pippy_cost_kernel_put(&c, "Zeta", 1.0, 0) == PIPPY_OK);
    ck_assert(pippy_cost_kernel_put(&c, "MatMul float[64,256] float[256,1024]", 1234.5, 0) == PIPPY_OK);
    ck_assert(pippy_cost_kernel_put(&c, "Alpha", 2.0, 0) == PIPPY_OK);
    ck_assert(pippy_cost_kernel_put(&c, "Zeta", 3.0, 0) == PIPPY_OK); /* replaces */
    ck_assert_int_eq(c.n_kernels, 3);
    ck_assert_str_eq(c.kernels[0].key, "Alpha");
    ck_assert_str_eq(c.kernels[2].key, "Zeta");
    ck_assert_double_eq(pippy_cost_kernel_find(&c, "Zeta")->us, 3.0);
    ck_assert_ptr_null(pippy_cost_kernel_find(&c, "Beta"));
    ck_assert_double_eq_tol(pippy_cost_node_s(&c, &d, 1), 1234.5e-6, 1e-15); /* not timed far: the near time */
    /* timed both ways: priced between them by the share of input bytes read from far */
    ck_assert(pippy_cost_kernel_put(&c, "MatMul float[64,256] float[256,1024]", 100.0, 300.0) == PIPPY_OK);
    ck_assert_double_eq_tol(pippy_cost_node_s(&c, &d, 0), 100e-6, 1e-15);
    ck_assert_double_eq_tol(pippy_cost_node_s(&c, &d, 0.25), 150e-6, 1e-15);
    ck_assert_double_eq_tol(pippy_cost_node_s(&c, &d, 1), 300e-6, 1e-15);
    ck_assert_double_eq_tol(pippy_cost_node_s(&c, &d, 7), 300e-6, 1e-15); /* a share is at most 1 */
    pippy_op_desc view = d; /* a Reshape the stage runs nothing for costs nothing */
    view.op = "Reshape";
    view.in[1] = (pippy_tdesc){PIPPY_DT_INT64, 1, {2}};
    view.out[0] = d.in[0];
    ck_assert_double_eq(pippy_cost_node_s(&c, &view, 1), 0);
    pippy_op_desc other = matmul_desc(64, 256, 512, NULL, 0); /* not in the table */
    ck_assert_double_eq_tol(pippy_cost_node_s(&c, &other, 0.5), c.op_overhead_s + 2.0 * 64 * 256 * 512 / c.flops_per_s,
                            1e-12);
    pippy_cost_free(&c);
}
END_TEST

START_TEST(test_new_shape_is_timed_once)
{
    pippy_cost_model c;
    pippy_cost_defaults(&c);
    c.time_kernels = 1;
    pippy_op_desc d = matmul_desc(32, 128, 256, NULL, 0);
    double s = pippy_cost_node_s(&c, &d, 0);
    ck_assert_int_eq(c.n_kernels, 1);
    ck_assert_int_eq(c.n_new, 1);
    char key[PIPPY_COST_KEY_MAX];
    ck_assert(pippy_cost_kernel_key(&d, key, sizeof key));
    const pippy_cost_kernel *k = pippy_cost_kernel_find(&c, key);
    ck_assert_ptr_nonnull(k);
    ck_assert_double_eq(s, k->us * 1e-6); /* the rounded value the file will hold */
    double gflops = 2.0 * 32 * 128 * 256 / s / 1e9;
    ck_assert_msg(gflops > 0.5 && gflops < 20000, "timed at %g GFLOP/s", gflops);
    ck_assert_msg(k->far_us > 0, "timed far too");
    ck_assert_double_eq(pippy_cost_node_s(&c, &d, 0), s); /* read back, not timed again */
    ck_assert_double_eq(pippy_cost_node_s(&c, &d, 1), k->far_us * 1e-6);
    ck_assert_int_eq(c.n_new, 1);
    /* a shape a file of an older pippyc timed near only: timed again, both ways */
    ck_assert(pippy_cost_kernel_put(&c, key, 1e6, 0) == PIPPY_OK);
    ck_assert(pippy_cost_node_s(&c, &d, 0) < 1.0);
    ck_assert_int_eq(c.n_new, 2);
    ck_assert(pippy_cost_kernel_find(&c, key)->far_us > 0);
    c.time_kernels = 0; /* a file not to be extended: its near time stands */
    ck_assert(pippy_cost_kernel_put(&c, key, 1e6, 0) == PIPPY_OK);
    ck_assert_double_eq(pippy_cost_node_s(&c, &d, 1), 1.0);
    c.time_kernels = 1;
    pippy_op_desc bad = d; /* a kernel the backend cannot make: priced by the rates, nothing kept */
    bad.in[0].dtype = PIPPY_DT_INT8;
    bad.in[1].dtype = PIPPY_DT_INT8;
    ck_assert(pippy_cost_node_s(&c, &bad, 0) > 0);
    ck_assert_int_eq(c.n_kernels, 1);
    pippy_cost_free(&c);
}
END_TEST

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The optimizer's step: timed once per (kind, floats) and kept in the table; AdamW, which reads and
 * writes two state floats per parameter, takes longer than plain SGD over as many floats; a model
 * not to be extended prices it by the floats it moves at the memory bandwidth. */
START_TEST(test_optimizer_step_is_timed_once)
{
    pippy_cost_model c;
    pippy_cost_defaults(&c);
    c.time_kernels = 1;
    pippy_optim_config sgd, adamw;
    pippy_optim_defaults(&sgd, PIPPY_OPTIM_SGD);
    pippy_optim_defaults(&adamw, PIPPY_OPTIM_ADAMW);
    uint64_t n = (uint64_t)1 << 20;
    double s = pippy_cost_optimizer_s(&c, &sgd, n), a = pippy_cost_optimizer_s(&c, &adamw, n);
    ck_assert_int_eq(c.n_new, 2);
    const pippy_cost_kernel *k = pippy_cost_kernel_find(&c, "pippy::OptimizerStep float[1048576] adamw");
    ck_assert_ptr_nonnull(k);
    ck_assert_double_eq(a, k->us * 1e-6);
    /* 1 Mi floats: 20 MiB moved by SGD; between 0.5 and 2000 GB/s on any machine */
    ck_assert_msg(s > 20.0 * 1048576 / 2e12 && s < 20.0 * 1048576 / 0.5e9, "sgd %g s", s);
    ck_assert_msg(a > 1.2 * s, "adamw %g s, sgd %g s", a, s);
    ck_assert_double_eq(pippy_cost_optimizer_s(&c, &sgd, n), s); /* read back, not timed again */
    ck_assert_int_eq(c.n_new, 2);
    ck_assert_double_eq(pippy_cost_optimizer_s(&c, &sgd, 0), 0);
    c.time_kernels = 0;
    sgd.momentum = 0.9; /* another key: priced by the rates (7 floats moved per parameter) */
    ck_assert_double_eq_tol(pippy_cost_optimizer_s(&c, &sgd, n),
                            c.op_overhead_s + (double)n * 4 * 7 / c.bytes_per_s, 1e-15);
    ck_assert_int_eq(c.n_kernels, 2);
    pippy_cost_free(&c);
}
END_TEST

START_TEST(test_large_kernel_is_timed_by_one_call)
{
    /* 2 x 1536^3 = 7.2 GFLOP: 20 ms or more on any core; four calls would cost four times it */
    pippy_op_desc d = matmul_desc(1536, 1536, 1536, NULL, 0);
    double t0 = thread_cpu_s();
    double far = 0, s = pippy_cost_kernel_time_s(&d, &far);
    double spent = thread_cpu_s() - t0;
    ck_assert_msg(s >= 0.02, "one call %g s", s);
    ck_assert_double_eq(far, s); /* that call, made after a scrub, stands for both */
    ck_assert_msg(spent < 3.0 * s, "timing took %g s of CPU for a call of %g s", spent, s);
}
END_TEST

START_TEST(test_oversized_kernel_is_refused_before_allocating)
{
    /* two 400 MiB operands: over the 512 MiB the timing allocates, refused before the first */
    pippy_op_desc d = matmul_desc(10240, 10240, 10240, NULL, 0);
    double t0 = thread_cpu_s();
    double far = 1;
    ck_assert_double_eq(pippy_cost_kernel_time_s(&d, &far), 0);
    ck_assert_double_eq(far, 0);
    double spent = thread_cpu_s() - t0;
    ck_assert_msg(spent < 0.05, "refusing took %g s of CPU", spent);
}
END_TEST

START_TEST(test_file_round_trip_and_merge)
{
    char path[256];
    tmp_path(path, sizeof path, "rt.json");
    pippy_cost_model a;
    pippy_cost_defaults(&a);
    a.calibrated = 1;
    ck_assert(pippy_cost_kernel_put(&a, "MatMul float[2,3] float[3,4]", 12.34, 56.78) == PIPPY_OK);
    ck_assert(pippy_cost_kernel_put(&a, "Gemm float[8,8] float[8,8] transB=1", 0.001234, 0) == PIPPY_OK);
    ck_assert(pippy_cost_save(&a, path) == PIPPY_OK);
    pippy_cost_model b;
    pippy_cost_defaults(&b);
    ck_assert_msg(pippy_cost_read(&b, path) == PIPPY_OK, "%s", pippy_last_error());
    ck_assert_int_eq(b.n_kernels, 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_str_eq(b.kernels[i].key, a.kernels[i].key);
        ck_assert_double_eq(b.kernels[i].us, a.kernels[i].us); /* bit for bit */
        ck_assert_double_eq(b.kernels[i].far_us, a.kernels[i].far_us);
    }
    /* another compile adds "X" to the file; this one timed "Y": the file ends with both */
    ck_assert(pippy_cost_kernel_put(&a, "X", 5.0, 0) == PIPPY_OK);
    ck_assert(pippy_cost_save(&a, path) == PIPPY_OK);
    ck_assert(pippy_cost_kernel_put(&b, "Y", 7.0, 8.0) == PIPPY_OK);
    /* and timed far a shape the file holds near only: the file takes both times */
    ck_assert(pippy_cost_kernel_put(&b, "Gemm float[8,8] float[8,8] transB=1", 0.002, 0.003) == PIPPY_OK);
    b.n_new = 1;
    snprintf(b.file, sizeof b.file, "%s", path);
    char note[512] = "";
    pippy_cost_flush(&b, note, sizeof note);
    ck_assert_ptr_nonnull(strstr(note, "1 kernel shape timed and added to"));
    pippy_cost_model m;
    pippy_cost_defaults(&m);
    ck_assert(pippy_cost_read(&m, path) == PIPPY_OK);
    ck_assert_int_eq(m.n_kernels, 4);
    ck_assert_double_eq(pippy_cost_kernel_find(&m, "X")->us, 5.0);
    ck_assert_double_eq(pippy_cost_kernel_find(&m, "Y")->us, 7.0);
    ck_assert_double_eq(pippy_cost_kernel_find(&m, "Y")->far_us, 8.0);
    ck_assert_double_eq(pippy_cost_kernel_find(&m, "Gemm float[8,8] float[8,8] transB=1")->far_us, 0.003);
    ck_assert_double_eq(pippy_cost_kernel_find(&m, "X")->far_us, 0);
    ck_assert_double_eq(pippy_cost_kernel_find(&m, "MatMul float[2,3] float[3,4]")->far_us, 56.78);
    ck_assert(m.calibrated);
    pippy_cost_free(&a);
    pippy_cost_free(&b);
    pippy_cost_free(&m);
    unlink(path);
}
END_TEST

START_TEST(test_hostile_files)
{
    static const struct {
        const char *text, *says;
    } bad[] = {
        {"{\"pippyc_cost_model\": 1, \"matmul_gflops\": 100, \"memory_gbytes_per_s\": 10, \"link_gbytes_per_s\": 10, "
         "\"link_latency_us\": 5, \"op_overhead_us\": 1, \"kernel_us\": [1, 2]}", "\"kernel_us\" must be an object"},
        {"{\"pippyc_cost_model\": 1, \"matmul_gflops\": 100, \"memory_gbytes_per_s\": 10, \"link_gbytes_per_s\": 10, "
         "\"link_latency_us\": 5, \"op_overhead_us\": 1, \"kernel_us\": {\"MatMul a\": -4}}", "entry \"MatMul a\""},
        {"{\"pippyc_cost_model\": 1, \"matmul_gflops\": 100, \"memory_gbytes_per_s\": 10, \"link_gbytes_per_s\": 10, "
         "\"link_latency_us\": 5, \"op_overhead_us\": 1, \"kernel_us\": {\"MatMul a\": \"fast\"}}", "positive number"},
        {"{\"pippyc_cost_model\": 1, \"matmul_gflops\": 100, \"memory_gbytes_per_s\": 10, \"link_gbytes_per_s\": 10, "
         "\"link_latency_us\": 5, \"op_overhead_us\": 1, \"kernel_us\": {\"\": 4}}", "a key of 1-"},
        {"{\"pippyc_cost_model\": 1, \"matmul_gflops\": 100, \"memory_gbytes_per_s\": 10, \"link_gbytes_per_s\": 10, "
         "\"link_latency_us\": 5, \"op_overhead_us\": 1, \"kernel_us\": {\"MatMul a\": 4}, \"kernel_far_us\": "
         "{\"MatMul a\": 0}}", "\"kernel_far_us\" entry \"MatMul a\" (8 bytes): 0; expected"},
        {"{\"pippyc_cost_model\": 1, \"matmul_gflops\": 100, \"memory_gbytes_per_s\": 10, \"link_gbytes_per_s\": 10, "
         "\"link_latency_us\": 5, \"op_overhead_us\": 1, \"kernel_us\": {\"MatMul a\": 4}, \"kernel_far_us\": 3}",
         "\"kernel_far_us\" must be an object"},
    };
    char path[256];
    tmp_path(path, sizeof path, "bad.json");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(path, bad[i].text);
        pippy_cost_model c;
        pippy_cost_defaults(&c);
        ck_assert(pippy_cost_read(&c, path) != PIPPY_OK);
        ck_assert_msg(strstr(pippy_last_error(), bad[i].says) && strstr(pippy_last_error(), path), "%zu: %s", i,
                      pippy_last_error());
        ck_assert_int_eq(c.n_kernels, 0);
    }
    /* a key too long for the table */
    char *big = malloc(PIPPY_COST_KEY_MAX + 512);
    int n = snprintf(big, 256, "{\"pippyc_cost_model\": 1, \"matmul_gflops\": 100, \"memory_gbytes_per_s\": 10, "
                               "\"link_gbytes_per_s\": 10, \"link_latency_us\": 5, \"op_overhead_us\": 1, \"kernel_us\": {\"");
    memset(big + n, 'k', PIPPY_COST_KEY_MAX);
    snprintf(big + n + PIPPY_COST_KEY_MAX, 64, "\": 3}}");
    write_text(path, big);
    free(big);
    pippy_cost_model c;
    pippy_cost_defaults(&c);
    ck_assert(pippy_cost_read(&c, path) != PIPPY_OK);
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "kernel_us"));
    FILE *f;
    /* more kernels than a table holds; a key given twice keeps one entry */
    f = fopen(path, "w");
    ck_assert(f);
    fprintf(f, "{\"pippyc_cost_model\": 1, \"matmul_gflops\": 100, \"memory_gbytes_per_s\": 10, \"link_gbytes_per_s\": "
               "10, \"link_latency_us\": 5, \"op_overhead_us\": 1, \"kernel_us\": {");
    for (int i = 0; i <= PIPPY_COST_MAX_KERNELS; i++)
        fprintf(f, "%s\"k%d\": 1", i ? ", " : "", i);
    fputs("}}", f);
    fclose(f);
    ck_assert(pippy_cost_read(&c, path) != PIPPY_OK);
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "more entries than a table holds"));
    write_text(path, "{\"pippyc_cost_model\": 1, \"matmul_gflops\": 100, \"memory_gbytes_per_s\": 10, "
                     "\"link_gbytes_per_s\": 10, \"link_latency_us\": 5, \"op_overhead_us\": 1, "
                     "\"kernel_us\": {\"b\": 2, \"a\": 1, \"b\": 3}}");
    ck_assert_msg(pippy_cost_read(&c, path) == PIPPY_OK, "%s", pippy_last_error());
    ck_assert_int_eq(c.n_kernels, 2);
    ck_assert_str_eq(c.kernels[0].key, "a");
    ck_assert_double_eq(pippy_cost_kernel_find(&c, "b")->us, 3.0);
    pippy_cost_free(&c);
    /* a file far larger than any cost model */
    f = fopen(path, "w");
    ck_assert(f);
    ck_assert(fseek(f, (long)17 << 20, SEEK_SET) == 0 && fputc(' ', f) != EOF);
    fclose(f);
    ck_assert(pippy_cost_read(&c, path) != PIPPY_OK);
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "more than the"));
    unlink(path);
}
END_TEST

static Suite *costmodel_suite(void)
{
    Suite *s = suite_create("costmodel");
    TCase *t = tcase_create("kernel table");
    tcase_add_test(t, test_kernel_keys);
    tcase_add_test(t, test_table_prices_nodes);
    tcase_add_test(t, test_new_shape_is_timed_once);
    tcase_add_test(t, test_optimizer_step_is_timed_once);
    tcase_add_test(t, test_large_kernel_is_timed_by_one_call);
    tcase_add_test(t, test_oversized_kernel_is_refused_before_allocating);
    tcase_add_test(t, test_file_round_trip_and_merge);
    tcase_add_test(t, test_hostile_files);
    suite_add_tcase(s, t);
    return s;
}

PIPPY_TEST_SUITE(costmodel_suite)
