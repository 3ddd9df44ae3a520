"""The public convolution ops and their argument handling (contract: docs/api.md).

Every op takes NumPy arrays of float32 or float64 (one dtype per call; the
result has it), reads C-contiguous inputs in place (zero-copy) and copies
other strided inputs once.  Weights use PyTorch's layout whatever the data
layout.  Errors: ``TypeError`` for dtypes, ``ValueError`` naming the argument
and the expected shape; nothing is written to ``out`` when an error is raised.
The GIL is released while the C++ core runs.

How this module is built (for maintainers): each public op turns its Python
arguments into the normalised form the C++ core (``_core``) takes -- arrays,
``(h, w)`` pairs (1-D ops: ``(1, w)``), padding as a mode plus four ints --
and calls it; all computing and every shape rule are in C++
(``cpp/validate.cpp``).  The geometry parsing (stride, dilation, padding) is
:mod:`pydsconv._args`, shared with :mod:`pydsconv.torch`, :mod:`pydsconv.nn`
and :mod:`pydsconv.cost`.  This layer never copies an ndarray: the binding
describes arrays as given (any strides) to the C++ validator and copies
non-C-contiguous or unaligned inputs once, only after the call has been
accepted, so a huge strided view (e.g. zero strides) is rejected without
being materialised.
"""

from __future__ import annotations

import operator
import warnings
from typing import Optional, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _args, _core
from ._args import Activation, IntOrPair, Layout1D, Layout2D, Padding1D, Padding2D
from ._core import PackedPointwise

__all__ = [
    "depthwise_conv2d",
    "pointwise_conv2d",
    "separable_conv2d",
    "depthwise_conv2d_backward",
    "pointwise_conv2d_backward",
    "depthwise_conv1d",
    "pointwise_conv1d",
    "separable_conv1d",
    "depthwise_conv1d_backward",
    "pointwise_conv1d_backward",
    "prepack_pointwise",
]

Array = NDArray[np.floating]
"""A float32 or float64 ndarray (what every op returns)."""
Grads = Tuple[Optional[Array], Optional[Array], Optional[Array]]
"""``(grad_x, grad_weight, grad_bias)``, None for those not asked for."""

_LAYOUTS_2D = {"NCHW": "NCHW", "NHWC": "NHWC"}
_LAYOUTS_1D = {"NCL": "NCHW", "NLC": "NHWC"}  # the core sees 1-D as H == 1


# --------------------------------------------------------------------------
# argument normalisation (private)
# --------------------------------------------------------------------------


def _array(name, value, optional=False):
    """``value`` as an ndarray of float32 or float64, never copied.

    Non-ndarrays are converted with ``np.asarray``; ndarrays are passed as
    they are (the binding copies strided ones once, after validation).  None
    is allowed only for ``optional`` arguments (biases).  A PackedPointwise
    (where an array is needed) and a PyTorch tensor that requires grad are
    TypeErrors saying what to pass instead (torch is never imported here).
    """
    if value is None:
        if optional:
            return None
        raise TypeError(f"{name} must be a float32 or float64 array, got None")
    if isinstance(value, _core.PackedPointwise):
        raise TypeError(
            f"{name} must be a float32 or float64 array, got a PackedPointwise: only "
            "the forward pointwise and separable ops take one; backward ops take the "
            "plain weight array (packed.weight gives it)"
        )
    if type(value).__module__.startswith("torch") and getattr(value, "requires_grad", False):
        raise TypeError(
            f"{name} is a PyTorch tensor that requires grad: NumPy ops cannot "
            f"track its gradient; pass {name}.detach() (or .detach().numpy()), or "
            "use the autograd-aware layers of pydsconv.torch"
        )
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise TypeError(
                f"{name} must be a float32 or float64 array; NumPy cannot convert it: {exc}"
            ) from None
    if arr.dtype.kind != "f" or arr.dtype.itemsize not in (4, 8):
        raise TypeError(
            f"{name} must have dtype float32 or float64, got {arr.dtype} "
            "(pydsconv never casts silently)"
        )
    if not arr.dtype.isnative:
        raise TypeError(f"{name} must have native byte order, got {arr.dtype}")
    return arr


