"""The ``train`` and ``finetune`` commands: SeparableConvNet on scikit-learn's digits.

``sklearn.datasets.load_digits`` ships with scikit-learn (1797 8x8 grey
images, values 0..16; no download).  scikit-learn and tqdm are imported
only here, inside the commands, with an error naming the pip extra
(``pip install "pydsconv[train]"``) when they are missing.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import time

import numpy as np

import pydsconv

from .. import cost
from .linear import Linear
from .loss import CrossEntropyLoss
from .models import SeparableConvNet
from .module import load_metadata, save
from .optim import Adam
from .training import accuracy, predict, train_epoch

__all__ = ["load_data", "train_command", "finetune_command", "check_arguments", "MIN_LIMIT"]

#: The smallest ``--limit``: the stratified 75/25 split needs at least one test
#: image per class, ``ceil(0.25 * n) >= 10``, i.e. ``n >= 37`` (the first 37
#: digits hold every class 3 or 4 times, so the train set has them all too).
MIN_LIMIT = 37


class MissingExtra(RuntimeError):
    """A dependency of the training commands is not installed."""


def _require():
    try:
        import sklearn  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError as exc:
        raise MissingExtra(
            f"the train/finetune commands need scikit-learn and tqdm ({exc.name} "
            'is missing): pip install "pydsconv[train]" (or pip install '
            "scikit-learn tqdm)"
        ) from None


def load_data(seed, layout="NCHW", dtype=np.float32, test_size=0.25, limit=None):
    """Digits as (x_train, x_test, y_train, y_test), scaled to [0, 1], a stratified split.

    ``limit`` keeps only the first ``limit`` images (before splitting), for
    quick runs.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(dtype)[:, None, :, :]  # (N, 1, 8, 8)
    y = digits.target.astype(np.int64)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)


def _progress(total, desc, quiet):
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (a log file, a pipe)
    return tqdm(
        total=total, desc=desc, unit="img", leave=False, disable=True if quiet else None, ncols=80
    )


def _fit(model, params, x_tr, y_tr, x_te, y_te, args, label, quiet, freeze_eval=None):
    """Adam with a cosine learning-rate schedule; prints one line per epoch."""
    opt = Adam(params, lr=args.lr)
    crit = CrossEntropyLoss()
    rng = np.random.default_rng(args.seed)
    for epoch in range(args.epochs):
        opt.lr = args.lr * 0.5 * (1 + math.cos(math.pi * epoch / args.epochs))
        model.train()
        if freeze_eval is not None:
            freeze_eval.eval()  # frozen BatchNorms keep their running statistics
        with _progress(len(x_tr), f"{label} epoch {epoch + 1}/{args.epochs}", quiet) as bar:
            loss = train_epoch(model, opt, crit, x_tr, y_tr, args.batch_size, rng, bar)
        print(
            f"{label} epoch {epoch + 1:>2}/{args.epochs}  loss {loss:.4f}  "
            f"train acc {accuracy(model, x_tr, y_tr):.4f}  "
            f"test acc {accuracy(model, x_te, y_te):.4f}",
            flush=True,
        )
    model.eval()


def _report(model, x_te, y_te, names):
    from sklearn.metrics import classification_report

    pred = predict(model, x_te).argmax(axis=1)
    print(classification_report(y_te, pred, target_names=names, digits=4, zero_division=0))
    return float(np.mean(pred == y_te))


def _build(args, num_classes, seed):
    return SeparableConvNet(
        in_channels=1,
        num_classes=num_classes,
        input_size=8,
        stem_width=args.stem_width,
        widths=args.widths,
        strides=args.strides,
        dropout=args.dropout,
        layout=args.layout,
        rng=seed,
    )


def _setup(args):
    _require()
    if args.threads is not None:
        pydsconv.set_num_threads(args.threads)
    print(
        f"pydsconv {pydsconv.__version__}: kernels '{pydsconv.cpu_features()['isa']}', "
        f"{pydsconv.get_num_threads()} thread(s), layout {args.layout}"
    )


def train_command(args):
    """``pydsconv train``: SeparableConvNet on all ten digits; returns the exit code."""
    t0 = time.perf_counter()
    _setup(args)
    x_tr, x_te, y_tr, y_te = load_data(args.seed, args.layout, limit=args.limit)
    model = _build(args, 10, args.seed)
    print(
        f"digits: {len(x_tr)} train / {len(x_te)} test images (8x8), seed {args.seed}; "
        f"SeparableConvNet: {model.num_parameters()} parameters, "
        f"{model.macs() / 1e3:.0f} k MACs per image"
    )
    _fit(model, model.parameters(), x_tr, y_tr, x_te, y_te, args, "train", args.quiet)
    acc = _report(model, x_te, y_te, [str(d) for d in range(10)])
    elapsed = time.perf_counter() - t0
    path = save(
        model,
        args.out,
        metadata={"model": "SeparableConvNet", "config": model.config, "classes": list(range(10))},
    )
    print(f"test accuracy {acc:.4f}; elapsed {elapsed:.1f} s; weights saved to {path}")
    return 0


