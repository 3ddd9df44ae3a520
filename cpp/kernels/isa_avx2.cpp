// The avx2 kernel set: kernels-inl.h (every kernel and the table) compiled
// in namespace pydsconv::avx2 with this unit's ISA flags (set in
// CMakeLists.txt, nowhere else).  Built without them (a non-x86 compiler),
// the unit exports null tables and the dispatcher never selects it.
#include "table.h"

namespace pydsconv {
namespace avx2 {
#if defined(__AVX2__)
#define PYDSCONV_VEC_BYTES 32  // AVX2: 256-bit vectors
#include "kernels-inl.h"

PYDSCONV_KERNEL_TABLES("avx2")
#else
const KernelTable<float>* table_f32() { return nullptr; }
const KernelTable<double>* table_f64() { return nullptr; }
#endif
}  // namespace avx2
}  // namespace pydsconv
