// Runtime ISA selection: CPUID + XGETBV once, PYDSCONV_ISA may force lower.
#pragma once
#include <string>

#include "kernels/table.h"

namespace pydsconv {

// Scalar < Avx2 < Avx512: the order `best` is chosen in.  Avx512Emu (the
// AVX-512 kernels built for AVX2; CMake PYDSCONV_EMULATED_AVX512, tests only)
// is outside that order: never the best, selected only by name, on any
// AVX2 + FMA host, and only when compiled in.
enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2, Avx512Emu = 3 };

struct CpuInfo {
  bool avx2 = false, fma = false, avx512f = false;  // CPU and OS both support
  Isa best = Isa::Scalar;                           // the best ISA this CPU runs and we compiled
  Isa initial = Isa::Scalar;                        // chosen at import (after PYDSCONV_ISA)
  std::string env_request;                          // PYDSCONV_ISA as given ("" if unset)
  std::string env_warning;                          // why PYDSCONV_ISA was not honoured, if so
};

const CpuInfo& cpu_info();
const char* isa_name(Isa);
bool isa_compiled(Isa);
bool isa_runs(Isa);  // compiled, and this CPU and OS run it
Isa current_isa();   // what calls use now
// Switches the kernel set (tests use it to cover every ISA in one process).
// Throws ArgumentError for an unknown name or one this CPU cannot run.
void set_isa(const std::string& name);

template <class T>
const KernelTable<T>& kernels();

}  // namespace pydsconv
