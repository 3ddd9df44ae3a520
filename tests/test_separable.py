"""Tests of the fused separable op; mirrors cpp/separable.cpp.

separable_conv2d against pydsconv.reference on every ISA the host has, both
layouts and dtypes, over a compact battery of geometries (kernel sizes,
strides, dilations, every padding form, channel multiplier, channel counts
below/above the vector width, images smaller than the kernel); every
mid_activation x activation x bias combination; equality with the unfused
composition of pydsconv's own ops; batch 0; out=; identical bits for any
thread count; PyTorch (grouped conv then 1x1) as a second oracle; and a
subprocess memory test proving the intermediate is never materialised.
"""

import itertools
import os
import textwrap

import numpy as np
import pytest
from conftest import assert_close, rand, run_python, to_nhwc
from kernel_paths import lanes, taken

import pydsconv
from pydsconv import reference as ref

DTYPES = [np.float32, np.float64]
LAYOUTS = ["NCHW", "NHWC"]
ACTS = [None, "relu", "relu6"]

# (C, M, C_out, (H, W), (kH, kW), stride, dilation, padding, mid_act, act, dw_bias, pw_bias)
CONFIGS = [
    (1, 1, 1, (1, 1), (1, 1), 1, 1, 0, None, None, False, False),
    (8, 1, 16, (7, 7), (3, 3), 1, 1, 1, "relu", None, True, True),
    (17, 2, 40, (30, 29), (3, 3), 2, 1, "same", "relu6", "relu", True, False),
    (33, 1, 16, (13, 12), (5, 5), 1, 2, "same", None, "relu6", False, True),
    (8, 2, 1, (11, 10), (2, 3), 3, 1, ((1, 0), (2, 1)), "relu", "relu", True, True),
    (17, 1, 40, (9, 9), (5, 5), 2, 2, "valid", "relu6", None, False, False),
    (1, 2, 16, (2, 3), (3, 3), 1, 1, 1, "relu6", None, True, True),  # image < kernel
    (33, 2, 40, (20, 17), (1, 1), 2, 1, 0, None, "relu", False, True),
    (8, 1, 40, (30, 29), (2, 3), 1, 2, "same", "relu", "relu6", True, False),
    (17, 1, 1, (16, 15), (3, 3), 3, 2, (2, 1), None, None, True, False),
    (33, 1, 16, (5, 6), (3, 3), (1, 2), (2, 1), "same", "relu", None, False, True),
    (8, 2, 16, (3, 3), (5, 5), 1, 1, 2, None, "relu6", True, True),  # image < kernel
    (1, 1, 40, (30, 29), (3, 3), 2, 1, "valid", "relu", "relu", False, False),
    (17, 2, 16, (10, 12), (3, 3), 2, 2, ((0, 2), (3, 0)), "relu6", "relu6", True, True),
]


def _ids(cfg):
    c, m, co, hw, k, s, d, p, ma, a, db, pb = cfg
    return (
        f"C{c}M{m}o{co}-{hw[0]}x{hw[1]}-k{k[0]}x{k[1]}-s{s}-d{d}-p{p}-{ma}-{a}-{int(db)}{int(pb)}"
    )


def _make(rng, cfg, dtype, layout, n=2, xscale=2.0):
    c, m, co, hw, k, s, d, p, ma, a, has_db, has_pb = cfg
    x = xscale * rand(rng, (n, c) + hw, dtype)
    if layout == "NHWC":
        x = to_nhwc(x)
    dw = rand(rng, (c * m, 1) + k, dtype)
    pw = rand(rng, (co, c * m, 1, 1), dtype)
    db = rand(rng, (c * m,), dtype) if has_db else None
    pb = rand(rng, (co,), dtype) if has_pb else None
    kw = dict(stride=s, padding=p, dilation=d, layout=layout, mid_activation=ma, activation=a)
    return x, dw, pw, db, pb, kw


