#!/usr/bin/env python3
"""Generate docs/api.md, pydsconv's API reference, from the docstrings.

Usage (from the repository root, with pydsconv built in place, see the
README's Development section)::

    python tools/gen_api_docs.py -o docs/api.md    # regenerate the file
    python tools/gen_api_docs.py                   # print it to stdout
    python tools/gen_api_docs.py --check           # exit 1 if docs/api.md is stale

It imports pydsconv *from this source tree* (not an installed copy; with
``--installed`` the installed one), walks ``pydsconv.__all__`` and the
``__all__`` of ``pydsconv.weights``, ``pydsconv.cost``,
``pydsconv.reference``, ``pydsconv.nn`` and ``pydsconv.torch`` (PyTorch must
be installed), and writes, for every public function and class (with the
public methods the class defines), its signature and its numpydoc docstring
turned into Markdown.  The
"Errors" section, common to every op, is written by hand below (``ERRORS``)
and follows the argument rules of ``cpp/README.md`` (0-10).

The output depends only on the source: no dates, paths, machine or CPU
details, so running the script twice gives the same bytes (``--check``
verifies that too).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import re
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join("docs", "api.md")
REGEN = "python tools/gen_api_docs.py -o docs/api.md"

# Modules documented, in this order; each contributes the functions of its __all__.
MODULES = (
    "pydsconv",
    "pydsconv.weights",
    "pydsconv.cost",
    "pydsconv.reference",
    "pydsconv.nn",
    "pydsconv.torch",
)

# numpydoc sections rendered as definition lists ("name : type" + indented text).
DEFLIST_SECTIONS = {
    "Parameters",
    "Other Parameters",
    "Returns",
    "Yields",
    "Raises",
    "Warns",
    "Attributes",
    "Functions",
    "See Also",
}
# Sections whose entries have no name, only a type (Returns) or an exception.
TYPE_ONLY_SECTIONS = {"Returns", "Yields", "Raises", "Warns"}

ERRORS = """\
## Errors

Every op of `pydsconv` (the forward ops and the `*_backward` ops) checks all
its arguments before it computes anything: when it raises, nothing has been
computed and **nothing has been written to `out`**.  Messages name the
argument as you passed it (`x`, `weight`, `depthwise_weight`,
`pointwise_bias`, `grad_out`, `out`, `stride`, ...) and, for a shape, the
shape expected.  The numbers are the argument rules of `cpp/README.md`.

### `TypeError`: dtypes and argument types (pydsconv never casts silently)

| rule | raised when | fix |
| --- | --- | --- |
| 0 | an array argument does not have dtype float32 or float64: integer, bool, float16, complex, object, or a list NumPy turns into integers | convert it yourself: `a.astype(np.float32)` |
| 0 | the arrays of one call do not all share one dtype, e.g. a float32 `x` with a float64 `weight` (what `np.random.rand` and many checkpoints give); the message names both arguments | `weight.astype(x.dtype)` |
| 0 | an array has non-native byte order (`>f4` on a little-endian machine) | `a.astype(np.float32)` |
| - | `None` for a required array, or an object NumPy cannot turn into an array | |
| - | `out` is not a NumPy array | |
| - | `stride`, `dilation`, `padding` or `num_threads` is not an int (or a tuple of ints): `1.5`, `True`, `np.float32(2)`; `stride`/`dilation` `None` (a string `padding` other than the modes is a `ValueError`) | |

### `ValueError`: shapes and values

