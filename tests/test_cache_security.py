"""The cache's trust model: it runs only code it verified in a directory nobody else can write.

Refused: directories and entries writable by others or owned by another user (unless
NEURODSL_CACHE_TRUST_SHARED=1), entries bound to another key or backend, bytecode beside entries, a
file swapped between verification and execution. Also: unsafe class names, concurrent ``clear``,
files ``clear`` must not touch, and the per-user fallback directory.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import itertools
import json
import marshal
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import unicodedata
import uuid
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import neurodsl as nd
from kernels_gen import cache
from neurodsl import cli, zoo
from neurodsl.compiler import compile_spec
from neurodsl.errors import CacheError

needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="chown to another user needs root")
OTHER_UID = 54321
_ids = itertools.count()


def new_key() -> str:
    return uuid.uuid4().hex[:20]


def plant(path: Path, body: str, key: str, backend: str) -> None:
    """What someone with write access can do: a well-formed entry with a recomputed checksum."""
    digest = hashlib.sha256(body.encode()).hexdigest()
    path.write_text(f"{cache.CHECKSUM_PREFIX}{digest}  key: {key}  backend: {backend}\n{body}")


def forget():
    """Drop the in-process copies so the next lookup goes to disk, like a fresh process."""
    cache._MEMO.clear()
    cache._SOURCES.clear()
    compile_spec.cache_clear()


def fresh_neuron(name=None):
    return type(name or f"SecProbe{next(_ids)}_{os.getpid()}", (nd.Neuron,), {
        "v": nd.State(0.0), "tau": nd.Param(2.0),
        "charge": lambda self, x: dict(v=self.v + (x - self.v) / self.tau),
        "fire": lambda self: self.v - 1.0,
        "reset": lambda self, s: dict(v=self.v * (1 - s)),
    })


@pytest.fixture
def private_tmp(monkeypatch, tmp_path):
    """``tempfile.gettempdir()`` -> a fresh dir (the per-user fallback lands there); warnings reset."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(cache, "_WARNED", set())
    monkeypatch.delenv(cache.TRUST_ENV, raising=False)
    return tmp


@pytest.fixture
def own_dir(monkeypatch, tmp_path, private_tmp):
    """A fresh cache dir of this user, mode 0700."""
    target = tmp_path / "cache"
    monkeypatch.setenv("NEURODSL_CACHE_DIR", str(target))
    return target


def fallback_of(private_tmp: Path) -> Path:
    return private_tmp / f"neurodsl-cache-{os.geteuid()}"


# -- directories others can write, or owned by another user -------------------------------------------
def shared_dir(tmp_path: Path, how: str) -> Path:
    target = tmp_path / f"shared-{how}"
    target.mkdir()
    if how == "other-user":
        target.chmod(0o755)
        os.chown(target, OTHER_UID, -1)
    else:
        target.chmod({"group-writable": 0o770, "world-writable": 0o777, "sticky-world": 0o1777}[how])
    return target


@pytest.mark.parametrize("how", ["group-writable", "world-writable", "sticky-world",
                                 pytest.param("other-user", marks=needs_root)])
def test_tampered_entry_in_a_dir_others_can_write_is_refused(monkeypatch, tmp_path, private_tmp, how):
    target = shared_dir(tmp_path, how)
    monkeypatch.setenv("NEURODSL_CACHE_DIR", str(target))
    key = new_key()
    plant(target / f"probe-{key}.torch.py", "VALUE = 'planted'\n", key, "torch")
    with pytest.warns(RuntimeWarning, match="writable by|owned by uid") as record:
        module = cache.load_module("probe", key, "torch", lambda: "VALUE = 'generated'\n")
    assert module.VALUE == "generated"
    assert Path(module.__file__) == fallback_of(private_tmp) / f"probe-{key}.torch.py"
    assert cache.TRUST_ENV in str(record[0].message)  # the warning names the opt-in
    assert cache.cache_dir() == fallback_of(private_tmp)


