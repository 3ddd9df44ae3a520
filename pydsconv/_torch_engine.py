"""``pydsconv.torch.compile_inference``: an eval-mode PyTorch model on the
whole-network plan of :func:`pydsconv.nn.compile`.

The model is traced with ``torch.fx.symbolic_trace``; its graph is lowered
node by node to the same first-pass steps (``pydsconv.nn.compiler._Step``)
that :func:`pydsconv.nn.compile` builds from a ``pydsconv.nn`` model, with
the same BatchNorm folding, activation fusion and separable merging
(``compiler._fold_bn``, ``_fuse_act``, ``_merge_separable``).  A plan is a
chain: every step reads the step before it (an ``add`` also reads one
earlier step), so the graph must be one too; a graph with any node the plan
cannot run is refused with a ValueError listing those nodes (whole graph or
nothing; ``pydsconv.torch.convert`` speeds such models up layer by layer).
"""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from . import _args, _core
from .conv import _threads
from .nn import compiler as _c
from .plan import Plan

_WHO = "compile_inference"
_INPUT = "input"  # the value of the graph's input (a step's skip=None)

_ACT_MODULES = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.Hardswish: "hardswish",
    nn.Hardsigmoid: "hardsigmoid",
    nn.SiLU: "silu",
    nn.Sigmoid: "sigmoid",
}
_ACT_FUNCTIONS = {
    F.relu: "relu",
    torch.relu: "relu",
    torch.relu_: "relu",
    F.relu_: "relu",
    F.relu6: "relu6",
    F.hardswish: "hardswish",
    F.hardsigmoid: "hardsigmoid",
    F.silu: "silu",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
}
_ACT_METHODS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid"}
_ADDS = (operator.add, operator.iadd, torch.add)
_MULS = (operator.mul, operator.imul, torch.mul)
_FLATTENS = (torch.flatten,)

SUPPORTED = (
    "nn.Conv2d (groups 1, or depthwise: groups == in_channels, any multiplier; "
    "padding_mode 'zeros'), nn.BatchNorm2d with running statistics (folded into the "
    "convolution before it), ReLU / ReLU6 / Hardswish / Hardsigmoid / SiLU / Sigmoid "
    "(modules, functionals, methods; after a convolution or Linear), residual add, "
    "squeeze-and-excitation (adaptive_avg_pool2d(1) or mean((2, 3), keepdim=True) -> "
    "1x1 conv -> activation -> 1x1 conv -> activation -> mul), global average pooling "
    "(AdaptiveAvgPool2d(1), adaptive_avg_pool2d(x, 1), x.mean((2, 3))) with flatten, "
    "nn.Linear, Dropout and Identity"
)


class _Pooled:
    """A global average pool of ``src`` not yet lowered: the head's pool
    (then flattened / used by a Linear) or a squeeze-and-excitation's
    squeeze (then 1x1 conv, activation, 1x1 conv, activation, mul by src)."""

    def __init__(self, src, node, keepdim):
        self.src = src  # the pooled value
        self.nodes = [node]
        self.keepdim = keepdim
        self.convs = []  # (node, nn.Conv2d)
        self.acts = []  # activation names, after each conv
        self.flat = False


def _as_np(t, dtype):
    return None if t is None else t.detach().cpu().numpy().astype(dtype)


def _conv_kind(m):
    """("conv" | "depthwise" | "pointwise", None) or (None, reason)."""
    if type(m) is not nn.Conv2d:
        return None, f"{type(m).__name__} is not exactly nn.Conv2d"
    if m.padding_mode != "zeros":
        return None, f"padding_mode={m.padding_mode!r} (only 'zeros')"
    if m.groups == 1:
        if m.kernel_size == (1, 1) and m.stride == (1, 1) and _pads(m) == ("valid", (0,) * 4):
            return "pointwise", None
        return "conv", None
    if m.groups == m.in_channels and m.out_channels % m.in_channels == 0:
        return "depthwise", None
    return None, f"grouped convolution (groups={m.groups}, in_channels={m.in_channels})"