| rule | raised when |
| --- | --- |
| 1 | `x` does not have `spatial + 2` dimensions in the layout's order: `(N, C, H, W)` for `"NCHW"`, `(N, H, W, C)` for `"NHWC"`, `(N, C, L)` for `"NCL"`, `(N, L, C)` for `"NLC"`; or C, H, W or L is 0.  `N = 0` is allowed and gives an empty result |
| 2 | a depthwise weight is not `(C*M, 1, kH, kW)` (1-D: `(C*M, 1, k)`) with a first dimension that is a positive multiple of x's `C`.  A Keras-shaped kernel `(kH, kW, C, M)` / `(k, C, M)` gets a hint to `pydsconv.weights.from_keras_depthwise[1d]` |
| 3 | a pointwise weight is not `(C_out, C_in, 1, 1)` / `(C_out, C_in, 1)` or `(C_out, C_in)`, where `C_in` is x's channels (pointwise ops) or `C*M` (separable ops).  A Keras-shaped `(1, 1, C_in, C_out)` gets a hint to `from_keras_pointwise` |
| 4 | a bias is not 1-D of length `C*M` (depthwise) or `C_out` (pointwise) |
| 5 | `stride` or `dilation` < 1, an explicit `padding` < 0, any of them >= 2**40; a tuple of the wrong length; `padding` a string other than `"valid"`, `"same"` (any case) and, for 1-D ops only, `"causal"` |
| 6 | (not an error: how padding resolves) explicit as given; `"valid"` = 0; `"same"` = TensorFlow's rule at every stride: output `ceil(in / stride)`, total padding `max((out - 1)*stride + (k - 1)*dilation + 1 - in, 0)`, `total // 2` before and the rest (the odd pixel) after, i.e. at the bottom/right; `"causal"` = `(k - 1)*dilation` on the left |
| 7 | the dilated kernel does not fit: `(k - 1)*dilation + 1 > in + pad_before + pad_after` on some axis.  Output size is `(in + pads - ((k - 1)*dilation + 1)) // stride + 1` |
| 8 | `grad_out` (backward ops) does not have exactly the forward output's shape |
| 9 | `out` does not have exactly the result's shape or the call's dtype, is not C-contiguous, is read-only, or overlaps an input's memory |
| 10 | an element count (or a byte count) of any array would overflow a signed 64-bit integer (checked before anything is allocated) |
| - | `layout` is not one of `"NCHW"`, `"NHWC"` (2-D) or `"NCL"`, `"NLC"` (1-D); the names are case-sensitive |
| - | `activation` / `mid_activation` is not `None`, `"relu"`, `"relu6"`, `"hardswish"`, `"hardsigmoid"`, `"silu"` or `"sigmoid"` (case-sensitive) |
| - | `num_threads` (or the `n` of `set_num_threads`) is below 1 (above `cpu_features()["max_threads"]`, 4 x the usable cores, it is capped with a `RuntimeWarning`, not refused) |

### `out=`

`out` must be a C-contiguous, writable NumPy array of exactly the result's
shape and dtype that shares no memory with any input; it is filled and
returned (`y = op(..., out=buf)` gives `y is buf`).  Inputs that are not
C-contiguous are copied once before the call (C-contiguous ones are read in
place, zero-copy).

### Inf and NaN

Every op computes IEEE arithmetic over the real terms of the zero-padded
input, as `pydsconv.reference` and PyTorch's padded convolution do: the
padding is zeros that are multiplied, so a non-finite weight tap that reads
padding gives `0 * inf = nan` at that output, and a non-finite `grad_out` at
an output that read padding gives NaN in the weight gradient of the tap that
read it.  Terms that do not exist (outputs beyond the edge, in the input
gradient) are not added.  Every activation keeps NaN, and follows
PyTorch at the infinities: `hardswish(-inf)` and `silu(-inf)` are NaN
(`-inf * 0`, `-inf / inf`), `sigmoid(-inf)` and `hardsigmoid(-inf)` 0,
`sigmoid(inf)` 1, `silu(inf)` and `hardswish(inf)` inf.  The same holds for
both layouts, both dtypes, every ISA, fused and unfused, and any thread
count (`tests/test_nonfinite.py`, `tests/test_activations.py`).

### Activations

