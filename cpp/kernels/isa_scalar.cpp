// The scalar kernel set: kernels-inl.h (every kernel and the table) compiled
// in namespace pydsconv::scalar with this unit's ISA flags (set in
// CMakeLists.txt, nowhere else).
#include "table.h"

namespace pydsconv {
namespace scalar {
#define PYDSCONV_VEC_BYTES 16  // no SIMD assumed; small blocks
#include "kernels-inl.h"

const KernelTable<float>* table_f32() { return make_table<float>("scalar"); }
const KernelTable<double>* table_f64() { return make_table<double>("scalar"); }
}  // namespace scalar
}  // namespace pydsconv
