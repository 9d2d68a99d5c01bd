/* test_sched_fuzz.c — schedule.json's structural check (runtime/sched_check.c) on mutated files.
 *
 * A real schedule.json (samples/models/mlp.onnx, 3 stages, 4 microbatches, emitted in this
 * process) is mutated field by field: numbers set to out-of-range, fractional or huge values,
 * values of the wrong JSON type, keys deleted, array entries deleted or repeated, stage lists with
 * negative or repeated stages, programs and weights with paths. The check must accept the
 * untouched file, never crash (ASan + UBSan in make test SANITIZE=1), and refuse every mutation
 * of the kinds that used to crash a rank, with a message naming the field. The end-to-end side
 * (real ranks on mutated files) is test/e2e/test_schedule_fuzz.py. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compile.h"
#include "harness.h"
#include "sched_check.h"

#define SF_CASES 4000

static char sf_dir[64];
static char *sf_text;
static uint64_t sf_rng = 0xD1B54A32D192ED03ULL;

static uint64_t sf_next(void) { return pippy_test_rand(&sf_rng); }

static void sf_setup(void)
{
    strcpy(sf_dir, "/tmp/pippy_sfuzz_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(sf_dir));
    pippy_compile_opts o;
    memset(&o, 0, sizeof o);
    o.model_path = "samples/models/mlp.onnx";
    o.out_dir = sf_dir;
    o.stages = 3;
    o.microbatches = 4;
    o.bind.batch = 8;
    o.emit_only = 1;
    o.quiet = 1;
    o.no_calibration = 1;
    o.command_line = "test";
    ck_assert_msg(pippy_compile(&o) == PIPPY_OK, "%s", pippy_last_error());
    char p[128];
    snprintf(p, sizeof p, "%s/schedule.json", sf_dir);
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    sf_text = calloc(1, (size_t)n + 1);
    ck_assert_uint_eq(fread(sf_text, 1, (size_t)n, f), (size_t)n);
    fclose(f);
}

static void sf_teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", sf_dir);
    ck_assert_int_eq(system(cmd), 0);
    free(sf_text);
}

/* Every node of the tree, in order (n counts them when nodes is NULL). */
static int sf_collect(cJSON *j, cJSON **nodes, int n)
{
    if (nodes)
        nodes[n] = j;
    n++;
    for (cJSON *c = j->child; c; c = c->next)
        n = sf_collect(c, nodes, n);
    return n;
}

static cJSON *sf_value(void)
{
    static const double nums[] = {-5, -1, 0, 1, 2, 3, 4, 255, 256, 300, 65536, 16777216, 2147483648.0, 1e300, -1e300,
                                  0.5, 9007199254740993.0};
    switch (sf_next() % 6) {
    case 0: return cJSON_CreateString("../../../../bin/true");
    case 1: return cJSON_CreateNull();
    case 2: return cJSON_CreateBool(sf_next() % 2);
    case 3: return cJSON_CreateArray();
    case 4: return cJSON_CreateObject();
    default: return cJSON_CreateNumber(nums[sf_next() % (sizeof nums / sizeof nums[0])]);
    }
}

/* One mutation of the tree. */
static void sf_mutate(cJSON *root)
{
    int n = sf_collect(root, NULL, 0);
    cJSON **nodes = malloc((size_t)n * sizeof *nodes);
    sf_collect(root, nodes, 0);
    cJSON *j = nodes[1 + sf_next() % (uint64_t)(n - 1)];
    cJSON *parent = NULL;
    for (int i = 0; i < n && !parent; i++)
        for (cJSON *c = nodes[i]->child; c; c = c->next)
            if (c == j)
                parent = nodes[i];
    free(nodes);
    switch (sf_next() % 4) {
    case 0: /* replace the value */
        if (j->string)
            cJSON_ReplaceItemInObjectCaseSensitive(parent, j->string, sf_value());
        else
            cJSON_ReplaceItemViaPointer(parent, j, sf_value());
        break;
    case 1: /* delete it */
        cJSON_Delete(cJSON_DetachItemViaPointer(parent, j));
        break;
    case 2: /* repeat it (in arrays) */
        if (cJSON_IsArray(parent))
            cJSON_AddItemToArray(parent, cJSON_Duplicate(j, 1));
        break;
    default: /* a number nudged out of its range */
        if (cJSON_IsNumber(j))
            cJSON_SetNumberValue(j, j->valuedouble + (sf_next() % 2 ? 1 : -1) * (double)(1 + sf_next() % 300));
        break;
    }
}

