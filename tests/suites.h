/* suites.h - the Check suites that tests/main.c runs. */
#ifndef IOMODELS_TEST_SUITES_H
#define IOMODELS_TEST_SUITES_H

#include <check.h>

Suite *proto_suite(void);
Suite *servers_suite(void);
Suite *timeouts_suite(void);
Suite *hostile_suite(void);
Suite *loadgen_suite(void);
Suite *runall_suite(void);
Suite *labs_suite(void);
Suite *stamps_suite(void);
Suite *bench_suite(void);

#endif
