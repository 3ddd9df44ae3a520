"""pydsconv.nn: small, explicit training layers on NumPy arrays.

Layers run forward and backward on pydsconv's own ops (depthwise,
pointwise and the fused separable convolution), hold PyTorch-layout weights
and PyTorch-style state-dict names, and work in NCHW (default) or NHWC
(``layout=``), float32 (default) or float64 (``dtype=``).  There is no
autograd: ``y = model(x)`` caches what ``model.backward(grad_y)`` needs;
backward accumulates gradients into each ``Parameter.grad`` and returns the
input gradient.

>>> import numpy as np
>>> from pydsconv import nn
>>> model = nn.SeparableConvNet(in_channels=1, num_classes=10, input_size=8, rng=0)
>>> opt = nn.Adam(model.parameters(), lr=1e-2)
>>> crit = nn.CrossEntropyLoss()
>>> x = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
>>> y = np.arange(16) % 10
>>> loss = crit(model(x), y)
>>> opt.zero_grad(); _ = model.backward(crit.backward(), input_grad=False); opt.step()

Contents: :class:`Module`, :class:`Parameter`, :class:`Sequential`,
:class:`Identity`; layers :class:`Conv2d`, :class:`DepthwiseConv2d`,
:class:`PointwiseConv2d`, :class:`SeparableConv2d`, :class:`BatchNorm2d`,
:class:`ReLU`, :class:`ReLU6`, :class:`Hardswish`, :class:`Hardsigmoid`,
:class:`SiLU`, :class:`Sigmoid`, :class:`GlobalAvgPool2d`, :class:`Flatten`,
:class:`Linear`, :class:`Dropout`; blocks :class:`ConvNormActivation`,
:class:`SqueezeExcitation`, :class:`InvertedResidual`; :func:`fuse_conv_bn`,
:func:`fold_batchnorm`; :class:`CrossEntropyLoss`; :class:`SGD`,
:class:`Adam`; models :class:`SeparableConvNet`, :class:`MobileNetV1`,
:class:`MobileNetV2`, :class:`MobileNetV3Large`, :class:`EfficientNetB0`,
:func:`weight_count`; checkpoints :func:`save`, :func:`load`,
:func:`load_metadata`; inference plans :func:`compile`.
"""

from .activation import Hardsigmoid, Hardswish, ReLU, ReLU6, Sigmoid, SiLU
from .blocks import ConvNormActivation, InvertedResidual, SqueezeExcitation, make_divisible
from .compiler import compile
from .container import Identity, Sequential
from .conv import Conv2d, DepthwiseConv2d, PointwiseConv2d, SeparableConv2d
from .dropout import Dropout
from .linear import Flatten, Linear
from .loss import CrossEntropyLoss, log_softmax
from .models import (
    EfficientNetB0,
    MobileNetV1,
    MobileNetV2,
    MobileNetV3Large,
    SeparableConvNet,
    weight_count,
)
from .module import Module, Parameter, load, load_metadata, save
from .norm import BatchNorm2d, fold_batchnorm, fuse_conv_bn
from .optim import SGD, Adam, Optimizer
from .pooling import GlobalAvgPool2d

__all__ = [
    "Module",
    "Parameter",
    "Sequential",
    "Identity",
    "Conv2d",
    "DepthwiseConv2d",
    "PointwiseConv2d",
    "SeparableConv2d",
    "BatchNorm2d",
    "fuse_conv_bn",
    "fold_batchnorm",
    "ReLU",
    "ReLU6",
    "Hardswish",
    "Hardsigmoid",
    "SiLU",
    "Sigmoid",
    "GlobalAvgPool2d",
    "Flatten",
    "Linear",
    "Dropout",
    "ConvNormActivation",
    "SqueezeExcitation",
    "InvertedResidual",
    "make_divisible",
    "CrossEntropyLoss",
    "log_softmax",
    "Optimizer",
    "SGD",
    "Adam",
    "SeparableConvNet",
    "MobileNetV1",
    "MobileNetV2",
    "MobileNetV3Large",
    "EfficientNetB0",
    "weight_count",
    "save",
    "load",
    "load_metadata",
    "compile",
]
