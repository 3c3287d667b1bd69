"""On-disk cache of generated kernel sources, keyed by a content hash.

Each entry is one file ``<label>-<key>.<backend>.py`` (``label = safe_label(name)``) whose first line
``# checksum: <sha256 of the rest>  key: <key>  backend: <backend>`` binds it to its key and backend.

Trust model: only a directory and entries owned by this user and writable by nobody else are used
(else a warning and the private per-user directory ``$TMPDIR/neurodsl-cache-<uid>``), unless
``NEURODSL_CACHE_TRUST_SHARED=1``. The checksum detects damage, not tampering. The loader reads an
entry once through one descriptor, verifies those bytes and executes exactly them (``compile`` with
the entry's path as file name, the text pinned in :mod:`linecache` so ``inspect.getsource`` and
Triton's ``jit`` see the verified text); nothing is imported by path, so no bytecode is written or read.
Writes are atomic (temp file + ``os.replace``); a file that vanishes after the read or write does not
matter. Modules are memoised in-process per ``(key, backend)``.

>>> mod = load_module("demo", "0123abcd", "torch", lambda: "VALUE = 42\\n")
>>> mod.VALUE
42
"""
from __future__ import annotations

import hashlib
import linecache
import os
import re
import stat
import sys
import tempfile
import threading
import time
import types
import unicodedata
import warnings
from pathlib import Path
from typing import Callable, TypeVar

from .errors import CacheError

CHECKSUM_PREFIX = "# checksum: "
TRUST_ENV = "NEURODSL_CACHE_TRUST_SHARED"
#: ``clear`` leaves temp files younger than this alone: they may be a write in flight.
TEMP_MAX_AGE_S = 15 * 60

_KEY = r"[A-Za-z0-9]{1,64}"
_BACKEND = r"[a-z][a-z0-9_]{0,31}"
_LABEL = r"[A-Za-z0-9_]{1,64}"
ENTRY_NAME = re.compile(rf"(?P<label>{_LABEL})-(?P<key>{_KEY})\.(?P<backend>{_BACKEND})\.py")
_TEMP_NAME = re.compile(rf"\.(?P<entry>{_LABEL}-{_KEY}\.{_BACKEND}\.(py|so))\.[a-z0-9_]+\.tmp")
LIBRARY_NAME = re.compile(rf"(?P<label>{_LABEL})-(?P<key>{_KEY})\.(?P<backend>{_BACKEND})\.so")
_LIBRARY_RECORD = re.compile(r"^LIBRARY_SHA256 = '(?P<sum>[0-9a-f]{64})'$", re.M)
_FIRST_LINE = re.compile(rf"# checksum: (?P<sum>[0-9a-f]{{64}})  key: (?P<key>{_KEY})  backend: (?P<backend>{_BACKEND})")
_LEGACY_FIRST_LINE = re.compile(r"# checksum: (?P<sum>[0-9a-f]{64})")

T = TypeVar("T")
_MEMO: dict[tuple[str, str], types.ModuleType] = {}
_SOURCES: dict[tuple[str, str], str] = {}
_LOCK = threading.RLock()
_WARNED: set[str] = set()


# -- names -------------------------------------------------------------------------------------------
def safe_label(name: str) -> str:
    """``name`` reduced to 1-64 characters of ``[A-Za-z0-9_]``, safe in file names, module names, Python
    comments and string literals.

    NFKC-normalised, accents dropped, every other run of characters (separators, newlines, quotes,
    non-ASCII) becomes ``_``; ``"neuron"`` when nothing is left. Deterministic; different names may share
    a label (cache entries add the key, which is unique).

    >>> safe_label('../Evil"\\nName'), safe_label("ﬁlter"), safe_label("Émile"), safe_label("—")
    ('_Evil_Name', 'filter', 'Emile', 'neuron')
    """
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", str(name)))
    label = re.sub(r"[^A-Za-z0-9_]+", "_", folded.encode("ascii", "ignore").decode())[:64]
    return label if label.strip("_") else "neuron"


