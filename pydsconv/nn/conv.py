"""Convolution layers on pydsconv's ops: forward and backward both run in C++.

* :class:`DepthwiseConv2d` -> ``depthwise_conv2d`` / ``depthwise_conv2d_backward``
* :class:`PointwiseConv2d` -> ``pointwise_conv2d`` / ``pointwise_conv2d_backward``
* :class:`SeparableConv2d` -> the two above while training, the fused
  ``separable_conv2d`` in eval mode
* :class:`Conv2d` (a standard convolution, e.g. a network's stem) -> im2col
  by ``depthwise_conv2d`` with one-hot kernels, then the GEMM by
  ``pointwise_conv2d``; backward through the same two ops.

Weights use PyTorch's layout whatever the data layout, and are initialised
like PyTorch's defaults (kaiming-uniform with ``a = sqrt(5)``, i.e.
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias the same bound).
"""

from __future__ import annotations

import numpy as np

import pydsconv

from ._util import (
    NEEDS_PRE_ACTIVATION,
    activation_grad,
    apply_activation,
    as_rng,
    bias_uniform,
    check_activation,
    check_dtype,
    check_grad,
    check_input,
    check_int,
    check_layout,
    check_padding,
    check_pair,
    kaiming_uniform,
)
from .module import Module, Parameter

__all__ = ["Conv2d", "DepthwiseConv2d", "PointwiseConv2d", "SeparableConv2d"]


class _Conv(Module):
    """Shared plumbing: activation, layout, dtype, caches and error context."""

    def __init__(self, activation, layout, dtype):
        super().__init__()
        self.activation = check_activation("activation", activation)
        self.layout = check_layout(layout)
        self._dtype = check_dtype(dtype)
        self._x = None
        self._y = None
        self._z = None
        self._keep_pre = False  # SeparableConv2d's backward after a fused forward sets it

    def _call(self, fn, *args, **kwargs):
        """Run a pydsconv op; its ValueErrors get this layer's name in front."""
        try:
            return fn(*args, **kwargs)
        except ValueError as exc:
            raise ValueError(f"{self!r}: {exc}") from exc

    def _check(self, x, channels):
        return check_input(self, x, channels, self.layout, 4, self.weight.dtype)

    def _run(self, fn, *args, **kwargs):
        """``fn(*args, activation=self.activation, **kwargs)``: fused, except
        for hardswish and silu in training mode, whose derivative needs the
        value before the activation: then the op runs without one, keeps that
        value (``_z``) and the activation follows (the same bits as fused)."""
        act = self.activation
        self._z = None
        if act in NEEDS_PRE_ACTIVATION and (self.training or self._keep_pre):
            z = self._call(fn, *args, activation=None, **kwargs)
            self._z = z
            return apply_activation(z, act)
        return self._call(fn, *args, activation=act, **kwargs)

    def _finish(self, x, y):
        """Save what backward needs: the input and (for the activation mask) the output."""
        self._x = x
        self._y = y
        return y

    def _grad_pre_activation(self, grad_out):
        y = self._saved("_y")
        check_grad(self, grad_out, y.shape, y.dtype)
        z = None
        if self.activation in NEEDS_PRE_ACTIVATION:
            z = self.__dict__.get("_z")
            if z is None:
                raise RuntimeError(
                    f"{self!r}: backward through activation={self.activation!r} needs a "
                    "forward pass in training mode (eval mode keeps no pre-activation)"
                )
        return activation_grad(grad_out, y, self.activation, z)

    def _flags(self):
        b = getattr(self, "bias", None)
        return self.weight.requires_grad, (b is not None and b.requires_grad)


