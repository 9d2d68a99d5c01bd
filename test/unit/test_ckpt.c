/* test_ckpt.c — runtime/ckpt: round trips, damaged and foreign files refused with the right
 * message, commit / latest / prune, and writers SIGKILLed at random moments (latest must always
 * name a whole set whose contents are right). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "ckpt.h"
#include "harness.h"

#define HASH 0x0123456789abcdefull

static char tmp[64];

static void setup(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/pippy_ckpt_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
}

static void teardown(void) { pippy_test_rmtree(tmp); }

static void fill(uint8_t *b, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(b + i, &x, n - i < 8 ? n - i : 8);
    }
}

static int same(const uint8_t *b, size_t n, uint64_t seed)
{
    uint8_t *w = malloc(n ? n : 1);
    fill(w, n, seed);
    int ok = memcmp(b, w, n) == 0;
    free(w);
    return ok;
}

static void path_of(char *b, size_t n, int64_t step, int stage)
{
    snprintf(b, n, "%s/step-%lld/stage%d.ckpt", tmp, (long long)step, stage);
}

/* Write stage's file of step with parts params (np bytes), optim (no bytes) and meta (24). */
static void write_set_file(const char *dir, int64_t step, int stage, size_t np)
{
    uint8_t *p = malloc(np ? np : 1), meta[24];
    fill(p, np, (uint64_t)step * 100 + (uint64_t)stage);
    fill(meta, sizeof meta, 7);
    pippy_ckpt_part parts[3] = {{"params", p, np}, {"optim", NULL, 0}, {"meta", meta, sizeof meta}};
    pippy_status st = pippy_ckpt_write(dir, step, stage, HASH, parts, 3);
    ck_assert_msg(st == PIPPY_OK, "%s", pippy_last_error());
    free(p);
}

START_TEST(test_round_trip)
{
    size_t sizes[] = {0, 1, 63, 64, 65, 1001, 3u << 20};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        write_set_file(tmp, 5, 1, sizes[s]);
        uint8_t *got = malloc(sizes[s] + 1), meta[24];
        pippy_ckpt_part want[2] = {{"meta", meta, sizeof meta}, {"params", got, sizes[s]}};
        pippy_status st = pippy_ckpt_read(tmp, 5, 1, HASH, want, 2);
        ck_assert_msg(st == PIPPY_OK, "%zu bytes: %s", sizes[s], pippy_last_error());
        ck_assert(same(got, sizes[s], 501) && same(meta, sizeof meta, 7));
        /* allocated by the reader; a subset of the parts */
        pippy_ckpt_part one = {"params", NULL, 0};
        ck_assert_int_eq(pippy_ckpt_read(tmp, 5, 1, HASH, &one, 1), PIPPY_OK);
        ck_assert_uint_eq(one.bytes, sizes[s]);
        ck_assert(same(one.data, sizes[s], 501));
        free(one.data);
        free(got);
    }
    /* the file's size follows the documented layout: 64 + 3 * 64 header, parts 64-aligned, trailer 8 */
    char path[256];
    path_of(path, sizeof path, 5, 1);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 256 + (3 << 20) + 0 + 64 + 8);
    /* no part at all */
    ck_assert_int_eq(pippy_ckpt_write(tmp, 6, 0, HASH, NULL, 0), PIPPY_OK);
    ck_assert_int_eq(pippy_ckpt_read(tmp, 6, 0, HASH, NULL, 0), PIPPY_OK);
}
END_TEST

/* The CRC-32 trailer is zlib's crc32 of everything before it (as Python's zlib.crc32). */
START_TEST(test_checksum_is_crc32)
{
    write_set_file(tmp, 0, 0, 1000);
    char path[256];
    path_of(path, sizeof path, 0, 0);
    FILE *f = fopen(path, "rb");
    uint8_t buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert_uint_gt(n, 8);
    uint64_t stored;
    memcpy(&stored, buf + n - 8, 8);
    ck_assert_uint_eq(stored, crc32(0, buf, (uInt)(n - 8)));
    ck_assert_mem_eq(buf, "PIPPYCK1", 8);
}
END_TEST

static void read_fails(int64_t step, int stage, uint64_t hash, pippy_ckpt_part *p, int n, pippy_status want,
                       const char *msg)
{
    pippy_status st = pippy_ckpt_read(tmp, step, stage, hash, p, n);
    ck_assert_msg(st == want, "status %d, expected %d: %s", st, want, pippy_last_error());
    ck_assert_msg(strstr(pippy_last_error(), msg), "'%s' lacks '%s'", pippy_last_error(), msg);
    char path[256];
    path_of(path, sizeof path, step, stage);
    ck_assert_msg(strstr(pippy_last_error(), path) || want == PIPPY_ERR_INVALID, "'%s' does not name %s",
                  pippy_last_error(), path);
}

