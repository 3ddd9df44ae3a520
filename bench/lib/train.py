"""compare.py's ``train`` op: one training step of the chained body (forward,
then backward from a fixed upstream gradient) in pydsconv's NumPy API,
pydsconv.torch layers and plain PyTorch, and the check of every contestant's
gradients against float64 PyTorch.  Needs torch.

Every contestant computes the gradients of sum(body(x) * g) w.r.t. x and all
52 weights and biases, for a fixed upstream gradient g, and returns them in
the order [x, then (dw, db, pw, pb) for each block].  Padding is PyTorch's
symmetric 1 for everyone (the model a PyTorch user trains), so the gradients
of all contestants are comparable; --torch-pad does not apply.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F

import pydsconv
import pydsconv.torch as pdt  # the PyTorch front end of pydsconv

from .models import nhwc

TRAIN_TORCH = ("torch NCHW", "torch CL")
TRAIN_PYDS_TORCH = ("pydsconv.torch NCHW", "pydsconv.torch CL")
TRAIN_RTOL = 1e-2  # relative L2 error of every gradient vs float64 torch (see check_train)


def relu6_mask(y):
    """Where ReLU6's derivative is 1 (0 < y < 6, as nn.ReLU6), from its output."""
    m = y > 0
    m &= y < 6
    return m


def pyds_train(blist, weights, x, g, layout):
    """The NumPy API directly: forward keeping each block's input, depthwise
    output and output, then backward with the ReLU6 masks applied in NumPy."""
    saved = []
    for b in blist:
        w = weights[b.index]
        mid = pydsconv.depthwise_conv2d(
            x,
            w["dw"],
            w["db"],
            stride=b.stride,
            padding=b.sym_pad,
            layout=layout,
            activation="relu6",
        )
        y = pydsconv.pointwise_conv2d(mid, w["pw"], w["pb"], layout=layout, activation="relu6")
        saved.append((x, mid, y))
        x = y
    grads = []
    for b, (x, mid, y) in zip(reversed(blist), reversed(saved)):
        w = weights[b.index]
        g = g * relu6_mask(y)
        gmid, gpw, gpb = pydsconv.pointwise_conv2d_backward(g, mid, w["pw"], layout=layout)
        gmid *= relu6_mask(mid)
        g, gdw, gdb = pydsconv.depthwise_conv2d_backward(
            gmid, x, w["dw"], stride=b.stride, padding=b.sym_pad, layout=layout
        )
        grads = [gdw, gdb, gpw, gpb] + grads
    return [g] + grads


def _leaf(a, mf=torch.contiguous_format):
    return torch.from_numpy(a).clone().contiguous(memory_format=mf).requires_grad_(True)


class TorchTrain:
    """Plain torch autograd: F.conv2d(groups=C) and 1x1, each followed by an
    in-place ReLU6 (nn.ReLU6(inplace=True), as torchvision); weights and data
    in one memory format; ``torch.autograd.grad`` (no .grad accumulation)."""

    def __init__(self, blist, weights, x, g, channels_last, dtype=torch.float32):
        mf = torch.channels_last if channels_last else torch.contiguous_format
        self.layers, self.inputs = [], [_leaf(x, mf).to(dtype)]
        for b in blist:
            w = weights[b.index]
            p = [
                _leaf(w["dw"], mf).to(dtype),
                _leaf(w["db"]).to(dtype),
                _leaf(w["pw"], mf).to(dtype),
                _leaf(w["pb"]).to(dtype),
            ]
            p = [t.detach().requires_grad_(True) for t in p]
            self.layers.append((p, b.stride, b.sym_pad, b.C))
            self.inputs += p
        self.inputs[0] = self.inputs[0].detach().requires_grad_(True)
        self.g = torch.from_numpy(g).contiguous(memory_format=mf).to(dtype)

    def __call__(self):
        with torch.enable_grad():
            y = self.inputs[0]
            for (dw, db, pw, pb), stride, pad, groups in self.layers:
                y = F.relu6(F.conv2d(y, dw, db, stride, pad, 1, groups), inplace=True)
                y = F.relu6(F.conv2d(y, pw, pb), inplace=True)
            return torch.autograd.grad(y, self.inputs, self.g)


