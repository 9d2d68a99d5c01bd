/* profile_stage.c — per-kernel time of one generated stage program, without the runtime.
 *
 * Replaces the runtime's pippy_stage_main: maps OUT/stageK.weights, allocates the arena, creates
 * every kernel (stage_init), then runs the stage's forward pass on one microbatch many times,
 * first as generated (whole-forward time) and then with every kernel's run function wrapped by a
 * timer (per-kernel time, by kernel index K[i]; nodes without a kernel, such as views, have none).
 * bench/profile.py builds it together with a stage's C file and names the kernels from that file:
 *
 *   cc -std=gnu11 -O2 -Icommon -Ibackend -Iruntime OUT/stage0.c bench/profile_stage.c \
 *      -o prof -LBUILD -lpippy_backend -lpippy_common -ldnnl -lm -lpthread
 *   prof OUT/stage0.weights [reps] [input.npy ...]
 *
 * Inputs: zeros unless .npy files are given (the first microbatch's bytes are used; npy format
 * 1.0/2.0, C order, the stage's dtype). Prints "total_us <median>" (plain forward, µs),
 * "total_instr_us <median>" and one "k <index> <median µs>" line per kernel. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "stage.h"
#include "weights_format.h"

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + 1e-3 * (double)t.tv_nsec;
}

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

static pippy_kernel **g_K;
static pippy_kernel_run_fn *g_orig;
static double *g_acc;
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
    double t0 = now_us();
    g_orig[i](k, in, out);
    g_acc[i] += now_us() - t0;
    g_cur = i + 1;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
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

int pippy_stage_main(int argc, char **argv, const pippy_stage_program *p)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s STAGE.weights [reps] [input.npy ...]\n", argv[0]);
        return 2;
    }
    int reps = argc > 2 ? atoi(argv[2]) : 20;
    if (reps < 3)
        reps = 3;
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        die(argv[1]);
    const uint8_t *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
        die("mmap");
    const pippy_weights_header *h = (const void *)map;
    if (memcmp(h->magic, PIPPY_WEIGHTS_MAGIC, 8) != 0 || h->hash != p->hash) {
        fprintf(stderr, "%s: not this stage's weights (magic or hash differ)\n", argv[1]);
        return 1;
    }
    const uint8_t *W = map + h->data_offset;

    uint8_t *A = aligned_alloc(4096, (p->arena_bytes + 4095) & ~(uint64_t)4095);
    if (!A)
        die("arena");
    memset(A, 0, p->arena_bytes);
    const void *in[PIPPY_MAX_IO];
    void *out[PIPPY_MAX_IO];
    for (int i = 0; i < p->n_inputs; i++) {
        size_t b = pippy_tdesc_bytes(&p->inputs[i].t);
        void *x = aligned_alloc(64, (b + 63) & ~(size_t)63);
        memset(x, 0, b);
        if (3 + i < argc)
            read_npy(argv[3 + i], x, b);
        in[i] = x;
    }
    for (int i = 0; i < p->n_outputs; i++) {
        size_t b = pippy_tdesc_bytes(&p->outputs[i].t);
        out[i] = aligned_alloc(64, (b + 63) & ~(size_t)63);
        memset(out[i], 0, b);
    }

    int nk = p->n_kernels;
    pippy_kernel **K = calloc((size_t)nk + 1, sizeof *K);
    double t0 = now_us();
    pippy_backend *B = NULL;
    pippy_status s = pippy_backend_open("cpu", NULL, &B);
    if (s == PIPPY_OK)
        s = p->init(B, K, W);
    if (s != PIPPY_OK) {
        fprintf(stderr, "init failed: %s\n", pippy_last_error());
        return 1;
    }
    printf("init_us %.1f\n", now_us() - t0);

    /* warm-up: fault in weights and arena, first oneDNN calls */
    for (int r = 0; r < 2; r++)
        p->forward(K, A, W, in, out);
    double *tot = malloc(sizeof(double) * (size_t)reps);
    for (int r = 0; r < reps; r++) {
        t0 = now_us();
        p->forward(K, A, W, in, out);
        tot[r] = now_us() - t0;
    }
    printf("total_us %.2f\n", median(tot, reps));

    g_K = K;
    g_nk = nk;
    g_orig = calloc((size_t)nk, sizeof *g_orig);
    g_acc = calloc((size_t)nk, sizeof *g_acc);
    double *per = malloc(sizeof(double) * (size_t)nk * (size_t)reps);
    for (int i = 0; i < nk; i++) { /* K[i] is NULL for nodes with no kernel (views) */
        if (!K[i])
            continue;
        g_orig[i] = K[i]->run;
        K[i]->run = timed_run;
    }
    p->forward(K, A, W, in, out);
    for (int r = 0; r < reps; r++) {
        memset(g_acc, 0, sizeof(double) * (size_t)nk);
        g_cur = 0;
        t0 = now_us();
        p->forward(K, A, W, in, out);
        tot[r] = now_us() - t0;
        for (int i = 0; i < nk; i++)
            per[(size_t)i * (size_t)reps + (size_t)r] = g_acc[i];
    }
    printf("total_instr_us %.2f\n", median(tot, reps));
    for (int i = 0; i < nk; i++)
        if (K[i])
            printf("k %d %.3f\n", i, median(per + (size_t)i * (size_t)reps, reps));
    for (int i = 0; i < nk; i++)
        if (K[i])
            K[i]->run = g_orig[i];
    return 0;
}
