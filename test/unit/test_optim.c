/* test_optim.c — runtime/optim: SGD / AdamW steps, the lr schedule and gradient clipping against
 * PyTorch (test/fixtures/optim_refs.json, made by test/fixtures/make_optim_refs.py), the gradient
 * sum of squares against a long double sum, the command-line options and the JSON form. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "optim.h"

#define REFS "test/fixtures/optim_refs.json"
#define MAXN 64
#define RTOL 1e-6

static cJSON *load_refs(void)
{
    FILE *f = fopen(REFS, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", REFS);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(fread(text, 1, (size_t)n, f), n);
    text[n] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(text);
    free(text);
    ck_assert_msg(j != NULL, "%s does not parse", REFS);
    return j;
}

/* A JSON array of numbers into x; returns its length. */
static int floats(const cJSON *a, float *x)
{
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        ck_assert(n < MAXN && cJSON_IsNumber(e));
        x[n++] = (float)e->valuedouble;
    }
    return n;
}

/* |got - want| <= RTOL * max(|want|, max |want| over the array / 10): relative per element,
 * with a floor at the array's scale for elements near zero. Returns the worst ratio to RTOL. */
static double compare(const char *what, const float *got, const float *want, int n)
{
    double scale = 0, worst = 0;
    for (int i = 0; i < n; i++)
        scale = fmax(scale, fabs((double)want[i]));
    for (int i = 0; i < n; i++) {
        double tol = RTOL * fmax(fabs((double)want[i]), scale / 10);
        double err = fabs((double)got[i] - (double)want[i]);
        ck_assert_msg(err <= tol, "%s[%d]: got %.9g, torch %.9g (|diff| %.3g > %.3g)", what, i, got[i], want[i], err,
                      tol);
        if (tol > 0)
            worst = fmax(worst, err / tol);
    }
    return worst;
}

static double run_case(const cJSON *cs)
{
    const char *name = cJSON_GetObjectItem(cs, "name")->valuestring;
    pippy_optim_config c;
    pippy_status st = pippy_optim_from_json(cJSON_GetObjectItem(cs, "optimizer"), &c);
    ck_assert_msg(st == PIPPY_OK, "%s: %s", name, pippy_last_error());
    float p[2][MAXN], g[2][MAXN], want[MAXN], *state[2];
    int n[2], nreg = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(cs, "params0"))
    {
        n[nreg] = floats(e, p[nreg]);
        state[nreg] = calloc(pippy_optim_state_floats(&c, (size_t)n[nreg]) + 1, sizeof(float));
        nreg++;
    }
    double worst = 0;
    int k = 0;
    const cJSON *step;
    cJSON_ArrayForEach(step, cJSON_GetObjectItem(cs, "steps"))
    {
        char what[128];
        double lr = pippy_optim_lr(&c, k), want_lr = cJSON_GetObjectItem(step, "lr")->valuedouble;
        ck_assert_msg(fabs(lr - want_lr) <= 1e-12 * want_lr, "%s step %d: lr %.17g, torch %.17g", name, k + 1, lr,
                      want_lr);
        double sumsq = 0;
        for (int r = 0; r < nreg; r++) {
            floats(cJSON_GetArrayItem(cJSON_GetObjectItem(step, "grads"), r), g[r]);
            sumsq += pippy_optim_sumsq(g[r], (size_t)n[r]);
        }
        double scale = pippy_optim_clip_coef(c.clip_grad_norm, sumsq);
        const cJSON *tn = cJSON_GetObjectItem(step, "total_norm");
        if (tn)
            ck_assert_msg(fabs(sqrt(sumsq) - tn->valuedouble) <= RTOL * tn->valuedouble,
                          "%s step %d: total norm %.9g, torch %.9g", name, k + 1, sqrt(sumsq), tn->valuedouble);
        for (int r = 0; r < nreg; r++) {
            pippy_optim_step(&c, k + 1, lr, (float)scale, p[r], g[r], state[r], (size_t)n[r]);
            snprintf(what, sizeof what, "%s step %d region %d param", name, k + 1, r);
            ck_assert_int_eq(floats(cJSON_GetArrayItem(cJSON_GetObjectItem(step, "params"), r), want), n[r]);
            worst = fmax(worst, compare(what, p[r], want, n[r]));
            int ns = floats(cJSON_GetArrayItem(cJSON_GetObjectItem(step, "state"), r), want);
            ck_assert_int_eq((size_t)ns, pippy_optim_state_floats(&c, (size_t)n[r]));
            snprintf(what, sizeof what, "%s step %d region %d state", name, k + 1, r);
            worst = fmax(worst, compare(what, state[r], want, ns));
        }
        k++;
    }
    ck_assert_int_eq(k, 5);
    for (int r = 0; r < nreg; r++)
        free(state[r]);
    return worst;
}