START_TEST(test_sched_check_accepts_the_original)
{
    cJSON *root = cJSON_Parse(sf_text);
    ck_assert_ptr_nonnull(root);
    for (int s = 0; s < 3; s++)
        ck_assert_msg(pippy_sched_fields_check(root, "schedule.json", 3, s) == PIPPY_OK, "%s", pippy_last_error());
    cJSON_Delete(root);
}
END_TEST

/* The values that used to crash or escape, one by one: each refused naming its field. */
START_TEST(test_sched_check_refuses)
{
    static const struct {
        const char *path, *json, *needle;
    } cases[] = {
        {"stages.1.outputs.0.to", "[-5]", "to[0] is -5"},
        {"stages.1.outputs.0.to", "[1]", "its own stage"},
        {"stages.1.outputs.0.to", "[2, 2]", "listed twice"},
        {"stages.1.inputs.0.from", "300", "from is 300"},
        {"stages.0.weights", "\"../../../etc/passwd\"", "no path"},
        {"ranks.0.program", "\"../../../../bin/true\"", "no path"},
        {"ranks.1.actions.0.mb", "1e300", "mb is 1e+300"},
        {"ranks.1.actions.0.mb", "4", "mb is 4"},
        {"ranks.1.actions.0.peer", "-7", "peer is -7"},
        {"config.microbatches", "\"4\"", "not a whole number"},
        {"config.microbatches", "0.5", "not a whole number"},
        {"ranks.2.rank", "1", "repeats rank 1"},
        {"stages.2.outputs.0.edge", "16777216", "edge is 16777216"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *root = cJSON_Parse(sf_text), *j = root, *parent = NULL;
        char path[128], *save = NULL;
        snprintf(path, sizeof path, "%s", cases[i].path);
        const char *last = NULL;
        for (char *k = strtok_r(path, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
            parent = j;
            last = k;
            j = cJSON_IsArray(j) ? cJSON_GetArrayItem(j, atoi(k)) : cJSON_GetObjectItemCaseSensitive(j, k);
            ck_assert_msg(j != NULL, "no %s in the schedule", cases[i].path);
        }
        cJSON *v = cJSON_Parse(cases[i].json);
        if (cJSON_IsArray(parent))
            cJSON_ReplaceItemInArray(parent, atoi(last), v);
        else
            cJSON_ReplaceItemInObjectCaseSensitive(parent, last, v);
        pippy_status st = pippy_sched_fields_check(root, "schedule.json", 3, 1);
        ck_assert_msg(st == PIPPY_ERR_FORMAT && strstr(pippy_last_error(), cases[i].needle), "%s = %s: [%s] %s",
                      cases[i].path, cases[i].json, pippy_status_string(st), pippy_last_error());
        cJSON_Delete(root);
    }
}
END_TEST

START_TEST(test_sched_check_fuzz)
{
    int refused = 0;
    for (int c = 0; c < SF_CASES; c++) {
        cJSON *root = cJSON_Parse(sf_text);
        for (int k = 1 + (int)(sf_next() % 3); k > 0; k--)
            sf_mutate(root);
        pippy_error_clear();
        pippy_status st = pippy_sched_fields_check(root, "schedule.json", 3, (int)(sf_next() % 3));
        if (st != PIPPY_OK) {
            ck_assert_msg(st == PIPPY_ERR_FORMAT && strstr(pippy_last_error(), "schedule.json: "), "[%s] %s",
                          pippy_status_string(st), pippy_last_error());
            refused++;
        }
        cJSON_Delete(root);
    }
    fprintf(stderr, "schedule.json mutator (in process): %d cases, %d refused by the structural check\n", SF_CASES,
            refused);
    ck_assert_int_gt(refused, SF_CASES / 4); /* most mutations touch a checked field */
    ck_assert_int_lt(refused, SF_CASES);     /* some touch fields the runtime does not read */
}
END_TEST

static Suite *sched_fuzz_suite(void)
{
    Suite *s = suite_create("sched_fuzz");
    TCase *tc = tcase_create("structure");
    tcase_add_checked_fixture(tc, sf_setup, sf_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_sched_check_accepts_the_original);
    tcase_add_test(tc, test_sched_check_refuses);
    tcase_add_test(tc, test_sched_check_fuzz);
    suite_add_tcase(s, tc);
    return s;
}

PIPPY_TEST_SUITE(sched_fuzz_suite)
