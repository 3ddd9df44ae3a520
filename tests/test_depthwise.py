"""depthwise_conv2d and depthwise_conv2d_backward (mirrors cpp/depthwise.cpp).

Every config runs on every ISA the host has (``isa`` fixture), both layouts
and both dtypes, against ``pydsconv.reference`` (float64-accurate).  The
configs form the XNNPACK-style edge battery: channel counts below, at, above
and not a multiple of the vector width (16 floats with AVX-512) -- and,
because the NCHW kernels vectorise along a row, the same for image widths;
images smaller than the kernel; each padding side alone; strides 1-3;
dilation 1-3; stride and dilation together; multiplier 1-3; square and
non-square kernels; "same"/"valid"; bias and activation.  Then: batch 0,
non-contiguous and negative-stride inputs, NaN propagation (exactly the
receptive-field set), ``out=``, backward flags, thread-count determinism, and
PyTorch (F.conv2d with groups=C, autograd) as a second oracle.
"""

import numpy as np
import pytest
from conftest import assert_close, rand, to_nhwc
from kernel_paths import VEC_BYTES, lanes, taken

import pydsconv
from pydsconv import reference as ref

DTYPES = [np.float32, np.float64]
LAYOUTS = ["NCHW", "NHWC"]


def C(cfg_id, n, c, m, h, w, k, stride=1, padding=0, dilation=1, bias=False, act=None):
    """One depthwise config; ``k`` is an int or (kH, kW)."""
    kh, kw = (k, k) if isinstance(k, int) else k
    return pytest.param(
        dict(
            n=n,
            c=c,
            m=m,
            h=h,
            w=w,
            kh=kh,
            kw=kw,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=bias,
            act=act,
        ),
        id=cfg_id,
    )


# ~40 configs that cover the battery; each runs for both layouts x dtypes x ISA.
FWD_CONFIGS = [
    # channels 1, 7, 15, 16, 17, 33 (below / at / above / not a multiple of 16)
    C("c1", 2, 1, 1, 8, 8, 3, padding=1),
    C("c7", 2, 7, 1, 9, 10, 3, bias=True),
    C("c15-s2", 1, 15, 1, 6, 7, 3, stride=2, padding=1, act="relu"),
    C("c16-relu", 2, 16, 1, 8, 16, 3, padding=1, bias=True, act="relu"),
    C("c17-relu6", 2, 17, 1, 7, 17, 3, padding=1, bias=True, act="relu6"),
    C("c33-same-s2", 1, 33, 1, 5, 33, 3, stride=2, padding="same", bias=True),
    # images smaller than the kernel (with padding)
    C("img2x2-k3-p2", 2, 16, 1, 2, 2, 3, padding=2, bias=True),
    C("img2x2-k5-p2", 2, 17, 1, 2, 2, 5, padding=2, act="relu"),
    C("img1x1-k3-p1", 3, 7, 1, 1, 1, 3, padding=1, bias=True),
    C("img3x3-k7-p3", 1, 3, 2, 3, 3, 7, padding=3),
    C("img1x5-k3x5-p", 2, 17, 1, 1, 5, (3, 5), padding=((1, 1), (2, 2))),
    # each padding side alone
    C("pad-top", 2, 17, 1, 6, 7, 3, padding=((1, 0), (0, 0)), bias=True),
    C("pad-bottom", 2, 17, 1, 6, 7, 3, padding=((0, 1), (0, 0))),
    C("pad-left", 2, 17, 1, 6, 18, 3, padding=((0, 0), (1, 0)), act="relu"),
    C("pad-right", 2, 17, 1, 6, 18, 3, padding=((0, 0), (0, 1)), bias=True),
    C("pad-asym-big", 1, 16, 1, 5, 6, 3, padding=((2, 0), (0, 3))),
    # strides, dilation, both together
    C("s3", 2, 16, 1, 11, 35, 3, stride=3, padding=1, bias=True),
    C("s2-odd", 1, 15, 1, 9, 19, 3, stride=2),
    C("d2", 2, 17, 1, 9, 20, 3, padding=2, dilation=2),
    C("d3", 1, 7, 1, 11, 12, 3, dilation=3, bias=True),
    C("s2-d2", 2, 16, 1, 12, 33, 3, stride=2, padding=2, dilation=2, bias=True, act="relu6"),
    C("s3-d3", 1, 33, 1, 13, 14, 3, stride=3, padding=3, dilation=3),
    C("s2x3-d3x2", 2, 17, 1, 14, 15, 3, stride=(2, 3), padding=(2, 1), dilation=(3, 2)),
    # channel multiplier
    C("m2-c7", 2, 7, 2, 6, 6, 3, padding=1, bias=True),
    C("m3-c5-s2", 1, 5, 3, 7, 17, 3, stride=2, padding=1, act="relu"),
    C("m2-c16-k5-same", 2, 16, 2, 7, 9, 5, padding="same", bias=True),
    C("m3-c17-valid-s2", 1, 17, 3, 8, 9, 3, stride=2, padding="valid"),
    C("m2-c1-d2-s3", 2, 1, 2, 10, 11, 5, stride=3, padding="same", dilation=2, bias=True),
    # kernel sizes
    C("k1", 2, 16, 1, 5, 17, 1, bias=True, act="relu"),
    C("k1-s2", 1, 17, 1, 6, 7, 1, stride=2),
    C("k2", 2, 15, 1, 6, 16, 2),
    C("k2-same", 2, 16, 1, 5, 5, 2, padding="same", bias=True),
    C("k5", 1, 33, 1, 9, 10, 5, padding=2, bias=True),
    C("k7-s2", 2, 16, 1, 13, 34, 7, stride=2, padding=3),
    C("k1x3", 2, 17, 1, 4, 9, (1, 3), padding=(0, 1), bias=True),
    C("k3x1", 2, 15, 1, 9, 4, (3, 1), padding=(1, 0)),
    C("k2x5-same-s2", 1, 16, 1, 7, 11, (2, 5), stride=2, padding="same", act="relu6"),
    # "same" / "valid" at strides 1-3
    C("same-s1", 2, 17, 1, 7, 8, 3, padding="same"),
    C("same-s3", 1, 16, 1, 8, 10, 4, stride=3, padding="same", bias=True),
    C("valid-s1", 2, 7, 1, 7, 8, 3, padding="valid", act="relu"),
    C("valid-s3", 1, 33, 1, 10, 11, 3, stride=3, padding="valid"),
    # a larger plane: vector main loops and several rows per thread
    C("wide", 2, 32, 1, 17, 40, 3, padding=1, bias=True, act="relu"),
]

