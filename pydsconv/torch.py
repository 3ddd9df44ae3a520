"""PyTorch front end: ``torch.library`` custom ops and ``nn.Module``s backed by pydsconv.

Optional: ``import pydsconv.torch`` needs PyTorch; the rest of pydsconv does
not.  The module is named after the framework it serves; inside it ``import
torch`` is an absolute import and always finds PyTorch (unless the
``pydsconv/`` folder itself is put on ``sys.path``, which no supported way of
running pydsconv does; that case is detected and reported).

What it gives:

* :class:`DepthwiseConv2d`, :class:`PointwiseConv2d`, :class:`SeparableConv2d`:
  drop-in layers with PyTorch's parameter names, shapes and initialisation
  (``nn.Conv2d(C, C*M, k, groups=C)`` and ``nn.Conv2d(C_in, C_out, 1)``), so a
  ``state_dict`` moves between them and torch layers as it is.
* :func:`depthwise_conv2d`, :func:`pointwise_conv2d`, :func:`separable_conv2d`:
  the functional forms (like ``torch.nn.functional.conv2d``), differentiable.
* ``torch.ops.pydsconv.depthwise_conv2d`` ... : the ``torch.library``
  custom ops beneath (forward and ``..._backward``, with fake kernels and
  autograd formulas), so ``torch.compile(fullgraph=True)``,
  ``torch.export`` and FakeTensor / meta tensors trace through the layers;
  ``torch.onnx.export`` (both exporters) writes standard ``Conv`` nodes.
* :class:`DepthwiseConv2dFunction`, :class:`PointwiseConv2dFunction`,
  :class:`SeparableConv2dFunction`: the former autograd Functions' names,
  whose ``apply`` is the functional form.
* The 1-D twins for (N, C, L) sequences: :class:`DepthwiseConv1d`,
  :class:`PointwiseConv1d`, :class:`SeparableConv1d` (padding also
  ``"causal"``), :func:`depthwise_conv1d` ..., ``...Conv1dFunction``.
* :func:`convert`: swaps an existing PyTorch model's depthwise and 1x1
  convolutions for these layers (folding BatchNorm in eval mode, fusing
  depthwise -> activation -> 1x1); :class:`ConvertReport` says what it did.

Data path.  CPU float32 / float64 tensors go to pydsconv **without a copy**
(``tensor.detach().numpy()``) and results come back without one
(``torch.from_numpy``).  An NCHW-contiguous input runs in pydsconv layout
"NCHW"; a ``channels_last`` input runs in layout "NHWC" on its permuted view
(which is C-contiguous) and gives a ``channels_last`` output and input
gradient, so the memory format propagates through a model as it does in
PyTorch.  A tensor that is both (one channel, or 1x1 pixels: the two layouts
are the same bytes) counts as NCHW.  Any other strides (a slice, a transposed
view, an expanded gradient) are copied once to NCHW-contiguous, or to
channels_last for gradients flowing into a channels_last op.  Other devices,
sparse tensors and other dtypes are refused (``ValueError`` / ``TypeError``);
nothing is cast silently: all tensors of one call share one dtype.

Threads: each call uses ``torch.get_num_threads()``, so
``torch.set_num_threads`` governs PyTorch's ops and these alike
(``pydsconv.set_num_threads`` does not apply here).

Padding: an int, ``(ph, pw)``, ``((top, bottom), (left, right))``, ``"valid"``
or ``"same"``.  ``"same"`` is TensorFlow's rule at every stride (output
``ceil(in / stride)``, the odd pixel at the bottom/right): where PyTorch
allows ``"same"`` (stride 1) this is exactly PyTorch's; at stride > 1, where
``nn.Conv2d`` refuses ``"same"``, it gives Keras' result.  Only zero padding.

Activations (``None``, ``"relu"``, ``"relu6"``, ``"hardswish"``,
``"hardsigmoid"``, ``"silu"``, ``"sigmoid"``) can be fused into the ops
(hardswish and silu as the last activation run after the op, as PyTorch's
own function, when autograd records the call: their derivative needs the
value before them).  The derivatives follow PyTorch's: for ``nn.ReLU`` /
``nn.ReLU6`` (``hardtanh``) the gradient passes where the output is
strictly inside (0, 6).

Gradients are computed only for the inputs that need them
(``ctx.needs_input_grad``).  Double backward works (``create_graph=True``,
e.g. a gradient penalty): with grad mode on, each backward is built from the
differentiable ops themselves (the input gradient of a depthwise conv is a
transposed depthwise conv, its weight gradient a correlation, each a pydsconv
op with its own autograd formula), so derivatives of any order equal
``nn.Conv2d``'s; plain backward keeps the direct path.  ``torch.func.grad``,
``vjp`` and ``jacrev`` work; ``torch.func.vmap`` runs through PyTorch's
per-sample fallback; forward-mode AD (``jvp``, dual tensors) and ``vmap``
of a grad transform raise a clear ``RuntimeError``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from typing import Dict, List, Optional, Tuple

try:
    import torch
except ImportError as _exc:
    raise ImportError(
        "pydsconv.torch needs PyTorch, which is not installed: pip install torch "
        "(the CPU wheel is enough). The rest of pydsconv (the NumPy API) works without it."
    ) from _exc
if not hasattr(torch, "autograd"):  # `import torch` found this file: pydsconv/ is on sys.path
    raise ImportError(
        f"`import torch` found {getattr(torch, '__file__', torch)!r} instead of PyTorch: the "
        "pydsconv/ folder itself is on sys.path (e.g. a script run from inside it). Run from "
        "the repository root or elsewhere and import pydsconv.torch."
    )

from torch import nn
from torch.autograd import forward_ad as _fwad
from torch.nn import functional as F

import pydsconv
from pydsconv import _args, _core
from pydsconv import conv as _conv
from pydsconv._args import Activation, IntOrPair, Padding1D, Padding2D

__all__ = [
    "compile_inference",
    "DepthwiseConv2d",
    "PointwiseConv2d",
    "SeparableConv2d",
    "depthwise_conv2d",
    "pointwise_conv2d",
    "separable_conv2d",
    "DepthwiseConv2dFunction",
    "PointwiseConv2dFunction",
    "SeparableConv2dFunction",
    "DepthwiseConv1d",
    "PointwiseConv1d",
    "SeparableConv1d",
    "depthwise_conv1d",
    "pointwise_conv1d",
    "separable_conv1d",
    "DepthwiseConv1dFunction",
    "PointwiseConv1dFunction",
    "SeparableConv1dFunction",
    "convert",
    "ConvertReport",
]

_DTYPES = (torch.float32, torch.float64)
_PLAIN_TENSORS = (torch.Tensor, nn.Parameter)


# --------------------------------------------------------------------------
# tensor <-> array, without copies
# --------------------------------------------------------------------------


def _check_tensor(name, t, optional=False):
    if type(t) in _PLAIN_TENSORS and t.is_cpu and t.dtype in _DTYPES and t.layout is torch.strided:
        return  # the common case, in few attribute reads; else find what is wrong
    if t is None:
        if optional:
            return
        raise TypeError(f"{name} must be a torch.Tensor, got None")
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(
            f"{name} is on device '{t.device}': pydsconv runs on the CPU only (move it with .cpu())"
        )
    if t.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {t.layout}")
    if t.dtype not in _DTYPES:
        raise TypeError(
            f"{name} must be float32 or float64, got {t.dtype} "
            "(pydsconv never casts silently; use .float() or .double())"
        )


def _check_call(x, named, activations=(), ndim=4):
    """Type, device and dtype checks shared by the functional ops."""
    _check_tensor("x", x)
    for name, t in named:
        _check_tensor(name, t, optional=name.endswith("bias"))
        if t is not None and t.dtype != x.dtype:
            raise TypeError(
                f"x is {x.dtype} but {name} is {t.dtype}: all tensors of one call "
                "must share one dtype (pydsconv never casts silently)"
            )
    if x.dim() != ndim:
        want = (
            "4-D (N, C, H, W) (or 3-D (C, H, W) unbatched)"
            if ndim == 4
            else "3-D (N, C, L) (or 2-D (C, L) unbatched)"
        )
        raise ValueError(f"x must be {want}, got shape {tuple(x.shape)}")
    for name, act in activations:
        _args.check_activation(name, act)


def _layout(x):
    """pydsconv layout in which ``x`` is read without a copy: "NCHW" or "NHWC".

    NCHW-contiguous (also when it is channels_last-contiguous too: one channel
    or 1x1 pixels, the same bytes either way) -> "NCHW"; channels_last ->
    "NHWC"; any other strides -> "NCHW" (copied once by :func:`_array`).
    """
    if x.is_contiguous():
        return "NCHW"
    if x.is_contiguous(memory_format=torch.channels_last):
        return "NHWC"
    return "NCHW"


def _array(t, layout="NCHW"):
    """``t`` as a C-contiguous ndarray in ``layout``; shares memory unless
    ``t`` had other strides, in which case it is copied once."""
    if t is None:
        return None
    t = t.detach()
    if layout == "NHWC":
        t = t.permute(0, 2, 3, 1)  # C-contiguous exactly when t is channels_last
    if not t.is_contiguous():
        t = t.contiguous()
    return t.numpy()


def _tensor(a, layout="NCHW"):
    """ndarray -> tensor sharing its memory; an NHWC array becomes a
    channels_last (N, C, H, W) tensor.

    The NHWC case transposes on the NumPy side: ``torch.permute`` would make
    the op's output a torch *view*, and autograd forbids in-place ops
    (``nn.ReLU6(inplace=True)``) on views returned by a custom Function."""
    if a is None:
        return None
    return torch.from_numpy(a.transpose(0, 3, 1, 2) if layout == "NHWC" else a)


def _threads():
    return torch.get_num_threads()


def _core_threads():
    """:func:`_threads` for a direct ``_core`` call: above pydsconv's limit it is
    capped with the NumPy ops' warning (:func:`pydsconv.conv._thread_count`)."""
    n = torch.get_num_threads()
    return n if n <= _core.max_threads() else _conv._thread_count("num_threads", n, stacklevel=6)


def _act_mask(g, y, activation, pre=None):
    """``g`` (an ndarray view of PyTorch's gradient, never written) times
    the derivative of ``activation``, read from its output ``y`` (or, for
    hardswish and silu, from ``pre``, the value before it)."""
    return _args.activation_grad(g, y, activation, pre)


def _mid(depthwise, x, w, b, activation, conv):
    """The separable ops' intermediate, recomputed in backward, and the
    value before ``activation`` where its derivative needs it (else None)."""
    if activation not in _args.NEEDS_PRE_ACTIVATION:
        return depthwise(x, w, b, activation=activation, **conv), None
    pre = depthwise(x, w, b, **conv)
    return pydsconv._core._activate(pre.copy(), activation), pre


# hardswish and silu as the last activation of an op that autograd records:
# the op runs without it and PyTorch's own function follows (their
# derivative needs the value before them, which the ops' outputs are not).
_PRE_ACT_FN = {"hardswish": F.hardswish, "silu": F.silu}


def _saved_input(x, layout):
    """The tensor to save for backward: ``x`` itself when it is read in place,
    else the contiguous copy (so backward does not copy it again)."""
    if layout == "NHWC" or x.is_contiguous():
        return x
    return x.contiguous()


# --------------------------------------------------------------------------
# torch.library custom ops
# --------------------------------------------------------------------------
#
# Every pydsconv op used here is a custom op in the "pydsconv" namespace
# (``torch.ops.pydsconv.depthwise_conv2d`` ...), forward and backward alike,
# each with a fake (meta) kernel that computes the output's shape, dtype and
# memory format from the arguments, and the forward ops with their autograd
# formula (``register_autograd``) calling the backward ops.  So
# ``torch.compile(fullgraph=True)``, ``torch.export`` and FakeTensor / meta
# tensors see through them.  The tensors still go to NumPy without a copy.
# Plain eager calls skip the dispatcher, whose Python overhead (~50-100 us a
# call) would double the cost of a small layer: :func:`_call` runs the same
# function (and, where autograd records, the same formula as an
# ``autograd.Function``) directly, and takes the dispatcher whenever anything
# could tell the difference (compiling, tracing, torch.func, dispatch or
# torch-function modes, tensor subclasses).
#
# Schemas need plain types, so the wrappers pass ``stride`` / ``dilation``
# as int lists and ``padding`` as its parsed ``(mode, [top, bottom, left,
# right])`` (:func:`pydsconv._args.to_padding`); the kernels rebuild the
# user form for pydsconv, which validates everything as before.  The backward
# ops return an empty tensor for a gradient that is not needed.

_CL = torch.channels_last


def _pad_arg(mode, pads, spatial=2):
    """The parsed padding back in a form pydsconv takes."""
    if mode != "explicit":
        return mode
    t, b, left, right = pads
    return ((t, b), (left, right)) if spatial == 2 else (left, right)


