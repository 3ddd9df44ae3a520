"""Dropout."""

from __future__ import annotations

import numpy as np

from ._util import as_rng, check_probability
from .module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability ``p``
    and scale the rest by ``1 / (1 - p)``; identity in eval mode.

    Parameters
    ----------
    p : float in [0, 1), optional
    rng : None, int or numpy.random.Generator, optional
        Source of the masks (seed it for reproducible training).
    """

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.p = check_probability("p", p)
        self._rng = as_rng(rng)
        self._mask = None

    def forward(self, x):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{self!r}: input must be a NumPy array, got {type(x).__name__}")
        if not self.training or self.p == 0.0:
            self._mask = 1.0
            return x
        keep = self._rng.random(x.shape) >= self.p
        self._mask = keep.astype(x.dtype) / x.dtype.type(1.0 - self.p)
        return x * self._mask

    def backward(self, grad_out, input_grad=True):
        mask = self._saved("_mask")
        return grad_out * mask if input_grad else None

    def extra_repr(self):
        return f"p={self.p}"
