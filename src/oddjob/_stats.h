/* oddjob's latency histograms and the clock they are fed from.
 *
 * A histogram counts nanosecond values in log-linear buckets, as HDR histograms do:
 * values below 16 have a bucket each; above, every power of two is split into 16
 * equal buckets. A bucket's midpoint is then within 1/32 (3.2%) of every value in it.
 * Values from 0 to 2^48 ns (78 hours) fit in 720 buckets, 5.6 KiB; larger ones count
 * in the last bucket (the exact maximum is kept beside). Fixed memory, O(1) to record.
 *
 * Callers serialise access (the queue mutex); nothing here allocates or blocks.
 */
#ifndef ODDJOB_STATS_H
#define ODDJOB_STATS_H

#include <Python.h>
#include <math.h>

#define OJ_HIST_SUB_BITS 4
#define OJ_HIST_SUB (1 << OJ_HIST_SUB_BITS)
#define OJ_HIST_TOP_BIT 47 /* the highest bit a recorded value may have */
#define OJ_HIST_BUCKETS ((OJ_HIST_TOP_BIT - OJ_HIST_SUB_BITS + 2) * OJ_HIST_SUB)
#define OJ_HIST_LARGEST ((1LL << (OJ_HIST_TOP_BIT + 1)) - 1)

typedef struct {
    unsigned long long count;
    unsigned long long total_ns; /* overflows after 584 years of recorded time */
    long long max_ns;
    unsigned long long buckets[OJ_HIST_BUCKETS];
} oj_hist_t;

/* Index of the highest set bit of v > 0. */
#if defined(__GNUC__) || defined(__clang__)
static inline int oj_top_bit(unsigned long long v) { return 63 - __builtin_clzll(v); }
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_ARM64))
#include <intrin.h>
static inline int oj_top_bit(unsigned long long v) {
    unsigned long index;
    _BitScanReverse64(&index, v);
    return (int)index;
}
#else
static inline int oj_top_bit(unsigned long long v) {
    int bit = 0;
    while (v >>= 1)
        bit++;
    return bit;
}
#endif

static inline int oj_hist_index(long long ns) {
    int bit;
    if (ns < OJ_HIST_SUB)
        return ns < 0 ? 0 : (int)ns;
    if (ns > OJ_HIST_LARGEST)
        ns = OJ_HIST_LARGEST;
    bit = oj_top_bit((unsigned long long)ns);
    return ((bit - OJ_HIST_SUB_BITS + 1) << OJ_HIST_SUB_BITS) +
           (int)((ns >> (bit - OJ_HIST_SUB_BITS)) & (OJ_HIST_SUB - 1));
}

/* The midpoint of bucket i, in nanoseconds. */
static inline double oj_hist_value(int i) {
    int shift;
    long long low;
    if (i < OJ_HIST_SUB)
        return (double)i;
    shift = (i >> OJ_HIST_SUB_BITS) - 1;
    low = (long long)(OJ_HIST_SUB + (i & (OJ_HIST_SUB - 1))) << shift;
    return (double)low + ((double)(1LL << shift) - 1.0) / 2.0;
}

static inline void oj_hist_record(oj_hist_t *h, long long ns) {
    if (ns < 0)
        ns = 0; /* a clock that stepped back: count it as instant */
    h->buckets[oj_hist_index(ns)]++;
    h->count++;
    h->total_ns += (unsigned long long)ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

/* count, mean, p50, p90, p99, max (seconds) in out[0..5], in one pass over the buckets.
 * A percentile is the midpoint of the bucket holding its rank (ceil(p * count)), never
 * above the maximum. */
static inline void oj_hist_summary(const oj_hist_t *h, double out[6]) {
    static const double quantiles[3] = {0.50, 0.90, 0.99};
    unsigned long long ranks[3], seen = 0;
    double value;
    int i, q = 0;
    out[0] = (double)h->count;
    for (i = 1; i < 6; i++)
        out[i] = 0.0;
    if (h->count == 0)
        return;
    out[1] = (double)h->total_ns / (double)h->count / 1e9;
    out[5] = (double)h->max_ns / 1e9;
    for (i = 0; i < 3; i++) {
        ranks[i] = (unsigned long long)ceil(quantiles[i] * (double)h->count);
        if (ranks[i] < 1)
            ranks[i] = 1;
    }
    for (i = 0; i < OJ_HIST_BUCKETS && q < 3; i++) {
        seen += h->buckets[i];
        while (q < 3 && seen >= ranks[q]) {
            value = oj_hist_value(i);
            if (value > (double)h->max_ns)
                value = (double)h->max_ns;
            out[2 + q] = value / 1e9;
            q++;
        }
    }
}

/* CPython's monotonic clock in nanoseconds (a vDSO call on Linux, some 16 ns here). */
static inline long long oj_clock_ns(void) {
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t t;
    return PyTime_MonotonicRaw(&t) == 0 ? (long long)t : 0;
#else
    return (long long)_PyTime_GetMonotonicClock();
#endif
}

#endif
