#!/usr/bin/env python3
"""Depthwise layers outside MobileNet: pydsconv vs torch.conv2d(groups=C).

Issue 3 asks that shapes the fast paths were not written for (odd channel
counts, 7x7 kernels, dilation, channel multiplier > 1, one channel) stay
within 2x of PyTorch.  For each shape this times pydsconv in NCHW and NHWC
and torch in NCHW and channels_last (``torch.no_grad``), interleaved, at the
same thread count, and prints the medians and the ratio "faster torch /
pydsconv" (> 1: pydsconv faster).  Float32, bias, no activation.

    python3 -m bench.generic_shapes [--threads 1] [--repeats 21]

Needs torch (the CPU wheel is enough).  A benchmark, never a test.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

import pydsconv
from bench.lib.timing import interleaved_medians_ms

# name, N, C, M, H, W, k, stride, dilation, padding
SHAPES = [
    ("C=37 3x3", 4, 37, 1, 56, 56, 3, 1, 1, 1),
    ("7x7 s2", 4, 64, 1, 56, 56, 7, 2, 1, 3),
    ("3x3 dilation 2", 4, 64, 1, 56, 56, 3, 1, 2, 2),
    ("M=2 3x3", 4, 32, 2, 56, 56, 3, 1, 1, 1),
    ("M=3 5x5 s2", 4, 32, 3, 56, 56, 5, 2, 1, 2),
    ("C=1 3x3", 4, 1, 1, 224, 224, 3, 1, 1, 1),
    ("7x7 on 14x14x512", 1, 512, 1, 14, 14, 7, 1, 1, 3),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=21)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pydsconv.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(
        f"threads {args.threads}, median of {args.repeats} interleaved repeats, ms; "
        f"isa {pydsconv.cpu_features()['isa']}"
    )
    print(
        f"{'shape':<18} {'pyds NCHW':>9} {'pyds NHWC':>9} {'torch':>9} {'torch CL':>9}"
        f" {'ratio NCHW':>10} {'ratio NHWC':>10}"
    )
    for name, n, c, m, h, w, k, s, d, p in SHAPES:
        x = rng.random((n, c, h, w), dtype=np.float32)
        wt = rng.random((c * m, 1, k, k), dtype=np.float32)
        b = rng.random(c * m, dtype=np.float32)
        xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        tx, tw, tb = torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(b)
        txc = tx.contiguous(memory_format=torch.channels_last)
        twc = tw.contiguous(memory_format=torch.channels_last)
        kw = dict(stride=s, padding=p, dilation=d)
        runs = {
            "pyds NCHW": lambda: pydsconv.depthwise_conv2d(x, wt, b, **kw),
            "pyds NHWC": lambda: pydsconv.depthwise_conv2d(xh, wt, b, layout="NHWC", **kw),
            "torch": lambda: F.conv2d(tx, tw, tb, groups=c, **kw),
            "torch CL": lambda: F.conv2d(txc, twc, tb, groups=c, **kw),
        }
        with torch.no_grad():
            med = interleaved_medians_ms(runs, args.repeats)
        best = min(med["torch"], med["torch CL"])
        print(
            f"{name:<18} {med['pyds NCHW']:9.3f} {med['pyds NHWC']:9.3f} {med['torch']:9.3f} "
            f"{med['torch CL']:9.3f} {best / med['pyds NCHW']:10.2f} {best / med['pyds NHWC']:10.2f}"
        )


if __name__ == "__main__":
    main()
