// Depthwise operators: loops over images, channels and rows; kernels do rows.
#include <algorithm>
#include <vector>

#include "arena.h"
#include "dispatch.h"
#include "nonfinite.h"
#include "ops.h"
#include "threads.h"
#include "trace.h"

namespace pydsconv {

namespace {
// Channels per task of the via-NHWC path: multiples of 16 (a channel block
// of every NHWC kernel set, float32 and float64), enough of them for ~3K
// outputs a task, so that the block's copies stay in L1/L2.
inline int64_t via_channels(int64_t C, int64_t HW) {
  const int64_t want = ceil_div(ceil_div(3072, HW), 16) * 16;
  return std::min(C, std::max<int64_t>(16, want));
}

// (C*M, 1, kh, kw) -> (kh, kw, C*M): the NHWC kernels read all channels of
// one tap contiguously.
template <class T>
std::vector<T> pack_taps_last(const T* w, int64_t cm, int64_t taps) {
  std::vector<T> out(static_cast<size_t>(cm * taps));
  for (int64_t t = 0; t < taps; ++t)  // written in order: C*M = 1024 puts the
    for (int64_t c = 0; c < cm; ++c) out[t * cm + c] = w[c * taps + t];  // taps 4 KiB apart
  return out;
}
}  // namespace

// The kernels alone (padding taps skipped: see nonfinite.h).
template <class T>
static void forward_kernels(const Problem& p, const T* x, const T* w, const T* b, Act act, T* y,
                            int threads) {
  const KernelTable<T>& k = kernels<T>();
  const DwGeom& g = p.g;
  const int64_t HW = g.H * g.W, OHW = g.OH * g.OW, CM = p.Cmid, taps = g.kh * g.kw;
  const int64_t macs = p.N * CM * OHW * taps;
  if (p.N == 0) return;
  // One channel (M = 1): NHWC is byte for byte the NCHW layout, whose kernels
  // vectorise along the row instead of over a single channel.
  const bool nchw = p.layout == Layout::NCHW || (g.C == 1 && g.M == 1);
  if (nchw && dw_nchw_flat(k, g)) {
    trace::hit(trace::DwNchwFlat);
    // Small planes at stride 1: the flat kernel, a task per block of 16
    // channels of one image (of a tall plane: per block of ~2K outputs of
    // 16 channels).
    const int64_t qb = OHW <= 4096 ? OHW : std::max<int64_t>(1, 2048 / g.OW) * g.OW;
    const int64_t blocks = ceil_div(OHW, qb), cb = 16, ncb = ceil_div(CM, cb);
    const int64_t tasks = p.N * ncb * blocks;
    const int nt = plan_threads(threads, tasks, macs);
    const int64_t per = k.dw_flat_scratch(g, qb);
    Buffer<T> scratch(nt * per);
    parallel_for_tid(tasks, nt, [&](int64_t t, int tid) {
      const int64_t bi = t % blocks, u = t / blocks, c0 = (u % ncb) * cb, n = u / ncb;
      const int64_t q0 = bi * qb, q1 = std::min(q0 + qb, OHW), c1 = std::min(c0 + cb, CM);
      k.dw_fwd_nchw_flat(g, x + n * g.C * HW, w, b, act, c0, c1, q0, q1,
                         y + (n * CM + c0) * OHW + q0, OHW, scratch.data() + tid * per);
    });
  } else if (nchw && dw_nchw_via_nhwc(k, g, false)) {
    trace::hit(trace::DwNchwViaNhwc);
    // Small planes (M = 1): a task takes a block of cb channels of one image,
    // transposes them into a channels-last copy (HW x cb), runs the NHWC
    // kernels on it and transposes the result into y.  The copies stay in
    // L1/L2 (a 28x28 block: 50 KiB each way), and the transposes read and
    // write cb planes at a time, streams the prefetchers follow; a whole
    // image's copies (0.8 MiB each way at 256x28x28) made the transposes
    // cost 2.5x the depthwise itself.  The last block ends at C, overlapping
    // its neighbour (those channels computed twice, bit for bit the same).
    const int64_t cb = via_channels(g.C, HW), nb = ceil_div(g.C, cb);
    DwGeom gb = g;
    gb.C = cb;
    const int64_t per = HW * cb + OHW * cb + k.dw_nhwc_pack_elems(gb);
    const int64_t tasks = p.N * nb;
    const int nt = plan_threads(threads, tasks, macs);
    Buffer<T> work(nt * per);
    parallel_for_tid(tasks, nt, [&](int64_t t, int tid) {
      const int64_t n = t / nb, c0 = std::min((t % nb) * cb, g.C - cb);
      T* xt = work.data() + tid * per;
      T* yt = xt + HW * cb;
      T* wp = yt + OHW * cb;
      k.transpose(cb, HW, x + (n * g.C + c0) * HW, HW, xt, cb);
      k.dw_nhwc_pack(gb, w + c0 * taps, wp);
      for (int64_t oh = 0; oh < g.OH; ++oh)
        k.dw_fwd_nhwc_row(gb, xt, wp, b ? b + c0 : nullptr, act, oh, 0, g.OW, yt + oh * g.OW * cb);
      k.transpose(OHW, cb, yt, cb, y + (n * CM + c0) * OHW, OHW);
    });
  } else if (nchw && dw_use_rows_kernel(g)) {
    trace::hit(trace::DwNchwRows);
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
    trace::hit(trace::DwNchwRow);
    const int64_t rows = p.N * CM * g.OH;
    const int nt = plan_threads(threads, rows, macs);
    parallel_for(rows, nt, [&](int64_t t) {
      const int64_t oh = t % g.OH, nc = t / g.OH, co = nc % CM, n = nc / CM;
      k.dw_fwd_nchw_row(g, x + (n * g.C + co / g.M) * HW, w + co * taps, b ? b[co] : T(0), act, oh,
                        0, g.OW, y + nc * OHW + oh * g.OW);
    });
  } else {
    trace::hit(trace::DwNhwc);
    std::vector<T> wp(static_cast<size_t>(k.dw_nhwc_pack_elems(g)));
    k.dw_nhwc_pack(g, w, wp.data());
    const int64_t rows = p.N * g.OH;
    const int nt = plan_threads(threads, rows, macs);
    parallel_for(rows, nt, [&](int64_t t) {
      const int64_t oh = t % g.OH, n = t / g.OH;
      k.dw_fwd_nhwc_row(g, x + n * HW * g.C, wp.data(), b, act, oh, 0, g.OW,
                        y + (n * OHW + oh * g.OW) * CM);
    });
  }
}

// Backward.  Grad-input: tasks own input rows (a gather, no atomics).
// Grad-weight/bias: the N*OH output rows (image-major) are cut into chunks
// of `rows` rows, a number that depends on the geometry only; each chunk's
// partial sums go to their own slot, computed by tasks (chunk, channel
// block), and the slots are then added in chunk order.  So the bits never
// depend on the thread count, and a batch of one still has many tasks.
namespace {
constexpr int64_t kBwdChunkPixels = 256;  // output pixels per chunk, at least
constexpr int64_t kBwdMaxChunks = 64;     // bounds the slots' memory
constexpr int64_t kBwdChannelBlock = 64;  // NHWC channels per task (a multiple of every L)

int64_t bwd_chunk_rows(const DwGeom& g, int64_t N) {
  const int64_t total = N * g.OH;
  int64_t rows = ceil_div(kBwdChunkPixels, g.OW);
  const int64_t cap = ceil_div(total, kBwdMaxChunks);
  if (rows < cap) rows = cap;
  return rows < total ? rows : total;
}

// Calls f(n, oh0, oh1) for the parts of chunk k (rows [k*rows, ...)) that lie
// in each image, in order.
template <class F>
void for_chunk_rows(const DwGeom& g, int64_t N, int64_t rows, int64_t k, const F& f) {
  const int64_t total = N * g.OH, u1 = (k + 1) * rows < total ? (k + 1) * rows : total;
  for (int64_t u = k * rows; u < u1;) {
    const int64_t n = u / g.OH, oh0 = u - n * g.OH;
    const int64_t oh1 = oh0 + (u1 - u) < g.OH ? oh0 + (u1 - u) : g.OH;
    f(n, oh0, oh1);
    u += oh1 - oh0;
  }
}
}  // namespace

template <class T>
static void backward_kernels(const Problem& p, const T* gy, const T* x, const T* w, T* gx, T* gw,
                             T* gb, int threads) {
  const KernelTable<T>& k = kernels<T>();
  const DwGeom& g = p.g;
  const int64_t HW = g.H * g.W, OHW = g.OH * g.OW, CM = p.Cmid, taps = g.kh * g.kw;
  const int64_t macs = p.N * CM * OHW * taps;
  const bool nchw = p.layout == Layout::NCHW;
  // Stride 1, M = 1: grad-input is the forward correlation of grad_out with
  // the flipped kernel, padded by (k-1)*d - pad; the forward kernels do it.
  const int64_t ptf = (g.kh - 1) * g.dh - g.pt, plf = (g.kw - 1) * g.dw - g.pl;
  if (gx && p.N > 0 && g.M == 1 && g.sh == 1 && g.sw == 1 && ptf >= 0 && plf >= 0) {
    trace::hit(trace::DwBwdInputAsForward);
    Problem q = p;
    q.g = DwGeom{g.C, 1, g.OH, g.OW, g.kh, g.kw, 1, 1, g.dh, g.dw, ptf, plf, g.H, g.W};
    std::vector<T> wf(static_cast<size_t>(CM * taps));
    for (int64_t c = 0; c < CM; ++c)
      for (int64_t t = 0; t < taps; ++t) wf[c * taps + t] = w[c * taps + taps - 1 - t];
    forward_kernels(q, gy, wf.data(), static_cast<const T*>(nullptr), Act::None, gx, threads);
    gx = nullptr;
  }
  std::vector<T> wp;
  if (!nchw && gx) wp = pack_taps_last(w, CM, taps);
  if (gx && p.N > 0) {  // gather: each task owns one input row
    if (nchw) {
      const int64_t rows = p.N * g.C * g.H;
      const int nt = plan_threads(threads, rows, macs);
      const int64_t per = k.dw_bwd_data_nchw_scratch(g);
      std::vector<T> scratch(static_cast<size_t>(nt * per));
      parallel_for_tid(rows, nt, [&](int64_t t, int tid) {
        const int64_t ih = t % g.H, nc = t / g.H, c = nc % g.C, n = nc / g.C;
        k.dw_bwd_data_nchw_row(g, gy + (n * CM + c * g.M) * OHW, w + c * g.M * taps, ih,
                               gx + nc * HW + ih * g.W, per ? scratch.data() + tid * per : nullptr);
      });
    } else {
      const int64_t rows = p.N * g.H;
      parallel_for(rows, plan_threads(threads, rows, macs), [&](int64_t t) {
        const int64_t ih = t % g.H, n = t / g.H;
        k.dw_bwd_data_nhwc_row(g, gy + n * OHW * CM, wp.data(), ih,
                               gx + (n * g.H + ih) * g.W * g.C);
      });
    }
  }
  if (!gw && !gb) return;
  if (p.N == 0) {
    if (gw)
      for (int64_t i = 0; i < CM * taps; ++i) gw[i] = T(0);
    if (gb)
      for (int64_t c = 0; c < CM; ++c) gb[c] = T(0);
    return;
  }
  // Slot of chunk c: weights (C*M, taps) for NCHW, (taps, C*M) for NHWC,
  // then the bias (C*M).
  const int64_t rows = bwd_chunk_rows(g, p.N), chunks = ceil_div(p.N * g.OH, rows);
  const int64_t slot = (taps + 1) * CM;
  std::vector<T> part(static_cast<size_t>(chunks * slot), T(0));
  if (nchw) {
    const int64_t tasks = chunks * CM;
    const int nt = plan_threads(threads, tasks, macs);
    const int64_t per = gw ? k.dw_bwd_weight_nchw_scratch(g, rows) : 0;
    std::vector<T> scratch(static_cast<size_t>(nt * per));
    parallel_for_tid(tasks, nt, [&](int64_t t, int tid) {
      const int64_t co = t % CM, c = t / CM;
      T* s = part.data() + c * slot;
      for_chunk_rows(g, p.N, rows, c, [&](int64_t n, int64_t oh0, int64_t oh1) {
        k.dw_bwd_weight_nchw(g, gy + (n * CM + co) * OHW, x + (n * g.C + co / g.M) * HW, oh0, oh1,
                             gw ? s + co * taps : nullptr, gb ? s + taps * CM + co : nullptr,
                             per ? scratch.data() + tid * per : nullptr);
      });
    });
  } else {
    const int64_t blocks = ceil_div(CM, kBwdChannelBlock), tasks = chunks * blocks;
    parallel_for(tasks, plan_threads(threads, tasks, macs), [&](int64_t t) {
      const int64_t b = t % blocks, c = t / blocks;
      const int64_t c0 = b * kBwdChannelBlock,
                    c1 = c0 + kBwdChannelBlock < CM ? c0 + kBwdChannelBlock : CM;
      T* s = part.data() + c * slot;
      for_chunk_rows(g, p.N, rows, c, [&](int64_t n, int64_t oh0, int64_t oh1) {
        k.dw_bwd_weight_nhwc(g, gy + n * OHW * CM, x + n * HW * g.C, oh0, oh1, c0, c1,
                             gw ? s : nullptr, gb ? s + taps * CM : nullptr);
      });
    });
  }
  // Reduce the slots in chunk order, one task per output channel.
  parallel_for(CM, plan_threads(threads, CM, chunks * slot), [&](int64_t co) {
    for (int64_t t = 0; t < taps; ++t) {
      const int64_t at = nchw ? co * taps + t : t * CM + co;
      T v = part[at];
      for (int64_t c = 1; c < chunks; ++c) v += part[c * slot + at];
      if (gw) gw[co * taps + t] = v;
    }
    if (gb) {
      T v = part[taps * CM + co];
      for (int64_t c = 1; c < chunks; ++c) v += part[c * slot + taps * CM + co];
      gb[co] = v;
    }
  });
}

template <class T>
void depthwise_forward(const Problem& p, const T* x, const T* w, const T* b, Act act, T* y,
                       int threads) {
  forward_kernels(p, x, w, b, act, y, threads);
  nonfinite::fix_depthwise_forward(p, x, w, b, act, y, threads);
}

template <class T>
void depthwise_backward(const Problem& p, const T* gy, const T* x, const T* w, T* gx, T* gw, T* gb,
                        int threads) {
  backward_kernels(p, gy, x, w, gx, gw, gb, threads);
  nonfinite::fix_depthwise_grad_input(p, gy, w, gx, threads);
  nonfinite::fix_depthwise_grad_weight(p, gy, x, gw, threads);
}

template void depthwise_forward<float>(const Problem&, const float*, const float*, const float*,
                                       Act, float*, int);
template void depthwise_forward<double>(const Problem&, const double*, const double*, const double*,
                                        Act, double*, int);
template void depthwise_backward<float>(const Problem&, const float*, const float*, const float*,
                                        float*, float*, float*, int);
template void depthwise_backward<double>(const Problem&, const double*, const double*,
                                         const double*, double*, double*, double*, int);

}  // namespace pydsconv
