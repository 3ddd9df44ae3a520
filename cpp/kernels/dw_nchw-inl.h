// NCHW depthwise forward kernels, compiled once per ISA: included by
// kernels-inl.h inside `namespace pydsconv::<isa>`, after the SIMD
// vocabulary (simd-inl.h).  Like the other -inl.h kernel headers it
// includes nothing.
//
// Three paths, chosen by the operator (heuristics.h): the row kernel
// (dw_fwd_nchw_row, any geometry), the multi-row kernel on phase planes
// (dw_fwd_nchw_rows, narrow rows; its 3x3 stride-1/2 special case
// dw_nchw_3x3) and the flat kernel (dw_fwd_nchw_flat, small planes at
// stride 1).  Every output takes the same chain on every path: its bias,
// then every tap of every valid kernel row in order (padding taps w * 0).

// NCHW: the kernel rows an output row reads are copied into a stack buffer,
// zero-filled outside the image and split into `stride` phases (phase p holds
// columns p, p + s, p + 2s, ...), so every tap of every output is a
// contiguous load at any stride and dilation.  Each output adds its bias, then
// every tap of every valid kernel row in order (padding taps add w * 0).
constexpr int64_t kDwRowBuf = 4096;  // stack elements for the phase buffers
constexpr int64_t kDwMaxTaps = 256;  // taps whose buffer offsets are precomputed

// Outputs [o, n) in blocks of NB vectors; tap t reads buf[toff[t] + o].
template <class T, int NB>
static inline int64_t dw_nchw_phase_blocks(const T* buf, const int64_t* toff, int64_t taps,
                                           const T* w, T bias, int64_t n, int64_t o, T* y) {
  typedef typename VecOf<T>::type V;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  for (; o + NB * L <= n; o += NB * L) {
    V acc[NB];
    for (int b = 0; b < NB; ++b) acc[b] = V{} + bias;
    for (int64_t t = 0; t < taps; ++t) {
      const T* ph = buf + toff[t] + o;
      const T wv = w[t];
      for (int b = 0; b < NB; ++b) acc[b] += vload<V>(ph + b * L) * wv;
    }
    for (int b = 0; b < NB; ++b) vstore(y + o + b * L, acc[b]);
  }
  return o;
}

template <class T>
static void dw_fwd_nchw_row_general(const DwGeom& g, const T* PYDSCONV_RESTRICT x,
                                    const T* PYDSCONV_RESTRICT w, T bias, Act act, int64_t oh,
                                    int64_t ow0, int64_t ow1, T* PYDSCONV_RESTRICT y) {
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
  int64_t i0, i1;  // kernel rows inside the image
  valid_range(g.H, g.dh, oh * g.sh - g.pt, g.kh, &i0, &i1);
  const int64_t nrows = i1 - i0, ext = div_s((g.kw - 1) * g.dw, g.sw) + 1;
  typedef typename VecOf<T>::type V;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  const int64_t chunk = nrows > 0 ? (kDwRowBuf - kMaxLanes) / (nrows * g.sw) - ext : 0;
  if (nrows == 0) {  // the row lies wholly in the padding: bias only
    for (int64_t o = 0; o < ow1 - ow0; ++o) y[o] = bias;
    act_row(y, ow1 - ow0, act);
    return;
  }
  if (chunk < 16 || nrows * g.kw > kDwMaxTaps || g.kw > kDwMaxTaps) {  // enormous kernel or stride
    dw_fwd_nchw_row_general(g, x, w, bias, act, oh, ow0, ow1, y);
    return;
  }
  T buf[kDwRowBuf];
  int64_t toff[kDwMaxTaps];
  const T* wr = w + i0 * g.kw;  // taps of the valid rows are contiguous in w
  const int64_t taps = nrows * g.kw;
  int64_t jphase[kDwMaxTaps], jshift[kDwMaxTaps];  // tap j reads phase jphase at +jshift
  for (int64_t j = 0; j < g.kw; ++j) {
    jshift[j] = div_s(j * g.dw, g.sw);
    jphase[j] = j * g.dw - jshift[j] * g.sw;
  }
  for (int64_t c0 = ow0; c0 < ow1; c0 += chunk) {
    const int64_t n = ow1 - c0 < chunk ? ow1 - c0 : chunk, plen = n + ext;
    for (int64_t r = 0; r < nrows; ++r)
      for (int64_t j = 0; j < g.kw; ++j)
        toff[r * g.kw + j] = (r * g.sw + jphase[j]) * plen + jshift[j];
    const int64_t start = c0 * g.sw - g.pl;
    for (int64_t r = 0; r < nrows; ++r) {
      const T* xr = x + (oh * g.sh - g.pt + (i0 + r) * g.dh) * g.W;
      for (int64_t p = 0; p < g.sw; ++p) {  // ph[q] = row[start + p + q*s], 0 outside
        T* PYDSCONV_RESTRICT ph = buf + (r * g.sw + p) * plen;
        int64_t lo, hi;
        valid_range(g.W, g.sw, start + p, plen, &lo, &hi);
        for (int64_t q = 0; q < lo; ++q) ph[q] = T(0);
        const T* PYDSCONV_RESTRICT src = xr + start + p;
        if (hi > lo) copy_strided(ph + lo, src + lo * g.sw, hi - lo, g.sw);
        for (int64_t q = hi; q < plen; ++q) ph[q] = T(0);
      }
    }
    for (int64_t i = nrows * g.sw * plen; i < nrows * g.sw * plen + L; ++i) buf[i] = T(0);
    T* yc = y + (c0 - ow0);
    int64_t o = dw_nchw_phase_blocks<T, 4>(buf, toff, taps, wr, bias, n, 0, yc);
    o = dw_nchw_phase_blocks<T, 1>(buf, toff, taps, wr, bias, n, o, yc);
    if (o < n) {               // last partial vector as a whole one, as in dw_fwd_nchw_rows
      T tail[kMaxLanes] = {};  // (initialised: GCC cannot see the one full block)
      dw_nchw_phase_blocks<T, 1>(buf + o, toff, taps, wr, bias, L, 0, tail);
      for (int64_t i = 0; i < n - o; ++i) yc[o + i] = tail[i];
    }
  }
  act_row(y, ow1 - ow0, act);
}

