/* test_runall.c - `make run-all`'s pipeline: measure (PROFILE=test), derive, draw, report.
 *
 * The driver runs with its tiny test profile (two models, a few seconds) into a temporary
 * directory, and tests/check-results compares what it wrote with the raw loadgen JSON: the
 * environment, the data files, the eight figures, and the report's headline figures. The
 * gnuplot scripts also render the hand-made fixture data in tests/fixtures/results (with two
 * reference servers). And the checker itself must catch a report whose figures are not the runs'.
 *
 * The test profile also measures one reference server, libevent, when it is built: its rows
 * must then be set apart; when it is not built (no libevent-dev), run-all must skip it with
 * the reason, and those tests check that instead. */
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

static char results_root[] = "/tmp/iomodels-runall-XXXXXX";
static char run_dir[512];
static int run_status = -1;
static char run_output[1 << 16];

/* One run of the test profile serves every test below (it takes a few seconds). Check runs
 * each test in a child process, so the run happens once, in the parent, as the case's
 * unchecked fixture; each test then checks how it went. */
static void run_once(void)
{
    if (mkdtemp(results_root) == NULL) {
        snprintf(run_output, sizeof run_output, "mkdtemp %s failed", results_root);
        return;
    }
    snprintf(run_dir, sizeof run_dir, "%s/latest", results_root);
    run_status =
        sh(run_output, sizeof run_output, "PROFILE=test RESULTS_ROOT='%s' BUILD='%s' plots/run-all",
           results_root, BUILD_DIR);
}

static void run_test_profile(void)
{
    ck_assert_msg(run_status == 0, "plots/run-all PROFILE=test exited %d:\n%s", run_status,
                  tail(run_output, 3000));
}

/* The test profile's reference server is measured only where it was built. */
static int reference_built(void)
{
    return access(BUILD_DIR "/libevent", X_OK) == 0;
}

START_TEST(test_profile_results_match_runs)
{
    run_test_profile();
    static char out[1 << 16];
    int rc = sh(out, sizeof out, "tests/check-results '%s'", run_dir);
    ck_assert_msg(rc == 0, "tests/check-results found:\n%s", tail(out, 3000));
    ck_assert_msg(strstr(out, "checked: ") != NULL, "no summary from check-results:\n%s", out);
}
END_TEST

START_TEST(test_report_names_every_figure_and_setting)
{
    run_test_profile();
    static char out[1 << 16];
    /* the test profile measured both models it names (and its reference server, if built),
     * and says which profile it was */
    int rc = sh(out, sizeof out,
                "jq -e '.profile == \"test\" and .models == [\"blocking\", \"epoll\"]"
                " and .references == [\"libevent\"] and .measured == [\"blocking\", \"epoll\"%s]'"
                " '%s/env.json' && grep -c '^## ' '%s/report.md'",
                reference_built() ? ", \"libevent\"" : "", run_dir, run_dir);
    ck_assert_msg(rc == 0, "env.json or report.md:\n%s", out);
    ck_assert_msg(atoi(out + strcspn(out, "0123456789")) >= 10,
                  "report.md has too few sections (eight figures, headline, environment...): %s",
                  out);
    /* the iterative server's stop at 10 connections is in the data, with its reason */
    rc = sh(out, sizeof out, "grep '^blocking 10 ' '%s/data/scale.dat'", run_dir);
    ck_assert_msg(rc == 0 && strstr(out, "stopped") && strstr(out, "never served"),
                  "blocking at 10 connections should be stopped, never served: %s", out);
}
END_TEST

START_TEST(test_reference_server_set_apart)
{
    run_test_profile();
    static char out[1 << 16];
    if (!reference_built()) {
        /* skipped before anything ran, with the reason, and nowhere in the data */
        int rc =
            sh(out, sizeof out,
               "jq -e 'any(.skipped[]; .model == \"libevent\" and (.reason | test(\"not built\")))'"
               " '%s/env.json' && ! grep -q '^libevent ' '%s'/data/*.dat"
               " && grep -q 'skipped: libevent: not built' '%s/report.md'",
               run_dir, run_dir, run_dir);
        ck_assert_msg(rc == 0, "libevent is not built: run-all should skip it with the reason:\n%s",
                      out);
        return;
    }
    /* a row at each scaling point, its library's copy an n/a phase, in a table of its own with
     * our epoll's CPU per request compared with it */
    int rc = sh(out, sizeof out,
                "cd '%s' && test \"$(cat data/references.txt)\" = libevent"
                " && test \"$(grep -c '^libevent [0-9]* ' data/scale.dat)\" = 2"
                " && grep -q '^libevent library NaN NaN NaN NaN ' data/phases.dat"
                " && grep -q '^libevent 1 .* unknown ' data/timeline.dat"
                " && grep -qF '**Reference servers (production libraries).**' report.md"
                " && grep -q '^At 10 connections our \\*\\*epoll\\*\\* used .* libevent' report.md",
                run_dir);
    ck_assert_msg(rc == 0, "libevent's reference rows:\n%s", out);
}
END_TEST

