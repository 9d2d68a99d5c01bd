/* pippyrun.c — start every rank of a compiled out/ folder on this host and watch them.
 *
 *   pippyrun OUT/ [--input NAME=FILE ...] [--output NAME=FILE ...] [--trace FILE]
 *                 [--timeout SEC] [--threads N] [-- extra args for every rank]
 *   training:     [--steps N | --epochs E] [--loss-log FILE] [--checkpoint DIR] [--checkpoint-every K]
 *                 [--resume DIR] [--shuffle SEED] [--save FILE.onnx]
 *
 * Reads the rank -> program map of OUT/schedule.json ({"ranks":[{"rank":0,"stages":[0],
 * "program":"stage0"},...]}; a program is a plain file name inside OUT, a regular executable file,
 * never a path or a symbolic link) and starts, for each rank r, OUT/<program> --rank r --schedule
 * OUT/schedule.json --hosts OUT/hosts plus the user's arguments (and --trace FILE.rank<r>.json).
 * Each rank runs in its own process group; its stdout and stderr lines come out prefixed
 * "[rank r] ". When a rank exits non-zero or is killed, the others get SIGTERM, then SIGKILL
 * after 2 s, and pippyrun exits with the first failure's code (128+signal for a signal).
 * SIGINT/SIGTERM to pippyrun are forwarded to the ranks. With --trace, the per-rank traces
 * (JSON arrays of Chrome trace events) are merged into FILE when every rank succeeded.
 * When every entry of OUT/hosts is on this machine (127.x.x.x or localhost), the ranks get free
 * ports chosen now (written to a private hosts file), so that two jobs of one compile, or an
 * earlier run's lingering sockets, never collide; --fixed-ports keeps the ports of OUT/hosts.
 * Training options go to every rank as they are, but --save FILE.onnx: the ranks write their final
 * state into a checkpoint in OUT, which pippyrun turns into FILE.onnx (the original model with the
 * trained initializers, as `pippyc export` does) and then removes.
 * The ranks authenticate each other with a job secret (runtime/auth.h): pippyrun makes a fresh
 * random one for every job and hands it to its ranks in their environment (PIPPY_JOB_SECRET; not
 * on a command line, which any user can read with ps). After the job it removes whatever shared
 * memory a rank killed by SIGKILL could not (the job's segments carry the job's tag).
 * Exit codes: 0 success, 2 bad usage, 1 a bad OUT folder, else the failing rank's code. */
#define _GNU_SOURCE /* pipe2 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/random.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "export_onnx.h"
#include "auth.h"

#define GRACE_S 2.0
#define LINE_MAX_BYTES 16384

typedef struct {
    int fd;      /* read end, -1 once closed */
    int to;      /* 1 = our stdout, 2 = our stderr */
    size_t len;  /* bytes of an unfinished line in buf */
    char buf[LINE_MAX_BYTES];
} stream;

typedef struct {
    int rank, stage;
    char *program; /* OUT/<program> */
    pid_t pid;     /* 0 once reaped */
    int status;    /* wait status */
    stream out, err;
} rank_proc;

static int sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    int e = errno;
    if (sig == SIGINT || sig == SIGTERM)
        got_signal = sig;
    char c = (char)sig;
    if (write(sig_pipe[1], &c, 1) < 0) {
        /* the pipe is full: the loop wakes anyway */
    }
    errno = e;
}

/* Binds fd to a loopback port free right now, below the kernel's ephemeral range (where the
 * outgoing connections of this job, of other jobs and of everything else take their local ports,
 * so a port picked there may be taken before the rank listens on it): random in the 16384 ports
 * under the range's start. Without /proc's range, any free port. Returns the port, or 0. */
static int bind_free_port(int fd)
{
    unsigned lo = 0, hi = 0, seed = 0;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f && fscanf(f, "%u %u", &lo, &hi) != 2)
        lo = 0;
    if (f)
        fclose(f);
    if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
        seed = (unsigned)getpid() * 2654435761u;
    unsigned span = lo > 1024 + 16384 ? 16384 : lo > 2048 ? lo - 1024 : 0;
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int tries = 0; tries < (span ? 64 : 1); tries++) {
        seed = seed * 1664525u + 1013904223u;
        a.sin_port = htons(span ? (uint16_t)(lo - 1 - (seed >> 8) % span) : 0);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0)
            break;
    }
    socklen_t al = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &al) != 0)
        return 0;
    return ntohs(a.sin_port);
}