class DepthwiseConv2d(_Conv):
    """Depthwise 2-D convolution: each input channel with its own ``multiplier`` filters.

    Equivalent to PyTorch's ``nn.Conv2d(C, C*M, k, groups=C)``: output
    channel ``c*M + m`` reads input channel ``c``.

    Parameters
    ----------
    in_channels : int
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same"
        As the pydsconv ops: ``"same"`` is TensorFlow's rule at every stride
        (output ``ceil(in / stride)``, the odd pixel at the bottom/right); an
        int is PyTorch's symmetric padding.
    dilation : int or (int, int), optional
    multiplier : int, optional
        Channel multiplier M (output has ``in_channels * M`` channels).
    bias : bool, optional
    activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid", optional
        Fused into the op after the bias; backward applies its derivative
        (from the saved output, as PyTorch: zero where the output is clipped;
        hardswish and silu from the value before the activation, which a
        training-mode forward runs the op without the activation to keep).
    layout : "NCHW" or "NHWC", optional
        Data layout of the input and output (weights are PyTorch's either way).
    dtype : float32 or float64, optional
        Of the parameters; inputs must have the same dtype.
    rng : None, int or numpy.random.Generator, optional
        Source of the initial weights (an int seeds a new generator).

    Attributes
    ----------
    weight : Parameter, (C*M, 1, kH, kW)
    bias : Parameter (C*M,) or None
    """

    def __init__(
        self,
        in_channels,
        kernel_size=3,
        stride=1,
        padding=0,
        dilation=1,
        multiplier=1,
        bias=True,
        activation=None,
        layout="NCHW",
        dtype=np.float32,
        rng=None,
    ):
        super().__init__(activation, layout, dtype)
        self.in_channels = check_int("in_channels", in_channels)
        self.multiplier = check_int("multiplier", multiplier)
        self.out_channels = self.in_channels * self.multiplier
        self.kernel_size = check_pair("kernel_size", kernel_size)
        self.stride = check_pair("stride", stride)
        self.dilation = check_pair("dilation", dilation)
        self.padding = check_padding(padding)
        rng = as_rng(rng)
        kh, kw = self.kernel_size
        fan_in = kh * kw
        self.weight = Parameter(
            kaiming_uniform(rng, (self.out_channels, 1, kh, kw), fan_in, self._dtype)
        )
        self.bias = (
            Parameter(bias_uniform(rng, self.out_channels, fan_in, self._dtype)) if bias else None
        )

    def _geometry(self):
        return dict(
            stride=self.stride, padding=self.padding, dilation=self.dilation, layout=self.layout
        )

    def forward(self, x):
        self._check(x, self.in_channels)
        b = None if self.bias is None else self.bias.data
        y = self._run(pydsconv.depthwise_conv2d, x, self.weight.data, b, **self._geometry())
        return self._finish(x, y)

    def backward(self, grad_out, input_grad=True):
        g = self._grad_pre_activation(grad_out)
        wg, bg = self._flags()
        if not (input_grad or wg or bg):
            return None
        gx, gw, gb = self._call(
            pydsconv.depthwise_conv2d_backward,
            g,
            self._x,
            self.weight.data,
            input_grad=input_grad,
            weight_grad=wg,
            bias_grad=bg,
            **self._geometry(),
        )
        self.weight.accumulate(gw)
        if bg:
            self.bias.accumulate(gb)
        return gx

    def extra_repr(self):
        m = f", multiplier={self.multiplier}" if self.multiplier > 1 else ""
        return (
            f"{self.in_channels}{m}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding!r}, bias={self.bias is not None}, "
            f"activation={self.activation!r}, layout={self.layout!r}"
        )


