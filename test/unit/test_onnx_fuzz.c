/* test_onnx_fuzz.c — the ONNX loader on damaged files: it must never crash.
 *
 * Seed: test/fixtures/fuzz_mlp.onnx (a PyTorch export, made by
 * test/fixtures/make_fuzz_model.py). Every truncation at ~200 evenly spaced
 * lengths and ~500 deterministic random byte mutations are written to a temp
 * file and loaded. Each load returns PIPPY_OK with a consistent graph, or an
 * error status with a non-empty message and no graph. Run under the sanitizer
 * build (ASan + UBSan, leak checking on) this also finds leaks and UB. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "onnx_load.h"

#define FZ_SEED_MODEL "test/fixtures/fuzz_mlp.onnx"
#define FZ_TRUNCATIONS 200
#define FZ_MUTATIONS 500

static unsigned char *fz_seed;
static size_t fz_n;
static char fz_dir[64], fz_path[96];

static void fz_setup(void)
{
    FILE *f = fopen(FZ_SEED_MODEL, "rb");
    ck_assert_msg(f != NULL, "cannot open %s (tests run from the repository root)", FZ_SEED_MODEL);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    ck_assert_int_gt(n, 0);
    fseek(f, 0, SEEK_SET);
    fz_n = (size_t)n;
    fz_seed = malloc(fz_n);
    ck_assert_ptr_nonnull(fz_seed);
    ck_assert_uint_eq(fread(fz_seed, 1, fz_n, f), fz_n);
    fclose(f);
    strcpy(fz_dir, "/tmp/pippy_fuzz_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(fz_dir));
    snprintf(fz_path, sizeof fz_path, "%s/m.onnx", fz_dir);
}

static void fz_teardown(void)
{
    unlink(fz_path);
    rmdir(fz_dir);
    free(fz_seed);
    fz_seed = NULL;
}

static uint64_t fz_rng = 0x243F6A8885A308D3ULL;

static uint64_t fz_next(void) { return pippy_test_rand(&fz_rng); }

/* Invariants of a graph the loader accepted. */
static void fz_check_graph(const pippy_graph *g)
{
    ck_assert_ptr_nonnull(g->path);
    ck_assert_ptr_nonnull(g->producer);
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const pippy_node *n = &g->nodes[i];
        ck_assert_ptr_nonnull(n->name);
        ck_assert_msg(n->name[0] && n->op[0], "node %d has an empty name or op", i);
        for (int32_t k = 0; k < n->n_in; k++) {
            int32_t v = n->in[k];
            ck_assert_int_ge(v, -1);
            ck_assert_int_lt(v, g->n_values);
            if (v >= 0) /* topological: defined before use */
                ck_assert(g->values[v].producer < i &&
                          (g->values[v].producer >= 0 || g->values[v].kind != PIPPY_VAL_INTERMEDIATE));
        }
        for (int32_t k = 0; k < n->n_out; k++) {
            ck_assert_int_ge(n->out[k], 0);
            ck_assert_int_lt(n->out[k], g->n_values);
            ck_assert_int_eq(g->values[n->out[k]].producer, i);
        }
    }
    for (int32_t v = 0; v < g->n_values; v++) {
        const pippy_value *val = &g->values[v];
        ck_assert_int_le(val->t.rank, PIPPY_MAX_RANK);
        if (val->kind == PIPPY_VAL_PARAM || val->kind == PIPPY_VAL_CONST) {
            ck_assert_ptr_nonnull(val->data);
            ck_assert_int_eq(val->shape_known, 1);
            volatile unsigned char sink = 0;
            const unsigned char *d = val->data;
            size_t bytes = pippy_value_bytes(val);
            for (size_t b = 0; b < bytes; b++) /* every byte readable */
                sink ^= d[b];
            (void)sink;
        }
    }
    for (int32_t i = 0; i < g->n_inputs; i++)
        ck_assert_int_eq(g->values[g->inputs[i]].kind, PIPPY_VAL_INPUT);
    for (int32_t i = 0; i < g->n_outputs; i++)
        ck_assert_int_eq(g->values[g->outputs[i]].is_output, 1);
}

