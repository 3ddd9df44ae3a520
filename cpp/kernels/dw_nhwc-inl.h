// NHWC depthwise forward kernels, compiled once per ISA: included by
// kernels-inl.h inside `namespace pydsconv::<isa>`, after the SIMD vocabulary
// (simd-inl.h: VecOf, vload, vstore, valid_range, act_row, act_vec).  Like
// every -inl.h kernel header it includes nothing.
//
// Every output takes one chain: the bias, then its valid taps in (i, j)
// order.  The register-blocked paths (column-sharing tiles for 3, 5 and 7
// wide kernels at stride 1 / 2, tiles for any other kernel, edge pixels a
// few channel blocks at a time) and the per-pixel path perform the same
// operations in the same order, so an output has the same bits whichever
// computes it (a fused tile may start anywhere in a row).
//
// Weights (dw_nhwc_pack): the taps-last copy (kh, kw, C*M) that the
// per-pixel paths read, then, where the blocked paths apply, the same taps
// blocked by channel: for each block of B = kDwCB * L channels (the last
// one ending at C, see dw_nhwc_block_start), its kh * kw taps of B values
// each, contiguous (no 4 KiB strides between the taps of a block, which
// C = 1024 would give the taps-last copy).

// Register block of the interior path: NP output pixels x kDwCB channel
// vectors (one cache line of channels), NP * kDwCB accumulators.
constexpr int kDwNP = PYDSCONV_VEC_BYTES >= 64 ? 8 : 4;
constexpr int kDwCB = PYDSCONV_VEC_BYTES >= 64 ? 1 : 2;

template <class T>
static constexpr int64_t dw_nhwc_block() {
  return kDwCB * PYDSCONV_VEC_BYTES / static_cast<int64_t>(sizeof(T));
}

// The blocked paths: M = 1, at least one channel block, a kernel whose
// blocked taps stay small.  Among them the column-sharing interior tiles:
// 3, 5 or 7 wide, horizontal stride 1 or 2, no horizontal dilation.
template <class T>
static bool dw_nhwc_fast(const DwGeom& g) {
  return g.M == 1 && g.C >= dw_nhwc_block<T>() && g.kh * g.kw <= 256;
}
static inline bool dw_nhwc_cols(const DwGeom& g) {
  return g.dw == 1 && (g.kw == 3 || g.kw == 5 || g.kw == 7) && (g.sw == 1 || g.sw == 2);
}

// Channel block q covers [start, start + B): the last one ends at C and
// overlaps its neighbour when B does not divide C (those channels are
// computed twice, bit for bit the same).
template <class T>
static inline int64_t dw_nhwc_block_start(const DwGeom& g, int64_t q) {
  constexpr int64_t B = dw_nhwc_block<T>();
  return q * B + B <= g.C ? q * B : g.C - B;
}

template <class T>
static int64_t dw_nhwc_pack_elems(const DwGeom& g) {
  const int64_t taps = g.kh * g.kw, B = dw_nhwc_block<T>();
  return taps * g.C * g.M + (dw_nhwc_fast<T>(g) ? (g.C + B - 1) / B * B * taps : 0);
}

// w (C*M, kh*kw) -> the layout above.
template <class T>
static void dw_nhwc_pack(const DwGeom& g, const T* w, T* out) {
  const int64_t taps = g.kh * g.kw, CM = g.C * g.M, B = dw_nhwc_block<T>();
  for (int64_t t = 0; t < taps; ++t)  // written in order: C*M = 1024 puts the
    for (int64_t c = 0; c < CM; ++c) out[t * CM + c] = w[c * taps + t];  // taps 4 KiB apart
  if (!dw_nhwc_fast<T>(g)) return;
  T* blk = out + taps * CM;
  for (int64_t q = 0; q < (g.C + B - 1) / B; ++q) {
    const int64_t c0 = dw_nhwc_block_start<T>(g, q);
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t b = 0; b < B; ++b) blk[(q * taps + t) * B + b] = w[(c0 + b) * taps + t];
  }
}

