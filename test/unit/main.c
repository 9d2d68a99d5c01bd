/* main.c — runs every registered Check suite; prints Check's summary line. */
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
