/* test_model_fuzz.c — the model mutator: the whole compiler, in this process, on hostile models.
 *
 * Seeds: the sample models (mlp, gpt_op17, skip) and test/fixtures/fuzz_mlp.onnx. Each case is a
 * deterministic mutation of one seed: byte flips and truncations of the file, or structured
 * mutations of the unpacked protobuf — dangling names, cycles, attributes of the wrong type or
 * with extreme values, huge, zero and negative dims, raw data of the wrong size or type, shape
 * constants at the int64 limits, external data that points outside the model's folder or
 * through symbolic links, odd opsets, op types swapped, nodes dropped, outputs written twice.
 * Every case then goes through what pippyc does before it writes files (pippy_compile_plan: load,
 * bind, infer and fold, rewrite, partition into 2 stages of 2 microbatches, memory plan,
 * schedule), the C and schedule.json emitters, and — for cases that compile — the kernel of
 * every node the stage programs would run, created and run once on buffers of exactly the
 * inferred sizes (so that a shape that wrapped around shows as a read past a heap buffer under
 * ASan). Each case must end in PIPPY_OK or in a clear error (non-empty message, not INTERNAL
 * or NOMEM): no crash, no sanitizer report, no hang (the case count is fixed and the test has a
 * time limit). The budget: MF_CASES cases; make test SANITIZE=1 runs them under ASan + UBSan. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "compile.h"
#include "emit.h"
#include "harness.h"
#include "onnx.pb-c.h"

#define MF_CASES 2400            /* over all seeds */
#define MF_KERNEL_MAX_BYTES (1u << 20) /* kernels whose buffers are bigger are created, not run */

static const char *const mf_seeds[] = {"samples/models/mlp.onnx", "samples/models/gpt_op17.onnx",
                                       "samples/models/skip.onnx", "test/fixtures/fuzz_mlp.onnx"};
#define MF_N_SEEDS (int)(sizeof mf_seeds / sizeof mf_seeds[0])

static unsigned char *mf_seed[MF_N_SEEDS];
static size_t mf_seed_n[MF_N_SEEDS];
static char mf_dir[64], mf_model[128], mf_out[128];
static uint64_t mf_rng;
static int mf_outcome[3]; /* ok, error, kernels run */

static uint64_t mf_next(void) { return pippy_test_rand(&mf_rng); }

static uint64_t mf_pick(uint64_t n) { return n ? mf_next() % n : 0; }

static void mf_write(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    if (n)
        ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
}

static void mf_setup(void)
{
    for (int i = 0; i < MF_N_SEEDS; i++) {
        FILE *f = fopen(mf_seeds[i], "rb");
        ck_assert_msg(f != NULL, "cannot open %s (tests run from the repository root)", mf_seeds[i]);
        fseek(f, 0, SEEK_END);
        mf_seed_n[i] = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        mf_seed[i] = malloc(mf_seed_n[i]);
        ck_assert_uint_eq(fread(mf_seed[i], 1, mf_seed_n[i], f), mf_seed_n[i]);
        fclose(f);
    }
    strcpy(mf_dir, "/tmp/pippy_mfuzz_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(mf_dir));
    snprintf(mf_model, sizeof mf_model, "%s/model/m.onnx", mf_dir);
    snprintf(mf_out, sizeof mf_out, "%s/out", mf_dir);
    char p[256];
    snprintf(p, sizeof p, "%s/model", mf_dir);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    ck_assert_int_eq(mkdir(mf_out, 0755), 0);
    snprintf(p, sizeof p, "%s/model/sub", mf_dir);
    ck_assert_int_eq(mkdir(p, 0755), 0);
    /* external data the mutations point at: inside, outside, and links leading out */
    static unsigned char bytes[65536];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (unsigned char)(i * 131);
    snprintf(p, sizeof p, "%s/model/w.bin", mf_dir);
    mf_write(p, bytes, sizeof bytes);
    snprintf(p, sizeof p, "%s/outside.bin", mf_dir);
    mf_write(p, bytes, sizeof bytes);
    char target[256];
    snprintf(p, sizeof p, "%s/model/link.bin", mf_dir);
    snprintf(target, sizeof target, "%s/outside.bin", mf_dir);
    ck_assert_int_eq(symlink(target, p), 0);
    snprintf(p, sizeof p, "%s/model/up", mf_dir);
    ck_assert_int_eq(symlink("..", p), 0);
}

static void mf_teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", mf_dir);
    ck_assert_int_eq(system(cmd), 0);
    for (int i = 0; i < MF_N_SEEDS; i++)
        free(mf_seed[i]);
}

