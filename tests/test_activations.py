"""hardswish, hardsigmoid, silu and sigmoid: the kernels' epilogues against
PyTorch and the float64 reference (special values included), every op,
layout, dtype and ISA; the nn modules, layers and plans that use them."""

import numpy as np
import pytest
from conftest import assert_close, to_nhwc

import pydsconv
from pydsconv import _args, _core, nn
from pydsconv import reference as ref

torch = pytest.importorskip("torch")
F = torch.nn.functional

NEW = ["hardswish", "hardsigmoid", "silu", "sigmoid"]
TORCH_FN = {
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
    "silu": F.silu,
    "sigmoid": F.sigmoid,
}
DTYPES = [np.float32, np.float64]


def _specials(dtype):
    """Values around every edge: +-inf, NaN, +-0, the clamps at +-3, the
    range where exp(-x) over/underflows, subnormal results, and a dense
    sweep; a length that is no multiple of any vector width."""
    big = 89.0 if dtype == np.float32 else 710.0
    v = [-np.inf, np.inf, np.nan, -0.0, 0.0, -3, 3, -2.999, 2.999, -1.5, 1e-30, -1e-30]
    v += [
        -big - 1,
        -big,
        -big + 0.5,
        -big + 1.5,
        -87.5,
        -80,
        -40,
        -20,
        -16,
        16,
        20,
        40,
        80,
        big + 1,
    ]
    v += [1e30, -1e30, -1e300 if dtype == np.float64 else -3e38, 3e38]
    sweep = np.linspace(-30, 30, 1001)
    return np.concatenate([np.array(v), sweep]).astype(dtype)


def _torch_act(x, act):
    with torch.no_grad():
        return TORCH_FN[act](torch.from_numpy(np.ascontiguousarray(x))).numpy()


def _same_special_classes(got, want, what):
    for name, mask in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
        bad = mask(got) != mask(want)
        assert not bad.any(), f"{what}: {name} differs at {np.argwhere(bad)[:5].tolist()}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("act", NEW)
def test_epilogue_against_torch_and_reference(isa, act, dtype):
    """The kernels' activation (_core._activate: act_row, the same code the
    ops' epilogues run) within a few ulp of PyTorch and of the float64
    reference, with PyTorch's special values (silu(-inf) and
    hardswish(-inf) are NaN, sigmoid(-inf) 0)."""
    x = _specials(dtype)
    got = _core._activate(x.copy(), act)
    want = _torch_act(x, act)
    if act == "hardswish":
        # PyTorch computes x * relu6(x + 3) / 6 in that order: x * 6
        # overflows to inf for x > max / 6; ours, x * (relu6(x + 3) / 6), is x.
        huge = x > np.finfo(dtype).max / 6
        assert np.array_equal(got[huge], x[huge])
        want = np.where(huge, x, want)
    _same_special_classes(got, want, f"{act} vs torch")
    finite = np.isfinite(want)
    eps = np.finfo(dtype).eps
    tiny = np.finfo(dtype).tiny
    # a few ulp relative, or absolute near 0 (subnormal results)
    np.testing.assert_allclose(got[finite], want[finite], rtol=4 * eps, atol=16 * tiny)
    with np.errstate(all="ignore"):
        exact = ref._activate(x.astype(np.float64), act)
    _same_special_classes(got, exact, f"{act} vs reference")
    fin = np.isfinite(exact)
    # (float32 exp(-x) overflows for x < -88.7, as PyTorch's: -0 where
    # float64 has ~1e-37)
    np.testing.assert_allclose(got[fin], exact[fin], rtol=4 * eps, atol=2**10 * tiny)
    # signs of zeros as PyTorch (silu and hardswish of x < 0 are -0)
    zero = finite & (want == 0)
    assert np.array_equal(np.signbit(got[zero]), np.signbit(want[zero])), act
    if act == "hardswish":  # the clamp is exact: x for x >= 3, 0 for x <= -3
        assert np.array_equal(got[x >= 3], x[x >= 3])
        assert (got[(x <= -3) & np.isfinite(x)] == 0).all()
    if act == "hardsigmoid":
        assert (got[x >= 3] == 1).all() and (got[x <= -3] == 0).all()