`activation=` / `mid_activation=` take `None`, `"relu"`, `"relu6"`,
`"hardswish"` (`x * relu6(x + 3) / 6`), `"hardsigmoid"` (`relu6(x + 3) /
6`), `"silu"` (`x * sigmoid(x)`, computed as `x / (1 + exp(-x))`) and
`"sigmoid"` (`1 / (1 + exp(-x))`): PyTorch's definitions, applied in the
epilogue of the kernel that writes each output.  relu, relu6, hardswish and
hardsigmoid are exact up to the rounding of `/ 6` (`hardswish(x) = x` for
`x >= 3`); silu and sigmoid use a vectorised `exp` accurate to a few ulp in
both dtypes (the kernels of different ISAs may differ in the last bits; any
thread count gives the same bits).  The backward ops take the gradient
before the activation; `pydsconv.nn` and `pydsconv.torch` apply the
derivatives (hardswish and silu need the value before the activation, so
their training-mode layers run the op without it and apply it after).

### Warnings

`import pydsconv` emits a `RuntimeWarning` when the environment variable
`PYDSCONV_ISA` names an unknown kernel set or one this CPU cannot run (any
bytes: shown with `\\xNN` escapes), or when `OMP_NUM_THREADS` is not a
positive count or is above `cpu_features()["max_threads"]`; the best
available set, the usable cores or the cap is used instead (see
`cpu_features()`).  A `num_threads` or `set_num_threads(n)` above the cap
warns and uses the cap.

### Other modules

- `pydsconv.weights`: `TypeError` for a non-floating dtype (or a non-integer
  `channels` / `multiplier`), `ValueError` naming `w` and the expected shape.
  Each function's *Raises* section below is exact.
- `pydsconv.cost`: `TypeError` for a size that is not an integer (bools
  included), `ValueError` for non-positive sizes, stride or dilation < 1,
  negative padding or a kernel larger than the padded input.
- `pydsconv.reference` is the tests' oracle, not the product: it checks
  little (obviously wrong shapes, layouts, paddings and activations are a
  `ValueError`), computes in float64 whatever the input dtypes, and returns
  the dtype of `x` (`grad_out` for backward ops).
"""


# --------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------


def import_pydsconv(installed=False):
    """Import pydsconv from this source tree (it must be built in place), or
    with ``installed`` the one installed (CI: the wheel built from this tree)."""
    if installed:
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != ROOT]
        return importlib.import_module("pydsconv")
    sys.path.insert(0, ROOT)
    try:
        pkg = importlib.import_module("pydsconv")
    except ImportError as exc:
        sys.exit(
            f"gen_api_docs: cannot import pydsconv from {ROOT}: {exc}\n"
            "Build it in place first (README, Development)."
        )
    if os.path.dirname(os.path.dirname(os.path.abspath(pkg.__file__))) != ROOT:
        sys.exit(f"gen_api_docs: imported pydsconv from {pkg.__file__}, not from {ROOT}")
    return pkg


# --------------------------------------------------------------------------
# docstring -> Markdown
# --------------------------------------------------------------------------


def slug(heading):
    """GitHub's anchor for a heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


