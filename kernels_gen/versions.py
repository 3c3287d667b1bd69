"""What identifies the code generator: its version, a hash of its sources, and the tool versions.

Every generated file is stamped with these and every cache key includes them (:func:`version_key`), so a new
torch or triton, or an edited template, printer or device library, regenerates the kernels.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import torch

from .plan import CODEGEN_VERSION


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """The tool versions stamped into every generated file (and part of every cache key)."""
    try:
        import importlib.metadata as md
        triton_version = md.version("triton")
    except Exception:  # triton not installed: the torch backend still works
        triton_version = "none"
    return {"torch_version": torch.__version__, "triton_version": triton_version}


@functools.lru_cache(maxsize=1)
def generator_fingerprint() -> str:
    """Content hash of everything that turns a plan into source (printers, templates, device libraries,
    context builders): part of every cache key, so editing any of them regenerates the kernels."""
    root = Path(__file__).parent
    files = sorted(p for pattern in ("backends/**/*.py", "backends/**/*.j2", "printing.py", "functions.py",
                                     "names.py", "plan.py") for p in root.glob(pattern))
    digest = hashlib.sha256(CODEGEN_VERSION.encode())
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def version_key() -> str:
    """Codegen version, generator fingerprint and tool versions, as one string for cache keys."""
    v = versions()
    return f"codegen={CODEGEN_VERSION}|gen={generator_fingerprint()}|torch={v['torch_version']}|" \
           f"triton={v['triton_version']}"