def _geom(stride, padding, dilation, spatial=2):
    """User geometry -> the custom ops' arguments (stride, mode, pads, dilation).

    Parsed once per distinct geometry: the result is cached under a key that
    holds each value's type as well (so ``True`` never hits the entry of
    ``1``), for the plain forms layers and most calls use (ints, strings and
    tuples of them); anything else is parsed every time."""
    key = (_key(stride), _key(padding), _key(dilation), spatial)
    if None not in key:
        hit = _GEOM_CACHE.get(key)
        if hit is not None:
            return hit
    s = list(_args.to_pair("stride", stride, spatial))
    d = list(_args.to_pair("dilation", dilation, spatial))
    mode, pads = _args.to_padding(padding, spatial)
    geom = (s, mode, list(pads), d)
    if None not in key and len(_GEOM_CACHE) < 4096:
        _GEOM_CACHE[key] = geom
    return geom


_GEOM_CACHE: Dict[tuple, tuple] = {}


def _key(v):
    """A cache key for a geometry value that tells types apart, or None."""
    t = type(v)
    if t is int or t is str:
        return (t, v)
    if t is tuple:
        for e in v:
            if type(e) is not int:
                parts = tuple(_key(e) for e in v)
                return None if None in parts else parts
        return (t, v)  # ints only (no bool: type(True) is bool)
    return None


def _none(t):
    """A backward op's empty placeholder -> None (autograd's "no gradient")."""
    return None if t.numel() == 0 and t.dim() == 1 and t.shape[0] == 0 else t


def _grad_or_empty(a, like, layout="NCHW"):
    return _tensor(a, layout) if a is not None else like.new_empty(0)


def _fake_like(t, shape):
    """An uninitialised tensor of ``shape`` in ``t``'s pydsconv memory format."""
    fmt = _CL if t.dim() == 4 and _layout(t) == "NHWC" else torch.contiguous_format
    return torch.empty(shape, dtype=t.dtype, device=t.device, memory_format=fmt)


def _fake_out_hw(x, weight, stride, mode, pads, dilation, spatial=2):
    sizes = tuple(x.shape[2:])
    kernel = tuple(weight.shape[2:])
    s = _args.to_pair("stride", stride, spatial, minimum=1)
    d = _args.to_pair("dilation", dilation, spatial, minimum=1)
    return _args.output_size(sizes, kernel, s, _pad_arg(mode, pads, spatial), d, spatial=spatial)


def _refuse_double_backward(ctx, *grads):
    raise RuntimeError(
        "pydsconv's fused separable backward op is differentiable once: with "
        "create_graph=True the separable ops' autograd formula takes the depthwise and "
        "pointwise ops instead (call them through pydsconv.torch, not the _backward op)"
    )


def _no_double_backward(op):
    op.register_autograd(_refuse_double_backward)


# The derivative of each fused activation as torch ops, from the activation's
# output (what the ops save), for gradients that must themselves be
# differentiable (create_graph=True).  Each is linear in the gradient ``g``;
# ReLU's and ReLU6's masks are piecewise constant in ``y`` (no gradient to it).
_ACT_GRAD_TORCH = {
    "relu": lambda g, y: torch.where(y > 0, g, g.new_zeros(())),
    "relu6": lambda g, y: torch.where((y > 0) & (y < 6), g, g.new_zeros(())),
    "sigmoid": lambda g, y: g * y * (1 - y),
    "hardsigmoid": lambda g, y: torch.where((y > 0) & (y < 1), g / 6, g.new_zeros(())),
}


def _silu_grad(g, z):
    s = torch.sigmoid(z)
    return g * (s * (1 + z * (1 - s)))


def _hardswish_grad(g, z):  # PyTorch's hardswish_backward, in torch ops
    inner = torch.where(z <= 3, g * (z / 3 + 0.5), g)
    return torch.where(z < -3, g.new_zeros(()), inner)


# hardswish and silu: from the value before them (their outputs do not
# determine it), the separable ops' intermediate under create_graph
_PRE_ACT_GRAD_TORCH = {"silu": _silu_grad, "hardswish": _hardswish_grad}


def _act_grad_t(g, y, activation):
    """:func:`pydsconv._args.activation_grad` with torch ops (differentiable)."""
    if activation is None:
        return g
    fn = _ACT_GRAD_TORCH.get(activation)
    if fn is None:
        raise NotImplementedError(
            f"pydsconv: double backward through the fused activation {activation!r} is not "
            "supported (apply it as a separate torch module instead)"
        )
    return fn(g, y)


def _live(t, needed):
    """An incoming gradient of a backward op's output: None unless that
    output was computed and the gradient is defined."""
    return t if needed and t is not None and t.numel() != 0 else None


def _bwd_setup(ctx, inputs, output):
    """Setup of a depthwise / pointwise backward op (2-D or 1-D):
    ``(grad, x, weight, out, *conf, activation, need_x, need_w, need_b)``."""
    grad, x, weight, out = inputs[:4]
    ctx.conf = tuple(inputs[4:-4])
    ctx.activation = inputs[-4]
    ctx.needs = inputs[-3:]
    ctx.save_for_backward(grad, x, weight, out)


def _double_backward_with(fwd_op, bwd_op):
    """The autograd formula of a depthwise or pointwise backward op: the
    second derivatives, from the same differentiable ops (so to any order).

    The backward op is linear in the masked gradient ``g``: ``gx = conv^T(g,
    w)`` (a transposed depthwise conv / ``W^T g``), ``gw = corr(g, x)``,
    ``gb = sum(g)``.  Given the cotangents ``ggx, ggw, ggb`` of its outputs:
    ``d g = conv(ggx, w) + conv(x, ggw) + ggb`` (forward convolutions),
    ``d x = conv^T(g, ggw)`` (the input gradient with weight ``ggw``) and
    ``d w = corr(g, ggx)`` (the weight gradient with input ``ggx``)."""

    def backward(ctx, ggx, ggw, ggb):
        grad, x, weight, out = ctx.saved_tensors
        conf, act = ctx.conf, ctx.activation
        need_x, need_w, need_b = ctx.needs
        ggx, ggw, ggb = _live(ggx, need_x), _live(ggw, need_w), _live(ggb, need_b)
        want_g, want_x, want_w = ctx.needs_input_grad[:3]
        dg = dx = dw = None
        if want_g:
            if ggx is not None:
                dg = _call(fwd_op, ggx, weight, None, *conf, None)
            if ggw is not None:
                t = _call(fwd_op, x, ggw, ggb, *conf, None)
                dg = t if dg is None else dg + t
            elif ggb is not None:
                t = ggb.view((1, -1) + (1,) * (grad.dim() - 2)).expand(grad.shape)
                dg = t if dg is None else dg + t
            if dg is not None:
                dg = _act_grad_t(dg, out, act)
        if (want_x and ggw is not None) or (want_w and ggx is not None):
            g = _act_grad_t(grad, out, act)
            if want_x and ggw is not None:
                dx = _call(bwd_op, g, x, ggw, None, *conf, None, True, False, False)[0]
            if want_w and ggx is not None:
                dw = _call(bwd_op, g, ggx, weight, None, *conf, None, False, True, False)[1]
        return (dg, dx, dw) + (None,) * (5 + len(conf))

    return backward


def _op(name):
    """``torch.library.custom_op(name)``, keeping the plain function for
    :func:`_call`'s eager fast path."""

    def wrap(fn):
        op = torch.library.custom_op(name, mutates_args=())(fn)
        op._pydsconv_impl = fn
        op._pydsconv_fn = None
        op._pydsconv_ffn = None
        op._pydsconv_onnx = None
        return op

    return wrap


def _register_autograd(op, backward, setup_context):
    """``op.register_autograd`` and, for :func:`_call`'s eager fast path, the
    same formula as a plain ``torch.autograd.Function``."""
    op.register_autograd(backward, setup_context=setup_context)
    impl = op._pydsconv_impl

    def forward(ctx, *args):  # forward(ctx, ...): apply() then skips binding a signature
        out = impl(*args)
        setup_context(ctx, args, out)
        return out

    op._pydsconv_fn = type(
        op._qualname.split("::")[1],
        (torch.autograd.Function,),
        {"forward": staticmethod(forward), "backward": staticmethod(backward)},
    )

    # torch.func.grad & co. take only Functions with a separate setup_context
    # (and custom ops' own autograd formulas not at all): the same formula
    # in that form, for _call under a torch.func grad transform
    def functorch_setup(ctx, inputs, output):
        setup_context(ctx, inputs, output)

    op._pydsconv_ffn = type(
        op._qualname.split("::")[1] + "_func",
        (torch.autograd.Function,),
        {
            "forward": staticmethod(impl),
            "setup_context": staticmethod(functorch_setup),
            "backward": staticmethod(backward),
        },
    )


_FUNC_GRAD = torch._C._functorch.TransformType.Grad
_FUNC_JVP = torch._C._functorch.TransformType.Jvp


def _eager_path(op, tensors):
    """How :func:`_call` runs ``op`` on ``tensors`` (its arguments; those
    that are not tensors are skipped): ``"plain"`` (its
    function) or ``"function"`` (its autograd Function) in plain eager mode
    (not compiling or tracing, no torch.func transform, no dispatch or
    torch-function mode, plain tensors or parameters), else ``None`` (the dispatcher).  The
    dispatcher costs tens of microseconds a call, as much as a small
    convolution; eager calls skip it and do just what it would do."""
    if torch.compiler.is_compiling() or torch._C._is_tracing():
        return None
    if _fwad._current_level >= 0:  # inside forward_ad.dual_level(): no tangent rule here
        for t in tensors:
            if isinstance(t, torch.Tensor) and _fwad.unpack_dual(t).tangent is not None:
                raise RuntimeError(
                    f"{op._qualname}: forward-mode AD (dual tensors) is not supported by "
                    "pydsconv's ops; use reverse mode (backward, torch.autograd.grad)"
                )
    grad = False
    for t in tensors:
        tt = type(t)
        if tt is torch.Tensor or tt is nn.Parameter:
            grad = grad or t.requires_grad
        elif isinstance(t, torch.Tensor):
            return None  # a subclass: it may override what ops do
    if torch._C._len_torch_dispatch_stack() != 0 or torch._C._is_torch_function_mode_enabled():
        return None
    top = torch._C._functorch.peek_interpreter_stack()
    if top is not None:  # torch.func: grad transforms take the Function form, vmap its fallback
        if top.key() == _FUNC_JVP:
            raise RuntimeError(
                f"{op._qualname}: forward-mode AD (torch.func.jvp, jacfwd, hessian) is not "
                "supported by pydsconv's ops; use reverse mode (torch.func.grad, vjp, jacrev)"
            )
        return "functorch" if top.key() == _FUNC_GRAD and op._pydsconv_ffn is not None else None
    if grad and torch.is_grad_enabled():
        return "function" if op._pydsconv_fn is not None else None
    return "plain"


def _call(op, *args):
    """``op(*args)``: the custom op through the dispatcher, or the same
    computation without it in plain eager mode (:func:`_eager_path`).
    Under a ``torch.func`` grad transform it runs the op's autograd formula
    as a ``torch.func``-ready Function (custom ops' own formulas are not);
    PyTorch's errors for what is left unsupported are made to say so."""
    last = args[-1]
    if (
        type(last) is str
        and last in _PRE_ACT_FN
        and torch.is_grad_enabled()
        and any(isinstance(t, torch.Tensor) and t.requires_grad for t in args)
    ):
        return _PRE_ACT_FN[last](_call(op, *args[:-1], None))
    path = _eager_path(op, args)
    if path == "plain":
        return op._pydsconv_impl(*args)
    if path == "function":
        return op._pydsconv_fn.apply(*args)
    if path == "functorch":
        try:
            return op._pydsconv_ffn.apply(*args)
        except RuntimeError as exc:
            if "vmap support" not in str(exc):
                raise
            raise RuntimeError(
                f"{op._qualname}: torch.func.vmap over a torch.func grad transform "
                "(per-sample gradients) is not supported by pydsconv's ops; torch.func.grad, "
                "vjp and jacrev work outside vmap, torch.func.vmap alone works"
            ) from exc
    if op._pydsconv_onnx is not None and torch.onnx.is_in_onnx_export():
        return op._pydsconv_onnx(*args)  # standard Conv nodes (see _onnx_ops)
    try:
        return op(*args)
    except RuntimeError as exc:
        if "functorch transforms" not in str(exc):
            raise
        raise RuntimeError(
            f"{op._qualname}: this torch.func transform is not supported by pydsconv's "
            "custom ops (torch.func.grad, vjp, jacrev and vmap work; forward mode does not)"
        ) from exc


