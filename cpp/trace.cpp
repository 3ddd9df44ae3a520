#include "trace.h"

namespace pydsconv {
namespace trace {

uint64_t g_counts[kPaths] = {};

const char* path_name(Path p) {
  switch (p) {
    case DwNchwFlat:
      return "dw_nchw_flat";
    case DwNchwViaNhwc:
      return "dw_nchw_via_nhwc";
    case DwNchwRows:
      return "dw_nchw_rows";
    case DwNchwRow:
      return "dw_nchw_row";
    case DwNhwc:
      return "dw_nhwc";
    case DwBwdInputAsForward:
      return "dw_bwd_input_as_forward";
    case SepNchwViaNhwc:
      return "sep_nchw_via_nhwc";
    case SepNchwFlip:
      return "sep_nchw_flip";
    case SepNchwRows:
      return "sep_nchw_rows";
    case SepNchwRow:
      return "sep_nchw_row";
    case SepNhwc:
      return "sep_nhwc";
    case SepBatchTiles:
      return "sep_batch_tiles";
    case PwNchwViaNhwc:
      return "pw_nchw_via_nhwc";
    case WeightPackedOnce:
      return "weight_packed_once";
    case GemmPrefetchC:
      return "gemm_prefetch_c";
    case GemmTallTile:
      return "gemm_tall_tile";
    case GemmRowBands:
      return "gemm_row_bands";
    default:
      return "?";
  }
}

uint64_t path_count(Path p) { return __atomic_load_n(&g_counts[p], __ATOMIC_RELAXED); }

void reset_path_counts() {
  for (int i = 0; i < kPaths; ++i) __atomic_store_n(&g_counts[i], 0, __ATOMIC_RELAXED);
}

}  // namespace trace
}  // namespace pydsconv
