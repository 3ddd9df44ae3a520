"""pydsconv.torch.convert: PyTorch models with their depthwise / 1x1 convs
swapped for pydsconv layers give the original's outputs and gradients.

Every expected value is the original PyTorch model's own output.
"""

import copy

import pytest

torch = pytest.importorskip("torch")

import pydsconv.torch as pt  # noqa: E402

nn = torch.nn


def close(a, b, scale=None):
    """float64: 1e-10 relative (to the largest magnitude of ``b``, or to
    ``scale``); float32: 1e-4."""
    assert a.shape == b.shape and a.dtype == b.dtype
    rel = 1e-10 if a.dtype == torch.float64 else 1e-4
    scale = max(b.abs().max().item() if scale is None else scale, 1e-30)
    torch.testing.assert_close(a, b, rtol=rel, atol=rel * scale)


def randomise_bn(model):
    """Non-trivial BatchNorm statistics and affine parameters, so folding shows."""
    g = torch.Generator().manual_seed(7)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                n = m.num_features
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                    m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.randn(n, generator=g))
                    m.bias.copy_(torch.randn(n, generator=g))
    return model


# --------------------------------------------------------------------------
# MobileNet-like models in plain torch.nn
# --------------------------------------------------------------------------


def conv_bn(cin, cout, k, stride, groups=1, act=nn.ReLU6):
    layers = [
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2's block, laid out as torchvision's."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers = [conv_bn(cin, hidden, 1, 1)] if expand != 1 else []
        layers += [
            conv_bn(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, width=8, classes=10):
        super().__init__()
        cfg = [(1, 8, 1, 1), (6, 12, 2, 2), (6, 16, 2, 2), (6, 24, 1, 1)]
        layers = [conv_bn(3, width, 3, 2)]
        cin = width
        for t, c, n, s in cfg:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, 32, 1, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.0), nn.Linear(32, classes))

    def forward(self, x):
        x = self.features(x)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def mobilenet_v1(width=8, classes=10):
    def dw_block(cin, cout, stride):
        return nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    chans = [(width, 2 * width, 1), (2 * width, 4 * width, 2), (4 * width, 4 * width, 1)]
    chans += [(4 * width, 8 * width, 2), (8 * width, 8 * width, 1)]
    return nn.Sequential(
        conv_bn(3, width, 3, 2, act=nn.ReLU),
        *[dw_block(a, b, s) for a, b, s in chans],
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8 * width, classes),
    )


MODELS = {"mobilenet_v1": mobilenet_v1, "mobilenet_v2": MobileNetV2}
DTYPES = [torch.float32, torch.float64]