START_TEST(test_checker_catches_a_wrong_report)
{
    run_test_profile();
    static char out[1 << 16];
    /* Change the epoll headline figure in a copy of the report: the checker must say so. */
    int rc = sh(out, sizeof out,
                "d=$(mktemp -d) && cp -r '%s'/. \"$d\" && "
                "awk '/^## Headline/ { on = 1 } on && /^\\| *`?epoll`? *\\|/ && !done { "
                "sub(/\\| *[0-9]+ *\\|/, \"| 12345678 |\"); done = 1 } { print }' '%s/report.md' "
                "> \"$d/report.md\" && ! cmp -s '%s/report.md' \"$d/report.md\" && "
                "tests/check-results \"$d\"; echo \"exit=$?\"; rm -rf \"$d\"",
                run_dir, run_dir, run_dir);
    (void)rc;
    ck_assert_msg(strstr(out, "FAIL: report headline epoll") != NULL,
                  "a falsified headline figure was not caught:\n%s", tail(out, 2000));
    ck_assert_msg(strstr(out, "exit=1") != NULL, "check-results did not exit 1:\n%s",
                  tail(out, 2000));
    /* ... and a missing figure */
    sh(out, sizeof out,
       "d=$(mktemp -d) && cp -r '%s'/. \"$d\" && rm \"$d/idle.png\" && "
       "tests/check-results \"$d\"; echo \"exit=$?\"; rm -rf \"$d\"",
       run_dir);
    ck_assert_msg(strstr(out, "FAIL: idle.png") != NULL && strstr(out, "exit=1") != NULL,
                  "a missing figure was not caught:\n%s", tail(out, 2000));
    if (!reference_built())
        return;
    /* ... and a wrong figure in the comparison with the reference server */
    sh(out, sizeof out,
       "d=$(mktemp -d) && cp -r '%s'/. \"$d\" && "
       "sed -i '/our \\*\\*epoll\\*\\* used/s/libevent'\\''s [0-9.]* µs/libevent'\\''s 0.1 µs/'"
       " \"$d/report.md\" && ! cmp -s '%s/report.md' \"$d/report.md\" && "
       "tests/check-results \"$d\"; echo \"exit=$?\"; rm -rf \"$d\"",
       run_dir, run_dir);
    ck_assert_msg(strstr(out, "FAIL: report: epoll against libevent") != NULL &&
                      strstr(out, "exit=1") != NULL,
                  "a falsified comparison with libevent was not caught:\n%s", tail(out, 2000));
}
END_TEST

START_TEST(test_make_plots_redraws_from_saved_data)
{
    run_test_profile();
    static char out[1 << 16];
    int rc = sh(out, sizeof out,
                "d=$(mktemp -d) && cp -r '%s'/. \"$d\" && rm -f \"$d\"/*.png \"$d\"/*.svg "
                "\"$d\"/report.* \"$d\"/data/*.dat && plots/make-plots \"$d\" && "
                "tests/check-results \"$d\" && for f in data/scale.dat data/phases.dat; do "
                "cmp \"$d/$f\" '%s/'$f || exit 1; done; s=$?; rm -rf \"$d\"; exit $s",
                run_dir, run_dir);
    ck_assert_msg(rc == 0, "make-plots on saved data:\n%s", tail(out, 3000));
}
END_TEST

START_TEST(test_fixtures_render)
{
    static char out[1 << 16];
    int rc = sh(out, sizeof out,
                "d=$(mktemp -d) && cp -r tests/fixtures/results/. \"$d\" && plots/draw \"$d\" && "
                "tests/check-results --figures \"$d\"; s=$?; rm -rf \"$d\"; exit $s");
    ck_assert_msg(rc == 0, "rendering the fixtures:\n%s", tail(out, 3000));
    ck_assert_msg(strcasestr(out, "warning") == NULL, "gnuplot warned:\n%s", tail(out, 3000));
}
END_TEST

static void remove_results(void)
{
    if (run_dir[0]) {
        run_dir[0] = '\0';
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", results_root);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", results_root);
    }
}

Suite *runall_suite(void)
{
    Suite *s = suite_create("run-all");
    TCase *t = tcase_create("pipeline");
    /* one process for the whole case, so the run is shared; removed at exit */
    tcase_add_unchecked_fixture(t, run_once, remove_results);
    tcase_set_timeout(t, 180);
    tcase_add_test(t, test_fixtures_render);
    tcase_add_test(t, test_profile_results_match_runs);
    tcase_add_test(t, test_report_names_every_figure_and_setting);
    tcase_add_test(t, test_reference_server_set_apart);
    tcase_add_test(t, test_checker_catches_a_wrong_report);
    tcase_add_test(t, test_make_plots_redraws_from_saved_data);
    suite_add_tcase(s, t);
    return s;
}
