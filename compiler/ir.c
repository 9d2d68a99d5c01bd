/* ir.c — see ir.h. */
#include "ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

uint64_t pippy_machine_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
}

pippy_graph *pippy_graph_new(void)
{
    pippy_graph *g = calloc(1, sizeof *g);
    if (g) {
        uint64_t m = pippy_machine_memory();
        g->mem_limit = m ? m / 2 : (8ull << 30);
    }
    return g;
}

static void pippy_attrs_free(pippy_attr *a, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        free((void *)a[i].name);
        free((void *)a[i].s);
        free((void *)a[i].ints);
        free((void *)a[i].floats);
        if (a[i].strings)
            for (int32_t j = 0; j < a[i].n; j++)
                free((void *)a[i].strings[j]);
        free((void *)a[i].strings);
        free((void *)a[i].t_data);
    }
    free(a);
}

void pippy_graph_free(pippy_graph *g)
{
    if (!g)
        return;
    for (int32_t i = 0; i < g->n_values; i++) {
        pippy_value *v = &g->values[i];
        free(v->name);
        for (int d = 0; d < PIPPY_MAX_RANK; d++)
            free(v->dim_param[d]);
        if (v->data_owned)
            free(v->data);
    }
    for (int32_t i = 0; i < g->n_nodes; i++) {
        pippy_node *n = &g->nodes[i];
        free(n->name);
        free(n->op);
        free(n->domain);
        free(n->in);
        free(n->out);
        pippy_attrs_free(n->attrs, n->n_attrs);
    }
    for (int32_t i = 0; i < g->n_meta; i++) {
        free(g->meta[i].key);
        free(g->meta[i].value);
    }
    for (int32_t i = 0; i < g->n_maps; i++)
        munmap(g->maps[i], g->map_lens[i]);
    free(g->maps);
    free(g->map_lens);
    free(g->meta);
    free(g->values);
    free(g->nodes);
    free(g->inputs);
    free(g->outputs);
    free(g->index);
    free(g->path);
    free(g->producer);
    free(g);
}

static uint32_t pippy_name_hash(const char *s)
{
    return (uint32_t)pippy_fnv1a(s, strlen(s), PIPPY_FNV_SEED);
}

static int pippy_index_grow(pippy_graph *g)
{
    int32_t cap = g->index_cap ? g->index_cap * 2 : 256;
    int32_t *idx = malloc((size_t)cap * sizeof *idx);
    if (!idx)
        return -1;
    for (int32_t i = 0; i < cap; i++)
        idx[i] = -1;
    for (int32_t v = 0; v < g->n_values; v++) {
        uint32_t h = pippy_name_hash(g->values[v].name) & (uint32_t)(cap - 1);
        while (idx[h] >= 0)
            h = (h + 1) & (uint32_t)(cap - 1);
        idx[h] = v;
    }
    free(g->index);
    g->index = idx;
    g->index_cap = cap;
    return 0;
}

int32_t pippy_graph_find(const pippy_graph *g, const char *name)
{
    if (!g->index_cap)
        return -1;
    uint32_t h = pippy_name_hash(name) & (uint32_t)(g->index_cap - 1);
    while (g->index[h] >= 0) {
        if (strcmp(g->values[g->index[h]].name, name) == 0)
            return g->index[h];
        h = (h + 1) & (uint32_t)(g->index_cap - 1);
    }
    return -1;
}

int32_t pippy_graph_value(pippy_graph *g, const char *name)
{
    int32_t f = pippy_graph_find(g, name);
    if (f >= 0)
        return f;
    if (g->n_values == g->cap_values) {
        int32_t cap = g->cap_values ? g->cap_values * 2 : 64;
        pippy_value *nv = realloc(g->values, (size_t)cap * sizeof *nv);
        if (!nv)
            return -1;
        g->values = nv;
        g->cap_values = cap;
    }
    if ((g->n_values + 1) * 2 > g->index_cap && pippy_index_grow(g) != 0)
        return -1;
    pippy_value *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    v->name = strdup(name);
    if (!v->name)
        return -1;
    v->producer = -1;
    v->grad_of = -1;
    v->param_of = -1;
    v->transpose_of = -1;
    int32_t id = g->n_values++;
    uint32_t h = pippy_name_hash(name) & (uint32_t)(g->index_cap - 1);
    while (g->index[h] >= 0)
        h = (h + 1) & (uint32_t)(g->index_cap - 1);
    g->index[h] = id;
    return id;
}

