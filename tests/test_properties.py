"""Property tests: random shapes and parameters for every op against the oracle.

For each of the ten ops (forward and backward, 2-D and 1-D) Hypothesis draws
a call: layout, dtype, batch (0 included), channels (1 included), spatial
sizes from 1x1 up to rows of ~80 (so both the narrow-row and the wide-row
kernels run), kernels from 1 to exactly the padded input (or one larger),
stride (often larger than the input), dilation, every padding form, optional
biases, ``out=``, thread count, ISA, and inputs that are C-contiguous or not
(strided, reversed, Fortran-ordered, unaligned, zero-stride broadcasts).  Some
calls are made invalid on purpose (one rule broken: stride/dilation < 1,
negative padding, a bias or channel count that does not fit, an empty
dimension, a kernel of size 0, a wrong grad_out or out shape), and some are
invalid by themselves (a kernel larger than the padded input).

``_rules`` is an independent transcription of cpp/README.md's argument rules
(1-9).  The property: **the op raises ValueError exactly when the rules
reject the call** (with a message naming a broken rule's argument), and when
they accept it, the op succeeds, matches ``pydsconv.reference``, returns
``out`` when given, and writes no input; when it raises, ``out`` is
untouched.  (The reference is looser than the rules in places, e.g. it does
not check that a 4-D pointwise weight ends in 1x1, so rejection is judged by
the rules, not by whether the reference also raises.)

Each op's property runs in a fresh interpreter (``run_python``) that runs the
Hypothesis test function directly: a hang or a crash in the C++ core then
fails that op's test, with the last call's description, instead of killing
or hanging the whole test session.  Settings are fixed
(``derandomize=True``), so CI sees the same examples every run.  Under
``PYDSCONV_ISA`` (CI's scalar run) every example uses that ISA; otherwise each
example draws one of the ISAs the host runs.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest
from conftest import assert_close, host_isas, run_python
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import pydsconv
from pydsconv import _core
from pydsconv import reference as ref

MAX_EXAMPLES = 250

SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

LAYOUTS = {2: ("NCHW", "NHWC"), 1: ("NCL", "NLC")}

# op name -> (kind, spatial)
OPS = {
    "depthwise_conv2d": ("dw", 2),
    "depthwise_conv1d": ("dw", 1),
    "pointwise_conv2d": ("pw", 2),
    "pointwise_conv1d": ("pw", 1),
    "separable_conv2d": ("sep", 2),
    "separable_conv1d": ("sep", 1),
    "depthwise_conv2d_backward": ("dwb", 2),
    "depthwise_conv1d_backward": ("dwb", 1),
    "pointwise_conv2d_backward": ("pwb", 2),
    "pointwise_conv1d_backward": ("pwb", 1),
}

# Where the child writes the call it is about to make (read back on a crash or hang).
_LAST_CALL_FILE = os.environ.get("PYDSCONV_PROPERTY_LAST_CALL")


# ---------------------------------------------------------------------------
# The rules of cpp/README.md, transcribed (the independent oracle of rejection)
# ---------------------------------------------------------------------------


def _pair(v, spatial):
    if isinstance(v, (tuple, list)):
        return tuple(v)
    return (v,) * spatial


def _explicit_pads(padding, spatial):
    """Explicit padding -> ((lo, hi), ...) per spatial axis, or None for a mode."""
    if isinstance(padding, str):
        return None
    if spatial == 1:
        if isinstance(padding, (tuple, list)):
            return (tuple(padding),)
        return ((padding, padding),)
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    return tuple(tuple(e) if isinstance(e, (tuple, list)) else (e, e) for e in padding)


def _resolve(mode_pads, padding, size, k, s, d):
    """Rule 6 for one axis: (lo, hi)."""
    eff = (k - 1) * d + 1
    if mode_pads is not None:
        return mode_pads
    if padding == "valid":
        return 0, 0
    if padding == "same":
        out = -(-size // s)
        total = max((out - 1) * s + eff - size, 0)
        return total // 2, total - total // 2
    assert padding == "causal"
    return eff - 1, 0


def _rules(kind, spatial, a, kw):
    """(broken, result) for a call: ``broken`` lists keywords naming the
    arguments of every broken rule (empty: the call is valid); ``result`` is
    the forward output's shape when the geometry is valid."""
    broken = []
    layout = kw["layout"]
    last = layout in ("NHWC", "NLC")
    has_dw = kind in ("dw", "sep", "dwb")
    has_pw = kind in ("pw", "sep", "pwb")
    # rule 5
    if has_dw:
        s = _pair(kw["stride"], spatial)
        d = _pair(kw["dilation"], spatial)
        if min(s) < 1:
            broken.append("stride")
        if min(d) < 1:
            broken.append("dilation")
        pads = _explicit_pads(kw["padding"], spatial)
        if pads is not None and min(min(p) for p in pads) < 0:
            broken.append("padding")
    # rule 1
    x = a["x"].shape
    if len(x) != spatial + 2:
        return broken + ["x"], None
    N = x[0]
    C = x[-1] if last else x[1]
    sp = x[1:-1] if last else x[2:]
    if C < 1 or min(sp) < 1:
        broken.append("x")
    out_sp, cmid = tuple(sp), C
    # rules 2, 4, 6, 7
    if has_dw:
        wname = "depthwise_weight" if kind == "sep" else "weight"
        w = a[wname].shape
        if not (len(w) == spatial + 2 and w[1] == 1 and w[0] > 0 and C > 0 and w[0] % C == 0):
            broken.append(wname)
            w = None
        elif min(w[2:]) < 1:
            broken.append(wname)
            w = None
        if w is not None:
            cmid = w[0]
            bname = "depthwise_bias" if kind == "sep" else "bias"
            b = a.get(bname)
            if b is not None and b.shape != (cmid,):
                broken.append(bname)
            if not broken:
                outs = []
                for ax in range(spatial):
                    k = w[2 + ax]
                    lo, hi = _resolve(
                        pads[ax] if pads else None, kw["padding"], sp[ax], k, s[ax], d[ax]
                    )
                    eff = (k - 1) * d[ax] + 1
                    if eff > sp[ax] + lo + hi:
                        broken.append(wname)
                        break
                    outs.append((sp[ax] + lo + hi - eff) // s[ax] + 1)
                else:
                    out_sp = tuple(outs)
    cout = cmid
    # rules 3, 4
    if has_pw:
        wname = "pointwise_weight" if kind == "sep" else "weight"
        w = a[wname].shape
        ok = len(w) in (2, spatial + 2) and w[0] >= 1 and w[1] == cmid
        ok = ok and all(v == 1 for v in w[2:])
        if not ok:
            broken.append(wname)
        else:
            cout = w[0]
            bname = "pointwise_bias" if kind == "sep" else "bias"
            b = a.get(bname)
            if b is not None and b.shape != (cout,):
                broken.append(bname)
    if broken:
        return broken, None
    shape = (N,) + out_sp + (cout,) if last else (N, cout) + out_sp
    # rule 8
    if "grad_out" in a and a["grad_out"].shape != shape:
        broken.append("grad_out")
    # rule 9
    out = kw.get("out")
    if out is not None and out.shape != shape:
        broken.append("out")
    return broken, shape


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------


def _isas():
    if os.environ.get("PYDSCONV_ISA"):
        return [pydsconv.cpu_features()["isa"]]
    return host_isas()


_small = st.one_of(st.integers(1, 9), st.integers(1, 3))
_wide = st.one_of(_small, st.integers(64, 96))  # OW >= 64: the wide-row kernels


def _variant(arr, kind, rng):
    """``arr``'s values (or, for 'broadcast', one of them) in another memory layout."""
    if arr.size == 0 or kind == "c":
        return arr
    if kind == "strided":
        big = np.zeros(arr.shape[:-1] + (2 * arr.shape[-1],), arr.dtype)
        v = big[..., ::2]
        v[...] = arr
        return v
    if kind == "reversed":
        return np.ascontiguousarray(arr[..., ::-1])[..., ::-1]
    if kind == "fortran":
        return np.asfortranarray(arr)
    if kind == "unaligned":
        raw = np.zeros(arr.nbytes + 1, np.uint8)
        v = raw[1:].view(arr.dtype).reshape(arr.shape)
        v[...] = arr
        return v
    assert kind == "broadcast"
    return np.broadcast_to(arr.reshape(-1)[0], arr.shape)


_VARIANTS = ["c"] * 6 + ["strided", "reversed", "fortran", "unaligned", "broadcast"]


def _padding_strategy(spatial):
    small = st.integers(0, 4)
    if spatial == 2:
        return st.one_of(
            small,
            st.tuples(small, small),
            st.tuples(st.tuples(small, small), st.tuples(small, small)),
            st.sampled_from(["valid", "same"]),
        )
    return st.one_of(small, st.tuples(small, small), st.sampled_from(["valid", "same", "causal"]))


_MUTATIONS = {
    "dw": [
        "stride",
        "dilation",
        "padding",
        "bias",
        "weight_mult",
        "kernel0",
        "x_empty",
        "x_ndim",
        "out",
    ],
    "sep": [
        "stride",
        "dilation",
        "padding",
        "bias",
        "pw_bias",
        "weight_mult",
        "kernel0",
        "pw_cin",
        "x_empty",
        "x_ndim",
        "out",
    ],
    "dwb": [
        "stride",
        "dilation",
        "padding",
        "weight_mult",
        "kernel0",
        "x_empty",
        "x_ndim",
        "grad_out",
    ],
    "pw": ["pw_cin", "pw_trailing", "pw_cout0", "bias", "x_empty", "x_ndim", "out"],
    "pwb": ["pw_cin", "pw_trailing", "pw_cout0", "x_empty", "x_ndim", "grad_out"],
}


@st.composite
def calls(draw, kind, spatial):
    """One call: (arrays, kwargs, description)."""
    has_dw = kind in ("dw", "sep", "dwb")
    has_pw = kind in ("pw", "sep", "pwb")
    forward = kind in ("dw", "pw", "sep")
    layout = draw(st.sampled_from(LAYOUTS[spatial]))
    last = layout in ("NHWC", "NLC")
    dtype = np.dtype(draw(st.sampled_from(["float32", "float64"])))
    N = draw(st.sampled_from([1, 2, 0, 1, 3]))
    C = draw(st.sampled_from([1, 1, 2, 3, 5, 8]))
    sp = tuple(draw(_small) for _ in range(spatial - 1)) + (draw(_wide),)
    mutation = draw(st.sampled_from([None] * 12 + _MUTATIONS[kind]))  # ~60 % unbroken
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def rand(shape):
        return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)

    a, kw = {}, {"layout": layout}
    cmid = C
    if has_dw:
        M = draw(st.sampled_from([1, 1, 2, 3]))
        cmid = C * M
        s = tuple(
            draw(st.one_of(st.just(1), st.integers(1, 3), st.integers(4, 12)))
            for _ in range(spatial)
        )
        d = tuple(draw(st.integers(1, 3)) for _ in range(spatial))
        padding = draw(_padding_strategy(spatial))
        pads = _explicit_pads(padding, spatial)
        if padding == "valid":
            pads = ((0, 0),) * spatial
        ks = []
        for ax in range(spatial):
            mode = draw(st.sampled_from(["small", "small", "small", "fit", "over"]))
            if mode == "small" or pads is None:
                ks.append(draw(st.one_of(st.just(1), st.integers(1, 3), st.integers(1, 5))))
            else:  # as large as the padded input (or one tap larger)
                padded = sp[ax] + sum(pads[ax])
                k = (padded - 1) // d[ax] + 1
                ks.append(k + (mode == "over"))
        if spatial == 2 and ks[0] * ks[1] > 512:  # keep the reference's tap loop short
            ks[0] = min(ks[0], 3)
        if mutation == "stride":
            s = tuple(
                draw(st.sampled_from([0, -1])) if ax == spatial - 1 else v for ax, v in enumerate(s)
            )
        if mutation == "dilation":
            d = (0,) + d[1:]
        if mutation == "padding":
            padding = (-1, 1) if spatial == 1 else ((1, 0), (0, -1))
        if mutation == "kernel0":
            ks[-1] = 0
        kw.update(
            stride=s[0] if spatial == 1 and draw(st.booleans()) else s,
            dilation=d[0] if spatial == 1 and draw(st.booleans()) else d,
            padding=padding,
        )
        wname = "depthwise_weight" if kind == "sep" else "weight"
        first = cmid + 1 if mutation == "weight_mult" and C > 1 else cmid
        second = 2 if mutation == "weight_mult" and C == 1 else 1
        a[wname] = rand((first, second) + tuple(ks))
        if kind in ("dw", "sep") and (draw(st.booleans()) or mutation == "bias"):
            a["depthwise_bias" if kind == "sep" else "bias"] = rand((cmid + (mutation == "bias"),))
    cout = cmid
    if has_pw:
        cout = draw(st.sampled_from([1, 2, 3, 4, 7, 16]))
        if mutation == "pw_cout0":
            cout = 0
        cin = cmid + 1 if mutation == "pw_cin" else cmid
        wname = "pointwise_weight" if kind == "sep" else "weight"
        full = draw(st.booleans())
        trailing = (1,) * spatial
        if mutation == "pw_trailing":
            full, trailing = True, (2,) + (1,) * (spatial - 1)
        a[wname] = rand((cout, cin) + (trailing if full else ()))
        bname = "pointwise_bias" if kind == "sep" else "bias"
        bad = (kind == "pw" and mutation == "bias") or (kind == "sep" and mutation == "pw_bias")
        if kind in ("pw", "sep") and (draw(st.booleans()) or bad):
            a[bname] = rand((cout + bad,))
    xs = (N,) + sp + (C,) if last else (N, C) + sp
    if mutation == "x_empty":
        xs = xs[:-1] + (0,)
    if mutation == "x_ndim":
        xs = xs + (1,)
    a["x"] = rand(xs)
    # The forward shape the rules give (for grad_out and out).
    broken, shape = _rules(kind, spatial, a, dict(kw, out=None))
    if kind in ("dwb", "pwb"):
        gshape = shape if shape is not None else (N, cout) + sp
        if mutation == "grad_out":
            gshape = gshape[:-1] + (gshape[-1] + 1,)
        a["grad_out"] = rand(gshape)
        kw.update(
            input_grad=draw(st.booleans()),
            weight_grad=draw(st.booleans()),
            bias_grad=draw(st.booleans()),
        )
    if forward:
        kw["activation"] = draw(st.sampled_from([None, "relu", "relu6"]))
        if kind == "sep":
            kw["mid_activation"] = draw(st.sampled_from([None, "relu", "relu6"]))
        if mutation == "out" or (shape is not None and draw(st.booleans())):
            oshape = shape if shape is not None else (N, cout) + sp
            if mutation == "out":
                oshape = oshape[:-1] + (oshape[-1] + 1,)
            kw["out"] = np.full(oshape, -7.25, dtype)
    kw["num_threads"] = draw(st.sampled_from([None, None, 1, 2, 3]))
    # Memory layouts of the inputs (values unchanged, except 'broadcast').
    for name in list(a):
        v = draw(st.sampled_from(_VARIANTS))
        a[name] = _variant(a[name], v, rng)
    isa = draw(st.sampled_from(_isas()))
    return a, kw, isa, mutation


