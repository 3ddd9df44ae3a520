"""Convert convolution weights between Keras/TensorFlow and pydsconv layouts.

pydsconv (like PyTorch) stores

* depthwise kernels as ``(C*M, 1, kH, kW)`` (1-D: ``(C*M, 1, k)``), where
  ``M`` is the channel (depth) multiplier and output channel ``c*M + m``
  reads input channel ``c``;
* pointwise kernels as ``(C_out, C_in, 1, 1)`` or ``(C_out, C_in)``
  (1-D: ``(C_out, C_in, 1)`` or ``(C_out, C_in)``).

Keras/TensorFlow store

* ``DepthwiseConv2D`` / ``SeparableConv2D`` depthwise kernels as
  ``(kH, kW, C, M)`` (``SeparableConv1D``: ``(k, C, M)``); TF's output
  channel ``c*M + m`` also reads input channel ``c``, so the conversion is a
  pure transpose and the channel order is unchanged;
* pointwise kernels (and ``Conv2D`` 1x1 kernels) as ``(1, 1, C_in, C_out)``
  (``SeparableConv1D`` / ``Conv1D``: ``(1, C_in, C_out)``).

Neither layout flips the kernel: both frameworks compute cross-correlation,
``out[i, j] = sum x[i*s + di*d, j*s + dj*d] * k[di, dj]``.  Biases are 1-D in
both and need no conversion.

Every function takes an array-like of a real floating dtype (float32 and
float64 are what the ops accept), returns a new C-contiguous array of the
same dtype (never a view of its input) and raises

* ``TypeError`` for an integer, boolean, complex or non-numeric dtype (no
  silent casts);
* ``ValueError`` naming the argument and the expected shape for a wrong
  number of dimensions, a zero-length dimension or a wrong singleton axis.
"""

from __future__ import annotations

import operator
from typing import Optional

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "from_keras_depthwise",
    "to_keras_depthwise",
    "from_keras_pointwise",
    "to_keras_pointwise",
    "from_keras_depthwise1d",
    "to_keras_depthwise1d",
    "from_keras_pointwise1d",
    "to_keras_pointwise1d",
]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _as_float(w, name):
    try:
        arr = np.asarray(w)
    except Exception as exc:  # e.g. ragged nested lists
        raise TypeError(
            f"{name} must be a float32 or float64 array, got "
            f"{type(w).__name__} that NumPy cannot convert ({exc})"
        ) from None
    if arr.dtype.kind != "f":
        raise TypeError(
            f"{name} must have a floating dtype (float32 or float64), got "
            f"dtype {arr.dtype}; convert it explicitly, e.g. "
            f"{name}.astype(np.float32)"
        )
    return arr


def _check_shape(arr, name, expected, ndims):
    """``arr.ndim`` in ``ndims`` and no empty axis, else ValueError."""
    if arr.ndim not in ndims or 0 in arr.shape:
        raise ValueError(
            f"{name} must have shape {expected} with every dimension >= 1, got shape {arr.shape}"
        )


def _copy(arr):
    """A new C-contiguous array, never sharing memory with the input."""
    return np.array(arr, order="C", copy=True)


def _split_channels(total, channels, multiplier, name):
    """Return ``(C, M)`` with ``C*M == total`` from either argument."""
    if channels is not None:
        channels = _positive(channels, "channels")
    if multiplier is not None:
        multiplier = _positive(multiplier, "multiplier")
    if channels is None and multiplier is None:
        multiplier = 1
    if channels is not None and multiplier is not None:
        if channels * multiplier != total:
            raise ValueError(
                f"channels*multiplier = {channels}*{multiplier} = "
                f"{channels * multiplier} does not match the {total} output "
                f"channels of {name} (its first dimension, C*M)"
            )
        return channels, multiplier
    if channels is not None:
        if total % channels:
            raise ValueError(
                f"channels={channels} does not divide the {total} output "
                f"channels of {name} (its first dimension, C*M)"
            )
        return channels, total // channels
    if total % multiplier:
        raise ValueError(
            f"multiplier={multiplier} does not divide the {total} output "
            f"channels of {name} (its first dimension, C*M)"
        )
    return total // multiplier, multiplier


