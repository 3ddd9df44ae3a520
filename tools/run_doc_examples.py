"""Run the code examples of README.md and docs/*.md; exit 1 if any fails.

Usage (from anywhere; paths default to README.md and docs/*.md)::

    python tools/run_doc_examples.py [FILE.md ...] [--allow-missing torch] [-v]

What runs:

- every fenced block opened with ```python (or ```py): the blocks of one
  file run in order, in one namespace of their own, so a later block may use
  names an earlier one defined;
- every ```pycon block, as a doctest (its ``>>>`` outputs are checked), in
  the same namespace.

Each file runs in a fresh Python process whose working directory is a new
temporary directory (examples may write files there).  The process imports
the in-place build when the repository has one (``pydsconv/_core*.so``,
README "Development"), otherwise the installed package.

A block preceded by the comment ``<!-- no-run: why -->`` (on the line just
before its fence) is skipped, e.g. one that needs the network.
``docs/api.md`` is skipped: it is generated from the docstrings and its
```python blocks are signatures, not programs.

``--allow-missing MOD`` turns an ImportError of module MOD into a skip of the
rest of that file (for machines without the optional dependency; CI has
torch and runs everything).

Failures are reported as ``FILE:LINE`` of the block's opening fence, with the
traceback (whose line numbers are the Markdown file's).
"""

import argparse
import doctest
import glob
import os
import re
import subprocess
import sys
import tempfile
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_FILES = {os.path.join("docs", "api.md"): "generated; its python blocks are signatures"}
FENCE = re.compile(r"^(\s*)```\s*([A-Za-z0-9_+-]*)\s*$")
NO_RUN = re.compile(r"^\s*<!--\s*no-run\b(.*?)-->\s*$")
RUN_LANGS = {"python": "python", "py": "python", "pycon": "pycon"}


def extract(path):
    """[(lang, first_code_line, code, no_run_reason | None)] of one Markdown file."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2).lower()
        start = i
        i += 1
        body = []
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            line = lines[i]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            i += 1
        i += 1  # the closing fence
        if lang not in RUN_LANGS:
            continue
        prev = lines[start - 1] if start > 0 else ""
        nr = NO_RUN.match(prev)
        reason = (nr.group(1).strip(" :") or "marked no-run") if nr else None
        blocks.append((RUN_LANGS[lang], start + 2, "\n".join(body) + "\n", reason))
    return blocks


def run_file(path, allow_missing, verbose):
    """Run one file's blocks in this process; return the number of failures."""
    rel = os.path.relpath(path, ROOT)
    ns = {"__name__": "__doc_example__"}
    failures = 0
    for lang, line, code, reason in extract(path):
        where = f"{rel}:{line - 1}"
        if reason is not None:
            if verbose:
                print(f"{where}: skipped ({reason})")
            continue
        try:
            if lang == "python":
                # pad so that tracebacks give the Markdown file's line numbers
                exec(compile("\n" * (line - 1) + code, rel, "exec"), ns)
            else:
                test = doctest.DocTestParser().get_doctest(code, ns, where, rel, line - 1)
                runner = doctest.DocTestRunner(
                    verbose=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
                )
                out = []
                runner.run(test, out=out.append, clear_globs=False)
                if runner.failures:
                    print(f"{where}: FAILED (doctest)\n" + "".join(out))
                    failures += 1
                    continue
        except ImportError as e:
            if e.name and e.name.split(".")[0] in allow_missing:
                print(f"{where}: {e.name} is not installed; rest of {rel} skipped")
                return failures
            print(f"{where}: FAILED\n{traceback.format_exc()}")
            failures += 1
        except BaseException:  # SystemExit included: an example must not exit
            print(f"{where}: FAILED\n{traceback.format_exc()}")
            failures += 1
        else:
            if verbose:
                print(f"{where}: ok")
    return failures


def default_files():
    files = [os.path.join(ROOT, "README.md")]
    files += sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    return [f for f in files if os.path.relpath(f, ROOT) not in SKIP_FILES]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="*", help="Markdown files (default: README.md docs/*.md)")
    p.add_argument(
        "--allow-missing",
        action="append",
        default=[],
        metavar="MODULE",
        help="skip the rest of a file when MODULE cannot be imported",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="print every block's result")
    p.add_argument("--timeout", type=float, default=600, help="seconds per file (default 600)")
    p.add_argument("--one", help=argparse.SUPPRESS)  # child mode: run FILE here
    args = p.parse_args(argv)

    if args.one:
        return 1 if run_file(args.one, set(args.allow_missing), args.verbose) else 0

    files = [os.path.abspath(f) for f in args.files] or default_files()
    env = dict(os.environ)
    if glob.glob(os.path.join(ROOT, "pydsconv", "_core*.so")) + glob.glob(
        os.path.join(ROOT, "pydsconv", "_core*.pyd")
    ):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    env.setdefault("MPLBACKEND", "Agg")
    failed = []
    for path in files:
        rel = os.path.relpath(path, ROOT)
        n = sum(1 for b in extract(path) if b[3] is None)
        cmd = [sys.executable, os.path.abspath(__file__), "--one", path]
        cmd += [a for m in args.allow_missing for a in ("--allow-missing", m)]
        cmd += ["-v"] if args.verbose else []
        with tempfile.TemporaryDirectory(prefix="pydsconv-doc-") as tmp:
            try:
                r = subprocess.run(
                    cmd,
                    cwd=tmp,
                    env=env,
                    timeout=args.timeout,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                out, rc = r.stdout, r.returncode
            except subprocess.TimeoutExpired as e:
                out, rc = (
                    (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""),
                    -1,
                )
                out += f"{rel}: timed out after {args.timeout:g} s\n"
        status = "ok" if rc == 0 else "FAILED"
        print(f"{rel}: {n} block(s) {status}")
        if out.strip() and (rc != 0 or args.verbose or "skipped" in out):
            print("    " + out.rstrip().replace("\n", "\n    "))
        if rc != 0:
            failed.append(rel)
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    print(f"all examples ran ({len(files)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
