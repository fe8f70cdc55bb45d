/* stats.c - named counters, CPU time and context switches (see stats.h). */
#include "stats.h"
#include "server.h"
#include "stamp.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

static const char *const stats_names[STATS_COUNT] = {
#define STATS_NAME(name) #name,
    STATS_COUNTERS(STATS_NAME)
#undef STATS_NAME
};

enum { CPU_USER_US, CPU_SYS_US, CTX_VOLUNTARY, CTX_INVOLUNTARY, CPU_FIELDS };

/* Everything a STATS reply reports. It lives in an anonymous mapping so that a model which
 * forks can share it with its children (stats_share_between_processes). */
struct shared_stats {
    _Atomic uint64_t counters[STATS_COUNT];
    _Atomic uint64_t baseline_ns;            /* time of the last reset */
    _Atomic uint64_t cpu_totals[CPU_FIELDS]; /* multi-process mode: what processes reported */
};

static struct shared_stats private_stats;
static struct shared_stats *shared = &private_stats;
static bool multiprocess;
static const char *model_name = "unknown";

/* Single-process mode: this process's usage at the last reset. */
static pthread_mutex_t baseline_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rusage baseline_usage;
/* Multi-process mode: this process's usage when it last reported. */
static struct rusage reported_usage;

static uint64_t timeval_us(struct timeval tv)
{
    return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

static void usage_fields(const struct rusage *ru, uint64_t out[CPU_FIELDS])
{
    out[CPU_USER_US] = timeval_us(ru->ru_utime);
    out[CPU_SYS_US] = timeval_us(ru->ru_stime);
    out[CTX_VOLUNTARY] = (uint64_t)ru->ru_nvcsw;
    out[CTX_INVOLUNTARY] = (uint64_t)ru->ru_nivcsw;
}

static void take_baseline(void)
{
    pthread_mutex_lock(&baseline_lock);
    if (getrusage(RUSAGE_SELF, &baseline_usage) != 0)
        memset(&baseline_usage, 0, sizeof baseline_usage);
    pthread_mutex_unlock(&baseline_lock);
    atomic_store(&shared->baseline_ns, stamp_clock());
}

void stats_init(const char *model)
{
    model_name = model;
    for (int i = 0; i < STATS_COUNT; i++)
        atomic_store_explicit(&shared->counters[i], 0, memory_order_relaxed);
    take_baseline();
}

/* A child of fork() starts with no CPU time of its own (getrusage counts from 0 in it), so
 * its reports count from 0, not from what its parent had reported. */
static void forget_reported_usage(void)
{
    memset(&reported_usage, 0, sizeof reported_usage);
}

void stats_share_between_processes(void)
{
    struct shared_stats *s =
        mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED)
        die("mmap");
    memcpy(s, shared, sizeof *s); /* no other thread or process uses them yet */
    shared = s;
    multiprocess = true;
    if (getrusage(RUSAGE_SELF, &reported_usage) != 0)
        die("getrusage");
    if (pthread_atfork(NULL, NULL, forget_reported_usage) != 0)
        die("pthread_atfork");
}

void stats_account_cpu(void)
{
    struct rusage now;
    if (!multiprocess || getrusage(RUSAGE_SELF, &now) != 0)
        return;
    uint64_t a[CPU_FIELDS], b[CPU_FIELDS];
    usage_fields(&now, a);
    usage_fields(&reported_usage, b);
    for (int i = 0; i < CPU_FIELDS; i++)
        atomic_fetch_add_explicit(&shared->cpu_totals[i], a[i] - b[i], memory_order_relaxed);
    reported_usage = now;
}

void stats_add(enum stats_id id, uint64_t n)
{
    atomic_fetch_add_explicit(&shared->counters[id], n, memory_order_relaxed);
}

void stats_sub(enum stats_id id, uint64_t n)
{
    atomic_fetch_sub_explicit(&shared->counters[id], n, memory_order_relaxed);
}

uint64_t stats_get(enum stats_id id)
{
    return atomic_load_explicit(&shared->counters[id], memory_order_relaxed);
}

