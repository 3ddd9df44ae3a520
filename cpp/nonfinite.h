// Inf and NaN: every op computes IEEE arithmetic over the real terms of the
// zero-padded tensor, as pydsconv.reference and PyTorch's padded convolution
// do.  So a non-finite weight tap that reads padding gives 0 * inf = NaN,
// and so does a non-finite grad_out at an output that read padding (in the
// weight gradient of the tap that read it).  The fast kernels skip padding
// taps, or (grad-input) read zeros around grad_out that are no real terms;
// with finite values both give the same numbers.  So after the kernels, and
// only where a non-finite value can make a difference, the channels
// concerned are recomputed here by the definition (plain loops, the same
// result for any thread count).  Finite inputs cost one scan of the weights
// (forward, grad-input) or of grad_out's border outputs (grad-weight).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "dispatch.h"
#include "kernels/table.h"
#include "problem.h"
#include "threads.h"

namespace pydsconv {
namespace nonfinite {

template <class T>
bool all_finite(const T* a, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(a[i])) return false;
  return true;
}

// act(v) with the current kernel set's epilogue, so that recomputed outputs
// have the bits the kernels give (NaN stays NaN in every activation).
template <class T>
T activate(T v, Act act) {
  if (act == Act::None) return v;
  kernels<T>().activate(&v, 1, act);
  return v;
}

// Element offsets of (n, c, h, w) in the op's layout, for `channels` channels
// on an (h, w) plane.
struct Index {
  bool nhwc;
  int64_t channels, H, W;
  int64_t operator()(int64_t n, int64_t c, int64_t h, int64_t w) const {
    return nhwc ? ((n * H + h) * W + w) * channels + c : ((n * channels + c) * H + h) * W + w;
  }
};

inline bool reads_padding(const DwGeom& g, int64_t oh, int64_t ow, int64_t i, int64_t j) {
  const int64_t ih = oh * g.sh - g.pt + i * g.dh, iw = ow * g.sw - g.pl + j * g.dw;
  return ih < 0 || ih >= g.H || iw < 0 || iw >= g.W;
}

// Output (oh, ow) reads padding through some tap.
inline bool border_output(const DwGeom& g, int64_t oh, int64_t ow) {
  const int64_t h0 = oh * g.sh - g.pt, w0 = ow * g.sw - g.pl;
  return h0 < 0 || h0 + (g.kh - 1) * g.dh >= g.H || w0 < 0 || w0 + (g.kw - 1) * g.dw >= g.W;
}

// Depthwise forward, after the kernels: output channels with a non-finite
// tap are recomputed by the definition.
template <class T>
void fix_depthwise_forward(const Problem& p, const T* x, const T* w, const T* b, Act act, T* y,
                           int threads) {
  const DwGeom& g = p.g;
  const int64_t taps = g.kh * g.kw, CM = p.Cmid;
  if (p.N == 0 || all_finite(w, CM * taps)) return;
  std::vector<int64_t> bad;
  for (int64_t cm = 0; cm < CM; ++cm)
    if (!all_finite(w + cm * taps, taps)) bad.push_back(cm);
  const bool nhwc = p.layout == Layout::NHWC;
  const Index xi{nhwc, g.C, g.H, g.W}, yi{nhwc, CM, g.OH, g.OW};
  const int64_t tasks = static_cast<int64_t>(bad.size()) * p.N;
  parallel_for(tasks, plan_threads(threads, tasks, tasks * g.OH * g.OW * taps), [&](int64_t t) {
    const int64_t cm = bad[t % bad.size()], n = t / bad.size(), c = cm / g.M;
    const T* wc = w + cm * taps;
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        T acc = T(0);
        for (int64_t i = 0; i < g.kh; ++i)
          for (int64_t j = 0; j < g.kw; ++j) {
            const int64_t ih = oh * g.sh - g.pt + i * g.dh, iw = ow * g.sw - g.pl + j * g.dw;
            const bool in = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
            acc += (in ? x[xi(n, c, ih, iw)] : T(0)) * wc[i * g.kw + j];
          }
        if (b) acc += b[cm];
        y[yi(n, cm, oh, ow)] = activate(acc, act);
      }
  });
}

// Fused separable forward: an output pixel whose depthwise stage read padding
// through a non-finite tap (of any channel) has a NaN intermediate there, so
// all of its outputs are NaN (NaN times any pointwise weight, summed).
template <class T>
void fix_separable_forward(const Problem& p, const T* dw, T* y) {
  const DwGeom& g = p.g;
  const int64_t taps = g.kh * g.kw, CM = p.Cmid;
  if (p.N == 0 || all_finite(dw, CM * taps)) return;
  std::vector<char> bad_tap(static_cast<size_t>(taps), 0);
  for (int64_t cm = 0; cm < CM; ++cm)
    for (int64_t t = 0; t < taps; ++t)
      if (!std::isfinite(dw[cm * taps + t])) bad_tap[t] = 1;
  const bool nhwc = p.layout == Layout::NHWC;
  const Index yi{nhwc, p.Cout, g.OH, g.OW};
  const T nan = std::numeric_limits<T>::quiet_NaN();
  for (int64_t oh = 0; oh < g.OH; ++oh)
    for (int64_t ow = 0; ow < g.OW; ++ow) {
      if (!border_output(g, oh, ow)) continue;
      bool poisoned = false;
      for (int64_t t = 0; t < taps && !poisoned; ++t)
        poisoned = bad_tap[t] && reads_padding(g, oh, ow, t / g.kw, t % g.kw);
      if (!poisoned) continue;
      for (int64_t n = 0; n < p.N; ++n)
        for (int64_t co = 0; co < p.Cout; ++co) y[yi(n, co, oh, ow)] = nan;
    }
}

