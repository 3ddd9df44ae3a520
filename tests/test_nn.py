"""pydsconv.nn: every layer's gradients by finite differences (float64, both
layouts), layers against the NumPy reference / a naive convolution, models'
parameter counts against pydsconv.cost, and (where installed) PyTorch."""

import math

import numpy as np
import pytest

import pydsconv
from pydsconv import nn, reference

LAYOUTS = ["NCHW", "NHWC"]


def nchw_shape(n, c, h, w, layout):
    return (n, c, h, w) if layout == "NCHW" else (n, h, w, c)


def numeric_grad(f, arr, coords, eps=1e-6):
    """Central differences of the scalar f() w.r.t. arr at the given flat coordinates."""
    flat = arr.reshape(-1)
    out = []
    for i in coords:
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        out.append((up - down) / (2 * eps))
    return np.array(out)


def coords_of(arr, rng, k=24):
    n = arr.size
    return np.arange(n) if n <= k else rng.choice(n, size=k, replace=False)


def check_grads(layer, x, rng, rtol=1e-6, atol=1e-8):
    """Analytic gradients (input and every trainable parameter) vs central differences
    of L = sum(layer(x) * g) for a fixed random g."""
    y = layer(x)
    g = rng.standard_normal(y.shape)
    layer.zero_grad()
    layer(x)
    gx = layer.backward(g.copy())

    def loss():
        return float(np.sum(layer(x) * g))

    c = coords_of(x, rng)
    np.testing.assert_allclose(gx.reshape(-1)[c], numeric_grad(loss, x, c), rtol=rtol, atol=atol)
    for name, p in layer.named_parameters():
        assert p.grad is not None, name
        assert p.grad.shape == p.shape, name
        c = coords_of(p.data, rng)
        np.testing.assert_allclose(
            p.grad.reshape(-1)[c], numeric_grad(loss, p.data, c), rtol=rtol, atol=atol, err_msg=name
        )


def naive_conv2d(x, w, b, stride, pad):
    """Plain NCHW cross-correlation with symmetric zero padding (the test's own oracle)."""
    n, c, h, wd = x.shape
    co, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, co, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out + (0 if b is None else b.reshape(1, -1, 1, 1))


# -- gradients by finite differences -----------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "stride,padding,dilation,act", [(1, 1, 1, None), (2, "same", 1, "relu"), (1, 2, 2, "relu6")]
)
def test_conv2d_grads(layout, stride, padding, dilation, act, rng):
    layer = nn.Conv2d(
        3,
        4,
        3,
        stride=stride,
        padding=padding,
        dilation=dilation,
        activation=act,
        layout=layout,
        dtype=np.float64,
        rng=1,
    )
    check_grads(layer, rng.standard_normal(nchw_shape(2, 3, 7, 6, layout)), rng)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mult,stride,act", [(1, 1, None), (2, 2, "relu6")])
def test_depthwise_grads(layout, mult, stride, act, rng):
    layer = nn.DepthwiseConv2d(
        3,
        3,
        stride=stride,
        padding=1,
        multiplier=mult,
        activation=act,
        layout=layout,
        dtype=np.float64,
        rng=2,
    )
    check_grads(layer, rng.standard_normal(nchw_shape(2, 3, 6, 5, layout)), rng)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("act", [None, "relu"])
def test_pointwise_grads(layout, act, rng):
    layer = nn.PointwiseConv2d(5, 3, activation=act, layout=layout, dtype=np.float64, rng=3)
    check_grads(layer, rng.standard_normal(nchw_shape(2, 5, 3, 4, layout)), rng)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("training", [True, False])
def test_separable_grads(layout, training, rng):
    layer = nn.SeparableConv2d(
        3,
        4,
        3,
        stride=2,
        padding="same",
        multiplier=2,
        mid_activation="relu6",
        activation="relu",
        layout=layout,
        dtype=np.float64,
        rng=4,
    )
    layer.train(training)  # eval: fused forward, backward recomputes the intermediate
    check_grads(layer, rng.standard_normal(nchw_shape(2, 3, 6, 6, layout)), rng)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_grads(layout, training, rng):
    bn = nn.BatchNorm2d(3, layout=layout, dtype=np.float64)
    bn.weight.data[:] = rng.uniform(0.5, 2, 3)
    bn.bias.data[:] = rng.standard_normal(3)
    bn.running_mean[:] = rng.standard_normal(3)
    bn.running_var[:] = rng.uniform(0.5, 2, 3)
    bn.train(training)
    check_grads(bn, rng.standard_normal(nchw_shape(4, 3, 3, 2, layout)) * 2 + 1, rng)


