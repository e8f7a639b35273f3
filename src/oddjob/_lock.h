/* oddjob's queue lock: the cheapest correct mutex on each kind of CPython; and the two
 * helpers an idle worker's spin needs (a pause hint and a clock), just below.
 *
 * CPython 3.13 and newer, with or without the GIL: PyMutex, one byte; taking it
 * when free is one compare-and-swap, and a contended PyMutex parks with the
 * thread state detached.
 *
 * Older CPython (which always has a GIL): a native mutex taken with a try-lock.
 * The core's critical sections never release the GIL, so under the GIL the lock
 * is never contended; if it ever were, the GIL is released while blocking, so the
 * holder can always finish. (PyThread_type_lock, Cython's fallback for its
 * pymutex before 3.13, costs about 190 instructions a lock/unlock pair here; a
 * pthread mutex costs about 40.)
 *
 * Every oj_lock call is made with the GIL held (an attached thread state).
 */
#ifndef ODDJOB_LOCK_H
#define ODDJOB_LOCK_H

#include <Python.h>
#include <string.h>

/* The CPU's spin-wait hint, for the core's idle workers on free-threaded builds. */
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64) || defined(_M_IX86)
#include <immintrin.h>
#define oj_cpu_relax() _mm_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define oj_cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#elif defined(_M_ARM64)
#include <intrin.h>
#define oj_cpu_relax() __yield()
#else
#define oj_cpu_relax() ((void)0)
#endif

/* A monotonic clock in nanoseconds that needs no attached thread state, for timing a
 * spin. Only free-threaded builds spin, and those are 3.13+. */
#if PY_VERSION_HEX >= 0x030D0000
static inline long long oj_now_ns(void) {
    PyTime_t t;
    return PyTime_MonotonicRaw(&t) == 0 ? (long long)t : -1;  /* -1: no clock, no spin */
}
#else
static inline long long oj_now_ns(void) { return -1; }
#endif

#if PY_VERSION_HEX >= 0x030D0000

typedef PyMutex oj_lock_t;
static inline int oj_lock_init(oj_lock_t *l) { memset(l, 0, sizeof(*l)); return 0; }
static inline void oj_lock_free(oj_lock_t *l) { (void)l; }
static inline void oj_lock(oj_lock_t *l) { PyMutex_Lock(l); }
static inline void oj_unlock(oj_lock_t *l) { PyMutex_Unlock(l); }

#elif defined(_WIN32)

#include <windows.h>
typedef SRWLOCK oj_lock_t;
static inline int oj_lock_init(oj_lock_t *l) { InitializeSRWLock(l); return 0; }
static inline void oj_lock_free(oj_lock_t *l) { (void)l; }
static inline void oj_lock(oj_lock_t *l) {
    if (!TryAcquireSRWLockExclusive(l)) {
        Py_BEGIN_ALLOW_THREADS
        AcquireSRWLockExclusive(l);
        Py_END_ALLOW_THREADS
    }
}
static inline void oj_unlock(oj_lock_t *l) { ReleaseSRWLockExclusive(l); }

#else

#include <pthread.h>
typedef pthread_mutex_t oj_lock_t;
static inline int oj_lock_init(oj_lock_t *l) { return pthread_mutex_init(l, NULL); }
static inline void oj_lock_free(oj_lock_t *l) { pthread_mutex_destroy(l); }
static inline void oj_lock(oj_lock_t *l) {
    if (pthread_mutex_trylock(l) != 0) {
        Py_BEGIN_ALLOW_THREADS
        pthread_mutex_lock(l);
        Py_END_ALLOW_THREADS
    }
}
static inline void oj_unlock(oj_lock_t *l) { pthread_mutex_unlock(l); }

#endif
#endif /* ODDJOB_LOCK_H */
