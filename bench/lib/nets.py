"""The networks of bench/networks.py on the PyTorch side, with the weights of
the pydsconv side: a converter of a ``pydsconv.nn`` Sequential model (the
MobileNetV1 body and full MobileNetV1) to an equivalent ``torch.nn`` model,
and torchvision's MobileNetV2 architecture (written here from
torchvision/models/mobilenetv2.py; torchvision itself is not a dependency),
whose state-dict keys are torchvision's.

Every torch model here computes in float32 or, ``.double()``, in float64:
the float64 model is the reference each contestant is checked against.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn as tnn

from pydsconv import _args
from pydsconv import nn as pnn


def _t(a):
    return torch.from_numpy(np.array(a, np.float32))


def _same_pads(size, k, s, d):
    """TensorFlow 'same': (before, after) for one spatial dimension."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _act(name):
    return {None: None, "relu": tnn.ReLU(), "relu6": tnn.ReLU6()}[name]


def _conv(layer, hw, groups):
    """torch layers of a pydsconv convolution (weight, bias, stride,
    padding, dilation, activation) for an input of spatial size hw."""
    w = np.asarray(layer.weight.data)
    if w.ndim == 2:
        w = w.reshape(*w.shape, 1, 1)
    kh, kw = w.shape[2:]
    stride = tuple(getattr(layer, "stride", (1, 1)))
    dil = tuple(getattr(layer, "dilation", (1, 1)))
    mode, pad = _args.to_padding(getattr(layer, "padding", 0), 2)
    if mode == "same":
        (t, b), (l, r) = (
            _same_pads(hw[0], kh, stride[0], dil[0]),
            _same_pads(hw[1], kw, stride[1], dil[1]),
        )
    elif mode == "valid":
        t = b = l = r = 0
    else:
        t, b, l, r = pad
    out = []
    if (t, l) != (b, r):
        out.append(tnn.ZeroPad2d((l, r, t, b)))
        padding = 0
    else:
        padding = (t, l)
    c = tnn.Conv2d(
        w.shape[1] * groups,
        w.shape[0],
        (kh, kw),
        stride,
        padding,
        dil,
        groups,
        bias=layer.bias is not None,
    )
    with torch.no_grad():
        c.weight.copy_(_t(w))
        if layer.bias is not None:
            c.bias.copy_(_t(layer.bias.data))
    out.append(c)
    a = _act(layer.activation)
    if a is not None:
        out.append(a)
    oh = (hw[0] + t + b - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (hw[1] + l + r - dil[1] * (kw - 1) - 1) // stride[1] + 1
    return out, (oh, ow)


def torch_from_pydsconv(model, hw):
    """A torch.nn.Sequential (eval) computing ``model`` (a pydsconv.nn model of
    Sequential, Conv2d, DepthwiseConv2d, PointwiseConv2d, SeparableConv2d,
    BatchNorm2d, ReLU, ReLU6, Dropout, Identity, GlobalAvgPool2d, Flatten,
    Linear layers) in NCHW, for inputs of spatial size ``hw``."""
    layers = []

    def walk(m, hw):
        if isinstance(m, pnn.Sequential):
            for _, child in m.named_children():
                hw = walk(child, hw)
            return hw
        if isinstance(m, pnn.SeparableConv2d):
            return walk(pnn.Sequential(m.depthwise, m.pointwise), hw)
        if isinstance(m, pnn.DepthwiseConv2d):
            out, hw = _conv(m, hw, groups=np.asarray(m.weight.data).shape[0] // m.multiplier)
        elif isinstance(m, (pnn.Conv2d, pnn.PointwiseConv2d)):
            out, hw = _conv(m, hw, groups=1)
        elif isinstance(m, pnn.BatchNorm2d):
            bn = tnn.BatchNorm2d(m.num_features, eps=m.eps)
            with torch.no_grad():
                bn.weight.copy_(_t(m.weight.data))
                bn.bias.copy_(_t(m.bias.data))
                bn.running_mean.copy_(_t(m.running_mean))
                bn.running_var.copy_(_t(m.running_var))
            out = [bn]
        elif isinstance(m, pnn.ReLU6):
            out = [tnn.ReLU6()]
        elif isinstance(m, pnn.ReLU):
            out = [tnn.ReLU()]
        elif isinstance(m, (pnn.Dropout, pnn.Identity)):
            out = []
        elif isinstance(m, pnn.GlobalAvgPool2d):
            out, hw = [tnn.AdaptiveAvgPool2d(1), tnn.Flatten()], (1, 1)
        elif isinstance(m, pnn.Flatten):
            out = [tnn.Flatten()]
        elif isinstance(m, pnn.Linear):
            lin = tnn.Linear(m.weight.data.shape[1], m.weight.data.shape[0], m.bias is not None)
            with torch.no_grad():
                lin.weight.copy_(_t(m.weight.data))
                if m.bias is not None:
                    lin.bias.copy_(_t(m.bias.data))
            out = [lin]
        else:
            raise TypeError(f"no torch equivalent for {type(m).__name__}")
        layers.extend(out)
        return hw

    walk(model, hw)
    return tnn.Sequential(*layers).eval()


def randomize_batchnorm(model, rng):
    """Non-trivial BatchNorm statistics and affine parameters in a pydsconv
    model (as the peers' MobileNetV2 fixture has), so folding is exercised."""
    for _, m in model.named_modules():
        if isinstance(m, pnn.BatchNorm2d):
            c = m.num_features
            m.running_mean[...] = rng.uniform(-0.1, 0.1, c)
            m.running_var[...] = rng.uniform(0.5, 1.5, c)
            m.weight.data[...] = rng.uniform(0.5, 1.5, c)
            m.bias.data[...] = rng.uniform(-0.1, 0.1, c)


# ------------------------------------------------------------ MobileNetV2


def _make_divisible(v, divisor=8, min_value=None):
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNAct(tnn.Sequential):
    def __init__(self, cin, cout, k=3, stride=1, groups=1):
        super().__init__(
            tnn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
            tnn.BatchNorm2d(cout),
            tnn.ReLU6(inplace=True),
        )


class InvertedResidual(tnn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(inp, hidden, 1))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden),
            tnn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            tnn.BatchNorm2d(oup),
        ]
        self.conv = tnn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(tnn.Module):
    """torchvision.models.MobileNetV2 (width 1.0, round_nearest 8)."""

    SETTINGS = [
        [1, 16, 1, 1],
        [6, 24, 2, 2],
        [6, 32, 3, 2],
        [6, 64, 4, 2],
        [6, 96, 3, 1],
        [6, 160, 3, 2],
        [6, 320, 1, 1],
    ]

    def __init__(self, num_classes=1000, width_mult=1.0, dropout=0.2):
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        last = _make_divisible(1280 * max(1.0, width_mult))
        features = [ConvBNAct(3, cin, stride=2)]
        for t, c, n, s in self.SETTINGS:
            cout = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(ConvBNAct(cin, last, 1))
        self.features = tnn.Sequential(*features)
        self.classifier = tnn.Sequential(tnn.Dropout(dropout), tnn.Linear(last, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = torch.nn.functional.adaptive_avg_pool2d(x, 1)
        return self.classifier(torch.flatten(x, 1))


def load_npz_state(model, path):
    """Loads a state dict stored as an npz (keys torchvision's; keys starting
    with "_", such as the fixture's "_seed", are not weights) into a torch
    model; every parameter and buffer but num_batches_tracked must be there."""
    d = np.load(path)
    state = {k: torch.from_numpy(np.array(d[k])) for k in d.files if not k.startswith("_")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


# ------------------------------------------------ MobileNetV3-Large, EfficientNet-B0
# torchvision/models/mobilenetv3.py and efficientnet.py (ops.misc's
# Conv2dNormActivation and SqueezeExcitation), eval mode only: stochastic
# depth is the identity there.


class Conv2dNormActivation(tnn.Sequential):
    def __init__(self, cin, cout, k=3, stride=1, groups=1, act=tnn.ReLU, eps=1e-5):
        layers = [
            tnn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
            tnn.BatchNorm2d(cout, eps=eps),
        ]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


class SqueezeExcitation(tnn.Module):
    def __init__(self, cin, squeeze, act=tnn.ReLU, scale_act=tnn.Sigmoid):
        super().__init__()
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        self.fc1 = tnn.Conv2d(cin, squeeze, 1)
        self.fc2 = tnn.Conv2d(squeeze, cin, 1)
        self.activation = act()
        self.scale_activation = scale_act()

    def forward(self, x):
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return s * x


class _Block(tnn.Module):
    """torchvision's InvertedResidual (V3) / MBConv (EfficientNet): ``block``
    and a residual where the stride is 1 and the width unchanged."""

    def __init__(self, cin, k, exp, cout, se, act, stride, eps, squeeze, scale_act):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        layers = []
        if exp != cin:
            layers.append(Conv2dNormActivation(cin, exp, 1, act=act, eps=eps))
        layers.append(Conv2dNormActivation(exp, exp, k, stride, groups=exp, act=act, eps=eps))
        if se:
            layers.append(SqueezeExcitation(exp, squeeze, se, scale_act))
        layers.append(Conv2dNormActivation(exp, cout, 1, act=None, eps=eps))
        self.block = tnn.Sequential(*layers)

    def forward(self, x):
        y = self.block(x)
        return y + x if self.use_res_connect else y


class MobileNetV3Large(tnn.Module):
    """torchvision.models.mobilenet_v3_large (width 1.0, BatchNorm eps 1e-3)."""

    # input, kernel, expanded, output, SE, activation (HS: hardswish), stride
    SETTINGS = [
        (16, 3, 16, 16, False, "RE", 1),
        (16, 3, 64, 24, False, "RE", 2),
        (24, 3, 72, 24, False, "RE", 1),
        (24, 5, 72, 40, True, "RE", 2),
        (40, 5, 120, 40, True, "RE", 1),
        (40, 5, 120, 40, True, "RE", 1),
        (40, 3, 240, 80, False, "HS", 2),
        (80, 3, 200, 80, False, "HS", 1),
        (80, 3, 184, 80, False, "HS", 1),
        (80, 3, 184, 80, False, "HS", 1),
        (80, 3, 480, 112, True, "HS", 1),
        (112, 3, 672, 112, True, "HS", 1),
        (112, 5, 672, 160, True, "HS", 2),
        (160, 5, 960, 160, True, "HS", 1),
        (160, 5, 960, 160, True, "HS", 1),
    ]

    def __init__(self, num_classes=1000, dropout=0.2):
        super().__init__()
        eps = 1e-3
        layers = [Conv2dNormActivation(3, 16, 3, 2, act=tnn.Hardswish, eps=eps)]
        for cin, k, exp, cout, se, a, s in self.SETTINGS:
            act = tnn.Hardswish if a == "HS" else tnn.ReLU
            layers.append(
                _Block(
                    cin, k, exp, cout, tnn.ReLU if se else None, act, s, eps,
                    _make_divisible(exp // 4, 8), tnn.Hardsigmoid,
                )
            )  # fmt: skip
        layers.append(Conv2dNormActivation(160, 960, 1, act=tnn.Hardswish, eps=eps))
        self.features = tnn.Sequential(*layers)
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        self.classifier = tnn.Sequential(
            tnn.Linear(960, 1280), tnn.Hardswish(), tnn.Dropout(dropout),
            tnn.Linear(1280, num_classes),
        )  # fmt: skip

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class EfficientNetB0(tnn.Module):
    """torchvision.models.efficientnet_b0 (BatchNorm eps 1e-5, SiLU)."""

    # expansion, kernel, first stride, input, output, repeats
    SETTINGS = [
        (1, 3, 1, 32, 16, 1),
        (6, 3, 2, 16, 24, 2),
        (6, 5, 2, 24, 40, 2),
        (6, 3, 2, 40, 80, 3),
        (6, 5, 1, 80, 112, 3),
        (6, 5, 2, 112, 192, 4),
        (6, 3, 1, 192, 320, 1),
    ]

    def __init__(self, num_classes=1000, dropout=0.2):
        super().__init__()
        layers = [Conv2dNormActivation(3, 32, 3, 2, act=tnn.SiLU)]
        for t, k, s, cin, cout, n in self.SETTINGS:
            stage = []
            for i in range(n):
                c = cin if i == 0 else cout
                exp = _make_divisible(c * t, 8)
                stage.append(
                    _Block(
                        c, k, exp, cout, tnn.SiLU, tnn.SiLU, s if i == 0 else 1, 1e-5,
                        max(1, c // 4), tnn.Sigmoid,
                    )
                )  # fmt: skip
            layers.append(tnn.Sequential(*stage))
        layers.append(Conv2dNormActivation(320, 1280, 1, act=tnn.SiLU))
        self.features = tnn.Sequential(*layers)
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        self.classifier = tnn.Sequential(tnn.Dropout(dropout), tnn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def load_state(model, state, what):
    """Loads {key: numpy array} (torchvision's keys) into a torch model; every
    parameter and buffer but num_batches_tracked must be there."""
    t = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in state.items()}
    t = {k: v for k, v in t.items() if not k.endswith("num_batches_tracked")}
    missing, unexpected = model.load_state_dict(t, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{what}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()
