/* test_schedule_json.c — reading schedule.json for the checker (common/schedule_json.c): a small
 * two-stage training file is read with its units converted (ms, GB/s, us) and replayed to the
 * step time worked out by hand; values of the wrong type or out of range are refused with where
 * they are and what was expected, and sizes that would make checking exhaust memory are refused. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "schedule_json.h"

/* Two stages, two microbatches, GPipe; F 1 s, B 2 s, W 0.5 s per stage (1000, 2000, 500 in the
 * file's ms); 100-byte messages over a 1000 B/s link (1e-6 GB/s) with 0.5 s latency (500000 us). */
static const char *sj_doc =
    "{\"config\": {\"microbatches\": 2, \"mode\": \"training\"},"
    " \"stages\": [{\"rank\": 0, \"predicted_forward_ms\": 1000, \"predicted_backward_ms\": 2000,"
    "               \"predicted_weight_ms\": 500, \"stash_slots\": 2},"
    "              {\"rank\": 1, \"predicted_forward_ms\": 1000, \"predicted_backward_ms\": 2000,"
    "               \"predicted_weight_ms\": 500, \"stash_slots\": 2}],"
    " \"edges\": [{\"producer\": 0, \"phase\": \"activation\", \"consumers\": [1], \"bytes\": 100},"
    "           {\"producer\": 1, \"phase\": \"gradient\", \"consumers\": [0], \"bytes\": 100}],"
    " \"reductions\": [],"
    " \"ranks\": [{\"actions\": ["
    "   {\"op\": \"RECV_B\", \"stage\": 0, \"mb\": 0, \"peer\": 1}, {\"op\": \"RECV_B\", \"stage\": 0, \"mb\": 1, \"peer\": 1},"
    "   {\"op\": \"F\", \"stage\": 0, \"mb\": 0}, {\"op\": \"SEND_F\", \"stage\": 0, \"mb\": 0, \"peer\": 1},"
    "   {\"op\": \"F\", \"stage\": 0, \"mb\": 1}, {\"op\": \"SEND_F\", \"stage\": 0, \"mb\": 1, \"peer\": 1},"
    "   {\"op\": \"B\", \"stage\": 0, \"mb\": 0}, {\"op\": \"W\", \"stage\": 0, \"mb\": 0},"
    "   {\"op\": \"B\", \"stage\": 0, \"mb\": 1}, {\"op\": \"W\", \"stage\": 0, \"mb\": 1}, {\"op\": \"STEP\"}]},"
    "  {\"actions\": ["
    "   {\"op\": \"RECV_F\", \"stage\": 1, \"mb\": 0, \"peer\": 0}, {\"op\": \"RECV_F\", \"stage\": 1, \"mb\": 1, \"peer\": 0},"
    "   {\"op\": \"F\", \"stage\": 1, \"mb\": 0}, {\"op\": \"F\", \"stage\": 1, \"mb\": 1},"
    "   {\"op\": \"B\", \"stage\": 1, \"mb\": 0}, {\"op\": \"SEND_B\", \"stage\": 1, \"mb\": 0, \"peer\": 0},"
    "   {\"op\": \"W\", \"stage\": 1, \"mb\": 0},"
    "   {\"op\": \"B\", \"stage\": 1, \"mb\": 1}, {\"op\": \"SEND_B\", \"stage\": 1, \"mb\": 1, \"peer\": 0},"
    "   {\"op\": \"W\", \"stage\": 1, \"mb\": 1}, {\"op\": \"STEP\"}]}],"
    " \"prediction\": {\"cost_model\": {\"link_gbytes_per_s\": 1e-6, \"link_latency_us\": 500000}}}";

/* Rank 0: F0 [0,1], F1 [1,2]; each message arrives 0.5 + 100/1000 = 0.6 s after its send.
 * Rank 1: F0 [1.6,2.6], F1 [2.6,3.6], B0 [3.6,5.6] (sent, arrives 6.2), W0 [5.6,6.1],
 * B1 [6.1,8.1] (arrives 8.7), W1 [8.1,8.6]. Rank 0: B0 [6.2,8.2], W0 [8.2,8.7], B1 [8.7,10.7],
 * W1 [10.7,11.2]; STEP at 11.2 s. */
