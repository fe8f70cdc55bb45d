/* work.c - one fixed unit of background computation (see work.h). */
#include "work.h"
#include "stats.h"

#include <stdint.h>

#define WORK_BYTES 4096

/* The result is kept where the compiler must assume someone reads it, so the work cannot be
 * optimised away; one per thread, so that the threads model's workers do not race on it. */
static _Thread_local volatile uint64_t work_result;

void work_unit(void)
{
    static _Thread_local uint8_t buffer[WORK_BYTES];
    static _Thread_local uint64_t carry = 0xcbf29ce484222325ull;
    uint64_t h = carry;
    for (int i = 0; i < WORK_BYTES; i++) { /* FNV-1a */
        h ^= buffer[i];
        h *= 0x100000001b3ull;
    }
    buffer[h % WORK_BYTES] ^= (uint8_t)h;
    carry = h;
    work_result = h;
    stats_add(STAT_work_units, 1);
}
