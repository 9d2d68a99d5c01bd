/* costmodel.c — see costmodel.h. */
#include "costmodel.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "emit.h"
#include "fileio.h"
#include "ir.h"

#define PIPPY_COST_FORMAT 1

void pippy_cost_defaults(pippy_cost_model *c)
{
    c->flops_per_s = 100e9;      /* oneDNN matmul, one core (about 117 measured on the dev machine) */
    c->bytes_per_s = 10e9;
    c->link_bytes_per_s = 10e9;  /* UCX shared memory + CMA, measured (docs/ARCHITECTURE.md) */
    c->link_latency_s = 5e-6;
    c->op_overhead_s = 1e-6;
    c->calibrated = 0;
    snprintf(c->source, sizeof c->source, "built-in defaults");
    c->kernels = NULL;
    c->n_kernels = c->cap_kernels = 0;
    c->time_kernels = 0;
    c->n_new = 0;
    c->file[0] = 0;
}
/* This thread's CPU time: a calibration on a machine others are using still measures the core
 * (wall time measured the share the scheduler gave: a loaded 2-core machine cached 90 GFLOP/s
 * for a matmul that runs at about 230). */
double pippy_cost_thread_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void pippy_cost_calibrate(pippy_cost_model *c)
{
    pippy_cost_defaults(c);
    enum { N = 256 };
    pippy_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = "MatMul";
    d.domain = "";
    d.opset = 17;
    d.name = "calibration";
    d.n_in = 2;
    d.n_out = 1;
    d.in[0] = (pippy_tdesc){PIPPY_DT_FLOAT, 2, {N, N}};
    d.in[1] = (pippy_tdesc){PIPPY_DT_FLOAT, 2, {N, N}};
    float *a = calloc(3 * N * N, sizeof *a);
    pippy_kernel *k = NULL;
    if (a && pippy_op_infer(&d) == PIPPY_OK && pippy_kernel_create(&d, &k) == PIPPY_OK) {
        const void *in[2] = {a, a + N * N};
        void *out[1] = {a + 2 * N * N};
        pippy_kernel_run(k, in, out); /* warm up */
        int reps = 0;
        double t0 = pippy_cost_thread_s(), t, best = 1e30;
        do { /* the fastest call: the least disturbed by other work on the core */
            double t1 = pippy_cost_thread_s();
            pippy_kernel_run(k, in, out);
            t = pippy_cost_thread_s();
            best = t - t1 < best ? t - t1 : best;
            reps++;
        } while (t - t0 < 0.03 && reps < 1000);
        double rate = 2.0 * N * N * N / best;
        if (rate > 1e8)
            c->flops_per_s = rate;
        pippy_kernel_destroy(k);
        /* memory bandwidth: a copy of 4 MiB, the size of the activations the element-wise ops stream
         * (a copy that fits in L2 measured 3x more) */
        size_t bytes = (size_t)4 << 20;
        char *b = calloc(2, bytes);
        reps = 0;
        best = 1e30;
        t0 = pippy_cost_thread_s();
        do {
            double t1 = pippy_cost_thread_s();
            if (!b)
                break;
            memmove(b + bytes, b, bytes);
            t = pippy_cost_thread_s();
            best = t - t1 < best ? t - t1 : best;
            reps++;
        } while (t - t0 < 0.01 && reps < 10000);
        double bw = 2.0 * (double)bytes / best;
        if (b && bw > 1e8)
            c->bytes_per_s = bw;
        free(b);
        c->calibrated = 1;
        snprintf(c->source, sizeof c->source, "measured by this compile");
    }
    free(a);
}

/* The file's fields: name, unit scale (file value * scale = the model's value). */
static const struct {
    const char *key;
    double scale;
    size_t off;
} pippy_cost_fields[] = {
    {"matmul_gflops", 1e9, offsetof(pippy_cost_model, flops_per_s)},
    {"memory_gbytes_per_s", 1e9, offsetof(pippy_cost_model, bytes_per_s)},
    {"link_gbytes_per_s", 1e9, offsetof(pippy_cost_model, link_bytes_per_s)},
    {"link_latency_us", 1e-6, offsetof(pippy_cost_model, link_latency_s)},
    {"op_overhead_us", 1e-6, offsetof(pippy_cost_model, op_overhead_s)},
};
#define PIPPY_COST_NFIELDS (sizeof pippy_cost_fields / sizeof pippy_cost_fields[0])

