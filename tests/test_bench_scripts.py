"""bench/'s Python scripts still import and parse their flags: each runs as
``python -m bench.<script> --help`` in a subprocess (an import error, a
missing name in bench.lib or a broken argparse setup fails it).  Nothing is
timed.  Slow: every run starts a Python and imports torch or ONNX Runtime.

The subprocess runs in a temporary directory holding a link to bench/, so it
imports the same pydsconv as this test process (an installed wheel is not
shadowed by the repository's unbuilt sources)."""

import importlib.util
import os
import subprocess
import sys

import pytest

import pydsconv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# script -> the bench-only packages it imports (pip install .[bench]; torch apart)
SCRIPTS = {
    "compare": ("torch", "onnxruntime", "onnx"),
    "ort_profile": ("onnxruntime", "onnx"),
    "pointwise_chain": ("torch", "onnxruntime", "onnx"),
    "prepack_body": (),
    "activation_cost": (),
    "plan_body": (),
    "generic_shapes": ("torch",),
    "text_1d": ("torch",),
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_help(script, tmp_path):
    missing = [m for m in SCRIPTS[script] if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(
            f"bench/{script}.py needs {', '.join(missing)}, not installed "
            "(bench-only: pip install .[bench], and torch)"
        )
    os.symlink(os.path.join(ROOT, "bench"), tmp_path / "bench")
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(pydsconv.__file__)))
    if here == ROOT:  # pydsconv built in place: keep it importable from tmp_path
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{script}", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:"), proc.stdout
