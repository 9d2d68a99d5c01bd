/* profile_stage.c — where the time of one generated stage program goes, without the runtime.
 *
 * Replaces the runtime's pippy_stage_main: maps OUT/stageK.weights (a private copy: training
 * writes it), allocates the arena, one stash slot and the gradient buffer, creates every kernel
 * (stage_init), then runs the stage's phases on one microbatch many times: first as generated
 * (each phase's time), then with every kernel's run function wrapped by a timer (per-kernel
 * time, by kernel index K[i]; nodes without a kernel, such as views, have none). A training
 * program runs F, B, W in turn, then the runtime's optimizer step (runtime/optim.c) over its
 * trained parameters and the clearing of the gradients, as pippy_train_step does (on copies, so
 * that every repetition computes on the same weights). Times are wall clock (CLOCK_MONOTONIC)
 * and this thread's CPU time (CLOCK_THREAD_CPUTIME_ID: less disturbed on a shared machine;
 * oneDNN runs on the calling thread at 1 thread). bench/profile.py builds it together with a
 * stage's C file and names the kernels from that file:
 *
 *   cc -std=gnu11 -O2 -Icommon -Ibackend -Iruntime OUT/stage0.c bench/profile_stage.c \
 *      -o prof -LBUILD -lpippyrt -lpippy_backend -lpippy_common -ldnnl -lcjson -lm -lpthread
 *   prof OUT/stage0.weights [-r reps] [-o sgd|adamw] [-t threads] [input.npy ...]
 *
 * Inputs: zeros unless .npy files are given, in the program's input order ("-": zeros; the first
 * microbatch's bytes are used; npy format 1.0/2.0, C order, the stage's dtype). -o: the
 * optimizer whose step is timed (default sgd; its cost depends on the kind only). Prints
 *   "init_us X", "phase NAME wall_us X cpu_us Y" (NAME: F, B, W, opt, zero; medians of the plain
 *   runs), "total_instr_us X" and "k INDEX wall_us cpu_us" per kernel (medians). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "optim.h"
#include "stage.h"
#include "weights_format.h"

static double clock_us(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec * 1e6 + 1e-3 * (double)t.tv_nsec;
}

static double now_us(void) { return clock_us(CLOCK_MONOTONIC); }
static double cpu_us(void) { return clock_us(CLOCK_THREAD_CPUTIME_ID); }

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void *zalloc(size_t bytes)
{
    void *p = aligned_alloc(4096, (bytes + 4095) & ~(size_t)4095);
    if (!p)
        die("aligned_alloc");
    memset(p, 0, bytes);
    return p;
}

/* ---- what the generated code calls besides the kernels (the runtime's, here inert) ---- */

int pippy_stage_dumping = 0;

void pippy_stage_progress(void) {}

void pippy_stage_after(int k, uint8_t *A, uint8_t *S, uint8_t *W, uint8_t *G, const void *const *in,
                       void *const *out)
{
    (void)k, (void)A, (void)S, (void)W, (void)G, (void)in, (void)out;
}

/* ---- the per-kernel timer ---- */

static pippy_kernel **g_K;
static pippy_kernel_run_fn *g_orig;
static double *g_wall, *g_cpu;
static int g_nk, g_cur;

static void timed_run(pippy_kernel *k, const void *const *in, void *const *out)
{
    int i = g_cur;
    if (i >= g_nk || g_K[i] != k)
        for (i = 0; i < g_nk && g_K[i] != k; i++)
            ;
    if (i == g_nk) {
        fprintf(stderr, "profile_stage: unknown kernel\n");
        exit(1);
    }
    double w0 = now_us(), c0 = cpu_us();
    g_orig[i](k, in, out);
    double c1 = cpu_us(), w1 = now_us();
    g_wall[i] += w1 - w0;
    g_cpu[i] += c1 - c0;
    g_cur = i + 1;
}

static void read_npy(const char *path, void *dst, size_t bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path);
    unsigned char h[12];
    if (fread(h, 1, 10, f) != 10 || memcmp(h, "\x93NUMPY", 6) != 0) {
        fprintf(stderr, "%s: not a .npy file\n", path);
        exit(1);
    }
    size_t hl;
    if (h[6] == 1) {
        hl = (size_t)h[8] | (size_t)h[9] << 8;
    } else {
        if (fread(h + 10, 1, 2, f) != 2)
            die(path);
        hl = (size_t)h[8] | (size_t)h[9] << 8 | (size_t)h[10] << 16 | (size_t)h[11] << 24;
    }
    if (fseek(f, (long)hl, SEEK_CUR) != 0 || fread(dst, 1, bytes, f) != bytes) {
        fprintf(stderr, "%s: fewer than %zu data bytes\n", path, bytes);
        exit(1);
    }
    fclose(f);
}