// Interior: outputs ow .. ow+NP-1 of row oh (every horizontal tap inside the
// image), channels [c, c + B), kernel rows [i0, i1).  Input columns are
// loaded once per kernel row and fed to every output that reads them; for
// each output the taps still arrive in (i, j) order.  wb: this channel
// block's taps (kh*kw x B), yp: output pixel ow, channel c.
template <class T, int KW, int S, int NP>
static inline void dw_nhwc_tile(const DwGeom& g, const T* PYDSCONV_RESTRICT x,
                                const T* PYDSCONV_RESTRICT wb, const T* bias, Act act, int64_t oh,
                                int64_t i0, int64_t i1, int64_t ow, int64_t c,
                                T* PYDSCONV_RESTRICT yp) {
  typedef typename VecOf<T>::type V;
  constexpr int L = static_cast<int>(sizeof(V) / sizeof(T)), CB = kDwCB, B = CB * L;
  constexpr int COLS = (NP - 1) * S + KW;
  const int64_t C = g.C;
  V acc[NP][CB];
  for (int p = 0; p < NP; ++p)
    for (int b = 0; b < CB; ++b) acc[p][b] = bias ? vload<V>(bias + c + b * L) : V{};
  for (int64_t i = i0; i < i1; ++i) {
    const T* xr = x + ((oh * g.sh - g.pt + i * g.dh) * g.W + ow * S - g.pl) * C + c;
    const T* wr = wb + i * KW * B;
    // Columns through one pointer stepped by C, kept opaque: left alone, GCC
    // addresses each column as xr + col*C, a register per column (10-19 of
    // them, spilled) and an indexed FMA operand per use, un-laminated into
    // two uops (AVX-512 3x3 tiles: 1.4x slower).  And fully unrolled: GCC
    // otherwise keeps the 8-pixel tiles' columns as a loop of branches on j
    // (3.5x slower).
    const T* xc = xr;
#pragma GCC unroll 32
    for (int col = 0; col < COLS; ++col) {
      V xv[CB];
      for (int b = 0; b < CB; ++b) xv[b] = vload<V>(xc + b * L);
      xc += C;
      PYDSCONV_OPAQUE(xc);
#pragma GCC unroll 16
      for (int p = 0; p < NP; ++p) {
        const int j = col - p * S;
        if (j >= 0 && j < KW)
          for (int b = 0; b < CB; ++b) acc[p][b] += vload<V>(wr + j * B + b * L) * xv[b];
      }
    }
  }
  for (int p = 0; p < NP; ++p)
    for (int b = 0; b < CB; ++b) vstore(yp + p * C + b * L, act_vec<V, T>(acc[p][b], act));
}

// Any kernel, stride and dilation: outputs ow .. ow+NP-1 of row oh sharing
// the horizontal taps [j0, j1) (all interior, or one edge pixel), channel
// blocks q0 .. q0 + NQ - 1, kernel rows [i0, i1); each tap's weights are
// loaded once for the NP outputs.  NQ > 1 gives an edge pixel NQ
// independent chains instead of one (its chain is up to kh * kw dependent
// multiply-adds, 42 for a 7x7 kernel, and 7x7 layers on 14-wide rows have
// six edge pixels of fourteen).  Same chain per output as every other
// path: the bias, then the taps in (i, j) order.  wb: all blocks' taps
// (dw_nhwc_pack), yp: pixel ow's outputs.
template <class T, int NP, int NQ>
static inline void dw_nhwc_tile_any(const DwGeom& g, const T* PYDSCONV_RESTRICT x,
                                    const T* PYDSCONV_RESTRICT wb, const T* bias, Act act,
                                    int64_t oh, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                                    int64_t ow, int64_t q0, T* PYDSCONV_RESTRICT yp) {
  typedef typename VecOf<T>::type V;
  constexpr int L = static_cast<int>(sizeof(V) / sizeof(T)), CB = kDwCB, B = CB * L;
  const int64_t C = g.C, ps = g.sw * C, js = g.dw * C, taps = g.kh * g.kw;
  int64_t c[NQ];
  V acc[NP][NQ][CB];
  for (int u = 0; u < NQ; ++u) {
    c[u] = dw_nhwc_block_start<T>(g, q0 + u);
    for (int p = 0; p < NP; ++p)
      for (int b = 0; b < CB; ++b) acc[p][u][b] = bias ? vload<V>(bias + c[u] + b * L) : V{};
  }
  for (int64_t i = i0; i < i1; ++i) {
    const T* xr = x + ((oh * g.sh - g.pt + i * g.dh) * g.W + ow * g.sw - g.pl) * C;
    for (int64_t j = j0; j < j1; ++j)
      for (int u = 0; u < NQ; ++u) {
        const T* wr = wb + ((q0 + u) * taps + i * g.kw + j) * B;
        V wv[CB];
        for (int b = 0; b < CB; ++b) wv[b] = vload<V>(wr + b * L);
        for (int p = 0; p < NP; ++p)
          for (int b = 0; b < CB; ++b)
            acc[p][u][b] += wv[b] * vload<V>(xr + p * ps + j * js + c[u] + b * L);
      }
  }
  for (int p = 0; p < NP; ++p)
    for (int u = 0; u < NQ; ++u)
      for (int b = 0; b < CB; ++b)
        vstore(yp + p * C + c[u] + b * L, act_vec<V, T>(acc[p][u][b], act));
}

