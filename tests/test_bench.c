/* test_bench.c - `make bench` and `make bench-scale`: the drivers and what they write.
 *
 * Both drivers run their tiny test profile (BENCH_PROFILE=test: one repetition of 0.3 s runs at
 * 1 and 10 connections) into a temporary directory, and tests/check-bench recomputes every
 * median, ratio and verdict of bench.json and scale.json from the raw runs/ JSON files with
 * awk. The figures are never asserted: a benchmark's numbers are its output, not a test's. What is
 * asserted is that nothing is lost or made up: every run listed has its file, every server has
 * its row, a failed server run is shown as failed, and an edited run file makes the checker
 * fail. */
#include "helpers.h"
#include "suites.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SOURCE_DIR
#define SOURCE_DIR "."
#endif
#ifndef BUILD_DIR
#define BUILD_DIR "build"
#endif

static char root[] = "/tmp/iomodels-bench-XXXXXX";
static int bench_status = -1, scale_status = -1, failing_status = -1;
static char bench_output[1 << 16], scale_output[1 << 16], failing_output[1 << 16];

/* The three runs every test below looks at, once, in the parent (an unchecked fixture):
 *   bench    the test profile, every server
 *   scale    bench-scale's test profile
 *   failing  a build directory where "libevent" is a stand-in that says it listens and exits
 *            at once (so its run fails), "nosuch" is not built at all, and the pair point (10
 *            connections) is not among BENCH_CONNS (so its runs are added on their own). */
static void run_once(void)
{
    if (mkdtemp(root) == NULL) {
        snprintf(bench_output, sizeof bench_output, "mkdtemp %s failed", root);
        return;
    }
    bench_status = sh(bench_output, sizeof bench_output,
                      "BENCH_PROFILE=test BENCH_OUT='%s/bench' IOMODELS_BUILD='%s' plots/bench",
                      root, BUILD_DIR);
    scale_status = sh(scale_output, sizeof scale_output,
                      "BENCH_PROFILE=test BENCH_SCALE_OUT='%s/scale' IOMODELS_BUILD='%s' "
                      "plots/bench-scale",
                      root, BUILD_DIR);
    failing_status = sh(failing_output, sizeof failing_output,
                        "mkdir '%s/build' && for b in epoll loadgen baseline_client; do "
                        "[ -x '%s'/$b ] && ln -s '%s'/$b '%s/build/'$b; done; "
                        "printf '#!/bin/sh\\necho \"listening on 127.0.0.1:1\"\\nexit 3\\n' "
                        "> '%s/build/libevent' && chmod +x '%s/build/libevent' && "
                        "BENCH_PROFILE=test BENCH_CONNS=1 BENCH_SERVERS='epoll libevent nosuch' "
                        "BENCH_OUT='%s/failing' IOMODELS_BUILD='%s/build' plots/bench",
                        root, BUILD_DIR, BUILD_DIR, root, root, root, root, root);
}