class Renderer:
    def __init__(self, anchors):
        self.anchors = anchors  # qualified name -> anchor
        self.module = "pydsconv"

    # -- inline -------------------------------------------------------------

    def resolve(self, name):
        name = name.lstrip("~").strip()
        for cand in (name, f"{self.module}.{name}", f"pydsconv.{name}"):
            if cand in self.anchors:
                return cand
        return None

    def ref(self, name):
        """A code span, linked when ``name`` is a documented function."""
        target = self.resolve(name)
        shown = name.lstrip("~")
        if target is None:
            return f"`{shown}`"
        return f"[`{shown}`](#{self.anchors[target]})"

    def inline(self, text):
        text = re.sub(
            r":(?:func|meth|class|mod|obj|data|attr):`([^`]+)`",
            lambda m: self.ref(m.group(1)),
            text,
        )
        text = re.sub(r"``(.+?)``", r"`\1`", text, flags=re.S)
        return text

    # -- blocks -------------------------------------------------------------

    def prose(self, lines):
        """Free text: paragraphs, bullet lists, ``::`` literal blocks, simple tables."""
        out = []
        plain = []  # a run of ordinary lines, converted together (code spans may wrap)

        def flush():
            if plain:
                out.extend(self.inline("\n".join(plain)).split("\n"))
                plain.clear()

        i = 0
        n = len(lines)
        while i < n:
            line = lines[i]
            if is_table_border(line) or line.rstrip().endswith("::"):
                flush()
            if is_table_border(line):
                j = i + 1
                while j < n and lines[j].strip():
                    j += 1
                out += self.table(lines[i:j])
                i = j
                continue
            if line.rstrip().endswith("::"):
                # RST: "text::" -> "text:", "text ::" -> "text", "::" alone -> nothing
                head = line.rstrip()[:-2]
                if head.strip():
                    out.append(self.inline(head.rstrip() if head.endswith(" ") else head + ":"))
                i += 1
                block = []
                while i < n and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                    block.append(lines[i])
                    i += 1
                while block and not block[-1].strip():
                    block.pop()
                while block and not block[0].strip():
                    block.pop(0)
                out += ["", "```text", *textwrap.dedent("\n".join(block)).splitlines(), "```", ""]
                continue
            plain.append(line)
            i += 1
        flush()
        return out

    def table(self, lines):
        """An RST simple table -> a Markdown table."""
        border = lines[0]
        spans = [m.span() for m in re.finditer(r"=+", border)]
        rows = []
        for line in lines[1:]:
            if is_table_border(line):
                continue
            cells = []
            for k, (a, _b) in enumerate(spans):
                end = spans[k + 1][0] if k + 1 < len(spans) else len(line)
                cells.append(line[a:end].strip())
            rows.append(cells)
        if not rows:
            return []
        md = [
            "| " + " | ".join(self.inline(c) for c in rows[0]) + " |",
            "|" + "|".join(" --- " for _ in spans) + "|",
        ]
        md += ["| " + " | ".join(self.inline(c) for c in r) + " |" for r in rows[1:]]
        return [""] + md + [""]

    def deflist(self, section, lines):
        """numpydoc entries ("name : type" then indented text) -> a bullet list."""
        entries = []
        for line in lines:
            if not line.strip():
                if entries:
                    entries[-1][1].append("")
                continue
            if not line.startswith((" ", "\t")):
                entries.append([line.strip(), []])
            elif entries:
                entries[-1][1].append(line)
        out = []
        for head, body in entries:
            paras = [
                " ".join(p.split())
                for p in "\n".join(textwrap.dedent("\n".join(body)).splitlines()).split("\n\n")
            ]
            paras = [self.inline(p) for p in paras if p.strip()]
            if section == "See Also":
                name, _, desc = head.partition(":")
                item = self.ref(name.strip())
                desc = " ".join([desc.strip()] + paras).strip()
                out.append(f"- {item}" + (f": {self.inline(desc)}" if desc else ""))
                continue
            if section == "Functions":
                item = ", ".join(self.ref(nm.strip()) for nm in head.split(","))
            elif section in TYPE_ONLY_SECTIONS and " : " not in head:
                item = f"`{head.replace('`', '')}`"
            else:
                name, sep, typ = head.partition(" : ")
                item = f"**`{name.strip()}`**"
                if sep:
                    item += f" (`{typ.strip().replace('`', '')}`)"
            text = (": " + paras[0]) if paras else ""
            out.append(f"- {item}{text}")
            for p in paras[1:]:
                out += ["", f"  {p}"]
        return [""] + out + [""]

    def docstring(self, doc, module, raises_fallback=None):
        self.module = module
        lines = inspect.cleandoc(doc or "").splitlines()
        sections = [("", [])]
        i = 0
        while i < len(lines):
            line = lines[i]
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if (
                line.strip()
                and not line.startswith(" ")
                and re.fullmatch(r"-{3,}", nxt.strip())
                and len(nxt.strip()) == len(line.strip())
            ):
                sections.append((line.strip(), []))
                i += 2
                continue
            sections[-1][1].append(line)
            i += 1
        out = []
        names = [s for s, _ in sections]
        for name, body in sections:
            while body and not body[-1].strip():
                body.pop()
            while body and not body[0].strip():
                body.pop(0)
            if not name:
                out += self.prose(body)
                continue
            out += ["", f"**{name}**"]
            if name in DEFLIST_SECTIONS:
                out += self.deflist(name, body)
            elif name == "Examples":
                out += ["", "```pycon", *textwrap.dedent("\n".join(body)).splitlines(), "```", ""]
            else:
                out += [""] + self.prose(body) + [""]
        if raises_fallback and "Raises" not in names:
            out += ["", "**Raises**", "", raises_fallback, ""]
        return squeeze(out)