class PointwiseConv2d(_Conv):
    """Pointwise (1x1) convolution: a matrix product over channels.

    Equivalent to PyTorch's ``nn.Conv2d(C_in, C_out, 1)``.

    Parameters
    ----------
    in_channels, out_channels : int
    bias : bool, optional
    activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid", optional
        Fused into the op after the bias; backward applies its derivative
        (from the saved output, as PyTorch: zero where the output is clipped;
        hardswish and silu from the value before the activation, which a
        training-mode forward runs the op without the activation to keep).
    layout : "NCHW" or "NHWC", optional
        Data layout of the input and output (weights are PyTorch's either way).
    dtype : float32 or float64, optional
        Of the parameters; inputs must have the same dtype.
    rng : None, int or numpy.random.Generator, optional
        Source of the initial weights (an int seeds a new generator).

    Attributes
    ----------
    weight : Parameter, (C_out, C_in, 1, 1)
    bias : Parameter (C_out,) or None
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        bias=True,
        activation=None,
        layout="NCHW",
        dtype=np.float32,
        rng=None,
    ):
        super().__init__(activation, layout, dtype)
        self.in_channels = check_int("in_channels", in_channels)
        self.out_channels = check_int("out_channels", out_channels)
        rng = as_rng(rng)
        fan_in = self.in_channels
        self.weight = Parameter(
            kaiming_uniform(rng, (self.out_channels, self.in_channels, 1, 1), fan_in, self._dtype)
        )
        self.bias = (
            Parameter(bias_uniform(rng, self.out_channels, fan_in, self._dtype)) if bias else None
        )

    def forward(self, x):
        self._check(x, self.in_channels)
        b = None if self.bias is None else self.bias.data
        y = self._run(pydsconv.pointwise_conv2d, x, self.weight.data, b, layout=self.layout)
        return self._finish(x, y)

    def backward(self, grad_out, input_grad=True):
        g = self._grad_pre_activation(grad_out)
        wg, bg = self._flags()
        if not (input_grad or wg or bg):
            return None
        gx, gw, gb = self._call(
            pydsconv.pointwise_conv2d_backward,
            g,
            self._x,
            self.weight.data,
            layout=self.layout,
            input_grad=input_grad,
            weight_grad=wg,
            bias_grad=bg,
        )
        self.weight.accumulate(gw)
        if bg:
            self.bias.accumulate(gb)
        return gx

    def extra_repr(self):
        return (
            f"{self.in_channels}, {self.out_channels}, bias={self.bias is not None}, "
            f"activation={self.activation!r}, layout={self.layout!r}"
        )


class Conv2d(_Conv):
    """Standard 2-D convolution (``groups=1``), e.g. the stem of a MobileNet.

    Computed with pydsconv's two ops: **im2col** is a depthwise convolution
    of the input with one-hot kernels (multiplier ``kH*kW``; channel
    ``c*kH*kW + i*kW + j`` is input channel ``c`` shifted by tap ``(i, j)``,
    which is exactly the order of PyTorch's weight flattened to
    ``(C_out, C_in*kH*kW)``), so every padding, stride and dilation rule is
    the ops' own; the GEMM is ``pointwise_conv2d``.  Backward runs
    ``pointwise_conv2d_backward`` and then ``depthwise_conv2d_backward``
    (col2im).  The columns tensor (``kH*kW`` times the input) is kept for
    backward; this suits the narrow stem convolutions it is meant for.
    (A non-finite input value would leak into neighbouring columns through
    ``0 * inf``; inputs are expected finite.)

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same"
        As the pydsconv ops: ``"same"`` is TensorFlow's rule at every stride
        (output ``ceil(in / stride)``, the odd pixel at the bottom/right); an
        int is PyTorch's symmetric padding.
    dilation : int or (int, int), optional
    bias : bool, optional
    activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid", optional
        Fused into the op after the bias; backward applies its derivative
        (from the saved output, as PyTorch: zero where the output is clipped;
        hardswish and silu from the value before the activation, which a
        training-mode forward runs the op without the activation to keep).
    layout : "NCHW" or "NHWC", optional
        Data layout of the input and output (weights are PyTorch's either way).
    dtype : float32 or float64, optional
        Of the parameters; inputs must have the same dtype.
    rng : None, int or numpy.random.Generator, optional
        Source of the initial weights (an int seeds a new generator).

    Attributes
    ----------
    weight : Parameter, (C_out, C_in, kH, kW)
    bias : Parameter (C_out,) or None
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        bias=True,
        activation=None,
        layout="NCHW",
        dtype=np.float32,
        rng=None,
    ):
        super().__init__(activation, layout, dtype)
        self.in_channels = check_int("in_channels", in_channels)
        self.out_channels = check_int("out_channels", out_channels)
        self.kernel_size = check_pair("kernel_size", kernel_size)
        self.stride = check_pair("stride", stride)
        self.dilation = check_pair("dilation", dilation)
        self.padding = check_padding(padding)
        rng = as_rng(rng)
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw
        self.weight = Parameter(
            kaiming_uniform(rng, (self.out_channels, self.in_channels, kh, kw), fan_in, self._dtype)
        )
        self.bias = (
            Parameter(bias_uniform(rng, self.out_channels, fan_in, self._dtype)) if bias else None
        )
        self._make_taps(self._dtype)
        self._cols = None

    def _make_taps(self, dtype):
        kh, kw = self.kernel_size
        taps = np.zeros((self.in_channels, kh * kw, 1, kh, kw), dtype)
        for t in range(kh * kw):
            taps[:, t, 0, t // kw, t % kw] = 1
        self._taps = taps.reshape(self.in_channels * kh * kw, 1, kh, kw)

    def _on_dtype(self, dtype):
        self._make_taps(dtype)

    def _geometry(self):
        return dict(
            stride=self.stride, padding=self.padding, dilation=self.dilation, layout=self.layout
        )

    def _w2d(self):
        return self.weight.data.reshape(self.out_channels, -1)

    def forward(self, x):
        self._check(x, self.in_channels)
        cols = self._call(pydsconv.depthwise_conv2d, x, self._taps, **self._geometry())
        b = None if self.bias is None else self.bias.data
        y = self._run(pydsconv.pointwise_conv2d, cols, self._w2d(), b, layout=self.layout)
        self._cols = cols
        return self._finish(x, y)

    def backward(self, grad_out, input_grad=True):
        g = self._grad_pre_activation(grad_out)
        wg, bg = self._flags()
        if not (input_grad or wg or bg):
            return None
        gcols, gw, gb = self._call(
            pydsconv.pointwise_conv2d_backward,
            g,
            self._cols,
            self._w2d(),
            layout=self.layout,
            input_grad=input_grad,
            weight_grad=wg,
            bias_grad=bg,
        )
        self.weight.accumulate(gw)
        if bg:
            self.bias.accumulate(gb)
        if not input_grad:
            return None
        gx, _, _ = self._call(
            pydsconv.depthwise_conv2d_backward,
            gcols,
            self._x,
            self._taps,
            weight_grad=False,
            bias_grad=False,
            **self._geometry(),
        )
        return gx

    def extra_repr(self):
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding!r}, bias={self.bias is not None}, "
            f"activation={self.activation!r}, layout={self.layout!r}"
        )