// NCHW, output rows [oh0, oh1) of one channel at once, for narrow rows where
// per-row work is too small to pay for itself.  The input rows they read are
// copied once into `scratch`, zero-padded and split into sh x sw phase
// planes (phase (a, b) holds padded rows a, a + sh, ... and columns
// b, b + sw, ...), each Wq wide.  Output (oh, ow) is then
//   sum_t w[t] * phase_t[(oh - oh0) * Wq + ow + shift_t],
// so the outputs of all rows form one contiguous run q = (oh - oh0)*Wq + ow
// (columns ow >= OW are computed and dropped).  Each output adds its bias
// then every tap in order, padding taps included (w * 0), as the row path.
static inline void dw_rows_dims(const DwGeom& g, int64_t rows, int64_t* hq, int64_t* wq) {
  const int64_t wp = (g.OW - 1) * g.sw + (g.kw - 1) * g.dw + 1;  // padded columns read
  *wq = div_s(wp + g.sw - 1, g.sw) + 1;
  *hq = (rows - 1) + div_s((g.kh - 1) * g.dh, g.sh) + 1;
}

// Scratch elements dw_fwd_nchw_rows needs for `rows` output rows.
template <class T>
static int64_t dw_rows_scratch(const DwGeom& g, int64_t rows) {
  int64_t hq, wq;
  dw_rows_dims(g, rows, &hq, &wq);
  // planes, wide outputs, and zeroed slack for the last vector's spare lanes
  return g.sh * g.sw * hq * wq + rows * wq + 2 * PYDSCONV_VEC_BYTES / int64_t(sizeof(T));
}

