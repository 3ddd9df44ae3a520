// Weights packed into the GEMM kernel's B panel layout (see
// GemmArgs::packed_b), shared read-only by every thread: once per call
// (pack_b, into the calling thread's arena), or once for many calls
// (Prepacked, below).  Large weights are packed by several threads: the
// panels of a column range are independent, and packing 4 MiB is
// memory-bound work that a second core speeds up.
#pragma once
#include <cstddef>
#include <new>

#include "arena.h"
#include "dispatch.h"
#include "kernels/table.h"
#include "threads.h"

namespace pydsconv {

// A packed B as the GEMM reads it: the panels and their padded column count.
template <class T>
struct PackedView {
  const T* data = nullptr;
  int64_t pad = 0;
};

template <class T>
struct Packed {
  Buffer<T> data;
  int64_t pad = 0;  // padded columns of the packed matrix
  PackedView<T> view() const { return PackedView<T>{data.data(), pad}; }
};

namespace detail {
// Packs `n` columns into `out` in ranges of `unit` (the panel width) across
// threads; fill(n0, n1, out) packs [n0, n1).
template <class T, class Fill>
void pack_into(T* out, int64_t K, int64_t n, int64_t unit, int threads, const Fill& fill) {
  if (K == 0 || n == 0) return;
  const int64_t panels = ceil_div(n, unit);
  const int64_t per = ceil_div(panels, int64_t(8));  // up to 8 ranges
  const int64_t tasks = ceil_div(panels, per);
  // An element packed is counted as 2 multiply-adds of the thread policy's
  // budget: a second thread from about 180 x 180 up, where it pays; a
  // 128 x 128 weight stays on the calling thread.
  parallel_for(tasks, plan_threads(threads, tasks, K * n * 2), [&](int64_t t) {
    const int64_t n0 = t * per * unit, n1 = (t + 1) * per * unit < n ? (t + 1) * per * unit : n;
    fill(n0, n1, out);
  });
}
}  // namespace detail

// B is K x N with element (k, n) at B[k*rs + n*cs]; packed into `out`
// (k.gemm_pack_b_elems(K, N) elements).
template <class T>
void pack_b_into(const KernelTable<T>& k, int64_t K, int64_t N, const T* B, int64_t rs, int64_t cs,
                 int threads, T* out) {
  detail::pack_into(out, K, N, k.gemm_nr, threads, [&](int64_t n0, int64_t n1, T* o) {
    k.gemm_pack_b(K, N, B, rs, cs, n0, n1, o);
  });
}

// The same into a Buffer of the calling thread's arena, for one call.
template <class T>
Packed<T> pack_b(const KernelTable<T>& k, int64_t K, int64_t N, const T* B, int64_t rs, int64_t cs,
                 int threads) {
  Packed<T> p;
  const int64_t elems = k.gemm_pack_b_elems(K, N);
  p.data = Buffer<T>(elems);
  p.pad = K > 0 ? elems / K : 0;
  pack_b_into(k, K, N, B, rs, cs, threads, p.data.data());
  return p;
}

// Points `g` at columns [col0, col0 + g.N) of packed B.
template <class T>
void use_packed_b(GemmArgs<T>& g, const PackedView<T>& p, int64_t col0) {
  g.packed_b = p.data;
  g.pb_npad = p.pad;
  g.pb_col0 = col0;
}
template <class T>
void use_packed_b(GemmArgs<T>& g, const Packed<T>& p, int64_t col0) {
  use_packed_b(g, p.view(), col0);
}

// A pointwise weight (C_out, C_in) packed once and kept across calls
// (pydsconv.prepack_pointwise): the B panels of the NHWC GEMM (pixels x C_in)
// . W^T, for the kernel table current when it was made.  Its memory is its
// own (64-byte aligned heap), not the calling thread's arena, whose Buffers
// are scoped.  view() is empty once another table is current (PYDSCONV_ISA,
// set_isa): another ISA's panels are laid out differently, and the
// operators then pack per call as without it.
template <class T>
class Prepacked {
 public:
  Prepacked(const T* w, int64_t cout, int64_t cin, int threads) : table_(&kernels<T>()) {
    const int64_t elems = table_->gemm_pack_b_elems(cin, cout);
    pad_ = cin > 0 ? elems / cin : 0;
    const size_t bytes = static_cast<size_t>(elems > 0 ? elems : 1) * sizeof(T);
    data_ = static_cast<T*>(::operator new(bytes, std::align_val_t(64)));
    pack_b_into(*table_, cin, cout, w, 1, cin, threads, data_);
  }
  ~Prepacked() { ::operator delete(data_, std::align_val_t(64)); }
  Prepacked(const Prepacked&) = delete;
  Prepacked& operator=(const Prepacked&) = delete;
  // The panels if they are for the current kernel table, else empty (null data).
  PackedView<T> view() const {
    return table_ == &kernels<T>() ? PackedView<T>{data_, pad_} : PackedView<T>{};
  }
  const char* isa() const { return table_->isa; }

 private:
  const KernelTable<T>* table_;
  T* data_ = nullptr;
  int64_t pad_ = 0;
};

}  // namespace pydsconv
