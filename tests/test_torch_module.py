"""pydsconv.torch: autograd Functions and nn.Modules vs PyTorch's own convolutions.

Every expected value comes from PyTorch (``F.conv2d`` with ``groups=C``, a 1x1
``F.conv2d``, ``F.pad`` for TensorFlow "same" at stride > 1) or from
``torch.autograd.gradcheck``'s finite differences; never from pydsconv.
"""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import run_python  # noqa: E402

import pydsconv  # noqa: E402
import pydsconv.torch as pt  # noqa: E402

nn = torch.nn
F = torch.nn.functional

DTYPES = [torch.float32, torch.float64]
FORMATS = {"NCHW": torch.contiguous_format, "CL": torch.channels_last}


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _explicit_pads(padding, hw, k, stride, dilation):
    """(top, bottom, left, right), or None where F.conv2d takes ``padding`` as is."""
    s, d, k = _pair(stride), _pair(dilation), _pair(k)
    if padding == "same" and s != (1, 1):  # TensorFlow's rule, which torch refuses at stride > 1
        pads = []
        for size, kk, ss, dd in zip(hw, k, s, d):
            out = -(-size // ss)
            total = max((out - 1) * ss + (kk - 1) * dd + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return tuple(pads)
    if isinstance(padding, (tuple, list)) and isinstance(padding[0], (tuple, list)):
        return (*padding[0], *padding[1])
    return None


def torch_dw(x, w, b, stride, padding, dilation):
    """PyTorch's depthwise conv (groups = C) with pydsconv's padding forms."""
    pads = _explicit_pads(padding, x.shape[2:], w.shape[2:], stride, dilation)
    if pads is not None:
        t, bo, le, r = pads
        x, padding = F.pad(x, (le, r, t, bo)), 0
    return F.conv2d(x, w, b, _pair(stride), padding, _pair(dilation), groups=x.shape[1])


ACT = {None: lambda t: t, "relu": F.relu, "relu6": F.relu6}


def assert_close(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    rtol, atol = (1e-10, 1e-11) if a.dtype == torch.float64 else (1e-4, 1e-5)
    scale = max(1.0, b.abs().max().item())
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol * scale)


def leaf(t):
    return t.detach().clone().requires_grad_(True)


def make_x(shape, dtype, fmt, scale=1.0):
    x = torch.randn(shape, dtype=dtype) * scale
    return x.contiguous(memory_format=FORMATS[fmt])


def check_format(t, fmt):
    if fmt == "CL":
        assert t.is_contiguous(memory_format=torch.channels_last), t.stride()
    else:
        assert t.is_contiguous(), t.stride()


# --------------------------------------------------------------------------
# forward and gradients vs torch, modules
# --------------------------------------------------------------------------

CASES = [
    dict(C=5, M=1, k=3, stride=1, padding=1, dilation=1, hw=(9, 7)),
    dict(C=8, M=2, k=3, stride=2, padding=1, dilation=1, hw=(10, 11)),
    dict(C=16, M=1, k=3, stride=2, padding="same", dilation=1, hw=(12, 12)),
    dict(C=6, M=3, k=(3, 5), stride=1, padding="same", dilation=2, hw=(11, 13)),
    dict(C=7, M=1, k=5, stride=(2, 1), padding="valid", dilation=1, hw=(9, 8)),
    dict(C=4, M=1, k=3, stride=1, padding=(0, 2), dilation=1, hw=(6, 5)),
    dict(C=9, M=2, k=3, stride=2, padding=((0, 1), (1, 0)), dilation=1, hw=(8, 9)),
]


def _id(c):
    return f"C{c['C']}M{c['M']}k{c['k']}s{c['stride']}p{c['padding']}d{c['dilation']}".replace(
        " ", ""
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_depthwise_module_matches_torch(case, fmt, dtype):
    torch.manual_seed(0)
    c = case
    mod = pt.DepthwiseConv2d(
        c["C"],
        c["k"],
        c["stride"],
        c["padding"],
        c["dilation"],
        depth_multiplier=c["M"],
        dtype=dtype,
    )
    x = make_x((3, c["C"], *c["hw"]), dtype, fmt)
    xo, xr, wr, br = leaf(x), leaf(x), leaf(mod.weight), leaf(mod.bias)
    yo = mod(xo)
    yr = torch_dw(xr, wr, br, c["stride"], c["padding"], c["dilation"])
    check_format(yo, fmt)
    assert_close(yo, yr)
    g = torch.randn_like(yr)
    (yo * g).sum().backward()
    (yr * g).sum().backward()
    check_format(xo.grad, fmt)
    assert_close(xo.grad, xr.grad)
    assert_close(mod.weight.grad, wr.grad)
    assert_close(mod.bias.grad, br.grad)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
def test_pointwise_module_matches_torch(activation, fmt, dtype):
    torch.manual_seed(1)
    mod = pt.PointwiseConv2d(12, 20, activation=activation, dtype=dtype)
    x = make_x((2, 12, 7, 9), dtype, fmt, scale=4.0)
    xo, xr, wr, br = leaf(x), leaf(x), leaf(mod.weight), leaf(mod.bias)
    yo = mod(xo)
    yr = ACT[activation](F.conv2d(xr, wr, br))
    check_format(yo, fmt)
    assert_close(yo, yr)
    g = torch.randn_like(yr)
    (yo * g).sum().backward()
    (yr * g).sum().backward()
    check_format(xo.grad, fmt)
    assert_close(xo.grad, xr.grad)
    assert_close(mod.weight.grad, wr.grad)
    assert_close(mod.bias.grad, br.grad)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "acts", [(None, None), ("relu6", None), ("relu", "relu6"), ("relu6", "relu6")], ids=str
)
@pytest.mark.parametrize("case", CASES[:4] + CASES[6:], ids=_id)
def test_separable_module_matches_torch(case, acts, fmt, dtype):
    torch.manual_seed(2)
    c = case
    mid_act, act = acts
    mod = pt.SeparableConv2d(
        c["C"],
        10,
        c["k"],
        c["stride"],
        c["padding"],
        c["dilation"],
        depth_multiplier=c["M"],
        mid_activation=mid_act,
        activation=act,
        dtype=dtype,
    )
    x = make_x((2, c["C"], *c["hw"]), dtype, fmt, scale=3.0)
    d, p = mod.depthwise, mod.pointwise
    xo, xr = leaf(x), leaf(x)
    dwr, dbr, pwr, pbr = leaf(d.weight), leaf(d.bias), leaf(p.weight * 3), leaf(p.bias)
    with torch.no_grad():
        p.weight.mul_(3)  # larger outputs, so relu6 clips some
    yo = mod(xo)
    mid = ACT[mid_act](torch_dw(xr, dwr, dbr, c["stride"], c["padding"], c["dilation"]))
    yr = ACT[act](F.conv2d(mid, pwr, pbr))
    check_format(yo, fmt)
    assert_close(yo, yr)
    g = torch.randn_like(yr)
    (yo * g).sum().backward()
    (yr * g).sum().backward()
    check_format(xo.grad, fmt)
    assert_close(xo.grad, xr.grad)
    for ours, ref in ((d.weight, dwr), (d.bias, dbr), (p.weight, pwr), (p.bias, pbr)):
        assert_close(ours.grad, ref.grad)


@pytest.mark.parametrize("fmt", FORMATS)
def test_functional_depthwise_activation_and_no_bias(fmt):
    torch.manual_seed(3)
    x = make_x((2, 6, 8, 8), torch.float64, fmt, scale=5.0)
    w = torch.randn(12, 1, 3, 3, dtype=torch.float64)
    xo, xr, wo, wr = leaf(x), leaf(x), leaf(w), leaf(w)
    yo = pt.depthwise_conv2d(xo, wo, None, stride=2, padding=1, activation="relu6")
    yr = F.relu6(F.conv2d(xr, wr, None, 2, 1, groups=6))
    assert_close(yo, yr)
    g = torch.randn_like(yr)
    (yo * g).sum().backward()
    (yr * g).sum().backward()
    assert_close(xo.grad, xr.grad)
    assert_close(wo.grad, wr.grad)


def test_pointwise_weight_2d_and_gradient_shape():
    x = torch.randn(2, 5, 4, 4, dtype=torch.float64)
    w = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    y = pt.pointwise_conv2d(x, w)
    assert_close(y, F.conv2d(x, w[:, :, None, None]))
    y.sum().backward()
    assert w.grad.shape == (3, 5)


def test_unbatched_input():
    torch.manual_seed(4)
    mod = pt.SeparableConv2d(4, 6, 3, padding=1, dtype=torch.float64)
    x = torch.randn(4, 7, 7, dtype=torch.float64)
    y = mod(x)
    assert y.shape == (6, 7, 7)
    assert_close(y, mod(x[None])[0])


# --------------------------------------------------------------------------
# gradcheck (finite differences, float64)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_gradcheck_depthwise(fmt):
    torch.manual_seed(5)
    x = leaf(make_x((2, 3, 6, 5), torch.float64, fmt, scale=3.0))
    w = leaf(torch.randn(6, 1, 3, 2, dtype=torch.float64))
    b = leaf(torch.randn(6, dtype=torch.float64))
    for act in (None, "relu6"):
        assert torch.autograd.gradcheck(
            lambda x, w, b: pt.depthwise_conv2d(
                x, w, b, stride=(2, 1), padding="same", dilation=(1, 2), activation=act
            ),
            (x, w, b),
        )


@pytest.mark.parametrize("fmt", FORMATS)
def test_gradcheck_pointwise(fmt):
    torch.manual_seed(6)
    x = leaf(make_x((2, 4, 3, 5), torch.float64, fmt, scale=3.0))
    w = leaf(torch.randn(5, 4, 1, 1, dtype=torch.float64))
    b = leaf(torch.randn(5, dtype=torch.float64))
    for act in (None, "relu", "relu6"):
        assert torch.autograd.gradcheck(
            lambda x, w, b: pt.pointwise_conv2d(x, w, b, activation=act), (x, w, b)
        )


@pytest.mark.parametrize("fmt", FORMATS)
def test_gradcheck_separable(fmt):
    torch.manual_seed(7)
    x = leaf(make_x((2, 3, 6, 6), torch.float64, fmt, scale=3.0))
    dw = leaf(torch.randn(6, 1, 3, 3, dtype=torch.float64))
    pw = leaf(torch.randn(4, 6, 1, 1, dtype=torch.float64))
    db = leaf(torch.randn(6, dtype=torch.float64))
    pb = leaf(torch.randn(4, dtype=torch.float64))
    for mid_act, act in ((None, None), ("relu6", "relu"), ("relu", "relu6")):
        assert torch.autograd.gradcheck(
            lambda *a: pt.separable_conv2d(
                *a, stride=2, padding=1, mid_activation=mid_act, activation=act
            ),
            (x, dw, pw, db, pb),
        )


def test_double_backward_gives_the_second_derivative():
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad((pt.depthwise_conv2d(x, w) * v).sum(), x, create_graph=True)
    (gx_ref,) = torch.autograd.grad((F.conv2d(x, w, groups=2) * v).sum(), x, create_graph=True)
    got = torch.autograd.grad((gx**2).sum(), (w, v))
    want = torch.autograd.grad((gx_ref**2).sum(), (w, v))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------
# only the gradients that are needed
# --------------------------------------------------------------------------


@pytest.fixture
def spy(monkeypatch):
    """Records every pydsconv op pydsconv.torch calls: (name, args, kwargs, result)."""
    calls = []
    names = [
        "depthwise_conv2d",
        "pointwise_conv2d",
        "separable_conv2d",
        "depthwise_conv2d_backward",
        "pointwise_conv2d_backward",
    ]
    for name in names:
        real = getattr(pydsconv, name)

        def wrapper(*args, _real=real, _name=name, **kwargs):
            result = _real(*args, **kwargs)
            calls.append((_name, args, kwargs, result))
            return result

        monkeypatch.setattr(pydsconv, name, wrapper)
    # the forward ops call the core directly: recorded as the NumPy op would be
    for op, n_arrays in (("depthwise", 3), ("pointwise", 3), ("separable", 5)):
        real = getattr(pt._core, f"{op}_forward")

        def core_wrapper(*args, _real=real, _op=op, _n=n_arrays):
            result = _real(*args)
            kwargs = {"layout": args[_n + 1], "num_threads": args[-1]}
            calls.append((f"{_op}_conv{args[_n]}d", args[:_n], kwargs, result))
            return result

        monkeypatch.setattr(pt._core, f"{op}_forward", core_wrapper)
    return calls


def _flags(kwargs):
    return (kwargs["input_grad"], kwargs["weight_grad"], kwargs["bias_grad"])


def test_needs_input_grad_flags(spy):
    x = torch.randn(2, 4, 6, 6)
    mod = pt.SeparableConv2d(4, 8, 3, padding=1, mid_activation="relu")
    mod.depthwise.weight.requires_grad_(False)
    mod.pointwise.bias.requires_grad_(False)
    mod(x).sum().backward()  # x needs no grad
    bwd = {name: _flags(kw) for name, _, kw, _ in spy if name.endswith("_backward")}
    # the pointwise stage still passes its input grad down to the depthwise bias
    assert bwd["pointwise_conv2d_backward"] == (True, True, False)
    assert bwd["depthwise_conv2d_backward"] == (False, False, True)
    assert mod.depthwise.weight.grad is None and mod.pointwise.bias.grad is None
    assert mod.depthwise.bias.grad is not None and mod.pointwise.weight.grad is not None

    spy.clear()
    xg = x.clone().requires_grad_(True)
    dw = pt.DepthwiseConv2d(4, 3, bias=False).requires_grad_(False)
    dw(xg).sum().backward()
    (res,) = [r for name, _, _, r in spy if name == "depthwise_conv2d_backward"]
    assert res[1] is None and res[2] is None and res[0] is not None
    assert xg.grad is not None

    spy.clear()  # only the pointwise weights need grads: no depthwise backward at all
    mod.depthwise.bias.requires_grad_(False)
    mod(x).sum().backward()
    assert [n for n, *_ in spy if n.endswith("_backward")] == ["pointwise_conv2d_backward"]


def test_threads_follow_torch(spy, monkeypatch):
    # the forward ops call the core directly (its last argument: the thread count)
    seen = []
    real = pt._core.pointwise_forward
    monkeypatch.setattr(pt._core, "pointwise_forward", lambda *a: seen.append(a[-1]) or real(*a))
    old = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            x = torch.randn(1, 3, 2, 2, requires_grad=True)
            pt.PointwiseConv2d(3, 4)(x).sum().backward()
            assert seen[-1] == n
            assert spy[-1][0] == "pointwise_conv2d_backward" and spy[-1][2]["num_threads"] == n
    finally:
        torch.set_num_threads(old)


# --------------------------------------------------------------------------
# zero-copy and memory formats
# --------------------------------------------------------------------------


def _ptr(a):
    return a.__array_interface__["data"][0]


@pytest.mark.parametrize("fmt", FORMATS)
def test_zero_copy_forward_and_backward(spy, fmt):
    torch.manual_seed(8)
    mod = pt.SeparableConv2d(8, 16, 3, padding=1, mid_activation="relu6")
    x = make_x((2, 8, 10, 10), torch.float32, fmt).requires_grad_(True)
    y = mod(x)
    name, args, kw, res = spy[-1]
    assert name == "separable_conv2d" and kw["layout"] == ("NHWC" if fmt == "CL" else "NCHW")
    xa, dwa, pwa, dba, pba = args
    # the arrays pydsconv got are the tensors' own memory ...
    assert _ptr(xa) == x.data_ptr() and np.shares_memory(xa, x.detach().numpy())
    for a, p in (
        (dwa, mod.depthwise.weight),
        (pwa, mod.pointwise.weight),
        (dba, mod.depthwise.bias),
        (pba, mod.pointwise.bias),
    ):
        assert _ptr(a) == p.data_ptr()
    # ... and the output tensor is the array pydsconv returned
    assert y.data_ptr() == _ptr(res)
    check_format(y, fmt)

    spy.clear()
    g = torch.randn_like(y)  # preserves y's memory format
    y.backward(g)
    calls = {name: (args, res) for name, args, _, res in spy}
    pw_args, pw_res = calls["pointwise_conv2d_backward"]
    assert _ptr(pw_args[0]) == g.data_ptr()  # the upstream gradient, not a copy
    dw_args, dw_res = calls["depthwise_conv2d_backward"]
    assert _ptr(dw_args[1]) == x.data_ptr() and _ptr(dw_args[2]) == mod.depthwise.weight.data_ptr()
    assert x.grad.data_ptr() == _ptr(dw_res[0])  # grad_x handed over, not copied
    check_format(x.grad, fmt)


def test_other_strides_are_copied_once(spy):
    x = torch.randn(2, 6, 9, 9, dtype=torch.float64)
    view = x[:, ::2]  # neither contiguous nor channels_last
    w = torch.randn(3, 1, 3, 3, dtype=torch.float64)
    y = pt.depthwise_conv2d(view, w, padding=1)
    ((_, args, kw, _),) = spy
    assert kw["layout"] == "NCHW" and args[0].flags.c_contiguous
    assert not np.shares_memory(args[0], x.numpy())
    assert y.is_contiguous()
    assert_close(y, F.conv2d(view, w, None, 1, 1, groups=3))


def test_expanded_gradient_is_materialised():
    """loss = y.sum() gives a zero-stride grad_output: made contiguous, correct."""
    x = make_x((2, 4, 5, 5), torch.float64, "CL").requires_grad_(True)
    w = torch.randn(4, 1, 3, 3, dtype=torch.float64)
    pt.depthwise_conv2d(x, w, padding=1).sum().backward()
    xr = leaf(x)
    F.conv2d(xr, w, None, 1, 1, groups=4).sum().backward()
    assert_close(x.grad, xr.grad)
    check_format(x.grad, "CL")


@pytest.mark.parametrize("fmt", FORMATS)
def test_inplace_activation_on_outputs(fmt):
    """nn.ReLU6(inplace=True) right after each layer (as torchvision does):
    the outputs are not views, so autograd allows it; gradients as torch's."""
    torch.manual_seed(15)
    ours = nn.Sequential(
        pt.DepthwiseConv2d(6, 3, padding=1),
        nn.ReLU6(inplace=True),
        pt.PointwiseConv2d(6, 8),
        nn.ReLU6(inplace=True),
        pt.SeparableConv2d(8, 8, 3, padding=1),
        nn.ReLU6(inplace=True),
    )
    ref = nn.Sequential(
        nn.Conv2d(6, 6, 3, padding=1, groups=6),
        nn.ReLU6(inplace=True),
        nn.Conv2d(6, 8, 1),
        nn.ReLU6(inplace=True),
        _TorchSeparable(8, 8, 1, lambda t: t),
        nn.ReLU6(inplace=True),
    )
    ref = ref.to(torch.float64)
    ours = ours.to(torch.float64)
    ours.load_state_dict(ref.state_dict())
    x = make_x((2, 6, 7, 7), torch.float64, fmt, scale=4.0)
    xo, xr = leaf(x), leaf(x)
    yo, yr = ours(xo), ref(xr)
    check_format(yo, fmt)
    assert not yo._is_view()
    assert_close(yo, yr)
    g = torch.randn_like(yr)
    yo.backward(g)
    yr.backward(g)
    assert_close(xo.grad, xr.grad)
    for (_name, po), pr in zip(ours.named_parameters(), ref.parameters()):
        assert_close(po.grad, pr.grad)


def test_memory_format_propagates_through_a_model():
    torch.manual_seed(9)
    net = nn.Sequential(
        pt.DepthwiseConv2d(8, 3, padding=1),
        nn.ReLU6(),
        pt.PointwiseConv2d(8, 16),
        nn.BatchNorm2d(16),
        pt.SeparableConv2d(16, 16, 3, stride=2, padding="same", mid_activation="relu6"),
    )
    net = net.to(memory_format=torch.channels_last)
    outs = []
    for m in net:
        m.register_forward_hook(lambda m, i, o: outs.append(o))
    x = make_x((2, 8, 12, 12), torch.float32, "CL")
    net(x)
    for o in outs:
        check_format(o, "CL")
    outs.clear()
    net(x.contiguous())
    for o in outs:
        check_format(o, "NCHW")


# --------------------------------------------------------------------------
# modules: parameters, initialisation, repr, state dicts
# --------------------------------------------------------------------------


def test_parameters_and_init_match_nn_conv2d():
    torch.manual_seed(10)
    ours = pt.DepthwiseConv2d(6, (3, 5), depth_multiplier=2)
    torch.manual_seed(10)
    ref = nn.Conv2d(6, 12, (3, 5), groups=6)
    assert [n for n, _ in ours.named_parameters()] == ["weight", "bias"]
    assert torch.equal(ours.weight, ref.weight) and torch.equal(ours.bias, ref.bias)

    torch.manual_seed(11)
    ours = pt.SeparableConv2d(6, 10, 3, depth_multiplier=2)
    torch.manual_seed(11)
    ref_dw, ref_pw = nn.Conv2d(6, 12, 3, groups=6), nn.Conv2d(12, 10, 1)
    sd = ours.state_dict()
    assert list(sd) == ["depthwise.weight", "depthwise.bias", "pointwise.weight", "pointwise.bias"]
    for key, ref in (
        ("depthwise.weight", ref_dw.weight),
        ("depthwise.bias", ref_dw.bias),
        ("pointwise.weight", ref_pw.weight),
        ("pointwise.bias", ref_pw.bias),
    ):
        assert torch.equal(sd[key], ref), key

    pw = pt.PointwiseConv2d(6, 4, bias=False, dtype=torch.float64)
    assert pw.weight.shape == (4, 6, 1, 1) and pw.weight.dtype == torch.float64 and pw.bias is None
    pw.load_state_dict(nn.Conv2d(6, 4, 1, bias=False, dtype=torch.float64).state_dict())

    keras_like = pt.SeparableConv2d(4, 8, 3, bias=(False, True))
    assert keras_like.depthwise.bias is None and keras_like.pointwise.bias is not None


def test_reset_parameters_redraws_like_torch():
    ours, ref = pt.PointwiseConv2d(5, 7), nn.Conv2d(5, 7, 1)
    torch.manual_seed(12)
    ours.reset_parameters()
    torch.manual_seed(12)
    ref.reset_parameters()
    assert torch.equal(ours.weight, ref.weight) and torch.equal(ours.bias, ref.bias)
    bound = 1 / math.sqrt(5)
    assert ours.bias.abs().max() <= bound


def test_extra_repr():
    assert repr(pt.DepthwiseConv2d(4, 3, stride=2, padding=1, depth_multiplier=2, bias=False)) == (
        "DepthwiseConv2d(4, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), "
        "depth_multiplier=2, bias=False)"
    )
    assert (
        repr(pt.PointwiseConv2d(8, 16, activation="relu6"))
        == "PointwiseConv2d(8, 16, activation='relu6')"
    )
    r = repr(pt.SeparableConv2d(8, 16, 3, stride=2, padding="same", mid_activation="relu6"))
    assert r.startswith(
        "SeparableConv2d(\n  8, 16, kernel_size=(3, 3), stride=(2, 2), "
        "padding='same', mid_activation='relu6'\n  (depthwise): DepthwiseConv2d("
    )


# --------------------------------------------------------------------------
# a few training steps: same losses as the same model in plain PyTorch
# --------------------------------------------------------------------------


class _TorchSeparable(nn.Module):
    """The plain-torch twin of pt.SeparableConv2d (same state-dict keys)."""

    def __init__(self, cin, cout, stride, mid_act):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin)
        self.pointwise = nn.Conv2d(cin, cout, 1)
        self.mid_act = mid_act

    def forward(self, x):
        return self.pointwise(self.mid_act(self.depthwise(x)))


def _net(ours, dtype):
    def dw(c, stride, m=1):
        if ours:
            return pt.DepthwiseConv2d(c, 3, stride, 1, depth_multiplier=m)
        return nn.Conv2d(c, c * m, 3, stride, 1, groups=c)

    def pw(cin, cout):
        return pt.PointwiseConv2d(cin, cout) if ours else nn.Conv2d(cin, cout, 1)

    def sep(cin, cout, stride):
        if ours:
            return pt.SeparableConv2d(cin, cout, 3, stride, 1, mid_activation="relu6")
        return _TorchSeparable(cin, cout, stride, F.relu6)

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(inplace=True),
        dw(16, 1),
        nn.BatchNorm2d(16),
        nn.ReLU6(inplace=True),  # separable block 1
        pw(16, 32),
        nn.BatchNorm2d(32),
        nn.ReLU6(inplace=True),
        dw(32, 2, m=2),
        nn.BatchNorm2d(64),
        nn.ReLU6(inplace=True),  # block 2, M = 2
        pw(64, 64),
        nn.BatchNorm2d(64),
        nn.ReLU6(inplace=True),
        sep(64, 64, 1),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),  # block 3, fused
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    ).to(dtype)


