"""The bench-only packages (torch; onnxruntime, onnx and matplotlib from
``pip install .[bench]``): a script checks them before importing the modules
of bench.lib that need them, and exits 2 with a one-line message naming the
package, as compare.py always did, instead of a traceback."""

from __future__ import annotations

import importlib
import sys

MESSAGES = {
    "torch": "PyTorch is required (pip install torch)",
    "onnxruntime": "onnxruntime is required (pip install onnxruntime)",
    "onnx": "the onnx package is required to build the ORT graphs; it is a "
    "bench-only dependency: pip install onnx",
}


def die(prog, msg):
    sys.stderr.write(f"\n{prog}: error: {msg}\n")
    sys.exit(2)


def require(prog, *modules):
    """Import each of ``modules``; on an ImportError exit 2 with its message,
    ``prog`` (e.g. "bench/compare.py") naming the script."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            die(prog, MESSAGES.get(name, f"{name} is required (pip install {name})"))
