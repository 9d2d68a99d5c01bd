/* harness.h — registration of Check suites into the one unit-test binary.
 * In a test file:  static Suite *my_suite(void) {...}  PIPPY_TEST_SUITE(my_suite)
 * Paths: tests run from the repository root; PIPPY_BUILD (env) names the build dir. */
#ifndef PIPPY_TEST_HARNESS_H
#define PIPPY_TEST_HARNESS_H
#include <check.h>
#include <stdint.h>

void pippy_test_register(Suite *(*make)(void));
/* The build directory (e.g. "build" or "build-san"). */
const char *pippy_test_build_dir(void);
/* Remove a folder and everything below it (temporary folders of tests). */
void pippy_test_rmtree(const char *dir);

/* The mutators' deterministic random numbers (xorshift64; *state must not be 0). */
static inline uint64_t pippy_test_rand(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

#define PIPPY_TEST_SUITE(fn) \
    __attribute__((constructor)) static void pippy_register_##fn(void) { pippy_test_register(fn); }

#endif
