// The avx512 kernel set: kernels-inl.h (every kernel and the table) compiled
// in namespace pydsconv::avx512 with this unit's ISA flags (set in
// CMakeLists.txt, nowhere else).  Built without them (a non-x86 compiler),
// the unit exports null tables and the dispatcher never selects it.
#include "table.h"

namespace pydsconv {
namespace avx512 {
#if defined(__AVX512F__)
#define PYDSCONV_VEC_BYTES 64  // AVX-512: 512-bit vectors
#include "kernels-inl.h"

PYDSCONV_KERNEL_TABLES("avx512")
#else
const KernelTable<float>* table_f32() { return nullptr; }
const KernelTable<double>* table_f64() { return nullptr; }
#endif
}  // namespace avx512
}  // namespace pydsconv
