"""Small helpers shared by the layers: argument checks, initialisation, layouts."""

from __future__ import annotations

import math

import numpy as np

from .. import _args, _core, reference
from .._args import (  # noqa: F401  (the layers import them here)
    NEEDS_PRE_ACTIVATION,
    activation_grad,
    check_activation,
)

LAYOUTS = ("NCHW", "NHWC")


def apply_activation(x, activation):
    """``activation(x)`` as a new C-contiguous array (``x`` is not written).
    float32 and float64 go through the kernels' own epilogue
    (``_core._activate``), so the bits equal the op's fused activation;
    other dtypes through :mod:`pydsconv.reference`'s formulas, in float64."""
    if activation is None:
        return x
    x = np.asarray(x)
    if x.dtype in DTYPES:
        return _core._activate(np.array(x, order="C", copy=True), activation)
    return reference._activate(x.astype(np.float64), activation)


DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_int(name, value, minimum=1):
    """``value`` as a Python int >= ``minimum`` (TypeError / ValueError naming ``name``)."""
    return _args.to_int(name, value, minimum)


def check_pair(name, value, minimum=1):
    """int or (h, w) -> (h, w) of ints >= ``minimum`` (kernel_size, stride, dilation)."""
    return _args.to_pair(name, value, 2, minimum=minimum)


def check_padding(padding):
    """A 2-D ``padding`` as the ops take it, refused here if malformed or
    negative (so a bad layer fails when built); returned as given."""
    _args.to_padding(padding, 2, minimum=0)
    return padding


def check_layout(layout):
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
    return layout


def check_dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def check_probability(name, p):
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {p}")
    return p


def as_rng(rng):
    """None, an int seed or a ``numpy.random.Generator`` -> a Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, got {rng!r}")


def kaiming_uniform(rng, shape, fan_in, dtype):
    """PyTorch's default weight init: ``kaiming_uniform_(a=sqrt(5))``.

    That is U(-b, b) with ``b = gain * sqrt(3 / fan_in)``, ``gain =
    sqrt(2 / (1 + 5))``, i.e. ``b = 1 / sqrt(fan_in)``.
    """
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def bias_uniform(rng, n, fan_in, dtype):
    """PyTorch's default bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=(n,)).astype(dtype)


def channel_axis(layout):
    return 1 if layout == "NCHW" else 3


def spatial_axes(layout):
    return (2, 3) if layout == "NCHW" else (1, 2)


def per_channel(v, layout):
    """A (C,) vector shaped to broadcast against an NCHW or NHWC tensor."""
    return v.reshape(1, -1, 1, 1) if layout == "NCHW" else v.reshape(1, 1, 1, -1)


def check_input(layer, x, channels=None, layout="NCHW", ndim=4, dtype=None):
    """Validate a layer's input: ndarray, ndim, channel count and dtype.

    Raises TypeError / ValueError naming ``layer`` (its repr) and what was
    expected.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{layer}: input must be a NumPy array, got {type(x).__name__}")
    if x.ndim != ndim:
        want = {4: "(N, C, H, W)" if layout == "NCHW" else "(N, H, W, C)", 2: "(N, features)"}
        raise ValueError(
            f"{layer}: input must be {ndim}-D {want.get(ndim, '')} "
            f"(layout={layout!r}), got shape {x.shape}"
        )
    if channels is not None:
        axis = -1 if ndim == 2 else channel_axis(layout)
        if x.shape[axis] != channels:
            where = "features" if ndim == 2 else f"channels (axis {axis % ndim} for {layout})"
            raise ValueError(
                f"{layer}: expected {channels} input {where}, got {x.shape[axis]} "
                f"(input shape {x.shape})"
            )
    if dtype is not None and x.dtype != dtype:
        raise TypeError(
            f"{layer}: input dtype {x.dtype} does not match the layer's parameters "
            f"({np.dtype(dtype)}); convert the input or the layer with .to(dtype)"
        )
    return x


def check_grad(layer, grad, shape, dtype):
    """Validate ``grad_out`` against the forward output's shape and dtype."""
    if not isinstance(grad, np.ndarray):
        raise TypeError(f"{layer}: grad_out must be a NumPy array, got {type(grad).__name__}")
    if grad.shape != tuple(shape):
        raise ValueError(
            f"{layer}: grad_out must have the forward output's shape {tuple(shape)}, "
            f"got {grad.shape}"
        )
    if grad.dtype != dtype:
        raise TypeError(f"{layer}: grad_out dtype {grad.dtype} differs from the output's {dtype}")
    return grad
