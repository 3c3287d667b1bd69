"""The C backend: the generated C kernels against the reference loop, its build cache, and its toolchain rules.

Every zoo neuron and variant (the surrogates in turn, so each one runs), the random-spec campaign, an fp64
gradcheck in smooth mode; concurrent builds of one spec in several processes; a cache that cannot be
written; damaged and foreign libraries refused; a missing or broken compiler. Each new spec costs one
compile (~0.5 s), so the cases are few and small.
"""
from __future__ import annotations

import hashlib
import logging
import os
import zlib

import pytest
import torch

import neurodsl as nd
from kernels_gen import backends, cache
from kernels_gen.backends.c import toolchain
from neurodsl.testing import campaign, check_against_reference, initial_states, inputs_for

from helpers import NEURONS, assert_close, compare
from test_gradcheck import gradcheck_layer, smooth_layer
from test_zoo import SURROGATES, VARIANTS, make, vid

CHAIN = toolchain.toolchain()
needs_cc = pytest.mark.skipif(isinstance(CHAIN, Exception), reason=f"no working C compiler: {CHAIN}")


def test_ci_has_a_working_compiler():
    """CI builds the C kernels with the machine's compiler: there, its absence is a failure, not a skip."""
    if os.environ.get("CI") and isinstance(CHAIN, Exception):
        pytest.fail(f"CI machine without a working C compiler: {CHAIN}")


def test_auto_picks_c_on_cpu_only():
    expected = "torch" if isinstance(CHAIN, Exception) else "c"
    assert backends.choose_auto(torch.device("cpu")).name == expected
    assert backends.get("c").unavailable(torch.device("meta")).code == "ND307"
    assert backends.get("c").auto_priority(torch.device("cuda")) is None


@needs_cc
@pytest.mark.parametrize("cfg", VARIANTS, ids=vid)
def test_zoo_matches_reference(cfg):
    """Every zoo neuron and variant, every surrogate in turn, forward and every gradient."""
    cls, variant = cfg
    index = VARIANTS.index(cfg)
    name = list(SURROGATES)[index % len(SURROGATES)]
    layer = make(cls, variant, name, backend="c", detach_reset=index % 2 == 1)
    xs = inputs_for(layer, 5, (3, 4), seed=zlib.crc32(vid(cfg).encode()) % 1000)
    spikes, _, grads = compare(layer, *xs)
    assert layer.last_route.kernels.backend == "c"
    if name != "CustomGradient":
        assert "surrogate_alpha" in grads


@needs_cc
def test_every_surrogate_runs():
    """The variant grid above cycles through every surrogate at least once."""
    assert len(VARIANTS) >= len(SURROGATES)


@needs_cc
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16], ids=str)
def test_dtypes_vector_params_and_state_sequences(dtype):
    """Per-neuron parameters, stored state sequences, several blocks of neurons (N > one block), all dtypes."""
    extra, learnable = NEURONS[nd.zoo.ALIF]
    n = 600
    layer = nd.zoo.ALIF(backend="c", learnable=learnable, store_state_seqs=True,
                        **{**extra, "tau": torch.linspace(1.5, 3.0, n)})
    xs = inputs_for(layer, 4, (n,), seed=3)
    result = check_against_reference(layer, *[x.to(dtype) for x in xs]).assert_ok()
    assert any(k.startswith("grad:") for k in result.compared) and layer.state_seqs["v"].shape == (4, n)
    assert layer.last_route.kernels.backend == "c"


@needs_cc
def test_inference_matches_training_forward_and_threads_agree():
    """The no-save kernel gives the same spikes and states; one thread and several give identical results."""
    layer = nd.zoo.Izhikevich(backend="c", **{k: v for k, v in NEURONS[nd.zoo.Izhikevich][0].items()})
    x = inputs_for(layer, 6, (2, 700), seed=5)[0]
    with torch.no_grad():
        inferred = layer(x)
        state = layer.v.clone()
    layer.reset_state()
    trained = layer(x.requires_grad_())
    assert torch.equal(inferred, trained.detach()) and torch.equal(state, layer.v.detach())
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        layer.reset_state()
        with torch.no_grad():
            single = layer(x)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(single, inferred)


