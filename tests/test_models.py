"""Tests of the mobile-network blocks and models (pydsconv/nn/blocks.py,
MobileNetV2 / MobileNetV3Large / EfficientNetB0 in pydsconv/nn/models.py).

Oracles are independent of our module code: the networks are rebuilt from
their published architecture tables with torch.nn.functional, reading the
weights by torchvision's state-dict keys; gradients of the blocks are
checked against torch autograd.  Parameter counts are torchvision's
published ones.
"""

import os

import numpy as np
import pytest
from conftest import rand, to_nhwc

from pydsconv import nn
from pydsconv.nn import activation as act_mod

torch = pytest.importorskip("torch")  # the oracle: torch.nn.functional
F = torch.nn.functional

DTYPES = [np.float32, np.float64]
LAYOUTS = ["NCHW", "NHWC"]
# The peers' MobileNetV2 fixture (torchvision keys): $PYDSCONV_PEERS, else
# the project's shared/peers next to the checkout or at /work/shared/peers.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PEER_DIRS = [os.environ.get("PYDSCONV_PEERS", ""), os.path.join(_ROOT, "..", "shared", "peers")]
PEERS = next(
    (
        os.path.join(d, "mnv2_weights.npz")
        for d in [*_PEER_DIRS, "/work/shared/peers"]
        if d and os.path.exists(os.path.join(d, "mnv2_weights.npz"))
    ),
    None,
)
needs_peers = pytest.mark.skipif(
    PEERS is None, reason="mnv2_weights.npz not found (set PYDSCONV_PEERS to shared/peers)"
)


# torch.nn.functional versions of the activations, by pydsconv class name
TORCH_ACT = {
    "ReLU": F.relu,
    "ReLU6": F.relu6,
    "Hardswish": F.hardswish,
    "Hardsigmoid": F.hardsigmoid,
    "SiLU": F.silu,
    "Sigmoid": torch.sigmoid,
}


def _randomise_bn(model, rng):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean[:] = rng.uniform(-0.1, 0.1, c)
            m.running_var[:] = rng.uniform(0.5, 1.5, c)
            m.weight.data[:] = rng.uniform(0.5, 1.5, c)
            m.bias.data[:] = rng.uniform(-0.1, 0.1, c)
    return model


def _t(a):
    return torch.from_numpy(np.asarray(a, np.float64))


def _nchw(y, layout):
    return y if layout == "NCHW" or y.ndim != 4 else np.ascontiguousarray(y.transpose(0, 3, 1, 2))


def _close(actual, expected, dtype):
    scale = float(np.max(np.abs(expected))) or 1.0
    tol = 1e-9 if np.dtype(dtype) == np.float64 else 2e-4
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


# -- the torch.nn.functional oracles, from the architecture tables --------------


def _cna(sd, key, x, stride=1, groups=1, act=None, eps=1e-5):
    """conv (no bias, padding (k-1)//2) -> BN (eval) -> act, keys key.0 / key.1."""
    w = sd[f"{key}.0.weight"]
    x = F.conv2d(x, w, stride=stride, padding=(w.shape[-1] - 1) // 2, groups=groups)
    x = _bn(sd, f"{key}.1", x, eps)
    return x if act is None else act(x)


def _bn(sd, key, x, eps):
    return F.batch_norm(
        x,
        sd[f"{key}.running_mean"],
        sd[f"{key}.running_var"],
        sd[f"{key}.weight"],
        sd[f"{key}.bias"],
        False,
        0.0,
        eps,
    )


def _se(sd, key, x, act, gate):
    s = x.mean(dim=(2, 3), keepdim=True)
    s = act(F.conv2d(s, sd[f"{key}.fc1.weight"], sd[f"{key}.fc1.bias"]))
    return x * gate(F.conv2d(s, sd[f"{key}.fc2.weight"], sd[f"{key}.fc2.bias"]))


def _divisible(v, d=8):
    new = max(d, int(v + d / 2) // d * d)
    return new + d if new < 0.9 * v else new


def torch_mobilenet_v2(sd, x):
    setting = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1)]  # fmt: skip
    x = _cna(sd, "features.0", x, stride=2, act=F.relu6)
    cin, i = 32, 1
    for t, c, n, s in setting:
        for r in range(n):
            stride = s if r == 0 else 1
            hidden = cin * t
            k = f"features.{i}.conv"
            y, j = x, 0
            if t != 1:
                y = _cna(sd, f"{k}.0", y, act=F.relu6)
                j = 1
            y = _cna(sd, f"{k}.{j}", y, stride=stride, groups=hidden, act=F.relu6)
            y = F.conv2d(y, sd[f"{k}.{j + 1}.weight"])
            y = _bn(sd, f"{k}.{j + 2}", y, 1e-5)
            x = x + y if stride == 1 and cin == c else y
            cin, i = c, i + 1
    x = _cna(sd, f"features.{i}", x, act=F.relu6)
    x = x.mean(dim=(2, 3))
    return F.linear(x, sd["classifier.1.weight"], sd["classifier.1.bias"])


