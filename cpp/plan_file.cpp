// Plan files (plan_file.h): the reader.  Every count, offset and size read
// from the file is checked against the file's length before use, so a
// truncated or corrupt file is an ArgumentError, never an out-of-bounds read.
#include "plan_file.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

#include "problem.h"

namespace pydsconv {

namespace {

constexpr int64_t kAlign = 64;
constexpr size_t kPreamble = 16;
constexpr int kMaxDims = 8;

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw ArgumentError("plan file " + path + ": " + what);
}

uint32_t le32(const unsigned char* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

bool little_endian_host() {
  const uint32_t one = 1;
  unsigned char b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

// The header, line by line, each split into its key and the rest.
class Lines {
 public:
  Lines(const std::string& path, const std::string& text) : path_(path), in_(text) {}

  // The next line, which must start with `key`; returns the rest (after one blank).
  std::string expect(const char* key) {
    std::string line;
    ++line_no_;
    if (!std::getline(in_, line))
      bad(path_, std::string("header ends before its '") + key + "' line (truncated?)");
    const size_t n = std::strlen(key);
    if (line.compare(0, n, key) != 0 || (line.size() > n && line[n] != ' '))
      bad(path_, "header line " + std::to_string(line_no_) + ": expected '" + key + " ...', got '" +
                     line.substr(0, 60) + "'");
    return line.size() > n ? line.substr(n + 1) : std::string();
  }

  // The integers after `key`: exactly `count` of them, or (count < 0) any number.
  std::vector<int64_t> ints(const char* key, int count) {
    const std::string rest = expect(key);
    std::istringstream s(rest);
    std::vector<int64_t> v;
    std::string tok;
    while (s >> tok) {
      char* end = nullptr;
      errno = 0;
      const long long x = std::strtoll(tok.c_str(), &end, 10);
      if (tok.empty() || *end != '\0' || errno == ERANGE)
        bad(path_, std::string("'") + key + "': '" + tok + "' is not an integer");
      v.push_back(x);
    }
    if (count >= 0 && int(v.size()) != count)
      bad(path_, std::string("'") + key + "' needs " + std::to_string(count) + " integers, got '" +
                     rest + "'");
    return v;
  }

  std::string word(const char* key) {
    std::string w = expect(key);
    if (w.empty() || w.find(' ') != std::string::npos)
      bad(path_, std::string("'") + key + "' needs one word, got '" + w + "'");
    return w;
  }

 private:
  const std::string& path_;
  std::istringstream in_;
  int line_no_ = 0;
};

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

}  // namespace

PlanFile read_plan_file(const std::string& path) {
  if (!little_endian_host()) bad(path, "plan files are little-endian; this host is not");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) bad(path, "cannot be opened for reading");
  const std::streamoff end = in.tellg();
  if (end < 0) bad(path, "cannot be read");
  const int64_t size = end;
  in.seekg(0);
  // The whole file in one 64-byte aligned buffer, so aligned offsets stay aligned.
  const size_t alloc = size_t((size + kAlign) / kAlign * kAlign);
  std::shared_ptr<void> storage(std::aligned_alloc(kAlign, alloc), FreeDeleter());
  if (!storage) bad(path, "out of memory reading " + std::to_string(size) + " bytes");
  auto* bytes = static_cast<unsigned char*>(storage.get());
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes), size)) bad(path, "read failed");

  if (size < int64_t(kPreamble) || std::memcmp(bytes, kPlanFileMagic, 8) != 0)
    bad(path, "not a pydsconv plan file (no 'PYDSPLAN' magic at its start)");
  const uint32_t version = le32(bytes + 8);
  if (version != kPlanFileVersion)
    bad(path, "format version " + std::to_string(version) + ", but this build reads version " +
                  std::to_string(kPlanFileVersion));
  const int64_t hlen = le32(bytes + 12);
  if (hlen > size - int64_t(kPreamble))
    bad(path, "truncated: the header needs " + std::to_string(hlen) + " bytes, the file has " +
                  std::to_string(size - int64_t(kPreamble)) + " after the preamble");
  const std::string text(reinterpret_cast<const char*>(bytes + kPreamble), size_t(hlen));
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if ((c < 0x20 && c != '\n') || c >= 0x7f)
      bad(path, "the header is not printable ASCII text (byte " + std::to_string(c) +
                    " at offset " + std::to_string(kPreamble + i) + ")");
  }

  PlanFile f;
  f.storage = storage;
  Lines h(path, text);
  const std::string dtype = h.word("dtype");
  if (dtype != "float32" && dtype != "float64")
    bad(path, "dtype must be float32 or float64, got '" + dtype + "'");
  f.f64 = dtype == "float64";
  const int64_t esize = f.f64 ? 8 : 4;
  const std::string layout = h.word("layout");
  if (layout != "NCHW" && layout != "NHWC")
    bad(path, "layout must be NCHW or NHWC, got '" + layout + "'");
  f.layout = layout == "NHWC" ? Layout::NHWC : Layout::NCHW;
  f.input_shape = h.ints("input_shape", 4);
  for (int64_t d : f.input_shape)
    if (d < 0) bad(path, "input_shape has a negative size");
  const int64_t nsteps = h.ints("steps", 1)[0];
  if (nsteps < 0 || nsteps > hlen) bad(path, "bad step count " + std::to_string(nsteps));
  for (int64_t i = 0; i < nsteps; ++i) {
    PlanFileStep s;
    s.kind = h.word("step");
    s.name = h.expect("name");
    s.fused = h.expect("fused");
    const auto st = h.ints("stride", 2), di = h.ints("dilation", 2);
    s.stride = {st[0], st[1]};
    s.dilation = {di[0], di[1]};
    s.pad_mode = h.word("pad_mode");
    const auto pd = h.ints("pad", 4);
    s.pad = {pd[0], pd[1], pd[2], pd[3]};
    s.mid_act = h.word("mid_act");
    s.act = h.word("act");
    s.skip = h.ints("skip", 1)[0];
    if (s.skip < -1 || s.skip >= i)
      bad(path, "step " + std::to_string(i) + " (" + s.name + "): skip " + std::to_string(s.skip) +
                    " is not -1 or an earlier step");
    const int64_t na = h.ints("arrays", 1)[0];
    if (na < 0 || na > hlen) bad(path, "step " + std::to_string(i) + ": bad array count");
    for (int64_t k = 0; k < na; ++k) {
      PlanArray a;
      const std::string what =
          "step " + std::to_string(i) + " (" + s.name + "), array " + std::to_string(k) + ": ";
      std::string rest = h.expect("array");
      if (rest == "none") {
        s.arrays.push_back(a);
        continue;
      }
      std::istringstream rs(rest);
      std::vector<int64_t> v;
      long long x;
      while (rs >> x) v.push_back(x);
      if (!rs.eof() || v.size() < 3 || v[2] < 0 || v[2] > kMaxDims || int64_t(v.size()) != 3 + v[2])
        bad(path, what + "expected 'array OFFSET NBYTES NDIM DIMS...' or 'array none', got '" +
                      rest + "'");
      const int64_t off = v[0], nbytes = v[1];
      int64_t elems = 1;
      for (int64_t d = 0; d < v[2]; ++d) {
        const int64_t dim = v[size_t(3 + d)];
        if (dim < 0 || (dim > 0 && elems > std::numeric_limits<int64_t>::max() / 8 / dim))
          bad(path, what + "bad dimension " + std::to_string(dim));
        elems *= dim;
        a.shape.push_back(dim);
      }
      if (nbytes != elems * esize)
        bad(path, what + std::to_string(nbytes) + " bytes do not hold " + std::to_string(elems) +
                      " " + dtype + " elements");
      if (off % kAlign != 0 || off < int64_t(kPreamble) + hlen)
        bad(path, what + "offset " + std::to_string(off) +
                      " is not 64-byte aligned or lies inside the header");
      if (off > size || nbytes > size - off)
        bad(path, what + "truncated: bytes " + std::to_string(off) + "-" +
                      std::to_string(off + nbytes) + " lie past the end of the file (" +
                      std::to_string(size) + " bytes)");
      a.data = bytes + off;
      s.arrays.push_back(std::move(a));
    }
    f.steps.push_back(std::move(s));
  }
  h.expect("end");
  return f;
}

