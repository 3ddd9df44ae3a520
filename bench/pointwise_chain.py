#!/usr/bin/env python3
"""Pointwise (1x1) layers alone: pydsconv vs ONNX Runtime vs PyTorch.

Each contestant runs a chain of ``--chain`` identical C -> C 1x1 layers
(bias, ReLU6), so that ONNX Runtime, run as one graph, pays its layout
changes (to and from its blocked NCHWc layout) once per chain, as it does
in a whole network; times are per layer.  pydsconv runs NHWC with the
weights packed once before timing (``prepack_pointwise``, the analogue of
ORT packing its initializers at session creation) and, separately, with the
weight arrays; PyTorch runs channels_last under ``torch.no_grad``.  Float32,
batch 1 by default, MobileNetV1's four pointwise shapes with C_in = C_out.
Interleaved, same thread count, median of the repeats; every chain's result
is checked against ORT's before timing.

    python3 -m bench.pointwise_chain [--threads 1] [--repeats 31] [--chain 4] [--batch 1]

Needs torch, onnx and onnxruntime.  A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import pydsconv
from bench.lib.deps import require
from bench.lib.models import nhwc, to_nchw
from bench.lib.timing import interleaved_medians_ms

require("bench/pointwise_chain.py", "torch", "onnxruntime", "onnx")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.lib.contestants import RTOL, max_err  # noqa: E402
from bench.lib.onnx_graph import OrtRunner, ort_session, pointwise_chain_model  # noqa: E402

# (C, H = W): 14x14x512, 28x28x256, 56x56x128, 7x7x1024
SHAPES = [(512, 14), (256, 28), (128, 56), (1024, 7)]


def ort_chain(weights, bias, batch, c, hw, threads):
    return ort_session(pointwise_chain_model(weights, bias, batch, c, hw), threads)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=31)
    ap.add_argument("--chain", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args(argv)
    if min(args.threads, args.repeats, args.chain, args.batch) < 1:
        ap.error("--threads, --repeats, --chain and --batch must be at least 1")
    torch.set_num_threads(args.threads)
    pydsconv.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(
        f"# pointwise chains of {args.chain}, batch {args.batch}, {args.threads} thread(s), "
        f"float32, median of {args.repeats}; ms per layer"
    )
    print(
        f"{'layer':>18s} {'pyds prepacked':>15s} {'pyds array':>11s} {'ORT':>8s} "
        f"{'torch CL':>9s} {'best peer/pyds':>15s}"
    )
    for c, hw in SHAPES:
        x = rng.uniform(0.0, 6.0, (args.batch, c, hw, hw)).astype(np.float32)
        ws = [
            (rng.standard_normal((c, c, 1, 1)) * np.sqrt(2.0 / c)).astype(np.float32)
            for _ in range(args.chain)
        ]
        b = (rng.standard_normal(c) * 0.1).astype(np.float32)
        packed = [pydsconv.prepack_pointwise(w) for w in ws]
        xh = nhwc(x)
        ort_run = OrtRunner(ort_chain(ws, b, args.batch, c, hw, args.threads), x)
        tx = torch.from_numpy(xh).permute(0, 3, 1, 2)
        tws = [torch.from_numpy(w).contiguous(memory_format=torch.channels_last) for w in ws]
        tb = torch.from_numpy(b)

        def pyds(wl):
            y = xh
            for w in wl:
                y = pydsconv.pointwise_conv2d(y, w, b, layout="NHWC", activation="relu6")
            return y

        def tor():
            y = tx
            for w in tws:
                y = F.conv2d(y, w, tb).clamp_(0.0, 6.0)
            return y

        runs = {
            "pyds prepacked": lambda: pyds(packed),
            "pyds array": lambda: pyds(ws),
            "ORT": ort_run,
            "torch CL": tor,
        }
        want = ort_run.result()
        with torch.no_grad():
            for name, f in runs.items():
                if name == "ORT":
                    continue
                got = f()
                got = got.numpy() if isinstance(got, torch.Tensor) else to_nchw(got, "NHWC")
                ok, err = max_err(got, want)
                if not ok:
                    sys.exit(
                        f"{c}x{hw}x{hw}: {name} differs from ORT by {err:g} "
                        f"(rtol = atol = {RTOL:g})"
                    )
            m = interleaved_medians_ms(runs, args.repeats)
        per = {k: v / args.chain for k, v in m.items()}
        best = min(per["ORT"], per["torch CL"])
        print(
            f"{f'{c}->{c} {hw}x{hw}':>18s} {per['pyds prepacked']:15.3f} {per['pyds array']:11.3f} "
            f"{per['ORT']:8.3f} {per['torch CL']:9.3f} {best / per['pyds prepacked']:15.2f}"
        )


if __name__ == "__main__":
    main()
