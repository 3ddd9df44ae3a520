#!/usr/bin/env python3
"""Time pydsconv against PyTorch and ONNX Runtime on MobileNetV1's separable blocks.

Run from the repository root (the package is built in place there)::

    PYTHONPATH=. python3 bench/compare.py                 # full run, ~5 min on 2 cores
    PYTHONPATH=. python3 bench/compare.py --quick         # smoke run, < 1 min
    PYTHONPATH=. python3 bench/compare.py --ops sep body --batch 1 --threads 1 \
        --json bench/out/results.json --plot bench/out/results.png
    PYTHONPATH=. python3 bench/compare.py --ops train      # training step, 2-4 min

(``PYTHONPATH=.`` is not needed where pydsconv is pip-installed.)

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
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import pydsconv
from pydsconv import cost


def _die(msg):
    sys.stderr.write(f"\nbench/compare.py: error: {msg}\n")
    sys.exit(2)


try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - environment dependent
    _die("PyTorch is required (pip install torch)")
import pydsconv.torch as pdt  # noqa: E402  (after torch: the PyTorch front end of pydsconv)

try:
    import onnxruntime as ort
except ImportError:  # pragma: no cover
    _die("onnxruntime is required (pip install onnxruntime)")
try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # pragma: no cover
    _die("the onnx package is required to build the ORT graphs; it is a "
         "bench-only dependency: pip install onnx")


OPS = ("dw", "pw", "sep", "body", "train")
DEFAULT_OPS = ("dw", "pw", "sep", "body")  # train is opt-in: --ops train (see docstring)
TRAIN_TORCH = ("torch NCHW", "torch CL")
TRAIN_PYDS_TORCH = ("pydsconv.torch NCHW", "pydsconv.torch CL")
TRAIN_RTOL = 1e-2  # relative L2 error of every gradient vs float64 torch (see check_train)
LAYOUTS = ("NCHW", "NHWC")
PEERS = ("torch NCHW", "torch CL", "ORT")
RTOL = ATOL = 1e-3
ONNX_OPSET = 17
ONNX_IR_VERSION = 8  # the IR version that goes with opset 17


# --------------------------------------------------------------------------
# workload
# --------------------------------------------------------------------------

def tf_same_pads(size, k, stride, dilation=1):
    """TensorFlow "same": out = ceil(in / stride); odd pixel after (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Block:
    """One depthwise separable block: dw k x k (stride s) C->C, then pw C->Cout."""

    def __init__(self, index, dw, pw):
        if dw["out_channels"] != dw["in_channels"]:
            raise RuntimeError(f"block {index}: channel multiplier != 1")
        if dw["out_channels"] != pw["in_channels"] or dw["output_size"] != pw["input_size"]:
            raise RuntimeError(f"block {index}: dw and pw layers do not pair up")
        self.index = index
        self.C = dw["in_channels"]
        self.H, self.W = dw["input_size"]
        self.kh, self.kw = dw["kernel_size"]
        self.sh, self.sw = dw["stride"]
        self.Ho, self.Wo = dw["output_size"]
        self.Cout = pw["out_channels"]
        self.dw_macs = dw["macs"]
        self.pw_macs = pw["macs"]
        self.pad_h = tf_same_pads(self.H, self.kh, self.sh)
        self.pad_w = tf_same_pads(self.W, self.kw, self.sw)
        ho = (self.H + sum(self.pad_h) - self.kh) // self.sh + 1
        wo = (self.W + sum(self.pad_w) - self.kw) // self.sw + 1
        if (ho, wo) != (self.Ho, self.Wo):
            raise RuntimeError(f"block {index}: TF same pads give {(ho, wo)}, "
                               f"cost table says {(self.Ho, self.Wo)}")

    @property
    def stride(self):
        return (self.sh, self.sw)

    @property
    def sym_pad(self):
        """PyTorch-style symmetric padding of the same output size."""
        return ((self.kh - 1) // 2, (self.kw - 1) // 2)

    def __repr__(self):
        return (f"block{self.index}({self.C}x{self.H}x{self.W} k{self.kh} "
                f"s{self.sh} -> {self.Cout})")


def mobilenet_blocks():
    layers = cost.mobilenet_v1_layers()
    blocks = []
    pending = None
    for layer in layers:
        if layer["kind"] == "dw":
            if layer["padding"] != "same":
                raise RuntimeError(f"{layer['name']}: expected 'same' padding")
            pending = layer
        elif layer["kind"] == "pw" and pending is not None:
            blocks.append(Block(len(blocks) + 1, pending, layer))
            pending = None
    if len(blocks) != 13:
        raise RuntimeError(f"expected 13 separable blocks, found {len(blocks)}")
    return blocks


def make_weights(blocks, rng):
    """He-scaled weights and small biases (folded batch norm), float32."""
    w = {}
    for b in blocks:
        w[b.index] = dict(
            dw=(rng.standard_normal((b.C, 1, b.kh, b.kw)) * np.sqrt(2.0 / (b.kh * b.kw))).astype(np.float32),
            db=(rng.standard_normal(b.C) * 0.1).astype(np.float32),
            pw=(rng.standard_normal((b.Cout, b.C, 1, 1)) * np.sqrt(2.0 / b.C)).astype(np.float32),
            pb=(rng.standard_normal(b.Cout) * 0.1).astype(np.float32),
        )
    return w


def nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def to_nchw(y, layout):
    return y if layout == "NCHW" else y.transpose(0, 3, 1, 2)


# --------------------------------------------------------------------------
# pydsconv
# --------------------------------------------------------------------------

def pyds_dw(b, w, x, layout, padding="same"):
    return pydsconv.depthwise_conv2d(x, w["dw"], w["db"], stride=b.stride, padding=padding,
                                     layout=layout, activation="relu6")


def pyds_pw(b, w, x, layout):
    return pydsconv.pointwise_conv2d(x, w.get("pw_pyds", w["pw"]), w["pb"], layout=layout,
                                     activation="relu6")


def pyds_sep(b, w, x, layout, padding="same"):
    return pydsconv.separable_conv2d(x, w["dw"], w.get("pw_pyds", w["pw"]), w["db"], w["pb"],
                                     stride=b.stride,
                                     padding=padding, layout=layout,
                                     mid_activation="relu6", activation="relu6")


# --------------------------------------------------------------------------
# torch
# --------------------------------------------------------------------------

class TorchBlock:
    """A block's weights as tensors in one memory format, and its padding rule."""

    def __init__(self, b, w, channels_last, pad_mode):
        mf = torch.channels_last if channels_last else torch.contiguous_format
        self.dw = torch.from_numpy(w["dw"]).contiguous(memory_format=mf)
        self.pw = torch.from_numpy(w["pw"]).contiguous(memory_format=mf)
        self.db = torch.from_numpy(w["db"])
        self.pb = torch.from_numpy(w["pb"])
        self.stride = b.stride
        self.groups = b.C
        symmetric_tf = b.pad_h[0] == b.pad_h[1] and b.pad_w[0] == b.pad_w[1]
        if pad_mode == "symmetric":
            self.prepad, self.padding = None, b.sym_pad
        elif symmetric_tf:  # exact and native
            self.prepad, self.padding = None, (b.pad_h[0], b.pad_w[0])
        else:  # exact via an explicit pad (F.pad keeps channels_last)
            self.prepad, self.padding = (b.pad_w[0], b.pad_w[1], b.pad_h[0], b.pad_h[1]), (0, 0)

    def dwf(self, x):
        if self.prepad is not None:
            x = F.pad(x, self.prepad)
        return F.conv2d(x, self.dw, self.db, self.stride, self.padding, 1, self.groups).clamp_(0.0, 6.0)

    def pwf(self, x):
        return F.conv2d(x, self.pw, self.pb).clamp_(0.0, 6.0)

    def sepf(self, x):
        return self.pwf(self.dwf(x))


def torch_input(x_nchw, channels_last):
    t = torch.from_numpy(x_nchw)
    if channels_last:
        t = torch.from_numpy(nhwc(x_nchw)).permute(0, 3, 1, 2)  # zero-copy CL view
        assert t.is_contiguous(memory_format=torch.channels_last)
    return t


# --------------------------------------------------------------------------
# ONNX Runtime
# --------------------------------------------------------------------------

def _onnx_block_nodes(b, w, x_name, prefix, stages, inits):
    """Append Conv(+Clip) nodes of one block; returns (nodes, output name)."""
    nodes = []
    cur = x_name
    if "dw" in stages:
        inits += [numpy_helper.from_array(w["dw"], f"{prefix}_dw_w"),
                  numpy_helper.from_array(w["db"], f"{prefix}_dw_b")]
        nodes.append(helper.make_node(
            "Conv", [cur, f"{prefix}_dw_w", f"{prefix}_dw_b"], [f"{prefix}_dw"],
            name=f"{prefix}_dw_conv", group=b.C, kernel_shape=[b.kh, b.kw],
            strides=[b.sh, b.sw], dilations=[1, 1],
            pads=[b.pad_h[0], b.pad_w[0], b.pad_h[1], b.pad_w[1]]))
        nodes.append(helper.make_node("Clip", [f"{prefix}_dw", "zero", "six"], [f"{prefix}_dw_r"],
                                      name=f"{prefix}_dw_relu6"))
        cur = f"{prefix}_dw_r"
    if "pw" in stages:
        inits += [numpy_helper.from_array(w["pw"], f"{prefix}_pw_w"),
                  numpy_helper.from_array(w["pb"], f"{prefix}_pw_b")]
        nodes.append(helper.make_node(
            "Conv", [cur, f"{prefix}_pw_w", f"{prefix}_pw_b"], [f"{prefix}_pw"],
            name=f"{prefix}_pw_conv", group=1, kernel_shape=[1, 1], strides=[1, 1],
            pads=[0, 0, 0, 0]))
        nodes.append(helper.make_node("Clip", [f"{prefix}_pw", "zero", "six"], [f"{prefix}_pw_r"],
                                      name=f"{prefix}_pw_relu6"))
        cur = f"{prefix}_pw_r"
    return nodes, cur


def onnx_model(chain, weights, stages):
    """A graph x -> chain of blocks (each with the given stages) -> y; batch symbolic."""
    first, last = chain[0], chain[-1]
    if stages == ("pw",):
        in_shape = ["N", first.C, first.Ho, first.Wo]
    else:
        in_shape = ["N", first.C, first.H, first.W]
    out_c = last.Cout if "pw" in stages else last.C
    out_shape = ["N", out_c, last.Ho, last.Wo]
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
             numpy_helper.from_array(np.array(6.0, np.float32), "six")]
    nodes, cur = [], "x"
    for b in chain:
        n, cur = _onnx_block_nodes(b, weights[b.index], cur, f"b{b.index}", stages, inits)
        nodes += n
    nodes.append(helper.make_node("Identity", [cur], ["y"], name="out"))
    graph = helper.make_graph(
        nodes, "mobilenet_v1_" + "_".join(stages),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                              producer_name="pydsconv-bench")
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    return model


def ort_session(model, threads, profile_prefix=None):
    """A CPU session at `threads` intra-op threads; with profile_prefix, ORT's
    own per-node profiler on (bench/ort_profile.py reads it)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # ORT's intra-op workers otherwise keep spinning for well over 50 ms
    # after each run and take the second core from whichever contestant runs
    # next (measured: pydsconv's 2-thread depthwise 4 ms alone, 200 ms right
    # after an ORT run).  ORT documents this switch for shared cores.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


class OrtRunner:
    """Session + IO binding: the input bound zero-copy, the output ORT-allocated."""

    def __init__(self, sess, x):
        self.sess = sess
        self.x = x  # keep the bound buffer alive
        self.binding = sess.io_binding()
        self.binding.bind_cpu_input("x", x)
        self.binding.bind_output("y", "cpu")

    def __call__(self):
        self.sess.run_with_iobinding(self.binding)
        return self.binding.get_outputs()

    def result(self):
        self()
        return self.binding.copy_outputs_to_cpu()[0]


# --------------------------------------------------------------------------
# train: forward + backward of the chained body
# --------------------------------------------------------------------------
# Every contestant computes the gradients of sum(body(x) * g) w.r.t. x and all
# 52 weights and biases, for a fixed upstream gradient g, and returns them in
# the order [x, then (dw, db, pw, pb) for each block].  Padding is PyTorch's
# symmetric 1 for everyone (the model a PyTorch user trains), so the gradients
# of all contestants are comparable; --torch-pad does not apply.

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
        mid = pydsconv.depthwise_conv2d(x, w["dw"], w["db"], stride=b.stride, padding=b.sym_pad,
                                        layout=layout, activation="relu6")
        y = pydsconv.pointwise_conv2d(mid, w["pw"], w["pb"], layout=layout, activation="relu6")
        saved.append((x, mid, y))
        x = y
    grads = []
    for b, (x, mid, y) in zip(reversed(blist), reversed(saved)):
        w = weights[b.index]
        g = g * relu6_mask(y)
        gmid, gpw, gpb = pydsconv.pointwise_conv2d_backward(g, mid, w["pw"], layout=layout)
        gmid *= relu6_mask(mid)
        g, gdw, gdb = pydsconv.depthwise_conv2d_backward(gmid, x, w["dw"], stride=b.stride,
                                                         padding=b.sym_pad, layout=layout)
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
            p = [_leaf(w["dw"], mf).to(dtype), _leaf(w["db"]).to(dtype),
                 _leaf(w["pw"], mf).to(dtype), _leaf(w["pb"]).to(dtype)]
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
                for param, a in ((dw.weight, w["dw"]), (dw.bias, w["db"]),
                                 (pw.weight, w["pw"]), (pw.bias, w["pb"])):
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
            blist, weights, xl, gl, layout)
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
    labels = ["x"] + [f"block{i // 4 + 1}.{('dw', 'db', 'pw', 'pb')[i % 4]}"
                      for i in range(len(ref) - 1)]
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
                    "Refusing to time code that computes the wrong thing.\n"
                    + "!" * 72 + "\n")
                sys.exit(1)
        errors[name] = worst
    return errors


# --------------------------------------------------------------------------
# one (batch, threads) configuration: build, check, time
# --------------------------------------------------------------------------

STAGES = {"dw": ("dw",), "pw": ("pw",), "sep": ("dw", "pw"), "body": ("dw", "pw")}


def op_blocks(op, blocks, chosen):
    return blocks if op in ("body", "train") else [b for b in blocks if b.index in chosen]


def op_macs(op, blist, batch):
    if op == "dw":
        m = sum(b.dw_macs for b in blist)
    elif op == "pw":
        m = sum(b.pw_macs for b in blist)
    else:
        m = sum(b.dw_macs + b.pw_macs for b in blist)
    if op == "train":  # forward, input gradient, weight gradient: each as many MACs
        m *= 3
    return m * batch


def make_inputs(op, blist, batch, rng):
    """NCHW float32 inputs: one per block (dw/pw/sep) or one for the body."""
    def rand(shape):  # post-ReLU6-like values
        return rng.uniform(0.0, 6.0, size=shape).astype(np.float32)
    if op == "body":
        b = blist[0]
        return [rand((batch, b.C, b.H, b.W))]
    if op == "train":  # the input and the upstream gradient of the output
        b, last = blist[0], blist[-1]
        return [rand((batch, b.C, b.H, b.W)),
                rng.standard_normal((batch, last.Cout, last.Ho, last.Wo)).astype(np.float32)]
    if op == "pw":
        return [rand((batch, b.C, b.Ho, b.Wo)) for b in blist]
    return [rand((batch, b.C, b.H, b.W)) for b in blist]


def build_contestants(op, blist, weights, xs, layouts, pad_mode, sessions):
    """name -> zero-argument callable running the whole op once."""
    c = {}
    # pydsconv, one entry per layout
    for layout in layouts:
        xl = xs if layout == "NCHW" else [nhwc(x) for x in xs]
        if op == "dw":
            calls = [(pyds_dw, b, x) for b, x in zip(blist, xl)]
        elif op == "pw":
            calls = [(pyds_pw, b, x) for b, x in zip(blist, xl)]
        elif op == "sep":
            calls = [(pyds_sep, b, x) for b, x in zip(blist, xl)]
        if op == "body":
            x0 = xl[0]

            def run(x0=x0, layout=layout):
                y = x0
                for b in blist:
                    y = pyds_sep(b, weights[b.index], y, layout)
                return y
        else:
            def run(calls=calls, layout=layout):
                return [f(b, weights[b.index], x, layout) for f, b, x in calls]
        c[f"pydsconv {layout}"] = run
    # torch, both memory formats
    for name, cl in (("torch NCHW", False), ("torch CL", True)):
        tbs = [TorchBlock(b, weights[b.index], cl, pad_mode) for b in blist]
        txs = [torch_input(x, cl) for x in xs]
        if op == "body":
            def run(tbs=tbs, x0=txs[0]):
                y = x0
                for tb in tbs:
                    y = tb.sepf(y)
                return y
        else:
            meth = {"dw": "dwf", "pw": "pwf", "sep": "sepf"}[op]
            pairs = [(getattr(tb, meth), x) for tb, x in zip(tbs, txs)]

            def run(pairs=pairs):
                return [f(x) for f, x in pairs]
        c[name] = run
    # ORT: one session per block, or one for the chained body
    if op == "body":
        runners = [OrtRunner(sessions[("body", 0)], xs[0])]
    else:
        runners = [OrtRunner(sessions[(op, b.index)], x) for b, x in zip(blist, xs)]

    def run(runners=runners):
        return [r() for r in runners]
    c["ORT"] = run
    c["_ort_runners"] = runners
    return c


def build_sessions(ops, blocks, chosen, weights, threads):
    sessions = {}
    for op in ops:
        if op == "train":  # ORT has no training here
            continue
        if op == "body":
            sessions[("body", 0)] = ort_session(onnx_model(blocks, weights, STAGES["body"]), threads)
        else:
            for b in op_blocks(op, blocks, chosen):
                sessions[(op, b.index)] = ort_session(onnx_model([b], weights, STAGES[op]), threads)
    return sessions


def _max_err(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    ok = a.shape == b.shape and np.allclose(a, b, rtol=RTOL, atol=ATOL)
    err = float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")
    return ok, err


def check_correctness(op, blist, weights, xs, layouts, contestants, pad_mode, batch, threads):
    """Every contestant vs an exact TF-'same' torch computation; abort on mismatch."""
    exact = [TorchBlock(b, weights[b.index], False, "exact") for b in blist]
    meth = {"dw": "dwf", "pw": "pwf", "sep": "sepf", "body": "sepf"}[op]
    if op == "body":
        y = torch.from_numpy(xs[0])
        for tb in exact:
            y = tb.sepf(y)
        ref = [y.numpy()]
    else:
        ref = [getattr(tb, meth)(torch.from_numpy(x)).numpy() for tb, x in zip(exact, xs)]

    got = {}
    for layout in layouts:
        out = contestants[f"pydsconv {layout}"]()
        out = [out] if op == "body" else out
        got[f"pydsconv {layout}"] = [to_nchw(o, layout) for o in out]
    got["ORT"] = [r.result() for r in contestants["_ort_runners"]]

    # torch as timed: exact mode is checked against the reference directly;
    # symmetric mode against pydsconv run with the same symmetric padding.
    if pad_mode == "symmetric" and op != "pw":
        if op == "body":
            y = xs[0]
            for b in blist:
                y = pyds_sep(b, weights[b.index], y, "NCHW", padding=b.sym_pad)
            sym_ref = [y]
        else:
            f = pyds_dw if op == "dw" else pyds_sep
            sym_ref = [f(b, weights[b.index], x, "NCHW", padding=b.sym_pad) for b, x in zip(blist, xs)]
    else:
        sym_ref = ref
    torch_refs = {}
    for name in ("torch NCHW", "torch CL"):
        out = contestants[name]()
        out = [out] if op == "body" else out
        got[name] = [o.contiguous().numpy() for o in out]
        torch_refs[name] = sym_ref

    errors = {}
    for name, outs in got.items():
        refs = torch_refs.get(name, ref)
        worst = 0.0
        for i, (o, r) in enumerate(zip(outs, refs)):
            ok, err = _max_err(o, r)
            worst = max(worst, err)
            if not ok:
                where = "body output" if op == "body" else repr(blist[i])
                sys.stderr.write(
                    "\n" + "!" * 72 + "\n"
                    f"CORRECTNESS CHECK FAILED: op={op} contestant={name!r} {where}\n"
                    f"batch={batch} threads={threads}: max |diff| = {err:.3g} "
                    f"(shapes {np.shape(o)} vs {np.shape(r)}; rtol={RTOL}, atol={ATOL})\n"
                    "Refusing to time code that computes the wrong thing.\n"
                    + "!" * 72 + "\n")
                sys.exit(1)
        errors[name] = worst
    return errors


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
    samples = time_interleaved(contestants, names, args.repeats, args.warmup,
                               args.gap_ms / 1000.0, cell_budget)
    med = {n: statistics.median(s) * 1e3 for n, s in samples.items()}
    best_torch = min(med[n] for n in TRAIN_TORCH)
    macs = op_macs("train", blist, batch)
    rows = []
    for name in names:
        gflops = 2.0 * macs / (med[name] * 1e-3) / 1e9
        rows.append(dict(
            batch=batch, threads=threads, op="train", contestant=name, repeats=len(samples[name]),
            blocks=[b.index for b in blist], macs=macs, ms=med[name],
            ratio_best_torch=best_torch / med[name], gflops=gflops, **peaks.pct(gflops, threads),
            max_rel_l2_err=errors[name], samples_ms=[t * 1e3 for t in samples[name]]))
    return rows


PEAK_NOTE = "the FMA peak measured on the same number of threads (header)"


def time_interleaved(contestants, names, repeats, warmup, gap_s, budget_s=None, min_repeats=5):
    """Each round runs every contestant once, starting one later each round.

    With ``budget_s``, rounds stop early once that many seconds have passed
    since the first timed round and at least ``min_repeats`` are done (the
    stop depends on the clock only, never on the samples).
    """
    samples = {n: [] for n in names}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        t_timed = None
        for r in range(warmup + repeats):
            if r == warmup:
                t_timed = time.perf_counter()
            elif (budget_s is not None and t_timed is not None and r - warmup >= min_repeats
                  and time.perf_counter() - t_timed > budget_s):
                break
            k = r % len(names)
            for name in names[k:] + names[:k]:
                if gap_s:
                    time.sleep(gap_s)
                fn = contestants[name]
                t0 = time.perf_counter()
                out = fn()
                t1 = time.perf_counter()
                del out
                if r >= warmup:
                    samples[name].append(t1 - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


# --------------------------------------------------------------------------
# machine and peak
# --------------------------------------------------------------------------

def cpuinfo():
    model, mhz, flags = None, [], set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key, val = key.strip(), val.strip()
                if key == "model name" and model is None:
                    model = val
                elif key == "cpu MHz":
                    mhz.append(float(val))
                elif key == "flags" and not flags:
                    flags = set(val.split())
    except OSError:
        pass
    return model or platform.processor() or "unknown", mhz, flags


def theoretical_peak(mhz, flags):
    """FP32 FMA peak per core in GFLOP/s, assuming 2 FMA pipes per core."""
    if "avx512f" in flags:
        fpc, how = 64, "AVX-512F: 2 FMA pipes x 16 lanes x 2 flops"
    elif "avx2" in flags and "fma" in flags:
        fpc, how = 32, "AVX2+FMA: 2 FMA pipes x 8 lanes x 2 flops"
    elif "avx" in flags:
        fpc, how = 16, "AVX: 8 lanes x (1 add + 1 mul)"
    else:
        fpc, how = 8, "SSE: 4 lanes x (1 add + 1 mul)"
    ghz = (max(mhz) / 1000.0) if mhz else None
    return (ghz * fpc if ghz else None), ghz, fpc, how


def measured_gemm_peak(n=2048, reps=5):
    """Median GFLOP/s of an n^3 float32 torch matmul at 1 thread."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = torch.randn(n, n)
        b = torch.randn(n, n)
        c = torch.empty(n, n)
        torch.mm(a, b, out=c)  # warm-up
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b, out=c)
            ts.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    return 2.0 * n ** 3 / statistics.median(ts) / 1e9