def _trainable_report(model):
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    frozen = [(n, p) for n, p in model.named_parameters() if not p.requires_grad]
    print(f"trainable parameters ({sum(p.size for _, p in trainable)} values):")
    for name, p in trainable:
        print(f"  {name:<24} {str(p.shape):<12}")
    print(
        f"frozen: {len(frozen)} parameter arrays ({sum(p.size for _, p in frozen)} values) "
        f"in {', '.join(sorted({n.split('.')[0] for n, _ in frozen}))}"
    )


def finetune_command(args):
    """``pydsconv finetune``: backbone on digits 0-4, new head on 5-9; returns the exit code."""
    t0 = time.perf_counter()
    _setup(args)
    if args.checkpoint:
        layout = args.layout
        model, meta = _checkpoint_model(args)
        if args.layout != layout:
            print(f"note: the checkpoint was trained with layout {args.layout}; using it")
    x_tr, x_te, y_tr, y_te = load_data(args.seed, args.layout, limit=args.limit)
    src_tr, src_te = y_tr < 5, y_te < 5
    if args.checkpoint:
        print(
            f"backbone from {args.checkpoint} ({model.config['num_classes']} classes; trained "
            f"on digits {meta.get('classes', '?')})"
        )
    else:
        model = _build(args, 5, args.seed)
        print(
            f"1. backbone: SeparableConvNet trained on digits 0-4 "
            f"({int(src_tr.sum())} train / {int(src_te.sum())} test images)"
        )
        _fit(
            model,
            model.parameters(),
            x_tr[src_tr],
            y_tr[src_tr],
            x_te[src_te],
            y_te[src_te],
            args,
            "0-4",
            args.quiet,
        )
        print(f"   digits 0-4 test accuracy {accuracy(model, x_te[src_te], y_te[src_te]):.4f}")

    # 2. freeze the backbone (and keep its BatchNorm statistics: eval mode), new head for 5-9
    model.features.freeze()
    model.classifier = Linear(model.classifier.in_features, 5, rng=args.seed + 1)
    tgt_tr, tgt_te = y_tr >= 5, y_te >= 5
    xt_tr, yt_tr, xt_te, yt_te = x_tr[tgt_tr], y_tr[tgt_tr] - 5, x_te[tgt_te], y_te[tgt_te] - 5
    print(
        f"2. new head for digits 5-9 ({len(xt_tr)} train / {len(xt_te)} test images); "
        "backbone frozen"
    )
    _trainable_report(model)
    head_args = _HeadArgs(args)
    trainable = [p for p in model.parameters() if p.requires_grad]
    _fit(
        model,
        trainable,
        xt_tr,
        yt_tr,
        xt_te,
        yt_te,
        head_args,
        "5-9",
        args.quiet,
        freeze_eval=model.features,
    )
    acc = _report(model, xt_te, yt_te, [str(d) for d in range(5, 10)])
    elapsed = time.perf_counter() - t0
    path = save(
        model,
        args.out,
        metadata={
            "model": "SeparableConvNet",
            "config": dict(model.config, num_classes=5),
            "classes": list(range(5, 10)),
        },
    )
    print(
        f"digits 5-9 test accuracy {acc:.4f} (head only); elapsed {elapsed:.1f} s; "
        f"weights saved to {path}"
    )
    return 0


def _checkpoint_model(args):
    """``(model, metadata)``: the SeparableConvNet saved at ``args.checkpoint``,
    built from its metadata's configuration (copied into ``args``) and loaded."""
    meta = load_metadata(args.checkpoint)
    cfg = meta.get("config", {})
    for key in ("layout", "stem_width", "widths", "strides", "dropout"):
        if key in cfg:
            setattr(args, key, cfg[key])
    model = _build(args, cfg.get("num_classes", 10), args.seed)
    model.load(args.checkpoint)
    return model, meta


class _HeadArgs:
    """The head's training settings: its own epochs and learning rate."""

    def __init__(self, args):
        self.epochs = args.head_epochs
        self.lr = args.head_lr
        self.batch_size = args.batch_size
        self.seed = args.seed + 1


