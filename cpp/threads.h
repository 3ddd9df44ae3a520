// Thread-count policy and the one parallel loop every operator uses.
#pragma once
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pydsconv {

// The one thread limit (docs/threads-and-isa.md): no call ever runs more than
// max_threads() = 4 x usable_cores() threads, whatever is asked for; more
// only oversubscribes the cores, and an absurd request (65536) would make
// the OpenMP runtime end the process when thread creation fails.
int usable_cores();  // cores this process may run on (CPU affinity)
int max_threads();

// The default for calls from this thread, always in [1, max_threads()]:
// OpenMP's own setting (OMP_NUM_THREADS, omp_set_num_threads, threadpoolctl's
// limits), capped; set_num_threads(n) sets it for every thread (each applies
// it before its next call).  requested_num_threads() is what was asked.
int get_num_threads();
int requested_num_threads();
void set_num_threads(int n);  // n >= 1
// Why the initial default differs from OMP_NUM_THREADS (empty if it does not).
const char* env_threads_warning();

// Threads for one call: `requested` (0 = module default), capped by
// max_threads(), by the number of independent tasks and by the work (about
// one thread per 64k multiply-adds), so small problems never wake threads
// they cannot feed; then by runnable_threads().
int plan_threads(int requested, int64_t tasks, int64_t macs);

// At most n, and never more than this process can actually run:
// - in a child forked after a multithreaded region ran, 1 (the OpenMP pool's
//   threads do not exist there; GNU OpenMP would wait for them forever);
// - the first time a team larger than any before is asked for, its threads
//   are first created (and joined) here, so that a thread-creation failure
//   (RLIMIT_NPROC, RLIMIT_AS) lowers the count instead of letting the OpenMP
//   runtime end the process.
int runnable_threads(int n);
// The last team size runnable_threads() could not create (0: none failed).
int thread_creation_limit();
// True in a forked child that runs single-threaded (see runnable_threads).
bool fork_single_threaded();

namespace detail {
void note_parallel_region();  // a team of > 1 threads is about to run
}

// Runs f(task) for task in [0, n) on `threads` threads, static schedule.
// f must not throw (kernels don't; allocate before the loop).
template <class F>
void parallel_for(int64_t n, int threads, const F& f) {
#ifdef _OPENMP
  if (threads > 1) {
    detail::note_parallel_region();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#endif
  (void)threads;
  for (int64_t i = 0; i < n; ++i) f(i);
}

// As parallel_for, and f(task, tid) also gets the thread's index in
// [0, threads) so it can use a per-thread scratch buffer.
template <class F>
void parallel_for_tid(int64_t n, int threads, const F& f) {
#ifdef _OPENMP
  if (threads > 1) {
    detail::note_parallel_region();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; ++i) f(i, omp_get_thread_num());
    return;
  }
#endif
  (void)threads;
  for (int64_t i = 0; i < n; ++i) f(i, 0);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// How many ways to split each of `tasks` tasks (at most max_split) so that
// `threads` threads get balanced shares: 1 when the tasks already divide
// evenly or are plentiful (>= 4 per thread), else the least split that
// divides evenly or reaches that.  Batch-1 layers with few pixels get their
// parallelism from it (output channels), not from ever smaller pixel tiles.
inline int64_t balance_split(int64_t tasks, int threads, int64_t max_split) {
  int64_t c = 1;
  while (c < max_split && tasks * c < 4 * int64_t(threads) && (tasks * c) % threads != 0) ++c;
  return c;
}

}  // namespace pydsconv