/* ---- running one case ---- */

/* Create and run the kernel of node i on buffers of exactly the inferred sizes. */
static void mf_run_kernel(const pippy_graph *g, int32_t i)
{
    pippy_op_desc d;
    pippy_graph_op_desc(g, i, &d);
    size_t total = 0;
    for (int k = 0; k < d.n_in; k++)
        total += d.in[k].dtype ? pippy_tdesc_bytes(&d.in[k]) : 0;
    for (int k = 0; k < d.n_out; k++)
        total += pippy_tdesc_bytes(&d.out[k]);
    pippy_kernel *k = NULL;
    if (pippy_kernel_create(&d, &k) != PIPPY_OK) {
        ck_assert_msg(pippy_last_error()[0], "node '%s': kernel create failed without a message", d.name);
        return;
    }
    if (total <= MF_KERNEL_MAX_BYTES) {
        void *ins[PIPPY_MAX_IO] = {0}, *outs[PIPPY_MAX_IO] = {0};
        for (int q = 0; q < d.n_in; q++)
            if (d.in[q].dtype && !d.in_const[q])
                ins[q] = calloc(1, pippy_tdesc_bytes(&d.in[q]) ? pippy_tdesc_bytes(&d.in[q]) : 1);
        const void *in[PIPPY_MAX_IO];
        for (int q = 0; q < d.n_in; q++)
            in[q] = d.in_const[q] ? d.in_const[q] : ins[q];
        for (int q = 0; q < d.n_out; q++)
            outs[q] = malloc(pippy_tdesc_bytes(&d.out[q]) ? pippy_tdesc_bytes(&d.out[q]) : 1);
        pippy_run_error_clear();
        pippy_kernel_run(k, in, outs);
        pippy_run_error_clear(); /* a run error is a clean outcome: the runtime reports it */
        for (int q = 0; q < PIPPY_MAX_IO; q++) {
            free(ins[q]);
            free(outs[q]);
        }
        mf_outcome[2]++;
    }
    pippy_kernel_destroy(k);
}

static void mf_check_error(pippy_status st, const char *what)
{
    ck_assert_msg(st > PIPPY_OK && st <= PIPPY_ERR_INTERNAL, "%s: bad status %d", what, (int)st);
    ck_assert_msg(st != PIPPY_ERR_INTERNAL && st != PIPPY_ERR_NOMEM, "%s: %s: %s", what, pippy_status_string(st),
                  pippy_last_error());
    ck_assert_msg(pippy_last_error()[0] != 0, "%s: failed (%s) with an empty message", what,
                  pippy_status_string(st));
}

/* The model in mf_model through what pippyc does before writing files, then the emitters and
 * the kernels. */