def torch_mobilenet_v3_large(sd, x):
    setting = [
        (16, 3, 16, 16, False, "RE", 1), (16, 3, 64, 24, False, "RE", 2),
        (24, 3, 72, 24, False, "RE", 1), (24, 5, 72, 40, True, "RE", 2),
        (40, 5, 120, 40, True, "RE", 1), (40, 5, 120, 40, True, "RE", 1),
        (40, 3, 240, 80, False, "HS", 2), (80, 3, 200, 80, False, "HS", 1),
        (80, 3, 184, 80, False, "HS", 1), (80, 3, 184, 80, False, "HS", 1),
        (80, 3, 480, 112, True, "HS", 1), (112, 3, 672, 112, True, "HS", 1),
        (112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1),
        (160, 5, 960, 160, True, "HS", 1),
    ]  # fmt: skip
    eps = 1e-3
    x = _cna(sd, "features.0", x, stride=2, act=F.hardswish, eps=eps)
    for i, (cin, _k, exp, cout, se, a, s) in enumerate(setting, 1):
        act = F.hardswish if a == "HS" else F.relu
        key, y, j = f"features.{i}.block", x, 0
        if exp != cin:
            y = _cna(sd, f"{key}.0", y, act=act, eps=eps)
            j = 1
        y = _cna(sd, f"{key}.{j}", y, stride=s, groups=exp, act=act, eps=eps)
        if se:
            j += 1
            y = _se(sd, f"{key}.{j}", y, F.relu, F.hardsigmoid)
        y = _cna(sd, f"{key}.{j + 1}", y, eps=eps)
        x = x + y if s == 1 and cin == cout else y
    x = _cna(sd, "features.16", x, act=F.hardswish, eps=eps)
    x = x.mean(dim=(2, 3))
    x = F.hardswish(F.linear(x, sd["classifier.0.weight"], sd["classifier.0.bias"]))
    return F.linear(x, sd["classifier.3.weight"], sd["classifier.3.bias"])


def torch_efficientnet_b0(sd, x):
    setting = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
               (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
               (6, 3, 1, 192, 320, 1)]  # fmt: skip
    x = _cna(sd, "features.0", x, stride=2, act=F.silu)
    for stage, (t, _k, s, cin, cout, n) in enumerate(setting, 1):
        for r in range(n):
            c = cin if r == 0 else cout
            stride = s if r == 0 else 1
            exp = _divisible(c * t)
            key, y, j = f"features.{stage}.{r}.block", x, 0
            if exp != c:
                y = _cna(sd, f"{key}.0", y, act=F.silu)
                j = 1
            y = _cna(sd, f"{key}.{j}", y, stride=stride, groups=exp, act=F.silu)
            y = _se(sd, f"{key}.{j + 1}", y, F.silu, torch.sigmoid)
            y = _cna(sd, f"{key}.{j + 2}", y)
            x = x + y if stride == 1 and c == cout else y
    x = _cna(sd, "features.8", x, act=F.silu)
    x = x.mean(dim=(2, 3))
    return F.linear(x, sd["classifier.1.weight"], sd["classifier.1.bias"])


