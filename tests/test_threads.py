"""Threads: determinism, the module setting, Python-level concurrency, ISA choice.

* every op, forward and backward (all three gradients), both layouts, gives
  the same bits (np.array_equal) for num_threads = 1, 2, 3, on shapes big
  enough that the core really splits the work;
* set_num_threads / get_num_threads round-trip; the default follows
  OMP_NUM_THREADS (checked in a subprocess, the setting is read at import);
* 8 Python threads calling every op at once get the same bits as
  sequential calls, also while another thread keeps calling set_num_threads;
  the GIL is released while the core runs;
* cpu_features(): "isa" and the PYDSCONV_ISA override (subprocesses).
"""

import concurrent.futures
import json
import os
import sys
import threading
import time

import numpy as np
import pytest
from conftest import assert_close, rand, run_python, to_nhwc
from kernel_paths import taken

import pydsconv
from pydsconv import reference as ref

# ---------------------------------------------------------------------------
# Problems: every op, big enough to be split across threads
# ---------------------------------------------------------------------------


def _problems(layout2d, dtype=np.float32, seed=0, big=True):
    """[(name, fn_name, arrays dict, kwargs)] for every op, in one 2-D layout
    ("NCHW" / "NHWC"); the 1-D ops use the matching "NCL" / "NLC"."""
    rng = np.random.default_rng(seed)
    cl = layout2d == "NHWC"
    layout1d = "NLC" if cl else "NCL"
    if big:
        N, C, H, W, Cout, M, L = 2, 32, 40, 40, 48, 1, 1600
    else:
        N, C, H, W, Cout, M, L = 2, 16, 16, 16, 24, 1, 256
    x2 = rand(rng, (N, C, H, W), dtype)
    x1 = rand(rng, (N, C, L), dtype)
    if cl:
        x2 = to_nhwc(x2)
        x1 = np.ascontiguousarray(x1.transpose(0, 2, 1))
    dw2 = rand(rng, (C * M, 1, 3, 3), dtype)
    dw1 = rand(rng, (C * M, 1, 5), dtype)
    pw2 = rand(rng, (Cout, C * M, 1, 1), dtype)
    pw1 = rand(rng, (Cout, C * M), dtype)
    db = rand(rng, (C * M,), dtype)
    pb = rand(rng, (Cout,), dtype)
    pw_plain = rand(rng, (Cout, C), dtype)
    conv2 = dict(stride=1, padding="same", layout=layout2d)
    conv2s = dict(stride=(2, 1), padding=((1, 2), (0, 1)), dilation=(1, 2), layout=layout2d)
    conv1 = dict(padding="causal", dilation=2, layout=layout1d)

    def fwd_shape(fn, *args, **kw):
        return getattr(pydsconv, fn)(*args, **kw, num_threads=1).shape

    probs = [
        (
            "dw2",
            "depthwise_conv2d",
            dict(x=x2, weight=dw2, bias=db),
            dict(conv2, activation="relu6"),
        ),
        ("dw2s", "depthwise_conv2d", dict(x=x2, weight=dw2), conv2s),
        (
            "pw2",
            "pointwise_conv2d",
            dict(x=x2, weight=pw_plain.reshape(Cout, C, 1, 1), bias=pb),
            dict(layout=layout2d, activation="relu"),
        ),
        (
            "sep2",
            "separable_conv2d",
            dict(
                x=x2,
                depthwise_weight=dw2,
                pointwise_weight=pw2,
                depthwise_bias=db,
                pointwise_bias=pb,
            ),
            dict(conv2, mid_activation="relu", activation="relu6"),
        ),
        (
            "sep2s",
            "separable_conv2d",
            dict(x=x2, depthwise_weight=dw2, pointwise_weight=pw2),
            conv2s,
        ),
        ("dw1", "depthwise_conv1d", dict(x=x1, weight=dw1, bias=db), conv1),
        ("pw1", "pointwise_conv1d", dict(x=x1, weight=pw_plain, bias=pb), dict(layout=layout1d)),
        (
            "sep1",
            "separable_conv1d",
            dict(
                x=x1,
                depthwise_weight=dw1,
                pointwise_weight=pw1,
                depthwise_bias=db,
                pointwise_bias=pb,
            ),
            dict(conv1, mid_activation="relu6"),
        ),
    ]
    # Backward: grad_out shaped like the forward result.
    for name, fwd, bwd, x, w, kw in [
        ("dw2b", "depthwise_conv2d", "depthwise_conv2d_backward", x2, dw2, conv2),
        ("dw2sb", "depthwise_conv2d", "depthwise_conv2d_backward", x2, dw2, conv2s),
        (
            "pw2b",
            "pointwise_conv2d",
            "pointwise_conv2d_backward",
            x2,
            pw_plain.reshape(Cout, C, 1, 1),
            dict(layout=layout2d),
        ),
        (
            "pw2b2d",
            "pointwise_conv2d",
            "pointwise_conv2d_backward",
            x2,
            pw_plain,
            dict(layout=layout2d),
        ),
        ("dw1b", "depthwise_conv1d", "depthwise_conv1d_backward", x1, dw1, conv1),
        (
            "pw1b",
            "pointwise_conv1d",
            "pointwise_conv1d_backward",
            x1,
            pw_plain,
            dict(layout=layout1d),
        ),
        # C_out = 160: the weight gradient is split across several tasks too.
        (
            "pw2b_wide",
            "pointwise_conv2d",
            "pointwise_conv2d_backward",
            x2,
            rand(rng, (160, C), dtype),
            dict(layout=layout2d),
        ),
    ]:
        gy = rand(rng, fwd_shape(fwd, x, w, **kw), dtype)
        probs.append((name, bwd, dict(grad_out=gy, x=x, weight=w), kw))
    return probs