/* If every line of hosts names this machine, write n "127.0.0.1:PORT" lines with ports free
 * right now into a new file (its path into tmp) and return 1; 0 to use hosts as it is. */
static int local_free_ports(const char *hosts, int n, char *tmp, size_t tmp_n)
{
    FILE *f = fopen(hosts, "r");
    if (!f)
        return 0;
    char line[512];
    int local = 1, lines = 0;
    while (fgets(line, sizeof line, f)) {
        char *h = line;
        while (*h == ' ' || *h == '\t')
            h++;
        if (*h == '#' || *h == '\n' || !*h)
            continue;
        lines++;
        local &= strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost:", 10) == 0;
    }
    fclose(f);
    if (!local || lines < n || n > 1024)
        return 0;
    int fds[1024], ports[1024], ok = 1;
    for (int r = 0; r < n; r++) {
        fds[r] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ports[r] = fds[r] >= 0 ? bind_free_port(fds[r]) : 0;
        ok &= ports[r] > 0;
    }
    for (int r = 0; r < n; r++)
        if (fds[r] >= 0)
            close(fds[r]);
    if (!ok)
        return 0;
    snprintf(tmp, tmp_n, "/tmp/pippyrun-hosts-XXXXXX");
    int fd = mkstemp(tmp);
    if (fd < 0)
        return 0;
    FILE *o = fdopen(fd, "w");
    if (!o) {
        close(fd);
        unlink(tmp);
        return 0;
    }
    fprintf(o, "# chosen by pippyrun for this job (from %s)\n", hosts);
    for (int r = 0; r < n; r++)
        fprintf(o, "127.0.0.1:%d\n", ports[r]);
    if (fclose(o) != 0) {
        unlink(tmp);
        return 0;
    }
    return 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: pippyrun OUT/ [--input NAME=FILE ...] [--output NAME=FILE ...] "
               "[--trace FILE]\n"
               "                [--timeout SEC] [--threads N] [--fixed-ports] [-- extra args for every rank]\n"
               "training:       [--steps N | --epochs E] [--loss-log FILE] [--checkpoint DIR] [--checkpoint-every K]\n"
               "                [--resume DIR] [--shuffle SEED] [--save FILE.onnx]\n"
               "Starts every rank of OUT/schedule.json on this host (OUT/ is what pippyc -o "
               "wrote).\n");
}

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "pippyrun: error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

/* A usage error: the message, then the usage; exit code 2. */
#define die_usage(...) (die(__VA_ARGS__), usage(stderr), 2)

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (n < cap)
            break;
        char *nb = realloc(buf, 2 * cap + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

/* ---- the schedule's rank map ---- */

static int load_ranks(const char *out, const char *sched_path, rank_proc **ranks_out, int *n_out)
{
    size_t len;
    char *text = read_file(sched_path, &len);
    if (!text)
        return die("cannot read %s: %s (is %s a folder written by pippyc -o?)", sched_path,
                   strerror(errno), out);
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr(); /* points into text */
        int rc = die("%s is not valid JSON (near \"%.30s\")", sched_path, at ? at : "?");
        free(text);
        return rc;
    }
    free(text);
    const cJSON *ranks = cJSON_GetObjectItemCaseSensitive(root, "ranks");
    int n = cJSON_IsArray(ranks) ? cJSON_GetArraySize(ranks) : 0;
    if (n <= 0) {
        cJSON_Delete(root);
        return die("%s has no \"ranks\" array (rank -> program map)", sched_path);
    }
    rank_proc *rp = calloc((size_t)n, sizeof *rp);
    if (!rp) {
        cJSON_Delete(root);
        return die("out of memory");
    }
    for (int i = 0; i < n; i++)
        rp[i].rank = -1;
    int rc = 0;
    const cJSON *jr;
    int idx = 0;
    cJSON_ArrayForEach(jr, ranks)
    {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(jr, "rank");
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(jr, "program");
        if (!cJSON_IsNumber(r) || !cJSON_IsString(p) || !p->valuestring[0]) {
            rc = die("%s: ranks[%d] needs \"rank\" (a number) and \"program\" (a name)",
                     sched_path, idx);
            break;
        }
        if (strchr(p->valuestring, '/') || !strcmp(p->valuestring, ".") || !strcmp(p->valuestring, "..") ||
            strlen(p->valuestring) > 255) {
            rc = die("%s: ranks[%d] names the program \"%.300s\": a program must be a file name inside %s "
                     "(no folder, no path)", sched_path, idx, p->valuestring, out);
            break;
        }
        int rank = (int)r->valuedouble;
        if (rank < 0 || rank >= n || (double)rank != r->valuedouble || rp[rank].rank >= 0) {
            rc = die("%s: ranks[%d] has rank %g: ranks must be 0..%d, each once", sched_path, idx,
                     r->valuedouble, n - 1);
            break;
        }
        rp[rank].rank = rank;
        rp[rank].program = path_join(out, p->valuestring);
        if (!rp[rank].program) {
            rc = die("out of memory");
            break;
        }
        idx++;
    }
    cJSON_Delete(root);
    for (int i = 0; rc == 0 && i < n; i++) {
        struct stat sb;
        if (lstat(rp[i].program, &sb) == 0 && S_ISLNK(sb.st_mode))
            rc = die("the program of rank %d, %s, is a symbolic link: only programs inside %s are run", i,
                     rp[i].program, out);
        else if (lstat(rp[i].program, &sb) != 0 || !S_ISREG(sb.st_mode))
            rc = die("the program of rank %d, %s, is missing (compile again with pippyc -o %s)",
                     i, rp[i].program, out);
        else if (access(rp[i].program, X_OK) != 0)
            rc = die("the program of rank %d, %s, is not executable", i, rp[i].program);
    }
    if (rc) {
        for (int i = 0; i < n; i++)
            free(rp[i].program);
        free(rp);
        return rc;
    }
    *ranks_out = rp;
    *n_out = n;
    return 0;
}

