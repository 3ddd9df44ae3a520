// The SIMD vocabulary of every kernel set, compiled once per ISA.
//
// Included by kernels-inl.h inside `namespace pydsconv::<isa>` (after
// table.h), with PYDSCONV_VEC_BYTES set by the isa_*.cpp unit; like every
// -inl.h kernel header it includes nothing and calls no library templates,
// so every symbol it defines is private to that ISA.  Loops are written so
// that the compiler can vectorise the innermost one (contiguous, no
// aliasing, trip count known on entry) with the unit's flags.

#define PYDSCONV_RESTRICT __restrict__
// The compiler forgets what it knew about p's value (no code emitted): a
// pointer stepped by a run-time stride stays one register instead of being
// re-derived as base + k*stride at every use.
#define PYDSCONV_OPAQUE(p) __asm__("" : "+r"(p))

// a / s for a >= 0; strides 1 and 2 (nearly every network) skip the divide.
static inline int64_t div_s(int64_t a, int64_t s) { return s == 1 ? a : s == 2 ? a >> 1 : a / s; }

// Output indices o in [lo, hi) with 0 <= o*s + off < n.
static inline void valid_range(int64_t n, int64_t s, int64_t off, int64_t nout, int64_t* lo,
                               int64_t* hi) {
  int64_t l = off >= 0 ? 0 : div_s(-off + s - 1, s);
  int64_t h = (n - 1 - off) < 0 ? 0 : div_s(n - 1 - off, s) + 1;
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
typedef int32_t vec_i32 __attribute__((vector_size(PYDSCONV_VEC_BYTES)));
typedef int64_t vec_i64 __attribute__((vector_size(PYDSCONV_VEC_BYTES)));
template <class T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef vec_f32 type;
  typedef vec_i32 lanes_int;
};
template <>
struct VecOf<double> {
  typedef vec_f64 type;
  typedef vec_i64 lanes_int;
};

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

constexpr int64_t kMaxLanes = 16;  // the widest vector of any unit (64 bytes of float)

// Activations.  relu and relu6 are clamps, inline at every epilogue;
// hardswish, hardsigmoid, silu and sigmoid (act_more) run out of line, so
// that the register-tile epilogues of the relu paths stay as small as they
// were.  NaN stays NaN in every one (as in PyTorch): comparisons with NaN
// are false, so the selects keep it.

