/* test_collective.c — runtime/collective between real processes over real UCX (procs.h):
 * all-reduce (float and double, sum and max) checked element-wise against the exact sum in long
 * double and bit-identical on every member, for group sizes 1 to 4, counts 0 to 4M elements (not
 * divisible by the group size, fewer than the members), groups of non-contiguous ranks in any
 * order next to a second group running at the same time; broadcast and reduce from every root;
 * a member that dies makes the others fail with a clear error; bad arguments. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collective.h"
#include "harness.h"
#include "hash.h"
#include "procs.h"

/* Element i of member m's input: varied signs and magnitudes, exactly representable. */
static double input(int m, size_t i)
{
    uint64_t x = (uint64_t)(m + 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t)i * 0xbf58476d1ce4e5b9ull;
    x ^= x >> 31;
    double v = (double)(int64_t)(x % 2000001) - 1000000.0; /* [-1e6, 1e6] */
    return ldexp(v, (int)(i % 23) - 30);
}

/* The test's groups, as indices into the world: set by the test before run_world. */
static int grp_ranks[2][MAXR], grp_n[2], grp_count;
static size_t grp_counts[8];
static int grp_dtype, grp_op, grp_kind; /* kind: 0 allreduce, 1 broadcast, 2 reduce */

/* Which group this rank is in (-1 none) and its index there. */
static int my_group(const world *w, int *me)
{
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < grp_n[k]; i++)
            if (grp_ranks[k][i] == w->rank) {
                *me = i;
                return k;
            }
    return -1;
}

static double elem(int32_t dt, const void *b, size_t i)
{
    return dt == PIPPY_DT_FLOAT ? (double)((const float *)b)[i] : ((const double *)b)[i];
}

static void set_elem(int32_t dt, void *b, size_t i, double v)
{
    if (dt == PIPPY_DT_FLOAT)
        ((float *)b)[i] = (float)v;
    else
        ((double *)b)[i] = v;
}

/* Largest error of b against the exact reduction of the inputs of members (as its dtype holds
 * them), relative to sum |x| (sum) or |max| (max): in u[1] as a multiple of the type's epsilon. */
static double worst_error(const pippy_group *g, int32_t dt, int op, const void *b, size_t count)
{
    double worst = 0, eps = dt == PIPPY_DT_FLOAT ? 0x1p-24 : 0x1p-53;
    for (size_t i = 0; i < count; i++) {
        long double exact = op == PIPPY_REDUCE_SUM ? 0 : -INFINITY, mag = 0;
        for (int m = 0; m < g->n; m++) {
            double x = dt == PIPPY_DT_FLOAT ? (double)(float)input(m, i) : input(m, i);
            exact = op == PIPPY_REDUCE_SUM ? exact + x : fmaxl(exact, x);
            mag += fabs(x);
        }
        double err = (double)fabsl(elem(dt, b, i) - exact);
        if (mag > 0)
            worst = fmax(worst, err / (mag * eps));
    }
    return worst;
}

/* Every rank of the world: an all-reduce of one float (ranks that leave before every other
 * rank's pippy_transport_open has returned can make that open time out). */
static pippy_status barrier(world *w, pippy_transport *t)
{
    int all[MAXR];
    for (int i = 0; i < w->nranks; i++)
        all[i] = i;
    pippy_group g = {all, w->nranks, w->rank};
    float x = 1, sc[1];
    pippy_status s = pippy_allreduce_f32(t, &g, &x, 1, PIPPY_REDUCE_SUM, 1ull << 44, sc);
    if (s == PIPPY_OK && x != (float)w->nranks)
        s = pippy_fail(PIPPY_ERR_INTERNAL, "barrier: sum %g, expected %d", x, w->nranks);
    return s;
}

