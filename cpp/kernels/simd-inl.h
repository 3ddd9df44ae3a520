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

// relu/relu6 on a vector, as act_row; NaN stays NaN.
template <class V, class T>
static inline V act_vec(V v, Act act) {
  if (act == Act::None) return v;
  const V zero = V{};
  v = v < zero ? zero : v;
  if (act == Act::Relu6) {
    const V six = zero + T(6);
    v = v > six ? six : v;
  }
  return v;
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

constexpr int64_t kMaxLanes = 16;  // the widest vector of any unit (64 bytes of float)
