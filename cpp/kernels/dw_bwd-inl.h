// Depthwise backward kernels (grad-input and grad-weight/bias), compiled once
// per ISA: included by kernels-inl.h inside `namespace pydsconv::<isa>`, after
// the SIMD vocabulary (simd-inl.h) and the NCHW forward helpers
// (dw_nchw-inl.h: dw_phase_planes, dw_nchw_phase_blocks).  Like every -inl.h
// kernel header it includes nothing.
//
// Determinism.  Grad-input: each kernel call owns whole input rows, and every
// element is one FMA chain (0, then its valid taps in (m, i, j) order) that
// does not depend on where the element lies in the row or on the channel
// block it falls in.  Grad-weight: the kernels *accumulate* into per-chunk
// slots (the operator's fixed partition of output rows); each tap's chain
// runs over the chunk's pixels in a fixed order, so the bits depend only on
// the geometry and the chunk boundaries, never on the thread count.
//
// Stride fast paths: an input column iw = q*s + p (phase p) is reached by
// tap j only if (p + pl - j*dw) is a multiple of s, and then from output
// column q + e_j with e_j = (p + pl - j*dw) / s; so per phase the valid taps
// and their offsets are fixed and the inner loops are plain contiguous runs
// (no `%` or `/` inside them).

constexpr int kBwdTG = 9;  // taps held in registers at once (3x3 in one group)

// *e = u / s if s divides u (u of any sign); strides 1 and 2 skip the divide.
static inline bool dw_exact_div(int64_t u, int64_t s, int64_t* e) {
  if (s == 1) {
    *e = u;
    return true;
  }
  if (s == 2) {
    *e = u >> 1;
    return (u & 1) == 0;
  }
  *e = u / s;
  return u % s == 0;
}

// Kernel rows i that reach input row ih: output row oh_i = (ih + pt - i*dh)/sh
// integral and in [0, OH).  Returns their count; ri/roh receive i and oh_i.
static inline int64_t dw_bwd_rows(const DwGeom& g, int64_t ih, int64_t* ri, int64_t* roh) {
  int64_t n = 0;
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t t = ih + g.pt - i * g.dh;
    if (t < 0) break;  // decreasing in i
    const int64_t oh = div_s(t, g.sh);
    if (oh * g.sh != t || oh >= g.OH) continue;
    ri[n] = i;
    roh[n] = oh;
    ++n;
  }
  return n;
}

template <class T, class V>
static inline T dw_hsum(V v) {  // lanes in order: a fixed chain
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  T s = v[0];
  for (int64_t l = 1; l < L; ++l) s += v[l];
  return s;
}

// ---------------------------------------------------------------------------
// NHWC grad-input, M = 1: gx[ih, iw, c] = sum over valid taps (i, j) of
// w[i, j, c] * gy[oh_i, ow_j, c].  Channel vectors (VT = the unit's vector,
// or T for the last C mod L channels); per phase, taps in groups of kBwdTG
// whose weights stay in registers while the kernel walks the row, P pixels
// at a time.  Later groups continue the chain from gx (exact round trip).

struct DwBwdTap {
  int64_t gy_off;    // (oh_i * OW + e_j) * C
  int64_t w_off;     // (i * kw + j) * C
  int64_t qlo, qhi;  // phase columns q for which q + e_j is in [0, OW)
};

template <class T, class VT, int P, bool CHECK>
static inline int64_t dw_bwd_nhwc_gx_run(const T* gy, const DwBwdTap* tp, int n, const VT* wv,
                                         bool first, int64_t q, int64_t qend, int64_t C, int64_t sw,
                                         int64_t p, T* gx) {
  for (; q + P <= qend; q += P) {
    VT acc[P];
    for (int b = 0; b < P; ++b) acc[b] = first ? VT{} : vload<VT>(gx + ((q + b) * sw + p) * C);
    for (int t = 0; t < kBwdTG; ++t) {
      if (t >= n) break;
      if (CHECK && (q < tp[t].qlo || q >= tp[t].qhi)) continue;  // CHECK: P == 1
      const T* s = gy + (tp[t].gy_off + q * C);
      for (int b = 0; b < P; ++b) acc[b] += wv[t] * vload<VT>(s + b * C);
    }
    for (int b = 0; b < P; ++b) vstore(gx + ((q + b) * sw + p) * C, acc[b]);
  }
  return q;
}

