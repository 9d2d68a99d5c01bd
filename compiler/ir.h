/* ir.h — the graph IR every compiler pass walks.
 *
 * A graph is a list of values (tensors: graph inputs, parameters, constants,
 * intermediates) and a list of nodes in topological order. Nodes refer to
 * values by index. Values carry their static type and shape once shape
 * inference has run; constant values (initializers and whatever constant
 * folding produced) carry their data.
 *
 * Training (compiler/autodiff.c) appends backward nodes to the same graph: a node
 * has a `phase` (F forward, B input gradient, W weight gradient) and the `stage`
 * that runs it; a gradient value names the value it is the gradient of
 * (`grad_of`), and a partial gradient of a trained parameter is `accumulate`d
 * into that stage's gradient buffer instead of being summed by nodes. */
#ifndef PIPPY_IR_H
#define PIPPY_IR_H

#include <stddef.h>
#include <stdint.h>

#include "action.h"
#include "backend.h"
#include "hash.h"
#include "status.h"
#include "tensor.h"

enum {
    PIPPY_VAL_INTERMEDIATE = 0,
    PIPPY_VAL_INPUT,    /* graph input fed at run time */
    PIPPY_VAL_PARAM,    /* initializer: a trainable/stored parameter */
    PIPPY_VAL_CONST,    /* constant made by a Constant node or by folding */
    PIPPY_VAL_GRAD,     /* training: a stage's gradient buffer of one trained parameter (grad_of);
                           written only by accumulating nodes, read by the optimizer */
};

/* pippy_value.trainable */
enum { PIPPY_TRAIN_NO = 0, PIPPY_TRAIN_PARAM, PIPPY_TRAIN_STATE };

typedef struct {
    char *name;
    int32_t kind;                         /* PIPPY_VAL_* */
    int32_t shape_known;                  /* 1 once t.rank and every t.dims[i] >= 0 */
    pippy_tdesc t;                        /* dtype; dims[i] == -1 while unknown */
    char *dim_param[PIPPY_MAX_RANK];      /* symbolic dim names from the file, or NULL */
    void *data;                           /* PARAM / CONST: dense row-major data, else NULL */
    int32_t data_owned;                   /* 1: data was malloc'd by the IR; 0: it points into a mapping */
    int32_t is_output;                    /* a graph output */
    int32_t producer;                     /* node index, or -1 */
    int32_t grad_of;                      /* training: value whose gradient this is, or -1 */
    int32_t trainable;                    /* PIPPY_TRAIN_*: PARAM the optimizer updates, or state its op
                                             updates in place (BatchNorm running statistics) */
    int32_t accumulate;                   /* training: a partial gradient of PARAM grad_of, added into the
                                             stage's gradient buffer (over nodes and microbatches) */
    int32_t param_of;                     /* CONST made from a parameter by folding or fusion (a folded
                                           * Transpose(W), a BatchNorm-folded W): that PARAM value, so
                                           * tied weights, parameter bytes and generated comments still
                                           * name it; -1 otherwise (and always -1 on a PARAM itself) */
    int32_t transpose_of;                 /* training: an initializer of the file that the compile makes
                                           * Transpose(that PARAM) again (train.c: a tie the export's
                                           * folding lost); export writes it back as the transpose of
                                           * the trained parameter. -1 otherwise */
} pippy_value;



typedef struct {
    char *name;      /* ONNX node name (made unique: "<op>_<index>" when the file has none) */
    char *op;
    char *domain;    /* "" for ONNX */
    int32_t n_in, n_out;
    int32_t *in;     /* value indices; -1 for an absent optional input */
    int32_t *out;
    int32_t n_attrs;
    pippy_attr *attrs; /* owned: names, strings, arrays and tensor data are malloc'd */
    int32_t removed; /* 1: folded into a constant or otherwise dropped */
    int32_t phase;   /* PIPPY_PHASE_* */
    int32_t stage;   /* the stage that runs it (set by partition and autodiff), -1 before */
    int32_t split_after; /* 1: a stage boundary follows this node (from a PipeSplit) */
} pippy_node;

typedef struct {
    char *key, *value;
} pippy_meta;

