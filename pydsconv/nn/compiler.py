"""Compile a :mod:`pydsconv.nn` network into one C++ inference plan.

The passes, in order, on the network's layers flattened out of its
``Sequential`` s (``Dropout`` and ``Identity`` dropped, as in eval mode;
an :class:`InvertedResidual` lowered to its body's steps and, with a
residual connection, an ``add`` step that reads the block's input; a
:class:`SqueezeExcitation` one ``squeeze_excite`` step):

1. **BatchNorm folding**: a ``BatchNorm2d`` right after a convolution
   without activation scales that convolution's weight and shifts its bias
   (computed in float64, stored in the model's dtype).  Never across a
   residual block's boundary.
2. **Activation fusion**: ``ReLU``, ``ReLU6``, ``Hardswish``,
   ``Hardsigmoid``, ``SiLU`` and ``Sigmoid`` become the epilogue of the
   convolution or ``Linear`` before them.
3. **Separable fusion**: a depthwise layer followed by a pointwise layer
   (with an activation between) becomes one fused separable step, whose
   intermediate tensor never exists in full (an inverted residual's
   depthwise and projection, when no squeeze-and-excitation is between).

The plan (C++, ``cpp/plan.cpp``) then runs in NHWC, packs every GEMM weight
once and plans its activation memory when it is built (one arena, each
tensor at an offset chosen from the tensors' lifetimes).
"""

from __future__ import annotations

import numpy as np

from .. import _args, _core
from ..conv import _threads
from ..plan import Plan
from ._util import check_layout
from .activation import Hardsigmoid, Hardswish, ReLU, ReLU6, Sigmoid, SiLU
from .blocks import InvertedResidual, SqueezeExcitation
from .container import Identity, Sequential
from .conv import Conv2d, DepthwiseConv2d, PointwiseConv2d, SeparableConv2d
from .dropout import Dropout
from .linear import Flatten, Linear
from .module import Module
from .norm import BatchNorm2d
from .pooling import GlobalAvgPool2d

__all__ = ["compile"]

_SUPPORTED = (
    "Sequential (nested), Conv2d, DepthwiseConv2d, PointwiseConv2d, SeparableConv2d, "
    "BatchNorm2d (after a convolution), ReLU, ReLU6, Hardswish, Hardsigmoid, SiLU, Sigmoid, "
    "Dropout, Identity, GlobalAvgPool2d, Flatten, Linear, InvertedResidual, "
    "SqueezeExcitation"
)
_CONVS = ("conv", "depthwise", "pointwise", "separable")
_EPILOGUE = _CONVS + ("linear",)  # steps an activation can be fused into
# Activation layers and their epilogue (activation=) names.
_ACTS = {
    ReLU: "relu",
    ReLU6: "relu6",
    Hardswish: "hardswish",
    Hardsigmoid: "hardsigmoid",
    SiLU: "silu",
    Sigmoid: "sigmoid",
}


class _Step:
    """One step of the plan being built: what the C++ plan receives."""

    def __init__(
        self, kind, name, layer=None, arrays=(), act=None, mid_act=None, geom=None, skip=None
    ):
        self.kind = kind
        self.skip = skip  # add: the _Step whose output it adds (None: the network input)
        self.name = name
        self.layer = layer  # BatchNorm2d / activation steps: the layer itself
        self.arrays = list(arrays)
        self.act = act
        self.mid_act = mid_act
        self.geom = geom or ((1, 1), (1, 1), "valid", (0, 0, 0, 0))
        self.fused = []

    def spec(self, index):
        """The tuple the C++ plan takes; ``index`` maps a _Step to its position."""
        stride, dilation, pad_mode, pad = self.geom
        return (
            self.kind,
            self.name,
            ", ".join(self.fused),
            stride,
            dilation,
            pad_mode,
            pad,
            self.mid_act,
            self.act,
            self.arrays,
            -1 if self.skip is None else index[id(self.skip)],
        )


def _label(name, layer):
    return f"{name or '<model>'} ({type(layer).__name__})"


def _bias(layer):
    return None if layer.bias is None else layer.bias.data


def _geom(layer):
    mode, pad = _args.to_padding(layer.padding, 2)
    return tuple(layer.stride), tuple(layer.dilation), mode, pad


def _act_name(layer):
    """The activation= name of a pydsconv.nn activation module, or None."""
    return _ACTS.get(type(layer))


def _check_layout(name, module, layout):
    own = getattr(module, "layout", layout)
    if own != layout:
        raise ValueError(
            f"compile: layer {_label(name, module)} has layout={own!r}, but the "
            f"plan is compiled for layout={layout!r}; build the model with "
            f"layout={layout!r}"
        )


