/* backend.c — the op registry and the helpers shared by op families. */
#include "backend.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checked.h"

/* One table per op family file in backend/cpu/, each ended by an entry with op == NULL. */
extern const pippy_op_info pippy_cpu_ops_matmul[];
extern const pippy_op_info pippy_cpu_ops_conv[];
extern const pippy_op_info pippy_cpu_ops_pool[];
extern const pippy_op_info pippy_cpu_ops_norm[];
extern const pippy_op_info pippy_cpu_ops_softmax[];
extern const pippy_op_info pippy_cpu_ops_eltwise[];
extern const pippy_op_info pippy_cpu_ops_binary[];
extern const pippy_op_info pippy_cpu_ops_reduce[];
extern const pippy_op_info pippy_cpu_ops_shape[];
extern const pippy_op_info pippy_cpu_ops_accumulate[];
extern const pippy_op_info pippy_cpu_ops_softmax_grad[];
extern const pippy_op_info pippy_cpu_ops_norm_grad[];
extern const pippy_op_info pippy_cpu_ops_conv_grad[];
extern const pippy_op_info pippy_cpu_ops_pool_grad[];
extern const pippy_op_info pippy_cpu_ops_loss[];
extern const pippy_op_info pippy_cpu_ops_eltwise_grad[];
extern const pippy_op_info pippy_cpu_ops_reduce_grad[];
extern const pippy_op_info pippy_cpu_ops_shape_grad[];

static const pippy_op_info *const pippy_families[] = {
    pippy_cpu_ops_matmul, pippy_cpu_ops_conv,   pippy_cpu_ops_pool,
    pippy_cpu_ops_norm,   pippy_cpu_ops_softmax, pippy_cpu_ops_eltwise,
    pippy_cpu_ops_binary, pippy_cpu_ops_reduce, pippy_cpu_ops_shape,
    pippy_cpu_ops_accumulate,
    pippy_cpu_ops_softmax_grad, pippy_cpu_ops_norm_grad, pippy_cpu_ops_conv_grad,
    pippy_cpu_ops_pool_grad,    pippy_cpu_ops_loss,
    pippy_cpu_ops_eltwise_grad, pippy_cpu_ops_reduce_grad, pippy_cpu_ops_shape_grad,
};

#define PIPPY_MAX_OPS 256
static const pippy_op_info *pippy_ops[PIPPY_MAX_OPS];
static int pippy_n_ops = -1;

static void pippy_ops_collect(void)
{
    if (pippy_n_ops >= 0)
        return;
    int n = 0;
    for (size_t f = 0; f < sizeof pippy_families / sizeof pippy_families[0]; f++)
        for (const pippy_op_info *o = pippy_families[f]; o->op && n < PIPPY_MAX_OPS; o++)
            pippy_ops[n++] = o;
    pippy_n_ops = n;
}

static int pippy_domain_is_onnx(const char *d)
{
    return d == NULL || d[0] == 0 || strcmp(d, "ai.onnx") == 0;
}

const pippy_op_info *pippy_op_find(const char *domain, const char *op)
{
    pippy_ops_collect();
    for (int i = 0; i < pippy_n_ops; i++) {
        const pippy_op_info *o = pippy_ops[i];
        int same_domain = pippy_domain_is_onnx(o->domain) ? pippy_domain_is_onnx(domain)
                                                          : (domain && strcmp(domain, o->domain) == 0);
        if (same_domain && strcmp(o->op, op) == 0)
            return o;
    }
    return NULL;
}

const pippy_op_info *const *pippy_op_list(int *n)
{
    pippy_ops_collect();
    *n = pippy_n_ops;
    return pippy_ops;
}

static const pippy_op_info *pippy_op_require(const pippy_op_desc *d, pippy_status *st)
{
    const pippy_op_info *o = pippy_op_find(d->domain, d->op);
    if (!o)
        *st = pippy_fail(PIPPY_ERR_UNSUPPORTED,
                         "node '%s': op type '%s%s%s' is not supported (see `pippyc inspect --ops`)",
                         d->name ? d->name : "", d->domain && d->domain[0] ? d->domain : "",
                         d->domain && d->domain[0] ? "::" : "", d->op);
    return o;
}

/* The first attribute of the wrong type a rule asked for, since the last clear (per thread). */
static __thread char pippy_attr_err[256];

static const char *pippy_attr_type_name(int32_t t)
{
    switch (t) {
    case PIPPY_ATTR_FLOAT: return "FLOAT";
    case PIPPY_ATTR_INT: return "INT";
    case PIPPY_ATTR_STRING: return "STRING";
    case PIPPY_ATTR_TENSOR: return "TENSOR";
    case PIPPY_ATTR_FLOATS: return "FLOATS";
    case PIPPY_ATTR_INTS: return "INTS";
    case PIPPY_ATTR_STRINGS: return "STRINGS";
    default: return "another type";
    }
}

