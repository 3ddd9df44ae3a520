// Portable kernel sources, compiled once per ISA.
//
// This file is included *inside* `namespace pydsconv::<isa>` by each
// isa_*.cpp, after table.h; it therefore includes nothing and calls no
// library templates, so every symbol it defines is private to that ISA.
// Loops are written so that the compiler can vectorise the innermost one
// (contiguous, no aliasing, trip count known on entry) with the unit's flags.

#define PYDSCONV_RESTRICT __restrict__

// relu/relu6 in place; NaN stays NaN (as in PyTorch), since NaN < 0 is false.
template <class T>
static inline void act_row(T* PYDSCONV_RESTRICT y, int64_t n, Act act) {
  if (act == Act::None) return;
  if (act == Act::Relu) {
    for (int64_t i = 0; i < n; ++i) y[i] = y[i] < T(0) ? T(0) : y[i];
  } else {
    for (int64_t i = 0; i < n; ++i) {
      T v = y[i] < T(0) ? T(0) : y[i];
      y[i] = v > T(6) ? T(6) : v;
    }
  }
}

// Output indices o in [lo, hi) with 0 <= o*s + off < n.
static inline void valid_range(int64_t n, int64_t s, int64_t off, int64_t nout,
                               int64_t* lo, int64_t* hi) {
  int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
  int64_t h = (n - 1 - off) < 0 ? 0 : (n - 1 - off) / s + 1;
  if (h > nout) h = nout;
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

template <class T>
static void dw_fwd_nchw_row(const DwGeom& g, const T* PYDSCONV_RESTRICT x,
                            const T* PYDSCONV_RESTRICT w, T bias, Act act,
                            int64_t oh, int64_t ow0, int64_t ow1,
                            T* PYDSCONV_RESTRICT y) {
  const int64_t n = ow1 - ow0;
  for (int64_t o = 0; o < n; ++o) y[o] = bias;
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t ih = oh * g.sh - g.pt + i * g.dh;
    if (ih < 0 || ih >= g.H) continue;
    const T* xr = x + ih * g.W;
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t off = j * g.dw - g.pl;
      int64_t lo, hi;
      valid_range(g.W, g.sw, off, ow1, &lo, &hi);
      if (lo < ow0) lo = ow0;
      const T wv = w[i * g.kw + j];
      if (g.sw == 1) {
        const T* xs = xr + off;
        for (int64_t ow = lo; ow < hi; ++ow) y[ow - ow0] += wv * xs[ow];
      } else {
        for (int64_t ow = lo; ow < hi; ++ow) y[ow - ow0] += wv * xr[ow * g.sw + off];
      }
    }
  }
  act_row(y, n, act);
}

template <class T>
static void dw_fwd_nhwc_row(const DwGeom& g, const T* PYDSCONV_RESTRICT x,
                            const T* PYDSCONV_RESTRICT w, const T* bias,
                            Act act, int64_t oh, int64_t ow0, int64_t ow1,
                            T* PYDSCONV_RESTRICT y) {
  const int64_t C = g.C, M = g.M, CM = g.C * g.M;
  for (int64_t ow = ow0; ow < ow1; ++ow) {
    T* yp = y + (ow - ow0) * CM;
    if (bias) for (int64_t c = 0; c < CM; ++c) yp[c] = bias[c];
    else for (int64_t c = 0; c < CM; ++c) yp[c] = T(0);
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t ih = oh * g.sh - g.pt + i * g.dh;
      if (ih < 0 || ih >= g.H) continue;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t iw = ow * g.sw - g.pl + j * g.dw;
        if (iw < 0 || iw >= g.W) continue;
        const T* xp = x + (ih * g.W + iw) * C;
        const T* wp = w + (i * g.kw + j) * CM;
        if (M == 1) {
          for (int64_t c = 0; c < C; ++c) yp[c] += wp[c] * xp[c];
        } else {
          for (int64_t c = 0; c < C; ++c)
            for (int64_t m = 0; m < M; ++m) yp[c * M + m] += wp[c * M + m] * xp[c];
        }
      }
    }
  }
  act_row(y, (ow1 - ow0) * CM, act);
}

template <class T>
static void dw_bwd_data_nchw_row(const DwGeom& g, const T* PYDSCONV_RESTRICT gy,
                                 const T* PYDSCONV_RESTRICT w, int64_t ih,
                                 T* PYDSCONV_RESTRICT gx) {
  for (int64_t iw = 0; iw < g.W; ++iw) gx[iw] = T(0);
  for (int64_t m = 0; m < g.M; ++m) {
    const T* gyp = gy + m * g.OH * g.OW;
    const T* wm = w + m * g.kh * g.kw;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t t = ih + g.pt - i * g.dh;  // = oh * sh
      if (t < 0 || t % g.sh != 0) continue;
      const int64_t oh = t / g.sh;
      if (oh >= g.OH) continue;
      const T* gyr = gyp + oh * g.OW;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t off = j * g.dw - g.pl;
        int64_t lo, hi;
        valid_range(g.W, g.sw, off, g.OW, &lo, &hi);
        const T wv = wm[i * g.kw + j];
        for (int64_t ow = lo; ow < hi; ++ow) gx[ow * g.sw + off] += wv * gyr[ow];
      }
    }
  }
}

