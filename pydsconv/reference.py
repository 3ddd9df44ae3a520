"""Pure-NumPy reference implementations of every pydsconv op.

This module is the *oracle* of the test suite: each function has the same
signature and semantics as the fast C++-backed op of the same name (see
``docs/api.md``), but is written to be obviously correct rather than fast.

* Everything is computed in float64 internally and the result is cast back to
  the dtype of ``x`` (or ``grad_out`` for backward ops), so the functions are
  a good oracle for float32 results too.
* Depthwise convolution is an explicit loop over the kernel taps ``(kh, kw)``;
  each tap adds a shifted, strided slice of a zero-padded copy of the input,
  vectorised over batch, channels and output pixels. The backward pass is the
  transpose (scatter-add into a padded gradient buffer, then crop).
* Pointwise (1x1) convolution is an ``np.einsum`` over channels.
* ``"NHWC"`` is handled by transposing to ``"NCHW"`` and back; 1-D ops reshape
  to 2-D with ``H == 1``.
* ``separable_*`` is computed *unfused*, as
  ``pointwise(mid_activation(depthwise(x)))`` (the intermediate stays float64).
* ``num_threads`` is accepted and ignored. ``out``, when given, is filled with
  the result and returned.

Argument checking is minimal (this is an oracle, not the product): obviously
wrong shapes, layouts, paddings and activations raise ``ValueError``.

Padding, stride, dilation and TensorFlow's ``"same"`` rule are parsed here by
this module's own small helpers, **deliberately** not by ``pydsconv._args``
(which the ops, ``pydsconv.torch``, ``pydsconv.nn`` and ``pydsconv.cost``
share): an oracle that reused the product's parser could not catch a bug in it.
"""

import numpy as np

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
]


# ---------------------------------------------------------------------------
# Small helpers: argument normalisation
# ---------------------------------------------------------------------------


def _result_dtype(a):
    """The dtype results are returned in: that of ``a`` if floating, else float64."""
    dt = np.asarray(a).dtype
    return dt if np.issubdtype(dt, np.floating) else np.dtype(np.float64)


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _is_int(v):
    return isinstance(v, (int, np.integer))


def _pair(v, name):
    """int or (a, b) -> (a, b), each >= 1 (for stride / dilation)."""
    if _is_int(v):
        a = b = int(v)
    else:
        a, b = (int(t) for t in v)
    if a < 1 or b < 1:
        raise ValueError(f"{name} must be >= 1, got {v!r}")
    return a, b