MODELS = {
    "MobileNetV2": (lambda **kw: nn.MobileNetV2(**kw), torch_mobilenet_v2, 3_504_872),
    "MobileNetV3Large": (
        lambda **kw: nn.MobileNetV3Large(**kw),
        torch_mobilenet_v3_large,
        5_483_032,
    ),
    "EfficientNetB0": (
        lambda **kw: nn.EfficientNetB0(**kw),
        torch_efficientnet_b0,
        5_288_548,
    ),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_parameter_count_is_torchvisions(name):
    build, _, count = MODELS[name]
    assert build(rng=0).num_parameters() == count


@needs_peers
def test_mobilenet_v2_state_dict_keys_load_the_peer_fixture():
    data = dict(np.load(PEERS))
    data.pop("_seed")
    model = nn.MobileNetV2(rng=0)
    assert list(model.state_dict()) == list(data)
    missing, unexpected = model.load_state_dict(data)
    assert missing == [] and unexpected == []
    np.testing.assert_array_equal(model.features[1].conv[0][0].weight.data, data[
        "features.1.conv.0.0.weight"])  # fmt: skip
    np.testing.assert_array_equal(model.classifier[1].bias.data, data["classifier.1.bias"])


@pytest.mark.slow
@needs_peers
def test_mobilenet_v2_peer_weights_match_torch_at_224():
    data = dict(np.load(PEERS))
    data.pop("_seed")
    model = nn.MobileNetV2(rng=0).eval()
    model.load_state_dict(data)
    x = np.random.default_rng(5).standard_normal((1, 3, 224, 224)).astype(np.float32)
    want = torch_mobilenet_v2({k: _t(v) for k, v in data.items()}, _t(x)).numpy()
    _close(model(x), want.astype(np.float32), np.float32)
    _close(nn.compile(model, x.shape)(x), want.astype(np.float32), np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(MODELS))
def test_eval_forward_matches_torch_functional(name, layout, dtype, rng):
    build, oracle, _ = MODELS[name]
    model = _randomise_bn(build(num_classes=10, layout=layout, dtype=dtype, rng=1), rng).eval()
    x = rand(rng, (1, 3, 32, 32), dtype)
    y = model(to_nhwc(x) if layout == "NHWC" else x)
    assert y.shape == (1, 10) and y.dtype == dtype
    sd = {k: _t(v) for k, v in model.state_dict().items() if v.dtype.kind == "f"}
    want = oracle(sd, _t(x)).numpy()
    _close(y, want.astype(dtype), dtype)


@pytest.mark.parametrize("name", list(MODELS))
def test_training_step_decreases_the_loss(name, rng):
    build, _, _ = MODELS[name]
    extra = {"stochastic_depth": 0.0} if name == "EfficientNetB0" else {}
    model = build(num_classes=4, dropout=0.0, rng=3, **extra)
    x = rand(rng, (4, 3, 32, 32), np.float32)
    y = np.arange(4) % 4
    crit = nn.CrossEntropyLoss()
    opt = nn.SGD(model.parameters(), lr=0.01)
    losses = []
    for _ in range(4):
        loss = crit(model(x), y)
        losses.append(float(loss))
        opt.zero_grad()
        model.backward(crit.backward(), input_grad=False)
        opt.step()
    assert losses[-1] < losses[0], losses
    assert all(p.grad is not None for p in model.parameters())


# -- blocks: forward and gradients against torch autograd -----------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("gate", ["ReLU6", "Hardsigmoid", "Sigmoid"])
@pytest.mark.parametrize(
    "cin, cout, exp, stride, se, project_module",
    [
        (8, 8, 8, 1, None, False),  # no expansion, residual
        (8, 8, 24, 1, 4, True),  # expansion, SE, residual
        (8, 12, 24, 2, 8, True),  # stride 2, no residual
        (6, 10, 18, 1, None, False),  # channels change, no residual
    ],
)
def test_inverted_residual_gradients_match_torch(
    cin, cout, exp, stride, se, project_module, gate, layout, rng
):
    gate_cls = getattr(act_mod, gate)
    block = nn.InvertedResidual(
        cin,
        cout,
        exp,
        stride,
        3,
        nn.ReLU6,
        se_channels=se,
        se_gate=gate_cls,
        project_activation_module=project_module,
        body_name="block" if project_module else "conv",
        layout=layout,
        dtype=np.float64,
        rng=4,
    )
    for m in block.modules():  # random affine BN; training-mode statistics
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data[:] = rng.uniform(0.5, 1.5, m.num_features)
            m.bias.data[:] = rng.uniform(-0.5, 0.5, m.num_features)
    x = rng.standard_normal((3, cin, 7, 7))
    gy = rng.standard_normal((3, cout, (7 - 1) // stride + 1, (7 - 1) // stride + 1))
    xin = to_nhwc(x) if layout == "NHWC" else x
    y = block(xin)
    gx = block.backward(to_nhwc(gy) if layout == "NHWC" else gy)

    params = {k: _t(v.data).requires_grad_() for k, v in block.named_parameters()}
    tx = _t(x).requires_grad_()
    sd = dict(params)

    def bn_train(key, z, eps=1e-5):  # training-mode BN (batch statistics)
        return F.batch_norm(z, None, None, sd[f"{key}.weight"], sd[f"{key}.bias"], True, 0.0, eps)

    body = block._body_name
    z, j = tx, 0
    if exp != cin:
        z = F.relu6(bn_train(f"{body}.0.1", F.conv2d(z, sd[f"{body}.0.0.weight"])))
        j = 1
    z = F.conv2d(z, sd[f"{body}.{j}.0.weight"], stride=stride, padding=1, groups=exp)
    z = F.relu6(bn_train(f"{body}.{j}.1", z))
    if se is not None:
        j += 1
        z = _se(sd, f"{body}.{j}", z, F.relu, TORCH_ACT[gate])
    if project_module:
        z = bn_train(f"{body}.{j + 1}.1", F.conv2d(z, sd[f"{body}.{j + 1}.0.weight"]))
    else:
        z = bn_train(f"{body}.{j + 2}", F.conv2d(z, sd[f"{body}.{j + 1}.weight"]))
    if stride == 1 and cin == cout:
        z = z + tx
    np.testing.assert_allclose(_nchw(y, layout), z.detach().numpy(), rtol=1e-9, atol=1e-9)
    z.backward(_t(gy))
    np.testing.assert_allclose(_nchw(gx, layout), tx.grad.numpy(), rtol=1e-7, atol=1e-7)
    for k, p in block.named_parameters():
        np.testing.assert_allclose(p.grad, params[k].grad.numpy(), rtol=1e-7, atol=1e-7, err_msg=k)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_squeeze_excitation_gradients_match_torch(layout, rng):
    se = nn.SqueezeExcitation(10, 4, nn.ReLU, nn.ReLU6, layout=layout, dtype=np.float64, rng=2)
    x = rng.standard_normal((2, 10, 5, 6)) * 3
    gy = rng.standard_normal(x.shape)
    y = se(to_nhwc(x) if layout == "NHWC" else x)
    gx = se.backward(to_nhwc(gy) if layout == "NHWC" else gy)
    sd = {k: _t(v.data).requires_grad_() for k, v in se.named_parameters()}
    tx = _t(x).requires_grad_()
    s = tx.mean(dim=(2, 3), keepdim=True)
    s = F.relu(F.conv2d(s, sd["fc1.weight"], sd["fc1.bias"]))
    z = tx * F.relu6(F.conv2d(s, sd["fc2.weight"], sd["fc2.bias"]))
    np.testing.assert_allclose(_nchw(y, layout), z.detach().numpy(), rtol=1e-10)
    z.backward(_t(gy))
    np.testing.assert_allclose(_nchw(gx, layout), tx.grad.numpy(), rtol=1e-8, atol=1e-10)
    for k, p in se.named_parameters():
        np.testing.assert_allclose(p.grad, sd[k].grad.numpy(), rtol=1e-8, atol=1e-10, err_msg=k)


def test_stochastic_depth_trains_and_is_identity_in_eval(rng):
    block = nn.InvertedResidual(
        8,
        8,
        16,
        1,
        3,
        nn.ReLU6,
        stochastic_depth=0.5,
        dtype=np.float64,
        rng=np.random.default_rng(0),
    )
    x = rng.standard_normal((64, 8, 4, 4))
    y = block(x)
    dropped = [np.array_equal(y[i], x[i]) for i in range(64)]
    assert 10 < sum(dropped) < 54  # about half the images skip the body
    g = rng.standard_normal(y.shape)
    twin = block.copy()  # with the forward caches
    gx = block.backward(g)
    mask = np.array([0.0 if d else 2.0 for d in dropped]).reshape(64, 1, 1, 1)
    np.testing.assert_array_equal(gx, twin.body.backward(g * mask) + g)
    block.eval()
    ref = nn.InvertedResidual(8, 8, 16, 1, 3, nn.ReLU6, dtype=np.float64, rng=0)
    ref.load_state_dict(block.state_dict())
    np.testing.assert_array_equal(block(x), ref.eval()(x))


def test_make_divisible_is_torchvisions():
    assert [nn.make_divisible(v) for v in (32, 24 * 0.75, 3, 100, 1280 * 1.4, 18)] == [
        32, 24, 8, 104, 1792, 24]  # fmt: skip


def test_bad_block_arguments():
    with pytest.raises(ValueError, match="groups"):
        nn.ConvNormActivation(8, 16, 3, groups=8)
    with pytest.raises(TypeError, match="activation"):
        nn.ConvNormActivation(8, 16, 3, activation="relu")
    with pytest.raises(ValueError, match="body_name"):
        nn.InvertedResidual(8, 8, 16, body_name="layers")
    block = nn.InvertedResidual(8, 8, 16)
    with pytest.raises(ValueError, match="channels"):
        block(np.zeros((1, 4, 5, 5), np.float32))