/* Write buf to the temp model, load it; returns 1 when it loaded. */
static int fz_try(const unsigned char *buf, size_t n, const char *what)
{
    FILE *f = fopen(fz_path, "wb");
    ck_assert_ptr_nonnull(f);
    if (n)
        ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
    pippy_graph *g = (pippy_graph *)1;
    pippy_error_clear();
    pippy_status st = pippy_onnx_load(fz_path, &g);
    if (getenv("PIPPY_TEST_VERBOSE")) /* to read the messages */
        fprintf(stderr, "%s: [%s] %s\n", what, pippy_status_string(st), pippy_last_error());
    if (st == PIPPY_OK) {
        ck_assert_msg(g != NULL, "%s: PIPPY_OK without a graph", what);
        fz_check_graph(g);
        pippy_graph_free(g);
        return 1;
    }
    ck_assert_msg(g == NULL, "%s: failed (%s) but left a graph", what, pippy_status_string(st));
    ck_assert_msg(st > PIPPY_OK && st <= PIPPY_ERR_INTERNAL, "%s: bad status %d", what, (int)st);
    ck_assert_msg(st != PIPPY_ERR_INTERNAL && st != PIPPY_ERR_NOMEM, "%s: %s: %s", what, pippy_status_string(st),
                  pippy_last_error());
    ck_assert_msg(pippy_last_error()[0] != 0, "%s: failed (%s) with an empty message", what,
                  pippy_status_string(st));
    ck_assert_msg(strstr(pippy_last_error(), fz_path) != NULL, "%s: message does not name the file: %s", what,
                  pippy_last_error());
    return 0;
}

START_TEST(test_fuzz_seed_loads)
{
    ck_assert_int_eq(fz_try(fz_seed, fz_n, "seed"), 1);
}
END_TEST

START_TEST(test_fuzz_truncations)
{
    int ok = 0;
    char what[64];
    for (size_t i = 0; i < FZ_TRUNCATIONS; i++) {
        size_t len = fz_n * i / FZ_TRUNCATIONS;
        snprintf(what, sizeof what, "truncated to %zu of %zu bytes", len, fz_n);
        ok += fz_try(fz_seed, len, what);
    }
    /* Cutting a protobuf at a field boundary can leave a valid (smaller) model; most cuts must fail. */
    ck_assert_int_lt(ok, FZ_TRUNCATIONS / 2);
}
END_TEST

START_TEST(test_fuzz_mutations)
{
    unsigned char *buf = malloc(fz_n);
    ck_assert_ptr_nonnull(buf);
    static const unsigned char special[] = {0x00, 0xFF, 0x7F, 0x80, 0x01, 0x08, 0x0A, 0x12};
    char what[96];
    int ok = 0;
    fz_rng = 0x243F6A8885A308D3ULL;
    for (int m = 0; m < FZ_MUTATIONS; m++) {
        memcpy(buf, fz_seed, fz_n);
        int flips = m < FZ_MUTATIONS / 2 ? 1 : 1 + (int)(fz_next() % 8);
        for (int f = 0; f < flips; f++) {
            size_t pos = (size_t)(fz_next() % fz_n);
            uint64_t r = fz_next();
            switch (r % 3) {
            case 0: buf[pos] ^= (unsigned char)(1u << ((r >> 8) % 8)); break; /* one bit */
            case 1: buf[pos] = (unsigned char)(r >> 16); break;                /* any byte */
            default: buf[pos] = special[(r >> 8) % sizeof special]; break;    /* varint / tag edges */
            }
        }
        snprintf(what, sizeof what, "mutation %d (%d byte%s)", m, flips, flips > 1 ? "s" : "");
        ok += fz_try(buf, fz_n, what);
    }
    free(buf);
    /* Flips inside float payloads leave a valid model: both outcomes must occur. */
    ck_assert_int_gt(ok, 0);
    ck_assert_int_lt(ok, FZ_MUTATIONS);
}
END_TEST

static Suite *onnx_fuzz_suite(void)
{
    Suite *s = suite_create("onnx_fuzz");
    TCase *tc = tcase_create("fuzz");
    tcase_add_checked_fixture(tc, fz_setup, fz_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fuzz_seed_loads);
    tcase_add_test(tc, test_fuzz_truncations);
    tcase_add_test(tc, test_fuzz_mutations);
    suite_add_tcase(s, tc);
    return s;
}

PIPPY_TEST_SUITE(onnx_fuzz_suite)