def _train(net, fmt, dtype, steps=5):
    gen = torch.Generator().manual_seed(13)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    losses = []
    for _ in range(steps):
        x = torch.randn(8, 3, 32, 32, generator=gen, dtype=dtype)
        x = x.contiguous(memory_format=FORMATS[fmt])
        target = torch.randint(0, 10, (8,), generator=gen)
        opt.zero_grad()
        loss = F.cross_entropy(net(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_training_steps_match_pure_torch(fmt, dtype):
    torch.manual_seed(14)
    ref = _net(False, dtype)
    ours = _net(True, dtype)
    ours.load_state_dict(ref.state_dict())  # identical initial weights (same keys)
    if fmt == "CL":
        ref = ref.to(memory_format=torch.channels_last)
        ours = ours.to(memory_format=torch.channels_last)
    want = _train(ref, fmt, dtype)
    got = _train(ours, fmt, dtype)
    rtol = 1e-9 if dtype == torch.float64 else 1e-4
    np.testing.assert_allclose(got, want, rtol=rtol)
    assert want[-1] < want[0]  # it does learn (the comparison is not vacuous)
    ref_sd = ref.state_dict()
    for key, value in ours.state_dict().items():
        if value.dtype.is_floating_point:
            torch.testing.assert_close(value, ref_sd[key], rtol=rtol * 10, atol=rtol * 10)


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


def test_errors_device_dtype_and_shapes():
    w = torch.randn(4, 1, 3, 3)
    with pytest.raises(ValueError, match="CPU"):
        pt.depthwise_conv2d(torch.randn(1, 4, 5, 5, device="meta"), w)
    with pytest.raises(TypeError, match="float32 or float64"):
        pt.depthwise_conv2d(torch.ones(1, 4, 5, 5, dtype=torch.int32), w)
    with pytest.raises(TypeError, match="float32 or float64"):
        pt.depthwise_conv2d(torch.randn(1, 4, 5, 5, dtype=torch.float16), w)
    with pytest.raises(TypeError, match="share one dtype"):
        pt.depthwise_conv2d(torch.randn(1, 4, 5, 5, dtype=torch.float64), w)
    with pytest.raises(TypeError, match="torch.Tensor"):
        pt.depthwise_conv2d(np.zeros((1, 4, 5, 5), np.float32), w)
    with pytest.raises(TypeError, match="dense"):
        pt.pointwise_conv2d(torch.randn(1, 4, 5, 5), torch.randn(2, 4).to_sparse())
    with pytest.raises(ValueError, match="4-D"):
        pt.depthwise_conv2d(torch.randn(1, 1, 4, 5, 5), w)
    with pytest.raises(ValueError, match="activation"):
        pt.pointwise_conv2d(torch.randn(1, 4, 5, 5), torch.randn(2, 4), activation="gelu")
    # shape errors come from pydsconv, naming the argument
    with pytest.raises(ValueError, match="weight"):
        pt.depthwise_conv2d(torch.randn(1, 3, 5, 5), w)
    with pytest.raises(ValueError):
        pt.DepthwiseConv2d(4, 7)(torch.randn(1, 4, 5, 5))  # kernel larger than the input
    mod = pt.SeparableConv2d(4, 8, 3)
    with pytest.raises(TypeError, match=r"\.double\(\)|share one dtype"):
        mod(torch.randn(1, 4, 5, 5, dtype=torch.float64))


def test_errors_module_arguments():
    with pytest.raises(ValueError, match="padding_mode"):
        pt.DepthwiseConv2d(4, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="CPU"):
        pt.PointwiseConv2d(4, 3, device="meta")
    with pytest.raises(TypeError, match="dtype"):
        pt.PointwiseConv2d(4, 3, dtype=torch.float16)
    with pytest.raises(ValueError, match="padding"):
        pt.DepthwiseConv2d(4, 3, padding="full")
    with pytest.raises(ValueError, match="padding"):
        pt.DepthwiseConv2d(4, 3, padding=-1)
    with pytest.raises(ValueError, match="stride"):
        pt.DepthwiseConv2d(4, 3, stride=0)
    with pytest.raises(ValueError, match="depth_multiplier"):
        pt.DepthwiseConv2d(4, 3, depth_multiplier=0)
    with pytest.raises(ValueError, match="mid_activation"):
        pt.SeparableConv2d(4, 8, 3, mid_activation="tanh")


def test_import_without_torch_is_a_clear_error():
    r = run_python(
        "import sys\n"
        "sys.modules['torch'] = None  # makes `import torch` fail, as without PyTorch\n"
        "import pydsconv\n"
        "try:\n"
        "    import pydsconv.torch\n"
        "except ImportError as e:\n"
        "    print('IMPORTERROR', e)\n"
    )
    assert r.returncode == 0, r.stderr
    assert "IMPORTERROR pydsconv.torch needs PyTorch" in r.stdout
    assert "pip install torch" in r.stdout


def test_pydsconv_does_not_import_torch():
    r = run_python("import sys, pydsconv\nprint('torch' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_import_torch_inside_finds_pytorch():
    """Named pydsconv/torch.py, the module's own `import torch` is PyTorch; if the
    pydsconv/ folder itself is put on sys.path, the shadowing is reported clearly."""
    r = run_python(
        "import pydsconv.torch as pt, torch\nprint(pt.torch is torch, hasattr(torch, 'autograd'))"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True"]
    r = run_python(
        "import os, sys, pydsconv\n"
        "sys.path.insert(0, os.path.dirname(pydsconv.__file__))\n"
        "try:\n"
        "    import torch\n"
        "except ImportError as e:\n"
        "    print('IMPORTERROR', e)\n"
    )
    assert r.returncode == 0, r.stderr
    assert "instead of PyTorch" in r.stdout