START_TEST(test_against_torch)
{
    cJSON *j = load_refs();
    const cJSON *cs;
    int n = 0;
    double worst = 0;
    cJSON_ArrayForEach(cs, cJSON_GetObjectItem(j, "cases"))
    {
        double w = run_case(cs);
        printf("  %-24s worst %.3f\n", cJSON_GetObjectItem(cs, "name")->valuestring, w);
        worst = fmax(worst, w);
        n++;
    }
    ck_assert_int_ge(n, 13);
    printf("optim: %d torch cases, largest error %.2f x the tolerance (%.0e relative)\n", n, worst, RTOL);
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_schedule_against_torch)
{
    cJSON *j = load_refs();
    const cJSON *s = cJSON_GetObjectItem(j, "schedule"), *e;
    pippy_optim_config c;
    ck_assert_int_eq(pippy_optim_from_json(cJSON_GetObjectItem(s, "optimizer"), &c), PIPPY_OK);
    int k = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(s, "lr"))
    {
        double lr = pippy_optim_lr(&c, k);
        ck_assert_msg(fabs(lr - e->valuedouble) <= 1e-12 * e->valuedouble, "step %d: lr %.17g, torch %.17g", k, lr,
                      e->valuedouble);
        k++;
    }
    ck_assert_int_eq(k, 12);
    /* warm-up W = 0 starts the cosine at once; far past the end it stays at min_lr */
    c.warmup_steps = 0;
    ck_assert(fabs(pippy_optim_lr(&c, 0) - c.lr) <= 1e-15);
    ck_assert(fabs(pippy_optim_lr(&c, 1000000) - c.min_lr) < 1e-18);
    c.schedule = PIPPY_LR_CONSTANT;
    ck_assert(pippy_optim_lr(&c, 3) == c.lr);
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_sumsq_and_clip)
{
    enum { N = 100003 };
    float *x = malloc(N * sizeof *x);
    long double exact = 0;
    for (int i = 0; i < N; i++) {
        x[i] = (float)sin(i * 0.37) * (float)(1 + i % 7);
        exact += (long double)x[i] * x[i];
    }
    for (int n = 0; n <= 9; n++) { /* tails */
        long double e = 0;
        for (int i = 0; i < n; i++)
            e += (long double)x[i] * x[i];
        ck_assert(fabsl(pippy_optim_sumsq(x, (size_t)n) - e) <= 1e-15L * e);
    }
    double s = pippy_optim_sumsq(x, N);
    ck_assert_msg(fabsl(s - exact) <= 1e-12L * exact, "sumsq %.17g, exact %.17Lg", s, exact);
    ck_assert(pippy_optim_clip_coef(0, s) == 1.0);
    ck_assert(pippy_optim_clip_coef(1e9, s) == 1.0);
    ck_assert(pippy_optim_clip_coef(2.0, s) == 2.0 / (sqrt(s) + 1e-6));
    ck_assert(pippy_optim_clip_coef(2.0, 0) == 1.0);
    ck_assert(pippy_optim_clip_coef(2.0, INFINITY) == 0.0);
    ck_assert(isnan(pippy_optim_clip_coef(2.0, NAN)));
    x[5] = NAN;
    ck_assert(isnan(pippy_optim_sumsq(x, N)));
    x[5] = INFINITY;
    ck_assert(isinf(pippy_optim_sumsq(x, N)));
    x[5] = 3;
    pippy_optim_scale(x, 7, 0.5f);
    ck_assert(x[5] == 1.5f && x[6] == 0.5f * ((float)sin(6 * 0.37) * 7.0f) && x[7] == (float)sin(7 * 0.37) * 1.0f);
    free(x);
}
END_TEST

