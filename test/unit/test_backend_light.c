/* test_backend_light.c — the light CPU op families: eltwise, binary, reduce, shape.
 * Hand-computed outputs for small cases, every opset/attribute variant the ONNX node tests use,
 * broadcasting, int64 shape chains as the compiler folds them, fast vs reference on bigger random
 * inputs, and infer errors. Also the ops real exports need (Cos, Sin, HardSwish, HardSigmoid, IsNaN,
 * IsInf, Mod, GatherElements) and the dtypes only folding uses (double math, integer MatMul/Gemm,
 * the dense ops on double). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "harness.h"

/* ---- a tiny op builder ---- */

typedef struct {
    pippy_op_desc d;
    pippy_attr a[8];
    const void *in[PIPPY_MAX_IO];
} tc_op;

static pippy_tdesc tc_td(int32_t dt, int rank, const int64_t *dims)
{
    pippy_tdesc t = {.dtype = dt, .rank = rank};
    for (int i = 0; i < rank; i++)
        t.dims[i] = dims[i];
    return t;
}
#define TD(dt, ...) tc_td(dt, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})
#define TD0(dt) tc_td(dt, 0, NULL)
#define F32 PIPPY_DT_FLOAT
#define I64 PIPPY_DT_INT64
#define I32 PIPPY_DT_INT32
#define BOOL PIPPY_DT_BOOL

static void tc_init(tc_op *t, const char *op, int opset)
{
    memset(t, 0, sizeof *t);
    t->d.op = op;
    t->d.domain = "";
    t->d.opset = opset;
    t->d.name = "n";
    t->d.attrs = t->a;
    t->d.n_out = 1;
}

/* Append an input; is_const: the compiler knows its data. */
static void tc_in(tc_op *t, pippy_tdesc td, const void *data, int is_const)
{
    int i = t->d.n_in++;
    t->d.in[i] = td;
    t->in[i] = data;
    t->d.in_const[i] = is_const ? data : NULL;
}

static void tc_absent(tc_op *t)
{
    t->d.n_in++;
}

static pippy_attr *tc_attr(tc_op *t, const char *name, int32_t type)
{
    pippy_attr *a = &t->a[t->d.n_attrs++];
    memset(a, 0, sizeof *a);
    a->name = name;
    a->type = type;
    return a;
}
static void tc_attr_i(tc_op *t, const char *name, int64_t v) { tc_attr(t, name, PIPPY_ATTR_INT)->i = v; }
static void tc_attr_f(tc_op *t, const char *name, float v) { tc_attr(t, name, PIPPY_ATTR_FLOAT)->f = v; }
static void tc_attr_s(tc_op *t, const char *name, const char *v) { tc_attr(t, name, PIPPY_ATTR_STRING)->s = v; }
static void tc_attr_ints(tc_op *t, const char *name, int n, const int64_t *v)
{
    pippy_attr *a = tc_attr(t, name, PIPPY_ATTR_INTS);
    a->n = n;
    a->ints = v;
}
static void tc_attr_tensor(tc_op *t, const char *name, pippy_tdesc td, const void *data)
{
    pippy_attr *a = tc_attr(t, name, PIPPY_ATTR_TENSOR);
    a->t = td;
    a->t_data = data;
}

static void tc_infer_ok(tc_op *t)
{
    pippy_status st = pippy_op_infer(&t->d);
    ck_assert_msg(st == PIPPY_OK, "%s infer: %s", t->d.op, pippy_last_error());
}

/* Infer, create (fast or reference), run once into out[], destroy. */
static void tc_run_mode(tc_op *t, void *const *out, int reference)
{
    tc_infer_ok(t);
    t->d.reference = reference;
    pippy_kernel *k = NULL;
    pippy_status st = pippy_kernel_create(&t->d, &k);
    ck_assert_msg(st == PIPPY_OK, "%s create: %s", t->d.op, pippy_last_error());
    pippy_kernel_run(k, t->in, out);
    pippy_kernel_destroy(k);
}

/* Run both the fast path and the reference; they must agree exactly. */
static void tc_run(tc_op *t, void *out0)
{
    size_t n = 0;
    tc_infer_ok(t);
    n = pippy_tdesc_bytes(&t->d.out[0]);
    void *ref = calloc(1, n + 1);
    void *o1[1] = {out0}, *o2[1] = {ref};
    tc_run_mode(t, o1, 0);
    tc_run_mode(t, o2, 1);
    if (t->d.out[0].dtype != PIPPY_DT_FLOAT)
        ck_assert_msg(memcmp(out0, ref, n) == 0, "%s: fast and reference differ", t->d.op);
    free(ref);
}

static pippy_status tc_infer_status(tc_op *t)
{
    return pippy_op_infer(&t->d);
}

static void ck_f32(const float *got, const float *want, int n, float tol)
{
    for (int i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i] || fabsf(got[i] - want[i]) <= tol * (1 + fabsf(want[i])) ||
                          (isnan(got[i]) && isnan(want[i])),
                      "elem %d: got %.8g want %.8g", i, got[i], want[i]);
}

static void ck_i64(const int64_t *got, const int64_t *want, int n)
{
    for (int i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "elem %d: got %lld want %lld", i, (long long)got[i], (long long)want[i]);
}

static void ck_u8(const uint8_t *got, const uint8_t *want, int n)
{
    for (int i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "elem %d: got %d want %d", i, got[i], want[i]);
}

static void ck_shape(const pippy_tdesc *t, int32_t dt, int rank, const int64_t *dims)
{
    char s[160];
    ck_assert_msg(t->dtype == dt && t->rank == rank, "got %s", pippy_tdesc_str(t, s, sizeof s));
    for (int i = 0; i < rank; i++)
        ck_assert_msg(t->dims[i] == dims[i], "got %s (dim %d)", pippy_tdesc_str(t, s, sizeof s), i);
}
#define CK_SHAPE(t, dt, ...) ck_shape(t, dt, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})

static uint64_t tc_rng = 88172645463325252ULL;
static float tc_rand(float lo, float hi)
{
    tc_rng ^= tc_rng << 13;
    tc_rng ^= tc_rng >> 7;
    tc_rng ^= tc_rng << 17;
    return lo + (hi - lo) * (float)(tc_rng >> 40) / (float)(1u << 24);
}
static float *tc_randv(int64_t n, float lo, float hi)
{
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++)
        v[i] = tc_rand(lo, hi);
    return v;
}

/* Fast vs reference on whatever t holds, comparing out[0] with a relative tolerance for floats. */
static void tc_fast_vs_ref(tc_op *t, float tol)
{
    tc_infer_ok(t);
    size_t n = pippy_tdesc_bytes(&t->d.out[0]);
    void *a = malloc(n + 1), *b = malloc(n + 1);
    void *oa[1] = {a}, *ob[1] = {b};
    tc_run_mode(t, oa, 0);
    tc_run_mode(t, ob, 1);
    if (t->d.out[0].dtype == PIPPY_DT_FLOAT)
        ck_f32(a, b, (int)(n / 4), tol);
    else
        ck_assert_msg(memcmp(a, b, n) == 0, "%s: fast and reference differ", t->d.op);
    free(a);
    free(b);
}

/* ================================ eltwise ================================ */

static const float ex[5] = {-2, -0.5f, 0, 0.5f, 2};

static void tc_unary(const char *op, int opset, const float *x, const float *want, float tol)
{
    tc_op t;
    float y[5];
    tc_init(&t, op, opset);
    tc_in(&t, TD(F32, 5), x, 0);
    tc_run(&t, y);
    ck_f32(y, want, 5, tol);
}

START_TEST(eltwise_values)
{
    tc_unary("Relu", 14, ex, (float[]){0, 0, 0, 0.5f, 2}, 0);
    tc_unary("Neg", 13, ex, (float[]){2, 0.5f, 0, -0.5f, -2}, 0);
    tc_unary("Abs", 13, ex, (float[]){2, 0.5f, 0, 0.5f, 2}, 0);
    tc_unary("Tanh", 13, ex, (float[]){-0.96402758f, -0.46211716f, 0, 0.46211716f, 0.96402758f}, 1e-6f);
    tc_unary("Sigmoid", 13, ex, (float[]){0.11920292f, 0.37754067f, 0.5f, 0.62245933f, 0.88079708f}, 1e-6f);
    tc_unary("Erf", 13, ex, (float[]){-0.99532227f, -0.52049988f, 0, 0.52049988f, 0.99532227f}, 1e-6f);
    tc_unary("Gelu", 20, ex, (float[]){-0.04550026f, -0.15426877f, 0, 0.34573123f, 1.95449974f}, 1e-6f);
    tc_unary("Softplus", 1, ex, (float[]){0.12692801f, 0.47407698f, 0.69314718f, 0.97407698f, 2.12692801f}, 1e-6f);
    tc_unary("Exp", 13, ex, (float[]){0.13533528f, 0.60653066f, 1, 1.64872127f, 7.38905610f}, 1e-6f);
    tc_unary("Identity", 13, ex, ex, 0);
    const float pos[5] = {0.25f, 1, 2, 4, 9};
    tc_unary("Sqrt", 13, pos, (float[]){0.5f, 1, 1.41421356f, 2, 3}, 1e-6f);
    tc_unary("Reciprocal", 13, pos, (float[]){4, 1, 0.5f, 0.25f, 1.0f / 9}, 1e-6f);
    tc_unary("Log", 13, pos, (float[]){-1.38629436f, 0, 0.69314718f, 1.38629436f, 2.19722458f}, 1e-6f);

    tc_op t;
    float y[5];
    tc_init(&t, "Gelu", 20);
    tc_attr_s(&t, "approximate", "tanh");
    tc_in(&t, TD(F32, 5), ex, 0);
    tc_run(&t, y);
    ck_f32(y, (float[]){-0.04540231f, -0.15428599f, 0, 0.34571401f, 1.95459769f}, 5, 1e-6f);

    tc_init(&t, "LeakyRelu", 16);
    tc_attr_f(&t, "alpha", 0.1f);
    tc_in(&t, TD(F32, 5), ex, 0);
    tc_run(&t, y);
    ck_f32(y, (float[]){-0.2f, -0.05f, 0, 0.5f, 2}, 5, 1e-7f);
    tc_init(&t, "LeakyRelu", 16); /* default alpha 0.01 */
    tc_in(&t, TD(F32, 5), ex, 0);
    tc_run(&t, y);
    ck_f32(y, (float[]){-0.02f, -0.005f, 0, 0.5f, 2}, 5, 1e-7f);
}
END_TEST

