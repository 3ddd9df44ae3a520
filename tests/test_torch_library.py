"""pydsconv.torch as ``torch.library`` custom ops: fake kernels (meta /
FakeTensor shapes), ``torch.compile(fullgraph=True)`` with no graph break and
the eager outputs and gradients, ``torch.export``, ``torch.func`` and
double backward (issue 20, items 1 and 2).
"""

import pytest

torch = pytest.importorskip("torch")

import pydsconv.torch as pt  # noqa: E402

nn = torch.nn
ops = torch.ops.pydsconv


def _model2d():
    torch.manual_seed(0)
    return nn.Sequential(
        pt.SeparableConv2d(4, 8, 3, stride=2, padding="same", mid_activation="relu"),
        nn.ReLU6(),
        pt.DepthwiseConv2d(8, 3, padding=1, depth_multiplier=2, activation="relu"),
        pt.PointwiseConv2d(16, 4, activation="relu6"),
    ).double()


def _model1d():
    torch.manual_seed(1)
    return nn.Sequential(
        pt.SeparableConv1d(3, 6, 3, padding="causal", dilation=2, activation="relu"),
        pt.DepthwiseConv1d(6, 5, stride=2, padding="same"),
        pt.PointwiseConv1d(6, 2, activation="relu6"),
    ).double()


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_ops_are_registered_custom_ops():
    names = ["depthwise", "pointwise", "separable"]
    for dim in ("2d", "1d"):
        for n in names:
            for suffix in ("", "_backward"):
                assert hasattr(ops, f"{n}_conv{dim}{suffix}")


# --------------------------------------------------------------------------
# fake kernels
# --------------------------------------------------------------------------


def test_meta_shapes_2d():
    meta = dict(device="meta")
    x = torch.empty(2, 4, 11, 9, **meta)
    dw = torch.empty(8, 1, 3, 5, **meta)
    pw = torch.empty(6, 8, 1, 1, **meta)
    y = ops.depthwise_conv2d(x, dw, None, [2, 1], "same", [0, 0, 0, 0], [1, 2], "relu")
    assert y.device.type == "meta" and y.shape == (2, 8, 6, 9) and y.dtype == torch.float32
    y = ops.depthwise_conv2d(x, dw, None, [1, 1], "explicit", [1, 0, 2, 2], [1, 1], None)
    assert y.shape == (2, 8, 10, 9)
    y = ops.pointwise_conv2d(x, torch.empty(5, 4, **meta), None, None)
    assert y.shape == (2, 5, 11, 9)
    y = ops.separable_conv2d(x, dw, pw, None, None, [2, 2], "valid", [0] * 4, [1, 1], None, None)
    assert y.shape == (2, 6, 5, 3)
    # channels_last in, channels_last out
    xc = x.to(memory_format=torch.channels_last)
    y = ops.separable_conv2d(xc, dw, pw, None, None, [1, 1], "same", [0] * 4, [1, 1], None, None)
    assert y.shape == (2, 6, 11, 9) and y.is_contiguous(memory_format=torch.channels_last)
    gx, gw, gb = ops.depthwise_conv2d_backward(
        torch.empty(2, 8, 11, 9, **meta), xc, dw, None, [1, 1], "same", [0] * 4, [1, 1],
        None, True, True, False,
    )  # fmt: skip
    assert gx.shape == x.shape and gx.is_contiguous(memory_format=torch.channels_last)
    assert gw.shape == dw.shape and gb.numel() == 0  # not needed: an empty placeholder


def test_meta_shapes_1d():
    x = torch.empty(2, 3, 10, device="meta", dtype=torch.float64)
    dw = torch.empty(6, 1, 3, device="meta", dtype=torch.float64)
    pw = torch.empty(4, 6, 1, device="meta", dtype=torch.float64)
    y = ops.depthwise_conv1d(x, dw, None, [1], "causal", [0] * 4, [2], None)
    assert y.shape == (2, 6, 10) and y.dtype == torch.float64
    y = ops.separable_conv1d(x, dw, pw, None, None, [3], "same", [0] * 4, [1], None, "relu")
    assert y.shape == (2, 4, 4)
    assert ops.pointwise_conv1d(x, torch.empty(5, 3, device="meta"), None, None).shape == (2, 5, 10)


def test_fake_tensor_mode_matches_eager():
    from torch._subclasses.fake_tensor import FakeTensorMode

    for model, shape in ((_model2d(), (2, 4, 9, 7)), (_model1d(), (2, 3, 12))):
        x = torch.randn(shape, dtype=torch.float64)
        real = model(x)
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:
            fake = model(mode.from_tensor(x))
        assert fake.shape == real.shape and fake.dtype == real.dtype