int32_t pippy_graph_add_node(pippy_graph *g, const char *name, const char *op, const char *domain,
                             int32_t n_in, const int32_t *in, int32_t n_out, const int32_t *out)
{
    if (g->n_nodes == g->cap_nodes) {
        int32_t cap = g->cap_nodes ? g->cap_nodes * 2 : 64;
        pippy_node *nn = realloc(g->nodes, (size_t)cap * sizeof *nn);
        if (!nn)
            return -1;
        g->nodes = nn;
        g->cap_nodes = cap;
    }
    pippy_node *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->name = strdup(name ? name : "");
    n->op = strdup(op ? op : "");
    n->domain = strdup(domain ? domain : "");
    n->in = malloc((size_t)(n_in ? n_in : 1) * sizeof *n->in);
    n->out = malloc((size_t)(n_out ? n_out : 1) * sizeof *n->out);
    if (!n->name || !n->op || !n->domain || !n->in || !n->out) {
        free(n->name), free(n->op), free(n->domain), free(n->in), free(n->out);
        memset(n, 0, sizeof *n);
        return -1;
    }
    if (n_in)
        memcpy(n->in, in, (size_t)n_in * sizeof *in);
    if (n_out)
        memcpy(n->out, out, (size_t)n_out * sizeof *out);
    n->n_in = n_in;
    n->n_out = n_out;
    n->stage = -1;
    return g->n_nodes++;
}

static void *pippy_dup(const void *p, size_t n)
{
    if (!p)
        return NULL;
    void *q = malloc(n ? n : 1);
    if (q)
        memcpy(q, p, n);
    return q;
}

pippy_status pippy_node_set_attrs(pippy_node *n, const pippy_attr *src, int32_t n_attrs)
{
    pippy_attr *a = calloc((size_t)(n_attrs ? n_attrs : 1), sizeof *a);
    if (!a)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory copying attributes of node '%s'", n->name);
    for (int32_t i = 0; i < n_attrs; i++) {
        a[i] = src[i];
        a[i].name = strdup(src[i].name);
        a[i].s = src[i].s ? strdup(src[i].s) : NULL;
        a[i].ints = pippy_dup(src[i].ints, (size_t)src[i].n * sizeof(int64_t));
        a[i].floats = pippy_dup(src[i].floats, (size_t)src[i].n * sizeof(float));
        a[i].strings = NULL;
        if (src[i].strings) {
            const char **ss = calloc((size_t)src[i].n + 1, sizeof *ss);
            for (int32_t j = 0; ss && j < src[i].n; j++)
                ss[j] = strdup(src[i].strings[j]);
            a[i].strings = ss;
        }
        a[i].t_data = src[i].t_data ? pippy_dup(src[i].t_data, pippy_tdesc_bytes(&src[i].t)) : NULL;
    }
    pippy_attrs_free(n->attrs, n->n_attrs);
    n->attrs = a;
    n->n_attrs = n_attrs;
    return PIPPY_OK;
}

pippy_status pippy_node_add_attr(pippy_node *n, const pippy_attr *at)
{
    pippy_attr *attrs = malloc(((size_t)n->n_attrs + 1) * sizeof *attrs);
    if (!attrs)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory adding attribute %s to node '%s'", at->name, n->name);
    if (n->n_attrs) /* a node without attributes has attrs NULL: memcpy from NULL is undefined */
        memcpy(attrs, n->attrs, (size_t)n->n_attrs * sizeof *attrs);
    attrs[n->n_attrs] = *at;
    pippy_status st = pippy_node_set_attrs(n, attrs, n->n_attrs + 1);
    free(attrs);
    return st;
}

static char *pippy_strdup0(const char *s) { return s ? strdup(s) : NULL; }

static int32_t *pippy_ints_dup(const int32_t *a, int32_t n)
{
    return pippy_dup(a, (size_t)(n > 0 ? n : 0) * sizeof *a);
}