@pytest.mark.parametrize("cls", [nn.ReLU, nn.ReLU6])
def test_activation_grads(cls, rng):
    check_grads(cls(), rng.uniform(-3, 9, (3, 4, 5)), rng)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pool_flatten_linear_grads(layout, rng):
    check_grads(
        nn.GlobalAvgPool2d(layout), rng.standard_normal(nchw_shape(2, 3, 4, 5, layout)), rng
    )
    check_grads(nn.Flatten(), rng.standard_normal((2, 3, 4)), rng)
    check_grads(nn.Linear(6, 4, dtype=np.float64, rng=5), rng.standard_normal((3, 6)), rng)


def test_dropout_mask_and_grad(rng):
    d = nn.Dropout(0.4, rng=0)
    x = rng.uniform(1, 2, (50, 40))
    y = d(x)
    kept = y != 0
    assert 0.5 < kept.mean() < 0.7
    np.testing.assert_allclose(y[kept], x[kept] / 0.6)
    g = rng.standard_normal(x.shape)
    np.testing.assert_allclose(d.backward(g), np.where(kept, g / 0.6, 0))
    d.eval()
    assert d(x) is x


def test_cross_entropy_value_grad_and_stability(rng):
    logits = rng.standard_normal((5, 4))
    target = np.array([0, 3, 1, 1, 2])
    crit = nn.CrossEntropyLoss()
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert crit(logits, target) == pytest.approx(-np.mean(np.log(p[np.arange(5), target])))
    g = crit.backward()
    c = np.arange(logits.size)
    np.testing.assert_allclose(
        g.reshape(-1), numeric_grad(lambda: crit(logits, target), logits, c), rtol=1e-6, atol=1e-9
    )
    big = np.array([[1000.0, 0.0], [0.0, -1000.0]], np.float32)
    loss = crit(big, np.array([1, 1]))
    assert np.isfinite(loss) and loss == pytest.approx(
        1000.0, rel=1e-6
    )  # -log softmax: 1000 per row
    assert np.all(np.isfinite(crit.backward()))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_small_network_grads(layout, rng):
    net = nn.SeparableConvNet(
        in_channels=2,
        num_classes=3,
        input_size=5,
        stem_width=3,
        widths=(4, 5),
        strides=(1, 2),
        layout=layout,
        dtype=np.float64,
        rng=6,
    )
    check_grads(net, rng.standard_normal(nchw_shape(3, 2, 5, 5, layout)), rng, rtol=1e-5, atol=1e-7)


# -- forward against independent oracles -------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layers_forward_match_reference(layout, rng):
    to = (
        (lambda a: a)
        if layout == "NCHW"
        else (lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1)))
    )
    x = rng.standard_normal((2, 3, 7, 7))
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1, layout=layout, dtype=np.float64, rng=0)
    np.testing.assert_allclose(
        conv(to(x)),
        to(naive_conv2d(x, conv.weight.data, conv.bias.data, 2, 1)),
        rtol=1e-12,
        atol=1e-12,
    )
    dw = nn.DepthwiseConv2d(
        3, 3, padding="same", multiplier=2, layout=layout, dtype=np.float64, rng=0
    )
    np.testing.assert_allclose(
        dw(to(x)),
        reference.depthwise_conv2d(
            to(x), dw.weight.data, dw.bias.data, padding="same", layout=layout
        ),
        rtol=1e-12,
        atol=1e-12,
    )
    sep = nn.SeparableConv2d(
        3, 4, mid_activation="relu", padding=1, layout=layout, dtype=np.float64, rng=0
    )
    want = reference.separable_conv2d(
        to(x),
        sep.depthwise.weight.data,
        sep.pointwise.weight.data,
        sep.depthwise.bias.data,
        sep.pointwise.bias.data,
        padding=1,
        layout=layout,
        mid_activation="relu",
    )
    np.testing.assert_allclose(sep(to(x)), want, rtol=1e-12, atol=1e-12)  # composed
    np.testing.assert_allclose(sep.eval()(to(x)), want, rtol=1e-12, atol=1e-12)  # fused


def test_linear_forward():
    lin = nn.Linear(4, 3, dtype=np.float64, rng=0)
    x = np.arange(8.0).reshape(2, 4)
    np.testing.assert_allclose(lin(x), x @ lin.weight.data.T + lin.bias.data, rtol=1e-13)