START_TEST(eltwise_int_and_bool)
{
    tc_op t;
    const int64_t xi[4] = {-3, 0, 5, INT64_MIN + 1};
    int64_t yi[4];
    tc_init(&t, "Neg", 13);
    tc_in(&t, TD(I64, 4), xi, 0);
    tc_run(&t, yi);
    ck_i64(yi, (int64_t[]){3, 0, -5, INT64_MAX}, 4);
    tc_init(&t, "Abs", 13);
    tc_in(&t, TD(I64, 4), xi, 0);
    tc_run(&t, yi);
    ck_i64(yi, (int64_t[]){3, 0, 5, INT64_MAX}, 4);
    tc_init(&t, "Relu", 14);
    tc_in(&t, TD(I64, 4), xi, 0);
    tc_run(&t, yi);
    ck_i64(yi, (int64_t[]){0, 0, 5, 0}, 4);
    tc_init(&t, "Identity", 16);
    tc_in(&t, TD(I64, 2, 2), xi, 0);
    tc_run(&t, yi);
    ck_i64(yi, xi, 4);

    const uint8_t b[3] = {1, 0, 1};
    uint8_t nb[3];
    tc_init(&t, "Not", 1);
    tc_in(&t, TD(BOOL, 3), b, 0);
    tc_run(&t, nb);
    ck_u8(nb, (uint8_t[]){0, 1, 0}, 3);

    /* bad dtype */
    tc_init(&t, "Tanh", 13);
    tc_in(&t, TD(I64, 4), xi, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "found int64"));
    tc_init(&t, "Gelu", 20);
    tc_attr_s(&t, "approximate", "sigmoid");
    tc_in(&t, TD(F32, 5), ex, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_UNSUPPORTED);
}
END_TEST

START_TEST(eltwise_clip)
{
    tc_op t;
    float y[5];
    const float lo = -1, hi = 1;
    tc_init(&t, "Clip", 13); /* min and max as inputs */
    tc_in(&t, TD(F32, 5), ex, 0);
    tc_in(&t, TD0(F32), &lo, 0);
    tc_in(&t, TD0(F32), &hi, 0);
    tc_run(&t, y);
    ck_f32(y, (float[]){-1, -0.5f, 0, 0.5f, 1}, 5, 0);
    tc_init(&t, "Clip", 13); /* max only */
    tc_in(&t, TD(F32, 5), ex, 0);
    tc_absent(&t);
    tc_in(&t, TD0(F32), &hi, 0);
    tc_run(&t, y);
    ck_f32(y, (float[]){-2, -0.5f, 0, 0.5f, 1}, 5, 0);
    tc_init(&t, "Clip", 13); /* min > max: everything becomes max */
    tc_in(&t, TD(F32, 5), ex, 0);
    tc_in(&t, TD0(F32), &hi, 0);
    tc_in(&t, TD0(F32), &lo, 0);
    tc_run(&t, y);
    ck_f32(y, (float[]){-1, -1, -1, -1, -1}, 5, 0);
    tc_init(&t, "Clip", 6); /* attributes before opset 11 */
    tc_attr_f(&t, "min", -0.5f);
    tc_in(&t, TD(F32, 5), ex, 0);
    tc_run(&t, y);
    ck_f32(y, (float[]){-0.5f, -0.5f, 0, 0.5f, 2}, 5, 0);

    const int64_t xi[4] = {-9, 3, 7, 100}, li = 0, hi64 = 10;
    int64_t yi[4];
    tc_init(&t, "Clip", 13);
    tc_in(&t, TD(I64, 4), xi, 0);
    tc_in(&t, TD0(I64), &li, 0);
    tc_in(&t, TD0(I64), &hi64, 0);
    tc_run(&t, yi);
    ck_i64(yi, (int64_t[]){0, 3, 7, 10}, 4);

    tc_init(&t, "Clip", 13); /* bound of another dtype */
    tc_in(&t, TD(I64, 4), xi, 0);
    tc_in(&t, TD0(F32), &lo, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_INVALID);
}
END_TEST

START_TEST(eltwise_dropout)
{
    tc_op t;
    float x[6] = {1, 2, 3, 4, 5, 6}, y[6];
    uint8_t mask[6];
    void *outs[2] = {y, mask};
    tc_init(&t, "Dropout", 13); /* inference: identity, mask all true */
    t.d.n_out = 2;
    tc_in(&t, TD(F32, 2, 3), x, 0);
    tc_run_mode(&t, outs, 0);
    CK_SHAPE(&t.d.out[1], BOOL, 2, 3);
    ck_f32(y, x, 6, 0);
    ck_u8(mask, (uint8_t[]){1, 1, 1, 1, 1, 1}, 6);

    /* training mode with ratio 0.5: kept values doubled, the rest 0, mask says which */
    static float big[4096], yb[4096];
    static uint8_t mb[4096];
    for (int i = 0; i < 4096; i++)
        big[i] = 1.0f + (float)(i % 7);
    const float ratio = 0.5f;
    const uint8_t training = 1;
    void *ob[2] = {yb, mb};
    tc_init(&t, "Dropout", 13);
    t.d.n_out = 2;
    tc_in(&t, TD(F32, 4096), big, 0);
    tc_in(&t, TD0(F32), &ratio, 0);
    tc_in(&t, TD0(BOOL), &training, 0);
    tc_run_mode(&t, ob, 0);
    int kept = 0;
    for (int i = 0; i < 4096; i++) {
        ck_assert_float_eq(yb[i], mb[i] ? 2 * big[i] : 0.0f);
        kept += mb[i];
    }
    ck_assert_int_gt(kept, 1700);
    ck_assert_int_lt(kept, 2400);
}
END_TEST

/* Every op that has a oneDNN fast path, on 20000 elements, against the C reference. */
START_TEST(eltwise_fast_vs_reference)
{
    static const char *ops[] = {"Relu", "LeakyRelu", "Tanh", "Sigmoid", "Sqrt", "Reciprocal", "Gelu",
                                "Neg",  "Exp",       "Log",  "Abs",     "Softplus"};
    const int64_t n = 20000;
    float *sym = tc_randv(n, -6, 6), *pos = tc_randv(n, 0.01f, 50);
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        int positive = !strcmp(ops[i], "Sqrt") || !strcmp(ops[i], "Log") || !strcmp(ops[i], "Reciprocal");
        tc_op t;
        tc_init(&t, ops[i], 20);
        tc_in(&t, TD(F32, 100, 200), positive ? pos : sym, 0);
        tc_fast_vs_ref(&t, 2e-5f);
    }
    tc_op t;
    tc_init(&t, "Gelu", 20);
    tc_attr_s(&t, "approximate", "tanh");
    tc_in(&t, TD(F32, 100, 200), sym, 0);
    tc_fast_vs_ref(&t, 2e-5f);
    free(sym);
    free(pos);
}
END_TEST

/* ================================ binary ================================ */

START_TEST(binary_same_shape_and_scalar)
{
    tc_op t;
    const float a[4] = {1, 2, 3, 4}, b[4] = {10, 20, 30, 40}, s = 2;
    float y[4];
    tc_init(&t, "Add", 14);
    tc_in(&t, TD(F32, 2, 2), a, 0);
    tc_in(&t, TD(F32, 2, 2), b, 0);
    tc_run(&t, y);
    ck_f32(y, (float[]){11, 22, 33, 44}, 4, 0);
    tc_init(&t, "Sub", 14); /* scalar on the left */
    tc_in(&t, TD0(F32), &s, 0);
    tc_in(&t, TD(F32, 4), a, 0);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 4);
    ck_f32(y, (float[]){1, 0, -1, -2}, 4, 0);
    tc_init(&t, "Div", 14);
    tc_in(&t, TD(F32, 4), a, 0);
    tc_in(&t, TD(F32, 1), &s, 0);
    tc_run(&t, y);
    ck_f32(y, (float[]){0.5f, 1, 1.5f, 2}, 4, 0);
    tc_init(&t, "Pow", 15);
    tc_in(&t, TD(F32, 4), a, 0);
    tc_in(&t, TD0(F32), &s, 0);
    tc_run(&t, y);
    ck_f32(y, (float[]){1, 4, 9, 16}, 4, 1e-7f);
}
END_TEST

START_TEST(binary_broadcast)
{
    tc_op t;
    const float m[6] = {1, 2, 3, 4, 5, 6}, row[3] = {10, 20, 30}, col[2] = {100, 200};
    float y[6];
    tc_init(&t, "Add", 14); /* [2,3] + [3] */
    tc_in(&t, TD(F32, 2, 3), m, 0);
    tc_in(&t, TD(F32, 3), row, 0);
    tc_run(&t, y);
    ck_f32(y, (float[]){11, 22, 33, 14, 25, 36}, 6, 0);
    tc_init(&t, "Mul", 14); /* [2,1] * [1,3]: outer product */
    tc_in(&t, TD(F32, 2, 1), col, 0);
    tc_in(&t, TD(F32, 1, 3), row, 0);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 2, 3);
    ck_f32(y, (float[]){1000, 2000, 3000, 2000, 4000, 6000}, 6, 0);

    /* [2,1,3] - [4,1] -> [2,4,3]: y[i][j][k] = a[i][k] - b[j] */
    const float a[6] = {1, 2, 3, 4, 5, 6}, b[4] = {0, 1, 2, 3};
    float z[24];
    tc_init(&t, "Sub", 14);
    tc_in(&t, TD(F32, 2, 1, 3), a, 0);
    tc_in(&t, TD(F32, 4, 1), b, 0);
    tc_run(&t, z);
    CK_SHAPE(&t.d.out[0], F32, 2, 4, 3);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 3; k++)
                ck_assert_float_eq(z[(i * 4 + j) * 3 + k], a[i * 3 + k] - b[j]);

    /* both sides broadcast in several dims, bigger: fast vs reference */
    float *p = tc_randv(3 * 5 * 4, -2, 2), *q = tc_randv(6 * 5, -2, 2);
    tc_init(&t, "Mul", 14);
    tc_in(&t, TD(F32, 3, 1, 5, 4), p, 0);
    tc_in(&t, TD(F32, 6, 5, 1), q, 0);
    tc_fast_vs_ref(&t, 0);
    CK_SHAPE(&t.d.out[0], F32, 3, 6, 5, 4);
    free(p);
    free(q);

    tc_init(&t, "Add", 14); /* [2,3] + [2]: no broadcast */
    tc_in(&t, TD(F32, 2, 3), m, 0);
    tc_in(&t, TD(F32, 2), col, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "float[2,3]"));
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "float[2]"));
    tc_init(&t, "Add", 14); /* mixed dtypes */
    tc_in(&t, TD(F32, 2), col, 0);
    tc_in(&t, TD(I64, 2), col, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_INVALID);
}
END_TEST

