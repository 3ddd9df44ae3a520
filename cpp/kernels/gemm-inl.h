// GEMM kernels, compiled once per ISA: included by kernels-inl.h inside
// `namespace pydsconv::<isa>`, after the SIMD vocabulary (simd-inl.h: VecOf, vload,
// vstore, act_row, act_vec).  Like every -inl.h kernel header it includes nothing.
//
// gemm: C[m, n] = act(init + sum_k A[m, k] B[k, n]), the BLIS loop nest.
// B in NR-wide panels (packed here, or once per call by gemm_pack_b), an
// MR x NR register tile of broadcast-A x vector-B FMAs.  A is read in place
// when its rows are contiguous along k (a_cs == 1: the NCHW weights, NHWC
// pixels) or its columns are, close together (a weight gradient's grad_out
// with few channels), else packed per MC x KC block.  Every element of C is
// one FMA chain over k in order (slices store to C and reload exactly), so
// its bits depend only on K, never on where it falls in a tile or block: any
// tiling, any thread count, gives the same result.
#ifndef PYDSCONV_GEMM_MR
#define PYDSCONV_GEMM_MR 6
#endif
#ifndef PYDSCONV_GEMM_NV
#define PYDSCONV_GEMM_NV 2
#endif
#ifndef PYDSCONV_GEMM_MC
#define PYDSCONV_GEMM_MC 72
#endif
#ifndef PYDSCONV_GEMM_NC
#define PYDSCONV_GEMM_NC 256
#endif
constexpr int kGemmMR = PYDSCONV_GEMM_MR, kGemmNV = PYDSCONV_GEMM_NV;
constexpr int64_t kGemmKC = 256, kGemmMC = PYDSCONV_GEMM_MC, kGemmNC = PYDSCONV_GEMM_NC;
constexpr int kGemmPrefetchTiles = 2;  // how far ahead C lines are prefetched
// B slices (kc x nc) up to this size are run in row bands (see gemm()).
constexpr int64_t kGemmBandBytes = int64_t(16) << 10;
// The last tile of a block may take up to kGemmTall rows: a remainder of
// one or two rows after a full tile joins it, instead of a tile of 2-4
// dependent chains that takes 2/3 of a full tile's time (49 pixels of a
// 7x7 layer: 8 x 6 + 1).  Only where the registers hold 8 x NV
// accumulators (AVX-512's 32).
constexpr int kGemmTall = PYDSCONV_VEC_BYTES == 64 ? kGemmMR + 2 : kGemmMR;

template <class T>
static constexpr int gemm_nr() {
  return kGemmNV * PYDSCONV_VEC_BYTES / static_cast<int>(sizeof(T));
}

// Tiling preconditions (the PYDSCONV_GEMM_* overrides included): the packed
// B is indexed by NC-wide column blocks of whole NR panels, and MC blocks
// hold whole MR tiles.
static_assert(kGemmNC % gemm_nr<float>() == 0, "PYDSCONV_GEMM_NC: a multiple of NR");
static_assert(kGemmMC % kGemmMR == 0, "PYDSCONV_GEMM_MC: a multiple of MR");

// Scratch elements one gemm() call needs (GemmArgs::work).
template <class T>
static constexpr int64_t gemm_work_elems() {
  return kGemmKC * (kGemmMC + kGemmNC);
}