def test_epilogue_every_length(isa):
    """Every tail length of the row epilogue gives the bits of the vector
    path (each element the same, wherever it sits)."""
    rng = np.random.default_rng(0)
    for dtype in DTYPES:
        x = (rng.standard_normal(300) * 6).astype(dtype)
        for act in NEW:
            whole = _core._activate(x.copy(), act)
            for n in list(range(1, 40)) + [127, 128, 129]:
                for start in (0, 1, 5):
                    part = _core._activate(x[start : start + n].copy(), act)
                    assert np.array_equal(part, whole[start : start + n]), (act, n, start)


def _conv_data(rng, dtype, layout, c=13, h=7, w=9, n=2):
    x = rng.uniform(-1, 1, (n, c, h, w))
    dw = rng.uniform(-1.5, 1.5, (c * 2, 1, 3, 3))
    db = rng.uniform(-3, 3, c * 2)
    pw = rng.uniform(-1, 1, (11, c * 2))
    pb = rng.uniform(-3, 3, 11)
    xl = x if layout == "NCHW" else to_nhwc(x)
    return [a.astype(dtype) for a in (x, xl, dw, db, pw, pb)]


def _nchw(y, layout):
    return y if layout == "NCHW" else np.moveaxis(y, -1, 1)


# (C, H, W): the NCHW row kernel, the multi-row / flat kernels of small
# planes, one wide row; NHWC tiles with a channel tail.
PLANES = [(13, 7, 9), (16, 7, 7), (5, 3, 40), (21, 12, 12)]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("act", NEW)
def test_ops_2d(isa, act, layout, dtype):
    """depthwise / pointwise / separable (both activations) against the
    reference and against PyTorch's conv + activation; the fused epilogue
    equals the op without activation followed by _core._activate
    (bit-identical) and any thread count gives the same bits."""
    rng = np.random.default_rng(7)
    for c, h, w in PLANES:
        x, xl, dw, db, pw, pb = _conv_data(rng, dtype, layout, c, h, w)
        kw = dict(padding=1, layout=layout)
        x64 = x.astype(np.float64)
        cases = [
            (
                "depthwise",
                lambda a, t: pydsconv.depthwise_conv2d(
                    xl, dw, db, activation=a, num_threads=t, **kw
                ),
                ref.depthwise_conv2d(x64, dw, db, padding=1, activation=act),
                lambda: F.conv2d(
                    torch.from_numpy(x64),
                    torch.from_numpy(dw.astype(np.float64)),
                    torch.from_numpy(db.astype(np.float64)),
                    padding=1,
                    groups=c,
                ),
            ),
            (
                "pointwise",
                lambda a, t: pydsconv.pointwise_conv2d(
                    xl, pw[:, :c], pb, layout=layout, activation=a, num_threads=t
                ),
                ref.pointwise_conv2d(x64, pw[:, :c], pb, activation=act),
                lambda: F.conv2d(
                    torch.from_numpy(x64),
                    torch.from_numpy(pw[:, :c, None, None].astype(np.float64)),
                    torch.from_numpy(pb.astype(np.float64)),
                ),
            ),
            (
                "separable",
                lambda a, t: pydsconv.separable_conv2d(
                    xl, dw, pw, db, pb, activation=a, num_threads=t, **kw
                ),
                ref.separable_conv2d(x64, dw, pw, db, pb, padding=1, activation=act),
                lambda: F.conv2d(
                    F.conv2d(
                        torch.from_numpy(x64),
                        torch.from_numpy(dw.astype(np.float64)),
                        torch.from_numpy(db.astype(np.float64)),
                        padding=1,
                        groups=c,
                    ),
                    torch.from_numpy(pw[:, :, None, None].astype(np.float64)),
                    torch.from_numpy(pb.astype(np.float64)),
                ),
            ),
        ]
        for name, run, want, pre_torch in cases:
            got = run(act, 1)
            assert_close(_nchw(got, layout), want, dtype)
            if (c, h, w) == PLANES[0]:  # PyTorch once; the reference for every plane
                with torch.no_grad():
                    tw = TORCH_FN[act](pre_torch()).numpy()
                assert_close(_nchw(got, layout), tw, dtype)
            assert np.array_equal(got, run(act, 3)), (name, "threads")
            unfused = _core._activate(run(None, 1), act)
            assert np.array_equal(got, unfused), (name, "fused != op then activation")
        # mid_activation of the separable op
        got = pydsconv.separable_conv2d(xl, dw, pw, db, pb, mid_activation=act, **kw)
        want = ref.separable_conv2d(x64, dw, pw, db, pb, padding=1, mid_activation=act)
        assert_close(_nchw(got, layout), want, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["NCL", "NLC"])