// The sh x sw phase planes (hq x wq each, see dw_fwd_nchw_rows) of the
// input rows that output rows oh0.. read, zero outside the image, into ph;
// offs[t]: where tap t's run starts in them.  Up to one vector of zeros may
// land after the planes: the callers' scratch has room there and holds
// nothing of theirs yet.
template <class T>
static void dw_phase_planes(const DwGeom& g, const T* x, int64_t oh0, int64_t hq, int64_t wq, T* ph,
                            int64_t* offs) {
  const int64_t plane = hq * wq;
  for (int64_t i = 0; i < g.kh; ++i)
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t ri = div_s(i * g.dh, g.sh), ci = div_s(j * g.dw, g.sw);
      const int64_t a = i * g.dh - ri * g.sh, b = j * g.dw - ci * g.sw;
      offs[i * g.kw + j] = (a * g.sw + b) * plane + ri * wq + ci;
    }
  // Row by row, in order: zeros over the row's left padding, its inside
  // run copied, zeros from the run's end to the row's end, in whole vectors.
  // The vectors spill into the next row (or, after the last plane, into the
  // L elements of scratch that follow, not yet in use), but
  // only ahead of where data is copied, never over it: each element written
  // last is its row's data or zero.  (Zeroing the planes whole first cost as
  // much as the copies.)
  typedef typename VecOf<T>::type V;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  const int64_t r0 = oh0 * g.sh - g.pt, c0 = -g.pl;  // image coords of padded (0, 0)
  for (int64_t a = 0; a < g.sh; ++a)
    for (int64_t b = 0; b < g.sw; ++b) {
      T* P = ph + (a * g.sw + b) * plane;
      int64_t clo, chi;  // phase columns inside the image
      valid_range(g.W, g.sw, c0 + b, wq, &clo, &chi);
      for (int64_t r = 0; r < hq; ++r) {
        T* row = P + r * wq;
        const int64_t ih = r0 + a + r * g.sh;
        if (ih < 0 || ih >= g.H || chi <= clo) {
          for (int64_t z = 0; z < wq; z += L) vstore(row + z, V{});
          continue;
        }
        for (int64_t z = 0; z < clo; z += L) vstore(row + z, V{});
        copy_strided(row + clo, x + ih * g.W + c0 + b + clo * g.sw, chi - clo, g.sw);
        for (int64_t z = chi; z < wq; z += L) vstore(row + z, V{});
      }
    }
}

// 3x3, stride S = 1 or 2, no dilation, on the S x S phase planes: R output
// rows at a time, one vector of columns, so each input vector loaded feeds
// the chains of every row that reads it (S = 1: 3 (R + 2) loads for 9 R
// FMAs instead of 9 R; S = 2: 3 (2R + 1)) and R chains are in flight; the
// taps stay in registers.  Padded input row rho of the block (image row
// (r0 + k) S + i - pt for output row k, tap row i) lies in phase rho % S,
// row r0 + rho / S.  Output (r, c) adds the bias, then taps (i, j) in
// order, as dw_nchw_phase_blocks.  The last column vector ends at OW
// (overlapping its neighbour, same bits); y gets rows [r0, r0 + R) with act.
template <class T, int S, int R>
static inline void dw_nchw_3x3_rows(const T* ph, int64_t plane, int64_t wq, int64_t r0, int64_t OW,
                                    const typename VecOf<T>::type* wv, T bias, Act act, T* y) {
  typedef typename VecOf<T>::type V;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  for (int64_t c0 = 0; c0 < OW; c0 += L) {
    const int64_t c = c0 + L <= OW ? c0 : OW - L;
    V acc[R];
    for (int k = 0; k < R; ++k) acc[k] = V{} + bias;
    // Unrolled whole, so that acc and wv live in registers (GCC's own limit
    // stops short of this loop nest, and then keeps acc on the stack).
#pragma GCC unroll 16
    for (int rho = 0; rho < S * (R - 1) + 3; ++rho)
#pragma GCC unroll 3
      for (int j = 0; j < 3; ++j) {
        const T* src = ph + ((rho % S) * S + j % S) * plane + (r0 + rho / S) * wq + c + j / S;
        const V xv = vload<V>(src);
#pragma GCC unroll 6
        for (int k = 0; k < R; ++k) {
          const int i = rho - S * k;
          if (i >= 0 && i < 3) acc[k] += wv[i * 3 + j] * xv;
        }
      }
    for (int k = 0; k < R; ++k) vstore(y + (r0 + k) * OW + c, act_vec<V, T>(acc[k], act));
  }
}

// All output rows of a dw_fwd_nchw_rows call through dw_nchw_3x3_rows: six
// at a time, then the rest.
template <class T, int S>
static void dw_nchw_3x3(const T* ph, int64_t plane, int64_t wq, int64_t rows, int64_t OW,
                        const T* w, T bias, Act act, T* y) {
  typedef typename VecOf<T>::type V;
  constexpr int kR = 6;
  V wv[9];
  for (int t = 0; t < 9; ++t) wv[t] = V{} + w[t];
  int64_t r = 0;
  for (; r + kR <= rows; r += kR)
    dw_nchw_3x3_rows<T, S, kR>(ph, plane, wq, r, OW, wv, bias, act, y);
  switch (rows - r) {
    case 5:
      dw_nchw_3x3_rows<T, S, 5>(ph, plane, wq, r, OW, wv, bias, act, y);
      break;
    case 4:
      dw_nchw_3x3_rows<T, S, 4>(ph, plane, wq, r, OW, wv, bias, act, y);
      break;
    case 3:
      dw_nchw_3x3_rows<T, S, 3>(ph, plane, wq, r, OW, wv, bias, act, y);
      break;
    case 2:
      dw_nchw_3x3_rows<T, S, 2>(ph, plane, wq, r, OW, wv, bias, act, y);
      break;
    case 1:
      dw_nchw_3x3_rows<T, S, 1>(ph, plane, wq, r, OW, wv, bias, act, y);
      break;
    default:
      break;
  }
}

