"""The system C compiler: found and probed once per process, kernels built into the cache and loaded by ctypes.

``NEURODSL_CC`` names the compiler command (default: the first of ``cc``, ``gcc``, ``clang`` on ``PATH``),
``NEURODSL_CFLAGS`` replaces the optimisation flags (default :data:`DEFAULT_FLAGS`, then the same without
OpenMP, then without ``-march=native``, the first that builds and loads the probe); ``-shared -fPIC`` and
``-lm`` are always added. The probe's verdict (which flags work) is kept in the cache per compiler identity,
compiler file, flag candidates and CPU, so later processes skip the probe build. A library's build key hashes its source, the compiler's identity (resolved path
and ``--version``), the flags and the CPU (model and feature flags), so a new compiler, other flags or
another machine build anew. Built libraries live in the kernel cache next to the sources
(:func:`kernels_gen.cache.store_library`), each bound to its build by a verified record.
"""
from __future__ import annotations

import ast
import ctypes
import functools
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from ... import cache
from ...errors import BackendError, CacheError

ENV_CC, ENV_CFLAGS = "NEURODSL_CC", "NEURODSL_CFLAGS"
DEFAULT_FLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off")
#: Tried in order when NEURODSL_CFLAGS is not set: the first that builds and loads the probe wins.
FALLBACK_FLAGS = (DEFAULT_FLAGS, tuple(f for f in DEFAULT_FLAGS if f != "-fopenmp"),
                  tuple(f for f in DEFAULT_FLAGS if f not in ("-fopenmp", "-march=native")))
LINK = ("-shared", "-fPIC")
LIBRARY_BACKEND = "clib"
COMPILE_TIMEOUT_S = 300

log = logging.getLogger(__name__)

_PROBE_SOURCE = """\
#include <math.h>
int nd_probe(int n) {
    int s = 0;
#pragma omp parallel for reduction(+:s) num_threads(2)
    for (int i = 0; i < n; i++) s += i;
    return s + (int)expf(0.0f);
}
"""