def _run(fn_name, arrays, kw, **extra):
    res = getattr(pydsconv, fn_name)(**arrays, **kw, **extra)
    return res if isinstance(res, tuple) else (res,)


def _same_bits(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert (u is None) == (v is None)
        if u is not None:
            assert u.dtype == v.dtype and u.shape == v.shape
            assert np.array_equal(u, v), f"max |diff| {np.max(np.abs(u - v))}"


_PROBLEMS = {layout: _problems(layout) for layout in ("NCHW", "NHWC")}
_IDS = [p[0] for p in _PROBLEMS["NCHW"]]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("idx", range(len(_IDS)), ids=_IDS)
def test_bitwise_identical_across_thread_counts(layout, idx):
    name, fn, arrays, kw = _PROBLEMS[layout][idx]
    base = _run(fn, arrays, kw, num_threads=1)
    for n in (2, 3):
        _same_bits(_run(fn, arrays, kw, num_threads=n), base)
    # The module setting gives the same bits too.
    before = pydsconv.get_num_threads()
    try:
        for n in (3, 2):
            pydsconv.set_num_threads(n)
            _same_bits(_run(fn, arrays, kw), base)
    finally:
        pydsconv.set_num_threads(before)
    # And the bits are the right ones.
    want = getattr(ref, fn)(**arrays, **kw)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(base, want):
        assert_close(g, w)


@pytest.mark.parametrize("idx", range(len(_IDS)), ids=_IDS)
def test_bitwise_identical_across_thread_counts_every_isa(isa, idx):
    # Smaller shapes, every kernel set the host runs.
    for layout in ("NCHW", "NHWC"):
        name, fn, arrays, kw = _problems(layout, big=False, seed=3)[idx]
        base = _run(fn, arrays, kw, num_threads=1)
        for n in (2, 3):
            _same_bits(_run(fn, arrays, kw, num_threads=n), base)


@pytest.mark.parametrize("n", [1, 8])
def test_weight_packed_once_or_per_block_same_bits(n):
    """NHWC weights are packed once for all GEMM blocks or by each block
    (heuristics.h pack_weight_once), by block count and thread count: 14x14 pixels,
    512 -> 256 channels, batch 1 (3 pointwise row blocks, 2 fused tiles:
    packed once on 1 thread, per block on 2 and 3) and 8 (once on all).
    Either way the bits are those of one thread, and right."""
    rng = np.random.default_rng(7)
    x = to_nhwc(rand(rng, (n, 512, 14, 14), np.float32))
    dw = rand(rng, (512, 1, 3, 3), np.float32)
    pw = rand(rng, (256, 512, 1, 1), np.float32)
    pb = rand(rng, (256,), np.float32)
    runs = {
        "pointwise": lambda t: pydsconv.pointwise_conv2d(
            x, pw, pb, layout="NHWC", activation="relu", num_threads=t
        ),
        "separable": lambda t: pydsconv.separable_conv2d(
            x, dw, pw, pointwise_bias=pb, padding=1, layout="NHWC", num_threads=t
        ),
    }
    for name, f in runs.items():
        with taken() as paths:
            base = f(1)
        assert "weight_packed_once" in paths, (name, paths)
        for t in (2, 3):
            with taken() as paths:
                _same_bits((f(t),), (base,))
            assert ("weight_packed_once" in paths) == (n == 8), (name, t, paths)
    assert_close(
        runs["pointwise"](1), ref.pointwise_conv2d(x, pw, pb, layout="NHWC", activation="relu")
    )
    assert_close(
        runs["separable"](2),
        ref.separable_conv2d(x, dw, pw, pointwise_bias=pb, padding=1, layout="NHWC"),
    )


@pytest.mark.parametrize(
    "which", [(True, False, False), (False, True, False), (False, False, True), (False, True, True)]
)
def test_backward_partial_gradients_same_bits(which):
    # Asking for a subset of the gradients gives the same bits as all three.
    for name, fn, arrays, kw in _PROBLEMS["NHWC"] + _PROBLEMS["NCHW"]:
        if not fn.endswith("_backward"):
            continue
        full = _run(fn, arrays, kw, num_threads=1)
        flags = dict(zip(("input_grad", "weight_grad", "bias_grad"), which))
        for n in (1, 3):
            part = _run(fn, arrays, kw, num_threads=n, **flags)
            for want, got, flag in zip(full, part, which):
                if flag:
                    assert np.array_equal(got, want), name
                else:
                    assert got is None, name


# The depthwise weight/bias gradients are summed over a fixed partition of
# output rows (chunks) and channel blocks: batch 1 with many rows (several
# chunks in one image), chunks spanning images, M > 1, strides 1 and 2,
# channel tails, both layouts and dtypes give the same bits for any count.
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize(
    "shape",
    [
        (1, 20, 64, 64, 1, 1),
        (1, 20, 63, 65, 1, 2),
        (5, 70, 9, 11, 1, 1),
        (3, 9, 30, 20, 2, 2),
        (2, 130, 7, 7, 1, 1),
    ],
    ids=["n1-rows", "n1-rows-s2", "images-c70", "m2-s2", "c130-7x7"],
)
def test_depthwise_backward_chunks_same_bits(shape, layout, dtype):
    n, c, h, w_, m, s = shape
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, (n, c, h, w_)).astype(dtype)
    if layout == "NHWC":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    wt = rng.uniform(-1, 1, (c * m, 1, 3, 3)).astype(dtype)
    y = pydsconv.depthwise_conv2d(x, wt, stride=s, padding=1, layout=layout, num_threads=1)
    g = rng.uniform(-1, 1, y.shape).astype(dtype)
    kw = dict(stride=s, padding=1, layout=layout)
    one = pydsconv.depthwise_conv2d_backward(g, x, wt, num_threads=1, **kw)
    for t in (2, 3, 4, 8):
        _same_bits(pydsconv.depthwise_conv2d_backward(g, x, wt, num_threads=t, **kw), one)
    # each gradient alone: the same bits as all three together
    for i, name in enumerate(("input_grad", "weight_grad", "bias_grad")):
        flags = {k: k == name for k in ("input_grad", "weight_grad", "bias_grad")}
        alone = pydsconv.depthwise_conv2d_backward(g, x, wt, num_threads=2, **kw, **flags)
        assert np.array_equal(alone[i], one[i])


