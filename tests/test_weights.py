"""Tests for pydsconv.weights: Keras/TF <-> pydsconv (PyTorch) weight layouts."""

import numpy as np
import pytest

from pydsconv import weights as W

DTYPES = [np.float32, np.float64]


def rand(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------------
# Oracles.  TF semantics are written as explicit loops over the Keras-layout
# kernels; the pydsconv side is a direct NumPy convolution on the converted
# (PyTorch-layout) kernels.  Stride 1, "valid" padding, no dilation.
# --------------------------------------------------------------------------


def tf_depthwise2d(x, k):
    """TF DepthwiseConv2D: x (N, H, W, C), k (kH, kW, C, M) -> (N, Ho, Wo, C*M).

    out[n, i, j, c*M + m] = sum_{di, dj} x[n, i+di, j+dj, c] * k[di, dj, c, m]
    """
    n_, h, w, c_ = x.shape
    kh, kw, _, m_ = k.shape
    ho, wo = h - kh + 1, w - kw + 1
    out = np.zeros((n_, ho, wo, c_ * m_), dtype=np.float64)
    for n in range(n_):
        for i in range(ho):
            for j in range(wo):
                for c in range(c_):
                    for m in range(m_):
                        s = 0.0
                        for di in range(kh):
                            for dj in range(kw):
                                s += x[n, i + di, j + dj, c] * k[di, dj, c, m]
                        out[n, i, j, c * m_ + m] = s
    return out


def tf_pointwise2d(x, k):
    """TF 1x1 Conv2D: x (N, H, W, C_in), k (1, 1, C_in, C_out).

    out[n, i, j, o] = sum_c x[n, i, j, c] * k[0, 0, c, o]
    """
    n_, h, w, cin = x.shape
    cout = k.shape[3]
    out = np.zeros((n_, h, w, cout), dtype=np.float64)
    for n in range(n_):
        for i in range(h):
            for j in range(w):
                for o in range(cout):
                    s = 0.0
                    for c in range(cin):
                        s += x[n, i, j, c] * k[0, 0, c, o]
                    out[n, i, j, o] = s
    return out


def tf_depthwise1d(x, k):
    """Keras SeparableConv1D depthwise stage: x (N, L, C), k (k, C, M)."""
    n_, length, c_ = x.shape
    kk, _, m_ = k.shape
    lo = length - kk + 1
    out = np.zeros((n_, lo, c_ * m_), dtype=np.float64)
    for n in range(n_):
        for i in range(lo):
            for c in range(c_):
                for m in range(m_):
                    out[n, i, c * m_ + m] = sum(x[n, i + d, c] * k[d, c, m] for d in range(kk))
    return out


def tf_pointwise1d(x, k):
    """Keras size-1 Conv1D: x (N, L, C_in), k (1, C_in, C_out)."""
    n_, length, cin = x.shape
    cout = k.shape[2]
    out = np.zeros((n_, length, cout), dtype=np.float64)
    for n in range(n_):
        for i in range(length):
            for o in range(cout):
                out[n, i, o] = sum(x[n, i, c] * k[0, c, o] for c in range(cin))
    return out


def np_depthwise2d_nchw(x, w):
    """Direct depthwise conv, PyTorch layouts: x (N, C, H, W), w (C*M, 1, kH, kW)."""
    n_, c_, h, wd = x.shape
    cm, _, kh, kw = w.shape
    m_ = cm // c_
    ho, wo = h - kh + 1, wd - kw + 1
    xin = np.repeat(x, m_, axis=1)  # output channel o reads input o // M
    out = np.zeros((n_, cm, ho, wo), dtype=np.float64)
    for di in range(kh):
        for dj in range(kw):
            out += xin[:, :, di : di + ho, dj : dj + wo] * w[None, :, 0, di, dj, None, None]
    return out


def np_pointwise2d_nchw(x, w):
    """Direct pointwise conv, PyTorch layouts: x (N, C_in, H, W), w (C_out, C_in[, 1, 1])."""
    w2 = w.reshape(w.shape[0], w.shape[1])
    return np.einsum("oc,nchw->nohw", w2, x)


def np_depthwise1d_ncl(x, w):
    n_, c_, length = x.shape
    cm, _, kk = w.shape
    m_ = cm // c_
    lo = length - kk + 1
    xin = np.repeat(x, m_, axis=1)
    out = np.zeros((n_, cm, lo), dtype=np.float64)
    for d in range(kk):
        out += xin[:, :, d : d + lo] * w[None, :, 0, d, None]
    return out


# --------------------------------------------------------------------------
# numerical equivalence with TF semantics
# --------------------------------------------------------------------------


@pytest.mark.parametrize("c,m,kh,kw", [(3, 1, 3, 3), (2, 3, 3, 2), (4, 2, 1, 3), (1, 4, 2, 2)])
def test_depthwise_matches_tf_semantics(c, m, kh, kw):
    rng = np.random.default_rng(0)
    x_nhwc = rand(rng, (2, 5, 6, c))
    k_keras = rand(rng, (kh, kw, c, m))
    expected = tf_depthwise2d(x_nhwc, k_keras)  # (N, Ho, Wo, C*M)

    w = W.from_keras_depthwise(k_keras)
    assert w.shape == (c * m, 1, kh, kw)
    got = np_depthwise2d_nchw(x_nhwc.transpose(0, 3, 1, 2), w)
    np.testing.assert_allclose(got.transpose(0, 2, 3, 1), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cin,cout", [(3, 5), (1, 1), (6, 2)])
def test_pointwise_matches_tf_semantics(cin, cout):
    rng = np.random.default_rng(1)
    x_nhwc = rand(rng, (2, 3, 4, cin))
    k_keras = rand(rng, (1, 1, cin, cout))
    expected = tf_pointwise2d(x_nhwc, k_keras)

    w = W.from_keras_pointwise(k_keras)
    assert w.shape == (cout, cin, 1, 1)
    got = np_pointwise2d_nchw(x_nhwc.transpose(0, 3, 1, 2), w)
    np.testing.assert_allclose(got.transpose(0, 2, 3, 1), expected, rtol=1e-12, atol=1e-12)


def test_separable_matches_tf_semantics():
    # Keras SeparableConv2D = depthwise (kH, kW, C, M) then pointwise
    # (1, 1, C*M, C_out); the converted pair must compose the same way.
    rng = np.random.default_rng(2)
    c, m, cout = 3, 2, 4
    x_nhwc = rand(rng, (1, 6, 5, c))
    dk = rand(rng, (3, 3, c, m))
    pk = rand(rng, (1, 1, c * m, cout))
    expected = tf_pointwise2d(tf_depthwise2d(x_nhwc, dk), pk)
    mid = np_depthwise2d_nchw(x_nhwc.transpose(0, 3, 1, 2), W.from_keras_depthwise(dk))
    got = np_pointwise2d_nchw(mid, W.from_keras_pointwise(pk))
    np.testing.assert_allclose(got.transpose(0, 2, 3, 1), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("c,m,k", [(3, 1, 3), (2, 3, 4), (5, 2, 1)])
def test_depthwise1d_matches_tf_semantics(c, m, k):
    rng = np.random.default_rng(3)
    x_nlc = rand(rng, (2, 7, c))
    k_keras = rand(rng, (k, c, m))
    expected = tf_depthwise1d(x_nlc, k_keras)
    w = W.from_keras_depthwise1d(k_keras)
    assert w.shape == (c * m, 1, k)
    got = np_depthwise1d_ncl(x_nlc.transpose(0, 2, 1), w)
    np.testing.assert_allclose(got.transpose(0, 2, 1), expected, rtol=1e-12, atol=1e-12)


def test_pointwise1d_matches_tf_semantics():
    rng = np.random.default_rng(4)
    x_nlc = rand(rng, (2, 5, 3))
    k_keras = rand(rng, (1, 3, 4))
    expected = tf_pointwise1d(x_nlc, k_keras)
    w = W.from_keras_pointwise1d(k_keras)
    assert w.shape == (4, 3, 1)
    got = np.einsum("oc,ncl->nol", w[:, :, 0], x_nlc.transpose(0, 2, 1))
    np.testing.assert_allclose(got.transpose(0, 2, 1), expected, rtol=1e-12, atol=1e-12)


def test_depthwise_matches_torch_grouped_conv():
    # Independent check of the layout against PyTorch's own grouped conv.
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    c, m = 3, 2
    x_nhwc = rand(rng, (2, 6, 5, c))
    k_keras = rand(rng, (3, 2, c, m))
    expected = tf_depthwise2d(x_nhwc, k_keras)
    w = W.from_keras_depthwise(k_keras)
    got = torch.nn.functional.conv2d(
        torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))),
        torch.from_numpy(w),
        groups=c,
    ).numpy()
    np.testing.assert_allclose(got.transpose(0, 2, 3, 1), expected, rtol=1e-12, atol=1e-12)