/* Overwrite n bytes of stage 0's file of step 1 at offset at (from the end when at < 0). */
static void patch(long at, const void *b, size_t n)
{
    char path[256];
    path_of(path, sizeof path, 1, 0);
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    off_t off = at >= 0 ? at : lseek(fd, 0, SEEK_END) + at;
    ck_assert_int_eq(pwrite(fd, b, n, off), (ssize_t)n);
    close(fd);
}

START_TEST(test_bad_files)
{
    uint8_t buf[4096];
    pippy_ckpt_part p = {"params", buf, 1000};
    write_set_file(tmp, 1, 0, 1000);
    read_fails(1, 0, HASH ^ 1, &p, 1, PIPPY_ERR_INVALID, "from another compile (hash 0123456789abcdef, expected");
    read_fails(1, 1, HASH, &p, 1, PIPPY_ERR_IO, "cannot open");
    read_fails(2, 0, HASH, &p, 1, PIPPY_ERR_IO, "No such file");
    pippy_ckpt_part q = {"adam", buf, 8};
    read_fails(1, 0, HASH, &q, 1, PIPPY_ERR_FORMAT, "no part 'adam' (the file has: params, optim, meta)");
    p.bytes = 999;
    read_fails(1, 0, HASH, &p, 1, PIPPY_ERR_FORMAT, "part 'params' is 1000 bytes, expected 999");
    p.bytes = 1000;
    /* a file renamed to another stage's or step's name */
    char a[256], b[256];
    path_of(a, sizeof a, 1, 0);
    path_of(b, sizeof b, 1, 3);
    ck_assert_int_eq(link(a, b), 0);
    read_fails(1, 3, HASH, &p, 1, PIPPY_ERR_FORMAT, "holds stage 0 of step 1, expected stage 3 of step 1");
    /* one flipped bit in the data */
    uint8_t x = 0x5a;
    patch(300, &x, 1);
    read_fails(1, 0, HASH, &p, 1, PIPPY_ERR_FORMAT, "checksum mismatch");
    /* also when the damaged part is not read */
    pippy_ckpt_part m = {"meta", buf, 24};
    read_fails(1, 0, HASH, &m, 1, PIPPY_ERR_FORMAT, "checksum mismatch");
    write_set_file(tmp, 1, 0, 1000);
    patch(-3, &x, 1); /* in the trailer */
    read_fails(1, 0, HASH, &p, 1, PIPPY_ERR_FORMAT, "checksum mismatch");
    write_set_file(tmp, 1, 0, 1000);
    patch(0, "PIPPYWT1", 8);
    read_fails(1, 0, HASH, &p, 1, PIPPY_ERR_FORMAT, "not a pippyc checkpoint (magic 'PIPPYWT1'");
    write_set_file(tmp, 1, 0, 1000);
    uint32_t v = 7;
    patch(8, &v, 4);
    read_fails(1, 0, HASH, &p, 1, PIPPY_ERR_FORMAT, "format version 7");
    write_set_file(tmp, 1, 0, 1000);
    uint64_t off = 1ull << 40;
    patch(64 + 40, &off, 8); /* first entry's offset */
    read_fails(1, 0, HASH, &p, 1, PIPPY_ERR_FORMAT, "damaged entry 0");
    /* truncated files: by one byte, to half, to a few bytes */
    write_set_file(tmp, 1, 0, 1000);
    long sizes[] = {1000 + 256 + 64 + 8 - 1, 600, 10};
    const char *msgs[] = {"but its header says", "but its header says", "shorter than its header"};
    for (int i = 0; i < 3; i++) {
        path_of(a, sizeof a, 1, 0);
        ck_assert_int_eq(truncate(a, sizes[i]), 0);
        read_fails(1, 0, HASH, &p, 1, PIPPY_ERR_FORMAT, msgs[i]);
    }
    /* an empty file, and a folder where the file should be */
    ck_assert_int_eq(truncate(a, 0), 0);
    read_fails(1, 0, HASH, &p, 1, PIPPY_ERR_FORMAT, "not a pippyc checkpoint");
    /* an allocated part is freed and reset on failure */
    pippy_ckpt_part al = {"params", NULL, 0};
    ck_assert_int_ne(pippy_ckpt_read(tmp, 1, 0, HASH, &al, 1), PIPPY_OK);
    ck_assert_ptr_null(al.data);
}
END_TEST

