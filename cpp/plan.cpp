// The compiled plan (plan.h): builds the step list once -- every layer's
// Problem validated, weights copied and GEMM weights packed, buffers
// assigned -- and then runs it with no decisions left but the ops' own.
#include "plan.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <utility>

#include "arena.h"
#include "dispatch.h"
#include "layout.h"
#include "nonfinite.h"
#include "ops.h"
#include "packed.h"
#include "plan_fuse.h"
#include "threads.h"

namespace pydsconv {

namespace {

enum class Op {
  Conv,
  Depthwise,
  Pointwise,
  Separable,
  Pool,
  ToNhwc,
  ToNchw,
  Copy,
  Add,
  SE,
  Banded
};
// Tensors a step reads and writes: the caller's x and y, then the planned
// ones (an offset each in the arena).
enum Slot { kX = 0, kY = 1 };
constexpr int64_t kAlignElems = 16;  // tensors start on 64-byte lines

[[noreturn]] void fail(const std::string& m) { throw ArgumentError(m); }

// An activation inside the plan: NHWC (N, H, W, C), or flat (N, C) (H = W = 1).
struct Shape {
  int64_t N, H, W, C;
  bool flat;
  int64_t elems() const { return N * H * W * C; }
  std::vector<int64_t> dims() const {
    return flat ? std::vector<int64_t>{N, C} : std::vector<int64_t>{N, H, W, C};
  }
};

TensorArg arg(const char* name, const std::vector<int64_t>& shape) {
  if (shape.size() > 8) fail(std::string(name) + " has too many dimensions");
  TensorArg t;
  t.name = name;
  t.ndim = static_cast<int>(shape.size());
  for (int i = 0; i < t.ndim; ++i) t.shape[i] = shape[i];
  return t;
}

TensorArg arg(const char* name, const PlanArray& a) {
  return a.data ? arg(name, a.shape) : TensorArg{};
}

template <class T>
std::vector<T> copy_of(const PlanArray& a) {
  if (!a.data) return {};
  int64_t n = 1;
  for (int64_t d : a.shape) n *= d;
  const T* p = static_cast<const T*>(a.data);
  return std::vector<T>(p, p + n);
}

template <class T>
const T* ptr(const std::vector<T>& v) {
  return v.empty() ? nullptr : v.data();
}

template <class T>
struct Step {
  Op op = Op::Copy;
  Problem pb{};  // Conv: the GEMM's problem (pixels OH x OW, C_in = kH*kW*C)
  DwGeom g{};    // Conv: the im2col geometry
  std::vector<T> w, b, w2, b2;
  std::unique_ptr<Prepacked<T>> packed;  // the GEMM weight: w (or w2, Separable)
  std::unique_ptr<FusedChain<T>> chain;  // Banded: the steps it replaced (plan_fuse.h)
  Act mid_act = Act::None, act = Act::None;
  int in = kX, out = kY, in2 = -1;  // tensors; in2: Add's second input
  int64_t N = 0, C = 0, P = 0;      // Pool, transposes, Copy, Add, SE: images, channels, pixels
  int64_t Csq = 0;                  // SE: squeeze channels
  StepInfo info;
};

// NHWC im2col: col[(n, oh, ow), (i, j, c)] = x[n, ih, iw, c], zero outside
// the input; rows of output pixels split across threads (a pure copy).
template <class T>
void im2col(const DwGeom& g, int64_t N, const T* x, T* col, int threads) {
  const int64_t K = g.kh * g.kw * g.C, rows = N * g.OH;
  parallel_for(rows, plan_threads(threads, rows, rows * g.OW * K), [&](int64_t r) {
    const int64_t n = r / g.OH, oh = r % g.OH;
    T* dst = col + r * g.OW * K;
    for (int64_t ow = 0; ow < g.OW; ++ow)
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t ih = oh * g.sh - g.pt + i * g.dh;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t iw = ow * g.sw - g.pl + j * g.dw;
          T* d = dst + ow * K + (i * g.kw + j) * g.C;
          if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) {
            std::fill(d, d + g.C, T(0));
          } else {
            const T* s = x + ((n * g.H + ih) * g.W + iw) * g.C;
            std::copy(s, s + g.C, d);
          }
        }
      }
  });
}

// y (N, C) = the mean of x (N, P, C) over pixels, summed in pixel order in
// double, a block of channels at a time (contiguous loads; the accumulators
// live on the stack: workers never allocate).  The same bits for any thread
// count: (image, channel block) tasks are split across threads, never a sum.
template <class T>
void global_avg_pool(int64_t N, int64_t P, int64_t C, const T* x, T* y, int threads) {
  constexpr int64_t kBlock = 64;
  const int64_t blocks = ceil_div(C, kBlock), tasks = N * blocks;
  parallel_for(tasks, plan_threads(threads, tasks, N * P * C), [&](int64_t task) {
    const int64_t n = task / blocks, c0 = task % blocks * kBlock;
    const int64_t nc = std::min(kBlock, C - c0);
    double acc[kBlock] = {};
    for (int64_t p = 0; p < P; ++p) {
      const T* row = x + (n * P + p) * C + c0;
      for (int64_t c = 0; c < nc; ++c) acc[c] += row[c];
    }
    for (int64_t c = 0; c < nc; ++c)
      y[n * C + c0 + c] = static_cast<T>(acc[c] / static_cast<double>(P));
  });
}

