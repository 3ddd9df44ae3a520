// Layout changes between NCHW and NHWC, split across threads by (image,
// block of channels) or (image, block of pixels).  The NCHW operators use
// them where the NHWC kernels are much faster (small planes: the NCHW
// kernels vectorise along rows of 7 or 14 pixels).
#pragma once
#include "kernels/table.h"
#include "threads.h"

namespace pydsconv {

// y (N, P, C) = x (N, C, P) transposed image by image.
template <class T>
void nchw_to_nhwc(const KernelTable<T>& k, int64_t N, int64_t C, int64_t P, const T* x, T* y,
                  int threads) {
  constexpr int64_t kBlock = 64;  // channels per task
  const int64_t cb = ceil_div(C, kBlock), tasks = N * cb;
  parallel_for(tasks, plan_threads(threads, tasks, N * C * P / 4), [&](int64_t t) {
    const int64_t n = t / cb, c0 = (t % cb) * kBlock, c1 = c0 + kBlock < C ? c0 + kBlock : C;
    k.transpose(c1 - c0, P, x + (n * C + c0) * P, P, y + n * P * C + c0, C);
  });
}

// y (N, C, P) = x (N, P, C) transposed image by image.
template <class T>
void nhwc_to_nchw(const KernelTable<T>& k, int64_t N, int64_t C, int64_t P, const T* x, T* y,
                  int threads) {
  constexpr int64_t kBlock = 64;  // pixels per task
  const int64_t pb = ceil_div(P, kBlock), tasks = N * pb;
  parallel_for(tasks, plan_threads(threads, tasks, N * C * P / 4), [&](int64_t t) {
    const int64_t n = t / pb, p0 = (t % pb) * kBlock, p1 = p0 + kBlock < P ? p0 + kBlock : P;
    k.transpose(p1 - p0, C, x + (n * P + p0) * C, C, y + n * C * P + p0, P);
  });
}

}  // namespace pydsconv
