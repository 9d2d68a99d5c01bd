/* harness.h — registration of Check suites into the one unit-test binary.
 * In a test file:  static Suite *my_suite(void) {...}  PIPPY_TEST_SUITE(my_suite)
 * Paths: tests run from the repository root; PIPPY_BUILD (env) names the build dir. */
#ifndef PIPPY_TEST_HARNESS_H
#define PIPPY_TEST_HARNESS_H
#include <check.h>

void pippy_test_register(Suite *(*make)(void));
/* The build directory (e.g. "build" or "build-san"). */
const char *pippy_test_build_dir(void);
/* Remove a folder and everything below it (temporary folders of tests). */
void pippy_test_rmtree(const char *dir);

#define PIPPY_TEST_SUITE(fn) \
    __attribute__((constructor)) static void pippy_register_##fn(void) { pippy_test_register(fn); }

#endif
