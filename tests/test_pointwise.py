"""Tests of the pointwise (1x1) ops; mirrors cpp/pointwise.cpp.

pointwise_conv2d / pointwise_conv2d_backward (and the 1-D twins, which run
the same C++ with H = 1) against pydsconv.reference on every ISA the host
has, both layouts and dtypes.  The channel pairs cross the GEMM's 64-row
block and, with H*W = 300 pixels, its 256-column block (NCHW: columns are
pixels; NHWC: rows are pixels, columns output channels, so one case has
C_out > 256).  PyTorch (1x1 F.conv2d and autograd, float64) is a second
oracle where installed.
"""

import itertools

import numpy as np
import pytest
from conftest import assert_close, rand, to_nhwc
from kernel_paths import VEC_BYTES, taken

import pydsconv
from pydsconv import reference as ref

DTYPES = [np.float32, np.float64]
LAYOUTS = ["NCHW", "NHWC"]
ACTS = [None, "relu", "relu6"]

# (C_in, C_out): below/at/above the vector width and the 64-row block.
PAIRS = [
    (1, 1),
    (1, 17),
    (3, 16),
    (16, 3),
    (17, 65),
    (64, 64),
    (65, 1),
    (130, 17),
    (16, 130),
    (65, 130),
    (130, 65),
    (3, 64),
]
HW = (15, 20)  # 300 pixels: two 256-wide column blocks in NCHW


def _x(rng, n, c, hw, dtype, layout, scale=3.0):
    x = scale * rand(rng, (n, c) + hw, dtype)
    return to_nhwc(x) if layout == "NHWC" else x