def _positive(value, name):
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an integer, got {type(value).__name__} {value!r}"
        ) from None
    if v < 1:
        raise ValueError(f"{name} must be positive, got {v}")
    return v


# --------------------------------------------------------------------------
# 2-D
# --------------------------------------------------------------------------


def from_keras_depthwise(w: ArrayLike) -> NDArray[np.floating]:
    """Keras depthwise kernel ``(kH, kW, C, M)`` -> pydsconv ``(C*M, 1, kH, kW)``.

    Parameters
    ----------
    w : array_like
        The ``depthwise_kernel`` of a Keras ``DepthwiseConv2D`` or
        ``SeparableConv2D`` layer, shape ``(kH, kW, C, M)`` where ``M`` is
        the layer's ``depth_multiplier``.

    Returns
    -------
    numpy.ndarray
        New C-contiguous array of shape ``(C*M, 1, kH, kW)``, same dtype:
        ``out[c*M + m, 0, i, j] == w[i, j, c, m]``.

    Raises
    ------
    TypeError
        ``w`` does not have a floating dtype.
    ValueError
        ``w`` is not 4-D or has an empty dimension.

    See Also
    --------
    to_keras_depthwise : The inverse.

    Examples
    --------
    >>> import numpy as np
    >>> k = np.zeros((3, 3, 8, 2), np.float32)
    >>> from_keras_depthwise(k).shape
    (16, 1, 3, 3)
    """
    arr = _as_float(w, "w")
    _check_shape(arr, "w", "(kH, kW, C, M)", (4,))
    kh, kw, c, m = arr.shape
    return _copy(arr.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw))


def to_keras_depthwise(
    w: ArrayLike, channels: Optional[int] = None, multiplier: Optional[int] = None
) -> NDArray[np.floating]:
    """pydsconv depthwise kernel ``(C*M, 1, kH, kW)`` -> Keras ``(kH, kW, C, M)``.

    The first dimension holds ``C*M`` and does not say how it splits, so
    give ``channels`` (``C``) or ``multiplier`` (``M``), or both (then they
    must multiply to ``C*M``).  With neither, ``multiplier=1`` is assumed
    (the common case, and the default of Keras' ``depth_multiplier``).

    Parameters
    ----------
    w : array_like
        Depthwise kernel of shape ``(C*M, 1, kH, kW)``.
    channels : int, optional
        Number of input channels ``C``.
    multiplier : int, optional
        Channel multiplier ``M``.  Default 1 when ``channels`` is not given.

    Returns
    -------
    numpy.ndarray
        New C-contiguous array of shape ``(kH, kW, C, M)``, same dtype:
        ``out[i, j, c, m] == w[c*M + m, 0, i, j]``.

    Raises
    ------
    TypeError
        ``w`` does not have a floating dtype, or ``channels``/``multiplier``
        is not an integer.
    ValueError
        ``w`` is not 4-D, its second dimension is not 1, it has an empty
        dimension, or ``channels``/``multiplier`` is not positive or does
        not split ``C*M``.

    See Also
    --------
    from_keras_depthwise : The inverse.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.zeros((16, 1, 3, 3), np.float32)
    >>> to_keras_depthwise(w, channels=8).shape
    (3, 3, 8, 2)
    >>> to_keras_depthwise(w).shape
    (3, 3, 16, 1)
    """
    arr = _as_float(w, "w")
    _check_shape(arr, "w", "(C*M, 1, kH, kW)", (4,))
    if arr.shape[1] != 1:
        raise ValueError(
            f"w must have shape (C*M, 1, kH, kW) (a depthwise kernel has 1 "
            f"input channel per group), got shape {arr.shape}"
        )
    total, _, kh, kw = arr.shape
    c, m = _split_channels(total, channels, multiplier, "w")
    return _copy(arr.reshape(c, m, kh, kw).transpose(2, 3, 0, 1))


