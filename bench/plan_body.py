#!/usr/bin/env python3
"""What a compiled plan saves: the MobileNetV1 body (13 blocks, weights from
the peers' body_weights.npz) as one ``pydsconv.nn.compile`` plan against the
same body chained op by op from Python (``separable_conv2d`` per block, NHWC,
pointwise weights prepacked), alternated in one process, for each batch size
and thread count, and the plan with banded chains (``fuse=True``, the
default) against the same plan unfused (``fuse=False``).  Prints the
medians, their ratios (chain / plan, unfused / fused) and each plan's % of
the measured FMA peak (2 flops a MAC); first checks that all give the same
bits.

``--v2`` times MobileNetV2-like chains instead (1x1 expand 6x, relu6 ->
3x3 depthwise, relu6 -> 1x1 project; 24 channels at 56x56 and 16 at
112x112, as in MobileNetV2), fused against unfused.

    python3 -m bench.plan_body [--batches 1 8] [--threads 1 2] [--repeats 11] \\
        [--weights /work/shared/peers/body_weights.npz] [--profile] [--v2]

``--profile`` also prints each plan's per-step medians (Plan.profile).

A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import pydsconv
from bench.lib.timing import interleaved_medians_ms
from pydsconv import nn

WEIGHTS = "/work/shared/peers/body_weights.npz"


def load_body(path):
    """[(stride, dw, db, pw, pb)] for the 13 blocks, and (C, H, W) of the input."""
    d = np.load(path)
    blocks = [
        (
            int(s),
            *(
                np.ascontiguousarray(d[f"b{i:02d}_{k}"], np.float32)
                for k in ("dw", "db", "pw", "pb")
            ),
        )
        for i, s in enumerate(d["strides"], start=1)
    ]
    return blocks, tuple(int(v) for v in d["input_chw"])


def body_model(blocks):
    """The body as a pydsconv.nn.Sequential of SeparableConv2d (NHWC, eval)."""
    layers = []
    for s, dw, db, pw, pb in blocks:
        layer = nn.SeparableConv2d(
            dw.shape[0],
            pw.shape[0],
            3,
            stride=s,
            padding="same",
            mid_activation="relu6",
            activation="relu6",
            layout="NHWC",
        )
        layer.depthwise.weight.data[...] = dw
        layer.depthwise.bias.data[...] = db
        layer.pointwise.weight.data[...] = pw
        layer.pointwise.bias.data[...] = pb
        layers.append(layer)
    return nn.Sequential(*layers).eval()


def chain(blocks, x, threads):
    """The body op by op from Python, each pointwise weight prepacked once."""
    packed = [pydsconv.prepack_pointwise(b[3]) for b in blocks]

    def run():
        y = x
        for (s, dw, db, _, pb), pw in zip(blocks, packed):
            y = pydsconv.separable_conv2d(
                y,
                dw,
                pw,
                db,
                pb,
                stride=s,
                padding="same",
                layout="NHWC",
                mid_activation="relu6",
                activation="relu6",
                num_threads=threads,
            )
        return y

    return run


_PEAKS = {}


def pct_peak(plan, ms, threads):
    """% of the FMA peak (probed once per thread count, 2 flops a MAC)."""
    if threads not in _PEAKS:
        _PEAKS[threads] = pydsconv._core.fma_peak_gflops(threads)
    macs = sum(s["macs"] for s in plan.steps())
    return 100 * 2 * macs / (ms * 1e-3) / (_PEAKS[threads] * 1e9)


def v2_chain(c, hw, dtype=np.float32):
    e = 6 * c
    kw = dict(layout="NHWC", dtype=dtype)
    return nn.Sequential(
        nn.PointwiseConv2d(c, e, activation="relu6", rng=1, **kw),
        nn.DepthwiseConv2d(e, kernel_size=3, padding="same", activation="relu6", rng=2, **kw),
        nn.PointwiseConv2d(e, c, rng=3, **kw),
    ).eval()


def fused_vs_unfused(model, x, t, repeats, label):
    fused = nn.compile(model, x.shape, layout="NHWC", num_threads=t)
    unfused = nn.compile(model, x.shape, layout="NHWC", num_threads=t, fuse=False)
    if not np.array_equal(fused(x), unfused(x)):
        sys.exit("the fused and the unfused plan gave different results")
    med = interleaved_medians_ms(
        {"fused": lambda: fused(x), "unfused": lambda: unfused(x)}, repeats
    )
    print(
        f"{label}, {t} thread(s): unfused {med['unfused']:.2f} "
        f"({pct_peak(unfused, med['unfused'], t):.0f} % peak), fused {med['fused']:.2f} "
        f"({pct_peak(fused, med['fused'], t):.0f} % peak); unfused/fused "
        f"{med['unfused'] / med['fused']:.3f}"
    )
    for s in fused.steps():
        if s["op"] == "banded":
            print(f"    {s['fused']}")
    return fused


def main_v2(args):
    print(
        f"MobileNetV2-like chains, NHWC float32, isa {pydsconv.cpu_features()['isa']}, "
        f"median of {args.repeats} alternated runs (ms)"
    )
    for c, hw in ((24, 56), (16, 112)):
        model = v2_chain(c, hw)
        for n in args.batches:
            x = np.random.default_rng(1).standard_normal((n, hw, hw, c)).astype(np.float32)
            for t in args.threads:
                fused_vs_unfused(
                    model, x, t, args.repeats, f"{c}->{6 * c}->{c} at {hw}x{hw}, batch {n}"
                )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--profile", action="store_true", help="per-step medians of each plan")
    ap.add_argument("--v2", action="store_true", help="MobileNetV2-like chains, fused vs unfused")
    args = ap.parse_args()
    if args.v2:
        return main_v2(args)
    blocks, (c, h, w) = load_body(args.weights)
    model = body_model(blocks)
    print(
        f"MobileNetV1 body, NHWC float32, isa {pydsconv.cpu_features()['isa']}, "
        f"median of {args.repeats} alternated runs (ms)"
    )
    for n in args.batches:
        x = np.random.default_rng(1).standard_normal((n, h, w, c)).astype(np.float32)
        for t in args.threads:
            plan = nn.compile(model, x.shape, layout="NHWC", num_threads=t)
            out = np.empty(plan.output_shape, np.float32)
            runs = {
                "chain": chain(blocks, x, t),
                "plan": lambda: plan(x),
                "plan_out": lambda: plan(x, out=out),
            }
            if not np.array_equal(runs["chain"](), runs["plan"]()):
                sys.exit("the plan and the op-by-op chain gave different results")
            med = interleaved_medians_ms(runs, args.repeats)
            print(
                f"batch {n}, {t} thread(s): chain {med['chain']:.2f}, plan {med['plan']:.2f}, "
                f"plan out= {med['plan_out']:.2f}; chain/plan {med['chain'] / med['plan']:.3f}, "
                f"chain/plan out= {med['chain'] / med['plan_out']:.3f}"
            )
            fused_vs_unfused(model, x, t, args.repeats, f"  plan, batch {n}")
            if args.profile:
                for i, s in enumerate(plan.profile(x, repeats=args.repeats)):
                    print(
                        f"  {i:2d} {s['op']:<10} {str(s['out_shape']):<20} "
                        f"{s['seconds'] * 1e3:8.3f} ms  {s['macs'] / s['seconds'] / 1e9:6.1f} GMAC/s"
                    )


if __name__ == "__main__":
    main()