// C[0:ROWS, 0:NV*L] (ldc apart) = act(init + A . Bp) over kc, where init is
// C itself (load_c), the bias (per row / per column) or 0: the first NV
// vectors of each NR-wide row of the B panel (NV < kGemmNV: a panel's last
// columns).  A element (r, k): COLS: A[k*lda + r] (columns contiguous: an
// MR-high packed panel, lda = MR, or a column-major matrix in place); else
// A[r*lda + k] (rows in place).
template <class T, int ROWS, bool COLS, int NV = kGemmNV>
static inline void gemm_ukernel(int64_t kc, const T* PYDSCONV_RESTRICT A, int64_t lda,
                                const T* PYDSCONV_RESTRICT Bp, T* C, int64_t ldc, bool load_c,
                                const T* bias_row, const T* bias_col, Act act) {
  typedef typename VecOf<T>::type V;
  constexpr int L = static_cast<int>(sizeof(V) / sizeof(T));
  V acc[ROWS][NV];
  for (int r = 0; r < ROWS; ++r)
    for (int v = 0; v < NV; ++v)
      acc[r][v] = load_c     ? vload<V>(C + r * ldc + v * L)
                  : bias_row ? V{} + bias_row[r]
                  : bias_col ? vload<V>(bias_col + v * L)
                             : V{};
  const T* ar[ROWS];
  for (int r = 0; r < ROWS; ++r) ar[r] = A + r * lda;
  for (int64_t k = 0; k < kc; ++k) {
    V b[NV];
    for (int v = 0; v < NV; ++v) b[v] = vload<V>(Bp + k * kGemmNV * L + v * L);
    for (int r = 0; r < ROWS; ++r) {
      const T av = COLS ? A[k * lda + r] : ar[r][k];
      for (int v = 0; v < NV; ++v) acc[r][v] += b[v] * av;
    }
  }
  for (int r = 0; r < ROWS; ++r)
    for (int v = 0; v < NV; ++v) vstore(C + r * ldc + v * L, act_vec<V, T>(acc[r][v], act));
}

template <class T, bool COLS, int R = kGemmMR, int NV = kGemmNV>
static inline void gemm_ukernel_rows(int64_t rows, int64_t kc, const T* A, int64_t lda, const T* Bp,
                                     T* C, int64_t ldc, bool load_c, const T* bias_row,
                                     const T* bias_col, Act act) {
  if (R == 1 || rows >= R)
    gemm_ukernel<T, R, COLS, NV>(kc, A, lda, Bp, C, ldc, load_c, bias_row, bias_col, act);
  else
    gemm_ukernel_rows<T, COLS, (R > 1 ? R - 1 : 1), NV>(rows, kc, A, lda, Bp, C, ldc, load_c,
                                                        bias_row, bias_col, act);
}

// A panel's last columns, nv < kGemmNV vectors of them (NCHW 14x14 planes:
// 196 pixels = 6 panels of 32 and 4 columns), up to 2*MR rows at once: the
// tile keeps rows x nv >= 2*MR independent FMA chains where it can.
template <class T, bool COLS, int NV = (kGemmNV > 1 ? kGemmNV - 1 : 1)>
static inline void gemm_ukernel_narrow(int nv, int64_t rows, int64_t kc, const T* A, int64_t lda,
                                       const T* Bp, T* C, int64_t ldc, bool load_c,
                                       const T* bias_row, const T* bias_col, Act act) {
  if (NV > 1 && nv < NV)
    gemm_ukernel_narrow<T, COLS, (NV > 1 ? NV - 1 : 1)>(nv, rows, kc, A, lda, Bp, C, ldc, load_c,
                                                        bias_row, bias_col, act);
  else
    gemm_ukernel_rows<T, COLS, 2 * kGemmMR, NV>(rows, kc, A, lda, Bp, C, ldc, load_c, bias_row,
                                                bias_col, act);
}

// Lane index packs 0, 1, ..., N-1 for __builtin_shufflevector.
template <int... I>
struct LaneSeq {};
template <int N, int... I>
struct MakeLaneSeq : MakeLaneSeq<N - 1, N - 1, I...> {};
template <int... I>
struct MakeLaneSeq<0, I...> {
  typedef LaneSeq<I...> type;
};

static inline int64_t gemm_round_up(int64_t n, int64_t r) { return (n + r - 1) / r * r; }

// L x L transpose in registers: log2(L) stages; at half-width h, rows r and
// r + h (r mod 2h < h) swap the second h-lane half of every 2h-lane block of
// r with the first half of r + h's.
template <int L, int H, bool SECOND>
static constexpr int swap_lane(int l) {  // source lane (>= L: the second vector)
  return (l - l % (2 * H)) + (SECOND ? H : 0) +
         (l % (2 * H) < H ? l % (2 * H) : L + l % (2 * H) - H);
}

