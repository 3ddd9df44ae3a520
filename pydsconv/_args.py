"""The argument rules every layer of pydsconv shares, in one place.

Geometry (docs/api.md, "Conventions for every op"):

* :func:`to_int` -- an int argument (no bools, no floats), optionally >= a minimum;
* :func:`to_pair` -- ``stride``, ``dilation``, ``kernel_size``: an int or a
  tuple of ``spatial`` ints;
* :func:`to_padding` -- ``padding``: an int, ``(ph, pw)``, ``((top, bottom),
  (left, right))`` (1-D: an int or ``(left, right)``), ``"valid"``,
  ``"same"`` or (1-D) ``"causal"``, normalised to ``(mode, (top, bottom,
  left, right))``; :func:`padding_spec` turns that back into the shortest
  form a user would write (what the layers store and print);
* :func:`same_padding` -- TensorFlow's ``"same"`` rule at every stride;
* :func:`output_size` -- the output's spatial size, or a ValueError when the
  dilated kernel does not fit the padded input.

Activations: :data:`ACTIVATIONS`, :func:`check_activation` and
:func:`activation_grad` (the ReLU / ReLU6 derivative mask that the
backward passes of :mod:`pydsconv.torch` and :mod:`pydsconv.nn` apply).

Used by the ops (:mod:`pydsconv.conv`), :mod:`pydsconv.torch`,
:mod:`pydsconv.nn` and :mod:`pydsconv.cost`.  The ops accept any int here
and leave the range checks (stride >= 1, padding >= 0, the kernel fits) to
the C++ validator, which owns those messages (``cpp/README.md`` rules 5-7);
the layers and the cost model ask for ``minimum=`` so that a bad layer is
refused when it is built.  :mod:`pydsconv.reference` keeps its own small
parser on purpose: it is the tests' oracle and must not share code with what
it checks.

The type aliases at the end (``IntOrPair``, ``Padding2D``, ...) are the
annotations of the public signatures.
"""

from __future__ import annotations

import operator
from typing import Literal, Optional, Tuple, Union

import numpy as np

INT_LIMIT = 2**40
"""The core's bound on stride, dilation and padding (``cpp/README.md`` rule 5)."""

ACTIVATIONS = (None, "relu", "relu6", "hardswish", "hardsigmoid", "silu", "sigmoid")
"""What ``activation=`` / ``mid_activation=`` accept (cpp/bindings.cpp parse_act)."""

ACTIVATIONS_TEXT = "None, 'relu', 'relu6', 'hardswish', 'hardsigmoid', 'silu' or 'sigmoid'"

NEEDS_PRE_ACTIVATION = ("hardswish", "silu")
"""Activations whose derivative is not a function of their output (they are
not monotonic): their backward needs the value before them."""

PAD_MODES_2D = ("same", "valid")
PAD_MODES_1D = ("same", "valid", "causal")


# --------------------------------------------------------------------------
# ints and pairs
# --------------------------------------------------------------------------