START_TEST(test_bad_writes)
{
    uint8_t b[8] = {0};
    pippy_ckpt_part two[2] = {{"x", b, 8}, {"x", b, 8}};
    ck_assert_int_eq(pippy_ckpt_write(tmp, 1, 0, HASH, two, 2), PIPPY_ERR_INVALID);
    ck_assert(strstr(pippy_last_error(), "part 'x' given twice"));
    pippy_ckpt_part longname = {"a_name_that_is_far_too_long_for_the_entry", b, 8};
    ck_assert_int_eq(pippy_ckpt_write(tmp, 1, 0, HASH, &longname, 1), PIPPY_ERR_INVALID);
    ck_assert(strstr(pippy_last_error(), "1 to 39 characters"));
    pippy_ckpt_part nodata = {"x", NULL, 8};
    ck_assert_int_eq(pippy_ckpt_write(tmp, 1, 0, HASH, &nodata, 1), PIPPY_ERR_INVALID);
    ck_assert_int_eq(pippy_ckpt_write(tmp, -1, 0, HASH, NULL, 0), PIPPY_ERR_INVALID);
    /* a folder that cannot be created (its parent is missing): a clear error */
    char dir[128];
    snprintf(dir, sizeof dir, "%s/no/such", tmp);
    ck_assert_int_eq(pippy_ckpt_write(dir, 1, 0, HASH, NULL, 0), PIPPY_ERR_IO);
    ck_assert_msg(strstr(pippy_last_error(), "cannot create folder") && strstr(pippy_last_error(), dir), "%s",
                  pippy_last_error());
    /* a file where the folder should be */
    snprintf(dir, sizeof dir, "%s/file", tmp);
    fclose(fopen(dir, "w"));
    ck_assert_int_eq(pippy_ckpt_write(dir, 1, 0, HASH, NULL, 0), PIPPY_ERR_IO);
    ck_assert(strstr(pippy_last_error(), "is not a folder"));
}
END_TEST

static int count_steps(void)
{
    int n = 0;
    for (int64_t s = 0; s < 40; s++) {
        char d[128];
        struct stat st;
        snprintf(d, sizeof d, "%s/step-%lld", tmp, (long long)s);
        n += stat(d, &st) == 0;
    }
    return n;
}

START_TEST(test_commit_latest_prune)
{
    int64_t step = 99;
    ck_assert_int_eq(pippy_ckpt_latest(tmp, &step), PIPPY_OK);
    ck_assert_int_eq(step, -1);
    ck_assert_int_eq(pippy_ckpt_latest("/tmp/pippy_no_such_dir_for_ckpt", &step), PIPPY_OK);
    ck_assert_int_eq(step, -1);
    for (int64_t s = 1; s <= 3; s++) {
        write_set_file(tmp, s * 10, 0, 100);
        /* stage 1 missing: the commit refuses and latest keeps the previous step */
        ck_assert_int_eq(pippy_ckpt_commit(tmp, s * 10, 2), PIPPY_ERR_IO);
        ck_assert_msg(strstr(pippy_last_error(), "cannot commit step") && strstr(pippy_last_error(), "stage1.ckpt"),
                      "%s", pippy_last_error());
        ck_assert_int_eq(pippy_ckpt_latest(tmp, &step), PIPPY_OK);
        ck_assert_int_eq(step, s == 1 ? -1 : (s - 1) * 10);
        write_set_file(tmp, s * 10, 1, 100);
        ck_assert_msg(pippy_ckpt_commit(tmp, s * 10, 2) == PIPPY_OK, "%s", pippy_last_error());
        ck_assert_int_eq(pippy_ckpt_latest(tmp, &step), PIPPY_OK);
        ck_assert_int_eq(step, s * 10);
        ck_assert_int_eq(count_steps(), 1); /* older sets removed */
    }
    /* a truncated stage file is not committed */
    write_set_file(tmp, 35, 0, 100);
    write_set_file(tmp, 35, 1, 100);
    char p[256];
    path_of(p, sizeof p, 35, 1);
    ck_assert_int_eq(truncate(p, 50), 0);
    ck_assert_int_eq(pippy_ckpt_commit(tmp, 35, 2), PIPPY_ERR_FORMAT);
    /* prune keeps only latest's folder */
    ck_assert_int_eq(count_steps(), 2);
    ck_assert_int_eq(pippy_ckpt_prune(tmp, 30), PIPPY_OK);
    ck_assert_int_eq(count_steps(), 1);
    ck_assert_int_eq(pippy_ckpt_latest(tmp, &step), PIPPY_OK);
    ck_assert_int_eq(step, 30);
    /* latest damaged or pointing nowhere */
    const char *bad[] = {"", "abc\n", "12", "-3\n", "7\n"};
    const char *msg[] = {"expected a step number", "found 'abc'", "found '12'", "found '-3'", "names step 7"};
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/latest", tmp);
        FILE *f = fopen(p, "w");
        fputs(bad[i], f);
        fclose(f);
        pippy_status st = pippy_ckpt_latest(tmp, &step);
        ck_assert_msg(st != PIPPY_OK && strstr(pippy_last_error(), msg[i]) && strstr(pippy_last_error(), p),
                      "'%s': %s", bad[i], pippy_last_error());
        ck_assert_int_eq(step, -1);
    }
}
END_TEST

