"""Tests of compiled plans: pydsconv.nn.compile and pydsconv.Plan; mirrors
pydsconv/nn/compiler.py (the passes) and cpp/plan.cpp (the C++ plan).

Every plan is checked against the eager eval-mode model (``model(x)``) and,
for a network of every supported layer kind, against the NumPy reference;
in both layouts, float32 and float64, on every ISA the host has.  Results
are the same bits for 1-3 threads and from several Python threads at once.
Bad input to compile and to a call gets clear errors.
"""

import threading

import numpy as np
import pytest
from conftest import rand, to_nhwc
from kernel_paths import taken

import pydsconv
from pydsconv import nn
from pydsconv import reference as ref

DTYPES = [np.float32, np.float64]
LAYOUTS = ["NCHW", "NHWC"]


def _close(actual, expected):
    """Within float tolerance of the output's scale (BatchNorm folding and
    the plan's pooling sums round differently from the eager layers)."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    scale = scale or 1.0  # (an all-zero output)
    tol = 1e-10 if expected.dtype == np.float64 else 1e-4
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


def _randomise_bn(model, rng):
    """Non-trivial BatchNorm statistics and affine parameters."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean[:] = rng.uniform(-0.1, 0.1, c)
            m.running_var[:] = rng.uniform(0.5, 1.5, c)
            m.weight.data[:] = rng.uniform(0.5, 1.5, c)
            m.bias.data[:] = rng.uniform(-0.1, 0.1, c)
    return model.eval()


def _shape(layout, n, c, h, w):
    return (n, c, h, w) if layout == "NCHW" else (n, h, w, c)


def _mobilenet(layout, dtype, rng, size=32):
    model = nn.MobileNetV1(
        0.25, num_classes=10, input_size=size, layout=layout, dtype=dtype, rng=1, dropout=0.2
    )
    return _randomise_bn(model, rng)


