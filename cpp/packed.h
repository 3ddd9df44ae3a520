// Weights packed once per call into the GEMM kernel's panel layout (see
// GemmArgs::packed_a / packed_b), shared read-only by every thread.
#pragma once
#include <vector>

#include "kernels/table.h"

namespace pydsconv {

template <class T>
struct Packed {
  std::vector<T> data;
  int64_t pad = 0;  // padded rows (A) or columns (B) of the packed matrix
};

// `elems` elements filled by fill(data); pad = elems / K.
template <class T, class Fill>
Packed<T> packed(int64_t elems, int64_t K, const Fill& fill) {
  Packed<T> p;
  p.data.resize(static_cast<size_t>(elems));
  p.pad = K > 0 ? elems / K : 0;
  if (K > 0) fill(p.data.data());
  return p;
}

// A is M x K with element (m, k) at A[m*rs + k*cs].
template <class T>
Packed<T> pack_a(const KernelTable<T>& k, int64_t M, int64_t K, const T* A, int64_t rs,
                 int64_t cs) {
  return packed<T>(k.gemm_pack_a_elems(M, K), K,
                   [&](T* out) { k.gemm_pack_a(M, K, A, rs, cs, out); });
}

// B is K x N with element (k, n) at B[k*rs + n*cs].
template <class T>
Packed<T> pack_b(const KernelTable<T>& k, int64_t K, int64_t N, const T* B, int64_t rs,
                 int64_t cs) {
  return packed<T>(k.gemm_pack_b_elems(K, N), K,
                   [&](T* out) { k.gemm_pack_b(K, N, B, rs, cs, out); });
}

// Points `g` at rows [row0, row0 + g.M) of packed A (columns for B).
template <class T>
void use_packed_a(GemmArgs<T>& g, const Packed<T>& p, int64_t row0) {
  g.packed_a = p.data.data();
  g.pa_mpad = p.pad;
  g.pa_row0 = row0;
}
template <class T>
void use_packed_b(GemmArgs<T>& g, const Packed<T>& p, int64_t col0) {
  g.packed_b = p.data.data();
  g.pb_npad = p.pad;
  g.pb_col0 = col0;
}

}  // namespace pydsconv