/* ---- writers killed at random moments ---- */

#define KILL_STAGES 3
#define KILL_BYTES (1u << 20)

/* Resume from latest (pruning what a killed predecessor left), then write and commit steps
 * forever; each part's bytes are a function of (step, stage). */
static void kill_writer(void)
{
    int64_t step;
    if (pippy_ckpt_latest(tmp, &step) != PIPPY_OK || pippy_ckpt_prune(tmp, step) != PIPPY_OK)
        _exit(3);
    uint8_t *p = malloc(KILL_BYTES);
    for (step++;; step++) {
        for (int k = 0; k < KILL_STAGES; k++) {
            size_t n = KILL_BYTES - (size_t)k * 1000;
            fill(p, n, (uint64_t)step * 100 + (uint64_t)k);
            uint64_t meta[2] = {(uint64_t)step, (uint64_t)k};
            pippy_ckpt_part parts[2] = {{"params", p, n}, {"meta", meta, sizeof meta}};
            if (pippy_ckpt_write(tmp, step, k, HASH, parts, 2) != PIPPY_OK)
                _exit(4);
        }
        if (pippy_ckpt_commit(tmp, step, KILL_STAGES) != PIPPY_OK)
            _exit(5);
    }
}

/* latest names a set whose every file reads back, checksum and contents right. */
static int64_t check_latest(int round)
{
    int64_t step;
    pippy_status st = pippy_ckpt_latest(tmp, &step);
    ck_assert_msg(st == PIPPY_OK, "round %d: %s", round, pippy_last_error());
    for (int k = 0; step >= 0 && k < KILL_STAGES; k++) {
        uint64_t meta[2];
        pippy_ckpt_part parts[2] = {{"params", NULL, 0}, {"meta", meta, sizeof meta}};
        st = pippy_ckpt_read(tmp, step, k, HASH, parts, 2);
        ck_assert_msg(st == PIPPY_OK, "round %d, latest %lld, stage %d: %s", round, (long long)step, k,
                      pippy_last_error());
        ck_assert_uint_eq(parts[0].bytes, KILL_BYTES - (size_t)k * 1000);
        ck_assert_msg(meta[0] == (uint64_t)step && meta[1] == (uint64_t)k &&
                          same(parts[0].data, parts[0].bytes, (uint64_t)step * 100 + (uint64_t)k),
                      "round %d: stage %d of step %lld has other contents", round, k, (long long)step);
        free(parts[0].data);
    }
    return step;
}

START_TEST(test_killed_writers)
{
    srand((unsigned)time(NULL));
    int64_t prev = -1;
    int rounds = 30, moved = 0;
    for (int r = 0; r < rounds; r++) {
        fflush(stdout);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            alarm(30);
            kill_writer();
        }
        usleep((useconds_t)(rand() % 250000));
        kill(pid, SIGKILL);
        int ws;
        waitpid(pid, &ws, 0);
        ck_assert_msg(WIFSIGNALED(ws), "round %d: the writer ended by itself (status %d)", r, ws);
        int64_t now = check_latest(r);
        ck_assert_msg(now >= prev, "round %d: latest went back from %lld to %lld", r, (long long)prev,
                      (long long)now);
        moved += now > prev;
        prev = now;
    }
    printf("ckpt: %d writers killed at random moments, latest advanced in %d rounds, to step %lld, always whole\n",
           rounds, moved, (long long)prev);
    ck_assert_msg(moved >= rounds / 4, "latest advanced in %d of %d rounds only: the kill test hardly tests", moved,
                  rounds);
}
END_TEST

static Suite *ckpt_suite(void)
{
    Suite *s = suite_create("ckpt");
    TCase *tc = tcase_create("ckpt");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_checksum_is_crc32);
    tcase_add_test(tc, test_bad_files);
    tcase_add_test(tc, test_bad_writes);
    tcase_add_test(tc, test_commit_latest_prune);
    tcase_add_test(tc, test_killed_writers);
    suite_add_tcase(s, tc);
    return s;
}
PIPPY_TEST_SUITE(ckpt_suite)