@_op("pydsconv::depthwise_conv2d")
def _dw2_op(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    stride: List[int],
    pad_mode: str,
    pads: List[int],
    dilation: List[int],
    activation: Optional[str],
) -> torch.Tensor:
    layout = _layout(x)
    y = _core.depthwise_forward(  # the arguments pydsconv.depthwise_conv2d would pass
        _array(x, layout),
        _array(weight),
        _array(bias),
        2,
        layout,
        stride,
        dilation,
        pad_mode,
        pads,
        activation,
        None,
        _core_threads(),
    )
    return _tensor(y, layout)


@_dw2_op.register_fake
def _(x, weight, bias, stride, pad_mode, pads, dilation, activation):
    oh, ow = _fake_out_hw(x, weight, stride, pad_mode, pads, dilation)
    return _fake_like(x, (x.shape[0], weight.shape[0], oh, ow))


@_op("pydsconv::depthwise_conv2d_backward")
def _dw2_bwd_op(
    grad: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    out: Optional[torch.Tensor],
    stride: List[int],
    pad_mode: str,
    pads: List[int],
    dilation: List[int],
    activation: Optional[str],
    need_x: bool,
    need_w: bool,
    need_b: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    layout = _layout(x)
    g = _act_mask(_array(grad, layout), _array(out, layout), activation)
    gx, gw, gb = pydsconv.depthwise_conv2d_backward(
        g,
        _array(x, layout),
        _array(weight),
        stride=tuple(stride),
        padding=_pad_arg(pad_mode, pads),
        dilation=tuple(dilation),
        layout=layout,
        input_grad=need_x,
        weight_grad=need_w,
        bias_grad=need_b,
        num_threads=_threads(),
    )
    return _grad_or_empty(gx, x, layout), _grad_or_empty(gw, x), _grad_or_empty(gb, x)


def _conv_bwd_fake(grad, x, weight, out, *conf_and_needs):
    """The fake of a depthwise or pointwise backward op (2-D or 1-D): the
    gradients wanted (the last three flags), empty tensors for the others."""
    need_x, need_w, need_b = conf_and_needs[-3:]
    return (
        _fake_like(x, x.shape) if need_x else x.new_empty(0),
        weight.new_empty(weight.shape) if need_w else x.new_empty(0),
        x.new_empty((weight.shape[0],)) if need_b else x.new_empty(0),
    )


_dw2_bwd_op.register_fake(_conv_bwd_fake)


def _dw_setup(ctx, inputs, output):
    x, weight, _, stride, pad_mode, pads, dilation, activation = inputs
    ctx.conf = (stride, pad_mode, pads, dilation, activation)
    ctx.save_for_backward(x, weight, output if activation else None)


def _dw_backward_with(bwd_op):
    """The depthwise formula (2-D or 1-D: ``bwd_op``)."""

    def backward(ctx, grad):
        x, weight, out = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        conf = ctx.conf
        if torch.is_grad_enabled():  # create_graph: the activation's mask as a torch op
            grad, out, conf = _act_grad_t(grad, out, conf[-1]), None, conf[:-1] + (None,)
        gx, gw, gb = _call(bwd_op, grad, x, weight, out, *conf, need_x, need_w, need_b)
        return _none(gx), _none(gw), _none(gb), None, None, None, None, None

    return backward


_register_autograd(_dw2_op, _dw_backward_with(_dw2_bwd_op), _dw_setup)
_register_autograd(_dw2_bwd_op, _double_backward_with(_dw2_op, _dw2_bwd_op), _bwd_setup)


@_op("pydsconv::pointwise_conv2d")
def _pw2_op(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], activation: Optional[str]
) -> torch.Tensor:
    layout = _layout(x)
    y = _core.pointwise_forward(
        _array(x, layout),
        _array(weight),
        _array(bias),
        2,
        layout,
        activation,
        None,
        _core_threads(),
    )
    return _tensor(y, layout)


@_pw2_op.register_fake
def _(x, weight, bias, activation):
    n, _, h, w = x.shape
    return _fake_like(x, (n, weight.shape[0], h, w))


@_op("pydsconv::pointwise_conv2d_backward")
def _pw2_bwd_op(
    grad: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    out: Optional[torch.Tensor],
    activation: Optional[str],
    need_x: bool,
    need_w: bool,
    need_b: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    layout = _layout(x)
    g = _act_mask(_array(grad, layout), _array(out, layout), activation)
    gx, gw, gb = pydsconv.pointwise_conv2d_backward(
        g,
        _array(x, layout),
        _array(weight),
        layout=layout,
        input_grad=need_x,
        weight_grad=need_w,
        bias_grad=need_b,
        num_threads=_threads(),
    )
    return _grad_or_empty(gx, x, layout), _grad_or_empty(gw, x), _grad_or_empty(gb, x)


_pw2_bwd_op.register_fake(_conv_bwd_fake)


def _pw_setup(ctx, inputs, output):
    x, weight, _, activation = inputs
    ctx.activation = activation
    ctx.save_for_backward(x, weight, output if activation else None)


def _pw_backward_with(bwd_op):
    """The pointwise formula (2-D or 1-D: ``bwd_op``)."""

    def backward(ctx, grad):
        x, weight, out = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        act = ctx.activation
        if torch.is_grad_enabled():  # create_graph: the activation's mask as a torch op
            grad, out, act = _act_grad_t(grad, out, act), None, None
        gx, gw, gb = _call(bwd_op, grad, x, weight, out, act, need_x, need_w, need_b)
        return _none(gx), _none(gw), _none(gb), None

    return backward


_register_autograd(_pw2_op, _pw_backward_with(_pw2_bwd_op), _pw_setup)
_register_autograd(_pw2_bwd_op, _double_backward_with(_pw2_op, _pw2_bwd_op), _bwd_setup)


@_op("pydsconv::separable_conv2d")
def _sep2_op(
    x: torch.Tensor,
    depthwise_weight: torch.Tensor,
    pointwise_weight: torch.Tensor,
    depthwise_bias: Optional[torch.Tensor],
    pointwise_bias: Optional[torch.Tensor],
    stride: List[int],
    pad_mode: str,
    pads: List[int],
    dilation: List[int],
    mid_activation: Optional[str],
    activation: Optional[str],
) -> torch.Tensor:
    layout = _layout(x)
    y = _core.separable_forward(
        _array(x, layout),
        _array(depthwise_weight),
        _array(pointwise_weight),
        _array(depthwise_bias),
        _array(pointwise_bias),
        2,
        layout,
        stride,
        dilation,
        pad_mode,
        pads,
        mid_activation,
        activation,
        None,
        _core_threads(),
    )
    return _tensor(y, layout)


@_sep2_op.register_fake
def _(x, dw, pw, db, pb, stride, pad_mode, pads, dilation, mid_activation, activation):
    oh, ow = _fake_out_hw(x, dw, stride, pad_mode, pads, dilation)
    return _fake_like(x, (x.shape[0], pw.shape[0], oh, ow))


@_op("pydsconv::separable_conv2d_backward")
def _sep2_bwd_op(
    grad: torch.Tensor,
    x: torch.Tensor,
    dw: torch.Tensor,
    pw: torch.Tensor,
    db: Optional[torch.Tensor],
    out: Optional[torch.Tensor],
    stride: List[int],
    pad_mode: str,
    pads: List[int],
    dilation: List[int],
    mid_activation: Optional[str],
    activation: Optional[str],
    need_x: bool,
    need_dw: bool,
    need_pw: bool,
    need_db: bool,
    need_pb: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    layout = _layout(x)
    need_dw_stage = need_x or need_dw or need_db
    threads = _threads()
    conv = dict(
        stride=tuple(stride),
        padding=_pad_arg(pad_mode, pads),
        dilation=tuple(dilation),
        layout=layout,
        num_threads=threads,
    )
    xa, dwa = _array(x, layout), _array(dw)
    g = _act_mask(_array(grad, layout), _array(out, layout), activation)
    # recompute the intermediate (see SeparableConv2dFunction's docstring)
    mid, mid_pre = _mid(pydsconv.depthwise_conv2d, xa, dwa, _array(db), mid_activation, conv)
    gmid, gpw, gpb = pydsconv.pointwise_conv2d_backward(
        g,
        mid,
        _array(pw),
        layout=layout,
        input_grad=need_dw_stage,
        weight_grad=need_pw,
        bias_grad=need_pb,
        num_threads=threads,
    )
    gx = gdw = gdb = None
    if need_dw_stage:
        gmid = _act_mask(gmid, mid, mid_activation, mid_pre)
        gx, gdw, gdb = pydsconv.depthwise_conv2d_backward(
            gmid, xa, dwa, input_grad=need_x, weight_grad=need_dw, bias_grad=need_db, **conv
        )
    return (
        _grad_or_empty(gx, x, layout),
        _grad_or_empty(gdw, x),
        _grad_or_empty(gpw, x),
        _grad_or_empty(gdb, x),
        _grad_or_empty(gpb, x),
    )


def _sep_bwd_fake(grad, x, dw, pw, db, out, *conf_and_needs):
    need_x, need_dw, need_pw, need_db, need_pb = conf_and_needs[-5:]
    empty = x.new_empty(0)
    return (
        _fake_like(x, x.shape) if need_x else empty,
        dw.new_empty(dw.shape) if need_dw else x.new_empty(0),
        pw.new_empty(pw.shape) if need_pw else x.new_empty(0),
        x.new_empty((dw.shape[0],)) if need_db else x.new_empty(0),
        x.new_empty((pw.shape[0],)) if need_pb else x.new_empty(0),
    )


_sep2_bwd_op.register_fake(_sep_bwd_fake)


def _sep_setup(ctx, inputs, output):
    x, dw, pw, db, _, *conf = inputs
    ctx.conf = tuple(conf)
    ctx.save_for_backward(x, dw, pw, db, output if conf[-1] else None)


def _sep_backward_with(bwd_op, dw_op, dw_bwd_op, pw_bwd_op):
    """The separable formula (2-D or 1-D).  With create_graph it is built
    from the differentiable depthwise and pointwise ops instead of the fused
    backward op: the recomputed intermediate then carries the graph back to
    ``x`` and the depthwise weights, so second derivatives are right."""

    def backward(ctx, grad):
        x, dw, pw, db, out = ctx.saved_tensors
        needs = ctx.needs_input_grad[:5]
        if torch.is_grad_enabled():
            grads = _sep_backward_graph(
                dw_op, dw_bwd_op, pw_bwd_op, grad, x, dw, pw, db, out, ctx.conf, needs
            )
        else:
            grads = _call(bwd_op, grad, x, dw, pw, db, out, *ctx.conf, *needs)
        return tuple(_none(g) for g in grads) + (None,) * len(ctx.conf)

    return backward


def _sep_backward_graph(dw_op, dw_bwd_op, pw_bwd_op, grad, x, dw, pw, db, out, conf, needs):
    *geom, mid_act, act = conf
    need_x, need_dw, need_pw, need_db, need_pb = needs
    need_dw_stage = need_x or need_dw or need_db
    pre = None
    if mid_act in _PRE_ACT_GRAD_TORCH:  # the intermediate from its pre-activation
        pre = _call(dw_op, x, dw, db, *geom, None)
        mid = _PRE_ACT_FN[mid_act](pre)
    else:
        mid = _call(dw_op, x, dw, db, *geom, mid_act)
    g = _act_grad_t(grad, out, act)
    gmid, gpw, gpb = _call(pw_bwd_op, g, mid, pw, None, None, need_dw_stage, need_pw, need_pb)
    gx = gdw = gdb = None
    if need_dw_stage:
        if pre is not None:
            gmid = _PRE_ACT_GRAD_TORCH[mid_act](gmid, pre)
        else:
            gmid = _act_grad_t(gmid, mid, mid_act)
        gx, gdw, gdb = _call(dw_bwd_op, gmid, x, dw, None, *geom, None, need_x, need_dw, need_db)
    return gx, gdw, gpw, gdb, gpb


_register_autograd(
    _sep2_op, _sep_backward_with(_sep2_bwd_op, _dw2_op, _dw2_bwd_op, _pw2_bwd_op), _sep_setup
)
_no_double_backward(_sep2_bwd_op)


# --------------------------------------------------------------------------
# the former autograd Functions, kept as names
# --------------------------------------------------------------------------


class DepthwiseConv2dFunction:
    """Depthwise conv, the former ``torch.autograd.Function`` (use
    :func:`depthwise_conv2d`).

    ``apply(x, weight, bias, stride, padding, dilation, activation)`` is
    :func:`depthwise_conv2d`: the custom op ``torch.ops.pydsconv.depthwise_conv2d``
    with its autograd formula.  Saves ``x``, ``weight`` and, with an
    activation, the output.
    """

    @staticmethod
    def apply(x, weight, bias, stride, padding, dilation, activation):
        return depthwise_conv2d(x, weight, bias, stride, padding, dilation, activation)


class PointwiseConv2dFunction:
    """Pointwise (1x1) conv, the former ``torch.autograd.Function`` (use
    :func:`pointwise_conv2d`).

    ``apply(x, weight, bias, activation)`` is :func:`pointwise_conv2d`;
    ``weight`` is (C_out, C_in, 1, 1) or (C_out, C_in) and its gradient has
    the same shape.
    """

    @staticmethod
    def apply(x, weight, bias, activation):
        return pointwise_conv2d(x, weight, bias, activation)


class SeparableConv2dFunction:
    """Fused depthwise separable conv, the former ``torch.autograd.Function``
    (use :func:`separable_conv2d`).

    ``apply(x, depthwise_weight, pointwise_weight, depthwise_bias,
    pointwise_bias, stride, padding, dilation, mid_activation, activation)``
    is :func:`separable_conv2d`.

    The forward is pydsconv's fused op, so the intermediate (depthwise output)
    tensor is never materialised.  Backward needs it (the pointwise weight
    gradient is ``grad^T @ mid``, and ``mid_activation``'s mask is read from
    it), so backward **recomputes** it with one depthwise forward instead of
    the forward saving it.  Why: the intermediate is the largest activation of
    the block (C*M channels at output resolution), saving it would make the
    forward unfused and keep it alive until backward, while recomputing costs
    a depthwise pass, a few % of the block's MACs (MobileNetV1: 17 M of 556 M)
    -- the trade of activation checkpointing.  Saved: ``x``, the four weights
    and, with ``activation``, the output.
    """

    @staticmethod
    def apply(x, dw, pw, db, pb, stride, padding, dilation, mid_activation, activation):
        return separable_conv2d(
            x, dw, pw, db, pb, stride, padding, dilation, mid_activation, activation
        )


# --------------------------------------------------------------------------
# functional API
# --------------------------------------------------------------------------


def _unbatched(x, fn, ndim=4):
    """PyTorch's convention: a 3-D (C, H, W) input (2-D (C, L) for 1-D ops)
    is one unbatched sample."""
    if isinstance(x, torch.Tensor) and x.dim() == ndim - 1:
        return fn(x.unsqueeze(0)).squeeze(0)
    return fn(x)


def depthwise_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: IntOrPair = 1,
    padding: Padding2D = 0,
    dilation: IntOrPair = 1,
    activation: Activation = None,
) -> torch.Tensor:
    """Differentiable depthwise 2-D convolution on CPU tensors.

    Equals ``F.conv2d(x, weight, bias, stride, padding, dilation, groups=C)``
    followed by ``activation``.

    Parameters
    ----------
    x : Tensor, (N, C, H, W) or (C, H, W)
        float32 or float64, on the CPU; contiguous or channels_last (the output
        has the same memory format).
    weight : Tensor, (C*M, 1, kH, kW)
        PyTorch's grouped-conv weight; M is the channel multiplier.
    bias : Tensor (C*M,), optional
    stride, dilation : int or (int, int)
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same"
        "same" is TensorFlow's rule, allowed at any stride (module docstring).
    activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"
        Applied after the bias, fused into the op.

    Returns
    -------
    Tensor, (N, C*M, OH, OW) (or unbatched), sharing memory with the array
    pydsconv returned.
    """

    def run(x):
        _check_call(x, (("weight", weight), ("bias", bias)), (("activation", activation),))
        x = _saved_input(x, _layout(x))
        return _call(_dw2_op, x, weight, bias, *_geom(stride, padding, dilation), activation)

    return _unbatched(x, run)


def pointwise_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    activation: Activation = None,
) -> torch.Tensor:
    """Differentiable pointwise (1x1) 2-D convolution on CPU tensors.

    Equals ``F.conv2d(x, weight, bias)`` with a 1x1 weight, then ``activation``.

    Parameters
    ----------
    x : Tensor, (N, C_in, H, W) or (C_in, H, W)
        float32 or float64, on the CPU; contiguous or channels_last.
    weight : Tensor, (C_out, C_in, 1, 1) or (C_out, C_in)
    bias : Tensor (C_out,), optional
    activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"

    Returns
    -------
    Tensor, (N, C_out, H, W) (or unbatched), in ``x``'s memory format.
    """

    def run(x):
        _check_call(x, (("weight", weight), ("bias", bias)), (("activation", activation),))
        return _call(_pw2_op, _saved_input(x, _layout(x)), weight, bias, activation)

    return _unbatched(x, run)


