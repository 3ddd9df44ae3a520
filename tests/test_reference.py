"""Tests of pydsconv.reference, the pure-NumPy oracle of the test suite.

* finite-difference checks (float64) of every backward function;
* agreement with PyTorch (F.conv1d / F.conv2d and autograd) where torch is
  importable -- only the tests that take the ``torch`` fixture are skipped
  without it;
* TensorFlow "same" padding (output size and odd-pixel placement), "causal";
* separable == pointwise(mid_act(depthwise)); dtype, out=, batch 0, flags.
"""

import itertools

import numpy as np
import pytest

from pydsconv import reference as ref


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _tf_same(size, k, stride, dilation):
    """TensorFlow 'same' split along one axis (rule 6 in docs/api.md "Errors")."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _nchw(a):
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def _nlc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 1))


# ---------------------------------------------------------------------------
# Finite differences
# ---------------------------------------------------------------------------


def _fd_check(loss, args, grads, rng, n_entries=10, eps=1e-6):
    """Compare analytic grads with central differences of ``loss(*args)``.

    ``args`` is a list of float64 arrays, ``grads`` the matching analytic
    gradients. ``n_entries`` random entries of each argument are checked.
    """
    for i, (a, g) in enumerate(zip(args, grads)):
        assert g.shape == a.shape, (i, g.shape, a.shape)
        idx = rng.choice(a.size, size=min(n_entries, a.size), replace=False)
        for flat in idx:
            pos = np.unravel_index(flat, a.shape)
            plus = [b.copy() for b in args]
            minus = [b.copy() for b in args]
            plus[i][pos] += eps
            minus[i][pos] -= eps
            fd = (loss(*plus) - loss(*minus)) / (2 * eps)
            np.testing.assert_allclose(
                g[pos], fd, rtol=1e-6, atol=1e-7, err_msg=f"arg {i} entry {pos}"
            )


# (x spatial shape, kernel, M, stride, padding, dilation)
DW2D_CASES = [
    ((7, 6), (3, 3), 1, 1, 1, 1),
    ((7, 6), (3, 2), 2, 2, ((1, 2), (0, 1)), 1),
    ((9, 8), (3, 3), 2, (2, 1), ((2, 0), (1, 3)), 2),
    ((8, 7), (4, 3), 1, 2, "same", 1),
    ((9, 7), (3, 2), 2, 2, "same", 2),
    ((6, 5), (2, 3), 1, (1, 3), (1, 2), (2, 1)),
    ((5, 6), (3, 3), 2, 1, "valid", 1),
]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", DW2D_CASES)
def test_depthwise_conv2d_backward_fd(case, layout, rng):
    (H, W), (kH, kW), M, stride, padding, dilation = case
    N, C = 2, 3
    x = rng.standard_normal((N, C, H, W))
    if layout == "NHWC":
        x = _nhwc(x)
    w = rng.standard_normal((C * M, 1, kH, kW))
    b = rng.standard_normal(C * M)
    kw = dict(stride=stride, padding=padding, dilation=dilation, layout=layout)
    G = rng.standard_normal(ref.depthwise_conv2d(x, w, b, **kw).shape)

    def loss(x_, w_, b_):
        return float(np.sum(ref.depthwise_conv2d(x_, w_, b_, **kw) * G))

    gx, gw, gb = ref.depthwise_conv2d_backward(G, x, w, **kw)
    _fd_check(loss, [x, w, b], [gx, gw, gb], rng)


# (L, k, M, stride, padding, dilation)
DW1D_CASES = [
    (9, 3, 1, 1, 1, 1),
    (10, 3, 2, 2, (2, 1), 1),
    (11, 3, 2, 2, (0, 3), 2),
    (10, 4, 1, 2, "same", 1),
    (11, 3, 2, 3, "same", 2),
    (9, 3, 2, 1, "causal", 2),
    (10, 4, 1, 2, "causal", 1),
    (8, 2, 1, 1, "valid", 3),
]


@pytest.mark.parametrize("layout", ["NCL", "NLC"])
@pytest.mark.parametrize("case", DW1D_CASES)
def test_depthwise_conv1d_backward_fd(case, layout, rng):
    L, k, M, stride, padding, dilation = case
    N, C = 2, 3
    x = rng.standard_normal((N, C, L))
    if layout == "NLC":
        x = _nlc(x)
    w = rng.standard_normal((C * M, 1, k))
    b = rng.standard_normal(C * M)
    kw = dict(stride=stride, padding=padding, dilation=dilation, layout=layout)
    G = rng.standard_normal(ref.depthwise_conv1d(x, w, b, **kw).shape)

    def loss(x_, w_, b_):
        return float(np.sum(ref.depthwise_conv1d(x_, w_, b_, **kw) * G))

    gx, gw, gb = ref.depthwise_conv1d_backward(G, x, w, **kw)
    _fd_check(loss, [x, w, b], [gx, gw, gb], rng)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("w_ndim", [2, 4])
def test_pointwise_conv2d_backward_fd(layout, w_ndim, rng):
    N, Ci, Co, H, W = 2, 3, 4, 3, 5
    x = rng.standard_normal((N, Ci, H, W))
    if layout == "NHWC":
        x = _nhwc(x)
    w = rng.standard_normal((Co, Ci) + (1, 1) * (w_ndim == 4))
    b = rng.standard_normal(Co)
    G = rng.standard_normal(ref.pointwise_conv2d(x, w, b, layout=layout).shape)

    def loss(x_, w_, b_):
        return float(np.sum(ref.pointwise_conv2d(x_, w_, b_, layout=layout) * G))

    gx, gw, gb = ref.pointwise_conv2d_backward(G, x, w, layout=layout)
    assert gw.shape == w.shape
    _fd_check(loss, [x, w, b], [gx, gw, gb], rng)


@pytest.mark.parametrize("layout", ["NCL", "NLC"])
@pytest.mark.parametrize("w_ndim", [2, 3])
def test_pointwise_conv1d_backward_fd(layout, w_ndim, rng):
    N, Ci, Co, L = 2, 3, 4, 7
    x = rng.standard_normal((N, Ci, L))
    if layout == "NLC":
        x = _nlc(x)
    w = rng.standard_normal((Co, Ci) + (1,) * (w_ndim == 3))
    b = rng.standard_normal(Co)
    G = rng.standard_normal(ref.pointwise_conv1d(x, w, b, layout=layout).shape)

    def loss(x_, w_, b_):
        return float(np.sum(ref.pointwise_conv1d(x_, w_, b_, layout=layout) * G))

    gx, gw, gb = ref.pointwise_conv1d_backward(G, x, w, layout=layout)
    assert gw.shape == w.shape
    _fd_check(loss, [x, w, b], [gx, gw, gb], rng)


# ---------------------------------------------------------------------------
# Against PyTorch (float64, tight tolerance)
# ---------------------------------------------------------------------------


def _explicit_pads_2d(padding, hw, k, stride, dilation):
    """((top, bottom), (left, right)) computed independently of reference.py."""
    s = (stride, stride) if isinstance(stride, int) else stride
    d = (dilation, dilation) if isinstance(dilation, int) else dilation
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        return _tf_same(hw[0], k[0], s[0], d[0]), _tf_same(hw[1], k[1], s[1], d[1])
    if isinstance(padding, int):
        return (padding, padding), (padding, padding)
    return tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)


def _torch_dw2d(torch, x, w, b, stride, pads, dilation):
    """PyTorch depthwise conv on NCHW float64 tensors, explicit asymmetric pads."""
    F = torch.nn.functional
    (t, bo), (le, r) = pads
    xp = F.pad(x, (le, r, t, bo))
    return F.conv2d(xp, w, b, stride=stride, dilation=dilation, groups=x.shape[1])


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", DW2D_CASES)
def test_depthwise_conv2d_vs_torch(torch, case, layout, rng):
    (H, W), (kH, kW), M, stride, padding, dilation = case
    N, C = 2, 3
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((C * M, 1, kH, kW))
    b = rng.standard_normal(C * M)
    pads = _explicit_pads_2d(padding, (H, W), (kH, kW), stride, dilation)

    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    yt = _torch_dw2d(torch, xt, wt, bt, stride, pads, dilation)
    G = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(G))

    kw = dict(stride=stride, padding=padding, dilation=dilation, layout=layout)
    xin, Gin = (x, G) if layout == "NCHW" else (_nhwc(x), _nhwc(G))
    y = ref.depthwise_conv2d(xin, w, b, **kw)
    gx, gw, gb = ref.depthwise_conv2d_backward(Gin, xin, w, **kw)
    if layout == "NHWC":
        y, gx = _nchw(y), _nchw(gx)
    tol = dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(gx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(gw, wt.grad.numpy(), **tol)
    np.testing.assert_allclose(gb, bt.grad.numpy(), **tol)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("w_ndim", [2, 4])
def test_pointwise_conv2d_vs_torch(torch, layout, w_ndim, rng):
    N, Ci, Co, H, W = 2, 5, 3, 4, 6
    x = rng.standard_normal((N, Ci, H, W))
    w4 = rng.standard_normal((Co, Ci, 1, 1))
    b = rng.standard_normal(Co)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w4, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, bt)
    G = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(G))

    w = w4 if w_ndim == 4 else w4[:, :, 0, 0].copy()
    xin, Gin = (x, G) if layout == "NCHW" else (_nhwc(x), _nhwc(G))
    y = ref.pointwise_conv2d(xin, w, b, layout=layout)
    gx, gw, gb = ref.pointwise_conv2d_backward(Gin, xin, w, layout=layout)
    if layout == "NHWC":
        y, gx = _nchw(y), _nchw(gx)
    tol = dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(gx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(gw, wt.grad.numpy().reshape(w.shape), **tol)
    np.testing.assert_allclose(gb, bt.grad.numpy(), **tol)


def _explicit_pads_1d(padding, L, k, stride, dilation):
    if padding == "valid":
        return 0, 0
    if padding == "same":
        return _tf_same(L, k, stride, dilation)
    if padding == "causal":
        return dilation * (k - 1), 0
    if isinstance(padding, int):
        return padding, padding
    return tuple(padding)


@pytest.mark.parametrize("layout", ["NCL", "NLC"])
@pytest.mark.parametrize("case", DW1D_CASES)
def test_depthwise_conv1d_vs_torch(torch, case, layout, rng):
    L, k, M, stride, padding, dilation = case
    N, C = 2, 3
    F = torch.nn.functional
    x = rng.standard_normal((N, C, L))
    w = rng.standard_normal((C * M, 1, k))
    b = rng.standard_normal(C * M)
    lo, hi = _explicit_pads_1d(padding, L, k, stride, dilation)

    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    yt = F.conv1d(F.pad(xt, (lo, hi)), wt, bt, stride=stride, dilation=dilation, groups=C)
    G = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(G))

    kw = dict(stride=stride, padding=padding, dilation=dilation, layout=layout)
    xin, Gin = (x, G) if layout == "NCL" else (_nlc(x), _nlc(G))
    y = ref.depthwise_conv1d(xin, w, b, **kw)
    gx, gw, gb = ref.depthwise_conv1d_backward(Gin, xin, w, **kw)
    if layout == "NLC":
        y, gx = _nlc(y), _nlc(gx)
    assert gw.shape == w.shape
    tol = dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(gx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(gw, wt.grad.numpy(), **tol)
    np.testing.assert_allclose(gb, bt.grad.numpy(), **tol)


@pytest.mark.parametrize("layout", ["NCL", "NLC"])
@pytest.mark.parametrize("w_ndim", [2, 3])
def test_pointwise_conv1d_vs_torch(torch, layout, w_ndim, rng):
    N, Ci, Co, L = 2, 4, 3, 7
    x = rng.standard_normal((N, Ci, L))
    w3 = rng.standard_normal((Co, Ci, 1))
    b = rng.standard_normal(Co)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w3, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    yt = torch.nn.functional.conv1d(xt, wt, bt)
    G = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(G))

    w = w3 if w_ndim == 3 else w3[:, :, 0].copy()
    xin, Gin = (x, G) if layout == "NCL" else (_nlc(x), _nlc(G))
    y = ref.pointwise_conv1d(xin, w, b, layout=layout)
    gx, gw, gb = ref.pointwise_conv1d_backward(Gin, xin, w, layout=layout)
    if layout == "NLC":
        y, gx = _nlc(y), _nlc(gx)
    assert gw.shape == w.shape
    tol = dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(gx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(gw, wt.grad.numpy().reshape(w.shape), **tol)
    np.testing.assert_allclose(gb, bt.grad.numpy(), **tol)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_separable_conv2d_vs_torch(torch, layout, rng):
    F = torch.nn.functional
    N, C, M, Co, H, W = 2, 3, 2, 4, 9, 8
    x = rng.standard_normal((N, C, H, W)) * 3
    dw = rng.standard_normal((C * M, 1, 3, 3))
    db = rng.standard_normal(C * M)
    pw = rng.standard_normal((Co, C * M, 1, 1))
    pb = rng.standard_normal(Co)
    pads = _explicit_pads_2d("same", (H, W), (3, 3), 2, 1)
    mid = torch.clamp(
        _torch_dw2d(torch, torch.tensor(x), torch.tensor(dw), torch.tensor(db), 2, pads, 1), 0, 6
    )
    expect = torch.relu(F.conv2d(mid, torch.tensor(pw), torch.tensor(pb))).numpy()
    xin = x if layout == "NCHW" else _nhwc(x)
    y = ref.separable_conv2d(
        xin,
        dw,
        pw,
        db,
        pb,
        stride=2,
        padding="same",
        layout=layout,
        mid_activation="relu6",
        activation="relu",
    )
    if layout == "NHWC":
        y = _nchw(y)
    np.testing.assert_allclose(y, expect, rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_same_stride1_matches_torch_same(torch, rng):
    """PyTorch allows padding='same' at stride 1; odd totals go bottom/right."""
    F = torch.nn.functional
    C = 2
    for (kH, kW), (dh, dw) in [((2, 4), (1, 1)), ((4, 3), (1, 2)), ((3, 2), (3, 1))]:
        x = rng.standard_normal((1, C, 7, 6))
        w = rng.standard_normal((C, 1, kH, kW))
        expect = F.conv2d(
            torch.tensor(x), torch.tensor(w), padding="same", dilation=(dh, dw), groups=C
        ).numpy()
        y = ref.depthwise_conv2d(x, w, padding="same", dilation=(dh, dw))
        np.testing.assert_allclose(y, expect, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# "same" and "causal" padding
# ---------------------------------------------------------------------------


def test_same_output_size_is_ceil(rng):
    C = 2
    for s, size, k, d in itertools.product([1, 2, 3], [1, 2, 4, 5, 7, 8], [1, 2, 3, 4], [1, 2]):
        x = rng.standard_normal((1, C, size, size + 1))
        w = rng.standard_normal((C, 1, k, k))
        y = ref.depthwise_conv2d(x, w, stride=s, padding="same", dilation=d)
        assert y.shape == (1, C, -(-size // s), -(-(size + 1) // s)), (s, size, k, d)
        # 1-D twin
        y1 = ref.depthwise_conv1d(x[:, :, 0], w[:, :, 0], stride=s, padding="same", dilation=d)
        assert y1.shape == (1, C, -(-(size + 1) // s))
        # and equal to explicit TF-style asymmetric padding
        pads = (_tf_same(size, k, s, d), _tf_same(size + 1, k, s, d))
        np.testing.assert_array_equal(
            y, ref.depthwise_conv2d(x, w, stride=s, padding=pads, dilation=d)
        )


# (in, k, stride, dilation) -> (top, bottom), worked out by hand from TF's rule
SAME_SPLITS = [
    ((7, 3, 2, 1), (1, 1)),
    ((6, 3, 2, 1), (0, 1)),
    ((5, 2, 1, 1), (0, 1)),
    ((4, 3, 3, 1), (1, 1)),
    ((5, 3, 1, 2), (2, 2)),
    ((8, 5, 3, 1), (1, 2)),
    ((3, 1, 2, 1), (0, 0)),
    ((2, 5, 1, 1), (2, 2)),
    ((6, 4, 1, 1), (1, 2)),
    ((9, 4, 2, 1), (1, 2)),
]


@pytest.mark.parametrize("geom,split", SAME_SPLITS)
def test_same_odd_pixel_bottom_right(geom, split, rng):
    size, k, s, d = geom
    C = 2
    # H axis
    x = rng.standard_normal((2, C, size, 3))
    w = rng.standard_normal((C, 1, k, 1))
    y = ref.depthwise_conv2d(x, w, stride=(s, 1), dilation=(d, 1), padding="same")
    y_exp = ref.depthwise_conv2d(x, w, stride=(s, 1), dilation=(d, 1), padding=(split, (0, 0)))
    np.testing.assert_array_equal(y, y_exp)
    if split[0] != split[1]:  # the mirrored split must give something else
        y_bad = ref.depthwise_conv2d(
            x, w, stride=(s, 1), dilation=(d, 1), padding=(split[::-1], (0, 0))
        )
        assert not np.array_equal(y, y_bad)
    # W axis, NHWC
    xw = rng.standard_normal((2, 3, size, C))
    ww = rng.standard_normal((C, 1, 1, k))
    kw = dict(stride=(1, s), dilation=(1, d), layout="NHWC")
    np.testing.assert_array_equal(
        ref.depthwise_conv2d(xw, ww, padding="same", **kw),
        ref.depthwise_conv2d(xw, ww, padding=((0, 0), split), **kw),
    )
    # 1-D
    x1 = rng.standard_normal((2, C, size))
    w1 = rng.standard_normal((C, 1, k))
    np.testing.assert_array_equal(
        ref.depthwise_conv1d(x1, w1, stride=s, dilation=d, padding="same"),
        ref.depthwise_conv1d(x1, w1, stride=s, dilation=d, padding=split),
    )


def test_causal_padding(rng):
    C = 3
    for L, k, s, d in [(8, 3, 1, 1), (9, 3, 2, 2), (7, 4, 3, 1), (1, 2, 1, 3)]:
        x = rng.standard_normal((2, C, L))
        w = rng.standard_normal((C, 1, k))
        y = ref.depthwise_conv1d(x, w, stride=s, dilation=d, padding="causal")
        assert y.shape == (2, C, -(-L // s))
        np.testing.assert_array_equal(
            y, ref.depthwise_conv1d(x, w, stride=s, dilation=d, padding=(d * (k - 1), 0))
        )
    # output t only sees inputs <= t (stride 1)
    x = rng.standard_normal((1, C, 10))
    w = rng.standard_normal((C, 1, 3))
    y0 = ref.depthwise_conv1d(x, w, padding="causal", dilation=2)
    x2 = x.copy()
    x2[..., 6:] += 1.0
    y1 = ref.depthwise_conv1d(x2, w, padding="causal", dilation=2)
    np.testing.assert_array_equal(y0[..., :6], y1[..., :6])


# ---------------------------------------------------------------------------
# Separable, activations, dtype, out=, batch 0, flags
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("act", [None, "relu", "relu6"])
def test_separable_conv2d_is_unfused_composition(layout, act, rng):
    N, C, M, Co, H, W = 2, 3, 2, 5, 8, 7
    x = rng.standard_normal((N, C, H, W)) * 4
    if layout == "NHWC":
        x = _nhwc(x)
    dw = rng.standard_normal((C * M, 1, 3, 2))
    db = rng.standard_normal(C * M)
    pw = rng.standard_normal((Co, C * M))
    pb = rng.standard_normal(Co)
    kw = dict(stride=(2, 1), padding=((1, 0), (0, 1)), dilation=(1, 2), layout=layout)
    mid = np.clip(ref.depthwise_conv2d(x, dw, db, **kw), 0, 6)
    assert mid.max() == 6.0 and mid.min() == 0.0  # relu6 is really exercised
    expect = ref.pointwise_conv2d(mid, pw, pb, layout=layout, activation=act)
    y = ref.separable_conv2d(x, dw, pw, db, pb, mid_activation="relu6", activation=act, **kw)
    np.testing.assert_allclose(y, expect, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("layout", ["NCL", "NLC"])
def test_separable_conv1d_is_unfused_composition(layout, rng):
    N, C, M, Co, L = 2, 3, 2, 4, 11
    x = rng.standard_normal((N, C, L)) * 4
    if layout == "NLC":
        x = _nlc(x)
    dw = rng.standard_normal((C * M, 1, 3))
    db = rng.standard_normal(C * M)
    pw = rng.standard_normal((Co, C * M, 1))
    pb = rng.standard_normal(Co)
    kw = dict(stride=2, padding="causal", dilation=2, layout=layout)
    mid = ref.depthwise_conv1d(x, dw, db, activation="relu", **kw)
    expect = ref.pointwise_conv1d(mid, pw, pb, layout=layout, activation="relu6")
    y = ref.separable_conv1d(x, dw, pw, db, pb, mid_activation="relu", activation="relu6", **kw)
    np.testing.assert_allclose(y, expect, rtol=1e-13, atol=1e-13)


def test_activations(rng):
    x = rng.standard_normal((1, 2, 5, 5)) * 5
    w = rng.standard_normal((2, 1, 3, 3))
    b = rng.standard_normal(2)
    y = ref.depthwise_conv2d(x, w, b, padding=1)
    np.testing.assert_array_equal(
        ref.depthwise_conv2d(x, w, b, padding=1, activation="relu"), np.maximum(y, 0)
    )
    np.testing.assert_array_equal(
        ref.depthwise_conv2d(x, w, b, padding=1, activation="relu6"), np.clip(y, 0, 6)
    )
    with pytest.raises(ValueError):
        ref.depthwise_conv2d(x, w, b, activation="gelu")


def test_depthwise_channel_multiplier_order(rng):
    """Output channel c*M + m reads input channel c."""
    C, M = 3, 2
    x = rng.standard_normal((1, C, 4, 4))
    w = np.zeros((C * M, 1, 1, 1))
    w[:, 0, 0, 0] = np.arange(1, C * M + 1)
    y = ref.depthwise_conv2d(x, w)
    for c in range(C):
        for m in range(M):
            np.testing.assert_allclose(y[0, c * M + m], x[0, c] * (c * M + m + 1))


def test_float32_in_float32_out_and_close(rng):
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    dw = rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    pw = rng.standard_normal((4, 6)).astype(np.float32)
    y = ref.separable_conv2d(x, dw, pw, padding="same")
    assert y.dtype == np.float32
    y64 = ref.separable_conv2d(
        x.astype(np.float64), dw.astype(np.float64), pw.astype(np.float64), padding="same"
    )
    np.testing.assert_allclose(y, y64, rtol=1e-6, atol=1e-6)
    g = np.ones_like(ref.depthwise_conv2d(x, dw, padding=1))
    assert all(a.dtype == np.float32 for a in ref.depthwise_conv2d_backward(g, x, dw, padding=1))
    assert ref.pointwise_conv1d(x[:, :, 0], pw[:, :3]).dtype == np.float32


def test_out_is_filled_and_returned(rng):
    x = rng.standard_normal((2, 3, 5, 5))
    w = rng.standard_normal((3, 1, 3, 3))
    expect = ref.depthwise_conv2d(x, w, padding=1)
    out = np.empty_like(expect)
    assert ref.depthwise_conv2d(x, w, padding=1, out=out, num_threads=3) is out
    np.testing.assert_array_equal(out, expect)

    pw = rng.standard_normal((4, 3, 1))
    x1 = rng.standard_normal((2, 3, 7))
    out1 = np.empty((2, 4, 7))
    assert ref.pointwise_conv1d(x1, pw, out=out1) is out1
    np.testing.assert_array_equal(out1, ref.pointwise_conv1d(x1, pw))

    dw1 = rng.standard_normal((3, 1, 3))
    out2 = np.empty((2, 4, 7))
    r = ref.separable_conv1d(x1, dw1, pw, padding="same", out=out2)
    assert r is out2


def test_batch_zero(rng):
    x = np.zeros((0, 3, 5, 6))
    w = rng.standard_normal((6, 1, 3, 3))
    y = ref.depthwise_conv2d(x, w, stride=2, padding="same")
    assert y.shape == (0, 6, 3, 3)
    y = ref.depthwise_conv2d(_nhwc(x), w, padding=1, layout="NHWC")
    assert y.shape == (0, 5, 6, 6)
    pw = rng.standard_normal((4, 6))
    assert ref.separable_conv2d(x, w, pw).shape == (0, 4, 3, 4)
    gx, gw, gb = ref.depthwise_conv2d_backward(np.zeros((0, 6, 3, 4)), x, w)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == (6,)
    np.testing.assert_array_equal(gw, 0)
    gx, gw, gb = ref.pointwise_conv2d_backward(np.zeros((0, 4, 5, 6)), np.zeros((0, 6, 5, 6)), pw)
    assert gx.shape == (0, 6, 5, 6) and gw.shape == (4, 6) and gb.shape == (4,)
    x1 = np.zeros((0, 7, 3))
    assert ref.depthwise_conv1d(x1, w[:, :, 0], padding="causal", layout="NLC").shape == (0, 7, 6)
    assert ref.pointwise_conv1d(np.zeros((0, 6, 7)), pw).shape == (0, 4, 7)


def test_backward_flags(rng):
    x = rng.standard_normal((1, 2, 4, 4))
    w = rng.standard_normal((2, 1, 3, 3))
    g = rng.standard_normal((1, 2, 2, 2))
    gx, gw, gb = ref.depthwise_conv2d_backward(g, x, w, input_grad=False, bias_grad=False)
    assert gx is None and gb is None and gw.shape == w.shape
    gx, gw, gb = ref.depthwise_conv2d_backward(g, x, w, weight_grad=False)
    assert gw is None and gx.shape == x.shape and gb.shape == (2,)
    pw = rng.standard_normal((3, 2, 1, 1))
    gx, gw, gb = ref.pointwise_conv2d_backward(
        rng.standard_normal((1, 3, 4, 4)), x, pw, input_grad=False, weight_grad=False
    )
    assert gx is None and gw is None and gb.shape == (3,)


def test_kernel_larger_than_padded_input_is_error(rng):
    x = rng.standard_normal((1, 2, 2, 5))
    w = rng.standard_normal((2, 1, 3, 3))
    with pytest.raises(ValueError):
        ref.depthwise_conv2d(x, w)
    ref.depthwise_conv2d(x, w, padding=((1, 0), (0, 0)))  # exactly fits
    with pytest.raises(ValueError):
        ref.depthwise_conv2d(x, w, padding=-1)
    with pytest.raises(ValueError):
        ref.depthwise_conv2d(x, w, stride=0)