static void mf_compile(const char *what)
{
    pippy_compile_opts o;
    memset(&o, 0, sizeof o);
    o.model_path = mf_model;
    o.out_dir = mf_out;
    o.stages = 2;
    o.microbatches = 2;
    o.bind.batch = 2;
    o.schedule = "gpipe";
    o.max_memory = 64u << 20; /* folded constants and stage memory: small, so that huge shapes fail fast */
    o.no_calibration = 1;
    o.quiet = 1;
    pippy_graph *g = NULL;
    pippy_plan plan;
    pippy_error_clear();
    pippy_status st = pippy_compile_plan(&o, &g, &plan);
    if (getenv("PIPPY_TEST_VERBOSE"))
        fprintf(stderr, "%s: [%s] %s\n", what, pippy_status_string(st), pippy_last_error());
    if (st != PIPPY_OK) {
        ck_assert_ptr_null(g);
        mf_check_error(st, what);
        mf_outcome[1]++;
        return;
    }
    pippy_emit_opts eo = {.command_line = "fuzz", .out_dir = mf_out};
    for (int32_t s = 0; st == PIPPY_OK && s < plan.n_stages; s++)
        st = pippy_emit_stage_c(&plan, s, &eo);
    if (st == PIPPY_OK)
        st = pippy_emit_schedule_json(&plan, &eo);
    ck_assert_msg(st == PIPPY_OK, "%s: emitting failed: %s", what, pippy_last_error());
    for (int32_t s = 0; s < plan.n_stages; s++) {
        const pippy_stage *sg = &plan.stages[s];
        for (int32_t k = 0; k < sg->n_nodes; k++)
            if (!sg->is_view[k])
                mf_run_kernel(g, sg->nodes[k]);
    }
    mf_outcome[0]++;
    pippy_plan_free(&plan);
    pippy_graph_free(g);
}

/* ---- structured mutations ---- */

static const int64_t mf_extreme[] = {0, -1, -5, 1, 2, 3, 7, 1LL << 31, 1LL << 40, 1LL << 62, (1LL << 62) + 128,
                                     INT64_MAX, INT64_MIN, INT64_MIN + 1, -(1LL << 62), 65537};
#define MF_EXTREME() mf_extreme[mf_pick(sizeof mf_extreme / sizeof mf_extreme[0])]

static char *mf_strdup(const char *s) { return strdup(s); }

static Onnx__NodeProto *mf_node(Onnx__GraphProto *g) { return g->n_node ? g->node[mf_pick(g->n_node)] : NULL; }

static void mf_dangling(Onnx__GraphProto *g)
{
    Onnx__NodeProto *n = mf_node(g);
    if (n && n->n_input) {
        size_t k = mf_pick(n->n_input);
        free(n->input[k]);
        n->input[k] = mf_strdup("pippy_fuzz_no_such_value");
    }
}

static void mf_cycle(Onnx__GraphProto *g)
{
    if (g->n_node < 2)
        return;
    size_t i = mf_pick(g->n_node - 1), j = i + 1 + mf_pick(g->n_node - 1 - i);
    Onnx__NodeProto *a = g->node[i], *b = g->node[j];
    if (a->n_input && b->n_output) {
        size_t k = mf_pick(a->n_input);
        free(a->input[k]);
        a->input[k] = mf_strdup(b->output[0]);
    }
}

static void mf_attr(Onnx__GraphProto *g)
{
    Onnx__NodeProto *n = mf_node(g);
    if (!n || !n->n_attribute)
        return;
    Onnx__AttributeProto *a = n->attribute[mf_pick(n->n_attribute)];
    switch (mf_pick(4)) {
    case 0: { /* another type, the value fields left as they are */
        static const int types[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 13};
        a->has_type = 1;
        a->type = (Onnx__AttributeProto__AttributeType)types[mf_pick(sizeof types / sizeof types[0])];
        break;
    }
    case 1: /* the type a float of the same value would have */
        a->has_type = 1;
        a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
        a->has_f = 1;
        a->f = (float)a->i;
        break;
    case 2: /* an extreme value */
        a->i = MF_EXTREME();
        a->f = (float)MF_EXTREME();
        for (size_t k = 0; k < a->n_ints; k++)
            a->ints[k] = MF_EXTREME();
        break;
    default: /* one value less or more */
        if (a->n_ints)
            a->n_ints -= 1 + mf_pick(a->n_ints);
        break;
    }
}

static void mf_dims(Onnx__GraphProto *g)
{
    if (mf_pick(2) && g->n_input) {
        Onnx__ValueInfoProto *vi = g->input[mf_pick(g->n_input)];
        Onnx__TypeProto *tp = vi->type;
        if (tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && tp->tensor_type &&
            tp->tensor_type->shape && tp->tensor_type->shape->n_dim) {
            Onnx__TensorShapeProto *sh = tp->tensor_type->shape;
            Onnx__TensorShapeProto__Dimension *d = sh->dim[mf_pick(sh->n_dim)];
            if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM)
                free(d->dim_param);
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = MF_EXTREME();
        }
        return;
    }
    if (g->n_initializer) {
        Onnx__TensorProto *t = g->initializer[mf_pick(g->n_initializer)];
        if (t->n_dims)
            t->dims[mf_pick(t->n_dims)] = MF_EXTREME();
    }
}

