// A compiled inference plan: a whole network of separable-conv layers as one
// C++ object (pydsconv.nn.compile builds the step list; see plan.cpp).
//
// The network runs in NHWC whatever the caller's layout: an NCHW caller pays
// one transpose in and one out (steps of their own).  Weights are copied
// into the plan, and every GEMM weight (pointwise, separable, linear, the
// standard convolution's im2col GEMM) is packed once, at compile time
// (Prepacked).  Activations live in two ping-pong buffers and one im2col
// area, sized at compile time and taken per call from the calling thread's
// arena (arena.h): concurrent calls from several threads never share one,
// and after the first call nothing is allocated.  A plan is immutable after
// construction; its results do not depend on the thread count (every op's
// guarantee, and the plan's own loops partition outputs).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "problem.h"

namespace pydsconv {

// The layer kinds the compiler hands over (after BatchNorm folding,
// activation fusion and depthwise + pointwise merging, done in Python).
enum class StepKind { Conv, Depthwise, Pointwise, Separable, Pool, Flatten, Linear };

// A weight or bias: its shape and data of the plan's dtype, C-contiguous
// (copied by the plan).  data == nullptr: absent (an optional bias).
struct PlanArray {
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

struct StepSpec {
  StepKind kind = StepKind::Pointwise;
  std::string name;   // the layers it came from ("features.3+features.6")
  std::string fused;  // what the compile-time passes folded into it, for summary()
  ConvParams geom;    // Conv, Depthwise, Separable: stride, dilation, padding
  Act mid_act = Act::None, act = Act::None;
  // Conv: w (C_out, C_in, kH, kW), b; Depthwise: w, b; Pointwise, Linear:
  // w (C_out, C_in[, 1, 1]), b; Separable: dw, db, pw, pb.
  std::vector<PlanArray> arrays;
};

// One executed step as summary() and profile() report it: shapes are the
// arrays it reads and writes (NHWC inside the plan, the caller's at the ends).
struct StepInfo {
  std::string op, name, fused;
  std::vector<int64_t> in_shape, out_shape;
  int64_t macs = 0;
};

class Plan {
 public:
  // Builds the plan for inputs of exactly `input_shape` (in `layout`);
  // throws ArgumentError naming the step's layers when a layer does not fit
  // its input.  threads: 0 = the module default at each call.  fuse: run
  // chains of pointwise/depthwise/separable steps in bands of rows
  // (plan_fuse.h): kFuseAuto where heuristics.h says it pays, kFuseAll every
  // chain it can, > 0 every chain with bands of that many rows (tests);
  // kFuseOff runs every step whole.
  static constexpr int64_t kFuseOff = 0, kFuseAuto = -1, kFuseAll = -2;
  Plan(const std::vector<StepSpec>& specs, const std::vector<int64_t>& input_shape, Layout layout,
       bool f64, int threads, int64_t fuse = kFuseAuto);
  ~Plan();
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;

  const std::vector<int64_t>& input_shape() const;
  const std::vector<int64_t>& output_shape() const;
  Layout layout() const;
  bool f64() const;
  int threads() const;
  const std::vector<StepInfo>& steps() const;
  int64_t arena_bytes() const;  // the per-call activation memory

  // y = the network applied to x; both C-contiguous of the plan's shapes and
  // dtype, not overlapping (the binding checks).  Safe to call concurrently.
  void run(const void* x, void* y) const;
  // run() `repeats` times, timing each step: seconds[r * steps + s].
  std::vector<double> profile(const void* x, void* y, int repeats) const;

  struct Impl;  // plan.cpp (public so that its builder functions can fill it)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pydsconv