def _sepnet(layout, dtype, rng):
    model = nn.SeparableConvNet(
        in_channels=3,
        num_classes=7,
        input_size=12,
        stem_width=8,
        widths=(16, 24, 40),
        strides=(1, 2, 2),
        layout=layout,
        dtype=dtype,
        rng=2,
        dropout=0.5,
    )
    return _randomise_bn(model, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_mobilenet_matches_eager(isa, layout, dtype, rng):
    model = _mobilenet(layout, dtype, rng)
    shape = _shape(layout, 2, 3, 32, 32)
    plan = nn.compile(model, shape, layout=layout)
    x = rand(rng, shape, dtype)
    y = plan(x)
    assert y.shape == plan.output_shape == (2, 10)
    _close(y, model(x))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_separable_net_matches_eager(isa, layout, dtype, rng):
    model = _sepnet(layout, dtype, rng)
    shape = _shape(layout, 3, 3, 12, 12)
    plan = nn.compile(model, shape, layout=layout)
    x = rand(rng, shape, dtype)
    _close(plan(x), model(x))


def _zoo(layout, dtype):
    """A network of every layer kind, with odd shapes and a 4-D output."""
    kw = dict(layout=layout, dtype=dtype)
    return nn.Sequential(
        nn.Conv2d(3, 5, 3, stride=2, padding="same", bias=True, **kw, rng=3),
        nn.ReLU6(),
        nn.Sequential(
            nn.DepthwiseConv2d(5, 3, padding=1, dilation=2, multiplier=2, **kw, rng=4),
            nn.Identity(),
            nn.ReLU(),
        ),
        nn.PointwiseConv2d(10, 7, activation="relu", **kw, rng=5),
        nn.SeparableConv2d(
            7, 9, 3, stride=2, padding=((0, 1), (1, 0)), mid_activation="relu6", **kw, rng=6
        ),
        nn.DepthwiseConv2d(9, 3, padding="same", bias=False, **kw, rng=7),
    ).eval()


def _zoo_reference(model, x, layout):
    """The zoo network by pydsconv.reference, layer by layer, in NCHW."""
    x = np.asarray(x, np.float64)
    if layout == "NHWC":
        x = np.moveaxis(x, -1, 1)
    conv, _, (dw, _, _), pw, sep, dw2 = model
    # The standard convolution as im2col: one-hot depthwise taps, then a GEMM.
    kh, kw = conv.kernel_size
    taps = np.zeros((3 * kh * kw, 1, kh, kw))
    for c in range(3):
        for t in range(kh * kw):
            taps[c * kh * kw + t, 0, t // kw, t % kw] = 1
    cols = ref.depthwise_conv2d(x, taps, stride=2, padding="same")
    y = ref.pointwise_conv2d(
        cols,
        conv.weight.data.reshape(5, -1).astype(np.float64),
        conv.bias.data.astype(np.float64),
        activation="relu6",
    )
    y = ref.depthwise_conv2d(
        y,
        dw.weight.data.astype(np.float64),
        dw.bias.data.astype(np.float64),
        padding=1,
        dilation=2,
        activation="relu",
    )
    y = ref.pointwise_conv2d(
        y, pw.weight.data.astype(np.float64), pw.bias.data.astype(np.float64), activation="relu"
    )
    d, p = sep.depthwise, sep.pointwise
    y = ref.separable_conv2d(
        y,
        d.weight.data.astype(np.float64),
        p.weight.data.astype(np.float64),
        d.bias.data.astype(np.float64),
        p.bias.data.astype(np.float64),
        stride=2,
        padding=((0, 1), (1, 0)),
        mid_activation="relu6",
    )
    y = ref.depthwise_conv2d(y, dw2.weight.data.astype(np.float64), padding="same")
    return to_nhwc(y) if layout == "NHWC" else y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layer_kind_matches_reference_and_eager(isa, layout, dtype, rng):
    model = _zoo(layout, dtype)
    shape = _shape(layout, 2, 3, 13, 11)
    plan = nn.compile(model, shape, layout=layout)
    x = rand(rng, shape, dtype)
    y = plan(x)
    assert y.shape == plan.output_shape
    _close(y, model(x))
    _close(y, _zoo_reference(model, x, layout).astype(dtype))
    ops = [s["op"] for s in plan.steps()]
    inner = ["conv", "separable", "separable", "depthwise"]  # depthwise + pointwise fused
    assert ops == (["to_nhwc"] + inner + ["to_nchw"] if layout == "NCHW" else inner)


def _bn(c, layout, dtype):
    return nn.BatchNorm2d(c, layout=layout, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_folding_and_fusion_patterns(layout, dtype, rng):
    """BatchNorm into a SeparableConv2d's pointwise stage and into a bare
    depthwise layer; activations stacked on an op that has one already;
    a depthwise layer without activation merged with the pointwise after it;
    a pointwise layer not after a depthwise one left alone."""
    kw = dict(layout=layout, dtype=dtype)
    model = _randomise_bn(
        nn.Sequential(
            nn.SeparableConv2d(4, 6, 3, padding=1, mid_activation="relu", **kw, rng=0),
            _bn(6, layout, dtype),
            nn.ReLU6(),
            nn.ReLU(),
            nn.DepthwiseConv2d(6, 5, stride=2, padding="same", bias=False, **kw, rng=1),
            _bn(6, layout, dtype),
            nn.PointwiseConv2d(6, 8, activation="relu", **kw, rng=2),
            nn.ReLU6(),
            nn.PointwiseConv2d(8, 3, **kw, rng=3),
            _bn(3, layout, dtype),
        ),
        rng,
    )
    shape = _shape(layout, 2, 4, 9, 10)
    plan = nn.compile(model, shape, layout=layout)
    x = rand(rng, shape, dtype)
    _close(plan(x), model(x))
    steps = [s for s in plan.steps() if not s["op"].startswith("to_")]
    assert [s["op"] for s in steps] == ["separable", "separable", "pointwise"]
    assert steps[0]["fused"] == "BatchNorm2d 1, ReLU6 2, ReLU 3"
    assert steps[1]["fused"] == "BatchNorm2d 5, pointwise 6 (PointwiseConv2d), ReLU6 7"
    assert steps[2]["fused"] == "BatchNorm2d 9"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_flatten_follows_the_callers_layout(isa, layout, rng):
    """Flatten of a 3x2 map flattens (C, H, W) in NCHW and (H, W, C) in NHWC."""
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, layout=layout, rng=0),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(24, 5, rng=1),
        nn.ReLU6(),
        nn.Flatten(),
        nn.Linear(5, 3, rng=2),
    ).eval()
    shape = _shape(layout, 4, 2, 3, 2)
    x = rand(rng, shape, np.float32)
    _close(nn.compile(model, shape, layout=layout)(x), model(x))


def test_thread_counts_give_the_same_bits(rng):
    model = _mobilenet("NCHW", np.float32, rng, size=48)
    shape = (3, 3, 48, 48)
    x = rand(rng, shape, np.float32)
    results = [nn.compile(model, shape, num_threads=t)(x) for t in (1, 2, 3)]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_gives_each_images_bits(isa, dtype, rng):
    # Small maps at batch > 1: the separable steps' tiles span images
    # (sep_batch_tiles); every image still gets the bits it gets alone.
    model = _mobilenet("NHWC", dtype, rng, size=64)
    x = rand(rng, (5, 64, 64, 3), dtype)
    one = nn.compile(model, (1, 64, 64, 3), layout="NHWC")
    singles = np.concatenate([one(x[i : i + 1]) for i in range(5)])
    _close(singles, model(x))
    for n in (2, 5):
        for t in (1, 3):
            plan = nn.compile(model, (n, 64, 64, 3), layout="NHWC", num_threads=t)
            with taken() as paths:
                y = plan(x[:n])
            assert "sep_batch_tiles" in paths, paths
            np.testing.assert_array_equal(y, singles[:n])


def test_calls_from_several_threads(rng):
    model = _sepnet("NHWC", np.float32, rng)
    shape = (2, 12, 12, 3)
    plan = nn.compile(model, shape, layout="NHWC")
    inputs = [rand(rng, shape, np.float32) for _ in range(4)]
    expected = [plan(x) for x in inputs]
    errors = []

    def work(i):
        try:
            for _ in range(10):
                np.testing.assert_array_equal(plan(inputs[i]), expected[i])
        except Exception as exc:  # reported below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_out_is_written_and_returned(rng):
    model = _sepnet("NCHW", np.float64, rng)
    shape = (2, 3, 12, 12)
    plan = nn.compile(model, shape)
    x = rand(rng, shape, np.float64)
    out = np.empty(plan.output_shape, np.float64)
    assert plan(x, out=out) is out
    np.testing.assert_array_equal(out, plan(x))
    with pytest.raises(ValueError, match=r"out must have shape \(2, 7\)"):
        plan(x, out=np.empty((2, 8)))
    with pytest.raises(ValueError, match="out must have dtype float64"):
        plan(x, out=np.empty((2, 7), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        plan(x, out=np.empty((7, 2)).T)


def test_out_must_not_overlap_x(rng):
    model = nn.Sequential(nn.DepthwiseConv2d(4, 3, padding=1, layout="NHWC", rng=0)).eval()
    plan = nn.compile(model, (1, 5, 5, 4), layout="NHWC")
    x = rand(rng, (1, 5, 5, 4), np.float32)
    with pytest.raises(ValueError, match="overlap"):
        plan(x, out=x)


def test_strided_input_is_copied(rng):
    model = _sepnet("NCHW", np.float32, rng)
    plan = nn.compile(model, (2, 3, 12, 12))
    big = rand(rng, (2, 3, 12, 24), np.float32)
    x = big[..., ::2]
    np.testing.assert_array_equal(plan(x), plan(np.ascontiguousarray(x)))


def test_empty_batch(rng):
    plan = nn.compile(_mobilenet("NHWC", np.float32, rng), (0, 32, 32, 3), layout="NHWC")
    assert plan(np.zeros((0, 32, 32, 3), np.float32)).shape == (0, 10)


def test_plan_is_a_snapshot_and_immutable(rng):
    model = _sepnet("NCHW", np.float32, rng)
    plan = nn.compile(model, (1, 3, 12, 12))
    x = rand(rng, (1, 3, 12, 12), np.float32)
    before = plan(x)
    model.classifier.weight.data[:] = 0
    np.testing.assert_array_equal(plan(x), before)
    with pytest.raises(AttributeError):
        plan.layout = "NHWC"


def test_packed_under_one_isa_runs_under_another(rng):
    """Weights packed for one kernel set are packed per call under another."""
    from conftest import host_isas

    from pydsconv import _core

    model = _mobilenet("NHWC", np.float32, rng)
    x = rand(rng, (1, 32, 32, 3), np.float32)
    plan = nn.compile(model, x.shape, layout="NHWC")
    before = pydsconv.cpu_features()["isa"]
    try:
        for name in host_isas():
            _core.set_isa(name)
            _close(plan(x), model(x))
    finally:
        _core.set_isa(before)


def test_summary_and_profile(rng):
    model = _mobilenet("NCHW", np.float32, rng)
    plan = nn.compile(model, (1, 3, 32, 32))
    steps = plan.steps()
    text = plan.summary()
    lines = text.splitlines()
    assert len(lines) == 1 + len(steps)
    assert sum(line.count("separable") > 0 for line in lines) == 13
    assert "BatchNorm2d features.4" in text and "pointwise features.6" in text
    assert steps[0]["op"] == "to_nhwc" and steps[-1]["op"] == "linear"
    assert steps[1]["op"] == "conv" and steps[1]["macs"] == 16 * 16 * 8 * 27
    prof = plan.profile(rand(rng, (1, 3, 32, 32), np.float32), repeats=3)
    assert [p["op"] for p in prof] == [s["op"] for s in steps]
    assert all(p["seconds"] >= p["min_seconds"] >= 0 for p in prof)
    assert repr(plan).startswith("Plan(input_shape=(1, 3, 32, 32)")
    with pytest.raises(ValueError, match="repeats"):
        plan.profile(np.zeros((1, 3, 32, 32), np.float32), repeats=0)


# -- bad input -------------------------------------------------------------------------


def test_bad_calls(rng):
    plan = nn.compile(_sepnet("NCHW", np.float32, rng), (2, 3, 12, 12))
    with pytest.raises(
        ValueError, match=r"x must have shape \(2, 3, 12, 12\).*got \(1, 3, 12, 12\)"
    ):
        plan(np.zeros((1, 3, 12, 12), np.float32))
    with pytest.raises(ValueError, match="looks like NHWC data"):
        plan(np.zeros((2, 12, 12, 3), np.float32))
    with pytest.raises(ValueError, match="x must have shape"):
        plan(np.zeros((2, 3, 144), np.float32))
    with pytest.raises(TypeError, match="x must have dtype float32 .*got float64"):
        plan(np.zeros((2, 3, 12, 12)))
    with pytest.raises(TypeError, match="x must"):
        plan([[1.0]])


class _Custom(nn.Module):
    def forward(self, x):
        return x


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: nn.Sequential(nn.Conv2d(3, 4, 3)), ValueError, "training mode"),
        (
            lambda: nn.Sequential(nn.Conv2d(3, 4, 3), _Custom()).eval(),
            TypeError,
            r"layer 1 \(_Custom\) is not supported; a plan takes Sequential",
        ),
        (
            lambda: nn.Sequential(nn.ReLU(), nn.Conv2d(3, 4, 3)).eval(),
            ValueError,
            r"0 \(ReLU\) at the start of the network has no convolution",
        ),
        (
            lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)).eval(),
            ValueError,
            r"2 \(BatchNorm2d\) after 0 \(Conv2d\) cannot be folded",
        ),
        (
            lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(5)).eval(),
            ValueError,
            "has 5 features but",
        ),
        (
            lambda: nn.Sequential(nn.Conv2d(3, 4, 3, layout="NHWC")).eval(),
            ValueError,
            "has layout='NHWC', but the plan is compiled for layout='NCHW'",
        ),
        (
            lambda: nn.Sequential(nn.Conv2d(2, 4, 3)).eval(),
            ValueError,
            r"0 \(Conv2d\): weight must have shape \(C_out, C_in, kH, kW\) with C_in = 3",
        ),
        (
            lambda: nn.Sequential(nn.DepthwiseConv2d(3, 9)).eval(),
            ValueError,
            r"0 \(DepthwiseConv2d\): weight: the kernel height 9 is larger",
        ),
        (
            lambda: nn.Sequential(
                nn.PointwiseConv2d(3, 4), nn.GlobalAvgPool2d(), nn.Linear(5, 2)
            ).eval(),
            ValueError,
            r"2 \(Linear\): weight must have shape \(out_features, 4\)",
        ),
        (
            lambda: nn.Sequential(nn.PointwiseConv2d(3, 4), nn.Linear(4, 2)).eval(),
            ValueError,
            "add GlobalAvgPool2d or Flatten",
        ),
        (
            lambda: nn.Sequential(nn.GlobalAvgPool2d(), nn.PointwiseConv2d(3, 4)).eval(),
            ValueError,
            "needs a 4-D input",
        ),
    ],
)
def test_bad_models(build, error, match):
    with pytest.raises(error, match=match):
        nn.compile(build(), (1, 3, 8, 8))


