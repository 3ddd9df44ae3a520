// Pointwise (1x1) operators: every case is one or a batch of GEMMs, split
// into (batch, row-block, column-block) tasks; the kernel does one block.
//   NCHW forward:  Y_n[co, p] = W[co, :] . X_n[:, p]      (per image)
//   NHWC forward:  Y[p, co]   = X[p, :] . W^T[:, co]      (all pixels at once)
#include <vector>

#include "dispatch.h"
#include "ops.h"
#include "packed.h"
#include "threads.h"

namespace pydsconv {

namespace {

constexpr int64_t kRowBlock = 72, kColBlock = 256;  // = the GEMM's MC and NC blocks

// Runs `a` for each of `batch` problems whose B and C start b_step and
// c_step elements apart, split into tasks across threads.  pa / pb: A or B
// (the weights) packed once for all tasks.  A task spans the whole packed
// side (all rows when A is packed, all columns when B is), so every panel of
// the other operand is packed once and used against the whole weight matrix;
// the packed side is split only when there are too few tasks for the threads.
template <class T>
void run_gemm(const GemmArgs<T>& a, int64_t batch, int64_t b_step, int64_t c_step, int threads,
              const Packed<T>* pa = nullptr, const Packed<T>* pb = nullptr) {
  if (batch == 0 || a.M == 0 || a.N == 0) return;
  const KernelTable<T>& k = kernels<T>();
  const int64_t macs = batch * a.M * a.N * a.K;
  const int want = plan_threads(threads, int64_t(1) << 30, macs);
  int64_t mt = pa ? a.M : kRowBlock, ntl = pb ? a.N : kColBlock;
  const int64_t unit_m = 6 * 12, unit_n = kColBlock;  // split steps keep packed offsets aligned
  for (;;) {
    const int64_t tasks = batch * ceil_div(a.M, mt) * ceil_div(a.N, ntl);
    if (tasks >= 2 * int64_t(want)) break;
    if (pa && mt > unit_m) mt = ceil_div(ceil_div(mt, 2), unit_m) * unit_m;
    else if (pb && ntl > unit_n) ntl = ceil_div(ceil_div(ntl, 2), unit_n) * unit_n;
    else break;
  }
  const int64_t tm = ceil_div(a.M, mt), tn = ceil_div(a.N, ntl);
  const int64_t tasks = batch * tm * tn;
  const int nt = plan_threads(threads, tasks, macs);
  std::vector<T> work(static_cast<size_t>(nt * k.gemm_work));
  parallel_for_tid(tasks, nt, [&](int64_t t, int tid) {
    const int64_t j = t % tn, i = (t / tn) % tm, b = t / (tn * tm);
    const int64_t m0 = i * mt, n0 = j * ntl;
    GemmArgs<T> s = a;
    s.M = a.M - m0 < mt ? a.M - m0 : mt;
    s.N = a.N - n0 < ntl ? a.N - n0 : ntl;
    s.A = a.A + m0 * a.a_rs;
    s.B = a.B + b * b_step + n0 * a.b_cs;
    s.C = a.C + b * c_step + m0 * a.c_rs + n0;
    if (a.bias) s.bias = a.bias + (a.bias_axis == 0 ? m0 : n0);
    s.work = work.data() + tid * k.gemm_work;
    if (pa) use_packed_a(s, *pa, m0);
    if (pb) use_packed_b(s, *pb, n0);
    k.gemm(s);
  });
}

}  // namespace

template <class T>
void pointwise_forward(const Problem& p, const T* x, const T* w, const T* b, Act act, T* y,
                       int threads) {
  const KernelTable<T>& k = kernels<T>();
  const int64_t P = p.H * p.W, Ci = p.Cmid, Co = p.Cout;
  if (p.N == 0) return;
  if (p.layout == Layout::NCHW) {
    const Packed<T> pw = pack_a(k, Co, Ci, w, Ci, 1);
    GemmArgs<T> a{Co, P, Ci, w, Ci, 1, x, P, 1, y, P, false, b, b ? 0 : -1, act, nullptr};
    run_gemm(a, p.N, Ci * P, Co * P, threads, &pw);
  } else {
    const Packed<T> pw = pack_b(k, Ci, Co, w, 1, Ci);
    GemmArgs<T> a{p.N * P, Co, Ci, x, Ci, 1, w, 1, Ci, y, Co, false, b, b ? 1 : -1, act, nullptr};
    run_gemm<T>(a, 1, 0, 0, threads, nullptr, &pw);
  }
}

template <class T>
void pointwise_backward(const Problem& p, const T* gy, const T* x, const T* w, T* gx, T* gw,
                        T* gb, int threads) {
  const KernelTable<T>& k = kernels<T>();
  const int64_t P = p.H * p.W, Ci = p.Cmid, Co = p.Cout, NP = p.N * P;
  const bool nchw = p.layout == Layout::NCHW;
  if (gx && NP > 0) {
    if (nchw) {  // gx_n (Ci, P) = W^T (Ci, Co) . gy_n (Co, P)
      const Packed<T> wt = pack_a(k, Ci, Co, w, 1, Ci);
      GemmArgs<T> a{Ci, P, Co, w, 1, Ci, gy, P, 1, gx, P, false, nullptr, -1, Act::None, nullptr};
      run_gemm(a, p.N, Co * P, Ci * P, threads, &wt);
    } else {  // gx (NP, Ci) = gy (NP, Co) . W (Co, Ci)
      const Packed<T> wp = pack_b(k, Co, Ci, w, Ci, 1);
      GemmArgs<T> a{NP, Ci, Co, gy, Co, 1, w, Ci, 1, gx, Ci, false, nullptr, -1, Act::None, nullptr};
      run_gemm<T>(a, 1, 0, 0, threads, nullptr, &wp);
    }
  }
  // gw (Co, Ci) = sum over pixels of gy (Co, p) x (Ci, p): each task owns a
  // block of gw rows and walks the images in order (fixed summation order).
  const int64_t tasks = ceil_div(Co, kRowBlock);
  const int nt = plan_threads(threads, tasks, NP * Co * (Ci + 1));
  std::vector<T> work(gw ? static_cast<size_t>(nt * k.gemm_work) : 0);
  parallel_for_tid(tasks, nt, [&](int64_t t, int tid) {
    const int64_t m0 = t * kRowBlock, mlen = Co - m0 < kRowBlock ? Co - m0 : kRowBlock;
    if (gw) {
      if (NP == 0)
        for (int64_t i = 0; i < mlen * Ci; ++i) gw[m0 * Ci + i] = T(0);
      if (nchw) {
        for (int64_t n = 0; n < p.N; ++n) {
          GemmArgs<T> a{mlen, Ci, P, gy + (n * Co + m0) * P, P, 1, x + n * Ci * P, 1, P,
                        gw + m0 * Ci, Ci, n > 0, nullptr, -1, Act::None,
                        work.data() + tid * k.gemm_work};
          k.gemm(a);
        }
      } else if (NP > 0) {
        GemmArgs<T> a{mlen, Ci, NP, gy + m0, 1, Co, x, Ci, 1, gw + m0 * Ci, Ci, false, nullptr, -1,
                      Act::None, work.data() + tid * k.gemm_work};
        k.gemm(a);
      }
    }
    if (gb) {
      for (int64_t co = m0; co < m0 + mlen; ++co) gb[co] = T(0);
      if (nchw) {
        for (int64_t n = 0; n < p.N; ++n)
          for (int64_t co = m0; co < m0 + mlen; ++co) {
            const T* r = gy + (n * Co + co) * P;
            T s = T(0);
            for (int64_t i = 0; i < P; ++i) s += r[i];
            gb[co] += s;
          }
      } else {
        for (int64_t i = 0; i < NP; ++i)
          for (int64_t co = m0; co < m0 + mlen; ++co) gb[co] += gy[i * Co + co];
      }
    }
  });
}

template void pointwise_forward<float>(const Problem&, const float*, const float*, const float*,
                                       Act, float*, int);
template void pointwise_forward<double>(const Problem&, const double*, const double*,
                                        const double*, Act, double*, int);
template void pointwise_backward<float>(const Problem&, const float*, const float*, const float*,
                                        float*, float*, float*, int);
template void pointwise_backward<double>(const Problem&, const double*, const double*,
                                         const double*, double*, double*, double*, int);

}  // namespace pydsconv
