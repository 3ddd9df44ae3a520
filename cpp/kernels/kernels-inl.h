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

// The SIMD vocabulary: GCC/Clang vector extensions of this unit's width
// (PYDSCONV_VEC_BYTES, set by the isa_*.cpp that includes this file), so one
// source gives AVX2, AVX-512 or baseline code.  Loads and stores go through
// memcpy (unaligned, no aliasing questions); `v * scalar` broadcasts.
typedef float vec_f32 __attribute__((vector_size(PYDSCONV_VEC_BYTES)));
typedef double vec_f64 __attribute__((vector_size(PYDSCONV_VEC_BYTES)));
template <class T> struct VecOf;
template <> struct VecOf<float> { typedef vec_f32 type; };
template <> struct VecOf<double> { typedef vec_f64 type; };

template <class V, class T>
static inline V vload(const T* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}
template <class V, class T>
static inline void vstore(T* p, V v) {
  __builtin_memcpy(p, &v, sizeof(V));
}

// Depthwise forward fast paths.  Each keeps a block of outputs in vector
// registers across all taps and adds the taps in the same order as the
// general loops below (bias, then valid taps row by row), so the two paths
// give identical bits and can share a row.

// NCHW, stride 1 along the row: outputs [o0, o1) must read only columns
// inside the image (no padding), and rows ih(i) for i in [i0, i1) are valid.
template <class T, int NB>
static inline int64_t dw_nchw_s1_blocks(const DwGeom& g, const T* x, const T* w, T bias,
                                        int64_t oh, int64_t i0, int64_t i1, int64_t o0,
                                        int64_t o1, T* y /* at o0 */) {
  typedef typename VecOf<T>::type V;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  int64_t o = o0;
  for (; o + NB * L <= o1; o += NB * L) {
    V acc[NB];
    for (int b = 0; b < NB; ++b) acc[b] = V{} + bias;
    for (int64_t i = i0; i < i1; ++i) {
      const T* xr = x + (oh * g.sh - g.pt + i * g.dh) * g.W + o - g.pl;
      for (int64_t j = 0; j < g.kw; ++j) {
        const T wv = w[i * g.kw + j];
        for (int b = 0; b < NB; ++b) acc[b] += vload<V>(xr + j * g.dw + b * L) * wv;
      }
    }
    for (int b = 0; b < NB; ++b) vstore(y + (o - o0) + b * L, acc[b]);
  }
  return o;
}

template <class T>
static void dw_fwd_nchw_row_general(const DwGeom& g, const T* PYDSCONV_RESTRICT x,
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
static void dw_fwd_nchw_row(const DwGeom& g, const T* x, const T* w, T bias, Act act, int64_t oh,
                            int64_t ow0, int64_t ow1, T* y) {
  // Interior columns: every tap of outputs [a, b) lies inside the row.
  const int64_t a0 = g.pl > ow0 ? g.pl : ow0;
  const int64_t lim = g.W - (g.kw - 1) * g.dw + g.pl;
  const int64_t b0 = lim < ow1 ? lim : ow1;
  if (g.sw != 1 || b0 - a0 < 8) {
    dw_fwd_nchw_row_general(g, x, w, bias, act, oh, ow0, ow1, y);
    return;
  }
  int64_t i0, i1;  // kernel rows inside the image
  valid_range(g.H, g.dh, oh * g.sh - g.pt, g.kh, &i0, &i1);
  int64_t o = dw_nchw_s1_blocks<T, 4>(g, x, w, bias, oh, i0, i1, a0, b0, y + (a0 - ow0));
  o = dw_nchw_s1_blocks<T, 1>(g, x, w, bias, oh, i0, i1, o, b0, y + (o - ow0));
  act_row(y + (a0 - ow0), o - a0, act);
  dw_fwd_nchw_row_general(g, x, w, bias, act, oh, ow0, a0, y);
  dw_fwd_nchw_row_general(g, x, w, bias, act, oh, o, ow1, y + (o - ow0));
}

// NHWC, M = 1: channel blocks of NB vectors, c in [c0, c1) (multiples of L).
template <class T, int NB>
static inline int64_t dw_nhwc_m1_blocks(const DwGeom& g, const T* x, const T* w,
                                        const T* bias, int64_t oh, int64_t ow, int64_t i0,
                                        int64_t i1, int64_t j0, int64_t j1, int64_t c0,
                                        int64_t c1, T* yp) {
  typedef typename VecOf<T>::type V;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  const int64_t C = g.C;
  int64_t c = c0;
  for (; c + NB * L <= c1; c += NB * L) {
    V acc[NB];
    for (int b = 0; b < NB; ++b) acc[b] = bias ? vload<V>(bias + c + b * L) : V{};
    for (int64_t i = i0; i < i1; ++i) {
      const T* xr = x + (oh * g.sh - g.pt + i * g.dh) * g.W * C + c;
      const T* wr = w + i * g.kw * C + c;
      for (int64_t j = j0; j < j1; ++j) {
        const T* xp = xr + (ow * g.sw - g.pl + j * g.dw) * C;
        const T* wp = wr + j * C;
        for (int b = 0; b < NB; ++b) acc[b] += vload<V>(wp + b * L) * vload<V>(xp + b * L);
      }
    }
    for (int b = 0; b < NB; ++b) vstore(yp + c + b * L, acc[b]);
  }
  return c;
}

template <class T>
static void dw_fwd_nhwc_row_m1(const DwGeom& g, const T* x, const T* w, const T* bias, Act act,
                               int64_t oh, int64_t ow0, int64_t ow1, T* y) {
  typedef typename VecOf<T>::type V;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  const int64_t C = g.C, cv = C / L * L;
  int64_t i0, i1;
  valid_range(g.H, g.dh, oh * g.sh - g.pt, g.kh, &i0, &i1);
  for (int64_t ow = ow0; ow < ow1; ++ow) {
    int64_t j0, j1;
    valid_range(g.W, g.dw, ow * g.sw - g.pl, g.kw, &j0, &j1);
    T* yp = y + (ow - ow0) * C;
    int64_t c = dw_nhwc_m1_blocks<T, 4>(g, x, w, bias, oh, ow, i0, i1, j0, j1, 0, cv, yp);
    c = dw_nhwc_m1_blocks<T, 1>(g, x, w, bias, oh, ow, i0, i1, j0, j1, c, cv, yp);
    for (; c < C; ++c) {
      T acc = bias ? bias[c] : T(0);
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j)
          acc += w[(i * g.kw + j) * C + c] *
                 x[((oh * g.sh - g.pt + i * g.dh) * g.W + ow * g.sw - g.pl + j * g.dw) * C + c];
      yp[c] = acc;
    }
  }
  act_row(y, (ow1 - ow0) * C, act);
}

