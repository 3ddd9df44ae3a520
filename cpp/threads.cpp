#include "threads.h"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "problem.h"  // printable

namespace pydsconv {

namespace {

int count_usable_cores() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n >= 1) return n;
  }
#endif
#ifdef _OPENMP
  const int n = omp_get_num_procs();
#else
  const int n = static_cast<int>(std::thread::hardware_concurrency());
#endif
  return n >= 1 ? n : 1;
}

std::string g_env_warning;

// OMP_NUM_THREADS as OpenMP reads it ("4", or "4,2": the first level); a
// value that is not a positive count, or is above the limit, is reported.
int initial_threads() {
  const int cores = usable_cores(), cap = max_threads();
  const char* env = std::getenv("OMP_NUM_THREADS");
  if (!env) return cores;
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(env, &end, 10);
  const bool overflow = errno == ERANGE && n > 0;  // digits beyond long long: above any cap
  const bool valid = end != env && (*end == 0 || *end == ',') && (errno == 0 || overflow) && n >= 1;
  const std::string shown = printable(env, 40);
  if (!valid) {
    g_env_warning = "OMP_NUM_THREADS='" + shown + "' is not a positive thread count; using " +
                    std::to_string(cores) + " (the usable cores)";
    return cores;
  }
  if (overflow || n > cap) {
    g_env_warning = "OMP_NUM_THREADS=" + shown + " is above pydsconv's limit of " +
                    std::to_string(cap) + " threads (4 x " + std::to_string(cores) +
                    " usable cores); using " + std::to_string(cap);
    return cap;
  }
  return static_cast<int>(n);
}

// The default follows OpenMP's own setting (nthreads-var of the calling
// thread: OMP_NUM_THREADS, omp_set_num_threads, threadpoolctl), so they all
// agree.  set_num_threads is module-wide: it bumps a generation that each
// thread applies (omp_set_num_threads) before its next use, as PyTorch does.
struct Default {
  std::atomic<int> module{0}, requested{0}, generation{0};
  Default() {
    const int n = initial_threads();
    requested.store(n);
    module.store(n);
#ifdef _OPENMP
    // OMP_NUM_THREADS above the cap or invalid: OpenMP's own setting for
    // every thread follows ours from the first use on.
    if (*g_env_warning.c_str()) generation.store(1);
#endif
  }
};
Default& defaults() {
  static Default d;
  return d;
}
thread_local int t_generation = 0;

// Fork safety and thread creation (runnable_threads).
std::atomic<bool> g_region_ran{false};  // a team of > 1 threads has run here
std::atomic<bool> g_forked{false};      // forked after that: single-threaded
// GNU OpenMP keeps one pool of threads per thread that starts a team, so
// what was verified holds for the calling thread only.
thread_local int t_verified = 1;  // the largest team this thread ran
std::atomic<int> g_failed{0};     // the last team that could not be created

void on_fork_child() {
  if (g_region_ran.load(std::memory_order_relaxed)) g_forked.store(true);
}

const bool g_atfork = [] {
  pthread_atfork(nullptr, nullptr, &on_fork_child);
  return true;
}();

// Creates n - 1 threads that all live at once, as an OpenMP team's would, and
// joins them; returns how many of the n (the caller included) could run.
int probe_team(int n) {
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  auto wait = [&] {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return release; });
  };
  struct Ctx {
    decltype(wait)* f;
  } ctx{&wait};
  std::vector<pthread_t> ids;
  ids.reserve(n);
  for (int i = 1; i < n; ++i) {
    pthread_t id;
    auto body = [](void* p) -> void* {
      (*static_cast<Ctx*>(p)->f)();
      return nullptr;
    };
    if (pthread_create(&id, nullptr, body, &ctx) != 0) break;
    ids.push_back(id);
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  for (pthread_t id : ids) pthread_join(id, nullptr);
  return static_cast<int>(ids.size()) + 1;
}

}  // namespace

int usable_cores() {
  static const int n = count_usable_cores();
  return n;
}

int max_threads() { return 4 * usable_cores(); }

int get_num_threads() {
  Default& d = defaults();
#ifdef _OPENMP
  const int gen = d.generation.load(std::memory_order_acquire);
  if (t_generation != gen) {  // set_num_threads ran since this thread last looked
    t_generation = gen;
    omp_set_num_threads(d.module.load(std::memory_order_relaxed));
  }
  const int n = omp_get_max_threads();
#else
  const int n = d.module.load(std::memory_order_relaxed);
#endif
  return n < 1 ? 1 : n > max_threads() ? max_threads() : n;
}

int requested_num_threads() { return defaults().requested.load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  if (n < 1) n = 1;
  Default& d = defaults();
  d.requested.store(n, std::memory_order_relaxed);
  d.module.store(n > max_threads() ? max_threads() : n, std::memory_order_relaxed);
  d.generation.fetch_add(1, std::memory_order_acq_rel);
  get_num_threads();  // applies it to this thread now
}

const char* env_threads_warning() {
  defaults();
  return g_env_warning.c_str();
}

namespace detail {
void note_parallel_region() {
  if (!g_region_ran.load(std::memory_order_relaxed)) g_region_ran.store(true);
}
}  // namespace detail

int runnable_threads(int n) {
#ifdef _OPENMP
  if (n <= 1) return 1;
  if (g_forked.load(std::memory_order_relaxed)) return 1;
  if (n <= t_verified) return n;
  const int got = probe_team(n);
  if (got < n) g_failed.store(n, std::memory_order_relaxed);
  if (got > t_verified) t_verified = got;
  return got;
#else
  (void)n;
  return 1;
#endif
}

int thread_creation_limit() { return g_failed.load(std::memory_order_relaxed); }
bool fork_single_threaded() { return g_forked.load(std::memory_order_relaxed); }

int plan_threads(int requested, int64_t tasks, int64_t macs) {
#ifdef _OPENMP
  int64_t t = requested > 0 ? requested : get_num_threads();
  if (t > max_threads()) t = max_threads();
  const int64_t by_work = macs / (int64_t(1) << 16) + 1;
  if (t > by_work) t = by_work;
  if (t > tasks) t = tasks;
  return runnable_threads(t < 1 ? 1 : static_cast<int>(t));
#else
  (void)requested;
  (void)tasks;
  (void)macs;
  return 1;
#endif
}

}  // namespace pydsconv
