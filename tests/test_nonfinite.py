"""One semantics for Inf and NaN: IEEE arithmetic on the zero-padded tensor.

The padding is real zeros, as in ``pydsconv.reference`` and PyTorch's padded
convolution: a non-finite weight tap that reads padding contributes
``0 * inf = nan`` (or ``0 * nan``), and so does a non-finite ``grad_out``
whose output read padding through some tap (the weight gradient of that
tap).  Every path must agree with the reference bit for bit on where the
results are NaN, +Inf and -Inf, and closely elsewhere: both layouts, every
ISA, both dtypes, fused and unfused, forward and backward, any thread count.
"""

import numpy as np
import pytest
from conftest import to_nhwc

import pydsconv
from pydsconv import reference as ref

# The reference computes 0 * inf on purpose; NumPy warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

BAD = {"inf": np.inf, "-inf": -np.inf, "nan": np.nan}

# (C, M, H, W, k, stride, dilation, padding): small planes (flat kernels),
# wide rows, 7x7, generic kernel widths, stride 2 (the via-NHWC path for
# 17-32 wide rows), dilation, and one-sided padding.
SHAPES = [
    (3, 1, 7, 7, 3, 1, 1, 1),
    (16, 1, 14, 14, 3, 1, 1, "same"),
    (16, 1, 14, 14, 5, 1, 1, "same"),
    (8, 2, 9, 11, 3, 2, 1, "same"),
    (24, 1, 20, 24, 3, 2, 1, 1),
    (16, 1, 40, 40, 3, 1, 1, 1),
    (16, 1, 12, 12, 7, 1, 1, 3),
    (5, 1, 10, 9, 2, 1, 1, ((1, 0), (0, 1))),
    (4, 3, 11, 13, 4, 1, 2, "same"),
    (8, 1, 16, 16, 3, 1, 3, 3),
    (17, 1, 7, 7, 5, 2, 1, 2),
]
IDS = [f"C{c}M{m}_{h}x{w}_k{k}s{s}d{d}p{p}".replace(" ", "") for c, m, h, w, k, s, d, p in SHAPES]


def _same_classes(got, want, rtol, what):
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    for name, mask in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
        g, w = mask(got), mask(want)
        if not np.array_equal(g, w):
            where = np.argwhere(g != w)[:5].tolist()
            raise AssertionError(
                f"{what}: {name} differs from the reference at {where} "
                f"(got {got[tuple(np.argwhere(g != w)[0])]}, "
                f"want {want[tuple(np.argwhere(g != w)[0])]})"
            )
    fin = np.isfinite(want)
    scale = max(1.0, float(np.max(np.abs(want[fin]))) if fin.any() else 1.0)
    np.testing.assert_allclose(got[fin], want[fin], rtol=rtol, atol=rtol * scale, err_msg=what)


def _data(shape, dtype, seed):
    C, M, H, W, k, s, d, p = shape
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (2, C, H, W)).astype(dtype)
    w = rng.uniform(-1, 1, (C * M, 1, k, k)).astype(dtype)
    return x, w, dict(stride=s, dilation=d, padding=p)