static void remove_results(void)
{
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (strstr(root, "XXXXXX") == NULL && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
}

START_TEST(test_bench_results_match_runs)
{
    ck_assert_msg(bench_status == 0, "plots/bench BENCH_PROFILE=test exited %d:\n%s", bench_status,
                  tail(bench_output, 3000));
    static char out[1 << 16];
    int rc = sh(out, sizeof out, "tests/check-bench '%s/bench'", root);
    ck_assert_msg(rc == 0 && strstr(out, "checked: ") != NULL, "tests/check-bench found:\n%s",
                  tail(out, 3000));
}
END_TEST

START_TEST(test_bench_json_and_table)
{
    ck_assert_int_eq(bench_status, 0);
    static char out[1 << 16];
    /* the keys, the settings of the test profile, and every target of the issue */
    int rc = sh(out, sizeof out,
                "jq -e '.tool == \"bench\" and .profile == \"test\" and .settings.reps == 1 "
                "and .settings.conns == [1, 10] and .settings.sizes == [64] "
                "and (.env | has(\"kernel\") and has(\"cpu_model\") and has(\"cpus\") "
                "and has(\"libevent\") and has(\"libuv\") and has(\"liburing\") and has(\"gcc\") "
                "and has(\"git_commit\") and has(\"date_utc\")) "
                "and ([.ratios[].name] | unique) == [\"epoll/libevent\", \"epoll/libuv\", "
                "\"epoll_et/libevent\", \"epoll_et/libuv\", \"loadgen/baseline\", "
                "\"stamps on/off\", \"uring/epoll\"] "
                "and all(.ratios[]; .verdict | IN(\"met\", \"MISSED\", \"n/a\", \"no target\"))' "
                "'%s/bench/bench.json'",
                root);
    ck_assert_msg(rc == 0, "bench.json:\n%s", out);
    /* every run listed that happened has its JSON, and commands.txt has its command */
    rc = sh(out, sizeof out,
            "d='%s/bench'; n=0; for f in $(jq -r '.runs[] | select(.status != \"not run\") "
            "| .file' $d/bench.json); do jq -e . $d/$f > /dev/null || echo \"bad $f\"; "
            "n=$((n + 1)); done; echo \"runs=$n\"",
            root);
    ck_assert_msg(strstr(out, "bad ") == NULL && strstr(out, "runs=0") == NULL, "%s", out);
    /* the printed table: a row for every server at every point, the stamps and client rows */
    rc = sh(out, sizeof out,
            "d='%s/bench'; for c in 1 10; do for m in epoll epoll_et uring libevent libuv; do "
            "grep -Eq \"^ *$c +64 +$m \" $d/bench.txt || echo \"no row $m $c\"; done; done; "
            "grep -Eq '^ *10 +64 +epoll --no-stamps' $d/bench.txt || echo 'no --no-stamps row'; "
            "grep -q '^loadgen ' $d/bench.txt || echo 'no loadgen row'; "
            "grep -q '^baseline_client ' $d/bench.txt || echo 'no baseline row'; "
            "grep -q '^stamps on/off ' $d/bench.txt || echo 'no stamps ratio'; "
            "grep -q '^Elapsed: ' $d/bench.txt || echo 'no elapsed time'",
            root);
    ck_assert_msg(out[0] == '\0', "bench.txt:\n%s", out);
    /* the table is printed too */
    ck_assert_msg(strstr(bench_output, "\nTargets: ") != NULL &&
                      strstr(bench_output, "\nElapsed: "),
                  "the table was not printed:\n%s", tail(bench_output, 2000));
}
END_TEST

START_TEST(test_checker_catches_an_edited_run)
{
    ck_assert_int_eq(bench_status, 0);
    static char out[1 << 16];
    /* Double the server CPU of one successful run in a copy: its median and its ratios change. */
    sh(out, sizeof out,
       "d=$(mktemp -d) && cp -r '%s/bench'/. \"$d\" && "
       "f=$(jq -r '[.runs[] | select(.status == \"ok\" and .kind == \"server\")][0].file' "
       "\"$d/bench.json\") && jq '.server_stats_per_request.cpu_sys_us *= 2' \"$d/$f\" > "
       "\"$d/x\" && mv \"$d/x\" \"$d/$f\" && tests/check-bench \"$d\"; echo \"exit=$?\"; "
       "rm -rf \"$d\"",
       root);
    ck_assert_msg(strstr(out, "FAIL: ") != NULL && strstr(out, "median cpu_us") != NULL,
                  "an edited run file was not caught:\n%s", tail(out, 2000));
    ck_assert_msg(strstr(out, "exit=1") != NULL, "check-bench did not exit 1:\n%s",
                  tail(out, 2000));
    /* ... and a summary whose verdict is not what its own ratio says */
    sh(out, sizeof out,
       "d=$(mktemp -d) && cp -r '%s/bench'/. \"$d\" && "
       "jq '.ratios[0].verdict = (if .ratios[0].verdict == \"met\" then \"MISSED\" else \"met\" "
       "end)' \"$d/bench.json\" > \"$d/x\" && mv \"$d/x\" \"$d/bench.json\" && "
       "tests/check-bench \"$d\"; echo \"exit=$?\"; rm -rf \"$d\"",
       root);
    ck_assert_msg(strstr(out, ": verdict ") != NULL && strstr(out, "exit=1") != NULL,
                  "a wrong verdict was not caught:\n%s", tail(out, 2000));
}
END_TEST

START_TEST(test_failed_and_missing_servers_are_shown)
{
    ck_assert_msg(failing_status == 0, "plots/bench with a failing server exited %d:\n%s",
                  failing_status, tail(failing_output, 3000));
    static char out[1 << 16];
    int rc = sh(out, sizeof out, "tests/check-bench '%s/failing'", root);
    ck_assert_msg(rc == 0, "tests/check-bench found:\n%s", tail(out, 3000));
    rc = sh(out, sizeof out,
            "d='%s/failing'; jq -e '(.runs[] | select(.name == \"libevent-c1-s64-r1\") "
            "| .status == \"failed\" and .server_exit == 3) "
            "and (.runs[] | select(.name == \"nosuch-c1-s64-r1\") | .status == \"not run\") "
            "and any(.points[]; .server == \"epoll\" and .conns == 10 and .ok == 1) "
            "and (.ratios[] | select(.name == \"epoll/libevent\") | .verdict == \"n/a\")' "
            "$d/bench.json > /dev/null || echo 'bench.json'; "
            "grep -Eq '^ *1 +64 +libevent +0/1 +no run succeeded' $d/bench.txt || echo row; "
            "grep -Eq '^ *1 +64 +nosuch +not run: ' $d/bench.txt || echo 'not-run row'; "
            "grep -q '^  libevent-c1-s64-r1: ' $d/bench.txt || echo 'failed list'",
            root);
    ck_assert_msg(out[0] == '\0', "the failing server's run: %s\n%s", out,
                  tail(failing_output, 3000));
}
END_TEST

START_TEST(test_scale_results_match_runs)
{
    ck_assert_msg(scale_status == 0, "plots/bench-scale BENCH_PROFILE=test exited %d:\n%s",
                  scale_status, tail(scale_output, 3000));
    static char out[1 << 16];
    int rc = sh(out, sizeof out, "tests/check-bench '%s/scale'", root);
    ck_assert_msg(rc == 0 && strstr(out, "checked: ") != NULL, "tests/check-bench found:\n%s",
                  tail(out, 3000));
    rc = sh(out, sizeof out,
            "d='%s/scale'; jq -e '.tool == \"bench-scale\" and .settings.conns == [10, 100] "
            "and all(.points[]; has(\"mem_per_conn_bytes\") and has(\"buffer_per_conn_bytes\") "
            "and has(\"zero_errors\"))' $d/scale.json > /dev/null || echo scale.json; "
            "for c in 10 100; do for m in epoll epoll_et uring libevent libuv; do "
            "grep -Eq \"^$m( \\(reference\\))? +$c \" $d/scale.txt || echo \"no row $m $c\"; "
            "done; done; for m in epoll epoll_et uring; do "
            "grep -Eq \"^zero errors, $m: (yes|NO) \" $d/scale.txt || echo \"no zero-errors $m\"; "
            "done",
            root);
    ck_assert_msg(out[0] == '\0', "scale.json or scale.txt:\n%s", out);
    /* an edited run file fails the check */
    sh(out, sizeof out,
       "d=$(mktemp -d) && cp -r '%s/scale'/. \"$d\" && "
       "f=$(jq -r '[.runs[] | select(.status == \"ok\")][0].file' \"$d/scale.json\") && "
       "jq '.throughput_rps *= 3' \"$d/$f\" > \"$d/x\" && mv \"$d/x\" \"$d/$f\" && "
       "tests/check-bench \"$d\"; echo \"exit=$?\"; rm -rf \"$d\"",
       root);
    ck_assert_msg(strstr(out, "FAIL: ") != NULL && strstr(out, "exit=1") != NULL,
                  "an edited scale run was not caught:\n%s", tail(out, 2000));
}
END_TEST

Suite *bench_suite(void)
{
    Suite *s = suite_create("bench");
    TCase *t = tcase_create("drivers");
    /* one process for the whole case, so the runs are shared; removed at exit */
    tcase_add_unchecked_fixture(t, run_once, remove_results);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_bench_results_match_runs);
    tcase_add_test(t, test_bench_json_and_table);
    tcase_add_test(t, test_checker_catches_an_edited_run);
    tcase_add_test(t, test_failed_and_missing_servers_are_shown);
    tcase_add_test(t, test_scale_results_match_runs);
    suite_add_tcase(s, t);
    return s;
}
