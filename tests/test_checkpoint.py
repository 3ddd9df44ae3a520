"""pydsconv.nn checkpoints: atomic save, all-or-nothing load, clear refusals."""

import os
import pickle
import random
import signal
import sys
import time
import zipfile

import numpy as np
import pytest
from conftest import start_python

from pydsconv import nn


def _net(seed=0):
    return nn.SeparableConvNet(num_classes=3, stem_width=4, widths=(6,), strides=(2,), rng=seed)


def _assert_state_equal(a, b):
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


# -- save ---------------------------------------------------------------------

# Saves a ~16 MB state over and over, each version filled with its number.
_SAVER = """
import sys
import numpy as np
from pydsconv import nn
path = sys.argv[1]
state = {f"a{i}": np.zeros(500_000) for i in range(4)}
version = 0
while True:
    version += 1
    for a in state.values():
        a.fill(version)
    nn.save(state, path, metadata={"version": version})
    if version == 1:
        print("saved", flush=True)
"""


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_save_killed_midway_keeps_a_complete_checkpoint(tmp_path):
    path = tmp_path / "state.npz"
    rnd = random.Random(0)
    for _ in range(6):
        proc = start_python(_SAVER, tmp_path, [path])
        try:
            assert proc.stdout.readline() == "saved\n", proc.stderr.read()
            time.sleep(rnd.uniform(0.0, 0.4))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        state = nn.load(path)  # old or new, never a partial file
        version = nn.load_metadata(path)["version"]
        assert sorted(state) == ["a0", "a1", "a2", "a3"]
        for a in state.values():
            assert a.shape == (500_000,) and np.all(a == version)
    assert all(p.name == "state.npz" or p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_save_interrupted_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    net = _net(0)
    path = net.save(tmp_path / "w.npz")
    with open(path, "rb") as f:
        before = f.read()

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _net(1).save(tmp_path / "w.npz")
    monkeypatch.undo()
    with open(path, "rb") as f:
        assert f.read() == before
    assert os.listdir(tmp_path) == ["w.npz"]


def test_save_returns_the_path_written(tmp_path):
    net = _net()
    assert net.save(tmp_path / "model") == str(tmp_path / "model.npz")  # NumPy's naming
    assert nn.save(net, str(tmp_path / "m.npz")) == str(tmp_path / "m.npz")
    assert nn.save(net, tmp_path / "m.weights") == str(tmp_path / "m.weights.npz")
    assert sorted(os.listdir(tmp_path)) == ["m.npz", "m.weights.npz", "model.npz"]
    _assert_state_equal(nn.load(tmp_path / "model.npz"), net.state_dict())
    with open(tmp_path / "f.bin", "wb") as f:  # file objects as before
        assert nn.save(net, f) is f
    _assert_state_equal(nn.load(tmp_path / "f.bin"), net.state_dict())


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_save_file_mode_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = _net().save(tmp_path / "w")
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_save_into_a_missing_directory_fails_cleanly(tmp_path):
    with pytest.raises(FileNotFoundError):
        _net().save(tmp_path / "nope" / "w.npz")
    assert os.listdir(tmp_path) == []


# -- load: all or nothing -------------------------------------------------------


@pytest.mark.parametrize("how", ["shape", "dtype"])
def test_load_state_dict_checks_everything_before_writing(tmp_path, how):
    net, other = _net(0), _net(1)
    before = {k: v.copy() for k, v in net.state_dict().items()}
    state = {k: v.copy() for k, v in other.state_dict().items()}
    last = list(state)[-1]
    assert last == "classifier.bias"
    state[last] = state[last][:2] if how == "shape" else state[last].astype(np.complex64)
    err = ValueError if how == "shape" else TypeError
    with pytest.raises(err, match="classifier.bias"):
        net.load_state_dict(state)
    _assert_state_equal(net.state_dict(), before)
    nn.save(state, tmp_path / "bad.npz")
    with pytest.raises(err, match="classifier.bias"):
        net.load(tmp_path / "bad.npz")
    _assert_state_equal(net.state_dict(), before)
    with pytest.raises(KeyError):  # strict: unchanged too
        net.load_state_dict({k: v for k, v in other.state_dict().items() if k != "classifier.bias"})
    _assert_state_equal(net.state_dict(), before)


@pytest.mark.parametrize("dtype", [np.bool_, np.int32, np.int64, np.uint8, np.complex128])
def test_non_floating_arrays_are_refused_naming_the_key(tmp_path, dtype):
    net = _net()
    state = {k: v.copy() for k, v in net.state_dict().items()}
    state["features.0.weight"] = np.ones(state["features.0.weight"].shape, dtype)
    nn.save(state, tmp_path / "w.npz")
    with pytest.raises(TypeError, match=r"'features\.0\.weight'.*" + np.dtype(dtype).name):
        _net(1).load(tmp_path / "w.npz")


def test_floating_precision_and_integer_buffers_still_load():
    net = _net(0)
    state = {
        k: (v.astype(np.float64) if v.dtype.kind == "f" else v.astype(np.int32))
        for k, v in net.state_dict().items()
    }
    other = _net(1)
    other.load_state_dict(state)
    assert other.state_dict()["features.1.num_batches_tracked"].dtype == np.int64
    _assert_state_equal(other.state_dict(), net.state_dict())
    state["features.1.num_batches_tracked"] = np.float64(1.5)  # float into an int buffer
    with pytest.raises(TypeError, match="num_batches_tracked"):
        other.load_state_dict(state)


# -- load: refusals ---------------------------------------------------------------


def _not_a_checkpoint(path, metadata=True):
    for fn in (nn.load, _net().load) + ((nn.load_metadata,) if metadata else ()):
        with pytest.raises(ValueError, match="not a pydsconv checkpoint") as info:
            fn(path)
        assert str(path) in str(info.value)
        assert "allow_pickle" not in str(info.value)


def test_pickle_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "w.pkl"
    with open(path, "wb") as f:
        pickle.dump(_net().state_dict(), f)
    _not_a_checkpoint(path)


def test_npy_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "w.npy"
    np.save(path, np.ones(3))
    _not_a_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"hello\n", b"PK\x03\x04"])
def test_garbage_is_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "w.npz"
    path.write_bytes(content)
    _not_a_checkpoint(path)


def test_truncated_or_damaged_checkpoint(tmp_path):
    path = _net().save(tmp_path / "w")
    data = open(path, "rb").read()
    for cut in (100, len(data) // 2, len(data) - 10):
        (tmp_path / "cut.npz").write_bytes(data[:cut])
        _not_a_checkpoint(tmp_path / "cut.npz")
    damaged = bytearray(data)
    damaged[200:260] = b"\xff" * 60  # inside the first array's data
    (tmp_path / "bad.npz").write_bytes(bytes(damaged))
    _not_a_checkpoint(tmp_path / "bad.npz", metadata=False)  # load_metadata reads no weights


def test_zip_of_other_files_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "w.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    _not_a_checkpoint(path)


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, **{"features.0.weight": np.array([None, 1], dtype=object)})
    with pytest.raises(TypeError, match=r"'features\.0\.weight'.*object") as info:
        nn.load(path)
    assert "allow_pickle" not in str(info.value)


def test_missing_file_and_directory_are_os_errors(tmp_path):
    for fn in (nn.load, nn.load_metadata, _net().load):
        with pytest.raises(FileNotFoundError):
            fn(tmp_path / "missing.npz")
        with pytest.raises(OSError):
            fn(tmp_path)