/* a is present; note it when its type is not want. Returns 1 when the type is right. */
static int pippy_attr_typed(const pippy_attr *a, int32_t want)
{
    if (a->type == want)
        return 1;
    if (!pippy_attr_err[0])
        snprintf(pippy_attr_err, sizeof pippy_attr_err, "attribute '%s' has type %s, expected %s", a->name,
                 pippy_attr_type_name(a->type), pippy_attr_type_name(want));
    return 0;
}

pippy_status pippy_op_check_opset(const char *domain, const char *op, int32_t opset)
{
    if (!pippy_domain_is_onnx(domain) || opset <= 0)
        return PIPPY_OK;
    if (opset > pippy_onnx_max_opset)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "opset %d is newer than the newest this pippyc knows (%d)", opset,
                          pippy_onnx_max_opset);
    for (const pippy_onnx_op_span *s = pippy_onnx_op_spans; s->op; s++) {
        if (strcmp(s->op, op) != 0)
            continue;
        if (opset < s->since)
            return pippy_fail(PIPPY_ERR_INVALID, "%s does not exist in opset %d (it was added in opset %d)", op,
                              opset, s->since);
        if (s->removed && opset >= s->removed)
            return pippy_fail(PIPPY_ERR_INVALID, "%s does not exist in opset %d (it was removed in opset %d)", op,
                              opset, s->removed);
        return PIPPY_OK;
    }
    return PIPPY_OK; /* not an ONNX operator: the registry decides */
}

/* What every rule must deliver: outputs whose shapes are valid and whose sizes fit. */
static pippy_status pippy_op_check_outputs(const pippy_op_desc *d)
{
    for (int i = 0; i < d->n_out; i++) {
        const pippy_tdesc *t = &d->out[i];
        if (pippy_tdesc_check(t, NULL) == 0)
            continue;
        char sh[200];
        if (t->rank < 0 || t->rank > PIPPY_MAX_RANK)
            return pippy_fail(PIPPY_ERR_INTERNAL, "output %d has rank %d", i, t->rank);
        return pippy_fail(PIPPY_ERR_SHAPE,
                          "output %d would be %s: a negative dim, or more than %llu bytes (the element count "
                          "overflows or is absurd)",
                          i, pippy_tdesc_str(t, sh, sizeof sh), (unsigned long long)PIPPY_MAX_TENSOR_BYTES);
    }
    return PIPPY_OK;
}

pippy_status pippy_op_infer(pippy_op_desc *d)
{
    pippy_status st = PIPPY_OK;
    const pippy_op_info *o = pippy_op_require(d, &st);
    if (!o)
        return st;
    st = pippy_op_check_opset(d->domain, d->op, d->opset);
    pippy_attr_err[0] = 0;
    if (st == PIPPY_OK)
        st = o->infer(d);
    if (pippy_attr_err[0]) /* also when the rule failed: a wrong type is the likelier cause */
        st = pippy_fail(PIPPY_ERR_INVALID, "%s", pippy_attr_err);
    if (st == PIPPY_OK)
        st = pippy_op_check_outputs(d);
    if (st != PIPPY_OK)
        return pippy_error_prefix(st, "node '%s' (%s)", d->name ? d->name : "", d->op);
    return PIPPY_OK;
}

double pippy_op_flops(const pippy_op_desc *d)
{
    const pippy_op_info *o = pippy_op_find(d->domain, d->op);
    if (o && o->flops)
        return o->flops(d);
    double n = 0;
    for (int i = 0; i < d->n_out; i++)
        n += (double)pippy_tdesc_numel(&d->out[i]);
    return n;
}

pippy_status pippy_kernel_create(const pippy_op_desc *d, pippy_kernel **k)
{
    pippy_status st = PIPPY_OK;
    const pippy_op_info *o = pippy_op_require(d, &st);
    if (!o)
        return st;
    *k = NULL;
    pippy_attr_err[0] = 0;
    st = o->create(d, k);
    if (pippy_attr_err[0]) {
        pippy_kernel_destroy(*k);
        *k = NULL;
        st = pippy_fail(PIPPY_ERR_INVALID, "%s", pippy_attr_err);
    }
    if (st != PIPPY_OK)
        return pippy_error_prefix(st, "node '%s' (%s)", d->name ? d->name : "", d->op);
    return PIPPY_OK;
}

void pippy_kernel_destroy(pippy_kernel *k)
{
    if (!k)
        return;
    if (k->destroy)
        k->destroy(k);
    else
        free(k);
}

void pippy_kernel_reset(pippy_kernel *k)
{
    if (k && k->reset)
        k->reset(k);
}

static int pippy_threads = 1;

/* Sets the thread count of every oneDNN primitive, element-wise ones included (they run on
 * OpenMP, whose default is one thread per core: several stages on one host would fight over the
 * cores). libgomp reads OMP_NUM_THREADS when it loads, so the count is set through
 * omp_set_num_threads, looked up at run time as stage programs do not link libgomp by name. */
void pippy_backend_set_threads(int n)
{
    pippy_threads = n > 0 ? n : 1;
    void (*set)(int);
    *(void **)&set = dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    if (set)
        set(pippy_threads);
}
int pippy_backend_threads(void) { return pippy_threads; }