// The interior tile of NP pixels, channel block q (from channel c): column-
// sharing for KW x S, else (KW = 0) any kernel.  wb: all blocks' taps, yp:
// pixel ow's outputs.
template <class T, int KW, int S, int NP>
static inline void dw_nhwc_tile_k(const DwGeom& g, const T* x, const T* wb, const T* bias, Act act,
                                  int64_t oh, int64_t i0, int64_t i1, int64_t ow, int64_t q,
                                  int64_t c, T* yp) {
  if constexpr (KW == 0)
    dw_nhwc_tile_any<T, NP, 1>(g, x, wb, bias, act, oh, i0, i1, 0, g.kw, ow, q, yp);
  else
    dw_nhwc_tile<T, KW, S, NP>(g, x, wb + q * g.kh * g.kw * dw_nhwc_block<T>(), bias, act, oh, i0,
                               i1, ow, c, yp + c);
}

// A tile width as a type (dw_nhwc_interior's tiles()).
template <int N>
struct DwPixels {
  static constexpr int value = N;
};

// Outputs [owa, owb) of row oh, every channel block, all interior; y
// holds the row's outputs from column ow0 on.
template <class T, int KW, int S>
static void dw_nhwc_interior(const DwGeom& g, const T* x, const T* wb, const T* bias, Act act,
                             int64_t oh, int64_t i0, int64_t i1, int64_t owa, int64_t owb,
                             int64_t ow0, T* y) {
  constexpr int64_t B = dw_nhwc_block<T>();
  const int64_t C = g.C, nb = (C + B - 1) / B;
  // Pixel blocks outside, channel blocks inside: the other order would load
  // x right after storing y at the same channels, and x and y rows are often
  // a multiple of 4 KiB apart (C = 1024), which the store-to-load check
  // cannot tell apart (14x14x512 layers ran 30% slower).
  const auto tiles = [&](auto np, int64_t ow) {
    for (int64_t q = 0, c = 0; q < nb; c = dw_nhwc_block_start<T>(g, ++q))
      dw_nhwc_tile_k<T, KW, S, decltype(np)::value>(g, x, wb, bias, act, oh, i0, i1, ow, q, c,
                                                    y + (ow - ow0) * C);
  };
  typedef DwPixels<kDwNP> Full;
  typedef DwPixels<(kDwNP > 1 ? kDwNP / 2 : 1)> Half;
  int64_t ow = owa;
  for (; ow + kDwNP <= owb; ow += kDwNP) tiles(Full(), ow);
  // The last outputs: more than half a tile left, one more tile ending at
  // owb, overlapping the one before (outputs computed twice, bit for bit the
  // same: one chain each); else half tiles, and the same rule for what they
  // leave.  Single pixels are latency-bound chains: 14- and 7-wide rows
  // (12 and 5 interior pixels) ran 18-25 % slower on AVX-512 as a tile of 8
  // and four single pixels, and as five single pixels.
  if (owb - ow > Half::value && owb - owa >= kDwNP) {
    tiles(Full(), owb - kDwNP);
    return;
  }
  for (; ow + Half::value <= owb; ow += Half::value) tiles(Half(), ow);
  if (2 * (owb - ow) > Half::value && owb - owa >= Half::value) {
    tiles(Half(), owb - Half::value);
    return;
  }
  for (; ow < owb; ++ow) tiles(DwPixels<1>(), ow);
}

// Edge pixels take kDwEdgeBlocks channel blocks at once (dw_nhwc_tile_any).
constexpr int kDwEdgeBlocks = 4;