class _Lowering:
    """The first pass: every computing layer as a step, BatchNorms folded and
    activations fused into the step before them as they come."""

    def __init__(self, layout, dtype):
        self.layout = layout
        self.dtype = dtype
        self.steps = []
        self.barrier = 0  # steps before it take no folding (a residual's input)

    def prev(self):
        return self.steps[-1] if len(self.steps) > self.barrier else None

    def module(self, name, module):
        if isinstance(module, Sequential):
            for child, m in module.named_children():
                self.module(f"{name}.{child}" if name else child, m)
            return
        if isinstance(module, (Dropout, Identity)):
            return
        _check_layout(name, module, self.layout)
        if isinstance(module, InvertedResidual):
            body = f"{name}.{module._body_name}" if name else module._body_name
            if not module.use_res_connect:
                self.module(body, module.body)
                return
            source = self.steps[-1] if self.steps else None
            self.barrier = len(self.steps)
            self.module(body, module.body)
            self.steps.append(_Step("add", _label(name, module), skip=source))
            self.barrier = len(self.steps)
            return
        if isinstance(module, SqueezeExcitation):
            self.steps.append(_squeeze_excite(name, module))
            return
        step = _lower(name, module)
        if step.kind in ("bn", "act") and self.prev() is None and self.steps:
            raise ValueError(
                f"compile: {step.name} follows {self.steps[-1].name} across a residual "
                "connection; a plan folds BatchNorm2d and activations only into a "
                "convolution inside the same block"
            )
        if step.kind == "bn":
            _fold_bn(self.prev(), step.name, _bn_stats(step), self.dtype)
        elif step.kind == "act":
            _fuse_act(self.prev(), step.name, _ACTS[type(step.layer)], type(step.layer).__name__)
        else:
            self.steps.append(step)


def _squeeze_excite(name, se):
    label = _label(name, se)
    acts = []
    for what, m in (("activation", se.activation), ("scale_activation", se.scale_activation)):
        act = None if m is None else _act_name(m)
        if m is not None and act is None:
            raise TypeError(
                f"compile: {label} has {what} {type(m).__name__}, which a plan does not support"
            )
        acts.append(act)
    step = _Step(
        "squeeze_excite",
        label,
        arrays=[se.fc1.weight.data, _bias(se.fc1), se.fc2.weight.data, _bias(se.fc2)],
        mid_act=acts[0],
        act=acts[1],
    )
    step.fused = [f"{acts[0] or 'no activation'} after fc1", f"{acts[1]} gate"]
    return step


def _lower(name, layer):
    """The first-pass step of one layer."""
    label = _label(name, layer)
    if isinstance(layer, SeparableConv2d):
        dw, pw = layer.depthwise, layer.pointwise
        return _Step(
            "separable",
            label,
            arrays=[dw.weight.data, _bias(dw), pw.weight.data, _bias(pw)],
            act=pw.activation,
            mid_act=dw.activation,
            geom=_geom(dw),
        )
    if isinstance(layer, (Conv2d, DepthwiseConv2d)):
        kind = "conv" if isinstance(layer, Conv2d) else "depthwise"
        return _Step(
            kind,
            label,
            arrays=[layer.weight.data, _bias(layer)],
            act=layer.activation,
            geom=_geom(layer),
        )
    if isinstance(layer, PointwiseConv2d):
        return _Step(
            "pointwise", label, arrays=[layer.weight.data, _bias(layer)], act=layer.activation
        )
    if isinstance(layer, Linear):
        return _Step("linear", label, arrays=[layer.weight.data, _bias(layer)])
    if isinstance(layer, BatchNorm2d):
        return _Step("bn", label, layer=layer)
    if type(layer) in _ACTS:
        return _Step("act", label, layer=layer)
    if isinstance(layer, GlobalAvgPool2d):
        return _Step("pool", label)
    if isinstance(layer, Flatten):
        return _Step("flatten", label)
    raise TypeError(f"compile: layer {label} is not supported; a plan takes {_SUPPORTED}")


def _bn_stats(step):
    """(gamma, beta, mean, var, eps) of a pydsconv.nn BatchNorm2d step, checked."""
    bn = step.layer
    if not bn.track_running_stats:
        raise ValueError(
            f"compile: {step.name} has no running statistics "
            "(track_running_stats=False), so it cannot be folded"
        )
    gamma = None if bn.weight is None else bn.weight.data
    beta = None if bn.bias is None else bn.bias.data
    return gamma, beta, bn.running_mean, bn.running_var, bn.eps


