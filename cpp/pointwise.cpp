// Pointwise (1x1) operators: every case is one or a batch of GEMMs, split
// into (batch, row-block, column-block) tasks; the kernel does one block.
//   NCHW forward:  Y_n[co, p] = W[co, :] . X_n[:, p]      (per image)
//   NHWC forward:  Y[p, co]   = X[p, :] . W^T[:, co]      (all pixels at once)
#include <vector>

#include "arena.h"
#include "dispatch.h"
#include "layout.h"
#include "ops.h"
#include "packed.h"
#include "threads.h"
#include "trace.h"

namespace pydsconv {

namespace {

constexpr int64_t kRowBlock = 72, kColBlock = 256;  // = the GEMM's MC and NC blocks
constexpr int64_t kGemmKCElems = 256;               // = the GEMM's KC block
constexpr int64_t kNchwMinPixels = 64;              // NCHW planes up to this go through NHWC
// Weight-gradient row blocks: several MC blocks, so that the pixel operand
// (packed by every task anew) is packed fewer times.
constexpr int64_t kGradRows = 4 * kRowBlock;

// Which operand is the weight matrix, shared by all tasks: kept whole in a
// task (so the other operand's blocks are packed or read once and used
// against all of it) and split only when there are too few tasks.
enum class Shared { A, B };

// Runs `a` for each of `batch` problems whose B and C start b_step and
// c_step elements apart, split into tasks across threads: blocks of the
// activation side (rows of kRowBlock when B is shared, columns of kColBlock
// when A is) times chunks of the shared side, one chunk unless the blocks
// alone cannot keep the threads busy.  pb: B packed once for all tasks.
template <class T>
void run_gemm(const GemmArgs<T>& a, int64_t batch, int64_t b_step, int64_t c_step, int threads,
              Shared shared, const PackedView<T>* pb = nullptr) {
  if (batch == 0 || a.M == 0 || a.N == 0) return;
  const KernelTable<T>& k = kernels<T>();
  const bool sa = shared == Shared::A;
  const int64_t macs = batch * a.M * a.N * a.K;
  const int want = plan_threads(threads, int64_t(1) << 30, macs);
  const int64_t blk = sa ? kColBlock : kRowBlock, side = sa ? a.N : a.M;
  const int64_t whole = sa ? a.M : a.N, unit = sa ? k.gemm_mr : k.gemm_nr;
  const int64_t blocks = batch * ceil_div(side, blk);
  const int64_t chunks = balance_split(blocks, want, ceil_div(whole, 4 * unit));
  const int64_t clen = ceil_div(ceil_div(whole, chunks), unit) * unit;
  const int64_t nch = ceil_div(whole, clen), per_b = ceil_div(side, blk), tasks = blocks * nch;
  const int nt = plan_threads(threads, tasks, macs);
  Buffer<T> work(nt * k.gemm_work);
  parallel_for_tid(tasks, nt, [&](int64_t t, int tid) {
    const int64_t c = t % nch, bl = t / nch;
    const int64_t b = bl / per_b, s0 = (bl % per_b) * blk, w0 = c * clen;
    const int64_t m0 = sa ? w0 : s0, n0 = sa ? s0 : w0;
    const int64_t mt = sa ? clen : blk, ntl = sa ? blk : clen;
    GemmArgs<T> s = a;
    s.M = a.M - m0 < mt ? a.M - m0 : mt;
    s.N = a.N - n0 < ntl ? a.N - n0 : ntl;
    s.A = a.A + m0 * a.a_rs;
    s.B = a.B + b * b_step + n0 * a.b_cs;
    s.C = a.C + b * c_step + m0 * a.c_rs + n0;
    if (a.bias) s.bias = a.bias + (a.bias_axis == 0 ? m0 : n0);
    s.work = work.data() + tid * k.gemm_work;
    if (pb) use_packed_b(s, *pb, n0);
    k.gemm(s);
  });
}

// run_gemm with B the shared weight (NHWC): packed once when enough row
// blocks use it (pack_weight_once), else packed by the GEMM per block into
// the task's work area (a single block -- a few pixels -- uses each weight
// once, and a packed copy of a large weight would only add a round trip
// through memory).  pre: B packed already (a prepacked weight), used as is.
template <class T>
void run_gemm_packing_b(const GemmArgs<T>& a, int threads, const PackedView<T>* pre = nullptr) {
  if (pre) {
    run_gemm(a, 1, 0, 0, threads, Shared::B, pre);
    return;
  }
  const int want = plan_threads(threads, int64_t(1) << 30, a.M * a.N * a.K);
  if (!pack_weight_once(ceil_div(a.M, kRowBlock), want)) {
    run_gemm(a, 1, 0, 0, threads, Shared::B);
    return;
  }
  trace::hit(trace::WeightPackedOnce);
  const Packed<T> pb = pack_b(kernels<T>(), a.K, a.N, a.B, a.b_rs, a.b_cs, threads);
  const PackedView<T> v = pb.view();
  run_gemm(a, 1, 0, 0, threads, Shared::B, &v);
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
  const int64_t max_parts =
      (int64_t(1) << 22) / (gw_sz + gb_sz > 0 ? gw_sz + gb_sz : 1);  // partials <= 32 MiB (f64)
  if (chunks > 1 + max_parts) chunks = 1 + max_parts;
  const int64_t clen = chunks > 1 ? ceil_div(NP, chunks) : NP;
  if (chunks > 1) chunks = ceil_div(NP, clen);
  std::vector<T> part(static_cast<size_t>((chunks - 1) * (gw_sz + gb_sz)));
  const int64_t tasks = rblocks * chunks;
  const int nt = plan_threads(threads, tasks, NP * Co * (Ci + 1));
  Buffer<T> work(gw ? nt * k.gemm_work : 0);
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
          GemmArgs<T> a{mlen,
                        Ci,
                        len,
                        gy + (n * Co + m0) * P + p0,
                        P,
                        1,
                        x + n * Ci * P + p0,
                        1,
                        P,
                        dst,
                        Ci,
                        kk > k0,
                        nullptr,
                        -1,
                        Act::None,
                        work.data() + tid * k.gemm_work};
          k.gemm(a);
          kk += len;
        }
      } else {
        GemmArgs<T> a{mlen,    Ci,  k1 - k0,     gy + k0 * Co + m0,
                      1,       Co,  x + k0 * Ci, Ci,
                      1,       dst, Ci,          false,
                      nullptr, -1,  Act::None,   work.data() + tid * k.gemm_work};
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

// NCHW: the weight is the GEMM's A, read in place (rows contiguous along
// C_in), each image's pixels its B.  NHWC: all pixels are A, read in place,
// and the weight is B, transposed into NR-wide panels (run_gemm_packing_b).
template <class T>
void pointwise_forward(const Problem& p, const T* x, const T* w, const T* b, Act act, T* y,
                       int threads, const PackedView<T>* pre) {
  const int64_t P = p.H * p.W, Ci = p.Cmid, Co = p.Cout;
  if (p.N == 0) return;
  if (p.layout == Layout::NCHW && P > kNchwMinPixels) {
    GemmArgs<T> a{Co, P, Ci, w, Ci, 1, x, P, 1, y, P, false, b, b ? 0 : -1, act, nullptr};
    a.prefetch_c = gemm_prefetch_c<T>(p.N * P * Co);
    run_gemm(a, p.N, Ci * P, Co * P, threads, Shared::A);
  } else if (p.layout == Layout::NCHW) {
    // Small planes (7x7): pixels are the GEMM's columns in NCHW, 16 to a
    // register tile, so 49 of them fill 64; as NHWC rows they fill 54, which
    // pays for the two transposes.
    trace::hit(trace::PwNchwViaNhwc);
    const int64_t gn = via_group(p.N, P * Ci, sizeof(T), kViaLarge);
    Buffer<T> xt(gn * P * Ci), yt(gn * P * Co);
    for (int64_t n0 = 0; n0 < p.N; n0 += gn) {
      Problem q = p;
      q.layout = Layout::NHWC;
      q.N = gn < p.N - n0 ? gn : p.N - n0;
      nchw_to_nhwc(kernels<T>(), q.N, Ci, P, x + n0 * Ci * P, xt.data(), threads);
      pointwise_forward(q, xt.data(), w, b, act, yt.data(), threads, pre);
      nhwc_to_nchw(kernels<T>(), q.N, Co, P, yt.data(), y + n0 * Co * P, threads);
    }
  } else {
    GemmArgs<T> a{p.N * P, Co, Ci, x, Ci, 1, w, 1, Ci, y, Co, false, b, b ? 1 : -1, act, nullptr};
    a.prefetch_c = gemm_prefetch_c<T>(p.N * P * Co);
    run_gemm_packing_b(a, threads, pre);
  }
}

template <class T>
void pointwise_backward(const Problem& p, const T* gy, const T* x, const T* w, T* gx, T* gw, T* gb,
                        int threads) {
  const KernelTable<T>& k = kernels<T>();
  const int64_t P = p.H * p.W, Ci = p.Cmid, Co = p.Cout, NP = p.N * P;
  const bool nchw = p.layout == Layout::NCHW;
  if (gx && NP > 0) {
    if (nchw && P <= kNchwMinPixels) {  // small planes through NHWC, as the forward
      const int64_t gn = via_group(p.N, P * Co, sizeof(T), kViaLarge);
      Buffer<T> gyt(gn * P * Co), gxt(gn * P * Ci);
      for (int64_t n0 = 0; n0 < p.N; n0 += gn) {
        const int64_t n = gn < p.N - n0 ? gn : p.N - n0;
        nchw_to_nhwc(k, n, Co, P, gy + n0 * Co * P, gyt.data(), threads);
        GemmArgs<T> a{n * P, Ci,         Co, gyt.data(), Co,      1,  w,         Ci,
                      1,     gxt.data(), Ci, false,      nullptr, -1, Act::None, nullptr};
        a.prefetch_c = gemm_prefetch_c<T>(n * P * Ci);
        run_gemm_packing_b(a, threads);
        nhwc_to_nchw(k, n, Ci, P, gxt.data(), gx + n0 * Ci * P, threads);
      }
    } else if (nchw) {  // gx_n (Ci, P) = W^T (Ci, Co) . gy_n (Co, P)
      // W^T made row-major once, so every task reads its rows in place (its
      // columns are C_in apart: packed per task, that is N times over).
      Buffer<T> wt(Ci * Co);
      k.transpose(Co, Ci, w, Ci, wt.data(), Co);
      GemmArgs<T> a{Ci, P,  Co, wt.data(), Co,      1,  gy,        P,
                    1,  gx, P,  false,     nullptr, -1, Act::None, nullptr};
      a.prefetch_c = gemm_prefetch_c<T>(NP * Ci);
      run_gemm(a, p.N, Co * P, Ci * P, threads, Shared::A);
    } else {  // gx (NP, Ci) = gy (NP, Co) . W (Co, Ci)
      GemmArgs<T> a{NP, Ci, Co, gy,    Co,      1,  w,         Ci,
                    1,  gx, Ci, false, nullptr, -1, Act::None, nullptr};
      a.prefetch_c = gemm_prefetch_c<T>(NP * Ci);
      run_gemm_packing_b(a, threads);
    }
  }
  if (gw || gb) weight_grads(p, gy, x, gw, gb, threads);
}

template void pointwise_forward<float>(const Problem&, const float*, const float*, const float*,
                                       Act, float*, int, const PackedView<float>*);
template void pointwise_forward<double>(const Problem&, const double*, const double*, const double*,
                                        Act, double*, int, const PackedView<double>*);
template void pointwise_backward<float>(const Problem&, const float*, const float*, const float*,
                                        float*, float*, float*, int);
template void pointwise_backward<double>(const Problem&, const double*, const double*,
                                         const double*, double*, double*, double*, int);

}  // namespace pydsconv
