// pydsconv-bench: times (or, with --check, verifies) the core library's
// forward operators on layer shapes read from a plain-text model file.  It
// links the same library as the Python module, so both measure the same code.
//
// Usage: pydsconv-bench MODEL.txt [flags]    or    pydsconv-bench --peak [--threads T]
//   --threads T   threads per call (default: the library default,
//                 OMP_NUM_THREADS, else all cores)
//   --repeats R   median over R timed runs after one warm-up (default 21)
//   --batch N     overrides the N of every line
//   --nhwc        channels-last data: NHWC (2-D ops), NLC (1-D); default NCHW, NCL
//   --isa NAME    scalar | avx2 | avx512: a kernel set no higher than the CPU's
//                 (or avx512emu, where built with PYDSCONV_EMULATED_AVX512)
//   --offset B    every buffer starts B bytes (0-63, a multiple of 4) past a
//                 64-byte boundary; default 0 (16: where NumPy puts large arrays)
//   --check       no timing: runs every layer with every ISA the CPU has
//                 (avx512emu included where compiled in), in
//                 both layouts, and compares with scalar NCHW; fails if
//                 max|a - b| / max(1, max|b|) > 1e-4 anywhere
//   --json PATH   also writes the results (timing or check) as JSON
//   --peak        no model file: the FMA probe (peak.h) on every ISA the CPU
//                 has, 1 and T threads, with each ISA's ratio to the one below
// Exit status: 0 ok, 1 a --check mismatch, 2 bad arguments or model file.
//
// Model file: one layer a line, blank-separated; '#' starts a comment.
//   sep  N C H W k stride C_out   fused separable 2-D (depthwise kxk, then 1x1)
//   dw   N C H W k stride         depthwise 2-D
//   pw   N C H W C_out            pointwise 2-D
//   sep1 N C L k stride C_out     fused separable 1-D
//   dw1  N C L k stride           depthwise 1-D
// 2-D depthwise: TensorFlow "same" padding; 1-D: causal (k - 1 on the left).
// Every layer runs with biases and ReLU6 (after both stages of sep), float32,
// weights in PyTorch layout, random data from a fixed seed.
//
// Per layer it prints the median time, GFLOP/s (2 flops per multiply-add,
// padding taps counted, bias and activation not), GB/s (compulsory traffic:
// input, weights, biases and output once each) and %peak: GFLOP/s over the
// FMA peak measured here for the ISA and thread count in use (peak.h: the
// kernel table's fma_peak_loop, ~0.2 s a run, median of 5; with T threads,
// T concurrent loops, total flops over wall time).  Caches are warm: a
// layer's buffers are reused across its runs.  Small layers may use fewer
// threads than asked (plan_threads); %peak is still against the T-thread
// peak.
// The header also gives the memory bandwidth measured on T threads (a
// 256 MiB read and copy), the roof for layers whose data do not stay in
// cache (not these warm runs: the Python comparison's batch-8 layers).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "dispatch.h"
#include "ops.h"
#include "peak.h"
#include "plan.h"
#include "plan_file.h"
#include "threads.h"

using namespace pydsconv;

namespace {

constexpr double kTolerance = 1e-4;  // float32, relative to max(1, max|ref|)

// ---------------------------------------------------------------- model file

struct Layer {
  std::string op, where;  // as written; "file:line"
  int spatial = 2;        // 1-D ops: H = 1, W = L
  bool dw = false, pw = false;
  int64_t N = 1, C = 1, H = 1, W = 1, k = 1, s = 1, Co = 0;
};

struct OpSpec {
  const char* name;
  int spatial;
  const char* fields;  // N C H W L k s(tride) O(= C_out)
};
constexpr OpSpec kOps[] = {{"sep", 2, "NCHWksO"},
                           {"dw", 2, "NCHWks"},
                           {"pw", 2, "NCHWO"},
                           {"sep1", 1, "NCLksO"},
                           {"dw1", 1, "NCLks"}};

int64_t& field(Layer& l, char f) {
  switch (f) {
    case 'N':
      return l.N;
    case 'C':
      return l.C;
    case 'H':
      return l.H;
    case 'k':
      return l.k;
    case 's':
      return l.s;
    case 'O':
      return l.Co;
    default:
      return l.W;  // 'W', 'L'
  }
}

std::string syntax(const OpSpec& o) {
  std::string s = o.name;
  for (const char* f = o.fields; *f; ++f)
    s += *f == 's' ? " stride" : *f == 'O' ? " C_out" : std::string(" ") + *f;
  return s;
}

TensorArg tensor(const char* name, std::vector<int64_t> shape) {
  TensorArg t;
  t.name = name;
  t.ndim = static_cast<int>(shape.size());
  for (int i = 0; i < t.ndim; ++i) t.shape[i] = shape[i];
  return t;
}

Request request(const Layer& l, bool nhwc) {
  Request r;
  r.op = l.dw && l.pw ? OpKind::Separable : l.dw ? OpKind::Depthwise : OpKind::Pointwise;
  r.p.spatial = l.spatial;
  r.p.layout = nhwc ? Layout::NHWC : Layout::NCHW;
  r.p.stride[1] = l.s;
  if (l.spatial == 2) r.p.stride[0] = l.s;
  r.p.pad_mode = !l.dw ? PadMode::Valid : l.spatial == 1 ? PadMode::Causal : PadMode::Same;
  if (l.spatial == 2) {
    r.x = nhwc ? tensor("x", {l.N, l.H, l.W, l.C}) : tensor("x", {l.N, l.C, l.H, l.W});
  } else {
    r.x = nhwc ? tensor("x", {l.N, l.W, l.C}) : tensor("x", {l.N, l.C, l.W});
  }
  if (l.dw) {
    r.dw_weight = l.spatial == 2 ? tensor("depthwise_weight", {l.C, 1, l.k, l.k})
                                 : tensor("depthwise_weight", {l.C, 1, l.k});
    r.dw_bias = tensor("depthwise_bias", {l.C});
  }
  if (l.pw) {
    r.pw_weight = tensor("pointwise_weight", {l.Co, l.C});
    r.pw_bias = tensor("pointwise_bias", {l.Co});
  }
  return r;
}

std::vector<Layer> read_model(const std::string& path, int64_t batch) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<Layer> layers;
  int lineno = 0;
  for (std::string line; std::getline(in, line);) {
    ++lineno;
    std::istringstream ls(line.substr(0, line.find('#')));
    Layer l;
    if (!(ls >> l.op)) continue;
    l.where = path + ":" + std::to_string(lineno);
    const OpSpec* spec = nullptr;
    for (const OpSpec& o : kOps)
      if (l.op == o.name) spec = &o;
    if (!spec)
      throw std::runtime_error(l.where + ": unknown op '" + l.op + "' (sep, dw, pw, sep1, dw1)");
    l.spatial = spec->spatial;
    for (const char* f = spec->fields; *f; ++f)
      if (!(ls >> field(l, *f)) || field(l, *f) < 1)
        throw std::runtime_error(l.where + ": expected '" + syntax(*spec) +
                                 "' with positive integers");
    std::string extra;
    if (ls >> extra) throw std::runtime_error(l.where + ": unexpected '" + extra + "'");
    l.dw = std::strchr(spec->fields, 'k') != nullptr;
    l.pw = std::strchr(spec->fields, 'O') != nullptr;
    if (batch > 0) l.N = batch;
    try {
      validate(request(l, false));
    } catch (const ArgumentError& e) {
      throw std::runtime_error(l.where + ": " + e.what());
    }
    layers.push_back(l);
  }
  if (layers.empty()) throw std::runtime_error(path + ": no layers");
  return layers;
}