def test_batchnorm_running_stats_and_eval():
    x = np.random.default_rng(0).standard_normal((4, 2, 3, 3)) * 3 + 1
    bn = nn.BatchNorm2d(2, momentum=0.1, dtype=np.float64)
    y = bn(x)
    mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
    np.testing.assert_allclose(y.mean((0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(bn.running_mean, 0.1 * mean)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * var * 36 / 35)
    assert int(bn.num_batches_tracked) == 1
    bn.eval()
    np.testing.assert_allclose(
        bn(x),
        (x - bn.running_mean.reshape(1, 2, 1, 1))
        / np.sqrt(bn.running_var.reshape(1, 2, 1, 1) + 1e-5),
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fold_batchnorm_same_outputs(layout, rng):
    net = nn.SeparableConvNet(
        in_channels=3,
        num_classes=4,
        input_size=9,
        stem_width=4,
        widths=(6, 8),
        strides=(2, 1),
        layout=layout,
        dtype=np.float64,
        rng=7,
    )
    x = rng.standard_normal(nchw_shape(5, 3, 9, 9, layout))
    for _ in range(3):  # move the running statistics away from their initial values
        net(x * rng.uniform(0.5, 2) + rng.standard_normal())
    for bn in net.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.weight.data[:] = rng.uniform(0.5, 2, bn.num_features)
            bn.bias.data[:] = rng.standard_normal(bn.num_features)
    net.eval()
    folded = nn.fold_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    np.testing.assert_allclose(folded(x), net(x), rtol=1e-10, atol=1e-10)
    sep = nn.SeparableConv2d(3, 4, padding=1, layout=layout, dtype=np.float64, rng=0)
    bn = nn.BatchNorm2d(4, layout=layout, dtype=np.float64)
    bn.running_mean[:] = rng.standard_normal(4)
    bn.running_var[:] = rng.uniform(0.5, 2, 4)
    fused = nn.fuse_conv_bn(sep, bn)
    np.testing.assert_allclose(fused(x), bn.eval()(sep.eval()(x)), rtol=1e-10, atol=1e-10)


# -- freezing, modes, state ------------------------------------------------------------


def test_freeze_skips_grads_and_updates(rng):
    net = nn.SeparableConvNet(num_classes=3, stem_width=4, widths=(6,), strides=(1,), rng=0)
    net.features.freeze()
    before = {k: p.data.copy() for k, p in net.named_parameters()}
    opt = nn.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x = rng.random((4, 1, 8, 8), dtype=np.float32)
    crit = nn.CrossEntropyLoss()
    crit(net(x), np.array([0, 1, 2, 0]))
    assert net.backward(crit.backward(), input_grad=False) is None
    assert all(p.grad is None for p in net.features.parameters())
    assert net.classifier.weight.grad is not None
    opt.step()
    after = dict(net.named_parameters())
    for k, v in before.items():
        same = np.array_equal(after[k].data, v)
        assert same == (not k.startswith("classifier")), k
    # a frozen weight with a trainable bias: only the bias gets a gradient
    conv = nn.PointwiseConv2d(3, 2, rng=0)
    conv.weight.requires_grad = False
    conv(rng.random((1, 3, 2, 2), dtype=np.float32))
    conv.backward(np.ones((1, 2, 2, 2), np.float32))
    assert conv.weight.grad is None and conv.bias.grad is not None
    net.unfreeze()
    assert all(p.requires_grad for p in net.parameters())


def test_state_dict_names_save_load(tmp_path, rng):
    net = nn.SeparableConvNet(num_classes=3, stem_width=4, widths=(6,), strides=(2,), rng=0)
    names = list(net.state_dict())
    assert names[:7] == [
        "features.0.weight",
        "features.1.weight",
        "features.1.bias",
        "features.1.running_mean",
        "features.1.running_var",
        "features.1.num_batches_tracked",
        "features.3.weight",
    ]
    assert names[-2:] == ["classifier.weight", "classifier.bias"]
    net(rng.random((4, 1, 8, 8), dtype=np.float32))
    path = tmp_path / "w.npz"
    net.save(path, metadata={"hello": [1, 2]})
    other = nn.SeparableConvNet(num_classes=3, stem_width=4, widths=(6,), strides=(2,), rng=1)
    other.load(path)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)
    assert nn.load_metadata(path) == {"hello": [1, 2]}
    state = nn.load(path)
    state["classifier.weight"] = state["classifier.weight"][:2]
    with pytest.raises(ValueError, match="classifier.weight"):
        other.load_state_dict(state)
    del state["classifier.weight"]
    with pytest.raises(KeyError, match="classifier.weight"):
        other.load_state_dict(state)


def test_dtypes():
    net = nn.SeparableConvNet(stem_width=4, widths=(6,), strides=(1,), rng=0)
    assert all(p.dtype == np.float32 for p in net.parameters())
    x = np.random.default_rng(0).random((2, 1, 8, 8))
    with pytest.raises(TypeError, match="float64 does not match"):
        net(x)
    net.to(np.float64)
    assert net(x).dtype == np.float64
    assert net.features[1].running_mean.dtype == np.float64


def test_errors():
    conv = nn.DepthwiseConv2d(4, 3)
    with pytest.raises(RuntimeError, match="before forward"):
        conv.backward(np.zeros((1, 4, 1, 1), np.float32))
    with pytest.raises(ValueError, match=r"expected 4 input channels \(axis 1 for NCHW\), got 3"):
        conv(np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"4-D"):
        conv(np.zeros((3, 5, 5), np.float32))
    with pytest.raises(ValueError, match="layout"):
        nn.Conv2d(1, 2, 3, layout="CHW")
    with pytest.raises(ValueError, match="activation"):
        nn.PointwiseConv2d(1, 2, activation="gelu")
    with pytest.raises(ValueError, match="padding"):
        nn.Conv2d(1, 2, 3, padding="full")
    with pytest.raises(ValueError, match="expected 4 input features, got 3"):
        nn.Linear(4, 2)(np.zeros((2, 3), np.float32))
    y = conv(np.zeros((1, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match="grad_out must have"):
        conv.backward(np.zeros((1, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm2d(2)(np.zeros((1, 2, 1, 1), np.float32))
    with pytest.raises(ValueError, match="kernel"):
        nn.Conv2d(1, 2, 5)(np.zeros((1, 1, 3, 3), np.float32))
    assert y.shape == (1, 4, 3, 3)


# -- models ------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha,res", [(1.0, 224), (0.75, 192), (0.5, 160), (0.25, 128)])
def test_mobilenet_parameter_count_matches_cost(alpha, res):
    model = nn.MobileNetV1(alpha, num_classes=1000, input_size=res, rng=0)
    want = pydsconv.cost.mobilenet_v1(alpha, res, num_classes=1000)["params"]
    assert nn.weight_count(model) == want
    bn_channels = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert model.num_parameters() == want + 2 * bn_channels + 1000
    if alpha == 1.0:
        assert want == 4_209_088


def test_mobilenet_forward_small():
    x = np.random.default_rng(0).random((1, 3, 96, 96), dtype=np.float32)
    model = nn.MobileNetV1(0.25, num_classes=10, input_size=96, rng=0).eval()
    y = model(x)
    assert y.shape == (1, 10) and y.dtype == np.float32 and np.all(np.isfinite(y))
    nhwc = nn.MobileNetV1(0.25, num_classes=10, input_size=96, layout="NHWC", rng=1).eval()
    nhwc.load_state_dict(model.state_dict())
    np.testing.assert_allclose(
        nhwc(np.ascontiguousarray(x.transpose(0, 2, 3, 1))), y, rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize(
    "size,widths,strides",
    [(8, (32, 64, 128), (1, 2, 2)), (28, (8, 16, 16, 24), (2, 1, 2, 2)), (5, (4,), (3,))],
)
def test_separable_convnet_shapes(size, widths, strides):
    net = nn.SeparableConvNet(
        in_channels=2,
        num_classes=7,
        input_size=size,
        stem_width=4,
        widths=widths,
        strides=strides,
        rng=0,
    )
    x = np.zeros((3, 2, size, size), np.float32)
    assert net(x).shape == (3, 7)
    assert net.backward(np.ones((3, 7), np.float32)).shape == x.shape
    expect = size
    for s in strides:
        expect = (expect - 1) // s + 1
    assert net.feature_size == expect


# -- optimizers --------------------------------------------------------------------------


def test_sgd_adam_by_hand():
    p = nn.Parameter(np.array([1.0, -2.0]))
    opt = nn.SGD([p], lr=0.1, momentum=0.5, weight_decay=0.1)
    p.grad = np.array([0.5, 0.5])
    opt.step()  # d = g + 0.1 p = [0.6, 0.3]; buf = d
    np.testing.assert_allclose(p.data, [1 - 0.06, -2 - 0.03])
    q = nn.Parameter(np.array([1.0]))
    adam = nn.Adam([q], lr=0.1)
    q.grad = np.array([3.0])
    adam.step()  # the first bias-corrected Adam step is lr * sign(g)
    np.testing.assert_allclose(q.data, [0.9], rtol=1e-6)


# -- PyTorch -----------------------------------------------------------------------------


def _torch_net(torch):
    tnn = torch.nn
    return tnn.Sequential(
        tnn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False),
        tnn.BatchNorm2d(4),
        tnn.ReLU(),
        tnn.Conv2d(4, 8, 3, padding=1, groups=4),
        tnn.BatchNorm2d(8),
        tnn.ReLU6(),
        tnn.Conv2d(8, 6, 1),
        tnn.BatchNorm2d(6),
        tnn.ReLU(),
        tnn.AdaptiveAvgPool2d(1),
        tnn.Flatten(),
        tnn.Linear(6, 3),
    ).double()


def _our_net(layout):
    f64 = dict(dtype=np.float64)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False, layout=layout, **f64),
        nn.BatchNorm2d(4, layout=layout, **f64),
        nn.ReLU(),
        nn.DepthwiseConv2d(4, 3, padding=1, multiplier=2, layout=layout, **f64),
        nn.BatchNorm2d(8, layout=layout, **f64),
        nn.ReLU6(),
        nn.PointwiseConv2d(8, 6, layout=layout, **f64),
        nn.BatchNorm2d(6, layout=layout, **f64),
        nn.ReLU(),
        nn.GlobalAvgPool2d(layout),
        nn.Identity(),
        nn.Linear(6, 3, **f64),
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_sequential_matches_torch(layout):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tnet = _torch_net(torch)
    ours = _our_net(layout)
    ours.load_state_dict({k: v.detach().numpy() for k, v in tnet.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 9, 9)) * 3
    target = np.array([0, 2, 1])
    xt = torch.tensor(x, requires_grad=True)
    loss_t = torch.nn.functional.cross_entropy(tnet(xt), torch.tensor(target))
    loss_t.backward()
    xin = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    crit = nn.CrossEntropyLoss()
    loss = crit(ours(xin), target)
    gx = ours.backward(crit.backward())
    if layout == "NHWC":
        gx = gx.transpose(0, 3, 1, 2)
    assert loss == pytest.approx(loss_t.item(), rel=1e-10)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-8, atol=1e-12)
    tgrads = dict(tnet.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(
            p.grad, tgrads[name].grad.numpy(), rtol=1e-8, atol=1e-12, err_msg=name
        )
    tstate = tnet.state_dict()
    for name, v in ours.state_dict().items():  # running statistics after one training step
        np.testing.assert_allclose(v, tstate[name].numpy(), rtol=1e-12, err_msg=name)
    tnet.eval()
    ours.eval()
    with torch.no_grad():
        np.testing.assert_allclose(ours(xin), tnet(torch.tensor(x)).numpy(), rtol=1e-10)


@pytest.mark.parametrize(
    "kind,kwargs",
    [
        ("SGD", dict(lr=0.1)),
        ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
        ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
        ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3)),
        ("Adam", dict(lr=0.01)),
        ("Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)),
    ],
)
def test_optimizers_match_torch(kind, kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal((3, 4))
    ours = nn.Parameter(w0.copy())
    theirs = torch.tensor(w0.copy(), requires_grad=True)
    opt = getattr(nn, kind)([ours], **kwargs)
    topt = getattr(torch.optim, kind)([theirs], **kwargs)
    for _ in range(4):
        g = rng.standard_normal((3, 4))
        ours.grad = g.copy()
        theirs.grad = torch.tensor(g.copy())
        opt.step()
        topt.step()
        np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_default_init_bounds_like_torch():
    """kaiming_uniform(a=sqrt(5)) bounds: weights and biases within 1/sqrt(fan_in)."""
    conv = nn.Conv2d(3, 64, 3, rng=0)
    b = 1 / math.sqrt(27)
    assert np.abs(conv.weight.data).max() <= b and np.abs(conv.weight.data).max() > 0.9 * b
    assert np.abs(conv.bias.data).max() <= b
    dw = nn.DepthwiseConv2d(256, 3, rng=0)
    assert 0.9 / 3 < np.abs(dw.weight.data).max() <= 1 / 3
    a = nn.Linear(10, 10, rng=3).weight.data
    np.testing.assert_array_equal(a, nn.Linear(10, 10, rng=3).weight.data)  # seedable