def _unfused(x, dw, pw, db, pb, kw, **extra):
    """pointwise_conv2d(mid_act(depthwise_conv2d(...))) with pydsconv's own ops."""
    mid = pydsconv.depthwise_conv2d(
        x,
        dw,
        db,
        stride=kw["stride"],
        padding=kw["padding"],
        dilation=kw["dilation"],
        layout=kw["layout"],
        activation=kw["mid_activation"],
        **extra,
    )
    return pydsconv.pointwise_conv2d(
        mid, pw, pb, layout=kw["layout"], activation=kw["activation"], **extra
    )


# ---------------------------------------------------------------------------
# Against the reference and the unfused composition
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
def test_matches_reference(isa, rng, cfg, layout, dtype):
    x, dw, pw, db, pb, kw = _make(rng, cfg, dtype, layout)
    got = pydsconv.separable_conv2d(x, dw, pw, db, pb, **kw)
    want = ref.separable_conv2d(x, dw, pw, db, pb, **kw)
    assert got.flags.c_contiguous
    assert_close(got, want, dtype)
    # The same op, unfused, from pydsconv's own kernels.
    assert_close(got, _unfused(x, dw, pw, db, pb, kw), dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("has_db,has_pb", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("mid_act,act", list(itertools.product(ACTS, ACTS)))
def test_activation_and_bias_combinations(isa, rng, mid_act, act, has_db, has_pb, layout):
    dtype = np.float32
    cfg = (8, 2, 16, (9, 8), (3, 3), 1, 1, "same", mid_act, act, has_db, has_pb)
    x, dw, pw, db, pb, kw = _make(rng, cfg, dtype, layout, xscale=4.0)
    pw *= 3.0
    got = pydsconv.separable_conv2d(x, dw, pw, db, pb, **kw)
    want = ref.separable_conv2d(x, dw, pw, db, pb, **kw)
    assert_close(got, want, dtype)
    if act == "relu6":
        assert (want == 6).any() and (want == 0).any()
    if mid_act is not None:  # the mid activation must change the result
        plain = ref.separable_conv2d(x, dw, pw, db, pb, **dict(kw, mid_activation=None))
        assert not np.allclose(plain, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_two_dim_pointwise_weight(isa, rng, layout, dtype):
    cfg = CONFIGS[2]
    x, dw, pw, db, pb, kw = _make(rng, cfg, dtype, layout)
    got = pydsconv.separable_conv2d(x, dw, pw[:, :, 0, 0].copy(), db, pb, **kw)
    assert_close(got, ref.separable_conv2d(x, dw, pw, db, pb, **kw), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_many_tiles_and_images(isa, rng, layout, dtype):
    """Enough pixels x channels that the op splits into several tiles per
    image (the 128 KiB tile holds ~1000 pixels of 33 channels), one batch."""
    cfg = (33, 1, 16, (48, 47), (3, 3), 1, 1, 1, "relu", None, True, True)
    x, dw, pw, db, pb, kw = _make(rng, cfg, dtype, layout, n=3)
    got = pydsconv.separable_conv2d(x, dw, pw, db, pb, **kw)
    assert_close(got, ref.separable_conv2d(x, dw, pw, db, pb, **kw), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_non_contiguous_inputs(isa, rng, layout, dtype):
    cfg = CONFIGS[3]
    x, dw, pw, db, pb, kw = _make(rng, cfg, dtype, layout)
    xs = np.repeat(x, 2, axis=2)[:, :, ::2]  # strided view, same values
    dws = np.asfortranarray(dw)
    pws = pw[:, :, 0, 0].T.copy().T  # (C_out, C*M) transposed view
    pbs = np.repeat(pb, 2)[::2]
    assert not (
        xs.flags.c_contiguous
        or dws.flags.c_contiguous
        or pws.flags.c_contiguous
        or pbs.flags.c_contiguous
    )
    got = pydsconv.separable_conv2d(xs, dws, pws, db, pbs, **kw)
    assert_close(got, ref.separable_conv2d(x, dw, pw, db, pb, **kw), dtype)


# ---------------------------------------------------------------------------
# Batch 0, out=, threads
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_batch_zero(isa, rng, layout, dtype):
    cfg = CONFIGS[2]
    x, dw, pw, db, pb, kw = _make(rng, cfg, dtype, layout, n=0)
    assert x.shape[0] == 0
    y = pydsconv.separable_conv2d(x, dw, pw, db, pb, **kw)
    # 30x29, k3, stride 2, "same" -> 15x15; C_out 40.
    assert y.shape == ((0, 40, 15, 15) if layout == "NCHW" else (0, 15, 15, 40))
    assert y.dtype == dtype
    out = np.empty(y.shape, dtype)
    assert pydsconv.separable_conv2d(x, dw, pw, db, pb, out=out, **kw) is out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_out_filled_and_returned(isa, rng, layout, dtype):
    cfg = CONFIGS[4]
    x, dw, pw, db, pb, kw = _make(rng, cfg, dtype, layout)
    want = ref.separable_conv2d(x, dw, pw, db, pb, **kw)
    out = np.full(want.shape, np.nan, dtype)
    got = pydsconv.separable_conv2d(x, dw, pw, db, pb, out=out, **kw)
    assert got is out
    assert_close(out, want, dtype)
    got = pydsconv.separable_conv2d(x, dw, pw, db, pb, out=out, **kw)  # overwrite, no +=
    assert_close(out, want, dtype)


def test_out_error_leaves_out_untouched(rng):
    x, dw, pw, db, pb, kw = _make(rng, CONFIGS[1], np.float32, "NCHW")
    out = np.full((2, 16, 7, 6), 5.0, np.float32)  # wrong shape (7x7 expected)
    with pytest.raises(ValueError):
        pydsconv.separable_conv2d(x, dw, pw, db, pb, out=out, **kw)
    assert (out == 5.0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cfg", [CONFIGS[2], CONFIGS[8]], ids=_ids)
def test_threads_identical_bits(isa, rng, cfg, layout, dtype):
    x, dw, pw, db, pb, kw = _make(rng, cfg, dtype, layout, n=3)
    ys = [pydsconv.separable_conv2d(x, dw, pw, db, pb, num_threads=t, **kw) for t in (1, 2, 3)]
    np.testing.assert_array_equal(ys[0], ys[1])
    np.testing.assert_array_equal(ys[0], ys[2])
    assert_close(ys[0], ref.separable_conv2d(x, dw, pw, db, pb, **kw), dtype)


def test_threads_identical_bits_single_image(rng):
    """N = 1: the tile size itself depends on the thread count."""
    cfg = (17, 2, 40, (30, 29), (3, 3), 1, 1, "same", "relu", None, True, True)
    for layout in LAYOUTS:
        x, dw, pw, db, pb, kw = _make(rng, cfg, np.float32, layout, n=1)
        ys = [
            pydsconv.separable_conv2d(x, dw, pw, db, pb, num_threads=t, **kw)
            for t in (1, 2, 3, 8, pydsconv.cpu_features()["max_threads"])
        ]
        for y in ys[1:]:
            np.testing.assert_array_equal(ys[0], y)


# MobileNet's late blocks at small scale: few output pixels and many
# channels, so a batch has one or two tiles and the threads split the output
# channels instead (C_out not a multiple of the split unit); the NHWC weight is
# then transposed block by block inside the GEMM rather than packed once.
# C*M = 64, 128 and 512 make the weight rows a power of two apart.
WIDE = [  # (C, M, C_out, (H, W), stride, N)
    (64, 1, 200, (7, 7), 1, 1),
    (64, 2, 130, (5, 6), 1, 1),
    (32, 2, 300, (9, 9), 2, 1),
    (64, 1, 200, (7, 7), 1, 3),
    (48, 1, 96, (14, 14), 2, 2),
    (256, 2, 64, (14, 14), 1, 1),  # C*M = 512: two tiles, the boundary inside a row
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", WIDE, ids=str)
def test_few_pixels_many_channels(isa, rng, case, layout, dtype):
    c, m, co, hw, s, n = case
    cfg = (c, m, co, hw, (3, 3), s, 1, "same", "relu6", "relu6", True, True)
    x, dw, pw, db, pb, kw = _make(rng, cfg, dtype, layout, n=n)
    with taken() as paths:
        ys = [pydsconv.separable_conv2d(x, dw, pw, db, pb, num_threads=t, **kw) for t in (1, 2, 3)]
    if layout == "NCHW" and m == 1 and hw == (7, 7):
        # 7x7 planes via NHWC; where 49 pixels fill 4 of 64 lanes badly
        # (16 lanes), the GEMM runs pixel-major and is transposed (flip).
        assert "sep_nchw_via_nhwc" in paths, paths
        assert ("sep_nchw_flip" in paths) == (lanes(isa, dtype) == 16), paths
    for y in ys[1:]:
        np.testing.assert_array_equal(ys[0], y)
    assert_close(ys[0], ref.separable_conv2d(x, dw, pw, db, pb, **kw), dtype)
    assert_close(ys[0], _unfused(x, dw, pw, db, pb, kw), dtype)


# Small maps at batch > 1: tiles run across images (sep_batch_tiles).  C*M =
# 511 (odd) makes a batch tile 258 (float32) or 132 (float64) pixels at most:
# tiles of 7x7 maps end inside images and inside rows; 5x6 maps, odd rows.
BATCH_TILES = [  # (C, C_out, (H, W), stride)
    (511, 17, (7, 7), 1),
    (511, 40, (14, 14), 2),  # 7x7 output
    (511, 9, (5, 6), 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", BATCH_TILES, ids=str)
def test_batch_tiles_across_images(isa, rng, case, layout, dtype):
    c, co, hw, s = case
    cfg = (c, 1, co, hw, (3, 3), s, 1, "same", "relu6", "relu", True, True)
    x, dw, pw, db, pb, kw = _make(rng, cfg, dtype, layout, n=9)
    # Each image alone (batch 1: tiles inside the image) is the oracle for
    # the bits of every batch: same tiles' sums, same order.
    singles = np.concatenate(
        [
            pydsconv.separable_conv2d(x[i : i + 1], dw, pw, db, pb, num_threads=1, **kw)
            for i in range(9)
        ]
    )
    assert_close(singles, ref.separable_conv2d(x, dw, pw, db, pb, **kw), dtype)
    # NHWC always; NCHW where the GEMM runs pixel-major (the 7x7 flip, 16
    # lanes) on a group of 2+ images (1 MiB of channels-last input).
    out_hw = (-(-hw[0] // s), -(-hw[1] // s))  # "same" padding
    flip = layout == "NCHW" and lanes(isa, dtype) == 16 and out_hw == (7, 7)
    group = (1 << 20) // (hw[0] * hw[1] * c * np.dtype(dtype).itemsize)
    for n in range(1, 10):
        for t in (1, 2, 3):
            with taken() as paths:
                y = pydsconv.separable_conv2d(x[:n], dw, pw, db, pb, num_threads=t, **kw)
            np.testing.assert_array_equal(y, singles[:n])
            cross = n > 1 and (layout == "NHWC" or (flip and group > 1))
            assert ("sep_batch_tiles" in paths) == cross, (n, t, paths)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_large_output_prefetching(isa, rng, layout):
    """An output of 256 KiB or more: the GEMM prefetches y's lines ahead of
    its stores (heuristics.h gemm_prefetch_c); 65 x 66 pixels and 161 channels
    leave edge rows and columns in the register tiles."""
    cfg = (32, 1, 161, (65, 66), (3, 3), 1, 1, "same", "relu6", "relu", True, True)
    x, dw, pw, db, pb, kw = _make(rng, cfg, np.float32, layout, n=2)
    with taken() as paths:
        y = pydsconv.separable_conv2d(x, dw, pw, db, pb, num_threads=2, **kw)
    assert "gemm_prefetch_c" in paths, paths
    assert y.nbytes >= 256 << 10
    assert_close(y, ref.separable_conv2d(x, dw, pw, db, pb, **kw), np.float32)


def test_nchw_small_planes_in_groups(isa, rng):
    """The fused NCHW op on small planes (rows of at most four vectors and
    32 pixels: 16 float32 pixels on the scalar set, 32 on AVX2 and
    AVX-512) transposes at most 1 MiB of input (or one image) at a time: 3
    float32 images of 576 x 16 x 16 (576 KiB each) are three groups."""
    cfg = (576, 1, 24, (16, 16), (3, 3), 1, 1, "same", "relu6", None, True, True)
    x, dw, pw, db, pb, kw = _make(rng, cfg, np.float32, "NCHW", n=3)
    with taken() as paths:
        y = pydsconv.separable_conv2d(x, dw, pw, db, pb, **kw)
    assert "sep_nchw_via_nhwc" in paths, paths
    for n in (0, 1, 2):
        assert_close(
            y[n : n + 1], ref.separable_conv2d(x[n : n + 1], dw, pw, db, pb, **kw), np.float32
        )


def test_concurrent_python_threads(rng):
    """Several Python threads at once (the GIL is released; each call has its
    own scratch tiles) give the same results as one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    cases = []
    for i, cfg in enumerate([CONFIGS[2], CONFIGS[3], CONFIGS[8], CONFIGS[13]] * 2):
        dtype, layout = DTYPES[i % 2], LAYOUTS[(i // 2) % 2]
        cases.append(_make(rng, cfg, dtype, layout))
    serial = [pydsconv.separable_conv2d(x, dw, pw, db, pb, **kw) for x, dw, pw, db, pb, kw in cases]

    def run(case):
        x, dw, pw, db, pb, kw = case
        return [pydsconv.separable_conv2d(x, dw, pw, db, pb, num_threads=2, **kw) for _ in range(5)]

    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        results = list(pool.map(run, cases))
    for want, got in zip(serial, results):
        for y in got:
            np.testing.assert_array_equal(y, want)


# ---------------------------------------------------------------------------
# 1-D twin (same C++ with H = 1)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["NCL", "NLC"])
@pytest.mark.parametrize("padding", [0, "same", "causal", (3, 1)])
def test_conv1d_matches_reference(isa, rng, padding, layout, dtype):
    c, m, co, L = 17, 2, 16, 50
    x = 2.0 * rand(rng, (2, c, L), dtype)
    if layout == "NLC":
        x = np.ascontiguousarray(x.transpose(0, 2, 1))
    dw = rand(rng, (c * m, 1, 3), dtype)
    pw = rand(rng, (co, c * m, 1), dtype)
    db, pb = rand(rng, (c * m,), dtype), rand(rng, (co,), dtype)
    kw = dict(
        stride=2,
        padding=padding,
        dilation=2,
        layout=layout,
        mid_activation="relu",
        activation="relu6",
    )
    got = pydsconv.separable_conv1d(x, dw, pw, db, pb, **kw)
    assert_close(got, ref.separable_conv1d(x, dw, pw, db, pb, **kw), dtype)


# ---------------------------------------------------------------------------
# PyTorch as a second oracle
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "cfg",
    [
        # (C, M, C_out, (H, W), (kH, kW), stride, dilation, torch padding (ph, pw))
        (17, 2, 40, (30, 29), (3, 3), 2, 1, (1, 1)),
        (8, 1, 16, (13, 12), (5, 3), (1, 2), (2, 1), (4, 0)),
    ],
)
def test_vs_torch(isa, rng, cfg, layout):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    c, m, co, hw, k, s, d, p = cfg
    dtype = np.float64
    x = rand(rng, (2, c) + hw, dtype)
    dw = rand(rng, (c * m, 1) + k, dtype)
    pw = rand(rng, (co, c * m, 1, 1), dtype)
    db, pb = rand(rng, (c * m,), dtype), rand(rng, (co,), dtype)
    mid = F.conv2d(
        torch.from_numpy(x),
        torch.from_numpy(dw),
        torch.from_numpy(db),
        stride=s,
        padding=p,
        dilation=d,
        groups=c,
    )
    ty = F.conv2d(F.relu(mid), torch.from_numpy(pw), torch.from_numpy(pb)).numpy()
    xx = x if layout == "NCHW" else to_nhwc(x)
    want = ty if layout == "NCHW" else to_nhwc(ty)
    got = pydsconv.separable_conv2d(
        xx, dw, pw, db, pb, stride=s, padding=p, dilation=d, layout=layout, mid_activation="relu"
    )
    assert_close(got, want, dtype)


# ---------------------------------------------------------------------------
# The intermediate is never materialised
# ---------------------------------------------------------------------------

_MEMORY_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import pydsconv

    layout, mode = sys.argv[1], sys.argv[2]
    def status_kib(key):
        with open("/proc/self/status") as f:
            return int(next(l for l in f if l.startswith(key + ":")).split()[1])
    def peak_kib():
        # High-water mark of the resident set, KiB.  getrusage's ru_maxrss
        # would be the natural call, but Linux carries the *parent's* RSS
        # into it across fork/vfork + exec (a child of a pytest process that
        # imported torch starts at ~140 MiB), which would hide growth.
        # VmHWM belongs to this process's own address space only.
        return status_kib("VmHWM")
    def current_kib():
        return status_kib("VmRSS")

    C, M, H, W, CO = 64, 4, 512, 512, 8
    rng = np.random.default_rng(0)
    shape = (1, C, H, W) if layout == "NCHW" else (1, H, W, C)
    # Filled in place (no float64 temporary that would raise the baseline
    # peak above the current RSS and hide growth during the call).
    x = np.empty(shape, np.float32)                              # 64 MiB, touched
    rng.random(out=x, dtype=np.float32)
    x -= 0.5
    dw = rng.uniform(-1, 1, size=(C * M, 1, 3, 3)).astype(np.float32)
    pw = rng.uniform(-1, 1, size=(CO, C * M, 1, 1)).astype(np.float32)
    out_shape = (1, CO, H, W) if layout == "NCHW" else (1, H, W, CO)
    out = np.ones(out_shape, np.float32)                         # 8 MiB, touched
    # Warm up (thread pool, lazy allocations) on a tiny problem.
    xs = np.ascontiguousarray(x[:, :, :8, :8] if layout == "NCHW" else x[:, :8, :8, :])
    pydsconv.separable_conv2d(xs, dw, pw, padding=1, layout=layout)
    base, cur = peak_kib(), current_kib()
    if mode == "fused":
        y = pydsconv.separable_conv2d(x, dw, pw, padding=1, layout=layout, out=out)
    else:  # the same result computed unfused (used to check the test's power)
        mid = pydsconv.depthwise_conv2d(x, dw, padding=1, layout=layout)
        y = pydsconv.pointwise_conv2d(mid, pw, layout=layout, out=out)
        del mid
    peak = peak_kib()
    assert y is out
    print(base, cur, peak, float(np.abs(out).sum()))
""")


def _rss_growth_mib(layout, mode):
    """(peak growth during the call, baseline peak - baseline RSS), MiB."""
    proc = run_python(_MEMORY_SCRIPT, args=(layout, mode), timeout=300)
    assert proc.returncode == 0, proc.stderr
    base, cur, peak, total = proc.stdout.split()
    assert float(total) > 0  # the result was written
    return (int(peak) - int(base)) / 1024.0, (int(base) - int(cur)) / 1024.0


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_fused_never_materialises_intermediate(layout):
    """Peak RSS growth of a call whose intermediate would be 256 MiB
    (1 x 256 x 512 x 512 float32) stays far below it.  Computed unfused
    (mode "unfused" of the same script), the growth is >= 256 MiB."""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs Linux /proc to read the peak RSS")
    intermediate_mib = 1 * 64 * 4 * 512 * 512 * 4 / 2**20
    assert intermediate_mib == 256
    growth, slack = _rss_growth_mib(layout, "fused")
    # The baseline peak sits at the current RSS, so any allocation made
    # during the call shows up as growth (the test has the power to fail).
    assert slack < 16, f"baseline peak is {slack:.1f} MiB above the RSS"
    assert growth < 64, f"peak RSS grew by {growth:.1f} MiB during the call"
