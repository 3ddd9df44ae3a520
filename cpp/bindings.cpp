// pydsconv._core: the only file that includes pybind11.  It only wires:
// dtype dispatch, array checks, out= handling, releasing the GIL around the
// C++ work.  Arrays are described to validate() as given (shape and byte
// bounds, any strides) and copied to C-contiguous only after it accepts the
// call, so a rejected call never allocates for its inputs.  Argument rules
// live in validate(); friendly argument parsing (padding forms, 1-D names,
// defaults) lives in pydsconv/conv.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <climits>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <type_traits>
#include <string>
#include <thread>
#include <vector>

#include "result_pool.h"
#include "trace.h"
#include "dispatch.h"
#include "ops.h"
#include "packed.h"
#include "peak.h"
#include "plan.h"
#include "plan_file.h"
#include "strided.h"
#include "threads.h"

namespace py = pybind11;
using namespace pydsconv;

namespace {

enum class DType { F32, F64 };

// Runs `work` (pure C++, no Python objects) without the GIL.  At
// interpreter exit, a daemon thread must never take the GIL back: CPython
// (<= 3.13) ends such a thread with pthread_exit, whose unwinding through a
// C++ frame (pybind11's gil_scoped_release destructor is noexcept) calls
// std::terminate and aborts the process.  So an atexit hook (which runs
// before finalisation starts) marks the exit, waits for the calls in flight,
// and from then on a call that finishes its work parks its thread forever
// (the process is ending) and new calls run with the GIL held.
struct ExitGuard {
  std::mutex mu;
  std::condition_variable cv;
  bool exiting = false;
  int in_flight = 0;  // calls between releasing and retaking the GIL
};
ExitGuard& exit_guard() {
  static ExitGuard* g = new ExitGuard;  // never destroyed: parked threads may use it
  return *g;
}

template <class F>
void without_gil(const F& work) {
  ExitGuard& g = exit_guard();
  {
    std::lock_guard<std::mutex> lock(g.mu);
    if (g.exiting) {
      work();
      return;
    }
    ++g.in_flight;
  }
  PyThreadState* state = PyEval_SaveThread();
  std::exception_ptr error;
  try {
    work();
  } catch (...) {
    error = std::current_exception();
  }
  bool park;
  {
    std::lock_guard<std::mutex> lock(g.mu);
    park = g.exiting;
    if (park) --g.in_flight;
  }
  if (park) {
    g.cv.notify_all();
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
  }
  PyEval_RestoreThread(state);
  {
    std::lock_guard<std::mutex> lock(g.mu);
    --g.in_flight;
  }
  g.cv.notify_all();
  if (error) std::rethrow_exception(error);
}

// The atexit hook (GIL held): calls in flight either park or retake the GIL
// while we wait with it released.
void on_interpreter_exit() {
  ExitGuard& g = exit_guard();
  std::unique_lock<std::mutex> lock(g.mu);
  g.exiting = true;
  if (g.in_flight == 0) return;
  lock.unlock();
  PyThreadState* state = PyEval_SaveThread();
  lock.lock();
  g.cv.wait(lock, [&] { return g.in_flight == 0; });
  lock.unlock();
  PyEval_RestoreThread(state);
}

// One array argument of a call; `obj` may be None for optional ones.
struct Arg {
  py::handle obj;
  const char* name;
  bool given() const { return !obj.is_none(); }
  py::array arr() const { return py::reinterpret_borrow<py::array>(obj); }
};

// float32 / float64 in native byte order, compared by value: a dtype object
// that is not NumPy's own singleton (metadata, '=f4') is still float32.
template <class T>
bool same_dtype(const py::dtype& d) {
  return d.kind() == 'f' && d.itemsize() == static_cast<py::ssize_t>(sizeof(T)) &&
         d.attr("isnative").cast<bool>();
}

// All given arrays must be float32 or float64 and agree (rule 0, TypeError).
DType common_dtype(const std::vector<Arg>& args) {
  const Arg* first = nullptr;
  DType dt = DType::F32;
  for (const Arg& a : args) {
    if (!a.given()) continue;
    if (!py::isinstance<py::array>(a.obj))
      throw py::type_error(std::string(a.name) + " must be a NumPy array of float32 or float64");
    const py::dtype d = a.arr().dtype();
    DType here;
    if (same_dtype<float>(d))
      here = DType::F32;
    else if (same_dtype<double>(d))
      here = DType::F64;
    else
      throw py::type_error(std::string(a.name) + " must have dtype float32 or float64, got " +
                           std::string(py::str(d)) + " (pydsconv never casts silently)");
    if (!first) {
      first = &a;
      dt = here;
    } else if (here != dt) {
      throw py::type_error(std::string(a.name) + " has dtype " + std::string(py::str(d)) + " but " +
                           first->name + " has dtype " +
                           std::string(py::str(first->arr().dtype())) +
                           "; all arrays of one call must share one dtype");
    }
  }
  return dt;
}

// The byte range [lo, hi) an array's elements occupy, from its shape and
// strides as given (negative strides included); empty for a 0-element array.
// Saturates on absurd strided views instead of overflowing.
void byte_bounds(const py::array& arr, const void** lo, int64_t* nbytes) {
  *lo = arr.data();
  *nbytes = 0;
  if (arr.size() == 0) return;
  __int128 low = 0, high = 0;
  for (py::ssize_t i = 0; i < arr.ndim(); ++i) {
    const __int128 span = static_cast<__int128>(arr.shape(i) - 1) * arr.strides(i);
    (span < 0 ? low : high) += span;
  }
  high += arr.itemsize();
  *lo = static_cast<const char*>(arr.data()) + static_cast<int64_t>(low);
  const __int128 n = high - low;
  *nbytes = n > INT64_MAX ? INT64_MAX : static_cast<int64_t>(n);
}

// The array as the caller gave it: shape and the bytes it covers.  Nothing is
// copied here, so validate() sees huge strided views (zero strides) before
// anything is allocated for them.
TensorArg describe(const Arg& a) {
  TensorArg t;
  t.name = a.name;
  if (!a.given()) return t;
  const py::array arr = a.arr();
  if (arr.ndim() > 8) throw py::value_error(std::string(a.name) + " has too many dimensions");
  t.ndim = static_cast<int>(arr.ndim());
  for (int i = 0; i < t.ndim; ++i) t.shape[i] = arr.shape(i);
  byte_bounds(arr, &t.data, &t.nbytes);
  return t;
}

// out= (rule 0): C-contiguous; dtype and writability are checked by result().
void check_out(const Arg& out) {
  if (!out.given()) return;
  if (!py::isinstance<py::array>(out.obj)) throw py::type_error("out must be a NumPy array");
  if (!(out.arr().flags() & py::array::c_style)) throw py::value_error("out must be C-contiguous");
}

template <class T>
const T* ptr(const py::object& a) {  // a: readable()'s result
  return a.is_none() ? nullptr : static_cast<const T*>(py::reinterpret_borrow<py::array>(a).data());
}

// A new C-contiguous array, 64-byte aligned: NumPy's own large arrays start
// 16 bytes past a cache line, so every AVX-512 load and store of a kernel
// reading or writing them straddles two lines (NHWC depthwise: 25-30 %
// slower).  Results of a chain of calls are then all aligned.
template <class T>
py::array new_array(const std::vector<int64_t>& shape) {
  struct Block {
    void* p;
    size_t bytes;
  };
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);  // validated sizes: no overflow
  std::unique_ptr<Block> b(new Block{nullptr, n * sizeof(T)});
  b->p = result_alloc(b->bytes);
  py::capsule owner;
  try {
    owner = py::capsule(b.get(), [](void* v) {
      const Block* k = static_cast<Block*>(v);
      result_free(k->p, k->bytes);
      delete k;
    });
  } catch (...) {
    result_free(b->p, b->bytes);
    throw;
  }
  T* data = static_cast<T*>(b.release()->p);  // the capsule owns the block now
  return py::array_t<T>(std::vector<py::ssize_t>(shape.begin(), shape.end()), data, owner);
}

