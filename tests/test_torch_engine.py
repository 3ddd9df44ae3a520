"""pydsconv.torch.compile_inference: eval-mode torch models on one plan.

References are the torch models themselves (eager PyTorch, float64 for the
tight checks): BatchNorm folding changes rounding, so float64 agrees to
1e-10 relative and float32 to 1e-4.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import pydsconv.torch as pt  # noqa: E402


def _load_nets():
    """bench/lib/nets.py (the torchvision architectures in torch), loaded by
    path: the tests run from anywhere against the installed pydsconv, and
    putting the checkout on sys.path would shadow it with the source tree."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        "_pydsconv_bench_nets", os.path.join(root, "bench", "lib", "nets.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nets = _load_nets()


def _randomize(model, seed=0):
    """Random weights and non-trivial BatchNorm statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.rand(c, generator=g) * 0.2 - 0.1)
    return model.eval()


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def _check(model, shape, dtype, tol, threads=(1, 2)):
    model = _randomize(model).to(dtype)
    x = torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
    outs = []
    for t in threads:
        engine = pt.compile_inference(model, x, num_threads=t)
        for xin in (x, x.to(memory_format=torch.channels_last)):
            y = engine(xin)
            assert y.shape == ref.shape and y.dtype == ref.dtype
            assert _rel(y, ref) < tol, (t, xin.is_contiguous())
            outs.append(y.contiguous())
    for y in outs[1:]:
        assert torch.equal(y, outs[0])  # thread counts and memory formats: same bits
    return engine


NETS = [nets.MobileNetV2, nets.MobileNetV3Large, nets.EfficientNetB0]


@pytest.mark.parametrize("cls", NETS, ids=lambda c: c.__name__)
def test_networks_float64(cls):
    torch.manual_seed(0)
    engine = _check(cls(num_classes=10), (2, 3, 32, 32), torch.float64, 1e-10)
    text = engine.report.summary()
    assert "BatchNorm2d" in text and "linear" in text


@pytest.mark.parametrize("cls", NETS, ids=lambda c: c.__name__)
def test_networks_float32(cls):
    torch.manual_seed(0)
    _check(cls(num_classes=10), (1, 3, 64, 64), torch.float32, 1e-4)


def test_se_steps_and_residuals_lowered():
    torch.manual_seed(0)
    m = _randomize(nets.EfficientNetB0(num_classes=10))
    engine = pt.compile_inference(m, torch.randn(1, 3, 32, 32))
    ops = [s["op"] for s in engine.plan().steps()]
    assert ops.count("squeeze_excite") == 16  # one per MBConv block
    assert "add" in ops or any("add" in s["fused"] for s in engine.plan().steps())


class _Functional(nn.Module):
    """Functionals, methods, a depthwise multiplier, a strided 1x1, a
    residual add written as torch.add, and a mean-pooled SE and head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 16, (3, 5), padding=(1, 2), dilation=1, groups=8)
        self.pw = nn.Conv2d(16, 8, 1)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc1 = nn.Conv2d(8, 4, 1)
        self.fc2 = nn.Conv2d(4, 8, 1, bias=False)
        self.down = nn.Conv2d(8, 12, 1, stride=2)
        self.dw2 = nn.Conv2d(12, 12, 3, padding="same", groups=12, bias=False)
        self.fc = nn.Linear(12, 5)
        self.fc_out = nn.Linear(5, 3)

    def forward(self, x):
        x = F.relu6(self.bn(self.stem(x)))
        y = self.dw(x).relu()
        y = self.bn2(self.pw(y))
        s = torch.sigmoid(self.fc2(F.hardswish(self.fc1(y.mean((2, 3), keepdim=True)))))
        y = y * s
        x = torch.add(x, y)
        x = F.hardtanh(self.down(x), 0.0, 6.0)
        x = F.silu(self.dw2(x))
        x = F.dropout(x.mean([2, 3]), 0.5, training=self.training)
        return self.fc_out(F.hardsigmoid(self.fc(x)))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_functional_model(dtype, tol):
    torch.manual_seed(0)
    _check(_Functional(), (2, 3, 20, 18), dtype, tol)