// Depthwise grad-input: input channels with a non-finite tap (in any of their
// M output channels) are recomputed by the definition, over real outputs only.
template <class T>
void fix_depthwise_grad_input(const Problem& p, const T* gy, const T* w, T* gx, int threads) {
  const DwGeom& g = p.g;
  const int64_t taps = g.kh * g.kw, CM = p.Cmid;
  if (!gx || p.N == 0 || all_finite(w, CM * taps)) return;
  std::vector<int64_t> bad;
  for (int64_t c = 0; c < g.C; ++c)
    if (!all_finite(w + c * g.M * taps, g.M * taps)) bad.push_back(c);
  const bool nhwc = p.layout == Layout::NHWC;
  const Index xi{nhwc, g.C, g.H, g.W}, yi{nhwc, CM, g.OH, g.OW};
  const int64_t tasks = static_cast<int64_t>(bad.size()) * p.N;
  parallel_for(tasks, plan_threads(threads, tasks, tasks * g.H * g.W * taps * g.M), [&](int64_t t) {
    const int64_t c = bad[t % bad.size()], n = t / bad.size();
    for (int64_t ih = 0; ih < g.H; ++ih)
      for (int64_t iw = 0; iw < g.W; ++iw) {
        T acc = T(0);
        for (int64_t m = 0; m < g.M; ++m)
          for (int64_t i = 0; i < g.kh; ++i) {
            const int64_t hh = ih + g.pt - i * g.dh;
            if (hh < 0 || hh % g.sh || hh / g.sh >= g.OH) continue;
            for (int64_t j = 0; j < g.kw; ++j) {
              const int64_t ww = iw + g.pl - j * g.dw;
              if (ww < 0 || ww % g.sw || ww / g.sw >= g.OW) continue;
              acc += gy[yi(n, c * g.M + m, hh / g.sh, ww / g.sw)] *
                     w[(c * g.M + m) * taps + i * g.kw + j];
            }
          }
        gx[xi(n, c, ih, iw)] = acc;
      }
  });
}

// Depthwise grad-weight: an output channel whose kernel result is non-finite
// (a non-finite value met something, maybe padding or a term that is not
// real) or whose grad_out is non-finite at a border output (which the kernels
// did not multiply by the padding's zeros) is recomputed by the definition.
template <class T>
void fix_depthwise_grad_weight(const Problem& p, const T* gy, const T* x, T* gw, int threads) {
  const DwGeom& g = p.g;
  const int64_t taps = g.kh * g.kw, CM = p.Cmid;
  if (!gw || p.N == 0) return;
  const bool nhwc = p.layout == Layout::NHWC;
  const Index xi{nhwc, g.C, g.H, g.W}, yi{nhwc, CM, g.OH, g.OW};
  // Border outputs: rows that read padding, and the border columns of the rest.
  std::vector<int64_t> border;
  for (int64_t oh = 0; oh < g.OH; ++oh)
    for (int64_t ow = 0; ow < g.OW; ++ow)
      if (border_output(g, oh, ow)) border.push_back(oh * g.OW + ow);
  std::vector<char> redo(static_cast<size_t>(CM), 0);
  parallel_for(CM, plan_threads(threads, CM, CM * p.N * (int64_t(border.size()) + taps)),
               [&](int64_t cm) {
                 bool r = !all_finite(gw + cm * taps, taps);
                 for (int64_t n = 0; n < p.N && !r; ++n)
                   for (size_t i = 0; i < border.size() && !r; ++i)
                     r = !std::isfinite(gy[yi(n, cm, border[i] / g.OW, border[i] % g.OW)]);
                 redo[cm] = r;
               });
  std::vector<int64_t> bad;
  for (int64_t cm = 0; cm < CM; ++cm)
    if (redo[cm]) bad.push_back(cm);
  const int64_t nb = static_cast<int64_t>(bad.size());
  parallel_for(nb, plan_threads(threads, nb, nb * p.N * g.OH * g.OW * taps), [&](int64_t t) {
    const int64_t cm = bad[t], c = cm / g.M;
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        T acc = T(0);
        for (int64_t n = 0; n < p.N; ++n)
          for (int64_t oh = 0; oh < g.OH; ++oh)
            for (int64_t ow = 0; ow < g.OW; ++ow) {
              const int64_t ih = oh * g.sh - g.pt + i * g.dh, iw = ow * g.sw - g.pl + j * g.dw;
              const bool in = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
              acc += gy[yi(n, cm, oh, ow)] * (in ? x[xi(n, c, ih, iw)] : T(0));
            }
        gw[cm * taps + i * g.kw + j] = acc;
      }
  });
}

}  // namespace nonfinite
}  // namespace pydsconv
