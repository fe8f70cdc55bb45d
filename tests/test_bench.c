/* test_bench.c - (being written for issue 7) */
#include "suites.h"

Suite *bench_suite(void)
{
    Suite *s = suite_create("bench");
    return s;
}
