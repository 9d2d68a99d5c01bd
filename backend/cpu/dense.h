/* dense.h — what the dense CPU op families (matmul, conv, pool, norm, softmax) share:
 * a kernel made of oneDNN primitives and the helpers that build it, the create that falls
 * back to the op's reference kernel (pippy_dense_create), small checks of dtypes and
 * attributes, and the sliding window of Conv and the pools.
 *
 * A dense kernel is built once, in create: op descriptor -> primitive descriptor
 * -> primitive, its memory objects, a stream, scratchpads and any weights already
 * reordered into the layout the primitive prefers. Its run only points the bound
 * memory objects at the call's buffers (dnnl_memory_set_data_handle), executes
 * the steps in order (dnnl_primitive_execute) and waits (dnnl_stream_wait); it
 * never allocates. (oneDNN 2.6's dnnl_primitive_execute itself makes a few small heap
 * allocations per call for its argument map, measured 5-8; the C API offers no way
 * around that.)
 *
 * Threads: oneDNN here runs on OpenMP (libgomp). libgomp reads OMP_NUM_THREADS
 * once, when it is loaded (before main), so setting the variable later does
 * nothing. Instead the kernel calls omp_set_num_threads(pippy_backend_threads())
 * at create (primitives size their work split then) and again before each run
 * (the setting belongs to the calling thread). The function is looked up with
 * dlsym, because libgomp comes in only as a dependency of libdnnl and the
 * stage programs do not link it by name. */
#ifndef PIPPY_CPU_DENSE_H
#define PIPPY_CPU_DENSE_H

#include <dnnl.h>

#include "backend.h"

/* Report a failed oneDNN call once, with where it happened; returns PIPPY_ERR_BACKEND. */
pippy_status pippy_dnnl_fail(dnnl_status_t s, const char *call, const char *file, int line);