def is_table_border(line):
    s = line.strip()
    return bool(s) and re.fullmatch(r"=+( +=+)+", s) is not None


def squeeze(lines):
    """Drop leading/trailing blank lines and runs of blank lines."""
    out = []
    for line in lines:
        line = line.rstrip()
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return out


def signature(qualname, func, width=88):
    """``qualname(args)`` wrapped at top-level commas to ``width`` columns.

    Type annotations are left out: they name aliases (``Padding2D``, ...)
    that the page does not define, and each docstring's Parameters section
    already gives the types in words.
    """
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    if params and params[0].name in ("self", "cls") and "." in func.__qualname__:
        params = params[1:]  # a method: shown as Class.method(args)
    sig = str(
        sig.replace(
            parameters=[p.replace(annotation=inspect.Parameter.empty) for p in params],
            return_annotation=inspect.Signature.empty,
        )
    )
    inner = sig[1 : sig.rindex(")")]
    tail = sig[sig.rindex(")") :]
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    head = f"{qualname}("
    lines, line = [], head
    for k, part in enumerate(parts):
        piece = part + ("," if k < len(parts) - 1 else "")
        if line != head and line != " " * len(head) and len(line) + 1 + len(piece) > width:
            lines.append(line.rstrip())
            line = " " * len(head)
        if line not in (head, " " * len(head)):
            line += " "
        line += piece
    lines.append(line + tail)
    return "\n".join(lines)


# --------------------------------------------------------------------------
# the document
# --------------------------------------------------------------------------


def collect():
    """[(module name, module, [(qualified name, function or class)])] in
    documentation order; a class is followed by the public methods it
    defines itself (inherited ones are documented on their base class)."""
    out = []
    for modname in MODULES:
        mod = importlib.import_module(modname)
        funcs = []
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or not callable(obj):
                continue
            funcs.append((f"{modname}.{name}", obj))
            if inspect.isclass(obj):
                for meth, fn in vars(obj).items():
                    if isinstance(fn, (staticmethod, classmethod)):
                        fn = fn.__func__
                    if (meth.startswith("_") and meth != "__call__") or not inspect.isfunction(fn):
                        continue
                    if not fn.__doc__:
                        continue
                    funcs.append((f"{modname}.{name}.{meth}", fn))
        out.append((modname, mod, funcs))
    return out


# "Raises" text for public functions whose docstring has no Raises section.
RAISES = {
    "pydsconv.set_num_threads": "`TypeError` if `n` is not an int; `ValueError` if `n` < 1.  "
    'Above `cpu_features()["max_threads"]` it is capped, with a '
    "`RuntimeWarning`.",
    "pydsconv.get_num_threads": "Nothing.",
    "pydsconv.cpu_features": "Nothing.",
}


