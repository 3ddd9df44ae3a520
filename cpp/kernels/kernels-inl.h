// One kernel set: every kernel source, compiled once per ISA, and the table
// that exports them.
//
// This file is included *inside* `namespace pydsconv::<isa>` by each
// isa_*.cpp, after table.h and after defining PYDSCONV_VEC_BYTES (the
// unit's vector width).  It and the headers it includes include nothing
// from the library and call no library templates, so every symbol they
// define is private to that ISA (see table.h).
#include "simd-inl.h"     // vector types, loads/stores, activations, strided copies
#include "dw_nchw-inl.h"  // NCHW depthwise forward: row, multi-row and flat kernels
#include "dw_nhwc-inl.h"  // NHWC depthwise forward
#include "dw_bwd-inl.h"   // depthwise backward
#include "gemm-inl.h"     // the GEMM, B panel packing, transposes
#include "peak-inl.h"     // the FMA throughput probe

// The table of this kernel set, each member assigned by name (so reordering
// table.h cannot misplace one); dispatch.cpp checks at import that no
// member was left null or zero (kernel_table_complete).  constexpr, and the
// tables below constant-initialised: building a table must run no code of
// this unit's ISA, since the dispatcher reads every compiled table, also on
// CPUs that cannot run it.
template <class T>
static constexpr KernelTable<T> build_table(const char* isa) {
  KernelTable<T> t{};
  t.isa = isa;
  t.dw_fwd_nchw_row = &dw_fwd_nchw_row<T>;
  t.dw_fwd_nchw_rows = &dw_fwd_nchw_rows<T>;
  t.dw_rows_scratch = &dw_rows_scratch<T>;
  t.dw_fwd_nchw_flat = &dw_fwd_nchw_flat<T>;
  t.dw_flat_scratch = &dw_flat_scratch<T>;
  t.dw_fwd_nhwc_row = &dw_fwd_nhwc_row<T>;
  t.dw_nhwc_pack = &dw_nhwc_pack<T>;
  t.dw_nhwc_pack_elems = &dw_nhwc_pack_elems<T>;
  t.dw_bwd_data_nchw_row = &dw_bwd_data_nchw_row<T>;
  t.dw_bwd_data_nchw_scratch = &dw_bwd_data_nchw_scratch<T>;
  t.dw_bwd_data_nhwc_row = &dw_bwd_data_nhwc_row<T>;
  t.dw_bwd_weight_nchw = &dw_bwd_weight_nchw<T>;
  t.dw_bwd_weight_nchw_scratch = &dw_bwd_weight_nchw_scratch<T>;
  t.dw_bwd_weight_nhwc = &dw_bwd_weight_nhwc<T>;
  t.gemm = &gemm<T>;
  t.gemm_work = gemm_work_elems<T>();
  t.gemm_pack_b = &gemm_pack_b<T>;
  t.gemm_pack_b_elems = &gemm_pack_b_elems<T>;
  t.gemm_mr = kGemmMR;
  t.gemm_nr = gemm_nr<T>();
  t.lanes = int64_t(PYDSCONV_VEC_BYTES / sizeof(T));
  t.transpose = &transpose<T>;
  t.activate = &act_row<T>;
  t.fma_peak_loop = &fma_peak_loop<T>;
  return t;
}

// Defines this unit's table_f32() / table_f64() (table.h).
#define PYDSCONV_KERNEL_TABLES(NAME)                                    \
  const KernelTable<float>* table_f32() {                               \
    static constexpr KernelTable<float> t = build_table<float>(NAME);   \
    return &t;                                                          \
  }                                                                     \
  const KernelTable<double>* table_f64() {                              \
    static constexpr KernelTable<double> t = build_table<double>(NAME); \
    return &t;                                                          \
  }