const pippy_attr *pippy_attr_find(const pippy_op_desc *d, const char *name)
{
    for (int i = 0; i < d->n_attrs; i++)
        if (strcmp(d->attrs[i].name, name) == 0)
            return &d->attrs[i];
    return NULL;
}

int64_t pippy_attr_int(const pippy_op_desc *d, const char *name, int64_t dflt)
{
    const pippy_attr *a = pippy_attr_find(d, name);
    return a && pippy_attr_typed(a, PIPPY_ATTR_INT) ? a->i : dflt;
}

float pippy_attr_float(const pippy_op_desc *d, const char *name, float dflt)
{
    const pippy_attr *a = pippy_attr_find(d, name);
    return a && pippy_attr_typed(a, PIPPY_ATTR_FLOAT) ? a->f : dflt;
}

const char *pippy_attr_string(const pippy_op_desc *d, const char *name, const char *dflt)
{
    const pippy_attr *a = pippy_attr_find(d, name);
    return a && pippy_attr_typed(a, PIPPY_ATTR_STRING) ? a->s : dflt;
}

int pippy_attr_ints(const pippy_op_desc *d, const char *name, const int64_t **v)
{
    const pippy_attr *a = pippy_attr_find(d, name);
    if (!a || !pippy_attr_typed(a, PIPPY_ATTR_INTS)) {
        *v = NULL;
        return -1;
    }
    *v = a->ints;
    return a->n;
}

pippy_status pippy_attr_accumulate(const pippy_op_desc *d, int *acc)
{
    const pippy_attr *a = pippy_attr_find(d, "pippy.accumulate");
    *acc = 0;
    if (!a)
        return PIPPY_OK;
    if (a->type != PIPPY_ATTR_INT || (a->i != 0 && a->i != 1))
        return pippy_fail(PIPPY_ERR_INVALID, "attribute pippy.accumulate must be INT 0 or 1");
    *acc = (int)a->i;
    return PIPPY_OK;
}

pippy_status pippy_broadcast_shape(const pippy_op_desc *d, const pippy_tdesc *a, const pippy_tdesc *b,
                                   pippy_tdesc *out)
{
    int r = a->rank > b->rank ? a->rank : b->rank;
    out->rank = r;
    for (int i = 0; i < r; i++) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char sa[128], sb[128];
            return pippy_fail(PIPPY_ERR_SHAPE, "cannot broadcast %s with %s (dim %d: %lld vs %lld)",
                              pippy_tdesc_str(a, sa, sizeof sa), pippy_tdesc_str(b, sb, sizeof sb), i,
                              (long long)da, (long long)db);
        }
        out->dims[i] = da == 1 ? db : da;
    }
    (void)d;
    return PIPPY_OK;
}

pippy_status pippy_norm_axis(const pippy_op_desc *d, int64_t axis, int32_t rank, int32_t *out)
{
    (void)d;
    int64_t a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= (rank > 0 ? rank : 1))
        return pippy_fail(PIPPY_ERR_INVALID, "axis %lld is out of range for rank %d", (long long)axis, rank);
    *out = (int32_t)a;
    return PIPPY_OK;
}

pippy_status pippy_const_ints(const pippy_op_desc *d, int i, int64_t *v, int32_t cap, int32_t *n)
{
    if (i >= d->n_in || d->in[i].dtype == PIPPY_DT_UNDEFINED)
        return pippy_fail(PIPPY_ERR_INVALID, "input %d is missing", i);
    if (!d->in_const[i])
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "input %d must be known when compiling (a constant or computed from shapes only)", i);
    int64_t cnt = pippy_tdesc_numel(&d->in[i]);
    if (cnt > cap)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "input %d has %lld values, at most %d handled", i, (long long)cnt,
                          cap);
    for (int64_t j = 0; j < cnt; j++) {
        if (d->in[i].dtype == PIPPY_DT_INT64)
            v[j] = ((const int64_t *)d->in_const[i])[j];
        else if (d->in[i].dtype == PIPPY_DT_INT32)
            v[j] = ((const int32_t *)d->in_const[i])[j];
        else
            return pippy_fail(PIPPY_ERR_INVALID, "input %d must be int64, found %s", i,
                              pippy_dtype_name(d->in[i].dtype));
    }
    *n = (int32_t)cnt;
    return PIPPY_OK;
}

/* ---- run-time errors of kernels ---- */

static atomic_int pippy_run_failed;
static char pippy_run_msg[512];

void pippy_run_fail(const char *fmt, ...)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&pippy_run_failed, &expected, 1))
        return; /* the first message wins */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pippy_run_msg, sizeof pippy_run_msg, fmt, ap);
    va_end(ap);
    atomic_store(&pippy_run_failed, 2);
}

const char *pippy_run_error(void) { return atomic_load(&pippy_run_failed) == 2 ? pippy_run_msg : NULL; }

void pippy_run_error_clear(void) { atomic_store(&pippy_run_failed, 0); }
