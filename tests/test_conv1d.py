"""The 1-D ops: depthwise_conv1d, pointwise_conv1d, separable_conv1d and the
1-D backward ops, against ``pydsconv.reference`` on every ISA.

Layouts NCL / NLC, both dtypes, kernels 1/3/5/7, strides 1-3, dilation 1-2,
padding int / (left, right) / "valid" / "same" / "causal", multiplier 1-2,
bias and activation, batch 0; causality (output t ignores inputs after t);
pointwise weights in 3-D (C_out, C_in, 1) and 2-D (C_out, C_in) form with
grad_weight returned in the shape given; a text-like shape; ``out=``; and
PyTorch's conv1d (groups=C) as a second oracle.
"""

import numpy as np
import pytest
from conftest import assert_close, rand

import pydsconv
from pydsconv import reference as ref

DTYPES = [np.float32, np.float64]
LAYOUTS = ["NCL", "NLC"]


def to_nlc(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def D(cfg_id, n, c, m, length, k, stride=1, padding=0, dilation=1, bias=False, act=None):
    return pytest.param(
        dict(
            n=n,
            c=c,
            m=m,
            l=length,
            k=k,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=bias,
            act=act,
        ),
        id=cfg_id,
    )


DW_CONFIGS = [
    D("k1", 2, 16, 1, 20, 1, bias=True),
    D("k1-s2", 1, 17, 1, 19, 1, stride=2, act="relu"),
    D("k3-p1", 2, 7, 1, 18, 3, padding=1, bias=True),
    D("k3-p-lr", 2, 17, 1, 33, 3, padding=(2, 0), act="relu6", bias=True),
    D("k3-p-r", 1, 15, 1, 16, 3, padding=[0, 1]),
    D("k3-valid-s3", 2, 33, 1, 40, 3, stride=3, padding="valid"),
    D("k3-same-s1", 2, 16, 1, 17, 3, padding="same", bias=True),
    D("k3-same-s2", 1, 1, 1, 17, 3, stride=2, padding="same"),
    D("k4-same-s3", 2, 17, 1, 22, 4, stride=3, padding="same", bias=True),
    D("k3-causal", 2, 17, 1, 25, 3, padding="causal", bias=True, act="relu"),
    D("k5-causal-d2", 2, 16, 1, 30, 5, padding="causal", dilation=2),
    D("k5-causal-s2", 1, 33, 1, 31, 5, stride=2, padding="causal", bias=True),
    D("k5-p2", 2, 15, 1, 35, 5, padding=2, act="relu6"),
    D("k5-d2-s2", 2, 7, 1, 37, 5, stride=2, padding=4, dilation=2, bias=True),
    D("k7-p3", 1, 16, 1, 50, 7, padding=3, bias=True),
    D("k7-same-d2", 2, 17, 1, 23, 7, padding="same", dilation=2),
    D("k7-s3-valid", 1, 7, 1, 40, 7, stride=3, padding="valid", bias=True),
    D("short-seq", 2, 16, 1, 2, 5, padding=2, bias=True),
    D("len1-causal", 2, 17, 1, 1, 3, padding="causal"),
    D("m2-k3", 2, 7, 2, 19, 3, padding=1, bias=True),
    D("m2-k5-causal", 2, 16, 2, 21, 5, padding="causal", act="relu"),
    D("m2-k3-s2-d2", 1, 17, 2, 27, 3, stride=2, padding="same", dilation=2, bias=True),
    D("m2-c1-k7", 2, 1, 2, 20, 7, padding=(1, 5)),
    D("m2-c33-valid-s3", 1, 33, 2, 29, 3, stride=3, padding="valid", act="relu6"),
]

DW_BWD_IDS = {
    "k1-s2",
    "k3-p1",
    "k3-p-lr",
    "k3-valid-s3",
    "k3-same-s2",
    "k4-same-s3",
    "k3-causal",
    "k5-causal-d2",
    "k5-causal-s2",
    "k5-d2-s2",
    "k7-same-d2",
    "short-seq",
    "len1-causal",
    "m2-k3",
    "m2-k5-causal",
    "m2-k3-s2-d2",
    "m2-c1-k7",
}
DW_BWD_CONFIGS = [p for p in DW_CONFIGS if p.id in DW_BWD_IDS]


def conv_kw(cfg):
    return dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])


