#!/usr/bin/env python3
"""torchvision models through ``pydsconv.torch.convert`` vs PyTorch (issue 20).

Per model and batch, float32 inference (``torch.inference_mode``), one thread
(``torch.set_num_threads``, which governs pydsconv.torch's ops too), interleaved in one
process (``bench.lib.timing``), median of the repeats:

* ``eager``: the original torchvision model in eval mode, NCHW input;
* ``eager_cl``: the same, model and input channels_last;
* ``frozen``: ``torch.jit.optimize_for_inference(torch.jit.freeze(
  torch.jit.script(model)))`` (folds BatchNorm too; traced where scripting
  fails), NCHW input;
* ``pyds``: ``pydsconv.torch.convert(model, fuse=True)``, NCHW input;
* ``pyds_cl``: the same with a channels_last input (pydsconv computes NHWC);
* ``pyds_clw``: ``convert(model, fuse=True, channels_last=True)``, NCHW input
  (the stem's weight channels_last, so the network runs NHWC from there on).

Every contestant's output is checked against the eager model first (1e-4
relative).  The table gives medians in ms and ``best_torch / best_pyds``
(> 1: pydsconv faster than the fastest PyTorch run, eager or frozen, either
layout) and ``eager / best_pyds``.  Issue 20's targets: >= 1.2x at batch 1,
>= 1.4x at batch 8 for MobileNetV2, EfficientNet-B0 and MnasNet; never slower
than eager for any of them.

    python3 -m bench.torch_models [--models mobilenet_v2,...] [--batches 1,8]
                                  [--size 224] [--repeats 21] [--threads 1]

Needs torchvision (a venv where it imports, see tests/test_torch_models.py).
A benchmark, never a test; on a shared machine quote the ratios.
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch

import pydsconv
import pydsconv.torch as pt
from bench.lib.timing import interleaved_medians_ms

MODELS = [
    "mobilenet_v2",
    "efficientnet_b0",
    "mnasnet1_0",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "convnext_tiny",
    "regnet_y_400mf",
]


def frozen(model, x):
    with torch.no_grad():
        try:
            m = torch.jit.script(model)
        except Exception:
            m = torch.jit.trace(model, x)
        return torch.jit.optimize_for_inference(torch.jit.freeze(m.eval()))


def contestants(name, batch, size):
    from torchvision import models as tvm

    torch.manual_seed(0)
    model = getattr(tvm, name)(weights=None).eval()
    x = torch.randn(batch, 3, size, size)
    xcl = x.contiguous(memory_format=torch.channels_last)
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    fast, report = pt.convert(model, fuse=True)
    fast_clw, _ = pt.convert(model, fuse=True, channels_last=True)
    fz = frozen(model, x)
    runs = {
        "eager": lambda: model(x),
        "eager_cl": lambda: model_cl(xcl),
        "frozen": lambda: fz(x),
        "pyds": lambda: fast(x),
        "pyds_cl": lambda: fast(xcl),
        "pyds_clw": lambda: fast_clw(x),
    }
    with torch.inference_mode():
        want = model(x)
        scale = want.abs().max().item()
        for n, fn in runs.items():
            got = fn()
            err = (got - want).abs().max().item() / scale
            if err > 1e-4:
                raise SystemExit(f"{name} batch {batch}: {n} differs from eager by {err:.2e}")
    return runs, report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report", action="store_true", help="print each convert report")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(
        f"torch {torch.__version__}, pydsconv {pydsconv.__version__}, "
        f"{a.threads} thread(s), {a.size}x{a.size}, float32, median of {a.repeats} (ms)"
    )
    hdr = (
        f"{'model':20} {'N':>2} {'eager':>8} {'eager_cl':>8} {'frozen':>8} {'pyds':>8} "
        f"{'pyds_cl':>8} {'pyds_clw':>8} {'best_t/pyds':>11} {'eager/pyds':>10}"
    )
    print(hdr)
    for name in a.models.split(","):
        for batch in [int(b) for b in a.batches.split(",")]:
            runs, report = contestants(name, batch, a.size)
            if a.report and batch == int(a.batches.split(",")[0]):
                print(report, file=sys.stderr)
            with torch.inference_mode():
                ms = interleaved_medians_ms(runs, a.repeats)
            best_t = min(ms["eager"], ms["eager_cl"], ms["frozen"])
            best_p = min(ms["pyds"], ms["pyds_cl"], ms["pyds_clw"])
            print(
                f"{name:20} {batch:2d} {ms['eager']:8.2f} {ms['eager_cl']:8.2f} "
                f"{ms['frozen']:8.2f} {ms['pyds']:8.2f} {ms['pyds_cl']:8.2f} {ms['pyds_clw']:8.2f} "
                f"{best_t / best_p:11.2f} {ms['eager'] / best_p:10.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