/* ---- output ---- */

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return; /* our output is gone: keep running the job */
        p += k;
        n -= (size_t)k;
    }
}

/* One output line: "[rank r] " + text + "\n" in a single write, so ranks do not interleave. */
static void emit(int rank, int to, const char *text, size_t n)
{
    char line[LINE_MAX_BYTES + 32];
    int k = snprintf(line, 32, "[rank %d] ", rank);
    memcpy(line + k, text, n);
    line[k + (int)n] = '\n';
    write_all(to, line, (size_t)k + n + 1);
}

static void stream_read(int rank, stream *s)
{
    ssize_t k;
    do
        k = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
    while (k < 0 && errno == EINTR);
    if (k <= 0) {
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (s->len)
            emit(rank, s->to, s->buf, s->len);
        s->len = 0;
        close(s->fd);
        s->fd = -1;
        return;
    }
    s->len += (size_t)k;
    size_t start = 0;
    for (size_t i = 0; i < s->len; i++)
        if (s->buf[i] == '\n') {
            emit(rank, s->to, s->buf + start, i - start);
            start = i + 1;
        }
    if (start == 0 && s->len == sizeof s->buf) { /* a line longer than the buffer */
        emit(rank, s->to, s->buf, s->len);
        start = s->len;
    }
    memmove(s->buf, s->buf + start, s->len - start);
    s->len -= start;
}

/* ---- processes ---- */

static const char *sig_name(int sig)
{
    switch (sig) {
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGPIPE: return "SIGPIPE";
    default: return "a signal";
    }
}

static int exit_code_of(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}

