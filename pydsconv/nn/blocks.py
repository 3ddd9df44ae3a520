"""Building blocks of the mobile networks: conv-BN-activation, squeeze-and-excitation,
the inverted residual (MBConv).

Their children are named as torchvision's (``0``, ``1``, ``2`` in a
:class:`ConvNormActivation`; ``fc1``, ``fc2`` in a :class:`SqueezeExcitation`;
``conv`` or ``block`` in an :class:`InvertedResidual`), so state-dict keys
equal torchvision's (``features.2.conv.1.0.weight``,
``features.4.block.2.fc1.bias``) and a torchvision checkpoint converted with
``.numpy()`` loads in one ``load_state_dict`` call.
"""

from __future__ import annotations

import numpy as np

from ._util import as_rng, check_input, check_int, check_layout, check_probability, spatial_axes
from .activation import ReLU, ReLU6, Sigmoid
from .container import Sequential
from .conv import Conv2d, DepthwiseConv2d, PointwiseConv2d
from .module import Module
from .norm import BatchNorm2d

__all__ = ["ConvNormActivation", "SqueezeExcitation", "InvertedResidual", "make_divisible"]


def make_divisible(v, divisor=8, min_value=None):
    """``v`` rounded to the nearest multiple of ``divisor``, at least ``min_value``
    (default ``divisor``) and never below 90 % of ``v`` (torchvision's
    ``_make_divisible``, from the TensorFlow MobileNet code)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _instance(activation, what):
    """An activation module from a Module subclass (instantiated), or None."""
    if activation is None:
        return None
    if isinstance(activation, type) and issubclass(activation, Module):
        return activation()
    raise TypeError(
        f"{what} must be None or a pydsconv.nn activation class (e.g. nn.ReLU6), got {activation!r}"
    )


class ConvNormActivation(Sequential):
    """Convolution (no bias) -> :class:`BatchNorm2d` -> activation, as
    torchvision's ``Conv2dNormActivation``: children ``0``, ``1`` and (with an
    activation) ``2``.

    The convolution is a :class:`DepthwiseConv2d` when ``groups ==
    in_channels == out_channels``, a :class:`PointwiseConv2d` for a 1x1
    stride-1 ``groups=1`` convolution, otherwise a :class:`Conv2d`; padding is
    PyTorch's ``(kernel_size - 1) // 2 * dilation`` on every side.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, dilation : int, optional
    groups : int, optional
        1 or ``in_channels`` (depthwise; then ``out_channels`` must equal it).
    activation : pydsconv.nn activation class or None, optional
        E.g. ``nn.ReLU6``; instantiated without arguments.
    eps, momentum : float, optional
        Of the BatchNorm (torchvision's MobileNetV3 uses 1e-3 and 0.01).
    layout, dtype, rng : optional
        As the layers.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size=3,
        stride=1,
        groups=1,
        dilation=1,
        activation=ReLU,
        eps=1e-5,
        momentum=0.1,
        layout="NCHW",
        dtype=np.float32,
        rng=None,
    ):
        in_channels = check_int("in_channels", in_channels)
        out_channels = check_int("out_channels", out_channels)
        kernel_size = check_int("kernel_size", kernel_size)
        stride = check_int("stride", stride)
        dilation = check_int("dilation", dilation)
        groups = check_int("groups", groups)
        rng = as_rng(rng)
        pad = (kernel_size - 1) // 2 * dilation
        common = dict(layout=layout, dtype=dtype, rng=rng)
        if groups == in_channels and in_channels == out_channels and groups > 1:
            conv = DepthwiseConv2d(
                in_channels, kernel_size, stride, pad, dilation, bias=False, **common
            )
        elif groups != 1:
            raise ValueError(
                f"groups must be 1 or in_channels = out_channels (depthwise), got groups={groups} "
                f"for {in_channels} -> {out_channels} channels"
            )
        elif kernel_size == 1 and stride == 1:
            conv = PointwiseConv2d(in_channels, out_channels, bias=False, **common)
        else:
            conv = Conv2d(
                in_channels, out_channels, kernel_size, stride, pad, dilation, bias=False, **common
            )
        layers = [
            conv,
            BatchNorm2d(out_channels, eps=eps, momentum=momentum, layout=layout, dtype=dtype),
        ]
        act = _instance(activation, "activation")
        if act is not None:
            layers.append(act)
        super().__init__(*layers)


