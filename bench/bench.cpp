// pydsconv-bench: times the core library's operators on layer shapes read
// from a plain-text model file (see bench/models/*.txt), one line a layer:
//   sep N C H W k stride C_out     fused separable (depthwise + pointwise)
//   dw  N C H W k stride           depthwise only
//   pw  N C H W C_out              pointwise only
// Layout NCHW unless --nhwc; float32; threads from --threads (default: the
// library default).  Prints per layer the median time over --repeats runs,
// GFLOP/s (2 flops per multiply-add) and GB/s (compulsory traffic: inputs,
// weights, outputs once).  Same library as the Python module.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "dispatch.h"
#include "ops.h"
#include "threads.h"

using namespace pydsconv;

namespace {

struct Layer {
  std::string op;
  int64_t N = 1, C = 1, H = 1, W = 1, k = 1, s = 1, Co = 1;
};

TensorArg tensor(const char* name, std::vector<int64_t> shape) {
  TensorArg t;
  t.name = name;
  t.ndim = static_cast<int>(shape.size());
  for (int i = 0; i < t.ndim; ++i) t.shape[i] = shape[i];
  return t;
}

template <class F>
double median_seconds(int repeats, const F& f) {
  f();  // warm-up
  std::vector<double> t;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string file;
  int repeats = 21, threads = 0;
  bool nhwc = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--nhwc") nhwc = true;
    else if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--repeats" && i + 1 < argc) repeats = std::atoi(argv[++i]);
    else if (a == "--isa" && i + 1 < argc) set_isa(argv[++i]);
    else file = a;
  }
  if (file.empty()) {
    std::fprintf(stderr, "usage: pydsconv-bench MODEL.txt [--nhwc] [--threads N] [--repeats R] [--isa NAME]\n");
    return 2;
  }
  std::ifstream in(file);
  if (!in) {
    std::fprintf(stderr, "cannot open %s\n", file.c_str());
    return 2;
  }
  std::vector<Layer> layers;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    Layer l;
    ls >> l.op >> l.N >> l.C >> l.H >> l.W;
    if (l.op == "sep") ls >> l.k >> l.s >> l.Co;
    else if (l.op == "dw") ls >> l.k >> l.s;
    else if (l.op == "pw") ls >> l.Co;
    else continue;
    layers.push_back(l);
  }
  const int nt = threads > 0 ? threads : get_num_threads();
  std::printf("# isa %s, threads %d, layout %s, float32, median of %d\n", isa_name(current_isa()),
              nt, nhwc ? "NHWC" : "NCHW", repeats);
  std::printf("%-4s %5s %5s %4s %4s %2s %2s %5s %10s %9s %8s\n", "op", "N", "C", "H", "W", "k",
              "s", "C_out", "time_us", "GFLOP/s", "GB/s");
  double total_t = 0, total_flop = 0;
  for (const Layer& l : layers) {
    Request r;
    r.p.layout = nhwc ? Layout::NHWC : Layout::NCHW;
    r.p.stride[0] = r.p.stride[1] = l.s;
    r.p.pad_mode = l.op == "pw" ? PadMode::Valid : PadMode::Same;
    r.op = l.op == "sep" ? OpKind::Separable : l.op == "dw" ? OpKind::Depthwise : OpKind::Pointwise;
    r.x = nhwc ? tensor("x", {l.N, l.H, l.W, l.C}) : tensor("x", {l.N, l.C, l.H, l.W});
    if (l.op != "pw") r.dw_weight = tensor("weight", {l.C, 1, l.k, l.k});
    if (l.op != "dw") r.pw_weight = tensor("weight", {l.Co, l.C});
    const Problem p = validate(r);
    std::vector<float> x(l.N * l.C * l.H * l.W, 0.5f), dw(l.C * l.k * l.k, 0.1f),
        pw(l.Co * l.C, 0.01f), y(p.N * p.Cout * p.OH * p.OW);
    double t;
    if (l.op == "sep")
      t = median_seconds(repeats, [&] {
        separable_forward<float>(p, x.data(), dw.data(), nullptr, pw.data(), nullptr, Act::Relu6,
                                 Act::Relu6, y.data(), threads);
      });
    else if (l.op == "dw")
      t = median_seconds(repeats, [&] {
        depthwise_forward<float>(p, x.data(), dw.data(), nullptr, Act::None, y.data(), threads);
      });
    else
      t = median_seconds(repeats, [&] {
        pointwise_forward<float>(p, x.data(), pw.data(), nullptr, Act::None, y.data(), threads);
      });
    const double pix = double(p.N) * p.OH * p.OW;
    double macs = 0;
    if (l.op != "pw") macs += pix * l.C * l.k * l.k;
    if (l.op != "dw") macs += pix * l.C * l.Co;
    const double bytes = 4.0 * (x.size() + y.size() + (l.op != "pw" ? dw.size() : 0) +
                                (l.op != "dw" ? pw.size() : 0));
    total_t += t;
    total_flop += 2 * macs;
    std::printf("%-4s %5lld %5lld %4lld %4lld %2lld %2lld %5lld %10.1f %9.2f %8.2f\n", l.op.c_str(),
                (long long)l.N, (long long)l.C, (long long)l.H, (long long)l.W, (long long)l.k,
                (long long)l.s, (long long)(l.op == "dw" ? l.C : l.Co), t * 1e6, 2 * macs / t / 1e9,
                bytes / t / 1e9);
  }
  std::printf("# total %.1f us, %.2f GFLOP/s\n", total_t * 1e6, total_flop / total_t / 1e9);
  return 0;
}