def separable_conv2d(
    x: torch.Tensor,
    depthwise_weight: torch.Tensor,
    pointwise_weight: torch.Tensor,
    depthwise_bias: Optional[torch.Tensor] = None,
    pointwise_bias: Optional[torch.Tensor] = None,
    stride: IntOrPair = 1,
    padding: Padding2D = 0,
    dilation: IntOrPair = 1,
    mid_activation: Activation = None,
    activation: Activation = None,
) -> torch.Tensor:
    """Differentiable fused depthwise separable 2-D convolution on CPU tensors.

    Equals ``activation(pointwise(mid_activation(depthwise(x))))`` computed by
    :func:`pydsconv.separable_conv2d` without materialising the intermediate
    (backward recomputes it: see :class:`SeparableConv2dFunction`).

    Parameters
    ----------
    x : Tensor, (N, C, H, W) or (C, H, W)
    depthwise_weight : Tensor, (C*M, 1, kH, kW)
    pointwise_weight : Tensor, (C_out, C*M, 1, 1) or (C_out, C*M)
    depthwise_bias, pointwise_bias : Tensor, optional
    stride, padding, dilation
        Of the depthwise stage, as in :func:`depthwise_conv2d`.
    mid_activation, activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"
        After the depthwise and after the pointwise stage.

    Returns
    -------
    Tensor, (N, C_out, OH, OW) (or unbatched), in ``x``'s memory format.
    """

    def run(x):
        _check_call(
            x,
            (
                ("depthwise_weight", depthwise_weight),
                ("pointwise_weight", pointwise_weight),
                ("depthwise_bias", depthwise_bias),
                ("pointwise_bias", pointwise_bias),
            ),
            (("mid_activation", mid_activation), ("activation", activation)),
        )
        return _call(
            _sep2_op,
            _saved_input(x, _layout(x)),
            depthwise_weight,
            pointwise_weight,
            depthwise_bias,
            pointwise_bias,
            *_geom(stride, padding, dilation),
            mid_activation,
            activation,
        )

    return _unbatched(x, run)


# --------------------------------------------------------------------------
# modules
# --------------------------------------------------------------------------


def _pos_int(name, v):
    """A channel count or multiplier: an int >= 1 (pydsconv._args rules)."""
    return _args.to_int(name, v, 1)


def _pair(name, v):
    """kernel_size / stride / dilation -> (h, w) of ints >= 1."""
    return _args.to_pair(name, v, 2, minimum=1)


def _norm_padding(padding):
    """int | (ph, pw) | ((top, bottom), (left, right)) | "same" | "valid",
    checked (>= 0) and stored in its shortest form (what extra_repr prints)."""
    return _args.padding_spec(*_args.to_padding(padding, 2, minimum=0))


def _factory(device, dtype, padding_mode, *activations):
    if device is not None and torch.device(device).type != "cpu":
        raise ValueError(
            f"device must be the CPU (pydsconv has no {torch.device(device).type} kernels)"
        )
    if dtype is not None and dtype not in _DTYPES:
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if padding_mode != "zeros":
        raise ValueError(
            f"padding_mode must be 'zeros' (the only padding pydsconv computes), "
            f"got {padding_mode!r}"
        )
    for name, act in activations:
        _args.check_activation(name, act)
    return {"device": device, "dtype": dtype}


def _reset_conv(weight, bias):
    """``nn.Conv2d.reset_parameters``: Kaiming-uniform(a=sqrt(5)) weight,
    bias uniform in +-1/sqrt(fan_in); same RNG draws in the same order."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight)
        if fan_in != 0:
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(bias, -bound, bound)


def _act_repr(s, **acts):
    for name, act in acts.items():
        if act is not None:
            s += f", {name}={act!r}"
    return s


def _subsample(x, stride):
    """``x[..., ::s]`` along the trailing spatial axes: what a strided 1x1
    convolution reads.  A channels_last input stays channels_last (copied
    once, so the pointwise op reads it in place)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    cl = x.dim() == 4 and _layout(x) == "NHWC"
    x = x[(..., *(slice(None, None, s) for s in stride))]
    return x.contiguous(memory_format=_CL) if cl else x


class DepthwiseConv2d(nn.Module):
    """Depthwise 2-D convolution layer, ``nn.Conv2d(C, C*M, k, groups=C)`` on pydsconv.

    Parameters
    ----------
    in_channels : int
        C.  The layer has ``out_channels = C * depth_multiplier``.
    kernel_size : int or (int, int)
    stride, dilation : int or (int, int)
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same"
        "same" follows TensorFlow at any stride (PyTorch's at stride 1).
    bias : bool
    depth_multiplier : int
        M, filters per input channel (Keras' name; PyTorch's ``out_channels / C``).
    padding_mode : "zeros"
        The only one supported (ValueError otherwise).
    activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"
        Fused after the bias.
    device, dtype
        CPU only; float32 (default) or float64.

    Attributes
    ----------
    weight : Parameter, (C*M, 1, kH, kW)
    bias : Parameter (C*M,) or None
        Named, shaped and initialised as ``nn.Conv2d``'s, so state dicts are
        interchangeable.
    """

    def __init__(
        self,
        in_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        bias=True,
        depth_multiplier=1,
        padding_mode="zeros",
        activation=None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        kw = _factory(device, dtype, padding_mode, ("activation", activation))
        self.in_channels = _pos_int("in_channels", in_channels)
        self.depth_multiplier = _pos_int("depth_multiplier", depth_multiplier)
        self.out_channels = self.in_channels * self.depth_multiplier
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride = _pair("stride", stride)
        self.padding = _norm_padding(padding)
        self.dilation = _pair("dilation", dilation)
        self.padding_mode = padding_mode
        self.activation = activation
        self.weight = nn.Parameter(torch.empty((self.out_channels, 1, *self.kernel_size), **kw))
        if bias:
            self.bias = nn.Parameter(torch.empty(self.out_channels, **kw))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        """Re-initialise as ``nn.Conv2d`` does (Kaiming-uniform weight, uniform bias)."""
        _reset_conv(self.weight, self.bias)

    def forward(self, x):
        """Apply the layer to ``x`` (N, C, H, W) or (C, H, W); see :func:`depthwise_conv2d`."""
        return depthwise_conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.activation
        )

    def extra_repr(self):
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0, 0):
            s += f", padding={self.padding!r}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.depth_multiplier != 1:
            s += f", depth_multiplier={self.depth_multiplier}"
        if self.bias is None:
            s += ", bias=False"
        return _act_repr(s, activation=self.activation)