// dw_nchw_3x3 applies: 3x3, equal strides 1 or 2, no dilation, rows at
// least one vector wide.
template <class T>
static inline int dw_nchw_3x3_stride(const DwGeom& g) {
  constexpr int64_t L = PYDSCONV_VEC_BYTES / static_cast<int64_t>(sizeof(T));
  const bool ok = g.kh == 3 && g.kw == 3 && g.sh == g.sw && (g.sh == 1 || g.sh == 2) && g.dh == 1 &&
                  g.dw == 1 && g.OW >= L;
  return ok ? static_cast<int>(g.sh) : 0;
}

template <class T>
static void dw_fwd_nchw_rows(const DwGeom& g, const T* x, const T* w, T bias, Act act, int64_t oh0,
                             int64_t oh1, T* y, T* scratch) {
  typedef typename VecOf<T>::type V;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  const int64_t rows = oh1 - oh0, taps = g.kh * g.kw;  // taps <= kDwMaxTaps (caller)
  int64_t hq, wq;
  dw_rows_dims(g, rows, &hq, &wq);
  const int64_t plane = hq * wq;
  T* ph = scratch;                    // sh*sw phase planes
  T* out = ph + g.sh * g.sw * plane;  // rows x wq wide outputs, then slack
  int64_t offs[kDwMaxTaps];
  dw_phase_planes(g, x, oh0, hq, wq, ph, offs);
  if (const int s3 = dw_nchw_3x3_stride<T>(g)) {
    if (s3 == 1)
      dw_nchw_3x3<T, 1>(ph, plane, wq, rows, g.OW, w, bias, act, y);
    else
      dw_nchw_3x3<T, 2>(ph, plane, wq, rows, g.OW, w, bias, act, y);
    return;
  }
  for (int64_t i = rows * wq; i < rows * wq + 2 * L; ++i) out[i] = T(0);
  // Only outputs q < nq - (wq - OW) are kept; reads stay inside the planes
  // because the last kept output's taps are inside them.
  const int64_t nkeep = (rows - 1) * wq + g.OW;
  // The last, partial vector runs as a whole one (its extra lanes read the
  // scratch's zeroed slack and are dropped): every output takes the same FMA
  // chain, whatever its position in the tile, so tilings agree bit for bit.
  int64_t q = dw_nchw_phase_blocks<T, 4>(ph, offs, taps, w, bias, nkeep, 0, out);
  q = dw_nchw_phase_blocks<T, 1>(ph, offs, taps, w, bias, nkeep, q, out);
  if (q < nkeep) dw_nchw_phase_blocks<T, 1>(ph, offs, taps, w, bias, q + L, q, out);
  for (int64_t r = 0; r < rows; ++r) {
    T* yr = y + r * g.OW;
    copy_strided(yr, out + r * wq, g.OW, 1);
    act_row(yr, g.OW, act);
  }
}

// NCHW, stride 1, no dilation, OW == W (the padding adds kw - 1 columns):
// the outputs of a plane as one flat run.  Output q = oh*W + ow, tap (i, j)
// reads input q + (i - pt)*W + (j - pl), which is (oh + i - pt, ow + j - pl)
// where 0 <= ow + j - pl < W; the lanes where it is not (the run wraps into
// the next or previous row) are masked to zero, and rows outside the image
// are zero rows of a padded copy.  So vectors span row ends, and planes
// narrower than a vector (14x14, 7x7) fill them: no phase planes, no
// channels-last copies.  Each output adds its bias, then every tap in order
// (padding taps w * 0), as the other NCHW paths.

