"""Tests of prepack_pointwise; mirrors Prepacked in cpp/packed.h and its use
by cpp/pointwise.cpp and cpp/separable.cpp.

A packed weight must give the same bits as the array it was packed from, in
every op that takes it (pointwise and separable, 2-D and 1-D, both layouts,
both dtypes, on every ISA, any thread count), over shapes that take each of
the operators' paths (NHWC; NCHW planes of up to 64 pixels, which run as
NHWC; larger NCHW planes, which read the weight in place; one tile and many;
channel counts that are not a multiple of the register tile); and match the
NumPy reference.  Packed under one ISA and used under another, it falls back
to packing per call.  It is a snapshot: changing the original array later
does not change it.  Bad input gets the usual errors.
"""

import numpy as np
import pytest
from conftest import assert_close, host_isas, rand, to_nhwc

import pydsconv
from pydsconv import _core
from pydsconv import reference as ref

DTYPES = [np.float32, np.float64]

# (N, C, H, W, C_out): 7x7 and 14x14 (NCHW via NHWC, one or two tiles), 9x9
# with odd channel counts, 20x20 (NCHW reads W in place), batch 3.
SHAPES_2D = [
    (1, 64, 7, 7, 96),
    (1, 48, 14, 14, 40),
    (2, 19, 9, 9, 37),
    (1, 16, 20, 20, 33),
    (3, 24, 8, 8, 17),
]


def _data_2d(rng, shape, dtype, layout):
    n, c, h, w, cout = shape
    x = rand(rng, (n, c, h, w), dtype)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    dw = rand(rng, (c, 1, 3, 3), dtype)
    db = rand(rng, (c,), dtype)
    pw = rand(rng, (cout, c, 1, 1), dtype)
    pb = rand(rng, (cout,), dtype)
    return x, dw, db, pw, pb


@pytest.mark.parametrize("shape", SHAPES_2D)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_separable_2d_same_bits(isa, rng, shape, layout, dtype):
    x, dw, db, pw, pb = _data_2d(rng, shape, dtype, layout)
    packed = pydsconv.prepack_pointwise(pw)
    assert packed.isa == isa
    kw = dict(stride=1, padding="same", layout=layout, mid_activation="relu6", activation="relu")
    want = pydsconv.separable_conv2d(x, dw, pw, db, pb, **kw)
    for threads in (1, 2):
        got = pydsconv.separable_conv2d(x, dw, packed, db, pb, num_threads=threads, **kw)
        np.testing.assert_array_equal(got, want)
    assert_close(want, ref.separable_conv2d(x, dw, pw, db, pb, **kw))


@pytest.mark.parametrize("shape", SHAPES_2D)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_pointwise_2d_same_bits(isa, rng, shape, layout, dtype):
    n, c, h, w, cout = shape
    x = rand(rng, (n, c, h, w) if layout == "NCHW" else (n, h, w, c), dtype)
    weight = rand(rng, (cout, c), dtype)  # the 2-D weight form
    bias = rand(rng, (cout,), dtype)
    packed = pydsconv.prepack_pointwise(weight)
    want = pydsconv.pointwise_conv2d(x, weight, bias, layout=layout, activation="relu6")
    for threads in (1, 2):
        got = pydsconv.pointwise_conv2d(
            x, packed, bias, layout=layout, activation="relu6", num_threads=threads
        )
        np.testing.assert_array_equal(got, want)
    assert_close(want, ref.pointwise_conv2d(x, weight, bias, layout=layout, activation="relu6"))