class PointwiseConv2d(nn.Module):
    """Pointwise (1x1) 2-D convolution layer, ``nn.Conv2d(C_in, C_out, 1)`` on pydsconv.

    Parameters
    ----------
    in_channels, out_channels : int
    bias : bool
    activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"
        Fused after the bias.
    device, dtype
        CPU only; float32 (default) or float64.
    stride : int or (int, int)
        ``nn.Conv2d(C_in, C_out, 1, stride=s)`` (ResNet / RegNet downsampling
        shortcuts): the layer reads ``x[..., ::sH, ::sW]`` (one strided copy)
        and applies the pointwise op to it.  Default 1.

    Attributes
    ----------
    weight : Parameter, (C_out, C_in, 1, 1)
    bias : Parameter (C_out,) or None
        As ``nn.Conv2d``'s (same names, shapes and initialisation).
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        bias=True,
        activation=None,
        device=None,
        dtype=None,
        stride=1,
    ):
        super().__init__()
        kw = _factory(device, dtype, "zeros", ("activation", activation))
        self.in_channels = _pos_int("in_channels", in_channels)
        self.out_channels = _pos_int("out_channels", out_channels)
        self.stride = _pair("stride", stride)
        self.activation = activation
        self.weight = nn.Parameter(torch.empty((self.out_channels, self.in_channels, 1, 1), **kw))
        if bias:
            self.bias = nn.Parameter(torch.empty(self.out_channels, **kw))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        """Re-initialise as ``nn.Conv2d`` does (Kaiming-uniform weight, uniform bias)."""
        _reset_conv(self.weight, self.bias)

    def forward(self, x):
        """Apply the layer to ``x`` (N, C_in, H, W) or (C_in, H, W)."""
        if self.stride != (1, 1):
            x = _subsample(x, self.stride)
        return pointwise_conv2d(x, self.weight, self.bias, self.activation)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}"
        if self.stride != (1, 1):
            s += f", stride={self.stride}"
        if self.bias is None:
            s += ", bias=False"
        return _act_repr(s, activation=self.activation)


def _separable_stages(
    module,
    dw_cls,
    pw_cls,
    in_channels,
    out_channels,
    kernel_size,
    stride,
    padding,
    dilation,
    bias,
    depth_multiplier,
    padding_mode,
    mid_activation,
    activation,
    device,
    dtype,
):
    """The two stages of SeparableConv2d / SeparableConv1d (``dw_cls``,
    ``pw_cls``), built in that order as two ``nn.Conv`` would be; ``bias`` a
    bool or a (depthwise, pointwise) pair."""
    _factory(
        device,
        dtype,
        padding_mode,
        ("mid_activation", mid_activation),
        ("activation", activation),
    )
    if isinstance(bias, (tuple, list)):
        if len(bias) != 2:
            raise ValueError(f"bias must be a bool or a pair of bools, got {bias!r}")
        dw_bias, pw_bias = bias
    else:
        dw_bias = pw_bias = bias
    module.mid_activation = mid_activation
    module.activation = activation
    module.depthwise = dw_cls(
        in_channels,
        kernel_size,
        stride,
        padding,
        dilation,
        bool(dw_bias),
        depth_multiplier,
        device=device,
        dtype=dtype,
    )
    module.pointwise = pw_cls(
        module.depthwise.out_channels, out_channels, bool(pw_bias), device=device, dtype=dtype
    )
    module.in_channels = module.depthwise.in_channels
    module.out_channels = module.pointwise.out_channels


def _separable_repr(module, no_padding, no_dilation):
    """extra_repr of a separable module: its depthwise stage's geometry
    where it differs from the defaults (``no_padding``, ``no_dilation``:
    (0, 0) and (1, 1) in 2-D), and the activations."""
    d = module.depthwise
    s = (
        f"{module.in_channels}, {module.out_channels}, kernel_size={d.kernel_size}, "
        f"stride={d.stride}"
    )
    if d.padding != no_padding:
        s += f", padding={d.padding!r}"
    if d.dilation != no_dilation:
        s += f", dilation={d.dilation}"
    if d.depth_multiplier != 1:
        s += f", depth_multiplier={d.depth_multiplier}"
    return _act_repr(s, mid_activation=module.mid_activation, activation=module.activation)


class SeparableConv2d(nn.Module):
    """Depthwise separable 2-D convolution layer, fused (one pydsconv call).

    Computes ``activation(pointwise(mid_activation(depthwise(x))))`` with
    :func:`pydsconv.separable_conv2d`; the intermediate tensor is never
    materialised (backward recomputes it, see :class:`SeparableConv2dFunction`).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    stride, padding, dilation
        Of the depthwise stage, as in :class:`DepthwiseConv2d`.
    bias : bool or (bool, bool)
        Biases of (depthwise, pointwise); one bool sets both.  Keras'
        ``SeparableConv2D`` has only the pointwise one: ``bias=(False, True)``.
    depth_multiplier : int
    padding_mode : "zeros"
    mid_activation, activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"
        After the depthwise and after the pointwise stage.
    device, dtype
        CPU only; float32 (default) or float64.

    Attributes
    ----------
    depthwise : DepthwiseConv2d
        Holds ``depthwise.weight`` (C*M, 1, kH, kW) and ``depthwise.bias``.
    pointwise : PointwiseConv2d
        Holds ``pointwise.weight`` (C_out, C*M, 1, 1) and ``pointwise.bias``.
        The state-dict keys ``depthwise.*`` / ``pointwise.*`` match a torch
        model with two ``nn.Conv2d`` attributes so named.  Both are
        initialised in that order, as two ``nn.Conv2d`` would be.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        bias=True,
        depth_multiplier=1,
        padding_mode="zeros",
        mid_activation=None,
        activation=None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        _separable_stages(
            self,
            DepthwiseConv2d,
            PointwiseConv2d,
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            bias,
            depth_multiplier,
            padding_mode,
            mid_activation,
            activation,
            device,
            dtype,
        )

    def reset_parameters(self):
        """Re-initialise both stages as ``nn.Conv2d`` does."""
        self.depthwise.reset_parameters()
        self.pointwise.reset_parameters()

    def forward(self, x):
        """Apply the layer to ``x`` (N, C, H, W) or (C, H, W); see :func:`separable_conv2d`."""
        d, p = self.depthwise, self.pointwise
        return separable_conv2d(
            x,
            d.weight,
            p.weight,
            d.bias,
            p.bias,
            d.stride,
            d.padding,
            d.dilation,
            self.mid_activation,
            self.activation,
        )

    def extra_repr(self):
        return _separable_repr(self, (0, 0), (1, 1))


# --------------------------------------------------------------------------
# 1-D: sequences (text, audio)
# --------------------------------------------------------------------------
#
# Tensors are (N, C, L).  PyTorch has no channels-last format for 3-D
# tensors, so the data layout is always pydsconv's "NCL"; a non-contiguous
# input or gradient is copied once.


def _array1(t):
    """``t`` as a C-contiguous ndarray (NCL); no copy when it is contiguous."""
    if t is None:
        return None
    t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    return t.numpy()


def _tensor1(a):
    return None if a is None else torch.from_numpy(a)


# 1-D custom ops: as the 2-D ones, on (N, C, L) tensors in layout "NCL".


@_op("pydsconv::depthwise_conv1d")
def _dw1_op(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    stride: List[int],
    pad_mode: str,
    pads: List[int],
    dilation: List[int],
    activation: Optional[str],
) -> torch.Tensor:
    y = _core.depthwise_forward(  # 1-D is H == 1 for the core
        _array1(x),
        _array1(weight),
        _array1(bias),
        1,
        "NCHW",
        (1, stride[0]),
        (1, dilation[0]),
        pad_mode,
        pads,
        activation,
        None,
        _core_threads(),
    )
    return _tensor1(y)


@_dw1_op.register_fake
def _(x, weight, bias, stride, pad_mode, pads, dilation, activation):
    (ol,) = _fake_out_hw(x, weight, stride, pad_mode, pads, dilation, 1)
    return x.new_empty((x.shape[0], weight.shape[0], ol))


@_op("pydsconv::depthwise_conv1d_backward")
def _dw1_bwd_op(
    grad: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    out: Optional[torch.Tensor],
    stride: List[int],
    pad_mode: str,
    pads: List[int],
    dilation: List[int],
    activation: Optional[str],
    need_x: bool,
    need_w: bool,
    need_b: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = _act_mask(_array1(grad), _array1(out), activation)
    gx, gw, gb = pydsconv.depthwise_conv1d_backward(
        g,
        _array1(x),
        _array1(weight),
        stride=stride[0],
        padding=_pad_arg(pad_mode, pads, 1),
        dilation=dilation[0],
        input_grad=need_x,
        weight_grad=need_w,
        bias_grad=need_b,
        num_threads=_threads(),
    )
    return _grad_or_empty(gx, x), _grad_or_empty(gw, x), _grad_or_empty(gb, x)


_dw1_bwd_op.register_fake(_conv_bwd_fake)


_register_autograd(_dw1_op, _dw_backward_with(_dw1_bwd_op), _dw_setup)
_register_autograd(_dw1_bwd_op, _double_backward_with(_dw1_op, _dw1_bwd_op), _bwd_setup)


@_op("pydsconv::pointwise_conv1d")
def _pw1_op(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], activation: Optional[str]
) -> torch.Tensor:
    y = _core.pointwise_forward(
        _array1(x), _array1(weight), _array1(bias), 1, "NCHW", activation, None, _core_threads()
    )
    return _tensor1(y)


@_pw1_op.register_fake
def _(x, weight, bias, activation):
    return x.new_empty((x.shape[0], weight.shape[0], x.shape[2]))