def _run_in_child(layer, x, queue):
    layer.reset_state()
    with torch.no_grad():
        queue.put(layer(x).numpy().tobytes())


@needs_cc
def test_a_forked_process_runs_the_kernels():
    """GNU OpenMP's thread pool does not survive fork: a child of a process that ran kernels on several
    threads runs them on one (it would hang otherwise), with the same results."""
    import multiprocessing
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        layer = nd.zoo.LIF(backend="c")
        x = torch.rand(6, 3000) * 2
        with torch.no_grad():
            want = layer(x)
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_run_in_child, args=(layer, x, queue))
        child.start()
        got = queue.get(timeout=120)
        child.join(timeout=60)
    finally:
        torch.set_num_threads(threads)
    assert got == want.numpy().tobytes()


@needs_cc
def test_random_spec_campaign():
    report = campaign(examples=8, backend="c", seed=11, max_steps=5)
    assert report.ok, report.line()
    assert report.count("compared") >= 4


@needs_cc
@pytest.mark.parametrize("cls", [nd.zoo.LIF, nd.zoo.ALIF, nd.zoo.Izhikevich], ids=lambda c: c.__name__)
def test_gradcheck_fp64_smooth(cls):
    layer = smooth_layer(cls, backend="c")
    gradcheck_layer(layer)
    assert layer.last_route.kernels.backend == "c"


@needs_cc
def test_forward_mode_ad_runs_the_torch_tangent_kernels():
    layer = nd.zoo.ALIF(backend="c", tau=torch.full((3,), 2.0), learnable=("tau",), smooth=True).double()
    twin = nd.zoo.ALIF(backend="torch", tau=torch.full((3,), 2.0), learnable=("tau",), smooth=True).double()
    x = torch.rand(5, 3, dtype=torch.float64) * 2
    t = torch.randn(5, 3, dtype=torch.float64)
    out, tangent = torch.func.jvp(lambda x: layer(x), (x,), (t,))
    want, want_tangent = torch.func.jvp(lambda x: twin(x), (x,), (t,))
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(tangent, want_tangent)


# -- recompute: the backward re-runs the forward instead of reading saved charged values ---------------------------
def _grads_of_two_calls(layer, xs, init, weights, seqs):
    """Spikes, states and the gradients of every input, initial state and learnable parameter over two calls of
    ``layer`` in a row (the second starts from the states the first carried), for a weighted loss of spikes and
    of the state sequences (``seqs``) or final states."""
    xs = [x.clone().requires_grad_() for x in xs]
    init = {k: v.clone().requires_grad_() for k, v in init.items()}
    layer.zero_grad()
    layer.reset_state()
    for k, v in init.items():
        setattr(layer, k, v)
    loss, outs = 0, []
    for call in range(2):
        spikes = layer(*[x[call] for x in xs])
        states = layer.state_seqs if seqs else {k: getattr(layer, k) for k in init}
        loss = loss + (spikes * weights[call]).sum() + sum((v * (k + 1.0)).sum() for k, v in
                                                          zip(range(len(states)), states.values()))
        outs += [spikes.detach(), *(v.detach() for v in states.values())]
    loss.backward()
    grads = {f"x{i}": x.grad for i, x in enumerate(xs)} | {f"init:{k}": v.grad for k, v in init.items()}
    grads |= {name: p.grad for name, p in layer.named_parameters() if p.grad is not None}
    return outs, grads