def _same_pad(size, k, stride, dilation):
    """TensorFlow "same" padding along one axis -> (lo, hi), odd pixel on hi."""
    out = -(-size // stride)  # ceil(size / stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    lo = total // 2
    return lo, total - lo


def _pads_2d(padding, in_hw, k_hw, stride, dilation):
    """Normalise a 2-D padding spec to ((top, bottom), (left, right))."""
    if isinstance(padding, str):
        p = padding.lower()
        if p == "valid":
            return (0, 0), (0, 0)
        if p == "same":
            return tuple(_same_pad(in_hw[i], k_hw[i], stride[i], dilation[i]) for i in range(2))
        raise ValueError(
            f"padding must be an int, a pair, a pair of pairs, 'valid' or 'same', got {padding!r}"
        )
    if _is_int(padding):
        p = int(padding)
        pads = ((p, p), (p, p))
    else:
        if len(padding) != 2:
            raise ValueError(f"padding must have 2 entries (h, w), got {padding!r}")
        pads = []
        for item in padding:
            if _is_int(item):
                pads.append((int(item), int(item)))
            else:
                lo, hi = item
                pads.append((int(lo), int(hi)))
        pads = tuple(pads)
    if min(pads[0] + pads[1]) < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return pads


def _pads_1d(padding, length, k, stride, dilation):
    """Normalise a 1-D padding spec to (left, right)."""
    if isinstance(padding, str):
        p = padding.lower()
        if p == "valid":
            return 0, 0
        if p == "same":
            return _same_pad(length, k, stride, dilation)
        if p == "causal":
            return dilation * (k - 1), 0
        raise ValueError(
            f"padding must be an int, (left, right), 'valid', 'same' or 'causal', got {padding!r}"
        )
    if _is_int(padding):
        lo = hi = int(padding)
    else:
        lo, hi = (int(t) for t in padding)
    if lo < 0 or hi < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return lo, hi


def _int1(v, name):
    """1-D stride / dilation: an int (or a 1-element sequence), >= 1."""
    if not _is_int(v):
        (v,) = v
    v = int(v)
    if v < 1:
        raise ValueError(f"{name} must be >= 1, got {v!r}")
    return v


def _out_size(size, lo, hi, k, stride, dilation, name):
    span = size + lo + hi - dilation * (k - 1) - 1
    if span < 0:
        raise ValueError(
            f"{name}: kernel (extent {dilation * (k - 1) + 1}) is "
            f"larger than the padded input ({size + lo + hi})"
        )
    return span // stride + 1


def _activate(y, activation):
    if activation is None:
        return y
    if activation == "relu":
        return np.maximum(y, 0.0)
    if activation == "relu6":
        return np.clip(y, 0.0, 6.0)
    # PyTorch's formulas (hardswish(-inf) and silu(-inf) are NaN: -inf * 0,
    # -inf / inf); exp overflowing to inf is meant (sigmoid -> 0, silu -> -0).
    if activation == "hardsigmoid":
        return np.clip(y + 3.0, 0.0, 6.0) / 6.0
    if activation == "hardswish":
        with np.errstate(invalid="ignore"):
            return y * (np.clip(y + 3.0, 0.0, 6.0) / 6.0)
    if activation in ("silu", "sigmoid"):
        with np.errstate(over="ignore", invalid="ignore"):
            d = 1.0 + np.exp(-y)
            return y / d if activation == "silu" else 1.0 / d
    raise ValueError(
        "activation must be None, 'relu', 'relu6', 'hardswish', 'hardsigmoid', 'silu' or "
        f"'sigmoid', got {activation!r}"
    )


def _check_layout(layout, allowed):
    if layout not in allowed:
        raise ValueError(f"layout must be one of {allowed}, got {layout!r}")


def _to_nchw(a, layout):
    return np.transpose(a, (0, 3, 1, 2)) if layout == "NHWC" else a


def _from_nchw(a, layout):
    return np.transpose(a, (0, 2, 3, 1)) if layout == "NHWC" else a


def _finish(result, dtype, out):
    """Cast ``result`` to ``dtype``; fill and return ``out`` if given."""
    result = np.ascontiguousarray(result, dtype=dtype)
    if out is None:
        return result
    if out.shape != result.shape:
        raise ValueError(f"out must have shape {result.shape}, got {out.shape}")
    out[...] = result
    return out


def _pw_matrix(weight, ndim_full):
    """Pointwise weight (C_out, C_in, 1[, 1]) or (C_out, C_in) -> (C_out, C_in)."""
    w = np.asarray(weight)
    if w.ndim == 2:
        return w
    if w.ndim == ndim_full and all(s == 1 for s in w.shape[2:]):
        return w.reshape(w.shape[0], w.shape[1])
    expect = "(C_out, C_in" + ", 1" * (ndim_full - 2) + ") or (C_out, C_in)"
    raise ValueError(f"weight must have shape {expect}, got {w.shape}")


# ---------------------------------------------------------------------------
# Core float64 NCHW kernels (the actual arithmetic lives here)
# ---------------------------------------------------------------------------


def _dw_geometry(x_shape, w_shape, stride, padding, dilation):
    """Return (C, M, kH, kW, (sh, sw), (dh, dw), pads, (OH, OW))."""
    if len(x_shape) != 4:
        raise ValueError(f"x must be 4-D (N, C, H, W), got shape {x_shape}")
    N, C, H, W = x_shape
    if len(w_shape) != 4 or w_shape[1] != 1 or C == 0 or w_shape[0] % C != 0 or w_shape[0] == 0:
        raise ValueError(f"weight must have shape (C*M, 1, kH, kW) with C={C}, got {w_shape}")
    M = w_shape[0] // C
    kH, kW = w_shape[2], w_shape[3]
    s = _pair(stride, "stride")
    d = _pair(dilation, "dilation")
    pads = _pads_2d(padding, (H, W), (kH, kW), s, d)
    OH = _out_size(H, *pads[0], kH, s[0], d[0], "padding")
    OW = _out_size(W, *pads[1], kW, s[1], d[1], "padding")
    return C, M, kH, kW, s, d, pads, (OH, OW)


def _tap(kh, kw, s, d, OH, OW):
    """Slices of the padded input read by kernel tap (kh, kw)."""
    h0, w0 = kh * d[0], kw * d[1]
    return (slice(h0, h0 + (OH - 1) * s[0] + 1, s[0]), slice(w0, w0 + (OW - 1) * s[1] + 1, s[1]))


def _dw_forward(x, w, b, stride, padding, dilation):
    """Depthwise conv, float64 NCHW in and out."""
    C, M, kH, kW, s, d, pads, (OH, OW) = _dw_geometry(x.shape, w.shape, stride, padding, dilation)
    N = x.shape[0]
    xp = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))
    wk = w.reshape(C, M, kH, kW)
    out = np.zeros((N, C, M, OH, OW))
    for kh in range(kH):
        for kw in range(kW):
            sh, sw = _tap(kh, kw, s, d, OH, OW)
            patch = xp[:, :, sh, sw]  # (N, C, OH, OW)
            out += patch[:, :, None] * wk[None, :, :, kh, kw, None, None]
    out = out.reshape(N, C * M, OH, OW)
    if b is not None:
        out += np.asarray(b, dtype=np.float64).reshape(1, C * M, 1, 1)
    return out


