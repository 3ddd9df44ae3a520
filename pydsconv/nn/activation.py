"""Activations: ``ReLU``, ``ReLU6``, ``Hardswish``, ``Hardsigmoid``, ``SiLU``
and ``Sigmoid`` (PyTorch's definitions and derivatives).  The last four run
the kernels' own epilogue code, so a layer followed by one of them gives
the bits of the same layer with the activation fused (``activation=``)."""

from __future__ import annotations

import numpy as np

from ._util import NEEDS_PRE_ACTIVATION, activation_grad, apply_activation
from .module import Module

__all__ = ["ReLU", "ReLU6", "Hardswish", "Hardsigmoid", "SiLU", "Sigmoid"]


class _Clamp(Module):
    _high = None  # clip at 0 and, if set, here
    _name = "relu"  # its derivative mask: pydsconv._args.activation_grad

    def __init__(self):
        super().__init__()
        self._y = None

    def forward(self, x):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{self!r}: input must be a NumPy array, got {type(x).__name__}")
        y = np.maximum(x, 0) if self._high is None else np.clip(x, 0, self._high)
        self._y = y
        return y

    def backward(self, grad_out, input_grad=True):
        y = self._saved("_y")
        if grad_out.shape != y.shape:
            raise ValueError(
                f"{self!r}: grad_out must have the forward output's shape {y.shape}, "
                f"got {grad_out.shape}"
            )
        if not input_grad:
            return None
        return activation_grad(grad_out, y, self._name)


class ReLU(_Clamp):
    """``max(x, 0)``; the gradient passes where the output is > 0 (as PyTorch)."""


class ReLU6(_Clamp):
    """``min(max(x, 0), 6)`` (MobileNet, Keras); the gradient passes where
    ``0 < output < 6`` (as PyTorch's ``hardtanh``)."""

    _high = 6.0
    _name = "relu6"


class _Elementwise(Module):
    """An activation the kernels also fuse; ``_name`` is its ``activation=``
    name.  Training mode keeps what backward needs: the input for hardswish
    and silu (not monotonic), else the output; eval mode keeps nothing."""

    _name = None

    def __init__(self):
        super().__init__()
        self._saved_for_grad = None

    def forward(self, x):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{self!r}: input must be a NumPy array, got {type(x).__name__}")
        y = apply_activation(x, self._name)
        if self.training:
            self._saved_for_grad = x if self._name in NEEDS_PRE_ACTIVATION else y
        else:
            self._saved_for_grad = None
        return y

    def backward(self, grad_out, input_grad=True):
        if self.__dict__.get("_saved_for_grad") is None:
            raise RuntimeError(
                f"{self!r}: backward needs a forward pass in training mode first "
                "(eval mode keeps nothing for it)"
            )
        v = self._saved_for_grad
        if grad_out.shape != v.shape:
            raise ValueError(
                f"{self!r}: grad_out must have the forward output's shape {v.shape}, "
                f"got {grad_out.shape}"
            )
        if not input_grad:
            return None
        if self._name in NEEDS_PRE_ACTIVATION:
            return activation_grad(grad_out, None, self._name, v)
        return activation_grad(grad_out, v, self._name)


class Hardswish(_Elementwise):
    """``x * relu6(x + 3) / 6`` (MobileNetV3); derivative ``x / 3 + 0.5`` on
    ``(-3, 3)``, 1 from 3 up, 0 from -3 down (as PyTorch)."""

    _name = "hardswish"


class Hardsigmoid(_Elementwise):
    """``relu6(x + 3) / 6`` (MobileNetV3's squeeze-excitation gate);
    derivative 1/6 on ``(-3, 3)``, 0 elsewhere (as PyTorch)."""

    _name = "hardsigmoid"


class SiLU(_Elementwise):
    """``x * sigmoid(x)``, computed as ``x / (1 + exp(-x))`` (EfficientNet's
    swish; NaN at ``-inf``, as PyTorch)."""

    _name = "silu"


class Sigmoid(_Elementwise):
    """``1 / (1 + exp(-x))``; derivative ``y * (1 - y)`` from the output."""

    _name = "sigmoid"