def to_int(name, value, minimum=None, *, limit=None, kind="an int"):
    """``value`` as a Python int.

    A bool or a non-integer (``1.5``, ``"2"``, None, ``np.float32(2)``) is a
    TypeError "``name`` must be ``kind``, got ..."; below ``minimum`` or, with
    ``limit``, not smaller than it in magnitude, a ValueError naming ``name``.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be {kind}, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be {kind}, got {value!r}") from None
    if limit is not None and not -limit < value < limit:
        raise ValueError(f"{name} must be smaller than {limit} in magnitude, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def to_pair(name, value, spatial=2, *, minimum=None, limit=INT_LIMIT):
    """``stride`` / ``dilation`` / ``kernel_size``: an int or a tuple (list)
    of ``spatial`` ints -> a tuple of ``spatial`` ints (see :func:`to_int`)."""
    kind = "an int or a tuple of ints"
    if isinstance(value, (tuple, list)):
        if len(value) != spatial:
            raise ValueError(f"{name} must be an int or a tuple of {spatial} ints, got {value!r}")
        return tuple(to_int(name, v, minimum, limit=limit, kind=kind) for v in value)
    return (to_int(name, value, minimum, limit=limit, kind=kind),) * spatial


# --------------------------------------------------------------------------
# padding
# --------------------------------------------------------------------------


def to_padding(value, spatial=2, *, minimum=None):
    """``padding`` -> ``(mode, (top, bottom, left, right))``.

    ``mode`` is ``"explicit"`` (the four ints are the padding), or
    ``"same"``, ``"valid"`` or (1-D only) ``"causal"`` (any case; the ints are
    then 0: the size-dependent amounts come from :func:`resolve_padding`).
    1-D ops use only ``left`` and ``right``.  ``minimum=0`` refuses negative
    amounts here (the ops leave that to the C++ validator).
    """

    def amount(v):
        return to_int("padding", v, minimum, limit=INT_LIMIT, kind="an int or a tuple of ints")

    if isinstance(value, str):
        mode = value.lower()
        modes = PAD_MODES_2D if spatial == 2 else PAD_MODES_1D
        if mode not in modes:
            raise ValueError(f"padding must be an int, a tuple or one of {modes}, got {value!r}")
        return mode, (0, 0, 0, 0)
    if spatial == 1:
        if isinstance(value, (tuple, list)):
            if len(value) == 1:
                value = value[0]
            elif len(value) == 2:
                return "explicit", (0, 0, amount(value[0]), amount(value[1]))
            else:
                raise ValueError(
                    f"padding must be an int or (left, right) for 1-D ops, got {value!r}"
                )
        p = amount(value)
        return "explicit", (0, 0, p, p)
    if isinstance(value, (tuple, list)):
        bad = (
            "padding must be an int, (ph, pw), ((top, bottom), (left, right)), "
            f"'valid' or 'same', got {value!r}"
        )
        if len(value) != 2:
            raise ValueError(bad)
        pads = []
        for e in value:
            if isinstance(e, (tuple, list)):
                if len(e) != 2:
                    raise ValueError(bad)
                pads += [amount(e[0]), amount(e[1])]
            else:
                pads += [amount(e)] * 2
        return "explicit", tuple(pads)
    p = amount(value)
    return "explicit", (p, p, p, p)


def padding_spec(mode, pads):
    """The shortest user form of a parsed padding: ``"same"`` / ``"valid"`` /
    ``"causal"``, ``(ph, pw)`` when each axis is symmetric, else ``((top,
    bottom), (left, right))``.  What the layers store and print."""
    if mode != "explicit":
        return mode
    top, bottom, left, right = pads
    if top == bottom and left == right:
        return (top, left)
    return ((top, bottom), (left, right))


def same_padding(size, kernel, stride, dilation):
    """TensorFlow's ``"same"`` along one axis -> ``(before, after)``.

    Output ``ceil(size / stride)`` at every stride; total padding
    ``max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)``,
    ``total // 2`` before and the rest (the odd pixel) after.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def resolve_padding(mode, pads, sizes, kernel, stride, dilation):
    """Parsed padding -> ``((before, after), ...)`` per spatial axis for these
    ``sizes`` (one per axis: ``(H, W)`` or ``(L,)``)."""
    spatial = len(sizes)
    explicit = ((pads[0], pads[1]), (pads[2], pads[3]))[2 - spatial :]
    out = []
    for i in range(spatial):
        if mode == "same":
            out.append(same_padding(sizes[i], kernel[i], stride[i], dilation[i]))
        elif mode == "valid":
            out.append((0, 0))
        elif mode == "causal":
            out.append(((kernel[i] - 1) * dilation[i], 0))
        else:
            out.append(explicit[i])
    return tuple(out)