@_op("pydsconv::pointwise_conv1d_backward")
def _pw1_bwd_op(
    grad: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    out: Optional[torch.Tensor],
    activation: Optional[str],
    need_x: bool,
    need_w: bool,
    need_b: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = _act_mask(_array1(grad), _array1(out), activation)
    gx, gw, gb = pydsconv.pointwise_conv1d_backward(
        g,
        _array1(x),
        _array1(weight),
        input_grad=need_x,
        weight_grad=need_w,
        bias_grad=need_b,
        num_threads=_threads(),
    )
    return _grad_or_empty(gx, x), _grad_or_empty(gw, x), _grad_or_empty(gb, x)


_pw1_bwd_op.register_fake(_conv_bwd_fake)


_register_autograd(_pw1_op, _pw_backward_with(_pw1_bwd_op), _pw_setup)
_register_autograd(_pw1_bwd_op, _double_backward_with(_pw1_op, _pw1_bwd_op), _bwd_setup)


@_op("pydsconv::separable_conv1d")
def _sep1_op(
    x: torch.Tensor,
    depthwise_weight: torch.Tensor,
    pointwise_weight: torch.Tensor,
    depthwise_bias: Optional[torch.Tensor],
    pointwise_bias: Optional[torch.Tensor],
    stride: List[int],
    pad_mode: str,
    pads: List[int],
    dilation: List[int],
    mid_activation: Optional[str],
    activation: Optional[str],
) -> torch.Tensor:
    y = _core.separable_forward(
        _array1(x),
        _array1(depthwise_weight),
        _array1(pointwise_weight),
        _array1(depthwise_bias),
        _array1(pointwise_bias),
        1,
        "NCHW",
        (1, stride[0]),
        (1, dilation[0]),
        pad_mode,
        pads,
        mid_activation,
        activation,
        None,
        _core_threads(),
    )
    return _tensor1(y)


@_sep1_op.register_fake
def _(x, dw, pw, db, pb, stride, pad_mode, pads, dilation, mid_activation, activation):
    (ol,) = _fake_out_hw(x, dw, stride, pad_mode, pads, dilation, 1)
    return x.new_empty((x.shape[0], pw.shape[0], ol))


@_op("pydsconv::separable_conv1d_backward")
def _sep1_bwd_op(
    grad: torch.Tensor,
    x: torch.Tensor,
    dw: torch.Tensor,
    pw: torch.Tensor,
    db: Optional[torch.Tensor],
    out: Optional[torch.Tensor],
    stride: List[int],
    pad_mode: str,
    pads: List[int],
    dilation: List[int],
    mid_activation: Optional[str],
    activation: Optional[str],
    need_x: bool,
    need_dw: bool,
    need_pw: bool,
    need_db: bool,
    need_pb: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    need_dw_stage = need_x or need_dw or need_db
    threads = _threads()
    conv = dict(
        stride=stride[0],
        padding=_pad_arg(pad_mode, pads, 1),
        dilation=dilation[0],
        num_threads=threads,
    )
    xa, dwa = _array1(x), _array1(dw)
    g = _act_mask(_array1(grad), _array1(out), activation)
    mid, mid_pre = _mid(pydsconv.depthwise_conv1d, xa, dwa, _array1(db), mid_activation, conv)
    gmid, gpw, gpb = pydsconv.pointwise_conv1d_backward(
        g,
        mid,
        _array1(pw),
        input_grad=need_dw_stage,
        weight_grad=need_pw,
        bias_grad=need_pb,
        num_threads=threads,
    )
    gx = gdw = gdb = None
    if need_dw_stage:
        gmid = _act_mask(gmid, mid, mid_activation, mid_pre)
        gx, gdw, gdb = pydsconv.depthwise_conv1d_backward(
            gmid, xa, dwa, input_grad=need_x, weight_grad=need_dw, bias_grad=need_db, **conv
        )
    return tuple(_grad_or_empty(a, x) for a in (gx, gdw, gpw, gdb, gpb))


_sep1_bwd_op.register_fake(_sep_bwd_fake)
_register_autograd(
    _sep1_op, _sep_backward_with(_sep1_bwd_op, _dw1_op, _dw1_bwd_op, _pw1_bwd_op), _sep_setup
)
_no_double_backward(_sep1_bwd_op)


class DepthwiseConv1dFunction:
    """Depthwise 1-D conv, the former ``torch.autograd.Function`` (use
    :func:`depthwise_conv1d`).

    ``apply(x, weight, bias, stride, padding, dilation, activation)`` is
    :func:`depthwise_conv1d` (the custom op ``torch.ops.pydsconv.depthwise_conv1d``).
    """

    @staticmethod
    def apply(x, weight, bias, stride, padding, dilation, activation):
        return depthwise_conv1d(x, weight, bias, stride, padding, dilation, activation)


class PointwiseConv1dFunction:
    """Pointwise (kernel 1) 1-D conv, the former ``torch.autograd.Function``
    (use :func:`pointwise_conv1d`).

    ``apply(x, weight, bias, activation)`` is :func:`pointwise_conv1d`;
    ``weight`` is (C_out, C_in, 1) or (C_out, C_in) and its gradient has the
    same shape.
    """

    @staticmethod
    def apply(x, weight, bias, activation):
        return pointwise_conv1d(x, weight, bias, activation)


class SeparableConv1dFunction:
    """Fused depthwise separable 1-D conv, the former
    ``torch.autograd.Function`` (use :func:`separable_conv1d`).

    ``apply(x, depthwise_weight, pointwise_weight, depthwise_bias,
    pointwise_bias, stride, padding, dilation, mid_activation, activation)``
    is :func:`separable_conv1d`.  As :class:`SeparableConv2dFunction`: the
    forward is fused and backward recomputes the depthwise intermediate.
    """

    @staticmethod
    def apply(x, dw, pw, db, pb, stride, padding, dilation, mid_activation, activation):
        return separable_conv1d(
            x, dw, pw, db, pb, stride, padding, dilation, mid_activation, activation
        )


# --------------------------------------------------------------------------
# ONNX export
# --------------------------------------------------------------------------
#
# ONNX has no pydsconv ops, and its runtimes have fast depthwise convolutions
# of their own: while ``torch.onnx.export`` traces (both exporters, TorchScript
# and dynamo, set ``torch.onnx.is_in_onnx_export()``), each forward op is
# traced as the equivalent standard torch ops instead: ``conv2d`` /
# ``conv1d`` with ``groups = C`` (an ONNX ``Conv`` node with ``group = C``),
# an explicit ``pad`` first where the padding is asymmetric, the fused
# activation as its own node.  The check sits on the dispatcher path of
# :func:`_call` only, so plain eager calls never pay for it.

_ACT_TORCH = {
    "relu": torch.relu,
    "relu6": nn.functional.relu6,
    "hardswish": nn.functional.hardswish,
    "hardsigmoid": nn.functional.hardsigmoid,
    "silu": nn.functional.silu,
    "sigmoid": torch.sigmoid,
}


def _act_t(y, activation):
    if activation is None:
        return y
    fn = _ACT_TORCH.get(activation)
    if fn is None:
        raise NotImplementedError(
            f"pydsconv: ONNX export of the fused activation {activation!r} is not supported"
        )
    return fn(y)


def _conv_t(x, weight, bias, stride, mode, pads, dilation, groups):
    """``F.conv2d`` / ``F.conv1d`` with pydsconv's parsed padding."""
    spatial = x.dim() - 2
    with warnings.catch_warnings():
        # TorchScript tracing sees shapes as tensors: "same" at stride > 1 is
        # sized for the traced input (documented), everything else is not
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        sizes = tuple(int(v) for v in x.shape[2:]) if mode == "same" else (0,) * spatial
        kernel = tuple(int(v) for v in weight.shape[2:])
    padding = _args.resolve_padding(mode, pads, sizes, kernel, stride, dilation)
    conv = nn.functional.conv2d if spatial == 2 else nn.functional.conv1d
    if all(a == b for a, b in padding):
        return conv(x, weight, bias, stride, [a for a, _ in padding], dilation, groups)
    flat = [p for pair in reversed(padding) for p in pair]  # F.pad: last axis first
    return conv(nn.functional.pad(x, flat), weight, bias, stride, 0, dilation, groups)


def _dw_onnx(x, weight, bias, stride, pad_mode, pads, dilation, activation):
    return _act_t(
        _conv_t(x, weight, bias, stride, pad_mode, pads, dilation, x.shape[1]), activation
    )


def _pw_onnx(x, weight, bias, activation):
    if weight.dim() == 2:
        weight = weight.reshape(tuple(weight.shape) + (1,) * (x.dim() - 2))
    conv = nn.functional.conv2d if x.dim() == 4 else nn.functional.conv1d
    return _act_t(conv(x, weight, bias), activation)


def _sep_onnx(x, dw, pw, db, pb, stride, pad_mode, pads, dilation, mid_activation, activation):
    mid = _dw_onnx(x, dw, db, stride, pad_mode, pads, dilation, mid_activation)
    return _pw_onnx(mid, pw, pb, activation)


for _fwd, _onnx in (
    (_dw2_op, _dw_onnx),
    (_pw2_op, _pw_onnx),
    (_sep2_op, _sep_onnx),
    (_dw1_op, _dw_onnx),
    (_pw1_op, _pw_onnx),
    (_sep1_op, _sep_onnx),
):
    _fwd._pydsconv_onnx = _onnx


def _int1(name, v):
    """A 1-D ``stride`` / ``dilation`` / ``kernel_size``: an int or a 1-tuple
    (as ``nn.Conv1d`` stores them) -> int >= 1."""
    return _args.to_pair(name, v, 1, minimum=1)[0]


def depthwise_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride: int = 1,
    padding: Padding1D = 0,
    dilation: int = 1,
    activation: Activation = None,
) -> torch.Tensor:
    """Differentiable depthwise 1-D convolution on CPU tensors.

    Equals ``F.conv1d(x, weight, bias, stride, padding, dilation, groups=C)``
    followed by ``activation``.

    Parameters
    ----------
    x : Tensor, (N, C, L) or (C, L)
        float32 or float64, on the CPU (other strides are copied once).
    weight : Tensor, (C*M, 1, k)
        PyTorch's grouped-conv weight; M is the channel multiplier.
    bias : Tensor (C*M,), optional
    stride, dilation : int (or a 1-tuple)
    padding : int, (left, right), "valid", "same" or "causal"
        "same" is TensorFlow's rule at any stride (PyTorch's at stride 1);
        "causal" pads ``dilation * (k - 1)`` on the left only (Keras).
    activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"
        Applied after the bias, fused into the op.

    Returns
    -------
    Tensor, (N, C*M, L_out) (or unbatched).
    """
    s, d = _int1("stride", stride), _int1("dilation", dilation)

    def run(x):
        _check_call(x, (("weight", weight), ("bias", bias)), (("activation", activation),), 3)
        x = x if x.is_contiguous() else x.contiguous()
        return _call(_dw1_op, x, weight, bias, *_geom(s, padding, d, 1), activation)

    return _unbatched(x, run, 3)


def pointwise_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    activation: Activation = None,
) -> torch.Tensor:
    """Differentiable pointwise (kernel 1) 1-D convolution on CPU tensors.

    Equals ``F.conv1d(x, weight, bias)`` with a kernel-1 weight, then
    ``activation``.

    Parameters
    ----------
    x : Tensor, (N, C_in, L) or (C_in, L)
    weight : Tensor, (C_out, C_in, 1) or (C_out, C_in)
    bias : Tensor (C_out,), optional
    activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"

    Returns
    -------
    Tensor, (N, C_out, L) (or unbatched).
    """

    def run(x):
        _check_call(x, (("weight", weight), ("bias", bias)), (("activation", activation),), 3)
        x = x if x.is_contiguous() else x.contiguous()
        return _call(_pw1_op, x, weight, bias, activation)

    return _unbatched(x, run, 3)


def separable_conv1d(
    x: torch.Tensor,
    depthwise_weight: torch.Tensor,
    pointwise_weight: torch.Tensor,
    depthwise_bias: Optional[torch.Tensor] = None,
    pointwise_bias: Optional[torch.Tensor] = None,
    stride: int = 1,
    padding: Padding1D = 0,
    dilation: int = 1,
    mid_activation: Activation = None,
    activation: Activation = None,
) -> torch.Tensor:
    """Differentiable fused depthwise separable 1-D convolution on CPU tensors.

    Equals ``activation(pointwise(mid_activation(depthwise(x))))`` computed by
    :func:`pydsconv.separable_conv1d` without materialising the intermediate.

    Parameters
    ----------
    x : Tensor, (N, C, L) or (C, L)
    depthwise_weight : Tensor, (C*M, 1, k)
    pointwise_weight : Tensor, (C_out, C*M, 1) or (C_out, C*M)
    depthwise_bias, pointwise_bias : Tensor, optional
    stride, padding, dilation
        Of the depthwise stage, as in :func:`depthwise_conv1d`.
    mid_activation, activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"

    Returns
    -------
    Tensor, (N, C_out, L_out) (or unbatched).
    """
    s, d = _int1("stride", stride), _int1("dilation", dilation)

    def run(x):
        _check_call(
            x,
            (
                ("depthwise_weight", depthwise_weight),
                ("pointwise_weight", pointwise_weight),
                ("depthwise_bias", depthwise_bias),
                ("pointwise_bias", pointwise_bias),
            ),
            (("mid_activation", mid_activation), ("activation", activation)),
            3,
        )
        x = x if x.is_contiguous() else x.contiguous()
        return _call(
            _sep1_op,
            x,
            depthwise_weight,
            pointwise_weight,
            depthwise_bias,
            pointwise_bias,
            *_geom(s, padding, d, 1),
            mid_activation,
            activation,
        )

    return _unbatched(x, run, 3)


def _norm_padding1(padding):
    """1-D padding, checked (>= 0): "same" / "valid" / "causal", ``(p,)`` when
    symmetric (``nn.Conv1d``'s form), else ``(left, right)``."""
    mode, (_, _, left, right) = _args.to_padding(padding, 1, minimum=0)
    if mode != "explicit":
        return mode
    return (left,) if left == right else (left, right)


class DepthwiseConv1d(nn.Module):
    """Depthwise 1-D convolution layer, ``nn.Conv1d(C, C*M, k, groups=C)`` on pydsconv.

    Parameters
    ----------
    in_channels : int
        C.  The layer has ``out_channels = C * depth_multiplier``.
    kernel_size, stride, dilation : int
    padding : int, (left, right), "valid", "same" or "causal"
        "same" follows TensorFlow at any stride (PyTorch's at stride 1);
        "causal" pads ``dilation * (kernel_size - 1)`` on the left only, so
        output step t sees inputs up to t (autoregressive models).
    bias : bool
    depth_multiplier : int
        M, filters per input channel.
    padding_mode : "zeros"
        The only one supported (ValueError otherwise).
    activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"
        Fused after the bias.
    device, dtype
        CPU only; float32 (default) or float64.

    Attributes
    ----------
    weight : Parameter, (C*M, 1, k)
    bias : Parameter (C*M,) or None
        Named, shaped and initialised as ``nn.Conv1d``'s, so state dicts are
        interchangeable.

    Examples
    --------
    >>> import torch, pydsconv.torch as pt
    >>> layer = pt.DepthwiseConv1d(4, 3, padding="causal")
    >>> layer(torch.randn(2, 4, 10)).shape
    torch.Size([2, 4, 10])
    """

    def __init__(
        self,
        in_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        bias=True,
        depth_multiplier=1,
        padding_mode="zeros",
        activation=None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        kw = _factory(device, dtype, padding_mode, ("activation", activation))
        self.in_channels = _pos_int("in_channels", in_channels)
        self.depth_multiplier = _pos_int("depth_multiplier", depth_multiplier)
        self.out_channels = self.in_channels * self.depth_multiplier
        self.kernel_size = (_int1("kernel_size", kernel_size),)
        self.stride = (_int1("stride", stride),)
        self.padding = _norm_padding1(padding)
        self.dilation = (_int1("dilation", dilation),)
        self.padding_mode = padding_mode
        self.activation = activation
        self.weight = nn.Parameter(torch.empty((self.out_channels, 1, *self.kernel_size), **kw))
        if bias:
            self.bias = nn.Parameter(torch.empty(self.out_channels, **kw))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        """Re-initialise as ``nn.Conv1d`` does (Kaiming-uniform weight, uniform bias)."""
        _reset_conv(self.weight, self.bias)

    def forward(self, x):
        """Apply the layer to ``x`` (N, C, L) or (C, L); see :func:`depthwise_conv1d`."""
        return depthwise_conv1d(
            x,
            self.weight,
            self.bias,
            self.stride[0],
            self.padding,
            self.dilation[0],
            self.activation,
        )

    def extra_repr(self):
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0,):
            s += f", padding={self.padding!r}"
        if self.dilation != (1,):
            s += f", dilation={self.dilation}"
        if self.depth_multiplier != 1:
            s += f", depth_multiplier={self.depth_multiplier}"
        if self.bias is None:
            s += ", bias=False"
        return _act_repr(s, activation=self.activation)