def test_float64_also_bitwise_identical():
    for _name, fn, arrays, kw in _problems("NHWC", np.float64, seed=5, big=False):
        base = _run(fn, arrays, kw, num_threads=1)
        _same_bits(_run(fn, arrays, kw, num_threads=3), base)


_COUNT_THREADS = """
import os, numpy as np, pydsconv
def os_threads():
    return len(os.listdir("/proc/self/task"))
x = np.ones((2, 32, 40, 40), np.float32)
w = np.ones((32, 1, 3, 3), np.float32)
before = os_threads()
pydsconv.depthwise_conv2d(x, w, padding=1, num_threads=1)
one = os_threads()
pydsconv.depthwise_conv2d(x, w, padding=1, num_threads=3)
print(before, one, os_threads())
"""


def test_big_problems_really_use_threads():
    if not pydsconv.cpu_features().get("openmp", True):
        pytest.skip("built without OpenMP")
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("needs Linux /proc")
    before, one, three = map(int, _python(_COUNT_THREADS).stdout.split())
    assert one == before  # num_threads=1 runs on the caller
    assert three >= before + 2  # num_threads=3 starts (at least) two workers


# ---------------------------------------------------------------------------
# The module setting
# ---------------------------------------------------------------------------


def test_set_get_num_threads_round_trip():
    before = pydsconv.get_num_threads()
    limit = pydsconv.cpu_features()["max_threads"]
    try:
        for n in (1, 3, 2, limit - 1, limit, 1):
            pydsconv.set_num_threads(n)
            assert pydsconv.get_num_threads() == n
            assert isinstance(pydsconv.get_num_threads(), int)
        pydsconv.set_num_threads(np.int64(4))
        assert pydsconv.get_num_threads() == 4
    finally:
        pydsconv.set_num_threads(before)
    assert pydsconv.get_num_threads() == before


