#!/usr/bin/env python3
"""What a compiled plan saves: the MobileNetV1 body (13 blocks, weights from
the peers' body_weights.npz) as one ``pydsconv.nn.compile`` plan against the
same body chained op by op from Python (``separable_conv2d`` per block, NHWC,
pointwise weights prepacked), alternated in one process, for each batch size
and thread count.  Prints the medians and their ratio (chain / plan); first
checks that both give the same bits.

    python3 -m bench.plan_body [--batches 1 8] [--threads 1 2] [--repeats 11] \\
        [--weights /work/shared/peers/body_weights.npz] [--profile]

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--profile", action="store_true", help="per-step medians of each plan")
    args = ap.parse_args()
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
            if args.profile:
                for i, s in enumerate(plan.profile(x, repeats=args.repeats)):
                    print(
                        f"  {i:2d} {s['op']:<10} {str(s['out_shape']):<20} "
                        f"{s['seconds'] * 1e3:8.3f} ms  {s['macs'] / s['seconds'] / 1e9:6.1f} GMAC/s"
                    )


if __name__ == "__main__":
    main()
