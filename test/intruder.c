/* intruder.c — a hostile process for the network tests (test/e2e/test_security.py): it does to a
 * running pipeline what an attacker who can reach its ports could do. Built as BUILD/test_intruder.
 *
 *   test_intruder raw HOST PORT N            N random bytes, then reads what comes back
 *   test_intruder zeros HOST PORT            16 zero bytes (this crashed UCX's listener)
 *   test_intruder half HOST PORT SECONDS     half of a well-formed greeting, then silence
 *   test_intruder idle HOST PORT N SECONDS   N connections that never say anything
 *   test_intruder wrong HOST PORT RANK TO NRANKS HASH SECRET DUMP
 *                                            the whole handshake as rank RANK with another secret;
 *                                            every byte the rank sends back goes to DUMP
 *   test_intruder ucxsock HOST PORT SECONDS  a UCX client connecting to the port by socket address
 *   test_intruder ucxaddr FILE SECONDS       a UCX endpoint to the worker address in FILE (a rank
 *                                            wrote it, PIPPY_TEST_WORKER_ADDRESS_FILE), sending
 *                                            messages with every tag rank 0..3 would use unmasked
 * Prints one line of what happened; exit 0 unless it could not even try. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ucp/api/ucp.h>

#include "transport.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int tcp(const char *host, const char *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    inet_pton(AF_INET, host, &a.sin_addr);
    for (double until = now_s() + 10; now_s() < until; usleep(20000)) { /* the rank may not listen yet */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
            return fd;
        if (fd >= 0)
            close(fd);
    }
    fprintf(stderr, "intruder: cannot connect to %s:%s\n", host, port);
    exit(2);
}

/* Read for up to seconds; returns the bytes read (appended to dump when given). */
static size_t drain(int fd, double seconds, FILE *dump)
{
    size_t total = 0;
    char buf[4096];
    for (double until = now_s() + seconds; now_s() < until;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 50) <= 0)
            continue;
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k <= 0)
            break;
        total += (size_t)k;
        if (dump)
            fwrite(buf, 1, (size_t)k, dump);
    }
    return total;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A greeting as transport.c's handshake.c writes it. */
static void hello(uint8_t *b, int rank, int to, int nranks, uint64_t hash)
{
    memset(b, 0, 64);
    put32(b, 0x41595050u);
    put32(b + 4, PIPPY_TRANSPORT_PROTOCOL_VERSION);
    put32(b + 8, (uint32_t)rank);
    put32(b + 12, (uint32_t)to);
    put32(b + 16, (uint32_t)nranks);
    for (int i = 0; i < 8; i++)
        b[24 + i] = (uint8_t)(hash >> (8 * i));
    pippy_random_bytes(b + 32, 32);
}