@needs_cc
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("cls", nd.zoo.ALL, ids=lambda c: c.__name__)
def test_recompute_backward_equals_the_saving_backend(cls, dtype):
    """The C backend saves no charged values (its backward re-runs the forward): gradients equal the torch
    backend's, which saves them. Every zoo neuron, scalar and then per-neuron learnable parameters, state sequences
    in the loss, initial states, states carried into a second call."""
    from neurodsl.compiler import compile_spec
    extra, learnable = NEURONS[cls]
    n = 300
    for per_neuron, seqs in ((False, False), (True, True)):
        probe = cls(**extra)
        values = {p: probe.param_value(p).detach().double().mean().item() * (1 + 0.2 * torch.rand(n).double())
                  for p in learnable} if per_neuron else {}
        layers = [cls(backend=b, learnable=learnable, store_state_seqs=seqs, **{**extra, **values}).to(dtype)
                  for b in ("c", "torch")]
        layers[1].load_state_dict(layers[0].state_dict())
        xs = [x.to(dtype).reshape(2, 6, n) for x in inputs_for(layers[0], 12, (n,), seed=5)]
        init = {k: v.to(dtype) for k, v in initial_states(layers[0], (n,), seed=5, dtype=dtype).items()}
        weights = torch.randn(2, 6, n, generator=torch.Generator().manual_seed(1), dtype=dtype)
        (c_outs, c_grads), (t_outs, t_grads) = (_grads_of_two_calls(layer, xs, init, weights, seqs) for layer in layers)
        assert layers[0].last_route.kernels.backend == "c"
        meta = compile_spec(layers[0].spec, layers[0].kernel_options()).meta("c")
        assert meta["saved_states"] == () and meta["needed_inputs"] == tuple(layers[0].spec.inputs)
        assert c_grads.keys() == t_grads.keys() and len(c_grads) >= len(xs) + len(init) + len(learnable)
        for a, b in zip(c_outs, t_outs):
            assert_close(a, b, dtype, f"{cls.__name__} output")
        for k in c_grads:
            assert c_grads[k].shape == t_grads[k].shape, k
            assert_close(c_grads[k], t_grads[k], dtype, f"{cls.__name__} {k} per_neuron={per_neuron}")


@needs_cc
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("cls", [nd.zoo.LIF, nd.zoo.ALIF], ids=lambda c: c.__name__)
def test_recompute_in_segments_is_bit_identical(cls, dtype):
    """Sequences too long for the backward's buffer run in segments, re-run from the states at their starts.
    Gradients are bit-identical to a run short enough for one segment (the same per-neuron arithmetic), and the
    training forward's spikes and states to inference's."""
    from kernels_gen.backends.c import segment_steps
    from neurodsl.compiler import compile_spec
    layer = cls(backend="c", learnable=("tau",), store_state_seqs=True).to(dtype)
    steps = segment_steps(compile_spec(layer.spec, layer.kernel_options()).plan)
    for T in (steps, 2 * steps + 7):  # one full segment; three segments, the last one short
        x = (torch.rand(T, 2, 150, generator=torch.Generator().manual_seed(2)) * 2).to(dtype)
        g = torch.randn(T, 2, 150, generator=torch.Generator().manual_seed(3), dtype=dtype)

        def grads(x, g):
            layer.zero_grad()
            xr = x.clone().requires_grad_()
            out = layer(xr)
            ((out * g).sum() + layer.state_seqs["v"].sum()).backward()
            return out.detach(), layer.v.detach(), xr.grad
        layer.reset_state()
        long = grads(x, g)
        with torch.no_grad():
            layer.reset_state()
            assert torch.equal(layer(x), long[0]) and torch.equal(layer.v, long[1])
        # the last steps alone, from the states reached before them (one segment): the same dL/dx
        start = T - 64
        layer.reset_state()
        with torch.no_grad():
            layer(x[:start])
        tail = grads(x[start:], g[start:])
        assert torch.equal(tail[0], long[0][start:]) and torch.equal(tail[2], long[2][start:])


@needs_cc
@pytest.mark.parametrize("neuron", [nd.zoo.LIF, nd.zoo.ALIF], ids=lambda c: c.__name__)
def test_training_forward_saves_no_full_size_tensor(neuron):
    """The training forward allocates one [T, N] tensor (the spikes); the backward one (the input gradient)."""
    from test_overhead import WASTE, full_size_ops
    ops = full_size_ops(neuron(backend="c", learnable=("tau",)), torch.float32)
    assert not set(ops) & WASTE, dict(ops)
    assert ops["aten.empty.memory_format"] == 1 + 1, dict(ops)