std::string layer_cols(const Layer& l) {  // "N C H W k s C_out" columns
  char b[96];
  const auto i = [](int64_t v) { return static_cast<long long>(v); };
  std::snprintf(b, sizeof b, "%4lld %5lld %4s %4lld %2lld %2lld %5lld", i(l.N), i(l.C),
                l.spatial == 1 ? "-" : std::to_string(l.H).c_str(), i(l.W), l.dw ? i(l.k) : 1,
                l.dw ? i(l.s) : 1, l.pw ? i(l.Co) : i(l.C));
  return b;
}

std::string layer_json(const Layer& l) {
  std::ostringstream s;
  s << "\"op\": \"" << l.op << "\", \"N\": " << l.N << ", \"C\": " << l.C;
  if (l.spatial == 2)
    s << ", \"H\": " << l.H << ", \"W\": " << l.W;
  else
    s << ", \"L\": " << l.W;
  if (l.dw) s << ", \"k\": " << l.k << ", \"stride\": " << l.s;
  if (l.pw) s << ", \"C_out\": " << l.Co;
  return s.str();
}

// ------------------------------------------------------------ data and runs

// Every buffer starts `g_offset` bytes past a 64-byte boundary (--offset; 0,
// the default, is how pydsconv allocates its own results).  NumPy's large
// arrays start 16 bytes past one, which --offset 16 reproduces: AVX-512
// loads and stores of such data straddle two cache lines.
size_t g_offset = 0;

template <class T>
struct OffsetAlloc {
  typedef T value_type;
  OffsetAlloc() = default;
  template <class U>
  OffsetAlloc(const OffsetAlloc<U>&) {}
  T* allocate(size_t n) {
    char* b = static_cast<char*>(::operator new(n * sizeof(T) + 64, std::align_val_t(64)));
    return reinterpret_cast<T*>(b + g_offset);
  }
  void deallocate(T* p, size_t) {
    ::operator delete(reinterpret_cast<char*>(p) - g_offset, std::align_val_t(64));
  }
  template <class U>
  bool operator==(const OffsetAlloc<U>&) const {
    return true;
  }
  template <class U>
  bool operator!=(const OffsetAlloc<U>&) const {
    return false;
  }
};
typedef std::vector<float, OffsetAlloc<float>> FVec;

struct Rng {  // splitmix64: the same numbers on every platform
  uint64_t s;
  float uniform(float lo, float hi) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return lo + (hi - lo) * static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
  }
};