def out_len(length, k, stride, padding, dilation):
    """Output length from the API rules (padding resolved here, not by the oracle)."""
    if padding == "valid":
        lo = hi = 0
    elif padding == "same":
        out = -(-length // stride)
        total = max((out - 1) * stride + (k - 1) * dilation + 1 - length, 0)
        lo, hi = total // 2, total - total // 2
    elif padding == "causal":
        lo, hi = dilation * (k - 1), 0
    elif isinstance(padding, int):
        lo = hi = padding
    else:
        lo, hi = padding
    return (length + lo + hi - dilation * (k - 1) - 1) // stride + 1


def make_x(rng, n, c, length, layout, dtype):
    x = rand(rng, (n, c, length), dtype)
    return x if layout == "NCL" else to_nlc(x)


def shape_1d(n, c, length, layout):
    return (n, c, length) if layout == "NCL" else (n, length, c)


def make_dw(cfg, layout, dtype, rng):
    x = make_x(rng, cfg["n"], cfg["c"], cfg["l"], layout, dtype)
    w = rand(rng, (cfg["c"] * cfg["m"], 1, cfg["k"]), dtype)
    b = rand(rng, (cfg["c"] * cfg["m"],), dtype) if cfg["bias"] else None
    return x, w, b


def dw_out_shape(cfg, layout):
    ol = out_len(cfg["l"], cfg["k"], cfg["stride"], cfg["padding"], cfg["dilation"])
    return shape_1d(cfg["n"], cfg["c"] * cfg["m"], ol, layout)


# ---------------------------------------------------------------------------
# depthwise_conv1d
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cfg", DW_CONFIGS)
def test_depthwise_forward(cfg, layout, dtype, isa, rng):
    x, w, b = make_dw(cfg, layout, dtype, rng)
    kw = dict(conv_kw(cfg), layout=layout, activation=cfg["act"])
    y = pydsconv.depthwise_conv1d(x, w, b, **kw)
    assert y.shape == dw_out_shape(cfg, layout)
    assert_close(y, ref.depthwise_conv1d(x, w, b, **kw), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cfg", DW_BWD_CONFIGS)
def test_depthwise_backward(cfg, layout, dtype, isa, rng):
    x, w, _ = make_dw(cfg, layout, dtype, rng)
    g = rand(rng, dw_out_shape(cfg, layout), dtype)
    kw = dict(conv_kw(cfg), layout=layout)
    gx, gw, gb = pydsconv.depthwise_conv1d_backward(g, x, w, **kw)
    ex, ew, eb = ref.depthwise_conv1d_backward(g, x, w, **kw)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == (w.shape[0],)
    assert_close(gx, ex, dtype)
    assert_close(gw, ew, dtype)
    assert_close(gb, eb, dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_depthwise_backward_flags(layout, isa, rng):
    cfg = dict(n=2, c=17, m=2, l=23, k=5, stride=2, padding="causal", dilation=1, bias=False)
    x, w, _ = make_dw(cfg, layout, np.float64, rng)
    g = rand(rng, dw_out_shape(cfg, layout), np.float64)
    full = ref.depthwise_conv1d_backward(g, x, w, layout=layout, **conv_kw(cfg))
    for flags in [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)]:
        got = pydsconv.depthwise_conv1d_backward(
            g,
            x,
            w,
            layout=layout,
            input_grad=bool(flags[0]),
            weight_grad=bool(flags[1]),
            bias_grad=bool(flags[2]),
            **conv_kw(cfg),
        )
        assert len(got) == 3
        for f, a, e in zip(flags, got, full):
            if f:
                assert_close(a, e)
            else:
                assert a is None


# ---------------------------------------------------------------------------
# pointwise_conv1d (weights 3-D and 2-D)
# ---------------------------------------------------------------------------

PW_CONFIGS = [
    # (n, c_in, c_out, length, bias, act)
    pytest.param((2, 1, 1, 7, True, None), id="1to1"),
    pytest.param((2, 7, 16, 9, True, "relu"), id="7to16"),
    pytest.param((1, 16, 17, 33, False, None), id="16to17"),
    pytest.param((2, 17, 15, 20, True, "relu6"), id="17to15"),
    pytest.param((2, 33, 64, 31, True, None), id="33to64"),
    pytest.param((3, 64, 33, 5, False, "relu"), id="64to33"),
    pytest.param((1, 5, 3, 1, True, None), id="len1"),
]


@pytest.mark.parametrize("wdim", [3, 2])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cfg", PW_CONFIGS)
def test_pointwise_forward_backward(cfg, layout, dtype, wdim, isa, rng):
    n, cin, cout, length, has_bias, act = cfg
    x = make_x(rng, n, cin, length, layout, dtype)
    w = rand(rng, (cout, cin, 1)[:wdim], dtype)
    b = rand(rng, (cout,), dtype) if has_bias else None
    y = pydsconv.pointwise_conv1d(x, w, b, layout=layout, activation=act)
    assert y.shape == shape_1d(n, cout, length, layout)
    assert_close(y, ref.pointwise_conv1d(x, w, b, layout=layout, activation=act), dtype)

    g = rand(rng, y.shape, dtype)
    gx, gw, gb = pydsconv.pointwise_conv1d_backward(g, x, w, layout=layout)
    ex, ew, eb = ref.pointwise_conv1d_backward(g, x, w, layout=layout)
    assert gw.shape == w.shape  # the shape the weight was given in
    assert_close(gx, ex, dtype)
    assert_close(gw, ew, dtype)
    assert_close(gb, eb, dtype)
    for flags in [(True, False, False), (False, True, False), (False, False, True)]:
        got = pydsconv.pointwise_conv1d_backward(
            g, x, w, layout=layout, input_grad=flags[0], weight_grad=flags[1], bias_grad=flags[2]
        )
        for f, a, e in zip(flags, got, (ex, ew, eb)):
            if f:
                assert_close(a, e, dtype)
            else:
                assert a is None


# ---------------------------------------------------------------------------
# separable_conv1d
# ---------------------------------------------------------------------------

SEP_CONFIGS = [
    # (dw cfg, c_out, mid_activation, activation, pointwise weight ndim)
    pytest.param(
        dict(n=2, c=7, m=1, l=20, k=3, stride=1, padding=1, dilation=1),
        16,
        None,
        None,
        3,
        id="k3-p1",
    ),
    pytest.param(
        dict(n=2, c=16, m=2, l=31, k=5, stride=1, padding="causal", dilation=2),
        17,
        "relu",
        None,
        2,
        id="m2-k5-causal-d2",
    ),
    pytest.param(
        dict(n=1, c=17, m=1, l=33, k=3, stride=2, padding="same", dilation=1),
        33,
        "relu6",
        "relu",
        3,
        id="k3-same-s2",
    ),
    pytest.param(
        dict(n=2, c=33, m=1, l=29, k=7, stride=3, padding="valid", dilation=1),
        8,
        None,
        "relu6",
        2,
        id="k7-valid-s3",
    ),
    pytest.param(
        dict(n=2, c=15, m=2, l=18, k=1, stride=1, padding=0, dilation=1),
        15,
        "relu",
        "relu",
        3,
        id="k1-m2",
    ),
    pytest.param(
        dict(n=1, c=5, m=1, l=3, k=5, stride=1, padding=(3, 1), dilation=1),
        6,
        None,
        None,
        2,
        id="short-lr",
    ),
]


@pytest.mark.parametrize("biases", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cfg,cout,mid_act,act,pw_ndim", SEP_CONFIGS)
def test_separable_forward(cfg, cout, mid_act, act, pw_ndim, layout, dtype, biases, isa, rng):
    x, dw, db = make_dw(dict(cfg, bias=biases), layout, dtype, rng)
    cm = cfg["c"] * cfg["m"]
    pw = rand(rng, (cout, cm, 1)[:pw_ndim], dtype)
    pb = rand(rng, (cout,), dtype) if biases else None
    kw = dict(conv_kw(cfg), layout=layout, mid_activation=mid_act, activation=act)
    y = pydsconv.separable_conv1d(x, dw, pw, db, pb, **kw)
    ol = out_len(cfg["l"], cfg["k"], cfg["stride"], cfg["padding"], cfg["dilation"])
    assert y.shape == shape_1d(cfg["n"], cout, ol, layout)
    assert_close(y, ref.separable_conv1d(x, dw, pw, db, pb, **kw), dtype)


# ---------------------------------------------------------------------------
# Causality: output t never sees inputs after t
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["depthwise", "separable"])
@pytest.mark.parametrize("stride,dilation,k", [(1, 1, 3), (1, 2, 5), (2, 1, 4), (3, 2, 3)])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_causal_ignores_future(op, stride, dilation, k, layout, isa, rng):
    dtype = np.float64
    n, c, m, length, cout = 2, 17, 2, 26, 9
    x = rand(rng, (n, c, length), dtype)
    dw = rand(rng, (c * m, 1, k), dtype)
    db = rand(rng, (c * m,), dtype)
    pw = rand(rng, (cout, c * m), dtype)
    kw = dict(stride=stride, dilation=dilation, padding="causal", layout=layout)

    def run(xs):
        xl = xs if layout == "NCL" else to_nlc(xs)
        if op == "depthwise":
            y = pydsconv.depthwise_conv1d(xl, dw, db, **kw)
        else:
            y = pydsconv.separable_conv1d(xl, dw, pw, db, mid_activation="relu", **kw)
        return y if layout == "NCL" else np.moveaxis(y, -1, 1)

    base = run(x)
    assert base.shape[-1] == -(-length // stride)  # causal keeps ceil(L / stride) outputs
    for t in (0, 1, 5, length - 2):
        x2 = x.copy()
        x2[:, :, t + 1 :] = rand(rng, x2[:, :, t + 1 :].shape, dtype) * 10  # change the future
        y2 = run(x2)
        # output o reads inputs o*stride - dilation*(k-1) .. o*stride
        last_safe = t // stride
        np.testing.assert_array_equal(y2[..., : last_safe + 1], base[..., : last_safe + 1])
        if last_safe + 1 < base.shape[-1]:
            assert not np.array_equal(y2[..., last_safe + 1 :], base[..., last_safe + 1 :])


# ---------------------------------------------------------------------------
# Batch 0, out=, non-contiguous input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_batch_zero(layout, dtype, isa, rng):
    c, m, length, k, cout = 17, 2, 13, 5, 6
    x = np.zeros(shape_1d(0, c, length, layout), dtype)
    dw = rand(rng, (c * m, 1, k), dtype)
    db = rand(rng, (c * m,), dtype)
    for padding, stride in [("causal", 1), ("same", 2), ("valid", 3), ((1, 2), 1)]:
        ol = out_len(length, k, stride, padding, 1)
        kw = dict(stride=stride, padding=padding, layout=layout)
        y = pydsconv.depthwise_conv1d(x, dw, db, activation="relu", **kw)
        assert y.shape == shape_1d(0, c * m, ol, layout) and y.dtype == dtype
        gx, gw, gb = pydsconv.depthwise_conv1d_backward(np.zeros(y.shape, dtype), x, dw, **kw)
        assert gx.shape == x.shape and gx.dtype == dtype
        assert gw.shape == dw.shape and not gw.any()
        assert gb.shape == (c * m,) and not gb.any()
        for pw in (rand(rng, (cout, c * m, 1), dtype), rand(rng, (cout, c * m), dtype)):
            y = pydsconv.separable_conv1d(x, dw, pw, db, **kw)
            assert y.shape == shape_1d(0, cout, ol, layout) and y.dtype == dtype
    for pw in (rand(rng, (cout, c, 1), dtype), rand(rng, (cout, c), dtype)):
        y = pydsconv.pointwise_conv1d(x, pw, layout=layout)
        assert y.shape == shape_1d(0, cout, length, layout) and y.dtype == dtype
        gx, gw, gb = pydsconv.pointwise_conv1d_backward(
            np.zeros(y.shape, dtype), x, pw, layout=layout
        )
        assert gx.shape == x.shape
        assert gw.shape == pw.shape and not gw.any()
        assert gb.shape == (cout,) and not gb.any()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_out_and_noncontiguous(layout, dtype, isa, rng):
    n, c, m, length, k, cout = 2, 17, 2, 30, 5, 12
    x = make_x(rng, n, c, length, layout, dtype)
    dw = rand(rng, (c * m, 1, k), dtype)
    db = rand(rng, (c * m,), dtype)
    pw = rand(rng, (cout, c * m, 1), dtype)
    pb = rand(rng, (cout,), dtype)
    kw = dict(stride=2, padding="causal", layout=layout)
    cases = [
        (pydsconv.depthwise_conv1d, ref.depthwise_conv1d, (dw, db), dict(kw, activation="relu6")),
        (
            pydsconv.separable_conv1d,
            ref.separable_conv1d,
            (dw, pw, db, pb),
            dict(kw, mid_activation="relu", activation="relu"),
        ),
        (pydsconv.pointwise_conv1d, ref.pointwise_conv1d, (pw[:, :c], pb), dict(layout=layout)),
    ]
    # views with the values of x but not C-contiguous
    flipped = np.ascontiguousarray(x[:, ::-1, ::-1])[:, ::-1, ::-1]
    padded = np.zeros((n, x.shape[1] * 2, x.shape[2] + 3), dtype)
    padded[:, ::2, 1:-2] = x
    views = {
        "negative-stride": flipped,
        "sliced": padded[:, ::2, 1:-2],
        "transposed": np.ascontiguousarray(np.swapaxes(x, 1, 2)).swapaxes(1, 2),
    }
    for op, rop, args, kwargs in cases:
        if op is pydsconv.pointwise_conv1d:
            args = (np.ascontiguousarray(args[0]),) + args[1:]
        e = rop(x, *args, **kwargs)
        out = np.full(e.shape, np.nan, dtype)
        r = op(x, *args, out=out, **kwargs)
        assert r is out
        assert_close(out, e, dtype)
        for name, v in views.items():
            assert not v.flags.c_contiguous
            np.testing.assert_array_equal(op(v, *args, **kwargs), out, err_msg=name)


# ---------------------------------------------------------------------------
# A text-like shape: N=2, C=256, L=512, k=5, causal, float32
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_text_like_shape(layout, isa, rng):
    dtype = np.float32
    n, c, length, k = 2, 256, 512, 5
    x = make_x(rng, n, c, length, layout, dtype)
    dw = rand(rng, (c, 1, k), dtype)
    db = rand(rng, (c,), dtype)
    pw = rand(rng, (c, c), dtype)
    pb = rand(rng, (c,), dtype)
    kw = dict(padding="causal", layout=layout)
    y = pydsconv.depthwise_conv1d(x, dw, db, activation="relu", **kw)
    assert y.shape == x.shape
    assert_close(y, ref.depthwise_conv1d(x, dw, db, activation="relu", **kw), dtype)
    s = pydsconv.separable_conv1d(x, dw, pw, db, pb, mid_activation="relu", **kw)
    assert s.shape == x.shape
    assert_close(s, ref.separable_conv1d(x, dw, pw, db, pb, mid_activation="relu", **kw), dtype)
    g = rand(rng, x.shape, dtype)
    for a, e in zip(
        pydsconv.depthwise_conv1d_backward(g, x, dw, **kw),
        ref.depthwise_conv1d_backward(g, x, dw, **kw),
    ):
        assert_close(a, e, dtype)


# ---------------------------------------------------------------------------
# PyTorch conv1d(groups=C) as a second oracle (float64)
# ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "cfg",
    [
        D("k3-p1", 2, 16, 1, 20, 3, padding=1),
        D("m2-k5-s2-d2", 2, 7, 2, 31, 5, stride=2, padding=3, dilation=2),
        D("k4-same-d2", 1, 17, 1, 19, 4, padding="same", dilation=2),
    ],
)
def test_depthwise_matches_torch(cfg, layout, isa, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rand(rng, (cfg["n"], cfg["c"], cfg["l"]), np.float64)
    w = rand(rng, (cfg["c"] * cfg["m"], 1, cfg["k"]), np.float64)
    b = rand(rng, (cfg["c"] * cfg["m"],), np.float64)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = F.conv1d(
        tx,
        tw,
        tb,
        stride=cfg["stride"],
        padding=cfg["padding"],
        dilation=cfg["dilation"],
        groups=cfg["c"],
    )
    g = rand(rng, tuple(ty.shape), np.float64)
    (ty * torch.tensor(g)).sum().backward()

    xl = x if layout == "NCL" else to_nlc(x)
    gl = g if layout == "NCL" else to_nlc(g)
    kw = dict(conv_kw(cfg), layout=layout)
    y = pydsconv.depthwise_conv1d(xl, w, b, **kw)
    gx, gw, gb = pydsconv.depthwise_conv1d_backward(gl, xl, w, **kw)
    if layout == "NLC":
        y, gx = np.moveaxis(y, -1, 1), np.moveaxis(gx, -1, 1)
    assert_close(y, ty.detach().numpy())
    assert_close(gx, tx.grad.numpy())
    assert_close(gw, tw.grad.numpy())
    assert_close(gb, tb.grad.numpy())


def test_causal_matches_torch_left_pad(isa, rng):
    """ "causal" == F.pad(x, (dilation*(k-1), 0)) then an unpadded conv1d."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rand(rng, (2, 16, 40), np.float64)
    dw = rand(rng, (32, 1, 3), np.float64)
    pw = rand(rng, (8, 32, 1), np.float64)
    t = F.conv1d(F.pad(torch.tensor(x), (4, 0)), torch.tensor(dw), dilation=2, groups=16)
    t = F.conv1d(torch.relu(t), torch.tensor(pw))
    y = pydsconv.separable_conv1d(x, dw, pw, padding="causal", dilation=2, mid_activation="relu")
    assert_close(y, t.numpy())
