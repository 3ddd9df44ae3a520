"""pydsconv.torch 1-D layers vs ``nn.Conv1d`` (groups=C) and gradcheck.

Expected values come from PyTorch (``F.conv1d``, ``F.pad`` for "causal" and
TensorFlow "same" at stride > 1) or from gradcheck's finite differences.
"""

import pytest

torch = pytest.importorskip("torch")

import pydsconv.torch as pt  # noqa: E402

F = torch.nn.functional


def _pads(padding, length, k, s, d):
    """(left, right) for F.pad, or None where F.conv1d takes ``padding`` as is."""
    if padding == "causal":
        return d * (k - 1), 0
    if padding == "same" and s != 1:
        out = -(-length // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - length, 0)
        return total // 2, total - total // 2
    if isinstance(padding, tuple) and len(padding) == 2:
        return padding
    return None


def torch_dw1(x, w, b, s, padding, d):
    pads = _pads(padding, x.shape[-1], w.shape[-1], s, d)
    if pads is not None:
        x, padding = F.pad(x, pads), 0
    return F.conv1d(x, w, b, s, padding, d, groups=x.shape[1])


def close(a, b):
    tol = dict(rtol=1e-10, atol=1e-11) if a.dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    assert a.shape == b.shape and a.dtype == b.dtype
    torch.testing.assert_close(a, b, **tol)


CASES = [  # C, M, k, stride, padding, dilation, L
    (3, 1, 3, 1, 0, 1, 9),
    (4, 2, 5, 2, 2, 1, 13),
    (2, 1, 3, 1, "same", 2, 8),
    (3, 1, 4, 2, "same", 1, 11),
    (3, 3, 3, 1, "causal", 2, 10),
    (2, 1, 3, 1, "valid", 1, 7),
    (2, 1, 3, 2, (2, 1), 1, 9),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES)
def test_depthwise_matches_conv1d(case, dtype):
    C, M, k, s, p, d, L = case
    torch.manual_seed(0)
    layer = pt.DepthwiseConv1d(C, k, s, p, d, depth_multiplier=M, dtype=dtype)
    x = torch.randn(2, C, L, dtype=dtype, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    w2 = layer.weight.detach().clone().requires_grad_()
    b2 = layer.bias.detach().clone().requires_grad_()
    y, y2 = layer(x), torch_dw1(x2, w2, b2, s, p, d)
    close(y, y2)
    g = torch.randn_like(y)
    y.backward(g)
    y2.backward(g)
    close(x.grad, x2.grad)
    close(layer.weight.grad, w2.grad)
    close(layer.bias.grad, b2.grad)


@pytest.mark.parametrize("case", CASES)
def test_separable_gradcheck(case):
    C, M, k, s, p, d, L = case
    torch.manual_seed(1)
    opts = dict(dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, C, L, **opts)
    dw, db = torch.randn(C * M, 1, k, **opts), torch.randn(C * M, **opts)
    pw, pb = torch.randn(5, C * M, 1, **opts), torch.randn(5, **opts)
    args = (x, dw, pw, db, pb)

    def f(x, dw, pw, db, pb):
        return pt.separable_conv1d(x, dw, pw, db, pb, s, p, d, "relu", None)

    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradcheck(
        lambda x, w, b: pt.depthwise_conv1d(x, w, b, s, p, d), (x, dw, db)
    )
    ref = F.conv1d(F.relu(torch_dw1(x, dw, db, s, p, d)), pw, pb)
    close(f(*args), ref)


def test_pointwise_matches_conv1d_and_gradcheck():
    torch.manual_seed(2)
    opts = dict(dtype=torch.float64, requires_grad=True)
    x, w, b = torch.randn(3, 4, 6, **opts), torch.randn(5, 4, 1, **opts), torch.randn(5, **opts)
    close(pt.pointwise_conv1d(x, w, b, "relu6"), F.relu6(F.conv1d(x, w, b)))
    assert torch.autograd.gradcheck(lambda *a: pt.pointwise_conv1d(*a), (x, w, b))
    layer = pt.PointwiseConv1d(4, 5, dtype=torch.float64)
    ref = torch.nn.Conv1d(4, 5, 1, dtype=torch.float64)
    ref.load_state_dict(layer.state_dict())
    close(layer(x), ref(x))


def test_separable_layer_state_dict_and_unbatched():
    torch.manual_seed(3)
    layer = pt.SeparableConv1d(4, 6, 3, padding="causal", mid_activation="relu6")
    assert set(layer.state_dict()) == {
        "depthwise.weight",
        "depthwise.bias",
        "pointwise.weight",
        "pointwise.bias",
    }
    dw = torch.nn.Conv1d(4, 4, 3, groups=4)
    pw = torch.nn.Conv1d(4, 6, 1)
    dw.load_state_dict(layer.depthwise.state_dict())
    pw.load_state_dict(layer.pointwise.state_dict())
    x = torch.randn(4, 12)  # unbatched (C, L)
    ref = pw(F.relu6(dw(F.pad(x, (2, 0)))))
    close(layer(x), ref)
    # causal: output step t does not depend on later inputs
    x2 = x.clone()
    x2[:, 7:] += 1.0
    close(layer(x2)[:, :7], layer(x)[:, :7])


def test_same_init_as_conv1d_and_repr():
    torch.manual_seed(4)
    a = pt.DepthwiseConv1d(3, 5, depth_multiplier=2, padding="same")
    torch.manual_seed(4)
    b = torch.nn.Conv1d(3, 6, 5, groups=3, padding="same")
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert "padding='same'" in repr(a) and "depth_multiplier=2" in repr(a)


def test_refusals():
    with pytest.raises(ValueError, match="padding_mode"):
        pt.DepthwiseConv1d(3, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="3-D"):
        pt.depthwise_conv1d(torch.randn(1, 2, 3, 4), torch.randn(2, 1, 3))
    with pytest.raises(TypeError, match="dtype"):
        pt.depthwise_conv1d(torch.randn(1, 2, 5), torch.randn(2, 1, 3, dtype=torch.float64))


def test_noncontiguous_input():
    torch.manual_seed(5)
    layer = pt.DepthwiseConv1d(3, 3, padding=1)
    x = torch.randn(2, 9, 3).transpose(1, 2)
    close(layer(x), torch_dw1(x, layer.weight, layer.bias, 1, 1, 1).detach())