@needs_cc
def test_exact_parallel_mode_through_the_recompute_backward():
    """parallel='scan' (the exact fixed-point mode) hands its spikes to the C backward, which re-runs the
    sequential forward: the same gradients as the sequential kernels."""
    from helpers import require_safe_inputs, run_with_grads
    params = ("tau", "v_th")
    layer = nd.zoo.LIF(parallel="scan", backend="c", learnable=params)
    xs = require_safe_inputs(layer, 24, (2, 7), scale=0.8, offset=0.5)
    seq = run_with_grads(nd.zoo.LIF(parallel="sequential", backend="c", learnable=params), xs)
    par = run_with_grads(layer, xs, weights=seq[3])
    assert layer.last_form["form"] == "exact-scan" and layer.last_route.kernels.backend == "c"
    assert torch.equal(par[0], seq[0])
    assert par[2].keys() == seq[2].keys() and len(par[2]) >= 3
    for k in seq[2]:
        torch.testing.assert_close(par[2][k], seq[2][k], rtol=1e-5, atol=1e-6, msg=k)


@needs_cc
def test_torch_compile_and_opcheck_with_nothing_saved():
    """With no saved values the ops' fake kernels, schema and autograd registration still hold (opcheck), and a
    compiled module gives the eager gradients."""
    from test_compile import op_args
    for store_seqs in (False, True):
        args = op_args(nd.zoo.ALIF, "c", store_seqs, True, learn=("tau",))
        torch.library.opcheck(torch.ops.neurodsl.neuron_forward.default, args,
                              test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))
        out = torch.ops.neurodsl.neuron_forward(*args)
        assert len(out) == 1 + 2  # spikes and states: nothing saved
        key, _, _, _, _, inputs, init, params, _ = args
        torch.library.opcheck(torch.ops.neurodsl.neuron_backward.default,
                              (key, "c", store_seqs, torch.rand_like(out[0]), [torch.rand_like(v) for v in out[1:]],
                               [], [x.detach() for x in inputs], init, [p.detach() for p in params]),
                              test_utils=("test_schema", "test_faketensor"))
    layer = nd.zoo.ALIF(backend="c", learnable=("tau",))
    x = torch.rand(6, 2, 40, generator=torch.Generator().manual_seed(4)) * 2
    results = []
    for run in (layer, torch.compile(layer, backend="aot_eager", fullgraph=True)):
        layer.zero_grad()
        layer.reset_state()
        xr = x.clone().requires_grad_()
        out = run(xr)
        (out * torch.arange(out.numel()).reshape(out.shape).sin()).sum().backward()
        results.append((out.detach(), xr.grad, layer.tau.grad.clone()))
    assert all(torch.equal(a, b) for a, b in zip(*results))


# -- the build cache -----------------------------------------------------------------------------------
def _source_of(cls, **kw) -> tuple[str, str]:
    """(label, C source) of a layer's generated C module (rendered and cached, not built)."""
    from neurodsl.compiler import compile_spec
    layer = cls(backend="c", **kw)
    module = compile_spec(layer.spec, layer.kernel_options()).module("c")
    return module.LABEL, module.C_SOURCE


def _build_in_child(label, source, barrier, queue):
    barrier.wait(timeout=60)
    try:
        lib = toolchain.library(label, source, CHAIN)
        queue.put(("ok", hasattr(lib, "forward_kernel") and hasattr(lib, "backward_kernel")))
    except BaseException as err:  # noqa: BLE001 - reported to the parent
        queue.put(("error", repr(err)))


def _libraries(directory):
    return sorted(p.name for p in directory.iterdir() if p.suffix == ".so")