void stats_gauge_add(enum stats_id gauge, enum stats_id peak, uint64_t n)
{
    uint64_t now = atomic_fetch_add_explicit(&shared->counters[gauge], n, memory_order_relaxed) + n;
    uint64_t high = atomic_load_explicit(&shared->counters[peak], memory_order_relaxed);
    /* another thread or process may raise it meanwhile: retry until ours is not higher */
    while (now > high &&
           !atomic_compare_exchange_weak_explicit(&shared->counters[peak], &high, now,
                                                  memory_order_relaxed, memory_order_relaxed))
        continue;
}

/* Gauges say what is now (or the most it has been), not what happened since a reset. */
static bool is_gauge(int i)
{
    return i == STAT_connections_open || i == STAT_buffer_bytes || i == STAT_buffer_bytes_peak;
}

void stats_reset(void)
{
    for (int i = 0; i < STATS_COUNT; i++)
        if (!is_gauge(i))
            atomic_store_explicit(&shared->counters[i], 0, memory_order_relaxed);
    if (multiprocess) {
        stats_account_cpu(); /* what this process used so far belongs before the reset */
        for (int i = 0; i < CPU_FIELDS; i++)
            atomic_store(&shared->cpu_totals[i], 0);
    }
    take_baseline();
}

static bool hidden_when_zero(int i)
{
    /* the model's own system calls and the model-specific counters after them */
    return strncmp(stats_names[i], "calls_", 6) == 0 || i >= STAT_eagain;
}

static long task_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (d == NULL)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* The most memory this process has had resident, in KiB; in a model that forks, of the largest
 * among this process and its reaped children (ru_maxrss of RUSAGE_CHILDREN is their maximum). */
static long rss_peak_kb(void)
{
    struct rusage self, children;
    if (getrusage(RUSAGE_SELF, &self) != 0)
        return -1;
    if (multiprocess && getrusage(RUSAGE_CHILDREN, &children) == 0 &&
        children.ru_maxrss > self.ru_maxrss)
        return children.ru_maxrss;
    return self.ru_maxrss;
}

/* CPU time and context switches since the last reset. */
static void cpu_since_reset(uint64_t out[CPU_FIELDS])
{
    if (multiprocess) {
        stats_account_cpu();
        for (int i = 0; i < CPU_FIELDS; i++)
            out[i] = atomic_load(&shared->cpu_totals[i]);
        return;
    }
    struct rusage now, base;
    if (getrusage(RUSAGE_SELF, &now) != 0)
        memset(&now, 0, sizeof now);
    pthread_mutex_lock(&baseline_lock);
    base = baseline_usage;
    pthread_mutex_unlock(&baseline_lock);
    uint64_t a[CPU_FIELDS], b[CPU_FIELDS];
    usage_fields(&now, a);
    usage_fields(&base, b);
    for (int i = 0; i < CPU_FIELDS; i++)
        out[i] = a[i] - b[i];
}

size_t stats_format(char *out, size_t size, char sep)
{
    uint64_t cpu[CPU_FIELDS];
    cpu_since_reset(cpu);
    size_t used = 0;
#define APPEND(...)                                                                                \
    do {                                                                                           \
        int n_ = snprintf(out + used, size > used ? size - used : 0, __VA_ARGS__);                 \
        if (n_ > 0)                                                                                \
            used += (size_t)n_;                                                                    \
    } while (0)
    APPEND("model=%s%c", model_name, sep);
    APPEND("stamps=%d%c", stamp_enabled() ? 1 : 0, sep); /* 0: --no-stamps */
    for (int i = 0; i < STATS_COUNT; i++) {
        uint64_t v = stats_get((enum stats_id)i);
        if (v == 0 && hidden_when_zero(i))
            continue;
        APPEND("%s=%llu%c", stats_names[i], (unsigned long long)v, sep);
    }
    APPEND("cpu_user_us=%llu%c", (unsigned long long)cpu[CPU_USER_US], sep);
    APPEND("cpu_sys_us=%llu%c", (unsigned long long)cpu[CPU_SYS_US], sep);
    APPEND("ctx_voluntary=%llu%c", (unsigned long long)cpu[CTX_VOLUNTARY], sep);
    APPEND("ctx_involuntary=%llu%c", (unsigned long long)cpu[CTX_INVOLUNTARY], sep);
    APPEND("threads=%ld%c", task_count(), sep);
    APPEND("rss_peak_kb=%ld%c", rss_peak_kb(), sep);
    APPEND("elapsed_us=%llu",
           (unsigned long long)((stamp_clock() - atomic_load(&shared->baseline_ns)) / 1000u));
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