def test_opt_in_trusts_a_shared_dir(monkeypatch, tmp_path, private_tmp):
    """NEURODSL_CACHE_TRUST_SHARED=1: the shared dir is used, with whatever its other writers put there."""
    target = shared_dir(tmp_path, "group-writable")
    monkeypatch.setenv("NEURODSL_CACHE_DIR", str(target))
    monkeypatch.setenv(cache.TRUST_ENV, "1")
    key = new_key()
    plant(target / f"probe-{key}.torch.py", "VALUE = 'written by a colleague'\n", key, "torch")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        module = cache.load_module("probe", key, "torch", lambda: "VALUE = 'generated'\n")
    assert module.VALUE == "written by a colleague"
    assert cache.cache_dir() == target and not fallback_of(private_tmp).exists()


@pytest.mark.parametrize("value", ["yes", "true", "2"])
def test_opt_in_takes_only_1_or_0(monkeypatch, own_dir, value):
    monkeypatch.setenv(cache.TRUST_ENV, value)
    with pytest.raises(CacheError) as info:
        cache.load_module("probe", new_key(), "torch", lambda: "VALUE = 1\n")
    assert info.value.code == "ND703"
    monkeypatch.setenv(cache.TRUST_ENV, "0")
    assert cache.load_module("probe", new_key(), "torch", lambda: "VALUE = 1\n").VALUE == 1


@pytest.mark.parametrize("how", ["group-writable", pytest.param("other-user", marks=needs_root)])
def test_untrusted_entry_in_own_dir_is_replaced(own_dir, how):
    key = new_key()
    cache.load_module("probe", key, "torch", lambda: "VALUE = 'generated'\n")
    path = own_dir / f"probe-{key}.torch.py"
    assert (own_dir.stat().st_mode & 0o777) == 0o700
    forget()
    plant(path, "VALUE = 'planted'\n", key, "torch")
    if how == "other-user":
        os.chown(path, OTHER_UID, -1)
    else:
        path.chmod(0o664)
    with pytest.warns(RuntimeWarning, match="cache entry .* (writable by|owned by uid)"):
        module = cache.load_module("probe", key, "torch", lambda: "VALUE = 'generated'\n")
    assert module.VALUE == "generated"
    st_ = path.stat()
    assert st_.st_uid == os.geteuid() and not st_.st_mode & 0o022
    assert "VALUE = 'generated'" in path.read_text()


def test_symlinked_entry_is_not_followed(own_dir, tmp_path):
    own_dir.mkdir()
    key = new_key()
    elsewhere = tmp_path / "elsewhere.py"
    plant(elsewhere, "VALUE = 'via link'\n", key, "torch")
    (own_dir / f"probe-{key}.torch.py").symlink_to(elsewhere)
    assert cache.load_module("probe", key, "torch", lambda: "VALUE = 'generated'\n").VALUE == "generated"
    assert not (own_dir / f"probe-{key}.torch.py").is_symlink()
    assert "via link" in elsewhere.read_text()


# -- key and backend binding ----------------------------------------------------------------------------
def test_entry_copied_under_another_key_is_refused(own_dir):
    """A hard-reset entry copied over the soft-reset one must not run the hard reset."""
    x = torch.rand(12, 5, generator=torch.Generator().manual_seed(0)) * 3  # seeded: hard and soft differ on it
    hard, soft = zoo.LIF(reset_mode="hard", backend="torch"), zoo.LIF(reset_mode="soft", backend="torch")
    hard(x)
    soft(x)
    key_hard = compile_spec(hard.spec, hard._last_options).key
    key_soft = compile_spec(soft.spec, soft._last_options).key
    path_hard, path_soft = own_dir / f"LIF-{key_hard}.torch.py", own_dir / f"LIF-{key_soft}.torch.py"
    good_soft = path_soft.read_text()
    shutil.copyfile(path_hard, path_soft)
    assert cache.read_entry(path_soft) is None
    forget()
    expected = nd.reference_run(zoo.LIF(reset_mode="soft"), x)[0]
    out = zoo.LIF(reset_mode="soft", backend="torch")(x)
    assert torch.equal(out, expected)
    assert not torch.equal(out, nd.reference_run(zoo.LIF(reset_mode="hard"), x)[0])  # the inputs tell them apart
    assert path_soft.read_text() == good_soft  # regenerated
    forget()