BWD_CONFIGS = [
    p
    for p in FWD_CONFIGS
    if p.id
    in {
        "c1",
        "c7",
        "c16-relu",
        "c17-relu6",
        "c33-same-s2",
        "img2x2-k3-p2",
        "img2x2-k5-p2",
        "img1x1-k3-p1",
        "img3x3-k7-p3",
        "pad-top",
        "pad-bottom",
        "pad-left",
        "pad-right",
        "s3",
        "d2",
        "s2-d2",
        "s2x3-d3x2",
        "m2-c7",
        "m3-c5-s2",
        "m2-c1-d2-s3",
        "k1-s2",
        "k2-same",
        "k7-s2",
        "k1x3",
        "k3x1",
        "k2x5-same-s2",
        "same-s3",
        "valid-s3",
        "wide",
    }
]


def kw_of(cfg):
    return dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])


def make(cfg, layout, dtype, rng):
    """(x in `layout`, weight, bias or None) for a config."""
    x = rand(rng, (cfg["n"], cfg["c"], cfg["h"], cfg["w"]), dtype)
    if layout == "NHWC":
        x = to_nhwc(x)
    w = rand(rng, (cfg["c"] * cfg["m"], 1, cfg["kh"], cfg["kw"]), dtype)
    b = rand(rng, (cfg["c"] * cfg["m"],), dtype) if cfg["bias"] else None
    return x, w, b


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def geometry(cfg):
    """((pt, pb), (pl, pr)), (sh, sw), (dh, dw), (OH, OW) from the API rules."""
    s, d = _pair(cfg["stride"]), _pair(cfg["dilation"])
    k, size = (cfg["kh"], cfg["kw"]), (cfg["h"], cfg["w"])
    p = cfg["padding"]
    if p == "valid":
        pads = ((0, 0), (0, 0))
    elif p == "same":
        pads = []
        for i in range(2):
            out = -(-size[i] // s[i])
            total = max((out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - size[i], 0)
            pads.append((total // 2, total - total // 2))
        pads = tuple(pads)
    elif isinstance(p, int):
        pads = ((p, p), (p, p))
    else:
        pads = tuple((e, e) if isinstance(e, int) else tuple(e) for e in p)
    o = tuple((size[i] + sum(pads[i]) - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2))
    return pads, s, d, o


def out_shape(cfg, layout):
    _, _, _, (oh, ow) = geometry(cfg)
    cm = cfg["c"] * cfg["m"]
    return (cfg["n"], cm, oh, ow) if layout == "NCHW" else (cfg["n"], oh, ow, cm)


# ---------------------------------------------------------------------------
# Forward vs reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cfg", FWD_CONFIGS)
def test_forward_matches_reference(cfg, layout, dtype, isa, rng):
    x, w, b = make(cfg, layout, dtype, rng)
    kw = kw_of(cfg)
    y = pydsconv.depthwise_conv2d(x, w, b, layout=layout, activation=cfg["act"], **kw)
    expected = ref.depthwise_conv2d(x, w, b, layout=layout, activation=cfg["act"], **kw)
    assert y.shape == out_shape(cfg, layout)
    assert y.flags.c_contiguous
    assert_close(y, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_forward_activation_clamps(layout, dtype, isa, rng):
    """relu / relu6 on values that cross 0 and 6 (large weights and bias)."""
    cfg = dict(n=2, c=17, m=2, h=6, w=18, kh=3, kw=3, stride=1, padding=1, dilation=1)
    x, w, _ = make(dict(cfg, bias=False), layout, dtype, rng)
    w = (w * 8).astype(dtype)
    b = rand(rng, (34,), dtype) * dtype(4)
    for act in (None, "relu", "relu6"):
        y = pydsconv.depthwise_conv2d(x, w, b, layout=layout, activation=act, **kw_of(cfg))
        e = ref.depthwise_conv2d(x, w, b, layout=layout, activation=act, **kw_of(cfg))
        assert_close(y, e, dtype)
        if act == "relu6":
            assert (y == 6).any() and (y == 0).any()
            assert y.min() >= 0 and y.max() <= 6
        if act == "relu":
            assert (y == 0).any() and y.max() > 6


# ---------------------------------------------------------------------------
# Backward vs reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cfg", BWD_CONFIGS)
def test_backward_matches_reference(cfg, layout, dtype, isa, rng):
    x, w, _ = make(cfg, layout, dtype, rng)
    g = rand(rng, out_shape(cfg, layout), dtype)
    kw = kw_of(cfg)
    gx, gw, gb = pydsconv.depthwise_conv2d_backward(g, x, w, layout=layout, **kw)
    ex, ew, eb = ref.depthwise_conv2d_backward(g, x, w, layout=layout, **kw)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == (w.shape[0],)
    assert_close(gx, ex, dtype)
    assert_close(gw, ew, dtype)
    assert_close(gb, eb, dtype)


# Shapes aimed at the backward kernels' paths (cpp/kernels/dw_bwd-inl.h):
# NHWC channel vectors and their scalar tail (C below / at / above / not a
# multiple of every vector width, more than one 64-channel task block),
# stride-phase tap lists at strides 1, 2 and 3 (and mixed), taps beyond one
# register group (5x5, 1x11), asymmetric and oversized padding, several
# weight-gradient chunks (many rows, several images), narrow and wide rows.
def _bcfg(id, n=2, c=8, m=1, h=9, w=11, k=3, stride=1, padding=1, dilation=1):
    kh, kw = (k, k) if isinstance(k, int) else k
    return pytest.param(
        dict(
            n=n,
            c=c,
            m=m,
            h=h,
            w=w,
            kh=kh,
            kw=kw,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=True,
        ),
        id=id,
    )


BWD_PATH_CONFIGS = [
    _bcfg("c3"),
    _bcfg("c4"),
    _bcfg("c8"),
    _bcfg("c9"),
    _bcfg("c16"),
    _bcfg("c17"),
    _bcfg("c31"),
    _bcfg("c64"),
    _bcfg("c70"),
    _bcfg("c130-s2", c=130, h=6, w=7, stride=2),
    _bcfg("s2-even", h=10, w=12, stride=2),
    _bcfg("s2-odd", h=11, w=13, stride=2, c=9),
    _bcfg("s2-same", h=10, w=12, stride=2, padding="same", c=17),
    _bcfg("s3-d2", h=13, w=14, stride=3, dilation=2, padding=2, c=11),
    _bcfg("s2x1", h=10, w=9, stride=(2, 1), c=12),
    _bcfg("s1x2", h=9, w=10, stride=(1, 2), c=12),
    _bcfg("asym", padding=((0, 2), (2, 0)), c=20),
    _bcfg("asym-s2", padding=((2, 0), (0, 1)), stride=2, c=20),
    _bcfg("pad-big", h=4, w=5, k=3, padding=5, c=9),
    _bcfg("pad-big-s2", h=4, w=5, padding=4, stride=2, c=9),
    _bcfg("k5", k=5, padding=2, c=19),
    _bcfg("k5-s2", k=5, padding=2, stride=2, c=19, h=12, w=13),
    _bcfg("k1x11", k=(1, 11), padding=(0, 5), c=10, w=23),
    _bcfg("k1", k=1, padding=0, c=10),
    _bcfg("img-lt-k", h=2, w=2, k=5, padding=2, c=9),
    _bcfg("m2-c9-s2", m=2, c=9, stride=2),
    _bcfg("m3-c4", m=3, c=4),
    _bcfg("chunks", n=3, h=40, w=40, c=10),
    _bcfg("chunks-s2", n=3, h=41, w=40, c=10, stride=2),
    _bcfg("wide-row", n=1, h=3, w=150, c=3),
    _bcfg("narrow-tall", n=1, h=90, w=3, c=5),
    _bcfg("one-chan", c=1, h=20, w=30),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cfg", BWD_PATH_CONFIGS)
def test_backward_kernel_paths(cfg, layout, dtype, isa, rng):
    x, w, _ = make(cfg, layout, dtype, rng)
    g = rand(rng, out_shape(cfg, layout), dtype)
    kw = kw_of(cfg)
    gx, gw, gb = pydsconv.depthwise_conv2d_backward(g, x, w, layout=layout, **kw)
    ex, ew, eb = ref.depthwise_conv2d_backward(g, x, w, layout=layout, **kw)
    assert_close(gx, ex, dtype)
    assert_close(gw, ew, dtype)
    assert_close(gb, eb, dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "flags",
    [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)],
    ids=lambda f: "".join("xwb"[i] if f[i] else "-" for i in range(3)),
)
def test_backward_flags(flags, layout, isa, rng):
    cfg = dict(n=2, c=17, m=2, h=7, w=9, kh=3, kw=3, stride=2, padding=1, dilation=1, bias=False)
    x, w, _ = make(cfg, layout, np.float64, rng)
    g = rand(rng, out_shape(cfg, layout), np.float64)
    ix, iw, ib = (bool(f) for f in flags)
    got = pydsconv.depthwise_conv2d_backward(
        g, x, w, layout=layout, input_grad=ix, weight_grad=iw, bias_grad=ib, **kw_of(cfg)
    )
    full = ref.depthwise_conv2d_backward(g, x, w, layout=layout, **kw_of(cfg))
    assert isinstance(got, tuple) and len(got) == 3
    for want, a, e in zip((ix, iw, ib), got, full):
        if want:
            assert_close(a, e)
        else:
            assert a is None


# ---------------------------------------------------------------------------
# Batch 0
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "cfg",
    [
        C("k3-p1", 0, 17, 2, 6, 7, 3, padding=1, bias=True, act="relu"),
        C("same-s2", 0, 16, 1, 5, 9, (2, 5), stride=2, padding="same"),
        C("s2-d2", 0, 7, 3, 12, 11, 3, stride=2, padding=2, dilation=2, bias=True),
    ],
)
def test_batch_zero(cfg, layout, dtype, isa, rng):
    x, w, b = make(cfg, layout, dtype, rng)
    shape = out_shape(cfg, layout)
    y = pydsconv.depthwise_conv2d(x, w, b, layout=layout, activation=cfg["act"], **kw_of(cfg))
    assert y.shape == shape and y.dtype == dtype and y.size == 0
    out = np.empty(shape, dtype)
    assert pydsconv.depthwise_conv2d(x, w, b, layout=layout, out=out, **kw_of(cfg)) is out

    g = np.zeros(shape, dtype)
    gx, gw, gb = pydsconv.depthwise_conv2d_backward(g, x, w, layout=layout, **kw_of(cfg))
    assert gx.shape == x.shape and gx.dtype == dtype
    assert gw.shape == w.shape and gw.dtype == dtype and not gw.any()
    assert gb.shape == (w.shape[0],) and gb.dtype == dtype and not gb.any()


# ---------------------------------------------------------------------------
# Non-contiguous and negative-stride inputs == their contiguous copies
# ---------------------------------------------------------------------------


def _views(x_nchw, layout):
    """Non-C-contiguous views with the values of a `layout` tensor, by name."""
    n, c, h, w = x_nchw.shape
    logical = x_nchw if layout == "NCHW" else np.moveaxis(x_nchw, 1, -1)
    big = np.zeros((n + 1,) + tuple(2 * s + 3 for s in logical.shape[1:]), x_nchw.dtype)
    big[1::1, 1:-2:2, 2:-1:2, 3::2][:n] = logical  # fill a strided window
    sliced = big[1::1, 1:-2:2, 2:-1:2, 3::2][:n]
    if layout == "NCHW":
        transposed = np.ascontiguousarray(np.moveaxis(x_nchw, 1, -1)).transpose(0, 3, 1, 2)
    else:
        transposed = np.ascontiguousarray(x_nchw).transpose(0, 2, 3, 1)
    flipped_store = np.ascontiguousarray(logical[..., ::-1])
    neg = flipped_store[..., ::-1]  # negative last-axis stride
    rev = np.ascontiguousarray(logical[::-1, ::-1])[::-1, ::-1]  # negative N and axis 1
    views = {"sliced": sliced, "transposed": transposed, "neg-last": neg, "neg-front": rev}
    for name, v in views.items():
        assert not v.flags.c_contiguous, name
        np.testing.assert_array_equal(v, logical)
    return views


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_noncontiguous_inputs_forward(layout, dtype, isa, rng):
    cfg = dict(
        n=2,
        c=17,
        m=2,
        h=7,
        w=19,
        kh=3,
        kw=5,
        stride=(1, 2),
        padding="same",
        dilation=(2, 1),
        bias=True,
        act="relu6",
    )
    x_nchw = rand(rng, (2, 17, 7, 19), dtype)
    xc = x_nchw if layout == "NCHW" else to_nhwc(x_nchw)
    w = rand(rng, (34, 1, 3, 5), dtype)
    b = rand(rng, (34,), dtype)
    kw = dict(kw_of(cfg), layout=layout, activation="relu6")
    base = pydsconv.depthwise_conv2d(xc, w, b, **kw)
    assert_close(base, ref.depthwise_conv2d(xc, w, b, **kw), dtype)
    for name, v in _views(x_nchw, layout).items():
        before = v.copy()
        y = pydsconv.depthwise_conv2d(v, w, b, **kw)
        np.testing.assert_array_equal(y, base, err_msg=name)
        np.testing.assert_array_equal(v, before, err_msg=f"{name}: input modified")
    # non-contiguous weight (flipped kernel, taken back) and bias (strided)
    w_nc = np.ascontiguousarray(w[:, :, ::-1, ::-1])[:, :, ::-1, ::-1]
    b_big = np.zeros(68, dtype)
    b_big[::2] = b
    assert not w_nc.flags.c_contiguous
    y = pydsconv.depthwise_conv2d(xc, w_nc, b_big[::2], **kw)
    np.testing.assert_array_equal(y, base)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_noncontiguous_inputs_backward(layout, dtype, isa, rng):
    cfg = dict(stride=2, padding=1, dilation=1)
    x_nchw = rand(rng, (2, 17, 7, 19), dtype)
    xc = x_nchw if layout == "NCHW" else to_nhwc(x_nchw)
    w = rand(rng, (17, 1, 3, 3), dtype)
    g_nchw = rand(rng, (2, 17, 4, 10), dtype)
    gc = g_nchw if layout == "NCHW" else to_nhwc(g_nchw)
    base = pydsconv.depthwise_conv2d_backward(gc, xc, w, layout=layout, **cfg)
    for e, a in zip(ref.depthwise_conv2d_backward(gc, xc, w, layout=layout, **cfg), base):
        assert_close(a, e, dtype)
    xv = _views(x_nchw, layout)
    gv = _views(g_nchw, layout)
    for name in xv:
        got = pydsconv.depthwise_conv2d_backward(gv[name], xv[name], w, layout=layout, **cfg)
        for a, e in zip(got, base):
            np.testing.assert_array_equal(a, e, err_msg=name)


# ---------------------------------------------------------------------------
# NaN in one input pixel reaches exactly its receptive-field outputs
# ---------------------------------------------------------------------------


def _hit(i, o_count, s, d, pad_lo, k):
    """Output indices along one axis whose window (any tap) reads input index i."""
    return np.array([any(o * s - pad_lo + t * d == i for t in range(k)) for o in range(o_count)])


NAN_CONFIGS = [
    C("k3-p1", 2, 17, 1, 6, 18, 3, padding=1, bias=True),
    C("m2-s2-d2", 1, 7, 2, 9, 11, 3, stride=2, padding=2, dilation=2),
    C("k2x5-same-s3", 2, 16, 1, 8, 19, (2, 5), stride=(3, 2), padding="same", bias=True),
    C("k1-s2", 1, 33, 1, 5, 17, 1, stride=2),
    C("img2x2-k5", 1, 15, 1, 2, 2, 5, padding=2),
]


@pytest.mark.parametrize("act", [None, "relu6"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cfg", NAN_CONFIGS)
def test_nan_stays_in_receptive_field(cfg, layout, dtype, act, isa, rng):
    """NaN propagates (through relu6 too, as torch.clamp does) to exactly the
    outputs whose window covers the pixel, and nowhere else."""
    pads, s, d, (oh, ow) = geometry(cfg)
    n, c, m, h, w_ = cfg["n"], cfg["c"], cfg["m"], cfg["h"], cfg["w"]
    positions = {
        (n - 1, c // 2, h // 2, w_ // 2),
        (0, 0, 0, 0),
        (0, c - 1, h - 1, w_ - 1),
        (n - 1, min(c - 1, 16), h - 1, 0),
    }
    for pn, pc, ph, pw in sorted(positions):
        x_nchw = rand(rng, (n, c, h, w_), dtype)
        x_nchw[pn, pc, ph, pw] = np.nan
        x = x_nchw if layout == "NCHW" else to_nhwc(x_nchw)
        wgt = rand(rng, (c * m, 1, cfg["kh"], cfg["kw"]), dtype)
        b = rand(rng, (c * m,), dtype) if cfg["bias"] else None
        y = pydsconv.depthwise_conv2d(x, wgt, b, layout=layout, activation=act, **kw_of(cfg))
        if layout == "NHWC":
            y = np.moveaxis(y, -1, 1)
        expected = np.zeros((n, c * m, oh, ow), bool)
        rows = _hit(ph, oh, s[0], d[0], pads[0][0], cfg["kh"])
        cols = _hit(pw, ow, s[1], d[1], pads[1][0], cfg["kw"])
        expected[pn, pc * m : (pc + 1) * m] = rows[:, None] & cols[None, :]
        np.testing.assert_array_equal(np.isnan(y), expected, err_msg=f"NaN at {(pn, pc, ph, pw)}")
        # the finite outputs are still right
        e = ref.depthwise_conv2d(x, wgt, b, layout=layout, activation=act, **kw_of(cfg))
        if layout == "NHWC":
            e = np.moveaxis(e, -1, 1)
        assert_close(np.where(expected, 0, y), np.where(expected, 0, e), dtype)


# ---------------------------------------------------------------------------
# out=
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "cfg",
    [
        C("c17-m2-relu", 2, 17, 2, 7, 9, 3, padding=1, bias=True, act="relu"),
        C("s2-same", 1, 16, 1, 8, 19, 5, stride=2, padding="same"),
    ],
)
def test_out_filled_and_returned(cfg, layout, dtype, isa, rng):
    x, w, b = make(cfg, layout, dtype, rng)
    kw = dict(kw_of(cfg), layout=layout, activation=cfg["act"])
    out = np.full(out_shape(cfg, layout), np.nan, dtype)
    r = pydsconv.depthwise_conv2d(x, w, b, out=out, **kw)
    assert r is out
    assert_close(out, ref.depthwise_conv2d(x, w, b, **kw), dtype)
    np.testing.assert_array_equal(out, pydsconv.depthwise_conv2d(x, w, b, **kw))


# ---------------------------------------------------------------------------
# Thread count does not change the bits
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("w", [8, 9, 17, 40, 70])
@pytest.mark.parametrize("h", [1, 2, 5, 6, 7, 12, 13, 20])
def test_nchw_3x3_row_blocks(h, w, stride, dtype, isa, rng):
    """NCHW 3x3 at stride 1 or 2 runs 6 output rows at a time, then a 1-5
    row remainder, with the last column vector overlapping (OW at least one
    vector; narrower rows take the generic run).  3 channels (fewer than any
    NHWC channel block: 4 float64 on the scalar set) keep it on the NCHW
    kernels at every width; "same", "valid" and symmetric padding; 1-3
    threads give the same bits."""
    for padding in ("same", "valid", 1):
        if padding == "valid" and h < 3:
            continue
        x = rand(rng, (2, 3, h, w), dtype)
        wt = rand(rng, (3, 1, 3, 3), dtype)
        b = rand(rng, (3,), dtype)
        kw = dict(stride=stride, padding=padding, activation="relu6")
        with taken() as paths:
            ys = [pydsconv.depthwise_conv2d(x, wt, b, num_threads=t, **kw) for t in (1, 2, 3)]
        # Rows as wide as the input at stride 1 take the flat kernel where
        # it applies (heuristics.h dw_nchw_flat); all others the multi-row one.
        flat = (
            VEC_BYTES[isa] == 64
            and stride == 1
            and padding != "valid"
            and w <= 16
            and h * w >= 8 * lanes(isa, dtype)
        )
        assert set(paths) == {"dw_nchw_flat" if flat else "dw_nchw_rows"}, paths
        for y in ys[1:]:
            np.testing.assert_array_equal(y, ys[0])
        assert_close(ys[0], ref.depthwise_conv2d(x, wt, b, **kw), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_thread_count_same_bits(layout, dtype, isa, rng):
    cfg = dict(n=3, c=33, m=2, h=13, w=21, kh=3, kw=3, stride=1, padding=1, dilation=1, bias=True)
    x, w, b = make(cfg, layout, dtype, rng)
    g = rand(rng, out_shape(cfg, layout), dtype)
    kw = dict(kw_of(cfg), layout=layout)
    y1 = pydsconv.depthwise_conv2d(x, w, b, num_threads=1, **kw)
    b1 = pydsconv.depthwise_conv2d_backward(g, x, w, num_threads=1, **kw)
    for t in (2, 3, 7):
        np.testing.assert_array_equal(pydsconv.depthwise_conv2d(x, w, b, num_threads=t, **kw), y1)
        for a, e in zip(pydsconv.depthwise_conv2d_backward(g, x, w, num_threads=t, **kw), b1):
            np.testing.assert_array_equal(a, e)


# ---------------------------------------------------------------------------
# PyTorch as a second oracle (float64)
# ---------------------------------------------------------------------------

TORCH_CONFIGS = [
    C("k3-p1", 2, 16, 1, 9, 10, 3, padding=1, bias=True),
    C("m2-c7", 2, 7, 2, 8, 9, 3, padding=1, bias=True),
    C("s2-d2", 2, 17, 1, 13, 14, 3, stride=2, padding=2, dilation=2, bias=True),
    C("same-s1-k4x3", 1, 15, 1, 7, 9, (4, 3), padding="same", bias=True),
    C("same-s1-d2-m3", 2, 5, 3, 8, 8, 3, padding="same", dilation=2, bias=True),
    C("k5-s3-asym", 1, 33, 1, 11, 12, 5, stride=3, padding=(2, 1), bias=True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [1, 2])
def test_nchw_small_planes_in_channel_blocks(isa, rng, dtype, stride):
    """NCHW small planes run in NHWC, a task per block of 16+ channels of
    one image (transposed in, NHWC kernels, transposed out): 40 channels of
    16 x 16 are blocks at 0, 16 and 24 (the last overlapping its
    neighbour), in each of 3 images; every output matches the reference.
    "valid" padding (OW < W) keeps the flat kernel out at stride 1."""
    x = rand(rng, (3, 40, 16, 16), dtype)
    w = rand(rng, (40, 1, 3, 3), dtype)
    b = rand(rng, (40,), dtype)
    with taken() as paths:
        y = pydsconv.depthwise_conv2d(x, w, b, stride=stride, padding="valid", activation="relu6")
    assert set(paths) == {"dw_nchw_via_nhwc"}, paths
    assert_close(
        y, ref.depthwise_conv2d(x, w, b, stride=stride, padding="valid", activation="relu6"), dtype
    )


# (C, M, H, W, (kh, kw), padding): stride 1, rows as wide as the input's.
FLAT_CASES = [
    (37, 1, 14, 14, (3, 3), "same"),  # 37: groups of 16 and 4 channels, and single ones
    (20, 1, 14, 14, (5, 5), "same"),
    (18, 2, 12, 12, (3, 3), ((1, 1), (1, 1))),  # M = 2
    (17, 1, 9, 15, (5, 5), ((1, 3), (0, 4))),  # taps left-aligned (pl = 0)
    (16, 1, 11, 16, (3, 3), ((0, 2), (1, 1))),  # rows padded only below
    (16, 1, 14, 13, (3, 3), ((2, 0), (2, 0))),  # taps right-aligned (pl = kw - 1)
    (16, 1, 14, 10, (5, 5), ((4, 0), (3, 1))),
    (5, 1, 300, 16, (3, 3), "same"),  # tall: blocks of 128 rows
    (3, 1, 682, 9, (3, 3), "same"),  # blocks of 227 rows and one of 9 outputs
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", FLAT_CASES)
def test_nchw_flat_planes(isa, rng, dtype, case):
    """NCHW at stride 1 on planes of up to 16 columns takes the flat kernel
    on 512-bit vectors (heuristics.h dw_nchw_flat): each vector of outputs spans
    row ends, its lanes whose taps fall outside their row masked, rows
    outside the image read from a padded copy.  3x3 and 5x5, channel counts
    that 4 and 16 do not divide, M = 2, the taps' columns from left- to
    right-aligned, rows padded on one side only, planes taller than a
    task's block (the last block of one shorter than a vector); every ISA
    against the reference, and the same bits on 1 and 2 threads."""
    c, m, h, w_, k, padding = case
    x = rand(rng, (2, c, h, w_), dtype)
    w = rand(rng, (c * m, 1) + k, dtype)
    b = rand(rng, (c * m,), dtype)
    with taken() as paths:
        y = pydsconv.depthwise_conv2d(x, w, b, padding=padding, activation="relu6", num_threads=1)
    assert ("dw_nchw_flat" in paths) == (VEC_BYTES[isa] == 64), paths
    assert y.shape[2:] == (h, w_)
    assert_close(y, ref.depthwise_conv2d(x, w, b, padding=padding, activation="relu6"), dtype)
    y2 = pydsconv.depthwise_conv2d(x, w, b, padding=padding, activation="relu6", num_threads=2)
    np.testing.assert_array_equal(y, y2)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("cfg", TORCH_CONFIGS)
def test_matches_torch(cfg, memory_format, isa, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    layout = "NCHW" if memory_format == "contiguous" else "NHWC"
    x_nchw = rand(rng, (cfg["n"], cfg["c"], cfg["h"], cfg["w"]), np.float64)
    w = rand(rng, (cfg["c"] * cfg["m"], 1, cfg["kh"], cfg["kw"]), np.float64)
    b = rand(rng, (cfg["c"] * cfg["m"],), np.float64)

    tx = torch.tensor(x_nchw, requires_grad=True)
    if memory_format == "channels_last":
        tx = tx.detach().to(memory_format=torch.channels_last).requires_grad_(True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    ty = F.conv2d(
        tx,
        tw,
        tb,
        stride=cfg["stride"],
        padding=cfg["padding"],
        dilation=cfg["dilation"],
        groups=cfg["c"],
    )
    g_nchw = rand(rng, tuple(ty.shape), np.float64)
    (ty * torch.tensor(g_nchw)).sum().backward()

    x = x_nchw if layout == "NCHW" else to_nhwc(x_nchw)
    g = g_nchw if layout == "NCHW" else to_nhwc(g_nchw)
    kw = dict(kw_of(cfg), layout=layout)
    y = pydsconv.depthwise_conv2d(x, w, b, **kw)
    if layout == "NHWC":
        y = np.moveaxis(y, -1, 1)
    assert_close(y, ty.detach().numpy())
    gx, gw, gb = pydsconv.depthwise_conv2d_backward(g, x, w, **kw)
    if layout == "NHWC":
        gx = np.moveaxis(gx, -1, 1)
    assert_close(gx, tx.grad.numpy())
    assert_close(gw, tw.grad.numpy())
    assert_close(gb, tb.grad.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k,stride", [(3, 1), (3, 2), (5, 1), (5, 2), (7, 1), (7, 2)])
def test_nhwc_every_row_width(isa, rng, k, stride, dtype):
    """The NHWC tiles cover a row's interior with register tiles of 8 (or 4)
    pixels, a last tile overlapping its neighbour, half tiles and single
    pixels, and its edge pixels four channel blocks at a time: rows 1 to 40
    wide, 72 channels (float32 AVX-512: four blocks of 16 and an overlapping
    one), each matching the reference."""
    w = rand(rng, (72, 1, k, k), dtype)
    b = rand(rng, (72,), dtype)
    for width in range(1, 41):
        x = rand(rng, (1, 3, width, 72), dtype)
        y = pydsconv.depthwise_conv2d(
            x, w, b, stride=stride, padding="same", layout="NHWC", activation="relu6"
        )
        want = ref.depthwise_conv2d(
            x.transpose(0, 3, 1, 2), w, b, stride=stride, padding="same", activation="relu6"
        ).transpose(0, 2, 3, 1)
        assert_close(y, want, dtype)
