"""Friendly argument handling for the public ops; all computing is in ``_core``.

This layer turns Python arguments into the normalised form the C++ core takes
(arrays, ``(h, w)`` pairs, padding as a mode plus four ints).  It never copies
an ndarray: the binding describes arrays as given (any strides) to the C++
validator (``cpp/validate.cpp``, every shape rule) and copies non-C-contiguous
or unaligned inputs once, only after the call has been accepted, so a huge
strided view (e.g. zero strides) is rejected without being materialised.
"""
from __future__ import annotations

import operator
import warnings

import numpy as np

from . import _core

_PAD_MODES = ("same", "valid")
_PAD_MODES_1D = ("same", "valid", "causal")
_LAYOUTS_2D = {"NCHW": "NCHW", "NHWC": "NHWC"}
_LAYOUTS_1D = {"NCL": "NCHW", "NLC": "NHWC"}


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
        raise TypeError(f"{name} must be a float32 or float64 array, got a PackedPointwise: only "
                        "the forward pointwise and separable ops take one; backward ops take the "
                        "plain weight array (packed.weight gives it)")
    if type(value).__module__.startswith("torch") and getattr(value, "requires_grad", False):
        raise TypeError(f"{name} is a PyTorch tensor that requires grad: NumPy ops cannot "
                        f"track its gradient; pass {name}.detach() (or .detach().numpy()), or "
                        "use the autograd-aware layers of pydsconv.torch")
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name} must be a float32 or float64 array; "
                            f"NumPy cannot convert it: {exc}") from None
    if arr.dtype.kind != "f" or arr.dtype.itemsize not in (4, 8):
        raise TypeError(f"{name} must have dtype float32 or float64, got {arr.dtype} "
                        "(pydsconv never casts silently)")
    if not arr.dtype.isnative:
        raise TypeError(f"{name} must have native byte order, got {arr.dtype}")
    return arr


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


_INT_LIMIT = 2**40  # the core's bound on stride, dilation and padding (cpp/README.md rule 5)


def _int(name, v, limit=_INT_LIMIT):
    """``v`` as a Python int with |v| < limit (TypeError / ValueError naming ``name``)."""
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int or a tuple of ints, got {v!r}")
    try:
        v = operator.index(v)
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of ints, got {v!r}") from None
    if not -limit < v < limit:
        raise ValueError(f"{name} must be smaller than {limit} in magnitude, got {v}")
    return v


def _pair(name, v, spatial):
    """stride / dilation -> (h, w); 1-D ops use (1, v)."""
    if isinstance(v, (tuple, list)):
        if len(v) != spatial:
            raise ValueError(f"{name} must be an int or a tuple of {spatial} ints, got {v!r}")
        vals = tuple(_int(name, e) for e in v)
    else:
        vals = (_int(name, v),) * spatial
    return vals if spatial == 2 else (1,) + vals


def _padding(v, spatial):
    """padding -> (mode, (top, bottom, left, right))."""
    if isinstance(v, str):
        mode = v.lower()
        modes = _PAD_MODES if spatial == 2 else _PAD_MODES_1D
        if mode not in modes:
            raise ValueError(f"padding must be an int, a tuple or one of {modes}, got {v!r}")
        return mode, (0, 0, 0, 0)
    if spatial == 1:
        if isinstance(v, (tuple, list)):
            if len(v) == 1:
                v = v[0]
            elif len(v) == 2:
                return "explicit", (0, 0, _int("padding", v[0]), _int("padding", v[1]))
            else:
                raise ValueError(f"padding must be an int or (left, right) for 1-D ops, got {v!r}")
        p = _int("padding", v)
        return "explicit", (0, 0, p, p)
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError("padding must be an int, (ph, pw), ((top, bottom), (left, right)), "
                             f"'valid' or 'same', got {v!r}")
        out = []
        for e in v:
            if isinstance(e, (tuple, list)):
                if len(e) != 2:
                    raise ValueError("padding must be an int, (ph, pw), ((top, bottom), "
                                     f"(left, right)), 'valid' or 'same', got {v!r}")
                out += [_int("padding", e[0]), _int("padding", e[1])]
            else:
                out += [_int("padding", e)] * 2
        return "explicit", tuple(out)
    p = _int("padding", v)
    return "explicit", (p, p, p, p)


