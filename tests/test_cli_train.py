"""`pydsconv train` / `pydsconv finetune`: short runs in a subprocess (conftest.run_python)."""

import re
import signal
import sys
import time

import numpy as np
import pytest
from conftest import run_python, start_python

# Training runs and subprocesses: run once, not under the sanitizers.
pytestmark = [pytest.mark.slow]


@pytest.fixture(autouse=True)
def _keep_thread_setting():
    """main() applies --threads to the module setting, as the CLI does; the
    in-process tests put it back for the tests after them."""
    import pydsconv

    before = pydsconv.get_num_threads()
    yield
    pydsconv.set_num_threads(before)


MAIN = "import sys\nfrom pydsconv.__main__ import main\nsys.exit(main(sys.argv[1:]))"


def _accuracy(stdout, label):
    m = re.search(label + r"test accuracy (\d\.\d+)", stdout, re.M)
    assert m, stdout
    return float(m.group(1))


def test_train_short(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    out = tmp_path / "digits.npz"
    r = run_python(
        MAIN,
        ["train", "--epochs", "3", "--limit", "700", "--quiet", "--out", out, "--layout", "NHWC"],
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert "precision" in r.stdout and "recall" in r.stdout  # classification_report
    assert "epoch  3/3" in r.stdout and "elapsed" in r.stdout
    assert _accuracy(r.stdout, "^") > 0.6  # chance: 0.1
    from pydsconv import nn

    meta = nn.load_metadata(out)
    assert meta["config"]["layout"] == "NHWC"
    model = nn.SeparableConvNet(**meta["config"]).load(out)
    assert model(np.zeros((2, 8, 8, 1), np.float32)).shape == (2, 10)


def test_finetune_short(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    out = tmp_path / "fine.npz"
    r = run_python(
        MAIN,
        [
            "finetune",
            "--epochs",
            "3",
            "--head-epochs",
            "4",
            "--limit",
            "900",
            "--widths",
            "16",
            "64",
            "--quiet",
            "--out",
            out,
        ],
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert "trainable parameters" in r.stdout and "classifier.weight" in r.stdout
    assert "features.0.weight" not in r.stdout.split("trainable parameters")[1].split("frozen")[0]
    assert "precision" in r.stdout
    assert _accuracy(r.stdout, "digits 5-9 ") > 0.6  # chance: 0.2
    from pydsconv import nn

    state = nn.load(out)
    assert state["classifier.weight"].shape == (5, 64)


def test_missing_extra_is_a_friendly_error():
    code = "import sys\nsys.modules['sklearn'] = None\n" + MAIN
    r = run_python(code, ["train", "--epochs", "1"], timeout=300)
    assert r.returncode == 2
    assert "pydsconv[train]" in r.stderr and "Traceback" not in r.stderr


def test_bad_arguments_name_the_option():
    r = run_python(MAIN, ["train", "--epochs", "0"], timeout=300)
    assert r.returncode == 2 and "--epochs" in r.stderr and "positive int" in r.stderr
    r = run_python(MAIN, ["train", "--widths", "8", "16", "--strides", "1"], timeout=300)
    assert r.returncode == 2 and "--strides" in r.stderr


# -- arguments are checked before any work -----------------------------------------


def _refused(argv, option, capsys):
    """``main(argv)`` exits with status 2 before training, naming ``option`` on stderr."""
    from pydsconv.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    assert info.value.code == 2
    assert out == ""  # nothing ran (no banner, no epoch)
    assert option in err.splitlines()[-1] and "Traceback" not in err, err


@pytest.mark.parametrize(
    "argv, option",
    [
        (["--seed", "-1"], "--seed"),
        (["--seed", str(2**32)], "--seed"),
        (["--dropout", "1"], "--dropout"),
        (["--dropout", "-0.1"], "--dropout"),
        (["--dropout", "nan"], "--dropout"),
        (["--threads", "0"], "--threads"),
        (["--limit", "36"], "--limit"),
        (["--limit", "0"], "--limit"),
        (["--lr", "0"], "--lr"),
        (["--lr", "inf"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--epochs", "0"], "--epochs"),
        (["--batch-size", "0"], "--batch-size"),
        (["--stem-width", "0"], "--stem-width"),
        (["--widths", "8", "0"], "--widths"),
        (["--widths", "8", "8", "--strides", "1"], "--strides"),
        (["--widths", "8", "8", "8", "--strides", "2", "2", "2"], "--strides"),  # 8x8 -> 1x1
        (["--strides", "0", "2", "2"], "--strides"),
        (["--layout", "NCWH"], "--layout"),
    ],
)
@pytest.mark.parametrize("command", ["train", "finetune"])
def test_bad_option_exits_2_before_training(command, argv, option, tmp_path, capsys):
    _refused([command, *argv, "--out", str(tmp_path / "w.npz")], option, capsys)
    assert list(tmp_path.iterdir()) == []


def test_threads_above_the_machine_limit(tmp_path, capsys):
    import pydsconv

    limit = pydsconv.cpu_features().get("max_threads")
    if limit is None:
        pytest.skip("cpu_features() has no max_threads")
    _refused(
        ["train", "--threads", str(limit + 1), "--out", str(tmp_path / "w")], "--threads", capsys
    )


@pytest.mark.parametrize("command", ["train", "finetune"])
def test_out_must_be_writable(command, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    (tmp_path / "dir.npz").mkdir()
    for out in (tmp_path / "missing" / "w.npz", tmp_path / "file" / "w.npz", tmp_path / "dir"):
        _refused([command, "--out", str(out)], "--out", capsys)
    import os

    if os.name == "posix" and os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o500)
        _refused([command, "--out", str(tmp_path / "ro" / "w.npz")], "--out", capsys)


def test_checkpoint_must_be_a_checkpoint(tmp_path, capsys):
    from pydsconv import nn

    (tmp_path / "text.npz").write_text("hello")
    np.save(tmp_path / "array.npy", np.ones(3))
    nn.save(nn.SeparableConvNet(widths=[8], strides=[1]), tmp_path / "other.npz")  # no metadata
    for path in ("missing.npz", "text.npz", "array.npy", "other.npz"):
        _refused(
            ["finetune", "--checkpoint", str(tmp_path / path), "--out", str(tmp_path / "w.npz")],
            "--checkpoint",
            capsys,
        )
    assert not (tmp_path / "w.npz").exists()


def test_version():
    import pydsconv

    r = run_python(MAIN, ["--version"])
    assert r.returncode == 0 and r.stdout.strip() == f"pydsconv {pydsconv.__version__}"


# -- runs ---------------------------------------------------------------------------

TINY = ["--epochs", "1", "--stem-width", "4", "--widths", "8", "16"]


def test_smallest_limit_runs_and_the_log_is_clean(tmp_path):
    """--limit 37 (digits.MIN_LIMIT) trains and fine-tunes; with stdout and
    stderr not terminals there is no progress bar; the path printed is the
    file written (.npz appended)."""
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    from pydsconv.nn.digits import MIN_LIMIT

    assert MIN_LIMIT == 37
    r = run_python(MAIN, ["train", *TINY, "--limit", "37", "--out", tmp_path / "model"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip().endswith(f"weights saved to {tmp_path / 'model.npz'}")
    assert (tmp_path / "model.npz").is_file() and not (tmp_path / "model").exists()
    assert "\r" not in r.stdout + r.stderr and r.stderr == "", r.stderr
    for extra in ([], ["--checkpoint", tmp_path / "model.npz"]):
        r = run_python(
            MAIN,
            [
                "finetune",
                *TINY,
                "--head-epochs",
                "1",
                "--limit",
                "37",
                "--out",
                tmp_path / "fine.npz",
                *extra,
            ],
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.rstrip().endswith(f"weights saved to {tmp_path / 'fine.npz'}")
        assert r.stderr == "", r.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
def test_ctrl_c_exits_130_and_keeps_the_old_weights(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    out = tmp_path / "w.npz"
    r = run_python(MAIN, ["train", *TINY, "--limit", "37", "--out", out])
    assert r.returncode == 0, r.stderr
    before = out.read_bytes()
    # A shell's background job (CI started as `cmd &`) inherits SIGINT
    # ignored, and so would the child: give it the terminal's default back.
    interactive = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    proc = start_python(
        interactive + MAIN,
        tmp_path,
        ["train", "--epochs", "200", "--out", out],
        env={"PYTHONUNBUFFERED": "1"},
    )
    try:
        for line in proc.stdout:
            if line.startswith("digits:"):  # printed just before training starts
                break
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr.splitlines() == ["pydsconv train: interrupted"]
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["w.npz"]