def add_arguments(parser, command):
    """The options of ``train`` / ``finetune`` (used by ``pydsconv.__main__``)."""

    def positive(s):
        v = int(s)
        if v < 1:
            raise ValueError
        return v

    positive.__name__ = "positive int"

    def positive_float(s):
        v = float(s)
        if not 0 < v < math.inf:
            raise ValueError
        return v

    positive_float.__name__ = "positive float"

    epochs, lr = 12, 0.01
    parser.add_argument(
        "--epochs",
        type=positive,
        default=epochs,
        help=f"passes over the training set (default {epochs})",
    )
    parser.add_argument("--batch-size", type=positive, default=32, help="default 32")
    parser.add_argument(
        "--lr",
        type=positive_float,
        default=lr,
        help=f"Adam learning rate, cosine-decayed over the epochs (default {lr})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the train/test split, the weights and the shuffling "
        "(0 to 2**32 - 1; default 0)",
    )
    parser.add_argument(
        "--threads",
        type=positive,
        default=1,
        help="pydsconv threads, at most cpu_features()['max_threads'] (default 1: "
        "an 8x8 batch is too little work to split, and spinning threads "
        "lose badly on a busy machine)",
    )
    parser.add_argument(
        "--layout", choices=("NCHW", "NHWC"), default="NCHW", help="data layout (default NCHW)"
    )
    parser.add_argument(
        "--out",
        default=f"digits_{command}.npz",
        help="where to save the weights, in an existing directory (.npz is "
        f"appended if missing; default digits_{command}.npz)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--limit",
        type=positive,
        default=None,
        help=f"use only the first N images (quick runs; N >= {MIN_LIMIT})",
    )
    parser.add_argument("--stem-width", type=positive, default=16, help="default 16")
    widths, dropout = ([32, 64, 128], 0.0) if command == "train" else ([32, 128, 256], 0.3)
    parser.add_argument(
        "--widths",
        type=positive,
        nargs="+",
        default=widths,
        help=f"output channels of the separable blocks (default {' '.join(map(str, widths))})",
    )
    parser.add_argument(
        "--dropout",
        type=float,
        default=dropout,
        help=f"dropout before the classifier, in [0, 1) (default {dropout})",
    )
    parser.add_argument(
        "--strides",
        type=positive,
        nargs="+",
        default=None,
        help="depthwise stride of each block (default 1 2 2 ...); the 8x8 "
        "images must keep at least 2x2 pixels",
    )
    if command == "finetune":
        parser.add_argument(
            "--head-epochs",
            type=positive,
            default=30,
            help="epochs for the new head on digits 5-9 (default 30)",
        )
        parser.add_argument(
            "--head-lr",
            type=positive_float,
            default=0.05,
            help="learning rate for the head (default 0.05)",
        )
        parser.add_argument(
            "--checkpoint",
            default=None,
            help="start from a `pydsconv train` checkpoint (.npz) instead of "
            "training the backbone on digits 0-4; note that such a "
            "backbone has seen digits 5-9",
        )


def check_arguments(args, parser):
    """Refuse bad options before any work: ``parser.error`` (one line on stderr
    naming the option, exit status 2).  Fills in the default ``--strides``."""
    if args.strides is None:
        args.strides = [1] + [2] * (len(args.widths) - 1)
    if len(args.strides) != len(args.widths):
        parser.error(
            f"--strides needs one value per --widths entry ({len(args.widths)}), got "
            f"{len(args.strides)}"
        )
    size = 8
    for s in args.strides:
        size = cost.output_size(size, 3, stride=s, padding=1)[0]
    if size < 2 and not getattr(args, "checkpoint", None):
        parser.error(
            f"--strides {' '.join(map(str, args.strides))} shrink the 8x8 images to "
            "1x1; BatchNorm needs at least 2x2 pixels (a mini-batch may hold one image)"
        )
    if not 0 <= args.seed < 2**32:  # scikit-learn's random_state
        parser.error(f"--seed must be between 0 and {2**32 - 1}, got {args.seed}")
    if not 0 <= args.dropout < 1:
        parser.error(f"--dropout must be in [0, 1), got {args.dropout}")
    max_threads = pydsconv.cpu_features().get("max_threads")
    if max_threads is not None and args.threads > max_threads:
        parser.error(
            f"--threads must be between 1 and {max_threads} (cpu_features()"
            f"['max_threads'] on this machine), got {args.threads}"
        )
    if args.limit is not None and args.limit < MIN_LIMIT:
        parser.error(
            f"--limit must be at least {MIN_LIMIT} (a stratified 75/25 split needs a "
            f"test image of each of the 10 digits), got {args.limit}"
        )
    _check_out(args.out, parser)
    if getattr(args, "checkpoint", None):
        try:
            _checkpoint_model(copy.copy(args))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            reason = exc.args[0] if isinstance(exc, KeyError) else exc
            parser.error(f"--checkpoint {args.checkpoint}: {reason}")


def _check_out(out, parser):
    """``--out`` names a file that :func:`~pydsconv.nn.save` can write (it appends ``.npz``)."""
    path = os.fspath(out)
    path = path if path.endswith(".npz") else path + ".npz"
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        parser.error(f"--out {out}: {path} is a directory")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        parser.error(f"--out {out}: cannot write in {folder}: {exc.strerror}")