def _layout(layout, spatial):
    table = _LAYOUTS_2D if spatial == 2 else _LAYOUTS_1D
    if not isinstance(layout, str) or layout not in table:
        raise ValueError(f"layout must be one of {tuple(table)}, got {layout!r}")
    return table[layout]


def _threads(n):
    if n is None:
        return 0
    return _thread_count("num_threads", n, stacklevel=5)


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
        warnings.warn(f"{name}={n} is above pydsconv's limit of {limit} threads "
                      f"(4 x {cores} usable cores); using {limit}",
                      RuntimeWarning, stacklevel=stacklevel)
        return limit
    return n


def _conv_args(spatial, stride, padding, dilation, layout):
    mode, pads = _padding(padding, spatial)
    return (spatial, _layout(layout, spatial), _pair("stride", stride, spatial),
            _pair("dilation", dilation, spatial), mode, pads)


# -- forward ---------------------------------------------------------------

def _depthwise(spatial, x, weight, bias, stride, padding, dilation, layout, activation, out,
               num_threads):
    x = _array("x", x)
    weight = _array("weight", weight)
    bias = _array("bias", bias, optional=True)
    args = _conv_args(spatial, stride, padding, dilation, layout)
    return _core.depthwise_forward(x, weight, bias, *args, activation, _out(out),
                                   _threads(num_threads))


def _pw_weight(name, value):
    """(weight array, packed or None): a :func:`prepack_pointwise` result
    stands for its own copy of the weight, checked like any weight array."""
    if isinstance(value, _core.PackedPointwise):
        return value.weight, value
    return _array(name, value), None


def _prepack_pointwise(weight, num_threads):
    weight = _array("weight", weight)
    if weight.ndim >= 2 and 0 in weight.shape[:2]:   # as the ops refuse it
        raise ValueError("weight must have shape (C_out, C_in), (C_out, C_in, 1) or "
                         f"(C_out, C_in, 1, 1) with C_out, C_in >= 1, got {weight.shape}")
    return _core.prepack_pointwise(weight, _threads(num_threads))


def _pointwise(spatial, x, weight, bias, layout, activation, out, num_threads):
    x = _array("x", x)
    weight, packed = _pw_weight("weight", weight)
    bias = _array("bias", bias, optional=True)
    return _core.pointwise_forward(x, weight, bias, spatial, _layout(layout, spatial), activation,
                                   _out(out), _threads(num_threads), packed)


def _separable(spatial, x, dw, pw, db, pb, stride, padding, dilation, layout, mid_activation,
               activation, out, num_threads):
    x = _array("x", x)
    dw = _array("depthwise_weight", dw)
    pw, packed = _pw_weight("pointwise_weight", pw)
    db = _array("depthwise_bias", db, optional=True)
    pb = _array("pointwise_bias", pb, optional=True)
    args = _conv_args(spatial, stride, padding, dilation, layout)
    return _core.separable_forward(x, dw, pw, db, pb, *args, mid_activation, activation,
                                   _out(out), _threads(num_threads), packed)


def _depthwise_backward(spatial, grad_out, x, weight, stride, padding, dilation, layout,
                        input_grad, weight_grad, bias_grad, num_threads):
    grad_out = _array("grad_out", grad_out)
    x = _array("x", x)
    weight = _array("weight", weight)
    args = _conv_args(spatial, stride, padding, dilation, layout)
    return _core.depthwise_backward(grad_out, x, weight, *args, bool(input_grad),
                                    bool(weight_grad), bool(bias_grad), _threads(num_threads))


def _pointwise_backward(spatial, grad_out, x, weight, layout, input_grad, weight_grad, bias_grad,
                        num_threads):
    grad_out = _array("grad_out", grad_out)
    x = _array("x", x)
    weight = _array("weight", weight)
    return _core.pointwise_backward(grad_out, x, weight, spatial, _layout(layout, spatial),
                                    bool(input_grad), bool(weight_grad), bool(bias_grad),
                                    _threads(num_threads))
