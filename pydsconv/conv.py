"""The public convolution ops (see ``../shared/API.md`` for the contract).

Every op takes NumPy arrays of float32 or float64 (one dtype per call; the
result has it), reads C-contiguous inputs in place (zero-copy) and copies
other strided inputs once.  Weights use PyTorch's layout whatever the data
layout.  Errors: ``TypeError`` for dtypes, ``ValueError`` naming the argument
and the expected shape; nothing is written to ``out`` when an error is raised.
The GIL is released while the C++ core runs.
"""
from __future__ import annotations

from . import _ops

_COMMON = """
    stride : int or (int, int)
        Step between output pixels, >= 1.
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same"
        Zero padding.  "same" follows TensorFlow at every stride: output size
        ``ceil(in / stride)``, the odd pixel of padding at the bottom/right.
    dilation : int or (int, int)
        Spacing between kernel taps, >= 1 (may be combined with stride > 1).
    layout : "NCHW" or "NHWC"
        Data layout of ``x`` and of the result (weights are always PyTorch's)."""
_COMMON_1D = """
    stride : int
        Step between outputs, >= 1.
    padding : int, (left, right), "valid", "same" or "causal"
        Zero padding; "causal" pads ``dilation * (k - 1)`` on the left only
        (Keras), so output ``t`` never sees inputs after ``t``.
    dilation : int
        Spacing between kernel taps, >= 1.
    layout : "NCL" or "NLC"
        Data layout of ``x`` and of the result."""
_TAIL = """
    out : ndarray, optional
        C-contiguous, writable array of the result's exact shape and dtype that
        overlaps no input; filled and returned.
    num_threads : int, optional
        Threads for this call; None uses :func:`pydsconv.set_num_threads`'s setting."""
_ACT = """
    activation : None, "relu" or "relu6"
        Applied after the bias."""


def _doc(text, **parts):
    return text.format(COMMON=_COMMON, COMMON_1D=_COMMON_1D, TAIL=_TAIL, ACT=_ACT, **parts)


def depthwise_conv2d(x, weight, bias=None, *, stride=1, padding=0, dilation=1, layout="NCHW",
                     activation=None, out=None, num_threads=None):
    return _ops._depthwise(2, x, weight, bias, stride, padding, dilation, layout, activation, out,
                           num_threads)


depthwise_conv2d.__doc__ = _doc("""Depthwise 2-D convolution: each channel with its own filters.

    Output channel ``c*M + m`` is input channel ``c`` convolved with
    ``weight[c*M + m, 0]`` (cross-correlation, as PyTorch's
    ``conv2d(groups=C)`` and Keras' ``DepthwiseConv2D``).

    Parameters
    ----------
    x : ndarray, (N, C, H, W) or (N, H, W, C)
    weight : ndarray, (C*M, 1, kH, kW)
        M is the channel multiplier.  Keras kernels (kH, kW, C, M) convert with
        :func:`pydsconv.weights.from_keras_depthwise`.
    bias : ndarray (C*M,), optional{COMMON}{ACT}{TAIL}

    Returns
    -------
    ndarray, (N, C*M, OH, OW) or (N, OH, OW, C*M)
    """)


def pointwise_conv2d(x, weight, bias=None, *, layout="NCHW", activation=None, out=None,
                     num_threads=None):
    return _ops._pointwise(2, x, weight, bias, layout, activation, out, num_threads)


pointwise_conv2d.__doc__ = _doc("""Pointwise (1x1) 2-D convolution: a matrix product over channels.

    Parameters
    ----------
    x : ndarray, (N, C_in, H, W) or (N, H, W, C_in)
    weight : ndarray, (C_out, C_in, 1, 1) or (C_out, C_in), or PackedPointwise
        A :func:`prepack_pointwise` result: the same result, packed once instead of per call.
    bias : ndarray (C_out,), optional
    layout : "NCHW" or "NHWC"{ACT}{TAIL}

    Returns
    -------
    ndarray, (N, C_out, H, W) or (N, H, W, C_out)
    """)


def separable_conv2d(x, depthwise_weight, pointwise_weight, depthwise_bias=None,
                     pointwise_bias=None, *, stride=1, padding=0, dilation=1, layout="NCHW",
                     mid_activation=None, activation=None, out=None, num_threads=None):
    return _ops._separable(2, x, depthwise_weight, pointwise_weight, depthwise_bias,
                           pointwise_bias, stride, padding, dilation, layout, mid_activation,
                           activation, out, num_threads)


separable_conv2d.__doc__ = _doc("""Depthwise separable 2-D convolution, fused.

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
    pointwise_bias : ndarray (C_out,), optional{COMMON}
    mid_activation : None, "relu" or "relu6"
        Applied to the depthwise output after its bias.{ACT}{TAIL}

    Returns
    -------
    ndarray, (N, C_out, OH, OW) or (N, OH, OW, C_out)
    """)


def depthwise_conv1d(x, weight, bias=None, *, stride=1, padding=0, dilation=1, layout="NCL",
                     activation=None, out=None, num_threads=None):
    return _ops._depthwise(1, x, weight, bias, stride, padding, dilation, layout, activation, out,
                           num_threads)


depthwise_conv1d.__doc__ = _doc("""Depthwise 1-D convolution (sequences: text, audio).

    Parameters
    ----------
    x : ndarray, (N, C, L) or (N, L, C)
    weight : ndarray, (C*M, 1, k)
    bias : ndarray (C*M,), optional{COMMON_1D}{ACT}{TAIL}

    Returns
    -------
    ndarray, (N, C*M, OL) or (N, OL, C*M)
    """)


