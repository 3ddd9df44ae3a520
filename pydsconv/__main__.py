"""``python -m pydsconv`` (or ``pydsconv``): a self-check and demo.

With no arguments it runs the demo: a depthwise convolution with channel
multiplier 2 computed TensorFlow-style (NHWC, padding="valid", a Keras
kernel converted with pydsconv.weights) and PyTorch-style (NCHW), both checked
against the NumPy reference; the cost saving of a separable convolution from
the cost model; and a timing against the reference.  It exits non-zero if a
check fails.  ``python -m pydsconv info`` prints the CPU features and threads.

``python -m pydsconv train`` trains a small depthwise separable CNN
(pydsconv.nn.SeparableConvNet) on scikit-learn's bundled 8x8 digits and saves
its weights; ``python -m pydsconv finetune`` trains it on digits 0-4, freezes
the backbone and trains a new head for digits 5-9.  Both need the ``train``
extra (scikit-learn, tqdm).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import pydsconv
from pydsconv import cost, reference, weights


def _check(name, got, want, tol):
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    ok = got.shape == want.shape and err <= tol
    print(
        f"  {name:<44} shape {str(got.shape):<18} max |diff| vs reference {err:.2e}  "
        f"{'OK' if ok else 'FAIL'}"
    )
    return ok


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def demo():
    rng = np.random.default_rng(0)
    feats = pydsconv.cpu_features()
    print(
        f"pydsconv {pydsconv.__version__}: kernels '{feats['isa']}', "
        f"{pydsconv.get_num_threads()} thread(s)\n"
    )
    ok = True

    print("1. Depthwise convolution, channel multiplier M = 2, 3x3 kernel")
    n, h, w, c, m = 2, 32, 32, 8, 2
    keras_kernel = rng.standard_normal((3, 3, c, m)).astype(np.float32)  # (kH, kW, C, M)
    x_nhwc = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = weights.from_keras_depthwise(keras_kernel)  # (C*M, 1, kH, kW)
    y_tf = pydsconv.depthwise_conv2d(x_nhwc, wt, layout="NHWC", padding="valid")
    ok &= _check(
        "TensorFlow-style: NHWC, padding='valid'",
        y_tf,
        reference.depthwise_conv2d(x_nhwc, wt, layout="NHWC", padding="valid"),
        1e-4,
    )
    x_nchw = np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))
    y_pt = pydsconv.depthwise_conv2d(x_nchw, wt, stride=2, padding=1)
    ok &= _check(
        "PyTorch-style: NCHW, stride=2, padding=1",
        y_pt,
        reference.depthwise_conv2d(x_nchw, wt, stride=2, padding=1),
        1e-4,
    )
    same = np.allclose(
        np.ascontiguousarray(y_tf.transpose(0, 3, 1, 2)),
        pydsconv.depthwise_conv2d(x_nchw, wt, padding="valid"),
        atol=1e-5,
    )
    print(f"  NHWC and NCHW agree on the same data: {'yes' if same else 'no'}")
    ok &= same

    print("\n2. Separable block (3x3 depthwise + 1x1 pointwise, fused), MobileNet-style")
    cin, cout, size = 64, 128, 56
    dw = rng.standard_normal((cin, 1, 3, 3)).astype(np.float32)
    pw = rng.standard_normal((cout, cin)).astype(np.float32) / 8
    x = rng.standard_normal((1, cin, size, size)).astype(np.float32)
    y = pydsconv.separable_conv2d(x, dw, pw, padding="same", mid_activation="relu6")
    want = reference.separable_conv2d(x, dw, pw, padding="same", mid_activation="relu6")
    ok &= _check("separable_conv2d vs reference", y, want, 1e-3)
    sep = cost.separable_conv2d(cin, cout, 3, size)
    std = cost.conv2d(cin, cout, 3, size)
    print(
        f"  cost model: separable {sep['macs'] / 1e6:.1f} M MACs, {sep['params']} params; "
        f"standard conv {std['macs'] / 1e6:.1f} M MACs, {std['params']} params"
    )
    print(
        f"  -> {std['macs'] / sep['macs']:.1f}x fewer MACs "
        f"(1/C_out + 1/k^2 = {1 / cout + 1 / 9:.4f} of the standard cost)"
    )
    net = cost.mobilenet_v1()
    print(
        f"  MobileNetV1 1.0-224: {net['macs'] / 1e6:.0f} M mult-adds, "
        f"{net['params'] / 1e6:.1f} M parameters (paper: 569 M, 4.2 M)"
    )

    print("\n3. Timing (median of 5) against the NumPy reference, same block")
    t_fast = _median_time(lambda: pydsconv.separable_conv2d(x, dw, pw, padding="same"), 5)
    t_ref = _median_time(lambda: reference.separable_conv2d(x, dw, pw, padding="same"), 5)
    print(
        f"  pydsconv {t_fast * 1e3:.2f} ms, reference {t_ref * 1e3:.2f} ms "
        f"-> {t_ref / t_fast:.0f}x faster"
    )
    print("\nself-check " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


def info():
    feats = pydsconv.cpu_features()
    for k, v in feats.items():
        print(f"{k:>12}: {v}")
    print(f"{'threads':>12}: {pydsconv.get_num_threads()}")
    return 0


def main(argv=None):
    from pydsconv.nn import digits

    parser = argparse.ArgumentParser(prog="pydsconv", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"pydsconv {pydsconv.__version__}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("demo", help="self-check and demo (the default)")
    sub.add_parser("info", help="CPU features, kernel set and threads")
    train = sub.add_parser(
        "train",
        help="train a separable CNN on the 8x8 digits (needs pydsconv[train])",
        description="Train pydsconv.nn.SeparableConvNet on scikit-learn's bundled handwritten "
        "digits (no download): a stratified 75/25 split seeded by --seed, Adam with "
        "a cosine schedule, per-epoch loss and accuracy, a classification report, "
        "and the weights saved to --out (.npz).",
    )
    digits.add_arguments(train, "train")
    fine = sub.add_parser(
        "finetune",
        help="train on digits 0-4, freeze, new head for 5-9 (needs pydsconv[train])",
        description="Fine-tuning end to end: train SeparableConvNet on digits 0-4 (or load "
        "--checkpoint), freeze the backbone (features), replace the classifier by "
        "a new 5-class head, train only the head on digits 5-9, report its test "
        "accuracy and save the weights to --out.",
    )
    digits.add_arguments(fine, "finetune")
    args = parser.parse_args(argv)
    if args.command == "info":
        return info()
    if args.command in ("train", "finetune"):
        run = digits.train_command if args.command == "train" else digits.finetune_command
        try:
            digits.check_arguments(args, train if args.command == "train" else fine)
            return run(args)
        except digits.MissingExtra as exc:
            print(f"pydsconv {args.command}: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # Ctrl-C: no traceback; the atomic save wrote nothing partial
            print(f"pydsconv {args.command}: interrupted", file=sys.stderr)
            return 130
    return demo()


if __name__ == "__main__":
    sys.exit(main())
