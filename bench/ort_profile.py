#!/usr/bin/env python3
"""Where the MobileNetV1 body's time goes, block by block: ONNX Runtime's
graph (compare.py's ``body`` session) timed by ORT's own per-node profiler,
against pydsconv's 13 fused calls timed one by one, interleaved in one
process (one ORT run and one pydsconv chain per repeat, in turn: bench.lib.timing).

    python3 -m bench.ort_profile [--batch 1] [--threads 1] [--layout NHWC] \\
        [--repeats 20]

ORT rewrites the graph into its NCHWc layout: each block becomes a
depthwise and a pointwise node (Conv + Clip fused), and a ``ReorderInput``
/ ``ReorderOutput`` pair converts at the graph's ends; the last pointwise
node is named after the graph output.  Nodes are credited to the block
whose name they carry, else to the block before them; the reorders are
listed apart.  A per-node time leaves out ORT's between-node overhead, so
the blocks add up to a little less than ORT's whole run (printed too).
A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time

import numpy as np

import pydsconv
from bench.lib.deps import require
from bench.lib.models import make_weights, mobilenet_blocks, nhwc, pyds_sep
from bench.lib.timing import time_interleaved

require("bench/ort_profile.py", "onnxruntime", "onnx")
from bench.lib.onnx_graph import OrtRunner, onnx_model, ort_session  # noqa: E402


def ort_node_medians(events):
    """[(node name, op, median us)] in execution order."""
    durs, order, ops = {}, {}, {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        durs.setdefault(name, []).append(e["dur"])
        order.setdefault(name, e["ts"])
        ops[name] = e.get("args", {}).get("op_name", "?")
    return [(n, ops[n], statistics.median(durs[n])) for n in sorted(durs, key=order.get)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layout", choices=("NCHW", "NHWC"), default="NHWC")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    pydsconv.set_num_threads(args.threads)
    blocks = mobilenet_blocks()
    weights = make_weights(blocks, np.random.default_rng(0))
    b0 = blocks[0]
    x = np.random.default_rng(1).standard_normal((args.batch, b0.C, b0.H, b0.W)).astype(np.float32)
    xp = nhwc(x) if args.layout == "NHWC" else x
    prefix = os.path.join(tempfile.mkdtemp(prefix="pydsconv-ortprof-"), "ort")
    sess = ort_session(
        onnx_model(blocks, weights, ("dw", "pw")), args.threads, profile_prefix=prefix
    )
    ort_run = OrtRunner(sess, x)

    warm = 2
    pyds_block = [[] for _ in blocks]  # every call's, warm-up included: dropped below

    def pyds_chain():
        y = xp
        for i, b in enumerate(blocks):
            s = time.perf_counter()
            y = pyds_sep(b, weights[b.index], y, args.layout)
            pyds_block[i].append(time.perf_counter() - s)
        return y

    samples = time_interleaved(
        {"ORT": ort_run, "pydsconv": pyds_chain}, ["ORT", "pydsconv"], args.repeats, warm
    )
    ort_total, pyds_total = samples["ORT"], samples["pydsconv"]
    pyds_block = [t[warm:] for t in pyds_block]
    path = sess.end_profiling()
    with open(path) as f:
        events = json.load(f)
    os.remove(path)
    os.rmdir(os.path.dirname(path))

    ort_block = [0.0] * len(blocks)
    reorders, current = [], 0
    for name, op, us in ort_node_medians(events):
        m = re.match(r"b(\d+)_", name)
        if "Reorder" in op:
            reorders.append((name, us))
            continue
        if m:
            current = int(m.group(1)) - 1
        ort_block[current] += us  # (warm-up runs included in the medians: 2 of many)

    print(
        f"MobileNetV1 body, batch {args.batch}, threads {args.threads}, pydsconv {args.layout}, "
        f"median of {args.repeats} interleaved runs (us)"
    )
    print(f"{'block':<32} {'ORT':>8} {'pydsconv':>9} {'ORT/pyds':>9}")
    for i, b in enumerate(blocks):
        p = statistics.median(pyds_block[i]) * 1e6
        print(f"{repr(b):<32} {ort_block[i]:8.1f} {p:9.1f} {ort_block[i] / p:9.2f}")
    for name, us in reorders:
        print(f"{'ORT ' + name:<32} {us:8.1f}")
    o, p = statistics.median(ort_total) * 1e6, statistics.median(pyds_total) * 1e6
    print(f"{'whole run':<32} {o:8.1f} {p:9.1f} {o / p:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