// (N, C, P) <-> (N, P, C), P = pixels: the data of NCHW/NCL <-> NHWC/NLC.
FVec transpose(const FVec& v, int64_t N, int64_t rows, int64_t cols) {
  FVec t(v.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        t[(n * cols + c) * rows + r] = v[(n * rows + r) * cols + c];
  return t;
}

// One layer's problem and buffers in one layout.
struct Case {
  Problem p;
  FVec x, dw, db, pw, pb, y;

  Case(const Layer& l, bool nhwc, uint64_t seed) : p(validate(request(l, nhwc))) {
    Rng r{seed};  // x is drawn in NCHW order, so both layouts hold the same tensor
    const auto fill = [&r](FVec& v, size_t n, float a) {
      v.resize(n);
      for (float& e : v) e = r.uniform(-a, a);
    };
    const int64_t P = l.H * l.W;
    fill(x, l.N * l.C * P, 1.0f);
    if (nhwc) x = transpose(x, l.N, l.C, P);
    // Weights ~ 5 / sqrt(fan-in): outputs spread over ReLU6's range, both
    // clips (0 and 6) are exercised.
    const int64_t taps = l.k * (l.spatial == 2 ? l.k : 1);
    if (l.dw) fill(dw, l.C * taps, 5.0f / std::sqrt(float(taps)));
    if (l.dw) fill(db, l.C, 0.5f);
    if (l.pw) fill(pw, l.Co * l.C, 5.0f / std::sqrt(float(l.C)));
    if (l.pw) fill(pb, l.Co, 0.5f);
    y.assign(p.N * p.Cout * p.OH * p.OW, 0.0f);
  }

  void run(int threads) {
    switch (p.op) {
      case OpKind::Separable:
        separable_forward<float>(p, x.data(), dw.data(), db.data(), pw.data(), pb.data(),
                                 Act::Relu6, Act::Relu6, y.data(), threads);
        break;
      case OpKind::Depthwise:
        depthwise_forward<float>(p, x.data(), dw.data(), db.data(), Act::Relu6, y.data(), threads);
        break;
      default:
        pointwise_forward<float>(p, x.data(), pw.data(), pb.data(), Act::Relu6, y.data(), threads);
    }
  }

  FVec y_nchw() const {  // the output in NCHW/NCL order
    return p.layout == Layout::NHWC ? transpose(y, p.N, p.OH * p.OW, p.Cout) : y;
  }

  double flops() const {
    const double pix = double(p.N) * p.OH * p.OW;
    double macs = 0;
    if (!dw.empty()) macs += pix * p.C * p.g.kh * p.g.kw;
    if (!pw.empty()) macs += pix * p.Cmid * p.Cout;
    return 2 * macs;
  }

  double bytes() const {
    return sizeof(float) *
           double(x.size() + dw.size() + db.size() + pw.size() + pb.size() + y.size());
  }
};

// ------------------------------------------------------------------- timing

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class F>
double median_seconds(int repeats, const F& f) {
  f();  // warm-up
  std::vector<double> t;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(seconds_since(t0));
  }
  return median(t);
}

// Memory bandwidth on `threads` threads, for the roofline of layers whose
// data do not fit in cache (the Python comparison's batch-8 depthwise, say):
// a 256 MiB buffer read (a sum of 64-bit words) and copied into another
// (read + write counted; the written lines are also read for ownership, so
// the DRAM traffic is higher), each the median of 5 passes after one untimed.
struct Bandwidth {
  double read_gbs, copy_gbs;
};
Bandwidth memory_bandwidth(int threads) {
  constexpr int64_t kWords = int64_t(32) << 20;  // 256 MiB of uint64
  std::vector<uint64_t> a(kWords), b(kWords);
  for (int64_t i = 0; i < kWords; ++i) a[i] = static_cast<uint64_t>(i);
  const int64_t chunks = 4096, per = kWords / chunks;
  uint64_t sink = 0;
  auto read = [&] {
    uint64_t s = 0;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) reduction(^ : s)
#endif
    for (int64_t c = 0; c < chunks; ++c) {
      uint64_t t[4] = {0, 0, 0, 0};
      for (int64_t i = c * per; i < (c + 1) * per; i += 4)
        for (int j = 0; j < 4; ++j) t[j] += a[i + j];
      s ^= t[0] ^ t[1] ^ t[2] ^ t[3];
    }
    sink ^= s;
  };
  auto copy = [&] {
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
    for (int64_t c = 0; c < chunks; ++c)
      std::memcpy(b.data() + c * per, a.data() + c * per, per * sizeof(uint64_t));
  };
  const double bytes = double(kWords) * sizeof(uint64_t);
  Bandwidth bw;
  bw.read_gbs = bytes / median_seconds(5, read) / 1e9;
  bw.copy_gbs = 2 * bytes / median_seconds(5, copy) / 1e9;
  volatile uint64_t keep = sink ^ b[kWords / 2];
  (void)keep;
  return bw;
}