def _check_parts(key: str, backend: str) -> None:
    if not isinstance(key, str) or not re.fullmatch(_KEY, key):
        raise CacheError("ND701", f"cache key {key!r} is not 1-64 ASCII letters or digits; pass the hex key of "
                                  "plan_key(...) (it names a file)")
    if not isinstance(backend, str) or not re.fullmatch(_BACKEND, backend):
        raise CacheError("ND701", f"cache backend {backend!r} is not a lower-case identifier; pass e.g. 'torch', "
                                  "'triton' or 'parallel' (it names a file)")


# -- directories -------------------------------------------------------------------------------------
def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def trust_shared() -> bool:
    """Whether ``NEURODSL_CACHE_TRUST_SHARED=1`` opts in to directories and entries others can write."""
    value = os.environ.get(TRUST_ENV, "").strip()
    if value in ("", "0"):
        return False
    if value == "1":
        return True
    raise CacheError("ND703", f"{TRUST_ENV}={value!r}: set it to 1 to use a cache others can write (you run "
                              "whatever they put there), or to 0 / unset it")


def _distrust(st: os.stat_result, what: str) -> str | None:
    """Why ``what`` (with stat ``st``) must not be trusted: owned by another user or writable by others."""
    if not hasattr(os, "geteuid"):
        return None
    if st.st_uid != os.geteuid():
        return f"{what} is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})"
    if st.st_mode & 0o022:
        return f"{what} is writable by {'group and others' if st.st_mode & 0o002 else 'its group'} " \
               f"(mode {stat.S_IMODE(st.st_mode):o})"
    return None


