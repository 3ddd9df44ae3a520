#!/usr/bin/env python3
"""What prepack_pointwise saves: the MobileNetV1 body (13 fused separable
blocks, chained as compare.py's ``body``), pydsconv only, with the pointwise
weights as arrays (packed by every call) and prepacked once, alternated in
one process so the machine's drift hits both alike.  Prints the medians and
their ratio; first checks that both give the same bits.

    python3 -m bench.prepack_body [--threads 1] [--batch 1] [--layout NHWC] \\
        [--repeats 21] [--flush]

``--flush`` writes a 64 MiB array before each run (untimed), so the weights come from
memory as they do when other work ran in between (compare.py's interleaving).
A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import pydsconv
from bench.lib.models import make_weights, mobilenet_blocks, nhwc, pyds_sep
from bench.lib.timing import interleaved_medians_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--layout", choices=("NCHW", "NHWC"), default="NHWC")
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--flush", action="store_true")
    args = ap.parse_args()
    pydsconv.set_num_threads(args.threads)
    blocks = mobilenet_blocks()
    weights = make_weights(blocks, np.random.default_rng(0))
    packed = {b.index: pydsconv.prepack_pointwise(weights[b.index]["pw"]) for b in blocks}
    b0 = blocks[0]
    x = np.random.default_rng(1).standard_normal((args.batch, b0.C, b0.H, b0.W)).astype(np.float32)
    if args.layout == "NHWC":
        x = nhwc(x)
    big = np.zeros(16 << 20, np.float32)

    def body(ws):
        def run():
            y = x
            for b in blocks:
                y = pyds_sep(b, ws[b.index], y, args.layout)
            return y

        return run

    # pyds_sep takes "pw_pyds" over "pw": the packed copy, set up before timing
    with_packed = {i: {**w, "pw_pyds": packed[i]} for i, w in weights.items()}
    runs = {"arrays": body(weights), "prepacked": body(with_packed)}
    if not np.array_equal(runs["arrays"](), runs["prepacked"]()):
        sys.exit("prepacked and array weights gave different results")
    flush = (lambda: big.fill(1.0)) if args.flush else None
    med = interleaved_medians_ms(runs, args.repeats, warmup=False, before=flush)
    print(
        f"body, batch {args.batch}, {args.threads} thread(s), {args.layout}"
        f"{', caches flushed' if args.flush else ''}, median of {args.repeats} (ms): arrays {med['arrays']:.2f}, prepacked {med['prepacked']:.2f}, "
        f"ratio {med['arrays'] / med['prepacked']:.3f}; isa {pydsconv.cpu_features()['isa']}"
    )


if __name__ == "__main__":
    main()