@needs_cc
def test_concurrent_builds_of_one_spec(tmp_path, monkeypatch):
    """Three processes build the same spec's library at once: each loads it, one library and record remain."""
    import multiprocessing
    monkeypatch.setenv("NEURODSL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(toolchain, "_LIBRARIES", {})
    label, source = _source_of(nd.zoo.ALIF, learnable=("tau",))
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_build_in_child, args=(label, source, barrier, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert results == [("ok", True)] * 3
    libs = _libraries(tmp_path)
    assert len(libs) == 1 and libs[0].startswith("ALIF-") and libs[0].endswith(".clib.so")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    record = cache.read_entry(tmp_path / libs[0].replace(".so", ".py"))
    assert hashlib.sha256((tmp_path / libs[0]).read_bytes()).hexdigest() in record
    check_against_reference(nd.zoo.ALIF(backend="c", learnable=("tau",)), torch.rand(4, 30) * 2).assert_ok()


@needs_cc
def test_damaged_and_foreign_libraries_are_refused(tmp_path, monkeypatch):
    """A library whose bytes do not hash to its record (damaged, or another build's) is never loaded: it is
    rebuilt from the entry's own source."""
    monkeypatch.setenv("NEURODSL_CACHE_DIR", str(tmp_path))
    source, foreign = "int f(void) { return 7; }\n", "int f(void) { return 8; }\n"
    key = CHAIN.build_key(source)
    path = cache.library_path("Lib", key, toolchain.LIBRARY_BACKEND)
    monkeypatch.setattr(toolchain, "_LIBRARIES", {})
    assert toolchain.library("Lib", source, CHAIN).f() == 7
    good = path.read_bytes()
    toolchain.library("Other", foreign, CHAIN)
    other = cache.library_path("Other", CHAIN.build_key(foreign), toolchain.LIBRARY_BACKEND).read_bytes()
    for bad in (other, good + b"\0", good[:-64]):
        # a new file renamed over it: writing into the loaded library's own inode would change the pages
        # this process has mapped (a crash at exit, whatever neurodsl does)
        (tmp_path / "damaged").write_bytes(bad)
        os.replace(tmp_path / "damaged", path)
        assert cache.open_library("Lib", key, toolchain.LIBRARY_BACKEND) is None
        monkeypatch.setattr(toolchain, "_LIBRARIES", {})
        toolchain.library("Lib", source, CHAIN)
        assert path.read_bytes() == good                                           # rebuilt, not loaded


@needs_cc
def test_open_library_checks_the_record(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURODSL_CACHE_DIR", str(tmp_path))
    built = cache.store_library("Lib", "k" * 20, "clib", lambda out: CHAIN.compile("int f(void) { return 7; }", out),
                                toolchain.load_library)
    assert built.f() == 7
    fd = cache.open_library("Lib", "k" * 20, "clib")
    assert fd is not None
    os.close(fd)
    assert toolchain.load_library(cache.library_path("Lib", "k" * 20, "clib")).f() == 7
    cache.entry_path("Lib", "k" * 20, "clib").write_text("LIBRARY_SHA256 = '" + "0" * 64 + "'\n")
    assert cache.open_library("Lib", "k" * 20, "clib") is None                  # record not verified
    assert cache.clear() == 1 and _libraries(tmp_path) == []                    # clear removes libraries


@needs_cc
def test_cache_that_cannot_be_written(tmp_path, monkeypatch):
    """No usable cache directory at all (ND702): the library is built in a private temp dir and runs."""
    from kernels_gen.errors import CacheError

    def refuse():
        raise CacheError("ND702", "no cache here")
    monkeypatch.setattr(cache, "cache_dir", refuse)
    monkeypatch.setattr(cache, "_MEMO", {})
    monkeypatch.setattr(cache, "_WARNED", set())
    monkeypatch.setattr(toolchain, "_LIBRARIES", {})
    monkeypatch.setattr(toolchain, "_WARNED", set())
    cls = type("Uncached", (nd.Neuron,), {
        "v": nd.State(0.0), "tau": nd.Param(2.5), "__module__": __name__,
        "charge": lambda self, x: dict(v=self.v + (x - self.v) / self.tau),
        "fire": lambda self: self.v - 1.0, "reset": lambda self, s: dict(v=self.v * (1 - s))})
    x = torch.rand(5, 40) * 2
    with pytest.warns(RuntimeWarning, match="from memory"):
        spikes = cls(backend="c")(x)
    assert torch.equal(spikes, nd.reference_run(cls(), x)[0].detach())


# -- the toolchain ---------------------------------------------------------------------------------------
def test_missing_compiler(monkeypatch, caplog):
    """NEURODSL_CC=/nonexistent: 'auto' falls back to torch with one log line; backend='c' raises ND306."""
    monkeypatch.setattr(toolchain, "_PROBES", {})
    monkeypatch.setenv("NEURODSL_CC", "/nonexistent/cc")
    with caplog.at_level(logging.WARNING, logger=toolchain.__name__):
        layer = nd.zoo.LIF()
        layer(torch.rand(3, 4))
        nd.zoo.LIF()(torch.rand(3, 4))
    assert layer.last_route.kernels.backend == "torch"
    lines = [r for r in caplog.records if "no working C compiler" in r.getMessage()]
    assert len(lines) == 1 and "/nonexistent/cc" in lines[0].getMessage()
    with pytest.raises(nd.BackendError) as info:
        nd.zoo.LIF(backend="c")(torch.rand(3, 4))
    assert info.value.code == "ND306" and "/nonexistent/cc" in info.value.message


@needs_cc
def test_broken_compiler_and_flags(monkeypatch, tmp_path):
    """A compiler that fails, and flags the compiler rejects: typed ND306 naming the command, never for auto."""
    broken = tmp_path / "broken-cc"
    broken.write_text("#!/bin/sh\necho 'cc: internal error' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr(toolchain, "_PROBES", {})
    monkeypatch.setenv("NEURODSL_CC", str(broken))
    err = backends.get("c").unavailable(torch.device("cpu"))
    assert err.code == "ND306" and str(broken) in err.message
    assert backends.choose_auto(torch.device("cpu")).name == "torch"
    monkeypatch.delenv("NEURODSL_CC")
    monkeypatch.setenv("NEURODSL_CFLAGS", "-O2 --no-such-flag-anywhere")
    err = backends.get("c").unavailable(torch.device("cpu"))
    assert err.code == "ND306" and "--no-such-flag-anywhere" in err.message


@needs_cc
def test_flags_override_and_build_key(monkeypatch):
    monkeypatch.setenv("NEURODSL_CFLAGS", "-O2")
    chain = toolchain.toolchain()
    assert chain.flags == ("-O2",)
    assert chain.build_key("x") != CHAIN.build_key("x") and CHAIN.build_key("x") != CHAIN.build_key("y")
    assert CHAIN.flags[0] == "-O3"


@needs_cc
def test_probe_verdict_is_kept_in_the_cache(tmp_path, monkeypatch):
    """A later process takes the probe's verdict from the cache instead of building the probe (~0.1 s); a
    record that does not verify is ignored and the probe runs again."""
    monkeypatch.setenv("NEURODSL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(toolchain, "_PROBES", {})
    first = toolchain.toolchain()
    assert isinstance(first, toolchain.Toolchain)
    records = list(tmp_path.glob(f"toolchain-*.{toolchain.PROBE_BACKEND}.py"))
    assert len(records) == 1

    def no_build(*args, **kwargs):
        raise AssertionError("the probe was built")
    monkeypatch.setattr(toolchain, "_PROBES", {})
    monkeypatch.setattr(toolchain.Toolchain, "compile", no_build)
    assert toolchain.toolchain() == first
    records[0].write_text(records[0].read_text().replace("-O3", "-O0"))
    monkeypatch.setattr(toolchain, "_PROBES", {})
    with pytest.raises(AssertionError, match="the probe was built"):
        toolchain.toolchain()
