// What a call asks for (Request) and what validate() resolves it to (Problem).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/table.h"

namespace pydsconv {

enum class Layout { NCHW, NHWC };  // 1-D: NCL is NCHW with H = 1, NLC is NHWC
enum class PadMode { Explicit, Same, Valid, Causal };
enum class OpKind { Depthwise, Pointwise, Separable, DepthwiseBackward, PointwiseBackward };

// One array argument as the caller passed it: its user-facing name, shape
// and the bytes it occupies (for the overlap check).  ndim < 0: not given.
struct TensorArg {
  const char* name = "";
  int ndim = -1;
  int64_t shape[8] = {0};
  const void* data = nullptr;
  int64_t nbytes = 0;
  bool present() const { return ndim >= 0; }
};

struct ConvParams {
  int spatial = 2;  // 2: (H, W) ops, 1: (L) ops
  Layout layout = Layout::NCHW;
  int64_t stride[2] = {1, 1};  // (h, w); 1-D ops use index 1
  int64_t dilation[2] = {1, 1};
  PadMode pad_mode = PadMode::Explicit;
  int64_t pad[4] = {0, 0, 0, 0};  // top, bottom, left, right (explicit mode)
};

struct Request {
  OpKind op = OpKind::Depthwise;
  ConvParams p;
  // Slots; which are required depends on op (see cpp/README.md).
  TensorArg x, dw_weight, dw_bias, pw_weight, pw_bias, grad_out, out;
};

// Everything an operator needs, resolved and checked.
struct Problem {
  OpKind op;
  Layout layout;
  int spatial;
  int64_t N = 0, C = 0, M = 1, Cmid = 0, Cout = 0;
  DwGeom g{};  // depthwise geometry (depthwise/separable ops)
  int64_t H = 0, W = 0, OH = 0, OW = 0;
  std::vector<int64_t> out_shape;  // forward result shape, caller's rank
};

// Checks every rule of cpp/README.md; throws ArgumentError (a
// std::invalid_argument, ValueError in Python) naming the argument and the
// expected shape.  Writes nothing.
Problem validate(const Request& r);

struct ArgumentError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

std::string shape_str(const int64_t* shape, int ndim);

// An environment variable's bytes as printable ASCII, others as \xNN, at
// most max_chars: any bytes may come from the environment, and the value is
// shown in a warning and read as a Python str (PYDSCONV_ISA, OMP_NUM_THREADS).
std::string printable(const char* s, size_t max_chars);

}  // namespace pydsconv