def test_bad_set_num_threads_keeps_setting():
    before = pydsconv.get_num_threads()
    try:
        pydsconv.set_num_threads(3)
        for bad in (0, -1):
            with pytest.raises(ValueError):
                pydsconv.set_num_threads(bad)
            assert pydsconv.get_num_threads() == 3
    finally:
        pydsconv.set_num_threads(before)


def _python(code, **env):
    r = run_python(code, env={"OMP_NUM_THREADS": None, "PYDSCONV_ISA": None, **env}, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


_PRINT_THREADS = "import pydsconv; print(pydsconv.get_num_threads())"


@pytest.mark.parametrize("value,want", [("3", 3), ("1", 1), ("5", 5), ("4,2", 4)])
def test_default_follows_omp_num_threads(value, want):
    r = _python(_PRINT_THREADS, OMP_NUM_THREADS=value)
    assert r.stdout.strip() == str(want)


def test_default_without_omp_num_threads_is_the_cores():
    r = _python(_PRINT_THREADS)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert int(r.stdout.strip()) in {cores, os.cpu_count()}


def test_subprocess_imports_the_tested_package():
    # The subprocess checks above must exercise the same build as this process.
    r = _python("import pydsconv, os; print(os.path.dirname(pydsconv.__file__))")
    assert os.path.samefile(r.stdout.strip(), os.path.dirname(pydsconv.__file__))


# ---------------------------------------------------------------------------
# Python threads
# ---------------------------------------------------------------------------


def _concurrent_tasks():
    tasks = []
    for layout in ("NCHW", "NHWC"):
        for name, fn, arrays, kw in _problems(layout, big=False, seed=11):
            tasks.append((f"{layout}-{name}", fn, arrays, kw))
    return tasks


def test_eight_python_threads_same_bits_as_sequential():
    tasks = _concurrent_tasks()
    expected = {name: _run(fn, arrays, kw, num_threads=1) for name, fn, arrays, kw in tasks}
    iters = 20
    start = threading.Barrier(8)

    def worker(k):
        start.wait()
        results = []
        for it in range(iters):
            # Different order and thread counts in every worker.
            for j in range(len(tasks)):
                name, fn, arrays, kw = tasks[(j + 3 * k + it) % len(tasks)]
                results.append((name, _run(fn, arrays, kw, num_threads=1 + (k + it + j) % 3)))
        return results

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(worker, k) for k in range(8)]
        n = 0
        for f in futures:
            for name, got in f.result(timeout=600):
                _same_bits(got, expected[name])
                n += 1
    assert n == 8 * iters * len(tasks)