def _poison_weights(w, bad, seed):
    """Non-finite values at corner and edge taps of some channels (those read
    padding at the borders) and one interior tap."""
    w = w.copy()
    k = w.shape[-1]
    cm = w.shape[0]
    rng = np.random.default_rng(seed)
    for c in {0, cm - 1, int(rng.integers(cm))}:
        w[c, 0, 0, 0] = bad
        w[c, 0, k - 1, k // 2] = bad
    w[cm // 2, 0, k // 2, k - 1] = bad
    return w


def _poison_input(x, bad):
    """Non-finite values at corners, on edges and in the interior."""
    x = x.copy()
    H, W = x.shape[-2:]
    for h, w in ((0, 0), (H - 1, W - 1), (0, W // 2), (H // 2, 0), (H // 2, W // 2)):
        x[0, h * 7 % x.shape[1], h, w] = bad
    x[1, -1, H - 1, 0] = bad
    return x


def _tol(dtype):
    return 1e-10 if dtype == np.float64 else 2e-5


def _layouts(x, layout):
    return x if layout == "NCHW" else to_nhwc(x)


def _back(y, layout):
    return y if layout == "NCHW" else np.moveaxis(y, -1, 1)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_depthwise_and_fused_forward(isa, shape, bad, dtype, layout, threads):
    x, w, kw = _data(shape, dtype, 1)
    pw = np.random.default_rng(2).uniform(-1, 1, (6, w.shape[0])).astype(dtype)
    cases = {
        "weights": (x, _poison_weights(w, BAD[bad], 3)),
        "input": (_poison_input(x, BAD[bad]), w),
    }
    for what, (xx, ww) in cases.items():
        xl = _layouts(xx, layout)
        # the newer activations once (they are elementwise: threads change nothing)
        more = ("hardswish", "hardsigmoid", "silu", "sigmoid") if threads == 1 else ()
        for act in (None, "relu", "relu6") + more:
            want = ref.depthwise_conv2d(
                xx.astype(np.float64), ww.astype(np.float64), activation=act, **kw
            )
            got = pydsconv.depthwise_conv2d(
                xl, ww, layout=layout, activation=act, num_threads=threads, **kw
            )
            _same_classes(
                _back(got, layout),
                want,
                _tol(dtype),
                f"depthwise, non-finite {what}, activation={act}",
            )
            want = ref.separable_conv2d(
                xx.astype(np.float64),
                ww.astype(np.float64),
                pw.astype(np.float64),
                mid_activation=act,
                **kw,
            )
            got = pydsconv.separable_conv2d(
                xl, ww, pw, layout=layout, mid_activation=act, num_threads=threads, **kw
            )
            _same_classes(
                _back(got, layout),
                want,
                _tol(dtype),
                f"separable, non-finite {what}, mid_activation={act}",
            )


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_depthwise_backward(isa, shape, bad, dtype, layout):
    x, w, kw = _data(shape, dtype, 4)
    y = ref.depthwise_conv2d(x.astype(np.float64), w.astype(np.float64), **kw)
    gy = np.random.default_rng(5).uniform(-1, 1, y.shape).astype(dtype)
    gy_bad = _poison_input(gy, BAD[bad])  # border outputs read padding
    cases = {
        "weights": (gy, x, _poison_weights(w, BAD[bad], 6)),
        "input": (gy, _poison_input(x, BAD[bad]), w),
        "grad_out": (gy_bad, x, w),
    }
    for what, (g, xx, ww) in cases.items():
        want = ref.depthwise_conv2d_backward(
            g.astype(np.float64), xx.astype(np.float64), ww.astype(np.float64), **kw
        )
        for threads in (1, 3):
            got = pydsconv.depthwise_conv2d_backward(
                _layouts(g, layout),
                _layouts(xx, layout),
                ww,
                layout=layout,
                num_threads=threads,
                **kw,
            )
            for name, gg, ww_ in zip(("grad_x", "grad_weight", "grad_bias"), got, want):
                if name == "grad_x":
                    gg = _back(gg, layout)
                _same_classes(
                    gg,
                    ww_,
                    1e-9 if dtype == np.float64 else 1e-4,
                    f"backward {name}, non-finite {what}, threads={threads}",
                )


@pytest.mark.parametrize("layout", ["NCL", "NLC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize(
    "k,stride,dilation,padding",
    [(3, 1, 1, 1), (5, 2, 1, "same"), (4, 1, 2, "causal"), (3, 1, 3, 2)],
)
def test_1d_forward_and_backward(isa, k, stride, dilation, padding, bad, dtype, layout):
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, (2, 12, 30)).astype(dtype)
    w = rng.uniform(-1, 1, (12, 1, k)).astype(dtype)
    w[0, 0, 0] = w[11, 0, k - 1] = BAD[bad]
    pw = rng.uniform(-1, 1, (5, 12)).astype(dtype)
    kw = dict(stride=stride, dilation=dilation, padding=padding)
    xl = x if layout == "NCL" else np.ascontiguousarray(x.transpose(0, 2, 1))
    back = (lambda a: a) if layout == "NCL" else (lambda a: np.moveaxis(a, -1, 1))
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    _same_classes(
        back(pydsconv.depthwise_conv1d(xl, w, layout=layout, **kw)),
        ref.depthwise_conv1d(x64, w64, **kw),
        _tol(dtype),
        "depthwise_conv1d",
    )
    _same_classes(
        back(pydsconv.separable_conv1d(xl, w, pw, layout=layout, **kw)),
        ref.separable_conv1d(x64, w64, pw.astype(np.float64), **kw),
        _tol(dtype),
        "separable_conv1d",
    )
    y = ref.depthwise_conv1d(x64, w64, **kw)
    g = rng.uniform(-1, 1, y.shape).astype(dtype)
    g[0, 0, 0] = g[1, 11, -1] = BAD[bad]
    gl = g if layout == "NCL" else np.ascontiguousarray(g.transpose(0, 2, 1))
    got = pydsconv.depthwise_conv1d_backward(gl, xl, w, layout=layout, **kw)
    want = ref.depthwise_conv1d_backward(g.astype(np.float64), x64, w64, **kw)
    for name, gg, ww in zip(("grad_x", "grad_weight", "grad_bias"), got, want):
        _same_classes(
            back(gg) if name == "grad_x" else gg,
            ww,
            1e-9 if dtype == np.float64 else 1e-4,
            f"1-D backward {name}",
        )


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", list(BAD))
def test_pointwise_forward_and_backward(isa, bad, dtype, layout):
    rng = np.random.default_rng(8)
    x = rng.uniform(-1, 1, (2, 19, 9, 7)).astype(dtype)
    w = rng.uniform(-1, 1, (13, 19)).astype(dtype)
    x[0, 3, 0, 0] = x[1, 18, 8, 6] = BAD[bad]
    w2 = w.copy()
    w2[12, 0] = BAD[bad]
    x64 = x.astype(np.float64)
    for ww in (w, w2):
        for act in (None, "relu", "hardswish", "hardsigmoid", "silu", "sigmoid"):
            got = pydsconv.pointwise_conv2d(_layouts(x, layout), ww, layout=layout, activation=act)
            _same_classes(
                _back(got, layout),
                ref.pointwise_conv2d(x64, ww.astype(np.float64), activation=act),
                _tol(dtype),
                f"pointwise activation={act}",
            )
            packed = pydsconv.prepack_pointwise(ww)
            got = pydsconv.pointwise_conv2d(
                _layouts(x, layout), packed, layout=layout, activation=act
            )
            _same_classes(
                _back(got, layout),
                ref.pointwise_conv2d(x64, ww.astype(np.float64), activation=act),
                _tol(dtype),
                f"prepacked pointwise activation={act}",
            )
    g = rng.uniform(-1, 1, (2, 13, 9, 7)).astype(dtype)
    g[1, 0, 4, 4] = BAD[bad]
    got = pydsconv.pointwise_conv2d_backward(
        _layouts(g, layout), _layouts(x, layout), w2, layout=layout
    )
    want = ref.pointwise_conv2d_backward(g.astype(np.float64), x64, w2.astype(np.float64))
    for name, gg, ww in zip(("grad_x", "grad_weight", "grad_bias"), got, want):
        _same_classes(
            _back(gg, layout) if name == "grad_x" else gg,
            ww,
            1e-9 if dtype == np.float64 else 1e-4,
            f"pointwise backward {name}",
        )