static pippy_status pippy_clone_nodes(const pippy_graph *g, pippy_graph *c)
{
    c->nodes = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *c->nodes);
    if (!c->nodes)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory copying the graph");
    c->cap_nodes = g->n_nodes ? g->n_nodes : 1;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const pippy_node *a = &g->nodes[i];
        pippy_node *b = &c->nodes[i];
        c->n_nodes = i + 1;
        *b = *a;
        b->attrs = NULL;
        b->n_attrs = 0;
        b->name = strdup(a->name);
        b->op = strdup(a->op);
        b->domain = strdup(a->domain);
        b->in = pippy_ints_dup(a->in, a->n_in ? a->n_in : 1);
        b->out = pippy_ints_dup(a->out, a->n_out ? a->n_out : 1);
        if (!b->name || !b->op || !b->domain || !b->in || !b->out)
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory copying the graph");
        PIPPY_TRY(pippy_node_set_attrs(b, a->attrs, a->n_attrs));
    }
    return PIPPY_OK;
}

static pippy_status pippy_clone_values(const pippy_graph *g, pippy_graph *c)
{
    c->values = calloc((size_t)(g->n_values ? g->n_values : 1), sizeof *c->values);
    c->index = pippy_ints_dup(g->index, g->index_cap);
    if (!c->values || (g->index_cap && !c->index))
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory copying the graph");
    c->cap_values = g->n_values ? g->n_values : 1;
    c->index_cap = g->index_cap;
    for (int32_t v = 0; v < g->n_values; v++) {
        const pippy_value *a = &g->values[v];
        pippy_value *b = &c->values[v];
        c->n_values = v + 1;
        *b = *a;
        b->data_owned = 0; /* shared with g */
        b->name = strdup(a->name);
        for (int d = 0; d < PIPPY_MAX_RANK; d++)
            b->dim_param[d] = pippy_strdup0(a->dim_param[d]);
        if (!b->name)
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory copying the graph");
    }
    return PIPPY_OK;
}

pippy_status pippy_graph_clone(const pippy_graph *g, pippy_graph **out)
{
    pippy_graph *c = pippy_graph_new();
    *out = NULL;
    if (!c)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory copying the graph");
    c->path = pippy_strdup0(g->path);
    c->producer = pippy_strdup0(g->producer);
    c->ir_version = g->ir_version;
    c->opset = g->opset;
    c->training = g->training;
    c->hash = g->hash;
    c->inputs = pippy_ints_dup(g->inputs, g->n_inputs ? g->n_inputs : 1);
    c->outputs = pippy_ints_dup(g->outputs, g->n_outputs ? g->n_outputs : 1);
    c->n_inputs = g->n_inputs;
    c->n_outputs = g->n_outputs;
    pippy_status st = !c->inputs || !c->outputs ? pippy_fail(PIPPY_ERR_NOMEM, "out of memory copying the graph")
                                                : pippy_clone_values(g, c);
    if (st == PIPPY_OK)
        st = pippy_clone_nodes(g, c);
    if (st != PIPPY_OK) {
        pippy_graph_free(c);
        return st;
    }
    *out = c;
    return PIPPY_OK;
}

pippy_status pippy_graph_keep_map(pippy_graph *g, void *addr, size_t len)
{
    void **m = realloc(g->maps, (size_t)(g->n_maps + 1) * sizeof *m);
    if (!m)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    g->maps = m;
    size_t *l = realloc(g->map_lens, (size_t)(g->n_maps + 1) * sizeof *l);
    if (!l)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    g->map_lens = l;
    g->maps[g->n_maps] = addr;
    g->map_lens[g->n_maps] = len;
    g->n_maps++;
    return PIPPY_OK;
}

const char *pippy_graph_meta(const pippy_graph *g, const char *key)
{
    for (int32_t i = 0; i < g->n_meta; i++)
        if (strcmp(g->meta[i].key, key) == 0)
            return g->meta[i].value;
    return NULL;
}