def test_entry_copied_under_another_backend_is_refused(own_dir):
    key = new_key()
    cache.load_module("probe", key, "torch", lambda: "VALUE = 'torch'\n")
    shutil.copyfile(own_dir / f"probe-{key}.torch.py", own_dir / f"probe-{key}.parallel.py")
    assert cache.read_entry(own_dir / f"probe-{key}.parallel.py") is None
    assert cache.load_module("probe", key, "parallel", lambda: "VALUE = 'parallel'\n").VALUE == "parallel"


@pytest.mark.parametrize("key,backend", [("../x", "torch"), ("a/b", "torch"), ("k" * 65, "torch"), ("", "torch"),
                                         ("abc", "torch/../x"), ("abc", "Torch"), ("abc", "")])
def test_unsafe_key_or_backend_is_an_error(own_dir, key, backend):
    with pytest.raises(CacheError) as info:
        cache.load_module("probe", key, backend, lambda: "V = 1\n")
    assert info.value.code == "ND701"


# -- what runs is what was verified ----------------------------------------------------------------------
def test_file_swapped_after_verification_does_not_run(own_dir, monkeypatch):
    """A rewrite between the check and the execution: the verified bytes run, also for inspect."""
    key = new_key()
    source = "def f():\n    return 'verified'\n"
    cache.load_module("probe", key, "torch", lambda: source)
    forget()
    path = own_dir / f"probe-{key}.torch.py"
    real_verify = cache._verify

    def verify_then_swap(text, *args, **kwargs):
        body = real_verify(text, *args, **kwargs)
        plant(path, "def f():\n    return 'swapped'\n", key, "torch")
        return body

    monkeypatch.setattr(cache, "_verify", verify_then_swap)
    module = cache.load_module("probe", key, "torch", lambda: pytest.fail("the valid entry was not used"))
    assert module.f() == "verified"
    assert "verified" in inspect.getsource(module.f)
    assert cache.cached_source("probe", key, "torch") == source


