/* bench_transport.c — the runtime's UCX transport between two processes on this host:
 * ping-pong latency of 8 B messages and one-way bandwidth of 1 MB .. 256 MB messages, beside
 * single-thread memcpy of the same sizes. Not built by `make`; build and run it with:
 *
 *   make && cc -std=gnu11 -O2 -Icommon -Iruntime bench/bench_transport.c -o build/bench_transport \
 *       -Lbuild -lpippyrt -lpippy_common $(pkg-config --cflags --libs ucx) -lnettle -lpthread -lm && \
 *       build/bench_transport
 *
 * UCX_TLS picks the transports as usual (e.g. UCX_TLS=tcp for TCP loopback).
 * Options: --quick (fewer iterations). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "transport.h"

#define MAX_SIZE (256u << 20)
#define N_SIZES 5
static const size_t sizes[N_SIZES] = {1u << 20, 4u << 20, 16u << 20, 64u << 20, 256u << 20};

typedef struct {
    double lat_us;
    double gbps[N_SIZES];
    int ok;
    char err[512];
} results;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    socklen_t l = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &l) < 0) {
        perror("free port");
        exit(1);
    }
    close(fd);
    return ntohs(sa.sin_port);
}

static int iters_for(size_t size, int quick)
{
    size_t total = (quick ? 1u : 4u) << 30; /* bytes moved per size */
    int n = (int)(total / size);
    return n < 3 ? 3 : n;
}

#define CHECK(expr)                                                                   \
    do {                                                                              \
        if ((expr) != PIPPY_OK) {                                                     \
            snprintf(res->err, sizeof res->err, "rank %d: %s", rank, pippy_last_error()); \
            goto out;                                                                 \
        }                                                                             \
    } while (0)

static void run_rank(int rank, const char *const *hosts, int quick, results *res)
{
    pippy_transport *t = NULL;
    pippy_job_key key;
    pippy_job_key_from_secret("bench_transport secret", 22, "bench", &key);
    pippy_transport_config c = {.rank = rank, .nranks = 2, .hosts = hosts, .model_hash = 1, .key = &key,
                                .timeout_s = 30};
    int peer = 1 - rank;
    char small[8] = {0};
    unsigned char *buf = malloc(MAX_SIZE);
    pippy_request *r;
    if (!buf) {
        snprintf(res->err, sizeof res->err, "out of memory");
        return;
    }
    memset(buf, rank + 1, MAX_SIZE); /* fault the pages in */
    CHECK(pippy_transport_open(&c, &peer, 1, &t));

    /* Latency: ping-pong, half the round trip. */
    int n_lat = quick ? 2000 : 20000, warm = 1000;
    double t0 = 0;
    for (int i = 0; i < n_lat + warm; i++) {
        if (i == warm)
            t0 = now_s();
        if (rank == 0) {
            CHECK(pippy_transport_isend(t, 1, 1, small, 8, &r));
            CHECK(pippy_transport_wait(t, r));
            CHECK(pippy_transport_irecv(t, 1, 2, small, 8, &r));
            CHECK(pippy_transport_wait(t, r));
        } else {
            CHECK(pippy_transport_irecv(t, 0, 1, small, 8, &r));
            CHECK(pippy_transport_wait(t, r));
            CHECK(pippy_transport_isend(t, 0, 2, small, 8, &r));
            CHECK(pippy_transport_wait(t, r));
        }
    }
    res->lat_us = (now_s() - t0) / n_lat / 2 * 1e6;

    /* Bandwidth: rank 0 streams messages, rank 1 acknowledges the last one. */
    for (int k = 0; k < N_SIZES; k++) {
        size_t sz = sizes[k];
        int n = iters_for(sz, quick);
        /* one warm-up message registers the buffer */
        if (rank == 0) {
            CHECK(pippy_transport_isend(t, 1, 10, buf, sz, &r));
            CHECK(pippy_transport_wait(t, r));
            CHECK(pippy_transport_irecv(t, 1, 11, small, 8, &r));
            CHECK(pippy_transport_wait(t, r));
        } else {
            CHECK(pippy_transport_irecv(t, 0, 10, buf, sz, &r));
            CHECK(pippy_transport_wait(t, r));
            CHECK(pippy_transport_isend(t, 0, 11, small, 8, &r));
            CHECK(pippy_transport_wait(t, r));
        }
        t0 = now_s();
        for (int i = 0; i < n; i++) {
            if (rank == 0)
                CHECK(pippy_transport_isend(t, 1, 100 + (uint64_t)i, buf, sz, &r));
            else
                CHECK(pippy_transport_irecv(t, 0, 100 + (uint64_t)i, buf, sz, &r));
            CHECK(pippy_transport_wait(t, r));
        }
        if (rank == 0) {
            CHECK(pippy_transport_irecv(t, 1, 12, small, 8, &r));
            CHECK(pippy_transport_wait(t, r));
        } else {
            CHECK(pippy_transport_isend(t, 0, 12, small, 8, &r));
            CHECK(pippy_transport_wait(t, r));
        }
        res->gbps[k] = (double)sz * n / (now_s() - t0) / 1e9;
    }
    res->ok = 1;
out:
    pippy_transport_close(t);
    free(buf);
}

static double memcpy_gbps(size_t sz, int quick)
{
    unsigned char *a = malloc(sz), *b = malloc(sz);
    if (!a || !b) {
        free(a);
        free(b);
        return 0;
    }
    memset(a, 1, sz);
    memset(b, 2, sz);
    int n = iters_for(sz, quick);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        a[i % sz] = (unsigned char)i;
        memcpy(b, a, sz);
    }
    double dt = now_s() - t0;
    volatile unsigned char sink = b[sz / 2];
    (void)sink;
    free(a);
    free(b);
    return (double)sz * n / dt / 1e9;
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    static char hostbuf[2][64];
    const char *hosts[2];
    for (int r = 0; r < 2; r++) {
        snprintf(hostbuf[r], sizeof hostbuf[r], "127.0.0.1:%d", free_port());
        hosts[r] = hostbuf[r];
    }
    results *res = mmap(NULL, 2 * sizeof *res, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                        -1, 0);
    if (res == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memset(res, 0, 2 * sizeof *res);
    pid_t pids[2];
    for (int r = 0; r < 2; r++) {
        fflush(stdout);
        pids[r] = fork();
        if (pids[r] == 0) {
            run_rank(r, hosts, quick, &res[r]);
            _exit(res[r].ok ? 0 : 1);
        }
    }
    int failed = 0;
    for (int r = 0; r < 2; r++) {
        int ws;
        waitpid(pids[r], &ws, 0);
        if (!res[r].ok) {
            fprintf(stderr, "bench_transport: rank %d failed: %s\n", r,
                    res[r].err[0] ? res[r].err : "crashed");
            failed = 1;
        }
    }
    if (failed)
        return 1;
    const char *tls = getenv("UCX_TLS");
    printf("pippy transport, 2 processes on 127.0.0.1, UCX_TLS=%s\n", tls ? tls : "(default)");
    printf("latency 8 B (half round trip): %.2f us\n\n", res[0].lat_us);
    printf("%10s  %16s  %16s  %6s\n", "size", "transport GB/s", "memcpy GB/s", "ratio");
    for (int k = 0; k < N_SIZES; k++) {
        double m = memcpy_gbps(sizes[k], quick);
        printf("%7zu MB  %16.2f  %16.2f  %6.2f\n", sizes[k] >> 20, res[1].gbps[k], m,
               m > 0 ? res[1].gbps[k] / m : 0);
    }
    return 0;
}
