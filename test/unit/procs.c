/* procs.c — see procs.h. */
#include "procs.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void world_init(world *w, int nranks, double timeout_s)
{
    memset(w, 0, sizeof *w);
    w->nranks = nranks;
    w->timeout_s = timeout_s;
    int fds[MAXR];
    for (int r = 0; r < nranks; r++) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        fds[r] = socket(AF_INET, SOCK_STREAM, 0);
        ck_assert_int_ge(fds[r], 0);
        ck_assert_int_eq(bind(fds[r], (struct sockaddr *)&sa, sizeof sa), 0);
        socklen_t l = sizeof sa;
        ck_assert_int_eq(getsockname(fds[r], (struct sockaddr *)&sa, &l), 0);
        snprintf(w->hostbuf[r], sizeof w->hostbuf[r], "127.0.0.1:%d", ntohs(sa.sin_port));
        w->hosts[r] = w->hostbuf[r];
        w->model_hash[r] = 0x1234abcd5678ef00ull;
        w->job_token[r] = 0x00c0ffee00c0ffeeull;
    }
    for (int r = 0; r < nranks; r++)
        close(fds[r]);
    w->res = mmap(NULL, MAXR * sizeof(rank_result), PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(w->res, MAP_FAILED);
    memset(w->res, 0, MAXR * sizeof(rank_result));
}

void world_free(world *w) { munmap(w->res, MAXR * sizeof(rank_result)); }

pippy_status open_all(world *w, pippy_transport **t)
{
    int peers[MAXR], n = 0;
    for (int r = 0; r < w->nranks; r++)
        if (r != w->rank)
            peers[n++] = r;
    pippy_transport_config c = {.rank = w->rank, .nranks = w->nranks, .hosts = w->hosts,
                                .model_hash = w->model_hash[w->rank],
                                .job_token = w->job_token[w->rank], .timeout_s = w->timeout_s};
    return pippy_transport_open(&c, peers, n, t);
}

void record(rank_result *r, pippy_status s, double t0)
{
    r->status = s;
    r->elapsed = now_s() - t0;
    snprintf(r->msg, sizeof r->msg, "%s", s == PIPPY_OK ? "" : pippy_last_error());
}

pid_t spawn(world *w, int rank, rank_fn fn)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        alarm(60); /* never outlive a broken test */
        w->rank = rank;
        rank_result *r = &w->res[rank];
        r->status = -1;
        fn(w, r);
        r->done = 1;
        _exit(0);
    }
    return pid;
}

int reap(pid_t pid, double deadline)
{
    int ws = 0;
    for (;;) {
        pid_t k = waitpid(pid, &ws, WNOHANG);
        if (k == pid)
            return ws;
        if (now_s() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &ws, 0);
            return -1;
        }
        usleep(2000);
    }
}

void run_world(world *w, rank_fn fn, double limit_s)
{
    pid_t pids[MAXR];
    for (int r = 0; r < w->nranks; r++)
        pids[r] = spawn(w, r, fn);
    double deadline = now_s() + limit_s;
    for (int r = 0; r < w->nranks; r++) {
        int ws = reap(pids[r], deadline);
        ck_assert_msg(ws != -1, "rank %d did not finish within %.0f s", r, limit_s);
        ck_assert_msg(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "rank %d exited abnormally (%d)", r,
                      ws);
        ck_assert_msg(w->res[r].done, "rank %d did not finish", r);
    }
}