def test_depthwise_matches_pydsconv_reference():
    # The converted kernel drives pydsconv's own reference op the TF way.
    ref = pytest.importorskip("pydsconv.reference")
    rng = np.random.default_rng(6)
    c, m = 3, 2
    x_nhwc = rand(rng, (2, 6, 5, c))
    k_keras = rand(rng, (3, 3, c, m))
    expected = tf_depthwise2d(x_nhwc, k_keras)
    got = ref.depthwise_conv2d(
        x_nhwc, W.from_keras_depthwise(k_keras), padding="valid", layout="NHWC"
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------
# index mapping and round trips
# --------------------------------------------------------------------------


def test_depthwise_index_mapping():
    kh, kw, c, m = 2, 3, 4, 3
    k = np.arange(kh * kw * c * m, dtype=np.float64).reshape(kh, kw, c, m)
    w = W.from_keras_depthwise(k)
    for ci in range(c):
        for mi in range(m):
            np.testing.assert_array_equal(w[ci * m + mi, 0], k[:, :, ci, mi])


def test_pointwise_index_mapping():
    k = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
    w = W.from_keras_pointwise(k)
    for i in range(3):
        for o in range(4):
            assert w[o, i, 0, 0] == k[0, 0, i, o]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape", [(3, 3, 8, 1), (3, 3, 4, 2), (5, 1, 3, 3), (1, 1, 1, 1), (3, 3, 1, 6)]
)
def test_depthwise_round_trip(dtype, shape):
    rng = np.random.default_rng(7)
    k = rand(rng, shape, dtype)
    kh, kw, c, m = shape
    w = W.from_keras_depthwise(k)
    assert w.dtype == dtype and w.flags.c_contiguous
    for kwargs in ({"channels": c}, {"multiplier": m}, {"channels": c, "multiplier": m}):
        back = W.to_keras_depthwise(w, **kwargs)
        assert back.dtype == dtype and back.flags.c_contiguous
        np.testing.assert_array_equal(back, k)
    # and the other way round
    np.testing.assert_array_equal(W.from_keras_depthwise(W.to_keras_depthwise(w, channels=c)), w)


