#include "dispatch.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "problem.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define PYDSCONV_X86 1
#endif

namespace pydsconv {

namespace {

#ifdef PYDSCONV_X86
unsigned long long xgetbv0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}
#endif

void detect(CpuInfo& info) {
#ifdef PYDSCONV_X86
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return;
  const bool osxsave = c & (1u << 27), fma = c & (1u << 12), avx = c & (1u << 28);
  if (!osxsave || !avx) return;
  const unsigned long long xcr0 = xgetbv0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;    // SSE + AVX state
  const bool os_zmm = (xcr0 & 0xe6) == 0xe6;  // + opmask, ZMM_Hi256, Hi16_ZMM
  if (!os_ymm || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
  info.fma = fma;
  info.avx2 = (b & (1u << 5)) && fma;
  info.avx512f = (b & (1u << 16)) && os_zmm && info.avx2;
#else
  (void)info;
#endif
}

// avx512emu is a name only where it was compiled in.
bool parse(const std::string& s, Isa* out) {
  if (s == "scalar")
    *out = Isa::Scalar;
  else if (s == "avx2")
    *out = Isa::Avx2;
  else if (s == "avx512")
    *out = Isa::Avx512;
  else if (s == "avx512emu" && isa_compiled(Isa::Avx512Emu))
    *out = Isa::Avx512Emu;
  else
    return false;
  return true;
}

// The names parse() takes, for messages.
std::string isa_names() {
  std::string s = "'scalar', 'avx2', 'avx512'";
  if (isa_compiled(Isa::Avx512Emu)) s += ", 'avx512emu'";
  return s;
}

bool runs(const CpuInfo& info, Isa i) {
  switch (i) {
    case Isa::Avx512:
      return info.avx512f && isa_compiled(i);
    case Isa::Avx2:
      return info.avx2 && isa_compiled(i);
    case Isa::Avx512Emu:
      return info.avx2 && isa_compiled(i);  // avx2 implies fma
    default:
      return true;
  }
}

// Each compiled table has every member set (no null kernel, no zero size):
// build_table assigns them by name, and one it forgot would crash only on
// the path that calls it.  Every member is 8 bytes (table.h).
template <class T>
void check_table(const KernelTable<T>* t, const char* dtype) {
  if (!t) return;
  constexpr size_t n = sizeof(KernelTable<T>) / sizeof(uint64_t);
  uint64_t words[n];
  std::memcpy(words, t, sizeof(words));
  for (size_t i = 0; i < n; ++i)
    if (words[i] == 0)
      throw std::logic_error(std::string("kernel table ") + (t->isa ? t->isa : "?") + " " + dtype +
                             ": member " + std::to_string(i) + " is not set (build_table)");
}

void check_tables() {
  check_table(scalar::table_f32(), "float32");
  check_table(scalar::table_f64(), "float64");
  check_table(avx2::table_f32(), "float32");
  check_table(avx2::table_f64(), "float64");
  check_table(avx512::table_f32(), "float32");
  check_table(avx512::table_f64(), "float64");
  check_table(avx512emu::table_f32(), "float32");
  check_table(avx512emu::table_f64(), "float64");
}

CpuInfo make_info() {
  check_tables();
  CpuInfo info;
  detect(info);
  if (runs(info, Isa::Avx512))
    info.best = Isa::Avx512;
  else if (runs(info, Isa::Avx2))
    info.best = Isa::Avx2;
  info.initial = info.best;
  if (const char* env = std::getenv("PYDSCONV_ISA")) {
    info.env_request = printable(env, 200);
    Isa want;
    if (!parse(env, &want))
      info.env_warning = "PYDSCONV_ISA='" + info.env_request + "' is not one of " + isa_names() +
                         "; using " + isa_name(info.best);
    else if (!runs(info, want))
      info.env_warning = "PYDSCONV_ISA='" + info.env_request +
                         "' is not available on this CPU; using " + isa_name(info.best);
    else
      info.initial = want;
  }
  return info;
}

std::atomic<int>& current() {
  static std::atomic<int> isa{static_cast<int>(cpu_info().initial)};
  return isa;
}

}  // namespace

const CpuInfo& cpu_info() {
  static const CpuInfo info = make_info();
  return info;
}

const char* isa_name(Isa i) {
  switch (i) {
    case Isa::Avx512Emu:
      return "avx512emu";
    case Isa::Avx512:
      return "avx512";
    case Isa::Avx2:
      return "avx2";
    default:
      return "scalar";
  }
}

bool isa_compiled(Isa i) {
  switch (i) {
    case Isa::Avx512Emu:
      return avx512emu::table_f32() != nullptr;
    case Isa::Avx512:
      return avx512::table_f32() != nullptr;
    case Isa::Avx2:
      return avx2::table_f32() != nullptr;
    default:
      return true;
  }
}

bool isa_runs(Isa i) { return runs(cpu_info(), i); }

Isa current_isa() { return static_cast<Isa>(current().load(std::memory_order_acquire)); }

void set_isa(const std::string& name) {
  Isa want;
  if (!parse(name, &want))
    throw ArgumentError("isa must be one of " + isa_names() + ", got '" + name + "'");
  if (!isa_runs(want))
    throw ArgumentError("isa '" + name +
                        "' is not available on this CPU (best: " + isa_name(cpu_info().best) + ")");
  current().store(static_cast<int>(want), std::memory_order_release);
}

template <>
const KernelTable<float>& kernels<float>() {
  switch (current_isa()) {
    case Isa::Avx512Emu:
      return *avx512emu::table_f32();
    case Isa::Avx512:
      return *avx512::table_f32();
    case Isa::Avx2:
      return *avx2::table_f32();
    default:
      return *scalar::table_f32();
  }
}

template <>
const KernelTable<double>& kernels<double>() {
  switch (current_isa()) {
    case Isa::Avx512Emu:
      return *avx512emu::table_f64();
    case Isa::Avx512:
      return *avx512::table_f64();
    case Isa::Avx2:
      return *avx2::table_f64();
    default:
      return *scalar::table_f64();
  }
}

}  // namespace pydsconv