int run_bench(const std::vector<Layer>& layers, bool nhwc, int threads, int repeats,
              std::string* json) {
  const char* isa = isa_name(current_isa());
  const double peak1 = fma_peak_gflops(1), peak = threads > 1 ? fma_peak_gflops(threads) : peak1;
  std::printf("# isa %s, threads %d, layout %s, float32, median of %d, buffers at 64n+%zu bytes\n",
              isa, threads, nhwc ? "NHWC/NLC" : "NCHW/NCL", repeats, g_offset);
  std::printf("# measured %s FMA peak: %.1f GFLOP/s on 1 thread", isa, peak1);
  if (threads > 1) std::printf(", %.1f on %d threads", peak, threads);
  std::printf(" (%%peak is against %.1f)\n", peak);
  const Bandwidth bw = memory_bandwidth(threads);
  std::printf(
      "# measured memory bandwidth on %d thread%s (256 MiB): read %.1f GB/s, "
      "copy %.1f GB/s (read + write)\n",
      threads, threads > 1 ? "s" : "", bw.read_gbs, bw.copy_gbs);
  std::printf("%-5s %4s %5s %4s %4s %2s %2s %5s %10s %8s %8s %6s\n", "op", "N", "C", "H", "W|L",
              "k", "s", "C_out", "time_us", "GFLOP/s", "GB/s", "%peak");
  std::ostringstream js;
  double tt = 0, tf = 0, tb = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    Case c(layers[i], nhwc, 1000 + i);
    const double t = median_seconds(repeats, [&] { c.run(threads); });
    const double gf = c.flops() / t / 1e9, gb = c.bytes() / t / 1e9;
    tt += t;
    tf += c.flops();
    tb += c.bytes();
    std::printf("%-5s %s %10.1f %8.2f %8.2f %6.1f\n", layers[i].op.c_str(),
                layer_cols(layers[i]).c_str(), t * 1e6, gf, gb, 100 * gf / peak);
    js << (i ? ",\n    " : "") << "{" << layer_json(layers[i]) << ", \"time_us\": " << t * 1e6
       << ", \"gflops\": " << gf << ", \"gbs\": " << gb << ", \"pct_peak\": " << 100 * gf / peak
       << "}";
  }
  std::printf("%-5s %-32s %10.1f %8.2f %8.2f %6.1f\n", "total",
              (std::to_string(layers.size()) + " layers").c_str(), tt * 1e6, tf / tt / 1e9,
              tb / tt / 1e9, 100 * tf / tt / 1e9 / peak);
  std::ostringstream o;
  o << "{\"mode\": \"bench\", \"isa\": \"" << isa << "\", \"threads\": " << threads
    << ", \"layout\": \"" << (nhwc ? "NHWC" : "NCHW") << "\", \"repeats\": " << repeats
    << ", \"offset\": " << g_offset << ", \"peak_gflops_1thread\": " << peak1
    << ", \"peak_gflops\": " << peak << ", \"mem_read_gbs\": " << bw.read_gbs
    << ", \"mem_copy_gbs\": " << bw.copy_gbs << ",\n  \"total\": {\"time_us\": " << tt * 1e6
    << ", \"gflops\": " << tf / tt / 1e9 << ", \"gbs\": " << tb / tt / 1e9
    << ", \"pct_peak\": " << 100 * tf / tt / 1e9 / peak << "},\n  \"layers\": [\n    " << js.str()
    << "]}\n";
  *json = o.str();
  return 0;
}

// -------------------------------------------------------------------- check

struct Error {
  double abs = 0, rel = 0;
};

Error compare(const FVec& a, const FVec& ref) {
  double diff = 0, scale = 1;
  for (size_t i = 0; i < a.size(); ++i) {
    double d = std::fabs(double(a[i]) - ref[i]);
    if (std::isnan(d)) d = INFINITY;
    diff = std::max(diff, d);
    scale = std::max(scale, std::fabs(double(ref[i])));
  }
  return {diff, diff / scale};
}

// Every kernel set, lowest first; avx512emu (the AVX-512 kernels built for
// AVX2) only where CMake's PYDSCONV_EMULATED_AVX512 compiled it in.
std::vector<const char*> isa_names_to_run() {
  std::vector<const char*> names = {"scalar", "avx2", "avx512"};
  if (isa_compiled(Isa::Avx512Emu)) names.push_back("avx512emu");
  return names;
}

int run_check(const std::vector<Layer>& layers, int threads, std::string* json) {
  const Isa initial = current_isa();
  std::vector<std::string> isas;
  std::string missing;
  for (const char* name : isa_names_to_run()) {
    try {
      set_isa(name);
      isas.push_back(name);
    } catch (const ArgumentError&) {
      missing += std::string(" ") + name;
    }
  }
  std::printf("# check: float32, threads %d, reference scalar NCHW/NCL, ISAs", threads);
  for (const auto& s : isas) std::printf(" %s", s.c_str());
  if (!missing.empty()) std::printf(" (not on this CPU:%s)", missing.c_str());
  std::printf("\n# error: max|a-b| and max|a-b| / max(1, max|ref|), fail above %g\n", kTolerance);
  std::printf("%-5s %4s %5s %4s %4s %2s %2s %5s %-7s %-6s %10s %10s\n", "op", "N", "C", "H", "W|L",
              "k", "s", "C_out", "isa", "layout", "max_abs", "max_rel");
  std::ostringstream js;
  int compared = 0, failed = 0;
  double worst = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    set_isa("scalar");
    Case ref(layers[i], false, 1000 + i);
    ref.run(threads);
    for (const auto& isa : isas)
      for (bool nhwc : {false, true}) {
        if (isa == "scalar" && !nhwc) continue;
        set_isa(isa);
        Case c(layers[i], nhwc, 1000 + i);
        c.run(threads);
        const Error e = compare(c.y_nchw(), ref.y);
        const bool ok = e.rel <= kTolerance;
        ++compared;
        failed += !ok;
        worst = std::max(worst, e.rel);
        std::printf("%-5s %s %-7s %-6s %10.2e %10.2e%s\n", layers[i].op.c_str(),
                    layer_cols(layers[i]).c_str(), isa.c_str(), nhwc ? "NHWC" : "NCHW", e.abs,
                    e.rel, ok ? "" : "  FAIL");
        js << (compared > 1 ? ",\n    " : "") << "{" << layer_json(layers[i]) << ", \"isa\": \""
           << isa << "\", \"layout\": \"" << (nhwc ? "NHWC" : "NCHW")
           << "\", \"max_abs\": " << e.abs << ", \"max_rel\": " << e.rel
           << ", \"ok\": " << (ok ? "true" : "false") << "}";
      }
  }
  set_isa(isa_name(initial));
  std::printf("# check %s: %d layers, %d comparisons, %d failed, worst relative error %.2e\n",
              failed ? "FAILED" : "passed", int(layers.size()), compared, failed, worst);
  *json = "{\"mode\": \"check\", \"tolerance\": " + std::to_string(kTolerance) +
          ", \"threads\": " + std::to_string(threads) +
          ", \"passed\": " + (failed ? "false" : "true") + ",\n  \"results\": [\n    " + js.str() +
          "]}\n";
  return failed ? 1 : 0;
}

