// validate(): the one place where argument rules live.  The rules are
// listed, numbered, in cpp/README.md; the comments below cite them.
#include <climits>
#include <cstdio>
#include <cstdint>
#include <sstream>

#include "problem.h"

namespace pydsconv {

std::string shape_str(const int64_t* shape, int ndim) {
  std::ostringstream s;
  s << "(";
  for (int i = 0; i < ndim; ++i) s << (i ? ", " : "") << shape[i];
  if (ndim == 1) s << ",";
  s << ")";
  return s.str();
}

std::string printable(const char* s, size_t max_chars) {
  std::string out;
  for (; *s && out.size() < max_chars; ++s) {
    const unsigned char c = static_cast<unsigned char>(*s);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

namespace {

[[noreturn]] void fail(const std::string& msg) { throw ArgumentError(msg); }

std::string shp(const TensorArg& t) { return shape_str(t.shape, t.ndim); }

int64_t mul(int64_t a, int64_t b, const char* what) {  // rule 10
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    fail(std::string(what) + " is too large: its size overflows 64-bit indexing");
  return r;
}

// Elements of t, counting empty dimensions as 1 (the other dimensions still
// set strides that must not overflow).
int64_t count(const TensorArg& t) {
  int64_t n = 1;
  for (int i = 0; i < t.ndim; ++i) n = mul(n, t.shape[i] > 0 ? t.shape[i] : 1, t.name);
  return n;
}

// The data-layout dims of x: "(N, C, H, W)" etc.
const char* x_dims(int spatial, Layout l) {
  if (spatial == 2) return l == Layout::NCHW ? "(N, C, H, W)" : "(N, H, W, C)";
  return l == Layout::NCHW ? "(N, C, L)" : "(N, L, C)";
}
const char* layout_name(int spatial, Layout l) {
  if (spatial == 2) return l == Layout::NCHW ? "NCHW" : "NHWC";
  return l == Layout::NCHW ? "NCL" : "NLC";
}

struct XDims {
  int64_t N, C, H, W;
};

XDims check_x(const Request& r) {  // rule 1
  const TensorArg& x = r.x;
  const int want = r.p.spatial + 2;
  if (x.ndim != want)
    fail(std::string(x.name) + " must be a " + std::to_string(want) + "-D array " +
         x_dims(r.p.spatial, r.p.layout) + " for layout='" + layout_name(r.p.spatial, r.p.layout) +
         "', got shape " + shp(x));
  XDims d{};
  d.N = x.shape[0];
  const bool cf = r.p.layout == Layout::NCHW;
  if (r.p.spatial == 2) {
    d.C = cf ? x.shape[1] : x.shape[3];
    d.H = cf ? x.shape[2] : x.shape[1];
    d.W = cf ? x.shape[3] : x.shape[2];
  } else {
    d.C = cf ? x.shape[1] : x.shape[2];
    d.H = 1;
    d.W = cf ? x.shape[2] : x.shape[1];
  }
  for (int i = 0; i < x.ndim; ++i)
    if (x.shape[i] < 0) fail(std::string(x.name) + " has a negative dimension: " + shp(x));
  if (d.C == 0 || d.H == 0 || d.W == 0)
    fail(std::string(x.name) + " must have at least one channel and one pixel " +
         x_dims(r.p.spatial, r.p.layout) + ", got shape " + shp(x));
  count(x);
  return d;
}

// Depthwise weight (C*M, 1, kH, kW) / (C*M, 1, k); returns M.  Rule 2.
int64_t check_dw_weight(const Request& r, int64_t C, int64_t* kh, int64_t* kw) {
  const TensorArg& w = r.dw_weight;
  const int want = r.p.spatial + 2;
  const std::string expect = r.p.spatial == 2 ? "(C*M, 1, kH, kW)" : "(C*M, 1, k)";
  const std::string hint_keras =
      r.p.spatial == 2 ? "; it looks like a Keras/TensorFlow depthwise kernel (kH, kW, C, M): "
                         "convert it with pydsconv.weights.from_keras_depthwise"
                       : "; it looks like a Keras/TensorFlow depthwise kernel (k, C, M): "
                         "convert it with pydsconv.weights.from_keras_depthwise1d";
  const bool torch_ok = w.ndim == want && w.shape[1] == 1 && w.shape[0] > 0 && w.shape[0] % C == 0;
  if (!torch_ok) {
    bool keras = r.p.spatial == 2 ? (w.ndim == 4 && w.shape[2] == C && w.shape[3] >= 1)
                                  : (w.ndim == 3 && w.shape[1] == C && w.shape[2] >= 1);
    std::string msg = std::string(w.name) + " must have shape " + expect +
                      " with C = " + std::to_string(C) + " input channels (PyTorch layout), got " +
                      shp(w);
    fail(keras ? msg + hint_keras : msg);
  }
  *kh = r.p.spatial == 2 ? w.shape[2] : 1;
  *kw = r.p.spatial == 2 ? w.shape[3] : w.shape[2];
  if (*kh < 1 || *kw < 1)
    fail(std::string(w.name) + " must have a kernel of at least 1x1, got shape " + shp(w));
  count(w);
  return w.shape[0] / C;
}

// Pointwise weight (C_out, C_in, 1, 1) / (C_out, C_in, 1) / (C_out, C_in).  Rule 3.
int64_t check_pw_weight(const Request& r, int64_t Cin) {
  const TensorArg& w = r.pw_weight;
  const int full = r.p.spatial + 2;
  const std::string expect = r.p.spatial == 2 ? "(C_out, C_in, 1, 1) or (C_out, C_in)"
                                              : "(C_out, C_in, 1) or (C_out, C_in)";
  bool ok = (w.ndim == 2 || w.ndim == full) && w.shape[0] >= 1 && w.shape[1] == Cin;
  for (int i = 2; ok && i < w.ndim; ++i) ok = w.shape[i] == 1;
  if (!ok) {
    std::string msg = std::string(w.name) + " must have shape " + expect +
                      " with C_in = " + std::to_string(Cin) + " (PyTorch layout), got " + shp(w);
    const bool keras = w.ndim == full && w.shape[full - 2] == Cin && w.shape[0] == 1 &&
                       (full == 3 || w.shape[1] == 1);
    if (keras)
      msg += r.p.spatial == 2 ? "; it looks like a Keras/TensorFlow pointwise kernel "
                                "(1, 1, C_in, C_out): convert it with "
                                "pydsconv.weights.from_keras_pointwise"
                              : "; it looks like a Keras/TensorFlow pointwise kernel "
                                "(1, C_in, C_out): convert it with "
                                "pydsconv.weights.from_keras_pointwise1d";
    fail(msg);
  }
  count(w);
  return w.shape[0];
}

void check_bias(const TensorArg& b, int64_t n) {  // rule 4
  if (!b.present()) return;
  if (b.ndim != 1 || b.shape[0] != n)
    fail(std::string(b.name) + " must be a 1-D array of shape (" + std::to_string(n) + ",), got " +
         shp(b));
}

// Resolves padding for one axis and returns the output size.  Rules 5-7.
int64_t resolve_axis(const Request& r, int axis, int64_t in, int64_t k, int64_t* lo, int64_t* hi) {
  const ConvParams& p = r.p;
  const int64_t s = p.stride[axis], d = p.dilation[axis];
  const int64_t eff = mul(k - 1, d, "dilation") + 1;
  switch (p.pad_mode) {
    case PadMode::Explicit:
      *lo = p.pad[axis * 2];
      *hi = p.pad[axis * 2 + 1];
      break;
    case PadMode::Valid:
      *lo = *hi = 0;
      break;
    case PadMode::Same: {
      const int64_t out = (in + s - 1) / s;
      int64_t total = (out - 1) * s + eff - in;
      if (total < 0) total = 0;
      *lo = total / 2;
      *hi = total - *lo;
      break;
    }
    case PadMode::Causal:
      *lo = eff - 1;
      *hi = 0;
      break;
  }
  const int64_t padded = in + *lo + *hi;
  if (eff > padded) {
    const char* ax = p.spatial == 1 ? "length" : (axis == 0 ? "height" : "width");
    std::ostringstream m;
    m << (r.op == OpKind::Separable ? "depthwise_weight" : "weight") << ": the kernel " << ax << " "
      << k;
    if (d > 1) m << " (dilation " << d << ", effective " << eff << ")";
    m << " is larger than the padded input " << ax << " " << padded << " (" << in << " + padding "
      << *lo << " + " << *hi << ")";
    fail(m.str());
  }
  return (padded - eff) / s + 1;
}

void check_params(const Request& r) {  // rule 5
  const ConvParams& p = r.p;
  const int first = p.spatial == 2 ? 0 : 1;
  for (int a = first; a < 2; ++a) {
    if (p.stride[a] < 1)
      fail("stride must be >= 1 along every axis, got " + std::to_string(p.stride[a]));
    if (p.dilation[a] < 1)
      fail("dilation must be >= 1 along every axis, got " + std::to_string(p.dilation[a]));
  }
  const int64_t kMax = int64_t(1) << 40;  // rule 10: keeps index sums far from overflow
  for (int a = first; a < 2; ++a)
    if (p.stride[a] >= kMax || p.dilation[a] >= kMax)
      fail("stride and dilation must be < 2**40, got stride " + std::to_string(p.stride[a]) +
           ", dilation " + std::to_string(p.dilation[a]));
  if (p.pad_mode == PadMode::Explicit)
    for (int i = first * 2; i < 4; ++i) {
      if (p.pad[i] < 0) fail("padding must be >= 0, got " + std::to_string(p.pad[i]));
      if (p.pad[i] >= kMax) fail("padding must be < 2**40, got " + std::to_string(p.pad[i]));
    }
  if (p.pad_mode == PadMode::Causal && p.spatial != 1)
    fail("padding='causal' is only defined for 1-D ops");
  if (p.spatial == 1 && (p.stride[0] != 1 || p.dilation[0] != 1 || p.pad[0] || p.pad[1]))
    fail("internal: 1-D ops must have unit height parameters");
}

std::vector<int64_t> make_shape(const Request& r, int64_t N, int64_t C, int64_t H, int64_t W) {
  const bool cf = r.p.layout == Layout::NCHW;
  if (r.p.spatial == 2)
    return cf ? std::vector<int64_t>{N, C, H, W} : std::vector<int64_t>{N, H, W, C};
  return cf ? std::vector<int64_t>{N, C, W} : std::vector<int64_t>{N, W, C};
}

void check_same_shape(const TensorArg& t, const std::vector<int64_t>& want, const char* what) {
  bool ok = t.ndim == static_cast<int>(want.size());
  for (int i = 0; ok && i < t.ndim; ++i) ok = t.shape[i] == want[i];
  if (!ok)
    fail(std::string(t.name) + " must have shape " +
         shape_str(want.data(), static_cast<int>(want.size())) + " (" + what + "), got " + shp(t));
}

bool overlaps(const TensorArg& a, const TensorArg& b) {
  if (!a.present() || !b.present() || a.nbytes == 0 || b.nbytes == 0) return false;
  auto a0 = reinterpret_cast<uintptr_t>(a.data), b0 = reinterpret_cast<uintptr_t>(b.data);
  return a0 < b0 + static_cast<uintptr_t>(b.nbytes) && b0 < a0 + static_cast<uintptr_t>(a.nbytes);
}

}  // namespace

Problem validate(const Request& r) {
  Problem pb;
  pb.op = r.op;
  pb.layout = r.p.layout;
  pb.spatial = r.p.spatial;
  check_params(r);
  const bool backward = r.op == OpKind::DepthwiseBackward || r.op == OpKind::PointwiseBackward;
  if (backward && !r.grad_out.present())  // the binding passes None through; never reach a kernel
    fail(std::string(r.grad_out.name) + " is required");
  const XDims d = check_x(r);
  pb.N = d.N;
  pb.C = d.C;
  pb.H = d.H;
  pb.W = d.W;
  const bool has_dw =
      r.op == OpKind::Depthwise || r.op == OpKind::Separable || r.op == OpKind::DepthwiseBackward;
  const bool has_pw =
      r.op == OpKind::Pointwise || r.op == OpKind::Separable || r.op == OpKind::PointwiseBackward;
  pb.Cmid = d.C;
  if (has_dw) {
    int64_t kh, kw, pt, pbot, pl, pr;
    pb.M = check_dw_weight(r, d.C, &kh, &kw);
    pb.Cmid = d.C * pb.M;
    check_bias(r.dw_bias, pb.Cmid);
    pb.OH = r.p.spatial == 2 ? resolve_axis(r, 0, d.H, kh, &pt, &pbot) : (pt = pbot = 0, 1);
    pb.OW = resolve_axis(r, 1, d.W, kw, &pl, &pr);
    (void)pbot;  // the bottom/right padding only shapes OH/OW: kernels
    (void)pr;    // treat every pixel outside the input as zero
    pb.g = DwGeom{d.C,
                  pb.M,
                  d.H,
                  d.W,
                  kh,
                  kw,
                  r.p.stride[0],
                  r.p.stride[1],
                  r.p.dilation[0],
                  r.p.dilation[1],
                  pt,
                  pl,
                  pb.OH,
                  pb.OW};
  } else {
    pb.OH = d.H;
    pb.OW = d.W;
  }
  pb.Cout = pb.Cmid;
  if (has_pw) {
    pb.Cout = check_pw_weight(r, pb.Cmid);
    check_bias(r.pw_bias, pb.Cout);
  }
  pb.out_shape = make_shape(r, d.N, pb.Cout, pb.OH, pb.OW);
  // Rule 10: every tensor we index must fit int64 -- also per image, since
  // with N = 0 the element count is 0 but strides are still computed.
  int64_t n_out = 1;
  for (int64_t v : pb.out_shape) n_out = mul(n_out, v > 0 ? v : 1, "the output");
  mul(n_out, 8, "the output");
  mul(count(r.x), 8, r.x.name);
  if (r.op == OpKind::Separable)
    mul(mul(pb.Cmid, pb.OH * pb.OW, "the intermediate"), 8, "the intermediate");

  if (r.grad_out.present())  // rule 8
    check_same_shape(r.grad_out, pb.out_shape, "the forward output's shape");
  if (r.out.present()) {  // rule 9
    check_same_shape(r.out, pb.out_shape, "the result's shape");
    for (const TensorArg* in :
         {&r.x, &r.dw_weight, &r.dw_bias, &r.pw_weight, &r.pw_bias, &r.grad_out})
      if (overlaps(r.out, *in))
        fail(std::string(r.out.name) + " must not overlap the input '" + in->name + "'");
  }
  return pb;
}

}  // namespace pydsconv