@pytest.mark.parametrize("act", NEW)
def test_ops_1d(isa, act, layout, dtype):
    rng = np.random.default_rng(8)
    x = rng.uniform(-1, 1, (2, 6, 37))
    dw = rng.uniform(-1.5, 1.5, (6, 1, 5))
    db = rng.uniform(-3, 3, 6)
    pw = rng.uniform(-1, 1, (9, 6))
    pb = rng.uniform(-3, 3, 9)
    xl = x if layout == "NCL" else np.ascontiguousarray(x.transpose(0, 2, 1))
    x, xl, dw, db, pw, pb = [a.astype(dtype) for a in (x, xl, dw, db, pw, pb)]

    def back(y):
        return y if layout == "NCL" else y.transpose(0, 2, 1)

    x64 = x.astype(np.float64)
    got = pydsconv.depthwise_conv1d(xl, dw, db, padding="same", layout=layout, activation=act)
    assert_close(
        back(got), ref.depthwise_conv1d(x64, dw, db, padding="same", activation=act), dtype
    )
    got = pydsconv.pointwise_conv1d(xl, pw, pb, layout=layout, activation=act)
    assert_close(back(got), ref.pointwise_conv1d(x64, pw, pb, activation=act), dtype)
    got = pydsconv.separable_conv1d(
        xl, dw, pw, db, pb, padding="causal", layout=layout, mid_activation=act, activation=act
    )
    want = ref.separable_conv1d(
        x64, dw, pw, db, pb, padding="causal", mid_activation=act, activation=act
    )
    assert_close(back(got), want, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_ops_nonfinite_inputs(isa, dtype):
    """Inf and NaN inputs and weights give PyTorch's classes after each
    activation (the non-finite fix-up runs the kernels' epilogue too)."""
    rng = np.random.default_rng(9)
    x = rng.uniform(-1, 1, (1, 4, 6, 6)).astype(dtype)
    x[0, 0, 2, 2], x[0, 1, 0, 0], x[0, 2, 5, 5] = np.inf, -np.inf, np.nan
    w = rng.uniform(-1, 1, (4, 1, 3, 3)).astype(dtype)
    w[3, 0, 0, 0] = -np.inf  # reads padding at the border: NaN there
    for act in NEW:
        got = pydsconv.depthwise_conv2d(x, w, padding=1, activation=act)
        with np.errstate(all="ignore"):
            want = ref.depthwise_conv2d(x.astype(np.float64), w.astype(np.float64), padding=1)
        tw = _torch_act(want, act)
        _same_special_classes(got.astype(np.float64), tw, act)
        fin = np.isfinite(tw)
        np.testing.assert_allclose(got[fin], tw[fin], rtol=1e-5, atol=1e-6)


def test_activation_errors_list_every_name():
    x = np.zeros((1, 2, 3, 3), np.float32)
    w = np.zeros((2, 1, 3, 3), np.float32)
    for bad in ("swish", "Silu", "gelu", 3):
        with pytest.raises(ValueError, match="'hardswish', 'hardsigmoid', 'silu' or 'sigmoid'"):
            pydsconv.depthwise_conv2d(x, w, activation=bad)
    with pytest.raises(ValueError, match="mid_activation must be None, 'relu'.*'sigmoid'"):
        pydsconv.separable_conv2d(x, w, np.zeros((3, 2), np.float32), mid_activation="elu")
    with pytest.raises(ValueError, match="'silu'"):
        nn.PointwiseConv2d(2, 3, activation="swish")


@pytest.mark.parametrize("act", NEW)
def test_activation_grad_matches_torch(act):
    rng = np.random.default_rng(10)
    z = np.concatenate([rng.uniform(-6, 6, 200), [-3.0, 3.0, -1.5, 0.0, 50.0, -50.0]])
    g = rng.standard_normal(z.shape)
    zt = torch.from_numpy(z).requires_grad_(True)
    yt = TORCH_FN[act](zt)
    yt.backward(torch.from_numpy(g))
    got = _args.activation_grad(g, yt.detach().numpy(), act, z)
    # PyTorch's hardsigmoid backward multiplies by 1.0f / 6.0f, a float
    # constant also in float64 (3e-8 off); ours divides by 6
    rtol = 1e-7 if act == "hardsigmoid" else 1e-12
    np.testing.assert_allclose(got, zt.grad.numpy(), rtol=rtol, atol=1e-15)
    if act in _args.NEEDS_PRE_ACTIVATION:
        with pytest.raises(ValueError, match="pre_activation"):
            _args.activation_grad(g, yt.detach().numpy(), act)


MODULES = {
    "hardswish": nn.Hardswish,
    "hardsigmoid": nn.Hardsigmoid,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("act", NEW)
def test_nn_modules_match_torch(act, dtype):
    rng = np.random.default_rng(11)
    x = rng.uniform(-6, 6, (3, 4, 5)).astype(dtype)
    m = MODULES[act]()
    y = m(x)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = TORCH_FN[act](xt)
    g = rng.standard_normal(x.shape).astype(dtype)
    yt.backward(torch.from_numpy(g))
    assert_close(y, yt.detach().numpy().astype(np.float64).astype(dtype), dtype)
    gx = m.backward(g)
    assert gx.dtype == dtype
    np.testing.assert_allclose(
        gx, xt.grad.numpy(), rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6
    )
    m.eval()
    assert np.array_equal(m(x), y)
    assert m.__dict__["_saved_for_grad"] is None  # eval keeps nothing
    with pytest.raises(RuntimeError, match="training mode"):
        m.backward(g)


def _check_layer_grads(layer, x, rng):
    from test_nn import check_grads

    check_grads(layer, x, rng, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("act", NEW)
def test_nn_conv_layer_grads(act, layout):
    """Layers with activation=: gradients against central differences
    (training mode keeps the pre-activation only for hardswish and silu)."""
    rng = np.random.default_rng(12)
    shape = (2, 3, 6, 5) if layout == "NCHW" else (2, 6, 5, 3)
    x = rng.standard_normal(shape) * 2
    dw = nn.DepthwiseConv2d(3, 3, padding=1, activation=act, layout=layout, dtype=np.float64, rng=2)
    _check_layer_grads(dw, x, rng)
    assert (dw._z is not None) == (act in _args.NEEDS_PRE_ACTIVATION)
    pw = nn.PointwiseConv2d(3, 4, activation=act, layout=layout, dtype=np.float64, rng=3)
    _check_layer_grads(pw, x, rng)
    cv = nn.Conv2d(3, 4, 3, padding=1, activation=act, layout=layout, dtype=np.float64, rng=5)
    _check_layer_grads(cv, x, rng)
    for training in (True, False):
        sep = nn.SeparableConv2d(
            3,
            4,
            3,
            padding="same",
            mid_activation=act,
            activation=act,
            layout=layout,
            dtype=np.float64,
            rng=4,
        )
        sep.train(training)  # eval: fused forward, backward recomputes what it needs
        _check_layer_grads(sep, x, rng)
    # eval mode: fused, keeps no pre-activation, same values as training
    pw.train()
    y_train = pw(x)
    pw.eval()
    y_eval = pw(x)
    assert np.array_equal(y_train, y_eval) and pw._z is None
    if act in _args.NEEDS_PRE_ACTIVATION:
        with pytest.raises(RuntimeError, match="training mode"):
            pw.backward(np.ones_like(y_eval))


@pytest.mark.parametrize("act", NEW)
def test_plan_fuses_each_activation(act):
    """A small network with the activation as a layer and as activation=
    compiles into steps with that epilogue and matches the eval forward."""
    rng = np.random.default_rng(13)
    cls = MODULES[act]
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False, rng=1),
        nn.BatchNorm2d(8),
        cls(),
        nn.DepthwiseConv2d(8, 3, padding=1, rng=2),
        cls(),
        nn.PointwiseConv2d(8, 12, activation=act, rng=3),
        nn.GlobalAvgPool2d(),
        nn.Flatten(),
        nn.Linear(12, 5, rng=4),
        cls(),
    )
    bn = model[1]
    bn.running_mean[:] = rng.standard_normal(8)
    bn.running_var[:] = rng.uniform(0.5, 2, 8)
    model.eval()
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    plan = nn.compile(model, x.shape)
    fused = ", ".join(s["fused"] for s in plan.steps())  # e.g. "SiLU 2, pointwise 3"
    assert fused.count(cls.__name__ + " ") == 3, fused
    assert_close(plan(x), model(x), np.float32)


def test_plan_refuses_two_different_activations():
    model = nn.Sequential(nn.PointwiseConv2d(3, 4, activation="relu", rng=1), nn.SiLU()).eval()
    with pytest.raises(ValueError, match="one epilogue activation"):
        nn.compile(model, (1, 3, 4, 4))


@pytest.mark.parametrize("act", NEW)
def test_torch_ops_and_modules_pass_the_names_through(act):
    """pydsconv.torch: fused forward without autograd, PyTorch's own
    function after the op when autograd records hardswish/silu; gradients
    (mid_activation too) against PyTorch's layers."""
    import pydsconv.torch as pt

    torch.manual_seed(0)
    ours = pt.SeparableConv2d(
        4, 6, 3, padding=1, mid_activation=act, activation=act, dtype=torch.float64
    )
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64) * 2
    dw = ours.depthwise if hasattr(ours, "depthwise") else None
    w_dw = ours.depthwise_weight if dw is None else dw.weight
    b_dw = ours.depthwise_bias if dw is None else dw.bias
    w_pw = ours.pointwise_weight if dw is None else ours.pointwise.weight
    b_pw = ours.pointwise_bias if dw is None else ours.pointwise.bias
    fn = TORCH_FN[act]

    def theirs(x):
        mid = fn(F.conv2d(x, w_dw, b_dw, padding=1, groups=4))
        return fn(F.conv2d(mid, w_pw.reshape(6, 4, 1, 1), b_pw))

    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))
    xr = x.clone().requires_grad_(True)
    y = ours(xr)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, (xr, w_dw, w_pw, b_dw), g)
    xr2 = x.clone().requires_grad_(True)
    want = torch.autograd.grad(theirs(xr2), (xr2, w_dw, w_pw, b_dw), g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    dwm = pt.DepthwiseConv2d(4, 3, padding=1, activation=act, dtype=torch.float64)
    pwm = pt.PointwiseConv2d(4, 5, activation=act, dtype=torch.float64)
    for one, plain in (
        (dwm, lambda x: fn(F.conv2d(x, dwm.weight, dwm.bias, padding=1, groups=4))),
        (pwm, lambda x: fn(F.conv2d(x, pwm.weight, pwm.bias))),
    ):
        xr = x.clone().requires_grad_(True)
        y = one(xr)
        g = torch.randn_like(y)
        got = torch.autograd.grad(y, (xr, one.weight), g)
        xr2 = x.clone().requires_grad_(True)
        want = torch.autograd.grad(plain(xr2), (xr2, one.weight), g)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)
        with torch.no_grad():
            torch.testing.assert_close(one(x), plain(x))  # the fused forward


@pytest.mark.parametrize("act", NEW)
def test_torch_convert_fuses_the_new_activations(act):
    import pydsconv.torch as pt

    mod = {
        "hardswish": torch.nn.Hardswish,
        "hardsigmoid": torch.nn.Hardsigmoid,
        "silu": torch.nn.SiLU,
        "sigmoid": torch.nn.Sigmoid,
    }[act]
    torch.manual_seed(1)
    ref_model = torch.nn.Sequential(
        torch.nn.Conv2d(4, 4, 3, padding=1, groups=4), mod(), torch.nn.Conv2d(4, 8, 1), mod()
    ).eval()
    model, report = pt.convert(ref_model)
    sep = model[0]
    assert isinstance(sep, pt.SeparableConv2d), model
    assert sep.mid_activation == act and sep.activation == act
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref_model(x), rtol=2e-5, atol=2e-6)
