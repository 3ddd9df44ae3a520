// Banded chains (plan_fuse.h): line buffers, band choice, the per-band loop.
#include "plan_fuse.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "arena.h"
#include "dispatch.h"
#include "heuristics.h"
#include "threads.h"

namespace pydsconv {

namespace {
constexpr int64_t kAlign = 16;  // scratch parts start on 64-byte lines
int64_t aligned(int64_t n) { return ceil_div(n, kAlign) * kAlign; }
}  // namespace

template <class T>
bool fuse_eligible(FuseKind kind, const Problem& pb, const T* dw, int64_t dw_elems) {
  if (kind == FuseKind::Pointwise) return true;
  const DwGeom& g = pb.g;
  if (kind == FuseKind::Depthwise && g.C == 1 && g.M == 1) return false;
  for (int64_t i = 0; i < dw_elems; ++i)
    if (!std::isfinite(dw[i])) return false;
  for (int64_t oh = 0; oh < g.OH; ++oh) {  // every output row reads an input row
    const int64_t lo = std::max<int64_t>(0, oh * g.sh - g.pt);
    const int64_t hi = std::min<int64_t>(g.H, oh * g.sh - g.pt + (g.kh - 1) * g.dh + 1);
    if (lo >= hi) return false;
  }
  return true;
}

template <class T>
struct FusedChain<T>::Cursor {
  int64_t n = -1, lo = 0, hi = 0;  // the line buffer holds rows [lo, hi) of image n
};

namespace {

// Rows of layer i's input needed for its output rows [a, b).
template <class T>
void in_rows(const std::vector<FuseLayer<T>>& layers_, size_t i, int64_t a, int64_t b, int64_t* lo,
             int64_t* hi) {
  const FuseLayer<T>& l = layers_[i];
  if (l.kind == FuseKind::Pointwise) {
    *lo = a;
    *hi = b;
    return;
  }
  const DwGeom& g = l.pb.g;
  *lo = std::max<int64_t>(0, a * g.sh - g.pt);
  *hi = std::min<int64_t>(g.H, (b - 1) * g.sh - g.pt + (g.kh - 1) * g.dh + 1);
}

// Elements of one thread's line buffers and separable tile for bands of
// `rows` final rows (caps: rows of each intermediate's buffer).
template <class T>
int64_t working_set(const std::vector<FuseLayer<T>>& layers_, int64_t rows,
                    std::vector<int64_t>* cap, int64_t* mid) {
  const size_t L = layers_.size();
  cap->assign(L, 0);  // cap[i]: rows of layer i's output held (i < L-1)
  std::vector<int64_t> most(L, 0);
  const int64_t OH = layers_.back().out_h();
  for (int64_t a = 0; a < OH; a += rows) {
    int64_t lo = a, hi = std::min(a + rows, OH);
    for (size_t i = L; i-- > 0;) {
      most[i] = std::max(most[i], hi - lo);  // output rows of layer i in one band
      if (i + 1 < L) (*cap)[i] = std::max((*cap)[i], hi - lo);
      in_rows(layers_, i, lo, hi, &lo, &hi);
    }
  }
  int64_t elems = 0;
  *mid = 0;
  for (size_t i = 0; i < L; ++i) {
    const FuseLayer<T>& l = layers_[i];
    if (i + 1 < L) elems += aligned((*cap)[i] * l.out_w() * l.out_c());
    if (l.kind == FuseKind::Separable)  // its depthwise tile: a chunk of rows (layer_rows)
      *mid =
          std::max(*mid, std::min(most[i], fuse_min_band_rows(l.out_w())) * l.out_w() * l.pb.Cmid);
  }
  return elems + aligned(*mid);
}

}  // namespace

template <class T>
bool fuse_chain_fits(const std::vector<FuseLayer<T>>& layers) {
  const FuseLayer<T>& last = layers.back();
  const int64_t rows = std::min(last.out_h(), fuse_min_band_rows(last.out_w()));
  std::vector<int64_t> cap;
  int64_t mid = 0;
  return fuse_band_fits(working_set(layers, rows, &cap, &mid) * int64_t(sizeof(T)));
}

template <class T>
FusedChain<T>::FusedChain(std::vector<FuseLayer<T>> layers, int64_t N, bool residual,
                          int64_t band_rows)
    : layers_(std::move(layers)), N_(N), residual_(residual) {
  const int64_t OH = layers_.back().out_h();
  int64_t mid = 0;
  std::vector<int64_t> cap;
  // The most rows whose line buffers fit the budget (at least one row).
  int64_t rows = 1;
  for (int64_t r = OH; r >= 1; --r)
    if (fuse_band_fits(working_set(layers_, r, &cap, &mid) * int64_t(sizeof(T)))) {
      rows = r;
      break;
    }
  rows = band_rows > 0 ? std::min(band_rows, OH) : std::min(rows, fuse_band_cap(OH, N_));
  bands_ = ceil_div(OH, rows);
  band_ = ceil_div(OH, bands_);
  working_set(layers_, band_, &cap_, &mid);
  int64_t off = 0;
  offset_.assign(layers_.size(), 0);
  for (size_t i = 0; i + 1 < layers_.size(); ++i) {
    offset_[i] = off;
    off += aligned(cap_[i] * layers_[i].out_w() * layers_[i].out_c());
  }
  mid_off_ = off;
  work_off_ = off + aligned(mid);
  const FuseLayer<T>& last = layers_.back();
  prefetch_y_ = gemm_prefetch_c<T>(N_ * last.out_h() * last.out_w() * last.out_c());
  for (const FuseLayer<T>& l : layers_) {
    const int64_t px = N_ * l.out_h() * l.out_w();
    if (l.kind == FuseKind::Pointwise) macs_ += px * l.pb.Cmid * l.pb.Cout;
    if (l.kind == FuseKind::Depthwise) macs_ += px * l.pb.Cmid * l.pb.g.kh * l.pb.g.kw;
    if (l.kind == FuseKind::Separable)
      macs_ += px * l.pb.Cmid * (l.pb.g.kh * l.pb.g.kw + l.pb.Cout);
  }
}

template <class T>
std::string FusedChain<T>::describe() const {
  std::string s = "banded";
  if (residual_) s += " + residual add";
  s += ": ";
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (i) s += " -> ";
    const FuseLayer<T>& l = layers_[i];
    s += l.kind == FuseKind::Pointwise ? "pw" : l.kind == FuseKind::Depthwise ? "dw" : "sep";
    s += "(" + l.name + ")";
  }
  int64_t bytes = 0;
  for (size_t i = 0; i + 1 < layers_.size(); ++i)
    bytes += cap_[i] * layers_[i].out_w() * layers_[i].out_c() * int64_t(sizeof(T));
  s += "; " + std::to_string(band_) + " of " + std::to_string(layers_.back().out_h()) +
       " rows a band, line buffers " + std::to_string(ceil_div(bytes, 1024)) + " KiB";
  return s;
}