def test_out_from_several_threads():
    # Each thread writes its own out=; no cross-talk.
    name, fn, arrays, kw = _problems("NHWC", big=False, seed=2)[3]  # separable
    want = _run(fn, arrays, kw, num_threads=1)[0]

    def worker(k):
        out = np.full(want.shape, np.nan, want.dtype)
        for _ in range(20):
            out[...] = np.nan
            got = getattr(pydsconv, fn)(**arrays, **kw, out=out, num_threads=1 + k % 3)
            assert got is out
            assert np.array_equal(out, want)
        return True

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(worker, range(8)))


def test_set_num_threads_while_others_compute():
    tasks = _concurrent_tasks()
    expected = {name: _run(fn, arrays, kw, num_threads=1) for name, fn, arrays, kw in tasks}
    before = pydsconv.get_num_threads()
    stop = threading.Event()
    changes = [0]

    def changer():
        i = 0
        while not stop.is_set():
            pydsconv.set_num_threads(1 + i % 4)
            i += 1
            changes[0] = i
            time.sleep(0.0005)

    def worker(k):
        out = []
        for it in range(10):
            for j in range(len(tasks)):
                name, fn, arrays, kw = tasks[(j + k + it) % len(tasks)]
                out.append((name, _run(fn, arrays, kw)))  # module setting, changing
        return out

    t = threading.Thread(target=changer)
    t.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            results = [f.result(timeout=600) for f in [pool.submit(worker, k) for k in range(4)]]
    finally:
        stop.set()
        t.join()
        pydsconv.set_num_threads(before)
    assert changes[0] > 10
    for res in results:
        for name, got in res:
            _same_bits(got, expected[name])
    assert pydsconv.get_num_threads() == before


def test_gil_is_released_while_core_runs():
    """Deterministic, no timing: with a switch interval far longer than the
    test, the GIL changes hands only when a thread gives it up.  The worker
    wakes the main thread and, still holding the GIL, enters the call; the
    main thread can run before the call returns only if the call releases
    the GIL."""
    rng = np.random.default_rng(0)
    x = rand(rng, (2, 64, 96, 96), np.float32)
    dw = rand(rng, (64, 1, 7, 7), np.float32)
    pw = rand(rng, (128, 64), np.float32)
    started, returned = threading.Event(), threading.Event()
    seen_inside = []

    def worker():
        started.set()  # wakes the main thread, which must wait for the GIL
        pydsconv.separable_conv2d(x, dw, pw, padding=3, num_threads=1)
        returned.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        th = threading.Thread(target=worker)
        th.start()
        started.wait()
        seen_inside.append(not returned.is_set())
        th.join()
    finally:
        sys.setswitchinterval(interval)
    assert returned.is_set()
    assert seen_inside == [True], "the main thread only ran after the call returned: GIL held"


# ---------------------------------------------------------------------------
# ISA selection
# ---------------------------------------------------------------------------


def test_cpu_features_isa():
    f = pydsconv.cpu_features()
    assert isinstance(f, dict)
    assert f["isa"] in ("avx512", "avx2", "scalar")
    order = ["scalar", "avx2", "avx512"]
    if "best_isa" in f:
        assert order.index(f["isa"]) <= order.index(f["best_isa"])
    # A copy: mutating it changes nothing.
    f["isa"] = "bogus"
    assert pydsconv.cpu_features()["isa"] in ("avx512", "avx2", "scalar")


_ISA_SCRIPT = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import pydsconv
import numpy as np
f = pydsconv.cpu_features()
x = np.ones((1, 8, 9, 9), np.float32)
w = np.ones((8, 1, 3, 3), np.float32)
y = pydsconv.depthwise_conv2d(x, w, padding=1)
print(json.dumps({"isa": f["isa"], "best": f.get("best_isa"), "center": float(y[0, 0, 4, 4]),
                  "warnings": [[c.category.__name__, str(c.message)] for c in caught]}))
