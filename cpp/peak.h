// The machine's measured FMA peak, for benchmarks' "% of peak": the C++
// benchmark binary and, through the module, bench/compare.py use the same
// probe, so their percentages share one yardstick.
#pragma once

#include <cstdint>

namespace pydsconv {

// float32 GFLOP/s of the current kernel set's FMA loop (KernelTable::
// fma_peak_loop: 12 independent vector FMA chains, no memory) on `threads`
// threads at once, each running ~0.2 s; the median of 5 runs.  About 1.2 s.
double fma_peak_gflops(int threads);

// The float32 flops that `iters` iterations of the current kernel set's FMA
// loop perform (2 x 12 chains x the set's vector lanes x iters), run once on
// the calling thread.  No timing: it says which loop fma_peak_gflops runs.
double fma_probe_flops(int64_t iters);

}  // namespace pydsconv