# ---------------------------------------------------------------------------
# The property
# ---------------------------------------------------------------------------

_ARG_ORDER = {
    "dw": ["x", "weight", "bias"],
    "pw": ["x", "weight", "bias"],
    "sep": ["x", "depthwise_weight", "pointwise_weight", "depthwise_bias", "pointwise_bias"],
    "dwb": ["grad_out", "x", "weight"],
    "pwb": ["grad_out", "x", "weight"],
}


def _describe(name, a, kw, isa):
    def arr(v):
        return (
            f"<{v.dtype} {v.shape} strides={v.strides} "
            f"{'C' if v.flags.c_contiguous else 'non-C'}"
            f"{'' if v.flags.aligned else ' unaligned'}>"
        )

    args = ", ".join(f"{k}={arr(v)}" for k, v in a.items())
    kws = ", ".join(
        f"{k}={arr(v) if isinstance(v, np.ndarray) else repr(v)}" for k, v in kw.items()
    )
    return f"[isa={isa}] pydsconv.{name}({args}, {kws})"


# A call on these small arrays takes milliseconds; a child process (where the
# property runs) that is stuck in one for _HANG_S reports it and exits, so a
# hang in the C++ core is a quick, explained failure (generous: a hang guard
# must not fire on a slow, sanitized or loaded host).
_HANG_S = 60
_WATCH = {"t": None, "desc": None}


