/* test_stamps.c - (being written for issue 7) */
#include "suites.h"

Suite *stamps_suite(void)
{
    Suite *s = suite_create("stamps");
    return s;
}
