// The C++ library's operators: shapes, weight packing, tiling and threads.
// Every function takes a Problem from validate() (preconditions hold) and
// raw C-contiguous buffers in the Problem's layout; `threads` = 0 means the
// module default.  Results never depend on the thread count: work is split
// by outputs, and every reduction runs in a fixed order inside one task.
#pragma once
#include <algorithm>

#include "problem.h"

namespace pydsconv {

template <class T>
struct PackedView;  // packed.h: a pointwise weight packed once (Prepacked)

// NCHW depthwise rows narrower than 1024 go through the multi-row kernel
// (KernelTable::dw_fwd_nchw_rows), which copies each input row once per row
// block instead of once per kernel row (112x112x32, batch 1: 0.46 -> 0.32 ms);
// the choice depends on the geometry only, so every output element always
// takes the same path.
inline bool dw_use_rows_kernel(const DwGeom& g) {
  // Its scratch spans the padded input a row block reads: keep that small
  // (a huge dilation reads mostly padding; the row kernel handles it).
  return g.OW < 1024 && g.kh <= 64 && g.kw <= 64 && g.kh * g.kw <= 256 && g.sh <= 4 && g.sw <= 4 &&
         (g.kw - 1) * g.dw + (g.OW - 1) * g.sw < 4096 && (g.kh - 1) * g.dh < 4096;
}

// Whether NCHW depthwise takes the flat kernel (KernelTable::dw_fwd_nchw_flat):
// it applies at stride 1, no dilation, 3x3 and 5x5, output rows as wide as
// the input's; it is taken on 512-bit vectors (masked loads), for planes
// of up to 16 columns and at least 8 vectors of outputs.  Alternated, one
// layer, against the via-NHWC channel blocks: 3x3 14x14x512 batch 1 56 ->
// 48 us (2 threads 32 -> 26), batch 8 675 -> 486 us; 5x5 batch 1 90 -> 87
// us, batch 8 986 -> 778 us; but 7x7x1024 (3 vectors and a lane) 30 -> 38
// us, 28x28x256 (the row kernels) 73 -> 96 us, and on AVX2 14x14x512
// 67 -> 75 us.
template <class T>
bool dw_nchw_flat(const KernelTable<T>& k, const DwGeom& g) {
  const bool applies = g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.OW == g.W &&
                       g.kh == g.kw && (g.kh == 3 || g.kh == 5);
  return applies && k.lanes * int64_t(sizeof(T)) == 64 && g.W <= 16 &&
         g.OH * g.OW >= 8 * k.lanes;
}

// NCHW depthwise on small planes computed in NHWC on a transposed copy of x
// (and, unfused, transposed back): the NCHW kernels vectorise along rows of
// 7-56 pixels and pay per channel for the phase planes, the NHWC ones run
// across channels.  Batch 1, 1 thread, fused MobileNetV1 blocks: 14x14x512
// 1.53 -> 1.28 ms, 7x7x1024 1.72 -> 1.56 ms, but 64x112x112 1.01 -> 1.28
// ms; unfused (two transposes), 14x14x512: 216 -> 124 us, 56x56x128: 338 ->
// 436 us.  Fused, rows of up to four vectors (AVX2: 32 pixels):
// on AVX2 a 56-wide row is seven whole vectors, and the copies cost more
// than they save -- 128x56x56 -> 128 (s1 / s2), batch 1, 1 thread: 2.9 ->
// 2.1 ms / 1.9 -> 1.4 ms; batch 8: 23 -> 19 ms / 16 -> 12 ms; 28 and 14
// wide within noise; float64 (four lanes): 56 wide 6.3 -> 4.9 ms, 28 wide
// s2 3.0 -> 2.5 ms, 14 wide the same.  And at most 32 pixels: on AVX-512
// (float32) 56-wide fused rows also run faster in the NCHW kernels, 3.5
// vectors (pydsconv-bench, alternated, 1 thread: 128x56x56 s1 / s2 860 ->
// 696 / 515 -> 380 us, the other layers the same).  Only where the NHWC
// blocked paths apply (M = 1, C at least one channel block): their pack is
// larger than the taps-last copy alone.  Unfused, 17-32 wide rows only at
// stride 2 (blocks of channels, depthwise.cpp): 28-wide rows at stride 1
// run faster in the NCHW row kernels (256x28x28, 1 thread: AVX-512 100 ->
// 70 us, batch 8 1.04 -> 0.68 ms; AVX2 130 -> 92 us), at stride 2 and
// 14 wide much slower (28 s2: 44 -> 245 us; 14 s1: 55 -> 315 us).
template <class T>
bool dw_nchw_via_nhwc(const KernelTable<T>& k, const DwGeom& g, bool fused) {
  const bool fast = k.dw_nhwc_pack_elems(g) > g.kh * g.kw * g.C * g.M;
  if (fused) return fast && g.W <= std::min<int64_t>(32, 4 * k.lanes);
  return fast && (g.W <= 16 || (g.W <= 32 && g.sw > 1));
}

// Whether a GEMM writing an output of `elems` elements of T in all should
// prefetch its C lines (GemmArgs::prefetch_c): outputs of half an L2 and
// more (256 KiB) are not in L1/L2 when written, and in a chain of layers,
// each writing a freshly allocated output, not in L3 either.  MobileNetV1
// body, batch 1, 1 thread, NHWC, each layer's output fresh (Python, as a
// user runs it): 15.9 -> 15.1 ms, every layer with an output of 0.4 MB or
// more faster (112x112 64->128 s2: 1.24 -> 0.92 ms); batch 8, 1 thread,
// pointwise 112x112 32->64: 8.3 -> 7.3 ms.  When the output is already in
// L3 (a loop rewriting one buffer, as pydsconv-bench does) it costs 1-4 %.
template <class T>
inline bool gemm_prefetch_c(int64_t elems) {
  return elems * int64_t(sizeof(T)) >= (int64_t(256) << 10);
}

// Whether a weight that `blocks` GEMM blocks use (NHWC pixel row blocks,
// fused tiles) on `threads` threads is packed once for all of them, rather
// than by each block's GEMM, chunk by chunk, into its thread's work area.
// Once saves the repacking; but the packed copy is a round trip through
// memory, and with several threads each reads panels that another core
// packed (cross-core transfers).  Batch 1, AVX-512 host, NHWC, 14x14x512
// (2 fused tiles, 3 pointwise row blocks): 1 thread, once is faster
// (pointwise 564 -> 522 us); 2 threads, per block is (fused 364 -> 302 us,
// pointwise 343 -> 305 us; 28x28x256 fused, 4 tiles: 296 -> 281 us); batch
// 8 (16 tiles), once is faster on both.
inline bool pack_weight_once(int64_t blocks, int threads) {
  return threads <= 1 ? blocks > 1 : blocks >= 4 * int64_t(threads);
}

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
void depthwise_backward(const Problem& p, const T* gy, const T* x, const T* w, T* gx, T* gw,
                        T* gb, int threads);

template <class T>
void pointwise_backward(const Problem& p, const T* gy, const T* x, const T* w, T* gx, T* gw,
                        T* gb, int threads);

}  // namespace pydsconv