// --------------------------------------------------------------------- peak

// The FMA probe on every kernel set the CPU has, 1 and `threads` threads, each
// with its ratio to the set below.  Speed expectations (each set about twice
// the one below) are read here, never asserted in unit tests.
int run_peak(int threads) {
  const Isa initial = current_isa();
  auto ratio = [](double r, double below) {
    char buf[16] = "-";
    if (below > 0) std::snprintf(buf, sizeof buf, "%.2fx", r / below);
    return std::string(buf);
  };
  std::printf(
      "# FMA peak, float32 GFLOP/s (median of 5 runs of ~0.2 s); ratio: to the set below\n");
  std::printf("%-7s %10s %7s", "isa", "1 thread", "ratio");
  if (threads > 1)
    std::printf(" %10s %7s", (std::to_string(threads) + " threads").c_str(), "ratio");
  std::printf("\n");
  double below1 = 0, belown = 0;
  for (const char* name : isa_names_to_run()) {
    try {
      set_isa(name);
    } catch (const ArgumentError&) {
      std::printf("%-7s (not on this CPU)\n", name);
      continue;
    }
    const double p1 = fma_peak_gflops(1), pn = threads > 1 ? fma_peak_gflops(threads) : p1;
    std::printf("%-7s %10.1f %7s", name, p1, ratio(p1, below1).c_str());
    if (threads > 1) std::printf(" %10.1f %7s", pn, ratio(pn, belown).c_str());
    std::printf("\n");
    below1 = p1;
    belown = pn;
  }
  set_isa(isa_name(initial));
  return 0;
}

// --------------------------------------------------------------------- plan

// A plan file (plan_file.h, written by pydsconv.Plan.save) as a Plan for
// `batch` (0: the saved batch) in the saved layout or, with nhwc, in NHWC.
struct LoadedPlan {
  PlanFile file;
  std::vector<StepSpec> specs;
  std::vector<int64_t> shape;  // the input's, in `layout`
  Layout layout = Layout::NCHW;
};

LoadedPlan load_plan(const std::string& path, int64_t batch, bool nhwc) {
  LoadedPlan lp;
  lp.file = read_plan_file(path);
  if (lp.file.f64) throw std::runtime_error("plan file " + path + ": --plan times float32 plans");
  lp.specs = to_specs(lp.file);
  lp.layout = nhwc ? Layout::NHWC : lp.file.layout;
  const std::vector<int64_t>& d = lp.file.input_shape;
  lp.shape = d;
  if (lp.layout != lp.file.layout)  // the saved shape is NCHW: (N, C, H, W) -> (N, H, W, C)
    lp.shape = {d[0], d[2], d[3], d[1]};
  if (batch > 0) lp.shape[0] = batch;
  return lp;
}

int64_t elems(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t v : shape) n *= v;
  return n;
}

FVec random_input(const std::vector<int64_t>& shape, uint64_t seed) {
  Rng r{seed};
  FVec x(static_cast<size_t>(elems(shape)));
  for (float& e : x) e = r.uniform(-1.0f, 1.0f);
  return x;
}

int run_plan_bench(const std::string& path, int64_t batch, bool nhwc, int threads, int repeats,
                   std::string* json) {
  const LoadedPlan lp = load_plan(path, batch, nhwc);
  const Plan plan(lp.specs, lp.shape, lp.layout, false, threads);
  const FVec x = random_input(lp.shape, 7);
  FVec y(static_cast<size_t>(elems(plan.output_shape())));
  int64_t macs = 0;
  for (const StepInfo& s : plan.steps()) macs += s.macs;
  const double t = median_seconds(repeats, [&] { plan.run(x.data(), y.data()); });
  const std::vector<double> prof = plan.profile(x.data(), y.data(), repeats);
  const double peak = fma_peak_gflops(threads), gf = 2.0 * double(macs) / t / 1e9;
  std::printf("# plan %s: input %s (%s), float32, isa %s, threads %d, median of %d runs\n",
              path.c_str(), shape_str(lp.shape.data(), int(lp.shape.size())).c_str(),
              lp.layout == Layout::NHWC ? "NHWC" : "NCHW", isa_name(current_isa()), threads,
              repeats);
  std::printf("# FMA peak %.1f GFLOP/s; arena %lld bytes; GFLOP/s: 2 flops per MAC of the steps\n",
              peak, static_cast<long long>(plan.arena_bytes()));
  std::printf("%3s %-16s %-34s %-22s %12s %10s %8s %6s\n", "#", "op", "name", "out", "MACs", "us",
              "GFLOP/s", "%peak");
  const size_t n = plan.steps().size();
  std::ostringstream js;
  for (size_t i = 0; i < n; ++i) {
    std::vector<double> ts;
    for (int r = 0; r < repeats; ++r) ts.push_back(prof[size_t(r) * n + i]);
    const double ti = median(ts);
    const StepInfo& s = plan.steps()[i];
    const double g = 2.0 * double(s.macs) / ti / 1e9;
    std::printf("%3zu %-16s %-34.34s %-22s %12lld %10.1f %8.1f %6.1f\n", i, s.op.c_str(),
                s.name.c_str(), shape_str(s.out_shape.data(), int(s.out_shape.size())).c_str(),
                static_cast<long long>(s.macs), ti * 1e6, g, 100 * g / peak);
    js << (i ? ",\n    " : "") << "{\"op\": \"" << s.op << "\", \"macs\": " << s.macs
       << ", \"time_us\": " << ti * 1e6 << "}";
  }
  std::printf("# total: %.3f ms, %lld MACs, %.1f GFLOP/s, %.1f %% of peak\n", t * 1e3,
              static_cast<long long>(macs), gf, 100 * gf / peak);
  std::ostringstream o;
  o << "{\"mode\": \"plan\", \"plan\": \"" << path << "\", \"batch\": " << lp.shape[0]
    << ", \"layout\": \"" << (lp.layout == Layout::NHWC ? "NHWC" : "NCHW") << "\", \"isa\": \""
    << isa_name(current_isa()) << "\", \"threads\": " << threads << ", \"repeats\": " << repeats
    << ", \"peak_gflops\": " << peak << ", \"arena_bytes\": " << plan.arena_bytes()
    << ",\n  \"total\": {\"time_us\": " << t * 1e6 << ", \"macs\": " << macs
    << ", \"gflops\": " << gf << ", \"pct_peak\": " << 100 * gf / peak << "},\n  \"steps\": [\n    "
    << js.str() << "]}\n";
  *json = o.str();
  return 0;
}