def default_dir() -> Path:
    """``$NEURODSL_CACHE_DIR``, else ``$XDG_CACHE_HOME/neurodsl``, else ``~/.cache/neurodsl``."""
    if os.environ.get("NEURODSL_CACHE_DIR"):
        return Path(os.environ["NEURODSL_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "neurodsl"


def private_dir() -> Path:
    """``$TMPDIR/neurodsl-cache-<uid>``: one per user, reused, created 0700 and checked to be a real
    directory owned by this user that nobody else can write (else :class:`CacheError` ND702)."""
    uid = os.geteuid() if hasattr(os, "geteuid") else safe_label(os.environ.get("USERNAME", "user"))
    path = Path(tempfile.gettempdir()) / f"neurodsl-cache-{uid}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
    except OSError as err:
        raise CacheError("ND702", f"cannot create the private cache dir {path}: {err}; set NEURODSL_CACHE_DIR "
                                  "to a directory you own") from None
    problem = (f"{path} is not a directory (a link or a file someone else put there)"
               if not stat.S_ISDIR(st.st_mode) else _distrust(st, str(path)))
    if problem is None and not os.access(path, os.W_OK | os.X_OK):
        problem = f"{path} is not writable"
    if problem:
        raise CacheError("ND702", f"the private cache dir {problem}; remove it or set NEURODSL_CACHE_DIR to a "
                                  "directory you own")
    return path


def cache_dir() -> Path:
    """The cache directory to use: :func:`default_dir` when it is (or can be made) a writable directory
    this user owns that nobody else can write, or ``NEURODSL_CACHE_TRUST_SHARED=1`` is set; else the
    :func:`private_dir` (warned once per reason). Created 0700 when missing."""
    target = default_dir()
    try:
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = target.stat()
        writable = stat.S_ISDIR(st.st_mode) and os.access(target, os.W_OK | os.X_OK)
    except OSError:
        writable = False
    if not writable:
        reason = f"cache dir {target} is not writable"
    else:
        reason = None if trust_shared() else _distrust(st, f"cache dir {target}")
        if reason is None:
            return target
        fix = "chmod go-w" if "writable by" in reason else "use a directory you own"
        reason += f" ({fix}, or set {TRUST_ENV}=1 to use it anyway)"
    fallback = private_dir()
    _warn_once(f"neurodsl: {reason}; using {fallback}")
    return fallback


def entry_path(name: str, key: str, backend: str) -> Path:
    """``cache_dir() / "<safe_label(name)>-<key>.<backend>.py"``."""
    _check_parts(key, backend)
    return cache_dir() / f"{safe_label(name)}-{key}.{backend}.py"


# -- entries -----------------------------------------------------------------------------------------
def _checksum(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()


def _entry_text(body: str, key: str, backend: str) -> str:
    return f"{CHECKSUM_PREFIX}{_checksum(body)}  key: {key}  backend: {backend}\n{body}"


def _verify(text: str, key: str, backend: str, legacy: bool = False) -> str | None:
    """The body of an entry's ``text`` if its checksum holds and it records ``key`` and ``backend``.

    ``legacy`` also accepts the earlier first line (checksum only) when the generated header names ``key``.
    """
    first, newline, body = text.partition("\n")
    match = _FIRST_LINE.fullmatch(first)
    if match and newline and (match["key"], match["backend"]) == (key, backend) and match["sum"] == _checksum(body):
        return body
    match = _LEGACY_FIRST_LINE.fullmatch(first) if legacy else None
    if match and match["sum"] == _checksum(body) and f" key: {key} " in "".join(body.splitlines(True)[:3]):
        return body
    return None


def _read_trusted(path: Path) -> str | None:
    """The text of ``path``, read once through one descriptor; None when missing, not a regular file,
    not UTF-8, or (without the opt-in) owned by another user or writable by others (warned once)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        problem = None if trust_shared() else _distrust(st, f"cache entry {path}")
        if problem:
            _warn_once(f"neurodsl: {problem}; not using it ({TRUST_ENV}=1 trusts such entries)")
            return None
        try:
            return handle.read().decode("utf-8", "surrogatepass")
        except (OSError, UnicodeDecodeError):
            return None


def read_entry(path: Path) -> str | None:
    """The verified source body of the entry at ``path`` (key and backend taken from its name), or None
    when missing, corrupt, bound to another key or backend, or untrusted."""
    match = ENTRY_NAME.fullmatch(Path(path).name)
    text = _read_trusted(Path(path)) if match else None
    return None if text is None else _verify(text, match["key"], match["backend"])


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8", "surrogatepass"))
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), 0o644)  # mkstemp makes 0600; a shared cache must be readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_entry(path: Path, body: str) -> None:
    """Atomically write ``body`` under ``path`` (an :func:`entry_path`) with its checksum-and-key line."""
    match = ENTRY_NAME.fullmatch(Path(path).name)
    if not match:
        raise CacheError("ND701", f"{Path(path).name!r} is no cache entry name; build it with entry_path(...)")
    _write_atomic(Path(path), _entry_text(body, match["key"], match["backend"]))


def _execute(text: str, filename: str, module_name: str) -> types.ModuleType:
    """Run exactly ``text`` as module ``module_name``; its source, for ``inspect`` and Triton, is ``text``."""
    # mtime None: linecache.checkcache keeps the entry, so inspect never re-reads the file (which may
    # have changed or vanished since it was verified)
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    code = compile(text, filename, "exec", dont_inherit=True)
    module = types.ModuleType(module_name)
    module.__file__ = filename
    sys.modules[module_name] = module
    try:
        exec(code, module.__dict__)  # noqa: S102 - the verified entry, see the module docstring
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def load_module(name: str, key: str, backend: str, build_source: Callable[[], str]) -> types.ModuleType:
    """The module for ``(key, backend)``: the verified cached entry, or ``build_source()`` stored and run.

    Without a usable cache directory (ND702) or when the entry cannot be written, the source runs from
    memory (warned once).
    """
    _check_parts(key, backend)
    memo_key = (key, backend)
    with _LOCK:
        if memo_key in _MEMO:
            return _MEMO[memo_key]
        label = safe_label(name)
        try:
            path = entry_path(name, key, backend)
        except CacheError as err:
            if err.code != "ND702":
                raise
            _warn_once(f"neurodsl: {err}; generated kernels run from memory, uncached")
            path = None
        text = _read_trusted(path) if path else None
        body = None if text is None else _verify(text, key, backend)
        if body is None:
            body = build_source()
            text = _entry_text(body, key, backend)
            if path:
                try:
                    write_entry(path, body)
                except OSError as err:
                    _warn_once(f"neurodsl: cannot write cache entry {path} ({err}); running it from memory")
        filename = str(path) if path else f"<neurodsl-cache {label}-{key}.{backend}.py>"
        module = _execute(text, filename, f"neurodsl_generated.{backend}_{label}_{key}")
        _MEMO[memo_key], _SOURCES[memo_key] = module, body
        return module


def cached_source(name: str, key: str, backend: str) -> str | None:
    """The source body stored for ``key``: what this process runs if it loaded it, else the verified
    entry on disk (None when absent)."""
    _check_parts(key, backend)
    if (key, backend) in _SOURCES:
        return _SOURCES[(key, backend)]
    try:
        return read_entry(entry_path(name, key, backend))
    except CacheError:
        return None


# -- compiled libraries ------------------------------------------------------------------------------
# A library ``<label>-<key>.<backend>.so`` lies next to its record, the verified entry ``<label>-<key>.<backend>.py``
# that holds its sha256 (``key`` is the build's hash: source, compiler, flags, CPU). It is loaded only from a
# descriptor whose bytes were hashed and matched that record, so a damaged or foreign library is never loaded.
def library_path(name: str, key: str, backend: str) -> Path:
    """``cache_dir() / "<safe_label(name)>-<key>.<backend>.so"`` (its record is :func:`entry_path`)."""
    return entry_path(name, key, backend).with_suffix(".so")


def _hash_fd(fd: int) -> str:
    digest = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def open_library(name: str, key: str, backend: str) -> int | None:
    """A read-only descriptor of the cached library of ``(key, backend)``, whose bytes hash to the sha256 of
    its verified record; None when either is missing, untrusted, or they do not match (the caller rebuilds)."""
    record = read_entry(entry_path(name, key, backend))
    match = _LIBRARY_RECORD.search(record or "")
    if match is None:
        return None
    try:
        fd = os.open(library_path(name, key, backend), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        problem = None if trust_shared() else _distrust(st, "cache library")
        if stat.S_ISREG(st.st_mode) and problem is None and _hash_fd(fd) == match["sum"]:
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def store_library(name: str, key: str, backend: str, build: Callable[[Path], None], load: Callable[[Path], T]) -> T:
    """Build a library with ``build(temp_path)`` next to its entry and ``load(temp_path)`` it (exactly the bytes
    built, under a name no other library has), then rename it into place atomically and record its sha256 in a
    verified entry; returns what ``load`` returned. Concurrent builds of one key are safe: each process loads
    its own build, the last rename wins, and a reader checks the library against the record."""
    path = library_path(name, key, backend)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        build(Path(tmp))
        fd = os.open(tmp, os.O_RDONLY)  # the linker may have replaced the temp file: hash what it wrote
        try:
            digest = _hash_fd(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o755)
        loaded = load(Path(tmp))
        os.replace(tmp, path)
        write_entry(entry_path(name, key, backend), f"LIBRARY_SHA256 = '{digest}'\n")
        return loaded
    finally:
        Path(tmp).unlink(missing_ok=True)


def _is_own_library(path: Path) -> bool:
    """A compiled library of ours: the library name, a regular file this user owns."""
    if not LIBRARY_NAME.fullmatch(path.name):
        return False
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and (not hasattr(os, "geteuid") or st.st_uid == os.geteuid())


# -- listing and clearing ----------------------------------------------------------------------------
def _is_own_entry(path: Path) -> bool:
    """A verified entry: entry name, trusted file, valid checksum, recorded key and backend = the name's."""
    match = ENTRY_NAME.fullmatch(path.name)
    text = _read_trusted(path) if match else None
    return text is not None and _verify(text, match["key"], match["backend"], legacy=True) is not None


def _is_stale_temp(path: Path, now: float) -> bool:
    """A temp file of an interrupted write: the temp name, a regular file of ours, older than TEMP_MAX_AGE_S."""
    if not _TEMP_NAME.fullmatch(path.name):
        return False
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and now - st.st_mtime > TEMP_MAX_AGE_S and \
        (not hasattr(os, "geteuid") or st.st_uid == os.geteuid())


def list_entries() -> list[Path]:
    """neurodsl's verified entries in the cache dir (other files are left alone)."""
    return sorted(p for p in cache_dir().iterdir() if _is_own_entry(p))


def clear() -> int:
    """Delete neurodsl's verified entries, compiled libraries and stale temp files only; returns how many were
    removed.

    Entries of this version and the previous format (checksum line only) count; temp files younger than
    ``TEMP_MAX_AGE_S`` and every other file are left alone. Processes running an entry are unaffected.
    """
    removed, now = 0, time.time()
    for path in cache_dir().iterdir():
        if _is_own_entry(path) or _is_own_library(path) or _is_stale_temp(path, now):
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    with _LOCK:
        _MEMO.clear()
        _SOURCES.clear()
    return removed