START_TEST(binary_int64)
{
    tc_op t;
    const int64_t a[4] = {-7, 7, 9, INT64_MAX}, b[4] = {2, -2, 3, 1};
    int64_t y[4];
    tc_init(&t, "Div", 14); /* truncates toward zero */
    tc_in(&t, TD(I64, 4), a, 0);
    tc_in(&t, TD(I64, 4), b, 0);
    tc_run(&t, y);
    ck_i64(y, (int64_t[]){-3, -3, 3, INT64_MAX}, 4);
    tc_init(&t, "Add", 14); /* wraps */
    tc_in(&t, TD(I64, 4), a, 0);
    tc_in(&t, TD(I64, 4), b, 0);
    tc_run(&t, y);
    ck_i64(y, (int64_t[]){-5, 5, 12, INT64_MIN}, 4);
    tc_init(&t, "Mul", 14);
    tc_in(&t, TD(I64, 3), a, 0);
    tc_in(&t, TD(I64, 3), b, 0);
    tc_run(&t, y);
    ck_i64(y, (int64_t[]){-14, -14, 27}, 3);
    tc_init(&t, "Pow", 15);
    tc_in(&t, TD(I64, 3), (int64_t[]){2, -3, 5}, 0);
    tc_in(&t, TD(I64, 3), (int64_t[]){10, 3, 0}, 0);
    tc_run(&t, y);
    ck_i64(y, (int64_t[]){1024, -27, 1}, 3);

    /* mixed Pow: the result has the base's type */
    float yf[3];
    tc_init(&t, "Pow", 15);
    tc_in(&t, TD(F32, 3), (float[]){2, 0.5f, -3}, 0);
    tc_in(&t, TD(I64, 3), (int64_t[]){3, 2, 2}, 0);
    tc_run(&t, yf);
    ck_f32(yf, (float[]){8, 0.25f, 9}, 3, 0);
    int32_t y32[3];
    tc_init(&t, "Pow", 15);
    tc_in(&t, TD(I32, 3), (int32_t[]){1, 2, 3}, 0);
    tc_in(&t, TD(F32, 3), (float[]){4, 5, 6}, 0);
    tc_run(&t, y32);
    CK_SHAPE(&t.d.out[0], I32, 3);
    ck_assert(y32[0] == 1 && y32[1] == 32 && y32[2] == 729);
}
END_TEST

START_TEST(binary_variadic)
{
    tc_op t;
    const float a[3] = {1, 5, 3}, b[3] = {4, 2, 6}, c = 3.5f;
    float y[3];
    tc_init(&t, "Max", 13);
    tc_in(&t, TD(F32, 3), a, 0);
    tc_in(&t, TD(F32, 3), b, 0);
    tc_in(&t, TD0(F32), &c, 0);
    tc_run(&t, y);
    ck_f32(y, (float[]){4, 5, 6}, 3, 0);
    tc_init(&t, "Min", 13);
    tc_in(&t, TD0(F32), &c, 0); /* the first input is the smallest: output grows from later inputs */
    tc_in(&t, TD(F32, 3), a, 0);
    tc_in(&t, TD(F32, 3), b, 0);
    tc_run(&t, y);
    ck_f32(y, (float[]){1, 2, 3}, 3, 0);
    tc_init(&t, "Sum", 13);
    tc_in(&t, TD(F32, 3), a, 0);
    tc_in(&t, TD(F32, 3), b, 0);
    tc_in(&t, TD(F32, 3), a, 0);
    tc_run(&t, y);
    ck_f32(y, (float[]){6, 12, 12}, 3, 0);
    tc_init(&t, "Mean", 13);
    tc_in(&t, TD(F32, 3), a, 0);
    tc_in(&t, TD(F32, 3), b, 0);
    tc_run(&t, y);
    ck_f32(y, (float[]){2.5f, 3.5f, 4.5f}, 3, 1e-7f);
    tc_init(&t, "Max", 13); /* one input: a copy */
    tc_in(&t, TD(F32, 3), a, 0);
    tc_run(&t, y);
    ck_f32(y, a, 3, 0);
    int64_t yi[3];
    tc_init(&t, "Min", 13);
    tc_in(&t, TD(I64, 3), (int64_t[]){5, -1, 7}, 0);
    tc_in(&t, TD(I64, 1), (int64_t[]){4}, 0);
    tc_run(&t, yi);
    ck_i64(yi, (int64_t[]){4, -1, 4}, 3);
}
END_TEST

START_TEST(binary_compare_logic_where)
{
    tc_op t;
    uint8_t y[6];
    tc_init(&t, "Equal", 19);
    tc_in(&t, TD(I64, 2, 3), (int64_t[]){1, 2, 3, 4, 5, 6}, 0);
    tc_in(&t, TD(I64, 3), (int64_t[]){1, 5, 6}, 0);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], BOOL, 2, 3);
    ck_u8(y, (uint8_t[]){1, 0, 0, 0, 1, 1}, 6);
    tc_init(&t, "Less", 13);
    tc_in(&t, TD(F32, 3), (float[]){1, 2, 3}, 0);
    tc_in(&t, TD0(F32), (float[]){2}, 0);
    tc_run(&t, y);
    ck_u8(y, (uint8_t[]){1, 0, 0}, 3);
    tc_init(&t, "GreaterOrEqual", 16);
    tc_in(&t, TD(F32, 3), (float[]){1, 2, 3}, 0);
    tc_in(&t, TD0(F32), (float[]){2}, 0);
    tc_run(&t, y);
    ck_u8(y, (uint8_t[]){0, 1, 1}, 3);
    tc_init(&t, "Greater", 13);
    tc_in(&t, TD(I32, 3), (int32_t[]){1, 2, 3}, 0);
    tc_in(&t, TD(I32, 3), (int32_t[]){3, 2, 1}, 0);
    tc_run(&t, y);
    ck_u8(y, (uint8_t[]){0, 0, 1}, 3);

    const uint8_t p[4] = {0, 0, 1, 1}, q[2] = {0, 1};
    tc_init(&t, "And", 7); /* [2,2] and [2] */
    tc_in(&t, TD(BOOL, 2, 2), p, 0);
    tc_in(&t, TD(BOOL, 2), q, 0);
    tc_run(&t, y);
    ck_u8(y, (uint8_t[]){0, 0, 0, 1}, 4);
    tc_init(&t, "Or", 7);
    tc_in(&t, TD(BOOL, 2, 2), p, 0);
    tc_in(&t, TD(BOOL, 2), q, 0);
    tc_run(&t, y);
    ck_u8(y, (uint8_t[]){0, 1, 1, 1}, 4);
    tc_init(&t, "Xor", 7);
    tc_in(&t, TD(BOOL, 2, 2), p, 0);
    tc_in(&t, TD(BOOL, 2), q, 0);
    tc_run(&t, y);
    ck_u8(y, (uint8_t[]){0, 1, 1, 0}, 4);
    tc_init(&t, "And", 7);
    tc_in(&t, TD(F32, 2), (float[]){1, 0}, 0);
    tc_in(&t, TD(F32, 2), (float[]){1, 0}, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_INVALID);

    /* Where: cond [2,1], x [2,3] int64, y scalar */
    int64_t w[6];
    const int64_t xv[6] = {1, 2, 3, 4, 5, 6}, yv = -1;
    tc_init(&t, "Where", 16);
    tc_in(&t, TD(BOOL, 2, 1), (uint8_t[]){1, 0}, 0);
    tc_in(&t, TD(I64, 2, 3), xv, 0);
    tc_in(&t, TD0(I64), &yv, 0);
    tc_run(&t, w);
    CK_SHAPE(&t.d.out[0], I64, 2, 3);
    ck_i64(w, (int64_t[]){1, 2, 3, -1, -1, -1}, 6);
    float wf[4];
    tc_init(&t, "Where", 16);
    tc_in(&t, TD(BOOL, 2, 2), (uint8_t[]){1, 0, 0, 1}, 0);
    tc_in(&t, TD(F32, 2), (float[]){1, 2}, 0);
    tc_in(&t, TD(F32, 2, 1), (float[]){9, 8}, 0);
    tc_run(&t, wf);
    ck_f32(wf, (float[]){1, 9, 8, 2}, 4, 0);
}
END_TEST

/* ================================ reduce ================================ */

static const float rx[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}; /* as [3,2,2] or [2,3,2] */

START_TEST(reduce_axes_forms)
{
    tc_op t;
    float y[12];
    const int64_t ax1[1] = {1}, axm1[1] = {-1}, ax0[1] = {0};
    tc_init(&t, "ReduceSum", 13); /* axes input, keepdims 0 */
    tc_attr_i(&t, "keepdims", 0);
    tc_in(&t, TD(F32, 3, 2, 2), rx, 0);
    tc_in(&t, TD(I64, 1), ax1, 1);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 3, 2);
    ck_f32(y, (float[]){4, 6, 12, 14, 20, 22}, 6, 0);
    tc_init(&t, "ReduceSum", 11); /* attribute before 13 */
    tc_attr_ints(&t, "axes", 1, axm1);
    tc_in(&t, TD(F32, 3, 2, 2), rx, 0);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 3, 2, 1);
    ck_f32(y, (float[]){3, 7, 11, 15, 19, 23}, 6, 0);
    tc_init(&t, "ReduceMean", 13); /* attribute before 18 */
    tc_attr_ints(&t, "axes", 1, ax0);
    tc_in(&t, TD(F32, 3, 2, 2), rx, 0);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 1, 2, 2);
    ck_f32(y, (float[]){5, 6, 7, 8}, 4, 1e-7f);
    tc_init(&t, "ReduceMax", 18); /* no axes: all */
    tc_in(&t, TD(F32, 3, 2, 2), rx, 0);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 1, 1, 1);
    ck_f32(y, (float[]){12}, 1, 0);
    tc_init(&t, "ReduceMin", 18);
    tc_attr_i(&t, "keepdims", 0);
    tc_in(&t, TD(F32, 3, 2, 2), rx, 0);
    tc_in(&t, TD(I64, 1), axm1, 1);
    tc_run(&t, y);
    ck_f32(y, (float[]){1, 3, 5, 7, 9, 11}, 6, 0);
    tc_init(&t, "ReduceProd", 18);
    tc_in(&t, TD(F32, 2, 3), rx, 0);
    tc_in(&t, TD(I64, 1), ax1, 1);
    tc_run(&t, y);
    ck_f32(y, (float[]){6, 120}, 2, 0);
    tc_init(&t, "ReduceSum", 13); /* empty axes + noop: a copy */
    tc_attr_i(&t, "noop_with_empty_axes", 1);
    tc_in(&t, TD(F32, 3, 2, 2), rx, 0);
    tc_in(&t, TD(I64, 0), NULL, 0);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 3, 2, 2);
    ck_f32(y, rx, 12, 0);

    /* axes not known when compiling */
    tc_init(&t, "ReduceSum", 13);
    tc_in(&t, TD(F32, 3, 2, 2), rx, 0);
    tc_in(&t, TD(I64, 1), ax1, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "known when compiling"));
    tc_init(&t, "ReduceSum", 13);
    tc_in(&t, TD(F32, 3, 2, 2), rx, 0);
    tc_in(&t, TD(I64, 1), (int64_t[]){3}, 1);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_INVALID);
}
END_TEST