def test_to_keras_depthwise_defaults_to_multiplier_1():
    w = np.random.default_rng(8).standard_normal((6, 1, 3, 3))
    k = W.to_keras_depthwise(w)
    assert k.shape == (3, 3, 6, 1)
    np.testing.assert_array_equal(k, W.to_keras_depthwise(w, multiplier=1))
    np.testing.assert_array_equal(k, W.to_keras_depthwise(w, channels=6))
    # the same array read with M = 2 is a different Keras kernel
    assert W.to_keras_depthwise(w, multiplier=2).shape == (3, 3, 3, 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cin,cout", [(3, 5), (1, 1), (16, 8)])
def test_pointwise_round_trip(dtype, cin, cout):
    rng = np.random.default_rng(9)
    k = rand(rng, (1, 1, cin, cout), dtype)
    w = W.from_keras_pointwise(k)
    assert w.shape == (cout, cin, 1, 1)
    assert w.dtype == dtype and w.flags.c_contiguous
    back = W.to_keras_pointwise(w)
    assert back.dtype == dtype and back.flags.c_contiguous
    np.testing.assert_array_equal(back, k)
    # the 2-D form is accepted too
    np.testing.assert_array_equal(W.to_keras_pointwise(w[:, :, 0, 0]), k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 4, 1), (5, 2, 3), (1, 1, 1)])
