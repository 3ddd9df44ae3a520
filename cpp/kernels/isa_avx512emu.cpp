// The avx512emu kernel set: the 64-byte-vector (AVX-512) kernels compiled
// for an AVX2 + FMA target, in namespace pydsconv::avx512emu.  The kernels
// are written once with GCC vector extensions, so the compiler lowers each
// 512-bit vector to two 256-bit halves: the AVX-512 unit's code paths
// (flat kernel, tall GEMM tiles, 8-pixel NHWC tiles, 16 float lanes) can be
// tested against the reference on any AVX2 host.  For testing only: built
// when CMake's PYDSCONV_EMULATED_AVX512 is ON (never in the shipped wheel),
// selected only by name (set_isa / PYDSCONV_ISA=avx512emu), never as the
// best ISA.  Built without it, the unit exports null tables.
#include "table.h"

namespace pydsconv {
namespace avx512emu {
#if defined(PYDSCONV_EMULATED_AVX512) && defined(__AVX2__) && defined(__FMA__)
#define PYDSCONV_VEC_BYTES 64  // AVX-512's width, as pairs of AVX2 registers
#include "kernels-inl.h"

PYDSCONV_KERNEL_TABLES("avx512emu")
#else
const KernelTable<float>* table_f32() { return nullptr; }
const KernelTable<double>* table_f64() { return nullptr; }
#endif
}  // namespace avx512emu
}  // namespace pydsconv
