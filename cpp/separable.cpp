// Fused separable operator.  Each task takes a run of output pixels of one
// image, computes their depthwise outputs (all C*M channels) into the
// thread's scratch tile, applies mid_act, and multiplies the tile by the
// pointwise weights straight into y.  The tile is sized to stay in L2, so
// the intermediate tensor is never written to memory in full.
#include <vector>

#include "dispatch.h"
#include "ops.h"
#include "packed.h"
#include "threads.h"

namespace pydsconv {

namespace {
constexpr int64_t kTileBytes = 128 * 1024;  // depthwise tile: fits L2 with room for weights

// Pixels per tile: as many as fit kTileBytes, but enough tiles for every thread.
// The tile's pixels are the GEMM's rows (NHWC) or columns (NCHW); a multiple
// of `align` (its register block) leaves no zero-padded partial block inside.
int64_t tile_pixels(const Problem& p, int64_t elem, int threads, int64_t align) {
  const int64_t ohw = p.OH * p.OW;
  int64_t t = kTileBytes / (p.Cmid * elem);
  if (t < 8) t = 8;
  const int64_t want_tiles = 2 * static_cast<int64_t>(threads);
  if (p.N * ceil_div(ohw, t) < want_tiles) t = ceil_div(ohw, ceil_div(want_tiles, p.N));
  if (t > align) t = t / align * align;
  if (t > ohw) t = ohw;
  return t < 1 ? 1 : t;
}
}  // namespace

template <class T>
void separable_forward(const Problem& p, const T* x, const T* dw, const T* db, const T* pw,
                       const T* pb, Act mid_act, Act act, T* y, int threads) {
  if (p.N == 0) return;
  const KernelTable<T>& k = kernels<T>();
  const DwGeom& g = p.g;
  const int64_t HW = g.H * g.W, OHW = g.OH * g.OW, CM = p.Cmid, Co = p.Cout;
  const int64_t taps = g.kh * g.kw;
  const bool nchw = p.layout == Layout::NCHW;
  const int64_t macs = p.N * OHW * CM * (taps + Co);
  const int want = plan_threads(threads, int64_t(1) << 30, macs);
  const bool rows_kernel = nchw && dw_use_rows_kernel(g);
  int64_t tp = tile_pixels(p, sizeof(T), want, nchw ? 16 : 6);
  if (rows_kernel) tp = (tp / g.OW > 0 ? tp / g.OW : 1) * g.OW;  // whole rows per tile
  const int64_t tiles_per_image = ceil_div(OHW, tp), tasks = p.N * tiles_per_image;
  const int nt = plan_threads(threads, tasks, macs);

  // Weights in the order the kernels read them (see table.h), packed once:
  // the pointwise weight is the GEMM's A (NCHW) or B (NHWC) for every tile.
  const Packed<T> pwp = nchw ? pack_a(k, Co, CM, pw, CM, 1) : pack_b(k, CM, Co, pw, 1, CM);
  std::vector<T> dwp;
  if (!nchw) {
    dwp.resize(static_cast<size_t>(CM * taps));
    for (int64_t c = 0; c < CM; ++c)
      for (int64_t t = 0; t < taps; ++t) dwp[t * CM + c] = dw[c * taps + t];
  }
  // Per thread: the depthwise tile, then the GEMM's packing space.
  const int64_t dw_scratch = rows_kernel ? k.dw_rows_scratch(g, tp / g.OW) : 0;
  const int64_t per_thread = tp * CM + k.gemm_work + dw_scratch;
  std::vector<T> scratch(static_cast<size_t>(nt * per_thread));

  parallel_for_tid(tasks, nt, [&](int64_t task, int tid) {
    const int64_t n = task / tiles_per_image;
    const int64_t p0 = (task % tiles_per_image) * tp;
    const int64_t p1 = p0 + tp < OHW ? p0 + tp : OHW, np = p1 - p0;
    T* mid = scratch.data() + tid * per_thread;
    T* work = mid + tp * CM;
    if (rows_kernel) {  // whole rows [p0 / OW, p1 / OW)
      for (int64_t co = 0; co < CM; ++co)
        k.dw_fwd_nchw_rows(g, x + (n * g.C + co / g.M) * HW, dw + co * taps, db ? db[co] : T(0),
                           mid_act, p0 / g.OW, p1 / g.OW, mid + co * np, work + k.gemm_work);
    }
    // Otherwise: walk the tile's pixels row segment by row segment.
    for (int64_t q = rows_kernel ? p1 : p0; q < p1;) {
      const int64_t oh = q / g.OW, ow0 = q % g.OW;
      const int64_t ow1 = (p1 - oh * g.OW) < g.OW ? p1 - oh * g.OW : g.OW;
      if (nchw) {
        for (int64_t co = 0; co < CM; ++co)
          k.dw_fwd_nchw_row(g, x + (n * g.C + co / g.M) * HW, dw + co * taps, db ? db[co] : T(0),
                            mid_act, oh, ow0, ow1, mid + co * np + (q - p0));
      } else {
        k.dw_fwd_nhwc_row(g, x + n * HW * g.C, dwp.data(), db, mid_act, oh, ow0, ow1,
                          mid + (q - p0) * CM);
      }
      q += ow1 - ow0;
    }
    // Pointwise on the tile.
    if (nchw) {
      GemmArgs<T> a{Co, np, CM, pw, CM, 1, mid, np, 1, y + n * Co * OHW + p0, OHW, false, pb,
                    pb ? 0 : -1, act, work};
      use_packed_a(a, pwp, 0);
      k.gemm(a);
    } else {
      GemmArgs<T> a{np, Co, CM, mid, CM, 1, pw, 1, CM, y + (n * OHW + p0) * Co, Co, false, pb,
                    pb ? 1 : -1, act, work};
      use_packed_b(a, pwp, 0);
      k.gemm(a);
    }
  });
}

template void separable_forward<float>(const Problem&, const float*, const float*, const float*,
                                       const float*, const float*, Act, Act, float*, int);
template void separable_forward<double>(const Problem&, const double*, const double*,
                                        const double*, const double*, const double*, Act, Act,
                                        double*, int);

}  // namespace pydsconv