def test_depthwise1d_round_trip(dtype, shape):
    rng = np.random.default_rng(10)
    k = rand(rng, shape, dtype)
    kk, c, m = shape
    w = W.from_keras_depthwise1d(k)
    assert w.shape == (c * m, 1, kk)
    assert w.dtype == dtype and w.flags.c_contiguous
    for kwargs in ({"channels": c}, {"multiplier": m}):
        back = W.to_keras_depthwise1d(w, **kwargs)
        assert back.dtype == dtype and back.flags.c_contiguous
        np.testing.assert_array_equal(back, k)
    if m == 1:
        np.testing.assert_array_equal(W.to_keras_depthwise1d(w), k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pointwise1d_round_trip(dtype):
    rng = np.random.default_rng(11)
    k = rand(rng, (1, 3, 7), dtype)
    w = W.from_keras_pointwise1d(k)
    assert w.shape == (7, 3, 1)
    assert w.dtype == dtype and w.flags.c_contiguous
    np.testing.assert_array_equal(W.to_keras_pointwise1d(w), k)
    np.testing.assert_array_equal(W.to_keras_pointwise1d(w[:, :, 0]), k)


def test_outputs_are_new_arrays():
    # Even where the conversion is a no-op in memory, the result is a copy.
    cases = [
        (W.from_keras_depthwise, np.ones((1, 1, 1, 1))),
        (W.to_keras_depthwise, np.ones((1, 1, 1, 1))),
        (W.from_keras_pointwise, np.ones((1, 1, 1, 1))),
        (W.to_keras_pointwise, np.ones((1, 1))),
        (W.from_keras_depthwise1d, np.ones((3, 1, 1))),
        (W.to_keras_depthwise1d, np.ones((1, 1, 3))),
        (W.from_keras_pointwise1d, np.ones((1, 1, 1))),
        (W.to_keras_pointwise1d, np.ones((1, 1, 1))),
    ]
    for fn, a in cases:
        out = fn(a)
        assert not np.shares_memory(out, a), fn.__name__
        assert out.flags.c_contiguous and out.flags.writeable


def test_non_contiguous_and_read_only_inputs():
    rng = np.random.default_rng(12)
    big = rng.standard_normal((6, 6, 8, 4))
    k = big[::2, ::2, ::2, ::2]  # (3, 3, 4, 2), strided view
    k_ro = np.array(k)
    k_ro.flags.writeable = False
    expected = W.from_keras_depthwise(np.ascontiguousarray(k))
    np.testing.assert_array_equal(W.from_keras_depthwise(k), expected)
    np.testing.assert_array_equal(W.from_keras_depthwise(k_ro), expected)
    kf = np.asfortranarray(k)
    np.testing.assert_array_equal(W.from_keras_depthwise(kf), expected)


def test_array_likes_of_floats_are_accepted():
    w = W.from_keras_pointwise([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert w.dtype == np.float64
    np.testing.assert_array_equal(w[:, :, 0, 0], [[1.0, 3.0], [2.0, 4.0]])


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn,shape,expected",
    [
        (W.from_keras_depthwise, (3, 3, 4), r"\(kH, kW, C, M\)"),
        (W.from_keras_depthwise, (3, 3, 4, 1, 1), r"\(kH, kW, C, M\)"),
        (W.from_keras_depthwise, (3, 3, 0, 1), r"\(kH, kW, C, M\)"),
        (W.to_keras_depthwise, (4, 1, 3), r"\(C\*M, 1, kH, kW\)"),
        (W.to_keras_depthwise, (4, 2, 3, 3), r"\(C\*M, 1, kH, kW\)"),
        (W.to_keras_depthwise, (0, 1, 3, 3), r"\(C\*M, 1, kH, kW\)"),
        (W.from_keras_pointwise, (3, 4), r"\(1, 1, C_in, C_out\)"),
        (W.from_keras_pointwise, (3, 3, 3, 4), r"\(1, 1, C_in, C_out\)"),
        (W.to_keras_pointwise, (4, 3, 3, 3), r"\(C_out, C_in, 1, 1\)"),
        (W.to_keras_pointwise, (4, 3, 1), r"\(C_out, C_in, 1, 1\)"),
        (W.to_keras_pointwise, (4,), r"\(C_out, C_in, 1, 1\)"),
        (W.to_keras_pointwise, (4, 0), r"\(C_out, C_in, 1, 1\)"),
        (W.from_keras_depthwise1d, (3, 3, 3, 1), r"\(k, C, M\)"),
        (W.to_keras_depthwise1d, (4, 1, 3, 3), r"\(C\*M, 1, k\)"),
        (W.to_keras_depthwise1d, (4, 2, 3), r"\(C\*M, 1, k\)"),
        (W.from_keras_pointwise1d, (2, 3, 4), r"\(1, C_in, C_out\)"),
        (W.from_keras_pointwise1d, (1, 1, 3, 4), r"\(1, C_in, C_out\)"),
        (W.to_keras_pointwise1d, (4, 3, 2), r"\(C_out, C_in, 1\)"),
        (W.to_keras_pointwise1d, (4, 3, 1, 1), r"\(C_out, C_in, 1\)"),
    ],
)
def test_bad_shapes_raise_value_error(fn, shape, expected):
    with pytest.raises(ValueError, match=r"^w .*" + expected):
        fn(np.zeros(shape, np.float32))


@pytest.mark.parametrize(
    "fn,shape",
    [
        (W.from_keras_depthwise, (3, 3, 4, 1)),
        (W.to_keras_depthwise, (4, 1, 3, 3)),
        (W.from_keras_pointwise, (1, 1, 3, 4)),
        (W.to_keras_pointwise, (4, 3)),
        (W.from_keras_depthwise1d, (3, 4, 1)),
        (W.to_keras_depthwise1d, (4, 1, 3)),
        (W.from_keras_pointwise1d, (1, 3, 4)),
        (W.to_keras_pointwise1d, (4, 3)),
    ],
)
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.complex128, np.uint8])
def test_non_float_dtype_raises_type_error(fn, shape, dtype):
    with pytest.raises(TypeError, match="w"):
        fn(np.zeros(shape, dtype))