/* Run the test's collective on every count; u[0] = FNV of every result, d[0] = worst error. */
static void rank_collective(world *w, rank_result *r)
{
    pippy_transport *t = NULL;
    void *buf = NULL, *scratch = NULL;
    int me = 0, k = my_group(w, &me);
    double t0 = now_s();
    pippy_status s = open_all(w, &t);
    FAIL_IF(s != PIPPY_OK, "open: %s", pippy_last_error());
    if (k < 0) {
        s = barrier(w, t);
        FAIL_IF(s != PIPPY_OK, "%s", pippy_last_error());
        record(r, PIPPY_OK, t0);
        goto out;
    }
    int32_t dt = grp_dtype;
    size_t es = pippy_dtype_size(dt);
    pippy_group g = {grp_ranks[k], grp_n[k], me};
    uint64_t h = PIPPY_FNV_SEED, tag = k ? 1ull << 40 : 5;
    for (int c = 0; c < grp_count; c++) {
        size_t n = grp_counts[c];
        buf = malloc(n * es + 1);
        scratch = malloc((n + 1) * es); /* the most any collective needs */
        FAIL_IF(!buf || !scratch, "malloc");
        for (size_t i = 0; i < n; i++)
            set_elem(dt, buf, i, grp_kind == 1 && me != 1 % g.n ? -7.0 : input(me, i));
        if (grp_kind == 0)
            s = pippy_allreduce(t, &g, dt, buf, n, (pippy_reduce_op)grp_op, tag, scratch);
        else if (grp_kind == 1)
            s = pippy_broadcast(t, &g, 1 % g.n, buf, n * es, tag);
        else
            s = pippy_reduce(t, &g, 1 % g.n, dt, buf, n, (pippy_reduce_op)grp_op, tag, scratch);
        FAIL_IF(s != PIPPY_OK, "count %zu: %s", n, pippy_last_error());
        if (grp_kind == 0 || (grp_kind == 2 && me == 1 % g.n)) {
            r->d[0] = fmax(r->d[0], worst_error(&g, dt, grp_op, buf, n));
            h = pippy_fnv1a(buf, n * es, h);
        } else { /* broadcast: everyone has the root's input; reduce: a non-root keeps its own */
            int from = grp_kind == 1 ? 1 % g.n : me;
            for (size_t i = 0; i < n; i++)
                FAIL_IF(elem(dt, buf, i) != (dt == PIPPY_DT_FLOAT ? (double)(float)input(from, i) : input(from, i)),
                        "count %zu: element %zu is %g, expected member %d's %g", n, i, elem(dt, buf, i), from,
                        input(from, i));
        }
        free(buf);
        free(scratch);
        buf = scratch = NULL;
    }
    r->u[0] = h;
    s = barrier(w, t);
    FAIL_IF(s != PIPPY_OK, "%s", pippy_last_error());
    record(r, PIPPY_OK, t0);
out:
    pippy_transport_close(t);
    free(buf);
    free(scratch);
}

static void run_groups(int nranks, int kind, int32_t dt, int op, double max_err)
{
    world w;
    world_init(&w, nranks, 10.0);
    grp_kind = kind;
    grp_dtype = dt;
    grp_op = op;
    run_world(&w, rank_collective, 100);
    for (int r = 0; r < nranks; r++)
        if (w.res[r].status != PIPPY_OK)
            for (int q = 0; q < nranks; q++)
                fprintf(stderr, "rank %d: status %d: %s\n", q, w.res[q].status, w.res[q].msg);
    for (int r = 0; r < nranks; r++)
        ck_assert_msg(w.res[r].status == PIPPY_OK, "rank %d: %s", r, w.res[r].msg);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < grp_n[k]; i++) {
            const rank_result *a = &w.res[grp_ranks[k][i]], *b = &w.res[grp_ranks[k][0]];
            ck_assert_msg(a->d[0] <= max_err, "group %d member %d: error %.2f eps (sum |x|) > %.2f", k, i, a->d[0],
                          max_err);
            if (kind == 0) /* bit-identical results everywhere */
                ck_assert_msg(a->u[0] == b->u[0], "group %d: member %d's results differ from member 0's", k, i);
        }
    world_free(&w);
}

static void set_counts(int n, const size_t *c)
{
    grp_count = n;
    memcpy(grp_counts, c, (size_t)n * sizeof *c);
}

static void set_group(int k, int n, const int *ranks)
{
    grp_n[k] = n;
    memcpy(grp_ranks[k], ranks, (size_t)n * sizeof *ranks);
}

static const size_t counts_all[] = {0, 1, 2, 3, 5, 1000, 100003, (size_t)1 << 22};

START_TEST(test_allreduce_sizes)
{
    /* groups of 1, 2, 3, 4 members over the ranks 0..n-1; sums of n floats are within n - 1
     * roundings of the exact sum */
    set_counts(8, counts_all);
    for (int n = 1; n <= 4; n++) {
        int ranks[4] = {0, 1, 2, 3};
        set_group(0, n, ranks);
        grp_n[1] = 0;
        run_groups(n, 0, PIPPY_DT_FLOAT, PIPPY_REDUCE_SUM, n - 1);
    }
}
END_TEST

START_TEST(test_allreduce_noncontiguous_groups)
{
    /* 6 ranks: group {5, 0, 2} and group {3, 1} at once (rank 4 idle); ring order as listed */
    const size_t c[] = {0, 2, 7, 65537, 1000001};
    set_counts(5, c);
    set_group(0, 3, (int[]){5, 0, 2});
    set_group(1, 2, (int[]){3, 1});
    run_groups(6, 0, PIPPY_DT_FLOAT, PIPPY_REDUCE_SUM, 2);
    grp_n[1] = 0;
}
END_TEST

