// Which kernel paths the operators took: one counter per path, so that tests
// can assert that a shape meant for a path takes it (a moved threshold in
// heuristics.h would otherwise send a test through another path, silently).
// Private: exposed to Python as _core._path_counts() / _reset_path_counts().
//
// Counters are relaxed atomic adds on plain integers (GCC builtins, no
// <atomic>): operators count once per call and path, kernels once per call
// at most.  Included by kernels/table.h, so it holds no templates and its
// one inline function has internal linkage (see table.h).
#pragma once
#include <cstdint>

namespace pydsconv {
namespace trace {

enum Path : int {
  DwNchwFlat,           // depthwise NCHW: flat kernel (small planes, stride 1, 64-byte vectors)
  DwNchwViaNhwc,        // depthwise NCHW: blocks of channels transposed to NHWC kernels
  DwNchwRows,           // depthwise NCHW: multi-row kernel on phase planes
  DwNchwRow,            // depthwise NCHW: row kernel
  DwNhwc,               // depthwise NHWC kernels
  DwBwdInputAsForward,  // depthwise grad-input as a forward call on the flipped kernel
  SepNchwViaNhwc,       // separable NCHW: depthwise tile from a channels-last copy
  SepNchwFlip,          // separable NCHW via NHWC, and the GEMM pixel-major then transposed (7x7)
  SepNchwRows,          // separable NCHW: depthwise tile by the multi-row kernel
  SepNchwRow,           // separable NCHW: depthwise tile by the row kernel
  SepNhwc,              // separable NHWC
  SepBatchTiles,        // separable: tiles across the images of a batch (sep_batch_tiles)
  PwNchwViaNhwc,        // pointwise NCHW small planes computed as NHWC
  WeightPackedOnce,     // a GEMM's weight packed once for all blocks (pack_weight_once)
  GemmPrefetchC,        // a GEMM asked to prefetch its output lines (gemm_prefetch_c)
  GemmTallTile,         // a GEMM ran a last tile taller than MR (kGemmTall)
  GemmRowBands,         // a GEMM ran its tiles in row bands (B slice within kGemmBandBytes)
  kPaths
};

extern uint64_t g_counts[kPaths];  // trace.cpp

static inline void hit(Path p) { __atomic_fetch_add(&g_counts[p], 1, __ATOMIC_RELAXED); }

const char* path_name(Path p);  // e.g. "dw_nchw_flat"
uint64_t path_count(Path p);
void reset_path_counts();

}  // namespace trace
}  // namespace pydsconv
