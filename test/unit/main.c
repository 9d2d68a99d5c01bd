/* main.c — runs every registered Check suite; prints Check's summary line. */
#define _GNU_SOURCE /* nftw */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

#define PIPPY_MAX_SUITES 64
static Suite *(*pippy_suites[PIPPY_MAX_SUITES])(void);
static int pippy_n_suites;

void pippy_test_register(Suite *(*make)(void))
{
    if (pippy_n_suites < PIPPY_MAX_SUITES)
        pippy_suites[pippy_n_suites++] = make;
}

const char *pippy_test_build_dir(void)
{
    const char *b = getenv("PIPPY_BUILD");
    return b && b[0] ? b : "build";
}

static int pippy_rm_one(const char *p, const struct stat *s, int flag, struct FTW *f)
{
    (void)s;
    (void)flag;
    (void)f;
    return remove(p);
}

void pippy_test_rmtree(const char *dir) { nftw(dir, pippy_rm_one, 16, FTW_DEPTH | FTW_PHYS); }

int main(void)
{
    SRunner *sr = srunner_create(NULL);
    for (int i = 0; i < pippy_n_suites; i++)
        srunner_add_suite(sr, pippy_suites[i]());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