// y = a + b, then act, elementwise over N*P*C values; rows of C split
// across threads.
template <class T>
void add_tensors(int64_t N, int64_t P, int64_t C, const T* a, const T* b, Act act, T* y,
                 int threads) {
  const int64_t rows = N * P;
  parallel_for(rows, plan_threads(threads, rows, rows * C), [&](int64_t r) {
    const T* pa = a + r * C;
    const T* pb = b + r * C;
    T* py = y + r * C;
    if (act == Act::None) {
      for (int64_t c = 0; c < C; ++c) py[c] = pa[c] + pb[c];
    } else {
      for (int64_t c = 0; c < C; ++c) py[c] = nonfinite::activate(pa[c] + pb[c], act);
    }
  });
}

// sum_i w[i] * v[i] in double, in eight interleaved partial sums added in a
// fixed order at the end: independent chains the compiler can keep in
// flight (one chain waits on each add's latency: 2 GMAC/s, a fifth of
// MobileNetV3's time at batch 1), and the same bits on every call.
template <class W, class V>
double dot_lanes(const W* w, const V* v, int64_t n) {
  constexpr int64_t kLanes = 8;
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t l = 0; l < kLanes; ++l)
      acc[l] += static_cast<double>(w[i + l]) * static_cast<double>(v[i + l]);
  for (int64_t l = 0; i < n; ++i, ++l)
    acc[l] += static_cast<double>(w[i]) * static_cast<double>(v[i]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Squeeze-and-excitation, one step: the pooled means (global_avg_pool's
// bits), then per image the two small GEMVs in double (w1: (Csq, C), w2:
// (C, Csq), in the order of their rows), mid_act and the gate, and the
// channel scale y = x * gate over rows of pixels split across threads.
// scratch: N*C (means) + N*C (gates) elements.
template <class T>
void squeeze_excite(const Step<T>& s, const T* x, T* y, T* scratch, int threads) {
  const int64_t N = s.N, P = s.P, C = s.C, Q = s.Csq;
  T* mean = scratch;
  T* gate = scratch + N * C;
  global_avg_pool(N, P, C, x, mean, threads);
  parallel_for(N, plan_threads(threads, N, N * 2 * C * Q), [&](int64_t n) {
    constexpr int64_t kMaxSq = 1024;  // the hidden vector lives on the stack
    double h[kMaxSq];
    const T* m = mean + n * C;
    for (int64_t j = 0; j < Q; ++j) {
      const double acc =
          (s.b.empty() ? 0.0 : static_cast<double>(s.b[j])) + dot_lanes(s.w.data() + j * C, m, C);
      h[j] = static_cast<double>(nonfinite::activate(static_cast<T>(acc), s.mid_act));
    }
    for (int64_t c = 0; c < C; ++c) {
      const double acc = (s.b2.empty() ? 0.0 : static_cast<double>(s.b2[c])) +
                         dot_lanes(s.w2.data() + c * Q, h, Q);
      gate[n * C + c] = nonfinite::activate(static_cast<T>(acc), s.act);
    }
  });
  const int64_t rows = N * P;
  parallel_for(rows, plan_threads(threads, rows, rows * C), [&](int64_t r) {
    const T* g = gate + (r / P) * C;
    const T* px = x + r * C;
    T* py = y + r * C;
    for (int64_t c = 0; c < C; ++c) py[c] = px[c] * g[c];
  });
}

template <class T>
PackedView<T> view_of(const Step<T>& s, PackedView<T>* storage) {
  *storage = s.packed ? s.packed->view() : PackedView<T>{};
  return *storage;
}

template <class T>
void exec(const Step<T>& s, const T* x, const T* x2, T* y, T* col, int threads) {
  PackedView<T> v;
  const PackedView<T>* pre = view_of(s, &v).data ? &v : nullptr;
  switch (s.op) {
    case Op::Conv:
      im2col(s.g, s.pb.N, x, col, threads);
      pointwise_forward(s.pb, col, s.w.data(), ptr(s.b), s.act, y, threads, pre);
      break;
    case Op::Depthwise:
      depthwise_forward(s.pb, x, s.w.data(), ptr(s.b), s.act, y, threads);
      break;
    case Op::Pointwise:
      pointwise_forward(s.pb, x, s.w.data(), ptr(s.b), s.act, y, threads, pre);
      break;
    case Op::Separable:
      separable_forward(s.pb, x, s.w.data(), ptr(s.b), s.w2.data(), ptr(s.b2), s.mid_act, s.act, y,
                        threads, pre);
      break;
    case Op::Pool:
      global_avg_pool(s.N, s.P, s.C, x, y, threads);
      break;
    case Op::ToNhwc:
      nchw_to_nhwc(kernels<T>(), s.N, s.C, s.P, x, y, threads);
      break;
    case Op::ToNchw:
      nhwc_to_nchw(kernels<T>(), s.N, s.C, s.P, x, y, threads);
      break;
    case Op::Banded:
      s.chain->run(x, y, threads);
      break;
    case Op::Copy:
      if (s.N * s.P * s.C > 0) std::memcpy(y, x, static_cast<size_t>(s.N * s.P * s.C) * sizeof(T));
      break;
    case Op::Add:
      add_tensors(s.N, s.P, s.C, x, x2, s.act, y, threads);
      break;
    case Op::SE:
      squeeze_excite(s, x, y, col, threads);
      break;
  }
}

const char* op_name(StepKind k) {
  switch (k) {
    case StepKind::Conv:
      return "conv";
    case StepKind::Depthwise:
      return "depthwise";
    case StepKind::Pointwise:
      return "pointwise";
    case StepKind::Separable:
      return "separable";
    case StepKind::Pool:
      return "global_avg_pool";
    case StepKind::Flatten:
      return "flatten";
    case StepKind::Linear:
      return "linear";
    case StepKind::Add:
      return "add";
    case StepKind::SqueezeExcite:
      return "squeeze_excite";
  }
  return "?";
}

// validate() for one layer, its message prefixed with the layer's name.
Problem checked(const Request& r, const StepSpec& spec) {
  try {
    return validate(r);
  } catch (const ArgumentError& e) {
    fail(spec.name + ": " + e.what());
  }
}

// A Request of `op` in NHWC for input s, geometry from spec.
Request request(OpKind op, const StepSpec& spec, const Shape& s) {
  Request r;
  r.op = op;
  r.p = spec.geom;
  r.p.spatial = 2;
  r.p.layout = Layout::NHWC;
  r.x = arg("x", s.dims());
  return r;
}

void need_arrays(const StepSpec& spec, size_t n) {
  if (spec.arrays.size() != n)
    fail(spec.name + ": internal: expected " + std::to_string(n) + " arrays, got " +
         std::to_string(spec.arrays.size()));
}

void need_image(const StepSpec& spec, const Shape& s) {
  if (s.flat)
    fail(spec.name + ": " + op_name(spec.kind) +
         " needs a 4-D input, but the layers before it "
         "produce a 2-D (N, features) array of shape (" +
         std::to_string(s.N) + ", " + std::to_string(s.C) + ")");
}

}  // namespace

struct NetBase {
  virtual ~NetBase() = default;
  virtual void run(const void* x, void* y, double* times) const = 0;
};

template <class T>
struct Net : NetBase {
  std::vector<Step<T>> steps;
  int threads = 0;
  std::vector<int64_t> offset;           // of each tensor in the arena (x and y: unused)
  int64_t act_elems = 0, col_elems = 0;  // the planned tensors; the scratch area after them

  void run(const void* xv, void* yv, double* times) const override {
    Buffer<T> arena(act_elems + col_elems);
    T* const x = const_cast<T*>(static_cast<const T*>(xv));
    T* const y = static_cast<T*>(yv);
    auto at = [&](int t) { return t == kX ? x : t == kY ? y : arena.data() + offset[t]; };
    T* col = arena.data() + act_elems;
    for (size_t i = 0; i < steps.size(); ++i) {
      const Step<T>& s = steps[i];
      const auto t0 = std::chrono::steady_clock::now();
      exec(s, at(s.in), s.in2 < 0 ? nullptr : at(s.in2), at(s.out), col, threads);
      if (times)
        times[i] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
  }
};

struct Plan::Impl {
  std::vector<int64_t> in_shape, out_shape;
  Layout layout = Layout::NCHW;
  bool f64 = false;
  int threads = 0;
  int64_t fuse = Plan::kFuseAuto;
  std::vector<StepInfo> infos;
  int64_t arena_bytes = 0;
  std::unique_ptr<NetBase> net;
};

namespace {

template <class T>
class Builder {
 public:
  Builder(Net<T>& net, Layout layout, int threads)
      : net_(net), layout_(layout), threads_(threads) {}

  // The tensor the next step reads (kX at the start) and the elements of
  // every tensor so far (x and y: 0).
  int current() const { return cur_; }
  const std::vector<int64_t>& sizes() const { return sizes_; }

  // The network input as later specs see it (after the NCHW transpose).
  void mark_input(const Shape& s) { input_ = {cur_, s}; }

  // Appends one layer; s becomes its output.
  void add(const StepSpec& spec, Shape& s) {
    add_layer(spec, s);
    outs_.push_back({cur_, s});
  }

 private:
  struct Produced {
    int tensor;
    Shape shape;
  };

  void add_layer(const StepSpec& spec, Shape& s) {
    switch (spec.kind) {
      case StepKind::Depthwise:
        return depthwise(spec, s);
      case StepKind::Pointwise:
        return pointwise(spec, s);
      case StepKind::Separable:
        return separable(spec, s);
      case StepKind::Conv:
        return conv(spec, s);
      case StepKind::Pool:
        return pool(spec, s);
      case StepKind::Flatten:
        return flatten(spec, s);
      case StepKind::Linear:
        return linear(spec, s);
      case StepKind::Add:
        return residual_add(spec, s);
      case StepKind::SqueezeExcite:
        return squeeze_excite(spec, s);
    }
  }

  // A new tensor of `elems` elements written by the step being appended.
  int new_tensor(int64_t elems) {
    sizes_.push_back(elems);
    return static_cast<int>(sizes_.size()) - 1;
  }

  // Steps read the current tensor and write a new one.
  Step<T>& append(Step<T>&& st, int64_t out_elems) {
    st.in = cur_;
    st.out = new_tensor(out_elems);
    cur_ = st.out;
    net_.steps.push_back(std::move(st));
    return net_.steps.back();
  }

 public:
  void transpose(Op op, const Shape& s, const std::vector<int64_t>& in,
                 const std::vector<int64_t>& out, const char* name) {
    Step<T> st;
    st.op = op;
    st.N = s.N;
    st.C = s.C;
    st.P = s.H * s.W;
    st.info = StepInfo{op == Op::ToNhwc ? "to_nhwc" : "to_nchw", name, "", in, out, 0};
    append(std::move(st), s.elems());
  }

  void copy(const Shape& s, const std::vector<int64_t>& shape) {
    Step<T> st;
    st.op = Op::Copy;
    st.N = s.N;
    st.P = s.H * s.W;
    st.C = s.C;
    st.info = StepInfo{"copy", "input", "", shape, shape, 0};
    append(std::move(st), s.elems());
  }

 private:
  Step<T>& push(Op op, const StepSpec& spec, const Shape& in, const Shape& out, int64_t macs) {
    Step<T> st;
    st.op = op;
    st.act = spec.act;
    st.mid_act = spec.mid_act;
    st.info = StepInfo{op_name(spec.kind), spec.name, spec.fused, in.dims(), out.dims(), macs};
    return append(std::move(st), out.elems());
  }

  void pack(Step<T>& st, const std::vector<T>& w, int64_t cout, int64_t cin) {
    st.packed = std::make_unique<Prepacked<T>>(w.data(), cout, cin, threads_);
  }

  void depthwise(const StepSpec& spec, Shape& s) {
    need_arrays(spec, 2);
    need_image(spec, s);
    Request r = request(OpKind::Depthwise, spec, s);
    r.dw_weight = arg("weight", spec.arrays[0]);
    r.dw_bias = arg("bias", spec.arrays[1]);
    const Problem pb = checked(r, spec);
    const Shape out{s.N, pb.OH, pb.OW, pb.Cmid, false};
    Step<T>& st = push(Op::Depthwise, spec, s, out, out.elems() * pb.g.kh * pb.g.kw);
    st.pb = pb;
    st.w = copy_of<T>(spec.arrays[0]);
    st.b = copy_of<T>(spec.arrays[1]);
    s = out;
  }

  void pointwise(const StepSpec& spec, Shape& s) {
    need_arrays(spec, 2);
    need_image(spec, s);
    Request r = request(OpKind::Pointwise, spec, s);
    r.p.pad_mode = PadMode::Valid;
    r.pw_weight = arg("weight", spec.arrays[0]);
    r.pw_bias = arg("bias", spec.arrays[1]);
    const Problem pb = checked(r, spec);
    const Shape out{s.N, s.H, s.W, pb.Cout, false};
    Step<T>& st = push(Op::Pointwise, spec, s, out, out.elems() * pb.Cmid);
    st.pb = pb;
    st.w = copy_of<T>(spec.arrays[0]);
    st.b = copy_of<T>(spec.arrays[1]);
    pack(st, st.w, pb.Cout, pb.Cmid);
    s = out;
  }

  void separable(const StepSpec& spec, Shape& s) {
    need_arrays(spec, 4);
    need_image(spec, s);
    Request r = request(OpKind::Separable, spec, s);
    r.dw_weight = arg("depthwise_weight", spec.arrays[0]);
    r.dw_bias = arg("depthwise_bias", spec.arrays[1]);
    r.pw_weight = arg("pointwise_weight", spec.arrays[2]);
    r.pw_bias = arg("pointwise_bias", spec.arrays[3]);
    const Problem pb = checked(r, spec);
    const Shape out{s.N, pb.OH, pb.OW, pb.Cout, false};
    const int64_t px = s.N * pb.OH * pb.OW;
    Step<T>& st = push(Op::Separable, spec, s, out, px * pb.Cmid * (pb.g.kh * pb.g.kw + pb.Cout));
    st.pb = pb;
    st.w = copy_of<T>(spec.arrays[0]);
    st.b = copy_of<T>(spec.arrays[1]);
    st.w2 = copy_of<T>(spec.arrays[2]);
    st.b2 = copy_of<T>(spec.arrays[3]);
    pack(st, st.w2, pb.Cout, pb.Cmid);
    s = out;
  }

  // A standard convolution: im2col (taps-major, channels fastest) and one
  // GEMM against the weight reordered to (C_out, kH, kW, C_in), packed once.
  void conv(const StepSpec& spec, Shape& s) {
    need_arrays(spec, 2);
    need_image(spec, s);
    const PlanArray& w = spec.arrays[0];
    if (w.shape.size() != 4 || w.shape[1] != s.C || w.shape[0] < 1)
      fail(spec.name + ": weight must have shape (C_out, C_in, kH, kW) with C_in = " +
           std::to_string(s.C) + ", got " + shape_str(w.shape.data(), int(w.shape.size())));
    const int64_t co = w.shape[0], kh = w.shape[2], kw = w.shape[3];
    Request r = request(OpKind::Depthwise, spec, s);
    r.dw_weight = arg("weight", {s.C, 1, kh, kw});  // the geometry, checked as the ops do
    const Problem dw = checked(r, spec);
    if (spec.arrays[1].data && (spec.arrays[1].shape.size() != 1 || spec.arrays[1].shape[0] != co))
      fail(spec.name + ": bias must be a 1-D array of shape (" + std::to_string(co) + ",)");
    const int64_t K = kh * kw * s.C;
    const Shape out{s.N, dw.OH, dw.OW, co, false};
    Step<T>& st = push(Op::Conv, spec, s, out, out.elems() * K);
    st.g = dw.g;
    Problem& q = st.pb;  // the GEMM: (N*OH*OW, K) . (K, C_out)
    q.op = OpKind::Pointwise;
    q.layout = Layout::NHWC;
    q.spatial = 2;
    q.N = s.N;
    q.H = q.OH = dw.OH;
    q.W = q.OW = dw.OW;
    q.C = q.Cmid = K;
    q.Cout = co;
    q.out_shape = out.dims();
    const std::vector<T> src = copy_of<T>(w);
    st.w.resize(static_cast<size_t>(co * K));
    for (int64_t o = 0; o < co; ++o)
      for (int64_t c = 0; c < s.C; ++c)
        for (int64_t t = 0; t < kh * kw; ++t)
          st.w[o * K + t * s.C + c] = src[(o * s.C + c) * kh * kw + t];
    st.b = copy_of<T>(spec.arrays[1]);
    pack(st, st.w, co, K);
    net_.col_elems = std::max(net_.col_elems, s.N * dw.OH * dw.OW * K);
    s = out;
  }

  void pool(const StepSpec& spec, Shape& s) {
    need_image(spec, s);
    const Shape out{s.N, 1, 1, s.C, true};
    Step<T>& st = push(Op::Pool, spec, s, out, s.elems());
    st.N = s.N;
    st.P = s.H * s.W;
    st.C = s.C;
    s = out;
  }

  // Flatten follows the caller's layout: NCHW flattens (C, H, W), so a map
  // of more than one pixel is transposed back first; otherwise a reshape.
  void flatten(const StepSpec& spec, Shape& s) {
    if (s.flat) return;
    const Shape out{s.N, 1, 1, s.H * s.W * s.C, true};
    if (layout_ == Layout::NCHW && s.H * s.W > 1)
      transpose(Op::ToNchw, s, s.dims(), out.dims(), spec.name.c_str());
    s = out;
  }

  void linear(const StepSpec& spec, Shape& s) {
    need_arrays(spec, 2);
    if (!s.flat)
      fail(spec.name +
           ": linear needs a 2-D (N, features) input, but the layers before it "
           "produce a 4-D map; add GlobalAvgPool2d or Flatten before it");
    const PlanArray& w = spec.arrays[0];
    if (w.shape.size() != 2 || w.shape[1] != s.C || w.shape[0] < 1)
      fail(spec.name + ": weight must have shape (out_features, " + std::to_string(s.C) +
           ") for an input of " + std::to_string(s.C) + " features, got " +
           shape_str(w.shape.data(), int(w.shape.size())));
    Request r = request(OpKind::Pointwise, spec, Shape{s.N, 1, 1, s.C, false});
    r.p.pad_mode = PadMode::Valid;
    r.pw_weight = arg("weight", w.shape);
    r.pw_bias = arg("bias", spec.arrays[1]);
    const Problem pb = checked(r, spec);
    const Shape out{s.N, 1, 1, pb.Cout, true};
    Step<T>& st = push(Op::Pointwise, spec, s, out, s.N * s.C * pb.Cout);
    st.pb = pb;
    st.w = copy_of<T>(w);
    st.b = copy_of<T>(spec.arrays[1]);
    pack(st, st.w, pb.Cout, pb.Cmid);
    s = out;
  }

  // The residual connection: the current tensor plus the output of spec
  // `skip` (or the network input), which must have the same shape.
  void residual_add(const StepSpec& spec, Shape& s) {
    need_arrays(spec, 0);
    if (spec.skip < -1 || spec.skip >= static_cast<int>(outs_.size()))
      fail(spec.name + ": internal: add of step " + std::to_string(spec.skip) + " of " +
           std::to_string(outs_.size()));
    const Produced& other = spec.skip < 0 ? input_ : outs_[static_cast<size_t>(spec.skip)];
    if (other.shape.dims() != s.dims())
      fail(spec.name + ": the residual branch produces " +
           shape_str(s.dims().data(), int(s.dims().size())) + " but its input is " +
           shape_str(other.shape.dims().data(), int(other.shape.dims().size())) +
           " (NHWC); a residual needs stride 1 and equal channels");
    Step<T>& st = push(Op::Add, spec, s, s, 0);  // additions only: no multiply-accumulates
    st.in2 = other.tensor;
    st.N = s.N;
    st.P = s.H * s.W;
    st.C = s.C;
  }

  void squeeze_excite(const StepSpec& spec, Shape& s) {
    need_arrays(spec, 4);
    need_image(spec, s);
    const auto& w1 = spec.arrays[0];
    const auto& w2 = spec.arrays[2];
    auto matrix = [](const PlanArray& a, int64_t rows, int64_t cols) {
      return (a.shape.size() == 2 || (a.shape.size() == 4 && a.shape[2] == 1 && a.shape[3] == 1)) &&
             a.shape[0] == rows && a.shape[1] == cols;
    };
    const int64_t q = w1.shape.empty() ? 0 : w1.shape[0];
    if (!w1.data || q < 1 || !matrix(w1, q, s.C))
      fail(spec.name + ": fc1 weight must have shape (C_sq, " + std::to_string(s.C) +
           ", 1, 1) for an input of " + std::to_string(s.C) + " channels, got " +
           shape_str(w1.shape.data(), int(w1.shape.size())));
    if (q > 1024)
      fail(spec.name + ": at most 1024 squeeze channels are supported, got " + std::to_string(q));
    if (!w2.data || !matrix(w2, s.C, q))
      fail(spec.name + ": fc2 weight must have shape (" + std::to_string(s.C) + ", " +
           std::to_string(q) + ", 1, 1), got " + shape_str(w2.shape.data(), int(w2.shape.size())));
    auto vec = [&](const PlanArray& b, int64_t n, const char* what) {
      if (b.data && (b.shape.size() != 1 || b.shape[0] != n))
        fail(spec.name + ": " + what + " must be a 1-D array of shape (" + std::to_string(n) +
             ",)");
    };
    vec(spec.arrays[1], q, "fc1 bias");
    vec(spec.arrays[3], s.C, "fc2 bias");
    Step<T>& st = push(Op::SE, spec, s, s, s.N * 2 * s.C * q + 2 * s.elems());
    st.N = s.N;
    st.P = s.H * s.W;
    st.C = s.C;
    st.Csq = q;
    st.w = copy_of<T>(w1);
    st.b = copy_of<T>(spec.arrays[1]);
    st.w2 = copy_of<T>(w2);
    st.b2 = copy_of<T>(spec.arrays[3]);
    net_.col_elems = std::max(net_.col_elems, 2 * s.N * s.C);
  }

  Net<T>& net_;
  Layout layout_;
  int threads_;
  int cur_ = kX;
  std::vector<int64_t> sizes_ = {0, 0};  // x, y
  Produced input_{kX, Shape{}};
  std::vector<Produced> outs_;  // the tensor and shape after each spec
};

// Arena offsets for tensors 2.. (x and y are the caller's): a tensor lives
// from the step that writes it to its last reader; steps are visited in order
// and each output takes the lowest offset that overlaps no live tensor (the
// inputs of its own step are live, so no step reads what it writes), except
// that Add and SE write in place over an input that dies at them.
// Returns the arena's size in elements.
template <class T>
int64_t plan_arena(Net<T>& net, const std::vector<int64_t>& sizes) {
  const size_t n = sizes.size();
  std::vector<size_t> last(n, 0);
  for (size_t i = 0; i < net.steps.size(); ++i) {
    const Step<T>& st = net.steps[i];
    last[static_cast<size_t>(st.in)] = i;
    if (st.in2 >= 0) last[static_cast<size_t>(st.in2)] = std::max(last[size_t(st.in2)], i);
  }
  net.offset.assign(n, 0);
  struct Live {
    int64_t begin, end;
    size_t tensor;
  };
  std::vector<Live> live;
  int64_t total = 0;
  for (size_t i = 0; i < net.steps.size(); ++i) {
    const int t = net.steps[i].out;
    if (t < 2) continue;
    live.erase(
        std::remove_if(live.begin(), live.end(), [&](const Live& l) { return last[l.tensor] < i; }),
        live.end());
    std::sort(live.begin(), live.end(),
              [](const Live& a, const Live& b) { return a.begin < b.begin; });
    const int64_t size = ceil_div(sizes[size_t(t)], kAlignElems) * kAlignElems;
    // Add and SE read each element (after SE's pooling pass) before writing
    // the same element, so they may overwrite an input that dies here.
    const Step<T>& st = net.steps[i];
    if ((st.op == Op::Add || st.op == Op::SE) && st.in >= 2 && last[size_t(st.in)] == i &&
        sizes[size_t(st.in)] == sizes[size_t(t)]) {
      for (Live& l : live)
        if (l.tensor == size_t(st.in)) {
          l.tensor = size_t(t);
          net.offset[size_t(t)] = l.begin;
        }
      continue;
    }
    int64_t at = 0;
    for (const Live& l : live) {
      if (l.begin - at >= size) break;
      at = std::max(at, l.end);
    }
    net.offset[size_t(t)] = at;
    live.push_back({at, at + size, size_t(t)});
    total = std::max(total, at + size);
  }
  return total;
}

// Runs of pointwise / depthwise / separable steps become banded chains
// (plan_fuse.h) where heuristics.h fuse_join says fusion pays.
template <class T>
FuseKind kind_of(const Step<T>& st) {
  return st.op == Op::Pointwise   ? FuseKind::Pointwise
         : st.op == Op::Depthwise ? FuseKind::Depthwise
                                  : FuseKind::Separable;
}

template <class T>
FuseLayer<T> fuse_layer(Step<T>& st) {
  FuseLayer<T> l;
  l.kind = kind_of(st);
  l.pb = st.pb;
  l.w = std::move(st.w);
  l.b = std::move(st.b);
  l.w2 = std::move(st.w2);
  l.b2 = std::move(st.b2);
  l.packed = std::move(st.packed);
  l.mid_act = st.mid_act;
  l.act = st.act;
  l.name = st.info.name + (st.info.fused.empty() ? "" : "[" + st.info.fused + "]");
  return l;
}

template <class T>
bool chainable(const Step<T>& st) {
  if (st.op != Op::Pointwise && st.op != Op::Depthwise && st.op != Op::Separable) return false;
  if (st.info.in_shape.size() != 4 || st.info.out_shape.size() != 4) return false;  // linear
  return fuse_eligible(kind_of(st), st.pb, st.w.data(), int64_t(st.w.size()));
}

template <class T>
void fuse_steps(std::vector<Step<T>>& steps, int64_t N, int64_t mode) {
  // A chain may pass a tensor on only where no other step reads it (a
  // residual add reading a block's output ends the chain before it).
  std::vector<int> readers;
  const auto count = [&](int t) {
    if (t < 0) return;
    if (static_cast<size_t>(t) >= readers.size()) readers.resize(size_t(t) + 1, 0);
    ++readers[size_t(t)];
  };
  for (const Step<T>& st : steps) {
    count(st.in);
    count(st.in2);
  }
  const auto only_reader = [&](int t) {
    return t >= 0 && static_cast<size_t>(t) < readers.size() && readers[size_t(t)] == 1;
  };
  std::vector<Step<T>> out;
  const auto bytes = [](const Step<T>& s) {
    return int64_t(sizeof(T)) * int64_t(s.w.size() + s.b.size() + s.w2.size() + s.b2.size());
  };
  for (size_t i = 0; i < steps.size();) {
    size_t j = i + 1;
    int64_t wb = bytes(steps[i]);
    std::vector<FuseLayer<T>> probe;  // kinds and problems, for fuse_chain_fits
    const auto add_probe = [&](const Step<T>& s) {
      probe.emplace_back();
      probe.back().kind = kind_of(s);
      probe.back().pb = s.pb;
    };
    if (chainable(steps[i])) {
      add_probe(steps[i]);
      while (j < steps.size() && j - i < kMaxChain && chainable(steps[j]) &&
             steps[j].in == steps[j - 1].out && only_reader(steps[j - 1].out)) {
        int64_t e = int64_t(sizeof(T));
        for (int64_t d : steps[j - 1].info.out_shape) e *= d;
        add_probe(steps[j]);
        if (mode == Plan::kFuseAuto &&
            !(fuse_join(wb + bytes(steps[j]), e) && fuse_chain_fits(probe)))
          break;
        wb += bytes(steps[j++]);
      }
    }
    if (j - i < 2 || N == 0) {
      out.push_back(std::move(steps[i++]));
      continue;
    }
    // An inverted residual's add of the chain's input joins the chain: the
    // band adds it as it is written (the Add step's bits: out + x).
    const bool residual = j < steps.size() && steps[j].op == Op::Add && steps[j].act == Act::None &&
                          steps[j].in == steps[j - 1].out && steps[j].in2 == steps[i].in &&
                          only_reader(steps[j - 1].out);
    Step<T> st;
    st.op = Op::Banded;
    st.in = steps[i].in;
    st.out = residual ? steps[j].out : steps[j - 1].out;
    const std::vector<int64_t> in_shape = steps[i].info.in_shape;
    const std::vector<int64_t> out_shape = steps[j - 1].info.out_shape;
    st.info = StepInfo{
        "banded", steps[i].info.name + ".." + steps[j - 1].info.name, "", in_shape, out_shape, 0};
    std::vector<FuseLayer<T>> layers;
    for (size_t q = i; q < j; ++q) {
      st.info.macs += steps[q].info.macs;
      layers.push_back(fuse_layer(steps[q]));
    }
    st.chain = std::make_unique<FusedChain<T>>(std::move(layers), N, residual, mode > 0 ? mode : 0);
    st.info.fused = st.chain->describe();
    out.push_back(std::move(st));
    i = residual ? j + 1 : j;
  }
  steps = std::move(out);
}

std::vector<int64_t> caller_dims(const Shape& s, Layout layout) {
  if (s.flat) return {s.N, s.C};
  if (layout == Layout::NCHW) return {s.N, s.C, s.H, s.W};
  return s.dims();
}

template <class T>
std::unique_ptr<NetBase> build(const std::vector<StepSpec>& specs, Plan::Impl& im) {
  auto net = std::make_unique<Net<T>>();
  net->threads = im.threads;
  Builder<T> b(*net, im.layout, im.threads);
  const std::vector<int64_t>& d = im.in_shape;
  const bool nchw = im.layout == Layout::NCHW;
  Shape s{d[0], nchw ? d[2] : d[1], nchw ? d[3] : d[2], nchw ? d[1] : d[3], false};
  if (nchw) b.transpose(Op::ToNhwc, s, d, s.dims(), "input");
  b.mark_input(s);
  for (const StepSpec& spec : specs) b.add(spec, s);
  if (im.fuse != Plan::kFuseOff) fuse_steps(net->steps, s.N, im.fuse);
  im.out_shape = caller_dims(s, im.layout);
  if (nchw && !s.flat) b.transpose(Op::ToNchw, s, s.dims(), im.out_shape, "output");
  // The result must be a step's own output, written to y: a plan whose
  // result is the input (no steps, or a residual of nothing) copies it.
  if (net->steps.empty() || b.current() != net->steps.back().out) b.copy(s, im.out_shape);
  const int last = net->steps.back().out;
  for (Step<T>& st : net->steps) {  // the last step's output is y
    if (st.out == last) st.out = kY;
    if (st.in == last) st.in = kY;
    if (st.in2 == last) st.in2 = kY;
  }
  net->act_elems = plan_arena(*net, b.sizes());
  for (const Step<T>& st : net->steps) im.infos.push_back(st.info);
  im.arena_bytes = (net->act_elems + net->col_elems) * int64_t(sizeof(T));
  return net;
}

}  // namespace

bool step_kind_from_word(const std::string& word, StepKind* kind) {
  static const std::pair<const char*, StepKind> kinds[] = {
      {"conv", StepKind::Conv},
      {"depthwise", StepKind::Depthwise},
      {"pointwise", StepKind::Pointwise},
      {"separable", StepKind::Separable},
      {"pool", StepKind::Pool},
      {"flatten", StepKind::Flatten},
      {"linear", StepKind::Linear},
      {"add", StepKind::Add},
      {"squeeze_excite", StepKind::SqueezeExcite}};
  for (const auto& e : kinds)
    if (word == e.first) {
      *kind = e.second;
      return true;
    }
  return false;
}

bool act_from_word(const std::string& word, Act* act) {
  static const std::pair<const char*, Act> acts[] = {
      {"relu", Act::Relu},           {"relu6", Act::Relu6},
      {"hardswish", Act::Hardswish}, {"hardsigmoid", Act::Hardsigmoid},
      {"silu", Act::Silu},           {"sigmoid", Act::Sigmoid}};
  for (const auto& e : acts)
    if (word == e.first) {
      *act = e.second;
      return true;
    }
  return false;
}

Plan::Plan(const std::vector<StepSpec>& specs, const std::vector<int64_t>& input_shape,
           Layout layout, bool f64, int threads, int64_t fuse)
    : impl_(std::make_unique<Impl>()) {
  if (input_shape.size() != 4)
    fail("input_shape must have 4 dimensions " +
         std::string(layout == Layout::NCHW ? "(N, C, H, W)" : "(N, H, W, C)") + ", got " +
         shape_str(input_shape.data(), int(input_shape.size())));
  bool ok = true;
  for (size_t i = 0; i < 4; ++i) ok = ok && input_shape[i] >= (i == 0 ? 0 : 1);
  if (!ok)
    fail("input_shape must have a batch >= 0 and at least one channel and one pixel, got " +
         shape_str(input_shape.data(), 4));
  impl_->in_shape = input_shape;
  impl_->layout = layout;
  impl_->f64 = f64;
  impl_->threads = threads;
  impl_->fuse = fuse;
  impl_->net = f64 ? build<double>(specs, *impl_) : build<float>(specs, *impl_);
}

Plan::~Plan() = default;

const std::vector<int64_t>& Plan::input_shape() const { return impl_->in_shape; }
const std::vector<int64_t>& Plan::output_shape() const { return impl_->out_shape; }
Layout Plan::layout() const { return impl_->layout; }
bool Plan::f64() const { return impl_->f64; }
int Plan::threads() const { return impl_->threads; }
const std::vector<StepInfo>& Plan::steps() const { return impl_->infos; }
int64_t Plan::arena_bytes() const { return impl_->arena_bytes; }

void Plan::run(const void* x, void* y) const { impl_->net->run(x, y, nullptr); }

std::vector<double> Plan::profile(const void* x, void* y, int repeats) const {
  const size_t n = impl_->infos.size();
  std::vector<double> t(n * static_cast<size_t>(repeats > 0 ? repeats : 0));
  for (int r = 0; r < repeats; ++r) impl_->net->run(x, y, t.data() + r * n);
  return t;
}

}  // namespace pydsconv