def from_keras_pointwise(w: ArrayLike) -> NDArray[np.floating]:
    """Keras pointwise kernel ``(1, 1, C_in, C_out)`` -> ``(C_out, C_in, 1, 1)``.

    Parameters
    ----------
    w : array_like
        The ``pointwise_kernel`` of a Keras ``SeparableConv2D`` layer, or
        the kernel of a 1x1 ``Conv2D``: shape ``(1, 1, C_in, C_out)``.

    Returns
    -------
    numpy.ndarray
        New C-contiguous array of shape ``(C_out, C_in, 1, 1)``, same dtype:
        ``out[o, i, 0, 0] == w[0, 0, i, o]``.

    Raises
    ------
    TypeError
        ``w`` does not have a floating dtype.
    ValueError
        ``w`` is not 4-D, its first two dimensions are not 1, or it has an
        empty dimension.

    See Also
    --------
    to_keras_pointwise : The inverse.
    """
    arr = _as_float(w, "w")
    _check_shape(arr, "w", "(1, 1, C_in, C_out)", (4,))
    if arr.shape[:2] != (1, 1):
        raise ValueError(
            f"w must have shape (1, 1, C_in, C_out) (a 1x1 kernel), got shape {arr.shape}"
        )
    return _copy(arr[0, 0].T[:, :, None, None])


def to_keras_pointwise(w: ArrayLike) -> NDArray[np.floating]:
    """pydsconv pointwise kernel -> Keras ``(1, 1, C_in, C_out)``.

    Parameters
    ----------
    w : array_like
        Pointwise kernel of shape ``(C_out, C_in, 1, 1)`` or ``(C_out, C_in)``.

    Returns
    -------
    numpy.ndarray
        New C-contiguous array of shape ``(1, 1, C_in, C_out)``, same dtype.

    Raises
    ------
    TypeError
        ``w`` does not have a floating dtype.
    ValueError
        ``w`` is neither 4-D with trailing ``(1, 1)`` nor 2-D, or has an
        empty dimension.

    See Also
    --------
    from_keras_pointwise : The inverse.
    """
    arr = _as_float(w, "w")
    expected = "(C_out, C_in, 1, 1) or (C_out, C_in)"
    _check_shape(arr, "w", expected, ndims=(2, 4))
    if arr.ndim == 4 and arr.shape[2:] != (1, 1):
        raise ValueError(f"w must have shape {expected} (a 1x1 kernel), got shape {arr.shape}")
    cout, cin = arr.shape[:2]
    return _copy(arr.reshape(cout, cin).T[None, None])


# --------------------------------------------------------------------------
# 1-D
# --------------------------------------------------------------------------


def from_keras_depthwise1d(w: ArrayLike) -> NDArray[np.floating]:
    """Keras 1-D depthwise kernel ``(k, C, M)`` -> pydsconv ``(C*M, 1, k)``.

    Parameters
    ----------
    w : array_like
        The ``depthwise_kernel`` of a Keras ``SeparableConv1D`` (or
        ``DepthwiseConv1D``) layer, shape ``(k, C, M)``.

    Returns
    -------
    numpy.ndarray
        New C-contiguous array of shape ``(C*M, 1, k)``, same dtype:
        ``out[c*M + m, 0, i] == w[i, c, m]``.

    Raises
    ------
    TypeError
        ``w`` does not have a floating dtype.
    ValueError
        ``w`` is not 3-D or has an empty dimension.

    See Also
    --------
    to_keras_depthwise1d : The inverse.
    """
    arr = _as_float(w, "w")
    _check_shape(arr, "w", "(k, C, M)", (3,))
    k, c, m = arr.shape
    return _copy(arr.transpose(1, 2, 0).reshape(c * m, 1, k))