START_TEST(reduce_types_and_empty)
{
    tc_op t;
    int64_t yi[3];
    tc_init(&t, "ReduceSum", 13);
    tc_attr_i(&t, "keepdims", 0);
    tc_in(&t, TD(I64, 3, 2), (int64_t[]){1, 2, 3, 4, 5, -6}, 0);
    tc_in(&t, TD(I64, 1), (int64_t[]){1}, 1);
    tc_run(&t, yi);
    ck_i64(yi, (int64_t[]){3, 7, -1}, 3);
    tc_init(&t, "ReduceProd", 18); /* the numel of a shape, as exporters write it */
    tc_attr_i(&t, "keepdims", 0);
    tc_in(&t, TD(I64, 3), (int64_t[]){2, 3, 4}, 0);
    tc_run(&t, yi);
    CK_SHAPE(&t.d.out[0], I64);
    ck_i64(yi, (int64_t[]){24}, 1);
    uint8_t yb[4];
    tc_init(&t, "ReduceMax", 20);
    tc_in(&t, TD(BOOL, 4, 2), (uint8_t[]){1, 0, 0, 0, 1, 1, 0, 1}, 0);
    tc_in(&t, TD(I64, 1), (int64_t[]){1}, 1);
    tc_run(&t, yb);
    ck_u8(yb, (uint8_t[]){1, 0, 1, 1}, 4);
    tc_init(&t, "ReduceMin", 20); /* empty set of bools: true */
    tc_in(&t, TD(BOOL, 2, 0), NULL, 0);
    tc_in(&t, TD(I64, 1), (int64_t[]){1}, 1);
    tc_run(&t, yb);
    ck_u8(yb, (uint8_t[]){1, 1}, 2);

    float y[8];
    static const float none[1] = {0};
    tc_init(&t, "ReduceSum", 13); /* [2,0,4] over axis 1: zeros */
    tc_in(&t, TD(F32, 2, 0, 4), none, 0);
    tc_in(&t, TD(I64, 1), (int64_t[]){1}, 1);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 2, 1, 4);
    ck_f32(y, (float[]){0, 0, 0, 0, 0, 0, 0, 0}, 8, 0);
    tc_init(&t, "ReduceMax", 18);
    tc_in(&t, TD(F32, 2, 0, 4), none, 0);
    tc_in(&t, TD(I64, 1), (int64_t[]){1}, 1);
    tc_run(&t, y);
    ck_assert(isinf(y[0]) && y[0] < 0 && isinf(y[7]));

    tc_init(&t, "ReduceMean", 18);
    tc_in(&t, TD(I64, 2), (int64_t[]){1, 2}, 0);
    tc_in(&t, TD(I64, 1), (int64_t[]){0}, 1);
    tc_run(&t, yi);
    ck_i64(yi, (int64_t[]){1}, 1); /* 3 / 2 truncates */
}
END_TEST

START_TEST(reduce_fast_vs_reference)
{
    static const char *ops[] = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin"};
    static const int64_t axes_sets[][3] = {{0, 2, -1}, {1, -1, -1}, {3, -1, -1}, {0, 1, 2}, {1, 3, -1}};
    float *x = tc_randv(5 * 6 * 7 * 8, -1, 1);
    for (size_t o = 0; o < 4; o++)
        for (size_t s = 0; s < sizeof axes_sets / sizeof axes_sets[0]; s++) {
            int64_t axes[3];
            int n = 0;
            for (int i = 0; i < 3; i++)
                if (axes_sets[s][i] >= 0)
                    axes[n++] = axes_sets[s][i];
            tc_op t;
            tc_init(&t, ops[o], 18);
            tc_attr_i(&t, "keepdims", (int64_t)(s & 1));
            tc_in(&t, TD(F32, 5, 6, 7, 8), x, 0);
            tc_in(&t, tc_td(I64, 1, (int64_t[]){n}), axes, 1);
            tc_fast_vs_ref(&t, 1e-5f);
        }
    free(x);
}
END_TEST

/* ================================ shape ================================ */

START_TEST(shape_reshape)
{
    tc_op t;
    float y[24];
    float *x = tc_randv(24, -1, 1);
    tc_init(&t, "Reshape", 14); /* 0 copies, -1 infers */
    tc_in(&t, TD(F32, 2, 3, 4), x, 0);
    tc_in(&t, TD(I64, 3), (int64_t[]){0, -1, 2}, 1);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 2, 6, 2);
    ck_f32(y, x, 24, 0);
    tc_init(&t, "Reshape", 14); /* allowzero: 0 is a real 0 */
    tc_attr_i(&t, "allowzero", 1);
    tc_in(&t, TD(F32, 0, 3, 4), x, 0);
    tc_in(&t, TD(I64, 3), (int64_t[]){3, 4, 0}, 1);
    tc_infer_ok(&t);
    CK_SHAPE(&t.d.out[0], F32, 3, 4, 0);
    tc_init(&t, "Reshape", 1); /* attribute before opset 5 */
    tc_attr_ints(&t, "shape", 2, (int64_t[]){4, -1});
    tc_in(&t, TD(F32, 2, 3, 4), x, 0);
    tc_infer_ok(&t);
    CK_SHAPE(&t.d.out[0], F32, 4, 6);

    tc_init(&t, "Reshape", 14);
    tc_in(&t, TD(F32, 2, 3, 4), x, 0);
    tc_in(&t, TD(I64, 2), (int64_t[]){4, 2}, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "must be known when compiling"));
    tc_init(&t, "Reshape", 14);
    tc_in(&t, TD(F32, 2, 3, 4), x, 0);
    tc_in(&t, TD(I64, 2), (int64_t[]){5, 5}, 1);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "float[2,3,4]"));
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "[5,5]"));
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "node 'n' (Reshape)"));
    tc_init(&t, "Reshape", 14);
    tc_in(&t, TD(F32, 2, 3, 4), x, 0);
    tc_in(&t, TD(I64, 2), (int64_t[]){5, -1}, 1);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "[5,-1]"));
    free(x);
}
END_TEST

START_TEST(shape_flatten_squeeze_unsqueeze)
{
    tc_op t;
    static float x[120];
    tc_init(&t, "Flatten", 13);
    tc_in(&t, TD(F32, 2, 3, 4, 5), x, 0);
    tc_infer_ok(&t);
    CK_SHAPE(&t.d.out[0], F32, 2, 60);
    tc_init(&t, "Flatten", 13);
    tc_attr_i(&t, "axis", 0);
    tc_in(&t, TD(F32, 2, 3, 4, 5), x, 0);
    tc_infer_ok(&t);
    CK_SHAPE(&t.d.out[0], F32, 1, 120);
    tc_init(&t, "Flatten", 13);
    tc_attr_i(&t, "axis", -1);
    tc_in(&t, TD(F32, 2, 3, 4, 5), x, 0);
    tc_infer_ok(&t);
    CK_SHAPE(&t.d.out[0], F32, 24, 5);

    tc_init(&t, "Squeeze", 11);
    tc_attr_ints(&t, "axes", 1, (int64_t[]){-2});
    tc_in(&t, TD(F32, 1, 3, 1, 5), x, 0);
    tc_infer_ok(&t);
    CK_SHAPE(&t.d.out[0], F32, 1, 3, 5);
    tc_init(&t, "Squeeze", 13);
    tc_in(&t, TD(F32, 1, 3, 1, 5), x, 0);
    tc_in(&t, TD(I64, 1), (int64_t[]){0}, 1);
    tc_infer_ok(&t);
    CK_SHAPE(&t.d.out[0], F32, 3, 1, 5);
    tc_init(&t, "Squeeze", 13); /* no axes: every 1 */
    tc_in(&t, TD(F32, 1, 3, 1, 5), x, 0);
    tc_infer_ok(&t);
    CK_SHAPE(&t.d.out[0], F32, 3, 5);
    tc_init(&t, "Squeeze", 13);
    tc_in(&t, TD(F32, 1, 3, 1, 5), x, 0);
    tc_in(&t, TD(I64, 1), (int64_t[]){1}, 1);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_SHAPE);

    tc_init(&t, "Unsqueeze", 11);
    tc_attr_ints(&t, "axes", 2, (int64_t[]){0, 4});
    tc_in(&t, TD(F32, 3, 4, 5), x, 0);
    tc_infer_ok(&t);
    CK_SHAPE(&t.d.out[0], F32, 1, 3, 4, 5, 1);
    tc_init(&t, "Unsqueeze", 13); /* unsorted, negative against the output rank */
    tc_in(&t, TD(F32, 3, 4, 5), x, 0);
    tc_in(&t, TD(I64, 2), (int64_t[]){-1, 1}, 1);
    tc_infer_ok(&t);
    CK_SHAPE(&t.d.out[0], F32, 3, 1, 4, 5, 1);
    tc_init(&t, "Unsqueeze", 13);
    tc_in(&t, TD(F32, 3, 4, 5), x, 0);
    tc_in(&t, TD(I64, 1), (int64_t[]){0}, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_UNSUPPORTED);

    tc_op p; /* pippy::PipeSplit: identity */
    int64_t v[3] = {7, 8, 9}, w[3];
    tc_init(&p, "PipeSplit", 1);
    p.d.domain = "pippy";
    tc_in(&p, TD(I64, 3), v, 0);
    tc_run(&p, w);
    ck_i64(w, v, 3);
}
END_TEST

START_TEST(shape_transpose_expand_tile)
{
    tc_op t;
    const float m[6] = {1, 2, 3, 4, 5, 6};
    float y[24];
    tc_init(&t, "Transpose", 13); /* default: reverse */
    tc_in(&t, TD(F32, 2, 3), m, 0);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 3, 2);
    ck_f32(y, (float[]){1, 4, 2, 5, 3, 6}, 6, 0);
    float *x = tc_randv(2 * 3 * 4 * 5, -1, 1);
    static const int64_t perms[][4] = {{0, 2, 1, 3}, {3, 2, 1, 0}, {1, 0, 3, 2}, {0, 1, 3, 2}, {2, 3, 0, 1}};
    for (size_t i = 0; i < sizeof perms / sizeof perms[0]; i++) {
        tc_init(&t, "Transpose", 13);
        tc_attr_ints(&t, "perm", 4, perms[i]);
        tc_in(&t, TD(F32, 2, 3, 4, 5), x, 0);
        tc_fast_vs_ref(&t, 0);
    }
    tc_init(&t, "Transpose", 13);
    tc_attr_ints(&t, "perm", 2, (int64_t[]){0, 0});
    tc_in(&t, TD(F32, 2, 3), m, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_INVALID);

    tc_init(&t, "Expand", 13); /* [3,1] to [2,1,4] -> [2,3,4] */
    tc_in(&t, TD(F32, 3, 1), m, 0);
    tc_in(&t, TD(I64, 3), (int64_t[]){2, 1, 4}, 1);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 2, 3, 4);
    for (int i = 0; i < 24; i++)
        ck_assert_float_eq(y[i], m[(i / 4) % 3]);
    tc_init(&t, "Expand", 13);
    tc_in(&t, TD(F32, 3, 1), m, 0);
    tc_in(&t, TD(I64, 2), (int64_t[]){2, 4}, 1);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_SHAPE);

    tc_init(&t, "Tile", 13); /* [2,3] x [2,2] */
    tc_in(&t, TD(F32, 2, 3), m, 0);
    tc_in(&t, TD(I64, 2), (int64_t[]){2, 2}, 1);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 4, 6);
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 6; c++)
            ck_assert_float_eq(y[r * 6 + c], m[(r % 2) * 3 + c % 3]);
    free(x);
}
END_TEST