class SqueezeExcitation(Module):
    """Squeeze-and-excitation (Hu et al. 2018), as torchvision's ``SqueezeExcitation``.

    ``y = x * gate(fc2(act(fc1(mean_HW(x)))))`` per image and channel: global
    average pooling, a 1x1 convolution with bias to ``squeeze_channels``
    (``fc1``), ``activation``, a 1x1 convolution with bias back to
    ``channels`` (``fc2``), ``scale_activation`` (the gate) and the channel
    scale.  Backward is exact (the gradient reaches ``x`` both through the
    scale and through the pooled statistics).

    Parameters
    ----------
    channels, squeeze_channels : int
    activation : pydsconv.nn activation class, optional
        After ``fc1`` (MobileNetV3: ReLU; EfficientNet: SiLU).
    scale_activation : pydsconv.nn activation class, optional
        The gate (MobileNetV3: Hardsigmoid; EfficientNet and the default:
        Sigmoid).
    layout, dtype, rng : optional

    Attributes
    ----------
    fc1 : PointwiseConv2d (squeeze_channels, channels, 1, 1) with bias
    fc2 : PointwiseConv2d (channels, squeeze_channels, 1, 1) with bias
    """

    def __init__(
        self,
        channels,
        squeeze_channels,
        activation=ReLU,
        scale_activation=Sigmoid,
        layout="NCHW",
        dtype=np.float32,
        rng=None,
    ):
        super().__init__()
        self.channels = check_int("channels", channels)
        self.squeeze_channels = check_int("squeeze_channels", squeeze_channels)
        self.layout = check_layout(layout)
        rng = as_rng(rng)
        self.fc1 = PointwiseConv2d(channels, squeeze_channels, layout=layout, dtype=dtype, rng=rng)
        self.fc2 = PointwiseConv2d(squeeze_channels, channels, layout=layout, dtype=dtype, rng=rng)
        self.activation = _instance(activation, "activation")
        self.scale_activation = _instance(scale_activation, "scale_activation")
        if self.scale_activation is None:
            raise TypeError("SqueezeExcitation: scale_activation must not be None")
        self._cache = None

    def forward(self, x):
        check_input(self, x, self.channels, self.layout, 4, self.fc1.weight.dtype)
        s = x.mean(axis=spatial_axes(self.layout), keepdims=True)
        z = self.fc1(s)
        if self.activation is not None:
            z = self.activation(z)
        g = self.scale_activation(self.fc2(z))
        self._cache = (x, g)
        return x * g

    def backward(self, grad_out, input_grad=True):
        x, g = self._saved("_cache")
        if grad_out.shape != x.shape:
            raise ValueError(
                f"{self!r}: grad_out must have the forward output's shape {x.shape}, "
                f"got {grad_out.shape}"
            )
        axes = spatial_axes(self.layout)
        need_chain = input_grad or self.has_trainable()
        gx = grad_out * g if input_grad else None
        if need_chain:
            gg = np.sum(grad_out * x, axis=axes, keepdims=True, dtype=x.dtype)
            gz = self.fc2.backward(self.scale_activation.backward(gg))
            if self.activation is not None:
                gz = self.activation.backward(gz)
            gs = self.fc1.backward(gz, input_grad=input_grad)
            if input_grad:
                hw = x.shape[axes[0]] * x.shape[axes[1]]
                gx = gx + gs / x.dtype.type(hw)
        return gx

    def extra_repr(self):
        return f"{self.channels}, {self.squeeze_channels}, layout={self.layout!r}"