def _dw_backward(g, x, w, stride, padding, dilation, input_grad, weight_grad, bias_grad):
    """Depthwise conv gradients, float64 NCHW; grad_weight is 4-D."""
    C, M, kH, kW, s, d, pads, (OH, OW) = _dw_geometry(x.shape, w.shape, stride, padding, dilation)
    N, _, H, W = x.shape
    if g.shape != (N, C * M, OH, OW):
        raise ValueError(f"grad_out must have shape {(N, C * M, OH, OW)}, got {g.shape}")
    gk = g.reshape(N, C, M, OH, OW)
    wk = w.reshape(C, M, kH, kW)
    Hp, Wp = H + sum(pads[0]), W + sum(pads[1])

    gx = gw = gb = None
    if input_grad:
        gxp = np.zeros((N, C, Hp, Wp))
        for kh in range(kH):
            for kw in range(kW):
                sh, sw = _tap(kh, kw, s, d, OH, OW)
                # each output pixel sends g * w back to the input pixel it read
                gxp[:, :, sh, sw] += np.einsum("ncmhw,cm->nchw", gk, wk[:, :, kh, kw])
        gx = gxp[:, :, pads[0][0] : pads[0][0] + H, pads[1][0] : pads[1][0] + W]
    if weight_grad:
        xp = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))
        gwk = np.zeros((C, M, kH, kW))
        for kh in range(kH):
            for kw in range(kW):
                sh, sw = _tap(kh, kw, s, d, OH, OW)
                gwk[:, :, kh, kw] = np.einsum("ncmhw,nchw->cm", gk, xp[:, :, sh, sw])
        gw = gwk.reshape(C * M, 1, kH, kW)
    if bias_grad:
        gb = g.sum(axis=(0, 2, 3))
    return gx, gw, gb


