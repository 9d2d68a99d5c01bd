/* test_trace.c — the Chrome trace recorder: the written file parses as JSON (cJSON) and holds
 * the metadata and the events recorded, the capacity is respected, NULL traces are no-ops. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "trace.h"

static cJSON *load_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(buf);
    ck_assert_msg(j != NULL, "%s does not parse as JSON near: %.40s", path,
                  cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "?");
    free(buf);
    return j;
}

static const char *str_of(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num_of(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsNumber(v), "no number \"%s\"", key);
    return v->valuedouble;
}

/* The first event with this name and phase. */
static const cJSON *find(const cJSON *arr, const char *name, const char *ph)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        const char *n = str_of(e, "name"), *p = str_of(e, "ph");
        if (n && p && strcmp(n, name) == 0 && strcmp(p, ph) == 0)
            return e;
    }
    return NULL;
}

START_TEST(test_trace_written_and_parsed)
{
    pippy_trace *t;
    ck_assert_int_eq(pippy_trace_init(&t, 2, 1, 5), PIPPY_OK);
    uint64_t t0 = pippy_trace_now_us();
    pippy_trace_event(t, PIPPY_LANE_COMPUTE, "F", "compute", t0, 100, 3);
    pippy_trace_event(t, PIPPY_LANE_SEND, "SEND_F", "send", t0 + 100, 20, 3);
    pippy_trace_arg args[2] = {{"microbatch", 4}, {"bytes", 1 << 20}};
    pippy_trace_event_args(t, PIPPY_LANE_RECV, "RECV_B \"x\"\\", "recv", t0 + 150, 30, args, 2);
    uint64_t b = pippy_trace_begin();
    usleep(2000);
    pippy_trace_end(t, PIPPY_LANE_COMPUTE, "B", NULL, b, -1);
    pippy_trace_event(t, PIPPY_LANE_COMPUTE, "STEP", "compute", t0 + 5000, 7, -1);
    pippy_trace_event(t, PIPPY_LANE_COMPUTE, "over capacity", "compute", t0 + 6000, 1, 0);
    ck_assert_uint_eq(pippy_trace_count(t), 5);
    ck_assert_uint_eq(pippy_trace_dropped(t), 1);

    char path[] = "/tmp/pippy_trace_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_msg(pippy_trace_write(t, path) == PIPPY_OK, "%s", pippy_last_error());
    pippy_trace_free(t);

    cJSON *j = load_json(path);
    ck_assert(cJSON_IsArray(j));
    /* metadata: process name, sort index, three thread names; 5 events; 1 drop note */
    ck_assert_int_eq(cJSON_GetArraySize(j), 2 + 3 + 5 + 1);
    const cJSON *pn = find(j, "process_name", "M");
    ck_assert_ptr_nonnull(pn);
    ck_assert_int_eq((int)num_of(pn, "pid"), 2);
    ck_assert_str_eq(str_of(cJSON_GetObjectItem(pn, "args"), "name"), "rank 2 (stage 1)");
    const char *lanes[3] = {"compute", "send", "recv"};
    int seen = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
        if (strcmp(str_of(e, "name"), "thread_name") == 0) {
            int tid = (int)num_of(e, "tid");
            ck_assert(tid >= 0 && tid < 3);
            ck_assert_str_eq(str_of(cJSON_GetObjectItem(e, "args"), "name"), lanes[tid]);
            seen |= 1 << tid;
        }
        ck_assert_int_eq((int)num_of(e, "pid"), 2);
    }
    ck_assert_int_eq(seen, 7);

    const cJSON *f = find(j, "F", "X");
    ck_assert_ptr_nonnull(f);
    ck_assert_str_eq(str_of(f, "cat"), "compute");
    ck_assert(num_of(f, "ts") == (double)t0 && num_of(f, "dur") == 100);
    ck_assert_int_eq((int)num_of(f, "tid"), PIPPY_LANE_COMPUTE);
    ck_assert_int_eq((int)num_of(cJSON_GetObjectItem(f, "args"), "microbatch"), 3);
    const cJSON *s = find(j, "SEND_F", "X");
    ck_assert_int_eq((int)num_of(s, "tid"), PIPPY_LANE_SEND);
    const cJSON *r = find(j, "RECV_B \"x\"\\", "X");
    ck_assert_msg(r != NULL, "escaped name lost");
    ck_assert_int_eq((int)num_of(r, "tid"), PIPPY_LANE_RECV);
    ck_assert_int_eq((int)num_of(cJSON_GetObjectItem(r, "args"), "bytes"), 1 << 20);
    const cJSON *bw = find(j, "B", "X");
    ck_assert(num_of(bw, "dur") >= 2000);
    ck_assert_str_eq(str_of(bw, "cat"), "compute");          /* lane name when no category */
    ck_assert_ptr_null(cJSON_GetObjectItem(bw, "args"));     /* microbatch -1: no args */
    ck_assert_ptr_null(find(j, "over capacity", "X"));
    const cJSON *drop = NULL;
    cJSON_ArrayForEach(e, j) if (strcmp(str_of(e, "ph"), "i") == 0) drop = e;
    ck_assert_ptr_nonnull(drop);
    ck_assert_ptr_nonnull(strstr(str_of(drop, "name"), "1 events dropped"));
    cJSON_Delete(j);
    unlink(path);
}
END_TEST

START_TEST(test_trace_null_and_errors)
{
    pippy_trace_event(NULL, 0, "x", "y", 1, 2, 3); /* tracing off: nothing happens */
    pippy_trace_end(NULL, 0, "x", "y", pippy_trace_begin(), 0);
    ck_assert_uint_eq(pippy_trace_count(NULL), 0);
    pippy_trace *t;
    ck_assert_int_eq(pippy_trace_init(&t, 0, 0, 0), PIPPY_OK); /* capacity 0: all dropped */
    pippy_trace_event(t, 0, "x", "y", 1, 2, 3);
    ck_assert_uint_eq(pippy_trace_dropped(t), 1);
    ck_assert_int_eq(pippy_trace_write(t, "/nonexistent-dir/trace.json"), PIPPY_ERR_IO);
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "/nonexistent-dir/trace.json"));
    /* an empty trace is still a valid JSON array */
    char path[] = "/tmp/pippy_trace_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    ck_assert_int_eq(pippy_trace_write(t, path), PIPPY_OK);
    cJSON *j = load_json(path);
    ck_assert(cJSON_IsArray(j));
    cJSON_Delete(j);
    unlink(path);
    pippy_trace_free(t);
}
END_TEST

static Suite *trace_suite(void)
{
    Suite *s = suite_create("trace");
    TCase *tc = tcase_create("json");
    tcase_add_test(tc, test_trace_written_and_parsed);
    tcase_add_test(tc, test_trace_null_and_errors);
    suite_add_tcase(s, tc);
    return s;
}
PIPPY_TEST_SUITE(trace_suite)