def start_watchdog():
    def watch():
        while True:
            time.sleep(0.25)
            t = _WATCH["t"]
            if t is not None and time.monotonic() - t > _HANG_S:
                sys.stderr.write(f"HUNG: no return after {_HANG_S} s from {_WATCH['desc']}\n")
                sys.stderr.flush()
                os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def _note(text):
    try:
        note(text)
    except Exception:  # outside a Hypothesis test (the degenerate cases)
        pass


def check_call(name, a, kw, isa, mutation):
    kind, spatial = OPS[name]
    fn, oracle = getattr(pydsconv, name), getattr(ref, name)
    args = [a.get(k) for k in _ARG_ORDER[kind]]
    broken, shape = _rules(kind, spatial, a, kw)
    desc = _describe(name, a, kw, isa)
    _note(desc)
    _note(f"mutation={mutation} rules broken={broken}")
    inputs = {k: v.copy() for k, v in a.items()}
    out = kw.get("out")
    out_before = None if out is None else out.copy()
    if _LAST_CALL_FILE:
        with open(_LAST_CALL_FILE, "w") as f:
            f.write(desc)
    before = pydsconv.cpu_features()["isa"]
    _core.set_isa(isa)
    _WATCH["desc"], _WATCH["t"] = desc, time.monotonic()
    try:
        got = fn(*args, **kw)
        err = None
    except ValueError as e:
        got, err = None, e
    finally:
        _WATCH["t"] = None
        _core.set_isa(before)
    for k, v in a.items():
        assert np.array_equal(v, inputs[k]), f"input {k} was written"
    if broken:
        assert err is not None, f"accepted a call that breaks the rules for {broken}: {desc}"
        msg = str(err)
        assert any(b in msg for b in broken), (
            f"ValueError {msg!r} names none of the broken arguments {broken}"
        )
        if out is not None:
            assert np.array_equal(out, out_before, equal_nan=True), "out written on error"
        return
    assert err is None, f"rejected a valid call ({err}): {desc}"
    ref_kw = {k: v for k, v in kw.items() if k != "out"}
    want = oracle(*args, **ref_kw)
    if kind in ("dw", "pw", "sep"):
        if out is not None:
            assert got is out, "out= not returned"
        assert got.shape == shape, (got.shape, shape)
        assert got.flags.c_contiguous
        assert_close(got, want, a["x"].dtype)
        return
    flags = (kw["input_grad"], kw["weight_grad"], kw["bias_grad"])
    for g, w, flag, what in zip(got, want, flags, ("grad_x", "grad_weight", "grad_bias")):
        if not flag:
            assert g is None, f"{what} returned though not requested"
            continue
        assert g is not None, f"{what} missing"
        assert g.shape == w.shape, (what, g.shape, w.shape)
        assert_close(g, w, a["x"].dtype)
    if flags[0]:
        assert got[0].shape == a["x"].shape
    if flags[1]:
        assert got[1].shape == a["weight"].shape