// An activation in double, by its definition (the plan's reference).
double act_ref(double v, Act a) {
  const auto relu6 = [](double t) { return std::min(std::max(t, 0.0), 6.0); };
  switch (a) {
    case Act::None:
      return v;
    case Act::Relu:
      return std::max(v, 0.0);
    case Act::Relu6:
      return relu6(v);
    case Act::Hardswish:
      return v * relu6(v + 3) / 6;
    case Act::Hardsigmoid:
      return relu6(v + 3) / 6;
    case Act::Silu:
      return v / (1 + std::exp(-v));
    case Act::Sigmoid:
      return 1 / (1 + std::exp(-v));
  }
  return v;
}

// The reference of --plan --check: the steps one by one as the single ops
// (validate() + the operators of ops.h, NHWC, weights unpacked) on the
// scalar kernels; a standard convolution, global pooling and flatten, which
// have no single op, and residual adds and squeeze-and-excitation, as plain
// loops in double.  Returns NHWC (or (N, F)).
FVec single_ops_chain(const LoadedPlan& lp, const FVec& x_in, int threads) {
  const bool nchw = lp.layout == Layout::NCHW;
  int64_t N = lp.shape[0], H = lp.shape[nchw ? 2 : 1], W = lp.shape[nchw ? 3 : 2],
          C = lp.shape[nchw ? 1 : 3];
  bool flat = false;
  FVec x = nchw ? transpose(x_in, N, C, H * W) : x_in;
  const FVec input = x;
  std::vector<FVec> outs;  // each spec's output, for the residual adds
  const auto data = [](const PlanArray& a) { return static_cast<const float*>(a.data); };
  const auto targ = [](const char* name, const std::vector<int64_t>& shape) {
    TensorArg t;
    t.name = name;
    t.ndim = int(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) t.shape[i] = shape[i];
    return t;
  };
  const auto tensor = [&](const char* name, const PlanArray& a) {
    return a.data ? targ(name, a.shape) : TensorArg{};
  };
  for (const StepSpec& s : lp.specs) {
    Request r;
    r.p = s.geom;
    r.p.spatial = 2;
    r.p.layout = Layout::NHWC;
    r.x = targ("x", {N, H, W, C});
    FVec y;
    switch (s.kind) {
      case StepKind::Depthwise:
      case StepKind::Pointwise:
      case StepKind::Separable: {
        const bool sep = s.kind == StepKind::Separable, dw = s.kind == StepKind::Depthwise;
        r.op = sep ? OpKind::Separable : dw ? OpKind::Depthwise : OpKind::Pointwise;
        if (!dw && !sep) r.p.pad_mode = PadMode::Valid;
        if (dw || sep)
          r.dw_weight = tensor("dw", s.arrays[0]), r.dw_bias = tensor("db", s.arrays[1]);
        if (!dw) {
          const size_t k = sep ? 2 : 0;
          r.pw_weight = tensor("pw", s.arrays[k]), r.pw_bias = tensor("pb", s.arrays[k + 1]);
        }
        const Problem p = validate(r);
        y.assign(static_cast<size_t>(N * p.OH * p.OW * p.Cout), 0.0f);
        if (sep)
          separable_forward<float>(p, x.data(), data(s.arrays[0]), data(s.arrays[1]),
                                   data(s.arrays[2]), data(s.arrays[3]), s.mid_act, s.act, y.data(),
                                   threads);
        else if (dw)
          depthwise_forward<float>(p, x.data(), data(s.arrays[0]), data(s.arrays[1]), s.act,
                                   y.data(), threads);
        else
          pointwise_forward<float>(p, x.data(), data(s.arrays[0]), data(s.arrays[1]), s.act,
                                   y.data(), threads);
        H = p.OH, W = p.OW, C = p.Cout;
        break;
      }
      case StepKind::Conv: {  // direct, in double; the geometry as the depthwise op has it
        const PlanArray& w = s.arrays[0];
        const int64_t co = w.shape[0], kh = w.shape[2], kw = w.shape[3];
        r.op = OpKind::Depthwise;
        r.dw_weight = targ("w", {C, 1, kh, kw});
        const Problem p = validate(r);
        const int64_t pt = p.g.pt, pl = p.g.pl;
        y.assign(static_cast<size_t>(N * p.OH * p.OW * co), 0.0f);
        for (int64_t n = 0; n < N; ++n)
          for (int64_t oh = 0; oh < p.OH; ++oh)
            for (int64_t ow = 0; ow < p.OW; ++ow)
              for (int64_t o = 0; o < co; ++o) {
                double acc = s.arrays[1].data ? data(s.arrays[1])[o] : 0.0;
                for (int64_t c = 0; c < C; ++c)
                  for (int64_t i = 0; i < kh; ++i)
                    for (int64_t j = 0; j < kw; ++j) {
                      const int64_t ih = oh * p.g.sh - pt + i * p.g.dh,
                                    iw = ow * p.g.sw - pl + j * p.g.dw;
                      if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                      acc += double(x[((n * H + ih) * W + iw) * C + c]) *
                             data(w)[((o * C + c) * kh + i) * kw + j];
                    }
                y[((n * p.OH + oh) * p.OW + ow) * co + o] = float(act_ref(acc, s.act));
              }
        H = p.OH, W = p.OW, C = co;
        break;
      }
      case StepKind::Pool: {
        y.assign(static_cast<size_t>(N * C), 0.0f);
        for (int64_t n = 0; n < N; ++n)
          for (int64_t c = 0; c < C; ++c) {
            double acc = 0;
            for (int64_t q = 0; q < H * W; ++q) acc += x[(n * H * W + q) * C + c];
            y[n * C + c] = float(acc / double(H * W));
          }
        H = W = 1, flat = true;
        break;
      }
      case StepKind::Flatten:  // the caller's layout: NCHW flattens (C, H, W)
        y = nchw && H * W > 1 ? transpose(x, N, H * W, C) : x;
        C *= H * W, H = W = 1, flat = true;
        break;
      case StepKind::Linear: {
        r.op = OpKind::Pointwise;
        r.p.pad_mode = PadMode::Valid;
        r.x = targ("x", {N, 1, 1, C});
        r.pw_weight = tensor("w", s.arrays[0]), r.pw_bias = tensor("b", s.arrays[1]);
        const Problem p = validate(r);
        y.assign(static_cast<size_t>(N * p.Cout), 0.0f);
        pointwise_forward<float>(p, x.data(), data(s.arrays[0]), data(s.arrays[1]), s.act, y.data(),
                                 threads);
        C = p.Cout;
        break;
      }
      case StepKind::Add: {
        const FVec& other = s.skip < 0 ? input : outs[size_t(s.skip)];
        y.resize(x.size());
        for (size_t e = 0; e < x.size(); ++e)
          y[e] = float(act_ref(double(x[e]) + double(other[e]), s.act));
        break;
      }
      case StepKind::SqueezeExcite: {  // w1 (Q, C[, 1, 1]), b1, w2 (C, Q[, 1, 1]), b2
        const int64_t Q = s.arrays[0].shape[0], P = H * W;
        y.resize(x.size());
        std::vector<double> mean(static_cast<size_t>(C)), h(static_cast<size_t>(Q));
        for (int64_t n = 0; n < N; ++n) {
          for (int64_t c = 0; c < C; ++c) {
            double acc = 0;
            for (int64_t q = 0; q < P; ++q) acc += x[size_t((n * P + q) * C + c)];
            mean[size_t(c)] = acc / double(P);
          }
          for (int64_t j = 0; j < Q; ++j) {
            double acc = s.arrays[1].data ? data(s.arrays[1])[j] : 0.0;
            for (int64_t c = 0; c < C; ++c)
              acc += double(data(s.arrays[0])[j * C + c]) * mean[size_t(c)];
            h[size_t(j)] = act_ref(acc, s.mid_act);
          }
          for (int64_t c = 0; c < C; ++c) {
            double acc = s.arrays[3].data ? data(s.arrays[3])[c] : 0.0;
            for (int64_t j = 0; j < Q; ++j)
              acc += double(data(s.arrays[2])[c * Q + j]) * h[size_t(j)];
            const double g = act_ref(acc, s.act);
            for (int64_t q = 0; q < P; ++q) {
              const size_t e = size_t((n * P + q) * C + c);
              y[e] = float(double(x[e]) * g);
            }
          }
        }
        break;
      }
    }
    x = std::move(y);
    outs.push_back(x);
  }
  (void)flat;
  return x;
}