def _pads(m):
    mode, pad = _args.to_padding(m.padding, 2, minimum=0)
    if mode == "explicit" and not any(pad):
        mode = "valid"
    return mode, tuple(pad)


class _Unsupported(Exception):
    """A node the plan cannot run (listed in compile_inference's error)."""


class _Chain(_Unsupported):
    """A node whose inputs do not fit the plan's chain: listed only when its
    inputs were all lowered (else it follows from a node already listed)."""


class _Lowerer:
    """Walks the traced graph in order, building the step chain."""

    def __init__(self, gm, dtype):
        self.gm = gm
        self.dtype = dtype
        self.modules = dict(gm.named_modules())
        self.steps = []
        self.val = {}  # node -> a _Step, _INPUT or a _Pooled
        self.unsupported = []  # (node, why)
        self.out = None

    # -- values ---------------------------------------------------------
    def cur(self):
        return self.steps[-1] if self.steps else _INPUT

    def _users_outside(self, value):
        """Nodes that read ``value`` other than by aliasing it."""
        n = 0
        for node, v in self.val.items():
            if v is value:
                n += sum(1 for u in node.users if self.val.get(u) is not value)
        return n

    def _input(self, node, arg, what):
        """The value ``arg`` of ``node``, which must be the chain's head."""
        if not isinstance(arg, fx.Node) or arg not in self.val:
            raise _Chain(f"its {what} is not a tensor the plan computes")
        v = self.val[arg]
        if isinstance(v, _Pooled):
            raise _Chain(f"its {what} is a pooled tensor that is not a head or SE")
        if v is not self.cur():
            raise _Chain(
                f"its {what} is not the output of the step right before it (a plan is a chain)"
            )
        return v

    def _foldable(self, node, arg, what):
        v = self._input(node, arg, what)
        if v is _INPUT:
            raise _Chain(f"a {what} of the network input has no convolution to fold into")
        if self._users_outside(v) > 1:
            raise _Chain(
                f"{v.name}'s output is also read elsewhere, so {what} cannot be fused into it"
            )
        return v

    # -- nodes ----------------------------------------------------------
    def run(self):
        for node in self.gm.graph.nodes:
            after_failure = any(self.val.get(a, 0) is None for a in node.all_input_nodes)
            try:
                self.node(node)
                continue
            except _Chain as e:
                why = None if after_failure else str(e)
            except _Unsupported as e:
                why = str(e)
            except (ValueError, TypeError) as e:  # compiler checks
                why = None if after_failure else str(e).removeprefix(f"{_WHO}: ")
            self.val[node] = None
            if why is not None:
                self.unsupported.append((node, why))
                if len(self.unsupported) >= 20:
                    break

    def label(self, node):
        if node.op == "call_module":
            return f"{node.target} ({type(self.modules[node.target]).__name__})"
        name = getattr(node.target, "__name__", str(node.target))
        return f"{node.name} ({name})"

    def node(self, node):
        op = node.op
        if op == "placeholder":
            if self.val:
                raise _Unsupported("a plan takes one input tensor")
            self.val[node] = _INPUT
            return
        if op == "output":
            arg = node.args[0]
            if not isinstance(arg, fx.Node):
                raise _Unsupported("the model must return one tensor")
            v = self.val.get(arg)
            if isinstance(v, _Pooled) and not v.convs:
                v = self._emit_pool(v)
            if v is not self.cur():
                raise _Chain("the output is not the last step's output")
            self.out = v
            return
        if op == "call_module":
            return self.module(node, self.modules[node.target])
        if op == "call_function":
            return self.function(node)
        if op == "call_method":
            return self.method(node)
        raise _Unsupported(f"{op} nodes are not supported")

    def alias(self, node, arg):
        if not isinstance(arg, fx.Node) or self.val.get(arg) is None:
            raise _Chain("its input is not a tensor the plan computes")
        self.val[node] = self.val[arg]

    def act(self, node, arg, act, what):
        v = self.val.get(arg) if isinstance(arg, fx.Node) else None
        if isinstance(v, _Pooled) and len(v.convs) == len(v.acts) + 1:
            v.acts.append(act)
            v.nodes.append(node)
            self.val[node] = v
            return
        prev = self._foldable(node, arg, "activation")
        _c._fuse_act(prev, self.label(node), act, what, who=_WHO)
        self.val[node] = prev

    def module(self, node, m):
        arg = node.args[0] if node.args else None
        t = type(m)
        if t in (nn.Dropout, nn.Identity) or (t is nn.Dropout2d):
            return self.alias(node, arg)
        if t in _ACT_MODULES:
            return self.act(node, arg, _ACT_MODULES[t], t.__name__)
        if t is nn.Conv2d:
            v = self.val.get(arg) if isinstance(arg, fx.Node) else None
            if isinstance(v, _Pooled):
                return self.se_conv(node, v, m)
            kind, why = _conv_kind(m)
            if kind is None:
                raise _Unsupported(why)
            self._input(node, arg, "input")
            mode, pad = _pads(m)
            step = _c._Step(
                kind,
                self.label(node),
                arrays=[_as_np(m.weight, self.dtype), _as_np(m.bias, self.dtype)],
                geom=(tuple(m.stride), tuple(m.dilation), mode, pad),
            )
            return self.emit(node, step)
        if t is nn.BatchNorm2d:
            if not m.track_running_stats or m.running_mean is None:
                raise _Unsupported("BatchNorm2d without running statistics cannot be folded")
            prev = self._foldable(node, arg, "BatchNorm2d")
            stats = (
                _as_np(m.weight, np.float64),
                _as_np(m.bias, np.float64),
                _as_np(m.running_mean, np.float64),
                _as_np(m.running_var, np.float64),
                m.eps,
            )
            _c._fold_bn(prev, self.label(node), stats, self.dtype, who=_WHO)
            self.val[node] = prev
            return
        if t is nn.AdaptiveAvgPool2d:
            if _args_pair(m.output_size) != (1, 1):
                raise _Unsupported("only output_size 1 (global average pooling)")
            return self.pool(node, arg, keepdim=True)
        if t is nn.Flatten:
            return self.flatten(node, arg, m.start_dim, m.end_dim)
        if t is nn.Linear:
            return self.linear(node, arg, m)
        raise _Unsupported(f"{t.__name__} modules are not supported")

    def function(self, node):
        f, args, kw = node.target, node.args, node.kwargs
        if f in _ACT_FUNCTIONS:
            if f in (F.relu, F.relu6, F.hardswish, F.hardsigmoid, F.silu) and kw.get("inplace"):
                pass  # in place or not, the value is the same
            return self.act(node, args[0], _ACT_FUNCTIONS[f], f.__name__)
        if f is F.hardtanh and _hardtanh_is_relu6(args, kw):
            return self.act(node, args[0], "relu6", "hardtanh(0, 6)")
        if f is F.dropout or f is F.dropout2d:
            return self.alias(node, args[0])
        if _is_stochastic_depth(f):
            training = args[3] if len(args) > 3 else kw.get("training", True)
            if training is not False:
                raise _Unsupported("stochastic_depth in training mode")
            return self.alias(node, args[0])
        if f is F.adaptive_avg_pool2d:
            size = args[1] if len(args) > 1 else kw.get("output_size")
            if _args_pair(size) != (1, 1):
                raise _Unsupported("only output_size 1 (global average pooling)")
            return self.pool(node, args[0], keepdim=True)
        if f in _FLATTENS:
            start = args[1] if len(args) > 1 else kw.get("start_dim", 0)
            end = args[2] if len(args) > 2 else kw.get("end_dim", -1)
            return self.flatten(node, args[0], start, end)
        if f in _ADDS:
            return self.add(node, args, kw)
        if f in _MULS:
            return self.mul(node, args)
        if f is torch.mean:
            return self.mean(node, args, kw)
        name = getattr(f, "__name__", str(f))
        raise _Unsupported(f"the function {name} is not supported")

    def method(self, node):
        name, args, kw = node.target, node.args, node.kwargs
        if name in _ACT_METHODS:
            return self.act(node, args[0], _ACT_METHODS[name], f".{name}()")
        if name == "mean":
            return self.mean(node, args, kw)
        if name == "flatten":
            start = args[1] if len(args) > 1 else kw.get("start_dim", 0)
            end = args[2] if len(args) > 2 else kw.get("end_dim", -1)
            return self.flatten(node, args[0], start, end)
        if name in ("add", "add_"):
            return self.add(node, args, kw)
        if name in ("mul", "mul_"):
            return self.mul(node, args)
        if name == "contiguous":
            return self.alias(node, args[0])
        raise _Unsupported(f"the method .{name}() is not supported")

    # -- patterns -------------------------------------------------------
    def emit(self, node, step):
        self.steps.append(step)
        self.val[node] = step

    def pool(self, node, arg, keepdim):
        v = self._input(node, arg, "input")
        self.val[node] = _Pooled(v, node, keepdim)

    def mean(self, node, args, kw):
        dims = args[1] if len(args) > 1 else kw.get("dim")
        keepdim = args[2] if len(args) > 2 else kw.get("keepdim", False)
        if dims is None or sorted(int(d) % 4 for d in dims) != [2, 3]:
            raise _Unsupported("only the mean over dims (2, 3) (global average pooling)")
        if kw.get("dtype") is not None:
            raise _Unsupported("mean with dtype=")
        self.pool(node, args[0], bool(keepdim))
        self.val[node].flat = not keepdim

    def _emit_pool(self, p):
        if p.src is not self.cur():
            raise _Chain("the pooled tensor is not the last step's output")
        step = _c._Step("pool", self.label(p.nodes[0]))
        self.steps.append(step)
        for n in p.nodes:
            self.val[n] = step
        return step

    def flatten(self, node, arg, start, end):
        v = self.val.get(arg) if isinstance(arg, fx.Node) else None
        if not (isinstance(v, _Pooled) and not v.convs) and not (
            isinstance(v, _c._Step) and v.kind == "pool"
        ):
            raise _Unsupported("flatten is supported only after global average pooling")
        if int(start) != 1 or int(end) not in (-1, 3):
            raise _Unsupported("only flatten(x, 1)")
        if isinstance(v, _Pooled):
            v = self._emit_pool(v)
        self.val[node] = v

    def linear(self, node, arg, m):
        v = self.val.get(arg) if isinstance(arg, fx.Node) else None
        if isinstance(v, _Pooled):
            if not v.flat:
                raise _Unsupported("a Linear on a 4-d pooled tensor (flatten it first)")
            v = self._emit_pool(v)
            self.val[arg] = v
        v = self._input(node, arg, "input")
        if not (isinstance(v, _c._Step) and v.kind in ("pool", "linear")):
            raise _Unsupported("a Linear must follow global average pooling or a Linear")
        step = _c._Step(
            "linear",
            self.label(node),
            arrays=[_as_np(m.weight, self.dtype), _as_np(m.bias, self.dtype)],
        )
        self.emit(node, step)

    def se_conv(self, node, p, m):
        if not p.keepdim or p.flat:
            raise _Unsupported("a convolution of a flattened pooled tensor")
        if len(p.convs) != len(p.acts) or len(p.convs) == 2:
            raise _Unsupported("not a squeeze-and-excitation: conv, activation, conv, gate")
        if type(m) is not nn.Conv2d or m.kernel_size != (1, 1) or m.groups != 1:
            raise _Unsupported("a squeeze-and-excitation's convolutions must be 1x1, groups 1")
        p.convs.append((node, m))
        p.nodes.append(node)
        self.val[node] = p

    def mul(self, node, args):
        if len(args) != 2 or not all(isinstance(a, fx.Node) for a in args):
            raise _Unsupported("only a squeeze-and-excitation's mul of two tensors")
        a, b = (self.val.get(x) for x in args)
        p, x = (a, args[1]) if isinstance(a, _Pooled) else (b, args[0])
        if not isinstance(p, _Pooled) or len(p.convs) != 2 or len(p.acts) != 2:
            raise _Unsupported(
                "only the gate of a squeeze-and-excitation (pool, conv, act, conv, act)"
            )
        src = self._input(node, x, "input")
        if src is not p.src or src is _INPUT:
            raise _Unsupported("the gate multiplies a tensor other than the one it pooled")
        (_, fc1), (_, fc2) = p.convs
        fc1_node = p.convs[0][0]
        where = str(fc1_node.target).rpartition(".")[0] or node.name
        step = _c._Step(
            "squeeze_excite",
            f"{where} (squeeze-and-excitation)",
            arrays=[
                _as_np(fc1.weight, self.dtype),
                _as_np(fc1.bias, self.dtype),
                _as_np(fc2.weight, self.dtype),
                _as_np(fc2.bias, self.dtype),
            ],
            mid_act=p.acts[0],
            act=p.acts[1],
        )
        step.fused = [f"{p.acts[0]} after fc1", f"{p.acts[1]} gate"]
        self.emit(node, step)

    def add(self, node, args, kw):
        if kw.get("alpha", 1) != 1 or len(args) != 2:
            raise _Unsupported("only a plain add of two tensors (a residual)")
        if not all(isinstance(a, fx.Node) and self.val.get(a) is not None for a in args):
            raise _Chain("only an add of two tensors the plan computes")
        vals = [self.val[a] for a in args]
        if any(isinstance(v, _Pooled) for v in vals):
            raise _Unsupported("an add of a pooled tensor")
        cur = self.cur()
        if vals[0] is cur and vals[1] is not cur:
            skip = vals[1]
        elif vals[1] is cur and vals[0] is not cur:
            skip = vals[0]
        else:
            raise _Unsupported("a residual add must read the last step's output and an earlier one")
        step = _c._Step("add", self.label(node), skip=None if skip is _INPUT else skip)
        self.emit(node, step)


