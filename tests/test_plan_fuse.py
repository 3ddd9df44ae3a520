"""Banded chains in compiled plans (cpp/plan_fuse.{h,cpp}, compile(fuse=...)).

A fused plan runs runs of pointwise / depthwise / separable layers a band of
output rows at a time, each intermediate in a small line buffer.  It runs
the same kernels as the unfused steps, each output one fixed chain of
operations, so fused plans must equal unfused ones bit for bit, for any band
height and thread count; both are checked against the NumPy reference
(float64, layer by layer).  Randomised chains cover kernels 3 and 5, stride 1
and 2, dilation, "same" / "valid" / explicit padding, odd channel counts,
channel multipliers, tiny maps (bands smaller than the kernel), batch 1-5,
1-3 threads, both layouts, float32 and float64, every ISA.
"""

import numpy as np
import pytest
from conftest import rand, to_nhwc
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from pydsconv import nn
from pydsconv import reference as ref

DTYPES = [np.float32, np.float64]
LAYOUTS = ["NCHW", "NHWC"]


def _shape(layout, n, c, h, w):
    return (n, c, h, w) if layout == "NCHW" else (n, h, w, c)


def _f64(a):
    return None if a is None else a.data.astype(np.float64)


def _build(spec, c_in, layout, dtype, seed):
    """nn.Sequential from a list of layer specs (dicts); returns it and C_out."""
    layers, c = [], c_in
    for i, s in enumerate(spec):
        kw = dict(layout=layout, dtype=dtype, rng=seed + i)
        if s["kind"] == "pw":
            layers.append(nn.PointwiseConv2d(c, s["out"], activation=s["act"], **kw))
            c = s["out"]
        else:
            geo = dict(kernel_size=s["k"], stride=s["stride"], padding=s["pad"], dilation=s["dil"])
            if s["kind"] == "dw":
                layers.append(
                    nn.DepthwiseConv2d(c, multiplier=s["mult"], activation=s["act"], **geo, **kw)
                )
                c *= s["mult"]
            else:
                layers.append(
                    nn.SeparableConv2d(
                        c,
                        s["out"],
                        multiplier=s["mult"],
                        mid_activation=s["mid"],
                        activation=s["act"],
                        **geo,
                        **kw,
                    )
                )
                c = s["out"]
    return nn.Sequential(*layers).eval(), c


def _reference(model, spec, x, layout):
    """The chain in float64 by pydsconv.reference, NCHW in, caller's layout out."""
    y = np.moveaxis(x, -1, 1) if layout == "NHWC" else x
    y = y.astype(np.float64)
    for layer, s in zip(model, spec):
        if s["kind"] == "pw":
            y = ref.pointwise_conv2d(y, _f64(layer.weight), _f64(layer.bias), activation=s["act"])
            continue
        geo = dict(stride=s["stride"], padding=s["pad"], dilation=s["dil"])
        if s["kind"] == "dw":
            y = ref.depthwise_conv2d(
                y, _f64(layer.weight), _f64(layer.bias), activation=s["act"], **geo
            )
        else:
            d, p = layer.depthwise, layer.pointwise
            y = ref.separable_conv2d(
                y,
                _f64(d.weight),
                _f64(p.weight),
                _f64(d.bias),
                _f64(p.bias),
                mid_activation=s["mid"],
                activation=s["act"],
                **geo,
            )
    return to_nhwc(y) if layout == "NHWC" else y


def _close(actual, expected):
    assert actual.shape == expected.shape
    scale = float(np.max(np.abs(expected))) or 1.0
    tol = 1e-10 if actual.dtype == np.float64 else 1e-4
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


def _banded(plan):
    return [s for s in plan.steps() if s["op"] == "banded"]


ACTS = st.sampled_from([None, "relu", "relu6"])