def pointwise_conv1d(x, weight, bias=None, *, layout="NCL", activation=None, out=None,
                     num_threads=None):
    return _ops._pointwise(1, x, weight, bias, layout, activation, out, num_threads)


pointwise_conv1d.__doc__ = _doc("""Pointwise 1-D convolution (a matrix product over channels).

    Parameters
    ----------
    x : ndarray, (N, C_in, L) or (N, L, C_in)
    weight : ndarray, (C_out, C_in, 1) or (C_out, C_in), or PackedPointwise
    bias : ndarray (C_out,), optional
    layout : "NCL" or "NLC"{ACT}{TAIL}

    Returns
    -------
    ndarray, (N, C_out, L) or (N, L, C_out)
    """)


def separable_conv1d(x, depthwise_weight, pointwise_weight, depthwise_bias=None,
                     pointwise_bias=None, *, stride=1, padding=0, dilation=1, layout="NCL",
                     mid_activation=None, activation=None, out=None, num_threads=None):
    return _ops._separable(1, x, depthwise_weight, pointwise_weight, depthwise_bias,
                           pointwise_bias, stride, padding, dilation, layout, mid_activation,
                           activation, out, num_threads)


separable_conv1d.__doc__ = _doc("""Depthwise separable 1-D convolution, fused (see separable_conv2d).

    Parameters
    ----------
    x : ndarray, (N, C, L) or (N, L, C)
    depthwise_weight : ndarray, (C*M, 1, k)
    pointwise_weight : ndarray, (C_out, C*M, 1) or (C_out, C*M), or PackedPointwise
    depthwise_bias, pointwise_bias : ndarray, optional{COMMON_1D}
    mid_activation : None, "relu" or "relu6"{ACT}{TAIL}

    Returns
    -------
    ndarray, (N, C_out, OL) or (N, OL, C_out)
    """)


def prepack_pointwise(weight, *, num_threads=None):
    return _ops._prepack_pointwise(weight, num_threads)


prepack_pointwise.__doc__ = """Pack a pointwise weight once, for many forward calls.

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


_BWD = """
    input_grad, weight_grad, bias_grad : bool
        Which gradients to compute; the others come back as None.
    num_threads : int, optional
        Threads for this call.  The result has the same bits for any count.

    Returns
    -------
    (grad_x or None, grad_weight or None, grad_bias or None)
        ``grad_weight`` has the shape ``weight`` was given in; ``grad_bias``
        is 1-D."""


def depthwise_conv2d_backward(grad_out, x, weight, *, stride=1, padding=0, dilation=1,
                              layout="NCHW", input_grad=True, weight_grad=True, bias_grad=True,
                              num_threads=None):
    return _ops._depthwise_backward(2, grad_out, x, weight, stride, padding, dilation, layout,
                                    input_grad, weight_grad, bias_grad, num_threads)


depthwise_conv2d_backward.__doc__ = _doc("""Gradients of :func:`depthwise_conv2d`.

    Parameters
    ----------
    grad_out : ndarray
        Gradient w.r.t. the op's output *before* any activation (apply the
        activation's derivative first), shaped like the forward result.
    x, weight : ndarray
        The forward op's input and weight.{COMMON}""") + _BWD


def depthwise_conv1d_backward(grad_out, x, weight, *, stride=1, padding=0, dilation=1,
                              layout="NCL", input_grad=True, weight_grad=True, bias_grad=True,
                              num_threads=None):
    return _ops._depthwise_backward(1, grad_out, x, weight, stride, padding, dilation, layout,
                                    input_grad, weight_grad, bias_grad, num_threads)


depthwise_conv1d_backward.__doc__ = _doc("""Gradients of :func:`depthwise_conv1d`.

    Parameters
    ----------
    grad_out : ndarray
        Gradient w.r.t. the op's output before any activation.
    x, weight : ndarray
        The forward op's input and weight.{COMMON_1D}""") + _BWD


def pointwise_conv2d_backward(grad_out, x, weight, *, layout="NCHW", input_grad=True,
                              weight_grad=True, bias_grad=True, num_threads=None):
    return _ops._pointwise_backward(2, grad_out, x, weight, layout, input_grad, weight_grad,
                                    bias_grad, num_threads)


pointwise_conv2d_backward.__doc__ = """Gradients of :func:`pointwise_conv2d`.

    Parameters
    ----------
    grad_out : ndarray
        Gradient w.r.t. the op's output before any activation.
    x, weight : ndarray
        The forward op's input and weight.
    layout : "NCHW" or "NHWC\"""" + _BWD


def pointwise_conv1d_backward(grad_out, x, weight, *, layout="NCL", input_grad=True,
                              weight_grad=True, bias_grad=True, num_threads=None):
    return _ops._pointwise_backward(1, grad_out, x, weight, layout, input_grad, weight_grad,
                                    bias_grad, num_threads)


pointwise_conv1d_backward.__doc__ = """Gradients of :func:`pointwise_conv1d`.

    Parameters
    ----------
    grad_out : ndarray
        Gradient w.r.t. the op's output before any activation.
    x, weight : ndarray
        The forward op's input and weight.
    layout : "NCL" or "NLC\"""" + _BWD
