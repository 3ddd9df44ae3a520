#!/usr/bin/env python3
"""Time pydsconv against PyTorch and ONNX Runtime on MobileNetV1's separable blocks.

Run from the repository root (the package is built in place there)::

    python3 -m bench.compare                 # full run, ~5 min on 2 cores
    python3 -m bench.compare --quick         # smoke run, < 1 min
    python3 -m bench.compare --ops sep body --batch 1 --threads 1 \
        --json bench/out/results.json --plot bench/out/results.png
    python3 -m bench.compare --ops train      # training step, 2-4 min

(``-m`` puts the repository root first on the module path: the pydsconv
built in place there is the one timed, and ``bench.lib`` is found.)

What is timed
-------------
The 13 depthwise separable blocks of MobileNetV1 1.0-224, shapes taken from
``pydsconv.cost.mobilenet_v1_layers()`` (each "dw" layer pairs with the "pw"
layer after it): 3x3 depthwise with TensorFlow "same" padding, bias, ReLU6,
then 1x1 pointwise, bias, ReLU6 (folded batch norm = bias).  Float32.

* ``dw``   the 13 depthwise stages (+bias+ReLU6), each on its own input; the
           time is the sum of the 13 calls (one timed sample = all 13).
* ``pw``   the 13 pointwise stages likewise.
* ``sep``  the 13 fused separable blocks (``pydsconv.separable_conv2d``), each
           on its own input.
* ``body`` the 13 blocks chained, 224x224 input -> 7x7x1024.
* ``train`` one training step of the chained body: forward, then backward
           from a fixed upstream gradient ``g`` on the 7x7x1024 output
           (the gradient of ``sum(body(x) * g)``), computing the gradients of
           the input and of all 26 weights and 26 biases.  Not in the default
           ``--ops`` (it adds up to ~1 min per (batch, threads) at batch 8
           on 2 cores); name it: ``--ops train``.

``--blocks`` restricts dw/pw/sep to chosen blocks (e.g. ``--blocks 7`` for one
representative 14x14x512 block); ``body`` and ``train`` always chain all 13.

Contestants, all in one process at the same thread count:

* ``pydsconv NCHW`` / ``pydsconv NHWC``: input already in that layout, weights
  in PyTorch layout (as the API requires), output allocated by the call.
  With ``--prepack`` the pointwise weights are packed once before timing
  (``pydsconv.prepack_pointwise``, the analogue of ORT packing its
  initializers when the session is made); without it every call packs them.
* ``torch NCHW`` / ``torch CL``: ``F.conv2d`` (groups=C for depthwise) then an
  in-place ``clamp_(0, 6)``, under ``torch.no_grad()``, on NCHW-contiguous or
  channels_last tensors (weights in the same memory format).
* ``ORT``: an ONNX graph (Conv group=C, 1x1 Conv, ReLU6 as Clip(0, 6); one
  session per block for dw/pw/sep, one session for the chained body) built with
  the ``onnx`` helper API, weights as initializers, run through IO binding
  (zero-copy input, ORT-allocated output), CPUExecutionProvider, all graph
  optimisations, intra_op_num_threads=n, inter_op_num_threads=1, and
  intra-op spinning off (``session.intra_op.allow_spinning=0``): its spinning
  workers otherwise hold the second core for >50 ms after each run and slow
  whichever contestant runs next by up to 50x at 2 threads.

Contestants of ``train`` (no ORT: it has no training here), ReLU6 after
both stages of every block as above, weights copied from the same arrays:

* ``pydsconv NCHW`` / ``pydsconv NHWC``: the NumPy API directly, the fastest
  pydsconv path: forward with ``depthwise_conv2d`` / ``pointwise_conv2d``
  (ReLU6 fused) keeping each block's input, depthwise output and output;
  backward with ``pointwise_conv2d_backward`` / ``depthwise_conv2d_backward``,
  the ReLU6 derivative masks applied in NumPy (``g * ((y > 0) & (y < 6))``).
* ``pydsconv.torch NCHW`` / ``pydsconv.torch CL``: the model a PyTorch user
  would write with ``pydsconv.torch.DepthwiseConv2d`` and ``PointwiseConv2d``
  layers and ``nn.ReLU6(inplace=True)`` between them, on contiguous or
  channels_last tensors; torch's autograd drives the backward.
* ``torch NCHW`` / ``torch CL``: the same in plain PyTorch, ``F.conv2d``
  (groups=C, then 1x1) and in-place ``F.relu6``.
All torch-driven contestants use ``torch.autograd.grad`` (no ``.grad``
accumulation).  Padding is PyTorch's symmetric 1 for every contestant (the
model a PyTorch user trains; ``--torch-pad`` does not apply), so all compute
the same gradients.  Correctness: before timing, every contestant's gradients
(input and all 52 parameters) are compared with the same model run by torch in
float64: relative L2 error <= 1e-2 each (not elementwise: a float32
pre-activation within rounding of 0 or 6 legitimately lands on the other side
of ReLU6; see ``check_train``).  The table's ratio is the faster of
``torch NCHW`` and ``torch CL`` over each contestant; GFLOP/s counts 3x the
forward MACs (forward, input gradient, weight gradient).

Padding.  pydsconv and ORT compute TensorFlow "same" exactly (for a stride-2
layer on an even input that is 0 rows/cols before, 1 after).  PyTorch's conv2d
has no asymmetric padding; by default (``--torch-pad symmetric``) torch is
timed with its native symmetric padding 1, as torchvision's MobileNet does:
the same shapes and MACs with the window shifted by one pixel on the 4
stride-2 blocks, so torch is not charged for an extra copy.  ``--torch-pad
exact`` times torch with an explicit ``F.pad`` instead.  Either way the
correctness check compares every contestant with an exact TF-"same" torch
computation (and the symmetric torch path with pydsconv run at symmetric
padding), rtol = atol = 1e-3, once per (batch, threads) before timing, and
aborts the run if anything disagrees.

Timing.  For each repeat every contestant runs once, the starting contestant
rotating from repeat to repeat, so slow drift (frequency, other load) hits all
alike; the first ``--warmup`` rounds are discarded and the median of
``--repeats`` is reported.  The garbage collector is off while timing, and
``--gap-ms`` of sleep separates calls so the spinning worker threads of one
runtime (OpenMP, ORT's pool) have parked before the next one runs (sleep is
not timed).

Peak.  "% peak" is pydsconv's GFLOP/s (2 flops per MAC, MACs from
pydsconv.cost, x batch) over the FMA peak measured at the start on the same
number of threads, with the probe pydsconv-bench uses (``_core.
fma_peak_gflops``: the kernel table's FMA loop, 0.2 s a run, median of 5),
so the two report against one yardstick.  The JSON also keeps the share of
the theoretical peak from /proc/cpuinfo's "cpu MHz" (often the nominal clock:
2.6 GHz on the AVX-512 host, where the cores run the loop at ~3.6) and of a
2048^3 float32 torch matmul at 1 thread.

Bench-only dependencies: torch (also for ``pydsconv.torch``), onnxruntime, onnx (``pip install onnx``),
matplotlib for ``--plot`` (``pip install .[bench]`` covers all but torch).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import pydsconv
from bench.lib.deps import require

require("bench/compare.py", "torch", "onnxruntime", "onnx")
import torch  # noqa: E402

from bench.lib.contestants import ATOL, PEERS, RTOL, build_contestants, check_correctness  # noqa: E402
from bench.lib.machine import PEAK_NOTE, Peaks, machine_info  # noqa: E402
from bench.lib.models import (  # noqa: E402
    DEFAULT_OPS,
    LAYOUTS,
    OPS,
    make_inputs,
    make_weights,
    mobilenet_blocks,
    op_blocks,
    op_macs,
)
from bench.lib.onnx_graph import build_sessions  # noqa: E402
from bench.lib.report import plot, print_table  # noqa: E402
from bench.lib.timing import medians_ms, time_interleaved  # noqa: E402
from bench.lib.train import TRAIN_RTOL, TRAIN_TORCH, build_train, check_train, train_reference  # noqa: E402


def train_cell(args, blist, weights, batch, threads, t_start, cells_left, refs, peaks):
    """Build, check and time the train op for one (batch, threads); returns its rows."""
    x, g = make_inputs("train", blist, batch, np.random.default_rng([args.seed, batch, 1]))
    if batch not in refs:
        refs[batch] = train_reference(blist, weights, x, g)
    contestants = build_train(blist, weights, x, g, args.layouts)
    errors = check_train(contestants, refs[batch], batch, threads)
    names = list(contestants)
    cell_budget = None
    if args.budget_s:
        cell_budget = max(args.budget_s - (time.perf_counter() - t_start), 0.0) / cells_left
    samples = time_interleaved(
        contestants, names, args.repeats, args.warmup, args.gap_ms / 1000.0, cell_budget
    )
    med = medians_ms(samples)
    best_torch = min(med[n] for n in TRAIN_TORCH)
    macs = op_macs("train", blist, batch)
    rows = []
    for name in names:
        gflops = 2.0 * macs / (med[name] * 1e-3) / 1e9
        rows.append(
            dict(
                batch=batch,
                threads=threads,
                op="train",
                contestant=name,
                repeats=len(samples[name]),
                blocks=[b.index for b in blist],
                macs=macs,
                ms=med[name],
                ratio_best_torch=best_torch / med[name],
                gflops=gflops,
                **peaks.pct(gflops, threads),
                max_rel_l2_err=errors[name],
                samples_ms=[t * 1e3 for t in samples[name]],
            )
        )
    return rows


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Time pydsconv vs PyTorch vs ONNX Runtime on MobileNetV1's separable "
        "blocks, interleaved in one process (see the module docstring)."
    )
    p.add_argument("--batch", type=int, nargs="+", help="batch sizes (default: 1 8; --quick: 1)")
    p.add_argument(
        "--threads", type=int, nargs="+", help="thread counts (default: 1 2; --quick: 1)"
    )
    p.add_argument(
        "--repeats", type=int, help="timed repeats per contestant (default 15; --quick 5)"
    )
    p.add_argument(
        "--budget-s",
        type=float,
        help="wall-time budget of the whole run: each (batch, threads, op) cell gets an "
        "equal share of what is left and stops after >= 5 repeats once its share "
        "is spent (default 240 unless --repeats is given; 0: no budget)",
    )
    p.add_argument("--warmup", type=int, help="discarded warm-up rounds (default 2; --quick 1)")
    p.add_argument(
        "--ops",
        nargs="+",
        choices=OPS,
        default=list(DEFAULT_OPS),
        help="default: dw pw sep body; 'train' (forward + backward of the body, "
        "~1 min per (batch, threads) at batch 8) only when named",
    )
    p.add_argument(
        "--layouts",
        nargs="+",
        choices=LAYOUTS,
        default=list(LAYOUTS),
        help="pydsconv data layouts to time",
    )
    p.add_argument(
        "--blocks",
        type=int,
        nargs="+",
        default=list(range(1, 14)),
        metavar="I",
        help="1-based blocks for dw/pw/sep (default: all 13; body always chains all 13)",
    )
    p.add_argument(
        "--torch-pad",
        choices=("symmetric", "exact"),
        default="symmetric",
        help="how torch is timed on stride-2 blocks (see docstring; default symmetric)",
    )
    p.add_argument(
        "--gap-ms",
        type=float,
        default=2.0,
        help="untimed sleep before each call, lets other runtimes' workers park (default 2)",
    )
    p.add_argument(
        "--prepack",
        action="store_true",
        help="pydsconv uses pointwise weights packed once before timing "
        "(prepack_pointwise); default: packed by every call",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: batch 1, 1 thread, 5 repeats, 1 warm-up (flags given still win)",
    )
    p.add_argument("--json", metavar="PATH", help="write all results and samples as JSON")
    p.add_argument("--plot", metavar="PATH.png", help="grouped bar chart (matplotlib, Agg)")
    a = p.parse_args(argv)
    a.batch = a.batch or ([1] if a.quick else [1, 8])
    a.threads = a.threads or ([1] if a.quick else [1, 2])
    if a.budget_s is None:
        a.budget_s = 0.0 if a.repeats else 240.0
    a.repeats = a.repeats or (5 if a.quick else 15)
    a.warmup = a.warmup if a.warmup is not None else (1 if a.quick else 2)
    if min(a.batch) < 1 or min(a.threads) < 1 or a.repeats < 1 or a.warmup < 0:
        p.error("batch, threads and repeats must be >= 1, warmup >= 0")
    bad = [i for i in a.blocks if not 1 <= i <= 13]
    if bad:
        p.error(f"--blocks must be in 1..13, got {bad}")
    a.ops = [op for op in OPS if op in a.ops]
    a.layouts = [lay for lay in LAYOUTS if lay in a.layouts]
    return a


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()
    torch.set_grad_enabled(False)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass

    info, mhz, flags = machine_info()
    peaks = Peaks(args.threads, mhz, flags)
    info.update(
        theoretical_peak_gflops_per_core=peaks.core,
        ghz=peaks.ghz,
        flops_per_cycle_per_core=peaks.fpc,
        peak_basis=peaks.how,
        measured_gemm_peak_gflops_1thread=peaks.gemm,
        measured_fma_peak_gflops={str(t): g for t, g in peaks.fma.items()},
    )

    print("pydsconv vs PyTorch vs ONNX Runtime: MobileNetV1 1.0-224 separable blocks, float32")
    print(f"date      {info['date']}   host {info['host']}")
    print(
        f"cpu       {info['cpu_model']}, {info['cpus']} cpus ({info['cpus_usable']} usable), "
        f"simd {' '.join(info['cpu_flags_simd'])}"
    )
    print(
        f"versions  pydsconv {info['pydsconv']} (isa {info['pydsconv_isa']}, {info['pydsconv_path']}), "
        f"torch {info['torch']}, onnxruntime {info['onnxruntime']}, onnx {info['onnx']}, "
        f"numpy {info['numpy']}, python {info['python']}"
    )
    fma = ", ".join(
        f"{g:.1f} GFLOP/s on {t} thread{'s' if t > 1 else ''}" for t, g in peaks.fma.items()
    )
    print(
        f"peak      measured {info['pydsconv_isa']} FMA peak: {fma} (pydsconv-bench's probe); "
        "used for %peak"
    )
    if peaks.core:
        print(
            f"          theoretical {peaks.core:.1f} GFLOP/s/core = {peaks.ghz:.3f} GHz ('cpu MHz', "
            f"may be nominal) x {peaks.fpc} flops/cycle ({peaks.how}); JSON only"
        )
    print(
        f"          2048^3 float32 torch matmul, 1 thread, median of 5 = {peaks.gemm:.1f} GFLOP/s"
    )
    la = info["loadavg_start"]
    if la:
        print(f"load      {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} (1/5/15 min) at start")
    budget = f"budget {args.budget_s:.0f} s (>= 5 repeats)" if args.budget_s else "no time budget"
    print(
        f"settings  repeats {args.repeats} (+{args.warmup} warm-up), {budget}, ops {' '.join(args.ops)}, "
        f"pydsconv layouts {' '.join(args.layouts)}, torch padding {args.torch_pad}, "
        f"gap {args.gap_ms} ms, blocks {'all' if len(set(args.blocks)) == 13 else sorted(set(args.blocks))}"
        f", pydsconv pointwise weights {'prepacked' if args.prepack else 'packed per call'}"
    )
    info["pydsconv_prepacked_pointwise"] = bool(args.prepack)
    over = [t for t in args.threads if t > (info["cpus_usable"] or 1)]
    if over:
        print(
            f"WARNING: threads {over} exceed the {info['cpus_usable']} usable cpus: oversubscribed"
        )

    blocks = mobilenet_blocks()
    chosen = set(args.blocks)
    rng = np.random.default_rng(args.seed)
    weights = make_weights(blocks, rng)
    if args.prepack:  # pydsconv's own entry; torch and ORT read the arrays
        for w in weights.values():
            w["pw_pyds"] = pydsconv.prepack_pointwise(w["pw"])
    results = []
    tables = {}
    train_refs = {}  # batch -> float64 reference gradients (the same data at every thread count)
    cells_left = len(args.threads) * len(args.batch) * len(args.ops)
    for threads in args.threads:
        pydsconv.set_num_threads(threads)
        torch.set_num_threads(threads)
        sessions = build_sessions(args.ops, blocks, chosen, weights, threads)
        for batch in args.batch:
            rows = []
            for op in args.ops:
                blist = op_blocks(op, blocks, chosen)
                if op == "train":
                    cells_left -= 1
                    rows += train_cell(
                        args,
                        blist,
                        weights,
                        batch,
                        threads,
                        t_start,
                        cells_left + 1,
                        train_refs,
                        peaks,
                    )
                    continue
                xs = make_inputs(op, blist, batch, rng)
                contestants = build_contestants(
                    op, blist, weights, xs, args.layouts, args.torch_pad, sessions
                )
                errors = check_correctness(
                    op,
                    blist,
                    weights,
                    xs,
                    args.layouts,
                    contestants,
                    args.torch_pad,
                    batch,
                    threads,
                )
                names = [f"pydsconv {lay}" for lay in args.layouts] + list(PEERS)
                cell_budget = None
                if args.budget_s:
                    left = args.budget_s - (time.perf_counter() - t_start)
                    cell_budget = max(left, 0.0) / cells_left
                cells_left -= 1
                samples = time_interleaved(
                    contestants, names, args.repeats, args.warmup, args.gap_ms / 1000.0, cell_budget
                )
                med = medians_ms(samples)
                macs = op_macs(op, blist, batch)
                best_peer = min(med[n] for n in PEERS)
                for layout in args.layouts:
                    ms = med[f"pydsconv {layout}"]
                    gflops = 2.0 * macs / (ms * 1e-3) / 1e9
                    row = dict(
                        batch=batch,
                        threads=threads,
                        op=op,
                        layout=layout,
                        repeats=len(samples[names[0]]),
                        blocks=[b.index for b in blist],
                        macs=macs,
                        pydsconv_ms=ms,
                        torch_nchw_ms=med["torch NCHW"],
                        torch_cl_ms=med["torch CL"],
                        ort_ms=med["ORT"],
                        ratio_best_peer=best_peer / ms,
                        gflops=gflops,
                        **peaks.pct(gflops, threads),
                        max_abs_err=errors,
                        samples_ms={
                            n: [t * 1e3 for t in s]
                            for n, s in samples.items()
                            if not n.startswith("pydsconv") or n == f"pydsconv {layout}"
                        },
                    )
                    rows.append(row)
                del contestants, xs
            tables[(batch, threads)] = rows
            results += rows
        del sessions
    for batch in args.batch:
        for threads in args.threads:
            print_table(batch, threads, tables[(batch, threads)])

    elapsed = time.perf_counter() - t_start
    la_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    if any(op != "train" for op in args.ops):
        print(
            "\npeer/pyds = fastest of torch NCHW, torch CL, ORT divided by pydsconv "
            "(>1: pydsconv faster)."
        )
        print(f"GFLOP/s = 2 x MACs x batch / pydsconv time; %peak of {PEAK_NOTE}.")
        print(
            "All contestants matched an exact TF-'same' PyTorch computation "
            f"(rtol={RTOL}, atol={ATOL}) before timing."
        )
    if "train" in args.ops:
        print(
            "\ntrain: torch/this = faster of torch NCHW and torch CL divided by the row's time "
            "(>1: faster than PyTorch)."
        )
        print(
            "GFLOP/s = 2 x 3 x forward MACs x batch / time (forward, input grad, weight grad); "
            f"%peak of {PEAK_NOTE}."
        )
        print(
            "grad err = worst relative L2 error over the gradients of x and the 52 weights and "
            f"biases vs float64 torch (limit {TRAIN_RTOL}), checked before timing."
        )
    if la_end:
        print(f"load {la_end[0]:.2f} {la_end[1]:.2f} {la_end[2]:.2f} at end; total {elapsed:.0f} s")

    if args.json:
        d = os.path.dirname(args.json)
        if d:
            os.makedirs(d, exist_ok=True)
        info["loadavg_end"] = la_end
        with open(args.json, "w") as f:
            json.dump(
                dict(machine=info, settings=dict(vars(args)), elapsed_s=elapsed, results=results),
                f,
                indent=1,
                default=str,
            )
        print(f"wrote {args.json}")
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
