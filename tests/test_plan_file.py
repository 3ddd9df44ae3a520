"""Plan files (Plan.save / Plan.load, cpp/plan_file.cpp): a saved and loaded
plan computes the same bits as the compiled one, and every way a file can be
broken (wrong magic, version, truncation, inconsistent header) is a
ValueError naming the file and the problem, never a crash.  Where the C++
benchmark binary is built (build/*/pydsconv-bench), ``--plan`` times a
saved file and ``--plan --check`` passes."""

import glob
import os
import struct
import subprocess

import numpy as np
import pytest

import pydsconv
from pydsconv import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_model(layout="NCHW", dtype=np.float32, padding="same"):
    m = nn.MobileNetV1(
        0.25, num_classes=7, input_size=32, layout=layout, padding=padding, dtype=dtype, rng=3
    )
    rng = np.random.default_rng(4)
    for _, layer in m.named_modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean[...] = rng.uniform(-0.1, 0.1, layer.num_features)
            layer.running_var[...] = rng.uniform(0.5, 1.5, layer.num_features)
    return m.eval()


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_same_bits(tmp_path, layout, dtype):
    shape = (2, 3, 32, 32) if layout == "NCHW" else (2, 32, 32, 3)
    plan = nn.compile(small_model(layout, dtype), shape, layout=layout)
    path = tmp_path / "m.plan"
    plan.save(path)
    loaded = pydsconv.Plan.load(path)
    assert loaded.input_shape == plan.input_shape
    assert loaded.output_shape == plan.output_shape
    assert loaded.layout == layout and loaded.dtype == np.dtype(dtype)
    assert [s["op"] for s in loaded.steps()] == [s["op"] for s in plan.steps()]
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(loaded(x), plan(x))
    # saved again from the loaded plan: the same file
    loaded.save(tmp_path / "again.plan")
    assert (tmp_path / "again.plan").read_bytes() == path.read_bytes()