START_TEST(shape_slice)
{
    tc_op t;
    static float x[20 * 10 * 5];
    float y[1000];
    for (int i = 0; i < 1000; i++)
        x[i] = (float)i;
    tc_init(&t, "Slice", 13); /* x[0:3, 0:10] */
    tc_in(&t, TD(F32, 20, 10, 5), x, 0);
    tc_in(&t, TD(I64, 2), (int64_t[]){0, 0}, 1);
    tc_in(&t, TD(I64, 2), (int64_t[]){3, 10}, 1);
    tc_in(&t, TD(I64, 2), (int64_t[]){0, 1}, 1);
    tc_in(&t, TD(I64, 2), (int64_t[]){1, 1}, 1);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 3, 10, 5);
    ck_f32(y, x, 150, 0);
    tc_init(&t, "Slice", 13); /* negative steps, clamping: x[20:0:-1 (clamped 19), 10:-1000:-3, 4:1:-1] */
    tc_in(&t, TD(F32, 20, 10, 5), x, 0);
    tc_in(&t, TD(I64, 3), (int64_t[]){20, 10, 4}, 1);
    tc_in(&t, TD(I64, 3), (int64_t[]){0, -1000, 1}, 1);
    tc_in(&t, TD(I64, 3), (int64_t[]){0, 1, 2}, 1);
    tc_in(&t, TD(I64, 3), (int64_t[]){-1, -3, -1}, 1);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 19, 4, 3);
    for (int i = 0; i < 19; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 3; k++)
                ck_assert_float_eq(y[(i * 4 + j) * 3 + k], x[(19 - i) * 50 + (9 - 3 * j) * 5 + (4 - k)]);
    tc_init(&t, "Slice", 13); /* negative axes and starts, default steps */
    tc_in(&t, TD(F32, 20, 10, 5), x, 0);
    tc_in(&t, TD(I64, 1), (int64_t[]){-2}, 1);
    tc_in(&t, TD(I64, 1), (int64_t[]){INT64_MAX}, 1);
    tc_in(&t, TD(I64, 1), (int64_t[]){-1}, 1);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 20, 10, 2);
    ck_assert_float_eq(y[0], 3);
    ck_assert_float_eq(y[3], 9);
    tc_init(&t, "Slice", 13); /* start past the end: empty */
    tc_in(&t, TD(F32, 20, 10, 5), x, 0);
    tc_in(&t, TD(I64, 1), (int64_t[]){1000}, 1);
    tc_in(&t, TD(I64, 1), (int64_t[]){1001}, 1);
    tc_in(&t, TD(I64, 1), (int64_t[]){1}, 1);
    tc_infer_ok(&t);
    CK_SHAPE(&t.d.out[0], F32, 20, 0, 5);
    tc_init(&t, "Slice", 9); /* attributes before opset 10 */
    tc_attr_ints(&t, "starts", 2, (int64_t[]){1, 2});
    tc_attr_ints(&t, "ends", 2, (int64_t[]){3, -1});
    tc_attr_ints(&t, "axes", 2, (int64_t[]){0, 2});
    tc_in(&t, TD(F32, 20, 10, 5), x, 0);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 2, 10, 2);
    ck_assert_float_eq(y[0], 52);
    ck_assert_float_eq(y[39], 2 * 50 + 9 * 5 + 3);
    tc_init(&t, "Slice", 13);
    tc_in(&t, TD(F32, 20, 10, 5), x, 0);
    tc_in(&t, TD(I64, 1), (int64_t[]){0}, 0);
    tc_in(&t, TD(I64, 1), (int64_t[]){3}, 1);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_UNSUPPORTED);
    tc_init(&t, "Slice", 13);
    tc_in(&t, TD(F32, 20, 10, 5), x, 0);
    tc_in(&t, TD(I64, 1), (int64_t[]){0}, 1);
    tc_in(&t, TD(I64, 1), (int64_t[]){3}, 1);
    tc_in(&t, TD(I64, 1), (int64_t[]){0}, 1);
    tc_in(&t, TD(I64, 1), (int64_t[]){0}, 1);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_INVALID);
}
END_TEST

START_TEST(shape_concat_split)
{
    tc_op t;
    const int64_t a[4] = {1, 2, 3, 4}, b[2] = {5, 6}, c[6] = {7, 8, 9, 10, 11, 12};
    int64_t y[12];
    tc_init(&t, "Concat", 13); /* [2,2] [2,1] [2,3] on axis -1 */
    tc_attr_i(&t, "axis", -1);
    tc_in(&t, TD(I64, 2, 2), a, 0);
    tc_in(&t, TD(I64, 2, 1), b, 0);
    tc_in(&t, TD(I64, 2, 3), c, 0);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], I64, 2, 6);
    ck_i64(y, (int64_t[]){1, 2, 5, 7, 8, 9, 3, 4, 6, 10, 11, 12}, 12);
    tc_init(&t, "Concat", 13);
    tc_attr_i(&t, "axis", 0);
    tc_in(&t, TD(I64, 2, 2), a, 0);
    tc_in(&t, TD(I64, 2, 1), b, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "int64[2,1]"));

    float x[14];
    for (int i = 0; i < 14; i++)
        x[i] = (float)i;
    float p0[14], p1[14], p2[14], p3[14];
    void *outs[4] = {p0, p1, p2, p3};
    tc_init(&t, "Split", 11); /* split attribute */
    t.d.n_out = 2;
    tc_attr_i(&t, "axis", 1);
    tc_attr_ints(&t, "split", 2, (int64_t[]){3, 4});
    tc_in(&t, TD(F32, 2, 7), x, 0);
    tc_run_mode(&t, outs, 0);
    CK_SHAPE(&t.d.out[0], F32, 2, 3);
    CK_SHAPE(&t.d.out[1], F32, 2, 4);
    ck_f32(p0, (float[]){0, 1, 2, 7, 8, 9}, 6, 0);
    ck_f32(p1, (float[]){3, 4, 5, 6, 10, 11, 12, 13}, 8, 0);
    tc_init(&t, "Split", 13); /* split input */
    t.d.n_out = 2;
    tc_in(&t, TD(F32, 14), x, 0);
    tc_in(&t, TD(I64, 2), (int64_t[]){10, 4}, 1);
    tc_run_mode(&t, outs, 0);
    ck_f32(p1, (float[]){10, 11, 12, 13}, 4, 0);
    tc_init(&t, "Split", 13); /* equal parts */
    t.d.n_out = 2;
    tc_in(&t, TD(F32, 14), x, 0);
    tc_run_mode(&t, outs, 0);
    CK_SHAPE(&t.d.out[1], F32, 7);
    ck_f32(p1, x + 7, 7, 0);
    tc_init(&t, "Split", 18); /* num_outputs, uneven: 7 -> 2,2,2,1 */
    t.d.n_out = 4;
    tc_attr_i(&t, "num_outputs", 4);
    tc_in(&t, TD(F32, 7), x, 0);
    tc_run_mode(&t, outs, 0);
    CK_SHAPE(&t.d.out[2], F32, 2);
    CK_SHAPE(&t.d.out[3], F32, 1);
    ck_f32(p3, (float[]){6}, 1, 0);
    tc_init(&t, "Split", 13);
    t.d.n_out = 2;
    tc_in(&t, TD(F32, 14), x, 0);
    tc_in(&t, TD(I64, 2), (int64_t[]){10, 5}, 1);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_SHAPE);
    tc_init(&t, "Split", 13);
    t.d.n_out = 3;
    tc_in(&t, TD(F32, 14), x, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_SHAPE);
}
END_TEST

START_TEST(shape_gather_trilu)
{
    tc_op t;
    const float m[6] = {1, 2, 3, 4, 5, 6};
    float y[12];
    tc_init(&t, "Gather", 13); /* axis 0, negative index */
    tc_in(&t, TD(F32, 3, 2), m, 0);
    tc_in(&t, TD(I64, 2), (int64_t[]){-1, 0}, 0);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 2, 2);
    ck_f32(y, (float[]){5, 6, 1, 2}, 4, 0);
    tc_init(&t, "Gather", 13); /* axis 1, 2-D int32 indices */
    tc_attr_i(&t, "axis", 1);
    tc_in(&t, TD(F32, 2, 3), m, 0);
    tc_in(&t, TD(I32, 2, 2), (int32_t[]){2, 0, 1, 1}, 0);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 2, 2, 2);
    ck_f32(y, (float[]){3, 1, 2, 2, 6, 4, 5, 5}, 8, 0);
    tc_init(&t, "Gather", 13); /* scalar index drops the axis */
    tc_in(&t, TD(F32, 3, 2), m, 0);
    tc_in(&t, TD0(I64), (int64_t[]){1}, 0);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 2);
    ck_f32(y, (float[]){3, 4}, 2, 0);
    tc_init(&t, "Gather", 13);
    tc_in(&t, TD(F32, 3, 2), m, 0);
    tc_in(&t, TD(F32, 1), m, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_INVALID);

    const int64_t x[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    int64_t z[12];
    const int64_t k1 = 1, km1 = -1;
    tc_init(&t, "Trilu", 14); /* upper (default), k = 1 */
    tc_in(&t, TD(I64, 3, 4), x, 0);
    tc_in(&t, TD0(I64), &k1, 0);
    tc_run(&t, z);
    ck_i64(z, (int64_t[]){0, 2, 3, 4, 0, 0, 7, 8, 0, 0, 0, 12}, 12);
    tc_init(&t, "Trilu", 14); /* lower, k = -1 */
    tc_attr_i(&t, "upper", 0);
    tc_in(&t, TD(I64, 3, 4), x, 0);
    tc_in(&t, TD0(I64), &km1, 0);
    tc_run(&t, z);
    ck_i64(z, (int64_t[]){0, 0, 0, 0, 5, 0, 0, 0, 9, 10, 0, 0}, 12);
    tc_init(&t, "Trilu", 14); /* lower, no k, batch of two 2x3 */
    tc_attr_i(&t, "upper", 0);
    tc_in(&t, TD(I64, 2, 2, 3), x, 0);
    tc_run(&t, z);
    ck_i64(z, (int64_t[]){1, 0, 0, 4, 5, 0, 7, 0, 0, 10, 11, 0}, 12);
}
END_TEST