def old_name(name, report):
    """The original model's parameter name for the converted model's ``name``."""
    for old, new in report.renamed.items():
        if name.startswith(new + "."):
            return old + name[len(new) :]
    return name


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arch", sorted(MODELS))
def test_mobilenet_train_mode_outputs_and_gradients(arch, dtype):
    torch.manual_seed(0)
    ref = randomise_bn(MODELS[arch]().to(dtype)).train()
    model, report = pt.convert(ref)
    # BatchNorms stay in train mode, between the depthwise and the 1x1: no fusion
    assert not report.folded and not report.fused and report.converted
    x = torch.randn(2, 3, 32, 32, dtype=dtype)
    y_ref, y = ref(x), model(x)
    close(y, y_ref)
    g = torch.randn_like(y)
    y_ref.backward(g)
    y.backward(g)
    ref_params = dict(ref.named_parameters())
    new_params = dict(model.named_parameters())
    assert len(new_params) == len(ref_params)
    # relative to the largest gradient of the tensor or of its layer's weight:
    # some exact gradients are 0 (a BatchNorm's affine parameters before a
    # 1x1 conv and another train-mode BatchNorm) and both sides give rounding noise
    for name, p in new_params.items():
        ref_name = old_name(name, report)
        w_grad = ref_params[ref_name.rsplit(".", 1)[0] + ".weight"].grad
        scale = max(ref_params[ref_name].grad.abs().max().item(), w_grad.abs().max().item())
        close(p.grad, ref_params[ref_name].grad, scale)
    # the running statistics were updated alike
    for name, buf in model.named_buffers():
        if buf.is_floating_point():
            close(buf, dict(ref.named_buffers())[old_name(name, report)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arch", sorted(MODELS))
def test_mobilenet_eval_mode_folds_and_fuses(arch, dtype):
    torch.manual_seed(1)
    ref = randomise_bn(MODELS[arch]().to(dtype)).eval()
    model, report = pt.convert(ref)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in ref.modules())
    # every BatchNorm is folded, the stem's into the full conv left alone
    assert len(report.folded) == n_bn
    stem = "0" if arch == "mobilenet_v1" else "features.0"
    assert set(report.left_alone) == {stem + ".0"}
    assert "full (3, 3) convolution" in report.left_alone[stem + ".0"]
    assert report.folded[stem + ".1"] == stem + ".0"
    assert isinstance(model.get_submodule(stem + ".0"), nn.Conv2d)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 0
    if arch == "mobilenet_v1":
        assert len(report.fused) == 5
        assert all(isinstance(model[i][0], pt.SeparableConv2d) for i in range(1, 6))
        assert model[1][0].mid_activation == "relu" and model[1][0].activation == "relu"
    x = torch.randn(3, 3, 32, 32, dtype=dtype)
    with torch.no_grad():
        close(model(x), ref(x))


def test_layers_one_by_one():
    torch.manual_seed(2)
    configs = [
        dict(in_channels=4, out_channels=4, kernel_size=3, groups=4),
        dict(in_channels=4, out_channels=8, kernel_size=3, groups=4, stride=2, padding=1),
        dict(in_channels=3, out_channels=9, kernel_size=(3, 5), groups=3, padding="same"),
        dict(in_channels=3, out_channels=3, kernel_size=3, groups=3, dilation=2, padding="valid"),
        dict(in_channels=3, out_channels=3, kernel_size=3, groups=3, stride=(2, 1), padding=(0, 2)),
        dict(in_channels=2, out_channels=2, kernel_size=4, groups=2, padding="same", bias=False),
        dict(in_channels=5, out_channels=7, kernel_size=1),
        dict(in_channels=5, out_channels=7, kernel_size=1, padding="same", bias=False),
        dict(in_channels=1, out_channels=3, kernel_size=3),  # groups == in_channels == 1
    ]
    for dtype in DTYPES:
        for cfg in configs:
            conv = nn.Conv2d(**cfg, dtype=dtype)
            new, report = pt.convert(conv)
            assert report.converted == {"": type(new).__name__}, cfg
            x = torch.randn(2, cfg["in_channels"], 11, 10, dtype=dtype)
            close(new(x), conv(x))
            assert new.state_dict().keys() == conv.state_dict().keys()


def test_conv1d_depthwise_pointwise_fold_and_fuse():
    torch.manual_seed(3)
    seq = nn.Sequential(
        nn.Conv1d(4, 8, 5, padding="same", groups=4, bias=False),
        nn.BatchNorm1d(8),
        nn.ReLU6(),
        nn.Conv1d(8, 6, 1),
        nn.BatchNorm1d(6),
        nn.Conv1d(6, 6, 3, stride=2, dilation=2, groups=6),
    ).double()
    randomise_bn(seq)
    x = torch.randn(2, 4, 17, dtype=torch.float64)
    for mode in ("train", "eval"):
        ref = seq.train(mode == "train")
        model, report = pt.convert(ref)
        assert set(report.converted) == {"0", "3", "5"}
        if mode == "eval":
            assert isinstance(model[0], pt.SeparableConv1d) and model[0].mid_activation == "relu6"
        assert isinstance(model[5], pt.DepthwiseConv1d)
        assert report.folded == ({} if mode == "train" else {"1": "0", "4": "3"})
        close(model(x), ref(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_fusion_in_train_mode_keeps_gradients(dtype):
    torch.manual_seed(6)
    ref = nn.Sequential(
        nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=4),
        nn.ReLU(),
        nn.Conv2d(8, 6, 1),
        nn.ReLU6(),
        nn.Sequential(nn.Conv2d(6, 6, 3, padding="same", groups=6, bias=False), nn.Conv2d(6, 5, 1)),
    ).to(dtype)
    model, report = pt.convert(ref)
    assert report.fused == {"0": ("0", "1", "2", "3"), "4.0": ("4.0", "4.1")}
    assert model[0].mid_activation == "relu" and model[0].activation == "relu6"
    x = torch.randn(2, 4, 13, 13, dtype=dtype, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y_ref, y = ref(x), model(x2)
    close(y, y_ref)
    g = torch.randn_like(y)
    y_ref.backward(g)
    y.backward(g)
    close(x2.grad, x.grad)
    ref_params = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        close(p.grad, ref_params[old_name(name, report)].grad)


def test_left_alone_with_reasons():
    class MyConv(nn.Conv2d):
        pass

    model = nn.Sequential(
        nn.Conv2d(4, 8, 1, groups=2),
        nn.Conv2d(8, 8, 3, groups=8, padding=1, padding_mode="reflect"),
        nn.Conv2d(8, 8, 3, groups=2, padding=1),
        nn.Conv2d(8, 8, 3, padding=1),
        MyConv(8, 8, 3, groups=8, padding=1),
        nn.Conv2d(8, 8, 1, padding=1),
    )
    out, report = pt.convert(model)
    assert not report.converted
    why = report.left_alone
    assert "grouped 1x1 convolution (groups=2)" in why["0"]
    assert "padding_mode='reflect'" in why["1"]
    assert "grouped" in why["2"]
    assert "full" in why["3"]
    assert "MyConv" in why["4"]
    assert "padding" in why["5"]
    assert all(type(a) is type(b) for a, b in zip(out, model))
    x = torch.randn(1, 4, 12, 12)
    close(out(x), model(x))


def test_fold_needs_eval_mode_of_model_conv_and_batchnorm():
    def block():
        return nn.Sequential(nn.Conv2d(4, 4, 3, groups=4, bias=False), nn.BatchNorm2d(4))

    model = nn.Sequential(block(), block()).eval()
    model[1][1].train()  # a BatchNorm left in train mode is not folded
    for p in model[0].parameters():
        p.requires_grad_(False)
    out, report = pt.convert(model)
    assert report.folded == {"0.1": "0.0"}
    assert "train mode" in report.left_alone["1.1"]
    assert not out[0][0].weight.requires_grad and not out[0][0].bias.requires_grad
    _, report = pt.convert(model.train())
    assert not report.folded and "train mode" in report.left_alone["0.1"]


def test_unfoldable_batchnorms_stay():
    model = nn.Sequential(
        nn.Conv2d(4, 4, 3, groups=4),
        nn.BatchNorm2d(4, track_running_stats=False),
        nn.Conv2d(4, 4, 3),
        nn.BatchNorm2d(4),
    ).eval()
    out, report = pt.convert(model)
    assert report.folded == {"3": "2"}  # into the full conv, left alone itself
    assert "track_running_stats=False" in report.left_alone["1"]
    assert "full (3, 3)" in report.left_alone["2"]
    _, report = pt.convert(nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)).train())
    assert "train mode" in report.left_alone["1"] and not report.folded
    x = torch.randn(2, 4, 9, 9)
    close(out(x), model(x))


def test_inplace_and_copy_and_rng():
    model = mobilenet_v1()
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    out, _ = pt.convert(model)
    assert torch.equal(torch.get_rng_state(), rng)  # convert draws no random numbers
    assert out is not model and isinstance(model[1][0], nn.Conv2d)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    params = set(map(id, model.parameters()))
    out, report = pt.convert(model, inplace=True, fuse=False)
    assert out is model and isinstance(model[1][0], pt.DepthwiseConv2d)
    assert set(map(id, model.parameters())) == params  # an optimizer keeps working
    assert not report.fused and not report.renamed


def test_state_dict_loads_both_ways_without_fusion():
    torch.manual_seed(4)
    ref = MobileNetV2()
    model, _ = pt.convert(ref, fuse=False)
    assert model.state_dict().keys() == ref.state_dict().keys()
    other = MobileNetV2()
    other.load_state_dict(model.state_dict())
    model.load_state_dict(ref.state_dict())


def test_fused_keys_follow_report_renamed():
    torch.manual_seed(5)
    ref = nn.Sequential(
        nn.Identity(),
        nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.ReLU(), nn.Conv2d(4, 8, 1), nn.ReLU()),
    )
    model, report = pt.convert(ref)
    assert report.renamed == {"1.0": "1.0.depthwise", "1.2": "1.0.pointwise"}
    assert report.fused == {"1.0": ("1.0", "1.1", "1.2", "1.3")}
    sd = {old_name(k, report): v for k, v in model.state_dict().items()}
    ref.load_state_dict(sd)
    assert "converted 2, folded 0, fused 1" in str(report)