def test_arrays_aligned_and_little_endian(tmp_path):
    model = small_model()
    plan = nn.compile(model, (1, 3, 32, 32))
    path = tmp_path / "m.plan"
    plan.save(path)
    data = path.read_bytes()
    assert data[:8] == b"PYDSPLAN"
    version, hlen = struct.unpack("<II", data[8:16])
    assert version == 1
    header = data[16 : 16 + hlen].decode("ascii").splitlines()
    arrays = [h.split() for h in header if h.startswith("array ") and h != "array none"]
    assert arrays
    # the stem's weight, as stored: the model's own weight, little-endian float32
    first = arrays[0]
    off, nbytes, ndim = int(first[1]), int(first[2]), int(first[3])
    dims = tuple(int(v) for v in first[4 : 4 + ndim])
    assert all(int(a[1]) % 64 == 0 for a in arrays)
    stored = np.frombuffer(data, "<f4", nbytes // 4, off).reshape(dims)
    w = model.features[0].weight.data.astype(np.float64)
    bn = model.features[1]
    scale = bn.weight.data / np.sqrt(bn.running_var + bn.eps)
    np.testing.assert_allclose(stored, w * scale[:, None, None, None], rtol=1e-6)


def test_batch_override(tmp_path):
    plan = nn.compile(small_model(), (1, 3, 32, 32))
    plan.save(tmp_path / "m.plan")
    loaded = pydsconv.Plan.load(tmp_path / "m.plan", batch=3, num_threads=2)
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    assert loaded.input_shape == (3, 3, 32, 32)
    full = nn.compile(small_model(), (3, 3, 32, 32))
    np.testing.assert_array_equal(loaded(x), full(x))


def test_saved_weights_are_a_copy(tmp_path):
    model = small_model()
    plan = nn.compile(model, (1, 3, 32, 32))
    model.classifier.weight.data[...] = 0  # after compiling: reaches neither plan nor file
    plan.save(tmp_path / "m.plan")
    x = np.ones((1, 3, 32, 32), np.float32)
    np.testing.assert_array_equal(pydsconv.Plan.load(tmp_path / "m.plan")(x), plan(x))


def _saved(tmp_path):
    path = tmp_path / "m.plan"
    nn.compile(small_model(), (1, 3, 32, 32)).save(path)
    return path, path.read_bytes()


def _header_edit(data, old, new):
    hlen = struct.unpack("<I", data[12:16])[0]
    header = data[16 : 16 + hlen].decode("ascii")
    assert old in header
    header = header.replace(old, new, 1).encode("latin-1")
    start = int(header.split(b"array ")[1].split()[0]) if b"array " in header else 16 + hlen
    assert 16 + len(header) <= start
    return (
        data[:12]
        + struct.pack("<I", len(header))
        + header
        + b"\0" * (start - 16 - len(header))
        + data[start:]
    )


def test_corrupt_files(tmp_path):
    path, data = _saved(tmp_path)
    bad = tmp_path / "bad.plan"

    def expect(content, match):
        bad.write_bytes(content)
        with pytest.raises(ValueError, match=match):
            pydsconv.Plan.load(bad)

    expect(b"", "not a pydsconv plan file")
    expect(b"NOTAPLAN" + data[8:], "not a pydsconv plan file")
    expect(data[:8] + struct.pack("<I", 2) + data[12:], "format version 2")
    expect(data[:12] + struct.pack("<I", 1 << 30) + data[16:], "truncated")
    expect(data[:-100], "truncated")
    for n in (16, 40, 200, len(data) // 2):
        bad.write_bytes(data[:n])
        with pytest.raises(ValueError, match="plan file"):
            pydsconv.Plan.load(bad)
    expect(_header_edit(data, "dtype float32", "dtype int8"), "dtype must be")
    expect(_header_edit(data, "name ", "name \xe9"), "not printable ASCII")
    expect(_header_edit(data, "name ", "name \0"), "not printable ASCII")
    expect(_header_edit(data, "step conv", "step warp"), "step kind 'warp'")
    expect(_header_edit(data, "act relu", "act gelu"), "activation 'gelu'")
    expect(_header_edit(data, "steps ", "stepz "), "expected 'steps")
    expect(_header_edit(data, "\nend", "\n"), "expected 'end")
    expect(_header_edit(data, "skip -1", "skip 0"), "is not -1 or an earlier step")
    with pytest.raises(ValueError, match="cannot be opened"):
        pydsconv.Plan.load(tmp_path / "missing.plan")


def test_corrupt_array_records(tmp_path):
    path, data = _saved(tmp_path)
    hlen = struct.unpack("<I", data[12:16])[0]
    header = data[16 : 16 + hlen].decode("ascii")
    line = next(h for h in header.splitlines() if h.startswith("array ") and h != "array none")
    f = line.split()
    bad = tmp_path / "bad.plan"
    cases = {
        "bytes do not hold": f[:2] + [str(int(f[2]) + 4)] + f[3:],
        "not 64-byte aligned": [f[0], str(int(f[1]) + 4)] + f[2:],
        "past the end": [f[0], str(len(data) + 64)] + f[2:],
        "expected 'array": f[:4],
        "bad dimension": f[:4] + ["-1"] + f[5:],
    }
    for match, fields in cases.items():
        bad.write_bytes(_header_edit(data, line, " ".join(fields)))
        with pytest.raises(ValueError, match=match):
            pydsconv.Plan.load(bad)


def test_inconsistent_shapes_name_the_layer(tmp_path):
    path, data = _saved(tmp_path)
    hlen = struct.unpack("<I", data[12:16])[0]
    header = data[16 : 16 + hlen].decode("ascii")
    # the stem's weight claims another input channel count (same byte count)
    line = next(h for h in header.splitlines() if h.startswith("array ") and h != "array none")
    f = line.split()
    assert f[4:8] == ["8", "3", "3", "3"]
    (tmp_path / "bad.plan").write_bytes(
        _header_edit(data, line, " ".join(f[:4] + ["8", "9", "3", "1"]))
    )
    with pytest.raises(ValueError, match="features.0"):
        pydsconv.Plan.load(tmp_path / "bad.plan")


def _bench_binary():
    found = sorted(
        glob.glob(os.path.join(ROOT, "build", "*", "pydsconv-bench")), key=os.path.getmtime
    )
    return found[-1] if found else None  # the newest build


@pytest.mark.skipif(_bench_binary() is None, reason="pydsconv-bench not built (PYDSCONV_BENCH=ON)")
@pytest.mark.parametrize("padding", ["same", 1])
def test_bench_plan_check_and_time(tmp_path, padding):
    path = tmp_path / "m.plan"
    nn.compile(small_model(padding=padding), (2, 3, 32, 32)).save(path)
    exe = _bench_binary()
    for extra in ([], ["--nhwc"]):
        p = subprocess.run(
            [exe, "--plan", str(path), "--check", "--threads", "2", *extra],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == 0, p.stdout + p.stderr
        assert "check passed" in p.stdout
    p = subprocess.run(
        [
            exe,
            "--plan",
            str(path),
            "--repeats",
            "3",
            "--batch",
            "3",
            "--json",
            str(tmp_path / "t.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert "# total:" in p.stdout and "(3, 3, 32, 32)" in p.stdout
    path.write_bytes(path.read_bytes()[:300])
    p = subprocess.run([exe, "--plan", str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "plan file" in p.stderr