def property_for(name):
    kind, spatial = OPS[name]

    @SETTINGS
    @given(case=calls(kind, spatial))
    def prop(case):
        check_call(name, *case)

    return prop


# ---------------------------------------------------------------------------
# The tests: one child interpreter per op
# ---------------------------------------------------------------------------

_CHILD = r"""
import json, os, sys, traceback
sys.path.insert(0, sys.argv[3])
import test_properties as tp
tp.start_watchdog()
if sys.argv[1] == "property":
    try:
        tp.property_for(sys.argv[2])()
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
    print("ok")
else:
    print(json.dumps(tp.run_degenerate(sys.argv[2])))
"""

_TIMEOUT_S = 600


def _run_child(mode, name):
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        last = os.path.join(tmp, "last_call.txt")
        env = {"PYDSCONV_PROPERTY_LAST_CALL": last}

        def last_call():
            return open(last).read() if os.path.exists(last) else "?"

        try:
            r = run_python(_CHILD, args=(mode, name, tests_dir), env=env, timeout=_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"{name}: no result after {_TIMEOUT_S} s; the last call started "
                f"(probably hung): {last_call()}"
            )
        if r.returncode != 0:
            pytest.fail(
                f"{name}: exit {r.returncode}; last call: {last_call()}\n"
                f"{r.stdout[-6000:]}\n{r.stderr[-6000:]}"
            )
        return r.stdout


