// Banded execution of a chain of NHWC layers inside a plan (plan_fuse.cpp).
//
// A chain is a run of consecutive pointwise / depthwise / separable steps
// (optionally followed by a residual add of the chain's input).  Instead of
// running each layer over the whole batch, the chain computes its final
// output a band of rows of one image at a time: every intermediate lives in
// a small line buffer of the rows the next layer needs (its kernel height,
// stride and dilation), so the intermediate tensors -- the 6x expanded one
// of an inverted residual -- never exist in full and are consumed from cache.
//
// Threads take contiguous runs of (image, band) units; a thread keeps the
// rows it already has when it moves to the next band of the same image (the
// line buffers roll) and recomputes the halo rows where its run starts.  The
// layers run the same kernels as the unfused ops (dw_fwd_nhwc_row, gemm),
// whose every output is one fixed chain of operations (the bias, then the
// taps or the K terms in order), so a fused chain gives the same bits as the
// unfused steps, for any thread count and any band height.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "packed.h"
#include "problem.h"

namespace pydsconv {

enum class FuseKind { Pointwise, Depthwise, Separable };

// One layer of a chain: its NHWC problem (as validated for the plan) and
// weights.  Depthwise: w, b; pointwise: w, b (packed: w); separable: w, b
// the depthwise weight and bias, w2, b2 the pointwise (packed: w2).
template <class T>
struct FuseLayer {
  FuseKind kind = FuseKind::Pointwise;
  Problem pb{};
  std::vector<T> w, b, w2, b2;
  std::unique_ptr<Prepacked<T>> packed;
  Act mid_act = Act::None, act = Act::None;
  std::string name;

  int64_t in_h() const { return pb.H; }
  int64_t in_w() const { return pb.W; }
  int64_t in_c() const { return kind == FuseKind::Pointwise ? pb.Cmid : pb.g.C; }
  int64_t out_h() const { return kind == FuseKind::Pointwise ? pb.H : pb.OH; }
  int64_t out_w() const { return kind == FuseKind::Pointwise ? pb.W : pb.OW; }
  int64_t out_c() const { return kind == FuseKind::Depthwise ? pb.Cmid : pb.Cout; }
  int64_t weight_bytes() const {
    return int64_t(sizeof(T)) * int64_t(w.size() + b.size() + w2.size() + b2.size());
  }
};

// Whether a layer may join a chain at all: NHWC depthwise geometry whose
// every band needs at least one input row, M = 1 single-channel depthwise
// excluded (the op computes it with the NCHW kernels), finite depthwise
// weights (the op's non-finite fix-up recomputes whole channels).
template <class T>
bool fuse_eligible(FuseKind kind, const Problem& pb, const T* dw, int64_t dw_elems);

constexpr size_t kMaxChain = 16;  // layers in one chain

// Whether bands of heuristics.h fuse_min_band_rows final rows keep one
// thread's line buffers within fuse_band_fits (layers: kind and pb read).
template <class T>
bool fuse_chain_fits(const std::vector<FuseLayer<T>>& layers);

template <class T>
class FusedChain {
 public:
  // Takes the layers (>= 1, each one's output the next one's input) for a
  // batch of N images; residual: add the chain's input to its output (same
  // shape).  band_rows: final rows a band, 0 = chosen by heuristics.h
  // fuse_band_fits and fuse_band_cap.
  FusedChain(std::vector<FuseLayer<T>> layers, int64_t N, bool residual, int64_t band_rows = 0);
  // y = the chain applied to x (NHWC, N images); not overlapping.
  void run(const T* x, T* y, int threads) const;
  // "banded: a -> b -> c, 8 of 56 rows a band, line buffers 123 KiB a thread"
  std::string describe() const;
  int64_t band_rows() const { return band_; }
  const std::vector<FuseLayer<T>>& layers() const { return layers_; }

 private:
  struct Cursor;
  void band(int64_t n, int64_t a, int64_t b, const T* x, T* y, T* scratch, Cursor* cur,
            const T* const* dwp) const;

  std::vector<FuseLayer<T>> layers_;
  int64_t N_ = 0, band_ = 1, bands_ = 1;
  bool residual_ = false, prefetch_y_ = false;
  std::vector<int64_t> cap_;     // rows of each intermediate's line buffer
  std::vector<int64_t> offset_;  // where each one starts in a thread's scratch
  int64_t mid_off_ = 0, work_off_ = 0, macs_ = 0;
};

}  // namespace pydsconv
