#!/usr/bin/env python3
"""PyTorch models on pydsconv's whole-network plan: eager PyTorch, torch.jit
(freeze + optimize_for_inference), ``pydsconv.torch.convert`` and
``pydsconv.torch.compile_inference``, interleaved in one process.

The torch models are bench/lib/nets.py's torchvision architectures
(MobileNetV2, MobileNetV3-Large, EfficientNet-B0) with random weights and
randomised BatchNorm statistics, float32, eval mode, 224x224 input.
Contestants, all under ``torch.inference_mode`` with ``torch.set_num_threads``
and ``pydsconv.set_num_threads`` at ``--threads``:

* ``eager``: the model, NCHW input; ``eager_cl``: model and input
  channels_last.
* ``jit``: ``torch.jit.optimize_for_inference(torch.jit.freeze(trace))``,
  channels_last input (its best format, as bench/networks.py).
* ``convert``: ``pydsconv.torch.convert(model)`` (layer by layer), NCHW.
* ``engine``: ``pydsconv.torch.compile_inference(model, x)``, NCHW input;
  ``engine_cl``: channels_last input (read in place as NHWC).

Every output is checked against the eager model first (max|a - ref| /
max|ref| <= 1e-4).  Timing: bench/lib/timing.py's interleaved rounds,
median of ``--repeats``.  Printed: each median and
best-of(eager, eager_cl, jit) / engine (> 1: the engine faster).

    python -m bench.torch_engine [--nets mobilenet_v2 efficientnet_b0]
        [--batches 1 8] [--threads 1] [--repeats 21] [--tiny]

``--tiny``: 32x32 input, batch 1, 3 repeats (a smoke run for tests).  A
benchmark, never a test.
"""

from __future__ import annotations

import argparse

import torch

import pydsconv
import pydsconv.torch as pt
from bench.lib import nets
from bench.lib.timing import medians_ms, time_interleaved

NETS = {
    "mobilenet_v2": nets.MobileNetV2,
    "mobilenet_v3_large": nets.MobileNetV3Large,
    "efficientnet_b0": nets.EfficientNetB0,
}
BASELINES = ("eager", "eager_cl", "jit")


def _model(name):
    torch.manual_seed(0)
    m = NETS[name]()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                c = mod.num_features
                mod.running_mean.copy_(torch.rand(c, generator=g) * 0.2 - 0.1)
                mod.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                mod.weight.copy_(torch.rand(c, generator=g) + 0.5)
                mod.bias.copy_(torch.rand(c, generator=g) * 0.2 - 0.1)
    return m.eval()


def contestants(model, x):
    cl = torch.channels_last
    x_cl = x.to(memory_format=cl)
    model_cl = _model_copy(model).to(memory_format=cl)
    with torch.no_grad():
        jit = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x).eval()))
    conv, _ = pt.convert(model)
    engine = pt.compile_inference(model, x)
    return {
        "eager": lambda: model(x),
        "eager_cl": lambda: model_cl(x_cl),
        "jit": lambda: jit(x_cl),
        "convert": lambda: conv(x),
        "engine": lambda: engine(x),
        "engine_cl": lambda: engine(x_cl),
    }


def _model_copy(model):
    import copy

    return copy.deepcopy(model)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=["mobilenet_v2", "efficientnet_b0"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--tiny", action="store_true")
    a = ap.parse_args(argv)
    hw, batches, repeats = (32, [1], 3) if a.tiny else (224, a.batches, a.repeats)
    torch.set_num_threads(a.threads)
    pydsconv.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} thread(s), {repeats} interleaved rounds")
    print(f"{'net':<20}{'batch':>6}" + "".join(f"{n:>11}" for n in _NAMES) + "   best/engine")
    for name in a.nets:
        model = _model(name)
        for n in batches:
            x = torch.randn(n, 3, hw, hw, generator=torch.Generator().manual_seed(2))
            with torch.inference_mode():
                runs = contestants(model, x)
                ref = model(x)
                for k, fn in runs.items():
                    err = ((fn() - ref).abs().max() / ref.abs().max()).item()
                    if err > 1e-4:
                        raise SystemExit(f"{name} batch {n}: {k} differs from eager by {err:.2e}")
                ms = medians_ms(time_interleaved(runs, list(runs), repeats, 1))
            best = min(ms[b] for b in BASELINES)
            eng = min(ms["engine"], ms["engine_cl"])
            print(
                f"{name:<20}{n:>6}"
                + "".join(f"{ms[k]:>9.2f}ms" for k in _NAMES)
                + f"   {best / eng:.2f}x"
            )


_NAMES = ("eager", "eager_cl", "jit", "convert", "engine", "engine_cl")

if __name__ == "__main__":
    main()
