/* test_device.c — the backend object (backend/device.h) in any build: lookup by name and its
 * messages, the cpu backend's memory, copies and no-op events, and its kernels (the registry's,
 * through pippy_backend_kernel_create, as generated stage programs call them). The cuda backend's
 * kernels have their own test (test/cuda/, make CUDA=1). */
#include <string.h>

#include "device.h"
#include "harness.h"

START_TEST(test_find)
{
    ck_assert_ptr_eq(pippy_backend_find("cpu"), &pippy_backend_cpu_iface);
    ck_assert_ptr_eq(pippy_backend_find(NULL), &pippy_backend_cpu_iface);
    ck_assert_ptr_null(pippy_backend_find("tpu"));
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "unknown backend 'tpu' (known: cpu, cuda)"));
    const pippy_backend_iface *cu = pippy_backend_find("cuda");
    if (cu) /* a CUDA build */
        ck_assert_str_eq(cu->name, "cuda");
    else
        ck_assert_ptr_nonnull(strstr(pippy_last_error(), "not in this build: build pippyc with `make CUDA=1`"));
    pippy_backend *b = (pippy_backend *)1;
    ck_assert_int_eq(pippy_backend_open("tpu", NULL, &b), PIPPY_ERR_UNSUPPORTED);
    ck_assert_ptr_null(b);
}
END_TEST

START_TEST(test_cpu_memory)
{
    pippy_backend *b;
    ck_assert_int_eq(pippy_backend_open("cpu", NULL, &b), PIPPY_OK);
    ck_assert_ptr_nonnull(strstr(b->what, "cpu"));
    ck_assert_int_eq(b->iface->host_memory, 1);
    uint8_t *p;
    ck_assert_int_eq(pippy_backend_alloc(b, 100, (void **)&p), PIPPY_OK);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(p[i], 0);
    uint8_t src[100];
    for (int i = 0; i < 100; i++)
        src[i] = (uint8_t)i;
    ck_assert_int_eq(pippy_backend_copy(b, p, src, 100, PIPPY_QUEUE_COPY), PIPPY_OK);
    ck_assert_mem_eq(p, src, 100);
    pippy_backend_event *e;
    int done = 0;
    ck_assert_int_eq(pippy_backend_event_new(b, &e), PIPPY_OK);
    ck_assert_int_eq(pippy_backend_record(b, e, PIPPY_QUEUE_COMPUTE), PIPPY_OK);
    ck_assert_int_eq(pippy_backend_wait(b, e, PIPPY_QUEUE_COPY), PIPPY_OK);
    ck_assert_int_eq(pippy_backend_query(b, e, &done), PIPPY_OK);
    ck_assert_int_eq(done, 1);
    ck_assert_int_eq(pippy_backend_event_sync(b, e), PIPPY_OK);
    ck_assert_int_eq(pippy_backend_pin(b, src, sizeof src), PIPPY_OK);
    pippy_backend_unpin(b, src);
    pippy_backend_event_free(b, e);
    ck_assert_int_eq(pippy_backend_sync(b), PIPPY_OK);
    pippy_backend_release(b, p);
    pippy_backend_close(b);
}
END_TEST

START_TEST(test_cpu_kernels)
{
    pippy_backend *b;
    ck_assert_int_eq(pippy_backend_open("cpu", NULL, &b), PIPPY_OK);
    pippy_op_desc d = {.op = "Relu", .domain = "", .opset = 17, .name = "r", .n_in = 1, .n_out = 1,
                       .in = {{PIPPY_DT_FLOAT, 1, {4}}}};
    ck_assert_int_eq(pippy_op_infer(&d), PIPPY_OK);
    ck_assert_int_eq(pippy_backend_check_op(&pippy_backend_cpu_iface, &d), PIPPY_OK);
    pippy_kernel *k;
    ck_assert_int_eq(pippy_backend_kernel_create(b, &d, &k), PIPPY_OK);
    float x[4] = {-1, 2, -3, 4}, y[4];
    pippy_kernel_run(k, (const void *const[]){x}, (void *const[]){y});
    ck_assert(y[0] == 0 && y[1] == 2 && y[2] == 0 && y[3] == 4);
    pippy_kernel_destroy(k);
    d.op = "NoSuchOp";
    ck_assert_int_eq(pippy_backend_check_op(&pippy_backend_cpu_iface, &d), PIPPY_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "node 'r': op NoSuchOp is not supported"));
    ck_assert_int_eq(pippy_backend_kernel_create(b, &d, &k), PIPPY_ERR_UNSUPPORTED);
    pippy_backend_close(b);
}
END_TEST

static Suite *device_suite(void)
{
    Suite *s = suite_create("device");
    TCase *c = tcase_create("backend object");
    tcase_add_test(c, test_find);
    tcase_add_test(c, test_cpu_memory);
    tcase_add_test(c, test_cpu_kernels);
    suite_add_tcase(s, c);
    return s;
}
PIPPY_TEST_SUITE(device_suite)