def test_non_numeric_inputs_raise_type_error():
    with pytest.raises(TypeError, match="w"):
        W.from_keras_pointwise([[[[1, 2], [3, 4]]]])  # integers: no silent cast
    with pytest.raises(TypeError, match="w"):
        W.from_keras_depthwise("kernel")
    with pytest.raises(TypeError, match="w"):
        W.from_keras_depthwise([[1.0, 2.0], [3.0]])  # ragged


def test_channel_split_errors():
    w = np.zeros((6, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match="channels"):
        W.to_keras_depthwise(w, channels=4)
    with pytest.raises(ValueError, match="multiplier"):
        W.to_keras_depthwise(w, multiplier=4)
    with pytest.raises(ValueError, match="channels"):
        W.to_keras_depthwise(w, channels=3, multiplier=3)
    with pytest.raises(ValueError, match="channels"):
        W.to_keras_depthwise(w, channels=0)
    with pytest.raises(ValueError, match="multiplier"):
        W.to_keras_depthwise(w, multiplier=-1)
    with pytest.raises(TypeError, match="channels"):
        W.to_keras_depthwise(w, channels=3.0)
    with pytest.raises(TypeError, match="multiplier"):
        W.to_keras_depthwise(w, multiplier=True)
    w1 = np.zeros((6, 1, 3), np.float64)
    with pytest.raises(ValueError, match="channels"):
        W.to_keras_depthwise1d(w1, channels=5)
    with pytest.raises(ValueError, match="multiplier"):
        W.to_keras_depthwise1d(w1, multiplier=5)
    assert W.to_keras_depthwise1d(w1, channels=np.int64(2)).shape == (3, 2, 3)