template <class V, int L, int H>
struct TransposeStage {
  template <int... I>
  static inline void pair(V& x, V& y, LaneSeq<I...>) {
    const V a = __builtin_shufflevector(x, y, swap_lane<L, H, false>(I)...);
    const V b = __builtin_shufflevector(x, y, swap_lane<L, H, true>(I)...);
    x = a;
    y = b;
  }
  static inline void run(V* v) {
    for (int r = 0; r < L; ++r)
      if (r % (2 * H) < H) pair(v[r], v[r + H], typename MakeLaneSeq<L>::type());
    TransposeStage<V, L, H / 2>::run(v);
  }
};
template <class V, int L>
struct TransposeStage<V, L, 0> {
  static inline void run(V*) {}
};

// d[k*ld_d + j] = s[j*ld_s + k] for j, k < L.
template <class T>
static inline void transpose_block(const T* PYDSCONV_RESTRICT s, int64_t ld_s,
                                   T* PYDSCONV_RESTRICT d, int64_t ld_d) {
  typedef typename VecOf<T>::type V;
  constexpr int L = static_cast<int>(sizeof(V) / sizeof(T));
  V v[L];
  for (int j = 0; j < L; ++j) v[j] = vload<V>(s + j * ld_s);
  TransposeStage<V, L, L / 2>::run(v);
  for (int k = 0; k < L; ++k) vstore(d + k * ld_d, v[k]);
}

// d[c*ldd + r] = s[r*lds + c] for r < R, c < Cn: L x L register blocks in
// column tiles (below), scalar edges.  Layout changes (NCHW <-> NHWC) and
// the NCHW input gradient's W^T use it.
template <class T>
static void transpose(int64_t R, int64_t Cn, const T* PYDSCONV_RESTRICT s, int64_t lds,
                      T* PYDSCONV_RESTRICT d, int64_t ldd) {
  typedef typename VecOf<T>::type V;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  const int64_t rv = R / L * L, cv = Cn / L * L;
  // Column tiles of kTT: the destination rows a tile writes (kTT of them,
  // R values each) stay in L1 while every source row group fills its part.
  constexpr int64_t kTT = 16;
  for (int64_t c0 = 0; c0 < cv; c0 += kTT) {
    const int64_t c1 = c0 + kTT < cv ? c0 + kTT : cv;
    for (int64_t r = 0; r < rv; r += L)
      for (int64_t c = c0; c < c1; c += L)
        transpose_block<T>(s + r * lds + c, lds, d + c * ldd + r, ldd);
  }
  for (int64_t r = 0; r < rv; r += L)
    for (int64_t c = cv; c < Cn; ++c)
      for (int64_t i = 0; i < L; ++i) d[c * ldd + r + i] = s[(r + i) * lds + c];
  for (int64_t r = rv; r < R; ++r)
    for (int64_t c = 0; c < Cn; ++c) d[c * ldd + r] = s[r * lds + c];
}