@pytest.mark.parametrize("name", list(OPS))
def test_matches_reference_or_rejected_by_the_rules(name):
    out = _run_child("property", name)
    assert out.strip().endswith("ok"), out[-3000:]


# ---------------------------------------------------------------------------
# Degenerate sizes, always run (independent of what Hypothesis draws)
# ---------------------------------------------------------------------------


def _degenerate_cases():
    """(op name, x logical NC+spatial shape, kernel, M or C_out, kwargs)."""
    cases = []
    for spatial in (2, 1):
        one = (1,) * spatial
        for N, C, sp, k, kwargs in [
            (1, 1, one, one, {}),  # 1x1 image, 1x1 kernel
            (2, 3, one, (3,) * spatial, {"padding": 1}),  # kernel = padded input
            (1, 1, (5,) * spatial, (5,) * spatial, {}),  # kernel = input, valid
            (1, 2, (4,) * spatial, (2,) * spatial, {"stride": 9}),  # stride > input
            (1, 2, (4,) * spatial, (2,) * spatial, {"stride": 9, "padding": "same"}),
            (0, 3, (4,) * spatial, (3,) * spatial, {"padding": "same"}),  # batch 0
            (1, 1, (3,) * spatial, (2,) * spatial, {"dilation": 2}),  # dilated kernel = input
            (1, 2, (2,) * spatial, (4,) * spatial, {"padding": "same", "stride": 3}),
            (1, 1, (1,) * (spatial - 1) + (70,), (1,) * spatial, {"padding": 1}),
            (2, 1, (2,) * (spatial - 1) + (70,), (3,) * spatial, {"padding": 2, "dilation": 2}),
        ]:
            for kind in ("dw", "sep", "dwb", "pw", "pwb"):
                name = {
                    "dw": "depthwise_conv",
                    "sep": "separable_conv",
                    "pw": "pointwise_conv",
                    "dwb": "depthwise_conv",
                    "pwb": "pointwise_conv",
                }[kind]
                name += f"{spatial}d" + ("_backward" if kind.endswith("b") else "")
                if kind in ("pw", "pwb"):
                    kwargs_ = {}
                    if kwargs:
                        continue
                else:
                    kwargs_ = kwargs
                cases.append((name, N, C, sp, k, kwargs_))
    return cases