class InvertedResidual(Module):
    """The inverted residual block of MobileNetV2/V3 and EfficientNet's MBConv.

    The body (a :class:`Sequential` named ``body_name``): a 1x1 expansion
    to ``expanded_channels`` (a :class:`ConvNormActivation`; skipped when
    ``expanded_channels == in_channels``), a ``kernel_size`` depthwise
    convolution with ``stride`` (BN, activation), an optional
    :class:`SqueezeExcitation` with ``se_channels`` squeeze channels, and a
    1x1 projection to ``out_channels`` with BatchNorm and no activation.  The
    input is added to the body's output when ``stride == 1`` and
    ``in_channels == out_channels`` (``use_res_connect``).

    Parameters
    ----------
    in_channels, out_channels, expanded_channels : int
    stride, kernel_size : int, optional
    activation : pydsconv.nn activation class, optional
        Of the expansion and the depthwise stage (ReLU6, ReLU, Hardswish,
        SiLU).
    se_channels : int or None, optional
        None: no squeeze-and-excitation.
    se_activation, se_gate : pydsconv.nn activation classes, optional
        The SE's inner activation and gate (see :class:`SqueezeExcitation`).
    project_activation_module : bool, optional
        Whether the projection is a :class:`ConvNormActivation` (torchvision's
        MobileNetV3 and EfficientNet: keys ``block.K.0``, ``block.K.1``) or a
        bare convolution and BatchNorm (MobileNetV2: ``conv.K``,
        ``conv.K+1``).
    body_name : str, optional
        ``"conv"`` (MobileNetV2) or ``"block"`` (MobileNetV3, EfficientNet).
    stochastic_depth : float in [0, 1), optional
        EfficientNet's stochastic depth ("row" mode): while training and for a
        residual block, each image's body output is dropped with this
        probability and the kept ones scaled by ``1 / (1 - p)``; identity in
        eval mode.
    eps, momentum : float, optional
        Of every BatchNorm.
    layout, dtype, rng : optional
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        expanded_channels,
        stride=1,
        kernel_size=3,
        activation=ReLU6,
        se_channels=None,
        se_activation=ReLU,
        se_gate=Sigmoid,
        project_activation_module=False,
        body_name="conv",
        stochastic_depth=0.0,
        eps=1e-5,
        momentum=0.1,
        layout="NCHW",
        dtype=np.float32,
        rng=None,
    ):
        super().__init__()
        in_channels = check_int("in_channels", in_channels)
        out_channels = check_int("out_channels", out_channels)
        expanded_channels = check_int("expanded_channels", expanded_channels)
        stride = check_int("stride", stride)
        if body_name not in ("conv", "block"):
            raise ValueError(f"body_name must be 'conv' or 'block', got {body_name!r}")
        rng = as_rng(rng)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride = stride
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.stochastic_depth = check_probability("stochastic_depth", stochastic_depth)
        self.layout = check_layout(layout)
        self._rng = rng
        self._body_name = body_name
        common = dict(eps=eps, momentum=momentum, layout=layout, dtype=dtype, rng=rng)
        layers = []
        if expanded_channels != in_channels:
            layers.append(
                ConvNormActivation(
                    in_channels, expanded_channels, 1, activation=activation, **common
                )
            )
        layers.append(
            ConvNormActivation(
                expanded_channels,
                expanded_channels,
                kernel_size,
                stride,
                groups=expanded_channels,
                activation=activation,
                **common,
            )
        )
        if se_channels is not None:
            layers.append(
                SqueezeExcitation(
                    expanded_channels,
                    se_channels,
                    activation=se_activation,
                    scale_activation=se_gate,
                    layout=layout,
                    dtype=dtype,
                    rng=rng,
                )
            )
        if project_activation_module:
            layers.append(
                ConvNormActivation(expanded_channels, out_channels, 1, activation=None, **common)
            )
        else:
            layers.append(
                PointwiseConv2d(
                    expanded_channels, out_channels, bias=False, layout=layout, dtype=dtype, rng=rng
                )
            )
            layers.append(
                BatchNorm2d(out_channels, eps=eps, momentum=momentum, layout=layout, dtype=dtype)
            )
        setattr(self, body_name, Sequential(*layers))
        self._mask = None

    @property
    def body(self):
        """The block without the residual connection (``conv`` or ``block``)."""
        return self._modules[self._body_name]

    def forward(self, x):
        check_input(self, x, self.in_channels, self.layout, 4)
        y = self.body(x)
        if not self.use_res_connect:
            return y
        self._mask = None
        if self.training and self.stochastic_depth > 0.0:
            keep = 1.0 - self.stochastic_depth
            n = x.shape[0]
            mask = (self._rng.random(n) < keep).astype(y.dtype) / y.dtype.type(keep)
            self._mask = mask.reshape(n, 1, 1, 1)
            y = y * self._mask
        return y + x

    def backward(self, grad_out, input_grad=True):
        if not self.use_res_connect:
            return self.body.backward(grad_out, input_grad=input_grad)
        g = grad_out if self._mask is None else grad_out * self._mask
        gb = self.body.backward(g, input_grad=input_grad)
        return gb + grad_out if input_grad else None

    def extra_repr(self):
        return (
            f"{self.in_channels}, {self.out_channels}, stride={self.stride}, "
            f"residual={self.use_res_connect}"
        )
