// gemm_ab: A/B timing of two versions of the GEMM kernel (cpp/kernels/gemm-inl.h)
// on MobileNetV1's pointwise layers, in one process, for a shared machine.
//
// "base" is a saved copy of gemm-inl.h (e.g. main's), "var" the working
// tree's.  Both are compiled into this one binary, each in its own
// namespace, and called the way pointwise.cpp calls the GEMM on one thread:
// NHWC as row blocks of 72 pixels against B packed once per call; NCHW
// (planes over 64 pixels) per image in column blocks of 256 (7x7 planes run
// as NHWC, the transposes not timed).  Each layer runs base and var
// alternately (ABBA order) and keeps each one's fastest run, timed in the
// thread's CPU time (CLOCK_THREAD_CPUTIME_ID): on a machine shared by other
// processes the wall clock counts their time slices too, the thread's CPU
// time does not.  %peak is against the FMA probe (peak-inl.h), timed the
// same way.  Outputs of base and var are compared bit for bit.
//
// Build (not part of CMake; the flags of one ISA unit, x86-64 Linux):
//   git show main:cpp/kernels/gemm-inl.h > /tmp/base-gemm-inl.h
//   g++ -O3 -std=gnu++17 -DNDEBUG -DVB=64 -mavx512f -mavx2 -mfma -Icpp/kernels -Icpp -I/tmp
//       tools/gemm_ab.cpp -o /tmp/gemm_ab
//   (VB=32 with -mavx2 -mfma for the AVX2 kernels)
// Run: /tmp/gemm_ab [batch=8] [repeats=11] [h|c: NHWC or NCHW only]
//
// Identical base and var read about 2 % apart (var slower: code and buffer
// placement); build base == var once as the control before reading a ratio.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "table.h"

namespace pydsconv {
namespace trace {
uint64_t g_counts[kPaths];  // the kernels' path counters (trace.cpp is not linked)
}
namespace base {
#define PYDSCONV_VEC_BYTES VB
#include "simd-inl.h"

#include "base-gemm-inl.h"
#include "peak-inl.h"
}  // namespace base
namespace var {
// var's own tile defaults, not base's (each header defines them #ifndef)
#undef PYDSCONV_GEMM_MR
#undef PYDSCONV_GEMM_NV
#undef PYDSCONV_GEMM_MC
#undef PYDSCONV_GEMM_NC
#include "simd-inl.h"

#include "gemm-inl.h"
}  // namespace var
}  // namespace pydsconv

using namespace pydsconv;