namespace {

// Output rows [c0, c1) of one layer from its input rows [in_lo, in_lo +
// in_n) at `in` (row in_lo first) into `out` (row c0 first).
template <class T>
void layer_rows(const KernelTable<T>& k, const FuseLayer<T>& l, const T* dwp, const T* in,
                int64_t in_lo, int64_t in_n, int64_t c0, int64_t c1, T* out, T* mid, T* work,
                bool prefetch) {
  if (c1 <= c0) return;
  // A separable layer in chunks of rows, its depthwise tile small enough to
  // stay in L1/L2 next to the line buffers (same bits: rows are independent).
  const int64_t chunk = fuse_min_band_rows(l.out_w());
  if (l.kind == FuseKind::Separable && c1 - c0 > chunk) {
    for (int64_t r = c0; r < c1; r += chunk)
      layer_rows(k, l, dwp, in, in_lo, in_n, r, std::min(r + chunk, c1),
                 out + (r - c0) * l.out_w() * l.out_c(), mid, work, prefetch);
    return;
  }
  const Problem& p = l.pb;
  const T* gemm_a = in + (c0 - in_lo) * p.W * p.Cmid;  // pointwise: input rows = output rows
  const T* pw = l.w.data();
  const T* pbias = l.b.empty() ? nullptr : l.b.data();
  Act act = l.act;
  if (l.kind != FuseKind::Pointwise) {
    // The depthwise rows, with the input's rows shifted to in_lo: row ih of
    // the image is row ih - in_lo here; rows outside the buffer are padding
    // exactly where they are outside the image (the band's rows cover the
    // rest), so every output takes the taps it takes in the whole image.
    DwGeom g = p.g;
    g.H = in_n;
    g.pt = p.g.pt + in_lo;
    const bool sep = l.kind == FuseKind::Separable;
    T* dst = sep ? mid : out;
    const T* db = l.b.empty() ? nullptr : l.b.data();
    const Act a = sep ? l.mid_act : l.act;
    for (int64_t oh = c0; oh < c1; ++oh)
      k.dw_fwd_nhwc_row(g, in, dwp, db, a, oh, 0, g.OW, dst + (oh - c0) * g.OW * p.Cmid);
    if (!sep) return;
    gemm_a = mid;
    pw = l.w2.data();
    pbias = l.b2.empty() ? nullptr : l.b2.data();
  }
  const int64_t ow = l.out_w(), Ci = p.Cmid, Co = p.Cout;
  GemmArgs<T> a{(c1 - c0) * ow, Co,  Ci,  gemm_a, Ci, 1, pw, 1, Ci, out, Co, false, pbias,
                pbias ? 1 : -1, act, work};
  PackedView<T> v = l.packed ? l.packed->view() : PackedView<T>{};
  if (v.data) use_packed_b(a, v, 0);
  a.prefetch_c = prefetch;
  k.gemm(a);
}

}  // namespace