int run_plan_check(const std::string& path, int64_t batch, bool nhwc, int threads,
                   std::string* json) {
  const LoadedPlan lp = load_plan(path, batch, nhwc);
  const FVec x = random_input(lp.shape, 7);
  const Isa initial = current_isa();
  set_isa("scalar");
  const FVec ref_nhwc = single_ops_chain(lp, x, threads);
  std::printf(
      "# check plan %s: input %s (%s), threads %d; reference: the single ops chained, "
      "scalar; fail above %g\n",
      path.c_str(), shape_str(lp.shape.data(), int(lp.shape.size())).c_str(),
      lp.layout == Layout::NHWC ? "NHWC" : "NCHW", threads, kTolerance);
  double scale = 0;
  for (float v : ref_nhwc) scale = std::max(scale, std::fabs(double(v)));
  std::printf("# reference: %zu outputs, max|ref| %.4g\n", ref_nhwc.size(), scale);
  std::ostringstream js;
  int compared = 0, failed = 0;
  for (const char* isa : isa_names_to_run()) {
    try {
      set_isa(isa);
    } catch (const ArgumentError&) {
      std::printf("%-9s (not on this CPU)\n", isa);
      continue;
    }
    const Plan plan(lp.specs, lp.shape, lp.layout, false, threads);
    FVec y(static_cast<size_t>(elems(plan.output_shape())));
    plan.run(x.data(), y.data());
    const std::vector<int64_t>& o = plan.output_shape();
    FVec ref = ref_nhwc;  // to the plan's output layout
    if (o.size() == 4 && lp.layout == Layout::NCHW) ref = transpose(ref, o[0], o[2] * o[3], o[1]);
    Error e{INFINITY, INFINITY};
    if (ref.size() == y.size()) e = compare(y, ref);
    const bool ok = e.rel <= kTolerance;
    ++compared;
    failed += !ok;
    std::printf("%-9s max_abs %10.2e max_rel %10.2e%s\n", isa, e.abs, e.rel, ok ? "" : "  FAIL");
    js << (compared > 1 ? ", " : "") << "{\"isa\": \"" << isa << "\", \"max_abs\": " << e.abs
       << ", \"max_rel\": " << e.rel << ", \"ok\": " << (ok ? "true" : "false") << "}";
  }
  set_isa(isa_name(initial));
  std::printf("# check %s: %d ISAs, %d failed\n", failed ? "FAILED" : "passed", compared, failed);
  *json = std::string("{\"mode\": \"plan_check\", \"plan\": \"") + path +
          "\", \"passed\": " + (failed ? "false" : "true") + ", \"results\": [" + js.str() + "]}\n";
  return failed ? 1 : 0;
}