class Peaks:
    """The yardsticks of "% peak": the measured FMA peak per thread count
    (the one printed), the theoretical per-core peak and the torch matmul."""

    def __init__(self, threads, mhz, flags):
        self.core, self.ghz, self.fpc, self.how = theoretical_peak(mhz, flags)
        self.gemm = measured_gemm_peak()
        self.fma = {t: pydsconv._core.fma_peak_gflops(t) for t in sorted(set(threads))}

    def pct(self, gflops, threads):
        """The row fields: % of each yardstick at this thread count."""
        return dict(
            pct_peak=100.0 * gflops / self.fma[threads],
            pct_theoretical_peak=(100.0 * gflops / (self.core * threads) if self.core
                                  else float("nan")),
            pct_gemm_peak_1thread_x_threads=100.0 * gflops / (self.gemm * threads))


def machine_info():
    model, mhz, flags = cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        usable = os.cpu_count()
    return dict(
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        host=platform.node(),
        cpu_model=model,
        cpu_mhz=(max(mhz) if mhz else None),
        cpus=os.cpu_count(),
        cpus_usable=usable,
        cpu_flags_simd=sorted(f for f in flags if f in ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni")),
        python=platform.python_version(),
        numpy=np.__version__,
        pydsconv=getattr(pydsconv, "__version__", "?"),
        pydsconv_path=os.path.dirname(pydsconv.__file__),
        pydsconv_isa=pydsconv.cpu_features()["isa"],
        pydsconv_features=pydsconv.cpu_features(),
        torch=torch.__version__,
        onnxruntime=ort.__version__,
        onnx=onnx.__version__,
        loadavg_start=(os.getloadavg() if hasattr(os, "getloadavg") else None),
    ), mhz, flags


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------

def print_train_table(batch, threads, rows):
    print(f"\n== train, batch {batch}, threads {threads} ==  MobileNetV1 body forward + backward "
          "(median over n interleaved repeats, ms)")
    hdr = (f"{'contestant':<20} {'ms':>9} {'torch/this':>11} {'GFLOP/s':>8} {'%peak':>6} "
           f"{'grad err':>9} {'n':>3}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['contestant']:<20} {r['ms']:9.1f} {r['ratio_best_torch']:11.2f} "
              f"{r['gflops']:8.1f} {r['pct_peak']:6.1f} {r['max_rel_l2_err']:9.1e} "
              f"{r['repeats']:3d}")


def print_table(batch, threads, rows):
    train = [r for r in rows if r["op"] == "train"]
    rows = [r for r in rows if r["op"] != "train"]
    if rows:
        print_forward_table(batch, threads, rows)
    if train:
        print_train_table(batch, threads, train)


def print_forward_table(batch, threads, rows):
    print(f"\n== batch {batch}, threads {threads} ==  (median over n interleaved repeats, ms)")
    hdr = (f"{'op':<5} {'layout':<6} {'pydsconv':>9} {'torch NCHW':>11} {'torch CL':>9} "
           f"{'ORT':>8} {'peer/pyds':>10} {'GFLOP/s':>8} {'%peak':>6} {'n':>3}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['op']:<5} {r['layout']:<6} {r['pydsconv_ms']:9.3f} {r['torch_nchw_ms']:11.3f} "
              f"{r['torch_cl_ms']:9.3f} {r['ort_ms']:8.3f} {r['ratio_best_peer']:10.2f} "
              f"{r['gflops']:8.1f} {r['pct_peak']:6.1f} {r['repeats']:3d}")


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = sorted({(r["batch"], r["threads"]) for r in results})
    ncols = min(2, len(configs))
    nrows = -(-len(configs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, 4.2 * nrows + 0.8), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(configs):]:
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
    fig.suptitle("MobileNetV1 1.0-224 separable blocks, float32\n"
                 "pydsconv vs PyTorch vs ONNX Runtime (lower is better)", fontsize=11)
    fig.tight_layout(rect=(0, 0.05 if ncols > 1 else 0.09, 1, 1))
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Time pydsconv vs PyTorch vs ONNX Runtime on MobileNetV1's separable "
                    "blocks, interleaved in one process (see the module docstring).")
    p.add_argument("--batch", type=int, nargs="+", help="batch sizes (default: 1 8; --quick: 1)")
    p.add_argument("--threads", type=int, nargs="+", help="thread counts (default: 1 2; --quick: 1)")
    p.add_argument("--repeats", type=int, help="timed repeats per contestant (default 15; --quick 5)")
    p.add_argument("--budget-s", type=float,
                   help="wall-time budget of the whole run: each (batch, threads, op) cell gets an "
                        "equal share of what is left and stops after >= 5 repeats once its share "
                        "is spent (default 240 unless --repeats is given; 0: no budget)")
    p.add_argument("--warmup", type=int, help="discarded warm-up rounds (default 2; --quick 1)")
    p.add_argument("--ops", nargs="+", choices=OPS, default=list(DEFAULT_OPS),
                   help="default: dw pw sep body; 'train' (forward + backward of the body, "
                        "~1 min per (batch, threads) at batch 8) only when named")
    p.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS),
                   help="pydsconv data layouts to time")
    p.add_argument("--blocks", type=int, nargs="+", default=list(range(1, 14)), metavar="I",
                   help="1-based blocks for dw/pw/sep (default: all 13; body always chains all 13)")
    p.add_argument("--torch-pad", choices=("symmetric", "exact"), default="symmetric",
                   help="how torch is timed on stride-2 blocks (see docstring; default symmetric)")
    p.add_argument("--gap-ms", type=float, default=2.0,
                   help="untimed sleep before each call, lets other runtimes' workers park (default 2)")
    p.add_argument("--prepack", action="store_true",
                   help="pydsconv uses pointwise weights packed once before timing "
                        "(prepack_pointwise); default: packed by every call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: batch 1, 1 thread, 5 repeats, 1 warm-up (flags given still win)")
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
    info.update(theoretical_peak_gflops_per_core=peaks.core, ghz=peaks.ghz,
                flops_per_cycle_per_core=peaks.fpc, peak_basis=peaks.how,
                measured_gemm_peak_gflops_1thread=peaks.gemm,
                measured_fma_peak_gflops={str(t): g for t, g in peaks.fma.items()})

    print("pydsconv vs PyTorch vs ONNX Runtime: MobileNetV1 1.0-224 separable blocks, float32")
    print(f"date      {info['date']}   host {info['host']}")
    print(f"cpu       {info['cpu_model']}, {info['cpus']} cpus ({info['cpus_usable']} usable), "
          f"simd {' '.join(info['cpu_flags_simd'])}")
    print(f"versions  pydsconv {info['pydsconv']} (isa {info['pydsconv_isa']}, {info['pydsconv_path']}), "
          f"torch {info['torch']}, onnxruntime {info['onnxruntime']}, onnx {info['onnx']}, "
          f"numpy {info['numpy']}, python {info['python']}")
    fma = ", ".join(f"{g:.1f} GFLOP/s on {t} thread{'s' if t > 1 else ''}"
                    for t, g in peaks.fma.items())
    print(f"peak      measured {info['pydsconv_isa']} FMA peak: {fma} (pydsconv-bench's probe); "
          "used for %peak")
    if peaks.core:
        print(f"          theoretical {peaks.core:.1f} GFLOP/s/core = {peaks.ghz:.3f} GHz ('cpu MHz', "
              f"may be nominal) x {peaks.fpc} flops/cycle ({peaks.how}); JSON only")
    print(f"          2048^3 float32 torch matmul, 1 thread, median of 5 = {peaks.gemm:.1f} GFLOP/s")
    la = info["loadavg_start"]
    if la:
        print(f"load      {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} (1/5/15 min) at start")
    budget = f"budget {args.budget_s:.0f} s (>= 5 repeats)" if args.budget_s else "no time budget"
    print(f"settings  repeats {args.repeats} (+{args.warmup} warm-up), {budget}, ops {' '.join(args.ops)}, "
          f"pydsconv layouts {' '.join(args.layouts)}, torch padding {args.torch_pad}, "
          f"gap {args.gap_ms} ms, blocks {'all' if len(set(args.blocks)) == 13 else sorted(set(args.blocks))}"
          f", pydsconv pointwise weights {'prepacked' if args.prepack else 'packed per call'}")
    info["pydsconv_prepacked_pointwise"] = bool(args.prepack)
    over = [t for t in args.threads if t > (info["cpus_usable"] or 1)]
    if over:
        print(f"WARNING: threads {over} exceed the {info['cpus_usable']} usable cpus: oversubscribed")

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
                    rows += train_cell(args, blist, weights, batch, threads, t_start, cells_left + 1,
                                       train_refs, peaks)
                    continue
                xs = make_inputs(op, blist, batch, rng)
                contestants = build_contestants(op, blist, weights, xs, args.layouts,
                                                args.torch_pad, sessions)
                errors = check_correctness(op, blist, weights, xs, args.layouts, contestants,
                                           args.torch_pad, batch, threads)
                names = [f"pydsconv {lay}" for lay in args.layouts] + list(PEERS)
                cell_budget = None
                if args.budget_s:
                    left = args.budget_s - (time.perf_counter() - t_start)
                    cell_budget = max(left, 0.0) / cells_left
                cells_left -= 1
                samples = time_interleaved(contestants, names, args.repeats, args.warmup,
                                           args.gap_ms / 1000.0, cell_budget)
                med = {n: statistics.median(s) * 1e3 for n, s in samples.items()}
                macs = op_macs(op, blist, batch)
                best_peer = min(med[n] for n in PEERS)
                for layout in args.layouts:
                    ms = med[f"pydsconv {layout}"]
                    gflops = 2.0 * macs / (ms * 1e-3) / 1e9
                    row = dict(
                        batch=batch, threads=threads, op=op, layout=layout,
                        repeats=len(samples[names[0]]),
                        blocks=[b.index for b in blist], macs=macs,
                        pydsconv_ms=ms, torch_nchw_ms=med["torch NCHW"],
                        torch_cl_ms=med["torch CL"], ort_ms=med["ORT"],
                        ratio_best_peer=best_peer / ms, gflops=gflops,
                        **peaks.pct(gflops, threads),
                        max_abs_err=errors,
                        samples_ms={n: [t * 1e3 for t in s] for n, s in samples.items()
                                    if not n.startswith("pydsconv") or n == f"pydsconv {layout}"},
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
        print("\npeer/pyds = fastest of torch NCHW, torch CL, ORT divided by pydsconv "
              "(>1: pydsconv faster).")
        print(f"GFLOP/s = 2 x MACs x batch / pydsconv time; %peak of {PEAK_NOTE}.")
        print("All contestants matched an exact TF-'same' PyTorch computation "
              f"(rtol={RTOL}, atol={ATOL}) before timing.")
    if "train" in args.ops:
        print("\ntrain: torch/this = faster of torch NCHW and torch CL divided by the row's time "
              "(>1: faster than PyTorch).")
        print("GFLOP/s = 2 x 3 x forward MACs x batch / time (forward, input grad, weight grad); "
              f"%peak of {PEAK_NOTE}.")
        print("grad err = worst relative L2 error over the gradients of x and the 52 weights and "
              f"biases vs float64 torch (limit {TRAIN_RTOL}), checked before timing.")
    if la_end:
        print(f"load {la_end[0]:.2f} {la_end[1]:.2f} {la_end[2]:.2f} at end; total {elapsed:.0f} s")

    if args.json:
        d = os.path.dirname(args.json)
        if d:
            os.makedirs(d, exist_ok=True)
        info["loadavg_end"] = la_end
        with open(args.json, "w") as f:
            json.dump(dict(machine=info, settings=dict(vars(args)), elapsed_s=elapsed,
                           results=results), f, indent=1, default=str)
        print(f"wrote {args.json}")
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
