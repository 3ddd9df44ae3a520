"""The forward contestants of compare.py's dw/pw/sep/body ops -- pydsconv in
each layout, PyTorch on NCHW and channels_last tensors, ONNX Runtime -- and
the check of every contestant against an exact TF-"same" PyTorch computation.
Needs torch; the ORT runners come from ``onnx_graph`` (onnx, onnxruntime).
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F

from .models import nhwc, pyds_dw, pyds_pw, pyds_sep, to_nchw
from .onnx_graph import OrtRunner

PEERS = ("torch NCHW", "torch CL", "ORT")
RTOL = ATOL = 1e-3


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
        return F.conv2d(x, self.dw, self.db, self.stride, self.padding, 1, self.groups).clamp_(
            0.0, 6.0
        )

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


def max_err(a, b):
    """(allclose at RTOL and ATOL, max |a - b|; inf on a shape mismatch)."""
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
            sym_ref = [
                f(b, weights[b.index], x, "NCHW", padding=b.sym_pad) for b, x in zip(blist, xs)
            ]
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
            ok, err = max_err(o, r)
            worst = max(worst, err)
            if not ok:
                where = "body output" if op == "body" else repr(blist[i])
                sys.stderr.write(
                    "\n" + "!" * 72 + "\n"
                    f"CORRECTNESS CHECK FAILED: op={op} contestant={name!r} {where}\n"
                    f"batch={batch} threads={threads}: max |diff| = {err:.3g} "
                    f"(shapes {np.shape(o)} vs {np.shape(r)}; rtol={RTOL}, atol={ATOL})\n"
                    "Refusing to time code that computes the wrong thing.\n" + "!" * 72 + "\n"
                )
                sys.exit(1)
        errors[name] = worst
    return errors