// exp(x) per lane: n = round(x / ln 2) by the 1.5 * 2^mantissa trick (n is
// then the low bits of t), r = x - n ln 2 in two steps (Cody-Waite), a
// polynomial for exp(r) on |r| <= ln(2)/2 (float: Cephes expf's, ~1 ulp;
// double: Taylor to r^13, truncation < 0.05 ulp), times 2^n as two powers
// of two (so that n down to the subnormals and up past the overflow needs
// no special case: the last multiply rounds to a subnormal, 0 or inf).
// x is clamped first (exp(-104) rounds to 0 in float, exp(89) to inf); NaN
// becomes the low clamp (result 0), so callers that must keep NaN select it.
static inline vec_f32 vexp(vec_f32 x) {
  typedef vec_f32 V;
  typedef vec_i32 I;
  x = x > V{} - 104.0f ? x : V{} - 104.0f;
  x = x < V{} + 89.0f ? x : V{} + 89.0f;
  const V magic = V{} + 12582912.0f;  // 1.5 * 2^23
  const V t = x * 1.44269504088896341f + magic;
  const V n = t - magic;
  I ni, mi;
  __builtin_memcpy(&ni, &t, sizeof(V));
  __builtin_memcpy(&mi, &magic, sizeof(V));
  ni -= mi;
  V r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  V p = V{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const I n1 = ni >> 1, n2 = ni - n1;
  const I e1 = (n1 + 127) << 23, e2 = (n2 + 127) << 23;
  V s1, s2;
  __builtin_memcpy(&s1, &e1, sizeof(V));
  __builtin_memcpy(&s2, &e2, sizeof(V));
  return p * s1 * s2;
}
static inline vec_f64 vexp(vec_f64 x) {
  typedef vec_f64 V;
  typedef vec_i64 I;
  x = x > V{} - 746.0 ? x : V{} - 746.0;
  x = x < V{} + 710.0 ? x : V{} + 710.0;
  const V magic = V{} + 6755399441055744.0;  // 1.5 * 2^52
  const V t = x * 1.4426950408889634074 + magic;
  const V n = t - magic;
  I ni, mi;
  __builtin_memcpy(&ni, &t, sizeof(V));
  __builtin_memcpy(&mi, &magic, sizeof(V));
  ni -= mi;
  V r = x - n * 6.93145751953125e-1;
  r = r - n * 1.42860682030941723212e-6;
  V p = V{} + 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * (r * r) + r + 1.0;
  const I n1 = ni >> 1, n2 = ni - n1;
  const I e1 = (n1 + 1023) << 52, e2 = (n2 + 1023) << 52;
  V s1, s2;
  __builtin_memcpy(&s1, &e1, sizeof(V));
  __builtin_memcpy(&s2, &e2, sizeof(V));
  return p * s1 * s2;
}

// v[0 .. nv) = act(v) for the activations beyond the clamps, one loop per
// activation.  PyTorch's formulas and special values: hardsigmoid
// relu6(x + 3) / 6 (the / 6 as * (1/6): 6 * (1/6) rounds to 1 in both
// dtypes, so hardsigmoid(x >= 3) = 1 and hardswish(x >= 3) = x exactly),
// hardswish x * hardsigmoid(x) (-inf gives NaN: -inf * 0), sigmoid
// 1 / (1 + exp(-x)) (0 at -inf, 1 at +inf), silu x / (1 + exp(-x)) (NaN at
// -inf, as torch.nn.functional.silu: -inf / inf; -0 for x below about -89
// in float, -710 in double, where exp(-x) overflows).
template <class V, class T>
__attribute__((noinline)) static void act_more(V* PYDSCONV_RESTRICT v, int64_t nv, Act act) {
  const V zero = V{}, six = zero + T(6), one = zero + T(1);
  if (act == Act::Hardswish || act == Act::Hardsigmoid) {
    const bool swish = act == Act::Hardswish;
    for (int64_t i = 0; i < nv; ++i) {
      V h = v[i] + T(3);
      h = h < zero ? zero : h;
      h = h > six ? six : h;
      h = h * (T(1) / T(6));
      v[i] = swish ? v[i] * h : h;
    }
  } else if (act == Act::Silu) {
    for (int64_t i = 0; i < nv; ++i) v[i] = v[i] / (one + vexp(-v[i]));
  } else if (act == Act::Sigmoid) {
    for (int64_t i = 0; i < nv; ++i) {
      const V s = one / (one + vexp(-v[i]));
      v[i] = v[i] == v[i] ? s : v[i];  // NaN: vexp gave 0
    }
  }
}

// act on a vector, the epilogue of the register-tile kernels.
template <class V, class T>
static inline V act_vec(V v, Act act) {
  // relu and relu6 behind one unsigned range test (act - 1 in {0, 1}), so
  // they take two tests per vector, as before the other activations came
  if (static_cast<unsigned>(act) - 1u <= 1u) {
    const V zero = V{};
    v = v < zero ? zero : v;
    if (act == Act::Relu6) {
      const V six = zero + T(6);
      v = v > six ? six : v;
    }
    return v;
  }
  if (__builtin_expect(act != Act::None, 0)) act_more<V, T>(&v, 1, act);
  return v;
}

// act in place on n elements, the epilogue of the row kernels: the same
// bits per element as act_vec (the tail goes through one padded vector).
template <class T>
static void act_row_more(T* PYDSCONV_RESTRICT y, int64_t n, Act act) {
  typedef typename VecOf<T>::type V;
  constexpr int64_t L = static_cast<int64_t>(sizeof(V) / sizeof(T)), NB = 8;
  V buf[NB];
  for (int64_t i = 0; i < n; i += NB * L) {
    const int64_t m = n - i < NB * L ? n - i : NB * L, nv = (m + L - 1) / L;
    if (m == NB * L) {
      for (int64_t k = 0; k < NB; ++k) buf[k] = vload<V>(y + i + k * L);
    } else {
      T tmp[NB * kMaxLanes] = {};
      for (int64_t k = 0; k < m; ++k) tmp[k] = y[i + k];
      for (int64_t k = 0; k < nv; ++k) buf[k] = vload<V>(tmp + k * L);
    }
    act_more<V, T>(buf, nv, act);
    if (m == NB * L) {
      for (int64_t k = 0; k < NB; ++k) vstore(y + i + k * L, buf[k]);
    } else {
      T tmp[NB * kMaxLanes];
      for (int64_t k = 0; k < nv; ++k) vstore(tmp + k * L, buf[k]);
      for (int64_t k = 0; k < m; ++k) y[i + k] = tmp[k];
    }
  }
}

template <class T>
static inline void act_row(T* PYDSCONV_RESTRICT y, int64_t n, Act act) {
  if (act == Act::None) return;
  if (act == Act::Relu) {
    for (int64_t i = 0; i < n; ++i) y[i] = y[i] < T(0) ? T(0) : y[i];
  } else if (act == Act::Relu6) {
    for (int64_t i = 0; i < n; ++i) {
      T v = y[i] < T(0) ? T(0) : y[i];
      y[i] = v > T(6) ? T(6) : v;
    }
  } else {
    act_row_more(y, n, act);
  }
}

// Lanes O, O + 2, O + 4, ... of a and b concatenated (stride-2
// de-interleave: O = 0 the even lanes, O = 1 the odd ones).
template <class V, int L, int O>
struct HalfLanes;
template <class V, int O>
struct HalfLanes<V, 2, O> {
  static V of(V a, V b) { return __builtin_shufflevector(a, b, O, O + 2); }
};
template <class V, int O>
struct HalfLanes<V, 4, O> {
  static V of(V a, V b) { return __builtin_shufflevector(a, b, O, O + 2, O + 4, O + 6); }
};
template <class V, int O>
struct HalfLanes<V, 8, O> {
  static V of(V a, V b) {
    return __builtin_shufflevector(a, b, O, O + 2, O + 4, O + 6, O + 8, O + 10, O + 12, O + 14);
  }
};
template <class V, int O>
struct HalfLanes<V, 16, O> {
  static V of(V a, V b) {
    return __builtin_shufflevector(a, b, O, O + 2, O + 4, O + 6, O + 8, O + 10, O + 12, O + 14,
                                   O + 16, O + 18, O + 20, O + 22, O + 24, O + 26, O + 28, O + 30);
  }
};

// d[q] = s[q * st] for q in [0, n).  Stride 2 de-interleaves two vectors at a
// time; it reads only s[0 .. 2(n-1)], like the scalar loop: the last L
// outputs come from the odd lanes of the two vectors that start one element
// early (a scalar tail of up to L elements a row cost more than the vector
// part at 56 outputs a row).
template <class T>
static inline void copy_strided(T* PYDSCONV_RESTRICT d, const T* PYDSCONV_RESTRICT s, int64_t n,
                                int64_t st) {
  typedef typename VecOf<T>::type V;
  constexpr int L = static_cast<int>(sizeof(V) / sizeof(T));
  int64_t q = 0;
  if (st == 1 && n >= L) {  // short runs: vector moves, the last one overlapping
    for (; q + L <= n; q += L) vstore(d + q, vload<V>(s + q));
    if (q < n) vstore(d + n - L, vload<V>(s + n - L));
    return;
  }
  if (st == 2 && n > L) {
    for (; q + L < n; q += L)  // last read 2q + 2L - 1 <= 2(n - 1) - 1
      vstore(d + q, HalfLanes<V, L, 0>::of(vload<V>(s + 2 * q), vload<V>(s + 2 * q + L)));
    const T* t = s + 2 * (n - L) - 1;  // reads s[2(n - L) - 1 .. 2(n - 1)]
    vstore(d + n - L, HalfLanes<V, L, 1>::of(vload<V>(t), vload<V>(t + L)));
    return;
  }
  for (; q < n; ++q) d[q] = s[q * st];
}
