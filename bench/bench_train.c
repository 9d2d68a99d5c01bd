/* bench_train.c — the training runtime's leaf modules on this host: the optimizer step
 * (runtime/optim: SGD, SGD with momentum, AdamW over 64M parameters, in GB/s of memory traffic
 * beside single-thread memcpy) and the ring all-reduce (runtime/collective: 4 MB and 64 MB of
 * floats between 2 local ranks, in GB/s of buffer per all-reduce, i.e. bytes / time). Each
 * figure is the best of several rounds (the machine may be shared).
 * Not built by `make`; build and run it with:
 *
 *   make && cc -std=gnu11 -O2 -Icommon -Iruntime bench/bench_train.c -o build/bench_train \
 *       -Lbuild -lpippyrt -lpippy_common $(pkg-config --cflags --libs ucx) -lcjson -lz -lm && build/bench_train
 *
 * Options: --quick (fewer iterations). */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "collective.h"
#include "optim.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- optimizer ---- */

static void bench_optim(int quick)
{
    size_t n = (size_t)64 << 20;
    float *p = malloc(n * 4), *g = malloc(n * 4), *s = malloc(2 * n * 4);
    if (!p || !g || !s) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        p[i] = (float)(i % 1000) * 1e-3f;
        g[i] = (float)(i % 77) * 1e-4f - 3e-3f;
    }
    memset(s, 0, 2 * n * 4);
    int reps = quick ? 3 : 10;
    double t0, dt = 1e30;
    for (int r = 0; r < reps; r++) {
        t0 = now_s();
        memcpy(s, p, n * 4);
        dt = fmin(dt, now_s() - t0);
    }
    printf("memcpy %zu MB: %.2f GB/s (read + write)\n", n * 4 >> 20, 2.0 * n * 4 / dt / 1e9);
    struct {
        const char *name;
        pippy_optim_kind kind;
        double momentum;
        int bytes_per_elem; /* memory traffic of one step per parameter */
    } cases[] = {{"sgd", PIPPY_OPTIM_SGD, 0, 12}, {"sgd momentum", PIPPY_OPTIM_SGD, 0.9, 20},
                 {"adamw", PIPPY_OPTIM_ADAMW, 0, 28}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        pippy_optim_config cfg;
        pippy_optim_defaults(&cfg, cases[c].kind);
        cfg.momentum = cases[c].momentum;
        pippy_optim_step(&cfg, 1, 1e-3, 1.0f, p, g, s, n); /* warm-up */
        dt = 1e30;
        for (int r = 0; r < reps; r++) {
            t0 = now_s();
            pippy_optim_step(&cfg, r + 2, 1e-3, 0.5f, p, g, s, n);
            dt = fmin(dt, now_s() - t0);
        }
        printf("optimizer step %-12s %zuM params: %6.1f ms, %.2f GB/s (%d B per parameter), %.0f M params/s\n",
               cases[c].name, n >> 20, dt * 1e3, (double)n * cases[c].bytes_per_elem / dt / 1e9,
               cases[c].bytes_per_elem, n / dt / 1e6);
    }
    double ss = 0;
    dt = 1e30;
    for (int r = 0; r < reps; r++) {
        t0 = now_s();
        ss += pippy_optim_sumsq(g, n);
        dt = fmin(dt, now_s() - t0);
    }
    printf("gradient sum of squares %zuM: %.2f GB/s (%g)\n", n >> 20, n * 4.0 / dt / 1e9, ss);
    free(p);
    free(g);
    free(s);
}

/* ---- all-reduce between 2 local ranks ---- */

static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    socklen_t l = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || getsockname(fd, (struct sockaddr *)&sa, &l) < 0) {
        perror("free port");
        exit(1);
    }
    close(fd);
    return ntohs(sa.sin_port);
}

static const size_t ar_bytes[] = {(size_t)4 << 20, (size_t)64 << 20};
#define N_AR (sizeof ar_bytes / sizeof ar_bytes[0])

typedef struct {
    double gbps[N_AR], us[N_AR];
    int ok;
    char err[512];
} ar_result;

static void ar_rank(int rank, const char *const *hosts, int quick, ar_result *res)
{
    pippy_transport *t = NULL;
    pippy_transport_config c = {.rank = rank, .nranks = 2, .hosts = hosts, .model_hash = 1, .job_token = 2,
                                .timeout_s = 30};
    int peer = 1 - rank, ranks[2] = {0, 1};
    pippy_group g = {ranks, 2, rank};
    size_t maxn = ar_bytes[N_AR - 1] / 4;
    float *buf = malloc(maxn * 4), *sc = malloc(pippy_allreduce_scratch_elems(2, maxn) * 4);
    pippy_status st = buf && sc ? pippy_transport_open(&c, &peer, 1, &t) : PIPPY_ERR_NOMEM;
    for (size_t k = 0; st == PIPPY_OK && k < N_AR; k++) {
        size_t n = ar_bytes[k] / 4;
        for (size_t i = 0; i < n; i++)
            buf[i] = 1.0f;
        int iters = (int)(((size_t)(quick ? 1 : 4) << 30) / ar_bytes[k] / 8);
        st = pippy_allreduce_f32(t, &g, buf, n, PIPPY_REDUCE_SUM, 0, sc); /* warm-up */
        double dt = 1e30;
        for (int round = 0; round < 8; round++) { /* best of 8 rounds */
            double t0 = now_s();
            for (int i = 0; st == PIPPY_OK && i < iters; i++)
                st = pippy_allreduce_f32(t, &g, buf, n, PIPPY_REDUCE_SUM, 0, sc);
            dt = fmin(dt, (now_s() - t0) / iters);
        }
        res->gbps[k] = ar_bytes[k] / dt / 1e9;
        res->us[k] = dt * 1e6;
    }
    if (st != PIPPY_OK)
        snprintf(res->err, sizeof res->err, "rank %d: %s", rank, pippy_last_error());
    else
        res->ok = 1;
    pippy_transport_close(t);
    free(buf);
    free(sc);
}

static int bench_allreduce(int quick)
{
    char h[2][64];
    const char *hosts[2] = {h[0], h[1]};
    for (int r = 0; r < 2; r++)
        snprintf(h[r], sizeof h[r], "127.0.0.1:%d", free_port());
    ar_result *res = mmap(NULL, 2 * sizeof *res, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(res, 0, 2 * sizeof *res);
    pid_t pid[2];
    for (int r = 0; r < 2; r++) {
        fflush(stdout);
        pid[r] = fork();
        if (pid[r] == 0) {
            ar_rank(r, hosts, quick, &res[r]);
            _exit(0);
        }
    }
    for (int r = 0; r < 2; r++)
        waitpid(pid[r], NULL, 0);
    for (int r = 0; r < 2; r++)
        if (!res[r].ok) {
            fprintf(stderr, "all-reduce failed: %s\n", res[r].err);
            return 1;
        }
    for (size_t k = 0; k < N_AR; k++)
        printf("allreduce 2 ranks %3zu MB: %8.0f us, %.2f GB/s (buffer bytes / time)\n", ar_bytes[k] >> 20,
               res[0].us[k], res[0].gbps[k]);
    return 0;
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    bench_optim(quick);
    return bench_allreduce(quick);
}