// Panels of W-wide rows: for k in [pc, pc+kc), element (k, j) of the
// (rows x W) panel starting at column j0 is src[k*ks + (j0 + j)*js], zero
// past n0 + n.  Panel p (columns n0 + p*W ...) lands at dst + p*W*kc.
template <class T>
static void pack_panels(const T* src, int64_t ks, int64_t js, int64_t pc, int64_t kc, int64_t n0,
                        int64_t n, int64_t W, T* PYDSCONV_RESTRICT dst) {
  typedef typename VecOf<T>::type V;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T));
  for (int64_t j0 = 0; j0 < n; j0 += W) {
    T* d = dst + j0 * kc;
    const int64_t w = n - j0 < W ? n - j0 : W;
    if (js == 1 && w == W && W % L == 0) {  // whole rows of vectors (B panels)
      for (int64_t k = 0; k < kc; ++k) {
        const T* s = src + (pc + k) * ks + n0 + j0;
        for (int64_t j = 0; j < W; j += L) vstore(d + k * W + j, vload<V>(s + j));
      }
      continue;
    }
    if (ks == 1) {  // contiguous along k (a transposed operand): read runs of k
      int64_t k0 = 0;
      if (w == W && W % L == 0) {  // L x L blocks transposed in registers
        // One group of L source rows at a time, along all of k: rows a power
        // of two apart (C_in = 512, 1024) share an L1 set, and walking all W
        // rows at each k would evict their lines before the next k uses them.
        for (int64_t j = 0; j < W; j += L)
          for (int64_t kb = 0; kb + L <= kc; kb += L)
            transpose_block<T>(src + pc + kb + (n0 + j0 + j) * js, js, d + kb * W + j, W);
        k0 = kc / L * L;
      }
      if (k0 == kc) continue;
      for (int64_t j = 0; j < W; ++j) {
        const T* s = src + pc + (n0 + j0 + j) * js;
        if (j < w)
          for (int64_t k = k0; k < kc; ++k) d[k * W + j] = s[k];
        else
          for (int64_t k = k0; k < kc; ++k) d[k * W + j] = T(0);
      }
      continue;
    }
    int64_t k = 0;
    if (js == 1 && w == W && W < L && j0 + L <= n) {
      // Rows narrower than a vector (A's 6-row panels of a column-major
      // operand): a vector each, its spare lanes overwritten by the next
      // row's; the last rows, whose spare lanes would leave the panel, below.
      const int64_t vk = kc - (L - W + W - 1) / W;
      for (; k < vk; ++k) vstore(d + k * W, vload<V>(src + (pc + k) * ks + n0 + j0));
    }
    for (; k < kc; ++k) {
      const T* s = src + (pc + k) * ks + (n0 + j0) * js;
      if (js == 1)
        for (int64_t j = 0; j < w; ++j) d[k * W + j] = s[j];
      else
        for (int64_t j = 0; j < w; ++j) d[k * W + j] = s[j * js];
      for (int64_t j = w; j < W; ++j) d[k * W + j] = T(0);
    }
  }
}

// Whole-matrix packing, once per call, for a B operand reused by many GEMMs
// (the NHWC weights): B (K x N, strides rs/cs) -> gemm_pack_b_elems(K, N)
// elements, which GemmArgs::packed_b takes.
template <class T>
static int64_t gemm_pack_b_elems(int64_t K, int64_t N) {
  return K * gemm_round_up(N, gemm_nr<T>());
}
template <class T>
static void gemm_pack_b(int64_t K, int64_t N, const T* B, int64_t rs, int64_t cs, int64_t n0,
                        int64_t n1, T* out) {
  const int64_t npad = gemm_round_up(N, gemm_nr<T>());
  for (int64_t pc = 0; pc < K; pc += kGemmKC) {
    const int64_t kc = K - pc < kGemmKC ? K - pc : kGemmKC;
    pack_panels(B, rs, cs, pc, kc, n0, n1 - n0, gemm_nr<T>(), out + pc * npad + n0 * kc);
  }
}
// C = bias (per row or column, or 0), then act: the K = 0 product.
template <class T>
static void gemm_bias_only(const GemmArgs<T>& a) {
  for (int64_t m = 0; m < a.M; ++m) {
    T* c = a.C + m * a.c_rs;
    for (int64_t n = 0; n < a.N; ++n)
      c[n] = a.bias_axis == 0 ? a.bias[m] : a.bias_axis == 1 ? a.bias[n] : T(0);
    act_row(c, a.N, a.act);
  }
}

// A tile of MR < rows <= kGemmTall rows (A in place), out of line like
// gemm_narrow_panel.
template <class T>
__attribute__((noinline)) static void gemm_tall_tile(bool a_rows, int64_t rows, int64_t kc,
                                                     const T* A, int64_t lda, const T* Bp, T* C,
                                                     int64_t ldc, bool load_c, const T* bias_row,
                                                     const T* bias_col, Act act) {
  if (a_rows)
    gemm_ukernel_rows<T, false, kGemmTall>(rows, kc, A, lda, Bp, C, ldc, load_c, bias_row, bias_col,
                                           act);
  else
    gemm_ukernel_rows<T, true, kGemmTall>(rows, kc, A, lda, Bp, C, ldc, load_c, bias_row, bias_col,
                                          act);
}