def _fold_bn(prev, name, stats, dtype, who="compile"):
    """Fold a BatchNorm (``stats`` = gamma or None, beta or None, running mean,
    running var, eps) named ``name`` into ``prev``, a convolution without
    activation.  Shared by :func:`compile` and ``pydsconv.torch.compile_inference``."""
    gamma, beta, mean, var, eps = stats
    if prev is None or prev.kind not in _CONVS or prev.act is not None:
        after = "at the start of the network" if prev is None else f"after {prev.name}"
        raise ValueError(
            f"{who}: {name} {after} cannot be folded: a plan folds "
            "BatchNorm2d only into a convolution directly before it that has no "
            "activation"
        )
    iw = 2 if prev.kind == "separable" else 0
    w = np.asarray(prev.arrays[iw], np.float64)
    mean = np.asarray(mean, np.float64)
    if mean.shape != (w.shape[0],):
        raise ValueError(
            f"{who}: {name} has {mean.size} features but "
            f"{prev.name} has {w.shape[0]} output channels"
        )
    scale = (1.0 if gamma is None else np.asarray(gamma, np.float64)) / np.sqrt(
        np.asarray(var, np.float64) + eps
    )
    scale = np.broadcast_to(scale, (w.shape[0],))
    beta = 0.0 if beta is None else np.asarray(beta, np.float64)
    b = prev.arrays[iw + 1]
    b = np.zeros(w.shape[0]) if b is None else np.asarray(b, np.float64)
    prev.arrays[iw] = (w * scale.reshape(-1, *([1] * (w.ndim - 1)))).astype(dtype)
    prev.arrays[iw + 1] = ((b - mean) * scale + beta).astype(dtype)
    prev.fused.append(f"BatchNorm2d {name.split(' ')[0]}")


def _fuse_act(prev, name, act, what, who="compile"):
    """Make activation ``act`` (an activation= name; layer ``name``, of type
    ``what``) the epilogue of ``prev``."""
    if prev is None or prev.kind not in _EPILOGUE:
        after = "at the start of the network" if prev is None else f"after {prev.name}"
        raise ValueError(
            f"{who}: {name} {after} has no convolution or Linear to fuse "
            "into; a plan applies activations in the epilogue of the op before them"
        )
    if prev.act is None or prev.act == act == "relu":
        prev.act = act
    elif {prev.act, act} <= {"relu", "relu6"}:
        # relu6(relu(x)) = relu(relu6(x)) = relu6(relu6(x)) = relu6(x)
        prev.act = "relu6"
    else:
        raise ValueError(
            f"{who}: {name} after {prev.name}, which already ends in "
            f"{prev.act!r}: a step has one epilogue activation (only relu and relu6 combine)"
        )
    prev.fused.append(f"{what} {name.split(' ')[0]}")


def _merge(dw, pw):
    """A depthwise step and the pointwise step after it as one separable step."""
    s = _Step(
        "separable", dw.name, arrays=dw.arrays + pw.arrays, act=pw.act, mid_act=dw.act, geom=dw.geom
    )
    s.fused = dw.fused + [f"pointwise {pw.name}"] + pw.fused
    return s


def _passes(model, layout, dtype):
    lowering = _Lowering(layout, dtype)
    lowering.module("", model)
    return _merge_separable(lowering.steps)


def _merge_separable(steps):
    """The last pass, on first-pass steps (also ``pydsconv.torch``'s).

    Depthwise + pointwise after all folding (BatchNorms and activations of
    both stages are already in their weights and epilogues); not when a
    residual reads the depthwise output."""
    sources = {id(s.skip) for s in steps if s.kind == "add" and s.skip is not None}
    merged, renamed = [], {}
    for step in steps:
        if (
            step.kind == "pointwise"
            and merged
            and merged[-1].kind == "depthwise"
            and id(merged[-1]) not in sources
        ):
            merged[-1] = _merge(merged[-1], step)
            renamed[id(step)] = merged[-1]
        else:
            merged.append(step)
    for step in merged:
        if step.skip is not None:
            step.skip = renamed.get(id(step.skip), step.skip)
    return merged


def _specs(steps):
    """The C++ plan's step tuples of a finished step list."""
    index = {id(s): i for i, s in enumerate(steps)}
    return [s.spec(index) for s in steps]


def _input_shape(input_shape, layout):
    try:
        shape = tuple(int(v) for v in input_shape)
    except TypeError:
        raise TypeError(
            f"input_shape must be a tuple of 4 ints {_dims(layout)}, got {input_shape!r}"
        ) from None
    if len(shape) != 4 or min(shape) < 0:
        raise ValueError(
            f"input_shape must be 4 non-negative sizes {_dims(layout)}, got {input_shape!r}"
        )
    return shape


def _dims(layout):
    return "(N, C, H, W)" if layout == "NCHW" else "(N, H, W, C)"


def _fuse_mode(fuse):
    """compile's fuse= as the C++ plan's mode (Plan::kFuse* in cpp/plan.h)."""
    if fuse is True:
        return -1
    if fuse is False:
        return 0
    if isinstance(fuse, str) and fuse == "always":
        return -2
    if isinstance(fuse, (int, np.integer)) and not isinstance(fuse, bool) and fuse > 0:
        return int(fuse)
    raise ValueError(f'compile: fuse must be True, False, "always" or an int > 0, got {fuse!r}')


