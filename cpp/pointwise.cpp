// Pointwise (1x1) operators: every case is one or a batch of GEMMs, split
// into (batch, row-block, column-block) tasks; the kernel does one block.
//   NCHW forward:  Y_n[co, p] = W[co, :] . X_n[:, p]      (per image)
//   NHWC forward:  Y[p, co]   = X[p, :] . W^T[:, co]      (all pixels at once)
#include <vector>

#include "dispatch.h"
#include "ops.h"
#include "threads.h"

namespace pydsconv {

namespace {

constexpr int64_t kRowBlock = 64, kColBlock = 256;

// Runs `a` for each of `batch` problems whose B and C start b_step and
// c_step elements apart, split into row x column blocks across threads.
template <class T>
void run_gemm(const GemmArgs<T>& a, int64_t batch, int64_t b_step, int64_t c_step, int threads) {
  if (batch == 0 || a.M == 0 || a.N == 0) return;
  const KernelTable<T>& k = kernels<T>();
  const int64_t tm = ceil_div(a.M, kRowBlock), tn = ceil_div(a.N, kColBlock);
  const int64_t tasks = batch * tm * tn;
  const int nt = plan_threads(threads, tasks, batch * a.M * a.N * a.K);
  parallel_for(tasks, nt, [&](int64_t t) {
    const int64_t j = t % tn, i = (t / tn) % tm, b = t / (tn * tm);
    const int64_t m0 = i * kRowBlock, n0 = j * kColBlock;
    GemmArgs<T> s = a;
    s.M = a.M - m0 < kRowBlock ? a.M - m0 : kRowBlock;
    s.N = a.N - n0 < kColBlock ? a.N - n0 : kColBlock;
    s.A = a.A + m0 * a.a_rs;
    s.B = a.B + b * b_step + n0 * a.b_cs;
    s.C = a.C + b * c_step + m0 * a.c_rs + n0;
    if (a.bias) s.bias = a.bias + (a.bias_axis == 0 ? m0 : n0);
    k.gemm(s);
  });
}

template <class T>
std::vector<T> transpose(const T* w, int64_t rows, int64_t cols) {
  std::vector<T> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = w[r * cols + c];
  return out;
}

}  // namespace

template <class T>
void pointwise_forward(const Problem& p, const T* x, const T* w, const T* b, Act act, T* y,
                       int threads) {
  const int64_t P = p.H * p.W, Ci = p.Cmid, Co = p.Cout;
  if (p.layout == Layout::NCHW) {
    GemmArgs<T> a{Co, P, Ci, w, Ci, 1, x, P, 1, y, P, false, b, b ? 0 : -1, act};
    run_gemm(a, p.N, Ci * P, Co * P, threads);
  } else {
    const std::vector<T> wt = transpose(w, Co, Ci);  // (Ci, Co)
    GemmArgs<T> a{p.N * P, Co, Ci, x, Ci, 1, wt.data(), Co, 1, y, Co, false, b, b ? 1 : -1, act};
    run_gemm(a, 1, 0, 0, threads);
  }
}

template <class T>
void pointwise_backward(const Problem& p, const T* gy, const T* x, const T* w, T* gx, T* gw,
                        T* gb, int threads) {
  const KernelTable<T>& k = kernels<T>();
  const int64_t P = p.H * p.W, Ci = p.Cmid, Co = p.Cout, NP = p.N * P;
  const bool nchw = p.layout == Layout::NCHW;
  if (gx) {
    if (nchw) {  // gx_n (Ci, P) = W^T (Ci, Co) . gy_n (Co, P)
      const std::vector<T> wt = transpose(w, Co, Ci);
      GemmArgs<T> a{Ci, P, Co, wt.data(), Co, 1, gy, P, 1, gx, P, false, nullptr, -1, Act::None};
      run_gemm(a, p.N, Co * P, Ci * P, threads);
    } else {  // gx (NP, Ci) = gy (NP, Co) . W (Co, Ci)
      GemmArgs<T> a{NP, Ci, Co, gy, Co, 1, w, Ci, 1, gx, Ci, false, nullptr, -1, Act::None};
      run_gemm(a, 1, 0, 0, threads);
    }
  }
  // gw (Co, Ci) = sum over pixels of gy (Co, p) x (Ci, p): each task owns a
  // block of gw rows and walks the images in order (fixed summation order).
  const int64_t tasks = ceil_div(Co, kRowBlock);
  const int nt = plan_threads(threads, tasks, NP * Co * (Ci + 1));
  parallel_for(tasks, nt, [&](int64_t t) {
    const int64_t m0 = t * kRowBlock, mlen = Co - m0 < kRowBlock ? Co - m0 : kRowBlock;
    if (gw) {
      if (NP == 0)
        for (int64_t i = 0; i < mlen * Ci; ++i) gw[m0 * Ci + i] = T(0);
      if (nchw) {
        for (int64_t n = 0; n < p.N; ++n) {
          GemmArgs<T> a{mlen, Ci, P, gy + (n * Co + m0) * P, P, 1, x + n * Ci * P, 1, P,
                        gw + m0 * Ci, Ci, n > 0, nullptr, -1, Act::None};
          k.gemm(a);
        }
      } else if (NP > 0) {
        GemmArgs<T> a{mlen, Ci, NP, gy + m0, 1, Co, x, Ci, 1, gw + m0 * Ci, Ci, false, nullptr, -1,
                      Act::None};
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
