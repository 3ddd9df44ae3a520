// Thread-count policy and the one parallel loop every operator uses.
#pragma once
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pydsconv {

// Module-wide default: OMP_NUM_THREADS if set, else the number of cores.
int get_num_threads();
void set_num_threads(int n);  // n >= 1

// Threads for one call: `requested` (0 = module default), capped by the
// number of independent tasks and by the work (about one thread per
// 64k multiply-adds), so small problems never wake threads they cannot feed.
int plan_threads(int requested, int64_t tasks, int64_t macs);

// Runs f(task) for task in [0, n) on `threads` threads, static schedule.
// f must not throw (kernels don't; allocate before the loop).
template <class F>
void parallel_for(int64_t n, int threads, const F& f) {
#ifdef _OPENMP
  if (threads > 1) {
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
