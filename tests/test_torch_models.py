"""pydsconv.torch.convert on issue 20's real models: torchvision's MobileNetV2,
MobileNetV3-Small/Large, EfficientNet-B0, MnasNet1.0, ConvNeXt-Tiny and
RegNetY-400MF, and timm's MobileNetV3 / EfficientNet / ConvNeXt variants.

Random weights (``weights=None``, ``torch.manual_seed``) and randomised
BatchNorm statistics; every expected value is the original model's own output
or gradient.  What is checked:

* eval mode (BatchNorms folded where convert can): outputs equal, float64
  within 1e-10 relative and float32 within 1e-4, and the gradient with respect
  to the input equal (float64);
* train mode (nothing folded, batch statistics): outputs and every parameter's
  gradient equal (float64, 1e-10), matched by name through ``report.renamed``;
* the report accounts for every convolution and BatchNorm of the model:
  converted, folded, fused or left alone with a reason.

Both ``fuse=True`` and ``fuse=False``.  torchvision and timm are test-only
extras; this module is skipped, with the reason, where they do not import.
"""

import math

import pytest

torch = pytest.importorskip("torch")

INSTALL = (
    "in a separate venv, pip install torch==2.14.1 torchvision==0.29.1 timm, then pydsconv "
    "(PyPI's torchvision does not import beside torch 2.13, which CI and [test] use)"
)
try:
    import torchvision  # noqa: F401
    from torchvision import models as tvm
except Exception as e:  # ImportError, or a torchvision built for another torch
    pytest.skip(
        f"torchvision does not import ({type(e).__name__}: {e}); install with: {INSTALL}",
        allow_module_level=True,
    )

try:
    import timm
except Exception as e:
    timm = None
    TIMM_WHY = f"timm does not import ({type(e).__name__}: {e}); pip install timm"
else:
    TIMM_WHY = ""

import pydsconv.torch as pt  # noqa: E402

nn = torch.nn


def close(a, b, scale=None):
    """float64: 1e-10 relative to the largest magnitude of ``b`` (or ``scale``);
    float32: 1e-4."""
    assert a.shape == b.shape and a.dtype == b.dtype
    rel = 1e-10 if a.dtype == torch.float64 else 1e-4
    scale = max(b.abs().max().item() if scale is None else scale, 1e-30)
    torch.testing.assert_close(a, b, rtol=rel, atol=rel * scale)


def randomise_bn(model):
    """Non-trivial running statistics and affine parameters, so folding shows."""
    g = torch.Generator().manual_seed(7)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                n = m.num_features
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                    m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                if m.weight is not None:
                    m.weight.copy_(1 + 0.2 * torch.randn(n, generator=g))
                    m.bias.copy_(0.2 * torch.randn(n, generator=g))
    return model


# name -> (constructor, input H=W, slow)
TV = {
    "mobilenet_v2": (lambda: tvm.mobilenet_v2(weights=None), 64, False),
    "mobilenet_v3_small": (lambda: tvm.mobilenet_v3_small(weights=None), 64, False),
    "mobilenet_v3_large": (lambda: tvm.mobilenet_v3_large(weights=None), 64, False),
    "efficientnet_b0": (lambda: tvm.efficientnet_b0(weights=None), 64, False),
    "mnasnet1_0": (lambda: tvm.mnasnet1_0(weights=None), 64, False),
    "convnext_tiny": (lambda: tvm.convnext_tiny(weights=None), 64, True),
    "regnet_y_400mf": (lambda: tvm.regnet_y_400mf(weights=None), 64, False),
}
TIMM = {
    "timm_mobilenetv3_large_100": ("mobilenetv3_large_100", 64, False),
    "timm_efficientnet_b0": ("efficientnet_b0", 64, False),
    "timm_convnext_tiny": ("convnext_tiny", 64, True),
}


def build(name, dtype):
    torch.manual_seed(0)
    if name in TV:
        model = TV[name][0]()
    else:
        if timm is None:
            pytest.skip(TIMM_WHY)
        model = timm.create_model(TIMM[name][0], pretrained=False)
    return randomise_bn(model).to(dtype)


def size(name):
    return (TV.get(name) or TIMM[name])[1]


def params(name):
    slow = (TV.get(name) or TIMM[name])[2]
    return pytest.param(name, marks=pytest.mark.slow) if slow else name


ALL = [params(n) for n in [*TV, *TIMM]]
# the float64 runs are the expensive ones: the fast set is the speed targets
F64_FAST = {"mobilenet_v2", "efficientnet_b0", "mnasnet1_0", "mobilenet_v3_small"}


def f64_params():
    out = []
    for n in [*TV, *TIMM]:
        slow = (TV.get(n) or TIMM[n])[2] or n not in F64_FAST
        out.append(pytest.param(n, marks=pytest.mark.slow) if slow else n)
    return out


def old_name(name, renamed):
    """The original model's name of converted parameter ``name``."""
    for old, new in renamed.items():
        if name == new or name.startswith(new + "."):
            return old + name[len(new) :]
    return name