/* ---- one stage's buffers and its phases ---- */

typedef struct {
    const pippy_stage_program *p;
    pippy_kernel **K;
    uint8_t *A, *S, *W, *G;
    const void *in[PIPPY_MAX_IO];
    void *out[PIPPY_MAX_IO];
    pippy_optim_config opt;
    float *params, *state; /* copies the optimizer step runs on */
    size_t n_params;
    pippy_backend *B;
} prof_stage;

enum { PH_F, PH_B, PH_W, PH_OPT, PH_ZERO, N_PH };
static const char *const ph_name[N_PH] = {"F", "B", "W", "opt", "zero"};

static void run_phase(prof_stage *s, int ph, int64_t step)
{
    const pippy_stage_program *p = s->p;
    switch (ph) {
    case PH_F:
        p->forward(s->K, s->A, s->S, s->W, s->G, s->in, s->out);
        break;
    case PH_B:
        p->backward(s->K, s->A, s->S, s->W, s->G, s->in, s->out);
        break;
    case PH_W:
        p->weight(s->K, s->A, s->S, s->W, s->G, s->in, s->out);
        break;
    case PH_OPT:
        pippy_optim_step(&s->opt, step, s->opt.lr, 1.0f, s->params, (const float *)s->G, s->state, s->n_params);
        break;
    default:
        memset(s->G, 0, p->trainable_bytes);
    }
}

static int n_phases(const prof_stage *s) { return s->p->training ? N_PH : 1; }

static void load_weights(prof_stage *s, const char *path)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        die(path);
    uint8_t *map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
        die("mmap");
    close(fd);
    const pippy_weights_header *h = (const void *)map;
    if (memcmp(h->magic, PIPPY_WEIGHTS_MAGIC, 8) != 0 || h->hash != s->p->hash) {
        fprintf(stderr, "%s: not this stage's weights (magic or hash differ)\n", path);
        exit(1);
    }
    s->W = map + h->data_offset;
}

static void setup(prof_stage *s, int argc, char **argv, int first_input)
{
    const pippy_stage_program *p = s->p;
    s->A = zalloc(p->arena_bytes);
    s->S = zalloc(p->stash_bytes ? p->stash_bytes : 64);
    s->G = zalloc(p->training ? p->trainable_bytes : 64);
    for (int i = 0; i < p->n_inputs; i++) {
        size_t b = pippy_tdesc_bytes(&p->inputs[i].t);
        void *x = zalloc(b);
        if (first_input + i < argc && strcmp(argv[first_input + i], "-") != 0)
            read_npy(argv[first_input + i], x, b);
        s->in[i] = x;
    }
    for (int i = 0; i < p->n_outputs; i++)
        s->out[i] = zalloc(pippy_tdesc_bytes(&p->outputs[i].t));
    s->n_params = p->training ? p->trainable_bytes / sizeof(float) : 0;
    s->params = zalloc(s->n_params * sizeof(float) + 64);
    memcpy(s->params, s->W, s->n_params * sizeof(float));
    s->state = zalloc(pippy_optim_state_floats(&s->opt, s->n_params) * sizeof(float) + 64);
    s->K = calloc((size_t)p->n_kernels + 1, sizeof *s->K);
    if (!s->K)
        die("calloc");
    double t0 = now_us();
    pippy_status st = pippy_backend_open("cpu", NULL, &s->B);
    if (st == PIPPY_OK)
        st = p->init(s->B, s->K, s->W);
    if (st != PIPPY_OK) {
        fprintf(stderr, "init failed: %s\n", pippy_last_error());
        exit(1);
    }
    printf("init_us %.1f\n", now_us() - t0);
}

/* reps x every phase, plain: per-phase medians of wall and CPU time. */
static void time_phases(prof_stage *s, int reps)
{
    int np = n_phases(s);
    double *w = malloc(sizeof(double) * (size_t)(np * reps)), *c = malloc(sizeof(double) * (size_t)(np * reps));
    if (!w || !c)
        die("malloc");
    for (int r = 0; r < reps; r++)
        for (int ph = 0; ph < np; ph++) {
            double w0 = now_us(), c0 = cpu_us();
            run_phase(s, ph, 3 + r);
            c[ph * reps + r] = cpu_us() - c0;
            w[ph * reps + r] = now_us() - w0;
        }
    for (int ph = 0; ph < np; ph++)
        printf("phase %s wall_us %.2f cpu_us %.2f\n", ph_name[ph], median(w + ph * reps, reps),
               median(c + ph * reps, reps));
    if (np == 1) /* what the inference profile printed before */
        printf("total_us %.2f\n", median(w, reps));
    free(w), free(c);
}