/* Wrap any oneDNN call that must succeed. */
#define PIPPY_DNNL_CHECK(call)                                                     \
    do {                                                                           \
        dnnl_status_t pippy_ds_ = (call);                                          \
        if (pippy_ds_ != dnnl_success)                                             \
            return pippy_dnnl_fail(pippy_ds_, #call, __FILE__, __LINE__);          \
    } while (0)

/* Wrap dnnl_primitive_desc_create: "no implementation for these shapes" becomes
 * PIPPY_ERR_UNSUPPORTED, which the op's create answers with its reference kernel. */
#define PIPPY_DNNL_CHECK_PD(call)                                                  \
    do {                                                                           \
        dnnl_status_t pippy_ds_ = (call);                                          \
        if (pippy_ds_ == dnnl_unimplemented)                                       \
            return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s:%d: oneDNN has no implementation for this case", \
                              __FILE__, __LINE__);                                 \
        if (pippy_ds_ != dnnl_success)                                             \
            return pippy_dnnl_fail(pippy_ds_, #call, __FILE__, __LINE__);          \
    } while (0)

#define PIPPY_DNNL_MAX_STEPS 6
#define PIPPY_DNNL_MAX_ARGS 16
#define PIPPY_DNNL_MAX_MEMS 32
#define PIPPY_DNNL_MAX_BINDS 16
#define PIPPY_DNNL_MAX_OWNED 16

typedef struct pippy_dnnl_kernel pippy_dnnl_kernel;

struct pippy_dnnl_kernel {
    pippy_kernel base;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int threads;
    int n_steps;
    struct {
        dnnl_primitive_t prim;
        int nargs;
        dnnl_exec_arg_t args[PIPPY_DNNL_MAX_ARGS];
    } steps[PIPPY_DNNL_MAX_STEPS];
    int n_binds;
    struct {
        dnnl_memory_t mem;
        int is_out;
        int idx;
    } binds[PIPPY_DNNL_MAX_BINDS];
    int n_mems;
    dnnl_memory_t mems[PIPPY_DNNL_MAX_MEMS];
    int n_owned;
    void *owned[PIPPY_DNNL_MAX_OWNED];
    /* Optional plain-C head run before the primitives (e.g. 1/stddev -> variance into a
     * kernel buffer) and tail run after them (e.g. variance -> 1/stddev). */
    void (*prepare)(pippy_dnnl_kernel *k, const void *const *in, void *const *out);
    void (*finish)(pippy_dnnl_kernel *k, const void *const *in, void *const *out);
    int64_t n0;
    float f0;
    float *buf0;
    void *aux; /* the family's data for prepare / finish (kernel-owned, from pippy_dnnl_alloc) */
    /* Made by pippy_dnnl_pd, not yet a step (freed with the kernel if it never becomes one). */
    dnnl_primitive_desc_t pd;
    /* The forward primitive descriptor backward ones are created against (pippy_dnnl_hint). */
    dnnl_primitive_desc_t hint;
};

/* A fresh kernel with its engine and stream; threads from pippy_backend_threads(). */
pippy_status pippy_dnnl_kernel_new(pippy_dnnl_kernel **k);
/* Frees everything the kernel made (also fine on a half-built kernel). */
void pippy_dnnl_kernel_free(pippy_kernel *k);

/* Attributes with a user scratchpad (allocated by add_step, never at run time). */
pippy_status pippy_dnnl_attr_new(dnnl_primitive_attr_t *attr);

/* A memory object on the kernel's engine, owned by the kernel. handle NULL: set at run (bind it). */
pippy_status pippy_dnnl_memory(pippy_dnnl_kernel *k, const dnnl_memory_desc_t *md, void *handle,
                               dnnl_memory_t *m);
/* A memory object over a new 64-byte aligned buffer owned by the kernel (zeroed). */
pippy_status pippy_dnnl_memory_alloc(pippy_dnnl_kernel *k, const dnnl_memory_desc_t *md, dnnl_memory_t *m,
                                     void **data);
/* A buffer owned by the kernel (zeroed, 64-byte aligned). */
pippy_status pippy_dnnl_alloc(pippy_dnnl_kernel *k, size_t bytes, void **data);
/* At each run, point m at in[idx] / out[idx]. */
pippy_status pippy_dnnl_bind_in(pippy_dnnl_kernel *k, dnnl_memory_t m, int idx);
pippy_status pippy_dnnl_bind_out(pippy_dnnl_kernel *k, dnnl_memory_t m, int idx);
/* A memory object of layout md pointed at in[idx] / out[idx] at each run (memory + bind). */
pippy_status pippy_dnnl_memory_in(pippy_dnnl_kernel *k, const dnnl_memory_desc_t *md, int idx, dnnl_memory_t *m);
pippy_status pippy_dnnl_memory_out(pippy_dnnl_kernel *k, const dnnl_memory_desc_t *md, int idx, dnnl_memory_t *m);
/* Input i of d: when it is constant (d->in_const[i]), its data laid out as user_md, reordered
 * (scaled by scale) once into a kernel-owned memory of layout want_md (pippy_dnnl_const);
 * else a memory of layout user_md pointed at in[i] at each run (scale is not applied). */
pippy_status pippy_dnnl_input(pippy_dnnl_kernel *k, const pippy_op_desc *d, int i, const dnnl_memory_desc_t *user_md,
                              const dnnl_memory_desc_t *want_md, float scale, dnnl_memory_t *m);

/* The primitive descriptor of op_desc (a dnnl_*_desc_t) on the kernel's engine with attr
 * (destroyed here, also on failure). The kernel holds it until pippy_dnnl_add_step makes it a
 * step, and frees it with itself otherwise, so callers may return early. oneDNN's "no
 * implementation for this case" is PIPPY_ERR_UNSUPPORTED (naming d->op): the op's create then
 * uses its reference kernel. One at a time. */
pippy_status pippy_dnnl_pd_attr(pippy_dnnl_kernel *k, const pippy_op_desc *d, const void *op_desc,
                                dnnl_primitive_attr_t attr, dnnl_primitive_desc_t *pd);
/* The same with a fresh user-scratchpad attr (pippy_dnnl_attr_new) and, when relu, an
 * eltwise ReLU post-op. */
pippy_status pippy_dnnl_pd(pippy_dnnl_kernel *k, const pippy_op_desc *d, const void *op_desc, int relu,
                           dnnl_primitive_desc_t *pd);

/* The same with a fresh user-scratchpad attr and, when accumulate, a sum post-op
 * (dst = result + dst). */
pippy_status pippy_dnnl_pd_acc(pippy_dnnl_kernel *k, const pippy_op_desc *d, const void *op_desc, int accumulate,
                               dnnl_primitive_desc_t *pd);

/* Backward primitives: oneDNN 2.6 creates them against the primitive descriptor of the forward
 * pass (a forward_training one), the "hint". pippy_dnnl_hint makes it from fwd_desc (a
 * dnnl_*_desc_t) and the kernel keeps it until it is freed (one per kernel; a later call
 * replaces it). pippy_dnnl_pd_bwd is pippy_dnnl_pd_attr against that hint (fresh user-scratchpad
 * attr, with a sum post-op when accumulate: dst += result). */
pippy_status pippy_dnnl_hint(pippy_dnnl_kernel *k, const pippy_op_desc *d, const void *fwd_desc);
pippy_status pippy_dnnl_pd_bwd(pippy_dnnl_kernel *k, const pippy_op_desc *d, const void *op_desc, int accumulate,
                               dnnl_primitive_desc_t *pd);
/* Append a sum post-op (dst = result + dst) to attr. */
pippy_status pippy_dnnl_attr_sum(dnnl_primitive_attr_t attr);

/* The usual one-primitive kernel: the primitive of op_desc (pippy_dnnl_pd, no post-op),
 * reading in[0] laid out as src_md and writing out[0] laid out as dst_md. */
pippy_status pippy_dnnl_add_src_dst(pippy_dnnl_kernel *k, const pippy_op_desc *d, const void *op_desc,
                                    const dnnl_memory_desc_t *src_md, const dnnl_memory_desc_t *dst_md);

/* Make the primitive of pd (which this call destroys, also on failure) a step of the
 * kernel, executed with args; adds the scratchpad argument when pd needs one. */
pippy_status pippy_dnnl_add_step(pippy_dnnl_kernel *k, dnnl_primitive_desc_t pd, const dnnl_exec_arg_t *args,
                                 int nargs);
/* A reorder step src -> dst (layout change at every run). */
pippy_status pippy_dnnl_add_reorder(pippy_dnnl_kernel *k, dnnl_memory_t src, dnnl_memory_t dst);
/* The same; accumulate: dst += src (a sum post-op), e.g. a weight gradient into its buffer. */
pippy_status pippy_dnnl_add_reorder_acc(pippy_dnnl_kernel *k, dnnl_memory_t src, dnnl_memory_t dst, int accumulate);

/* Data known at create: reorder (scaled by scale) from data laid out as user_md into a
 * new kernel-owned memory of layout want_md, once; the caller's data is not kept. */
pippy_status pippy_dnnl_const(pippy_dnnl_kernel *k, const dnnl_memory_desc_t *user_md, const void *data,
                              const dnnl_memory_desc_t *want_md, float scale, dnnl_memory_t *m);

/* Row-major (plain) memory descriptor of n dims. */
pippy_status pippy_dnnl_md_plain(dnnl_memory_desc_t *md, int n, const int64_t *dims);

/* --- create, shared by the dense families --- */

/* Builds an op's oneDNN kernel into k. ref is the op's reference kernel as create filled it
 * (geometry, flags), to read them from. Answers PIPPY_ERR_UNSUPPORTED where oneDNN has no
 * implementation for the case. */
typedef pippy_status (*pippy_dense_fast_fn)(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k);

/* The create of a dense op. Unless d->reference or !try_fast (e.g. an empty tensor): a new
 * pippy_dnnl_kernel built by fast. Where fast answers PIPPY_ERR_UNSUPPORTED (the error is
 * cleared), or the fast kernel is not tried: a heap copy of ref, the op's reference kernel
 * (ref_size bytes of a struct that starts with pippy_kernel, run and destroy set). Any other
 * failure of fast is returned. */
pippy_status pippy_dense_create(const pippy_op_desc *d, int try_fast, pippy_dense_fast_fn fast,
                                const pippy_kernel *ref, size_t ref_size, pippy_kernel **out);

/* --- checks shared by the dense families (messages name the op and what was found) --- */

/* Input i must be present and float. */
pippy_status pippy_dense_want_float(const pippy_op_desc *d, int i, const char *what);
/* "pippy.activation": sets *relu (0 when absent); anything but "Relu" is unsupported. */
pippy_status pippy_dense_activation(const pippy_op_desc *d, int *relu);
/* A boolean attribute such as "pippy.accumulate": INT 0 or 1 (absent: 0); anything else is invalid. */
pippy_status pippy_dense_flag(const pippy_op_desc *d, const char *name, int *v);
/* Non-zero when input i is present (i < n_in and dtype set). */
int pippy_dense_has_input(const pippy_op_desc *d, int i);

/* Product of v[from..to). */
int64_t pippy_dims_prod(const int64_t *v, int from, int to);

/* The INTS attribute name as a float tensor shape (rank 0..PIPPY_MAX_RANK, dims >= 0), e.g. the
 * "shape" of a backward op: X's or W's shape, which its inputs do not determine. */
pippy_status pippy_dense_shape_attr(const pippy_op_desc *d, const char *name, pippy_tdesc *t);

/* Fails with PIPPY_ERR_SHAPE unless input i has exactly the shape of want ("what" names both). */
pippy_status pippy_dense_want_shape(const pippy_op_desc *d, int i, const char *what, const pippy_tdesc *want,
                                    const char *want_what);

/* The sliding window of Conv and the pools, 1 to 3 spatial dims. */
#define PIPPY_DENSE_MAX_SPATIAL 3
typedef struct {
    int ns;                                  /* spatial rank */
    int64_t in[PIPPY_DENSE_MAX_SPATIAL];     /* input extent */
    int64_t k[PIPPY_DENSE_MAX_SPATIAL];      /* kernel extent (undilated) */
    int64_t s[PIPPY_DENSE_MAX_SPATIAL];      /* strides */
    int64_t dl[PIPPY_DENSE_MAX_SPATIAL];     /* dilations (1: none) */
    int64_t pl[PIPPY_DENSE_MAX_SPATIAL];     /* padding before */
    int64_t pr[PIPPY_DENSE_MAX_SPATIAL];     /* padding after (as given or from auto_pad) */
    int64_t out[PIPPY_DENSE_MAX_SPATIAL];    /* output extent */
} pippy_window;
/* Fill w from in[] and k[] (ns values each) and the attributes strides, dilations, pads,
 * auto_pad (NOTSET, SAME_UPPER, SAME_LOWER, VALID); ceil_mode rounds the output up
 * (the last window must start inside the input or its left padding). */
pippy_status pippy_dense_window(const pippy_op_desc *d, int ns, const int64_t *in, const int64_t *k, int ceil_mode,
                                pippy_window *w);
/* The output of a window op: float [n, c, w->out...]. */
void pippy_window_tdesc(const pippy_window *w, int64_t n, int64_t c, pippy_tdesc *o);
/* w as 3 spatial dims, for the reference loops: missing leading dims have extent 1,
 * stride 1, dilation 1 and no padding. */
void pippy_window_3d(const pippy_window *w, pippy_window *w3);
/* w in oneDNN's terms, ns values each: strides, kernel extents (kernel may be NULL),
 * dilations (oneDNN: 0 is none), padding before and after. */
void pippy_window_dnnl(const pippy_window *w, dnnl_dims_t strides, dnnl_dims_t kernel, dnnl_dims_t dil, dnnl_dims_t pl,
                       dnnl_dims_t pr);
/* Plain memory descriptor [n, c, spatial...] over w's input extents (out = 0) or output extents (out = 1). */
pippy_status pippy_window_md(const pippy_window *w, int64_t n, int64_t c, int out, dnnl_memory_desc_t *md);

#endif