static double *pippy_cost_field(pippy_cost_model *c, size_t i)
{
    return (double *)((char *)c + pippy_cost_fields[i].off);
}

/* "model name" of the first CPU in /proc/cpuinfo (else the machine type), and the CPU count. */
static void pippy_cpu_model(char *buf, size_t n)
{
    snprintf(buf, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!colon || strncmp(line, "model name", 10) != 0)
            continue;
        colon++;
        while (*colon == ' ' || *colon == '\t')
            colon++;
        colon[strcspn(colon, "\n")] = 0;
        snprintf(buf, n, "%s", colon);
        break;
    }
    if (f)
        fclose(f);
    size_t k = strlen(buf);
    snprintf(buf + k, n - k, " x%ld", sysconf(_SC_NPROCESSORS_ONLN));
}

int pippy_cost_cache_path(char *path, size_t n)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char base[PATH_MAX];
    if (xdg && xdg[0] == '/')
        snprintf(base, sizeof base, "%s/pippyc", xdg);
    else if (home && home[0])
        snprintf(base, sizeof base, "%s/.cache/pippyc", home);
    else
        return 0;
    char host[256] = "localhost", cpu[512];
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    for (char *p = host; *p; p++)
        if (!(*p == '-' || *p == '.' || *p == '_' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
              (*p >= 'A' && *p <= 'Z')))
            *p = '_';
    pippy_cpu_model(cpu, sizeof cpu);
    snprintf(path, n, "%s/costmodel-%s-%08llx.json", base,
             host, (unsigned long long)(pippy_fnv1a(cpu, strlen(cpu), PIPPY_FNV_SEED) & 0xffffffffULL));
    return 1;
}

/* Rounded as the file keeps it: a compile that measured uses what later ones will read. */
static double pippy_cost_4g(double v)
{
    char b[32];
    snprintf(b, sizeof b, "%.4g", v); /* 4 digits: measurements do not repeat better than that */
    return strtod(b, NULL);
}

pippy_status pippy_cost_save(const pippy_cost_model *c, const char *path)
{
    cJSON *root = cJSON_CreateObject();
    char host[256] = "", cpu[512];
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    pippy_cpu_model(cpu, sizeof cpu);
    cJSON_AddNumberToObject(root, "pippyc_cost_model", PIPPY_COST_FORMAT);
    cJSON_AddStringToObject(root, "host", host);
    cJSON_AddStringToObject(root, "cpu", cpu);
    for (size_t i = 0; i < PIPPY_COST_NFIELDS; i++)
        cJSON_AddNumberToObject(root, pippy_cost_fields[i].key,
                                pippy_cost_4g(*pippy_cost_field((pippy_cost_model *)c, i) / pippy_cost_fields[i].scale));
    cJSON_AddBoolToObject(root, "measured", c->calibrated);
    cJSON *kt = cJSON_AddObjectToObject(root, "kernel_us"), *kf = cJSON_AddObjectToObject(root, "kernel_far_us");
    for (int32_t i = 0; kt && kf && i < c->n_kernels; i++) {
        cJSON_AddNumberToObject(kt, c->kernels[i].key, c->kernels[i].us);
        if (c->kernels[i].far_us > 0)
            cJSON_AddNumberToObject(kf, c->kernels[i].key, c->kernels[i].far_us);
    }
    char *text = kt && kf ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory writing %s", path);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    pippy_status st = slash && slash != dir ? pippy_mkdir_p(dir) : PIPPY_OK;
    size_t n = strlen(text);
    text[n] = '\n'; /* replaces the NUL: the file ends in a newline */
    if (st == PIPPY_OK) /* atomic, and safe against another pippyc writing the same file */
        st = pippy_atomic_write_file(path, text, n + 1);
    free(text);
    return st;
}

static pippy_status pippy_cost_bad(const char *path, const char *what)
{
    return pippy_fail(PIPPY_ERR_FORMAT, "cost model %s: %s (delete it to measure again)", path, what);
}

/* Entry e of table name ("kernel_us" or "kernel_far_us"): a key of 1 to PIPPY_COST_KEY_MAX - 1
 * bytes and a positive number of microseconds. */