static int start_rank(rank_proc *rp, char **argv)
{
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(pe, O_CLOEXEC) < 0) {
        close(po[0]);
        close(po[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(po[0]); close(po[1]); close(pe[0]); close(pe[1]);
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        struct sigaction sa = {.sa_handler = SIG_DFL};
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGCHLD, &sa, NULL);
        sigaction(SIGPIPE, &sa, NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) {
            dup2(nul, 0);
            close(nul);
        }
        dup2(po[1], 1);
        dup2(pe[1], 2);
        execv(rp->program, argv);
        fprintf(stderr, "cannot start %s: %s\n", rp->program, strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid); /* also here: no race with signalling the group */
    close(po[1]);
    close(pe[1]);
    fcntl(po[0], F_SETFL, O_NONBLOCK);
    fcntl(pe[0], F_SETFL, O_NONBLOCK);
    rp->pid = pid;
    rp->out = (stream){.fd = po[0], .to = 1};
    rp->err = (stream){.fd = pe[0], .to = 2};
    return 0;
}

static void signal_all(rank_proc *rp, int n, int sig)
{
    for (int i = 0; i < n; i++)
        if (rp[i].pid > 0)
            kill(-rp[i].pid, sig);
}

/* ---- trace merge ---- */

static char *trace_part(const char *trace, int rank)
{
    size_t n = strlen(trace) + 32;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s.rank%d.json", trace, rank);
    return p;
}

static int merge_traces(const char *trace, int n)
{
    size_t tl = strlen(trace);
    char *tmp = malloc(tl + 16);
    if (!tmp)
        return die("out of memory");
    snprintf(tmp, tl + 16, "%s.tmpXXXXXX", trace);
    int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        int rc = die("cannot write the trace %s: %s", trace, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        free(tmp);
        return rc;
    }
    fchmod(fd, 0644);
    int rc = 0, first = 1;
    size_t events = 0;
    fputs("[\n", f);
    for (int r = 0; r < n && rc == 0; r++) {
        char *part = trace_part(trace, r);
        size_t len;
        char *text = part ? read_file(part, &len) : NULL;
        cJSON *arr = text ? cJSON_ParseWithLength(text, len) : NULL;
        if (!text)
            rc = die("rank %d wrote no trace %s: %s", r, part ? part : "?", strerror(errno));
        else if (!cJSON_IsArray(arr))
            rc = die("the trace of rank %d, %s, is not a JSON array", r, part);
        const cJSON *e, *src = rc == 0 ? arr : NULL;
        cJSON_ArrayForEach(e, src)
        {
            char *s = cJSON_PrintUnformatted(e);
            if (!s) {
                rc = die("out of memory");
                break;
            }
            fprintf(f, "%s%s", first ? "" : ",\n", s);
            first = 0;
            events++;
            free(s);
        }
        cJSON_Delete(arr);
        free(text);
        free(part);
    }
    fputs("\n]\n", f);
    if (ferror(f) && rc == 0)
        rc = die("cannot write the trace %s: %s", trace, strerror(errno));
    if (fclose(f) != 0 && rc == 0)
        rc = die("cannot write the trace %s: %s", trace, strerror(errno));
    if (rc == 0 && rename(tmp, trace) != 0)
        rc = die("cannot write the trace %s: %s", trace, strerror(errno));
    if (rc) {
        unlink(tmp);
    } else {
        for (int r = 0; r < n; r++) {
            char *part = trace_part(trace, r);
            if (part)
                unlink(part);
            free(part);
        }
        fprintf(stderr, "pippyrun: trace of %d ranks (%zu events) in %s\n", n, events, trace);
    }
    free(tmp);
    return rc;
}

/* ---- --save ---- */

/* Remove a folder pippyrun made and what the ranks wrote in it (files and step folders). */
static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *p = path_join(dir, e->d_name);
        struct stat sb;
        if (p && lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            remove_tree(p);
        else if (p)
            unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
}

/* The trained model: the original ONNX file with the final parameters of the ranks' checkpoint. */
static int export_trained(const char *outdir, const char *ckpt, const char *file)
{
    pippy_export_args a = {.out_dir = outdir, .ckpt_dir = ckpt, .step = -1, .output = file, .quiet = 1};
    pippy_status st = pippy_export_checkpoint(&a);
    if (st != PIPPY_OK)
        return die("--save %s: %s", file, pippy_last_error());
    fprintf(stderr, "pippyrun: trained model in %s\n", file);
    return 0;
}

/* ---- the job secret ---- */

/* 32 random bytes as 64 hex digits into PIPPY_JOB_SECRET (the ranks inherit it); the job's tag
 * (names of its shared memory) into tag. */
static int job_secret(char tag[17])
{
    uint8_t r[32];
    char hex[65];
    if (pippy_random_bytes(r, sizeof r) != PIPPY_OK)
        return die("cannot make a job secret: %s", pippy_last_error());
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", r[i]);
    pippy_job_key key;
    pippy_job_key_from_secret(hex, 64, "pippyrun", &key);
    pippy_job_key_tag(&key, tag);
    setenv("PIPPY_JOB_SECRET", hex, 1);
    memset(r, 0, sizeof r);
    memset(&key, 0, sizeof key);
    return 0;
}

/* Remove the job's shared memory that a rank killed by SIGKILL left behind. */
static void sweep_shm(const char *tag)
{
    char prefix[40];
    int pl = snprintf(prefix, sizeof prefix, "pippy-%s-", tag);
    DIR *d = opendir("/dev/shm");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, (size_t)pl) != 0)
            continue;
        char path[300];
        snprintf(path, sizeof path, "/dev/shm/%.255s", e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    const char *out = NULL, *trace = NULL, *timeout = NULL, *threads = NULL, *save = NULL;
    const char *user[2 * argc + 1]; /* --input/--output pairs */
    int n_user = 0, extra_at = argc, fixed_ports = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        const char *opts[] = {"--input", "--output", "--trace", "--timeout", "--threads", "--save"};
        /* training options every rank gets as they are */
        const char *pass[] = {"--steps", "--epochs", "--loss-log", "--checkpoint", "--checkpoint-every", "--resume",
                              "--shuffle"};
        int which = -1;
        if (strcmp(a, "--") == 0) {
            extra_at = i + 1;
            break;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--fixed-ports") == 0) {
            fixed_ports = 1;
            continue;
        }
        int passed = 0;
        for (size_t k = 0; k < sizeof pass / sizeof pass[0]; k++)
            if (strcmp(a, pass[k]) == 0) {
                if (i + 1 >= argc)
                    return die_usage("%s needs a value", a);
                user[n_user++] = pass[k];
                user[n_user++] = argv[++i];
                passed = 1;
            }
        if (passed)
            continue;
        for (int k = 0; k < 6; k++) {
            size_t ol = strlen(opts[k]);
            if (strcmp(a, opts[k]) == 0) {
                if (i + 1 >= argc)
                    return die_usage("%s needs a value", a);
                which = k;
                val = argv[++i];
            } else if (strncmp(a, opts[k], ol) == 0 && a[ol] == '=') {
                which = k;
                val = a + ol + 1;
            }
        }
        if (which < 0 && a[0] == '-')
            return die_usage("unknown option %s", a);
        if (which < 0) {
            if (out)
                return die_usage("two OUT folders given (%s and %s)", out, a);
            out = a;
            continue;
        }
        if (which <= 1) {
            if (!strchr(val, '=') || val[0] == '=')
                return die_usage("%s takes NAME=FILE, not \"%s\"", opts[which], val);
            user[n_user++] = opts[which];
            user[n_user++] = val;
        } else if (which == 2) {
            if (!val[0])
                return die_usage("--trace needs a file name");
            trace = val;
        } else if (which == 5) {
            if (!val[0])
                return die_usage("--save needs a file name (FILE.onnx)");
            save = val;
        } else if (which == 3) {
            char *end;
            double v = strtod(val, &end);
            if (*end || !(v > 0))
                return die_usage("--timeout takes seconds > 0, not \"%s\"", val);
            timeout = val;
        } else {
            char *end;
            long v = strtol(val, &end, 10);
            if (*end || v < 1)
                return die_usage("--threads takes a count >= 1, not \"%s\"", val);
            threads = val;
        }
    }
    if (!out)
        return die_usage("no OUT folder given");

    /* OUT without trailing slashes, so that programs read OUT/stage0 (not OUT//stage0). */
    char outdir[4096], sched[4096 + 16], hosts[4096 + 16];
    if (strlen(out) >= sizeof outdir)
        return die("the OUT path is too long");
    snprintf(outdir, sizeof outdir, "%s", out);
    for (size_t l = strlen(outdir); l > 1 && outdir[l - 1] == '/'; l--)
        outdir[l - 1] = 0;
    struct stat sb;
    if (stat(outdir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return die("%s is not a folder (give the folder pippyc -o wrote)", out);
    snprintf(sched, sizeof sched, "%s/schedule.json", outdir);
    snprintf(hosts, sizeof hosts, "%s/hosts", outdir);
    rank_proc *rp = NULL;
    int n = 0;
    int rc = load_ranks(outdir, sched, &rp, &n);
    if (rc)
        return rc;
    if (access(hosts, R_OK) != 0) {
        for (int i = 0; i < n; i++)
            free(rp[i].program);
        free(rp);
        return die("%s is missing (pippyc writes it: one host:port per rank)", hosts);
    }

    char own_hosts[64] = "";
    if (!fixed_ports && local_free_ports(hosts, n, own_hosts, sizeof own_hosts))
        snprintf(hosts, sizeof hosts, "%s", own_hosts);

    /* A fresh secret for this job's ranks (they refuse any process that cannot prove it). */
    char job_tag[17];
    if (job_secret(job_tag) != 0) {
        for (int i = 0; i < n; i++)
            free(rp[i].program);
        free(rp);
        return 1;
    }

    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return die("pipe: %s", strerror(errno));
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* --save: the ranks write their final state into a checkpoint in OUT, exported at the end */
    char save_dir[4096 + 32] = "";
    if (save) {
        snprintf(save_dir, sizeof save_dir, "%s/.save-XXXXXX", outdir);
        if (!mkdtemp(save_dir))
            return die("cannot make a folder for --save in %s: %s", outdir, strerror(errno));
    }

    /* argv of a rank: program, 6 fixed, user pairs, timeout, threads, trace, save, extras, NULL */
    int n_extra = argc - extra_at;
    char **cargv = calloc((size_t)(1 + 6 + n_user + 8 + n_extra + 1), sizeof *cargv);
    if (!cargv)
        return die("out of memory");
    int started = 0;
    for (int r = 0; r < n; r++) {
        char rank_s[16], *part = NULL;
        int k = 0;
        snprintf(rank_s, sizeof rank_s, "%d", r);
        cargv[k++] = rp[r].program;
        cargv[k++] = "--rank";
        cargv[k++] = rank_s;
        cargv[k++] = "--schedule";
        cargv[k++] = sched;
        cargv[k++] = "--hosts";
        cargv[k++] = hosts;
        for (int i = 0; i < n_user; i++)
            cargv[k++] = (char *)user[i];
        if (timeout) {
            cargv[k++] = "--timeout";
            cargv[k++] = (char *)timeout;
        }
        if (threads) {
            cargv[k++] = "--threads";
            cargv[k++] = (char *)threads;
        }
        if (save) {
            cargv[k++] = "--save-checkpoint";
            cargv[k++] = save_dir;
        }
        if (trace) {
            part = trace_part(trace, r);
            unlink(part); /* never merge a stale part */
            cargv[k++] = "--trace";
            cargv[k++] = part;
        }
        for (int i = extra_at; i < argc; i++)
            cargv[k++] = argv[i];
        cargv[k] = NULL;
        fflush(stdout);
        fflush(stderr);
        if (start_rank(&rp[r], cargv) != 0) {
            die("cannot start rank %d (%s): %s", r, rp[r].program, strerror(errno));
            free(part);
            break;
        }
        free(part);
        started++;
    }

    int first_fail = -1, first_code = 0, alive = started, stopping = 0;
    double kill_at = 0;
    if (started < n) { /* could not start them all: stop the ones that run */
        first_code = 1;
        stopping = 1;
        signal_all(rp, n, SIGTERM);
        kill_at = now_s() + GRACE_S;
    }
    struct pollfd *pf = calloc((size_t)(2 * n + 1), sizeof *pf);
    int *pf_rank = calloc((size_t)(2 * n + 1), sizeof *pf_rank);
    if (!pf || !pf_rank)
        return die("out of memory");
    double drain_until = 0;
    for (;;) {
        /* reap */
        for (int i = 0; i < n; i++) {
            if (rp[i].pid <= 0)
                continue;
            int st;
            pid_t k = waitpid(rp[i].pid, &st, WNOHANG);
            if (k != rp[i].pid)
                continue;
            rp[i].status = st;
            alive--;
            int code = exit_code_of(st);
            if (code != 0 && first_fail < 0 && !stopping && !got_signal) {
                first_fail = i;
                first_code = code;
                if (WIFSIGNALED(st))
                    fprintf(stderr, "pippyrun: rank %d (%s) failed with exit code %d (killed by "
                            "%s)\n", i, rp[i].program, code, sig_name(WTERMSIG(st)));
                else
                    fprintf(stderr, "pippyrun: rank %d (%s) failed with exit code %d\n", i,
                            rp[i].program, code);
                if (alive > 0)
                    fprintf(stderr, "pippyrun: stopping the other ranks\n");
                stopping = 1;
                kill_at = now_s() + GRACE_S;
                /* SIGTERM the others (and anything this rank left in its group) */
                kill(-rp[i].pid, SIGKILL);
                rp[i].pid = -rp[i].pid; /* reaped; keep the group id for the final sweep */
                signal_all(rp, n, SIGTERM);
                continue;
            }
            rp[i].pid = -rp[i].pid;
        }
        if (got_signal && !stopping) {
            fprintf(stderr, "pippyrun: got %s, passing it to the ranks\n", sig_name(got_signal));
            stopping = 1;
            first_code = 128 + got_signal;
            signal_all(rp, n, got_signal);
            kill_at = now_s() + GRACE_S;
        }
        double tn = now_s();
        if (stopping && alive > 0 && tn >= kill_at) {
            signal_all(rp, n, SIGKILL);
            kill_at = tn + 3600;
        }
        int open_streams = 0;
        for (int i = 0; i < n; i++)
            open_streams += (rp[i].out.fd >= 0) + (rp[i].err.fd >= 0);
        if (alive == 0) {
            /* every rank is reaped; what their children still hold open is drained briefly */
            if (drain_until == 0)
                drain_until = tn + (open_streams ? 0.5 : 0);
            if (!open_streams)
                break;
            if (tn >= drain_until) {
                for (int i = 0; i < n; i++)
                    if (rp[i].pid < 0)
                        kill(rp[i].pid, SIGKILL); /* the group: -pid */
                for (int i = 0; i < n; i++) {
                    if (rp[i].out.fd >= 0)
                        stream_read(i, &rp[i].out);
                    if (rp[i].err.fd >= 0)
                        stream_read(i, &rp[i].err);
                    if (rp[i].out.fd >= 0) {
                        close(rp[i].out.fd);
                        rp[i].out.fd = -1;
                    }
                    if (rp[i].err.fd >= 0) {
                        close(rp[i].err.fd);
                        rp[i].err.fd = -1;
                    }
                }
                break;
            }
        }
        int m = 0;
        pf[m].fd = sig_pipe[0];
        pf[m].events = POLLIN;
        pf_rank[m++] = -1;
        for (int i = 0; i < n; i++) {
            stream *ss[2] = {&rp[i].out, &rp[i].err};
            for (int s = 0; s < 2; s++)
                if (ss[s]->fd >= 0) {
                    pf[m].fd = ss[s]->fd;
                    pf[m].events = POLLIN;
                    pf_rank[m++] = i * 2 + s;
                }
        }
        int ms = 1000;
        if (stopping && alive > 0)
            ms = (int)((kill_at - tn) * 1000) + 1;
        if (alive == 0)
            ms = (int)((drain_until - tn) * 1000) + 1;
        if (ms < 0)
            ms = 0;
        if (ms > 1000)
            ms = 1000; /* a SIGCHLD lost to a full pipe costs at most a second */
        int k = poll(pf, (nfds_t)m, ms);
        if (k < 0 && errno != EINTR)
            break;
        for (int j = 0; k > 0 && j < m; j++) {
            if (!pf[j].revents)
                continue;
            if (pf_rank[j] < 0) {
                char drain[64];
                while (read(sig_pipe[0], drain, sizeof drain) > 0)
                    ;
                continue;
            }
            rank_proc *r = &rp[pf_rank[j] / 2];
            stream_read(r->rank, pf_rank[j] % 2 ? &r->err : &r->out);
        }
    }
    /* Leave nothing behind: every rank's group gets a last SIGKILL. */
    for (int i = 0; i < n; i++)
        if (rp[i].pid != 0)
            kill(rp[i].pid < 0 ? rp[i].pid : -rp[i].pid, SIGKILL);

    if (got_signal && first_fail < 0) {
        fprintf(stderr, "pippyrun: stopped by %s\n", sig_name(got_signal));
        rc = 128 + got_signal;
    } else if (first_fail >= 0 || first_code) {
        rc = first_code ? first_code : 1;
    } else {
        rc = trace ? merge_traces(trace, n) : 0;
        if (rc == 0 && save)
            rc = export_trained(outdir, save_dir, save);
    }
    if (save_dir[0])
        remove_tree(save_dir);
    for (int i = 0; i < n; i++)
        free(rp[i].program);
    free(rp);
    free(pf);
    free(pf_rank);
    free(cargv);
    if (own_hosts[0])
        unlink(own_hosts);
    sweep_shm(job_tag);
    return rc;
}
