"""Every code example of README.md and docs/*.md runs (tools/run_doc_examples.py)."""

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_doc_examples_run():
    cmd = [sys.executable, os.path.join(ROOT, "tools", "run_doc_examples.py")]
    if importlib.util.find_spec("torch") is None:  # CI has torch and runs those blocks too
        cmd += ["--allow-missing", "torch"]
    r = subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900
    )
    assert r.returncode == 0, r.stdout