def _pw_weight(name, value):
    """(weight array, packed or None): a :func:`prepack_pointwise` result
    stands for its own copy of the weight, checked like any weight array."""
    if isinstance(value, _core.PackedPointwise):
        return value.weight, value
    return _array(name, value), None


def _out(out):
    """``out`` checks that need Python types; shape, dtype, writability and
    overlap with the inputs (their byte bounds) are checked in C++."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array, got {type(out).__name__}")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    return out


def _layout(layout, spatial):
    """The core's layout name ("NCHW" / "NHWC") for a 2-D or 1-D layout."""
    table = _LAYOUTS_2D if spatial == 2 else _LAYOUTS_1D
    if not isinstance(layout, str) or layout not in table:
        raise ValueError(f"layout must be one of {tuple(table)}, got {layout!r}")
    return table[layout]


def _geometry(spatial, stride, padding, dilation, layout):
    """The core's geometry arguments: ``(spatial, layout, stride, dilation,
    pad_mode, (top, bottom, left, right))``, stride and dilation as ``(h, w)``
    (1-D: ``(1, v)``).  Range checks (>= 1, >= 0) are the core's."""

    def hw(name, value):
        pair = _args.to_pair(name, value, spatial)
        return pair if spatial == 2 else (1,) + pair

    mode, pads = _args.to_padding(padding, spatial)
    return (
        spatial,
        _layout(layout, spatial),
        hw("stride", stride),
        hw("dilation", dilation),
        mode,
        pads,
    )


def _thread_request(name, n):
    """``n`` as a positive int, as asked (TypeError / ValueError naming ``name``;
    ``num_threads`` may also be None, handled by the caller)."""
    if not isinstance(n, (bool, np.bool_)):
        try:
            n = operator.index(n)
        except TypeError:
            pass
        else:
            if n < 1:
                raise ValueError(f"{name} must be a positive int, got {n}")
            return n
    none = " (or None for the default)" if name == "num_threads" else ""
    raise TypeError(f"{name} must be a positive int{none}, got {n!r}")