void pippy_graph_op_desc(const pippy_graph *g, int32_t i, pippy_op_desc *d)
{
    const pippy_node *n = &g->nodes[i];
    memset(d, 0, sizeof *d);
    d->op = n->op;
    d->domain = n->domain;
    d->opset = g->opset;
    d->name = n->name;
    d->n_attrs = n->n_attrs;
    d->attrs = n->attrs;
    d->n_in = n->n_in < PIPPY_MAX_IO ? n->n_in : PIPPY_MAX_IO;
    d->n_out = n->n_out < PIPPY_MAX_IO ? n->n_out : PIPPY_MAX_IO;
    for (int32_t k = 0; k < d->n_in; k++) {
        if (n->in[k] < 0)
            continue; /* absent: dtype stays UNDEFINED */
        const pippy_value *v = &g->values[n->in[k]];
        d->in[k] = v->t;
        d->in_const[k] = pippy_value_is_const(g, v) ? v->data : NULL;
    }
    for (int32_t k = 0; k < d->n_out; k++)
        d->out[k] = g->values[n->out[k]].t;
}

/* 1 when node i reads value v from far (pippy_graph_far_share). */
static int pippy_value_is_far(const pippy_graph *g, int32_t i, const pippy_value *v)
{
    if (v->kind != PIPPY_VAL_INTERMEDIATE || v->producer < 0)
        return 1; /* parameters, constants, gradient buffers, graph inputs */
    const pippy_node *n = &g->nodes[i], *p = &g->nodes[v->producer];
    if (n->stage >= 0 && p->stage >= 0 && n->stage != p->stage)
        return 1; /* received from another stage */
    /* made in an earlier phase: the stash (F's values that B and W read), and the gradients B keeps
     * for W, which runs after the whole of B */
    return n->phase != p->phase;
}

double pippy_graph_far_share(const pippy_graph *g, int32_t i)
{
    const pippy_node *n = &g->nodes[i];
    double all = 0, far = 0;
    for (int32_t k = 0; k < n->n_in; k++) {
        const pippy_value *v = n->in[k] >= 0 ? &g->values[n->in[k]] : NULL;
        uint64_t bytes = 0;
        if (!v || !v->shape_known || pippy_tdesc_check(&v->t, &bytes) != 0)
            continue;
        all += (double)bytes;
        far += pippy_value_is_far(g, i, v) ? (double)bytes : 0;
    }
    return all > 0 ? far / all : 0;
}

int pippy_value_is_const(const pippy_graph *g, const pippy_value *v)
{
    if (!v->data || (v->kind != PIPPY_VAL_CONST && v->kind != PIPPY_VAL_PARAM))
        return 0;
    /* training: a float parameter changes every step, so it is data, not a constant */
    return !(g->training && v->kind == PIPPY_VAL_PARAM && v->t.dtype == PIPPY_DT_FLOAT);
}

pippy_status pippy_graph_toposort(pippy_graph *g)
{
    int32_t N = g->n_nodes;
    /* available[v]: defined by an input, initializer, or an already placed node */
    char *avail = calloc((size_t)g->n_values + 1, 1);
    char *placed = calloc((size_t)N + 1, 1);
    pippy_node *sorted = malloc((size_t)(N ? N : 1) * sizeof *sorted);
    if (!avail || !placed || !sorted) {
        free(avail);
        free(placed);
        free(sorted);
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory sorting the graph");
    }
    for (int32_t v = 0; v < g->n_values; v++)
        if (g->values[v].kind != PIPPY_VAL_INTERMEDIATE)
            avail[v] = 1;
    int32_t done = 0;
    /* Repeated stable passes: O(N^2) in the worst case, O(N) for files already sorted. */
    int32_t first = 0;
    while (done < N) {
        int progress = 0;
        for (int32_t i = first; i < N; i++) {
            if (placed[i])
                continue;
            const pippy_node *n = &g->nodes[i];
            int ready = 1;
            for (int32_t k = 0; k < n->n_in && ready; k++)
                if (n->in[k] >= 0 && !avail[n->in[k]])
                    ready = 0;
            if (!ready)
                continue;
            placed[i] = 1;
            sorted[done++] = *n;
            for (int32_t k = 0; k < n->n_out; k++)
                avail[n->out[k]] = 1;
            progress = 1;
        }
        while (first < N && placed[first])
            first++;
        if (!progress)
            break;
    }
    pippy_status st = PIPPY_OK;
    if (done < N) {
        /* Name the first unplaced node and an input nothing defines (or a cycle). */
        for (int32_t i = 0; i < N && st == PIPPY_OK; i++) {
            if (placed[i])
                continue;
            const pippy_node *n = &g->nodes[i];
            for (int32_t k = 0; k < n->n_in; k++) {
                int32_t v = n->in[k];
                if (v < 0 || avail[v])
                    continue;
                int defined = 0;
                for (int32_t j = 0; j < N && !defined; j++)
                    for (int32_t o = 0; o < g->nodes[j].n_out; o++)
                        if (g->nodes[j].out[o] == v)
                            defined = 1;
                if (!defined) {
                    st = pippy_fail(PIPPY_ERR_INVALID,
                                    "%s: node '%s' (%s) reads '%s' (input %d), which no node, graph input or "
                                    "initializer defines",
                                    g->path ? g->path : "model", n->name, n->op, g->values[v].name, k);
                    break;
                }
            }
        }
        if (st == PIPPY_OK)
            st = pippy_fail(PIPPY_ERR_INVALID, "%s: the graph has a cycle (through node '%s')",
                            g->path ? g->path : "model", g->nodes[first].name);
        free(sorted);
    } else {
        free(g->nodes);
        g->nodes = sorted;
        g->cap_nodes = N ? N : 1;
        for (int32_t v = 0; v < g->n_values; v++)
            g->values[v].producer = -1;
        for (int32_t i = 0; i < N; i++)
            for (int32_t k = 0; k < g->nodes[i].n_out; k++)
                g->values[g->nodes[i].out[k]].producer = i;
    }
    free(avail);
    free(placed);
    return st;
}

