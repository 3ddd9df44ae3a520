"""The workload: MobileNetV1 1.0-224's 13 depthwise separable blocks (shapes
from ``pydsconv.cost.mobilenet_v1_layers()``), their weights and inputs, the
ops timed on them, and pydsconv's calls on one block.  NumPy and pydsconv only.
"""

from __future__ import annotations

import numpy as np

import pydsconv
from pydsconv import cost

OPS = ("dw", "pw", "sep", "body", "train")
DEFAULT_OPS = ("dw", "pw", "sep", "body")  # train is opt-in: --ops train (see compare.py)
LAYOUTS = ("NCHW", "NHWC")
STAGES = {"dw": ("dw",), "pw": ("pw",), "sep": ("dw", "pw"), "body": ("dw", "pw")}


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
            raise RuntimeError(
                f"block {index}: TF same pads give {(ho, wo)}, cost table says {(self.Ho, self.Wo)}"
            )

    @property
    def stride(self):
        return (self.sh, self.sw)

    @property
    def sym_pad(self):
        """PyTorch-style symmetric padding of the same output size."""
        return ((self.kh - 1) // 2, (self.kw - 1) // 2)

    def __repr__(self):
        return f"block{self.index}({self.C}x{self.H}x{self.W} k{self.kh} s{self.sh} -> {self.Cout})"


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
            dw=(rng.standard_normal((b.C, 1, b.kh, b.kw)) * np.sqrt(2.0 / (b.kh * b.kw))).astype(
                np.float32
            ),
            db=(rng.standard_normal(b.C) * 0.1).astype(np.float32),
            pw=(rng.standard_normal((b.Cout, b.C, 1, 1)) * np.sqrt(2.0 / b.C)).astype(np.float32),
            pb=(rng.standard_normal(b.Cout) * 0.1).astype(np.float32),
        )
    return w


def nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def to_nchw(y, layout):
    return y if layout == "NCHW" else y.transpose(0, 3, 1, 2)


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
        return [
            rand((batch, b.C, b.H, b.W)),
            rng.standard_normal((batch, last.Cout, last.Ho, last.Wo)).astype(np.float32),
        ]
    if op == "pw":
        return [rand((batch, b.C, b.Ho, b.Wo)) for b in blist]
    return [rand((batch, b.C, b.H, b.W)) for b in blist]


# --------------------------------------------------------------------------
# pydsconv on one block (a weight dict's "pw_pyds", if set, is pydsconv's own
# pointwise weight: the prepack_pointwise result; torch and ORT read "pw")
# --------------------------------------------------------------------------


def pyds_dw(b, w, x, layout, padding="same"):
    return pydsconv.depthwise_conv2d(
        x, w["dw"], w["db"], stride=b.stride, padding=padding, layout=layout, activation="relu6"
    )


def pyds_pw(b, w, x, layout):
    return pydsconv.pointwise_conv2d(
        x, w.get("pw_pyds", w["pw"]), w["pb"], layout=layout, activation="relu6"
    )


def pyds_sep(b, w, x, layout, padding="same"):
    return pydsconv.separable_conv2d(
        x,
        w["dw"],
        w.get("pw_pyds", w["pw"]),
        w["db"],
        w["pb"],
        stride=b.stride,
        padding=padding,
        layout=layout,
        mid_activation="relu6",
        activation="relu6",
    )
