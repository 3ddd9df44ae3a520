// The C++ library's operators: shapes, weight packing, tiling and threads.
// Every function takes a Problem from validate() (preconditions hold) and
// raw C-contiguous buffers in the Problem's layout; `threads` = 0 means the
// module default.  Results never depend on the thread count: work is split
// by outputs, and every reduction runs in a fixed order inside one task.
#pragma once
#include "heuristics.h"
#include "problem.h"

namespace pydsconv {

template <class T>
struct PackedView;  // packed.h: a pointwise weight packed once (Prepacked)

// y = act(depthwise(x, w) + b).  w (C*M, 1, kh, kw); b (C*M) or null.
template <class T>
void depthwise_forward(const Problem& p, const T* x, const T* w, const T* b, Act act, T* y,
                       int threads);

// y = act(w . x + b) over channels.  w (C_out, C_in); b (C_out) or null.
// pre: w already packed (Prepacked::view() of this w), or null; used where
// the GEMM takes w as its B (NHWC, and NCHW planes of up to 64 pixels).
template <class T>
void pointwise_forward(const Problem& p, const T* x, const T* w, const T* b, Act act, T* y,
                       int threads, const PackedView<T>* pre = nullptr);

// y = act(pw . mid_act(depthwise(x, dw) + db) + pb), fused: each thread
// computes a tile of depthwise outputs into its own small buffer and feeds
// it to the GEMM at once; the intermediate tensor never exists in full.
// pre: pw already packed, or null; used for NHWC, where the GEMM takes pw
// as its B (for NCHW it is the GEMM's A, read in place).
template <class T>
void separable_forward(const Problem& p, const T* x, const T* dw, const T* db, const T* pw,
                       const T* pb, Act mid_act, Act act, T* y, int threads,
                       const PackedView<T>* pre = nullptr);

// Gradients of the depthwise op (before activation).  Any of gx, gw, gb may
// be null (not wanted).
template <class T>
void depthwise_backward(const Problem& p, const T* gy, const T* x, const T* w, T* gx, T* gw, T* gb,
                        int threads);

template <class T>
void pointwise_backward(const Problem& p, const T* gy, const T* x, const T* w, T* gx, T* gw, T* gb,
                        int threads);

}  // namespace pydsconv