@st.composite
def _layer(draw):
    kind = draw(st.sampled_from(["pw", "dw", "sep"]))
    s = dict(kind=kind, act=draw(ACTS))
    if kind != "dw":
        s["out"] = draw(st.integers(1, 9))
    if kind != "pw":
        k = draw(st.sampled_from([3, 5]))
        s.update(
            k=k,
            stride=draw(st.sampled_from([1, 2])),
            dil=draw(st.sampled_from([1, 1, 2])),
            pad=draw(st.sampled_from(["same", "valid", 0, 1, k // 2, ((k - 1, 0), (0, 1))])),
            mult=draw(st.sampled_from([1, 1, 2])),
            mid=draw(ACTS),
        )
    return s


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
@given(
    spec=st.lists(_layer(), min_size=2, max_size=4),
    c_in=st.integers(1, 7),
    hw=st.tuples(st.integers(1, 13), st.integers(1, 11)),
    n=st.integers(1, 5),
    layout=st.sampled_from(LAYOUTS),
    dtype=st.sampled_from(DTYPES),
    band=st.sampled_from(["always", 1, 2, 3]),
    seed=st.integers(0, 1000),
)
def test_random_chains(isa, spec, c_in, hw, n, layout, dtype, band, seed):
    model, _ = _build(spec, c_in, layout, dtype, seed)
    shape = _shape(layout, n, c_in, *hw)
    try:
        unfused = nn.compile(model, shape, layout=layout, fuse=False, num_threads=1)
    except ValueError:  # a map too small for a layer
        assume(False)
    note(unfused.summary())
    x = rand(np.random.default_rng(seed), shape, dtype)
    expected = unfused(x)
    _close(expected, _reference(model, spec, x, layout))
    for threads in (1, 2, 3):
        plan = nn.compile(model, shape, layout=layout, fuse=band, num_threads=threads)
        note(plan.summary())
        np.testing.assert_array_equal(plan(x), expected)


def _v2_block(c, expand, layout, dtype, stride=1, k=3):
    """MobileNetV2's inverted residual without the add: 1x1 expand (relu6),
    depthwise k x k (relu6), 1x1 project (linear)."""
    e = c * expand
    kw = dict(layout=layout, dtype=dtype)
    return nn.Sequential(
        nn.PointwiseConv2d(c, e, activation="relu6", rng=1, **kw),
        nn.DepthwiseConv2d(e, kernel_size=k, stride=stride, padding="same", rng=2, **kw),
        nn.ReLU6(),
        nn.PointwiseConv2d(e, c, rng=3, **kw),
    ).eval()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("stride", [1, 2])
def test_inverted_residual_fuses_by_default(isa, layout, dtype, stride, rng):
    """A 6x expansion at 40x40 (the expanded tensor 1.2 MiB an image in
    float32) is fused by the cost rule, and equals the unfused plan and the
    eager model."""
    model = _v2_block(8, 6, layout, dtype, stride)
    shape = _shape(layout, 2, 8, 40, 40)
    fused = nn.compile(model, shape, layout=layout)
    unfused = nn.compile(model, shape, layout=layout, fuse=False)
    assert len(_banded(fused)) == 1 and not _banded(unfused)
    assert "banded: pw(0" in fused.summary() and "rows a band" in fused.summary()
    x = rand(rng, shape, dtype)
    y = fused(x)
    np.testing.assert_array_equal(y, unfused(x))
    _close(y, model(x))
    for t in (2, 3):
        np.testing.assert_array_equal(nn.compile(model, shape, layout=layout, num_threads=t)(x), y)


def test_small_maps_stay_unfused(rng):
    """Where the tensors between layers stay in cache anyway, the cost rule
    leaves the steps alone (and "always" fuses them, same bits)."""
    model = _v2_block(4, 6, "NHWC", np.float32)
    shape = (1, 7, 7, 4)
    assert not _banded(nn.compile(model, shape, layout="NHWC"))
    always = nn.compile(model, shape, layout="NHWC", fuse="always")
    assert len(_banded(always)) == 1
    x = rand(rng, shape, np.float32)
    np.testing.assert_array_equal(always(x), nn.compile(model, shape, layout="NHWC")(x))


def test_nonfinite_depthwise_weights_stay_unfused(rng):
    """A non-finite depthwise weight needs the op's padding fix-up (NaN where
    it meets padding, as the reference): such a layer is never fused."""
    model = _v2_block(4, 2, "NHWC", np.float32)
    model[1].weight.data[0, 0, 0, 0] = np.inf
    shape = (1, 6, 6, 4)
    plan = nn.compile(model, shape, layout="NHWC", fuse="always")
    assert [s["op"] for s in plan.steps()] == ["pointwise", "separable"]


def test_chain_longer_than_a_run_is_split(rng):
    """20 pointwise layers: chains hold at most 16 layers."""
    layers = [nn.PointwiseConv2d(3, 3, layout="NHWC", rng=i) for i in range(20)]
    model = nn.Sequential(*layers).eval()
    shape = (2, 5, 4, 3)
    plan = nn.compile(model, shape, layout="NHWC", fuse=2)
    assert [s["op"] for s in plan.steps()] == ["banded", "banded"]
    x = rand(rng, shape, np.float32)
    np.testing.assert_array_equal(plan(x), nn.compile(model, shape, layout="NHWC", fuse=False)(x))


def test_empty_batch():
    model = _v2_block(4, 2, "NHWC", np.float32)
    plan = nn.compile(model, (0, 9, 9, 4), layout="NHWC", fuse="always")
    assert plan(np.zeros((0, 9, 9, 4), np.float32)).shape == (0, 9, 9, 4)


@pytest.mark.parametrize("bad", ["sometimes", 0, -3, 1.5, None])
def test_bad_fuse_argument(bad):
    model = _v2_block(4, 2, "NHWC", np.float32)
    with pytest.raises(ValueError, match="fuse must be True, False"):
        nn.compile(model, (1, 9, 9, 4), layout="NHWC", fuse=bad)


def test_plan_built_under_another_isa(isa, rng):
    """A plan compiled under scalar and run under the current kernel set
    (whose GEMM work area and packed layouts may differ) equals the unfused
    plan made the same way."""
    import pydsconv
    from pydsconv import _core

    model = _v2_block(5, 3, "NHWC", np.float32, stride=2, k=5)
    shape = (3, 17, 13, 5)
    _core.set_isa("scalar")
    try:
        fused = nn.compile(model, shape, layout="NHWC", fuse=2, num_threads=2)
        unfused = nn.compile(model, shape, layout="NHWC", fuse=False, num_threads=2)
    finally:
        _core.set_isa(isa)
    assert pydsconv.cpu_features()["isa"] == isa
    x = rand(rng, shape, np.float32)
    np.testing.assert_array_equal(fused(x), unfused(x))


def _randomise_bn(model, rng):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean[:] = rng.uniform(-0.1, 0.1, c)
            m.running_var[:] = rng.uniform(0.5, 1.5, c)
            m.weight.data[:] = rng.uniform(0.5, 1.5, c)
            m.bias.data[:] = rng.uniform(-0.1, 0.1, c)
    return model.eval()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_residual_add_joins_its_blocks_band(isa, layout, dtype, rng):
    """MobileNetV2's stride-1 blocks: the add of the block's input joins the
    banded expand -> depthwise -> project chain (the add step disappears), a
    block whose output feeds the next block's add ends its chain there, and
    the bits equal the unfused plan's for 1-3 threads."""
    model = _randomise_bn(nn.MobileNetV2(num_classes=10, layout=layout, dtype=dtype, rng=1), rng)
    shape = _shape(layout, 2, 3, 48, 48)
    fused = nn.compile(model, shape, layout=layout, fuse="always")
    unfused = nn.compile(model, shape, layout=layout, fuse=False)
    ops = [s["op"] for s in fused.steps()]
    assert [s["op"] for s in unfused.steps()].count("add") == 10
    assert "add" not in ops
    assert fused.summary().count("+ residual add") == 10
    x = rand(rng, shape, dtype)
    y = fused(x)
    np.testing.assert_array_equal(y, unfused(x))
    _close(y, model(x))
    for t in (2, 3):
        plan = nn.compile(model, shape, layout=layout, fuse="always", num_threads=t)
        np.testing.assert_array_equal(plan(x), y)
