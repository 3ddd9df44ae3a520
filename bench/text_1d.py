#!/usr/bin/env python3
"""1-D separable layers (text / audio): pydsconv vs PyTorch conv1d.

Issue 3 asks that the 1-D ops be fast on text-like shapes (C 256-1024,
L 512, k 3-7, causal).  This times the layers of ``bench/models/text_1d.txt``
(the same file the C++ binary reads) in pydsconv, NCL and NLC, against
PyTorch (``torch.no_grad``): ``F.conv1d(groups=C)`` after a left ``F.pad``
(causal), then the 1x1 ``F.conv1d``, in NCL and in channels-last (the NLC
data viewed as NCL, which PyTorch runs through the same path).  Float32,
biases, ReLU after each stage on the ``sep1`` lines (``mid_activation`` and
``activation``).  Interleaved, same thread count, median of the repeats;
every result is checked against PyTorch before timing.  "torch/pyds" > 1
means pydsconv is faster than the faster PyTorch run.

    python3 -m bench.text_1d [--threads 1] [--repeats 21] [--batch 1]

Needs torch (the CPU wheel is enough).  A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

import pydsconv
from bench.lib.timing import interleaved_medians_ms

MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models", "text_1d.txt")


def read_model(path):
    """(op, N, C, L, k, stride, C_out or None) for each sep1 / dw1 line."""
    layers = []
    with open(path) as f:
        for line in f:
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            op, nums = fields[0], [int(v) for v in fields[1:]]
            if op == "sep1" and len(nums) == 6:
                layers.append((op, *nums))
            elif op == "dw1" and len(nums) == 5:
                layers.append((op, *nums, None))
            else:
                raise SystemExit(f"{path}: unexpected line {line.strip()!r}")
    return layers


def contestants(op, x, dw, db, pw, pb, k, stride):
    """name -> zero-argument callable returning an NCL-ordered array/tensor."""
    xl = np.ascontiguousarray(x.transpose(0, 2, 1))  # NLC
    tx = torch.from_numpy(x)
    txl = torch.from_numpy(xl).permute(0, 2, 1)  # NLC memory, NCL view
    tdw, tdb = torch.from_numpy(dw), torch.from_numpy(db)
    C = x.shape[1]
    if op == "sep1":
        tpw, tpb = torch.from_numpy(pw), torch.from_numpy(pb)

        def torch_run(t):
            h = F.conv1d(F.pad(t, (k - 1, 0)), tdw, tdb, stride=stride, groups=C).relu_()
            return F.conv1d(h, tpw, tpb).relu_()

        def pyds(a, layout):
            return pydsconv.separable_conv1d(
                a,
                dw,
                pw,
                db,
                pb,
                stride=stride,
                padding="causal",
                layout=layout,
                mid_activation="relu",
                activation="relu",
            )
    else:

        def torch_run(t):
            return F.conv1d(F.pad(t, (k - 1, 0)), tdw, tdb, stride=stride, groups=C)

        def pyds(a, layout):
            return pydsconv.depthwise_conv1d(
                a, dw, db, stride=stride, padding="causal", layout=layout
            )

    return {
        "pyds NCL": lambda: pyds(x, "NCL"),
        "pyds NLC": lambda: pyds(xl, "NLC").transpose(0, 2, 1),
        "torch NCL": lambda: torch_run(tx),
        "torch NLC": lambda: torch_run(txl),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--batch", type=int, default=None, help="override the model's batch (1)")
    ap.add_argument("--model", default=MODEL)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pydsconv.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(
        f"threads {args.threads}, median of {args.repeats} interleaved repeats, ms; "
        f"isa {pydsconv.cpu_features()['isa']}, torch {torch.__version__}"
    )
    print(
        f"{'layer':<26} {'pyds NCL':>9} {'pyds NLC':>9} {'torch NCL':>9} {'torch NLC':>9}"
        f" {'torch/pyds NCL':>14} {'NLC':>6}"
    )
    totals = {}
    with torch.no_grad():
        for op, n, c, length, k, stride, cout in read_model(args.model):
            n = args.batch or n
            x = rng.uniform(-1, 1, (n, c, length)).astype(np.float32)
            dw = (rng.standard_normal((c, 1, k)) / np.sqrt(k)).astype(np.float32)
            db = (0.1 * rng.standard_normal(c)).astype(np.float32)
            pw = pb = None
            if cout is not None:
                pw = (rng.standard_normal((cout, c, 1)) / np.sqrt(c)).astype(np.float32)
                pb = (0.1 * rng.standard_normal(cout)).astype(np.float32)
            runs = contestants(op, x, dw, db, pw, pb, k, stride)
            ref = runs["torch NCL"]().numpy()
            for name, f in runs.items():
                got = np.asarray(f())
                if got.shape != ref.shape or not np.allclose(got, ref, rtol=1e-4, atol=1e-4):
                    err = np.max(np.abs(got - ref)) if got.shape == ref.shape else "shape"
                    sys.exit(
                        f"CORRECTNESS CHECK FAILED: {name} on {op} C={c} k={k} s={stride}: "
                        f"max |diff| {err}"
                    )
            med = interleaved_medians_ms(runs, args.repeats, warmup=False)  # checked = warm
            for key, v in med.items():
                totals[key] = totals.get(key, 0.0) + v
            best = min(med["torch NCL"], med["torch NLC"])
            name = f"{op} C{c} L{length} k{k} s{stride}" + (f" ->{cout}" if cout else "")
            print(
                f"{name:<26} {med['pyds NCL']:9.3f} {med['pyds NLC']:9.3f} "
                f"{med['torch NCL']:9.3f} {med['torch NLC']:9.3f} "
                f"{best / med['pyds NCL']:14.2f} {best / med['pyds NLC']:6.2f}"
            )
    best = min(totals["torch NCL"], totals["torch NLC"])
    print(
        f"{'total (sum of medians)':<26} {totals['pyds NCL']:9.3f} {totals['pyds NLC']:9.3f} "
        f"{totals['torch NCL']:9.3f} {totals['torch NLC']:9.3f} "
        f"{best / totals['pyds NCL']:14.2f} {best / totals['pyds NLC']:6.2f}"
    )


if __name__ == "__main__":
    main()
