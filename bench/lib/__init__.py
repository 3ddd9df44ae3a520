"""The library behind bench/'s scripts (bench/README.md describes them):

* ``models``       MobileNetV1's separable blocks, their weights and inputs,
                   layouts, MACs, and pydsconv's calls on a block (NumPy and
                   pydsconv only)
* ``onnx_graph``   the ONNX graphs and ONNX Runtime sessions (onnx, onnxruntime)
* ``contestants``  the PyTorch forward contestants, building every contestant
                   of an op, and the correctness check (torch)
* ``train``        the training-step contestants and their gradient check (torch)
* ``timing``       the one interleaved timing loop every script uses
* ``machine``      machine facts and the peaks %peak is measured against
* ``report``       compare.py's tables and plot
* ``deps``         the check for bench-only packages (exit 2 naming the missing one)

Each module imports only what it needs, so a script that needs neither
torch nor ONNX (prepack_body.py) runs without them.
"""