@pytest.mark.parametrize("layout", ["NCL", "NLC"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_1d_ops_same_bits(isa, rng, layout, dtype):
    n, c, length, cout, k = 2, 40, 70, 51, 5
    x = rand(rng, (n, c, length) if layout == "NCL" else (n, length, c), dtype)
    dw = rand(rng, (c, 1, k), dtype)
    pw = rand(rng, (cout, c, 1), dtype)
    pb = rand(rng, (cout,), dtype)
    packed = pydsconv.prepack_pointwise(pw)
    kw = dict(padding="causal", layout=layout, activation="relu")
    want = pydsconv.separable_conv1d(x, dw, pw, None, pb, **kw)
    np.testing.assert_array_equal(pydsconv.separable_conv1d(x, dw, packed, None, pb, **kw), want)
    assert_close(want, ref.separable_conv1d(x, dw, pw, None, pb, **kw))
    want = pydsconv.pointwise_conv1d(x, pw, pb, layout=layout)
    np.testing.assert_array_equal(pydsconv.pointwise_conv1d(x, packed, pb, layout=layout), want)


@pytest.mark.skipif(len(host_isas()) < 2, reason="needs a second ISA")
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_packed_for_another_isa_falls_back(rng, layout):
    """Packed for the best ISA, used under scalar (another panel width)."""
    before = pydsconv.cpu_features()["isa"]
    dtype = np.float32
    x, dw, db, pw, pb = _data_2d(rng, (1, 48, 14, 14, 40), dtype, layout)
    _core.set_isa(host_isas()[-1])
    try:
        packed = pydsconv.prepack_pointwise(pw)
        assert packed.isa == host_isas()[-1]
        _core.set_isa("scalar")
        kw = dict(padding="same", layout=layout)
        want = pydsconv.separable_conv2d(x, dw, pw, db, pb, **kw)
        np.testing.assert_array_equal(pydsconv.separable_conv2d(x, dw, packed, db, pb, **kw), want)
        want = pydsconv.pointwise_conv2d(want, np.ones((5, 40), dtype), layout=layout)
        packed_ones = pydsconv.prepack_pointwise(np.ones((5, 40), dtype))
        _core.set_isa(host_isas()[-1])  # packed under scalar, used under the best ISA
        got = pydsconv.pointwise_conv2d(
            pydsconv.separable_conv2d(x, dw, pw, db, pb, **kw), packed_ones, layout=layout
        )
        assert_close(got, want)
    finally:
        _core.set_isa(before)


def test_snapshot_and_read_only(rng):
    dtype = np.float32
    x, dw, db, pw, pb = _data_2d(rng, (1, 32, 7, 7, 24), dtype, "NHWC")
    packed = pydsconv.prepack_pointwise(pw)
    before = pydsconv.separable_conv2d(x, dw, packed, db, pb, padding=1, layout="NHWC")
    original = pw.copy()
    pw *= 2.0  # the caller changes its array after packing
    after = pydsconv.separable_conv2d(x, dw, packed, db, pb, padding=1, layout="NHWC")
    np.testing.assert_array_equal(after, before)
    np.testing.assert_array_equal(packed.weight, original)
    assert not packed.weight.flags.writeable
    with pytest.raises(ValueError):
        packed.weight[0, 0, 0, 0] = 1.0
    assert "PackedPointwise(shape=(24, 32, 1, 1), dtype=float32" in repr(packed)
    assert isinstance(packed, pydsconv.PackedPointwise)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_weight_cannot_be_made_writable(rng, dtype):
    # Before: setflags(write=True) succeeded, and after an edit NCHW calls on
    # large planes read the new values while NHWC calls used the old panels.
    pw = rand(rng, (24, 32), dtype)
    packed = pydsconv.prepack_pointwise(pw[:, ::-1])  # a strided input: copied
    np.testing.assert_array_equal(packed.weight, pw[:, ::-1])
    for arr in (packed.weight, packed.weight.view(), packed.weight[:, :4], packed.weight.T):
        with pytest.raises(ValueError, match="WRITEABLE"):
            arr.setflags(write=True)
        assert not arr.flags.writeable
    with pytest.raises(ValueError):
        np.copyto(packed.weight, 0)
    with pytest.raises((ValueError, TypeError)):
        memoryview(packed.weight)[0, 0] = 1.0
    # One packed weight, one function: every layout and plane size agrees.
    x = rand(rng, (2, 32, 40, 40), dtype)
    want = ref.pointwise_conv2d(x, np.ascontiguousarray(pw[:, ::-1]))
    assert_close(pydsconv.pointwise_conv2d(x, packed), want)
    assert_close(pydsconv.pointwise_conv2d(to_nhwc(x), packed, layout="NHWC"), to_nhwc(want))


def test_out_and_batch_zero(rng):
    dtype = np.float64
    x, dw, db, pw, pb = _data_2d(rng, (2, 16, 9, 9, 12), dtype, "NHWC")
    packed = pydsconv.prepack_pointwise(pw)
    out = np.empty((2, 9, 9, 12), dtype)
    got = pydsconv.separable_conv2d(x, dw, packed, db, pb, padding="same", layout="NHWC", out=out)
    assert got is out
    np.testing.assert_array_equal(
        out, pydsconv.separable_conv2d(x, dw, pw, db, pb, padding="same", layout="NHWC")
    )
    empty = pydsconv.separable_conv2d(x[:0], dw, packed, db, pb, padding="same", layout="NHWC")
    assert empty.shape == (0, 9, 9, 12)


def test_errors(rng):
    x, dw, db, pw, pb = _data_2d(rng, (1, 16, 9, 9, 12), np.float32, "NCHW")
    with pytest.raises(ValueError, match="weight must have shape"):
        pydsconv.prepack_pointwise(rand(rng, (12, 16, 3, 3), np.float32))
    with pytest.raises(ValueError, match="weight must have shape"):
        pydsconv.prepack_pointwise(rand(rng, (12,), np.float32))
    with pytest.raises(TypeError, match="weight"):
        pydsconv.prepack_pointwise(np.ones((4, 4), np.int32))
    with pytest.raises(TypeError, match="weight"):
        pydsconv.prepack_pointwise("not an array")
    packed64 = pydsconv.prepack_pointwise(pw.astype(np.float64))
    with pytest.raises(TypeError, match="dtype"):  # one dtype per call, as for arrays
        pydsconv.separable_conv2d(x, dw, packed64, db, pb)
    other = pydsconv.prepack_pointwise(rand(rng, (12, 15), np.float32))
    with pytest.raises(ValueError, match="pointwise_weight"):  # C_in 15 vs the input's 16
        pydsconv.separable_conv2d(x, dw, other, db, pb)
    packed = pydsconv.prepack_pointwise(pw)
    with pytest.raises(TypeError, match="weight"):  # a depthwise weight is an array
        pydsconv.depthwise_conv2d(x, packed)
    with pytest.raises(TypeError, match="weight"):  # the backward ops take arrays only
        pydsconv.pointwise_conv2d_backward(np.ones((1, 12, 9, 9), np.float32), x, packed)