static pippy_status pippy_cost_check_entry(const cJSON *e, const char *name, const char *path)
{
    if (e->string && e->string[0] && strlen(e->string) < PIPPY_COST_KEY_MAX && cJSON_IsNumber(e) &&
        isfinite(e->valuedouble) && e->valuedouble > 0 && e->valuedouble <= 1e9)
        return PIPPY_OK;
    char why[PIPPY_COST_KEY_MAX + 180], found[48] = "not a number";
    if (cJSON_IsNumber(e))
        snprintf(found, sizeof found, "%g", e->valuedouble);
    snprintf(why, sizeof why, "\"%s\" entry \"%.80s\" (%zu bytes): %s; expected a key of 1-%d bytes "
             "with a positive number of microseconds (at most 1e9)", name, e->string ? e->string : "",
             e->string ? strlen(e->string) : 0, found, PIPPY_COST_KEY_MAX - 1);
    return pippy_cost_bad(path, why);
}

static pippy_status pippy_cost_check_table(const cJSON *t, const char *name, const char *path)
{
    char why[160];
    if (!cJSON_IsObject(t)) {
        snprintf(why, sizeof why, "\"%s\" must be an object of kernel keys and microseconds", name);
        return pippy_cost_bad(path, why);
    }
    if (cJSON_GetArraySize(t) > PIPPY_COST_MAX_KERNELS) {
        snprintf(why, sizeof why, "\"%s\" has more entries than a table holds (%d)", name, PIPPY_COST_MAX_KERNELS);
        return pippy_cost_bad(path, why);
    }
    for (const cJSON *e = t->child; e; e = e->next)
        PIPPY_TRY(pippy_cost_check_entry(e, name, path));
    return PIPPY_OK;
}

/* The "kernel_us" and "kernel_far_us" tables of a cost-model file into m; a far time whose key
 * kernel_us lacks is dropped (the far time alone prices nothing). */
static pippy_status pippy_cost_read_kernels(pippy_cost_model *m, const cJSON *kt, const cJSON *kf, const char *path)
{
    if (!kt)
        return PIPPY_OK;
    PIPPY_TRY(pippy_cost_check_table(kt, "kernel_us", path));
    if (kf)
        PIPPY_TRY(pippy_cost_check_table(kf, "kernel_far_us", path));
    for (const cJSON *e = kt->child; e; e = e->next) {
        const cJSON *f = kf ? cJSON_GetObjectItemCaseSensitive(kf, e->string) : NULL;
        PIPPY_TRY(pippy_cost_kernel_append(m, e->string, e->valuedouble, f ? f->valuedouble : 0));
    }
    pippy_cost_kernel_sort(m);
    return PIPPY_OK;
}

pippy_status pippy_cost_read(pippy_cost_model *c, const char *path)
{
    char *text = NULL;
    size_t n = 0;
    pippy_status st = pippy_file_read_all(path, (size_t)16 << 20, &text, &n);
    if (st != PIPPY_OK)
        return pippy_error_prefix(st, "cost model");
    cJSON *root = cJSON_ParseWithLength(text, n);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return pippy_cost_bad(path, "not a JSON object");
    }
    pippy_cost_model m;
    pippy_cost_defaults(&m);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "pippyc_cost_model");
    if (!cJSON_IsNumber(fmt) || fmt->valuedouble != PIPPY_COST_FORMAT)
        st = pippy_cost_bad(path, "\"pippyc_cost_model\" must be 1");
    for (size_t i = 0; i < PIPPY_COST_NFIELDS && st == PIPPY_OK; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, pippy_cost_fields[i].key);
        char why[160];
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble <= 0 || v->valuedouble > 1e9) {
            snprintf(why, sizeof why, "\"%s\" must be a positive number (at most 1e9)", pippy_cost_fields[i].key);
            st = pippy_cost_bad(path, why);
        } else {
            *pippy_cost_field(&m, i) = v->valuedouble * pippy_cost_fields[i].scale;
        }
    }
    if (st == PIPPY_OK)
        st = pippy_cost_read_kernels(&m, cJSON_GetObjectItemCaseSensitive(root, "kernel_us"),
                                     cJSON_GetObjectItemCaseSensitive(root, "kernel_far_us"), path);
    m.calibrated = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "measured"));
    cJSON_Delete(root);
    if (st != PIPPY_OK) {
        pippy_cost_free(&m);
        return st;
    }
    snprintf(m.source, sizeof m.source, "%s", path);
    pippy_cost_free(c);
    *c = m;
    return PIPPY_OK;
}

