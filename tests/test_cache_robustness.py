"""Cache robustness: concurrent compilers, corrupt entries seen by a fresh process, unwritable and
missing cache dirs, ``neurodsl cache clear`` / ``list`` with unrelated files, and the key table.

Multi-process tests run small child scripts (``sys.executable``) against a fresh
``NEURODSL_CACHE_DIR``; children wait on a start file so that they really compile at the same time.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch

import neurodsl as nd
from kernels_gen import cache
from kernels_gen import versions as generator_versions
from neurodsl import cli
from neurodsl.analysis import plan_key
from neurodsl.compiler import compile_spec

N_PROCS = 8
BACKENDS = ("torch", "triton")

# One launcher process imports torch and neurodsl (slow: ~2 s each), then forks one worker per job.
# Nothing is compiled before the fork, so every worker starts with an empty in-process memo, exactly
# like a freshly started Python; the workers wait on a start file so that they compile at once.
LAUNCHER = textwrap.dedent('''
    import hashlib, json, os, sys, time, traceback
    from pathlib import Path

    import torch
    import neurodsl as nd
    from kernels_gen import cache
    from neurodsl.compiler import compile_spec

    config = json.loads(Path(sys.argv[1]).read_text())
    workdir = Path(config["workdir"])
    go = workdir / "go"

    def digest(t):
        return hashlib.sha256(t.detach().contiguous().numpy().tobytes()).hexdigest()

    def work(job):
        os.environ["NEURODSL_CACHE_DIR"] = job["cache_dir"]
        assert not cache._MEMO and compile_spec.cache_info().currsize == 0
        Path(job["out"] + ".ready").write_text(str(os.getpid()))
        deadline = time.time() + 120
        while not go.exists() and time.time() < deadline:
            time.sleep(0.001)
        out = {"pid": os.getpid(), "writes": 0}
        real_write = cache.write_entry

        def counting_write(path, body):
            out["writes"] += 1
            real_write(path, body)

        cache.write_entry = counting_write
        for backend in config["backends"]:
            layer = nd.zoo.ALIF(backend=backend, learnable=("tau", "beta"))
            x = ((torch.arange(6 * 37, dtype=torch.float32).reshape(6, 37) % 7) * 0.37).requires_grad_()
            spikes = layer(x)
            grads = torch.autograd.grad(spikes.sum() + layer.v.sum() + layer.a.sum(), [x, layer.tau, layer.beta])
            compiled = compile_spec(layer.spec, layer._last_options)
            module_file = Path(compiled.module(backend).__file__)
            source = cache.cached_source(compiled.name, compiled.key, backend)
            out[backend] = dict(key=compiled.key, file=str(module_file), spikes=digest(spikes),
                                grads=[digest(g) for g in grads],
                                source=hashlib.sha256(source.encode()).hexdigest(),
                                module_file=hashlib.sha256(module_file.read_bytes()).hexdigest())
        Path(job["out"]).write_text(json.dumps(out))

    pids = []
    for job in config["jobs"]:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                work(job)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        pids.append(pid)
    deadline = time.time() + 120
    while not all(Path(j["out"] + ".ready").exists() for j in config["jobs"]) and time.time() < deadline:
        time.sleep(0.002)
    go.write_text("go")
    failed = sum(os.waitpid(pid, 0)[1] != 0 for pid in pids)
    sys.exit(1 if failed else 0)
''')


def run_processes(workdir: Path, cache_dirs: list[Path], backends=BACKENDS, timeout=240) -> list[dict]:
    """One worker process per entry of ``cache_dirs`` (repeat a dir to share it); their results."""
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = [dict(cache_dir=str(d), out=str(workdir / f"result-{i}.json")) for i, d in enumerate(cache_dirs)]
    config = workdir / "config.json"
    config.write_text(json.dumps(dict(workdir=str(workdir), jobs=jobs, backends=list(backends))))
    script = workdir / "launcher.py"
    script.write_text(LAUNCHER)
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, str(script), str(config)], env=env, cwd=str(workdir),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"a worker failed:\n{proc.stderr[-4000:]}"
    results = [json.loads(Path(j["out"]).read_text()) for j in jobs]
    assert len({r["pid"] for r in results}) == len(jobs)
    return results


@pytest.fixture(scope="module")
def concurrent_run(tmp_path_factory):
    """Eight processes compiling ALIF (torch and triton) at once into one fresh cache dir."""
    root = tmp_path_factory.mktemp("concurrent")
    cache_dir = root / "cache"  # missing: the processes race to create it as well
    results = run_processes(root / "work", [cache_dir] * N_PROCS)
    return cache_dir, results


def test_concurrent_compiles_make_one_valid_entry_per_backend(concurrent_run):
    cache_dir, results = concurrent_run
    assert len(results) == N_PROCS
    # every process either wrote an entry itself (it raced) or read one written by another
    assert 1 <= sum(r["writes"] for r in results) <= N_PROCS * len(BACKENDS)
    files = sorted(p.name for p in cache_dir.iterdir())
    for backend in BACKENDS:
        keys = {r[backend]["key"] for r in results}
        assert len(keys) == 1, f"{backend}: processes disagree on the key: {keys}"
        entries = [f for f in files if f.endswith(f".{backend}.py")]
        assert entries == [f"ALIF-{keys.pop()}.{backend}.py"], files
        path = cache_dir / entries[0]
        body = cache.read_entry(path)
        assert body is not None, f"{path.name}: checksum invalid after the race"
        first = path.read_text().partition("\n")[0]
        key = entries[0].split("-")[1].split(".")[0]
        assert first == f"{cache.CHECKSUM_PREFIX}{hashlib.sha256(body.encode()).hexdigest()}  key: {key}  backend: {backend}"
        assert {r[backend]["file"] for r in results} == {str(path)}
    assert not [f for f in files if f.endswith(".tmp") or f.startswith(".")], f"leftover temp files: {files}"
    print("entry writes per process:", [r["writes"] for r in results])
    assert len(files) == len(BACKENDS), files


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_compiles_agree_on_source_and_outputs(concurrent_run, backend):
    _, results = concurrent_run
    for field in ("source", "module_file", "spikes", "grads"):
        values = {json.dumps(r[backend][field]) for r in results}
        assert len(values) == 1, f"{backend}: {field} differs between processes"
    # the processes' source is the entry on disk
    path = Path(results[0][backend]["file"])
    assert hashlib.sha256(cache.read_entry(path).encode()).hexdigest() == results[0][backend]["source"]


def test_torch_and_triton_processes_compute_the_same_spikes(concurrent_run):
    _, results = concurrent_run
    assert results[0]["torch"]["spikes"] == results[0]["triton"]["spikes"]


def damage(path: Path, how: str) -> None:
    text = path.read_text()
    if how == "truncated":
        broken = text[: len(text) // 2]
    else:  # a well-formed checksum line that belongs to another body, same file size
        first, _, body = text.partition("\n")
        stored = first[len(cache.CHECKSUM_PREFIX):][:64]
        broken = text.replace(stored, hashlib.sha256(b"something else").hexdigest(), 1)
        assert len(broken) == len(text) and broken.partition("\n")[2] == body
    path.write_text(broken)
    assert cache.read_entry(path) is None


def test_damaged_entries_are_rebuilt_by_a_fresh_process(concurrent_run, tmp_path):
    """Truncated and wrong-checksum entries (each on either backend), seen by fresh processes."""
    src_dir, results = concurrent_run
    originals = {p.name: p.read_text() for p in src_dir.iterdir()}
    dirs = []
    for i, hows in enumerate([("truncated", "wrong_checksum"), ("wrong_checksum", "truncated")]):
        cache_dir = tmp_path / f"cache{i}"
        shutil.copytree(src_dir, cache_dir)
        for backend, how in zip(BACKENDS, hows):
            (entry,) = cache_dir.glob(f"*.{backend}.py")
            damage(entry, how)
        dirs.append(cache_dir)
    for fresh in run_processes(tmp_path / "work", dirs):
        for backend in BACKENDS:
            for field in ("spikes", "grads", "source", "module_file"):
                assert fresh[backend][field] == results[0][backend][field], (backend, field)
    for cache_dir in dirs:
        assert sorted(p.name for p in cache_dir.iterdir()) == sorted(originals)
        for name, text in originals.items():
            assert (cache_dir / name).read_text() == text, f"{name} was not rebuilt"


# -- unwritable / missing cache dirs -----------------------------------------------------------------
_ids = itertools.count()


def fresh_neuron():
    """A new class name, hence a new key: nothing in this process has compiled it."""
    return type(f"RobustProbe{next(_ids)}_{os.getpid()}", (nd.Neuron,), {
        "v": nd.State(0.0), "tau": nd.Param(2.0),
        "charge": lambda self, x: dict(v=self.v + (x - self.v) / self.tau),
        "fire": lambda self: self.v - 1.0,
        "reset": lambda self, s: dict(v=self.v * (1 - s)),
    })


def unwritable_dir(tmp_path: Path) -> Path:
    """A cache dir neurodsl cannot use: chmod 0o500, or (as root, who may write anyway) a path under a file."""
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(0o500)
    if not os.access(ro, os.W_OK):
        return ro
    blocker = tmp_path / "a-regular-file"
    blocker.write_text("not a directory")
    return blocker / "cache"


@pytest.fixture
def private_tmp(monkeypatch, tmp_path):
    """``tempfile.gettempdir()`` -> a fresh dir (so the per-user fallback dir is this test's), warnings reset."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(cache, "_WARNED", set())
    return tmp


@pytest.mark.parametrize("backend", BACKENDS)
def test_unwritable_cache_dir_falls_back_to_a_private_temp_dir(monkeypatch, tmp_path, private_tmp, backend):
    target = unwritable_dir(tmp_path)
    monkeypatch.setenv("NEURODSL_CACHE_DIR", str(target))
    cls = fresh_neuron()
    x = torch.rand(5, 2, 3) * 2
    try:
        with pytest.warns(RuntimeWarning, match="not writable"):
            spikes = cls(backend=backend)(x)
        fallback = private_tmp / f"neurodsl-cache-{os.geteuid()}"
        assert cache.private_dir() == fallback and fallback.is_dir()
        assert (fallback.stat().st_mode & 0o077) == 0, "the fallback dir must be private"
        entries = sorted(fallback.glob(f"{cls.__name__}-*.{backend}.py"))
        assert len(entries) == 1 and cache.read_entry(entries[0]) is not None
        assert torch.equal(spikes, nd.reference_run(cls(), x)[0].detach())
        with warnings.catch_warnings():  # warned once per process, not on every call
            warnings.simplefilter("error")
            assert cache.cache_dir() == fallback
        if target.parent.name == "readonly":
            assert list(target.iterdir()) == []
        else:
            assert not target.exists()
        assert [p.name for p in private_tmp.iterdir()] == [fallback.name]
    finally:
        (tmp_path / "readonly").chmod(0o700)


def test_missing_cache_dir_is_created_private_without_warning(monkeypatch, tmp_path, private_tmp):
    target = tmp_path / "does" / "not" / "exist" / "yet"
    monkeypatch.setenv("NEURODSL_CACHE_DIR", str(target))
    cls = fresh_neuron()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        cls(backend="torch")(torch.rand(3, 4))
    assert target.is_dir() and (target.stat().st_mode & 0o777) == 0o700
    assert list(private_tmp.iterdir()) == [], "no fallback dir for a directory that could be created"
    (entry,) = target.glob(f"{cls.__name__}-*.torch.py")
    assert cache.read_entry(entry) is not None


# -- `neurodsl cache clear` / `list` -----------------------------------------------------------------
UNRELATED = {"notes.txt": "keep me", "other.py": "print('mine')\n", "README": "x",
             "sub/inner.torch.py": "# a user's file in a subfolder\n"}


def populate(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURODSL_CACHE_DIR", str(tmp_path))
    cls = fresh_neuron()
    for backend in BACKENDS:
        cls(backend=backend)(torch.rand(3, 4))
    for rel, text in UNRELATED.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    stale = tmp_path / f".{cls.__name__}-deadbeef.torch.py.abc123.tmp"  # what an interrupted write leaves
    stale.write_text("partial")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    return cls, stale


def test_cli_cache_clear_removes_only_neurodsl_files(monkeypatch, tmp_path, capsys):
    cls, stale = populate(tmp_path, monkeypatch)
    in_flight = tmp_path / f".{cls.__name__}-0123beef.torch.py.x7y8z9.tmp"  # a write younger than TEMP_MAX_AGE_S
    in_flight.write_text("partial")
    ours = sorted(tmp_path.glob(f"{cls.__name__}-*.py"))
    assert len(ours) == 2
    assert cli.main(["cache", "clear"]) == 0
    assert "removed 3 entries" in capsys.readouterr().out
    assert not any(p.exists() for p in ours) and not stale.exists()
    assert in_flight.read_text() == "partial", "clear removed a temp file another process may be writing"
    for rel, text in UNRELATED.items():
        assert (tmp_path / rel).read_text() == text, f"{rel} was touched"
    # the cache still works afterwards: a new layer of the same class recompiles into the dir
    compile_spec.cache_clear()
    cls(backend="torch")(torch.rand(3, 4))
    assert len(list(tmp_path.glob(f"{cls.__name__}-*.torch.py"))) == 1
    compile_spec.cache_clear()


def test_cli_cache_list_shows_entries_not_unrelated_files(monkeypatch, tmp_path, capsys):
    """`cache list` reports what `cache clear` would remove: an unrelated ``a-b.c.py`` is no entry."""
    cls, _ = populate(tmp_path, monkeypatch)
    (tmp_path / "my-notes.v2.py").write_text("print('not a neurodsl entry')\n")
    assert cli.main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert f"{cls.__name__}-" in out and "2 entries" in out
    assert "notes.txt" not in out and "other.py" not in out
    assert "my-notes.v2.py" not in out, "an unrelated file is listed as a cache entry"
    cache.clear()
    assert cache.list_entries() == []
    compile_spec.cache_clear()


# -- the cache key table -----------------------------------------------------------------------------
def source_neuron(source: str, ns_extra: dict | None = None):
    """A neuron class defined from source text (to vary whitespace, comments and docstrings)."""
    ns = {"nd": nd, **(ns_extra or {})}
    exec(compile(textwrap.dedent(source), "<key-table>", "exec"), ns)
    return ns["KeyProbe"]


BASE = '''
class KeyProbe(nd.Neuron):
    """Base probe."""
    v = nd.State(0.0)
    tau = nd.Param(2.0)
    v_th = nd.Param(1.0)

    def charge(self, x):
        return dict(v=self.v + (x - self.v) / self.tau)

    def fire(self):
        return self.v - self.v_th

    def reset(self, s):
        return dict(v=self.v * (1 - s))
'''

REFORMATTED = '''
class KeyProbe(nd.Neuron):
    """A completely different docstring,
    over two lines."""
    v   = nd.State( 0.0 )      # membrane potential
    tau = nd.Param(2.0)        # time constant
    v_th = nd.Param(1.0)
    # a comment between declarations

    def charge(self,  x):
        """Docstring of charge."""
        # leak towards x
        return dict(v = self.v+(x-self.v)/self.tau)
    def fire(self): return self.v-self.v_th  # threshold crossing


    def reset(self, s):
        return dict(
            v=self.v * (1 - s),
        )
'''

EDITED = BASE.replace("(x - self.v) / self.tau", "(x - self.v) / (2 * self.tau)")
NEW_STATE = BASE.replace("v = nd.State(0.0)", "v = nd.State(0.0)\n    w = nd.State(0.0)").replace(
    "return dict(v=self.v + (x - self.v) / self.tau)", "return dict(v=self.v + (x - self.v) / self.tau, w=0.5 * self.w)")
NEW_PARAM = BASE.replace("v_th = nd.Param(1.0)", "v_th = nd.Param(1.0)\n    gain = nd.Param(1.0)").replace(
    "(x - self.v) / self.tau", "(self.gain * x - self.v) / self.tau")
NEW_STATE_DEFAULT = BASE.replace("v = nd.State(0.0)", "v = nd.State(0.25)")
PARAM_STATE_DEFAULT = BASE.replace("v = nd.State(0.0)", "v = nd.State(\"v_th\")")
NEW_PARAM_DEFAULTS = BASE.replace("nd.Param(2.0)", "nd.Param(7.5)").replace("nd.Param(1.0)", "nd.Param(0.3)")


def _fresh_versions(mp):
    """The version strings are read once per process; a patch must read them again (and restore them after)."""
    generator_versions.versions.cache_clear()
    mp.setattr(generator_versions, "versions", functools.lru_cache(maxsize=1)(generator_versions.versions.__wrapped__))


def _patch_codegen(mp):
    mp.setattr(generator_versions, "CODEGEN_VERSION", generator_versions.CODEGEN_VERSION + "-next")


def _patch_generator(mp):
    """An edited template, printer or device library: the generator fingerprint changes."""
    mp.setattr(generator_versions, "generator_fingerprint", lambda: "edited-generator")


def _patch_torch(mp):
    _fresh_versions(mp)
    mp.setattr(torch, "__version__", torch.__version__ + "+other")


def _patch_triton(mp):
    _fresh_versions(mp)
    real = importlib.metadata.version
    mp.setattr(importlib.metadata, "version", lambda name: real(name) + ".post1" if name == "triton" else real(name))


# (description, source A, source B, options A, options B, should_change)
# options: init kwargs, "vector" (vector_params for kernel_options), "dtype", "patch" (applied for B only)
KEY_TABLE = [
    ("equation edit", BASE, EDITED, {}, {}, True),
    ("new state", BASE, NEW_STATE, {}, {}, True),
    ("new parameter", BASE, NEW_PARAM, {}, {}, True),
    ("param shape: scalar vs per-neuron tensor", BASE, BASE, {}, {"init": {"tau": torch.full((4,), 2.0)}}, True),
    ("param shape: explicit vector_params", BASE, BASE, {"vector": (False, False)}, {"vector": (False, True)}, True),
    ("compute dtype fp32 vs fp64", BASE, BASE, {"dtype": torch.float32}, {"dtype": torch.float64}, True),
    ("surrogate type", BASE, BASE, {}, {"init": {"surrogate": nd.surrogate.Sigmoid()}}, True),
    ("detach_reset", BASE, BASE, {}, {"init": {"detach_reset": True}}, True),
    ("learnable parameter", BASE, BASE, {}, {"init": {"learnable": ("tau",)}}, True),
    ("codegen version", BASE, BASE, {}, {"patch": _patch_codegen}, True),
    ("generator sources (templates, printers, device library)", BASE, BASE, {}, {"patch": _patch_generator}, True),
    ("torch version", BASE, BASE, {}, {"patch": _patch_torch}, True),
    ("triton version", BASE, BASE, {}, {"patch": _patch_triton}, True),
    ("whitespace, comments, docstrings", BASE, REFORMATTED, {}, {}, False),
    ("parameter values at instantiation", BASE, BASE, {}, {"init": {"tau": 5.0, "v_th": 0.4}}, False),
    ("per-neuron parameter values", BASE, BASE, {"init": {"tau": torch.full((4,), 2.0)}},
     {"init": {"tau": torch.linspace(1.5, 9.0, 7)}}, False),
    ("parameter defaults", BASE, NEW_PARAM_DEFAULTS, {}, {}, False),
    ("state default value", BASE, NEW_STATE_DEFAULT, {}, {}, False),
    ("state default: number vs parameter name", BASE, PARAM_STATE_DEFAULT, {}, {}, False),
    ("surrogate alpha value", BASE, BASE, {}, {"init": {"surrogate": nd.surrogate.ATan(alpha=5.0)}}, False),
    ("fp16 / bf16 input (fp32 math)", BASE, BASE, {"dtype": torch.float16}, {"dtype": torch.bfloat16}, False),
    ("backend and step mode", BASE, BASE, {"init": {"backend": "torch"}},
     {"init": {"backend": "triton", "step_mode": "s"}}, False),
]


def table_key(source, opts, monkeypatch):
    layer = source_neuron(source)(**opts.get("init", {}))
    with monkeypatch.context() as mp:
        if "patch" in opts:
            opts["patch"](mp)
        return plan_key(layer.spec, layer.kernel_options(opts.get("vector"), opts.get("dtype", torch.float32)))


@pytest.mark.parametrize("what,src_a,src_b,opts_a,opts_b,should_change", KEY_TABLE, ids=[r[0] for r in KEY_TABLE])
def test_cache_key_table(monkeypatch, what, src_a, src_b, opts_a, opts_b, should_change):
    key_a = table_key(src_a, opts_a, monkeypatch)
    key_b = table_key(src_b, opts_b, monkeypatch)
    assert key_a == table_key(src_a, opts_a, monkeypatch), "the key is not stable"
    assert (key_a != key_b) == should_change, f"{what}: key {'did not change' if should_change else 'changed'}"


def test_cache_key_of_unchanged_rows_shares_one_entry(monkeypatch, tmp_path):
    """Rows that keep the key also run the same generated module (no recompile)."""
    monkeypatch.setenv("NEURODSL_CACHE_DIR", str(tmp_path))
    a = source_neuron(BASE)(backend="torch")
    b = source_neuron(REFORMATTED)(backend="torch", tau=5.0)
    x = torch.rand(4, 3) * 2
    a(x)
    b(x)
    assert compile_spec(a.spec, a._last_options).module("torch") is compile_spec(b.spec, b._last_options).module("torch")