def test_no_bytecode_beside_entries_and_planted_bytecode_is_ignored(own_dir, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    key = new_key()
    cache.load_module("probe", key, "torch", lambda: "VALUE = 'generated'\n")
    cls = fresh_neuron()
    for backend in ("torch", "triton"):
        cls(backend=backend)(torch.rand(3, 4))
    assert not list(own_dir.rglob("__pycache__")) and not list(own_dir.rglob("*.pyc"))
    # bytecode of other code, planted where Python's import system would look for the entry's
    path = own_dir / f"probe-{key}.torch.py"
    pyc = Path(importlib.util.cache_from_source(str(path)))
    pyc.parent.mkdir()
    code = compile("VALUE = 'from bytecode'\n", str(path), "exec")
    st_ = path.stat()
    pyc.write_bytes(importlib.util.MAGIC_NUMBER + (0).to_bytes(4, "little") + int(st_.st_mtime).to_bytes(4, "little")
                    + (st_.st_size & 0xFFFFFFFF).to_bytes(4, "little") + marshal.dumps(code))
    forget()
    assert cache.load_module("probe", key, "torch", lambda: "VALUE = 'generated'\n").VALUE == "generated"


def test_triton_kernel_from_the_cache_runs_after_its_file_vanished(own_dir, monkeypatch):
    """A Triton entry read from disk, then deleted (a concurrent clear) before the kernel runs."""
    cls = fresh_neuron()
    x = torch.rand(4, 3) * 2
    cls(backend="triton")(x)  # writes the entry
    forget()
    (path,) = own_dir.glob(f"{cls.__name__}-*.triton.py")
    real_read = cache._read_trusted

    def read_then_delete(p):
        text = real_read(p)
        Path(p).unlink()
        return text

    monkeypatch.setattr(cache, "_read_trusted", read_then_delete)
    layer = cls(backend="triton")
    out = layer(x)
    assert not path.exists()
    assert torch.equal(out, nd.reference_run(cls(), x)[0])
    compiled = compile_spec(layer.spec, layer._last_options)
    module = compiled.module("triton")
    assert module.__file__ == str(path)
    kernels = [v for v in vars(module).values() if type(v).__name__ in ("JITFunction", "InterpretedFunction")]
    assert kernels and all(inspect.getsource(k.fn) in module_source(module) for k in kernels)  # file is gone
    forget()


def module_source(module) -> str:
    return "".join(__import__("linecache").getlines(module.__file__))


def test_compile_survives_clear_between_write_and_execute(own_dir, monkeypatch):
    """The failure mode of ``neurodsl cache clear`` during a compile: the entry vanishes right after its write."""
    real_write = cache.write_entry
    removed = []

    def write_then_clear(path, body):
        real_write(path, body)
        removed.append(cache.clear())

    monkeypatch.setattr(cache, "write_entry", write_then_clear)
    cls = fresh_neuron()
    x = torch.rand(5, 2, 3) * 2
    for backend in ("torch", "triton"):
        assert torch.equal(cls(backend=backend)(x), nd.reference_run(cls(), x)[0])
    assert removed and all(n >= 1 for n in removed)
    forget()


CLEAR_RACE = textwrap.dedent('''
    import json, os, sys, time, traceback
    from pathlib import Path
    import torch
    import neurodsl as nd
    from kernels_gen import cache

    config = json.loads(Path(sys.argv[1]).read_text())
    work = Path(config["work"])
    os.environ["NEURODSL_CACHE_DIR"] = config["cache_dir"]

    def compiler(i):
        errors = 0
        for j in range(config["classes"]):
            cls = type(f"ClearRace{i}_{j}", (nd.Neuron,), {
                "v": nd.State(0.0), "tau": nd.Param(2.0 + j),
                "charge": lambda self, x: dict(v=self.v + (x - self.v) / self.tau),
                "fire": lambda self: self.v - 1.0, "reset": lambda self, s: dict(v=self.v * (1 - s))})
            x = torch.rand(6, 5) * 2
            for backend in config["backends"]:
                if not torch.equal(cls(backend=backend)(x), nd.reference_run(cls(), x)[0]):
                    errors += 1
        return {"errors": errors}

    def clearer():
        passes = removed = 0
        while len(list(work.glob("done-*"))) < config["compilers"]:
            removed += cache.clear()
            passes += 1
            time.sleep(0.002)
        return {"passes": passes, "removed": removed}

    pids = []
    for role in ["clear"] + list(range(config["compilers"])):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                while not (work / "go").exists():
                    time.sleep(0.001)
                out = clearer() if role == "clear" else compiler(role)
                (work / f"result-{role}.json").write_text(json.dumps(out))
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                if role != "clear":
                    (work / f"done-{role}").write_text("")
                sys.stderr.flush()
                os._exit(code)
        pids.append(pid)
    (work / "go").write_text("")
    sys.exit(1 if sum(os.waitpid(pid, 0)[1] != 0 for pid in pids) else 0)
''')


def test_concurrent_clear_and_compiles_across_processes(tmp_path):
    work, cache_dir = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    config = dict(work=str(work), cache_dir=str(cache_dir), compilers=3, classes=3, backends=["torch", "triton"])
    (work / "config.json").write_text(json.dumps(config))
    (work / "race.py").write_text(CLEAR_RACE)
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, str(work / "race.py"), str(work / "config.json")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = [json.loads((work / f"result-{i}.json").read_text()) for i in range(config["compilers"])]
    assert all(r["errors"] == 0 for r in results)
    cleared = json.loads((work / "result-clear.json").read_text())
    print("clear passes / entries removed while compiling:", cleared)
    assert cleared["passes"] >= 2 and cleared["removed"] >= 1
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".tmp")]