START_TEST(test_allreduce_double_and_max)
{
    const size_t c[] = {1, 3, 4, 9, 4097};
    set_counts(5, c);
    set_group(0, 3, (int[]){2, 0, 1});
    grp_n[1] = 0;
    run_groups(3, 0, PIPPY_DT_DOUBLE, PIPPY_REDUCE_SUM, 2);
    run_groups(3, 0, PIPPY_DT_DOUBLE, PIPPY_REDUCE_MAX, 0);
    run_groups(3, 0, PIPPY_DT_FLOAT, PIPPY_REDUCE_MAX, 0);
}
END_TEST

START_TEST(test_broadcast_and_reduce)
{
    const size_t c[] = {0, 1, 3, 100003, (size_t)1 << 21};
    set_counts(5, c);
    grp_n[1] = 0;
    for (int n = 1; n <= 3; n++) {
        int ranks[3] = {2, 0, 1};
        set_group(0, n, n == 3 ? ranks : (int[]){0, 1});
        run_groups(3, 1, PIPPY_DT_FLOAT, PIPPY_REDUCE_SUM, 0);
        run_groups(3, 2, PIPPY_DT_FLOAT, PIPPY_REDUCE_SUM, n - 1);
        run_groups(3, 2, PIPPY_DT_DOUBLE, PIPPY_REDUCE_SUM, n - 1);
    }
}
END_TEST

/* The same tag_base for many collectives in a row, of different sizes. */
START_TEST(test_repeated_calls)
{
    size_t c[8];
    for (int i = 0; i < 8; i++)
        c[i] = (size_t)(i * 7919) % 5000 + 1;
    set_counts(8, c);
    set_group(0, 4, (int[]){3, 2, 1, 0});
    grp_n[1] = 0;
    run_groups(4, 0, PIPPY_DT_FLOAT, PIPPY_REDUCE_SUM, 3);
    run_groups(4, 2, PIPPY_DT_FLOAT, PIPPY_REDUCE_SUM, 3);
}
END_TEST

/* Rank 2 of 3 dies (SIGKILL) right after connecting; ranks 0 and 1 run an all-reduce of 1M floats
 * (mode 0) or a reduce to rank 0 (mode 1) and must fail soon, naming the collective. */
static int die_mode;
static void rank_die(world *w, rank_result *r)
{
    pippy_transport *t = NULL;
    size_t n = 1u << 20;
    float *buf = calloc(n, sizeof *buf), *scratch = calloc(n, sizeof *scratch);
    pippy_status s = open_all(w, &t);
    FAIL_IF(s != PIPPY_OK || !buf || !scratch, "open: %s", pippy_last_error());
    s = barrier(w, t);
    FAIL_IF(s != PIPPY_OK, "%s", pippy_last_error());
    if (w->rank == 2)
        raise(SIGKILL);
    usleep(100000);
    int ranks[3] = {0, 1, 2};
    pippy_group g = {ranks, 3, w->rank};
    double t0 = now_s();
    s = die_mode ? pippy_reduce(t, &g, 0, PIPPY_DT_FLOAT, buf, n, PIPPY_REDUCE_SUM, 0, scratch)
                 : pippy_allreduce_f32(t, &g, buf, n, PIPPY_REDUCE_SUM, 0, scratch);
    record(r, s, t0);
out:
    pippy_transport_close(t);
    free(buf);
    free(scratch);
}

static void run_die(int mode)
{
    world w;
    world_init(&w, 3, 3.0);
    die_mode = mode;
    pid_t p[3];
    for (int r = 0; r < 3; r++)
        p[r] = spawn(&w, r, rank_die);
    for (int r = 0; r < 3; r++) {
        int ws = reap(p[r], now_s() + 20);
        ck_assert_msg(ws != -1, "rank %d hung", r);
        ck_assert_msg(r == 2 ? WIFSIGNALED(ws) : w.res[r].done, "rank %d: wait status %d", r, ws);
    }
    const char *what = mode ? "reduce (group of 3" : "allreduce (group of 3";
    for (int r = 0; r < 2; r++) {
        rank_result *x = &w.res[r];
        ck_assert_msg(x->status == PIPPY_ERR_PEER || x->status == PIPPY_ERR_TIMEOUT, "rank %d: status %d: %s", r,
                      x->status, x->msg);
        ck_assert_msg(strstr(x->msg, what) && strstr(x->msg, "rank"), "rank %d: %s", r, x->msg);
        ck_assert_msg(x->elapsed < 3.0 + 2.0, "rank %d took %.1f s to fail", r, x->elapsed);
    }
    /* the member next to the dead one names it */
    ck_assert_msg(strstr(w.res[mode ? 1 : 0].msg, "rank 2"), "%s", w.res[mode ? 1 : 0].msg);
    world_free(&w);
}