START_TEST(shape_constants)
{
    tc_op t;
    static float x[60];
    int64_t s[4];
    tc_init(&t, "Shape", 15);
    tc_in(&t, TD(F32, 3, 4, 5), x, 0);
    tc_run(&t, s);
    CK_SHAPE(&t.d.out[0], I64, 3);
    ck_i64(s, (int64_t[]){3, 4, 5}, 3);
    tc_init(&t, "Shape", 15);
    tc_attr_i(&t, "start", -2);
    tc_attr_i(&t, "end", 10);
    tc_in(&t, TD(F32, 3, 4, 5), x, 0);
    tc_run(&t, s);
    CK_SHAPE(&t.d.out[0], I64, 2);
    ck_i64(s, (int64_t[]){4, 5}, 2);
    tc_init(&t, "Shape", 15);
    tc_attr_i(&t, "start", 2);
    tc_attr_i(&t, "end", 1);
    tc_in(&t, TD(F32, 3, 4, 5), x, 0);
    tc_infer_ok(&t);
    CK_SHAPE(&t.d.out[0], I64, 0);
    tc_init(&t, "Size", 13);
    tc_in(&t, TD(F32, 3, 4, 5), x, 0);
    tc_run(&t, s);
    CK_SHAPE(&t.d.out[0], I64);
    ck_i64(s, (int64_t[]){60}, 1);

    float f[6];
    tc_init(&t, "ConstantOfShape", 9); /* default float 0 */
    tc_in(&t, TD(I64, 2), (int64_t[]){2, 3}, 1);
    memset(f, 0xff, sizeof f);
    tc_run(&t, f);
    CK_SHAPE(&t.d.out[0], F32, 2, 3);
    ck_f32(f, (float[]){0, 0, 0, 0, 0, 0}, 6, 0);
    int64_t seven = 7, v[4];
    tc_init(&t, "ConstantOfShape", 9);
    tc_attr_tensor(&t, "value", TD(I64, 1), &seven);
    tc_in(&t, TD(I64, 1), (int64_t[]){4}, 1);
    tc_run(&t, v);
    ck_i64(v, (int64_t[]){7, 7, 7, 7}, 4);
    tc_init(&t, "ConstantOfShape", 9);
    tc_in(&t, TD(I64, 1), (int64_t[]){0}, 1);
    tc_infer_ok(&t);
    CK_SHAPE(&t.d.out[0], F32, 0);

    /* Constant copies its attribute: changing the attribute after create changes nothing */
    float payload[3] = {1, 2, 3};
    tc_init(&t, "Constant", 13);
    tc_attr_tensor(&t, "value", TD(F32, 3), payload);
    tc_infer_ok(&t);
    pippy_kernel *k;
    ck_assert_int_eq(pippy_kernel_create(&t.d, &k), PIPPY_OK);
    payload[0] = 99;
    float out[3];
    void *o[1] = {out};
    pippy_kernel_run(k, NULL, o);
    pippy_kernel_destroy(k);
    ck_f32(out, (float[]){1, 2, 3}, 3, 0);
    tc_init(&t, "Constant", 13);
    tc_attr_ints(&t, "value_ints", 2, (int64_t[]){-1, 4});
    tc_run(&t, v);
    CK_SHAPE(&t.d.out[0], I64, 2);
    ck_i64(v, (int64_t[]){-1, 4}, 2);
    tc_init(&t, "Constant", 13);
    tc_attr_f(&t, "value_float", 0.5f);
    tc_run(&t, f);
    CK_SHAPE(&t.d.out[0], F32);
    ck_f32(f, (float[]){0.5f}, 1, 0);
    tc_init(&t, "Constant", 13);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_INVALID);

    tc_init(&t, "Range", 11);
    tc_in(&t, TD0(F32), (float[]){1}, 1);
    tc_in(&t, TD0(F32), (float[]){2.1f}, 1);
    tc_in(&t, TD0(F32), (float[]){0.25f}, 1);
    tc_run(&t, f);
    CK_SHAPE(&t.d.out[0], F32, 5);
    ck_f32(f, (float[]){1, 1.25f, 1.5f, 1.75f, 2}, 5, 0);
    tc_init(&t, "Range", 11);
    tc_in(&t, TD0(I64), (int64_t[]){10}, 1);
    tc_in(&t, TD0(I64), (int64_t[]){4}, 1);
    tc_in(&t, TD0(I64), (int64_t[]){-3}, 1);
    tc_run(&t, v);
    CK_SHAPE(&t.d.out[0], I64, 2);
    ck_i64(v, (int64_t[]){10, 7}, 2);
    tc_init(&t, "Range", 11);
    tc_in(&t, TD0(I64), (int64_t[]){10}, 0);
    tc_in(&t, TD0(I64), (int64_t[]){4}, 1);
    tc_in(&t, TD0(I64), (int64_t[]){-3}, 1);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_UNSUPPORTED);
}
END_TEST

START_TEST(shape_cast)
{
    tc_op t;
    const float x[5] = {-1.7f, -0.2f, 0, 2.5f, 3e9f};
    int64_t yi[5];
    tc_init(&t, "Cast", 13); /* truncates toward zero */
    tc_attr_i(&t, "to", PIPPY_DT_INT64);
    tc_in(&t, TD(F32, 5), x, 0);
    tc_run(&t, yi);
    CK_SHAPE(&t.d.out[0], I64, 5);
    ck_i64(yi, (int64_t[]){-1, 0, 0, 2, 3000000000LL}, 5);
    uint8_t yb[5];
    tc_init(&t, "Cast", 13);
    tc_attr_i(&t, "to", PIPPY_DT_BOOL);
    tc_in(&t, TD(F32, 5), x, 0);
    tc_run(&t, yb);
    ck_u8(yb, (uint8_t[]){1, 1, 0, 1, 1}, 5);
    float yf[6];
    tc_init(&t, "Cast", 13);
    tc_attr_i(&t, "to", PIPPY_DT_FLOAT);
    tc_in(&t, TD(BOOL, 3), (uint8_t[]){1, 0, 1}, 0);
    tc_run(&t, yf);
    ck_f32(yf, (float[]){1, 0, 1}, 3, 0);
    int32_t y32[3];
    tc_init(&t, "Cast", 13);
    tc_attr_i(&t, "to", PIPPY_DT_INT32);
    tc_in(&t, TD(I64, 3), (int64_t[]){-5, 1 << 20, 7}, 0);
    tc_run(&t, y32);
    ck_assert(y32[0] == -5 && y32[1] == 1 << 20 && y32[2] == 7);
    double yd[2];
    tc_init(&t, "CastLike", 15);
    tc_in(&t, TD(I32, 2), (int32_t[]){-3, 9}, 0);
    tc_in(&t, TD(PIPPY_DT_DOUBLE, 1), (double[]){0}, 0);
    tc_run(&t, yd);
    ck_assert(yd[0] == -3.0 && yd[1] == 9.0);

    /* float16 round trip: exact for representable values, nearest-even otherwise */
    const float h[6] = {1, -2.5f, 65504, 1.0f / 16384 / 1024, 1.00048828125f, 70000};
    uint16_t half[6];
    tc_init(&t, "Cast", 13);
    tc_attr_i(&t, "to", PIPPY_DT_FLOAT16);
    tc_in(&t, TD(F32, 6), h, 0);
    tc_run(&t, half);
    ck_assert(half[0] == 0x3c00 && half[1] == 0xc100 && half[2] == 0x7bff && half[3] == 0x0001);
    ck_assert(half[4] == 0x3c00 && half[5] == 0x7c00);
    tc_init(&t, "Cast", 13);
    tc_attr_i(&t, "to", PIPPY_DT_FLOAT);
    tc_in(&t, TD(PIPPY_DT_FLOAT16, 6), half, 0);
    tc_run(&t, yf);
    ck_assert(yf[0] == 1 && yf[1] == -2.5f && yf[2] == 65504 && yf[3] == h[3] && isinf(yf[5]));

    tc_init(&t, "Cast", 13);
    tc_attr_i(&t, "to", 16); /* bfloat16 */
    tc_in(&t, TD(F32, 5), x, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "bfloat16"));
}
END_TEST

/* Shape -> Gather -> Unsqueeze -> Concat -> Reshape on int64, run the way the compiler folds
 * constants (reference kernels, each output fed on as the next op's constant input). */
START_TEST(shape_int64_chain)
{
    static float x[2 * 3 * 4];
    tc_op t;
    int64_t shape[3], dim0, dim0v[1], target[2];

    tc_init(&t, "Shape", 13);
    tc_in(&t, TD(F32, 2, 3, 4), x, 0);
    void *o[1] = {shape};
    tc_run_mode(&t, o, 1);

    tc_init(&t, "Gather", 13);
    tc_in(&t, TD(I64, 3), shape, 1);
    tc_in(&t, TD0(I64), (int64_t[]){0}, 1);
    o[0] = &dim0;
    tc_run_mode(&t, o, 1);
    CK_SHAPE(&t.d.out[0], I64);

    tc_init(&t, "Unsqueeze", 13);
    tc_in(&t, TD0(I64), &dim0, 1);
    tc_in(&t, TD(I64, 1), (int64_t[]){0}, 1);
    o[0] = dim0v;
    tc_run_mode(&t, o, 1);
    CK_SHAPE(&t.d.out[0], I64, 1);

    tc_init(&t, "Concat", 13);
    tc_attr_i(&t, "axis", 0);
    tc_in(&t, TD(I64, 1), dim0v, 1);
    tc_in(&t, TD(I64, 1), (int64_t[]){-1}, 1);
    o[0] = target;
    tc_run_mode(&t, o, 1);
    ck_i64(target, (int64_t[]){2, -1}, 2);

    tc_init(&t, "Reshape", 14);
    tc_in(&t, TD(F32, 2, 3, 4), x, 0);
    tc_in(&t, TD(I64, 2), target, 1);
    tc_infer_ok(&t);
    CK_SHAPE(&t.d.out[0], F32, 2, 12);

    /* and the int64 arithmetic exporters put in between: (dim0 * 3) / 2, as a scalar */
    int64_t prod, quot;
    tc_init(&t, "Mul", 14);
    tc_in(&t, TD0(I64), &dim0, 1);
    tc_in(&t, TD0(I64), (int64_t[]){3}, 1);
    o[0] = &prod;
    tc_run_mode(&t, o, 1);
    tc_init(&t, "Div", 14);
    tc_in(&t, TD0(I64), &prod, 1);
    tc_in(&t, TD0(I64), (int64_t[]){4}, 1);
    o[0] = &quot;
    tc_run_mode(&t, o, 1);
    ck_assert_int_eq(quot, 1);
}
END_TEST


/* ================================ ops for real exports (issue 10) ================================ */

#define F64 PIPPY_DT_DOUBLE

static void ck_f64(const double *got, const double *want, int n, double tol)
{
    for (int i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i] || fabs(got[i] - want[i]) <= tol * (1 + fabs(want[i])) ||
                          (isnan(got[i]) && isnan(want[i])),
                      "elem %d: got %.17g want %.17g", i, got[i], want[i]);
}