def _thread_count(name, n, stacklevel=3):
    """``n`` as a thread count in [1, max_threads]: a larger one is capped
    (with a RuntimeWarning at the user's frame, ``stacklevel`` up), never
    honoured literally."""
    n = _thread_request(name, n)
    limit = _core.max_threads()
    if n > limit:
        cores = _core.cpu_features()["usable_cores"]
        warnings.warn(
            f"{name}={n} is above pydsconv's limit of {limit} threads "
            f"(4 x {cores} usable cores); using {limit}",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
        return limit
    return n


def _threads(n, stacklevel=5):
    """``num_threads`` of an op -> the core's count (0: the module setting).
    ``stacklevel`` (counted from :func:`_thread_count`) points the warning at
    the op's caller: op -> _depthwise etc. -> _threads -> _thread_count."""
    if n is None:
        return 0
    return _thread_count("num_threads", n, stacklevel=stacklevel)


def _depthwise(
    spatial, x, weight, bias, stride, padding, dilation, layout, activation, out, num_threads
):
    x = _array("x", x)
    weight = _array("weight", weight)
    bias = _array("bias", bias, optional=True)
    geometry = _geometry(spatial, stride, padding, dilation, layout)
    return _core.depthwise_forward(
        x, weight, bias, *geometry, activation, _out(out), _threads(num_threads)
    )


def _pointwise(spatial, x, weight, bias, layout, activation, out, num_threads):
    x = _array("x", x)
    weight, packed = _pw_weight("weight", weight)
    bias = _array("bias", bias, optional=True)
    return _core.pointwise_forward(
        x,
        weight,
        bias,
        spatial,
        _layout(layout, spatial),
        activation,
        _out(out),
        _threads(num_threads),
        packed,
    )


def _separable(
    spatial,
    x,
    dw,
    pw,
    db,
    pb,
    stride,
    padding,
    dilation,
    layout,
    mid_activation,
    activation,
    out,
    num_threads,
):
    x = _array("x", x)
    dw = _array("depthwise_weight", dw)
    pw, packed = _pw_weight("pointwise_weight", pw)
    db = _array("depthwise_bias", db, optional=True)
    pb = _array("pointwise_bias", pb, optional=True)
    geometry = _geometry(spatial, stride, padding, dilation, layout)
    return _core.separable_forward(
        x,
        dw,
        pw,
        db,
        pb,
        *geometry,
        mid_activation,
        activation,
        _out(out),
        _threads(num_threads),
        packed,
    )


def _depthwise_backward(
    spatial,
    grad_out,
    x,
    weight,
    stride,
    padding,
    dilation,
    layout,
    input_grad,
    weight_grad,
    bias_grad,
    num_threads,
):
    grad_out = _array("grad_out", grad_out)
    x = _array("x", x)
    weight = _array("weight", weight)
    geometry = _geometry(spatial, stride, padding, dilation, layout)
    return _core.depthwise_backward(
        grad_out,
        x,
        weight,
        *geometry,
        bool(input_grad),
        bool(weight_grad),
        bool(bias_grad),
        _threads(num_threads),
    )


def _pointwise_backward(
    spatial, grad_out, x, weight, layout, input_grad, weight_grad, bias_grad, num_threads
):
    grad_out = _array("grad_out", grad_out)
    x = _array("x", x)
    weight = _array("weight", weight)
    return _core.pointwise_backward(
        grad_out,
        x,
        weight,
        spatial,
        _layout(layout, spatial),
        bool(input_grad),
        bool(weight_grad),
        bool(bias_grad),
        _threads(num_threads),
    )


# --------------------------------------------------------------------------
# forward ops, 2-D
# --------------------------------------------------------------------------


def depthwise_conv2d(
    x: ArrayLike,
    weight: ArrayLike,
    bias: Optional[ArrayLike] = None,
    *,
    stride: IntOrPair = 1,
    padding: Padding2D = 0,
    dilation: IntOrPair = 1,
    layout: Layout2D = "NCHW",
    activation: Activation = None,
    out: Optional[Array] = None,
    num_threads: Optional[int] = None,
) -> Array:
    """Depthwise 2-D convolution: each channel with its own filters.

    Output channel ``c*M + m`` is input channel ``c`` convolved with
    ``weight[c*M + m, 0]`` (cross-correlation, as PyTorch's
    ``conv2d(groups=C)`` and Keras' ``DepthwiseConv2D``).

    Parameters
    ----------
    x : ndarray, (N, C, H, W) or (N, H, W, C)
    weight : ndarray, (C*M, 1, kH, kW)
        M is the channel multiplier.  Keras kernels (kH, kW, C, M) convert with
        :func:`pydsconv.weights.from_keras_depthwise`.
    bias : ndarray (C*M,), optional
    stride : int or (int, int)
        Step between output pixels, >= 1.
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same"
        Zero padding.  "same" follows TensorFlow at every stride: output size
        ``ceil(in / stride)``, the odd pixel of padding at the bottom/right.
    dilation : int or (int, int)
        Spacing between kernel taps, >= 1 (may be combined with stride > 1).
    layout : "NCHW" or "NHWC"
        Data layout of ``x`` and of the result (weights are always PyTorch's).
    activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"
        Applied after the bias (PyTorch's definitions; see docs/api.md).
    out : ndarray, optional
        C-contiguous, writable array of the result's exact shape and dtype that
        overlaps no input; filled and returned.
    num_threads : int, optional
        Threads for this call; None uses :func:`pydsconv.set_num_threads`'s setting.

    Returns
    -------
    ndarray, (N, C*M, OH, OW) or (N, OH, OW, C*M)
    """
    return _depthwise(
        2, x, weight, bias, stride, padding, dilation, layout, activation, out, num_threads
    )


def pointwise_conv2d(
    x: ArrayLike,
    weight: Union[ArrayLike, PackedPointwise],
    bias: Optional[ArrayLike] = None,
    *,
    layout: Layout2D = "NCHW",
    activation: Activation = None,
    out: Optional[Array] = None,
    num_threads: Optional[int] = None,
) -> Array:
    """Pointwise (1x1) 2-D convolution: a matrix product over channels.

    Parameters
    ----------
    x : ndarray, (N, C_in, H, W) or (N, H, W, C_in)
    weight : ndarray, (C_out, C_in, 1, 1) or (C_out, C_in), or PackedPointwise
        A :func:`prepack_pointwise` result: the same result, packed once instead of per call.
    bias : ndarray (C_out,), optional
    layout : "NCHW" or "NHWC"
        Data layout of ``x`` and of the result (weights are always PyTorch's).
    activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"
        Applied after the bias (PyTorch's definitions; see docs/api.md).
    out : ndarray, optional
        C-contiguous, writable array of the result's exact shape and dtype that
        overlaps no input; filled and returned.
    num_threads : int, optional
        Threads for this call; None uses :func:`pydsconv.set_num_threads`'s setting.

    Returns
    -------
    ndarray, (N, C_out, H, W) or (N, H, W, C_out)
    """
    return _pointwise(2, x, weight, bias, layout, activation, out, num_threads)


def separable_conv2d(
    x: ArrayLike,
    depthwise_weight: ArrayLike,
    pointwise_weight: Union[ArrayLike, PackedPointwise],
    depthwise_bias: Optional[ArrayLike] = None,
    pointwise_bias: Optional[ArrayLike] = None,
    *,
    stride: IntOrPair = 1,
    padding: Padding2D = 0,
    dilation: IntOrPair = 1,
    layout: Layout2D = "NCHW",
    mid_activation: Activation = None,
    activation: Activation = None,
    out: Optional[Array] = None,
    num_threads: Optional[int] = None,
) -> Array:
    """Depthwise separable 2-D convolution, fused.

    Equals ``pointwise_conv2d(mid_act(depthwise_conv2d(x, depthwise_weight,
    depthwise_bias, ...)), pointwise_weight, pointwise_bias, activation=...)``
    but computes it tile by tile: the full intermediate tensor is never
    allocated.

    Parameters
    ----------
    x : ndarray, (N, C, H, W) or (N, H, W, C)
    depthwise_weight : ndarray, (C*M, 1, kH, kW)
    pointwise_weight : ndarray, (C_out, C*M, 1, 1) or (C_out, C*M), or PackedPointwise
        A :func:`prepack_pointwise` result: the same result, without packing
        the weight again on every call.
    depthwise_bias : ndarray (C*M,), optional
    pointwise_bias : ndarray (C_out,), optional
    stride : int or (int, int)
        Of the depthwise stage: step between output pixels, >= 1.
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same"
        Zero padding.  "same" follows TensorFlow at every stride: output size
        ``ceil(in / stride)``, the odd pixel of padding at the bottom/right.
    dilation : int or (int, int)
        Spacing between kernel taps, >= 1 (may be combined with stride > 1).
    layout : "NCHW" or "NHWC"
        Data layout of ``x`` and of the result (weights are always PyTorch's).
    mid_activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"
        Applied to the depthwise output after its bias.
    activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"
        Applied to the result after the pointwise bias.
    out : ndarray, optional
        C-contiguous, writable array of the result's exact shape and dtype that
        overlaps no input; filled and returned.
    num_threads : int, optional
        Threads for this call; None uses :func:`pydsconv.set_num_threads`'s setting.

    Returns
    -------
    ndarray, (N, C_out, OH, OW) or (N, OH, OW, C_out)
    """
    return _separable(
        2,
        x,
        depthwise_weight,
        pointwise_weight,
        depthwise_bias,
        pointwise_bias,
        stride,
        padding,
        dilation,
        layout,
        mid_activation,
        activation,
        out,
        num_threads,
    )


# --------------------------------------------------------------------------
# forward ops, 1-D
# --------------------------------------------------------------------------


def depthwise_conv1d(
    x: ArrayLike,
    weight: ArrayLike,
    bias: Optional[ArrayLike] = None,
    *,
    stride: int = 1,
    padding: Padding1D = 0,
    dilation: int = 1,
    layout: Layout1D = "NCL",
    activation: Activation = None,
    out: Optional[Array] = None,
    num_threads: Optional[int] = None,
) -> Array:
    """Depthwise 1-D convolution (sequences: text, audio).

    Parameters
    ----------
    x : ndarray, (N, C, L) or (N, L, C)
    weight : ndarray, (C*M, 1, k)
        M is the channel multiplier; output channel ``c*M + m`` reads input
        channel ``c``.
    bias : ndarray (C*M,), optional
    stride : int
        Step between outputs, >= 1.
    padding : int, (left, right), "valid", "same" or "causal"
        Zero padding; "causal" pads ``dilation * (k - 1)`` on the left only
        (Keras), so output ``t`` never sees inputs after ``t``.
    dilation : int
        Spacing between kernel taps, >= 1.
    layout : "NCL" or "NLC"
        Data layout of ``x`` and of the result.
    activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"
        Applied after the bias (PyTorch's definitions; see docs/api.md).
    out : ndarray, optional
        C-contiguous, writable array of the result's exact shape and dtype that
        overlaps no input; filled and returned.
    num_threads : int, optional
        Threads for this call; None uses :func:`pydsconv.set_num_threads`'s setting.

    Returns
    -------
    ndarray, (N, C*M, OL) or (N, OL, C*M)
    """
    return _depthwise(
        1, x, weight, bias, stride, padding, dilation, layout, activation, out, num_threads
    )


def pointwise_conv1d(
    x: ArrayLike,
    weight: Union[ArrayLike, PackedPointwise],
    bias: Optional[ArrayLike] = None,
    *,
    layout: Layout1D = "NCL",
    activation: Activation = None,
    out: Optional[Array] = None,
    num_threads: Optional[int] = None,
) -> Array:
    """Pointwise 1-D convolution (a matrix product over channels).

    Parameters
    ----------
    x : ndarray, (N, C_in, L) or (N, L, C_in)
    weight : ndarray, (C_out, C_in, 1) or (C_out, C_in), or PackedPointwise
        A :func:`prepack_pointwise` result: the same result, packed once instead of per call.
    bias : ndarray (C_out,), optional
    layout : "NCL" or "NLC"
        Data layout of ``x`` and of the result.
    activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"
        Applied after the bias (PyTorch's definitions; see docs/api.md).
    out : ndarray, optional
        C-contiguous, writable array of the result's exact shape and dtype that
        overlaps no input; filled and returned.
    num_threads : int, optional
        Threads for this call; None uses :func:`pydsconv.set_num_threads`'s setting.

    Returns
    -------
    ndarray, (N, C_out, L) or (N, L, C_out)
    """
    return _pointwise(1, x, weight, bias, layout, activation, out, num_threads)


def separable_conv1d(
    x: ArrayLike,
    depthwise_weight: ArrayLike,
    pointwise_weight: Union[ArrayLike, PackedPointwise],
    depthwise_bias: Optional[ArrayLike] = None,
    pointwise_bias: Optional[ArrayLike] = None,
    *,
    stride: int = 1,
    padding: Padding1D = 0,
    dilation: int = 1,
    layout: Layout1D = "NCL",
    mid_activation: Activation = None,
    activation: Activation = None,
    out: Optional[Array] = None,
    num_threads: Optional[int] = None,
) -> Array:
    """Depthwise separable 1-D convolution, fused (see :func:`separable_conv2d`).

    Parameters
    ----------
    x : ndarray, (N, C, L) or (N, L, C)
    depthwise_weight : ndarray, (C*M, 1, k)
    pointwise_weight : ndarray, (C_out, C*M, 1) or (C_out, C*M), or PackedPointwise
        A :func:`prepack_pointwise` result: the same result, without packing
        the weight again on every call.
    depthwise_bias : ndarray (C*M,), optional
    pointwise_bias : ndarray (C_out,), optional
    stride : int
        Of the depthwise stage: step between outputs, >= 1.
    padding : int, (left, right), "valid", "same" or "causal"
        Zero padding; "causal" pads ``dilation * (k - 1)`` on the left only
        (Keras), so output ``t`` never sees inputs after ``t``.
    dilation : int
        Spacing between kernel taps, >= 1.
    layout : "NCL" or "NLC"
        Data layout of ``x`` and of the result.
    mid_activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"
        Applied to the depthwise output after its bias.
    activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"
        Applied to the result after the pointwise bias.
    out : ndarray, optional
        C-contiguous, writable array of the result's exact shape and dtype that
        overlaps no input; filled and returned.
    num_threads : int, optional
        Threads for this call; None uses :func:`pydsconv.set_num_threads`'s setting.

    Returns
    -------
    ndarray, (N, C_out, OL) or (N, OL, C_out)
    """
    return _separable(
        1,
        x,
        depthwise_weight,
        pointwise_weight,
        depthwise_bias,
        pointwise_bias,
        stride,
        padding,
        dilation,
        layout,
        mid_activation,
        activation,
        out,
        num_threads,
    )


def prepack_pointwise(weight: ArrayLike, *, num_threads: Optional[int] = None) -> PackedPointwise:
    """Pack a pointwise weight once, for many forward calls.

    Every forward call rearranges the 1x1 weight into the panels its matrix
    kernel reads (NHWC; NCHW only on small planes: the pointwise op up to 64
    pixels, the separable op where a plane's pixels fill their vectors
    badly, as 7x7 does) -- a pass over the whole weight, which at batch 1 is
    a few percent of a MobileNet layer and more when the weight is not in
    cache.  Inference with fixed weights
    can do it once: pass the result as ``pointwise_weight`` of
    :func:`separable_conv2d` / :func:`separable_conv1d` or as ``weight`` of
    :func:`pointwise_conv2d` / :func:`pointwise_conv1d`.  The results are the
    same bits as with the array.

    The packed object holds a read-only copy of ``weight`` (its ``weight``
    attribute), checked by each call like any weight: changing the original
    array afterwards does not change it -- pack again after a weight update.
    The panels are for the kernel set current when packing (``isa``
    attribute); if another is selected later (``PYDSCONV_ISA``), calls still
    give the right result and pack per call.  The backward ops take arrays only.

    Parameters
    ----------
    weight : ndarray, float32 or float64, (C_out, C_in), (C_out, C_in, 1) or (C_out, C_in, 1, 1)
    num_threads : int, optional
        Threads for the packing.

    Returns
    -------
    PackedPointwise

    Raises
    ------
    TypeError
        ``weight`` is not a float32 or float64 array (or is a PyTorch tensor
        that requires grad).
    ValueError
        ``weight`` has another shape, or ``C_out`` or ``C_in`` is 0 (as the
        ops refuse it).
    """
    arr = _array("weight", weight)
    if arr.ndim >= 2 and 0 in arr.shape[:2]:  # as the ops refuse it
        raise ValueError(
            "weight must have shape (C_out, C_in), (C_out, C_in, 1) or "
            f"(C_out, C_in, 1, 1) with C_out, C_in >= 1, got {arr.shape}"
        )
    return _core.prepack_pointwise(arr, _threads(num_threads, stacklevel=4))


# --------------------------------------------------------------------------
# backward ops
# --------------------------------------------------------------------------
#
# They take the gradient w.r.t. the op's output *before* its activation (the
# contract, docs/api.md): the derivative of ReLU / ReLU6 needs the forward
# output, which the op does not have, so the caller masks the gradient first
# (pydsconv.torch and pydsconv.nn do it with pydsconv._args.activation_grad).


def depthwise_conv2d_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    weight: ArrayLike,
    *,
    stride: IntOrPair = 1,
    padding: Padding2D = 0,
    dilation: IntOrPair = 1,
    layout: Layout2D = "NCHW",
    input_grad: bool = True,
    weight_grad: bool = True,
    bias_grad: bool = True,
    num_threads: Optional[int] = None,
) -> Grads:
    """Gradients of :func:`depthwise_conv2d`.

    Parameters
    ----------
    grad_out : ndarray
        Gradient w.r.t. the op's output *before* any activation, shaped like
        the forward result.  With a fused ``activation``, first multiply the
        gradient after it by the activation's derivative: for ReLU where the
        forward output is > 0, for ReLU6 where it is in (0, 6); the others'
        derivatives are in ``pydsconv._args.activation_grad`` (hardswish and
        silu need the value before the activation: run the forward without
        one and apply it after).
    x, weight : ndarray
        The forward op's input and weight.
    stride : int or (int, int)
        Step between output pixels, >= 1.
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same"
        Zero padding.  "same" follows TensorFlow at every stride: output size
        ``ceil(in / stride)``, the odd pixel of padding at the bottom/right.
    dilation : int or (int, int)
        Spacing between kernel taps, >= 1 (may be combined with stride > 1).
    layout : "NCHW" or "NHWC"
        Data layout of ``x`` and of the result (weights are always PyTorch's).
    input_grad, weight_grad, bias_grad : bool
        Which gradients to compute; the others come back as None.
    num_threads : int, optional
        Threads for this call.  The result has the same bits for any count.

    Returns
    -------
    (grad_x or None, grad_weight or None, grad_bias or None)
        ``grad_weight`` has the shape ``weight`` was given in; ``grad_bias``
        is 1-D.
    """
    return _depthwise_backward(
        2,
        grad_out,
        x,
        weight,
        stride,
        padding,
        dilation,
        layout,
        input_grad,
        weight_grad,
        bias_grad,
        num_threads,
    )


