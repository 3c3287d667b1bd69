"""On-disk cache of generated kernel sources, keyed by a content hash.

Each entry is one Python file ``<name>-<key>.<backend>.py`` whose first line is a
checksum of the rest. Files are written atomically (temp file + ``os.replace``), so
concurrent compilers of one spec race harmlessly: the last rename wins and every
rename installs a complete file. Modules are imported by path (Triton's ``jit``
reads real source files) and memoised in-process.

>>> mod = load_module("demo", "0123abcd", "torch", lambda: "VALUE = 42\\n")
>>> mod.VALUE
42
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Callable

_MEMO: dict[tuple[str, str], ModuleType] = {}
_LOCK = threading.Lock()
_FALLBACK: Path | None = None
CHECKSUM_PREFIX = "# checksum: "


def default_dir() -> Path:
    """``$NEURODSL_CACHE_DIR``, else ``$XDG_CACHE_HOME/neurodsl``, else ``~/.cache/neurodsl``."""
    if os.environ.get("NEURODSL_CACHE_DIR"):
        return Path(os.environ["NEURODSL_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "neurodsl"


def cache_dir() -> Path:
    """A writable cache directory; falls back to a private temp dir (with a warning)."""
    global _FALLBACK
    target = default_dir()
    try:
        target.mkdir(parents=True, exist_ok=True)
        if os.access(target, os.W_OK):
            return target
    except OSError:
        pass
    if _FALLBACK is None:
        _FALLBACK = Path(tempfile.mkdtemp(prefix="neurodsl-cache-"))
        warnings.warn(f"neurodsl: cache dir {target} is not writable; using {_FALLBACK}", RuntimeWarning,
                      stacklevel=2)
    return _FALLBACK


def entry_path(name: str, key: str, backend: str) -> Path:
    return cache_dir() / f"{name}-{key}.{backend}.py"


def _checksum(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def read_entry(path: Path) -> str | None:
    """The source body of a cache entry, or None when missing or corrupt."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    first, _, body = text.partition("\n")
    if not first.startswith(CHECKSUM_PREFIX) or first[len(CHECKSUM_PREFIX):] != _checksum(body):
        return None
    return body


def write_entry(path: Path, body: str) -> None:
    """Atomically write ``body`` with its checksum line."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{CHECKSUM_PREFIX}{_checksum(body)}\n{body}")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache must be readable by its users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_module(name: str, key: str, backend: str, build_source: Callable[[], str]) -> ModuleType:
    """Import the cached module for ``key``, generating it with ``build_source`` on a miss."""
    memo_key = (key, backend)
    with _LOCK:
        if memo_key in _MEMO:
            return _MEMO[memo_key]
        path = entry_path(name, key, backend)
        if read_entry(path) is None:
            write_entry(path, build_source())
        module_name = f"neurodsl_generated.{backend}_{name}_{key}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        _MEMO[memo_key] = module
        return module


def cached_source(name: str, key: str, backend: str) -> str | None:
    """The source body stored for ``key`` (None when absent)."""
    return read_entry(entry_path(name, key, backend))


_KINDS = (".torch.py", ".triton.py", ".parallel.py")


def _is_entry(path: Path) -> bool:
    """A file neurodsl wrote: a source entry (checksum first line) or a stale temp file of one."""
    if not path.is_file():
        return False
    if path.name.startswith(".") and path.name.endswith(".tmp"):
        return True
    if not path.name.endswith(_KINDS):
        return False
    try:
        with path.open() as handle:
            return handle.readline().startswith(CHECKSUM_PREFIX)
    except (OSError, UnicodeDecodeError):
        return False


def list_entries() -> list[Path]:
    """neurodsl's source entries in the cache dir (other files are left alone)."""
    return sorted(p for p in cache_dir().iterdir() if _is_entry(p) and not p.name.endswith(".tmp"))


def clear() -> int:
    """Delete neurodsl's own entries and stale temp files only; returns how many were removed."""
    removed = 0
    for path in cache_dir().iterdir():
        if _is_entry(path):
            path.unlink()
            removed += 1
    _MEMO.clear()
    return removed
