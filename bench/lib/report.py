"""compare.py's output: the tables printed per (batch, threads) and the
grouped bar chart (matplotlib, imported only by ``plot``)."""

from __future__ import annotations

import os

from .models import OPS


def print_train_table(batch, threads, rows):
    print(
        f"\n== train, batch {batch}, threads {threads} ==  MobileNetV1 body forward + backward "
        "(median over n interleaved repeats, ms)"
    )
    hdr = (
        f"{'contestant':<20} {'ms':>9} {'torch/this':>11} {'GFLOP/s':>8} {'%peak':>6} "
        f"{'grad err':>9} {'n':>3}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(
            f"{r['contestant']:<20} {r['ms']:9.1f} {r['ratio_best_torch']:11.2f} "
            f"{r['gflops']:8.1f} {r['pct_peak']:6.1f} {r['max_rel_l2_err']:9.1e} "
            f"{r['repeats']:3d}"
        )


def print_table(batch, threads, rows):
    train = [r for r in rows if r["op"] == "train"]
    rows = [r for r in rows if r["op"] != "train"]
    if rows:
        print_forward_table(batch, threads, rows)
    if train:
        print_train_table(batch, threads, train)


def print_forward_table(batch, threads, rows):
    print(f"\n== batch {batch}, threads {threads} ==  (median over n interleaved repeats, ms)")
    hdr = (
        f"{'op':<5} {'layout':<6} {'pydsconv':>9} {'torch NCHW':>11} {'torch CL':>9} "
        f"{'ORT':>8} {'peer/pyds':>10} {'GFLOP/s':>8} {'%peak':>6} {'n':>3}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(
            f"{r['op']:<5} {r['layout']:<6} {r['pydsconv_ms']:9.3f} {r['torch_nchw_ms']:11.3f} "
            f"{r['torch_cl_ms']:9.3f} {r['ort_ms']:8.3f} {r['ratio_best_peer']:10.2f} "
            f"{r['gflops']:8.1f} {r['pct_peak']:6.1f} {r['repeats']:3d}"
        )


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = sorted({(r["batch"], r["threads"]) for r in results})
    ncols = min(2, len(configs))
    nrows = -(-len(configs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, 4.2 * nrows + 0.8), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(configs) :]:
        ax.set_visible(False)
    handles = None
    for ax, (batch, threads) in zip(flat, configs):
        rows = [r for r in results if (r["batch"], r["threads"]) == (batch, threads)]
        ops = [op for op in OPS if any(r["op"] == op for r in rows)]
        series = {}
        for op in ops:
            orow = [r for r in rows if r["op"] == op]
            if op == "train":  # one row per contestant
                for r in orow:
                    series.setdefault(r["contestant"], {})[op] = r["ms"]
                continue
            for r in orow:
                series.setdefault(f"pydsconv {r['layout']}", {})[op] = r["pydsconv_ms"]
            series.setdefault("torch NCHW", {})[op] = orow[0]["torch_nchw_ms"]
            series.setdefault("torch CL", {})[op] = orow[0]["torch_cl_ms"]
            series.setdefault("ORT", {})[op] = orow[0]["ort_ms"]
        names = list(series)
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(ops))]
            ax.bar(xs, [series[name].get(op, float("nan")) for op in ops], width, label=name)
        ax.set_xticks(range(len(ops)))
        ax.set_xticklabels(ops)
        ax.set_yscale("log")
        ax.set_ylabel("median ms per op (log scale)")
        ax.set_title(f"batch {batch}, {threads} thread{'s' if threads > 1 else ''}")
        ax.grid(axis="y", which="both", alpha=0.3)
        handles = ax.get_legend_handles_labels()
    ncol = len(handles[1]) if ncols > 1 else 3
    fig.legend(*handles, loc="lower center", ncol=ncol, fontsize=9, frameon=False)
    fig.suptitle(
        "MobileNetV1 1.0-224 separable blocks, float32\n"
        "pydsconv vs PyTorch vs ONNX Runtime (lower is better)",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.05 if ncols > 1 else 0.09, 1, 1))
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
