// Depthwise operators: loops over images, channels and rows; kernels do rows.
#include <vector>

#include "dispatch.h"
#include "ops.h"
#include "threads.h"

namespace pydsconv {

namespace {
// (C*M, 1, kh, kw) -> (kh, kw, C*M): the NHWC kernels read all channels of
// one tap contiguously.
template <class T>
std::vector<T> pack_taps_last(const T* w, int64_t cm, int64_t taps) {
  std::vector<T> out(static_cast<size_t>(cm * taps));
  for (int64_t c = 0; c < cm; ++c)
    for (int64_t t = 0; t < taps; ++t) out[t * cm + c] = w[c * taps + t];
  return out;
}
}  // namespace

template <class T>
void depthwise_forward(const Problem& p, const T* x, const T* w, const T* b, Act act, T* y,
                       int threads) {
  const KernelTable<T>& k = kernels<T>();
  const DwGeom& g = p.g;
  const int64_t HW = g.H * g.W, OHW = g.OH * g.OW, CM = p.Cmid, taps = g.kh * g.kw;
  const int64_t macs = p.N * CM * OHW * taps;
  if (p.N == 0) return;
  // One channel (M = 1): NHWC is byte for byte the NCHW layout, whose kernels
  // vectorise along the row instead of over a single channel.
  const bool nchw = p.layout == Layout::NCHW || (g.C == 1 && g.M == 1);
  if (nchw && dw_use_rows_kernel(g)) {
    // Narrow rows: blocks of rows per call, ~1024 outputs each.
    const int64_t rb = g.OW >= 1024 ? 1 : (1024 / g.OW < g.OH ? 1024 / g.OW : g.OH);
    const int64_t blocks = ceil_div(g.OH, rb), tasks = p.N * CM * blocks;
    const int nt = plan_threads(threads, tasks, macs);
    const int64_t per = k.dw_rows_scratch(g, rb);
    std::vector<T> scratch(static_cast<size_t>(nt * per));
    parallel_for_tid(tasks, nt, [&](int64_t t, int tid) {
      const int64_t bi = t % blocks, nc = t / blocks, co = nc % CM, n = nc / CM;
      const int64_t oh0 = bi * rb, oh1 = oh0 + rb < g.OH ? oh0 + rb : g.OH;
      k.dw_fwd_nchw_rows(g, x + (n * g.C + co / g.M) * HW, w + co * taps, b ? b[co] : T(0), act,
                         oh0, oh1, y + nc * OHW + oh0 * g.OW, scratch.data() + tid * per);
    });
  } else if (nchw) {
    const int64_t rows = p.N * CM * g.OH;
    const int nt = plan_threads(threads, rows, macs);
    parallel_for(rows, nt, [&](int64_t t) {
      const int64_t oh = t % g.OH, nc = t / g.OH, co = nc % CM, n = nc / CM;
      k.dw_fwd_nchw_row(g, x + (n * g.C + co / g.M) * HW, w + co * taps, b ? b[co] : T(0), act, oh,
                        0, g.OW, y + nc * OHW + oh * g.OW);
    });
  } else {
    const std::vector<T> wp = pack_taps_last(w, CM, taps);
    const int64_t rows = p.N * g.OH;
    const int nt = plan_threads(threads, rows, macs);
    parallel_for(rows, nt, [&](int64_t t) {
      const int64_t oh = t % g.OH, n = t / g.OH;
      k.dw_fwd_nhwc_row(g, x + n * HW * g.C, wp.data(), b, act, oh, 0, g.OW,
                        y + (n * OHW + oh * g.OW) * CM);
    });
  }
}

template <class T>
void depthwise_backward(const Problem& p, const T* gy, const T* x, const T* w, T* gx, T* gw,
                        T* gb, int threads) {
  const KernelTable<T>& k = kernels<T>();
  const DwGeom& g = p.g;
  const int64_t HW = g.H * g.W, OHW = g.OH * g.OW, CM = p.Cmid, taps = g.kh * g.kw;
  const int64_t macs = p.N * CM * OHW * taps;
  const bool nchw = p.layout == Layout::NCHW;
  std::vector<T> wp;
  if (!nchw) wp = pack_taps_last(w, CM, taps);

  if (gx && p.N > 0) {  // gather: each task owns one input row
    if (nchw) {
      const int64_t rows = p.N * g.C * g.H;
      parallel_for(rows, plan_threads(threads, rows, macs), [&](int64_t t) {
        const int64_t ih = t % g.H, nc = t / g.H, c = nc % g.C, n = nc / g.C;
        k.dw_bwd_data_nchw_row(g, gy + (n * CM + c * g.M) * OHW, w + c * g.M * taps, ih,
                               gx + nc * HW + ih * g.W);
      });
    } else {
      const int64_t rows = p.N * g.H;
      parallel_for(rows, plan_threads(threads, rows, macs), [&](int64_t t) {
        const int64_t ih = t % g.H, n = t / g.H;
        k.dw_bwd_data_nhwc_row(g, gy + n * OHW * CM, wp.data(), ih, gx + (n * g.H + ih) * g.W * g.C);
      });
    }
  }
  if (!gw && !gb) return;
  // Weight/bias gradients: each task owns a set of output channels and sums
  // over images in order, so the bits do not depend on the thread count.
  std::vector<T> scratch;
  T* gwt = gw;  // NCHW accumulates straight into gw (same layout)
  if (!nchw || !gw) {
    scratch.assign(static_cast<size_t>(CM * taps), T(0));
    gwt = scratch.data();
  }
  if (gb) for (int64_t c = 0; c < CM; ++c) gb[c] = T(0);
  if (nchw) {
    for (int64_t i = 0; i < CM * taps; ++i) gwt[i] = T(0);
    parallel_for(CM, plan_threads(threads, CM, macs), [&](int64_t co) {
      for (int64_t n = 0; n < p.N; ++n)
        k.dw_bwd_weight_nchw(g, gy + (n * CM + co) * OHW, x + (n * g.C + co / g.M) * HW,
                             gwt + co * taps, gb ? gb + co : nullptr);
    });
  } else {
    const int64_t block = 16;  // channels per task; any split gives the same bits
    const int64_t tasks = ceil_div(CM, block);
    parallel_for(tasks, plan_threads(threads, tasks, macs), [&](int64_t t) {
      const int64_t c0 = t * block, c1 = c0 + block < CM ? c0 + block : CM;
      for (int64_t n = 0; n < p.N; ++n)
        k.dw_bwd_weight_nhwc(g, gy + n * OHW * CM, x + n * HW * g.C, c0, c1, gwt, gb);
    });
    if (gw)
      for (int64_t c = 0; c < CM; ++c)
        for (int64_t t = 0; t < taps; ++t) gw[c * taps + t] = gwt[t * CM + c];
  }
}

template void depthwise_forward<float>(const Problem&, const float*, const float*, const float*,
                                       Act, float*, int);
template void depthwise_forward<double>(const Problem&, const double*, const double*,
                                        const double*, Act, double*, int);
template void depthwise_backward<float>(const Problem&, const float*, const float*, const float*,
                                        float*, float*, float*, int);
template void depthwise_backward<double>(const Problem&, const double*, const double*,
                                         const double*, double*, double*, double*, int);

}  // namespace pydsconv