static void mf_data(Onnx__GraphProto *g)
{
    if (!g->n_initializer)
        return;
    Onnx__TensorProto *t = g->initializer[mf_pick(g->n_initializer)];
    switch (mf_pick(4)) {
    case 0: /* raw data of the wrong size */
        if (t->has_raw_data && t->raw_data.len)
            t->raw_data.len = mf_pick(t->raw_data.len);
        break;
    case 1: { /* another element type */
        static const int dts[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16, 99};
        t->data_type = dts[mf_pick(sizeof dts / sizeof dts[0])];
        break;
    }
    case 2: /* int64 constants (shapes, axes, starts, repeats) at the limits */
        if (t->data_type == 7 && t->has_raw_data)
            for (size_t k = 0; k + 8 <= t->raw_data.len; k += 8) {
                int64_t v = MF_EXTREME();
                memcpy(t->raw_data.data + k, &v, 8);
            }
        for (size_t k = 0; k < t->n_int64_data; k++)
            t->int64_data[k] = MF_EXTREME();
        break;
    default: /* data in a typed field as well as raw */
        if (t->n_float_data)
            t->n_float_data /= 2;
        break;
    }
}

static void mf_external(Onnx__GraphProto *g)
{
    static const char *const locs[] = {"../../../etc/passwd", "/etc/passwd", "sub/../../outside.bin", "link.bin",
                                       "up/outside.bin", "w.bin", "./w.bin", "nope.bin", "", "sub", ".."};
    static const char *const nums[] = {"0", "8", "4096", "65535", "65536", "18446744073709551615", "-1", "x",
                                       "99999999999999999999"};
    if (!g->n_initializer)
        return;
    Onnx__TensorProto *t = g->initializer[mf_pick(g->n_initializer)];
    t->has_data_location = 1;
    t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    Onnx__StringStringEntryProto **e = realloc(t->external_data, (t->n_external_data + 3) * sizeof *e);
    ck_assert_ptr_nonnull(e);
    t->external_data = e;
    const char *keys[3] = {"location", "offset", "length"};
    for (int k = 0; k < 3; k++) {
        if (k > 0 && mf_pick(3) == 0)
            continue;
        Onnx__StringStringEntryProto *kv = malloc(sizeof *kv);
        ck_assert_ptr_nonnull(kv);
        onnx__string_string_entry_proto__init(kv);
        kv->key = mf_strdup(keys[k]);
        kv->value = mf_strdup(k == 0 ? locs[mf_pick(sizeof locs / sizeof locs[0])]
                                     : nums[mf_pick(sizeof nums / sizeof nums[0])]);
        t->external_data[t->n_external_data++] = kv;
    }
}

static void mf_opset(Onnx__ModelProto *m)
{
    static const int64_t v[] = {0, 1, 6, 7, 11, 13, 14, 17, 18, 21, 28, 29, 99, INT64_MAX, -3};
    if (m->n_opset_import)
        m->opset_import[mf_pick(m->n_opset_import)]->version = v[mf_pick(sizeof v / sizeof v[0])];
}

static void mf_optype(Onnx__GraphProto *g)
{
    int n;
    const pippy_op_info *const *ops = pippy_op_list(&n);
    Onnx__NodeProto *node = mf_node(g);
    if (!node || n == 0)
        return;
    const pippy_op_info *o = ops[mf_pick((uint64_t)n)];
    free(node->op_type);
    node->op_type = mf_strdup(o->op);
    free(node->domain);
    node->domain = mf_strdup(o->domain ? o->domain : "");
}