// A C-contiguous, aligned copy of `arr` (float32 or float64), made in C++
// without the GIL (strided.h says why not with NumPy's copy).
py::array contiguous_copy(const py::array& arr) {
  const std::vector<int64_t> shape(arr.shape(), arr.shape() + arr.ndim());
  const std::vector<int64_t> strides(arr.strides(), arr.strides() + arr.ndim());
  py::array copy = arr.itemsize() == 4 ? new_array<float>(shape) : new_array<double>(shape);
  void* dst = copy.mutable_data();
  const void* src = arr.data();
  const int ndim = static_cast<int>(arr.ndim());
  const int64_t itemsize = arr.itemsize();
  without_gil([&] { copy_strided(dst, src, ndim, shape.data(), strides.data(), itemsize); });
  return copy;
}

// After validate(): the input as the core reads it.  C-contiguous, aligned
// arrays are used in place (zero-copy); others are copied once (documented).
py::object readable(const Arg& a) {
  if (!a.given()) return py::none();
  const py::array arr = a.arr();
  const auto flags = arr.flags();
  if ((flags & py::array::c_style) && (flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) return arr;
  return contiguous_copy(arr);
}

// The result array: `out` after its checks, or a new one.
template <class T>
py::array result(const Arg& out, const std::vector<int64_t>& shape) {
  if (!out.given()) return new_array<T>(shape);
  const py::array a = out.arr();
  if (!same_dtype<T>(a.dtype()))
    throw py::value_error("out must have dtype " + std::string(py::str(py::dtype::of<T>())) +
                          ", got " + std::string(py::str(a.dtype())));
  if (!a.writeable()) throw py::value_error("out must be writable");
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(
        "out must be aligned to its dtype (an unaligned view cannot be written in place)");
  return a;
}

Act parse_act(const py::object& s, const char* name) {
  if (s.is_none()) return Act::None;
  const std::string v = py::str(s);
  Act act = Act::None;
  if (act_from_word(v, &act)) return act;
  throw py::value_error(std::string(name) +
                        " must be None, 'relu', 'relu6', 'hardswish', 'hardsigmoid', 'silu' or "
                        "'sigmoid', got '" +
                        v + "'");
}

// Parameters as normalised by pydsconv/conv.py.
ConvParams params(int spatial, const std::string& layout, std::array<int64_t, 2> stride,
                  std::array<int64_t, 2> dilation, const std::string& pad_mode,
                  std::array<int64_t, 4> pad) {
  ConvParams p;
  p.spatial = spatial;
  p.layout = layout == "NHWC" ? Layout::NHWC : Layout::NCHW;
  for (int i = 0; i < 2; ++i) {
    p.stride[i] = stride[i];
    p.dilation[i] = dilation[i];
  }
  for (int i = 0; i < 4; ++i) p.pad[i] = pad[i];
  p.pad_mode = pad_mode == "same"     ? PadMode::Same
               : pad_mode == "valid"  ? PadMode::Valid
               : pad_mode == "causal" ? PadMode::Causal
                                      : PadMode::Explicit;
  return p;
}

using Stride = std::array<int64_t, 2>;
using Pad = std::array<int64_t, 4>;

// One array argument and the Request slot validate() reads it from.
struct Slot {
  Arg arg;
  TensorArg Request::* field;
};

// What every op does, in this order: one dtype for all its arrays (rule 0),
// `out` checked, every array described to validate() as given, then the
// inputs taken zero-copy (or copied once) and `op(T{}, problem, inputs)`
// called with the inputs' data pointers in slot order.
template <class Op>
py::object dispatch(Request r, std::initializer_list<Slot> slots, const Arg& out, const Op& op) {
  std::vector<Arg> args;
  for (const Slot& s : slots) args.push_back(s.arg);
  const DType dt = common_dtype(args);
  check_out(out);
  for (const Slot& s : slots) r.*(s.field) = describe(s.arg);
  r.out = describe(out);
  const Problem pb = validate(r);
  std::vector<py::object> in;
  for (const Arg& a : args) in.push_back(readable(a));
  auto run = [&](auto tag) {
    using T = decltype(tag);
    std::vector<const T*> p;
    for (const py::object& o : in) p.push_back(ptr<T>(o));
    return op(tag, pb, p.data());
  };
  return dt == DType::F32 ? run(float{}) : run(double{});
}

// Forward ops: the result array (`out` or a new one); `fwd(problem, inputs,
// y)`, with the GIL, returns the work, which runs without it.
template <class Fwd>
py::object forward(const Request& r, std::initializer_list<Slot> slots, const Arg& out,
                   const Fwd& fwd) {
  return dispatch(r, slots, out, [&](auto tag, const Problem& pb, auto in) -> py::object {
    using T = decltype(tag);
    py::array y = result<T>(out, pb.out_shape);
    T* yp = static_cast<T*>(y.mutable_data());
    without_gil(fwd(pb, in, yp));
    return std::move(y);
  });
}

Request request(OpKind op, const ConvParams& p) {
  Request r;
  r.op = op;
  r.p = p;
  return r;
}

py::object depthwise_fwd(py::object x, py::object w, py::object b, int spatial, std::string layout,
                         Stride stride, Stride dilation, std::string pad_mode, Pad pad,
                         py::object act, py::object out, int threads) {
  const Act a = parse_act(act, "activation");
  const Request r =
      request(OpKind::Depthwise, params(spatial, layout, stride, dilation, pad_mode, pad));
  return forward(r,
                 {{{x, "x"}, &Request::x},
                  {{w, "weight"}, &Request::dw_weight},
                  {{b, "bias"}, &Request::dw_bias}},
                 {out, "out"}, [&](const Problem& pb, auto in, auto y) {
                   return [&pb, in, y, a, threads] {
                     depthwise_forward(pb, in[0], in[1], in[2], a, y, threads);
                   };
                 });
}

// A pointwise weight packed once (pydsconv.prepack_pointwise): its own
// C-contiguous copy of the weight (what the ops validate and, where they read
// the weight in place, use) and the packed panels of that copy.
struct PackedPointwise {
  py::array weight;
  std::shared_ptr<Prepacked<float>> f32;
  std::shared_ptr<Prepacked<double>> f64;
  template <class T>
  PackedView<T> view() const {
    if constexpr (sizeof(T) == sizeof(float))
      return f32 ? f32->view() : PackedView<T>{};
    else
      return f64 ? f64->view() : PackedView<T>{};
  }
  std::string isa() const { return f32 ? f32->isa() : f64->isa(); }
};

// w: a float32/float64 array (C_out, C_in[, 1[, 1]]), copied here (the ops
// check it against x as for any weight).
PackedPointwise prepack_pointwise(py::object w, int threads) {
  const Arg a{w, "weight"};
  const DType dt = common_dtype({a});
  py::array arr = a.arr();
  bool ok = arr.ndim() >= 2 && arr.ndim() <= 4;
  for (py::ssize_t i = 2; ok && i < arr.ndim(); ++i) ok = arr.shape(i) == 1;
  if (!ok)
    throw py::value_error(
        "weight must have shape (C_out, C_in), (C_out, C_in, 1) or "
        "(C_out, C_in, 1, 1), got " +
        std::string(py::str(arr.attr("shape"))));
  PackedPointwise p;
  p.weight = contiguous_copy(arr);  // a snapshot: later changes to w do not reach it
  py::detail::array_proxy(p.weight.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  const int64_t cout = arr.shape(0), cin = arr.shape(1);
  const void* data = p.weight.data();
  without_gil([&] {
    if (dt == DType::F32)
      p.f32 =
          std::make_shared<Prepacked<float>>(static_cast<const float*>(data), cout, cin, threads);
    else
      p.f64 =
          std::make_shared<Prepacked<double>>(static_cast<const double*>(data), cout, cin, threads);
  });
  return p;
}

// The packed panels for this call's dtype and the current ISA, or null.
template <class T>
const PackedView<T>* packed_view(const py::object& packed, PackedView<T>* storage) {
  if (packed.is_none()) return nullptr;
  *storage = packed.cast<const PackedPointwise&>().view<T>();
  return storage->data ? storage : nullptr;
}

py::object pointwise_fwd(py::object x, py::object w, py::object b, int spatial, std::string layout,
                         py::object act, py::object out, int threads, py::object packed) {
  const Act a = parse_act(act, "activation");
  const Request r =
      request(OpKind::Pointwise, params(spatial, layout, {1, 1}, {1, 1}, "valid", {0, 0, 0, 0}));
  return forward(r,
                 {{{x, "x"}, &Request::x},
                  {{w, "weight"}, &Request::pw_weight},
                  {{b, "bias"}, &Request::pw_bias}},
                 {out, "out"}, [&](const Problem& pb, auto in, auto y) {
                   using T = std::remove_const_t<std::remove_pointer_t<decltype(y)>>;
                   PackedView<T> v;
                   const PackedView<T>* pv = packed_view<T>(packed, &v);  // (needs the GIL)
                   return [&pb, in, y, a, threads, v, pv] {
                     pointwise_forward(pb, in[0], in[1], in[2], a, y, threads, pv ? &v : nullptr);
                   };
                 });
}

py::object separable_fwd(py::object x, py::object dw, py::object pw, py::object db, py::object pb_,
                         int spatial, std::string layout, Stride stride, Stride dilation,
                         std::string pad_mode, Pad pad, py::object mid_act, py::object act,
                         py::object out, int threads, py::object packed) {
  const Act ma = parse_act(mid_act, "mid_activation"), a = parse_act(act, "activation");
  const Request r =
      request(OpKind::Separable, params(spatial, layout, stride, dilation, pad_mode, pad));
  return forward(r,
                 {{{x, "x"}, &Request::x},
                  {{dw, "depthwise_weight"}, &Request::dw_weight},
                  {{pw, "pointwise_weight"}, &Request::pw_weight},
                  {{db, "depthwise_bias"}, &Request::dw_bias},
                  {{pb_, "pointwise_bias"}, &Request::pw_bias}},
                 {out, "out"}, [&](const Problem& pb, auto in, auto y) {
                   using T = std::remove_const_t<std::remove_pointer_t<decltype(y)>>;
                   PackedView<T> v;
                   const PackedView<T>* pv = packed_view<T>(packed, &v);  // (needs the GIL)
                   return [&pb, in, y, ma, a, threads, v, pv] {
                     separable_forward(pb, in[0], in[1], in[3], in[2], in[4], ma, a, y, threads,
                                       pv ? &v : nullptr);
                   };
                 });
}

template <class T>
py::array like(const py::array& a, bool want) {  // an uninitialised array of a's shape
  if (!want) return py::array();
  return new_array<T>(std::vector<int64_t>(a.shape(), a.shape() + a.ndim()));
}

// Backward: (grad_x | None, grad_weight | None, grad_bias | None).
py::object backward(OpKind op, py::object gy, py::object x, py::object w, int spatial,
                    std::string layout, Stride stride, Stride dilation, std::string pad_mode,
                    Pad pad, bool want_x, bool want_w, bool want_b, int threads) {
  const bool dw = op == OpKind::DepthwiseBackward;
  const Arg ax{x, "x"}, aw{w, "weight"};
  const Request r = request(op, params(spatial, layout, stride, dilation, pad_mode, pad));
  return dispatch(r,
                  {{{gy, "grad_out"}, &Request::grad_out},
                   {ax, &Request::x},
                   {aw, dw ? &Request::dw_weight : &Request::pw_weight}},
                  {py::none(), "out"}, [&](auto tag, const Problem& pb, auto in) -> py::object {
                    using T = decltype(tag);
                    py::array gx = like<T>(ax.arr(), want_x), gw = like<T>(aw.arr(), want_w);
                    py::array gb = want_b ? new_array<T>({dw ? pb.Cmid : pb.Cout}) : py::array();
                    T* gxp = want_x ? static_cast<T*>(gx.mutable_data()) : nullptr;
                    T* gwp = want_w ? static_cast<T*>(gw.mutable_data()) : nullptr;
                    T* gbp = want_b ? static_cast<T*>(gb.mutable_data()) : nullptr;
                    without_gil([&] {
                      if (dw)
                        depthwise_backward<T>(pb, in[0], in[1], in[2], gxp, gwp, gbp, threads);
                      else
                        pointwise_backward<T>(pb, in[0], in[1], in[2], gxp, gwp, gbp, threads);
                    });
                    auto opt = [](bool want, py::array& a) -> py::object {
                      return want ? py::object(a) : py::none();
                    };
                    return py::make_tuple(opt(want_x, gx), opt(want_w, gw), opt(want_b, gb));
                  });
}

// Compiled plans (pydsconv.nn.compile): each spec a tuple (kind, name, fused,
// stride, dilation, pad_mode, pad, mid_act, act, arrays, skip) from
// pydsconv/nn/compiler.py; arrays are None or arrays of the plan's dtype.
StepKind step_kind(const std::string& k) {
  StepKind kind = StepKind::Conv;
  if (!step_kind_from_word(k, &kind))
    throw py::value_error("internal: unknown plan step kind '" + k + "'");
  return kind;
}

std::shared_ptr<Plan> compile_plan(py::list specs, std::vector<int64_t> input_shape,
                                   std::string layout, bool f64, int threads, int64_t fuse) {
  std::vector<StepSpec> steps;
  std::vector<py::object> keep;  // the arrays the specs point into
  for (py::handle item : specs) {
    const py::tuple t = py::reinterpret_borrow<py::tuple>(item);
    StepSpec s;
    s.kind = step_kind(t[0].cast<std::string>());
    s.name = t[1].cast<std::string>();
    s.fused = t[2].cast<std::string>();
    s.geom = params(2, "NHWC", t[3].cast<Stride>(), t[4].cast<Stride>(), t[5].cast<std::string>(),
                    t[6].cast<Pad>());
    s.mid_act = parse_act(t[7], "mid_activation");
    s.act = parse_act(t[8], "activation");
    for (py::handle a : t[9].cast<py::list>()) {
      PlanArray pa;
      if (!a.is_none()) {
        const Arg arg{a, "weight"};
        if (common_dtype({arg}) != (f64 ? DType::F64 : DType::F32))
          throw py::type_error(s.name + ": weights must have the model's dtype");
        keep.push_back(readable(arg));
        const py::array arr = py::reinterpret_borrow<py::array>(keep.back());
        pa.shape.assign(arr.shape(), arr.shape() + arr.ndim());
        pa.data = arr.data();
      }
      s.arrays.push_back(pa);
    }
    s.skip = t[10].cast<int>();
    steps.push_back(std::move(s));
  }
  const Layout l = layout == "NHWC" ? Layout::NHWC : Layout::NCHW;
  std::shared_ptr<Plan> plan;
  without_gil([&] { plan = std::make_shared<Plan>(steps, input_shape, l, f64, threads, fuse); });
  return plan;
}

// x checked against the plan (dtype: TypeError; shape: ValueError naming
// the expected shape and layout), taken zero-copy or copied once.
py::object plan_input(const Plan& p, const py::object& x) {
  const Arg ax{x, "x"};
  const DType dt = common_dtype({ax});
  const char* want = p.f64() ? "float64" : "float32";
  if ((dt == DType::F64) != p.f64())
    throw py::type_error("x must have dtype " + std::string(want) + " (the plan's), got " +
                         std::string(py::str(ax.arr().dtype())));
  const py::array a = ax.arr();
  const std::vector<int64_t>& s = p.input_shape();
  const std::vector<int64_t> got(a.shape(), a.shape() + a.ndim());
  if (got != s) {
    const bool nchw = p.layout() == Layout::NCHW;
    std::string msg = "x must have shape " + shape_str(s.data(), 4) +
                      " (the plan's input, layout='" + (nchw ? "NCHW" : "NHWC") + "'), got " +
                      shape_str(got.data(), int(got.size()));
    const std::vector<int64_t> other = nchw ? std::vector<int64_t>{s[0], s[2], s[3], s[1]}
                                            : std::vector<int64_t>{s[0], s[3], s[1], s[2]};
    if (got == other)
      msg += std::string("; it looks like ") + (nchw ? "NHWC" : "NCHW") +
             " data: compile the plan with layout='" + (nchw ? "NHWC" : "NCHW") + "'";
    throw py::value_error(msg);
  }
  return readable(ax);
}

template <class T>
py::array plan_output(const Plan& p, const py::object& x, const py::object& out) {
  const Arg ao{out, "out"};
  check_out(ao);
  py::array y = result<T>(ao, p.output_shape());
  if (ao.given()) {
    const std::vector<int64_t> got(y.shape(), y.shape() + y.ndim());
    const std::vector<int64_t>& s = p.output_shape();
    if (got != s)
      throw py::value_error("out must have shape " + shape_str(s.data(), int(s.size())) +
                            " (the plan's output), got " + shape_str(got.data(), int(got.size())));
    TensorArg tx = describe({x, "x"}), ty = describe(ao);
    const auto x0 = reinterpret_cast<uintptr_t>(tx.data), y0 = reinterpret_cast<uintptr_t>(ty.data);
    if (tx.nbytes && ty.nbytes && x0 < y0 + uintptr_t(ty.nbytes) && y0 < x0 + uintptr_t(tx.nbytes))
      throw py::value_error("out must not overlap the input 'x'");
  }
  return y;
}

py::object plan_run(const Plan& p, py::object x, py::object out) {
  const py::object xr = plan_input(p, x);
  py::array y = p.f64() ? plan_output<double>(p, x, out) : plan_output<float>(p, x, out);
  const void* xp = py::reinterpret_borrow<py::array>(xr).data();
  void* yp = y.mutable_data();
  without_gil([&] { p.run(xp, yp); });
  return std::move(y);
}

std::vector<double> plan_profile(const Plan& p, py::object x, int repeats) {
  if (repeats < 1) throw py::value_error("repeats must be >= 1, got " + std::to_string(repeats));
  const py::object xr = plan_input(p, x);
  py::array y =
      p.f64() ? plan_output<double>(p, x, py::none()) : plan_output<float>(p, x, py::none());
  const void* xp = py::reinterpret_borrow<py::array>(xr).data();
  void* yp = y.mutable_data();
  std::vector<double> t;
  without_gil([&] { t = p.profile(xp, yp, repeats); });
  return t;
}

py::list plan_steps(const Plan& p) {
  py::list l;
  for (const StepInfo& s : p.steps()) {
    py::dict d;
    d["op"] = s.op;
    d["name"] = s.name;
    d["fused"] = s.fused;
    d["in_shape"] = py::tuple(py::cast(s.in_shape));
    d["out_shape"] = py::tuple(py::cast(s.out_shape));
    d["macs"] = s.macs;
    l.append(d);
  }
  return l;
}

// A plan file (plan_file.h) as compile_plan's arguments: (dtype, layout,
// input_shape, specs), each array copied out of the file.
py::tuple read_plan(const std::string& path) {
  PlanFile f;
  without_gil([&] {
    f = read_plan_file(path);
    to_specs(f);  // unknown step kinds and activations: named as the bench names them
  });
  const auto act = [](const std::string& a) -> py::object {
    return a == "none" ? py::object(py::none()) : py::object(py::str(a));
  };
  py::list specs;
  for (const PlanFileStep& s : f.steps) {
    py::list arrays;
    for (const PlanArray& a : s.arrays) {
      if (!a.data) {
        arrays.append(py::none());
        continue;
      }
      arrays.append(
          f.f64 ? py::array(py::dtype::of<double>(), a.shape, static_cast<const double*>(a.data))
                : py::array(py::dtype::of<float>(), a.shape, static_cast<const float*>(a.data)));
    }
    specs.append(py::make_tuple(s.kind, s.name, s.fused, py::make_tuple(s.stride[0], s.stride[1]),
                                py::make_tuple(s.dilation[0], s.dilation[1]), s.pad_mode,
                                py::make_tuple(s.pad[0], s.pad[1], s.pad[2], s.pad[3]),
                                act(s.mid_act), act(s.act), arrays, s.skip));
  }
  return py::make_tuple(f.f64 ? "float64" : "float32", f.layout == Layout::NHWC ? "NHWC" : "NCHW",
                        py::tuple(py::cast(f.input_shape)), specs);
}

py::dict features() {
  const CpuInfo& c = cpu_info();
  py::dict d;
  d["isa"] = isa_name(current_isa());
  d["best_isa"] = isa_name(c.best);
  d["avx2"] = c.avx2;
  d["fma"] = c.fma;
  d["avx512f"] = c.avx512f;
  py::list compiled;
  for (Isa i : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Emu})
    if (isa_compiled(i)) compiled.append(isa_name(i));
  d["compiled"] = compiled;
#ifdef _OPENMP
  d["openmp"] = true;
#else
  d["openmp"] = false;
#endif
  d["env_isa"] =
      c.env_request.empty() ? py::object(py::none()) : py::object(py::str(c.env_request));
  d["env_warning"] = c.env_warning;
  d["usable_cores"] = usable_cores();
  d["max_threads"] = max_threads();
  d["num_threads_requested"] = requested_num_threads();
  d["env_threads_warning"] = std::string(env_threads_warning());
  d["thread_creation_failed"] = thread_creation_limit();
  d["fork_single_threaded"] = fork_single_threaded();
  return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "pydsconv's C++ core; use the functions of the pydsconv package instead.";
  m.attr("__version__") = PYDSCONV_VERSION;  // from pyproject.toml (CMakeLists.txt)
  py::module_::import("atexit").attr("register")(py::cpp_function(&on_interpreter_exit));
  m.def("depthwise_forward", &depthwise_fwd);
  // `packed` (a PackedPointwise or None) last and optional.
  m.def("pointwise_forward", &pointwise_fwd, py::arg("x"), py::arg("w"), py::arg("b"),
        py::arg("spatial"), py::arg("layout"), py::arg("act"), py::arg("out"), py::arg("threads"),
        py::arg("packed") = py::none());
  m.def("separable_forward", &separable_fwd, py::arg("x"), py::arg("dw"), py::arg("pw"),
        py::arg("db"), py::arg("pb"), py::arg("spatial"), py::arg("layout"), py::arg("stride"),
        py::arg("dilation"), py::arg("pad_mode"), py::arg("pad"), py::arg("mid_act"),
        py::arg("act"), py::arg("out"), py::arg("threads"), py::arg("packed") = py::none());
  m.def("depthwise_backward",
        [](py::object gy, py::object x, py::object w, int spatial, std::string layout, Stride s,
           Stride d, std::string pm, Pad pad, bool gxw, bool gww, bool gbw, int threads) {
          return backward(OpKind::DepthwiseBackward, gy, x, w, spatial, layout, s, d, pm, pad, gxw,
                          gww, gbw, threads);
        });
  m.def("pointwise_backward", [](py::object gy, py::object x, py::object w, int spatial,
                                 std::string layout, bool gxw, bool gww, bool gbw, int threads) {
    return backward(OpKind::PointwiseBackward, gy, x, w, spatial, layout, {1, 1}, {1, 1}, "valid",
                    {0, 0, 0, 0}, gxw, gww, gbw, threads);
  });
  py::class_<PackedPointwise>(m, "PackedPointwise",
                              "A pointwise weight packed by pydsconv.prepack_pointwise: pass it "
                              "as the weight of the pointwise and separable ops.  Attributes: "
                              "weight (its read-only copy of the weight), isa (the kernel set "
                              "it was packed for).")
      .def_readonly("weight", &PackedPointwise::weight)
      .def_property_readonly("isa", &PackedPointwise::isa)
      .def("__repr__", [](const PackedPointwise& p) {
        return "PackedPointwise(shape=" + std::string(py::str(p.weight.attr("shape"))) +
               ", dtype=" + std::string(py::str(p.weight.dtype())) + ", isa='" + p.isa() + "')";
      });
  m.def("prepack_pointwise", &prepack_pointwise);
  py::class_<Plan, std::shared_ptr<Plan>>(m, "PlanCore", "A compiled network; use pydsconv.Plan.")
      .def_property_readonly("input_shape",
                             [](const Plan& p) { return py::tuple(py::cast(p.input_shape())); })
      .def_property_readonly("output_shape",
                             [](const Plan& p) { return py::tuple(py::cast(p.output_shape())); })
      .def_property_readonly(
          "layout", [](const Plan& p) { return p.layout() == Layout::NCHW ? "NCHW" : "NHWC"; })
      .def_property_readonly("dtype", [](const Plan& p) { return p.f64() ? "float64" : "float32"; })
      .def_property_readonly("num_threads", &Plan::threads)
      .def_property_readonly("arena_bytes", &Plan::arena_bytes)
      .def("steps", &plan_steps)
      .def("run", &plan_run, py::arg("x"), py::arg("out"))
      .def("profile", &plan_profile, py::arg("x"), py::arg("repeats"));
  m.def("compile_plan", &compile_plan, py::arg("specs"), py::arg("input_shape"), py::arg("layout"),
        py::arg("f64"), py::arg("threads"), py::arg("fuse") = Plan::kFuseAuto);
  m.def("read_plan_file", &read_plan, py::arg("path"));
  m.def("cpu_features", &features);
  m.def("set_isa", &set_isa);
  m.def("set_num_threads", &set_num_threads);
  m.def("get_num_threads", &get_num_threads);
  m.def("max_threads", &max_threads);
  // For benchmarks (bench/compare.py) and tests, not the public API: the FMA
  // peak the C++ benchmark binary measures, on `threads` threads, GIL
  // released; and the flops of its loop (which kernel set it runs).
  m.def(
      "fma_peak_gflops",
      [](int threads) {
        double r = 0;
        without_gil([&] { r = fma_peak_gflops(threads); });
        return r;
      },
      py::arg("threads"));
  m.def("fma_probe_flops", &fma_probe_flops, py::arg("iters"));
  // Private, for tests: how many calls took each kernel path (trace.h).
  m.def("_path_counts", [] {
    py::dict d;
    for (int i = 0; i < trace::kPaths; ++i)
      d[trace::path_name(trace::Path(i))] = trace::path_count(trace::Path(i));
    return d;
  });
  m.def("_reset_path_counts", &trace::reset_path_counts);
  // Private, for pydsconv.nn (an activation applied after an op run
  // without one): a = act(a) in place, the bits of the kernels' epilogue.
  // a: a writable C-contiguous float32 or float64 array.
  m.def(
      "_activate",
      [](py::array a, py::object act) {
        const Act ac = parse_act(act, "activation");
        if (!(a.flags() & py::array::c_style) || !a.writeable())
          throw py::value_error("a must be a writable C-contiguous array");
        const int64_t n = static_cast<int64_t>(a.size());
        if (same_dtype<float>(a.dtype())) {
          float* p = static_cast<float*>(a.mutable_data());
          without_gil([&] { kernels<float>().activate(p, n, ac); });
        } else if (same_dtype<double>(a.dtype())) {
          double* p = static_cast<double*>(a.mutable_data());
          without_gil([&] { kernels<double>().activate(p, n, ac); });
        } else {
          throw py::type_error("a must be float32 or float64");
        }
        return a;
      },
      py::arg("a"), py::arg("act"));
}