template <class T>
static void dw_fwd_nhwc_row(const DwGeom& g, const T* PYDSCONV_RESTRICT x,
                            const T* PYDSCONV_RESTRICT w, const T* bias,
                            Act act, int64_t oh, int64_t ow0, int64_t ow1,
                            T* PYDSCONV_RESTRICT y) {
  if (g.M == 1) {
    dw_fwd_nhwc_row_m1(g, x, w, bias, act, oh, ow0, ow1, y);
    return;
  }
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

// C rows [m0, m1) x columns [n0, n1) of the GEMM, one row at a time: the
// general path (any strides) and the edges of the register-blocked one.
template <class T>
static void gemm_rows(const GemmArgs<T>& a, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  for (int64_t m = m0; m < m1; ++m) {
    T* PYDSCONV_RESTRICT c = a.C + m * a.c_rs;
    if (!a.accumulate) {
      if (a.bias_axis == 0) for (int64_t n = n0; n < n1; ++n) c[n] = a.bias[m];
      else if (a.bias_axis == 1) for (int64_t n = n0; n < n1; ++n) c[n] = a.bias[n];
      else for (int64_t n = n0; n < n1; ++n) c[n] = T(0);
    }
    const T* arow = a.A + m * a.a_rs;
    if (a.b_cs == 1) {
      for (int64_t k = 0; k < a.K; ++k) {
        const T av = arow[k * a.a_cs];
        const T* PYDSCONV_RESTRICT b = a.B + k * a.b_rs;
        for (int64_t n = n0; n < n1; ++n) c[n] += av * b[n];
      }
    } else {
      for (int64_t n = n0; n < n1; ++n) {
        const T* b = a.B + n * a.b_cs;
        T s = T(0);
        for (int64_t k = 0; k < a.K; ++k) s += arow[k * a.a_cs] * b[k * a.b_rs];
        c[n] += s;
      }
    }
    if (!a.accumulate) act_row(c + n0, n1 - n0, a.act);
  }
}

// One MR x (NV vectors) block of C kept in registers over the whole K loop
// (AVX2 float: 6 x 2 ymm accumulators + 2 for B + 1 broadcast).  Summing k in
// order keeps every element identical to gemm_rows.
template <class T, int MR, int NV>
static void gemm_block(const GemmArgs<T>& a, int64_t m0, int64_t n0) {
  typedef typename VecOf<T>::type V;
  constexpr int L = static_cast<int>(sizeof(V) / sizeof(T));
  V acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) {
      const T* c = a.C + (m0 + r) * a.c_rs + n0 + v * L;
      if (a.accumulate) acc[r][v] = vload<V>(c);
      else if (a.bias_axis == 0) acc[r][v] = V{} + a.bias[m0 + r];
      else if (a.bias_axis == 1) acc[r][v] = vload<V>(a.bias + n0 + v * L);
      else acc[r][v] = V{};
    }
  const T* A = a.A + m0 * a.a_rs;
  const T* B = a.B + n0;
  for (int64_t k = 0; k < a.K; ++k) {
    V b[NV];
    for (int v = 0; v < NV; ++v) b[v] = vload<V>(B + k * a.b_rs + v * L);
    for (int r = 0; r < MR; ++r) {
      const T av = A[r * a.a_rs + k * a.a_cs];
      for (int v = 0; v < NV; ++v) acc[r][v] += b[v] * av;
    }
  }
  for (int r = 0; r < MR; ++r) {
    T* c = a.C + (m0 + r) * a.c_rs + n0;
    for (int v = 0; v < NV; ++v) vstore(c + v * L, acc[r][v]);
    if (!a.accumulate) act_row(c, NV * L, a.act);
  }
}

template <class T>
static void gemm(const GemmArgs<T>& a) {
  constexpr int MR = 6, NV = 2, NR = NV * PYDSCONV_VEC_BYTES / static_cast<int>(sizeof(T));
  if (a.b_cs != 1 || a.M < MR || a.N < NR) {
    gemm_rows(a, 0, a.M, 0, a.N);
    return;
  }
  const int64_t mb = a.M / MR * MR, nb = a.N / NR * NR;
  for (int64_t n0 = 0; n0 < nb; n0 += NR)
    for (int64_t m0 = 0; m0 < mb; m0 += MR) gemm_block<T, MR, NV>(a, m0, n0);
  if (nb < a.N) gemm_rows(a, 0, mb, nb, a.N);
  if (mb < a.M) gemm_rows(a, mb, a.M, 0, a.N);
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