// NHWC, M = 1: channel blocks of NB vectors, c in [c0, c1) (multiples of L).
template <class T, int NB>
static inline int64_t dw_nhwc_m1_blocks(const DwGeom& g, const T* x, const T* w, const T* bias,
                                        int64_t oh, int64_t ow, int64_t i0, int64_t i1, int64_t j0,
                                        int64_t j1, int64_t c0, int64_t c1, T* yp) {
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

// One pixel ow of row oh, all channels, taps-last weights w, then act (the
// path for C narrower than a channel block).
template <class T>
static void dw_nhwc_pixel(const DwGeom& g, const T* x, const T* w, const T* bias, Act act,
                          int64_t oh, int64_t ow, int64_t i0, int64_t i1, T* yp) {
  typedef typename VecOf<T>::type V;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  const int64_t C = g.C, cv = C / L * L;
  int64_t j0, j1;
  valid_range(g.W, g.dw, ow * g.sw - g.pl, g.kw, &j0, &j1);
  int64_t c = dw_nhwc_m1_blocks<T, 4>(g, x, w, bias, oh, ow, i0, i1, j0, j1, 0, cv, yp);
  c = dw_nhwc_m1_blocks<T, 1>(g, x, w, bias, oh, ow, i0, i1, j0, j1, c, cv, yp);
  if (c < C && C >= L)  // last channels: one overlapping vector (same chain per channel)
    c = dw_nhwc_m1_blocks<T, 1>(g, x, w, bias, oh, ow, i0, i1, j0, j1, C - L, C, yp);
  for (; c < C; ++c) {
    T acc = bias ? bias[c] : T(0);
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t j = j0; j < j1; ++j)
        acc += w[(i * g.kw + j) * C + c] *
               x[((oh * g.sh - g.pt + i * g.dh) * g.W + ow * g.sw - g.pl + j * g.dw) * C + c];
    yp[c] = acc;
  }
  act_row(yp, C, act);
}

template <class T>
static void dw_fwd_nhwc_row_m1(const DwGeom& g, const T* x, const T* w, const T* bias, Act act,
                               int64_t oh, int64_t ow0, int64_t ow1, T* y) {
  constexpr int64_t B = dw_nhwc_block<T>();
  const int64_t C = g.C;
  int64_t i0, i1;
  valid_range(g.H, g.dh, oh * g.sh - g.pt, g.kh, &i0, &i1);
  // Interior columns: ow*s - pl >= 0 and ow*s - pl + (kw-1)*dw < W.
  const bool fast = dw_nhwc_fast<T>(g);
  int64_t owa = ow1, owb = ow1;
  if (fast) {
    int64_t lo, hi;
    valid_range(g.W - (g.kw - 1) * g.dw, g.sw, -g.pl, g.OW, &lo, &hi);
    owa = lo < ow0 ? ow0 : lo > ow1 ? ow1 : lo;
    owb = hi > ow1 ? ow1 : hi < owa ? owa : hi;
  }
  const T* wb = w + g.kh * g.kw * C;  // the blocked copy (dw_nhwc_fast)
  if (owb > owa) {
    const int64_t key = dw_nhwc_cols(g) ? g.kw * 10 + g.sw : 0;
    if (key == 31)
      dw_nhwc_interior<T, 3, 1>(g, x, wb, bias, act, oh, i0, i1, owa, owb, ow0, y);
    else if (key == 32)
      dw_nhwc_interior<T, 3, 2>(g, x, wb, bias, act, oh, i0, i1, owa, owb, ow0, y);
    else if (key == 51)
      dw_nhwc_interior<T, 5, 1>(g, x, wb, bias, act, oh, i0, i1, owa, owb, ow0, y);
    else if (key == 52)
      dw_nhwc_interior<T, 5, 2>(g, x, wb, bias, act, oh, i0, i1, owa, owb, ow0, y);
    else if (key == 71)
      dw_nhwc_interior<T, 7, 1>(g, x, wb, bias, act, oh, i0, i1, owa, owb, ow0, y);
    else if (key == 72)
      dw_nhwc_interior<T, 7, 2>(g, x, wb, bias, act, oh, i0, i1, owa, owb, ow0, y);
    else
      dw_nhwc_interior<T, 0, 0>(g, x, wb, bias, act, oh, i0, i1, owa, owb, ow0, y);
  }
  // Edges (some horizontal taps outside the image): blocked where it applies
  // (large kernels on small images leave many edge pixels).
  const int64_t nb = (C + B - 1) / B;
  for (int64_t ow = ow0; ow < ow1; ++ow) {
    if (ow >= owa && ow < owb) continue;
    T* yp = y + (ow - ow0) * C;
    if (fast) {
      int64_t j0, j1;
      valid_range(g.W, g.dw, ow * g.sw - g.pl, g.kw, &j0, &j1);
      int64_t q = 0;
      for (; q + kDwEdgeBlocks <= nb; q += kDwEdgeBlocks)
        dw_nhwc_tile_any<T, 1, kDwEdgeBlocks>(g, x, wb, bias, act, oh, i0, i1, j0, j1, ow, q, yp);
      for (; q < nb; ++q)
        dw_nhwc_tile_any<T, 1, 1>(g, x, wb, bias, act, oh, i0, i1, j0, j1, ow, q, yp);
    } else {
      dw_nhwc_pixel(g, x, w, bias, act, oh, ow, i0, i1, yp);
    }
  }
}