def _pw_forward(x, w2, b):
    """Pointwise conv, float64 NCHW in and out; w2 is (C_out, C_in)."""
    if x.ndim != 4 or w2.shape[1] != x.shape[1]:
        raise ValueError(
            f"weight must have shape (C_out, {x.shape[1]}[, 1, 1]) "
            f"for x of shape {x.shape}, got {w2.shape}"
        )
    out = np.einsum("oi,nihw->nohw", w2, x)
    if b is not None:
        out += np.asarray(b, dtype=np.float64).reshape(1, -1, 1, 1)
    return out


def _pw_backward(g, x, w2, input_grad, weight_grad, bias_grad):
    """Pointwise conv gradients, float64 NCHW; grad_weight is (C_out, C_in)."""
    N, _, H, W = x.shape
    if g.shape != (N, w2.shape[0], H, W):
        raise ValueError(f"grad_out must have shape {(N, w2.shape[0], H, W)}, got {g.shape}")
    gx = np.einsum("oi,nohw->nihw", w2, g) if input_grad else None
    gw = np.einsum("nohw,nihw->oi", g, x) if weight_grad else None
    gb = g.sum(axis=(0, 2, 3)) if bias_grad else None
    return gx, gw, gb


# ---------------------------------------------------------------------------
# 2-D public ops
# ---------------------------------------------------------------------------


def depthwise_conv2d(
    x,
    weight,
    bias=None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    layout="NCHW",
    activation=None,
    out=None,
    num_threads=None,
):
    """Depthwise 2-D convolution (groups = C, channel multiplier M).

    ``weight`` is ``(C*M, 1, kH, kW)``; output channel ``c*M + m`` reads input
    channel ``c``. Returns ``(N, C*M, OH, OW)`` (NCHW) or ``(N, OH, OW, C*M)``
    (NHWC), with ``activation`` applied after the bias.
    """
    _check_layout(layout, ("NCHW", "NHWC"))
    dtype = _result_dtype(x)
    x64 = _to_nchw(_f64(x), layout)
    y = _dw_forward(x64, _f64(weight), bias, stride, padding, dilation)
    y = _activate(y, activation)
    return _finish(_from_nchw(y, layout), dtype, out)


def pointwise_conv2d(
    x, weight, bias=None, *, layout="NCHW", activation=None, out=None, num_threads=None
):
    """Pointwise (1x1) 2-D convolution: a channel-mixing matrix product.

    ``weight`` is ``(C_out, C_in, 1, 1)`` or ``(C_out, C_in)``.
    """
    _check_layout(layout, ("NCHW", "NHWC"))
    dtype = _result_dtype(x)
    x64 = _to_nchw(_f64(x), layout)
    y = _pw_forward(x64, _f64(_pw_matrix(weight, 4)), bias)
    y = _activate(y, activation)
    return _finish(_from_nchw(y, layout), dtype, out)


def separable_conv2d(
    x,
    depthwise_weight,
    pointwise_weight,
    depthwise_bias=None,
    pointwise_bias=None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    layout="NCHW",
    mid_activation=None,
    activation=None,
    out=None,
    num_threads=None,
):
    """Depthwise-separable 2-D convolution, computed unfused.

    Equals ``pointwise(mid_activation(depthwise(x, dw, db, ...)), pw, pb)``
    followed by ``activation``; the intermediate is kept in float64.
    """
    _check_layout(layout, ("NCHW", "NHWC"))
    dtype = _result_dtype(x)
    x64 = _to_nchw(_f64(x), layout)
    mid = _dw_forward(x64, _f64(depthwise_weight), depthwise_bias, stride, padding, dilation)
    mid = _activate(mid, mid_activation)
    y = _pw_forward(mid, _f64(_pw_matrix(pointwise_weight, 4)), pointwise_bias)
    y = _activate(y, activation)
    return _finish(_from_nchw(y, layout), dtype, out)