/* reps x every phase with each kernel's run wrapped: per-kernel medians. */
static void time_kernels(prof_stage *s, int reps)
{
    int nk = s->p->n_kernels, np = n_phases(s);
    g_K = s->K;
    g_nk = nk;
    g_orig = calloc((size_t)nk + 1, sizeof *g_orig);
    g_wall = calloc((size_t)nk + 1, sizeof *g_wall);
    g_cpu = calloc((size_t)nk + 1, sizeof *g_cpu);
    double *pw = malloc(sizeof(double) * ((size_t)nk * (size_t)reps + 1));
    double *pc = malloc(sizeof(double) * ((size_t)nk * (size_t)reps + 1));
    double *tot = malloc(sizeof(double) * (size_t)reps);
    if (!g_orig || !g_wall || !g_cpu || !pw || !pc || !tot)
        die("malloc");
    for (int i = 0; i < nk; i++) { /* K[i] is NULL for nodes with no kernel (views) */
        if (!s->K[i])
            continue;
        g_orig[i] = s->K[i]->run;
        s->K[i]->run = timed_run;
    }
    for (int r = 0; r < reps; r++) {
        memset(g_wall, 0, sizeof(double) * (size_t)nk);
        memset(g_cpu, 0, sizeof(double) * (size_t)nk);
        g_cur = 0;
        double t0 = now_us();
        for (int ph = 0; ph < np; ph++)
            run_phase(s, ph, 3 + reps + r);
        tot[r] = now_us() - t0;
        for (int i = 0; i < nk; i++) {
            pw[(size_t)i * (size_t)reps + (size_t)r] = g_wall[i];
            pc[(size_t)i * (size_t)reps + (size_t)r] = g_cpu[i];
        }
    }
    printf("total_instr_us %.2f\n", median(tot, reps));
    for (int i = 0; i < nk; i++)
        if (s->K[i])
            printf("k %d %.3f %.3f\n", i, median(pw + (size_t)i * (size_t)reps, reps),
                   median(pc + (size_t)i * (size_t)reps, reps));
    for (int i = 0; i < nk; i++)
        if (s->K[i])
            s->K[i]->run = g_orig[i];
    free(pw), free(pc), free(tot);
}

/* Everything setup made (the sanitizer build of make test checks for leaks). */
static void teardown(prof_stage *s)
{
    for (int k = 0; k < s->p->n_kernels; k++)
        pippy_kernel_destroy(s->K[k]);
    for (int i = 0; i < s->p->n_inputs; i++)
        free((void *)s->in[i]);
    for (int i = 0; i < s->p->n_outputs; i++)
        free(s->out[i]);
    free(s->K), free(s->A), free(s->S), free(s->G), free(s->params), free(s->state);
    pippy_backend_close(s->B);
}

int pippy_stage_main(int argc, char **argv, const pippy_stage_program *p)
{
    const char *usage = "usage: %s STAGE.weights [-r reps] [-o sgd|adamw] [-t threads] [input.npy ...]\n";
    if (argc < 2) {
        fprintf(stderr, usage, argv[0]);
        return 2;
    }
    prof_stage s = {.p = p};
    int reps = 20, threads = 1, a = 2;
    pippy_optim_defaults(&s.opt, PIPPY_OPTIM_SGD);
    for (; a + 1 < argc && argv[a][0] == '-' && argv[a][1] && !argv[a][2]; a += 2) {
        if (argv[a][1] == 'r')
            reps = atoi(argv[a + 1]);
        else if (argv[a][1] == 't')
            threads = atoi(argv[a + 1]);
        else if (argv[a][1] == 'o' && !strcmp(argv[a + 1], "adamw"))
            pippy_optim_defaults(&s.opt, PIPPY_OPTIM_ADAMW);
        else if (!(argv[a][1] == 'o' && !strcmp(argv[a + 1], "sgd"))) {
            fprintf(stderr, usage, argv[0]);
            return 2;
        }
    }
    if (reps < 3)
        reps = 3;
    pippy_backend_set_threads(threads < 1 ? 1 : threads);
    load_weights(&s, argv[1]);
    setup(&s, argc, argv, a);
    for (int r = 0; r < 2; r++) /* warm-up: fault in the buffers, first oneDNN calls */
        for (int ph = 0; ph < n_phases(&s); ph++)
            run_phase(&s, ph, 1 + r);
    time_phases(&s, reps);
    time_kernels(&s, reps);
    teardown(&s);
    return 0;
}
