"""The on-disk kernel cache: location, checksummed entries, corruption recovery, memo, and the key."""
import hashlib
import itertools
import os
from pathlib import Path

import pytest
import torch

import neurodsl as nd
from kernels_gen import cache
from neurodsl.analysis import plan_key
from neurodsl.compiler import compile_spec
from neurodsl import zoo

_ids = itertools.count()


def fresh_neuron(tau_default=2.0, doc="A fresh neuron.", name=None, charge=None):
    """A new class (new name unless given) so that no earlier test has compiled it."""
    name = name or f"CacheProbe{next(_ids)}"

    def default_charge(self, x):
        return dict(v=self.v + (x - self.v) / self.tau)

    return type(name, (nd.Neuron,), {
        "__doc__": doc, "v": nd.State(0.0), "tau": nd.Param(tau_default),
        "charge": charge or default_charge, "fire": lambda self: self.v - 1.0,
        "reset": lambda self, s: dict(v=self.v * (1 - s)),
    })


def entry_files(directory, cls):
    return sorted(Path(directory).glob(f"{cls.__name__}-*.py"))


def test_session_cache_dir_is_the_override(cache_dir):
    assert os.environ["NEURODSL_CACHE_DIR"] == cache_dir
    assert cache.default_dir() == Path(cache_dir)
    assert cache.cache_dir() == Path(cache_dir)


def test_cache_dir_override_via_env(monkeypatch, tmp_path):
    target = tmp_path / "nested" / "cache"
    monkeypatch.setenv("NEURODSL_CACHE_DIR", str(target))
    assert cache.cache_dir() == target and target.is_dir()
    cls = fresh_neuron()
    cls(backend="torch")(torch.rand(3, 4) * 2)
    files = entry_files(target, cls)
    assert len(files) == 1 and files[0].name.endswith(".torch.py")