def to_keras_depthwise1d(
    w: ArrayLike, channels: Optional[int] = None, multiplier: Optional[int] = None
) -> NDArray[np.floating]:
    """pydsconv 1-D depthwise kernel ``(C*M, 1, k)`` -> Keras ``(k, C, M)``.

    As :func:`to_keras_depthwise`: give ``channels`` or ``multiplier`` (or
    both); with neither, ``multiplier=1``.

    Parameters
    ----------
    w : array_like
        Depthwise kernel of shape ``(C*M, 1, k)``.
    channels : int, optional
        Number of input channels ``C``.
    multiplier : int, optional
        Channel multiplier ``M``.  Default 1 when ``channels`` is not given.

    Returns
    -------
    numpy.ndarray
        New C-contiguous array of shape ``(k, C, M)``, same dtype.

    Raises
    ------
    TypeError
        ``w`` does not have a floating dtype, or ``channels``/``multiplier``
        is not an integer.
    ValueError
        ``w`` is not 3-D, its second dimension is not 1, it has an empty
        dimension, or ``channels``/``multiplier`` does not split ``C*M``.

    See Also
    --------
    from_keras_depthwise1d : The inverse.
    """
    arr = _as_float(w, "w")
    _check_shape(arr, "w", "(C*M, 1, k)", (3,))
    if arr.shape[1] != 1:
        raise ValueError(
            f"w must have shape (C*M, 1, k) (a depthwise kernel has 1 input "
            f"channel per group), got shape {arr.shape}"
        )
    total, _, k = arr.shape
    c, m = _split_channels(total, channels, multiplier, "w")
    return _copy(arr.reshape(c, m, k).transpose(2, 0, 1))


def from_keras_pointwise1d(w: ArrayLike) -> NDArray[np.floating]:
    """Keras 1-D pointwise kernel ``(1, C_in, C_out)`` -> ``(C_out, C_in, 1)``.

    Parameters
    ----------
    w : array_like
        The ``pointwise_kernel`` of a Keras ``SeparableConv1D`` layer, or the
        kernel of a ``Conv1D`` with ``kernel_size=1``: shape
        ``(1, C_in, C_out)``.

    Returns
    -------
    numpy.ndarray
        New C-contiguous array of shape ``(C_out, C_in, 1)``, same dtype.

    Raises
    ------
    TypeError
        ``w`` does not have a floating dtype.
    ValueError
        ``w`` is not 3-D, its first dimension is not 1, or it has an empty
        dimension.

    See Also
    --------
    to_keras_pointwise1d : The inverse.
    """
    arr = _as_float(w, "w")
    _check_shape(arr, "w", "(1, C_in, C_out)", (3,))
    if arr.shape[0] != 1:
        raise ValueError(
            f"w must have shape (1, C_in, C_out) (a size-1 kernel), got shape {arr.shape}"
        )
    return _copy(arr[0].T[:, :, None])


def to_keras_pointwise1d(w: ArrayLike) -> NDArray[np.floating]:
    """pydsconv 1-D pointwise kernel -> Keras ``(1, C_in, C_out)``.

    Parameters
    ----------
    w : array_like
        Pointwise kernel of shape ``(C_out, C_in, 1)`` or ``(C_out, C_in)``.

    Returns
    -------
    numpy.ndarray
        New C-contiguous array of shape ``(1, C_in, C_out)``, same dtype.

    Raises
    ------
    TypeError
        ``w`` does not have a floating dtype.
    ValueError
        ``w`` is neither 3-D with a trailing 1 nor 2-D, or has an empty
        dimension.

    See Also
    --------
    from_keras_pointwise1d : The inverse.
    """
    arr = _as_float(w, "w")
    expected = "(C_out, C_in, 1) or (C_out, C_in)"
    _check_shape(arr, "w", expected, ndims=(2, 3))
    if arr.ndim == 3 and arr.shape[2] != 1:
        raise ValueError(f"w must have shape {expected} (a size-1 kernel), got shape {arr.shape}")
    cout, cin = arr.shape[:2]
    return _copy(arr.reshape(cout, cin).T[None])