START_TEST(test_member_dies_allreduce) { run_die(0); }
END_TEST

START_TEST(test_member_dies_reduce) { run_die(1); }
END_TEST

/* Bad arguments are refused before anything is sent (one rank, a group of one or two). */
static void rank_bad_args(world *w, rank_result *r)
{
    pippy_transport *t = NULL;
    float buf[4] = {1, 2, 3, 4}, sc[4];
    pippy_status s = open_all(w, &t);
    FAIL_IF(s != PIPPY_OK, "open: %s", pippy_last_error());
    int ranks[3] = {0, 1, 1};
    struct {
        pippy_group g;
        int32_t dt;
        uint64_t tag;
        int root;
        const char *msg;
    } bad[] = {
        {{ranks, 2, 1}, PIPPY_DT_FLOAT, 0, 0, "puts rank 1 at index 1, but this process is rank 0"},
        {{ranks, 2, 2}, PIPPY_DT_FLOAT, 0, 0, "bad group"},
        {{ranks, 3, 0}, PIPPY_DT_FLOAT, 0, 0, "rank 1 is in the group twice"},
        {{ranks, 2, 0}, PIPPY_DT_INT64, 0, 0, "element type int64"},
        {{ranks, 2, 0}, PIPPY_DT_FLOAT, PIPPY_TRANSPORT_TAG_MAX - 100, 0, "leaves no room"},
        {{ranks, 2, 0}, PIPPY_DT_FLOAT, 0, 2, "root index 2 outside the group of 2"},
    };
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        s = bad[b].root ? pippy_reduce(t, &bad[b].g, bad[b].root, bad[b].dt, buf, 4, PIPPY_REDUCE_SUM, bad[b].tag, sc)
                        : pippy_allreduce(t, &bad[b].g, bad[b].dt, buf, 4, PIPPY_REDUCE_SUM, bad[b].tag, sc);
        FAIL_IF(s == PIPPY_OK || !strstr(pippy_last_error(), bad[b].msg), "case %zu: status %d, '%s'", b, s,
                pippy_last_error());
    }
    pippy_group two = {ranks, 2, 0};
    s = pippy_allreduce_f32(t, &two, buf, 4, PIPPY_REDUCE_SUM, 0, NULL);
    FAIL_IF(s != PIPPY_ERR_INVALID || !strstr(pippy_last_error(), "no scratch (2 elements needed)"), "scratch: %s",
            pippy_last_error());
    /* a group of one: nothing moves, the buffer stays */
    pippy_group one = {ranks, 1, 0};
    s = pippy_allreduce_f32(t, &one, buf, 4, PIPPY_REDUCE_SUM, 0, NULL);
    FAIL_IF(s != PIPPY_OK || buf[3] != 4, "group of one: %s", pippy_last_error());
    FAIL_IF(pippy_allreduce_scratch_elems(1, 100) != 0 || pippy_allreduce_scratch_elems(3, 100) != 34 ||
                pippy_allreduce_scratch_elems(4, 3) != 1 || pippy_reduce_scratch_elems(2, 100) != 100,
            "scratch sizes");
    record(r, PIPPY_OK, 0);
out:
    pippy_transport_close(t);
}

START_TEST(test_bad_args)
{
    world w;
    world_init(&w, 1, 3.0);
    run_world(&w, rank_bad_args, 20);
    ck_assert_msg(w.res[0].status == PIPPY_OK, "%s", w.res[0].msg);
    world_free(&w);
}
END_TEST

static Suite *collective_suite(void)
{
    Suite *s = suite_create("collective");
    TCase *tc = tcase_create("processes");
    tcase_set_timeout(tc, 240);
    if (getenv("DIEONLY")) {
        for (int i = 0; i < 10; i++) { tcase_add_test(tc, test_member_dies_allreduce); tcase_add_test(tc, test_member_dies_reduce); }
    } else {
    tcase_add_test(tc, test_bad_args);
    tcase_add_test(tc, test_allreduce_sizes);
    tcase_add_test(tc, test_allreduce_noncontiguous_groups);
    tcase_add_test(tc, test_allreduce_double_and_max);
    tcase_add_test(tc, test_broadcast_and_reduce);
    tcase_add_test(tc, test_repeated_calls);
    }
    tcase_add_test(tc, test_member_dies_allreduce);
    tcase_add_test(tc, test_member_dies_reduce);
    suite_add_tcase(s, tc);
    return s;
}
PIPPY_TEST_SUITE(collective_suite)