/* Measure, write path, and read it back, so this compile uses exactly what later ones will read. */
static pippy_status pippy_cost_measure_into(pippy_cost_model *c, const char *path)
{
    pippy_cost_calibrate(c);
    PIPPY_TRY(pippy_cost_save(c, path));
    return pippy_cost_read(c, path);
}

/* Where the kernels this compile times go: path (a measured file) or nowhere (""). */
static void pippy_cost_keep_in(pippy_cost_model *c, const char *path)
{
    c->time_kernels = c->calibrated;
    snprintf(c->file, sizeof c->file, "%s", path && c->calibrated ? path : "");
}

static pippy_status pippy_cost_load_file(pippy_cost_model *c, const char *file, char *note, size_t n)
{
    if (access(file, F_OK) == 0) {
        PIPPY_TRY(pippy_cost_read(c, file));
        snprintf(note, n, "cost model: read from %s (--cost-model)", file);
    } else {
        pippy_status st = pippy_cost_measure_into(c, file);
        if (st != PIPPY_OK)
            return pippy_error_prefix(st, "--cost-model %s", file);
        snprintf(note, n, "cost model: measured on this machine and written to %s (--cost-model)", file);
    }
    pippy_cost_keep_in(c, file);
    return PIPPY_OK;
}

pippy_status pippy_cost_load(pippy_cost_model *c, const char *file, char *note, size_t n)
{
    if (file)
        return pippy_cost_load_file(c, file, note, n);
    char path[PATH_MAX];
    if (!pippy_cost_cache_path(path, sizeof path)) {
        pippy_cost_calibrate(c);
        snprintf(c->source, sizeof c->source, "measured by this compile (no cache: neither XDG_CACHE_HOME nor HOME set)");
        snprintf(note, n, "cost model: %s", c->source);
        pippy_cost_keep_in(c, NULL);
        return PIPPY_OK;
    }
    if (access(path, F_OK) == 0) {
        if (pippy_cost_read(c, path) == PIPPY_OK) {
            snprintf(note, n, "cost model: read from %s (this machine's cache)", path);
            pippy_cost_keep_in(c, path);
            return PIPPY_OK;
        }
        fprintf(stderr, "pippyc: warning: %s; measuring again\n", pippy_last_error());
    }
    if (pippy_cost_measure_into(c, path) == PIPPY_OK) {
        snprintf(note, n, "cost model: measured on this machine and cached in %s", path);
        pippy_cost_keep_in(c, path);
        return PIPPY_OK;
    }
    fprintf(stderr, "pippyc: warning: %s; the rates of this compile are not kept\n", pippy_last_error());
    pippy_cost_calibrate(c);
    snprintf(c->source, sizeof c->source, "measured by this compile (cache %s not writable)", path);
    snprintf(note, n, "cost model: %s", c->source);
    pippy_cost_keep_in(c, NULL);
    pippy_error_clear();
    return PIPPY_OK;
}

void pippy_cost_flush(pippy_cost_model *c, char *note, size_t n)
{
    if (!c->n_new || !c->file[0])
        return;
    pippy_cost_model disk;
    memset(&disk, 0, sizeof disk);
    pippy_status st = pippy_cost_read(&disk, c->file); /* what another compile may have added meanwhile */
    if (st != PIPPY_OK) { /* gone or spoilt since: write this compile's model */
        disk = *c;
        disk.kernels = NULL;
        disk.n_kernels = disk.cap_kernels = 0;
        st = PIPPY_OK;
    }
    for (int32_t i = 0; i < c->n_kernels && st == PIPPY_OK; i++) {
        const pippy_cost_kernel *k = &c->kernels[i], *d = pippy_cost_kernel_find(&disk, k->key);
        if (!d || (d->far_us <= 0 && k->far_us > 0)) /* new, or timed far by this compile only */
            st = pippy_cost_kernel_put(&disk, k->key, k->us, k->far_us);
    }
    if (st == PIPPY_OK)
        st = pippy_cost_save(&disk, c->file);
    pippy_cost_free(&disk);
    if (st != PIPPY_OK) {
        fprintf(stderr, "pippyc: warning: %s; the %d kernel timings of this compile are not kept\n",
                pippy_last_error(), c->n_new);
        pippy_error_clear();
        return;
    }
    size_t k = strlen(note);
    if (k < n)
        snprintf(note + k, n - k, "%s%d kernel shape%s timed and added to %s", k ? "; " : "cost model: ", c->n_new,
                 c->n_new == 1 ? "" : "s", c->file);
    c->n_new = 0;
}

