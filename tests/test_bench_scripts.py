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
import pydsconv.nn.models

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
    "networks": ("torch", "onnxruntime", "onnx"),
    "torch_engine": ("torch",),
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


@pytest.mark.slow
def test_networks_tiny(tmp_path):
    """bench.networks --tiny: small versions of the MobileNetV1 body and full
    MobileNetV1 run through every installed contestant, each checked against
    the float64 torch reference (the script exits non-zero on a mismatch),
    and the JSON has a ratio per cell."""
    missing = [m for m in SCRIPTS["networks"] if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"bench/networks.py needs {', '.join(missing)}")
    os.symlink(os.path.join(ROOT, "bench"), tmp_path / "bench")
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(pydsconv.__file__)))
    if here == ROOT:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.networks",
            "--tiny",
            "--nets",
            "mobilenet_v1_body",
            "mobilenet_v1",
            "mobilenet_v3_large",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import json

    res = json.loads(out.read_text())["results"]
    cells = [r for r in res if "median_ms" in r]
    expected = {"mobilenet_v1_body", "mobilenet_v1"}
    if hasattr(pydsconv.nn.models, "MobileNetV3Large"):
        expected.add("mobilenet_v3_large")
    else:  # skipped, saying why
        assert any(r["net"] == "mobilenet_v3_large" and "skipped" in r for r in res)
    assert {r["net"] for r in cells} == expected
    for r in cells:
        assert r["median_ms"]["pydsconv"] > 0
        assert r["median_ms"].keys() - {"pydsconv"}, "no peer ran"
        assert all(e <= 1e-4 for e in r["errors"].values())