def _is_stochastic_depth(f):
    """torchvision.ops.stochastic_depth (an fx leaf; the identity when its
    training argument is False), recognised without importing torchvision."""
    return getattr(f, "__name__", "") == "stochastic_depth" and getattr(
        f, "__module__", ""
    ).startswith("torchvision.")


def _args_pair(v):
    if isinstance(v, (tuple, list)):
        return tuple(v)
    return (v, v)


def _hardtanh_is_relu6(args, kw):
    lo = args[1] if len(args) > 1 else kw.get("min_val", -1.0)
    hi = args[2] if len(args) > 2 else kw.get("max_val", 1.0)
    return lo == 0 and hi == 6


class EngineReport:
    """What :func:`compile_inference` lowered: ``steps`` (the plan's step
    lines, from ``Plan.summary()``), ``nodes`` (traced graph nodes), and
    ``summary()``."""

    def __init__(self, nodes, plan_summary):
        self.nodes = nodes
        self.plan_summary = plan_summary

    def summary(self):
        return f"{self.nodes} graph nodes lowered to one plan:\n{self.plan_summary}"

    def __repr__(self):
        return self.summary()


class InferenceEngine(nn.Module):
    """The module :func:`compile_inference` returns (see there)."""

    def __init__(self, specs, shape, dtype, num_threads, fuse, report):
        super().__init__()
        self._specs = specs
        self._shape = tuple(shape)
        self._dtype = dtype
        self._threads = num_threads
        self._fuse = fuse
        self._plans = {}
        self._out_shape = None
        self.report = report
        self.training = False

    def train(self, mode=True):
        if mode:
            raise RuntimeError(
                "compile_inference: the engine runs inference only; train the original model"
            )
        return super().train(False)

    def plan(self, layout="NCHW"):
        """The :class:`pydsconv.Plan` run for inputs in ``layout``."""
        p = self._plans.get(layout)
        if p is None:
            shape = self._shape if layout == "NCHW" else _nhwc(self._shape)
            core = _core.compile_plan(
                self._specs, shape, layout, self._dtype == np.float64, self._threads, self._fuse
            )
            p = self._plans[layout] = Plan(core, self._specs)
        return p

    def forward(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"compile_inference: x must be a torch.Tensor, got {type(x).__name__}")
        want = torch.float64 if self._dtype == np.float64 else torch.float32
        if x.dtype != want:
            raise TypeError(
                f"compile_inference: x must be {want} (the model's dtype), got {x.dtype}"
            )
        if tuple(x.shape) != self._shape:
            raise ValueError(
                f"compile_inference: x must have the example input's shape {self._shape}, "
                f"got {tuple(x.shape)}; compile again for another shape"
            )
        if x.device.type != "cpu":
            raise ValueError(f"compile_inference: x must be on the CPU, got {x.device}")
        if x.requires_grad and torch.is_grad_enabled():
            raise RuntimeError(
                "compile_inference: the engine does not compute gradients; call it "
                "under torch.no_grad() / torch.inference_mode() or on an input without "
                "requires_grad"
            )
        x = x.detach()
        if (
            x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last)
            and not (x.is_contiguous())
        ):
            plan = self.plan("NHWC")
            y = plan(x.permute(0, 2, 3, 1).numpy())
            y = torch.from_numpy(y)
            return y.permute(0, 3, 1, 2) if y.dim() == 4 else y.view(self._out_shape)
        plan = self.plan("NCHW")
        return torch.from_numpy(plan(x.contiguous().numpy())).view(self._out_shape)

    def extra_repr(self):
        return f"input_shape={self._shape}, dtype={np.dtype(self._dtype).name}"