START_TEST(test_state_floats)
{
    pippy_optim_config c;
    pippy_optim_defaults(&c, PIPPY_OPTIM_SGD);
    ck_assert_uint_eq(pippy_optim_state_floats(&c, 10), 0);
    c.momentum = 0.9;
    ck_assert_uint_eq(pippy_optim_state_floats(&c, 10), 10);
    pippy_optim_defaults(&c, PIPPY_OPTIM_ADAMW);
    ck_assert_uint_eq(pippy_optim_state_floats(&c, 10), 20);
    ck_assert(c.weight_decay == 1e-2 && c.beta1 == 0.9 && c.beta2 == 0.999 && c.eps == 1e-8 && c.lr == 1e-3);
    /* n = 0 touches nothing */
    pippy_optim_step(&c, 1, 0.1, 1.0f, NULL, NULL, NULL, 0);
}
END_TEST

/* Parse a command line (space-separated) of optimizer options; finish with total_steps. */
static pippy_status parse(const char *line, int64_t total_steps, pippy_optim_config *out)
{
    char buf[512], *argv[32];
    int argc = 0;
    snprintf(buf, sizeof buf, "%s", line);
    for (char *t = strtok(buf, " "); t && argc < 32; t = strtok(NULL, " "))
        argv[argc++] = t;
    pippy_optim_args a;
    pippy_optim_args_init(&a);
    for (int i = 0; i < argc; i++) {
        int used = 0;
        PIPPY_TRY(pippy_optim_args_parse(&a, argc, argv, &i, &used));
        if (!used)
            return pippy_fail(PIPPY_ERR_USAGE, "test: not an optimizer option '%s'", argv[i]);
    }
    return pippy_optim_args_finish(&a, total_steps, out);
}

static void parse_fails(const char *line, const char *msg)
{
    pippy_optim_config c;
    pippy_status st = parse(line, 0, &c);
    ck_assert_msg(st == PIPPY_ERR_USAGE, "'%s' was accepted (status %d)", line, st);
    ck_assert_msg(strstr(pippy_last_error(), msg), "'%s': message '%s' lacks '%s'", line, pippy_last_error(), msg);
}

START_TEST(test_args)
{
    pippy_optim_config c;
    ck_assert_int_eq(parse("", 0, &c), PIPPY_OK);
    ck_assert(c.kind == PIPPY_OPTIM_SGD && c.lr == 1e-3 && c.momentum == 0 && c.weight_decay == 0);
    ck_assert_int_eq(parse("--optimizer adamw --lr 3e-4 --betas 0.8,0.95 --eps 1e-6 --clip-grad-norm 1", 0, &c),
                     PIPPY_OK);
    ck_assert(c.kind == PIPPY_OPTIM_ADAMW && c.lr == 3e-4 && c.beta1 == 0.8 && c.beta2 == 0.95 && c.eps == 1e-6);
    ck_assert(c.weight_decay == 1e-2 && c.clip_grad_norm == 1); /* AdamW's default decay */
    ck_assert_int_eq(parse("--optimizer sgd --lr 0.1 --momentum 0.9 --nesterov --weight-decay 5e-4", 0, &c), PIPPY_OK);
    ck_assert(c.momentum == 0.9 && c.nesterov && c.weight_decay == 5e-4 && c.dampening == 0);
    ck_assert_int_eq(parse("--lr 0.1 --lr-schedule cosine --warmup-steps 10 --min-lr 0.01", 100, &c), PIPPY_OK);
    ck_assert(c.schedule == PIPPY_LR_COSINE && c.warmup_steps == 10 && c.decay_steps == 90 && c.min_lr == 0.01);
    ck_assert_int_eq(parse("--lr 0.1 --lr-schedule cosine --decay-steps 7", 100, &c), PIPPY_OK);
    ck_assert(c.decay_steps == 7 && c.warmup_steps == 0);

    parse_fails("--optimizer adam", "unknown optimizer 'adam'");
    parse_fails("--lr -0.1", "--lr must be >= 0");
    parse_fails("--lr abc", "--lr takes a finite number, found 'abc'");
    parse_fails("--lr inf", "finite");
    parse_fails("--lr", "--lr needs a value");
    parse_fails("--lr 1 --lr 2", "--lr given twice");
    parse_fails("--optimizer adamw --betas 0.9,1", "[0, 1)");
    parse_fails("--optimizer adamw --betas 0.9", "two numbers");
    parse_fails("--optimizer adamw --betas 0.9,0.99x", "two numbers");
    parse_fails("--optimizer adamw --betas -0.1,0.9", "[0, 1)");
    parse_fails("--optimizer adamw --momentum 0.9", "--momentum does not apply to --optimizer adamw");
    parse_fails("--optimizer sgd --betas 0.9,0.99", "--betas does not apply to --optimizer sgd");
    parse_fails("--eps 1e-8", "--eps does not apply to --optimizer sgd");
    parse_fails("--nesterov", "--nesterov needs --momentum > 0");
    parse_fails("--nesterov --momentum 0.9 --dampening 0.1", "dampening 0");
    parse_fails("--dampening 2 --momentum 0.5", "--dampening must be in [0, 1]");
    parse_fails("--warmup-steps 3", "--warmup-steps applies to --lr-schedule cosine only");
    parse_fails("--lr-schedule linear", "unknown schedule 'linear'");
    ck_assert_int_eq(parse("--lr-schedule cosine", 0, &c), PIPPY_OK); /* decay: the rest of the run */
    ck_assert(c.decay_steps == 0);
    parse_fails("--lr-schedule cosine --decay-steps 5 --lr 0.1 --min-lr 0.2", "--min-lr must be in [0, lr");
    parse_fails("--lr-schedule cosine --warmup-steps -1 --decay-steps 5", "--warmup-steps takes a whole number");
    parse_fails("--clip-grad-norm -1", "--clip-grad-norm must be >= 0");

    /* not an optimizer option: untouched */
    pippy_optim_args a;
    pippy_optim_args_init(&a);
    char *argv[] = {"--stages", "4"};
    int i = 0, used = 1;
    ck_assert_int_eq(pippy_optim_args_parse(&a, 2, argv, &i, &used), PIPPY_OK);
    ck_assert(!used && i == 0 && a.given == 0);
    ck_assert(strstr(pippy_optim_usage, "--clip-grad-norm"));
}
END_TEST

