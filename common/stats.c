/* stats.c - named counters, CPU time and context switches (see stats.h). */
#include "stats.h"
#include "stamp.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static const char *const stats_names[STATS_COUNT] = {
#define STATS_NAME(name) #name,
    STATS_COUNTERS(STATS_NAME)
#undef STATS_NAME
};

static _Atomic uint64_t counters[STATS_COUNT];
static const char *model_name = "unknown";

/* CPU and time at the last reset, so a STATS reply covers the same window as the counters. */
static pthread_mutex_t baseline_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rusage baseline_usage;
static uint64_t baseline_ns;

static void take_baseline(void)
{
    pthread_mutex_lock(&baseline_lock);
    if (getrusage(RUSAGE_SELF, &baseline_usage) != 0)
        memset(&baseline_usage, 0, sizeof baseline_usage);
    baseline_ns = stamp_now();
    pthread_mutex_unlock(&baseline_lock);
}

void stats_init(const char *model)
{
    model_name = model;
    for (int i = 0; i < STATS_COUNT; i++)
        atomic_store_explicit(&counters[i], 0, memory_order_relaxed);
    take_baseline();
}

void stats_add(enum stats_id id, uint64_t n)
{
    atomic_fetch_add_explicit(&counters[id], n, memory_order_relaxed);
}

void stats_sub(enum stats_id id, uint64_t n)
{
    atomic_fetch_sub_explicit(&counters[id], n, memory_order_relaxed);
}

uint64_t stats_get(enum stats_id id)
{
    return atomic_load_explicit(&counters[id], memory_order_relaxed);
}

void stats_reset(void)
{
    for (int i = 0; i < STATS_COUNT; i++)
        if (i != STAT_connections_open)
            atomic_store_explicit(&counters[i], 0, memory_order_relaxed);
    take_baseline();
}

static uint64_t timeval_us(struct timeval tv)
{
    return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

static int is_call_counter(int i)
{
    return strncmp(stats_names[i], "calls_", 6) == 0 || i == STAT_eagain || i == STAT_eintr;
}

size_t stats_format(char *out, size_t size, char sep)
{
    struct rusage now, base;
    uint64_t base_ns;
    if (getrusage(RUSAGE_SELF, &now) != 0)
        memset(&now, 0, sizeof now);
    pthread_mutex_lock(&baseline_lock);
    base = baseline_usage;
    base_ns = baseline_ns;
    pthread_mutex_unlock(&baseline_lock);

    size_t used = 0;
#define APPEND(...)                                                                                \
    do {                                                                                           \
        int n_ = snprintf(out + used, size > used ? size - used : 0, __VA_ARGS__);                 \
        if (n_ > 0)                                                                                \
            used += (size_t)n_;                                                                    \
    } while (0)
    APPEND("model=%s%c", model_name, sep);
    for (int i = 0; i < STATS_COUNT; i++) {
        uint64_t v = stats_get((enum stats_id)i);
        if (v == 0 && is_call_counter(i))
            continue;
        APPEND("%s=%llu%c", stats_names[i], (unsigned long long)v, sep);
    }
    APPEND("cpu_user_us=%llu%c",
           (unsigned long long)(timeval_us(now.ru_utime) - timeval_us(base.ru_utime)), sep);
    APPEND("cpu_sys_us=%llu%c",
           (unsigned long long)(timeval_us(now.ru_stime) - timeval_us(base.ru_stime)), sep);
    APPEND("ctx_voluntary=%llu%c", (unsigned long long)(now.ru_nvcsw - base.ru_nvcsw), sep);
    APPEND("ctx_involuntary=%llu%c", (unsigned long long)(now.ru_nivcsw - base.ru_nivcsw), sep);
    APPEND("elapsed_us=%llu", (unsigned long long)((stamp_now() - base_ns) / 1000u));
    if (sep == '\n')
        APPEND("\n");
#undef APPEND
    if (used >= size && size > 0)
        used = size - 1;
    return used;
}

void stats_print_line(void)
{
    char line[4096];
    stats_format(line, sizeof line, ' ');
    printf("STATS %s\n", line);
    fflush(stdout);
}
