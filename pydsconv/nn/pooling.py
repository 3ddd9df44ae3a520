"""Global average pooling."""

from __future__ import annotations

import numpy as np

from ._util import check_input, check_layout, spatial_axes
from .module import Module

__all__ = ["GlobalAvgPool2d"]


class GlobalAvgPool2d(Module):
    """Mean over the spatial axes: (N, C, H, W) or (N, H, W, C) -> (N, C).

    As PyTorch's ``AdaptiveAvgPool2d(1)`` followed by ``Flatten()`` (the
    result is 2-D, ready for :class:`Linear`).

    Parameters
    ----------
    layout : "NCHW" or "NHWC", optional
    """

    def __init__(self, layout="NCHW"):
        super().__init__()
        self.layout = check_layout(layout)
        self._shape = None

    def forward(self, x):
        check_input(self, x, None, self.layout, 4)
        self._shape = x.shape
        return x.mean(axis=spatial_axes(self.layout))

    def backward(self, grad_out, input_grad=True):
        shape = self._saved("_shape")
        n, c = (shape[0], shape[1]) if self.layout == "NCHW" else (shape[0], shape[3])
        if grad_out.shape != (n, c):
            raise ValueError(f"{self!r}: grad_out must have shape {(n, c)}, got {grad_out.shape}")
        if not input_grad:
            return None
        h, w = (shape[2], shape[3]) if self.layout == "NCHW" else (shape[1], shape[2])
        g = grad_out / (h * w)
        g = g[:, :, None, None] if self.layout == "NCHW" else g[:, None, None, :]
        return np.ascontiguousarray(np.broadcast_to(g, shape))

    def extra_repr(self):
        return f"layout={self.layout!r}"