def depthwise_conv1d_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    weight: ArrayLike,
    *,
    stride: int = 1,
    padding: Padding1D = 0,
    dilation: int = 1,
    layout: Layout1D = "NCL",
    input_grad: bool = True,
    weight_grad: bool = True,
    bias_grad: bool = True,
    num_threads: Optional[int] = None,
) -> Grads:
    """Gradients of :func:`depthwise_conv1d`.

    Parameters
    ----------
    grad_out : ndarray
        Gradient w.r.t. the op's output *before* any activation (see
        :func:`depthwise_conv2d_backward`), shaped like the forward result.
    x, weight : ndarray
        The forward op's input and weight.
    stride : int
        Step between outputs, >= 1.
    padding : int, (left, right), "valid", "same" or "causal"
        Zero padding; "causal" pads ``dilation * (k - 1)`` on the left only
        (Keras), so output ``t`` never sees inputs after ``t``.
    dilation : int
        Spacing between kernel taps, >= 1.
    layout : "NCL" or "NLC"
        Data layout of ``x`` and of the result.
    input_grad, weight_grad, bias_grad : bool
        Which gradients to compute; the others come back as None.
    num_threads : int, optional
        Threads for this call.  The result has the same bits for any count.

    Returns
    -------
    (grad_x or None, grad_weight or None, grad_bias or None)
        ``grad_weight`` has the shape ``weight`` was given in; ``grad_bias``
        is 1-D.
    """
    return _depthwise_backward(
        1,
        grad_out,
        x,
        weight,
        stride,
        padding,
        dilation,
        layout,
        input_grad,
        weight_grad,
        bias_grad,
        num_threads,
    )