// The padded copy's layout for outputs [q0, q1): its rows start at image
// row (q0 / W) - pt, after `front` elements of zeros.
template <class T>
static inline void dw_flat_dims(const DwGeom& g, int64_t q0, int64_t q1, int64_t* rows,
                                int64_t* front, int64_t* elems) {
  constexpr int64_t L = PYDSCONV_VEC_BYTES / static_cast<int64_t>(sizeof(T));
  const int64_t oh0 = q0 / g.W, oh1 = (q1 + g.W - 1) / g.W;
  *rows = oh1 - oh0 + g.kh - 1;
  *front = (g.pl + L - 1) / L * L;
  // a last vector may start L - 1 outputs before q1 and read kw - 1 - pl past it
  *elems = *front + *rows * g.W + g.kw + 2 * L;
}

// One channel's share of dw_fwd_nchw_flat's scratch for runs of n outputs
// (any q0), and how many channels' copies it makes before computing them
// (up to 16, in at most 32 KiB, so that they stay in L1): the channels of
// a group are computed four at a time, sharing the lane masks, as four
// independent FMA chains (one chain a channel is latency-bound).
template <class T>
static void dw_flat_layout(const DwGeom& g, int64_t n, int64_t* per, int64_t* group) {
  constexpr int64_t L = PYDSCONV_VEC_BYTES / static_cast<int64_t>(sizeof(T));
  int64_t rows, front, elems;
  dw_flat_dims<T>(g, 0, n, &rows, &front, &elems);
  *per = (elems + g.W + L - 1) / L * L;  // a run not starting at a row start spans one row more
  const int64_t fit = (int64_t(32) << 10) / (*per * int64_t(sizeof(T)));
  *group = fit < 1 ? 1 : fit > 16 ? 16 : fit;
}

// Scratch for runs of up to n outputs: a shorter run has a smaller share
// and may take more channels, but their copies stay within 32 KiB.
template <class T>
static int64_t dw_flat_scratch(const DwGeom& g, int64_t n) {
  int64_t per, group;
  dw_flat_layout<T>(g, n, &per, &group);
  const int64_t budget = (int64_t(32) << 10) / int64_t(sizeof(T));
  return per > budget ? per : budget;
}

// d[0 .. n) = 0 in vectors, then single elements.
template <class T>
static inline void dw_zero(T* d, int64_t n) {
  typedef typename VecOf<T>::type V;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  int64_t i = 0;
  for (; i + L <= n; i += L) vstore(d + i, V{});
  for (; i < n; ++i) d[i] = T(0);
}

// Outputs q of NC channels at once (vectors at q = q0, q0 + L, ...; the
// last one ending at q1, overlapping its neighbour with the same bits):
// channel n's input of output q, tap (i, j), at base[n][q + i*W + j], its
// taps w[n], bias bias[n], outputs out[n] + (q - q0).  The channels share
// the lane masks and are NC independent FMA chains.  KH x KW: the kernel
// (3x3 or 5x5, compile-time sizes so that taps and masks stay in registers;
// 7x7 is left to the other paths, which are faster on it).
template <class T, int KH, int KW, int NC>
static void dw_flat_vectors(const DwGeom& g, const T* const* base, const T* const* w, const T* bias,
                            Act act, int64_t q0, int64_t q1, T* const* out) {
  typedef typename VecOf<T>::type V;
  typedef typename VecOf<T>::lanes_int VI;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  constexpr int kh = KH, kw = KW;
  const int W = static_cast<int>(g.W), pl = static_cast<int>(g.pl);
  const int wraps = static_cast<int>((L - 1 + W - 1) / W);  // row ends a vector may cross
  VI iota;
  for (int l = 0; l < static_cast<int>(L); ++l) iota[l] = l;
  const int step = static_cast<int>(L % W);
  int col = static_cast<int>(q0 % W);  // output column of the vector's first lane
  for (int64_t qv = q0; qv < q1; qv += L) {
    int64_t q = qv;
    if (qv + L > q1) {  // (q1 - q0 >= L: the caller)
      q = q1 - L;
      col = static_cast<int>(q % W);
    }
    VI ow = iota + col;  // each lane's output column
    for (int r = 0; r < wraps; ++r) ow -= (ow >= W) & W;
    col += step;
    if (col >= W) col -= W;
    VI ok[KW];  // lanes whose tap column j is inside the row
    for (int j = 0; j < kw; ++j) {
      const VI c = ow + (j - pl);
      ok[j] = (c >= 0) & (c < W);
    }
    V acc[NC];
    for (int n = 0; n < NC; ++n) acc[n] = V{} + bias[n];
    for (int i = 0; i < kh; ++i)
      for (int j = 0; j < kw; ++j)
        for (int n = 0; n < NC; ++n) {
          const V xv = vload<V>(base[n] + q + static_cast<int64_t>(i) * W + j);
          acc[n] += w[n][i * kw + j] * (j == pl ? xv : (ok[j] ? xv : V{}));
        }
    for (int n = 0; n < NC; ++n) vstore(out[n] + (q - q0), act_vec<V, T>(acc[n], act));
  }
}

