"""`pydsconv train` / `pydsconv finetune`: short runs in a subprocess (conftest.run_python)."""
import re

import numpy as np
import pytest

from conftest import run_python

MAIN = "import sys\nfrom pydsconv.__main__ import main\nsys.exit(main(sys.argv[1:]))"


def _accuracy(stdout, label):
    m = re.search(label + r"test accuracy (\d\.\d+)", stdout, re.M)
    assert m, stdout
    return float(m.group(1))


def test_train_short(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    out = tmp_path / "digits.npz"
    r = run_python(MAIN, ["train", "--epochs", "3", "--limit", "700", "--quiet", "--out", out,
                          "--layout", "NHWC"], timeout=600)
    assert r.returncode == 0, r.stderr
    assert "precision" in r.stdout and "recall" in r.stdout        # classification_report
    assert "epoch  3/3" in r.stdout and "elapsed" in r.stdout
    assert _accuracy(r.stdout, "^") > 0.6                            # chance: 0.1
    from pydsconv import nn
    meta = nn.load_metadata(out)
    assert meta["config"]["layout"] == "NHWC"
    model = nn.SeparableConvNet(**meta["config"]).load(out)
    assert model(np.zeros((2, 8, 8, 1), np.float32)).shape == (2, 10)


def test_finetune_short(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("tqdm")
    out = tmp_path / "fine.npz"
    r = run_python(MAIN, ["finetune", "--epochs", "3", "--head-epochs", "4", "--limit", "900",
                          "--widths", "16", "64", "--quiet", "--out", out], timeout=600)
    assert r.returncode == 0, r.stderr
    assert "trainable parameters" in r.stdout and "classifier.weight" in r.stdout
    assert "features.0.weight" not in r.stdout.split("trainable parameters")[1].split("frozen")[0]
    assert "precision" in r.stdout
    assert _accuracy(r.stdout, "digits 5-9 ") > 0.6                  # chance: 0.2
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