// One channel block (VT wide, at channel c) of one phase (Qp columns).
template <class T, class VT>
static void dw_bwd_nhwc_gx_phase(const T* gy, const T* w, const DwBwdTap* tp, int64_t nt,
                                 int64_t Qp, int64_t C, int64_t sw, int64_t p, int64_t c, T* gx) {
  gy += c;
  gx += c;
  for (int64_t g0 = 0; g0 < nt; g0 += kBwdTG) {
    const int n = static_cast<int>(nt - g0 < kBwdTG ? nt - g0 : kBwdTG);
    const DwBwdTap* tg = tp + g0;
    VT wv[kBwdTG];
    int64_t qa = 0, qb = Qp;  // columns where every tap of the group is valid
    for (int t = 0; t < kBwdTG; ++t) {
      wv[t] = t < n ? vload<VT>(w + tg[t].w_off + c) : VT{};
      if (t < n) {
        qa = tg[t].qlo > qa ? tg[t].qlo : qa;
        qb = tg[t].qhi < qb ? tg[t].qhi : qb;
      }
    }
    if (qb < qa) qb = qa;
    const bool first = g0 == 0;
    dw_bwd_nhwc_gx_run<T, VT, 1, true>(gy, tg, n, wv, first, 0, qa, C, sw, p, gx);
    int64_t q = dw_bwd_nhwc_gx_run<T, VT, 4, false>(gy, tg, n, wv, first, qa, qb, C, sw, p, gx);
    dw_bwd_nhwc_gx_run<T, VT, 1, false>(gy, tg, n, wv, first, q, qb, C, sw, p, gx);
    dw_bwd_nhwc_gx_run<T, VT, 1, true>(gy, tg, n, wv, first, qb, Qp, C, sw, p, gx);
  }
}

template <class T>
static bool dw_bwd_data_nhwc_m1(const DwGeom& g, const T* PYDSCONV_RESTRICT gy,
                                const T* PYDSCONV_RESTRICT w, int64_t ih, T* PYDSCONV_RESTRICT gx) {
  typedef typename VecOf<T>::type V;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  if (g.kh > kDwMaxTaps || g.kh * g.kw > kDwMaxTaps) return false;
  const int64_t C = g.C, cv = C / L * L;
  int64_t ri[kDwMaxTaps], roh[kDwMaxTaps];
  const int64_t nr = dw_bwd_rows(g, ih, ri, roh);
  DwBwdTap tp[kDwMaxTaps];
  const int64_t nph = g.sw < g.W ? g.sw : g.W;
  for (int64_t p = 0; p < nph; ++p) {
    const int64_t Qp = div_s(g.W - p - 1, g.sw) + 1;
    int64_t nt = 0;
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t j = 0; j < g.kw; ++j) {
        int64_t e;
        if (!dw_exact_div(p + g.pl - j * g.dw, g.sw, &e)) continue;
        const int64_t lo = e < 0 ? -e : 0, hi = g.OW - e < Qp ? g.OW - e : Qp;
        if (lo >= hi) continue;  // never reaches an output
        tp[nt++] = {(roh[r] * g.OW + e) * C, (ri[r] * g.kw + j) * C, lo, hi};
      }
    if (nt == 0) {
      for (int64_t q = 0; q < Qp; ++q)
        for (int64_t c = 0; c < C; ++c) gx[(q * g.sw + p) * C + c] = T(0);
      continue;
    }
    for (int64_t c = 0; c < cv; c += L)
      dw_bwd_nhwc_gx_phase<T, V>(gy, w, tp, nt, Qp, C, g.sw, p, c, gx);
    for (int64_t c = cv; c < C; ++c)
      dw_bwd_nhwc_gx_phase<T, T>(gy, w, tp, nt, Qp, C, g.sw, p, c, gx);
  }
  return true;
}

