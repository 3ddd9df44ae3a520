// The FMA throughput probe behind the benchmarks' "% of peak", compiled once
// per ISA: included by kernels-inl.h inside `namespace pydsconv::<isa>`,
// after the SIMD vocabulary (simd-inl.h).  12 independent vector FMA chains (enough to cover FMA
// latency x ports on current cores). Returns the flops done (2 per lane per FMA); *sink defeats
// dead-code removal.
template <class T>
static double fma_peak_loop(int64_t iters, T* sink) {
  typedef typename VecOf<T>::type V;
  constexpr int NACC = 12;
  V acc[NACC];
  for (int i = 0; i < NACC; ++i) acc[i] = V{} + T(i) * T(1e-3);
  const V mul = V{} + T(0.999999), add = V{} + T(1e-7);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < NACC; ++i) acc[i] = acc[i] * mul + add;
  V sum = V{};
  for (int i = 0; i < NACC; ++i) sum += acc[i];
  *sink = sum[0];
  return 2.0 * static_cast<double>(iters) * NACC * (sizeof(V) / sizeof(T));
}
