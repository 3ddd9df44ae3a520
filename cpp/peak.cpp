#include "peak.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "dispatch.h"
#include "threads.h"

namespace pydsconv {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

double fma_probe_flops(int64_t iters) {
  float sink = 0;
  const double flops = kernels<float>().fma_peak_loop(iters < 0 ? 0 : iters, &sink);
  volatile float keep = sink;
  (void)keep;
  return flops;
}

double fma_peak_gflops(int threads) {
  threads = runnable_threads(threads < 1 ? 1 : threads > max_threads() ? max_threads() : threads);
  if (threads > 1) detail::note_parallel_region();
  const auto loop = kernels<float>().fma_peak_loop;
  float sink = 0;
  int64_t iters = 1 << 12;
  double t;
  for (;;) {  // calibrate on one thread: ~0.2 s a run
    const auto t0 = std::chrono::steady_clock::now();
    loop(iters, &sink);
    if ((t = seconds_since(t0)) > 0.02) break;
    iters *= 2;
  }
  iters = static_cast<int64_t>(iters * 0.2 / t);
  std::vector<double> rates;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    double flops = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : flops)
#endif
    {
      float s = 0;
      flops += loop(iters, &s);
#ifdef _OPENMP
#pragma omp atomic
#endif
      sink += s;
    }
    rates.push_back(flops / seconds_since(t0) / 1e9);
  }
  volatile float keep = sink;  // the loops' results are used
  (void)keep;
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

}  // namespace pydsconv