def _nhwc(shape):
    n, c, h, w = shape
    return (n, h, w, c)


def compile_inference(model, example_input, *, num_threads=None, fuse=True):
    """See :func:`pydsconv.torch.compile_inference`."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{_WHO}: model must be a torch.nn.Module, got {type(model).__name__}")
    training = [n for n, m in model.named_modules() if m.training]
    if training:
        where = "the model" if training[0] == "" else f"module {training[0]!r}"
        raise ValueError(
            f"{_WHO}: {where} is in training mode; call model.eval() first (the engine "
            "is for inference: BatchNorm uses its running statistics, Dropout is off)"
        )
    if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4:
        raise TypeError(f"{_WHO}: example_input must be a 4-d torch.Tensor (N, C, H, W)")
    if example_input.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"{_WHO}: example_input must be float32 or float64, got {example_input.dtype}"
        )
    dtype = np.float64 if example_input.dtype == torch.float64 else np.float32
    params = [p for p in model.parameters()] + [b for b in model.buffers() if b.is_floating_point()]
    wrong = {p.dtype for p in params} - {example_input.dtype}
    if wrong:
        raise TypeError(
            f"{_WHO}: the model's parameters are {sorted(map(str, wrong))} but example_input "
            f"is {example_input.dtype}; use one dtype (model.float() / model.double())"
        )
    threads = _threads(num_threads)
    fuse_mode = _c._fuse_mode(fuse)
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:
        raise ValueError(
            f"{_WHO}: torch.fx.symbolic_trace cannot trace the model ({type(e).__name__}: "
            f"{e}); use pydsconv.torch.convert for a layer-by-layer speed-up"
        ) from e
    low = _Lowerer(gm, dtype)
    low.run()
    if low.unsupported:
        lines = "\n".join(f"  {low.label(n)}: {why}" for n, why in low.unsupported)
        raise ValueError(
            f"{_WHO}: the plan cannot run these nodes of the traced graph:\n{lines}\n"
            f"A plan takes: {SUPPORTED}.  pydsconv.torch.convert(model) converts "
            "such a model layer by layer instead."
        )
    steps = _c._merge_separable(low.steps)
    specs = _c._specs(steps)
    with torch.no_grad():
        ref_shape = tuple(model(example_input).shape)
    nodes = sum(1 for n in gm.graph.nodes if n.op not in ("placeholder", "output"))
    engine = InferenceEngine(specs, tuple(example_input.shape), dtype, threads, fuse_mode, None)
    plan = engine.plan("NCHW")
    if tuple(plan.output_shape) != ref_shape and int(np.prod(plan.output_shape)) != int(
        np.prod(ref_shape)
    ):
        raise ValueError(
            f"{_WHO}: the plan's output shape {plan.output_shape} does not match the "
            f"model's {ref_shape}"
        )
    engine.report = EngineReport(nodes, plan.summary())
    engine._out_shape = ref_shape
    return engine
