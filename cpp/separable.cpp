// Fused separable operator.  The output pixels of each image are cut into
// tiles (on small maps at batch > 1, the pixels of the batch: a tile may
// span images; sep_batch_tiles); a task is (tile, chunk of output channels).  Its thread computes
// the tile's depthwise outputs (all C*M channels) into its own scratch tile, applies mid_act, and
// multiplies the tile by the pointwise weights of its chunk straight into y.  The tile is sized to
// stay in L2, so the intermediate tensor is never written to memory in full.
//
// Tiles depend on the shape only.  When a batch has too few tiles for the
// threads (a batch-1 7x7 or 14x14 layer is one or two tiles), the output
// channels are split instead: each thread then streams only its share of the
// weights, and recomputing the tile's depthwise outputs costs kh*kw/C_out of
// the GEMM (under 2% for MobileNet).  A thread keeps its tile across its
// consecutive tasks (the schedule is static and tile-major), so a tile is
// computed once per thread that needs it.
#include <algorithm>
#include <vector>

#include "arena.h"
#include "dispatch.h"
#include "nonfinite.h"
#include "layout.h"
#include "ops.h"
#include "packed.h"
#include "threads.h"
#include "trace.h"

namespace pydsconv {

namespace {
constexpr int64_t kTileBytes = 256 * 1024;  // depthwise tile: fits L2 with room for weights

// Pixels per tile: as many as fit kTileBytes (at least 8), balanced over the
// image, a multiple of `align` (the GEMM's register block along pixels) when
// that leaves whole tiles; whole rows (a multiple of OW) when `rows`.
int64_t tile_pixels(const Problem& p, int64_t elem, int64_t align, bool rows) {
  const int64_t ohw = p.OH * p.OW;
  int64_t t = kTileBytes / (p.Cmid * elem);
  if (t < 8) t = 8;
  if (rows) {
    const int64_t r = t / p.OW > 0 ? t / p.OW : 1;
    return ceil_div(p.OH, ceil_div(p.OH, r)) * p.OW;
  }
  t = ceil_div(ohw, ceil_div(ohw, t));
  if (t > align) t = ceil_div(t, align) * align;
  return t > ohw ? ohw : t;
}

// Pixels per tile when tiles run across the images of a group (sep_batch_tiles):
// as many as fit `bytes` of depthwise output, balanced over the group's
// `px` pixels, a multiple of `align`.
int64_t batch_tile_pixels(int64_t px, int64_t Cmid, int64_t elem, int64_t align, int64_t bytes) {
  int64_t t = bytes / (Cmid * elem);
  if (t < align) t = align;
  t = ceil_div(px, ceil_div(px, t));
  t = ceil_div(t, align) * align;
  return t > px ? px : t;
}
}  // namespace

template <class T>
static void separable_kernels(const Problem& p, const T* x, const T* dw, const T* db, const T* pw,
                              const T* pb, Act mid_act, Act act, T* y, int threads,
                              const PackedView<T>* pre) {
  if (p.N == 0) return;
  const KernelTable<T>& k = kernels<T>();
  const DwGeom& g = p.g;
  const int64_t HW = g.H * g.W, OHW = g.OH * g.OW, CM = p.Cmid, Co = p.Cout;
  const int64_t taps = g.kh * g.kw;
  const bool nchw = p.layout == Layout::NCHW;
  const int64_t macs = p.N * OHW * CM * (taps + Co);
  const int want = plan_threads(threads, int64_t(1) << 30, macs);
  // NCHW small planes: the depthwise tile computed as NHWC on a
  // channels-last copy of x (the GEMM writes y in NCHW, below).
  const bool via_nhwc = nchw && dw_nchw_via_nhwc(k, g, true);
  const bool mid_nhwc = !nchw || via_nhwc;
  const bool rows_kernel = nchw && !via_nhwc && dw_use_rows_kernel(g);
  // NCHW output: the GEMM is y (co, pixels) = W . tile, W its A (read in
  // place) and the tile its B, whatever the tile's layout (the via-NHWC
  // tile (pixels, C*M) is packed as a transposed operand, in cache), so y
  // is written in place, with no transpose of the output.
  // Tiles are aligned to the GEMM's register block along pixels: MR rows
  // (NHWC), or one vector of columns (NCHW: a panel's last vector is a
  // narrower tile; aligned to whole 2-vector panels, 14x14 split into 128 +
  // 68 pixels, and on 2 threads one waited for the other).
  int64_t tp = tile_pixels(p, sizeof(T), nchw ? k.lanes : k.gemm_mr, rows_kernel);
  // Except where a via-NHWC tile's pixels fill their vectors badly (7x7:
  // 49 of 64 lanes): there the GEMM runs as in NHWC, pixels its rows, into
  // a per-thread tile that is then transposed into y (`flip`).
  const bool flip = via_nhwc && 5 * tp < 4 * (ceil_div(tp, k.lanes) * k.lanes);
  if (flip) tp = tile_pixels(p, sizeof(T), k.gemm_mr, false);
  trace::hit(!nchw         ? trace::SepNhwc
             : via_nhwc    ? trace::SepNchwViaNhwc
             : rows_kernel ? trace::SepNchwRows
                           : trace::SepNchwRow);
  if (flip) trace::hit(trace::SepNchwFlip);
  const bool pix_rows = !nchw || flip;  // the GEMM's rows are pixels
  // Images in groups: all at once, except that the channels-last copy of x
  // is made for at most 1 MiB of input (or one image) at a time (via_group).
  const int64_t gn = via_nhwc ? via_group(p.N, HW * g.C, sizeof(T), kViaCached) : p.N;
  // Small maps at batch > 1: tiles run across the images of a group (their
  // pixels are the GEMM's rows, consecutive in y or in the flipped tile), so
  // that the pointwise weight is streamed once per larger tile, not once
  // per image (sep_batch_tiles).  A tile is then a range of the group's
  // flattened pixels (image-major); otherwise it lies inside one image.
  const bool cross = pix_rows && sep_batch_tiles(gn, OHW * CM * int64_t(sizeof(T)));
  if (cross) {
    trace::hit(trace::SepBatchTiles);
    tp = batch_tile_pixels(gn * OHW, CM, sizeof(T), k.gemm_mr, kSepBatchTileBytes);
  }
  const int64_t tiles_per_image = ceil_div(OHW, tp);
  // Tiles of a group of gi images.
  auto group_tiles = [&](int64_t gi) {
    return cross ? ceil_div(gi * OHW, tp) : gi * tiles_per_image;
  };
  const int64_t tiles = group_tiles(gn);
  // Output-channel chunks: rows of the GEMM's A (NCHW) or columns of B (NHWC).
  const int64_t unit = pix_rows ? k.gemm_nr : k.gemm_mr;
  const int64_t split = balance_split(tiles, want, ceil_div(Co, 4 * unit));
  const int64_t clen = ceil_div(ceil_div(Co, split), unit) * unit, chunks = ceil_div(Co, clen);
  const int nt = plan_threads(threads, tiles * chunks, macs);
  // The GEMM prefetches y's lines when y is too large to be in cache.
  const bool prefetch_y = gemm_prefetch_c<T>(p.N * OHW * Co);

  // The pointwise weight is the GEMM's A, read in place (NCHW), or its B
  // (NHWC): packed once when enough tiles share it (pack_weight_once), else
  // packed by the GEMM block by block into the thread's L2-sized work area
  // (one tile: each weight is used by one task, so the whole packed copy
  // would only add a round trip through memory).  The NHWC depthwise
  // weights are packed by the kernel set (dw_nhwc_pack).  A prepacked
  // weight (`pre`) is used by every tile as it is.
  const bool use_pre = pix_rows && pre;
  const int64_t all_tiles = (p.N / gn) * tiles + (p.N % gn ? group_tiles(p.N % gn) : 0);
  const bool pack_once = pix_rows && !use_pre && pack_weight_once(all_tiles, nt);
  Packed<T> pwp;
  std::vector<T> dwp;
  if (pack_once) {
    trace::hit(trace::WeightPackedOnce);
    pwp = pack_b(k, CM, Co, pw, 1, CM, threads);
  }
  if (mid_nhwc) {
    dwp.resize(static_cast<size_t>(k.dw_nhwc_pack_elems(g)));
    k.dw_nhwc_pack(g, dw, dwp.data());
  }
  Buffer<T> xt(via_nhwc ? gn * HW * g.C : 0);
  // Per thread: the depthwise tile, the GEMM's packing space, then the
  // row kernel's scratch or the flipped GEMM's output tile.
  const int64_t extra = rows_kernel ? k.dw_rows_scratch(g, tp / g.OW) : flip ? tp * clen : 0;
  const int64_t per_thread = tp * CM + k.gemm_work + extra;
  Buffer<T> scratch(nt * per_thread);
  std::vector<int64_t> held(static_cast<size_t>(nt));  // the tile in each thread's scratch

  for (int64_t n0 = 0; n0 < p.N; n0 += gn) {
    const int64_t n1 = std::min(n0 + gn, p.N), gpx = (n1 - n0) * OHW;
    const int64_t tasks = group_tiles(n1 - n0) * chunks;
    if (via_nhwc) nchw_to_nhwc(k, n1 - n0, g.C, HW, x + n0 * g.C * HW, xt.data(), threads);
    const T* xs = via_nhwc ? xt.data() : x + n0 * HW * g.C;  // what the depthwise stage reads
    for (int64_t& h : held) h = -1;
    // At most nt threads, whatever the module default is now: `scratch` and
    // `held` were sized for nt (another Python thread may have called
    // set_num_threads since).
    const int gt = std::min(nt, plan_threads(threads, tasks, macs));
    parallel_for_tid(tasks, gt, [&](int64_t task, int tid) {
      const int64_t tile = task / chunks, co0 = (task % chunks) * clen;
      const int64_t co1 = co0 + clen < Co ? co0 + clen : Co;
      // The tile's pixels [q0, q1) of the group, image-major; in one image
      // (ni, pixels [p0, p1)) unless `cross`.
      const int64_t q0 =
          cross ? tile * tp : (tile / tiles_per_image) * OHW + (tile % tiles_per_image) * tp;
      const int64_t q1 = cross ? std::min(q0 + tp, gpx) : std::min(q0 - q0 % OHW + OHW, q0 + tp);
      const int64_t np = q1 - q0, ni = q0 / OHW,
                    n = n0 + ni;                  // first image: in the group, in the batch
      const int64_t p0 = q0 % OHW, p1 = p0 + np;  // (p1 past OHW only when `cross`)
      T* mid = scratch.data() + tid * per_thread;
      T* work = mid + tp * CM;
      if (held[tid] != tile) {
        held[tid] = tile;
        if (rows_kernel) {  // whole rows [p0 / OW, p1 / OW)
          for (int64_t c = 0; c < CM; ++c)
            k.dw_fwd_nchw_rows(g, xs + (ni * g.C + c / g.M) * HW, dw + c * taps, db ? db[c] : T(0),
                               mid_act, p0 / g.OW, p1 / g.OW, mid + c * np, work + k.gemm_work);
        }
        // Otherwise: walk the tile's pixels row segment by row segment.
        for (int64_t q = rows_kernel ? q1 : q0; q < q1;) {
          const int64_t qi = q / OHW, r = q % OHW;  // image in the group, pixel in it
          const int64_t oh = r / g.OW, ow0 = r % g.OW;
          const int64_t ow1 = ow0 + (q1 - q) < g.OW ? ow0 + (q1 - q) : g.OW;
          if (!mid_nhwc) {
            for (int64_t c = 0; c < CM; ++c)
              k.dw_fwd_nchw_row(g, xs + (qi * g.C + c / g.M) * HW, dw + c * taps, db ? db[c] : T(0),
                                mid_act, oh, ow0, ow1, mid + c * np + (q - q0));
          } else {
            k.dw_fwd_nhwc_row(g, xs + qi * HW * g.C, dwp.data(), db, mid_act, oh, ow0, ow1,
                              mid + (q - q0) * CM);
          }
          q += ow1 - ow0;
        }
      }
      // Pointwise on the tile, output channels [co0, co1).
      const T* bias = pb ? pb + co0 : nullptr;
      if (!pix_rows) {  // y (co, pixels) = W . tile: (C*M, pixels), or (pixels, C*M) via NHWC
        GemmArgs<T> a{co1 - co0,
                      np,
                      CM,
                      pw + co0 * CM,
                      CM,
                      1,
                      mid,
                      mid_nhwc ? 1 : np,
                      mid_nhwc ? CM : 1,
                      y + (n * Co + co0) * OHW + p0,
                      OHW,
                      false,
                      bias,
                      pb ? 0 : -1,
                      act,
                      work};
        a.prefetch_c = prefetch_y;
        k.gemm(a);
      } else {  // y (pixels, co) = tile (pixels, C*M) . W^T: into y (NHWC) or a tile (flip)
        const int64_t cn = co1 - co0;
        T* yt = work + k.gemm_work;
        GemmArgs<T> a{np,
                      cn,
                      CM,
                      mid,
                      CM,
                      1,
                      pw + co0 * CM,
                      1,
                      CM,
                      flip ? yt : y + (n0 * OHW + q0) * Co + co0,
                      flip ? cn : Co,
                      false,
                      bias,
                      pb ? 1 : -1,
                      act,
                      work};
        if (use_pre)
          use_packed_b(a, *pre, co0);
        else if (pack_once)
          use_packed_b(a, pwp, co0);
        a.prefetch_c = !flip && prefetch_y;
        k.gemm(a);
        for (int64_t q = q0; flip && q < q1;) {  // image by image
          const int64_t qn = n0 + q / OHW, r = q % OHW, len = std::min(q1 - q, OHW - r);
          k.transpose(len, cn, yt + (q - q0) * cn, cn, y + (qn * Co + co0) * OHW + r, OHW);
          q += len;
        }
      }
    });
  }
}

template <class T>
void separable_forward(const Problem& p, const T* x, const T* dw, const T* db, const T* pw,
                       const T* pb, Act mid_act, Act act, T* y, int threads,
                       const PackedView<T>* pre) {
  separable_kernels(p, x, dw, db, pw, pb, mid_act, act, y, threads, pre);
  nonfinite::fix_separable_forward(p, dw, y);
}

template void separable_forward<float>(const Problem&, const float*, const float*, const float*,
                                       const float*, const float*, Act, Act, float*, int,
                                       const PackedView<float>*);
template void separable_forward<double>(const Problem&, const double*, const double*, const double*,
                                        const double*, const double*, Act, Act, double*, int,
                                        const PackedView<double>*);

}  // namespace pydsconv
