#!/usr/bin/env python3
"""Whole networks: a pydsconv plan against LiteRT (XNNPACK), ONNX Runtime,
OpenVINO and torch.jit, all with the same weights, interleaved in one process.

Each network (table NETWORKS) is built once as a ``pydsconv.nn`` model with
fixed weights and as an equivalent torch model with the same weights (bench/
lib/nets.py).  Contestants, per batch size and thread count:

* ``pydsconv``: ``pydsconv.nn.compile`` of the model, NHWC input and output.
* ``ORT``: ONNX Runtime, one session of the whole graph (``torch.onnx.export``
  of the torch model, NCHW), IO binding, spinning off.
* ``OpenVINO``: the same ONNX graph, CPU plugin, f32 inference precision,
  one stream, latency hint, no CPU pinning.
* ``torch.jit``: ``torch.jit.freeze`` + ``optimize_for_inference`` of the
  traced torch model, channels_last, under ``torch.inference_mode``.
* ``LiteRT``: ``ai-edge-litert`` with its default XNNPACK delegate, on the
  .tflite fixtures of shared/peers ($PYDSCONV_PEERS; MobileNetV1 body, MobileNetV2),
  which hold the same weights; other networks have none (skipped, said so).

Before timing, every contestant's output is compared with a float64 torch
model of the same weights: max|a - ref| / max|ref| must be <= 1e-4, or the
script stops.  Then all are timed interleaved (bench/lib/timing.py), median
of ``--repeats`` (>= 21 by default), ``--gap-ms`` (2) of untimed sleep
before each call so one runtime's spinning workers (OpenMP, TBB) have
parked before the next runs, as compare.py does.  The table gives each median, the best
peer, best-peer / pydsconv (> 1: pydsconv faster) and pydsconv's % of the
measured FMA peak (2 flops per MAC of the plan's steps).

``--memory`` measures the peak memory of each contestant on one network and
batch (default MobileNetV2, batch 8) in a subprocess per contestant: the
peak RSS (VmHWM, reset after the shared setup) minus the RSS before the
contestant is built, over building it and 3 runs.

    python -m bench.networks [--nets mobilenet_v1_body mobilenet_v1 ...]
        [--batches 1 8] [--threads 1 2] [--repeats 21] [--gap-ms 2] [--contestants ...]
        [--json PATH] [--memory] [--memory-net mobilenet_v2] [--memory-batch 8]
        [--tiny]

``--tiny``: one batch of 1, 1 thread, 3 repeats, tiny input (a smoke run for
tests; no LiteRT, whose fixtures are full size).  A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import io
import json
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np

import pydsconv
from bench.lib.timing import medians_ms, time_interleaved

# The peers' fixtures (shared/peers/README.md): $PYDSCONV_PEERS, else the
# project's shared/peers next to the checkout, else /work/shared/peers.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS_DIR = next(
    (
        d
        for d in (
            os.environ.get("PYDSCONV_PEERS", ""),
            os.path.join(_ROOT, "..", "shared", "peers"),
            "/work/shared/peers",
        )
        if d and os.path.isdir(d)
    ),
    "/work/shared/peers",
)
CONTESTANTS = ("pydsconv", "ORT", "OpenVINO", "torch.jit", "LiteRT")
TOLERANCE = 1e-4  # max|a - ref| / max|ref|, ref: float64 torch


@dataclass
class Network:
    """One row of NETWORKS: ``build(tiny)`` returns (pydsconv model in NHWC,
    eval; torch model, eval, float32; input (C, H, W)), or raises Skip."""

    name: str
    build: object
    tflite: str | None = None  # fixture name in PEERS_DIR
    notes: list = field(default_factory=list)


class Skip(Exception):
    """A network or contestant that cannot run here; the message says why."""


def _peers(name):
    path = os.path.join(PEERS_DIR, name)
    if not os.path.exists(path):
        raise Skip(f"{path} not found")
    return path


def build_body(tiny):
    from bench.lib.nets import torch_from_pydsconv
    from bench.plan_body import body_model, load_body

    if tiny:  # the body's shape, 4 blocks of narrow channels
        from pydsconv import nn

        rng = np.random.default_rng(0)
        layers = []
        for cin, cout, s in ((8, 16, 1), (16, 16, 2), (16, 24, 1), (24, 24, 2)):
            layer = nn.SeparableConv2d(
                cin,
                cout,
                3,
                stride=s,
                padding="same",
                mid_activation="relu6",
                activation="relu6",
                layout="NHWC",
                rng=rng,
            )
            layers.append(layer)
        model, chw = nn.Sequential(*layers).eval(), (8, 16, 16)
    else:
        blocks, chw = load_body(_peers("body_weights.npz"))
        model = body_model(blocks)
    return model, torch_from_pydsconv(model, chw[1:]), chw


def build_v1(tiny):
    from bench.lib.nets import randomize_batchnorm, torch_from_pydsconv
    from pydsconv import nn

    size = 32 if tiny else 224
    alpha = 0.25 if tiny else 1.0
    model = nn.MobileNetV1(
        alpha, num_classes=10 if tiny else 1000, input_size=size, layout="NHWC", padding=1, rng=0
    )
    randomize_batchnorm(model, np.random.default_rng(1))
    model.eval()
    return model, torch_from_pydsconv(model, (size, size)), (3, size, size)


def _pydsconv_model(cls_name):
    models = importlib.import_module("pydsconv.nn.models")
    if not hasattr(models, cls_name):
        raise Skip(f"pydsconv.nn.models has no {cls_name} yet (helper B's branch)")
    return getattr(models, cls_name)


def build_v2(tiny):
    from bench.lib.nets import MobileNetV2, load_state

    cls = _pydsconv_model("MobileNetV2")
    npz = np.load(_peers("mnv2_weights.npz"))
    state = {k: np.array(npz[k]) for k in npz.files if not k.startswith("_")}
    model = cls(layout="NHWC")
    model.load_state_dict(state)
    size = 64 if tiny else 224
    return model.eval(), load_state(MobileNetV2(), state, "MobileNetV2"), (3, size, size)


def _random_torchvision(cls_name, torch_cls):
    """A pydsconv.nn.models network with random weights (rng=0) and random
    BatchNorm statistics, and torch_cls (torchvision's keys) loaded from its
    state dict."""

    def build(tiny):
        from bench.lib import nets

        try:
            model = _pydsconv_model(cls_name)(layout="NHWC", rng=0)
        except NotImplementedError as e:  # e.g. an activation this build lacks
            raise Skip(f"{cls_name}: {e}") from None
        nets.randomize_batchnorm(model, np.random.default_rng(1))
        state = {k: np.array(v) for k, v in model.state_dict().items()}
        size = 64 if tiny else 224
        tmodel = nets.load_state(getattr(nets, torch_cls)(), state, cls_name)
        return model.eval(), tmodel, (3, size, size)

    return build


NETWORKS = {
    n.name: n
    for n in (
        Network("mobilenet_v1_body", build_body, tflite="body_f32.tflite"),
        Network("mobilenet_v1", build_v1),
        Network("mobilenet_v2", build_v2, tflite="mnv2_f32.tflite"),
        Network("mobilenet_v3_large", _random_torchvision("MobileNetV3Large", "MobileNetV3Large")),
        Network("efficientnet_b0", _random_torchvision("EfficientNetB0", "EfficientNetB0")),
    )
}


# ------------------------------------------------------------- contestants


def nchw(a):
    a = np.asarray(a)
    return a.transpose(0, 3, 1, 2) if a.ndim == 4 else a


def make_pydsconv(ctx, threads):
    from pydsconv import nn

    try:
        plan = nn.compile(ctx.model, ctx.x_nhwc.shape, layout="NHWC", num_threads=threads)
    except (TypeError, NotImplementedError) as e:  # a layer plans do not take yet
        raise Skip(f"pydsconv.nn.compile: {e}") from None
    ctx.plan = plan
    x = ctx.x_nhwc
    return (lambda: plan(x)), (lambda: nchw(plan(x)))


def onnx_bytes(ctx):
    import torch

    if ctx.onnx is None:
        f = io.BytesIO()
        with warnings.catch_warnings():  # the legacy exporter's deprecation and folding notes
            warnings.simplefilter("ignore")
            torch.onnx.export(
                ctx.tmodel,
                (torch.from_numpy(ctx.x_nchw),),
                f,
                dynamo=False,
                input_names=["x"],
                output_names=["y"],
                opset_version=17,
            )
        ctx.onnx = f.getvalue()
    return ctx.onnx


def make_ort(ctx, threads):
    import onnx

    from bench.lib.onnx_graph import OrtRunner, ort_session

    runner = OrtRunner(ort_session(onnx.load_from_string(onnx_bytes(ctx)), threads), ctx.x_nchw)
    return runner, runner.result


def make_openvino(ctx, threads):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(ctx.onnx_path())
    compiled = core.compile_model(
        model,
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": False,
        },
    )
    req = compiled.create_infer_request()
    req.set_input_tensor(ov.Tensor(ctx.x_nchw, shared_memory=True))

    def run():
        req.infer()
        return req

    def result():
        req.infer()
        return np.array(req.get_output_tensor(0).data)

    return run, result


def make_torch_jit(ctx, threads):
    import torch

    torch.set_num_threads(threads)
    m = copy.deepcopy(ctx.tmodel).to(memory_format=torch.channels_last).eval()
    x = torch.from_numpy(ctx.x_nhwc).permute(0, 3, 1, 2)  # channels_last view, no copy
    with torch.inference_mode():
        fm = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(m, x).eval()))
        fm(x)

    def run():
        torch.set_num_threads(threads)  # torch's count is global
        with torch.inference_mode():
            return fm(x)

    return run, (lambda: run().contiguous().numpy())


def make_litert(ctx, threads):
    if ctx.net.tflite is None:
        raise Skip(f"no .tflite fixture of {ctx.net.name} in {PEERS_DIR}")
    if ctx.tiny:
        raise Skip("the .tflite fixtures are full size (--tiny)")
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=_peers(ctx.net.tflite), num_threads=threads)
    inp = it.get_input_details()[0]["index"]
    it.resize_tensor_input(inp, list(ctx.x_nhwc.shape))
    it.allocate_tensors()
    it.set_tensor(inp, ctx.x_nhwc)
    out = it.get_output_details()[0]["index"]
    return it.invoke, (lambda: (it.invoke(), nchw(it.get_tensor(out)))[1])


MAKERS = {
    "pydsconv": (make_pydsconv, ()),
    "ORT": (make_ort, ("onnxruntime", "onnx")),
    "OpenVINO": (make_openvino, ("openvino", "onnx")),
    "torch.jit": (make_torch_jit, ()),
    "LiteRT": (make_litert, ("ai_edge_litert",)),
}


class Context:
    """One network at one batch: models, inputs, the ONNX graph (made once)."""

    def __init__(self, net, model, tmodel, chw, batch, tiny, tmpdir):
        self.net, self.model, self.tmodel, self.tiny = net, model, tmodel, tiny
        rng = np.random.default_rng(7)
        self.x_nchw = rng.standard_normal((batch, *chw)).astype(np.float32)
        self.x_nhwc = np.ascontiguousarray(self.x_nchw.transpose(0, 2, 3, 1))
        self.onnx = None
        self.plan = None
        self._tmp = os.path.join(tmpdir, f"{net.name}_b{batch}.onnx")

    def onnx_path(self):
        if not os.path.exists(self._tmp):
            with open(self._tmp, "wb") as f:
                f.write(onnx_bytes(self))
        return self._tmp

    def reference(self):
        import torch

        with torch.no_grad():
            ref = copy.deepcopy(self.tmodel).double()(torch.from_numpy(self.x_nchw).double())
        return ref.numpy()


def build_contestant(name, ctx, threads):
    make, modules = MAKERS[name]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise Skip(f"{', '.join(missing)} not installed (pip install {' '.join(missing)})")
    return make(ctx, threads)


def check(name, result, ref):
    got = np.asarray(result(), np.float64)
    if got.shape != ref.shape:
        sys.exit(f"{name}: output shape {got.shape}, the reference's {ref.shape}")
    err = float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-30))
    if not err <= TOLERANCE:
        sys.exit(
            f"CORRECTNESS CHECK FAILED: {name}: max|a - ref| / max|ref| = {err:.3g} "
            f"> {TOLERANCE}; refusing to time it"
        )
    return err


# ---------------------------------------------------------------- memory


def _rss_kib(field_name):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def measure_memory_child(args):
    """In a subprocess: one contestant's peak memory (prints one JSON line)."""
    net = NETWORKS[args.memory_net]
    try:
        model, tmodel, chw = net.build(args.tiny)
    except Skip as e:
        print(json.dumps({"contestant": args.measure_memory, "skipped": str(e)}))
        return
    ctx = Context(net, model, tmodel, chw, args.memory_batch, args.tiny, args.tmpdir)
    name = args.measure_memory
    make, modules = MAKERS[name]
    for m in modules:
        importlib.import_module(m)
    if name in ("ORT", "OpenVINO"):
        ctx.onnx_path()
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to VmRSS
        f.write("5")
    before = _rss_kib("VmRSS")
    try:
        run, _ = build_contestant(name, ctx, args.threads[0])
    except Skip as e:
        print(json.dumps({"contestant": name, "skipped": str(e)}))
        return
    for _ in range(3):
        out = run()
        del out
    peak = _rss_kib("VmHWM")
    print(
        json.dumps(
            {
                "contestant": name,
                "rss_before_mib": before / 1024,
                "peak_mib": peak / 1024,
                "delta_mib": (peak - before) / 1024,
            }
        )
    )


def measure_memory(args, names):
    rows = []
    for name in names:
        cmd = [
            sys.executable,
            "-m",
            "bench.networks",
            "--measure-memory",
            name,
            "--memory-net",
            args.memory_net,
            "--memory-batch",
            str(args.memory_batch),
            "--threads",
            str(args.threads[0]),
            "--tmpdir",
            args.tmpdir,
        ]
        if args.tiny:
            cmd.append("--tiny")
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            rows.append({"contestant": name, "skipped": p.stderr.strip().splitlines()[-1:]})
            continue
        rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
    print(
        f"\nPeak memory, {args.memory_net} batch {args.memory_batch}, {args.threads[0]} "
        "thread(s): peak RSS minus RSS before building the contestant (MiB)"
    )
    for r in rows:
        if "skipped" in r:
            print(f"  {r['contestant']:<10} skipped: {r['skipped']}")
        else:
            print(
                f"  {r['contestant']:<10} {r['delta_mib']:8.1f}  (peak {r['peak_mib']:.1f}, "
                f"before {r['rss_before_mib']:.1f})"
            )
    return rows


# ------------------------------------------------------------------ main


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--contestants", nargs="+", default=list(CONTESTANTS), choices=CONTESTANTS)
    ap.add_argument(
        "--gap-ms",
        type=float,
        default=2.0,
        help="untimed sleep before each call, lets other runtimes' workers park (default 2)",
    )
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--memory", action="store_true", help="also measure peak memory")
    ap.add_argument("--memory-net", default="mobilenet_v2", choices=list(NETWORKS))
    ap.add_argument("--memory-batch", type=int, default=8)
    ap.add_argument("--tiny", action="store_true", help="a quick smoke run (tests)")
    ap.add_argument("--measure-memory", help=argparse.SUPPRESS)
    ap.add_argument("--tmpdir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    import tempfile

    tmp = tempfile.TemporaryDirectory() if args.tmpdir is None else None
    args.tmpdir = args.tmpdir or tmp.name
    if args.measure_memory:
        return measure_memory_child(args)
    if args.tiny:
        args.batches, args.threads, args.repeats = [1], [1], 3
        args.memory_batch = 1
    if "pydsconv" not in args.contestants:
        args.contestants.insert(0, "pydsconv")
    # The FMA peak; measured again and printed after the timings (a busy
    # machine lowers a probe: compare the two before trusting %peak).
    peak = {t: pydsconv._core.fma_peak_gflops(t) for t in args.threads}
    feats = pydsconv.cpu_features()
    print(
        f"# isa {feats['isa']}; FMA peak "
        + ", ".join(f"{t} thread(s) {p:.1f} GFLOP/s" for t, p in peak.items())
        + f"; median of {args.repeats} interleaved runs, gap {args.gap_ms} ms; float32"
    )
    results = []
    for name in args.nets:
        net = NETWORKS[name]
        try:
            model, tmodel, chw = net.build(args.tiny)
        except Skip as e:
            print(f"\n{name}: skipped: {e}")
            results.append({"net": name, "skipped": str(e)})
            continue
        print(f"\n{name}, input (N, {', '.join(map(str, chw))})")
        print(
            f"{'batch':>5} {'thr':>3} "
            + " ".join(f"{c:>10}" for c in args.contestants)
            + f" {'best peer':>10} {'peer/pyds':>9} {'%peak':>6}"
        )
        for batch in args.batches:
            ctx = Context(net, model, tmodel, chw, batch, args.tiny, args.tmpdir)
            ref = ctx.reference()
            for t in args.threads:
                runs, errors, skipped = {}, {}, {}
                for c in args.contestants:
                    try:
                        run, result = build_contestant(c, ctx, t)
                    except Skip as e:
                        skipped[c] = str(e)
                        continue
                    errors[c] = check(f"{name} batch {batch} threads {t} {c}", result, ref)
                    runs[c] = run
                if "pydsconv" not in runs:
                    print(f"      skipped: {skipped['pydsconv']}")
                    results.append({"net": name, "batch": batch, "threads": t, "skipped": skipped})
                    continue
                med = medians_ms(
                    time_interleaved(runs, list(runs), args.repeats, 1, args.gap_ms / 1000.0)
                )
                macs = sum(s["macs"] for s in ctx.plan.steps())
                gflops = 2 * macs / (med["pydsconv"] / 1e3) / 1e9
                peers = {c: v for c, v in med.items() if c != "pydsconv"}
                best = min(peers, key=peers.get) if peers else None
                ratio = peers[best] / med["pydsconv"] if best else float("nan")
                cells = " ".join(
                    f"{med[c]:10.2f}" if c in med else f"{'-':>10}" for c in args.contestants
                )
                print(
                    f"{batch:5d} {t:3d} {cells} {best or '-':>10} {ratio:9.2f} "
                    f"{100 * gflops / peak[t]:6.1f}"
                )
                results.append(
                    {
                        "net": name,
                        "batch": batch,
                        "threads": t,
                        "median_ms": med,
                        "errors": errors,
                        "skipped": skipped,
                        "best_peer": best,
                        "best_peer_over_pydsconv": ratio,
                        "macs": macs,
                        "pydsconv_gflops": gflops,
                        "pct_peak": 100 * gflops / peak[t],
                    }
                )
                for c, why in skipped.items():
                    print(f"      {c} skipped: {why}")
    after = {t: pydsconv._core.fma_peak_gflops(t) for t in args.threads}
    print(
        "# FMA peak again after the timings: "
        + ", ".join(f"{t} thread(s) {p:.1f} GFLOP/s" for t, p in after.items())
        + " (%peak above is against the first)"
    )
    memory = measure_memory(args, args.contestants) if args.memory else None
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "isa": feats["isa"],
                    "fma_peak_gflops": peak,
                    "fma_peak_gflops_after": after,
                    "repeats": args.repeats,
                    "results": results,
                    "memory": memory,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