static int wrong_secret(char **a)
{
    int fd = tcp(a[2], a[3]);
    FILE *dump = fopen(a[9], "wb");
    uint8_t hc[64], rx[96];
    hello(hc, atoi(a[4]), atoi(a[5]), atoi(a[6]), strtoull(a[7], NULL, 16));
    send(fd, hc, sizeof hc, MSG_NOSIGNAL);
    size_t got = 0;
    for (double until = now_s() + 10; got < sizeof rx && now_s() < until;) {
        ssize_t k = recv(fd, rx + got, sizeof rx - got, 0);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    if (dump)
        fwrite(rx, 1, got, dump);
    pippy_job_key key;
    pippy_job_key_from_secret(a[8], strlen(a[8]), "intruder", &key);
    uint8_t mac[32], len4[4] = {8, 0, 0, 0}, fake[8] = "addr....";
    const void *parts[2] = {hc, rx};
    size_t lens[2] = {64, 64};
    pippy_mac(&key, "pippy hs 2 server", parts, lens, 2, mac);
    int server_ok = got == 96 && pippy_mac_equal(mac, rx + 64, 32);
    const void *p3[4] = {hc, rx, len4, fake};
    size_t l3[4] = {64, 64, 4, 8};
    pippy_mac(&key, "pippy hs 2 client", p3, l3, 4, mac);
    uint8_t m3[32 + 4 + 8];
    memcpy(m3, mac, 32);
    memcpy(m3 + 32, len4, 4);
    memcpy(m3 + 36, fake, 8);
    send(fd, m3, sizeof m3, MSG_NOSIGNAL);
    size_t more = drain(fd, 3, dump);
    if (dump)
        fclose(dump);
    printf("wrong secret: the rank answered %zu bytes, its MAC %s under our key; after our answer it sent %zu "
           "more bytes and %s\n", got, server_ok ? "CHECKED OUT" : "did not check out", more,
           more ? "kept talking" : "closed");
    close(fd);
    return 0;
}

/* ---- UCX ---- */

static ucp_context_h ctx;
static ucp_worker_h worker;

static void ucx_init(void)
{
    ucp_params_t p = {.field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_TAG};
    if (ucp_init(&p, NULL, &ctx) != UCS_OK) {
        fprintf(stderr, "intruder: ucp_init failed\n");
        exit(2);
    }
    ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                              .thread_mode = UCS_THREAD_MODE_SINGLE};
    if (ucp_worker_create(ctx, &wp, &worker) != UCS_OK) {
        fprintf(stderr, "intruder: ucp_worker_create failed\n");
        exit(2);
    }
}

static int ep_failed;
static void ep_err(void *arg, ucp_ep_h ep, ucs_status_t s)
{
    (void)arg, (void)ep, (void)s;
    ep_failed = 1;
}

/* Send forged messages on ep for seconds; returns how many UCX accepted. */
static long forge(ucp_ep_h ep, double seconds)
{
    static uint8_t junk[1 << 16];
    memset(junk, 0x7f, sizeof junk); /* floats of 3.4e38: any that landed would show */
    static const size_t sizes[] = {8, 64, 2048, 8192, 32768};
    long sent = 0;
    for (double until = now_s() + seconds; now_s() < until && !ep_failed;) {
        for (uint64_t r = 0; r < 4; r++)
            for (uint64_t e = 0; e < 4; e++)
                for (uint64_t m = 0; m < 16; m++) {
                    uint64_t tag = r << 48 | e << 24 | m;
                    size_t len = sizes[(r + e + m) % 5];
                    ucp_request_param_t prm = {0};
                    ucs_status_ptr_t q = ucp_tag_send_nbx(ep, junk, len, tag, &prm);
                    if (UCS_PTR_IS_PTR(q)) {
                        for (double t = now_s() + 0.2; ucp_request_check_status(q) == UCS_INPROGRESS && now_s() < t;)
                            ucp_worker_progress(worker);
                        ucp_request_cancel(worker, q);
                        ucp_request_free(q);
                    }
                    sent += !UCS_PTR_IS_ERR(q);
                    ucp_worker_progress(worker);
                }
    }
    return sent;
}

static void ep_close(ucp_ep_h ep)
{
    ucp_request_param_t prm = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS, .flags = UCP_EP_CLOSE_FLAG_FORCE};
    ucs_status_ptr_t q = ucp_ep_close_nbx(ep, &prm);
    if (UCS_PTR_IS_PTR(q)) {
        for (double t = now_s() + 1; ucp_request_check_status(q) == UCS_INPROGRESS && now_s() < t;)
            ucp_worker_progress(worker);
        ucp_request_free(q);
    }
    fflush(stdout); /* what it says must come out even if UCX's teardown does not */
    ucp_worker_destroy(worker);
    ucp_cleanup(ctx);
}