typedef struct {
    char *path;               /* the model file */
    int64_t ir_version;
    int32_t opset;            /* default ("" / ai.onnx) domain */
    int32_t training;         /* compiled for training: float parameters are not constants */
    uint64_t hash;            /* FNV-1a of the model file's bytes */
    char *producer;           /* producer_name + version, for messages */

    pippy_value *values;
    int32_t n_values, cap_values;
    pippy_node *nodes;
    int32_t n_nodes, cap_nodes;
    int32_t *inputs;          /* runtime graph inputs (initializers excluded), in file order */
    int32_t n_inputs;
    int32_t *outputs;
    int32_t n_outputs;
    pippy_meta *meta;         /* metadata_props */
    int32_t n_meta;

    /* name -> value index (open addressing) */
    int32_t *index;
    int32_t index_cap;

    /* What the compiler may allocate for constants it folds: mem_limit bytes in all (set by
     * pippy_graph_new to half of this machine's memory; pippyc --max-memory), mem_folded so far. */
    uint64_t mem_limit, mem_folded;

    /* mappings to release (external data, model file) */
    void **maps;
    size_t *map_lens;
    int32_t n_maps;
} pippy_graph;

pippy_graph *pippy_graph_new(void);
void pippy_graph_free(pippy_graph *g);

/* A copy of g's structure (values, nodes, attributes, inputs, outputs) for a pass that needs to try
 * something on the side. Value data is shared, not copied (the copy never frees it): free the copy
 * before g. Metadata is not copied. */
pippy_status pippy_graph_clone(const pippy_graph *g, pippy_graph **out);

/* Value index for name, creating an intermediate value when absent. -1 on OOM. */
int32_t pippy_graph_value(pippy_graph *g, const char *name);
/* Value index for name, or -1. */
int32_t pippy_graph_find(const pippy_graph *g, const char *name);
/* A new constant value named `name` (or name_1, name_2, ... when taken) of type t holding data, which
 * it owns from now on (freed here on failure). Its index, or -1 on OOM. */
int32_t pippy_graph_const(pippy_graph *g, const char *name, const pippy_tdesc *t, void *data);
/* The int32/int64 data of a stored value of rank <= 1 (a constant or initializer) as int64, at most
 * cap elements: their count, or -1 when v is no such value or holds more. */
int32_t pippy_value_ints(const pippy_graph *g, int32_t v, int64_t *out, int32_t cap);
/* Append a node (name, op, domain copied; in/out arrays copied). Returns its index or -1. */
int32_t pippy_graph_add_node(pippy_graph *g, const char *name, const char *op, const char *domain,
                             int32_t n_in, const int32_t *in, int32_t n_out, const int32_t *out);
/* Deep-copy attributes into node (takes no ownership of src). */
pippy_status pippy_node_set_attrs(pippy_node *n, const pippy_attr *src, int32_t n_attrs);
/* One more attribute (copied) after n's own. */
pippy_status pippy_node_add_attr(pippy_node *n, const pippy_attr *at);
/* How many inputs of live nodes read value v (a node reading it twice counts twice). */
int32_t pippy_value_readers(const pippy_graph *g, int32_t v);
/* Remember a mapping to munmap with the graph. */
pippy_status pippy_graph_keep_map(pippy_graph *g, void *addr, size_t len);
const char *pippy_graph_meta(const pippy_graph *g, const char *key);

/* 1 when v's data is known when compiling: a constant, or a parameter at inference (in
 * training a float parameter changes every step). */
int pippy_value_is_const(const pippy_graph *g, const pippy_value *v);
/* An op whose output is its first input's bytes seen another way (Reshape, Flatten, Squeeze,
 * Unsqueeze, Identity, inference Dropout): with the same dtype the stage runs nothing for it
 * (memplan.c makes the output a view); the cost model prices it at nothing. */
int pippy_op_is_view(const char *domain, const char *op, int32_t n_in, int32_t n_out);

/* Fill a backend op descriptor for node i from the IR (shapes, constant inputs). */
void pippy_graph_op_desc(const pippy_graph *g, int32_t i, pippy_op_desc *d);
/* The share (0 to 1) of node i's input bytes that a stage reads from far, where the cost model
 * prices them at its kernel's time after a cache scrub: parameters, constants and graph inputs,
 * values another stage made, and what an earlier phase made: for B and W what the forward made
 * (the stash), for W the gradients B made (W runs after the whole of B). Values the nodes just
 * before made, in the same phase, are near. */
double pippy_graph_far_share(const pippy_graph *g, int32_t i);

/* Sort nodes topologically (stable: keeps file order where possible) and set producers.
 * Fails naming the node and the input when a value is used but never defined. */
pippy_status pippy_graph_toposort(pippy_graph *g);

/* The parameter a stored value is or derives from: v itself for a PARAM, its param_of for a CONST,
 * -1 for anything else. */
int32_t pippy_value_param_root(const pippy_graph *g, int32_t v);

/* Number of elements / bytes of a value (shape must be known). */
int64_t pippy_value_numel(const pippy_value *v);
size_t pippy_value_bytes(const pippy_value *v);

/* This machine's physical memory in bytes (0 when unknown). */
uint64_t pippy_machine_memory(void);

#endif