START_TEST(eltwise_new_ops)
{
    tc_unary("Cos", 7, ex, (float[]){-0.41614684f, 0.87758256f, 1, 0.87758256f, -0.41614684f}, 1e-6f);
    tc_unary("Sin", 7, ex, (float[]){-0.90929743f, -0.47942554f, 0, 0.47942554f, 0.90929743f}, 1e-6f);
    /* HardSwish: x * clip(x/6 + 1/2, 0, 1) */
    tc_unary("HardSwish", 14, ex, (float[]){-0.33333334f, -0.20833333f, 0, 0.29166667f, 1.6666666f}, 1e-6f);
    const float far[5] = {-4, -3, 3, 4, 100};
    tc_unary("HardSwish", 14, far, (float[]){0, 0, 3, 4, 100}, 0);
    tc_unary("HardSigmoid", 6, ex, (float[]){0.1f, 0.4f, 0.5f, 0.6f, 0.9f}, 1e-6f); /* alpha 0.2, beta 0.5 */
    tc_op t;
    float y[5];
    tc_init(&t, "HardSigmoid", 6);
    tc_attr_f(&t, "alpha", 0.5f);
    tc_attr_f(&t, "beta", 0.6f);
    tc_in(&t, TD(F32, 5), ex, 0);
    tc_run(&t, y);
    ck_f32(y, (float[]){0, 0.35f, 0.6f, 0.85f, 1}, 5, 1e-6f);

    const float special[5] = {NAN, INFINITY, -INFINITY, 1, 0};
    uint8_t b[5];
    tc_init(&t, "IsNaN", 13);
    tc_in(&t, TD(F32, 5), special, 0);
    tc_run(&t, b);
    CK_SHAPE(&t.d.out[0], BOOL, 5);
    ck_u8(b, (uint8_t[]){1, 0, 0, 0, 0}, 5);
    tc_init(&t, "IsInf", 10);
    tc_in(&t, TD(F32, 5), special, 0);
    tc_run(&t, b);
    ck_u8(b, (uint8_t[]){0, 1, 1, 0, 0}, 5);
    tc_init(&t, "IsInf", 10);
    tc_attr_i(&t, "detect_negative", 0);
    tc_in(&t, TD(F32, 5), special, 0);
    tc_run(&t, b);
    ck_u8(b, (uint8_t[]){0, 1, 0, 0, 0}, 5);
    tc_init(&t, "IsInf", 10);
    tc_attr_i(&t, "detect_positive", 0);
    tc_in(&t, TD(F32, 5), special, 0);
    tc_run(&t, b);
    ck_u8(b, (uint8_t[]){0, 0, 1, 0, 0}, 5);
    tc_init(&t, "IsNaN", 13); /* ints are not allowed */
    tc_in(&t, TD(I64, 2), (int64_t[]){1, 2}, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_UNSUPPORTED);
}
END_TEST

/* Folding's reference on double: the stage programs' rule rejects it, the reference rule takes it. */
START_TEST(eltwise_double_reference)
{
    tc_op t;
    const double x[4] = {0.25, 2, 1e300, 0};
    double y[4];
    void *o[1] = {y};
    tc_init(&t, "Sqrt", 13);
    tc_in(&t, TD(F64, 4), x, 1);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "found double"));
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "folds to a constant"));
    t.d.reference = 1;
    tc_run_mode(&t, o, 1);
    CK_SHAPE(&t.d.out[0], F64, 4);
    ck_f64(y, (double[]){0.5, 1.4142135623730951, 1e150, 0}, 4, 1e-15);

    static const struct {
        const char *op;
        double want[4];
    } cases[] = {
        {"Exp", {1.2840254166877414, 7.38905609893065, INFINITY, 1}},
        {"Tanh", {0.24491866240370913, 0.9640275800758169, 1, 0}},
        {"Cos", {0.96891242171064473, -0.41614683654714241, NAN, 1}}, /* cos(1e300) is some value: skipped */
        {"Sigmoid", {0.56217650088579807, 0.88079707797788231, 1, 0.5}},
        {"Reciprocal", {4, 0.5, 1e-300, INFINITY}},
        {"HardSwish", {0.1354166666666667, 1.6666666666666667, 1e300, 0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tc_init(&t, cases[i].op, 14);
        tc_in(&t, TD(F64, 4), x, 1);
        t.d.reference = 1;
        tc_run_mode(&t, o, 1);
        if (!strcmp(cases[i].op, "Cos"))
            y[2] = NAN;
        ck_f64(y, cases[i].want, 4, 1e-15);
    }
    const double sp[3] = {NAN, -INFINITY, 3};
    uint8_t b[3];
    o[0] = b;
    tc_init(&t, "IsNaN", 13);
    tc_in(&t, TD(F64, 3), sp, 1);
    t.d.reference = 1;
    tc_run_mode(&t, o, 1);
    ck_u8(b, (uint8_t[]){1, 0, 0}, 3);
    tc_init(&t, "IsInf", 10);
    tc_in(&t, TD(F64, 3), sp, 1);
    t.d.reference = 1;
    tc_run_mode(&t, o, 1);
    ck_u8(b, (uint8_t[]){0, 1, 0}, 3);
}
END_TEST

START_TEST(eltwise_new_fast_vs_reference)
{
    static const char *ops[] = {"Cos", "Sin", "HardSwish", "HardSigmoid", "IsNaN", "IsInf"};
    const int64_t n = 20000;
    float *v = tc_randv(n, -8, 8);
    for (int64_t i = 0; i < n; i += 97)
        v[i] = i % 3 == 0 ? NAN : i % 3 == 1 ? INFINITY : -INFINITY;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        tc_op t;
        tc_init(&t, ops[i], 20);
        tc_in(&t, TD(F32, 100, 200), v, 0);
        tc_fast_vs_ref(&t, 0);
    }
    free(v);
}
END_TEST

START_TEST(binary_mod)
{
    tc_op t;
    const int64_t a[6] = {-4, 7, 5, 4, -7, 8}, b[6] = {2, -3, 8, -2, 3, 5};
    int64_t z[6];
    tc_init(&t, "Mod", 13); /* fmod=0: the divisor's sign */
    tc_in(&t, TD(I64, 6), a, 0);
    tc_in(&t, TD(I64, 6), b, 0);
    tc_run(&t, z);
    ck_i64(z, (int64_t[]){0, -2, 5, 0, 2, 3}, 6);
    tc_init(&t, "Mod", 13); /* fmod=1: the dividend's sign */
    tc_attr_i(&t, "fmod", 1);
    tc_in(&t, TD(I64, 6), a, 0);
    tc_in(&t, TD(I64, 6), b, 0);
    tc_run(&t, z);
    ck_i64(z, (int64_t[]){0, 1, 5, 0, -1, 3}, 6);
    const int64_t e[3] = {5, INT64_MIN, -5}, d[3] = {0, -1, 0};
    tc_init(&t, "Mod", 13); /* x mod 0 and MIN mod -1 give 0 instead of trapping */
    tc_in(&t, TD(I64, 3), e, 0);
    tc_in(&t, TD(I64, 3), d, 0);
    tc_run(&t, z);
    ck_i64(z, (int64_t[]){0, 0, 0}, 3);
    int32_t zi[4];
    tc_init(&t, "Mod", 13); /* broadcast a scalar divisor, int32 */
    tc_in(&t, TD(I32, 2, 2), (int32_t[]){-7, 7, -1, 3}, 0);
    tc_in(&t, TD0(I32), (int32_t[]){3}, 0);
    tc_run(&t, zi);
    ck_assert(zi[0] == 2 && zi[1] == 1 && zi[2] == 2 && zi[3] == 0);
    int8_t z8[2];
    tc_init(&t, "Mod", 13);
    tc_in(&t, TD(PIPPY_DT_INT8, 2), (int8_t[]){-128, 127}, 0);
    tc_in(&t, TD(PIPPY_DT_INT8, 2), (int8_t[]){-1, -10}, 0);
    tc_run(&t, z8);
    ck_assert(z8[0] == 0 && z8[1] == -3);

    const float fa[6] = {-4.5f, 7.5f, 5, 4.5f, -7.5f, 8}, fb[6] = {2, -3, 8, -2, 3, 5};
    float fz[6];
    tc_init(&t, "Mod", 13);
    tc_in(&t, TD(F32, 6), fa, 0);
    tc_in(&t, TD(F32, 6), fb, 0);
    tc_run(&t, fz);
    ck_f32(fz, (float[]){1.5f, -1.5f, 5, -1.5f, 1.5f, 3}, 6, 0);
    tc_init(&t, "Mod", 13);
    tc_attr_i(&t, "fmod", 1);
    tc_in(&t, TD(F32, 6), fa, 0);
    tc_in(&t, TD(F32, 6), fb, 0);
    tc_run(&t, fz);
    ck_f32(fz, (float[]){-0.5f, 1.5f, 5, 0.5f, -1.5f, 3}, 6, 0);
    /* the spec's special cases for fmod=0 */
    const float sa[7] = {0.0f, -0.0f, INFINITY, 1, 1, -1, 3}, sb[7] = {-2, 2, 2, 0, INFINITY, INFINITY, -INFINITY};
    float sz[7];
    tc_init(&t, "Mod", 13);
    tc_in(&t, TD(F32, 7), sa, 0);
    tc_in(&t, TD(F32, 7), sb, 0);
    tc_run(&t, sz);
    ck_assert(sz[0] == 0 && signbit(sz[0]) && sz[1] == 0 && !signbit(sz[1]));
    ck_assert(isnan(sz[2]) && isnan(sz[3]));
    ck_assert(sz[4] == 1 && sz[5] == INFINITY && sz[6] == -INFINITY);

    tc_init(&t, "Mod", 13);
    tc_attr_i(&t, "fmod", 2);
    tc_in(&t, TD(I64, 6), a, 0);
    tc_in(&t, TD(I64, 6), b, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_INVALID);
    tc_init(&t, "Mod", 13);
    tc_in(&t, TD(I64, 6), a, 0);
    tc_in(&t, TD(I32, 6), b, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_INVALID);

    /* fast vs reference on a broadcast, both forms */
    float *x = tc_randv(20000, -50, 50), *m = tc_randv(200, 0.5f, 7);
    for (int f = 0; f < 2; f++) {
        tc_init(&t, "Mod", 13);
        tc_attr_i(&t, "fmod", f);
        tc_in(&t, TD(F32, 100, 200), x, 0);
        tc_in(&t, TD(F32, 200), m, 0);
        tc_fast_vs_ref(&t, 0);
    }
    free(x);
    free(m);
}
END_TEST

START_TEST(shape_gather_elements)
{
    tc_op t;
    float y[6];
    tc_init(&t, "GatherElements", 13); /* the spec's example, axis 1 */
    tc_attr_i(&t, "axis", 1);
    tc_in(&t, TD(F32, 2, 2), (float[]){1, 2, 3, 4}, 0);
    tc_in(&t, TD(I64, 2, 2), (int64_t[]){0, 0, 1, 0}, 0);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 2, 2);
    ck_f32(y, (float[]){1, 1, 4, 3}, 4, 0);
    const float m[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    tc_init(&t, "GatherElements", 13); /* axis 0, indices smaller than the data */
    tc_in(&t, TD(F32, 3, 3), m, 0);
    tc_in(&t, TD(I64, 2, 3), (int64_t[]){1, 2, 0, 2, 0, 0}, 0);
    tc_run(&t, y);
    CK_SHAPE(&t.d.out[0], F32, 2, 3);
    ck_f32(y, (float[]){4, 8, 3, 7, 2, 3}, 6, 0);
    tc_init(&t, "GatherElements", 13); /* negative, int32, one out of range (zero) */
    tc_in(&t, TD(F32, 3, 3), m, 0);
    tc_in(&t, TD(I32, 2, 3), (int32_t[]){-1, -2, 0, -3, 0, 5}, 0);
    tc_run(&t, y);
    ck_f32(y, (float[]){7, 5, 3, 1, 2, 0}, 6, 0);
    int64_t yi[4];
    tc_init(&t, "GatherElements", 13); /* int64 data, axis -1 on rank 3 */
    tc_attr_i(&t, "axis", -1);
    tc_in(&t, TD(I64, 2, 1, 3), (int64_t[]){10, 11, 12, 20, 21, 22}, 0);
    tc_in(&t, TD(I64, 2, 1, 2), (int64_t[]){2, 0, 1, 1}, 0);
    tc_run(&t, yi);
    ck_i64(yi, (int64_t[]){12, 10, 21, 21}, 4);

    tc_init(&t, "GatherElements", 13); /* ranks differ */
    tc_in(&t, TD(F32, 3, 3), m, 0);
    tc_in(&t, TD(I64, 3), (int64_t[]){0, 1, 2}, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_INVALID);
    tc_init(&t, "GatherElements", 13); /* an indices dim above the data's, off the axis */
    tc_in(&t, TD(F32, 3, 1), m, 0);
    tc_in(&t, TD(I64, 2, 2), (int64_t[]){0, 0, 0, 0}, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_SHAPE);
    tc_init(&t, "GatherElements", 13); /* float indices */
    tc_in(&t, TD(F32, 3, 3), m, 0);
    tc_in(&t, TD(F32, 3, 3), m, 0);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_INVALID);
}
END_TEST

