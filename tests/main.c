/* main.c - run every Check suite; `make check` runs this. Check prints one summary line at
 * the end ("100%: Checks: N, Failures: 0, Errors: 0"); the exit status is 0 only if all pass.
 * CK_RUN_SUITE / CK_RUN_CASE select a part, as Check documents. */
#include "suites.h"

#include <stdlib.h>

int main(void)
{
    SRunner *sr = srunner_create(proto_suite());
    srunner_add_suite(sr, servers_suite());
    srunner_add_suite(sr, timeouts_suite());
    srunner_add_suite(sr, hostile_suite());
    srunner_add_suite(sr, loadgen_suite());
    srunner_add_suite(sr, runall_suite());
    srunner_add_suite(sr, labs_suite());
    srunner_add_suite(sr, stamps_suite());
    srunner_add_suite(sr, bench_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