class SeparableConv2d(Module):
    """Depthwise separable convolution: :class:`DepthwiseConv2d` then :class:`PointwiseConv2d`.

    **Training mode** composes the two layers (``depthwise_conv2d`` then
    ``pointwise_conv2d``) and keeps the intermediate tensor, which the
    pointwise weight gradient needs.  **Eval mode** runs the fused
    ``pydsconv.separable_conv2d``, which never materialises the
    intermediate; if ``backward`` follows an eval-mode forward, the
    intermediate is recomputed from the saved input first.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same"
        As the pydsconv ops: ``"same"`` is TensorFlow's rule at every stride
        (output ``ceil(in / stride)``, the odd pixel at the bottom/right); an
        int is PyTorch's symmetric padding.
    dilation : int or (int, int), optional
    multiplier : int, optional
        Depthwise channel multiplier M.
    bias : bool or (bool, bool), optional
        Biases of (depthwise, pointwise); one bool sets both.
    mid_activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid", optional
        After the depthwise stage.
    activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid", optional
        Fused into the op after the bias; backward applies its derivative
        (from the saved output, as PyTorch: zero where the output is clipped;
        hardswish and silu from the value before the activation, which a
        training-mode forward runs the op without the activation to keep).
    layout : "NCHW" or "NHWC", optional
        Data layout of the input and output (weights are PyTorch's either way).
    dtype : float32 or float64, optional
        Of the parameters; inputs must have the same dtype.
    rng : None, int or numpy.random.Generator, optional
        Source of the initial weights (an int seeds a new generator).

    Attributes
    ----------
    depthwise : DepthwiseConv2d
        Its ``weight``/``bias`` appear in the state dict as ``depthwise.weight`` etc.
    pointwise : PointwiseConv2d
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size=3,
        stride=1,
        padding=0,
        dilation=1,
        multiplier=1,
        bias=True,
        mid_activation=None,
        activation=None,
        layout="NCHW",
        dtype=np.float32,
        rng=None,
    ):
        super().__init__()
        rng = as_rng(rng)
        if isinstance(bias, (tuple, list)):
            if len(bias) != 2:
                raise ValueError(
                    f"bias must be a bool or a (depthwise, pointwise) pair, got {bias!r}"
                )
            dw_bias, pw_bias = bool(bias[0]), bool(bias[1])
        else:
            dw_bias = pw_bias = bool(bias)
        self.depthwise = DepthwiseConv2d(
            in_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            multiplier,
            dw_bias,
            mid_activation,
            layout,
            dtype,
            rng,
        )
        self.pointwise = PointwiseConv2d(
            self.depthwise.out_channels, out_channels, pw_bias, activation, layout, dtype, rng
        )
        self.in_channels = self.depthwise.in_channels
        self.out_channels = self.pointwise.out_channels
        self.layout = layout
        self._x = None
        self._y = None
        self._fused = False

    def forward(self, x):
        dw, pw = self.depthwise, self.pointwise
        if self.training:
            self._fused = False
            return pw(dw(x))
        dw._check(x, dw.in_channels)
        b1 = None if dw.bias is None else dw.bias.data
        b2 = None if pw.bias is None else pw.bias.data
        y = dw._call(
            pydsconv.separable_conv2d,
            x,
            dw.weight.data,
            pw.weight.data,
            b1,
            b2,
            mid_activation=dw.activation,
            activation=pw.activation,
            **dw._geometry(),
        )
        self._x, self._y, self._fused = x, y, True
        return y

    def backward(self, grad_out, input_grad=True):
        dw, pw = self.depthwise, self.pointwise
        if self._fused:  # recompute the intermediate the fused forward did not keep
            dw._keep_pre = pw._keep_pre = True  # and the pre-activations hardswish/silu need
            try:
                mid = dw.forward(self._saved("_x"))
                if pw.activation in NEEDS_PRE_ACTIVATION:
                    pw.forward(mid)
                else:
                    pw._x, pw._y = mid, self._y
            finally:
                dw._keep_pre = pw._keep_pre = False
            self._fused = False
        need_mid = input_grad or dw.has_trainable()
        g = pw.backward(grad_out, input_grad=need_mid)
        return dw.backward(g, input_grad=input_grad) if need_mid else None

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}"
