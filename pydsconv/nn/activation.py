"""Activations: ``ReLU`` and ``ReLU6``."""

from __future__ import annotations

import numpy as np

from ._util import activation_grad
from .module import Module

__all__ = ["ReLU", "ReLU6"]


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