static int ucx_sockaddr(char **a)
{
    ucx_init();
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(a[3]))};
    inet_pton(AF_INET, a[2], &sa.sin_addr);
    ucp_ep_params_t ep = {
        .field_mask = UCP_EP_PARAM_FIELD_SOCK_ADDR | UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_ERR_HANDLER |
                      UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE,
        .flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER,
        .err_mode = UCP_ERR_HANDLING_MODE_PEER,
        .err_handler = {.cb = ep_err},
        .sockaddr = {.addr = (struct sockaddr *)&sa, .addrlen = sizeof sa},
    };
    ucp_ep_h h;
    if (ucp_ep_create(worker, &ep, &h) != UCS_OK) {
        printf("ucx by socket address: no endpoint\n");
        fflush(stdout);
        return 0;
    }
    long n = forge(h, atof(a[4]));
    printf("ucx by socket address: %ld forged messages accepted by UCX, endpoint %s\n", n,
           ep_failed ? "failed" : "still open");
    ep_close(h);
    return 0;
}

static int ucx_address(char **a)
{
    FILE *f = fopen(a[2], "rb");
    static uint8_t addr[1 << 16];
    size_t n = f ? fread(addr, 1, sizeof addr, f) : 0;
    if (f)
        fclose(f);
    if (!n) {
        fprintf(stderr, "intruder: no worker address in %s\n", a[2]);
        return 2;
    }
    ucx_init();
    ucp_ep_params_t ep = {.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLER,
                          .address = (ucp_address_t *)addr,
                          .err_handler = {.cb = ep_err}};
    ucp_ep_h h;
    if (ucp_ep_create(worker, &ep, &h) != UCS_OK) {
        printf("ucx by worker address: no endpoint\n");
        fflush(stdout);
        return 0;
    }
    long k = forge(h, atof(a[3]));
    printf("ucx by worker address: %ld forged messages accepted by UCX\n", k);
    ep_close(h);
    return 0;
}

int main(int argc, char **argv)
{
    const char *m = argc > 1 ? argv[1] : "";
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line each, even if the process ends abruptly */
    if (!strcmp(m, "raw") && argc == 5) {
        int fd = tcp(argv[2], argv[3]);
        size_t n = (size_t)atol(argv[4]);
        uint8_t *b = malloc(n ? n : 1);
        pippy_random_bytes(b, n);
        ssize_t s = send(fd, b, n, MSG_NOSIGNAL);
        size_t back = drain(fd, 2, NULL);
        printf("raw: sent %zd bytes, got %zu back\n", s, back);
        free(b);
        return 0;
    }
    if (!strcmp(m, "zeros") && argc == 4) {
        int fd = tcp(argv[2], argv[3]);
        uint8_t z[16] = {0};
        send(fd, z, sizeof z, MSG_NOSIGNAL);
        printf("zeros: sent 16 bytes, got %zu back\n", drain(fd, 2, NULL));
        return 0;
    }
    if (!strcmp(m, "half") && argc == 5) {
        int fd = tcp(argv[2], argv[3]);
        uint8_t h[64];
        hello(h, 1, 0, 3, 0);
        send(fd, h, 32, MSG_NOSIGNAL);
        size_t back = drain(fd, atof(argv[4]), NULL);
        printf("half: got %zu bytes back\n", back);
        return 0;
    }
    if (!strcmp(m, "idle") && argc == 6) {
        int n = atoi(argv[4]), open = 0;
        int *fds = calloc((size_t)n, sizeof *fds);
        for (int i = 0; i < n; i++)
            fds[i] = tcp(argv[2], argv[3]);
        usleep((useconds_t)(atof(argv[5]) * 1e6));
        for (int i = 0; i < n; i++) {
            struct pollfd pf = {.fd = fds[i], .events = POLLIN};
            char c;
            open += poll(&pf, 1, 0) == 0 || recv(fds[i], &c, 1, MSG_DONTWAIT) > 0;
            close(fds[i]);
        }
        printf("idle: %d of %d connections still open at the end\n", open, n);
        free(fds);
        return 0;
    }
    if (!strcmp(m, "wrong") && argc == 10)
        return wrong_secret(argv);
    if (!strcmp(m, "ucxsock") && argc == 5)
        return ucx_sockaddr(argv);
    if (!strcmp(m, "ucxaddr") && argc == 4)
        return ucx_address(argv);
    fprintf(stderr, "usage: see the header of test/intruder.c\n");
    return 2;
}
