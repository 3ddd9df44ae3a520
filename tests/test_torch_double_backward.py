"""Double backward through pydsconv.torch (issue 20, item 2): second
derivatives equal PyTorch's (gradgradcheck in float64), a WGAN-GP gradient
penalty gives nn.Conv2d's weight gradients, plain backward still takes the
fast path.
"""

import pytest

torch = pytest.importorskip("torch")

import pydsconv.torch as pt  # noqa: E402

nn = torch.nn
F = torch.nn.functional
f64 = torch.float64


def _t(*shape, scale=1.0, seed=None):
    if seed is not None:
        torch.manual_seed(seed)
    return (torch.randn(*shape, dtype=f64) * scale).requires_grad_()


def _check(fn, inputs):
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


DW2 = [
    dict(stride=1, padding=1, dilation=1, activation=None, M=1),
    dict(stride=2, padding=((1, 0), (2, 1)), dilation=1, activation="relu", M=2),
    dict(stride=(1, 2), padding="same", dilation=(2, 1), activation="relu6", M=1),
    dict(stride=2, padding="valid", dilation=2, activation=None, M=3),
]


@pytest.mark.parametrize("cfg", DW2, ids=str)
@pytest.mark.parametrize("channels_last", [False, True])
def test_gradgradcheck_depthwise2d(cfg, channels_last):
    c, m = 2, cfg["M"]
    x = _t(2, c, 7, 6, scale=3, seed=0)
    if channels_last:
        x = x.detach().to(memory_format=torch.channels_last).requires_grad_()
    w, b = _t(c * m, 1, 3, 2), _t(c * m)
    geom = {k: cfg[k] for k in ("stride", "padding", "dilation", "activation")}
    _check(lambda x, w, b: pt.depthwise_conv2d(x, w, b, **geom), (x, w, b))


@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
@pytest.mark.parametrize("wdim", [4, 2])
def test_gradgradcheck_pointwise2d(activation, wdim):
    x = _t(2, 3, 4, 5, scale=4, seed=1)
    w = _t(*((4, 3, 1, 1) if wdim == 4 else (4, 3)))
    _check(lambda x, w, b: pt.pointwise_conv2d(x, w, b, activation), (x, w, _t(4)))


@pytest.mark.parametrize(
    "stride, padding, dilation, mid_act, act, m",
    [(1, 1, 1, None, None, 1), (2, "same", 1, "relu", "relu6", 2), (1, 0, 2, "relu6", "relu", 1)],
)
def test_gradgradcheck_separable2d(stride, padding, dilation, mid_act, act, m):
    x = _t(1, 2, 6, 7, scale=3, seed=2)
    dw, pw, db, pb = _t(2 * m, 1, 3, 3), _t(3, 2 * m, 1, 1), _t(2 * m), _t(3)

    def f(x, dw, pw, db, pb):
        return pt.separable_conv2d(x, dw, pw, db, pb, stride, padding, dilation, mid_act, act)

    _check(f, (x, dw, pw, db, pb))


@pytest.mark.parametrize(
    "stride, padding, dilation, act, m",
    [(1, 1, 1, None, 1), (2, "causal", 2, "relu", 2), (3, "same", 1, "relu6", 1)],
)
def test_gradgradcheck_1d(stride, padding, dilation, act, m):
    torch.manual_seed(3)
    x = _t(2, 2, 11, scale=3)
    w, b = _t(2 * m, 1, 3), _t(2 * m)
    _check(lambda x, w, b: pt.depthwise_conv1d(x, w, b, stride, padding, dilation, act), (x, w, b))
    pw, pb = _t(3, 2, 1), _t(3)
    _check(lambda x, w, b: pt.pointwise_conv1d(x, w, b, act), (x, pw, pb))
    pw2 = _t(3, 2 * m)

    def sep(x, dw, pw, db, pb):
        return pt.separable_conv1d(x, dw, pw, db, pb, stride, padding, dilation, act, act)

    _check(sep, (x, w, pw2, b, pb))


def test_gradgradcheck_through_the_dispatcher():
    """The same formulas through torch.ops (what compile / export trace)."""
    x, w = _t(1, 2, 5, 5, seed=4), _t(2, 1, 3, 3)
    ops = torch.ops.pydsconv

    def f(x, w):
        return ops.depthwise_conv2d(x, w, None, [2, 1], "explicit", [1, 1, 0, 1], [1, 1], "relu")

    _check(f, (x, w))
    g = _t(1, 2, 3, 4)
    _check(
        lambda g, x, w: ops.depthwise_conv2d_backward(
            g, x, w, None, [2, 1], "explicit", [1, 1, 0, 1], [1, 1], None, True, True, True
        ),
        (g, x, w),
    )


class _TorchSep(nn.Module):
    """nn.Conv2d twin of pt.SeparableConv2d (same state-dict keys)."""

    def __init__(self, c, o, k, act=None, **geom):
        super().__init__()
        self.depthwise = nn.Conv2d(c, c, k, groups=c, **geom)
        self.pointwise = nn.Conv2d(c, o, 1)
        self.act = act or nn.Identity()

    def forward(self, x):
        return self.act(self.pointwise(self.depthwise(x)))