static void mf_drop_or_dup(Onnx__GraphProto *g)
{
    if (g->n_node < 2)
        return;
    size_t i = mf_pick(g->n_node);
    if (mf_pick(2)) { /* drop node i */
        onnx__node_proto__free_unpacked(g->node[i], NULL);
        memmove(g->node + i, g->node + i + 1, (g->n_node - i - 1) * sizeof *g->node);
        g->n_node--;
        return;
    }
    Onnx__NodeProto *a = g->node[i], *b = g->node[mf_pick(g->n_node)]; /* b writes a's output too */
    if (a != b && a->n_output && b->n_output) {
        free(b->output[0]);
        b->output[0] = mf_strdup(a->output[0]);
    }
}

static void mf_mutate(Onnx__ModelProto *m)
{
    Onnx__GraphProto *g = m->graph;
    int n = 1 + (int)mf_pick(3);
    for (int i = 0; i < n && g; i++) {
        switch (mf_pick(10)) {
        case 0: mf_dangling(g); break;
        case 1: mf_cycle(g); break;
        case 2: case 3: mf_attr(g); break;
        case 4: mf_dims(g); break;
        case 5: mf_data(g); break;
        case 6: mf_external(g); break;
        case 7: mf_opset(m); break;
        case 8: mf_optype(g); break;
        default: mf_drop_or_dup(g); break;
        }
    }
}

/* One case: seed s mutated (structured or bytes), written, compiled. */
static void mf_case(int s, int c)
{
    char what[96];
    if (c % 4 == 3) { /* bytes: flips or a truncation */
        size_t n = mf_seed_n[s];
        unsigned char *buf = malloc(n);
        memcpy(buf, mf_seed[s], n);
        if (mf_pick(4) == 0)
            n = mf_pick(n);
        for (int f = 1 + (int)mf_pick(8); f > 0 && n; f--)
            buf[mf_pick(n)] ^= (unsigned char)(1u << mf_pick(8));
        mf_write(mf_model, buf, n);
        free(buf);
        snprintf(what, sizeof what, "%s byte case %d", mf_seeds[s], c);
    } else {
        Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, mf_seed_n[s], mf_seed[s]);
        ck_assert_ptr_nonnull(m);
        mf_mutate(m);
        size_t n = onnx__model_proto__get_packed_size(m);
        uint8_t *buf = malloc(n ? n : 1);
        onnx__model_proto__pack(m, buf);
        onnx__model_proto__free_unpacked(m, NULL);
        mf_write(mf_model, buf, n);
        free(buf);
        snprintf(what, sizeof what, "%s structured case %d", mf_seeds[s], c);
    }
    mf_compile(what);
}

START_TEST(test_model_fuzz_seeds_compile)
{
    for (int s = 0; s < MF_N_SEEDS; s++) {
        mf_write(mf_model, mf_seed[s], mf_seed_n[s]);
        memset(mf_outcome, 0, sizeof mf_outcome);
        mf_compile(mf_seeds[s]);
        ck_assert_msg(mf_outcome[0] == 1, "seed %s does not compile: %s", mf_seeds[s], pippy_last_error());
    }
}
END_TEST

START_TEST(test_model_fuzz)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(mf_outcome, 0, sizeof mf_outcome);
    mf_rng = 0x9E3779B97F4A7C15ULL;
    for (int c = 0; c < MF_CASES; c++)
        mf_case(c % MF_N_SEEDS, c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "model mutator: %d cases in %.1f s: %d compiled (%d kernels run on exact buffers), %d clear "
            "errors\n", MF_CASES, (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9,
            mf_outcome[0], mf_outcome[2], mf_outcome[1]);
    /* both outcomes must occur, or the mutations miss (or break) everything */
    ck_assert_int_gt(mf_outcome[0], MF_CASES / 20);
    ck_assert_int_gt(mf_outcome[1], MF_CASES / 4);
}
END_TEST

static Suite *model_fuzz_suite(void)
{
    Suite *s = suite_create("model_fuzz");
    TCase *tc = tcase_create("mutator");
    tcase_add_checked_fixture(tc, mf_setup, mf_teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_model_fuzz_seeds_compile);
    tcase_add_test(tc, test_model_fuzz);
    suite_add_tcase(s, tc);
    return s;
}

PIPPY_TEST_SUITE(model_fuzz_suite)