# -- clear and list touch only their own verified files ------------------------------------------------
def test_clear_leaves_foreign_files_alone(own_dir, tmp_path):
    cls = fresh_neuron()
    cls(backend="torch")(torch.rand(3, 4))
    (ours,) = own_dir.glob(f"{cls.__name__}-*.torch.py")
    other_key = new_key()
    old = time.time() - 3600
    foreign = {
        "notes.py": "# checksum: this used to be enough to be deleted\n",
        ".mydata.tmp": "a user's temp file",
        f".{ours.name}.tmp": "no random part: not a name mkstemp makes",
        f"Probe-{other_key}.torch.py": f"{cache.CHECKSUM_PREFIX}{'0' * 64}  key: {other_key}  backend: torch\nX = 1\n",
        f"Copied-{other_key}.torch.py": ours.read_text(),  # a valid entry of another key, copied
        f"Probe-{other_key}.triton.py": "",
    }
    for name, text in foreign.items():
        (own_dir / name).write_text(text)
        os.utime(own_dir / name, (old, old))
    link = own_dir / f"Link-{new_key()}.torch.py"
    link.symlink_to(ours)
    young_temp = own_dir / f".{ours.name}.abc123.tmp"
    young_temp.write_text("a write in flight")
    listed = cache.list_entries()
    assert listed == [ours]
    assert cache.clear() == 1
    assert not ours.exists()
    for name, text in foreign.items():
        assert (own_dir / name).read_text() == text, name
    assert link.is_symlink() and young_temp.exists()
    forget()


@needs_root
def test_clear_leaves_another_users_entry_alone(own_dir):
    key = new_key()
    cache.load_module("probe", key, "torch", lambda: "VALUE = 1\n")
    path = own_dir / f"probe-{key}.torch.py"
    os.chown(path, OTHER_UID, -1)
    with pytest.warns(RuntimeWarning, match="owned by uid"):
        assert cache.clear() == 0
    assert path.exists()


def test_clear_removes_entries_of_the_previous_format(own_dir):
    """Entries written before the key binding (checksum-only first line) are still neurodsl's own."""
    own_dir.mkdir()
    key = new_key()
    body = f"# Generated by neurodsl -- do not edit.\n# spec: Old   key: {key}   plan: 0\nX = 1\n"
    legacy = own_dir / f"Old-{key}.torch.py"
    legacy.write_text(f"{cache.CHECKSUM_PREFIX}{hashlib.sha256(body.encode()).hexdigest()}\n{body}")
    unrelated = own_dir / f"Old-{new_key()}.torch.py"  # right format, but the header names another key
    unrelated.write_text(legacy.read_text())
    assert cache.read_entry(legacy) is None  # not loaded (no key binding): regenerated on use
    assert cache.clear() == 1 and not legacy.exists() and unrelated.exists()