template <class T>
static void dw_bwd_data_nhwc_row(const DwGeom& g, const T* PYDSCONV_RESTRICT gy,
                                 const T* PYDSCONV_RESTRICT w, int64_t ih,
                                 T* PYDSCONV_RESTRICT gx) {
  const int64_t C = g.C, M = g.M, CM = g.C * g.M;
  for (int64_t k = 0; k < g.W * C; ++k) gx[k] = T(0);
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t t = ih + g.pt - i * g.dh;
    if (t < 0 || t % g.sh != 0) continue;
    const int64_t oh = t / g.sh;
    if (oh >= g.OH) continue;
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t off = j * g.dw - g.pl;
      int64_t lo, hi;
      valid_range(g.W, g.sw, off, g.OW, &lo, &hi);
      const T* wp = w + (i * g.kw + j) * CM;
      for (int64_t ow = lo; ow < hi; ++ow) {
        T* gxp = gx + (ow * g.sw + off) * C;
        const T* gyp = gy + (oh * g.OW + ow) * CM;
        if (M == 1) {
          for (int64_t c = 0; c < C; ++c) gxp[c] += wp[c] * gyp[c];
        } else {
          for (int64_t c = 0; c < C; ++c)
            for (int64_t m = 0; m < M; ++m) gxp[c] += wp[c * M + m] * gyp[c * M + m];
        }
      }
    }
  }
}

template <class T>
static void dw_bwd_weight_nchw(const DwGeom& g, const T* PYDSCONV_RESTRICT gy,
                               const T* PYDSCONV_RESTRICT x, T* gw, T* gb) {
  for (int64_t i = 0; i < g.kh; ++i) {
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t off = j * g.dw - g.pl;
      int64_t lo, hi;
      valid_range(g.W, g.sw, off, g.OW, &lo, &hi);
      T acc = T(0);
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        const int64_t ih = oh * g.sh - g.pt + i * g.dh;
        if (ih < 0 || ih >= g.H) continue;
        const T* gyr = gy + oh * g.OW;
        const T* xr = x + ih * g.W;
        T s = T(0);
        for (int64_t ow = lo; ow < hi; ++ow) s += gyr[ow] * xr[ow * g.sw + off];
        acc += s;
      }
      gw[i * g.kw + j] += acc;
    }
  }
  if (gb) {
    T acc = T(0);
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      T s = T(0);
      for (int64_t ow = 0; ow < g.OW; ++ow) s += gy[oh * g.OW + ow];
      acc += s;
    }
    *gb += acc;
  }
}

template <class T>
static void dw_bwd_weight_nhwc(const DwGeom& g, const T* PYDSCONV_RESTRICT gy,
                               const T* PYDSCONV_RESTRICT x, int64_t c0,
                               int64_t c1, T* PYDSCONV_RESTRICT gw, T* gb) {
  const int64_t C = g.C, M = g.M, CM = g.C * g.M;
  for (int64_t oh = 0; oh < g.OH; ++oh) {
    for (int64_t ow = 0; ow < g.OW; ++ow) {
      const T* gyp = gy + (oh * g.OW + ow) * CM;
      if (gb) for (int64_t co = c0; co < c1; ++co) gb[co] += gyp[co];
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t ih = oh * g.sh - g.pt + i * g.dh;
        if (ih < 0 || ih >= g.H) continue;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t iw = ow * g.sw - g.pl + j * g.dw;
          if (iw < 0 || iw >= g.W) continue;
          const T* xp = x + (ih * g.W + iw) * C;
          T* gwp = gw + (i * g.kw + j) * CM;
          if (M == 1) {
            for (int64_t co = c0; co < c1; ++co) gwp[co] += gyp[co] * xp[co];
          } else {
            for (int64_t co = c0; co < c1; ++co) gwp[co] += gyp[co] * xp[co / M];
          }
        }
      }
    }
  }
}

template <class T>
static void gemm(const GemmArgs<T>& a) {
  for (int64_t m = 0; m < a.M; ++m) {
    T* PYDSCONV_RESTRICT c = a.C + m * a.c_rs;
    if (!a.accumulate) {
      if (a.bias_axis == 0) for (int64_t n = 0; n < a.N; ++n) c[n] = a.bias[m];
      else if (a.bias_axis == 1) for (int64_t n = 0; n < a.N; ++n) c[n] = a.bias[n];
      else for (int64_t n = 0; n < a.N; ++n) c[n] = T(0);
    }
    const T* arow = a.A + m * a.a_rs;
    if (a.b_cs == 1) {
      for (int64_t k = 0; k < a.K; ++k) {
        const T av = arow[k * a.a_cs];
        const T* PYDSCONV_RESTRICT b = a.B + k * a.b_rs;
        for (int64_t n = 0; n < a.N; ++n) c[n] += av * b[n];
      }
    } else {
      for (int64_t n = 0; n < a.N; ++n) {
        const T* b = a.B + n * a.b_cs;
        T s = T(0);
        for (int64_t k = 0; k < a.K; ++k) s += arow[k * a.a_cs] * b[k * a.b_rs];
        c[n] += s;
      }
    }
    if (!a.accumulate) act_row(c, a.N, a.act);
  }
}

template <class T>
static const KernelTable<T>* make_table(const char* isa) {
  static const KernelTable<T> t = {
      isa,
      &dw_fwd_nchw_row<T>,
      &dw_fwd_nhwc_row<T>,
      &dw_bwd_data_nchw_row<T>,
      &dw_bwd_data_nhwc_row<T>,
      &dw_bwd_weight_nchw<T>,
      &dw_bwd_weight_nhwc<T>,
      &gemm<T>,
  };
  return &t;
}