class PdtTrain:
    """The same model built from pydsconv.torch layers (DepthwiseConv2d,
    PointwiseConv2d); torch's in-place ReLU6 and autograd graph between them."""

    def __init__(self, blist, weights, x, g, channels_last):
        mf = torch.channels_last if channels_last else torch.contiguous_format
        layers = []
        for b in blist:
            w = weights[b.index]
            dw = pdt.DepthwiseConv2d(b.C, (b.kh, b.kw), b.stride, b.sym_pad)
            pw = pdt.PointwiseConv2d(b.C, b.Cout)
            with torch.no_grad():
                for param, a in (
                    (dw.weight, w["dw"]),
                    (dw.bias, w["db"]),
                    (pw.weight, w["pw"]),
                    (pw.bias, w["pb"]),
                ):
                    param.copy_(torch.from_numpy(a))
            layers += [dw, torch.nn.ReLU6(inplace=True), pw, torch.nn.ReLU6(inplace=True)]
        self.model = torch.nn.Sequential(*layers).to(memory_format=mf)
        self.inputs = [_leaf(x, mf)] + list(self.model.parameters())
        self.g = torch.from_numpy(g).contiguous(memory_format=mf)

    def __call__(self):
        with torch.enable_grad():
            return torch.autograd.grad(self.model(self.inputs[0]), self.inputs, self.g)


def build_train(blist, weights, x, g, layouts):
    """name -> zero-argument callable running one training step's convolutions."""
    c = {}
    for layout in layouts:
        xl, gl = (x, g) if layout == "NCHW" else (nhwc(x), nhwc(g))
        c[f"pydsconv {layout}"] = lambda xl=xl, gl=gl, layout=layout: pyds_train(
            blist, weights, xl, gl, layout
        )
    for name, cl in zip(TRAIN_PYDS_TORCH, (False, True)):
        c[name] = PdtTrain(blist, weights, x, g, cl)
    for name, cl in zip(TRAIN_TORCH, (False, True)):
        c[name] = TorchTrain(blist, weights, x, g, cl)
    return c


def _grads_nchw(name, grads):
    """A contestant's gradients as float64 NumPy arrays, x's in NCHW."""
    out = [t.detach().contiguous().numpy() if isinstance(t, torch.Tensor) else t for t in grads]
    if name == "pydsconv NHWC":
        out[0] = out[0].transpose(0, 3, 1, 2)
    return [np.asarray(a, np.float64) for a in out]


def train_reference(blist, weights, x, g):
    """The gradients in float64, plain torch NCHW: the check's oracle."""
    return _grads_nchw("ref", TorchTrain(blist, weights, x, g, False, torch.float64)())


def check_train(contestants, ref, batch, threads):
    """Every contestant's gradients vs the float64 reference: relative L2 error
    ||a - r|| / ||r|| <= TRAIN_RTOL for x's gradient and each of the 52
    parameter gradients.  An L2 norm, not elementwise, and 1e-2 rather than
    float32's 1e-6: a float32 pre-activation within rounding of 0 or 6 lands
    on the other side of ReLU6 (about 1 element in 10^5 here; torch's float32
    is no exception), which zeroes or passes one gradient element and, through
    the layers before it, moves every earlier gradient by ~1/sqrt(size of that
    tensor), ~1e-3 at batch 1.  A wrong padding, stride, mask or missing term
    errs by O(0.1-1).  Aborts the run on a mismatch; returns the worst error
    per name."""
    labels = ["x"] + [
        f"block{i // 4 + 1}.{('dw', 'db', 'pw', 'pb')[i % 4]}" for i in range(len(ref) - 1)
    ]
    errors = {}
    for name, fn in contestants.items():
        got = _grads_nchw(name, fn())
        worst = 0.0
        for label, a, r in zip(labels, got, ref):
            if a.shape != r.shape:
                err = float("inf")
            else:
                err = float(np.linalg.norm(a - r) / max(np.linalg.norm(r), 1e-30))
            worst = max(worst, err)
            if not err <= TRAIN_RTOL:
                sys.stderr.write(
                    "\n" + "!" * 72 + "\n"
                    f"CORRECTNESS CHECK FAILED: op=train contestant={name!r} gradient {label}\n"
                    f"batch={batch} threads={threads}: relative L2 error {err:.3g} "
                    f"(shapes {a.shape} vs {r.shape}; limit {TRAIN_RTOL})\n"
                    "Refusing to time code that computes the wrong thing.\n" + "!" * 72 + "\n"
                )
                sys.exit(1)
        errors[name] = worst
    return errors