def test_bad_compile_arguments():
    model = nn.Sequential(nn.PointwiseConv2d(3, 4)).eval()
    with pytest.raises(ValueError, match="input_shape must be 4"):
        nn.compile(model, (1, 3, 8))
    with pytest.raises(ValueError, match="at least one channel and one pixel"):
        nn.compile(nn.Sequential(nn.GlobalAvgPool2d()).eval(), (1, 3, 0, 8))
    with pytest.raises(TypeError, match="input_shape must be a tuple"):
        nn.compile(model, 5)
    with pytest.raises(ValueError, match="layout must be"):
        nn.compile(model, (1, 3, 8, 8), layout="CHWN")
    with pytest.raises(TypeError, match="model must be a pydsconv.nn.Module"):
        nn.compile(lambda x: x, (1, 3, 8, 8))
    with pytest.raises(ValueError, match="num_threads"):
        nn.compile(model, (1, 3, 8, 8), num_threads=0)


# -- residual blocks, squeeze-and-excitation, the mobile networks ----------------------


def _mobilenet_v2(layout, dtype, rng):
    return _randomise_bn(nn.MobileNetV2(num_classes=10, layout=layout, dtype=dtype, rng=1), rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_mobilenet_v2_matches_eager(isa, layout, dtype, rng):
    model = _mobilenet_v2(layout, dtype, rng)
    shape = _shape(layout, 2, 3, 40, 40)
    plan = nn.compile(model, shape, layout=layout)
    x = rand(rng, shape, dtype)
    _close(plan(x), model(x))
    ops = [s["op"] for s in plan.steps()]
    assert ops.count("add") == 10  # the stride-1 blocks of unchanged width
    # expand pointwise, then depthwise + projection fused; every BatchNorm folded
    assert ops.count("separable") == 17 and ops.count("pointwise") == 16 + 1


def test_mobilenet_v2_threads_give_the_same_bits(rng):
    model = _mobilenet_v2("NHWC", np.float32, rng)
    shape = (3, 40, 40, 3)
    x = rand(rng, shape, np.float32)
    results = [nn.compile(model, shape, layout="NHWC", num_threads=t)(x) for t in (1, 2, 3)]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def _residual_net(layout, dtype, gate, first_is_residual=True):
    """Residual blocks with and without SE, one reading the network input."""
    kw = dict(layout=layout, dtype=dtype)
    return nn.Sequential(
        nn.InvertedResidual(6, 6, 12, 1, 3, nn.ReLU6, se_channels=4, se_gate=gate, **kw, rng=0)
        if first_is_residual
        else nn.Identity(),
        nn.InvertedResidual(6, 10, 24, 2, 5, nn.ReLU, **kw, rng=1),
        nn.InvertedResidual(
            10,
            10,
            10,
            1,
            3,
            nn.ReLU6,
            se_channels=8,
            se_gate=gate,
            body_name="block",
            project_activation_module=True,
            **kw,
            rng=2,
        ),  # fmt: skip
        nn.InvertedResidual(10, 10, 30, 1, 3, nn.ReLU6, **kw, rng=3),
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_residual_and_squeeze_excite_match_eager(isa, layout, dtype, rng):
    model = _randomise_bn(_residual_net(layout, dtype, nn.ReLU6), rng)
    shape = _shape(layout, 3, 6, 11, 9)
    plan = nn.compile(model, shape, layout=layout)
    x = rand(rng, shape, dtype) * 3
    _close(plan(x), model(x))
    inner = [s["op"] for s in plan.steps() if not s["op"].startswith("to_")]
    assert inner == [
        "pointwise", "depthwise", "squeeze_excite", "pointwise", "add",  # reads the input
        "pointwise", "separable",
        "depthwise", "squeeze_excite", "pointwise", "add",
        "pointwise", "separable", "add",
    ]  # fmt: skip
    steps = plan.steps()
    se = [s for s in steps if s["op"] == "squeeze_excite"]
    assert (
        se[0]["fused"] == "relu after fc1, relu6 gate"
        and se[0]["name"] == "0.conv.2 (SqueezeExcitation)"
    )
    add = [s for s in steps if s["op"] == "add"]
    assert add[0]["name"] == "0 (InvertedResidual)" and add[0]["macs"] == 0
    assert "squeeze_excite" in plan.summary() and "add" in plan.summary()


def test_arena_reuses_dead_tensors_and_keeps_residual_inputs(rng):
    """The arena is far below the sum of all tensors (dead ones are reused),
    and results stay right, so no residual input was overwritten early."""
    model = _mobilenet_v2("NHWC", np.float32, rng)
    shape = (1, 64, 64, 3)
    plan = nn.compile(model, shape, layout="NHWC")
    total = sum(int(np.prod(s["out_shape"])) for s in plan.steps()) * 4
    biggest = max(int(np.prod(s["out_shape"])) for s in plan.steps()) * 4
    assert biggest < plan.arena_bytes < total / 2
    x = rand(rng, shape, np.float32)
    _close(plan(x), model(x))


def test_residual_errors(rng):
    block = nn.InvertedResidual(4, 4, 8, rng=0)
    model = nn.Sequential(block, nn.BatchNorm2d(4)).eval()
    with pytest.raises(
        ValueError, match=r"1 \(BatchNorm2d\) follows 0 \(InvertedResidual\) across"
    ):
        nn.compile(model, (1, 4, 6, 6))
    block = nn.InvertedResidual(4, 4, 8, stride=2, rng=0)
    block.use_res_connect = True  # (eager would fail too)
    model = nn.Sequential(block).eval()
    with pytest.raises(ValueError, match="0 \\(InvertedResidual\\): the residual branch"):
        nn.compile(model, (1, 4, 6, 6))
    model = nn.Sequential(nn.InvertedResidual(4, 4, 8, rng=0)).eval()
    model[0].conv[0].train()
    with pytest.raises(ValueError, match="layer '0.conv.0' is in training mode"):
        nn.compile(model, (1, 4, 6, 6))
    block = nn.InvertedResidual(4, 4, 8, rng=0)
    block.conv[1] = _Custom()
    with pytest.raises(TypeError, match=r"0.conv.1 \(_Custom\) is not supported"):
        nn.compile(nn.Sequential(block).eval(), (1, 4, 6, 6))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", ["MobileNetV3Large", "EfficientNetB0"])
def test_se_networks_match_eager(isa, name, layout, dtype, rng):
    model = _randomise_bn(getattr(nn, name)(num_classes=10, layout=layout, dtype=dtype, rng=1), rng)
    shape = _shape(layout, 2, 3, 40, 40)
    plan = nn.compile(model, shape, layout=layout)
    x = rand(rng, shape, dtype)
    _close(plan(x), model(x))
    ops = [s["op"] for s in plan.steps()]
    se = {"MobileNetV3Large": 8, "EfficientNetB0": 16}[name]
    adds = {"MobileNetV3Large": 10, "EfficientNetB0": 9}[name]
    assert ops.count("squeeze_excite") == se and ops.count("add") == adds


@pytest.mark.parametrize("name", ["MobileNetV3Large", "EfficientNetB0"])
def test_se_networks_threads_give_the_same_bits(name, rng):
    model = _randomise_bn(getattr(nn, name)(num_classes=10, rng=1), rng)
    shape = (3, 3, 40, 40)
    x = rand(rng, shape, np.float32)
    results = [nn.compile(model, shape, num_threads=t)(x) for t in (1, 2, 3)]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