def depthwise_conv2d_backward(
    grad_out,
    x,
    weight,
    *,
    stride=1,
    padding=0,
    dilation=1,
    layout="NCHW",
    input_grad=True,
    weight_grad=True,
    bias_grad=True,
    num_threads=None,
):
    """Gradients of :func:`depthwise_conv2d` (pre-activation ``grad_out``).

    Returns ``(grad_x, grad_weight, grad_bias)``; an entry is ``None`` when its
    flag is False. ``grad_x`` has ``x``'s layout, ``grad_weight`` is
    ``(C*M, 1, kH, kW)``, ``grad_bias`` is ``(C*M,)`` (returned whether or not
    the forward call had a bias).
    """
    _check_layout(layout, ("NCHW", "NHWC"))
    dtype = _result_dtype(grad_out)
    g64 = _to_nchw(_f64(grad_out), layout)
    x64 = _to_nchw(_f64(x), layout)
    gx, gw, gb = _dw_backward(
        g64, x64, _f64(weight), stride, padding, dilation, input_grad, weight_grad, bias_grad
    )
    return (
        None if gx is None else _finish(_from_nchw(gx, layout), dtype, None),
        None if gw is None else _finish(gw, dtype, None),
        None if gb is None else _finish(gb, dtype, None),
    )


def pointwise_conv2d_backward(
    grad_out,
    x,
    weight,
    *,
    layout="NCHW",
    input_grad=True,
    weight_grad=True,
    bias_grad=True,
    num_threads=None,
):
    """Gradients of :func:`pointwise_conv2d` (pre-activation ``grad_out``).

    Returns ``(grad_x, grad_weight, grad_bias)``; ``grad_weight`` has the shape
    ``weight`` was given in (4-D or 2-D), ``grad_bias`` is ``(C_out,)``.
    """
    _check_layout(layout, ("NCHW", "NHWC"))
    dtype = _result_dtype(grad_out)
    g64 = _to_nchw(_f64(grad_out), layout)
    x64 = _to_nchw(_f64(x), layout)
    w_shape = np.shape(weight)
    gx, gw, gb = _pw_backward(
        g64, x64, _f64(_pw_matrix(weight, 4)), input_grad, weight_grad, bias_grad
    )
    return (
        None if gx is None else _finish(_from_nchw(gx, layout), dtype, None),
        None if gw is None else _finish(gw.reshape(w_shape), dtype, None),
        None if gb is None else _finish(gb, dtype, None),
    )


# ---------------------------------------------------------------------------
# 1-D public ops (reshape to 2-D with H == 1)
# ---------------------------------------------------------------------------

_LAYOUT_1D_TO_2D = {"NCL": "NCHW", "NLC": "NHWC"}


def _x1_to_2d(a, layout):
    """NCL (N, C, L) -> (N, C, 1, L); NLC (N, L, C) -> (N, 1, L, C)."""
    a = np.asarray(a)
    if a.ndim != 3:
        raise ValueError(f"expected a 3-D array ({layout}), got shape {a.shape}")
    return a[:, :, None, :] if layout == "NCL" else a[:, None, :, :]


def _x2_to_1d(a, layout):
    return a[:, :, 0, :] if layout == "NCL" else a[:, 0, :, :]


def _dw_args_1d(x, weight, stride, padding, dilation, layout):
    """Translate 1-D depthwise arguments to 2-D ones (H == 1)."""
    _check_layout(layout, ("NCL", "NLC"))
    w = np.asarray(weight)
    if w.ndim != 3:
        raise ValueError(f"weight must have shape (C*M, 1, k), got {w.shape}")
    s = _int1(stride, "stride")
    d = _int1(dilation, "dilation")
    length = np.shape(x)[2] if layout == "NCL" else np.shape(x)[1]
    pads = _pads_1d(padding, length, w.shape[2], s, d)
    return w[:, :, None, :], (1, s), ((0, 0), pads), (1, d), _LAYOUT_1D_TO_2D[layout]