// NHWC grad-input: one input row of one image (see table.h).  M > 1 (or an
// enormous kernel) takes the plain loops: taps in (i, j) order, then m.
template <class T>
static void dw_bwd_data_nhwc_row(const DwGeom& g, const T* PYDSCONV_RESTRICT gy,
                                 const T* PYDSCONV_RESTRICT w, int64_t ih,
                                 T* PYDSCONV_RESTRICT gx) {
  if (g.M == 1 && dw_bwd_data_nhwc_m1(g, gy, w, ih, gx)) return;
  const int64_t C = g.C, M = g.M, CM = g.C * g.M;
  for (int64_t k = 0; k < g.W * C; ++k) gx[k] = T(0);
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t t = ih + g.pt - i * g.dh;
    if (t < 0) break;
    const int64_t oh = div_s(t, g.sh);
    if (oh * g.sh != t || oh >= g.OH) continue;
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t off = j * g.dw - g.pl;
      int64_t lo, hi;
      valid_range(g.W, g.sw, off, g.OW, &lo, &hi);
      const T* wp = w + (i * g.kw + j) * CM;
      for (int64_t ow = lo; ow < hi; ++ow) {
        T* gxp = gx + (ow * g.sw + off) * C;
        const T* gyp = gy + (oh * g.OW + ow) * CM;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t m = 0; m < M; ++m) gxp[c] += wp[c * M + m] * gyp[c * M + m];
      }
    }
  }
}

// ---------------------------------------------------------------------------
// NHWC grad-weight, M = 1, one channel block (VT wide at channel c), output
// rows [oh0, oh1): gw (kh, kw, C) and gb (C) accumulate.  Taps in groups of
// kBwdTG accumulators held in registers across the rows; each gy vector is
// loaded once per group.  Each tap's chain: its slot value, then the valid
// pixels in row-major order.
template <class T, class VT, bool CHECK, bool BIAS>
static inline void dw_bwd_nhwc_gw_run(const T* gy, const T* x, const int64_t* xoff, const bool* rok,
                                      const int64_t* jo, int n, int64_t ow0, int64_t ow1, int64_t C,
                                      int64_t sw, int64_t W, VT* acc, VT* bacc) {
  for (int64_t ow = ow0; ow < ow1; ++ow) {
    const VT gv = vload<VT>(gy + ow * C);
    if (BIAS) *bacc += gv;
    const int64_t xo = ow * sw;
    for (int t = 0; t < kBwdTG; ++t) {
      if (t >= n) break;
      if (!rok[t]) continue;
      if (CHECK && static_cast<uint64_t>(xo + jo[t]) >= static_cast<uint64_t>(W)) continue;
      acc[t] += gv * vload<VT>(x + (xoff[t] + xo * C));
    }
  }
}

// The interior of a row when the whole group is valid (n == kBwdTG, every
// tap's input row inside): straight-line taps, no per-pixel tests.  Same
// chains (same order, same contraction) as dw_bwd_nhwc_gw_run.
template <class T, class VT, bool BIAS>
static inline void dw_bwd_nhwc_gw_full(const T* gy, const T* x, const int64_t* xoff, int64_t ow0,
                                       int64_t ow1, int64_t C, int64_t sw, VT* acc, VT* bacc) {
  const T* xp[kBwdTG];
  VT r[kBwdTG];
  for (int t = 0; t < kBwdTG; ++t) {
    xp[t] = x + xoff[t];
    r[t] = acc[t];
  }
  VT b = *bacc;
  for (int64_t ow = ow0; ow < ow1; ++ow) {
    const VT gv = vload<VT>(gy + ow * C);
    if (BIAS) b += gv;
    const int64_t o = ow * sw * C;
    for (int t = 0; t < kBwdTG; ++t) r[t] += gv * vload<VT>(xp[t] + o);
  }
  for (int t = 0; t < kBwdTG; ++t) acc[t] = r[t];
  *bacc = b;
}