@dataclass(frozen=True)
class Toolchain:
    """A compiler command and flags that built and loaded the probe library."""

    command: tuple[str, ...]
    flags: tuple[str, ...]
    identity: str                 # resolved path and first line of ``--version``

    def build_key(self, source: str) -> str:
        """20 hex digits naming the library built from ``source`` with this compiler, these flags, this CPU."""
        text = "\0".join([source, self.identity, " ".join(self.flags), cpu_features()])
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def compile(self, source: str, output: Path) -> None:
        """Compile ``source`` (fed on stdin) to the shared library ``output`` (BackendError ND308 on failure)."""
        cmd = [*self.command, *self.flags, *LINK, "-x", "c", "-", "-o", str(output), "-lm"]
        try:
            done = subprocess.run(cmd, input=source.encode(), capture_output=True, timeout=COMPILE_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as err:
            raise BackendError("ND308", f"the C compiler failed to run: {shlex.join(cmd)}: {err}") from None
        if done.returncode != 0:
            tail = "\n".join(done.stderr.decode(errors="replace").strip().splitlines()[-12:])
            raise BackendError("ND308", f"compiling a generated C kernel failed ({shlex.join(cmd)}, exit "
                                        f"{done.returncode}):\n{tail}\nset {ENV_CFLAGS} to flags this compiler "
                                        f"accepts, or use backend='torch'")


@functools.lru_cache(maxsize=1)
def cpu_features() -> str:
    """The CPU's model and feature flags (what ``-march=native`` compiles for)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    keep = [line for line in info.splitlines() if line.split(":")[0].strip() in ("model name", "flags", "Features")]
    return "\n".join(dict.fromkeys(keep))


_PROBES: dict[tuple[str | None, str | None], Toolchain | BackendError] = {}
_LOCK = threading.RLock()


def setting() -> tuple[str | None, str | None]:
    """The current ``NEURODSL_CC`` / ``NEURODSL_CFLAGS`` (what a toolchain is probed and memoised for)."""
    return os.environ.get(ENV_CC), os.environ.get(ENV_CFLAGS)


def toolchain() -> Toolchain | BackendError:
    """The working toolchain for the current ``NEURODSL_CC`` / ``NEURODSL_CFLAGS``, or the typed error (ND306)
    saying why there is none; probed once per process and setting (the failure logged once)."""
    setting_now = setting()
    found = _PROBES.get(setting_now)
    if found is None:
        with _LOCK:
            found = _PROBES.get(setting_now)
            if found is None:
                found = _PROBES[setting_now] = _probe(*setting_now)
                if isinstance(found, BackendError):
                    log.warning("neurodsl: no working C compiler, so backend='auto' runs the torch backend on "
                                "CPU: %s", found.message)
    return found


def _probe(cc: str | None, cflags: str | None) -> Toolchain | BackendError:
    if cc is not None and cc.strip():
        command = tuple(shlex.split(cc))
    else:
        found = next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
        if found is None:
            return BackendError("ND306", "backend='c' needs a C compiler, and none of cc, gcc, clang is on PATH: "
                                         f"install one (e.g. gcc) or set {ENV_CC}, or use backend='torch'")
        command = (found,)
    path = shutil.which(command[0])
    if path is None:
        return BackendError("ND306", f"backend='c': the C compiler {command[0]!r} ({ENV_CC}={cc!r}) was not "
                                     f"found; set {ENV_CC} to a working compiler, or use backend='torch'")
    try:
        version = subprocess.run([*command, "--version"], capture_output=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as err:
        return BackendError("ND306", f"backend='c': the C compiler {shlex.join(command)} does not run ({err}); "
                                     f"set {ENV_CC} to a working compiler, or use backend='torch'")
    identity = f"{os.path.realpath(path)} {(version.decode(errors='replace').strip().splitlines() or [''])[0]}"
    candidates = (tuple(shlex.split(cflags)),) if cflags is not None else FALLBACK_FLAGS
    verdict = _verdict_path(command, path, identity, candidates)
    remembered = _remembered_flags(verdict, candidates)
    if remembered is not None:
        return Toolchain(command, remembered, identity)
    reasons = []
    for flags in candidates:
        chain = Toolchain(command, flags, identity)
        with tempfile.TemporaryDirectory(prefix="neurodsl-cc-probe-") as tmp:
            try:
                chain.compile(_PROBE_SOURCE, Path(tmp) / "probe.so")
                if ctypes.CDLL(str(Path(tmp) / "probe.so")).nd_probe(10) == 46:
                    _remember_flags(verdict, flags)
                    return chain
                reasons.append(f"{' '.join(flags)}: the probe returned a wrong value")
            except BackendError as err:
                lines = err.message.splitlines()[1:-1] or [err.message]  # the compiler's output, if any
                reasons.append(f"{' '.join(flags)}: " + next((ln for ln in lines if "error" in ln), lines[-1]).strip())
            except OSError as err:
                reasons.append(f"{' '.join(flags)}: the probe library does not load ({err})")
    return BackendError("ND306", f"backend='c': the C compiler {shlex.join(command)} cannot build a working "
                                 f"shared library ({'; '.join(reasons)}); fix it or set {ENV_CC} / {ENV_CFLAGS}, "
                                 "or use backend='torch'")


# -- the probe's verdict, kept in the cache: a new process skips the probe build (~0.1 s) ----------------------
PROBE_BACKEND = "ccprobe"


def _verdict_path(command, path: str, identity: str, candidates) -> Path | None:
    """Where the verdict for this compiler (identity, file size and time), these flag candidates and this CPU is
    kept; None when the cache cannot be used (the probe then runs every process)."""
    try:
        stat = os.stat(os.path.realpath(path))
        text = "\0".join([shlex.join(command), identity, f"{stat.st_size} {stat.st_mtime_ns}",
                          repr(candidates), cpu_features()])
        return cache.entry_path("toolchain", hashlib.sha256(text.encode()).hexdigest()[:20], PROBE_BACKEND)
    except (OSError, CacheError):
        return None


def _remembered_flags(verdict: Path | None, candidates) -> tuple[str, ...] | None:
    """The flags an earlier probe of the same compiler found working (a verified cache entry), if any."""
    body = cache.read_entry(verdict) if verdict is not None else None
    if body is None:
        return None
    try:
        flags = ast.literal_eval(body.partition("PROBED_FLAGS = ")[2].strip())
    except (ValueError, SyntaxError):
        return None
    return flags if flags in candidates else None


def _remember_flags(verdict: Path | None, flags: tuple[str, ...]) -> None:
    if verdict is None:
        return
    try:
        cache.write_entry(verdict, f"PROBED_FLAGS = {tuple(flags)!r}\n")
    except (OSError, CacheError):
        pass  # the next process probes again


# -- libraries ---------------------------------------------------------------------------------------
_LIBRARIES: dict[str, ctypes.CDLL] = {}
_WARNED: set[str] = set()


class _Replaced(Exception):
    """The library's path names another file than the one verified (a concurrent build renamed its own there)."""


def load_library(path: Path, fd: int | None = None) -> ctypes.CDLL:
    """dlopen the library at ``path`` (BackendError ND309 when it does not load). With ``fd``, the descriptor
    whose bytes were verified: only while ``path`` still names that file (the loader tells libraries apart by
    path, so each is loaded by its own)."""
    if fd is not None:
        here, there = os.fstat(fd), os.stat(path)
        if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
            raise _Replaced(str(path))
    try:
        return ctypes.CDLL(str(path))
    except OSError as err:
        raise BackendError("ND309", f"the built C kernel library does not load ({err}); if the cache directory is "
                                    "on a file system mounted noexec, set NEURODSL_CACHE_DIR to another one, or "
                                    "use backend='torch'") from None


def library(label: str, source: str, chain: Toolchain) -> ctypes.CDLL:
    """The loaded library of ``source``: its verified copy in the cache, else built, loaded and stored there
    (in a private temp directory, uncached, when the cache cannot be written)."""
    key = chain.build_key(source)
    lib = _LIBRARIES.get(key)
    if lib is not None:
        return lib
    with _LOCK:
        if key not in _LIBRARIES:
            _LIBRARIES[key] = _load_or_build(label, key, source, chain)
        return _LIBRARIES[key]


def _load_or_build(label: str, key: str, source: str, chain: Toolchain) -> ctypes.CDLL:
    try:
        for _ in range(3):  # a concurrent build may rename its library in between: verify again
            fd = cache.open_library(label, key, LIBRARY_BACKEND)
            if fd is None:
                break
            try:
                return load_library(cache.library_path(label, key, LIBRARY_BACKEND), fd)
            except _Replaced:
                continue
            finally:
                os.close(fd)
        return cache.store_library(label, key, LIBRARY_BACKEND, lambda out: chain.compile(source, out), load_library)
    except (CacheError, OSError) as err:
        _warn_once(f"neurodsl: cannot store the C kernel library in the cache ({err}); building it uncached")
    with tempfile.TemporaryDirectory(prefix="neurodsl-c-") as tmp:
        out = Path(tmp) / f"{cache.safe_label(label)}-{key}.so"
        chain.compile(source, out)
        return load_library(out)


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)
