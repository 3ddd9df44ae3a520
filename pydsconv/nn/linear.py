"""Fully connected layer and Flatten."""

from __future__ import annotations

import numpy as np

import pydsconv

from ._util import (
    as_rng,
    bias_uniform,
    check_dtype,
    check_grad,
    check_input,
    check_int,
    kaiming_uniform,
)
from .module import Module, Parameter

__all__ = ["Linear", "Flatten"]


class Linear(Module):
    """``y = x @ weight.T + bias``, as PyTorch's ``nn.Linear``.

    The matrix product runs on pydsconv's pointwise op (a batch of vectors
    is an NHWC image of 1x1 pixels): forward ``pointwise_conv2d``, backward
    ``pointwise_conv2d_backward``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, optional
    dtype : float32 or float64, optional
    rng : None, int or numpy.random.Generator, optional
        Initialisation as PyTorch: U(-1/sqrt(in_features), 1/sqrt(in_features)).

    Attributes
    ----------
    weight : Parameter, (out_features, in_features)
    bias : Parameter (out_features,) or None
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, rng=None):
        super().__init__()
        self.in_features = check_int("in_features", in_features)
        self.out_features = check_int("out_features", out_features)
        dt = check_dtype(dtype)
        rng = as_rng(rng)
        self.weight = Parameter(
            kaiming_uniform(rng, (self.out_features, self.in_features), self.in_features, dt)
        )
        self.bias = (
            Parameter(bias_uniform(rng, self.out_features, self.in_features, dt)) if bias else None
        )
        self._x = None

    def forward(self, x):
        check_input(self, x, self.in_features, ndim=2, dtype=self.weight.dtype)
        x4 = np.ascontiguousarray(x).reshape(x.shape[0], 1, 1, self.in_features)
        b = None if self.bias is None else self.bias.data
        y = pydsconv.pointwise_conv2d(x4, self.weight.data, b, layout="NHWC")
        self._x = x4
        return y.reshape(x.shape[0], self.out_features)

    def backward(self, grad_out, input_grad=True):
        x4 = self._saved("_x")
        n = x4.shape[0]
        check_grad(self, grad_out, (n, self.out_features), x4.dtype)
        wg = self.weight.requires_grad
        bg = self.bias is not None and self.bias.requires_grad
        if not (input_grad or wg or bg):
            return None
        g4 = np.ascontiguousarray(grad_out).reshape(n, 1, 1, self.out_features)
        gx, gw, gb = pydsconv.pointwise_conv2d_backward(
            g4,
            x4,
            self.weight.data,
            layout="NHWC",
            input_grad=input_grad,
            weight_grad=wg,
            bias_grad=bg,
        )
        self.weight.accumulate(gw)
        if bg:
            self.bias.accumulate(gb)
        return None if gx is None else gx.reshape(n, self.in_features)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class Flatten(Module):
    """(N, ...) -> (N, prod(...)), in the input's memory order (C order)."""

    def __init__(self):
        super().__init__()
        self._shape = None

    def forward(self, x):
        if not isinstance(x, np.ndarray) or x.ndim < 1:
            raise TypeError(f"{self!r}: input must be a NumPy array with a batch axis")
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out, input_grad=True):
        shape = self._saved("_shape")
        return grad_out.reshape(shape) if input_grad else None