def _critic(kind):
    """A small critic: pydsconv modules or the same nn.Conv2d layers."""
    torch.manual_seed(5)
    if kind == "torch":
        layers = [
            nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, groups=3), nn.ReLU()),
            nn.Sequential(nn.Conv2d(6, 4, 1), nn.ReLU6()),
            _TorchSep(4, 5, 3, nn.ReLU(), stride=2, padding=1),
            _TorchSep(5, 2, 3, padding=2, dilation=2),
        ]
    else:
        layers = [
            pt.DepthwiseConv2d(3, 3, padding=1, depth_multiplier=2, activation="relu"),
            pt.PointwiseConv2d(6, 4, activation="relu6"),
            pt.SeparableConv2d(4, 5, 3, stride=2, padding=1, activation="relu"),
            pt.SeparableConv2d(5, 2, 3, padding=2, dilation=2),
        ]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(2 * 4 * 4, 1)).double()


def _state(model):
    """State dict with the torch twin's ``i.0.weight`` keys as ``i.weight``."""
    return {k.replace(".0.", "."): v for k, v in model.state_dict().items()}


def _gp_grads(model, real, fake):
    alpha = torch.rand(
        real.shape[0], 1, 1, 1, dtype=f64, generator=torch.Generator().manual_seed(6)
    )
    xh = (alpha * real + (1 - alpha) * fake).requires_grad_()
    (gx,) = torch.autograd.grad(model(xh).sum(), xh, create_graph=True)
    penalty = ((gx.flatten(1).norm(dim=1) - 1) ** 2).mean()
    loss = model(fake).mean() - model(real).mean() + 10 * penalty
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("channels_last", [False, True])
def test_wgan_gp_weight_gradients_equal_nn_conv2d(channels_last):
    ref, ours = _critic("torch"), _critic("ours")
    ours.load_state_dict(_state(ref))
    torch.manual_seed(7)
    real, fake = torch.randn(3, 3, 8, 8, dtype=f64), torch.randn(3, 3, 8, 8, dtype=f64)
    if channels_last:
        real, fake = (t.to(memory_format=torch.channels_last) for t in (real, fake))
    g_ref, g_ours = _gp_grads(ref, real, fake), _gp_grads(ours, real, fake)
    assert len(g_ref) == len(g_ours)
    for a, b in zip(g_ref, g_ours):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def test_penalty_gradient_is_not_silently_zero():
    model, ref = _critic("ours"), _critic("torch")
    model.load_state_dict(_state(ref))
    x = torch.randn(2, 3, 8, 8, dtype=f64, requires_grad=True)
    (gx,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    (gw,) = torch.autograd.grad((gx**2).sum(), model[0].weight)
    (rx,) = torch.autograd.grad(ref(x).sum(), x, create_graph=True)
    (rw,) = torch.autograd.grad((rx**2).sum(), ref[0][0].weight)
    assert rw.abs().max() > 0
    torch.testing.assert_close(gw, rw, rtol=1e-10, atol=1e-12)


def test_plain_backward_keeps_the_fast_path(monkeypatch):
    """Without create_graph no backward op goes through an autograd Function."""
    seen = []
    for name in ("depthwise_conv2d_backward", "pointwise_conv2d_backward"):
        op = getattr(pt, {"depthwise_conv2d_backward": "_dw2_bwd_op"}.get(name, "_pw2_bwd_op"))
        impl = op._pydsconv_impl
        monkeypatch.setattr(
            op, "_pydsconv_impl", lambda *a, _impl=impl, _n=name: seen.append(_n) or _impl(*a)
        )
        fn = op._pydsconv_fn
        monkeypatch.setattr(
            op,
            "_pydsconv_fn",
            type("Spy", (), {"apply": staticmethod(lambda *a: pytest.fail("Function path"))}),
        )
        assert fn is not None
    x = _t(1, 2, 5, 5, seed=8)
    w, p = _t(2, 1, 3, 3), _t(3, 2)
    pt.pointwise_conv2d(pt.depthwise_conv2d(x, w, padding=1), p).sum().backward()
    assert sorted(seen) == ["depthwise_conv2d_backward", "pointwise_conv2d_backward"]


def test_unsupported_activation_double_backward_is_clear():
    with pytest.raises(NotImplementedError, match="double backward.*'gelu'"):
        pt._act_grad_t(torch.ones(1), torch.ones(1), "gelu")


@pytest.mark.parametrize("act", ["sigmoid", "hardsigmoid", "silu", "hardswish"])
def test_gradgradcheck_smooth_activations(act):
    """The activations whose derivative depends on the value (sigmoid, silu)
    or needs the pre-activation (silu, hardswish), fused last and in the middle."""
    x = _t(1, 2, 5, 6, scale=3, seed=9)
    w, b = _t(2, 1, 3, 3), _t(2)
    _check(lambda x, w, b: pt.depthwise_conv2d(x, w, b, padding=1, activation=act), (x, w, b))
    pw, pb = _t(3, 2), _t(3)

    def sep(x, w, pw, b, pb):
        return pt.separable_conv2d(x, w, pw, b, pb, 2, "same", 1, act, act)

    _check(sep, (x, w, pw, b, pb))
    x1 = _t(2, 2, 9, scale=3)
    _check(
        lambda x, w, pw: pt.separable_conv1d(x, w, pw, padding="causal", mid_activation=act),
        (x1, _t(2, 1, 3), _t(3, 2)),
    )