/* Folding only: MatMul and Gemm on double and integers; Softmax, the pools, Conv and the norms on double;
 * MaxPool on uint8. */
START_TEST(matmul_fold_dtypes)
{
    tc_op t;
    const int64_t a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {7, 8, 9, 10, 11, 12};
    int64_t z[4];
    void *o[1] = {z};
    tc_init(&t, "MatMul", 13);
    tc_in(&t, TD(I64, 2, 3), a, 1);
    tc_in(&t, TD(I64, 3, 2), b, 1);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_UNSUPPORTED); /* not for stage programs */
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "folds to a constant"));
    t.d.reference = 1;
    tc_run_mode(&t, o, 1);
    CK_SHAPE(&t.d.out[0], I64, 2, 2);
    ck_i64(z, (int64_t[]){58, 64, 139, 154}, 4);
    const int64_t big[2] = {INT64_MAX, 2}, two[2] = {2, 1};
    tc_init(&t, "MatMul", 13); /* wraps like the integer ops: MAX*2 + 2 */
    tc_in(&t, TD(I64, 1, 2), big, 1);
    tc_in(&t, TD(I64, 2), two, 1);
    t.d.reference = 1;
    tc_run_mode(&t, o, 1);
    CK_SHAPE(&t.d.out[0], I64, 1);
    ck_i64(z, (int64_t[]){0}, 1);

    const double da[6] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6}, db[6] = {1e-9, 2, 3, 4, 5, 6};
    double dz[4];
    o[0] = dz;
    tc_init(&t, "MatMul", 13); /* batched [2,1,3] x [3,2] */
    tc_in(&t, TD(F64, 2, 1, 3), da, 1);
    tc_in(&t, TD(F64, 3, 2), db, 1);
    t.d.reference = 1;
    tc_run_mode(&t, o, 1);
    CK_SHAPE(&t.d.out[0], F64, 2, 1, 2);
    ck_f64(dz, (double[]){0.1e-9 + 0.2 * 3 + 0.3 * 5, 0.1 * 2 + 0.2 * 4 + 0.3 * 6, 0.4e-9 + 0.5 * 3 + 0.6 * 5,
                          0.4 * 2 + 0.5 * 4 + 0.6 * 6}, 4, 1e-15);

    tc_init(&t, "Gemm", 13); /* transA, alpha, beta, a row of C broadcast */
    tc_attr_i(&t, "transA", 1);
    tc_attr_f(&t, "alpha", 0.5f);
    tc_attr_f(&t, "beta", 2.0f);
    tc_in(&t, TD(F64, 3, 2), da, 1);            /* A' = [[.1,.3,.5],[.2,.4,.6]] */
    tc_in(&t, TD(F64, 3, 2), db, 1);
    tc_in(&t, TD(F64, 2), (double[]){1, -1}, 1);
    t.d.reference = 1;
    tc_run_mode(&t, o, 1);
    CK_SHAPE(&t.d.out[0], F64, 2, 2);
    ck_f64(dz, (double[]){0.5 * (0.1e-9 + 0.3 * 3 + 0.5 * 5) + 2, 0.5 * (0.2 + 0.3 * 4 + 0.5 * 6) - 2,
                          0.5 * (0.2e-9 + 0.4 * 3 + 0.6 * 5) + 2, 0.5 * (0.4 + 0.4 * 4 + 0.6 * 6) - 2}, 4, 1e-15);
    tc_init(&t, "Softmax", 13); /* Softmax, LogSoftmax and the pools on double (and MaxPool on uint8) */
    tc_in(&t, TD(F64, 3), (double[]){1, 2, 3}, 1);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_UNSUPPORTED);
    t.d.reference = 1;
    tc_run_mode(&t, o, 1);
    ck_f64(dz, (double[]){0.090030573170380462, 0.24472847105479764, 0.66524095577481771}, 3, 1e-14);
    tc_init(&t, "LogSoftmax", 13);
    tc_in(&t, TD(F64, 3), (double[]){1, 2, 3}, 1);
    t.d.reference = 1;
    tc_run_mode(&t, o, 1);
    ck_f64(dz, (double[]){-2.4076059644443806, -1.4076059644443804, -0.40760596444438029}, 3, 1e-14);
    tc_init(&t, "AveragePool", 19);
    tc_attr_ints(&t, "kernel_shape", 2, (int64_t[]){2, 2});
    tc_in(&t, TD(F64, 1, 1, 2, 3), (double[]){1, 2, 3, 4, 5, 1e-12}, 1);
    t.d.reference = 1;
    tc_run_mode(&t, o, 1);
    CK_SHAPE(&t.d.out[0], F64, 1, 1, 1, 2);
    ck_f64(dz, (double[]){3, 2.5 + 0.25e-12}, 2, 1e-16);
    uint8_t u[2];
    o[0] = u;
    tc_init(&t, "MaxPool", 12);
    tc_attr_ints(&t, "kernel_shape", 2, (int64_t[]){2, 2});
    tc_in(&t, TD(PIPPY_DT_UINT8, 1, 1, 2, 3), (uint8_t[]){1, 200, 3, 4, 5, 255}, 1);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_UNSUPPORTED);
    t.d.reference = 1;
    tc_run_mode(&t, o, 1);
    CK_SHAPE(&t.d.out[0], PIPPY_DT_UINT8, 1, 1, 1, 2);
    ck_u8(u, (uint8_t[]){200, 255}, 2);
    o[0] = dz;

    tc_init(&t, "Conv", 11); /* Conv, BatchNormalization, LayerNormalization on double */
    tc_in(&t, TD(F64, 1, 1, 3), (double[]){1, 2, 3}, 1);
    tc_in(&t, TD(F64, 1, 1, 2), (double[]){1, -1}, 1);
    tc_in(&t, TD(F64, 1), (double[]){0.5}, 1);
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_UNSUPPORTED);
    t.d.reference = 1;
    tc_run_mode(&t, o, 1);
    CK_SHAPE(&t.d.out[0], F64, 1, 1, 2);
    ck_f64(dz, (double[]){-0.5, -0.5}, 2, 0);
    tc_init(&t, "BatchNormalization", 15);
    tc_attr_f(&t, "epsilon", 0);
    tc_in(&t, TD(F64, 1, 2, 1), (double[]){1, 2}, 1);
    tc_in(&t, TD(F64, 2), (double[]){2, 1}, 1);
    tc_in(&t, TD(F64, 2), (double[]){0, 1}, 1);
    tc_in(&t, TD(F64, 2), (double[]){0, 1}, 1);
    tc_in(&t, TD(F64, 2), (double[]){1, 4}, 1);
    t.d.reference = 1;
    tc_run_mode(&t, o, 1);
    ck_f64(dz, (double[]){2, 1.5}, 2, 1e-15);
    float stats[2];
    void *o3[3] = {dz, &stats[0], &stats[1]};
    tc_init(&t, "LayerNormalization", 17); /* Mean and InvStdDev of stash_type float */
    t.d.n_out = 3;
    tc_attr_f(&t, "epsilon", 0);
    tc_in(&t, TD(F64, 1, 2), (double[]){1, 3}, 1);
    tc_in(&t, TD(F64, 2), (double[]){1, 2}, 1);
    tc_in(&t, TD(F64, 2), (double[]){0, 0.25}, 1);
    t.d.reference = 1;
    tc_run_mode(&t, o3, 1);
    CK_SHAPE(&t.d.out[1], F32, 1, 1);
    ck_f64(dz, (double[]){-1, 2.25}, 2, 1e-15);
    ck_f32(stats, (float[]){2, 1}, 2, 0);

    tc_init(&t, "MatMul", 13); /* mixed dtypes are an error even when folding */
    tc_in(&t, TD(F64, 2, 3), da, 1);
    tc_in(&t, TD(F32, 3, 2), (float[]){1, 2, 3, 4, 5, 6}, 1);
    t.d.reference = 1;
    ck_assert_int_eq(tc_infer_status(&t), PIPPY_ERR_INVALID);
}
END_TEST

static Suite *backend_light_suite(void)
{
    Suite *s = suite_create("backend_light");
    TCase *tc = tcase_create("eltwise");
    tcase_add_test(tc, eltwise_values);
    tcase_add_test(tc, eltwise_int_and_bool);
    tcase_add_test(tc, eltwise_clip);
    tcase_add_test(tc, eltwise_dropout);
    tcase_add_test(tc, eltwise_fast_vs_reference);
    suite_add_tcase(s, tc);
    tc = tcase_create("binary");
    tcase_add_test(tc, binary_same_shape_and_scalar);
    tcase_add_test(tc, binary_broadcast);
    tcase_add_test(tc, binary_int64);
    tcase_add_test(tc, binary_variadic);
    tcase_add_test(tc, binary_compare_logic_where);
    suite_add_tcase(s, tc);
    tc = tcase_create("reduce");
    tcase_add_test(tc, reduce_axes_forms);
    tcase_add_test(tc, reduce_types_and_empty);
    tcase_add_test(tc, reduce_fast_vs_reference);
    suite_add_tcase(s, tc);
    tc = tcase_create("shape");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, shape_reshape);
    tcase_add_test(tc, shape_flatten_squeeze_unsqueeze);
    tcase_add_test(tc, shape_transpose_expand_tile);
    tcase_add_test(tc, shape_slice);
    tcase_add_test(tc, shape_concat_split);
    tcase_add_test(tc, shape_gather_trilu);
    tcase_add_test(tc, shape_constants);
    tcase_add_test(tc, shape_cast);
    tcase_add_test(tc, shape_int64_chain);
    suite_add_tcase(s, tc);
    tc = tcase_create("real_export_ops");
    tcase_add_test(tc, eltwise_new_ops);
    tcase_add_test(tc, eltwise_double_reference);
    tcase_add_test(tc, eltwise_new_fast_vs_reference);
    tcase_add_test(tc, binary_mod);
    tcase_add_test(tc, shape_gather_elements);
    tcase_add_test(tc, matmul_fold_dtypes);
    suite_add_tcase(s, tc);
    return s;
}
PIPPY_TEST_SUITE(backend_light_suite)
