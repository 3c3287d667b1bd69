"""Execute every ```python block of the given markdown files (per file, in one namespace, in order).

Usage: python scripts/run_doc_snippets.py docs README.md
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def markdown_files(args):
    for arg in args:
        path = Path(arg)
        yield from (sorted(path.rglob("*.md")) if path.is_dir() else [path])


def main(args) -> int:
    failures = passed = 0
    for path in markdown_files(args):
        blocks = BLOCK.findall(path.read_text())
        if not blocks:
            continue
        namespace = {"__name__": f"doc_{path.stem}"}
        t0 = time.perf_counter()
        for i, code in enumerate(blocks):
            try:
                exec(compile(code, f"{path}[block {i + 1}]", "exec"), namespace)
                passed += 1
            except Exception as err:  # report every failing block, then fail
                failures += 1
                print(f"FAILED {path} block {i + 1}: {type(err).__name__}: {err}")
                break
        print(f"{path}: {len(blocks)} python blocks ran ({time.perf_counter() - t0:.1f}s)")
    print(f"snippets: {passed} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["docs", "README.md"]))