def test_xdg_fallback_when_no_override(monkeypatch, tmp_path):
    monkeypatch.delenv("NEURODSL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.default_dir() == tmp_path / "neurodsl"


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_entries_carry_a_valid_checksum(backend, cache_dir):
    cls = fresh_neuron()
    layer = cls(backend=backend)
    layer(torch.rand(3, 4) * 2)
    key = compile_spec(layer.spec, layer._last_options).key
    path = Path(cache_dir) / f"{cls.__name__}-{key}.{backend}.py"
    assert path.exists()
    first, _, body = path.read_text().partition("\n")
    checksum = hashlib.sha256(body.encode()).hexdigest()
    assert first == f"{cache.CHECKSUM_PREFIX}{checksum}  key: {key}  backend: {backend}"
    assert f"key: {key}" in body and f"spec: {cls.__name__}" in body
    assert cache.read_entry(path) == body
    assert layer.kernel_source("all") == body
    assert path in cache.list_entries()
    assert not list(Path(cache_dir).glob(".*.tmp"))  # atomic writes leave no temp files


def test_corrupt_entry_is_rebuilt(monkeypatch, tmp_path):
    monkeypatch.setenv("NEURODSL_CACHE_DIR", str(tmp_path))
    cls = fresh_neuron()
    x = torch.rand(4, 5) * 2
    expected = cls(backend="torch")(x)
    (path,) = entry_files(tmp_path, cls)
    good = path.read_text()
    path.write_text(good.replace("torch.", "torhc.", 1))  # body no longer matches its checksum
    assert cache.read_entry(path) is None
    # forget the in-process copies so the next run must go through the file again
    cache._MEMO.clear()
    compile_spec.cache_clear()
    assert torch.equal(cls(backend="torch")(x), expected)
    assert path.read_text() == good
    # a truncated file and a file without checksum line are rebuilt as well
    for broken in (good[: len(good) // 2], good.partition("\n")[2]):
        path.write_text(broken)
        cache._MEMO.clear()
        compile_spec.cache_clear()
        assert torch.equal(cls(backend="torch")(x), expected)
        assert path.read_text() == good


def test_second_module_reuses_in_process_memo(monkeypatch):
    writes, loads = [], []
    real_write, real_load = cache.write_entry, cache.load_module
    monkeypatch.setattr(cache, "write_entry", lambda p, b: (writes.append(p), real_write(p, b))[1])
    monkeypatch.setattr(cache, "load_module", lambda *a, **k: (loads.append(a[:3]), real_load(*a, **k))[1])
    cls = fresh_neuron()
    a, b = cls(backend="torch"), cls(backend="torch", tau=3.0)
    x = torch.rand(3, 4) * 2
    a(x)
    b(x)
    assert len(writes) == 1 and len(loads) == 1
    ca = compile_spec(a.spec, a._last_options)
    cb = compile_spec(b.spec, b._last_options)
    assert ca is cb and ca.module("torch") is cb.module("torch")
    assert cache._MEMO[(ca.key, "torch")] is ca.module("torch")


def test_existing_valid_entry_is_loaded_without_deriving(monkeypatch):
    cls = fresh_neuron()
    layer = cls(backend="torch")
    x = torch.rand(3, 4) * 2
    expected = layer(x)
    cache._MEMO.clear()
    compile_spec.cache_clear()

    def boom():
        raise AssertionError("plan derived although a valid cache entry exists")

    import neurodsl.compiler as compiler_mod
    monkeypatch.setattr(compiler_mod, "derive_plan", lambda *a: boom())
    compile_spec.cache_clear()
    assert torch.equal(cls(backend="torch")(x), expected)
    compile_spec.cache_clear()


def test_clear_removes_entries(monkeypatch, tmp_path):
    monkeypatch.setenv("NEURODSL_CACHE_DIR", str(tmp_path))
    cls = fresh_neuron()
    cls(backend="torch")(torch.rand(2, 3))
    (tmp_path / "unrelated.txt").write_text("keep me")
    assert cache.clear() >= 1
    assert not entry_files(tmp_path, cls)
    assert (tmp_path / "unrelated.txt").exists()
    compile_spec.cache_clear()


# -- the key --------------------------------------------------------------------------------------
def key_of(layer, dtype=torch.float32):
    return plan_key(layer.spec, layer.kernel_options(dtype=dtype))


def test_key_changes_with_what_shapes_the_code():
    base = zoo.LIF()
    k = key_of(base)
    assert key_of(zoo.LIF()) == k
    changed = {
        "equation": key_of(zoo.LIF(decay_input=False)),
        "reset variant": key_of(zoo.LIF(reset_mode="soft")),
        "other neuron": key_of(zoo.PLIF(learnable=())),
        "surrogate": key_of(zoo.LIF(surrogate=nd.surrogate.Sigmoid())),
        "custom surrogate": key_of(zoo.LIF(surrogate=nd.surrogate.Custom(primitive=lambda u, a: nd.sigmoid(a * u)))),
        "detach_reset": key_of(zoo.LIF(detach_reset=True)),
        "dtype": key_of(base, torch.float64),
        "vector pattern": key_of(zoo.LIF(tau=torch.full((3,), 2.0))),
        "learnable": key_of(zoo.LIF(learnable=("tau",))),
        "learnable alpha": key_of(zoo.LIF(surrogate=nd.surrogate.ATan(learnable=True))),
        "smooth": key_of(zoo.LIF(smooth=True)),
    }
    for what, other in changed.items():
        assert other != k, what
    assert len(set(changed.values())) == len(changed)


def test_key_ignores_runtime_values_and_docs():
    assert key_of(zoo.LIF(tau=5.0, v_th=0.3)) == key_of(zoo.LIF())
    assert key_of(zoo.LIF(surrogate=nd.surrogate.ATan(alpha=7.0))) == key_of(zoo.LIF())
    assert key_of(zoo.LIF(tau=torch.full((3,), 2.0))) == key_of(zoo.LIF(tau=torch.full((5,), 9.0)))
    a = fresh_neuron(tau_default=2.0, doc="One docstring.", name="SameName")
    b = fresh_neuron(tau_default=7.5, doc="A completely different docstring.", name="SameName")
    assert a.spec != b.spec  # defaults and docs differ ...
    assert key_of(a()) == key_of(b())  # ... but not the generated code
    assert a.spec.hash == b.spec.hash


def test_key_changes_with_equation_of_same_named_class():
    a = fresh_neuron(name="SameEq")
    b = fresh_neuron(name="SameEq", charge=lambda self, x: dict(v=self.v + (x - self.v) / (2 * self.tau)))
    assert key_of(a()) != key_of(b())


def test_different_keys_make_different_entries(cache_dir):
    cls = fresh_neuron()
    x = torch.rand(3, 4) * 2
    cls(backend="torch")(x)
    cls(backend="torch", detach_reset=True)(x)
    cls(backend="torch")(x.double())
    assert len(entry_files(cache_dir, cls)) == 3