START_TEST(test_read_and_replay)
{
    cJSON *root = cJSON_Parse(sj_doc);
    ck_assert_ptr_nonnull(root);
    pippy_sched_json d;
    ck_assert_msg(pippy_sched_json_read(&d, root, "t.json") == PIPPY_OK, "%s", pippy_last_error());
    ck_assert_int_eq(d.s.n_stages, 2);
    ck_assert_int_eq(d.s.n_ranks, 2);
    ck_assert_int_eq(d.s.training, 1);
    ck_assert_int_eq(d.s.n_edges, 2);
    ck_assert_int_eq(d.edges[1].phase, PIPPY_PHASE_B);
    ck_assert_int_eq(d.stash_slots[1], 2);
    double busy[2];
    pippy_sched_result r = {.busy_s = busy};
    ck_assert_msg(pippy_sched_check(&d.s, &r) == PIPPY_OK, "%s", pippy_last_error());
    ck_assert_msg(fabs(r.step_s - 11.2) < 1e-9, "step %.12g s, worked out by hand 11.2", r.step_s);
    ck_assert_msg(fabs(busy[0] - 7) < 1e-12 && fabs(busy[1] - 7) < 1e-12, "busy %g %g", busy[0], busy[1]);
    pippy_sched_json_free(&d);
    cJSON_Delete(root);
}
END_TEST

/* sj_doc with the value at path (a.b.2.c: object keys and array indices) replaced by the JSON
 * text value; the reader's status and message. */
static pippy_status sj_mutant(const char *path, const char *value)
{
    cJSON *root = cJSON_Parse(sj_doc), *at = root, *parent = NULL;
    char buf[128], *save = NULL, *keys[8];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", path);
    for (char *k = strtok_r(buf, ".", &save); k && n < 8; k = strtok_r(NULL, ".", &save))
        keys[n++] = k;
    for (int i = 0; i < n; i++) {
        ck_assert_msg(at != NULL, "no %s in the document", path);
        parent = at;
        at = cJSON_IsArray(at) ? cJSON_GetArrayItem(at, atoi(keys[i])) : cJSON_GetObjectItemCaseSensitive(at, keys[i]);
    }
    const char *key = keys[n - 1];
    cJSON *v = cJSON_Parse(value);
    ck_assert_msg(v != NULL, "bad test value %s", value);
    if (cJSON_IsArray(parent))
        cJSON_ReplaceItemInArray(parent, atoi(key), v);
    else if (at)
        cJSON_ReplaceItemInObjectCaseSensitive(parent, key, v);
    else
        cJSON_AddItemToObject(parent, key, v);
    pippy_sched_json d;
    pippy_error_clear();
    pippy_status st = pippy_sched_json_read(&d, root, "t.json");
    pippy_sched_json_free(&d);
    cJSON_Delete(root);
    return st;
}

