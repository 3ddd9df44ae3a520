// A compiled inference plan: a whole network of separable-conv layers as one
// C++ object (pydsconv.nn.compile builds the step list; see plan.cpp).
//
// The network runs in NHWC whatever the caller's layout: an NCHW caller pays
// one transpose in and one out (steps of their own).  Weights are copied
// into the plan, and every GEMM weight (pointwise, separable, linear, the
// standard convolution's im2col GEMM) is packed once, at compile time
// (Prepacked).  Activations live in one arena laid out at compile time (see
// below), taken per call from the calling thread's arena (arena.h):
// concurrent calls from several threads never share one, and after the first
// call nothing is allocated.  A plan is immutable after
// construction; its results do not depend on the thread count (every op's
// guarantee, and the plan's own loops partition outputs).
//
// Activation memory: every tensor a step writes gets an offset in one arena,
// planned at compile time from the tensors' lifetimes (first-fit; a tensor is
// freed after its last reader, so a residual block's input stays alive until
// its Add); plus one scratch area (im2col of a standard convolution, the
// squeeze-and-excitation vectors).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "problem.h"

namespace pydsconv {

// The layer kinds the compiler hands over (after BatchNorm folding,
// activation fusion and depthwise + pointwise merging, done in Python).
// Add: the step's input plus the output of spec `skip` (-1: the network's
// input), the residual connection.  SqueezeExcite: global average pool ->
// 1x1 (w1, b1) -> mid_act -> 1x1 (w2, b2) -> act (the gate) -> channel scale.
enum class StepKind {
  Conv,
  Depthwise,
  Pointwise,
  Separable,
  Pool,
  Flatten,
  Linear,
  Add,
  SqueezeExcite
};

// The words compiler.py's specs and plan files use for step kinds ("conv",
// "add", "squeeze_excite", ...) and activations ("relu", "silu", ...; None
// is not a word here): one table each, in plan.cpp.  False: not known.
bool step_kind_from_word(const std::string& word, StepKind* kind);
bool act_from_word(const std::string& word, Act* act);

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
  // w (C_out, C_in[, 1, 1]), b; Separable: dw, db, pw, pb; SqueezeExcite:
  // w1 (C_sq, C[, 1, 1]), b1, w2 (C, C_sq[, 1, 1]), b2; Add: none.
  std::vector<PlanArray> arrays;
  int skip = -1;  // Add: the spec whose output is added (-1: the network input)
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
  int64_t arena_bytes() const;  // the per-call activation memory (planned tensors + scratch)

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