def output_size(sizes, kernel, stride, padding, dilation, *, spatial=2):
    """Spatial output size of a convolution, as the ops compute it.

    ``sizes``, ``kernel``, ``stride``, ``dilation``: tuples of ``spatial``
    ints (already checked, see :func:`to_pair`); ``padding`` as a user gives
    it.  ``(in + before + after - ((k - 1) * dilation + 1)) // stride + 1``
    per axis; ``"same"`` gives ``ceil(in / stride)``.  A dilated kernel
    larger than the padded input is a ValueError naming ``kernel_size`` and
    ``input_size``.
    """
    mode, pads = to_padding(padding, spatial, minimum=0)
    resolved = resolve_padding(mode, pads, sizes, kernel, stride, dilation)
    axes = ("height", "width") if spatial == 2 else ("length",)
    out = []
    for i, axis in enumerate(axes):
        extent = dilation[i] * (kernel[i] - 1) + 1
        before, after = resolved[i]
        padded = sizes[i] + before + after
        if extent > padded:
            raise ValueError(
                f"kernel_size: the kernel's {axis} extent {extent} (kernel {kernel[i]}, "
                f"dilation {dilation[i]}) is larger than the padded input_size {padded} "
                f"(input {sizes[i]} + padding {before}+{after}); "
                f"expected dilation*(kernel-1)+1 <= input+padding"
            )
        out.append((padded - extent) // stride[i] + 1)
    return tuple(out)


# --------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------


def check_activation(name, activation):
    """``activation`` if it is one of :data:`ACTIVATIONS`, else a
    ValueError naming ``name`` (``activation`` or ``mid_activation``)."""
    if not (activation is None or (isinstance(activation, str) and activation in ACTIVATIONS)):
        raise ValueError(f"{name} must be {ACTIVATIONS_TEXT}, got {activation!r}")
    return activation


def activation_grad(grad, output, activation, pre_activation=None):
    """The gradient before ``activation``, from the gradient after it.

    ``output`` is the activation's *output* (the op's result), which is all
    ReLU, ReLU6, hardsigmoid and sigmoid need: as PyTorch's
    ``threshold_backward`` and ``hardtanh_backward``, the gradient passes
    where ``output > 0`` (relu) or ``0 < output < 6`` (relu6) and is 0
    elsewhere, whatever ``grad`` holds there (a NaN ``output`` counts as
    elsewhere); hardsigmoid passes ``grad / 6`` where ``0 < output < 1``
    (``-3 < x < 3``, as PyTorch) and sigmoid gives ``grad * output * (1 -
    output)``.  hardswish and silu (:data:`NEEDS_PRE_ACTIVATION`) need
    ``pre_activation``, the value ``x`` before the activation: hardswish
    ``grad * (x / 3 + 0.5)`` on ``-3 < x < 3``, ``grad`` from 3 up and 0
    from -3 down (as PyTorch); silu ``grad * s * (1 + x * (1 - s))`` with
    ``s = sigmoid(x)``.  ``activation`` None returns ``grad`` itself;
    otherwise the result is a new array of ``grad``'s dtype (``grad`` is
    never written: it may be PyTorch's).

    This is what a caller of the ``*_backward`` ops applies first: they take
    the gradient w.r.t. the op's output before any activation.
    """
    if activation is None:
        return grad
    if activation in ("relu", "relu6"):
        mask = output > 0
        if activation == "relu6":
            mask &= output < 6
        return np.where(mask, grad, 0).astype(grad.dtype, copy=False)
    if activation == "hardsigmoid":
        return np.where((output > 0) & (output < 1), grad / 6, 0).astype(grad.dtype, copy=False)
    if activation == "sigmoid":
        return (grad * (output * (1 - output))).astype(grad.dtype, copy=False)
    if activation not in NEEDS_PRE_ACTIVATION:
        raise ValueError(f"activation must be {ACTIVATIONS_TEXT}, got {activation!r}")
    if pre_activation is None:
        raise ValueError(
            f"the gradient of {activation!r} needs the value before it (pre_activation)"
        )
    x = pre_activation
    if activation == "hardswish":
        d = np.where(x <= -3, 0, np.where(x < 3, x / 3 + 0.5, 1))
        return (grad * d).astype(grad.dtype, copy=False)
    with np.errstate(over="ignore"):
        s = 1 / (1 + np.exp(-x))
    return (grad * (s * (1 + x * (1 - s)))).astype(grad.dtype, copy=False)


# --------------------------------------------------------------------------
# annotations of the public signatures
# --------------------------------------------------------------------------

IntOrPair = Union[int, Tuple[int, int]]
Padding2D = Union[
    int, Tuple[int, int], Tuple[Tuple[int, int], Tuple[int, int]], Literal["valid", "same"]
]
Padding1D = Union[int, Tuple[int, int], Literal["valid", "same", "causal"]]
Layout2D = Literal["NCHW", "NHWC"]
Layout1D = Literal["NCL", "NLC"]
Activation = Optional[Literal["relu", "relu6", "hardswish", "hardsigmoid", "silu", "sigmoid"]]