/* The rates' price of d: flops at the matmul rate (a tenth of it for other than dense work) or
 * the bytes it touches at the memory bandwidth, whichever takes longer. */
static double pippy_cost_rates_s(const pippy_cost_model *c, const pippy_op_desc *d)
{
    double bytes = 0;
    for (int i = 0; i < d->n_in; i++)
        bytes += (double)pippy_tdesc_bytes(&d->in[i]);
    for (int i = 0; i < d->n_out; i++)
        bytes += (double)pippy_tdesc_bytes(&d->out[i]);
    double fl = pippy_op_flops(d);
    double rate = pippy_cost_is_dense(d) ? c->flops_per_s : c->flops_per_s / 10.0;
    double t_compute = fl / rate, t_mem = bytes / c->bytes_per_s;
    return c->op_overhead_s + (t_compute > t_mem ? t_compute : t_mem);
}

/* A kernel's price with a share far of its input bytes far: between its two times (its near
 * time alone when it was not timed far). */
static double pippy_cost_kernel_s(const pippy_cost_kernel *k, double far)
{
    far = far < 0 ? 0 : far > 1 ? 1 : far;
    return (k->far_us > 0 ? (1 - far) * k->us + far * k->far_us : k->us) * 1e-6;
}

double pippy_cost_node_s(pippy_cost_model *c, const pippy_op_desc *d, double far)
{
    if (pippy_op_is_view(d->domain, d->op, d->n_in, d->n_out) && d->in[0].dtype == d->out[0].dtype)
        return 0; /* the stage runs nothing: its output is its input's bytes */
    char key[PIPPY_COST_KEY_MAX];
    if (!pippy_cost_kernel_key(d, key, sizeof key))
        return pippy_cost_rates_s(c, d);
    const pippy_cost_kernel *k = pippy_cost_kernel_find(c, key);
    if (k && (k->far_us > 0 || !c->time_kernels))
        return pippy_cost_kernel_s(k, far);
    double far_s = 0, s = c->time_kernels ? pippy_cost_kernel_time_s(d, &far_s) : 0;
    if (s <= 0 || pippy_cost_kernel_put(c, key, pippy_cost_4g(s * 1e6), pippy_cost_4g(far_s * 1e6)) != PIPPY_OK) {
        pippy_error_clear();
        return k ? pippy_cost_kernel_s(k, far) : pippy_cost_rates_s(c, d);
    }
    c->n_new++;
    return pippy_cost_kernel_s(pippy_cost_kernel_find(c, key), far);
}

double pippy_cost_transfer_s(const pippy_cost_model *c, uint64_t bytes)
{
    return c->link_latency_s + (double)bytes / c->link_bytes_per_s;
}

double pippy_cost_optimizer_s(pippy_cost_model *c, const pippy_optim_config *o, uint64_t n)
{
    if (!n)
        return 0;
    char key[PIPPY_COST_KEY_MAX];
    snprintf(key, sizeof key, "pippy::OptimizerStep float[%llu] %s%s", (unsigned long long)n,
             pippy_optim_kind_name(o->kind), o->kind == PIPPY_OPTIM_SGD && o->momentum != 0 ? " momentum" : "");
    const pippy_cost_kernel *k = pippy_cost_kernel_find(c, key);
    if (k)
        return k->us * 1e-6;
    double s = c->time_kernels ? pippy_cost_optimizer_time_s(o, (size_t)n) : 0;
    if (s > 0 && pippy_cost_kernel_put(c, key, pippy_cost_4g(s * 1e6), pippy_cost_4g(s * 1e6)) == PIPPY_OK) {
        c->n_new++;
        return pippy_cost_kernel_find(c, key)->us * 1e-6;
    }
    pippy_error_clear();
    /* each float: the gradient read twice and cleared, the parameter read and written, and each
     * state float read and written */
    double per = 5.0 + 2.0 * (double)pippy_optim_state_floats(o, 1);
    return c->op_overhead_s + (double)n * sizeof(float) * per / c->bytes_per_s;
}