template <class T, class VT>
static void dw_bwd_weight_nhwc_c(const DwGeom& g, const T* gy, const T* x, int64_t oh0, int64_t oh1,
                                 int64_t c, T* gw, T* gb) {
  const int64_t C = g.C, taps = gw ? g.kh * g.kw : 0;
  VT bacc = gb ? vload<VT>(gb + c) : VT{};
  if (gb && !gw) {  // bias only
    for (int64_t k = oh0 * g.OW; k < oh1 * g.OW; ++k) bacc += vload<VT>(gy + k * C + c);
    vstore(gb + c, bacc);
    return;
  }
  for (int64_t g0 = 0; g0 < taps; g0 += kBwdTG) {
    const int n = static_cast<int>(taps - g0 < kBwdTG ? taps - g0 : kBwdTG);
    const bool bias = gb && g0 == 0;  // the bias rides along the first group
    VT acc[kBwdTG];
    int64_t ti[kBwdTG], jo[kBwdTG];  // tap row; column offset j*dw - pl
    int64_t a = 0, bnd = g.OW;       // columns where every tap of the group is inside
    for (int t = 0; t < kBwdTG; ++t) {
      acc[t] = t < n ? vload<VT>(gw + (g0 + t) * C + c) : VT{};
      const int64_t tap = t < n ? g0 + t : g0;
      ti[t] = tap / g.kw;
      jo[t] = (tap - ti[t] * g.kw) * g.dw - g.pl;
      if (t < n) {
        int64_t lo, hi;
        valid_range(g.W, g.sw, jo[t], g.OW, &lo, &hi);
        a = lo > a ? lo : a;
        bnd = hi < bnd ? hi : bnd;
      }
    }
    if (bnd < a) bnd = a;
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      int64_t xoff[kBwdTG];
      bool rok[kBwdTG];
      for (int t = 0; t < kBwdTG; ++t) {
        const int64_t ihh = oh * g.sh - g.pt + ti[t] * g.dh;
        rok[t] = t < n && ihh >= 0 && ihh < g.H;
        xoff[t] = rok[t] ? (ihh * g.W + jo[t]) * C + c : 0;
      }
      const T* gyr = gy + oh * g.OW * C + c;
      bool full = n == kBwdTG;
      for (int t = 0; t < kBwdTG; ++t) full = full && rok[t];
      if (bias) {
        dw_bwd_nhwc_gw_run<T, VT, true, true>(gyr, x, xoff, rok, jo, n, 0, a, C, g.sw, g.W, acc,
                                              &bacc);
        if (full)
          dw_bwd_nhwc_gw_full<T, VT, true>(gyr, x, xoff, a, bnd, C, g.sw, acc, &bacc);
        else
          dw_bwd_nhwc_gw_run<T, VT, false, true>(gyr, x, xoff, rok, jo, n, a, bnd, C, g.sw, g.W,
                                                 acc, &bacc);
        dw_bwd_nhwc_gw_run<T, VT, true, true>(gyr, x, xoff, rok, jo, n, bnd, g.OW, C, g.sw, g.W,
                                              acc, &bacc);
      } else {
        dw_bwd_nhwc_gw_run<T, VT, true, false>(gyr, x, xoff, rok, jo, n, 0, a, C, g.sw, g.W, acc,
                                               &bacc);
        if (full)
          dw_bwd_nhwc_gw_full<T, VT, false>(gyr, x, xoff, a, bnd, C, g.sw, acc, &bacc);
        else
          dw_bwd_nhwc_gw_run<T, VT, false, false>(gyr, x, xoff, rok, jo, n, a, bnd, C, g.sw, g.W,
                                                  acc, &bacc);
        dw_bwd_nhwc_gw_run<T, VT, true, false>(gyr, x, xoff, rok, jo, n, bnd, g.OW, C, g.sw, g.W,
                                               acc, &bacc);
      }
    }
    for (int t = 0; t < n; ++t) vstore(gw + (g0 + t) * C + c, acc[t]);
    if (bias) vstore(gb + c, bacc);
  }
}