// --------------------------------------------------------------------- main

int64_t parse_int(const std::string& flag, const char* s, int64_t lo = 1) {
  char* end = nullptr;
  const long long v = std::strtoll(s, &end, 10);
  if (end == s || *end || v < lo)
    throw std::runtime_error(flag +
                             (lo > 0 ? " needs a positive integer" : " needs an integer >= 0"));
  return v;
}

constexpr const char* kUsage =
    "usage: pydsconv-bench MODEL.txt [--threads T] [--repeats R] [--batch N] [--nhwc]\n"
    "                      [--isa scalar|avx2|avx512] [--offset B] [--check] [--json PATH]\n"
    "       pydsconv-bench --plan FILE [--batch N] [--threads T] [--repeats R] [--nhwc]\n"
    "                      [--isa NAME] [--check] [--json PATH]\n"
    "       pydsconv-bench --peak [--threads T]\n";

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string file, json_path, plan_path;
    int repeats = 21, threads = 0;
    int64_t batch = 0;
    bool nhwc = false, check = false, peak = false;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      const bool has_value = i + 1 < argc;
      if (a == "-h" || a == "--help") {
        std::printf("%s", kUsage);
        return 0;
      } else if (a == "--nhwc")
        nhwc = true;
      else if (a == "--check")
        check = true;
      else if (a == "--peak")
        peak = true;
      else if (a == "--threads" && has_value)
        threads = int(parse_int(a, argv[++i]));
      else if (a == "--repeats" && has_value)
        repeats = int(parse_int(a, argv[++i]));
      else if (a == "--batch" && has_value)
        batch = parse_int(a, argv[++i]);
      else if (a == "--isa" && has_value)
        set_isa(argv[++i]);
      else if (a == "--plan" && has_value)
        plan_path = argv[++i];
      else if (a == "--json" && has_value)
        json_path = argv[++i];
      else if (a == "--offset" && has_value) {
        const int64_t o = parse_int(a, argv[++i], 0);
        if (o > 63 || o % 4)  // (parse_int: o >= 0)
          throw std::runtime_error("--offset: 0-63 bytes, a multiple of 4, got " +
                                   std::to_string(o));
        g_offset = static_cast<size_t>(o);
      } else if (a[0] != '-' && file.empty())
        file = a;
      else
        throw std::runtime_error("unexpected argument '" + a + "'\n" + kUsage);
    }
    if (peak) return run_peak(threads == 0 ? get_num_threads() : threads);
    if (!plan_path.empty()) {
      if (!file.empty())
        throw std::runtime_error("--plan and a model file: give one\n" + std::string(kUsage));
      if (threads == 0) threads = get_num_threads();
      std::string json;
      const int rc = check ? run_plan_check(plan_path, batch, nhwc, threads, &json)
                           : run_plan_bench(plan_path, batch, nhwc, threads, repeats, &json);
      if (!json_path.empty()) {
        std::ofstream out(json_path);
        if (!(out << json)) throw std::runtime_error("cannot write " + json_path);
      }
      return rc;
    }
    if (file.empty()) throw std::runtime_error(std::string("no model file\n") + kUsage);
    const std::vector<Layer> layers = read_model(file, batch);
    if (threads == 0) threads = get_num_threads();
    std::string json;
    const int rc = check ? run_check(layers, threads, &json)
                         : run_bench(layers, nhwc, threads, repeats, &json);
    if (!json_path.empty()) {
      std::ofstream out(json_path);
      if (!(out << json)) throw std::runtime_error("cannot write " + json_path);
    }
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pydsconv-bench: %s\n", e.what());
    return 2;
  }
}
