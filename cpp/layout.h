// Layout changes between NCHW and NHWC, split across threads by (image,
// block of pixels): the thread that transposes a block of pixels is the one
// whose output rows -- under the operators' static schedules -- read or
// wrote them, so the data stays in its core's cache.  The NCHW operators use
// them where the NHWC kernels are much faster (small planes: the NCHW
// kernels vectorise along rows of 7 or 14 pixels).
#pragma once
#include "kernels/table.h"
#include "threads.h"

namespace pydsconv {

namespace detail {
constexpr int64_t kLayoutBlock = 64;  // pixels per task
// A transposed element costs about as much as 16 multiply-adds of the thread
// policy's budget (plan_threads).
constexpr int64_t kLayoutWork = 16;
}  // namespace detail

// y (N, P, C) = x (N, C, P) transposed image by image.
template <class T>
void nchw_to_nhwc(const KernelTable<T>& k, int64_t N, int64_t C, int64_t P, const T* x, T* y,
                  int threads) {
  const int64_t B = detail::kLayoutBlock, pb = ceil_div(P, B), tasks = N * pb;
  parallel_for(tasks, plan_threads(threads, tasks, N * C * P * detail::kLayoutWork), [&](int64_t t) {
    const int64_t n = t / pb, p0 = (t % pb) * B, p1 = p0 + B < P ? p0 + B : P;
    k.transpose(C, p1 - p0, x + n * C * P + p0, P, y + (n * P + p0) * C, C);
  });
}

// y (N, C, P) = x (N, P, C) transposed image by image.
template <class T>
void nhwc_to_nchw(const KernelTable<T>& k, int64_t N, int64_t C, int64_t P, const T* x, T* y,
                  int threads) {
  const int64_t B = detail::kLayoutBlock, pb = ceil_div(P, B), tasks = N * pb;
  parallel_for(tasks, plan_threads(threads, tasks, N * C * P * detail::kLayoutWork), [&](int64_t t) {
    const int64_t n = t / pb, p0 = (t % pb) * B, p1 = p0 + B < P ? p0 + B : P;
    k.transpose(p1 - p0, C, x + (n * P + p0) * C, C, y + n * C * P + p0, P);
  });
}

}  // namespace pydsconv