START_TEST(test_refusals)
{
    static const struct {
        const char *path, *value, *needle;
    } cases[] = {
        {"config.microbatches", "0", "t.json: config.microbatches must be a whole number from 1 to 1048576, found 0"},
        {"config.mode", "\"train\"", "config.mode must be \"training\" or \"inference\", found 'train'"},
        {"config", "[]", "config must be an object, found an array"},
        {"stages", "{}", "stages must be an array of at most 1024 items, found an object"},
        {"stages", "[]", "stages must be a list of at least one stage"},
        {"stages.1.rank", "5", "stages[1].rank is 5, but a pipeline has 2 ranks"},
        {"stages.0.rank", "-1", "stages[0].rank must be a whole number from 0 to 1023, found -1"},
        {"stages.0.predicted_forward_ms", "-1", "stages[0].predicted_forward_ms must be a number from 0"},
        {"stages.0.stash_slots", "0", "stages[0].stash_slots must be a whole number from 1"},
        {"ranks.0.actions.2.mb", "1.5", "ranks[0].actions[2].mb must be a whole number from 0 to 1048576, found 1.5"},
        {"ranks.0.actions.2.mb", "\"1\"", "ranks[0].actions[2].mb must be a whole number"},
        {"ranks.1.actions.0.op", "7", "ranks[1].actions[0].op must be an action (F, B, W, SEND_F, RECV_F, SEND_B, "
                                      "RECV_B, ALLREDUCE, REDUCE, BROADCAST, STEP), found 7"},
        {"ranks.1.actions.0.op", "\"F\\u001b[2J\"", "ranks[1].actions[0].op must be an action"},
        {"ranks.1.actions.0.peer", "null", "ranks[1].actions[0].peer must be a whole number from 0 to 1023, found null"},
        {"ranks.1.actions.3", "3", "ranks[1].actions[3] must be an object"},
        {"ranks.1.actions", "{}", "ranks[1].actions must be an array"},
        {"edges.0.consumers", "[9]", "edges[0].consumers.0 must be a stage (0 to 1), found 9"},
        {"edges.0.phase", "\"grad\"", "edges[0].phase must be \"activation\" or \"gradient\", found 'grad'"},
        {"edges.0.bytes", "-5", "edges[0].bytes must be a number from 0"},
        {"edges.1.producer", "2", "edges[1].producer must be a whole number from 0 to 1"},
        {"reductions", "[{\"stages\": [0, 7]}]", "reductions[0].stages must be a list of stages (0 to 1), found 7"},
        {"prediction.cost_model.link_latency_us", "\"fast\"", "prediction.cost_model.link_latency_us must be a number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        pippy_status st = sj_mutant(cases[i].path, cases[i].value);
        ck_assert_msg(st == PIPPY_ERR_FORMAT, "%s = %s: status %d (%s)", cases[i].path, cases[i].value, st,
                      pippy_last_error());
        ck_assert_msg(strstr(pippy_last_error(), cases[i].needle) != NULL, "%s = %s: '%s' not in: %s", cases[i].path,
                      cases[i].value, cases[i].needle, pippy_last_error());
    }
    /* a control character from the file never reaches the message */
    sj_mutant("ranks.1.actions.0.op", "\"F\\u001b[2J\"");
    ck_assert_msg(strchr(pippy_last_error(), 0x1b) == NULL, "escape in: %s", pippy_last_error());
    cJSON *root = cJSON_Parse("[1, 2]");
    pippy_sched_json d;
    ck_assert_int_eq(pippy_sched_json_read(&d, root, "t.json"), PIPPY_ERR_FORMAT);
    pippy_sched_json_free(&d);
    cJSON_Delete(root);
    /* 5 stages x 2^20 microbatches: more cells than the checker is allowed to allocate */
    root = cJSON_Parse(sj_doc);
    cJSON *stages = cJSON_GetObjectItemCaseSensitive(root, "stages");
    for (int i = 0; i < 3; i++)
        cJSON_AddItemToArray(stages, cJSON_Duplicate(cJSON_GetArrayItem(stages, 0), 1));
    cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "config"), "microbatches",
                                           cJSON_CreateNumber(1 << 20));
    ck_assert_int_eq(pippy_sched_json_read(&d, root, "t.json"), PIPPY_ERR_FORMAT);
    ck_assert_msg(strstr(pippy_last_error(), "5 stages x 1048576 microbatches is more than this checks"), "%s",
                  pippy_last_error());
    pippy_sched_json_free(&d);
    cJSON_Delete(root);
}
END_TEST

static Suite *schedule_json_suite(void)
{
    Suite *s = suite_create("schedule_json");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_read_and_replay);
    tcase_add_test(tc, test_refusals);
    suite_add_tcase(s, tc);
    return s;
}

PIPPY_TEST_SUITE(schedule_json_suite)