namespace {

struct Kernel {
  void (*gemm)(const GemmArgs<float>&);
  void (*pack)(int64_t, int64_t, const float*, int64_t, int64_t, int64_t, int64_t, float*);
  int64_t (*pack_elems)(int64_t, int64_t);
  int64_t work;
};

double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

struct Layer {
  int64_t C, H, W, Co;
  int times;  // how often MobileNetV1 has it
};

// As pointwise_forward (NHWC): B packed once, row blocks of 72 pixels.
void run_nhwc(const Kernel& k, int64_t NP, const Layer& l, const float* x, const float* w,
              const float* b, float* y, float* work, float* pb) {
  GemmArgs<float> a{NP, l.Co, l.C, x, l.C, 1, w, 1, l.C, y, l.Co, false, b, 1, Act::Relu6, work};
  a.prefetch_c = NP * l.Co * 4 >= (256 << 10);
  k.pack(l.C, l.Co, w, 1, l.C, 0, l.Co, pb);
  a.packed_b = pb;
  a.pb_npad = k.pack_elems(l.C, l.Co) / l.C;
  for (int64_t m0 = 0; m0 < NP; m0 += 72) {
    GemmArgs<float> s = a;
    s.M = std::min<int64_t>(72, NP - m0);
    s.A = x + m0 * l.C;
    s.C = y + m0 * l.Co;
    k.gemm(s);
  }
}

// As pointwise_forward (NCHW, planes over 64 pixels): per image, column
// blocks of 256 pixels, the weight as A.
void run_nchw(const Kernel& k, int64_t N, const Layer& l, const float* x, const float* w,
              const float* b, float* y, float* work) {
  const int64_t P = l.H * l.W;
  GemmArgs<float> a{l.Co, P, l.C, w, l.C, 1, x, P, 1, y, P, false, b, 0, Act::Relu6, work};
  a.prefetch_c = N * P * l.Co * 4 >= (256 << 10);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t n0 = 0; n0 < P; n0 += 256) {
      GemmArgs<float> s = a;
      s.N = std::min<int64_t>(256, P - n0);
      s.B = x + n * l.C * P + n0;
      s.C = y + n * l.Co * P + n0;
      k.gemm(s);
    }
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t N = argc > 1 ? atoi(argv[1]) : 8;
  const int reps = argc > 2 ? atoi(argv[2]) : 11;
  const char only = argc > 3 ? argv[3][0] : 0;
  const std::vector<Layer> layers = {
      {32, 112, 112, 64, 1}, {64, 56, 56, 128, 1},  {128, 56, 56, 128, 1},
      {128, 28, 28, 256, 1}, {256, 28, 28, 256, 1}, {256, 14, 14, 512, 1},
      {512, 14, 14, 512, 5}, {512, 7, 7, 1024, 1},  {1024, 7, 7, 1024, 1}};
  const Kernel kb{&base::gemm<float>, &base::gemm_pack_b<float>, &base::gemm_pack_b_elems<float>,
                  base::gemm_work_elems<float>()};
  const Kernel kv{&var::gemm<float>, &var::gemm_pack_b<float>, &var::gemm_pack_b_elems<float>,
                  var::gemm_work_elems<float>()};
  double (*volatile probe)(int64_t, float*) = &base::fma_peak_loop<float>;
  float sink;
  double peak = 0;
  for (int i = 0; i < 9; ++i) {
    const double t = cpu_now(), fl = probe(20000000, &sink);
    peak = std::max(peak, fl / (cpu_now() - t));
  }
  std::printf("# VB %d, batch %ld, fastest of %d, thread CPU time; FMA peak %.1f GFLOP/s\n", VB,
              static_cast<long>(N), reps, peak * 1e-9);
  double tot[2][2] = {{0, 0}, {0, 0}}, flops_all = 0;
  bool same = true;
  for (size_t li = 0; li < layers.size(); ++li) {
    const Layer& l = layers[li];
    const int64_t P = l.H * l.W, NP = N * P;
    std::vector<float> x(NP * l.C), w(l.Co * l.C), b(l.Co), y0(NP * l.Co), y1(NP * l.Co);
    std::vector<float> work(std::max(kb.work, kv.work));
    std::vector<float> pb(std::max(kb.pack_elems(l.C, l.Co), kv.pack_elems(l.C, l.Co)));
    for (size_t i = 0; i < x.size(); ++i) x[i] = (i * 7 % 1000) * 1e-3f;
    for (size_t i = 0; i < w.size(); ++i) w[i] = (i * 13 % 1000 - 500) * 1e-4f;
    for (size_t i = 0; i < b.size(); ++i) b[i] = (i % 100) * 1e-3f;
    const double flops = 2.0 * NP * l.C * l.Co;
    flops_all += flops * l.times;
    for (int lay = 0; lay < 2; ++lay) {
      if (only && (only == 'h') != (lay == 0)) continue;
      const bool nhwc = lay == 0 || P <= 64;
      double best[2] = {1e30, 1e30};
      for (int r = 0; r < reps + 1; ++r)
        for (int i = 0; i < 2; ++i) {
          const int v = r % 2 ? 1 - i : i;  // ABBA
          const Kernel& k = v ? kv : kb;
          float* y = v ? y1.data() : y0.data();
          const double t0 = cpu_now();
          if (nhwc)
            run_nhwc(k, NP, l, x.data(), w.data(), b.data(), y, work.data(), pb.data());
          else
            run_nchw(k, N, l, x.data(), w.data(), b.data(), y, work.data());
          if (r) best[v] = std::min(best[v], cpu_now() - t0);  // run 0: warm-up
        }
      if (std::memcmp(y0.data(), y1.data(), y0.size() * sizeof(float))) {
        std::printf("MISMATCH: base and var differ on layer %zu\n", li + 1);
        same = false;
      }
      for (int v = 0; v < 2; ++v) tot[lay][v] += best[v] * l.times;
      std::printf("%s C %4ld HW %5ld C_out %4ld  base %5.1f %%  var %5.1f %%  base/var %.3f\n",
                  lay ? "nchw" : "nhwc", static_cast<long>(l.C), static_cast<long>(P),
                  static_cast<long>(l.Co), 100 * flops / best[0] / peak,
                  100 * flops / best[1] / peak, best[0] / best[1]);
    }
  }
  for (int lay = 0; lay < 2; ++lay)
    if (tot[lay][0] > 0)
      std::printf("%s all 13 layers  base %5.1f %%  var %5.1f %%  base/var %.3f\n",
                  lay ? "nchw" : "nhwc", 100 * flops_all / tot[lay][0] / peak,
                  100 * flops_all / tot[lay][1] / peak, tot[lay][0] / tot[lay][1]);
  return same ? 0 : 1;
}