int32_t pippy_value_param_root(const pippy_graph *g, int32_t v)
{
    if (v < 0)
        return -1;
    return g->values[v].kind == PIPPY_VAL_PARAM ? v : g->values[v].param_of;
}

int64_t pippy_value_numel(const pippy_value *v) { return pippy_tdesc_numel(&v->t); }
size_t pippy_value_bytes(const pippy_value *v) { return pippy_tdesc_bytes(&v->t); }

int32_t pippy_value_readers(const pippy_graph *g, int32_t v)
{
    int32_t n = 0;
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i].removed)
            for (int32_t k = 0; k < g->nodes[i].n_in; k++)
                n += g->nodes[i].in[k] == v;
    return n;
}

int32_t pippy_graph_const(pippy_graph *g, const char *name, const pippy_tdesc *t, void *data)
{
    char unique[1200];
    snprintf(unique, sizeof unique, "%s", name);
    for (int k = 1; pippy_graph_find(g, unique) >= 0; k++)
        snprintf(unique, sizeof unique, "%s_%d", name, k);
    int32_t v = pippy_graph_value(g, unique);
    if (v < 0) {
        free(data);
        return -1;
    }
    pippy_value *x = &g->values[v];
    x->kind = PIPPY_VAL_CONST;
    x->param_of = -1;
    x->t = *t;
    x->shape_known = 1;
    x->data = data;
    x->data_owned = 1;
    return v;
}

int32_t pippy_value_ints(const pippy_graph *g, int32_t v, int64_t *out, int32_t cap)
{
    if (v < 0)
        return -1;
    const pippy_value *x = &g->values[v];
    if ((x->kind != PIPPY_VAL_CONST && x->kind != PIPPY_VAL_PARAM) || !x->data || !x->shape_known ||
        (x->t.dtype != PIPPY_DT_INT64 && x->t.dtype != PIPPY_DT_INT32) || x->t.rank > 1)
        return -1;
    int64_t n = pippy_value_numel(x);
    if (n > cap)
        return -1;
    for (int64_t k = 0; k < n; k++)
        out[k] = x->t.dtype == PIPPY_DT_INT64 ? ((const int64_t *)x->data)[k] : ((const int32_t *)x->data)[k];
    return (int32_t)n;
}

int pippy_op_is_view(const char *domain, const char *op, int32_t n_in, int32_t n_out)
{
    static const char *const ops[] = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"};
    if ((domain && domain[0]) || n_out != 1 || n_in < 1)
        return 0;
    if (strcmp(op, "Dropout") == 0 && n_in >= 3)
        return 0; /* a training_mode input: it may really drop */
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strcmp(op, ops[i]) == 0)
            return 1;
    return 0;
}