template <class T>
void FusedChain<T>::band(int64_t n, int64_t a, int64_t b, const T* x, T* y, T* scratch, Cursor* cur,
                         const T* const* dwp) const {
  const KernelTable<T>& k = kernels<T>();
  const size_t L = layers_.size();
  int64_t lo[kMaxChain], hi[kMaxChain];  // rows of layer i's output this band needs
  lo[L - 1] = a;
  hi[L - 1] = b;
  for (size_t i = L - 1; i > 0; --i) in_rows(layers_, i, lo[i], hi[i], &lo[i - 1], &hi[i - 1]);
  const FuseLayer<T>& first = layers_[0];
  const T* in = x + n * first.in_h() * first.in_w() * first.in_c();
  int64_t in_lo = 0, in_n = first.in_h();
  T* mid = scratch + mid_off_;
  T* work = scratch + work_off_;
  for (size_t i = 0; i < L; ++i) {
    const FuseLayer<T>& l = layers_[i];
    const int64_t row = l.out_w() * l.out_c();
    if (i + 1 == L) {
      T* out = y + (n * l.out_h() + a) * row;
      layer_rows(k, l, dwp[i], in, in_lo, in_n, a, b, out, mid, work, prefetch_y_);
      if (residual_) {
        const T* r = x + (n * l.out_h() + a) * row;
        for (int64_t e = 0; e < (b - a) * row; ++e) out[e] += r[e];
      }
      break;
    }
    T* buf = scratch + offset_[i];
    Cursor& c = cur[i];
    int64_t from = lo[i];
    if (c.n == n && lo[i] >= c.lo && lo[i] <= c.hi && hi[i] >= c.hi) {
      // Keep the rows this band shares with the last one (the halo).
      if (lo[i] > c.lo && c.hi > lo[i])
        std::memmove(buf, buf + (lo[i] - c.lo) * row,
                     static_cast<size_t>((c.hi - lo[i]) * row) * sizeof(T));
      from = c.hi;
    }
    layer_rows(k, l, dwp[i], in, in_lo, in_n, from, hi[i], buf + (from - lo[i]) * row, mid, work,
               false);
    c = Cursor{n, lo[i], hi[i]};
    in = buf;
    in_lo = lo[i];
    in_n = hi[i] - lo[i];
  }
}

template <class T>
void FusedChain<T>::run(const T* x, T* y, int threads) const {
  if (N_ == 0) return;
  const KernelTable<T>& k = kernels<T>();
  const size_t L = layers_.size();
  // The depthwise weights in the current kernel set's layout.
  int64_t dw_elems = 0;
  for (const FuseLayer<T>& l : layers_)
    if (l.kind != FuseKind::Pointwise) dw_elems += aligned(k.dw_nhwc_pack_elems(l.pb.g));
  Buffer<T> dwbuf(dw_elems);
  const T* dwp[kMaxChain] = {};
  T* at = dwbuf.data();
  for (size_t i = 0; i < L; ++i) {
    const FuseLayer<T>& l = layers_[i];
    if (l.kind == FuseKind::Pointwise) continue;
    k.dw_nhwc_pack(l.pb.g, l.w.data(), at);
    dwp[i] = at;
    at += aligned(k.dw_nhwc_pack_elems(l.pb.g));
  }
  const int64_t units = N_ * bands_, OH = layers_.back().out_h();
  const int nt = plan_threads(threads, units, macs_);
  // The GEMM's work area last: its size is the current kernel set's.
  const int64_t per_thread = work_off_ + aligned(k.gemm_work);
  Buffer<T> scratch(nt * per_thread);
  // Task t: units [t*units/nt, (t+1)*units/nt), in order (image-major).
  parallel_for_tid(nt, nt, [&](int64_t t, int tid) {
    Cursor cur[kMaxChain];
    const int64_t u0 = t * units / nt, u1 = (t + 1) * units / nt;
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t n = u / bands_, a = (u % bands_) * band_;
      band(n, a, std::min(a + band_, OH), x, y, scratch.data() + tid * per_thread, cur, dwp);
    }
  });
}

template bool fuse_eligible<float>(FuseKind, const Problem&, const float*, int64_t);
template bool fuse_eligible<double>(FuseKind, const Problem&, const double*, int64_t);
template bool fuse_chain_fits<float>(const std::vector<FuseLayer<float>>&);
template bool fuse_chain_fits<double>(const std::vector<FuseLayer<double>>&);
template class FusedChain<float>;
template class FusedChain<double>;

}  // namespace pydsconv