def _degenerate_call(name, N, C, sp, k, kwargs, layout_last, dtype):
    kind, spatial = OPS[name]
    layout = LAYOUTS[spatial][layout_last]
    rng = np.random.default_rng(7)
    dt = np.dtype(dtype)

    def rand(shape):
        return rng.uniform(-1, 1, size=shape).astype(dt)

    xs = (N,) + sp + (C,) if layout_last else (N, C) + sp
    a = {"x": rand(xs)}
    kw = {"layout": layout}
    cmid = C
    if kind in ("dw", "sep", "dwb"):
        M = 2
        a["depthwise_weight" if kind == "sep" else "weight"] = rand((C * M, 1) + k)
        if kind != "dwb":
            a["depthwise_bias" if kind == "sep" else "bias"] = rand((C * M,))
        kw.update(
            stride=kwargs.get("stride", 1),
            dilation=kwargs.get("dilation", 1),
            padding=kwargs.get("padding", 0),
        )
        cmid = C * M
    if kind in ("pw", "sep", "pwb"):
        a["pointwise_weight" if kind == "sep" else "weight"] = rand((3, cmid))
        if kind != "pwb":
            a["pointwise_bias" if kind == "sep" else "bias"] = rand((3,))
    broken, shape = _rules(kind, spatial, a, kw)
    assert not broken, broken
    if kind in ("dwb", "pwb"):
        a["grad_out"] = rand(shape)
        kw.update(input_grad=True, weight_grad=True, bias_grad=True)
    return a, dict(kw, num_threads=None)


def run_degenerate(name):
    """Every degenerate case of op ``name``, both layouts and dtypes, on the
    default ISA: {case id: error text} for the failures (empty: all pass)."""
    failures = {}
    isa = pydsconv.cpu_features()["isa"]
    for case in _degenerate_cases():
        if case[0] != name:
            continue
        for layout_last in (False, True):
            for dtype in ("float32", "float64"):
                cid = f"{case[1:]} {LAYOUTS[OPS[name][1]][layout_last]} {dtype}"
                try:
                    a, kw = _degenerate_call(*case, layout_last, dtype)
                    check_call(name, a, kw, isa, None)
                except Exception as e:  # collect them all
                    failures[cid] = f"{type(e).__name__}: {e}"
    return failures


@pytest.mark.parametrize("name", list(OPS))
def test_degenerate_sizes(name):
    """1x1 images, kernels as large as the (padded) input, one channel,
    batch 0, stride larger than the input, rows fully in the padding."""
    failures = json.loads(_run_child("degenerate", name).strip().splitlines()[-1])
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())
