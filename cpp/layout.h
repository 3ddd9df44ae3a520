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

// Images per group of a layout copy: as many as keep a copy of `elems`
// elements an image within `budget` bytes, at least one.  The fused op
// takes kViaCached: its copies are read once, right after they are made, so
// they should stay in cache (the depthwise op copies blocks of channels
// instead).  The pointwise op takes kViaLarge: each group's GEMM packs the
// weight once.
constexpr int64_t kViaCached = int64_t(1) << 20, kViaLarge = int64_t(16) << 20;
inline int64_t via_group(int64_t N, int64_t elems, size_t elem_size, int64_t budget) {
  const int64_t per = budget / (elems * int64_t(elem_size));
  const int64_t g = per > 1 ? per : 1;
  return g < N ? g : N;
}

// y_n = x_n^T for each of N images, x_n (rows, cols), in tasks of blocks of
// pixels: pixels are x's columns (to NHWC) or rows (to NCHW).
template <class T>
void transpose_images(const KernelTable<T>& k, int64_t N, int64_t rows, int64_t cols,
                      bool pixel_cols, const T* x, T* y, int threads) {
  const int64_t P = pixel_cols ? cols : rows, B = detail::kLayoutBlock;
  const int64_t pb = ceil_div(P, B), tasks = N * pb, im = rows * cols;
  parallel_for(tasks, plan_threads(threads, tasks, N * im * detail::kLayoutWork), [&](int64_t t) {
    const int64_t n = t / pb, p0 = (t % pb) * B, np = p0 + B < P ? B : P - p0;
    if (pixel_cols)
      k.transpose(rows, np, x + n * im + p0, cols, y + n * im + p0 * rows, rows);
    else
      k.transpose(np, cols, x + n * im + p0 * cols, cols, y + n * im + p0, rows);
  });
}

// y (N, P, C) = x (N, C, P) transposed image by image.
template <class T>
void nchw_to_nhwc(const KernelTable<T>& k, int64_t N, int64_t C, int64_t P, const T* x, T* y,
                  int threads) {
  transpose_images(k, N, C, P, true, x, y, threads);
}

// y (N, C, P) = x (N, P, C) transposed image by image.
template <class T>
void nhwc_to_nchw(const KernelTable<T>& k, int64_t N, int64_t C, int64_t P, const T* x, T* y,
                  int threads) {
  transpose_images(k, N, P, C, false, x, y, threads);
}

}  // namespace pydsconv