// NHWC grad-weight over output rows [oh0, oh1) of one image for mid channels
// [c0, c1) (see table.h).  M = 1: channel vectors from c0, the last
// (c1 - c0) mod L channels one at a time; M > 1: plain loops, same chains.
template <class T>
static void dw_bwd_weight_nhwc(const DwGeom& g, const T* PYDSCONV_RESTRICT gy,
                               const T* PYDSCONV_RESTRICT x, int64_t oh0, int64_t oh1, int64_t c0,
                               int64_t c1, T* PYDSCONV_RESTRICT gw, T* gb) {
  typedef typename VecOf<T>::type V;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  const int64_t C = g.C, M = g.M, CM = g.C * g.M;
  if (M == 1) {
    int64_t c = c0;
    for (; c + L <= c1; c += L) dw_bwd_weight_nhwc_c<T, V>(g, gy, x, oh0, oh1, c, gw, gb);
    for (; c < c1; ++c) dw_bwd_weight_nhwc_c<T, T>(g, gy, x, oh0, oh1, c, gw, gb);
    return;
  }
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    for (int64_t ow = 0; ow < g.OW; ++ow) {
      const T* gyp = gy + (oh * g.OW + ow) * CM;
      if (gb)
        for (int64_t co = c0; co < c1; ++co) gb[co] += gyp[co];
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t ih = oh * g.sh - g.pt + i * g.dh;
        if (ih < 0 || ih >= g.H) continue;
        for (int64_t j = 0; gw && j < g.kw; ++j) {
          const int64_t iw = ow * g.sw - g.pl + j * g.dw;
          if (iw < 0 || iw >= g.W) continue;
          const T* xp = x + (ih * g.W + iw) * C;
          T* gwp = gw + (i * g.kw + j) * CM;
          for (int64_t co = c0; co < c1; ++co) gwp[co] += gyp[co] * xp[co / M];
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// NCHW grad-input: one input row `ih` of input channel c.  The gy rows it
// reads (M channels x the valid kernel rows) are copied into `scratch`,
// zero-padded (padl zeros on the left, plen elements each), so that for each
// phase p every valid tap is a contiguous run and dw_nchw_phase_blocks (the
// forward's register-blocked tap loop) computes the phase's columns.  Taps
// that never reach an output are skipped; the others add w * 0 where they
// fall in the padding, as the forward does.

// Buffer geometry (elements): e_j ranges over [emin, emax].
template <class T>
static void dw_bwd_nchw_dims(const DwGeom& g, int64_t* padl, int64_t* plen, int64_t* qmax) {
  constexpr int64_t L = static_cast<int64_t>(PYDSCONV_VEC_BYTES / sizeof(T));
  const int64_t lo = g.pl - (g.kw - 1) * g.dw, hi = g.sw - 1 + g.pl;
  const int64_t emin = lo >= 0 ? lo / g.sw : -((-lo + g.sw - 1) / g.sw), emax = hi / g.sw;
  *qmax = (g.W + g.sw - 1) / g.sw;
  *padl = emin < 0 ? -emin : 0;
  *plen = *padl + (g.OW > *qmax + emax ? g.OW : *qmax + emax) + L;
}

// Scratch elements one dw_bwd_data_nchw_row call needs; 0 = it needs none
// and takes the plain loops (more than kDwMaxTaps taps, or a huge padding
// or dilation that would make the padded rows long).
template <class T>
static int64_t dw_bwd_data_nchw_scratch(const DwGeom& g) {
  constexpr int64_t L = static_cast<int64_t>(PYDSCONV_VEC_BYTES / sizeof(T));
  if (g.kh > kDwMaxTaps || g.kw > kDwMaxTaps || g.M > kDwMaxTaps ||
      g.M * g.kh * g.kw > kDwMaxTaps || g.sw > 64 || g.pl > (int64_t(1) << 16) ||
      (g.kw - 1) * g.dw > (int64_t(1) << 16) || g.W > (int64_t(1) << 24))
    return 0;
  int64_t padl, plen, qmax;
  dw_bwd_nchw_dims<T>(g, &padl, &plen, &qmax);
  return g.M * g.kh * plen + qmax + 2 * L;
}

template <class T>
static void dw_bwd_data_nchw_row(const DwGeom& g, const T* PYDSCONV_RESTRICT gy,
                                 const T* PYDSCONV_RESTRICT w, int64_t ih, T* PYDSCONV_RESTRICT gx,
                                 T* scratch) {
  typedef typename VecOf<T>::type V;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  const int64_t taps = g.kh * g.kw, OHW = g.OH * g.OW;
  if (dw_bwd_data_nchw_scratch<T>(g) == 0) {  // plain loops, same (m, i, j) order
    for (int64_t iw = 0; iw < g.W; ++iw) gx[iw] = T(0);
    for (int64_t m = 0; m < g.M; ++m) {
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t t = ih + g.pt - i * g.dh;
        if (t < 0) break;
        const int64_t oh = div_s(t, g.sh);
        if (oh * g.sh != t || oh >= g.OH) continue;
        const T* gyr = gy + m * OHW + oh * g.OW;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t off = j * g.dw - g.pl;
          int64_t lo, hi;
          valid_range(g.W, g.sw, off, g.OW, &lo, &hi);
          const T wv = w[m * taps + i * g.kw + j];
          for (int64_t ow = lo; ow < hi; ++ow) gx[ow * g.sw + off] += wv * gyr[ow];
        }
      }
    }
    return;
  }
  int64_t padl, plen, qmax;
  dw_bwd_nchw_dims<T>(g, &padl, &plen, &qmax);
  int64_t ri[kDwMaxTaps], roh[kDwMaxTaps];
  const int64_t nr = dw_bwd_rows(g, ih, ri, roh);
  T* buf = scratch;                    // M * nr padded gy rows
  T* out = scratch + g.M * nr * plen;  // one phase's columns + slack
  for (int64_t m = 0; m < g.M; ++m)
    for (int64_t r = 0; r < nr; ++r) {
      T* d = buf + (m * nr + r) * plen;
      for (int64_t q = 0; q < padl; ++q) d[q] = T(0);
      __builtin_memcpy(d + padl, gy + m * OHW + roh[r] * g.OW, sizeof(T) * g.OW);
      for (int64_t q = padl + g.OW; q < plen; ++q) d[q] = T(0);
    }
  int64_t toff[kDwMaxTaps];
  T wt[kDwMaxTaps];
  const int64_t nph = g.sw < g.W ? g.sw : g.W;
  for (int64_t p = 0; p < nph; ++p) {
    const int64_t Qp = div_s(g.W - p - 1, g.sw) + 1;
    int64_t nt = 0;
    for (int64_t m = 0; m < g.M; ++m)
      for (int64_t r = 0; r < nr; ++r)
        for (int64_t j = 0; j < g.kw; ++j) {
          int64_t e;
          if (!dw_exact_div(p + g.pl - j * g.dw, g.sw, &e)) continue;
          const int64_t lo = e < 0 ? -e : 0, hi = g.OW - e < Qp ? g.OW - e : Qp;
          if (lo >= hi) continue;  // never reaches an output
          toff[nt] = (m * nr + r) * plen + padl + e;
          wt[nt] = w[m * taps + ri[r] * g.kw + j];
          ++nt;
        }
    T* y = g.sw == 1 ? gx : out;
    if (nt == 0) {
      for (int64_t q = 0; q < Qp; ++q) y[q] = T(0);
    } else {
      int64_t o = dw_nchw_phase_blocks<T, 4>(buf, toff, nt, wt, T(0), Qp, 0, y);
      o = dw_nchw_phase_blocks<T, 1>(buf, toff, nt, wt, T(0), Qp, o, y);
      if (o < Qp) {              // last partial vector as a whole one over the zeroed slack
        T tail[kMaxLanes] = {};  // (initialised: GCC cannot see the one full block)
        dw_nchw_phase_blocks<T, 1>(buf + o, toff, nt, wt, T(0), L, 0, tail);
        for (int64_t i = 0; i < Qp - o; ++i) y[o + i] = tail[i];
      }
    }
    if (g.sw != 1)
      for (int64_t q = 0; q < Qp; ++q) gx[q * g.sw + p] = out[q];
  }
}

// ---------------------------------------------------------------------------
// NCHW grad-weight of one output channel over output rows [oh0, oh1): gw
// (kh*kw, or null) and *gb (or null) accumulate.  The x rows they read are
// copied once into `scratch` as the forward's multi-row kernel does (zero-
// padded sh x sw phase planes, wq wide; see dw_fwd_nchw_rows), and the gy
// rows into a plane of the same width, zero in columns >= OW; then every tap
// is one dot product of two contiguous runs, q = (oh - oh0)*wq + ow, taps in
// groups of kBwdTG vector accumulators (lane l sums q = l mod L).  The extra
// columns add 0 * x.  Each tap: its slot plus its lanes' sum in lane order.

// Scratch elements for `rows` output rows; 0 = none needed, plain loops
// (enormous kernel, stride or dilation).
template <class T>
static int64_t dw_bwd_weight_nchw_scratch(const DwGeom& g, int64_t rows) {
  if (g.kh > 64 || g.kw > 64 || g.kh * g.kw > 256 || g.sh > 4 || g.sw > 4 ||
      (g.kw - 1) * g.dw + (g.OW - 1) * g.sw >= 4096 || (g.kh - 1) * g.dh >= 4096 || rows > 4096)
    return 0;
  int64_t hq, wq;
  dw_rows_dims(g, rows, &hq, &wq);
  return g.sh * g.sw * hq * wq + rows * wq + 2 * PYDSCONV_VEC_BYTES / int64_t(sizeof(T));
}

template <class T>
static void dw_bwd_weight_nchw_plain(const DwGeom& g, const T* gy, const T* x, int64_t oh0,
                                     int64_t oh1, T* gw) {
  for (int64_t i = 0; i < g.kh; ++i)
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t off = j * g.dw - g.pl;
      int64_t lo, hi;
      valid_range(g.W, g.sw, off, g.OW, &lo, &hi);
      T acc = T(0);
      for (int64_t oh = oh0; oh < oh1; ++oh) {
        const int64_t ih = oh * g.sh - g.pt + i * g.dh;
        if (ih < 0 || ih >= g.H) continue;
        const T* gyr = gy + oh * g.OW;
        const T* xr = x + ih * g.W;
        for (int64_t ow = lo; ow < hi; ++ow) acc += gyr[ow] * xr[ow * g.sw + off];
      }
      gw[i * g.kw + j] += acc;
    }
}

