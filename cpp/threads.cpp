#include "threads.h"

#include <atomic>
#include <cstdlib>
#include <thread>

namespace pydsconv {

namespace {
int initial_threads() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const int n = std::atoi(env);  // "4" or "4,2": the first level
    if (n >= 1) return n;
  }
#ifdef _OPENMP
  return omp_get_num_procs();
#else
  const unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
#endif
}
std::atomic<int> g_threads{initial_threads()};
}  // namespace

int get_num_threads() { return g_threads.load(std::memory_order_relaxed); }
void set_num_threads(int n) { g_threads.store(n < 1 ? 1 : n, std::memory_order_relaxed); }

int plan_threads(int requested, int64_t tasks, int64_t macs) {
#ifdef _OPENMP
  int64_t t = requested > 0 ? requested : get_num_threads();
  const int64_t by_work = macs / (int64_t(1) << 16) + 1;
  if (t > by_work) t = by_work;
  if (t > tasks) t = tasks;
  return t < 1 ? 1 : static_cast<int>(t);
#else
  (void)requested; (void)tasks; (void)macs;
  return 1;
#endif
}

}  // namespace pydsconv