"""


def _isa_run(value):
    env = {} if value is None else {"PYDSCONV_ISA": value}
    return json.loads(_python(_ISA_SCRIPT, **env).stdout.strip().splitlines()[-1])


def test_pydsconv_isa_scalar():
    res = _isa_run("scalar")
    assert res["isa"] == "scalar"
    assert res["center"] == 9.0
    assert not [w for w in res["warnings"] if "PYDSCONV_ISA" in w[1]]


def test_pydsconv_isa_unset_uses_best():
    res = _isa_run(None)
    assert res["isa"] == pydsconv.cpu_features().get("best_isa", res["isa"])
    assert not [w for w in res["warnings"] if w[0] == "RuntimeWarning"]


def test_pydsconv_isa_bogus_warns_and_falls_back():
    res = _isa_run("bogus")
    runtime = [w for w in res["warnings"] if w[0] == "RuntimeWarning"]
    assert runtime, res["warnings"]
    assert any("PYDSCONV_ISA" in msg and "bogus" in msg for _, msg in runtime), runtime
    assert res["isa"] in ("avx512", "avx2", "scalar")
    assert res["isa"] == res["best"]
    assert res["center"] == 9.0


def test_pydsconv_isa_higher_than_cpu_warns_and_falls_back():
    best = pydsconv.cpu_features().get("best_isa")
    if best == "avx512":
        pytest.skip("the host runs avx512: nothing higher to ask for")
    res = _isa_run("avx512")
    runtime = [w for w in res["warnings"] if w[0] == "RuntimeWarning"]
    assert runtime and any("PYDSCONV_ISA" in m for _, m in runtime), res["warnings"]
    assert res["isa"] == best


def test_pydsconv_isa_lower_than_best_is_honoured():
    order = ["scalar", "avx2", "avx512"]
    best = pydsconv.cpu_features().get("best_isa", "scalar")
    for lower in order[: order.index(best) + 1]:
        res = _isa_run(lower)
        assert res["isa"] == lower
        assert not [w for w in res["warnings"] if w[0] == "RuntimeWarning"]


# ---------------------------------------------------------------------------
# threadpoolctl and OpenMP's own setting
# ---------------------------------------------------------------------------


def test_threadpoolctl_limits_and_set_num_threads_agree():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = pydsconv.get_num_threads()

    def openmp_reported():
        return {
            i["num_threads"]
            for i in threadpoolctl.threadpool_info()
            if i["user_api"] == "openmp" and "gomp" in i["prefix"]
        }

    try:
        pydsconv.set_num_threads(3)
        assert pydsconv.get_num_threads() == 3
        # Ours reports 3 (other libraries may load their own libgomp: sklearn, torch).
        assert 3 in openmp_reported() or not openmp_reported()
        with threadpoolctl.threadpool_limits(1):
            assert pydsconv.get_num_threads() == 1
        assert pydsconv.get_num_threads() == 3
        seen = []
        th = threading.Thread(target=lambda: seen.append(pydsconv.get_num_threads()))
        th.start()
        th.join()
        assert seen == [3]  # set_num_threads is module-wide
    finally:
        pydsconv.set_num_threads(before)


_LIMITED = r"""
import os, numpy as np, pydsconv, threadpoolctl
def os_threads():
    return len(os.listdir("/proc/self/task"))
x = np.ones((2, 32, 40, 40), np.float32)
w = np.ones((32, 1, 3, 3), np.float32)
before = os_threads()
with threadpoolctl.threadpool_limits(1):
    pydsconv.depthwise_conv2d(x, w, padding=1)
limited = os_threads()
pydsconv.depthwise_conv2d(x, w, padding=1)
print(before, limited, os_threads())
"""


def test_threadpool_limits_one_runs_on_the_caller():
    pytest.importorskip("threadpoolctl")
    if not pydsconv.cpu_features()["openmp"] or not os.path.isdir("/proc/self/task"):
        pytest.skip("needs OpenMP and Linux /proc")
    before, limited, after = map(int, _python(_LIMITED, OMP_NUM_THREADS="3").stdout.split())
    assert limited == before  # threadpool_limits(1) is honoured
    assert after >= before + 2  # and lifted afterwards (3 threads)
