// Plan files: a compiled plan's step list (pydsconv.Plan.save) read back
// without Python, for pydsconv-bench --plan and pydsconv.Plan.load.
//
// Format, version 1:
//   bytes 0-7    magic "PYDSPLAN"
//   bytes 8-11   format version, uint32 little-endian (1)
//   bytes 12-15  header length H in bytes, uint32 little-endian
//   bytes 16..   the header: H bytes of ASCII text, one "key value" a line
//   then         the arrays, each at a 64-byte aligned offset from the start
//                of the file, C-order, little-endian, of the plan's dtype
// Header: "dtype float32|float64", "layout NCHW|NHWC", "input_shape N A B C"
// (in that layout), "steps S", then per step the lines "step KIND", "name
// TEXT", "fused TEXT", "stride H W", "dilation H W", "pad_mode MODE", "pad T B
// L R", "mid_act ACT", "act ACT", "skip I" (the earlier step whose input a
// residual step adds, or -1), "arrays K" and K lines "array OFFSET NBYTES
// NDIM DIMS..." or "array none" (an absent bias); "end" closes the header.
// KIND, MODE and ACT are the words compiler.py uses ("none" for no
// activation), kept as text here: the step list stays generic over step
// kinds, and to_specs() maps them to the plan's enums.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "plan.h"

namespace pydsconv {

constexpr char kPlanFileMagic[9] = "PYDSPLAN";
constexpr uint32_t kPlanFileVersion = 1;

// One step as written in the file (text fields as compiler.py spells them).
struct PlanFileStep {
  std::string kind, name, fused, pad_mode, mid_act, act;  // act: "none" for no activation
  std::array<int64_t, 2> stride{{1, 1}}, dilation{{1, 1}};
  std::array<int64_t, 4> pad{{0, 0, 0, 0}};
  int64_t skip = -1;              // compiler.py's 11th spec field: an earlier step's index, or -1
  std::vector<PlanArray> arrays;  // data points into PlanFile::storage; nullptr: none
};

struct PlanFile {
  bool f64 = false;
  Layout layout = Layout::NCHW;
  std::vector<int64_t> input_shape;  // in `layout`
  std::vector<PlanFileStep> steps;
  std::shared_ptr<void> storage;  // the file's bytes, 64-byte aligned
};

// Reads and checks a plan file.  Throws ArgumentError ("plan file PATH: what
// is wrong") for a file that cannot be read, is not a plan file, has another
// version, or is truncated or inconsistent; never reads outside the file.
PlanFile read_plan_file(const std::string& path);

// The steps as the Plan constructor takes them (arrays still point into
// f.storage, which must outlive the call).  Throws ArgumentError naming the
// step for a kind, padding mode or activation this build does not know.
std::vector<StepSpec> to_specs(const PlanFile& f);

}  // namespace pydsconv
