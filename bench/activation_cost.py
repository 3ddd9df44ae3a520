#!/usr/bin/env python3
"""What each fused activation costs: one pointwise layer (N, H, W, C_in) ->
C_out, NHWC, pydsconv alone, with every ``activation=`` alternated in one
process (so the machine's drift hits all alike).  Prints each median and its
ratio to relu6.

    python3 -m bench.activation_cost [--isa avx2] [--threads 1] \\
        [--shape 1 28 28 256] [--cout 256] [--dtype float32] [--repeats 21]

A benchmark, never a test.
"""

from __future__ import annotations

import argparse

import numpy as np

import pydsconv
from bench.lib.timing import interleaved_medians_ms

ACTS = [None, "relu", "relu6", "hardswish", "hardsigmoid", "silu", "sigmoid"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isa", default=None, help="kernel set (default: the best)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shape", type=int, nargs=4, default=[1, 28, 28, 256])
    ap.add_argument("--cout", type=int, default=256)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--repeats", type=int, default=21)
    args = ap.parse_args()
    if args.isa:
        pydsconv._core.set_isa(args.isa)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(args.shape).astype(args.dtype)
    w = (rng.standard_normal((args.cout, args.shape[3])) * 0.1).astype(args.dtype)
    b = rng.standard_normal(args.cout).astype(args.dtype)
    out = np.empty(tuple(args.shape[:3]) + (args.cout,), args.dtype)

    def run(act):
        return lambda: pydsconv.pointwise_conv2d(
            x, w, b, layout="NHWC", activation=act, out=out, num_threads=args.threads
        )

    med = interleaved_medians_ms({str(a): run(a) for a in ACTS}, args.repeats)
    print(
        f"{pydsconv.cpu_features()['isa']}: pointwise {tuple(args.shape)} -> {args.cout}, "
        f"{args.dtype}, NHWC, {args.threads} thread(s), median of {args.repeats}"
    )
    for a in ACTS:
        print(f"  {str(a):12s} {med[str(a)]:8.3f} ms  {med[str(a)] / med['relu6']:.3f} x relu6")


if __name__ == "__main__":
    main()