class PointwiseConv1d(nn.Module):
    """Pointwise (kernel 1) 1-D convolution layer, ``nn.Conv1d(C_in, C_out, 1)`` on pydsconv.

    Parameters
    ----------
    in_channels, out_channels : int
    bias : bool
    activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"
        Fused after the bias.
    device, dtype
        CPU only; float32 (default) or float64.
    stride : int
        ``nn.Conv1d(C_in, C_out, 1, stride=s)``: the layer reads
        ``x[..., ::s]`` (one strided copy).  Default 1.

    Attributes
    ----------
    weight : Parameter, (C_out, C_in, 1)
    bias : Parameter (C_out,) or None
        As ``nn.Conv1d``'s (same names, shapes and initialisation).
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        bias=True,
        activation=None,
        device=None,
        dtype=None,
        stride=1,
    ):
        super().__init__()
        kw = _factory(device, dtype, "zeros", ("activation", activation))
        self.in_channels = _pos_int("in_channels", in_channels)
        self.out_channels = _pos_int("out_channels", out_channels)
        self.stride = (_int1("stride", stride),)
        self.activation = activation
        self.weight = nn.Parameter(torch.empty((self.out_channels, self.in_channels, 1), **kw))
        if bias:
            self.bias = nn.Parameter(torch.empty(self.out_channels, **kw))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        """Re-initialise as ``nn.Conv1d`` does (Kaiming-uniform weight, uniform bias)."""
        _reset_conv(self.weight, self.bias)

    def forward(self, x):
        """Apply the layer to ``x`` (N, C_in, L) or (C_in, L)."""
        if self.stride != (1,):
            x = _subsample(x, self.stride)
        return pointwise_conv1d(x, self.weight, self.bias, self.activation)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}"
        if self.stride != (1,):
            s += f", stride={self.stride}"
        if self.bias is None:
            s += ", bias=False"
        return _act_repr(s, activation=self.activation)


class SeparableConv1d(nn.Module):
    """Depthwise separable 1-D convolution layer, fused (one pydsconv call).

    Computes ``activation(pointwise(mid_activation(depthwise(x))))`` with
    :func:`pydsconv.separable_conv1d` (backward recomputes the intermediate).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int
    stride, padding, dilation
        Of the depthwise stage, as in :class:`DepthwiseConv1d` (padding may
        be "causal").
    bias : bool or (bool, bool)
        Biases of (depthwise, pointwise); one bool sets both.
    depth_multiplier : int
    padding_mode : "zeros"
    mid_activation, activation : None, "relu", "relu6", "hardswish", "hardsigmoid", "silu" or "sigmoid"
        After the depthwise and after the pointwise stage.
    device, dtype
        CPU only; float32 (default) or float64.

    Attributes
    ----------
    depthwise : DepthwiseConv1d
        Holds ``depthwise.weight`` (C*M, 1, k) and ``depthwise.bias``.
    pointwise : PointwiseConv1d
        Holds ``pointwise.weight`` (C_out, C*M, 1) and ``pointwise.bias``.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        bias=True,
        depth_multiplier=1,
        padding_mode="zeros",
        mid_activation=None,
        activation=None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        _separable_stages(
            self,
            DepthwiseConv1d,
            PointwiseConv1d,
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            bias,
            depth_multiplier,
            padding_mode,
            mid_activation,
            activation,
            device,
            dtype,
        )

    def reset_parameters(self):
        """Re-initialise both stages as ``nn.Conv1d`` does."""
        self.depthwise.reset_parameters()
        self.pointwise.reset_parameters()

    def forward(self, x):
        """Apply the layer to ``x`` (N, C, L) or (C, L); see :func:`separable_conv1d`."""
        d, p = self.depthwise, self.pointwise
        return separable_conv1d(
            x,
            d.weight,
            p.weight,
            d.bias,
            p.bias,
            d.stride[0],
            d.padding,
            d.dilation[0],
            self.mid_activation,
            self.activation,
        )

    def extra_repr(self):
        return _separable_repr(self, (0,), (1,))


# --------------------------------------------------------------------------
# convert: a PyTorch model's depthwise / 1x1 convolutions -> pydsconv layers
# --------------------------------------------------------------------------


@dataclasses.dataclass
class ConvertReport:
    """What :func:`convert` did, by qualified module name (``model.named_modules()``
    names of the model as given).

    Attributes
    ----------
    converted : dict[str, str]
        Convolution name -> the pydsconv class that replaced it.
    folded : dict[str, str]
        BatchNorm name -> the name of the convolution it was folded into (the
        BatchNorm is now an ``nn.Identity``).
    fused : dict[str, tuple of str]
        Name of the new ``SeparableConv2d`` / ``SeparableConv1d`` (the
        depthwise's slot) -> the names of the modules it absorbed, in order
        (depthwise, optional activation, pointwise, optional activation); the
        slots after the first now hold ``nn.Identity``.
    renamed : dict[str, str]
        State-dict prefix changes made by fusion: old prefix -> new prefix
        (``"blk.0" -> "blk.0.depthwise"``, ``"blk.2" -> "blk.0.pointwise"``).
    activations : dict[str, str]
        Activation module name -> the name of the converted depthwise /
        pointwise layer that now applies it as its ``activation=`` (the
        activation's slot now holds ``nn.Identity``); ``fuse=True`` only.
    left_alone : dict[str, str]
        Convolutions and BatchNorms left as they were -> why.
    """

    converted: Dict[str, str] = dataclasses.field(default_factory=dict)
    folded: Dict[str, str] = dataclasses.field(default_factory=dict)
    fused: Dict[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)
    renamed: Dict[str, str] = dataclasses.field(default_factory=dict)
    left_alone: Dict[str, str] = dataclasses.field(default_factory=dict)
    activations: Dict[str, str] = dataclasses.field(default_factory=dict)

    def __str__(self):
        lines = [
            f"converted {len(self.converted)}, folded {len(self.folded)}, "
            f"fused {len(self.fused)}, left alone {len(self.left_alone)}"
        ]
        lines += [f"  converted  {k}: {v}" for k, v in self.converted.items()]
        lines += [f"  folded     {k} -> {v}" for k, v in self.folded.items()]
        lines += [f"  fused      {k}: {' + '.join(v)}" for k, v in self.fused.items()]
        lines += [f"  activation {k} -> {v}" for k, v in self.activations.items()]
        lines += [f"  left alone {k}: {v}" for k, v in self.left_alone.items()]
        return "\n".join(lines)


_DW_TYPES = (DepthwiseConv2d, DepthwiseConv1d)
_PW_TYPES = (PointwiseConv2d, PointwiseConv1d)
_ACTS = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.Hardswish: "hardswish",
    nn.Hardsigmoid: "hardsigmoid",
    nn.SiLU: "silu",
    nn.Sigmoid: "sigmoid",
}


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def _conv_refusal(m):
    """Why the exact ``nn.Conv1d`` / ``nn.Conv2d`` ``m`` cannot be converted, or
    None; and which kind it is: "depthwise" / "pointwise"."""
    w = m.weight
    if w.device.type != "cpu":
        return f"on device {w.device} (pydsconv runs on the CPU)", None
    if w.dtype not in _DTYPES:
        return f"dtype {w.dtype} (pydsconv computes float32 and float64)", None
    if m.padding_mode != "zeros":
        return f"padding_mode={m.padding_mode!r} (pydsconv pads with zeros only)", None
    if m.transposed:
        return "transposed convolution", None
    one = all(k == 1 for k in m.kernel_size)
    if m.groups == 1 and one and m.in_channels > 1:
        if m.padding not in ("valid", "same") and any(p != 0 for p in m.padding):
            return f"1x1 convolution with padding {m.padding}: pointwise ops do not pad", None
        return None, "pointwise"
    if m.groups == m.in_channels and m.out_channels % m.in_channels == 0:
        return None, "depthwise"
    if m.groups == 1:
        return f"full {tuple(m.kernel_size)} convolution (groups=1): not depthwise or 1x1", None
    if one:
        return (
            f"grouped 1x1 convolution (groups={m.groups}): pydsconv's pointwise op is dense "
            "(as one dense 1x1 it would cost groups times the multiply-adds)"
        ), None
    return f"grouped convolution (groups={m.groups}, {m.in_channels} channels)", None


def _swap_conv(m, kind):
    """The pydsconv layer replacing the exact nn.Conv1d / nn.Conv2d ``m``; it
    holds ``m``'s own Parameters (an optimizer built on them keeps working)."""
    one_d = isinstance(m, nn.Conv1d)
    kw = {"bias": m.bias is not None, "dtype": m.weight.dtype}
    with torch.random.fork_rng(devices=[]):  # the throwaway init leaves torch's RNG as it was
        if kind == "pointwise":
            cls = PointwiseConv1d if one_d else PointwiseConv2d
            new = cls(m.in_channels, m.out_channels, stride=m.stride, **kw)
        else:
            cls = DepthwiseConv1d if one_d else DepthwiseConv2d
            new = cls(
                m.in_channels,
                m.kernel_size,
                m.stride,
                m.padding,
                m.dilation,
                depth_multiplier=m.out_channels // m.in_channels,
                **kw,
            )
    new.weight = m.weight
    if m.bias is not None:
        new.bias = m.bias
    new.train(m.training)
    return new


def _bn_refusal(conv, bn):
    """Why BatchNorm ``bn`` cannot be folded into ``conv`` (converted, or an
    exact nn.Conv1d / nn.Conv2d left alone), or None."""
    one_d = (DepthwiseConv1d, PointwiseConv1d, nn.Conv1d)
    want = nn.BatchNorm1d if isinstance(conv, one_d) else nn.BatchNorm2d
    if type(bn) is not want:
        return f"{type(bn).__name__} after a {type(conv).__name__} (needs {want.__name__})"
    if bn.training or conv.training:
        return "train mode: folding needs eval mode (running statistics)"
    if bn.running_mean is None or bn.running_var is None:
        return "track_running_stats=False: it normalises with batch statistics"
    if bn.num_features != conv.out_channels:
        return f"{bn.num_features} features after {conv.out_channels} channels"
    return None


@torch.no_grad()
def _fold(conv, bn):
    """Fold eval-mode BatchNorm ``bn`` into ``conv``'s weight and bias
    (computed in float64, stored in the conv's dtype)."""
    w = conv.weight.detach().double()
    mean, var = bn.running_mean.double(), bn.running_var.double()
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(mean)
    dtype = conv.weight.dtype
    grad = conv.weight.requires_grad
    conv.weight = nn.Parameter((w * scale.reshape(-1, *([1] * (w.dim() - 1)))).to(dtype), grad)
    conv.bias = nn.Parameter((b * scale + shift).to(dtype), grad)


def _act_of(m):
    """The activation= name of an exact nn.ReLU / ReLU6 / Hardswish /
    Hardsigmoid / SiLU / Sigmoid module, else None."""
    return _ACTS.get(type(m))


def _plain_seq(m):
    """True for an nn.Sequential (or subclass, e.g. torchvision's
    Conv2dNormActivation) whose forward is nn.Sequential's: its children run
    one after another, so it can be seen through when fusing."""
    return isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward


def _leaves(seq, prefix):
    """[(container, key, qualified name)] of the non-Identity modules of the
    plain nn.Sequential ``seq``, in execution order, nested plain Sequentials
    flattened."""
    out = []
    for k, m in seq._modules.items():
        if m is None or type(m) is nn.Identity:
            continue
        name = _join(prefix, k)
        if _plain_seq(m):
            out += _leaves(m, name)
        else:
            out.append((seq, k, name))
    return out


def _fuse_run(seq, prefix, report):
    """Fuse depthwise -> [activation] -> pointwise [-> activation] runs of
    the plain nn.Sequential ``seq`` (Identity slots skipped, nested plain
    Sequentials such as torchvision's Conv2dNormActivation seen through)
    into Separable layers."""
    live = _leaves(seq, prefix)

    def mod(i):
        c, k, _ = live[i]
        return c._modules[k]

    i = 0
    while i < len(live):
        dw = mod(i)
        if not (isinstance(dw, _DW_TYPES) and dw.activation is None):
            i += 1
            continue
        j, mid = i + 1, None
        if j < len(live) and _act_of(mod(j)):
            mid = _act_of(mod(j))
            j += 1
        pw = mod(j) if j < len(live) else None
        one_d = isinstance(dw, DepthwiseConv1d)
        want = PointwiseConv1d if one_d else PointwiseConv2d
        if not (
            type(pw) is want
            and pw.activation is None
            and all(v == 1 for v in pw.stride)
            and pw.in_channels == dw.out_channels
            and pw.weight.dtype == dw.weight.dtype
            and dw.training == pw.training
        ):
            i += 1
            continue
        used = list(range(i, j + 1))
        act = None
        if j + 1 < len(live) and _act_of(mod(j + 1)):
            act = _act_of(mod(j + 1))
            used.append(j + 1)
        cls = SeparableConv1d if one_d else SeparableConv2d
        with torch.random.fork_rng(devices=[]):
            sep = cls(
                dw.in_channels,
                pw.out_channels,
                dw.kernel_size,
                depth_multiplier=dw.depth_multiplier,
                mid_activation=mid,
                activation=act,
                dtype=dw.weight.dtype,
            )
        sep.depthwise, sep.pointwise = dw, pw  # the same modules and Parameters
        sep.train(dw.training)
        for u in used[1:]:
            c, k, _ = live[u]
            c._modules[k] = nn.Identity()
        c, k, name = live[i]
        c._modules[k] = sep
        report.fused[name] = tuple(live[u][2] for u in used)
        report.renamed[name] = _join(name, "depthwise")
        report.renamed[live[j][2]] = _join(name, "pointwise")
        i = used[-1] + 1