template <class T, int NC>
static void dw_flat_channels(const DwGeom& g, const T* const* base, const T* const* w,
                             const T* bias, Act act, int64_t q0, int64_t q1, T* const* out) {
  if (g.kh == 3)
    dw_flat_vectors<T, 3, 3, NC>(g, base, w, bias, act, q0, q1, out);
  else
    dw_flat_vectors<T, 5, 5, NC>(g, base, w, bias, act, q0, q1, out);
}

// The padded copy of the input rows that outputs [q0, q1) of one channel
// read (x: its plane) into buf; returns where output q's tap (0, 0) is
// read: at the result + q.
template <class T>
static const T* dw_flat_copy(const DwGeom& g, const T* x, int64_t q0, int64_t q1, T* buf) {
  const int64_t W = g.W, oh0 = q0 / W, ih0 = oh0 - g.pt;
  int64_t rows, front, elems;
  dw_flat_dims<T>(g, q0, q1, &rows, &front, &elems);
  // zeros, the rows ih0 .. ih0 + rows - 1 (zero outside the image; those
  // inside are contiguous in x), zeros
  const int64_t a = ih0 > 0 ? ih0 : 0, z = ih0 + rows < g.H ? ih0 + rows : g.H;
  const int64_t data0 = front + (a - ih0) * W, data1 = data0 + (z > a ? (z - a) * W : 0);
  dw_zero(buf, data0);
  if (z > a) copy_strided(buf + data0, x + a * W, data1 - data0, 1);
  dw_zero(buf + data1, elems - data1);
  return buf + front - oh0 * W - g.pl;
}

// Outputs [q0, q1) of output channels [c0, c1) (input channel c / M of
// x_img, taps w + c*kh*kw, bias b[c] or 0) into y + (c - c0)*y_cs;
// scratch: dw_flat_scratch(g, q1 - q0) elements.
template <class T>
static void dw_fwd_nchw_flat(const DwGeom& g, const T* x_img, const T* w, const T* b, Act act,
                             int64_t c0, int64_t c1, int64_t q0, int64_t q1, T* y, int64_t y_cs,
                             T* scratch) {
  constexpr int64_t L = PYDSCONV_VEC_BYTES / static_cast<int64_t>(sizeof(T));
  if (q1 <= q0) return;
  const int64_t taps = g.kh * g.kw, HW = g.H * g.W;
  int64_t per, group;
  dw_flat_layout<T>(g, q1 - q0, &per, &group);
  const bool short_run = q1 - q0 < L;  // a whole vector from q0, part of it kept
  const int64_t e = short_run ? q0 + L : q1;
  const T* base[16];
  const T* wc[16];
  T bias[16], tail[16 * kMaxLanes];
  T* out[16];
  constexpr int kNC = 4;  // channels computed together
  for (int64_t g0 = c0; g0 < c1; g0 += group) {
    const int64_t g1 = g0 + group < c1 ? g0 + group : c1;
    for (int64_t c = g0; c < g1; ++c) {
      const int64_t u = c - g0;
      base[u] = dw_flat_copy(g, x_img + (c / g.M) * HW, q0, q1, scratch + u * per);
      wc[u] = w + c * taps;
      bias[u] = b ? b[c] : T(0);
      out[u] = short_run ? tail + u * kMaxLanes : y + (c - c0) * y_cs;
    }
    int64_t u = 0;
    for (; u + kNC <= g1 - g0; u += kNC)
      dw_flat_channels<T, kNC>(g, base + u, wc + u, bias + u, act, q0, e, out + u);
    for (; u < g1 - g0; ++u)
      dw_flat_channels<T, 1>(g, base + u, wc + u, bias + u, act, q0, e, out + u);
    if (short_run)
      for (int64_t c = g0; c < g1; ++c)
        for (int64_t i = 0; i < q1 - q0; ++i)
          y[(c - c0) * y_cs + i] = tail[(c - g0) * kMaxLanes + i];
  }
}