def pointwise_conv2d_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    weight: ArrayLike,
    *,
    layout: Layout2D = "NCHW",
    input_grad: bool = True,
    weight_grad: bool = True,
    bias_grad: bool = True,
    num_threads: Optional[int] = None,
) -> Grads:
    """Gradients of :func:`pointwise_conv2d`.

    Parameters
    ----------
    grad_out : ndarray
        Gradient w.r.t. the op's output *before* any activation (see
        :func:`depthwise_conv2d_backward`), shaped like the forward result.
    x, weight : ndarray
        The forward op's input and weight (an array: ``packed.weight`` for a
        :func:`prepack_pointwise` result).
    layout : "NCHW" or "NHWC"
        Data layout of ``x`` and of the result.
    input_grad, weight_grad, bias_grad : bool
        Which gradients to compute; the others come back as None.
    num_threads : int, optional
        Threads for this call.  The result has the same bits for any count.

    Returns
    -------
    (grad_x or None, grad_weight or None, grad_bias or None)
        ``grad_weight`` has the shape ``weight`` was given in; ``grad_bias``
        is 1-D.
    """
    return _pointwise_backward(
        2, grad_out, x, weight, layout, input_grad, weight_grad, bias_grad, num_threads
    )


def pointwise_conv1d_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    weight: ArrayLike,
    *,
    layout: Layout1D = "NCL",
    input_grad: bool = True,
    weight_grad: bool = True,
    bias_grad: bool = True,
    num_threads: Optional[int] = None,
) -> Grads:
    """Gradients of :func:`pointwise_conv1d`.

    Parameters
    ----------
    grad_out : ndarray
        Gradient w.r.t. the op's output *before* any activation (see
        :func:`depthwise_conv2d_backward`), shaped like the forward result.
    x, weight : ndarray
        The forward op's input and weight (an array: ``packed.weight`` for a
        :func:`prepack_pointwise` result).
    layout : "NCL" or "NLC"
        Data layout of ``x`` and of the result.
    input_grad, weight_grad, bias_grad : bool
        Which gradients to compute; the others come back as None.
    num_threads : int, optional
        Threads for this call.  The result has the same bits for any count.

    Returns
    -------
    (grad_x or None, grad_weight or None, grad_bias or None)
        ``grad_weight`` has the shape ``weight`` was given in; ``grad_bias``
        is 1-D.
    """
    return _pointwise_backward(
        1, grad_out, x, weight, layout, input_grad, weight_grad, bias_grad, num_threads
    )