# -- the per-user fallback -------------------------------------------------------------------------------
def test_fallback_dir_is_one_per_user_and_reused(monkeypatch, tmp_path, private_tmp):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("NEURODSL_CACHE_DIR", str(blocker / "cache"))
    probe = "from kernels_gen import cache; print(cache.cache_dir())"
    env = dict(os.environ, TMPDIR=str(private_tmp), PYTHONWARNINGS="ignore")
    procs = [subprocess.Popen([sys.executable, "-c", probe], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    used = {p.communicate(timeout=120)[0].strip() for p in procs}
    with pytest.warns(RuntimeWarning, match="not writable"):
        here = cache.cache_dir()
    assert used == {str(here)} and here == fallback_of(private_tmp)
    assert [p.name for p in private_tmp.iterdir()] == [here.name]
    assert (here.stat().st_mode & 0o777) == 0o700


@pytest.mark.parametrize("squat", ["symlink", "world-writable", pytest.param("other-user", marks=needs_root)])
def test_squatted_fallback_is_refused_and_kernels_run_from_memory(monkeypatch, tmp_path, private_tmp, squat, capsys):
    target = fallback_of(private_tmp)
    decoy = tmp_path / "decoy"
    decoy.mkdir(mode=0o700)
    if squat == "symlink":
        target.symlink_to(decoy)
    else:
        target.mkdir()
        if squat == "world-writable":
            target.chmod(0o777)
        else:
            os.chown(target, OTHER_UID, -1)
    with pytest.raises(CacheError) as info:
        cache.private_dir()
    assert info.value.code == "ND702"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("NEURODSL_CACHE_DIR", str(blocker / "cache"))
    cls = fresh_neuron()
    x = torch.rand(4, 2, 3) * 2
    with pytest.warns(RuntimeWarning, match="run from memory"):
        for backend in ("torch", "triton"):
            layer = cls(backend=backend)
            assert torch.equal(layer(x), nd.reference_run(cls(), x)[0])
            module = compile_spec(layer.spec, layer._last_options).module(backend)
            assert module.__file__.startswith("<neurodsl-cache ")
            assert layer.kernel_source("all", backend=backend).startswith("# Generated by neurodsl")
    assert list(decoy.iterdir()) == []
    assert cli.main(["cache", "list"]) == 2 and "ND702" in capsys.readouterr().err
    forget()


# -- class names never reach a path raw ------------------------------------------------------------------
NASTY = st.sampled_from(["/", "\\", "..", "\n", "\r", "\x00", '"', "'", "\"\"\"", " ", "-", ".", "ﬁ", "Ⅳ", "ｆ",
                         "é", "e\u0301", "\u2028", "\x85", "💥", "ſ", "İ", "~", "$HOME", "%s", "{}", "*"])
NAMES = st.lists(st.one_of(NASTY, st.text(max_size=4)), max_size=8).map("".join)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES)
def test_any_name_loads_inside_the_cache_dir(own_dir, name):
    key = new_key()
    module = cache.load_module(name, key, "torch", lambda: f"NAME = {name!r}\n")
    assert module.NAME == name
    path = Path(module.__file__)
    assert path.parent == own_dir and path.exists() and path.name.isascii()
    assert cache.ENTRY_NAME.fullmatch(path.name)["key"] == key
    assert cache.read_entry(path) == f"NAME = {name!r}\n"
    label = cache.safe_label(name)
    assert path.name == f"{label}-{key}.torch.py"
    assert label == cache.safe_label(unicodedata.normalize("NFKC", name))
    assert {p.name for p in own_dir.iterdir()} <= {p.name for p in cache.list_entries()}


def neuron_named(name):
    return type(name, (nd.Neuron,), {
        "v": nd.State(0.0), "tau": nd.Param(2.0),
        "charge": lambda self, x: dict(v=self.v + (x - self.v) / self.tau),
        "fire": lambda self: self.v - 1.0,
        "reset": lambda self, s: dict(v=self.v * 0.5 * (1 - s)),
    })


@settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES.filter(lambda n: not set(n) & {"\n", "\r", "\x00"}))  # type() refuses NUL
def test_any_class_name_compiles_and_runs(own_dir, name):
    cls = neuron_named(name + f"_{next(_ids)}")
    x = torch.rand(3, 4) * 2
    assert torch.equal(cls(backend="torch")(x), nd.reference_run(cls(), x)[0])
    assert all(cache.ENTRY_NAME.fullmatch(p.name) for p in own_dir.iterdir())


@pytest.mark.parametrize("name", ["Line\nBreak", "Carriage\rReturn", 'Quote"""\nimport os'])
def test_class_names_with_line_breaks_compile(own_dir, name):
    """The generated header stamps a safe label, never the raw name (a line break would end the comment)."""
    cls = neuron_named(name + f"_{next(_ids)}")
    x = torch.rand(3, 4) * 2
    for backend in ("torch", "triton"):
        assert torch.equal(cls(backend=backend)(x), nd.reference_run(cls(), x)[0])
    assert all(cache.read_entry(p) for p in own_dir.iterdir())


def test_nfkc_equivalent_class_names_get_separate_entries(own_dir):
    a, b = neuron_named("ﬁProbe"), neuron_named("fiProbe")
    x = torch.rand(3, 4) * 2
    for cls in (a, b):
        assert torch.equal(cls(backend="torch")(x), nd.reference_run(cls(), x)[0])
    files = sorted(own_dir.glob("fiProbe-*.torch.py"))
    assert len(files) == 2 and all(cache.read_entry(f) for f in files)