def _fuse_activations(seq, prefix, report):
    """A converted depthwise / pointwise layer without an activation,
    directly followed (Identity slots skipped, nested plain Sequentials seen
    through) by an activation module of :data:`_ACTS`, takes it as its own
    ``activation=``; the activation's slot becomes ``nn.Identity``."""
    live = _leaves(seq, prefix)
    for (c, k, name), (c2, k2, name2) in zip(live, live[1:]):
        m, a = c._modules[k], c2._modules[k2]
        if type(m) not in _DW_TYPES + _PW_TYPES or m.activation is not None:
            continue
        act = _act_of(a)
        if act is None:
            continue
        m.activation = act
        c2._modules[k2] = nn.Identity()
        report.activations[name2] = name


def _fuse_tree(module, prefix, report):
    """Run the fusions on every maximal plain nn.Sequential below ``module``
    (a plain Sequential inside one is covered by its flattening)."""
    for key, child in list(module._modules.items()):
        if child is None:
            continue
        name = _join(prefix, key)
        if _plain_seq(child):
            _fuse_run(child, name, report)
            _fuse_activations(child, name, report)
            _fuse_below(child, name, report)
        else:
            _fuse_tree(child, name, report)


def _fuse_below(seq, prefix, report):
    """_fuse_tree for the non-Sequential modules inside plain Sequential ``seq``."""
    for key, child in list(seq._modules.items()):
        if child is None:
            continue
        name = _join(prefix, key)
        if _plain_seq(child):
            _fuse_below(child, name, report)
        else:
            _fuse_tree(child, name, report)


def _convert_children(module, prefix, fold, fuse, report):
    for key, child in list(module._modules.items()):
        if child is None:
            continue
        name = _join(prefix, key)
        if type(child) in (nn.Conv1d, nn.Conv2d):
            why, kind = _conv_refusal(child)
            if why:
                report.left_alone[name] = why
            else:
                new = _swap_conv(child, kind)
                module._modules[key] = new
                report.converted[name] = type(new).__name__
        elif isinstance(child, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            report.left_alone[name] = (
                f"{type(child).__name__}: only exact nn.Conv1d / nn.Conv2d are converted"
                if isinstance(child, (nn.Conv1d, nn.Conv2d))
                else "3-D convolution"
            )
        else:
            _convert_children(child, name, fold, fuse, report)
    if not _plain_seq(module):  # its own forward need not run conv then BatchNorm
        _note_batchnorms(module, prefix, report)
        return
    keys = list(module._modules)
    for a, b in zip(keys, keys[1:]):
        conv, bn = module._modules[a], module._modules[b]
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            continue
        if _join(prefix, a) not in report.converted and type(conv) not in (nn.Conv1d, nn.Conv2d):
            continue  # explained by _note_batchnorms
        why = _bn_refusal(conv, bn) if fold else "not folded: the model is in train mode"
        if why is None:
            _fold(conv, bn)
            module._modules[b] = nn.Identity()
            report.folded[_join(prefix, b)] = _join(prefix, a)
        else:
            report.left_alone[_join(prefix, b)] = why
    _note_batchnorms(module, prefix, report)


def _note_batchnorms(module, prefix, report):
    """Record the direct BatchNorm children of ``module`` that were not folded
    and not explained yet."""
    for key, child in module._modules.items():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            name = _join(prefix, key)
            if name not in report.folded and name not in report.left_alone:
                report.left_alone[name] = (
                    "not folded: not directly after a convolution in an nn.Sequential "
                    "(one with nn.Sequential's forward)"
                )


def convert(model, *, fuse=True, inplace=False, channels_last=False):
    """Swap a PyTorch model's depthwise and 1x1 convolutions for pydsconv layers.

    Converted (exact ``nn.Conv2d`` / ``nn.Conv1d`` instances, CPU, float32 or
    float64, ``padding_mode="zeros"``):

    * depthwise: ``groups == in_channels``, ``out_channels = M * in_channels``,
      any kernel, stride, dilation and padding (also ``"same"``, ``"valid"``)
      -> :class:`DepthwiseConv2d` / :class:`DepthwiseConv1d`;
    * 1x1 (kernel 1) with ``groups=1``, any stride and no padding ->
      :class:`PointwiseConv2d` / :class:`PointwiseConv1d` (a strided one
      subsamples its input first, exactly as the convolution reads it).

    Everything else (full or grouped convolutions, grouped 1x1, padded 1x1, other padding
    modes, subclasses, other devices or dtypes) is left as it is, with the
    reason in the report; modules convert does not know are left as they are
    (their children are still visited).  A converted layer holds the original
    ``weight`` / ``bias`` Parameters under the same names, so state dicts and
    an optimizer built on ``model.parameters()`` carry over.

    In eval mode (``model.training`` False, and the convolution and the
    BatchNorm in eval mode), a ``BatchNorm2d``
    / ``BatchNorm1d`` (with running statistics) that directly follows a
    converted convolution, or an exact ``nn.Conv2d`` / ``nn.Conv1d`` left
    alone (a full stem convolution, a grouped one), inside an
    ``nn.Sequential`` (one whose ``forward`` is ``nn.Sequential``'s) is folded into the convolution's weight and bias (a
    bias is added if it had none) and replaced by ``nn.Identity``.  In train mode nothing is folded, and the
    converted model trains exactly as the original.

    With ``fuse=True``, inside an ``nn.Sequential`` whose ``forward`` is
    ``nn.Sequential``'s (a subclass that overrides it is not fused inside), depthwise -> optional
    ``nn.ReLU`` / ``nn.ReLU6`` / ``nn.Hardswish`` / ``nn.Hardsigmoid`` /
    ``nn.SiLU`` / ``nn.Sigmoid`` -> 1x1 (``nn.Identity`` slots, such as folded
    BatchNorms, skipped) becomes one fused :class:`SeparableConv2d` /
    :class:`SeparableConv1d` (the activation as its ``mid_activation``; a
    such activation right after the 1x1 becomes its ``activation``).  It takes
    the depthwise's slot and holds the two converted layers as ``depthwise``
    and ``pointwise``; the other slots become ``nn.Identity``, so the indices
    of later layers do not move.  State-dict keys change from ``blk.0.weight``
    / ``blk.2.weight`` to ``blk.0.depthwise.weight`` / ``blk.0.pointwise.weight``
    (``report.renamed``).  Nested ``nn.Sequential`` modules that only chain their
    children (``forward`` not overridden, e.g. torchvision's
    ``Conv2dNormActivation``) are seen through, so MobileNetV2's
    ``Conv2dNormActivation(depthwise, BN, ReLU6)`` followed by its projecting
    1x1 fuses too.  Then a converted depthwise or 1x1 layer still directly
    followed by such an activation takes it as its own ``activation=``
    (``report.activations``).  Fusion is exact (up to rounding) and also
    applies in train mode.

    Parameters
    ----------
    model : nn.Module
        Any module; it may itself be an ``nn.Conv2d``.
    fuse : bool
        Fuse depthwise -> activation -> pointwise runs (see above).
    inplace : bool
        False (default): convert a ``copy.deepcopy`` of ``model`` and leave
        ``model`` untouched.  True: modify ``model`` itself.
    channels_last : bool
        True: the 4-D weights of the ``nn.Conv2d`` s left alone (a stem
        convolution) are made channels_last (same values), so that PyTorch
        returns their outputs channels_last even for an NCHW input, and the
        pydsconv layers after them compute in NHWC, their faster layout,
        without a copy.  Outputs are the same values; 4-D outputs may come back
        channels_last instead of contiguous.  Default False.

    Returns
    -------
    model : nn.Module
        The converted model (``model`` itself when ``inplace=True``, unless
        ``model`` is itself a convertible convolution).
    report : ConvertReport
        What was converted, folded, fused and left alone (with reasons).

    Examples
    --------
    >>> import torch, pydsconv.torch as pt
    >>> net = torch.nn.Sequential(
    ...     torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
    ...     torch.nn.BatchNorm2d(8), torch.nn.ReLU6(), torch.nn.Conv2d(8, 16, 1)).eval()
    >>> fast, report = pt.convert(net)
    >>> type(fast[0]).__name__, report.folded
    ('SeparableConv2d', {'1': '0'})
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    fold = not model.training  # and, per pair, the conv and the BatchNorm in eval mode
    report = ConvertReport()
    holder = nn.Sequential()  # so that the model itself can be swapped or fused
    holder._modules[""] = model
    _convert_children(holder, "", fold, fuse, report)
    if fuse:
        _fuse_tree(holder, "", report)
    if channels_last:
        for m in holder.modules():
            if type(m) is nn.Conv2d:
                with torch.no_grad():
                    m.weight.data = m.weight.data.contiguous(memory_format=_CL)
    return holder._modules[""], report


def compile_inference(model, example_input, *, num_threads=None, fuse=True):
    """Run an eval-mode PyTorch model on one whole-network C++ plan.

    The model is traced with ``torch.fx.symbolic_trace`` and its graph lowered
    to the steps :func:`pydsconv.nn.compile` builds (the same BatchNorm
    folding, activation fusion, separable merging and banded chains), then
    compiled into a :class:`pydsconv.Plan`.  Lowered: ``nn.Conv2d``
    (``groups=1`` of any kernel, stride, dilation and zero padding, or
    depthwise: ``groups == in_channels``, any multiplier), ``nn.BatchNorm2d``
    with running statistics (folded into the convolution before it), ReLU,
    ReLU6 (also ``hardtanh(0, 6)``), Hardswish, Hardsigmoid, SiLU and Sigmoid
    as modules, functionals or methods (fused into the convolution or Linear
    before them), residual adds, squeeze-and-excitation
    (``adaptive_avg_pool2d(x, 1)`` or ``x.mean((2, 3), keepdim=True)`` -> 1x1
    conv -> activation -> 1x1 conv -> activation -> ``* x``), global average
    pooling (``AdaptiveAvgPool2d(1)``, ``adaptive_avg_pool2d(x, 1)``,
    ``x.mean((2, 3))``) with ``flatten(x, 1)``, ``nn.Linear`` after it, and
    ``Dropout`` / ``Identity`` (the identity in eval mode).  E.g.
    torchvision's MobileNetV2, MobileNetV3, EfficientNet-B0 and MnasNet.

    The whole graph must lower (a plan is one chain of steps, each reading
    the one before, an add also an earlier one): otherwise a ValueError
    lists every node it cannot run and why; :func:`convert` speeds such a
    model up layer by layer instead.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode (``model.eval()``; a ValueError otherwise), on the CPU,
        its parameters of ``example_input``'s dtype.  Its weights are copied:
        later changes to the model do not reach the engine.
    example_input : torch.Tensor
        4-d (N, C, H, W), float32 or float64: the engine takes exactly this
        shape and dtype (compile again for another).  Its values are used
        once, to check the plan's output shape against ``model``'s.
    num_threads : int, optional
        Threads of every call; None follows :func:`pydsconv.set_num_threads`.
        Results are the same bits for any count.
    fuse : bool, "always" or int, optional
        As for :func:`pydsconv.nn.compile`.

    Returns
    -------
    torch.nn.Module
        An inference-only module: ``engine(x)`` takes a CPU tensor of the
        example's shape and dtype, NCHW-contiguous or ``channels_last`` (read
        in place through NumPy, no copy; another striding is copied once), and
        returns a new tensor of the model's output shape (a 4-d output in the
        input's memory format).  It raises for a tensor that requires grad
        while grad mode is on, and ``engine.train()`` raises.
        ``engine.report.summary()`` lists what was lowered (the plan's steps
        and what was fused into each); ``engine.plan("NCHW")`` /
        ``engine.plan("NHWC")`` is the :class:`pydsconv.Plan` each memory
        format runs (compiled on first use).

    Raises
    ------
    ValueError
        A model in training mode, a graph fx cannot trace, or nodes a plan
        cannot run (listed).
    TypeError
        A model that is not an ``nn.Module``, an example that is not a 4-d
        float32/float64 tensor, or parameters of another dtype.

    Examples
    --------
    >>> import torch, pydsconv.torch as pt
    >>> m = torch.nn.Sequential(
    ...     torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
    ...     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4),
    ... ).eval()
    >>> x = torch.randn(2, 3, 16, 16)
    >>> engine = pt.compile_inference(m, x)
    >>> bool(torch.allclose(engine(x), m(x), atol=1e-5))
    True
    """
    from ._torch_engine import compile_inference as _compile

    return _compile(model, example_input, num_threads=num_threads, fuse=fuse)