def test_opcheck():
    """PyTorch's own consistency checks: schema, fake kernel vs real kernel,
    autograd registration."""
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    dw = torch.randn(6, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    pw = torch.randn(4, 6, 1, 1, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    geom = ([2, 1], "explicit", [1, 1, 0, 2], [1, 2])
    x1 = torch.randn(2, 3, 9, requires_grad=True)
    cases = [
        (ops.depthwise_conv2d, (x, dw, b, *geom, "relu")),
        (ops.depthwise_conv2d, (x.detach().to(memory_format=torch.channels_last), dw, None,
                                *geom, None)),
        (ops.pointwise_conv2d, (x, torch.randn(4, 3, dtype=torch.float64), None, "relu6")),
        (ops.separable_conv2d, (x, dw, pw, b, None, *geom, "relu", None)),
        (ops.depthwise_conv1d, (x1, torch.randn(3, 1, 3), None, [1], "causal", [0] * 4, [2],
                                None)),
        (ops.pointwise_conv1d, (x1, torch.randn(2, 3, 1), torch.randn(2), None)),
        (ops.separable_conv1d, (x1, torch.randn(3, 1, 3), torch.randn(2, 3), None, None, [2],
                                "same", [0] * 4, [1], None, "relu")),
    ]  # fmt: skip
    for op, args in cases:
        torch.library.opcheck(op, args)


# --------------------------------------------------------------------------
# torch.compile, torch.export
# --------------------------------------------------------------------------


def _grads(model, x):
    return [x.grad] + [p.grad for p in model.parameters()]


@pytest.mark.parametrize(
    "make, shape, fmt",
    [
        (_model2d, (2, 4, 9, 7), torch.contiguous_format),
        (_model2d, (2, 4, 9, 7), torch.channels_last),
        (_model1d, (2, 3, 12), torch.contiguous_format),
    ],
    ids=["2d", "2d-channels_last", "1d"],
)
def test_compile_fullgraph_matches_eager(make, shape, fmt):
    torch._dynamo.reset()
    eager, model = make(), make()
    x = torch.randn(shape, dtype=torch.float64).to(memory_format=fmt)
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")  # a graph break raises
    ye, yc = eager(xe), compiled(xc)
    _close(yc, ye)
    if len(shape) == 4:
        assert yc.is_contiguous(memory_format=fmt)
    g = torch.randn_like(ye)
    ye.backward(g)
    yc.backward(g)
    for a, b in zip(_grads(model, xc), _grads(eager, xe)):
        _close(a, b)


def test_compile_functional_forms_fullgraph():
    torch._dynamo.reset()
    x = torch.randn(3, 8, 8)  # unbatched
    w = torch.randn(6, 1, 3, 3)
    p = torch.randn(2, 6)

    def f(x):
        return pt.pointwise_conv2d(pt.depthwise_conv2d(x, w, None, 1, "same"), p, None, "relu")

    _close(torch.compile(f, fullgraph=True, backend="aot_eager")(x), f(x))


def test_export():
    model = _model2d().eval()
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    ep = torch.export.export(model, (x,))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert {
        "pydsconv.separable_conv2d.default",
        "pydsconv.depthwise_conv2d.default",
        "pydsconv.pointwise_conv2d.default",
    } <= targets
    _close(ep.module()(x), model(x))
    model1 = _model1d().eval()
    x1 = torch.randn(2, 3, 12, dtype=torch.float64)
    _close(torch.export.export(model1, (x1,)).module()(x1), model1(x1))


@pytest.mark.slow
def test_compile_inductor_smoke():
    """The default backend (inductor; needs a C++ compiler, ~20 s) calls the ops too."""
    torch._dynamo.reset()
    model = _model2d()
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    with torch.no_grad():
        _close(torch.compile(model, fullgraph=True)(x), model(x))


# --------------------------------------------------------------------------
# torch.func, double backward
# --------------------------------------------------------------------------


def test_vmap_works():
    w = torch.randn(4, 1, 3, 3, dtype=torch.float64)
    xs = torch.randn(3, 2, 4, 5, 5, dtype=torch.float64)
    # no batching rule: PyTorch's fallback runs the op once per batch element (and warns)
    out = torch.func.vmap(lambda x: pt.depthwise_conv2d(x, w, padding=1))(xs)
    _close(out, torch.stack([pt.depthwise_conv2d(x, w, padding=1) for x in xs]))


def _func_case():
    torch.manual_seed(2)
    f64 = dict(dtype=torch.float64)
    x, w, p = (
        torch.randn(2, 4, 6, 6, **f64),
        torch.randn(4, 1, 3, 3, **f64),
        torch.randn(5, 4, **f64),
    )
    F = torch.nn.functional

    def ours(x, w, p):
        y = pt.separable_conv2d(x, w, p, padding=1, stride=2, mid_activation="relu")
        return (
            pt.depthwise_conv2d(y, torch.ones(5, 1, 1, 1, **f64), activation="relu6") ** 2
        ).sum()

    def ref(x, w, p):
        y = F.conv2d(F.relu(F.conv2d(x, w, padding=1, stride=2, groups=4)), p[:, :, None, None])
        return (F.relu6(y) ** 2).sum()

    return ours, ref, (x, w, p)


def test_func_grad_vjp_jacrev_work():
    ours, ref, args = _func_case()
    transforms = {
        "grad": lambda f: torch.func.grad(f, argnums=(0, 1, 2)),
        "grad of grad": lambda f: torch.func.grad(
            lambda x, w, p: torch.func.grad(f, argnums=1)(x, w, p).sum()
        ),
        "jacrev": lambda f: torch.func.jacrev(f, argnums=(1, 2)),
        "vjp": lambda f: lambda *a: torch.func.vjp(f, *a)[1](torch.tensor(1.5, dtype=a[0].dtype)),
    }
    for tr in transforms.values():
        got, want = tr(ours)(*args), tr(ref)(*args)
        got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
        for a, b in zip(got, want):
            _close(a, b)


def test_forward_mode_and_vmap_of_grad_are_refused_clearly():
    ours, _, (x, w, p) = _func_case()
    with pytest.raises(RuntimeError, match=r"pydsconv::separable_conv2d: forward-mode AD"):
        torch.func.jvp(lambda x: ours(x, w, p), (x,), (torch.ones_like(x),))
    with pytest.raises(RuntimeError, match=r"vmap over a torch.func grad transform"):
        torch.func.vmap(torch.func.grad(lambda xi: ours(xi[None], w, p)))(x)
    import torch.autograd.forward_ad as fwad

    with fwad.dual_level(), pytest.raises(RuntimeError, match="forward-mode AD .dual tensors"):
        pt.depthwise_conv2d(fwad.make_dual(x, torch.ones_like(x)), w, padding=1)


@pytest.mark.parametrize(
    "f, ref, shapes",
    [
        (
            lambda x, w: pt.depthwise_conv2d(x, w, padding=1),
            lambda x, w: torch.nn.functional.conv2d(x, w, padding=1, groups=2),
            [(1, 2, 5, 5), (2, 1, 3, 3)],
        ),
        (
            lambda x, w: pt.pointwise_conv1d(x, w),
            lambda x, w: torch.nn.functional.conv1d(x, w.unsqueeze(-1)),
            [(1, 2, 7), (3, 2)],
        ),
    ],
    ids=["dw2", "pw1"],
)
def test_double_backward_equals_torch(f, ref, shapes):
    """Second derivatives (create_graph=True, then backward) equal PyTorch's;
    tests/test_torch_double_backward.py covers every op with gradgradcheck."""
    torch.manual_seed(0)
    x, *params = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in shapes]
    got, want = [], []
    for fn, out in ((f, got), (ref, want)):
        (gx,) = torch.autograd.grad((fn(x, *params) ** 2).sum(), x, create_graph=True)
        out.extend(torch.autograd.grad((gx**2).sum(), [x, *params]))
    for a, b in zip(got, want):
        _close(a, b)


# --------------------------------------------------------------------------
# eager fast path vs the dispatcher
# --------------------------------------------------------------------------


def test_dispatch_modes_see_the_custom_ops():
    """Eager calls skip the dispatcher (its overhead is as large as a small
    convolution) only where nothing could observe the difference: under a
    dispatch mode (here a recorder) the custom ops, forward and backward, go
    through it."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    model = _model2d()
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    with Record() as rec:
        model(x).sum().backward()
    seen = {name for name in rec.ops if name.startswith("pydsconv.")}
    assert {
        "pydsconv.separable_conv2d.default",
        "pydsconv.depthwise_conv2d.default",
        "pydsconv.pointwise_conv2d.default",
        "pydsconv.separable_conv2d_backward.default",
        "pydsconv.depthwise_conv2d_backward.default",
        "pydsconv.pointwise_conv2d_backward.default",
    } <= seen


def test_dispatcher_path_gradcheck():
    """The registered autograd formulas, called through torch.ops (the path
    compile and export take), against finite differences."""
    f64 = dict(dtype=torch.float64, requires_grad=True)
    x = torch.randn(1, 2, 5, 4, **f64)
    dw, pw, b = torch.randn(4, 1, 3, 3, **f64), torch.randn(3, 4, **f64), torch.randn(4, **f64)
    geom = ([2, 1], "same", [0] * 4, [1, 1])
    assert torch.autograd.gradcheck(
        lambda *a: ops.separable_conv2d(*a, None, *geom, "relu", None), (x, dw, pw, b)
    )
    assert torch.autograd.gradcheck(
        lambda *a: ops.depthwise_conv2d(*a, *geom, "relu6"),
        (x.detach().to(memory_format=torch.channels_last).requires_grad_(), dw, b),
    )
    x1 = torch.randn(2, 2, 6, **f64)
    assert torch.autograd.gradcheck(
        lambda *a: ops.separable_conv1d(*a, None, [1], "causal", [0] * 4, [2], None, None),
        (x1, torch.randn(2, 1, 3, **f64), torch.randn(3, 2, 1, **f64), torch.randn(2, **f64)),
    )
    assert torch.autograd.gradcheck(
        lambda *a: ops.pointwise_conv1d(*a, None, "relu"), (x1, pw[:, :2])
    )
