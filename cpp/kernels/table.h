// The kernel table: the interface between operators and kernels.
//
// A kernel computes one tile (an output row, a GEMM block) and knows nothing
// of how it was chosen, of threads or of argument checking (its preconditions
// are established by validate() and the operator that calls it).  Each ISA
// translation unit (isa_scalar.cpp, isa_avx2.cpp, isa_avx512.cpp, and for
// tests isa_avx512emu.cpp) compiles
// the kernel sources in its own namespace and exports one table per dtype.
//
// This header is included by ISA units, so it must stay free of templates
// with external linkage that an ISA unit could instantiate (no <vector>,
// <algorithm>, ...): a function compiled with AVX-512 flags that the linker
// picks for everyone would crash older CPUs.
#pragma once
#include <cstddef>
#include <cstdint>

#include "trace.h"  // path counters (plain data; kernels count a few paths)

namespace pydsconv {

// The epilogue applied to each output: None, relu, relu6, then the ones with
// more than a clamp (act_more in simd-inl.h): hardswish x*relu6(x+3)/6,
// hardsigmoid relu6(x+3)/6, silu x/(1+exp(-x)), sigmoid 1/(1+exp(-x)).
// Values are fixed: the plan and the bindings pass them as ints.
enum class Act : int {
  None = 0,
  Relu = 1,
  Relu6 = 2,
  Hardswish = 3,
  Hardsigmoid = 4,
  Silu = 5,
  Sigmoid = 6
};

// Depthwise geometry in elements.  Input (C, H, W) per image, kernel
// (kh, kw), output (C*M, OH, OW).  Input pixel of output (oh, ow) and tap
// (i, j): ih = oh*sh - pt + i*dh, iw = ow*sw - pl + j*dw; outside [0,H)x[0,W)
// reads zero (padding is never materialised).
struct DwGeom {
  int64_t C, M, H, W, kh, kw, sh, sw, dh, dw, pt, pl, OH, OW;
};

// C[m, n] = act(bias + sum_k A[m, k] * B[k, n])  (or C += A*B if accumulate)
// with element (r, c) of A at A[r*a_rs + c*a_cs] (same for B); C rows are
// c_rs apart, columns contiguous.  bias_axis: 0 = one bias per row m,
// 1 = one per column n, -1 = none.  act is applied only when !accumulate.
// A is read in place when its rows or its columns are contiguous (a_cs == 1
// or a_rs == 1).  work: KernelTable::gemm_work elements of scratch owned by
// the caller's thread (the kernel packs B panels, and A of other strides,
// there).  packed_b, if set, is B already packed whole by
// KernelTable::gemm_pack_b (the weights, packed once per call and shared by
// every thread); B and its strides are then not read.  pb_npad is the packed
// matrix's padded column count (gemm_pack_b_elems / K), pb_col0 where this
// GEMM's columns start in it (a multiple of gemm_nr).
template <class T>
struct GemmArgs {
  int64_t M, N, K;
  const T* A;
  int64_t a_rs, a_cs;
  const T* B;
  int64_t b_rs, b_cs;
  T* C;
  int64_t c_rs;
  bool accumulate;
  const T* bias;
  int bias_axis;
  Act act;
  T* work;
  const T* packed_b = nullptr;
  int64_t pb_npad = 0, pb_col0 = 0;
  // Prefetch C's lines a few register tiles ahead of their stores: set by
  // operators whose whole output is too large to be in cache
  // (heuristics.h gemm_prefetch_c).  Costs 1-4 % when C is already cached.
  bool prefetch_c = false;
};

template <class T>
struct KernelTable {
  const char* isa;
  // NCHW forward: outputs [ow0, ow1) of row `oh` of one output channel.
  // x_plane is the input channel's (H, W) plane, w its (kh*kw) taps, y
  // receives ow1 - ow0 elements.
  void (*dw_fwd_nchw_row)(const DwGeom&, const T* x_plane, const T* w, T bias, Act act, int64_t oh,
                          int64_t ow0, int64_t ow1, T* y);
  // NCHW forward, narrow rows: output rows [oh0, oh1) (all OW columns) of
  // one output channel into y ((oh1 - oh0) x OW), using `scratch` of
  // dw_rows_scratch(g, oh1 - oh0) elements.  Same bits as dw_fwd_nchw_row.
  void (*dw_fwd_nchw_rows)(const DwGeom&, const T* x_plane, const T* w, T bias, Act act,
                           int64_t oh0, int64_t oh1, T* y, T* scratch);
  int64_t (*dw_rows_scratch)(const DwGeom&, int64_t rows);
  // NCHW forward, 3x3 or 5x5, stride 1, no dilation, OW == W (heuristics.h
  // dw_nchw_flat): flat outputs [q0, q1) (q = oh*OW + ow) of output
  // channels [c0, c1) of one image (x_img its C planes, w all C*M taps, b
  // all biases or null) into y + (c - c0)*y_cs, using `scratch` of
  // dw_flat_scratch(g, q1 - q0) elements.
  void (*dw_fwd_nchw_flat)(const DwGeom&, const T* x_img, const T* w, const T* b, Act act,
                           int64_t c0, int64_t c1, int64_t q0, int64_t q1, T* y, int64_t y_cs,
                           T* scratch);
  int64_t (*dw_flat_scratch)(const DwGeom&, int64_t outputs);
  // NHWC forward: outputs [ow0, ow1) of row `oh` of one image, all C*M
  // channels.  x_img is (H, W, C), w_packed the weights as dw_nhwc_pack
  // lays them out (dw_nhwc_pack_elems(g) elements), bias (C*M) or null; y
  // receives (ow1 - ow0, C*M).
  void (*dw_fwd_nhwc_row)(const DwGeom&, const T* x_img, const T* w_packed, const T* bias, Act act,
                          int64_t oh, int64_t ow0, int64_t ow1, T* y);
  void (*dw_nhwc_pack)(const DwGeom&, const T* w, T* out);  // w: (C*M, kh*kw)
  int64_t (*dw_nhwc_pack_elems)(const DwGeom&);
  // NCHW grad-input: one input row `ih` of input channel c.  gy_planes are
  // the M output planes (OH, OW) of channels c*M..c*M+M-1, w their M*kh*kw
  // taps; gx_row (W) is overwritten.  scratch: dw_bwd_data_nchw_scratch(g)
  // elements owned by the caller's thread (null if that is 0).
  void (*dw_bwd_data_nchw_row)(const DwGeom&, const T* gy_planes, const T* w, int64_t ih, T* gx_row,
                               T* scratch);
  int64_t (*dw_bwd_data_nchw_scratch)(const DwGeom&);
  // NHWC grad-input: one input row of one image; gy_img (OH, OW, C*M),
  // w_packed (kh, kw, C*M); gx_row (W, C) is overwritten.
  void (*dw_bwd_data_nhwc_row)(const DwGeom&, const T* gy_img, const T* w_packed, int64_t ih,
                               T* gx_row);
  // Grad-weight kernels sum over output rows [oh0, oh1) of one image and
  // *accumulate* into gw / gb (the operator's per-chunk slots): each tap's
  // chain continues from the slot over the rows' pixels in a fixed order, so
  // the bits depend only on the geometry and the rows given.
  // NCHW: one output channel; gw (kh*kw) or null, gb (one element) or null;
  // scratch: dw_bwd_weight_nchw_scratch(g, oh1 - oh0) elements of the
  // caller's thread (null if that is 0).
  void (*dw_bwd_weight_nchw)(const DwGeom&, const T* gy_plane, const T* x_plane, int64_t oh0,
                             int64_t oh1, T* gw, T* gb, T* scratch);
  int64_t (*dw_bwd_weight_nchw_scratch)(const DwGeom&, int64_t rows);
  // NHWC: mid channels [c0, c1); gw_packed (kh, kw, C*M) or null, gb (C*M) or null.
  void (*dw_bwd_weight_nhwc)(const DwGeom&, const T* gy_img, const T* x_img, int64_t oh0,
                             int64_t oh1, int64_t c0, int64_t c1, T* gw_packed, T* gb);
  void (*gemm)(const GemmArgs<T>&);
  int64_t gemm_work;  // scratch elements one gemm call needs
  // Pack a whole GEMM B operand once (K x N, given by strides) into the
  // layout GemmArgs::packed_b expects; *_elems: its size.  A call packs
  // columns [n0, n1) of that layout, n0 a multiple of gemm_nr, so ranges can
  // be packed in parallel.
  void (*gemm_pack_b)(int64_t K, int64_t N, const T* B, int64_t rs, int64_t cs, int64_t n0,
                      int64_t n1, T* out);
  int64_t (*gemm_pack_b_elems)(int64_t K, int64_t N);
  int64_t gemm_mr, gemm_nr;  // the register tile: MR rows x NR columns
  int64_t lanes;             // elements of T in one SIMD vector of this kernel set
  // d[c*ldd + r] = s[r*lds + c] for r < R, c < Cn (a layout change).
  void (*transpose)(int64_t R, int64_t Cn, const T* s, int64_t lds, T* d, int64_t ldd);
  // y[i] = act(y[i]) for i < n, the same bits as every kernel's epilogue of
  // this ISA (the non-finite fix-up and pydsconv.nn's unfused activations).
  void (*activate)(T* y, int64_t n, Act act);
  // Benchmark probe: `iters` rounds of independent vector FMAs; returns flops.
  double (*fma_peak_loop)(int64_t iters, T* sink);
};
// Every member is 8 bytes and none may be null or zero: build_table
// (kernels-inl.h) assigns each by name and dispatch.cpp checks the tables at
// import.  A new member changes this size: assign it there, then update it.
static_assert(sizeof(KernelTable<float>) == 25 * 8 && sizeof(KernelTable<double>) == 25 * 8,
              "KernelTable gained or lost a member: update build_table in kernels-inl.h");

// One table per (ISA, dtype); null where the ISA was not compiled in.
namespace scalar {
const KernelTable<float>* table_f32();
const KernelTable<double>* table_f64();
}  // namespace scalar
namespace avx2 {
const KernelTable<float>* table_f32();
const KernelTable<double>* table_f64();
}  // namespace avx2
namespace avx512 {
const KernelTable<float>* table_f32();
const KernelTable<double>* table_f64();
}  // namespace avx512
// The AVX-512 kernels built for AVX2 (CMake PYDSCONV_EMULATED_AVX512; tests only).
namespace avx512emu {
const KernelTable<float>* table_f32();
const KernelTable<double>* table_f64();
}  // namespace avx512emu

}  // namespace pydsconv
