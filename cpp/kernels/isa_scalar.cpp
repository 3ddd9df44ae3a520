// The scalar kernel set: kernels-inl.h (every kernel and the table) compiled
// in namespace pydsconv::scalar with this unit's ISA flags (set in
// CMakeLists.txt, nowhere else).
#include "table.h"

namespace pydsconv {
namespace scalar {
#define PYDSCONV_VEC_BYTES 16  // no SIMD assumed; small blocks
#include "kernels-inl.h"

PYDSCONV_KERNEL_TABLES("scalar")
}  // namespace scalar
}  // namespace pydsconv