def raises_note(qual, func):
    if qual in RAISES:
        return RAISES[qual]
    if func.__module__ != "pydsconv.conv":
        return None
    if qual.endswith("_backward"):
        return (
            "See [Errors](#errors): `TypeError` for dtypes, `ValueError` naming the "
            "argument for shapes and values; `grad_out` must have exactly the forward "
            "output's shape (rule 8)."
        )
    note = (
        "See [Errors](#errors): `TypeError` for dtypes, `ValueError` naming the "
        "argument for shapes and values"
    )
    if "out" in inspect.signature(func).parameters:
        return note + ", and the [`out=` rules](#out)."
    return note + "."


def summary(func):
    doc = inspect.cleandoc(func.__doc__ or "")
    return doc.split("\n\n")[0].replace("\n", " ").strip()


def generate(installed=False):
    pkg = import_pydsconv(installed)
    groups = collect()
    anchors = {}
    for _, _, funcs in groups:
        for qual, func in funcs:
            anchors[qual] = slug(("class " if inspect.isclass(func) else "") + f"`{qual}`")
    r = Renderer(anchors)

    md = [
        "# pydsconv API reference",
        "",
        f"<!-- Generated by tools/gen_api_docs.py from the docstrings of pydsconv "
        f"{pkg.__version__}. Do not edit by hand; regenerate with: {REGEN} -->",
        "",
        f"pydsconv {pkg.__version__}.  Every public function, its signature and its "
        "docstring (`help(pydsconv.<name>)` shows the same text), then the "
        "[Errors](#errors) every op raises.  Regenerate this file with "
        f"`{REGEN}` after changing a docstring.",
        "",
        "## Contents",
        "",
    ]
    for modname, _, funcs in groups:
        md += [
            f"[`{modname}`](#{slug('`' + modname + '`')})",
            "",
            "| name | summary |",
            "| --- | --- |",
        ]
        for qual, func in funcs:
            short = qual[len(modname) + 1 :]
            r.module = modname
            md.append(
                f"| [`{short}`](#{anchors[qual]}) | "
                f"{r.inline(summary(func)).replace('|', chr(92) + '|')} |"
            )
        md.append("")
    md += ["[Errors](#errors)", ""]

    for modname, mod, funcs in groups:
        md += ["", f"## `{modname}`", ""]
        md += r.docstring(mod.__doc__, modname)
        for qual, func in funcs:
            level = "####" if qual.count(".") > modname.count(".") + 1 else "###"
            kind = "class " if inspect.isclass(func) else ""
            md += ["", f"{level} {kind}`{qual}`", "", "```python", signature(qual, func), "```", ""]
            md += r.docstring(func.__doc__, modname, raises_note(qual, func))
        md.append("")
    md += ["", ERRORS]
    return "\n".join(squeeze(md)) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", help="write here instead of stdout (e.g. docs/api.md)")
    ap.add_argument(
        "--installed",
        action="store_true",
        help="document the installed pydsconv instead of the in-place build "
        "(CI: the wheel built from this tree)",
    )
    ap.add_argument(
        "--check",
        action="store_true",
        help=f"generate twice, and compare with {DEFAULT_OUT}: exit 1 if the two "
        "runs differ or the file is stale",
    )
    args = ap.parse_args(argv)
    text = generate(args.installed)
    if args.check:
        # a second run in a fresh interpreter with another hash seed
        env = dict(os.environ, PYTHONHASHSEED="12345")
        again = subprocess.run(
            [sys.executable, os.path.abspath(__file__)]
            + (["--installed"] if args.installed else []),
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if again != text:
            print(
                "gen_api_docs: two runs gave different output (not deterministic)", file=sys.stderr
            )
            return 1
        path = os.path.join(ROOT, DEFAULT_OUT)
        try:
            with open(path, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != text:
            print(
                f"gen_api_docs: {DEFAULT_OUT} is stale; regenerate with: {REGEN}", file=sys.stderr
            )
            return 1
        print(f"gen_api_docs: {DEFAULT_OUT} is up to date")
        return 0
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