// One column panel of an MC x KC block whose nr columns fill fewer vectors
// than NR (the last columns of C), through gemm_ukernel_narrow, `rs` rows at
// a time (2*MR, or MR from packed MR-high A panels).  Out of line, so that
// the full-panel loop of gemm() is compiled as if this case did not exist.
// A's row r at A + r*step; C: the panel's first element; bias: per row (from
// the block's first row) or per column (from the panel's first), by
// a.bias_axis, used unless load_c.
template <class T>
__attribute__((noinline)) static void gemm_narrow_panel(const GemmArgs<T>& a, int64_t mc,
                                                        int64_t nr, int64_t kc, const T* A,
                                                        int64_t lda, int64_t step, bool a_rows,
                                                        int64_t rs, const T* Bp, T* C, bool load_c,
                                                        const T* bias, Act act) {
  typedef typename VecOf<T>::type V;
  constexpr int NR = gemm_nr<T>(), L = static_cast<int>(sizeof(V) / sizeof(T));
  const int nv = static_cast<int>((nr + L - 1) / L);
  const T* bcol = !load_c && a.bias_axis == 1 ? bias : nullptr;
  T cpad[NR], tile[2 * kGemmMR * NR];
  if (bcol && nr < nv * L) {
    for (int64_t j = 0; j < NR; ++j) cpad[j] = j < nr ? bcol[j] : T(0);
    bcol = cpad;
  }
  for (int64_t i0 = 0; i0 < mc; i0 += rs) {
    const int64_t mr = mc - i0 < rs ? mc - i0 : rs;
    T* c = C + i0 * a.c_rs;
    const T* brow = !load_c && a.bias_axis == 0 ? bias + i0 : nullptr;
    T* ct = c;
    int64_t ldc = a.c_rs;
    if (nr < nv * L) {  // partial vectors through a stack tile
      for (int64_t i = 0; i < mr; ++i)
        for (int64_t j = 0; j < nv * L; ++j)
          tile[i * NR + j] = load_c && j < nr ? c[i * a.c_rs + j] : T(0);
      ct = tile;
      ldc = NR;
    }
    if (a_rows)
      gemm_ukernel_narrow<T, false>(nv, mr, kc, A + i0 * step, lda, Bp, ct, ldc, load_c, brow, bcol,
                                    act);
    else
      gemm_ukernel_narrow<T, true>(nv, mr, kc, A + i0 * step, lda, Bp, ct, ldc, load_c, brow, bcol,
                                   act);
    if (nr < nv * L)
      for (int64_t i = 0; i < mr; ++i)
        for (int64_t j = 0; j < nr; ++j) c[i * a.c_rs + j] = tile[i * NR + j];
  }
}