def check_report(orig, report, eval_mode):
    """Every exact Conv1d/Conv2d of ``orig`` is converted or left alone with a
    reason; every BatchNorm is folded or left alone with a reason."""
    for name, m in orig.named_modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            assert (name in report.converted) != (name in report.left_alone), name
            if name in report.left_alone:
                assert report.left_alone[name], name
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            assert (name in report.folded) != (name in report.left_alone), name
            if not eval_mode:
                assert name in report.left_alone
    if not eval_mode:
        assert not report.folded
    for name, parts in report.fused.items():
        assert parts[0] == name and all(p in report.converted for p in (parts[0],))
    assert report.converted, "nothing converted"
    assert str(report).startswith("converted ")


# --------------------------------------------------------------------------
# eval mode: outputs (float32 and float64) and the input gradient
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("name", ALL)
def test_eval_float32(name, fuse):
    model = build(name, torch.float32).eval()
    fast, report = pt.convert(model, fuse=fuse)
    check_report(model, report, eval_mode=True)
    if not fuse:
        assert not report.fused
    x = torch.randn(2, 3, size(name), size(name), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x)
        close(fast(x), want)
        close(fast(x.contiguous(memory_format=torch.channels_last)), want)
    fast_cl, _ = pt.convert(model, fuse=fuse, channels_last=True)
    with torch.no_grad():
        close(fast_cl(x), want)


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("name", f64_params())
def test_eval_float64_and_input_grad(name, fuse):
    model = build(name, torch.float64).eval()
    fast, report = pt.convert(model, fuse=fuse)
    check_report(model, report, eval_mode=True)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, size(name), size(name), dtype=torch.float64, generator=g)
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    want = model(xa)
    got = fast(xb)
    close(got, want)
    proj = torch.randn(want.shape, dtype=torch.float64, generator=g)
    (want * proj).sum().backward()
    (got * proj).sum().backward()
    close(xb.grad, xa.grad)


# --------------------------------------------------------------------------
# train mode: nothing folded, every parameter gradient equal
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("name", f64_params())
def test_train_float64_gradients(name, fuse):
    model = build(name, torch.float64).train()
    fast, report = pt.convert(model, fuse=fuse)
    check_report(model, report, eval_mode=False)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, size(name), size(name), dtype=torch.float64, generator=g)
    torch.manual_seed(3)  # dropout / stochastic depth: the same draws in both runs
    want = model(x)
    torch.manual_seed(3)
    got = fast(x)
    close(got, want)
    proj = torch.randn(want.shape, dtype=torch.float64, generator=g)
    (want * proj).sum().backward()
    (got * proj).sum().backward()
    ref = dict(model.named_parameters())
    seen = set()
    for pname, p in fast.named_parameters():
        old = old_name(pname, report.renamed)
        assert old in ref, (pname, old)
        seen.add(old)
        r = ref[old]
        if r.grad is None:
            assert p.grad is None or not p.grad.any(), pname
            continue
        # relative to the largest gradient of the tensor or of its layer's
        # weight: some exact gradients are 0 (a bias before a train-mode
        # BatchNorm) and both sides give rounding noise there
        w = ref.get(old.rsplit(".", 1)[0] + ".weight", r)
        scale = max(
            r.grad.abs().max().item(), w.grad.abs().max().item() if w.grad is not None else 0
        )
        close(p.grad, r.grad, scale=scale)
    assert seen == set(ref), set(ref) - seen
    # the running statistics moved alike
    ref_bufs = dict(model.named_buffers())
    for bname, b in fast.named_buffers():
        if b.dtype.is_floating_point:
            close(b, ref_bufs[old_name(bname, report.renamed)])


# --------------------------------------------------------------------------
# what the report says for each model (the layers issue 20 names)
# --------------------------------------------------------------------------


def kinds(model):
    dw, pw, other = [], [], []
    for n, m in model.named_modules():
        if type(m) is nn.Conv2d:
            if m.groups == m.in_channels and m.groups > 1:
                dw.append(n)
            elif m.kernel_size == (1, 1) and m.groups == 1:
                pw.append(n)
            else:
                other.append(n)
    return dw, pw, other


@pytest.mark.parametrize("name", [n for n in TV])
def test_report_names_the_layers(name):
    model = build(name, torch.float32).eval()
    _, report = pt.convert(model)
    dw, pw, other = kinds(model)
    assert dw or pw
    for n in dw:
        assert report.converted[n] == "DepthwiseConv2d", n
    for n in pw:
        assert report.converted[n] == "PointwiseConv2d", n
    for n in other:
        why = report.left_alone[n]
        assert "full" in why or "grouped" in why, (n, why)
    if name == "regnet_y_400mf":  # its 3x3s are grouped (group width 8)
        assert any("grouped convolution" in report.left_alone[n] for n in other)
    if name == "convnext_tiny":  # 7x7 depthwise in every block; no BatchNorm to fold
        assert len(dw) == 18 and not report.folded
        assert all(model.get_submodule(n).kernel_size == (7, 7) for n in dw)
    if name in ("mnasnet1_0", "mobilenet_v2"):  # dw -> BN -> act -> pw -> BN
        assert report.fused
    # not folded BatchNorms carry a reason
    assert all(report.left_alone.values())


def test_timm_importable_or_reason():
    """timm is optional: where it is missing the skip says so (never silent)."""
    if timm is None:
        pytest.skip(TIMM_WHY)
    assert math.isfinite(float(timm.__version__.split(".")[0]))
