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
constexpr int64_t kGemmKCElems = 256;                 // = the GEMM's KC block
// Weight-gradient row blocks: several MC blocks, so that the pixel operand
// (packed by every task anew) is packed fewer times.
constexpr int64_t kGradRows = 4 * kRowBlock;

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


// Weight and bias gradients, summed over all N*P pixels k (flattened image by
// image): gw (Co, Ci) = sum_k gy(co, k) x(ci, k), gb (Co) = sum_k gy(co, k).
// Tasks are (row block of gw) x (chunk of pixels).  Each chunk's partial
// sums land in their own slot (chunk 0 straight in gw/gb) and the slots are
// added in chunk order afterwards.  The chunking depends on the shape only,
// never on the thread count, so neither do the bits; it exists so that few
// output rows (Co = 64 at 112x112) still give the threads enough tasks.
template <class T>
void weight_grads(const Problem& p, const T* gy, const T* x, T* gw, T* gb, int threads) {
  const KernelTable<T>& k = kernels<T>();
  const int64_t P = p.H * p.W, Ci = p.Cmid, Co = p.Cout, NP = p.N * P;
  const bool nchw = p.layout == Layout::NCHW;
  const int64_t rblocks = ceil_div(Co, kGradRows);
  // >= 8 tasks where the pixels allow, chunks of >= 4 KC slices.
  const int64_t min_chunk = 4 * kGemmKCElems;
  int64_t chunks = rblocks >= 8 ? 1 : ceil_div(8, rblocks);
  if (chunks > 1 && NP / chunks < min_chunk) chunks = NP / min_chunk > 1 ? NP / min_chunk : 1;
  const int64_t gw_sz = gw ? Co * Ci : 0, gb_sz = gb ? Co : 0;
  const int64_t max_parts = (int64_t(1) << 22) / (gw_sz + gb_sz > 0 ? gw_sz + gb_sz : 1);  // partials <= 32 MiB (f64)
  if (chunks > 1 + max_parts) chunks = 1 + max_parts;
  const int64_t clen = chunks > 1 ? ceil_div(NP, chunks) : NP;
  if (chunks > 1) chunks = ceil_div(NP, clen);
  std::vector<T> part(static_cast<size_t>((chunks - 1) * (gw_sz + gb_sz)));
  const int64_t tasks = rblocks * chunks;
  const int nt = plan_threads(threads, tasks, NP * Co * (Ci + 1));
  std::vector<T> work(gw ? static_cast<size_t>(nt * k.gemm_work) : 0);
  parallel_for_tid(tasks, nt, [&](int64_t t, int tid) {
    const int64_t r = t % rblocks, c = t / rblocks;
    const int64_t m0 = r * kGradRows, mlen = Co - m0 < kGradRows ? Co - m0 : kGradRows;
    const int64_t k0 = c * clen, k1 = k0 + clen < NP ? k0 + clen : NP;
    T* gwc = c == 0 ? gw : part.data() + (c - 1) * (gw_sz + gb_sz);
    T* gbc = c == 0 ? gb : part.data() + (c - 1) * (gw_sz + gb_sz) + gw_sz;
    if (gw) {
      T* dst = gwc + m0 * Ci;
      if (k1 <= k0) {
        for (int64_t i = 0; i < mlen * Ci; ++i) dst[i] = T(0);
      } else if (nchw) {  // one GEMM per image segment of the chunk
        for (int64_t kk = k0; kk < k1;) {
          const int64_t n = kk / P, p0 = kk % P, len = (n + 1) * P < k1 ? P - p0 : k1 - kk;
          GemmArgs<T> a{mlen, Ci, len, gy + (n * Co + m0) * P + p0, P, 1, x + n * Ci * P + p0,
                        1, P, dst, Ci, kk > k0, nullptr, -1, Act::None,
                        work.data() + tid * k.gemm_work};
          k.gemm(a);
          kk += len;
        }
      } else {
        GemmArgs<T> a{mlen, Ci, k1 - k0, gy + k0 * Co + m0, 1, Co, x + k0 * Ci, Ci, 1, dst, Ci,
                      false, nullptr, -1, Act::None, work.data() + tid * k.gemm_work};
        k.gemm(a);
      }
    }
    if (gb) {
      T* dst = gbc + m0;
      for (int64_t co = 0; co < mlen; ++co) dst[co] = T(0);
      if (nchw) {
        for (int64_t kk = k0; kk < k1;) {
          const int64_t n = kk / P, p0 = kk % P, len = (n + 1) * P < k1 ? P - p0 : k1 - kk;
          for (int64_t co = 0; co < mlen; ++co) {
            const T* row = gy + (n * Co + m0 + co) * P + p0;
            T s = T(0);
            for (int64_t i = 0; i < len; ++i) s += row[i];
            dst[co] += s;
          }
          kk += len;
        }
      } else {
        for (int64_t i = k0; i < k1; ++i)
          for (int64_t co = 0; co < mlen; ++co) dst[co] += gy[i * Co + m0 + co];
      }
    }
  });
  if (chunks == 1) return;
  // gw[i] += part_1[i] + part_2[i] + ... in chunk order, split by elements.
  const int64_t stride = gw_sz + gb_sz, per = 4096, rtasks = ceil_div(stride, per);
  parallel_for(rtasks, plan_threads(threads, rtasks, stride * chunks), [&](int64_t t) {
    const int64_t i0 = t * per, i1 = i0 + per < stride ? i0 + per : stride;
    for (int64_t i = i0; i < i1; ++i) {
      T* d = i < gw_sz ? gw + i : gb + (i - gw_sz);
      T s = *d;
      for (int64_t c = 1; c < chunks; ++c) s += part[(c - 1) * stride + i];
      *d = s;
    }
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
  if (gw || gb) weight_grads(p, gy, x, gw, gb, threads);
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