def compile(model, input_shape, *, layout="NCHW", num_threads=None, fuse=True):
    """Compile an eval-mode network into a :class:`pydsconv.Plan`.

    Parameters
    ----------
    model : pydsconv.nn.Module
        In eval mode (``model.eval()``): a ValueError otherwise.  Layers:
        ``Sequential`` (nested), ``Conv2d``, ``DepthwiseConv2d``,
        ``PointwiseConv2d``, ``SeparableConv2d``, ``BatchNorm2d`` (directly
        after a convolution without activation, inside the same residual
        block), ``ReLU``, ``ReLU6``, ``Hardswish``, ``Hardsigmoid``,
        ``SiLU``, ``Sigmoid`` (after a convolution or ``Linear``),
        ``Dropout`` and ``Identity`` (skipped), ``GlobalAvgPool2d``,
        ``Flatten``, ``Linear``, ``InvertedResidual`` (its body's steps and
        a residual ``add``), ``SqueezeExcitation`` (one step); e.g.
        :class:`MobileNetV1`, :class:`MobileNetV2`,
        :class:`MobileNetV3Large`, :class:`EfficientNetB0`,
        :class:`SeparableConvNet`.  Any other layer is a TypeError naming
        it.  Its weights are copied: later changes to the model do not
        reach the plan.
    input_shape : tuple of 4 ints
        Including the batch, in ``layout``; the plan accepts exactly it.
    layout : "NCHW" or "NHWC", optional
        Of the plan's input and output; the model's layers must have been
        built with the same layout.  Inside, the plan runs in NHWC (an NCHW
        caller pays one transpose in and one out).
    num_threads : int, optional
        Threads of every call; None follows :func:`pydsconv.set_num_threads`.
        Results are the same bits for any count.
    fuse : bool, "always" or int, optional
        True: run chains of pointwise, depthwise and separable layers in
        bands of rows, each intermediate kept in a small line buffer instead
        of written whole, where that pays (the chain's weights fit in cache
        and the tensors between its layers would not); ``summary()`` shows
        each chain as one ``banded`` step.  False: every layer over the
        whole batch.  "always": every chain that can be fused is; an int
        > 0: the same, with bands of that many output rows (for tests and
        benchmarks).  The results are the same bits whatever is fused.

    Returns
    -------
    pydsconv.Plan
        ``plan(x, out=None)`` equals ``model(x)`` in eval mode within float
        tolerance (BatchNorm folding changes rounding).

    Raises
    ------
    ValueError
        A model in training mode, a layout that disagrees with a layer's, a
        BatchNorm2d or activation with nothing to fold into (or only across
        a residual connection), or a layer whose
        shapes do not fit its input (the message names the layer).
    TypeError
        An unsupported layer, or a model that is not a ``pydsconv.nn.Module``.

    Examples
    --------
    >>> import numpy as np
    >>> from pydsconv import nn
    >>> model = nn.MobileNetV1(0.25, num_classes=10, input_size=32, rng=0).eval()
    >>> plan = nn.compile(model, (1, 3, 32, 32))
    >>> x = np.zeros((1, 3, 32, 32), np.float32)
    >>> plan(x).shape
    (1, 10)
    """
    if not isinstance(model, Module):
        raise TypeError(f"compile: model must be a pydsconv.nn.Module, got {type(model).__name__}")
    layout = check_layout(layout)
    shape = _input_shape(input_shape, layout)
    training = [n for n, m in model.named_modules() if m.training]
    if training:
        where = "the model" if training[0] == "" else f"layer {training[0]!r}"
        raise ValueError(
            f"compile: {where} is in training mode; call model.eval() first "
            "(a plan is for inference: BatchNorm uses its running statistics, "
            "Dropout is off)"
        )
    threads = _threads(num_threads)
    fuse_mode = _fuse_mode(fuse)
    dtype = model.dtype or np.dtype(np.float32)
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"compile: the model's dtype must be float32 or float64, got {dtype}")
    steps = _passes(model, layout, dtype)
    specs = _specs(steps)
    core = _core.compile_plan(
        specs, shape, layout, np.dtype(dtype) == np.float64, threads, fuse_mode
    )
    # The plan keeps the step list (for Plan.save): the arrays BatchNorm
    # folding made are its own; the others are the model's, which may change
    # later, so those are copied.
    model_arrays = {id(p.data) for _, p in model.named_parameters()}
    kept = [
        (*s[:9], [np.array(a) if id(a) in model_arrays else a for a in s[9]], *s[10:])
        for s in specs
    ]
    return Plan(core, kept)