def _case_options(i):
    """A deterministic spread of (weight 2-D?, bias?, activation) per pair."""
    return bool(i % 2), bool((i // 2) % 2), ACTS[i % 3]


# ---------------------------------------------------------------------------
# Forward vs the reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("idx,pair", list(enumerate(PAIRS)))
def test_forward_matches_reference(isa, rng, idx, pair, layout, dtype):
    ci, co = pair
    w2d, has_bias, act = _case_options(idx)
    x = _x(rng, 3, ci, HW, dtype, layout)
    w = 3.0 * rand(rng, (co, ci) if w2d else (co, ci, 1, 1), dtype)
    b = rand(rng, (co,), dtype) if has_bias else None
    got = pydsconv.pointwise_conv2d(x, w, b, layout=layout, activation=act)
    want = ref.pointwise_conv2d(x, w, b, layout=layout, activation=act)
    assert got.flags.c_contiguous
    assert_close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("has_bias", [False, True])
@pytest.mark.parametrize("w2d", [False, True])
def test_forward_options(isa, rng, w2d, has_bias, act, layout, dtype):
    """Every weight-shape x bias x activation combination on one mid-size pair."""
    ci, co = 17, 65
    x = _x(rng, 2, ci, (7, 9), dtype, layout)
    w = 3.0 * rand(rng, (co, ci) if w2d else (co, ci, 1, 1), dtype)
    b = rand(rng, (co,), dtype) if has_bias else None
    got = pydsconv.pointwise_conv2d(x, w, b, layout=layout, activation=act)
    want = ref.pointwise_conv2d(x, w, b, layout=layout, activation=act)
    assert_close(got, want, dtype)
    if act == "relu6":  # the clip must actually have been exercised
        assert (want == 6).any() and (want == 0).any()
    if act == "relu":
        assert (want == 0).any() and got.min() >= 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_nhwc_wide_output(isa, rng, dtype):
    """NHWC with C_out > 256: the GEMM's columns span two blocks."""
    ci, co = 20, 260
    x = _x(rng, 2, ci, (6, 7), dtype, "NHWC")
    w = rand(rng, (co, ci, 1, 1), dtype)
    b = rand(rng, (co,), dtype)
    got = pydsconv.pointwise_conv2d(x, w, b, layout="NHWC", activation="relu")
    assert_close(got, ref.pointwise_conv2d(x, w, b, layout="NHWC", activation="relu"), dtype)
    go = rand(rng, got.shape, dtype)
    for g, r in zip(
        pydsconv.pointwise_conv2d_backward(go, x, w, layout="NHWC"),
        ref.pointwise_conv2d_backward(go, x, w, layout="NHWC"),
    ):
        assert_close(g, r, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cols", [100, 104, 112])
def test_narrow_last_panel(isa, rng, cols, layout, dtype):
    """GEMM columns whose last panel fills fewer vectors than the register
    tile (gemm-inl.h gemm_narrow_panel): 100, 104, 112 = 3 panels of 32 and
    4, 8, 16 columns in float32 on AVX-512 (6 of 16 and 4, 8, 0 in float64),
    so part of a vector or whole ones; NCHW: the columns are pixels, 85 =
    72 + 12 + 1 rows; NHWC: they are output channels, 85 pixels.  C_in = 300
    takes two K slices (the second accumulates into C), bias per row (NCHW)
    and per column (NHWC); the gradients run the packed-A and transposed
    cases of the same GEMM."""
    hw = {100: (10, 10), 104: (8, 13), 112: (8, 14)}[cols] if layout == "NCHW" else (5, 17)
    co = 85 if layout == "NCHW" else cols
    x = _x(rng, 1, 300, hw, dtype, layout)
    w = rand(rng, (co, 300), dtype)
    b = rand(rng, (co,), dtype)
    got = pydsconv.pointwise_conv2d(x, w, b, layout=layout, activation="relu6", num_threads=1)
    assert_close(got, ref.pointwise_conv2d(x, w, b, layout=layout, activation="relu6"), dtype)
    go = rand(rng, got.shape, dtype)
    for g, r in zip(
        pydsconv.pointwise_conv2d_backward(go, x, w, layout=layout, num_threads=1),
        ref.pointwise_conv2d_backward(go, x, w, layout=layout),
    ):
        assert_close(g, r, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pixels", [(7, 7), (5, 10), (3, 17), (1, 79), (5, 5)])
def test_tall_last_tile(isa, rng, pixels, dtype):
    """NHWC GEMM rows (pixels) that leave one or two after the last full
    6-row tile: on AVX-512 they join it as a 7- or 8-row tile (gemm-inl.h
    kGemmTall): 49 = 7 x 6 + 7, 50, 51 (+ 9: no), 79 = 72 + 7 (the second
    MC block), 25 = 3 x 6 + 7; with C_in = 300 (two K slices), C_out = 100
    (a partial last panel, through the stack tile), bias and relu6; the
    gradients' GEMMs read the same operands in place by columns."""
    x = _x(rng, 1, 300, pixels, dtype, "NHWC")
    w = rand(rng, (100, 300), dtype)
    b = rand(rng, (100,), dtype)
    with taken() as paths:
        got = pydsconv.pointwise_conv2d(x, w, b, layout="NHWC", activation="relu6", num_threads=1)
    tall = VEC_BYTES[isa] == 64 and pixels != (3, 17)  # 51 = 8 x 6 + 3: no tall tile
    assert ("gemm_tall_tile" in paths) == tall, paths
    assert_close(got, ref.pointwise_conv2d(x, w, b, layout="NHWC", activation="relu6"), dtype)
    go = rand(rng, got.shape, dtype)
    for g, r in zip(
        pydsconv.pointwise_conv2d_backward(go, x, w, layout="NHWC", num_threads=1),
        ref.pointwise_conv2d_backward(go, x, w, layout="NHWC"),
    ):
        assert_close(g, r, dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_large_output_prefetching(isa, rng, layout):
    """Outputs of 256 KiB and more: the GEMM prefetches C's lines ahead of its
    stores (heuristics.h gemm_prefetch_c), here with edge rows and columns (8190
    pixels, 161 channels), forward and input gradient."""
    x = _x(rng, 2, 48, (63, 65), np.float32, layout)
    w = rand(rng, (161, 48), np.float32)
    b = rand(rng, (161,), np.float32)
    with taken() as paths:
        y = pydsconv.pointwise_conv2d(x, w, b, layout=layout, activation="relu6", num_threads=2)
    assert "gemm_prefetch_c" in paths, paths
    assert y.nbytes >= 256 << 10
    assert_close(y, ref.pointwise_conv2d(x, w, b, layout=layout, activation="relu6"), np.float32)
    # The input gradient of the transposed problem (161 <- 48) is 5 MiB.
    x2 = _x(rng, 2, 161, (63, 65), np.float32, layout)
    w2 = rand(rng, (48, 161), np.float32)
    go = _x(rng, 2, 48, (63, 65), np.float32, layout)
    gx, _, _ = pydsconv.pointwise_conv2d_backward(
        go, x2, w2, layout=layout, weight_grad=False, bias_grad=False
    )
    assert gx.nbytes >= 256 << 10
    assert_close(gx, ref.pointwise_conv2d_backward(go, x2, w2, layout=layout)[0], np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("ci,co", [(8, 70), (3, 38), (6, 40)])
def test_row_bands(isa, rng, ci, co, layout, dtype):
    """Few input channels (K <= 8: a B slice of at most 16 KiB): the GEMM
    runs its tiles in row bands (every full column panel of a row band before
    the next band), the columns past the last full panel and the last rows
    as usual.  2 x 56 x 56 pixels (NHWC) leave 8 rows after the last 72-row
    block, and 38 output channels (NCHW) 8 after the last full tiles: a tall
    last tile with 64-byte vectors; the output is large enough for C
    prefetching.  Same bits for 1 and 2 threads, forward and input gradient
    (whose GEMM has K = C_out and C_in columns)."""
    x = _x(rng, 2, ci, (56, 56), dtype, layout)
    w = rand(rng, (co, ci), dtype)
    b = rand(rng, (co,), dtype)
    with taken() as paths:
        ys = [
            pydsconv.pointwise_conv2d(x, w, b, layout=layout, activation="relu6", num_threads=t)
            for t in (1, 2)
        ]
    assert "gemm_row_bands" in paths, paths
    np.testing.assert_array_equal(ys[0], ys[1])
    assert_close(ys[0], ref.pointwise_conv2d(x, w, b, layout=layout, activation="relu6"), dtype)
    # Input gradient: K = co, ci columns (banded where co * ci is small).
    go = _x(rng, 2, co, (56, 56), dtype, layout)
    gxs = [
        pydsconv.pointwise_conv2d_backward(
            go, x, w, layout=layout, weight_grad=False, bias_grad=False, num_threads=t
        )[0]
        for t in (1, 2)
    ]
    np.testing.assert_array_equal(gxs[0], gxs[1])
    assert_close(gxs[0], ref.pointwise_conv2d_backward(go, x, w, layout=layout)[0], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "n,hw,ci,co",
    [(1, (7, 7), 128, 200), (1, (5, 5), 64, 130), (2, (6, 7), 64, 100), (1, (3, 3), 70, 33)],
)
def test_forward_few_pixels(isa, rng, n, hw, ci, co, layout, dtype):
    """Few pixels: the threads split the output channels, and the NHWC weight
    is transposed block by block inside the GEMM (up to 72 pixels) or packed
    once (more); C_in = 64, 128 puts the weight rows a power of two apart."""
    x = _x(rng, n, ci, hw, dtype, layout)
    w = rand(rng, (co, ci), dtype)
    b = rand(rng, (co,), dtype)
    ys = [
        pydsconv.pointwise_conv2d(x, w, b, layout=layout, activation="relu6", num_threads=t)
        for t in (1, 2, 3)
    ]
    for y in ys[1:]:
        np.testing.assert_array_equal(ys[0], y)
    assert_close(ys[0], ref.pointwise_conv2d(x, w, b, layout=layout, activation="relu6"), dtype)
    go = rand(rng, ys[0].shape, dtype)
    for g, r in zip(
        pydsconv.pointwise_conv2d_backward(go, x, w, layout=layout),
        ref.pointwise_conv2d_backward(go, x, w, layout=layout),
    ):
        assert_close(g, r, dtype)


def test_nchw_small_planes_in_groups(isa, rng):
    """NCHW planes of up to 64 pixels run as NHWC on copies of at most 16 MiB
    at a time: 42 float64 images of 1024 x 7 x 7 are two groups, for the
    forward (input copy) and the input gradient (grad_out copy)."""
    x = rand(rng, (42, 1024, 7, 7), np.float64)
    w = rand(rng, (1024, 1024), np.float64)
    b = rand(rng, (1024,), np.float64)
    y = pydsconv.pointwise_conv2d(x, w, b, activation="relu")
    go = rand(rng, y.shape, np.float64)
    gx, _, _ = pydsconv.pointwise_conv2d_backward(go, x, w, weight_grad=False, bias_grad=False)
    for n in (0, 40, 41):
        sl = slice(n, n + 1)
        assert_close(y[sl], ref.pointwise_conv2d(x[sl], w, b, activation="relu"), np.float64)
        assert_close(gx[sl], ref.pointwise_conv2d_backward(go[sl], x[sl], w)[0], np.float64)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("hw", [(1, 1), (1, 7), (16, 16), (17, 17)])
def test_forward_image_sizes(isa, rng, layout, hw):
    """Pixel counts below/at/above the vector width and a 256 block edge."""
    dtype = np.float32
    x = _x(rng, 2, 5, hw, dtype, layout)
    w = rand(rng, (9, 5, 1, 1), dtype)
    b = rand(rng, (9,), dtype)
    assert_close(
        pydsconv.pointwise_conv2d(x, w, b, layout=layout),
        ref.pointwise_conv2d(x, w, b, layout=layout),
        dtype,
    )


# ---------------------------------------------------------------------------
# Backward vs the reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("idx,pair", list(enumerate(PAIRS)))
def test_backward_matches_reference(isa, rng, idx, pair, layout, dtype):
    ci, co = pair
    w2d = bool(idx % 2)
    x = _x(rng, 3, ci, HW, dtype, layout, scale=1.0)
    w = rand(rng, (co, ci) if w2d else (co, ci, 1, 1), dtype)
    go_shape = (3, co) + HW if layout == "NCHW" else (3,) + HW + (co,)
    go = rand(rng, go_shape, dtype)
    gx, gw, gb = pydsconv.pointwise_conv2d_backward(go, x, w, layout=layout)
    rx, rw, rb = ref.pointwise_conv2d_backward(go, x, w, layout=layout)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == (co,)
    assert_close(gx, rx, dtype)
    assert_close(gw, rw, dtype)
    assert_close(gb, rb, dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("flags", list(itertools.product([False, True], repeat=3)))
def test_backward_flags(isa, rng, flags, layout):
    dtype = np.float64
    x = _x(rng, 2, 6, (4, 5), dtype, layout)
    w = rand(rng, (7, 6), dtype)
    go = rand(rng, (2, 7, 4, 5) if layout == "NCHW" else (2, 4, 5, 7), dtype)
    ig, wg, bg = flags
    got = pydsconv.pointwise_conv2d_backward(
        go, x, w, layout=layout, input_grad=ig, weight_grad=wg, bias_grad=bg
    )
    full = ref.pointwise_conv2d_backward(go, x, w, layout=layout)
    assert isinstance(got, tuple) and len(got) == 3
    for flag, g, r in zip(flags, got, full):
        if flag:
            assert_close(g, r, dtype)
        else:
            assert g is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_backward_deterministic_across_threads(rng, layout, dtype):
    """Same bits for any thread count (docs/api.md, num_threads); large enough to use threads."""
    ci, co = 70, 130
    x = _x(rng, 3, ci, (20, 21), dtype, layout)
    w = rand(rng, (co, ci, 1, 1), dtype)
    go = rand(rng, (3, co, 20, 21) if layout == "NCHW" else (3, 20, 21, co), dtype)
    results = [
        pydsconv.pointwise_conv2d_backward(go, x, w, layout=layout, num_threads=t)
        for t in (1, 2, 3)
    ]
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)
    fwd = [pydsconv.pointwise_conv2d(x, w, layout=layout, num_threads=t) for t in (1, 2, 3)]
    for other in fwd[1:]:
        np.testing.assert_array_equal(fwd[0], other)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n, hw", [(1, (64, 70)), (3, (37, 41))])
def test_backward_weight_grad_split_over_pixels(isa, rng, n, hw, layout, dtype):
    """Few output channels and many pixels: cpp/pointwise.cpp splits the
    pixel sum of grad_weight/grad_bias into chunks (image boundaries fall
    inside chunks when n = 3) and adds the partial sums in chunk order.  The
    result is right and has the same bits for any thread count."""
    ci, co = 19, 40
    x = _x(rng, n, ci, hw, dtype, layout, scale=1.0)
    w = rand(rng, (co, ci), dtype)
    go = rand(rng, (n, co) + hw if layout == "NCHW" else (n,) + hw + (co,), dtype)
    want = ref.pointwise_conv2d_backward(go, x, w, layout=layout, input_grad=False)
    base = pydsconv.pointwise_conv2d_backward(
        go, x, w, layout=layout, input_grad=False, num_threads=1
    )
    assert base[0] is None
    assert_close(base[1], want[1], dtype)
    assert_close(base[2], want[2], dtype)
    for t in (2, 3, 5):
        got = pydsconv.pointwise_conv2d_backward(
            go, x, w, layout=layout, input_grad=False, num_threads=t
        )
        np.testing.assert_array_equal(got[1], base[1])
        np.testing.assert_array_equal(got[2], base[2])
    # Bias gradient alone takes the same path and gives the same bits.
    only_b = pydsconv.pointwise_conv2d_backward(
        go, x, w, layout=layout, input_grad=False, weight_grad=False, num_threads=2
    )
    assert only_b[1] is None
    np.testing.assert_array_equal(only_b[2], base[2])


# ---------------------------------------------------------------------------
# Batch 0, non-contiguous inputs, out=
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_batch_zero(isa, rng, layout, dtype):
    ci, co = 5, 7
    x = np.zeros((0, ci, 4, 3) if layout == "NCHW" else (0, 4, 3, ci), dtype)
    w = rand(rng, (co, ci, 1, 1), dtype)
    b = rand(rng, (co,), dtype)
    y = pydsconv.pointwise_conv2d(x, w, b, layout=layout, activation="relu")
    assert y.shape == ((0, co, 4, 3) if layout == "NCHW" else (0, 4, 3, co))
    assert y.dtype == dtype
    out = np.empty(y.shape, dtype)
    assert pydsconv.pointwise_conv2d(x, w, b, layout=layout, out=out) is out

    go = np.zeros(y.shape, dtype)
    gx, gw, gb = pydsconv.pointwise_conv2d_backward(go, x, w, layout=layout)
    assert gx.shape == x.shape and gx.dtype == dtype
    # Nothing to sum over: the gradients are exactly zero.
    np.testing.assert_array_equal(gw, np.zeros_like(w))
    np.testing.assert_array_equal(gb, np.zeros(co, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_non_contiguous_inputs(isa, rng, layout, dtype):
    ci, co = 17, 65
    # x: a strided slice of a bigger array; weight: a transposed view;
    # bias: every other element.
    big = _x(rng, 4, ci + 3, (16, 22), dtype, layout)
    if layout == "NCHW":
        x = big[::2, 1 : ci + 1, ::2, 1::2]
    else:
        x = big[::2, ::2, 1::2, 1 : ci + 1]
    assert not x.flags.c_contiguous
    w = rand(rng, (ci, co), dtype).T
    assert not w.flags.c_contiguous
    b = rand(rng, (2 * co,), dtype)[::2]
    got = pydsconv.pointwise_conv2d(x, w, b, layout=layout, activation="relu6")
    want = ref.pointwise_conv2d(
        np.ascontiguousarray(x),
        np.ascontiguousarray(w),
        np.ascontiguousarray(b),
        layout=layout,
        activation="relu6",
    )
    assert_close(got, want, dtype)
    # Inputs are left untouched.
    assert not x.flags.c_contiguous

    go_big = rand(rng, (got.shape[0] * 2,) + got.shape[1:], dtype)
    go = go_big[::2]
    assert not go.flags.c_contiguous
    w4 = rand(rng, (co, ci, 1, 2), dtype)[..., 1:]  # (co, ci, 1, 1) strided
    assert not w4.flags.c_contiguous
    got_g = pydsconv.pointwise_conv2d_backward(go, x, w4, layout=layout)
    want_g = ref.pointwise_conv2d_backward(
        np.ascontiguousarray(go), np.ascontiguousarray(x), np.ascontiguousarray(w4), layout=layout
    )
    assert got_g[1].shape == (co, ci, 1, 1)
    for g, r in zip(got_g, want_g):
        assert_close(g, r, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_out_filled_and_returned(isa, rng, layout, dtype):
    ci, co = 16, 130
    x = _x(rng, 2, ci, HW, dtype, layout)
    w = rand(rng, (co, ci, 1, 1), dtype)
    b = rand(rng, (co,), dtype)
    want = ref.pointwise_conv2d(x, w, b, layout=layout, activation="relu")
    out = np.full(want.shape, np.nan, dtype)
    got = pydsconv.pointwise_conv2d(x, w, b, layout=layout, activation="relu", out=out)
    assert got is out
    assert_close(out, want, dtype)
    # A second call overwrites (does not accumulate into) out.
    got2 = pydsconv.pointwise_conv2d(x, w, b, layout=layout, activation="relu", out=out)
    assert got2 is out
    assert_close(out, want, dtype)


def test_out_error_leaves_out_untouched(rng):
    x = rand(rng, (2, 4, 3, 3), np.float32)
    w = rand(rng, (5, 4), np.float32)
    out = np.full((2, 5, 3, 4), 7.0, np.float32)  # wrong shape
    with pytest.raises(ValueError):
        pydsconv.pointwise_conv2d(x, w, out=out)
    assert (out == 7.0).all()
    out = np.full((2, 5, 3, 3), 7.0, np.float64)  # wrong dtype
    with pytest.raises((ValueError, TypeError)):
        pydsconv.pointwise_conv2d(x, w, out=out)
    assert (out == 7.0).all()


# ---------------------------------------------------------------------------
# 1-D twins (same C++ with H = 1)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["NCL", "NLC"])
def test_conv1d_matches_reference(isa, rng, layout, dtype):
    ci, co, L = 17, 65, 300
    x = 3.0 * rand(rng, (2, ci, L), dtype)
    if layout == "NLC":
        x = np.ascontiguousarray(x.transpose(0, 2, 1))
    w = rand(rng, (co, ci, 1), dtype)
    b = rand(rng, (co,), dtype)
    got = pydsconv.pointwise_conv1d(x, w, b, layout=layout, activation="relu6")
    assert_close(got, ref.pointwise_conv1d(x, w, b, layout=layout, activation="relu6"), dtype)
    go = rand(rng, got.shape, dtype)
    got_g = pydsconv.pointwise_conv1d_backward(go, x, w, layout=layout)
    want_g = ref.pointwise_conv1d_backward(go, x, w, layout=layout)
    assert got_g[1].shape == w.shape
    for g, r in zip(got_g, want_g):
        assert_close(g, r, dtype)


# ---------------------------------------------------------------------------
# PyTorch as a second oracle
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("pair", [(3, 16), (65, 130), (130, 17)])
def test_vs_torch_forward_and_autograd(isa, rng, pair, layout):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    ci, co = pair
    dtype = np.float64
    x_nchw = rand(rng, (3, ci) + HW, dtype)
    w = rand(rng, (co, ci, 1, 1), dtype)
    b = rand(rng, (co,), dtype)
    go_nchw = rand(rng, (3, co) + HW, dtype)

    tx = torch.from_numpy(x_nchw).requires_grad_(True)
    tw = torch.from_numpy(w).requires_grad_(True)
    tb = torch.from_numpy(b).requires_grad_(True)
    ty = F.conv2d(tx, tw, tb)
    ty.backward(torch.from_numpy(go_nchw))

    conv = (lambda a: a) if layout == "NCHW" else to_nhwc
    x, go = conv(x_nchw), conv(go_nchw)
    y = pydsconv.pointwise_conv2d(x, w, b, layout=layout)
    assert_close(y, conv(ty.detach().numpy()), dtype)

    gx, gw, gb = pydsconv.pointwise_conv2d_backward(go, x, w, layout=layout)
    assert_close(gx, conv(tx.grad.numpy()), dtype)
    assert_close(gw, tw.grad.numpy(), dtype)
    assert_close(gb, tb.grad.numpy(), dtype)

    # 2-D weight: same values, grad_weight comes back 2-D.
    gx2, gw2, gb2 = pydsconv.pointwise_conv2d_backward(go, x, w[:, :, 0, 0], layout=layout)
    assert gw2.shape == (co, ci)
    assert_close(gw2, tw.grad.numpy()[:, :, 0, 0], dtype)


@pytest.mark.parametrize("act", ["relu", "relu6"])
def test_vs_torch_activation(rng, act):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    dtype = np.float64
    x = 3.0 * rand(rng, (2, 17, 9, 11), dtype)
    w = 3.0 * rand(rng, (40, 17, 1, 1), dtype)
    b = rand(rng, (40,), dtype)
    ty = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b))
    ty = F.relu(ty) if act == "relu" else F.relu6(ty)
    for layout in LAYOUTS:
        xx = x if layout == "NCHW" else to_nhwc(x)
        want = ty.numpy() if layout == "NCHW" else to_nhwc(ty.numpy())
        assert_close(
            pydsconv.pointwise_conv2d(xx, w, b, layout=layout, activation=act), want, dtype
        )