template <class T>
static void gemm(const GemmArgs<T>& a) {
  typedef typename VecOf<T>::type V;
  constexpr int MR = kGemmMR, NR = gemm_nr<T>(), L = static_cast<int>(sizeof(V) / sizeof(T));
  if (a.K == 0) {
    if (!a.accumulate) gemm_bias_only(a);
    return;
  }
  if (a.prefetch_c) trace::hit(trace::GemmPrefetchC);
  T* Bp = a.work;                      // KC x NC, NR-wide panels
  T* Ap = a.work + kGemmKC * kGemmNC;  // MC x KC, MR-high panels
  // A is read in place when its rows are contiguous (a_cs == 1), or its
  // columns (a_rs == 1) and close together: columns 2 KiB apart (a weight
  // gradient's grad_out with 512 channels) would each take a cache line per
  // k, all in one L1 set.  Other strides are packed per MC x KC block.
  const bool a_rows = a.a_cs == 1;
  const bool a_cols = !a_rows && a.a_rs == 1 && a.a_cs * int64_t(sizeof(T)) <= 256;
  const bool a_packed = !a_rows && !a_cols;  // MR-high panels (no tall tiles)
  bool ran_tall = false;
  for (int64_t jc = 0; jc < a.N; jc += kGemmNC) {
    const int64_t nc = a.N - jc < kGemmNC ? a.N - jc : kGemmNC;
    for (int64_t pc = 0; pc < a.K; pc += kGemmKC) {
      const int64_t kc = a.K - pc < kGemmKC ? a.K - pc : kGemmKC;
      const bool load_c = pc > 0 || a.accumulate;
      const Act act = pc + kc == a.K && !a.accumulate ? a.act : Act::None;
      const T* Bpc;  // this slice's B panels, indexed from column jc
      if (a.packed_b) {
        Bpc = a.packed_b + pc * a.pb_npad + (a.pb_col0 + jc) * kc;
      } else {
        pack_panels(a.B, a.b_rs, a.b_cs, pc, kc, jc, nc, NR, Bp);
        Bpc = Bp;
      }
      for (int64_t ic = 0; ic < a.M; ic += kGemmMC) {
        const int64_t mc = a.M - ic < kGemmMC ? a.M - ic : kGemmMC;
        const T* Apc = a.A + ic * a.a_rs + pc * a.a_cs;  // this block's A, in place
        int64_t lda = a_rows ? a.a_rs : a.a_cs, step = a_rows ? a.a_rs : 1;  // row r at r*step
        if (!a_rows && !a_cols) {  // A^T has A's columns as rows: pack it like B
          pack_panels(a.A, a.a_cs, a.a_rs, pc, kc, ic, mc, MR, Ap);
          Apc = Ap;
          lda = MR;
          step = kc;  // (panels: rows i0.. start at i0 * kc)
        }
        // A B slice of at most kGemmBandBytes (K = 32 against 64 columns):
        // row band by row band, every full column panel of MR rows before the
        // next MR rows, so that C is written along its rows in runs of up to
        // nc columns rather than NR-wide strips down the whole block; the
        // slice stays in L1 for all of them.  Column panel by column panel
        // otherwise, as below (a larger slice would be reread from L2 by
        // every band).
        int64_t jfull = 0;
        if (kc * nc * int64_t(sizeof(T)) <= kGemmBandBytes) {
          jfull = nc / NR * NR;
          for (int64_t i0 = 0; i0 < mc; i0 += MR) {
            const bool tall = kGemmTall > MR && !a_packed && mc - i0 > MR && mc - i0 <= kGemmTall;
            const int64_t mr = tall ? mc - i0 : mc - i0 < MR ? mc - i0 : MR;
            const T* Ai = Apc + i0 * step;
            T* crow = a.C + (ic + i0) * a.c_rs + jc;
            const T* brow = !load_c && a.bias_axis == 0 ? a.bias + ic + i0 : nullptr;
            for (int64_t j0 = 0; j0 < jfull; j0 += NR) {
              const T* bcol = !load_c && a.bias_axis == 1 ? a.bias + jc + j0 : nullptr;
              if (a.prefetch_c && j0 + 2 * NR < nc)  // C lines of the panel two ahead
                for (int64_t i = 0; i < mr; ++i) {
                  __builtin_prefetch(crow + i * a.c_rs + j0 + 2 * NR, 1, 3);
                  __builtin_prefetch(crow + i * a.c_rs + j0 + 3 * NR - 1, 1, 3);
                }
              const T* Bj = Bpc + j0 * kc;
              if (tall)
                gemm_tall_tile<T>(a_rows, mr, kc, Ai, lda, Bj, crow + j0, a.c_rs, load_c, brow,
                                  bcol, act);
              else if (a_rows)
                gemm_ukernel_rows<T, false>(mr, kc, Ai, lda, Bj, crow + j0, a.c_rs, load_c, brow,
                                            bcol, act);
              else
                gemm_ukernel_rows<T, true>(mr, kc, Ai, lda, Bj, crow + j0, a.c_rs, load_c, brow,
                                           bcol, act);
            }
            if (tall) {
              ran_tall = true;
              break;
            }
          }
          if (jfull > 0) trace::hit(trace::GemmRowBands);
        }
        for (int64_t j0 = jfull; j0 < nc; j0 += NR) {
          const int64_t nr = nc - j0 < NR ? nc - j0 : NR;
          if (nr <= NR - L) {  // a panel's last columns, fewer vectors than NR
            gemm_narrow_panel(a, mc, nr, kc, Apc, lda, step, a_rows, a_rows || a_cols ? 2 * MR : MR,
                              Bpc + j0 * kc, a.C + ic * a.c_rs + jc + j0, load_c,
                              a.bias_axis == 0   ? a.bias + ic
                              : a.bias_axis == 1 ? a.bias + jc + j0
                                                 : nullptr,
                              act);
            continue;
          }
          for (int64_t i0 = 0; i0 < mc; i0 += MR) {
            const bool tall = kGemmTall > MR && !a_packed && mc - i0 > MR && mc - i0 <= kGemmTall;
            const int64_t mr = tall ? mc - i0 : mc - i0 < MR ? mc - i0 : MR;
            const int64_t m = ic + i0, n = jc + j0;
            const T* Ai = Apc + i0 * step;
            const T* Bj = Bpc + j0 * kc;
            T* c = a.C + m * a.c_rs + n;
            const T* brow = !load_c && a.bias_axis == 0 ? a.bias + m : nullptr;
            const T* bcol = !load_c && a.bias_axis == 1 ? a.bias + n : nullptr;
            T tile[kGemmTall * NR], cpad[NR];
            T* ct = c;
            int64_t ldc = a.c_rs;
            if (nr < NR) {  // partial columns through a full-width stack tile
              for (int64_t i = 0; i < mr; ++i)
                for (int64_t j = 0; j < NR; ++j)
                  tile[i * NR + j] = load_c && j < nr ? c[i * a.c_rs + j] : T(0);
              if (bcol) {
                for (int64_t j = 0; j < NR; ++j) cpad[j] = j < nr ? bcol[j] : T(0);
                bcol = cpad;
              }
              ct = tile;
              ldc = NR;
            }
            // The C lines of the tile two steps ahead (down this column
            // panel, else at the top of the next): stores to lines not in
            // cache wait for them, and C is written in MR-row steps c_rs
            // apart, a pattern the hardware prefetchers do not follow.
            if (a.prefetch_c) {
              int64_t ti = i0 + kGemmPrefetchTiles * MR, tj = j0;
              if (ti >= mc) {
                ti -= gemm_round_up(mc, MR);
                tj += NR;
              }
              if (ti < mc && tj < nc) {
                const T* pc0 = a.C + (ic + ti) * a.c_rs + jc + tj;
                const int64_t prow = mc - ti < MR ? mc - ti : MR;
                const int64_t plast = (nc - tj < NR ? nc - tj : NR) - 1;
                for (int64_t i = 0; i < prow; ++i) {
                  __builtin_prefetch(pc0 + i * a.c_rs, 1, 3);
                  __builtin_prefetch(pc0 + i * a.c_rs + plast, 1, 3);
                }
              }
            }
            if (tall)
              gemm_tall_tile<T>(a_rows, mr, kc, Ai, lda, Bj, ct, ldc, load_c, brow, bcol, act);
            else if (a_rows)
              gemm_ukernel_rows<T, false>(mr, kc, Ai, lda, Bj, ct, ldc, load_c, brow, bcol, act);
            else
              gemm_ukernel_rows<T, true>(mr, kc, Ai, lda, Bj, ct, ldc, load_c, brow, bcol, act);
            if (nr < NR)
              for (int64_t i = 0; i < mr; ++i)
                for (int64_t j = 0; j < nr; ++j) c[i * a.c_rs + j] = tile[i * NR + j];
            if (tall) {
              ran_tall = true;
              break;
            }
          }
        }
      }
    }
  }
  if (ran_tall) trace::hit(trace::GemmTallTile);
}