class _NoHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(4, 6, 3, padding=1)
        self.b = nn.Conv2d(6, 6, 3, padding=1, groups=6)

    def forward(self, x):
        return self.b(F.relu(self.a(x)))


def test_4d_output_keeps_memory_format():
    torch.manual_seed(0)
    m = _randomize(_NoHead()).double()
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    engine = pt.compile_inference(m, x)
    with torch.no_grad():
        ref = m(x)
    y = engine(x.to(memory_format=torch.channels_last))
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert _rel(y, ref) < 1e-10
    assert engine(x).is_contiguous()


class _Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(4, 8, 3, groups=2)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return torch.cat([self.pool(self.a(x)), x[:, :1, :3, :3]], 1)


def test_unsupported_nodes_listed():
    m = _Unsupported().eval()
    with pytest.raises(ValueError) as e:
        pt.compile_inference(m, torch.randn(1, 4, 8, 8))
    msg = str(e.value)
    assert "a (Conv2d): grouped convolution" in msg
    assert "pool (MaxPool2d)" in msg and "cat" in msg and "convert" in msg


def test_branching_graph_refused():
    class Branch(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 3, 1)
            self.b = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.a(x) + self.b(x)  # two branches from x: not a chain

    with pytest.raises(ValueError, match="chain"):
        pt.compile_inference(Branch().eval(), torch.randn(1, 3, 4, 4))


def test_bn_not_folded_into_shared_output():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 3, 1)
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x):
            y = self.a(x)
            return self.bn(y) + y

    with pytest.raises(ValueError, match="also read elsewhere"):
        pt.compile_inference(Shared().eval(), torch.randn(1, 3, 4, 4))


def test_training_mode_and_grad_refused():
    m = _NoHead()
    x = torch.randn(1, 4, 5, 5)
    with pytest.raises(ValueError, match="training mode"):
        pt.compile_inference(m, x)
    engine = pt.compile_inference(m.eval(), x)
    with pytest.raises(RuntimeError, match="inference only"):
        engine.train()
    with pytest.raises(RuntimeError, match="gradients"):
        engine(x.requires_grad_())
    with torch.no_grad():
        assert engine(x).shape == (1, 6, 5, 5)


def test_input_checks():
    m = _NoHead().eval()
    engine = pt.compile_inference(m, torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match=r"shape \(1, 4, 5, 5\)"):
        engine(torch.randn(2, 4, 5, 5))
    with pytest.raises(TypeError, match="float32"):
        engine(torch.randn(1, 4, 5, 5, dtype=torch.float64))
    with pytest.raises(TypeError, match="dtype"):
        pt.compile_inference(m, torch.randn(1, 4, 5, 5, dtype=torch.float64))
    with pytest.raises(TypeError, match="4-d"):
        pt.compile_inference(m, torch.randn(4, 5, 5))


def test_weights_copied():
    m = _randomize(_NoHead())
    x = torch.randn(1, 4, 5, 5)
    engine = pt.compile_inference(m, x)
    before = engine(x).clone()
    with torch.no_grad():
        m.a.weight.mul_(2)
    assert torch.equal(engine(x), before)


def test_torchvision_mnasnet():
    tv = pytest.importorskip("torchvision", reason="torchvision is not installed here")
    torch.manual_seed(0)
    m = tv.models.mnasnet0_5(num_classes=10)
    _check(m, (1, 3, 64, 64), torch.float64, 1e-10, threads=(1,))


class _EvenSame(nn.Module):
    """padding="same" with even kernels (torch pads the extra row/column at
    the end) and dilation, standard and depthwise with a multiplier."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 4, padding="same", dilation=(1, 3))
        self.b = nn.Conv2d(6, 12, (2, 4), padding="same", groups=6)
        self.c = nn.Conv2d(12, 5, 1, stride=2)

    def forward(self, x):
        return self.c(F.hardswish(self.b(self.a(x))))


def test_even_kernel_same_padding_and_strided_1x1():
    torch.manual_seed(0)
    _check(_EvenSame(), (2, 3, 11, 13), torch.float64, 1e-10)
