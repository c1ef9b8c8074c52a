// tests/check.h - the tests' assertion. CHECK(cond, "format", ...) counts a pass, or prints "FAIL file:line: message"
// and counts a failure; a test ends by printing "test_NAME: <passed> passed, <failed> failed", which
// tests/run_tests.sh adds up. (test_kernels and the tokenizer test keep their own, which cap how many failures they print.)
#ifndef TBC_TESTS_CHECK_H
#define TBC_TESTS_CHECK_H
#include <stdio.h>

static int passed, failed;
#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (cond) passed++;                                                                                            \
        else { failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); }             \
    } while (0)

#endif