// NHWC, M > 1: output channel c*M + m reads input channel c.  For each m,
// the M = 1 channel-vector kernel runs on x with that m's weights (re-packed
// on the stack as (kh, kw, C)) into z[m][c], which is then interleaved into
// y[c*M + m].  Same summation order as M = 1 (bias, then the valid taps).
// Returns false (caller uses the plain loops) when C is narrower than a
// vector or the weights do not fit the stack buffer.
constexpr int64_t kDwMultBuf = 8192;

template <class T>
static bool dw_fwd_nhwc_row_mult(const DwGeom& g, const T* x, const T* w, const T* bias, Act act,
                                 int64_t oh, int64_t ow0, int64_t ow1, T* y) {
  typedef typename VecOf<T>::type V;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  const int64_t C = g.C, M = g.M, CM = C * M, taps = g.kh * g.kw, cv = C / L * L;
  if (C < L || taps * CM + 2 * CM > kDwMultBuf) return false;
  T buf[kDwMultBuf];
  T* wm = buf;             // (M, kh, kw, C)
  T* bz = wm + taps * CM;  // (M, C)
  T* z = bz + CM;          // (M, C) outputs of one pixel
  for (int64_t m = 0; m < M; ++m)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t c = 0; c < C; ++c) wm[(m * taps + t) * C + c] = w[t * CM + c * M + m];
  for (int64_t m = 0; m < M; ++m)
    for (int64_t c = 0; c < C; ++c) bz[m * C + c] = bias ? bias[c * M + m] : T(0);
  int64_t i0, i1;
  valid_range(g.H, g.dh, oh * g.sh - g.pt, g.kh, &i0, &i1);
  for (int64_t ow = ow0; ow < ow1; ++ow) {
    int64_t j0, j1;
    valid_range(g.W, g.dw, ow * g.sw - g.pl, g.kw, &j0, &j1);
    for (int64_t m = 0; m < M; ++m) {
      const T* wq = wm + m * taps * C;
      const T* bq = bz + m * C;
      T* zq = z + m * C;
      int64_t c = dw_nhwc_m1_blocks<T, 4>(g, x, wq, bq, oh, ow, i0, i1, j0, j1, 0, cv, zq);
      c = dw_nhwc_m1_blocks<T, 1>(g, x, wq, bq, oh, ow, i0, i1, j0, j1, c, cv, zq);
      if (c < C) dw_nhwc_m1_blocks<T, 1>(g, x, wq, bq, oh, ow, i0, i1, j0, j1, C - L, C, zq);
    }
    T* yp = y + (ow - ow0) * CM;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t m = 0; m < M; ++m) yp[c * M + m] = z[m * C + c];
  }
  act_row(y, (ow1 - ow0) * CM, act);
  return true;
}

template <class T>
static void dw_fwd_nhwc_row(const DwGeom& g, const T* PYDSCONV_RESTRICT x,
                            const T* PYDSCONV_RESTRICT w, const T* bias, Act act, int64_t oh,
                            int64_t ow0, int64_t ow1, T* PYDSCONV_RESTRICT y) {
  if (g.M == 1) {
    dw_fwd_nhwc_row_m1(g, x, w, bias, act, oh, ow0, ow1, y);
    return;
  }
  if (dw_fwd_nhwc_row_mult(g, x, w, bias, act, oh, ow0, ow1, y)) return;
  const int64_t C = g.C, M = g.M, CM = g.C * g.M;
  for (int64_t ow = ow0; ow < ow1; ++ow) {
    T* yp = y + (ow - ow0) * CM;
    if (bias)
      for (int64_t c = 0; c < CM; ++c) yp[c] = bias[c];
    else
      for (int64_t c = 0; c < CM; ++c) yp[c] = T(0);
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