template <class T>
static void dw_bwd_weight_nchw(const DwGeom& g, const T* PYDSCONV_RESTRICT gy,
                               const T* PYDSCONV_RESTRICT x, int64_t oh0, int64_t oh1, T* gw, T* gb,
                               T* scratch) {
  typedef typename VecOf<T>::type V;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  if (gb) {  // the rows are one contiguous run of gy
    const T* s = gy + oh0 * g.OW;
    const int64_t n = (oh1 - oh0) * g.OW;
    V b = V{};
    int64_t k = 0;
    for (; k + L <= n; k += L) b += vload<V>(s + k);
    T r = T(0);
    for (; k < n; ++k) r += s[k];
    *gb += dw_hsum<T>(b) + r;
  }
  if (!gw) return;
  if (!scratch) {
    dw_bwd_weight_nchw_plain(g, gy, x, oh0, oh1, gw);
    return;
  }
  const int64_t rows = oh1 - oh0, taps = g.kh * g.kw;
  int64_t hq, wq;
  dw_rows_dims(g, rows, &hq, &wq);
  const int64_t plane = hq * wq;
  T* ph = scratch;                   // sh*sw phase planes of x
  T* gq = ph + g.sh * g.sw * plane;  // rows x wq of gy, then zeroed slack
  int64_t offs[kDwMaxTaps];
  dw_phase_planes(g, x, oh0, hq, wq, ph, offs);
  for (int64_t r = 0; r < rows; ++r) {
    T* d = gq + r * wq;
    const T* src = gy + (oh0 + r) * g.OW;
    for (int64_t q = 0; q < g.OW; ++q) d[q] = src[q];
    for (int64_t q = g.OW; q < wq; ++q) d[q] = T(0);
  }
  for (int64_t q = rows * wq; q < rows * wq + 2 * L; ++q) gq[q] = T(0);
  // Runs end at the last kept output, rounded up to a vector: reads stay in
  // the scratch (planes, then gq and its slack).
  const int64_t nv = ((rows - 1) * wq + g.OW + L - 1) / L * L;
  for (int64_t t0 = 0; t0 < taps; t0 += kBwdTG) {
    const int n = static_cast<int>(taps - t0 < kBwdTG ? taps - t0 : kBwdTG);
    const T* src[kBwdTG];
    V acc[kBwdTG];
    for (int t = 0; t < kBwdTG; ++t) {
      src[t] = ph + offs[t < n ? t0 + t : t0];
      acc[t] = V{};
    }
    for (int64_t q = 0; q < nv; q += L) {
      const V gv = vload<V>(gq + q);
      for (int t = 0; t < kBwdTG; ++t) {
        if (t >= n) break;
        acc[t] += gv * vload<V>(src[t] + q);
      }
    }
    for (int t = 0; t < n; ++t) gw[t0 + t] += dw_hsum<T>(acc[t]);
  }
}
