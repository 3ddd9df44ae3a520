// Which kernel path an operator takes: every rule that picks a path by
// shape, thread count or vector width, in one place.  Each depends on the
// geometry (and the kernel table) only, so a given output element always
// takes the same path whatever the tiling or the thread count.
// The measurements behind each threshold are in the git history of this
// file (`git log -p cpp/heuristics.h`), not here.
#pragma once
#include <algorithm>
#include <cstdint>

#include "kernels/table.h"

namespace pydsconv {

// NCHW depthwise: the multi-row kernel (KernelTable::dw_fwd_nchw_rows) for
// rows narrower than 1024 whose phase-plane scratch stays small.
// Reason: it copies each input row once per row block, not once per kernel row.
inline bool dw_use_rows_kernel(const DwGeom& g) {
  return g.OW < 1024 && g.kh <= 64 && g.kw <= 64 && g.kh * g.kw <= 256 && g.sh <= 4 && g.sw <= 4 &&
         (g.kw - 1) * g.dw + (g.OW - 1) * g.sw < 4096 && (g.kh - 1) * g.dh < 4096;
}

// NCHW depthwise: the flat kernel (KernelTable::dw_fwd_nchw_flat) where it
// applies (3x3 or 5x5, stride 1, no dilation, OW == W) on 64-byte vectors,
// planes up to 16 wide and at least 8 vectors of outputs.
// Reason: faster than the via-NHWC blocks there; slower on AVX2, 7x7, wider rows.
template <class T>
bool dw_nchw_flat(const KernelTable<T>& k, const DwGeom& g) {
  const bool applies = g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.OW == g.W &&
                       g.kh == g.kw && (g.kh == 3 || g.kh == 5);
  return applies && k.lanes * int64_t(sizeof(T)) == 64 && g.W <= 16 && g.OH * g.OW >= 8 * k.lanes;
}

// NCHW depthwise on small planes computed by the NHWC kernels on a
// transposed copy (M = 1 and at least one NHWC channel block: where the
// blocked NHWC paths apply).  Fused (separable): rows up to
// min(32, 4 vectors) wide.  Alone (two transposes): rows up to 16 wide, or
// up to 32 at stride > 1.
// Reason: short NCHW rows fill vectors badly; on wider rows the copies cost more.
template <class T>
bool dw_nchw_via_nhwc(const KernelTable<T>& k, const DwGeom& g, bool fused) {
  const bool fast = k.dw_nhwc_pack_elems(g) > g.kh * g.kw * g.C * g.M;
  if (fused) return fast && g.W <= std::min<int64_t>(32, 4 * k.lanes);
  return fast && (g.W <= 16 || (g.W <= 32 && g.sw > 1));
}

// A GEMM prefetches its C lines (GemmArgs::prefetch_c) when its whole
// output is 256 KiB or more.
// Reason: such an output is not in cache when written (costs 1-4 % if it is).
template <class T>
inline bool gemm_prefetch_c(int64_t elems) {
  return elems * int64_t(sizeof(T)) >= (int64_t(256) << 10);
}

// A weight used by `blocks` GEMM blocks on `threads` threads is packed once
// for all of them (1 thread: 2+ blocks; else 4+ blocks a thread), otherwise
// by each block's GEMM into its thread's work area.
// Reason: once saves repacking, but few blocks a thread read panels from other cores.
inline bool pack_weight_once(int64_t blocks, int threads) {
  return threads <= 1 ? blocks > 1 : blocks >= 4 * int64_t(threads);
}

// Separable op (pixel-major GEMM: NHWC, or the NCHW 7x7 flip): at batch > 1,
// tiles run across images where one image's depthwise output takes at most
// half a batch tile (kSepBatchTileBytes), so that a tile holds 2+ images:
// the maps that per-image tiles (256 KiB) cover in one small tile each.
// Reason: each tile streams the whole pointwise weight through L2, so tiny
// per-image tiles (7x7: 49 pixels) stream it most often; where per-image
// tiles are larger (14x14 at 512 channels: 102 pixels), larger batch tiles
// measured slower (A/B numbers: the commit that set this).
constexpr int64_t kSepBatchTileBytes = int64_t(512) << 10;
inline bool sep_batch_tiles(int64_t images, int64_t image_bytes) {
  return images > 1 && 2 * image_bytes <= kSepBatchTileBytes;
}

// Banded chains (plan_fuse.h): a band's line buffers and separable tile
// (one thread's) take at most 256 KiB.
// Reason: half an L2 of 512 KiB - 1 MiB; the other half holds the chain's weights.
inline bool fuse_band_fits(int64_t bytes) { return bytes <= (int64_t(256) << 10); }

// ... and a batch of N images has at least 8 bands in all (where the rows allow).
// Reason: threads take runs of bands; a batch of one must still split.
inline int64_t fuse_band_cap(int64_t OH, int64_t N) {
  const int64_t bands = N >= 8 ? 1 : (8 + N - 1) / N;
  return std::max<int64_t>(1, (OH + bands - 1) / bands);
}

// ... and a chain grows only while bands of 64 final output pixels (whole
// rows) still fit that.
// Reason: each band reads every weight of the chain: a few pixels a band
// (deep chains end at 1-row bands: halos add up) re-read them per few pixels.
inline int64_t fuse_min_band_rows(int64_t OW) { return (64 + OW - 1) / OW; }

// A step joins the chain before it when the chain's weights stay within
// 256 KiB with it and the tensor passed between them (the whole batch's)
// is 512 KiB or more.
// Reason: each band reads every weight of the chain (from L2 if they fit);
// a smaller intermediate stays in cache without fusion.
inline bool fuse_join(int64_t chain_weight_bytes, int64_t intermediate_bytes) {
  return chain_weight_bytes <= (int64_t(256) << 10) && intermediate_bytes >= (int64_t(512) << 10);
}

}  // namespace pydsconv