# --------------------------------------------------------------------------
# strided and grouped 1x1 (ResNet / RegNet downsampling)
# --------------------------------------------------------------------------


class _Bottleneck(nn.Module):
    """A RegNet/ResNet-style downsampling block: 1x1 -> grouped/depthwise 3x3
    (stride 2) -> 1x1, plus a strided 1x1 + BatchNorm shortcut."""

    def __init__(self, cin, cout, stride, groups_3x3):
        super().__init__()
        mid = cout // 2
        self.a = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU())
        self.b = nn.Sequential(
            nn.Conv2d(mid, mid, 3, stride, 1, groups=groups_3x3, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
        )
        self.c = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.proj = nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
        )

    def forward(self, x):
        return torch.relu(self.c(self.b(self.a(x))) + self.proj(x))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_strided_1x1_downsampling_block(dtype, mode, channels_last):
    torch.manual_seed(11)
    ref = randomise_bn(_Bottleneck(6, 8, 2, groups_3x3=2)).to(dtype)
    ref.train(mode == "train")
    model, report = pt.convert(ref)
    assert report.converted == {
        "a.0": "PointwiseConv2d",
        "c.0": "PointwiseConv2d",
        "proj.0": "PointwiseConv2d",
    }
    assert model.proj[0].stride == (2, 2)
    assert "grouped convolution (groups=2" in report.left_alone["b.0"]
    if mode == "eval":
        assert report.folded == {"a.1": "a.0", "b.1": "b.0", "c.1": "c.0", "proj.1": "proj.0"}
    x = torch.randn(2, 6, 9, 7, dtype=dtype)  # odd sizes: ceil(9/2) x ceil(7/2)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x_ref, x_new = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y = ref(x_ref), model(x_new)
    assert y.shape == (2, 8, 5, 4)
    close(y, y_ref)
    g = torch.randn_like(y)
    y_ref.backward(g)
    y.backward(g)
    close(x_new.grad, x_ref.grad)
    if mode == "train":  # the same Parameters: compare their gradients by name
        ref_params = dict(ref.named_parameters())
        for name, p in model.named_parameters():
            close(p.grad, ref_params[name].grad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_1x1_1d_and_modules(dtype):
    torch.manual_seed(12)
    ref = nn.Sequential(nn.Conv1d(4, 6, 1, stride=3), nn.ReLU(), nn.Conv1d(6, 6, 1, stride=2)).to(
        dtype
    )
    model, report = pt.convert(ref)
    assert report.converted == {"0": "PointwiseConv1d", "2": "PointwiseConv1d"}
    assert "stride=(3,)" in repr(model[0])
    x = torch.randn(2, 4, 20, dtype=dtype, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y_ref, y = ref(x), model(x2)
    close(y, y_ref)
    y_ref.sum().backward()
    y.sum().backward()
    close(x2.grad, x.grad)
    close(model[0].weight.grad, ref[0].weight.grad)
    # the module itself, against nn.Conv2d, unbatched input too
    m = pt.PointwiseConv2d(3, 5, stride=(2, 3), dtype=dtype)
    conv = nn.Conv2d(3, 5, 1, stride=(2, 3), dtype=dtype)
    conv.load_state_dict(m.state_dict())
    x = torch.randn(3, 8, 10, dtype=dtype)
    close(m(x), conv(x))


def test_strided_1x1_is_not_fused():
    """The separable layer's pointwise stage has no stride: no fusion."""
    ref = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.Conv2d(4, 8, 1, stride=2))
    model, report = pt.convert(ref)
    assert not report.fused and len(report.converted) == 2
    x = torch.randn(1, 4, 7, 7)
    close(model(x), ref(x))


class Reversed(nn.Sequential):
    """A Sequential whose forward is its own: convert must not see through it."""

    def forward(self, x):
        for m in self:
            x = m(x)
        return x * 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_fusion_sees_through_plain_nested_sequentials(dtype):
    """torchvision's MobileNetV2 block: Conv2dNormActivation(depthwise, BN,
    ReLU6) -- an nn.Sequential subclass -- then the projecting 1x1 and its BN
    in the outer Sequential; the expanding 1x1's ReLU6 becomes its activation."""

    class CNA(nn.Sequential):  # a subclass with nn.Sequential's forward
        pass

    torch.manual_seed(8)
    ref = nn.Sequential(
        CNA(nn.Conv2d(4, 12, 1, bias=False), nn.BatchNorm2d(12), nn.ReLU6()),
        CNA(nn.Conv2d(12, 12, 3, padding=1, groups=12, bias=False), nn.BatchNorm2d(12), nn.ReLU6()),
        nn.Conv2d(12, 6, 1, bias=False),
        nn.BatchNorm2d(6),
        Reversed(nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.BatchNorm2d(6), nn.ReLU()),
        nn.Conv2d(6, 5, 1),
    ).to(dtype)
    ref = randomise_bn(ref).eval()
    model, report = pt.convert(ref)
    assert report.fused == {"1.0": ("1.0", "1.2", "2")}
    assert report.renamed == {"1.0": "1.0.depthwise", "2": "1.0.pointwise"}
    assert report.activations == {"0.2": "0.0"}  # not inside Reversed: its forward is its own
    assert isinstance(model[1][0], pt.SeparableConv2d) and model[1][0].mid_activation == "relu6"
    assert isinstance(model[2], nn.Identity) and model[0][0].activation == "relu6"
    assert isinstance(model[4], Reversed) and isinstance(model[5], pt.PointwiseConv2d)
    assert model[4][0].activation is None and isinstance(model[4][2], nn.ReLU)
    assert "nn.Sequential's forward" in report.left_alone["4.1"]  # not folded inside Reversed
    x = torch.randn(2, 4, 9, 9, dtype=dtype)
    with torch.no_grad():
        close(model(x), ref(x))
    _, plain = pt.convert(ref, fuse=False)
    assert not plain.fused and not plain.activations


@pytest.mark.parametrize("dtype", DTYPES)
def test_channels_last_makes_the_stem_lead_in_nhwc(dtype):
    torch.manual_seed(9)
    ref = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.Conv2d(8, 4, 1),
    ).to(dtype)
    model, _ = pt.convert(ref, channels_last=True)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert ref[0].weight.is_contiguous()  # the original is untouched
    x = torch.randn(2, 3, 11, 11, dtype=dtype, requires_grad=True)
    y = model(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    y_ref = ref(x)
    close(y, y_ref)
    g = torch.randn_like(y_ref)
    (gx,) = torch.autograd.grad(y, x, g)
    (gx_ref,) = torch.autograd.grad(y_ref, x, g)
    close(gx, gx_ref)