def depthwise_conv1d(
    x,
    weight,
    bias=None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    layout="NCL",
    activation=None,
    out=None,
    num_threads=None,
):
    """Depthwise 1-D convolution; ``weight`` is ``(C*M, 1, k)``.

    ``padding``: int | (left, right) | "valid" | "same" | "causal" (all padding,
    ``dilation*(k-1)``, on the left).
    """
    w2, s, p, d, lay2 = _dw_args_1d(x, weight, stride, padding, dilation, layout)
    y = depthwise_conv2d(
        _x1_to_2d(x, layout),
        w2,
        bias,
        stride=s,
        padding=p,
        dilation=d,
        layout=lay2,
        activation=activation,
    )
    return _finish(_x2_to_1d(y, layout), y.dtype, out)


def pointwise_conv1d(
    x, weight, bias=None, *, layout="NCL", activation=None, out=None, num_threads=None
):
    """Pointwise 1-D convolution; ``weight`` is ``(C_out, C_in, 1)`` or ``(C_out, C_in)``."""
    _check_layout(layout, ("NCL", "NLC"))
    w2 = _pw_matrix(weight, 3)
    y = pointwise_conv2d(
        _x1_to_2d(x, layout), w2, bias, layout=_LAYOUT_1D_TO_2D[layout], activation=activation
    )
    return _finish(_x2_to_1d(y, layout), y.dtype, out)


def separable_conv1d(
    x,
    depthwise_weight,
    pointwise_weight,
    depthwise_bias=None,
    pointwise_bias=None,
    *,
    stride=1,
    padding=0,
    dilation=1,
    layout="NCL",
    mid_activation=None,
    activation=None,
    out=None,
    num_threads=None,
):
    """Depthwise-separable 1-D convolution, computed unfused (see separable_conv2d)."""
    w2, s, p, d, lay2 = _dw_args_1d(x, depthwise_weight, stride, padding, dilation, layout)
    y = separable_conv2d(
        _x1_to_2d(x, layout),
        w2,
        _pw_matrix(pointwise_weight, 3),
        depthwise_bias,
        pointwise_bias,
        stride=s,
        padding=p,
        dilation=d,
        layout=lay2,
        mid_activation=mid_activation,
        activation=activation,
    )
    return _finish(_x2_to_1d(y, layout), y.dtype, out)


def depthwise_conv1d_backward(
    grad_out,
    x,
    weight,
    *,
    stride=1,
    padding=0,
    dilation=1,
    layout="NCL",
    input_grad=True,
    weight_grad=True,
    bias_grad=True,
    num_threads=None,
):
    """Gradients of :func:`depthwise_conv1d`: ``(grad_x, grad_weight (C*M, 1, k), grad_bias)``."""
    w2, s, p, d, lay2 = _dw_args_1d(x, weight, stride, padding, dilation, layout)
    gx, gw, gb = depthwise_conv2d_backward(
        _x1_to_2d(grad_out, layout),
        _x1_to_2d(x, layout),
        w2,
        stride=s,
        padding=p,
        dilation=d,
        layout=lay2,
        input_grad=input_grad,
        weight_grad=weight_grad,
        bias_grad=bias_grad,
    )
    if gx is not None:
        gx = np.ascontiguousarray(_x2_to_1d(gx, layout))
    if gw is not None:
        gw = gw.reshape(np.shape(weight))
    return gx, gw, gb


def pointwise_conv1d_backward(
    grad_out,
    x,
    weight,
    *,
    layout="NCL",
    input_grad=True,
    weight_grad=True,
    bias_grad=True,
    num_threads=None,
):
    """Gradients of :func:`pointwise_conv1d`; ``grad_weight`` keeps ``weight``'s shape."""
    _check_layout(layout, ("NCL", "NLC"))
    gx, gw, gb = pointwise_conv2d_backward(
        _x1_to_2d(grad_out, layout),
        _x1_to_2d(x, layout),
        _pw_matrix(weight, 3),
        layout=_LAYOUT_1D_TO_2D[layout],
        input_grad=input_grad,
        weight_grad=weight_grad,
        bias_grad=bias_grad,
    )
    if gx is not None:
        gx = np.ascontiguousarray(_x2_to_1d(gx, layout))
    if gw is not None:
        gw = gw.reshape(np.shape(weight))
    return gx, gw, gb