namespace {

StepKind kind_of(const PlanFileStep& s, size_t i) {
  StepKind kind = StepKind::Conv;
  if (!step_kind_from_word(s.kind, &kind))
    throw ArgumentError("plan file step " + std::to_string(i) + " (" + s.name + "): step kind '" +
                        s.kind + "' is not known to this build");
  return kind;
}

Act act_of(const std::string& a, const PlanFileStep& s, size_t i) {
  Act act = Act::None;
  if (a == "none" || act_from_word(a, &act)) return act;
  throw ArgumentError("plan file step " + std::to_string(i) + " (" + s.name + "): activation '" +
                      a + "' is not known to this build");
}

PadMode pad_mode_of(const PlanFileStep& s, size_t i) {
  if (s.pad_mode == "same") return PadMode::Same;
  if (s.pad_mode == "valid") return PadMode::Valid;
  if (s.pad_mode == "explicit") return PadMode::Explicit;
  throw ArgumentError("plan file step " + std::to_string(i) + " (" + s.name + "): pad_mode '" +
                      s.pad_mode + "' is not 'same', 'valid' or 'explicit'");
}

}  // namespace

std::vector<StepSpec> to_specs(const PlanFile& f) {
  std::vector<StepSpec> out;
  for (size_t i = 0; i < f.steps.size(); ++i) {
    const PlanFileStep& s = f.steps[i];
    StepSpec sp;
    sp.kind = kind_of(s, i);
    sp.name = s.name;
    sp.fused = s.fused;
    sp.geom.spatial = 2;
    sp.geom.layout = Layout::NHWC;
    for (int k = 0; k < 2; ++k) {
      sp.geom.stride[k] = s.stride[size_t(k)];
      sp.geom.dilation[k] = s.dilation[size_t(k)];
    }
    for (int k = 0; k < 4; ++k) sp.geom.pad[k] = s.pad[size_t(k)];
    sp.geom.pad_mode = pad_mode_of(s, i);
    sp.mid_act = act_of(s.mid_act, s, i);
    sp.act = act_of(s.act, s, i);
    sp.arrays = s.arrays;
    sp.skip = s.skip;  // checked against the step count when read
    out.push_back(std::move(sp));
  }
  return out;
}

}  // namespace pydsconv