START_TEST(test_json)
{
    pippy_optim_config c, d;
    ck_assert_int_eq(parse("--optimizer adamw --lr 0.1 --betas 0.8,0.95 --lr-schedule cosine --warmup-steps 3 "
                           "--decay-steps 11 --min-lr 0.001 --clip-grad-norm 0.7",
                           0, &c),
                     PIPPY_OK);
    cJSON *j = pippy_optim_to_json(&c);
    char *text = cJSON_PrintUnformatted(j);
    cJSON *k = cJSON_Parse(text);
    ck_assert_int_eq(pippy_optim_from_json(k, &d), PIPPY_OK);
    ck_assert_mem_eq(&c, &d, sizeof c);
    ck_assert_int_eq(parse("--momentum 0.3 --nesterov --weight-decay 0.25", 0, &c), PIPPY_OK);
    cJSON_Delete(j);
    j = pippy_optim_to_json(&c);
    ck_assert_int_eq(pippy_optim_from_json(j, &d), PIPPY_OK);
    ck_assert_mem_eq(&c, &d, sizeof c);

    struct {
        const char *key, *value, *msg;
    } bad[] = {
        {"kind", "\"adam\"", "field 'kind' is 'adam'"},
        {"lr", "\"x\"", "field 'lr' is not a number"},
        {"lr", NULL, "field 'lr' is missing"},
        {"lr", "-1", "--lr must be a finite number >= 0"},
        {"betas", "[0.9]", "field 'betas' is malformed"},
        {"nesterov", "1", "field 'nesterov' is not a boolean"},
        {"warmup_steps", "2.5", "field 'warmup_steps' is 2.5"},
        {"lr_schedule", "\"step\"", "field 'lr_schedule' is 'step'"},
    };
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        cJSON *x = cJSON_Parse(text);
        cJSON_DeleteItemFromObjectCaseSensitive(x, bad[b].key);
        if (bad[b].value)
            cJSON_AddItemToObject(x, bad[b].key, cJSON_Parse(bad[b].value));
        ck_assert_int_eq(pippy_optim_from_json(x, &d), PIPPY_ERR_INVALID);
        ck_assert_msg(strstr(pippy_last_error(), bad[b].msg), "%s: '%s'", bad[b].key, pippy_last_error());
        cJSON_Delete(x);
    }
    ck_assert_int_eq(pippy_optim_from_json(NULL, &d), PIPPY_ERR_INVALID);
    free(text);
    cJSON_Delete(j);
    cJSON_Delete(k);
}
END_TEST

static Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("optim");
    tcase_add_test(tc, test_against_torch);
    tcase_add_test(tc, test_schedule_against_torch);
    tcase_add_test(tc, test_sumsq_and_clip);
    tcase_add_test(tc, test_state_floats);
    tcase_add_test(tc, test_args);
    tcase_add_test(tc, test_json);
    suite_add_tcase(s, tc);
    return s;
}
PIPPY_TEST_SUITE(optim_suite)
