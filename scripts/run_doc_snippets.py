"""Execute every ```python block of the given markdown files (per file, in one namespace, in order).

A ```text block right after a python block is the output that block prints: it is compared with what
the block printed, as doctest compares (``...`` matches anything, runs of whitespace are equal), so
write ``...`` where the output varies (timings, paths).

Usage: python scripts/run_doc_snippets.py docs README.md
"""
from __future__ import annotations

import contextlib
import doctest
import io
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")
BLOCK = re.compile(r"^```python\n(.*?)^```[ \t]*(?:\n|\Z)(?:\s*^```text\n(.*?)^```)?", re.S | re.M)
CHECKER, FLAGS = doctest.OutputChecker(), doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def markdown_files(args):
    for arg in args:
        path = Path(arg)
        yield from (sorted(path.rglob("*.md")) if path.is_dir() else [path])


def run_block(code: str, expected: str | None, name: str, namespace: dict) -> str | None:
    """Run one block; None when it ran and printed what ``expected`` says, else what went wrong."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(code, name, "exec"), namespace)
    except Exception as err:  # report every failing block, then fail
        return f"{type(err).__name__}: {err}"
    if expected is not None and not CHECKER.check_output(expected, printed.getvalue(), FLAGS):
        example = doctest.Example(code, expected)
        return "printed other output\n" + CHECKER.output_difference(example, printed.getvalue(), FLAGS)
    return None


def main(args) -> int:
    failures = passed = 0
    for path in markdown_files(args):
        blocks = [(m.group(1), m.group(2)) for m in BLOCK.finditer(path.read_text())]  # output None: unchecked
        if not blocks:
            continue
        namespace = {"__name__": f"doc_{path.stem}"}
        t0 = time.perf_counter()
        ran = checked = 0
        for i, (code, expected) in enumerate(blocks):
            problem = run_block(code, expected, f"{path}[block {i + 1}]", namespace)
            ran += 1
            if problem:
                failures += 1
                print(f"FAILED {path} block {i + 1}: {problem}")
                break
            passed += 1
            checked += expected is not None
        print(f"{path}: {ran} of {len(blocks)} python blocks ran, {checked} outputs checked "
              f"({time.perf_counter() - t0:.1f}s)")
    print(f"snippets: {passed} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["docs", "README.md"]))
