"""Parallel forms: verdicts, scan / matmul / exact mode against the sequential kernels and the
reference loop, without_reset(), and the PSN / PSU families against direct matrix formulas."""
import os
import warnings

import pytest
import torch
from hypothesis import given, strategies as st

import neurodsl as nd
from neurodsl.analysis import classify, classify_as_written

from helpers import compare, require_safe_inputs, run_with_grads, safe_inputs, assert_close

Z = nd.zoo


# -- detection ------------------------------------------------------------------------------------
VERDICTS = {  # zoo neuron -> (reset-free verdict, exact mode possible as written)
    Z.IF: ("linear-time-invariant", True), Z.LIF: ("linear-time-invariant", True),
    Z.PLIF: ("linear-time-invariant", True), Z.ALIF: ("linear-time-invariant", True),
    Z.CubaLIF: ("linear-time-invariant", True), Z.LIFNoReset: ("linear-time-invariant", True),
    Z.QIF: ("nonlinear", False), Z.EIF: ("nonlinear", False), Z.Izhikevich: ("nonlinear", False),
    Z.KLIF: ("nonlinear", False),
}


@pytest.mark.parametrize("cls", Z.ALL, ids=lambda c: c.__name__)
def test_zoo_verdicts(cls):
    kind, exact = VERDICTS[cls]
    assert classify(cls.spec).kind == kind
    assert classify_as_written(cls.spec).exact is exact


@pytest.mark.parametrize("cls, term", [(Z.QIF, "a0*(v - v_c)*(v - v_rest)"), (Z.Izhikevich, "a0*(v - v_c)*(v - v_rest)"),
                                       (Z.EIF, "delta_T*exp((-theta_rh + v)/delta_T)")])
def test_nonlinear_verdict_names_state_and_term(cls, term):
    verdict = classify(cls.spec)
    assert (verdict.state, verdict.term) == ("v", term)
    assert "v" in verdict.explain() and term in verdict.explain()


def test_input_dependent_verdict():
    class Gated(nd.Neuron):
        v = nd.State(0.0)

        def charge(self, x):
            return dict(v=nd.sigmoid(x) * self.v + x)

        def fire(self):
            return self.v - 1.0

    assert classify(Gated.spec).kind == "linear-input-dependent"


def test_without_reset_and_spike_driven_updates():
    free = Z.ALIF.without_reset()
    assert free is Z.ALIF.without_reset() and not free.spec.has_reset
    assert classify_as_written(Z.ALIF.spec).spike_driven == ("v", "a")
    assert "removes the spike-driven updates of: v, a" in str(Z.ALIF.analysis())
    assert classify_as_written(Z.Izhikevich.spec).spike_driven == ("v", "w")
    layer = free()
    x = require_safe_inputs(layer, 6, (3, 5))
    compare(layer, *x)


# -- random linear specs ----------------------------------------------------------------------------
def _linear_neuron(n_states, input_dependent, decay, couple):
    states = [f"s{i}" for i in range(n_states)]

    def charge(self, x):
        out = {}
        for i, name in enumerate(states):
            gate = nd.sigmoid(x) if input_dependent and i == 0 else self.k
            value = gate * getattr(self, name) + x * (0.5 + 0.25 * i)
            if i > 0:
                value = value + self.c * getattr(self, states[i - 1])
            out[name] = value
        return out

    def fire(self):
        return sum(getattr(self, s) for s in states) - self.v_th

    namespace = {s: nd.State(0.0) for s in states}
    namespace.update(k=nd.Param(decay), c=nd.Param(couple), v_th=nd.Param(0.9), charge=charge, fire=fire)
    return type(f"Lin{n_states}{'I' if input_dependent else 'T'}", (nd.Neuron,), namespace)


@given(n_states=st.integers(1, 2), input_dependent=st.booleans(), decay=st.floats(0.2, 0.95),
       couple=st.floats(-0.5, 0.5), T=st.sampled_from([1, 2, 7, 33]), n=st.integers(1, 9), seed=st.integers(0, 99))
def test_random_linear_specs_every_form_matches(n_states, input_dependent, decay, couple, T, n, seed):
    cls = _linear_neuron(n_states, input_dependent, decay, couple)
    expected = "linear-input-dependent" if input_dependent else "linear-time-invariant"
    assert classify(cls.spec).kind == expected
    probe = cls(learnable=("k", "c", "v_th"))
    xs = safe_inputs(probe, T, (n,), seed=seed, scale=0.6, offset=0.3)
    if xs is None:
        return
    forms = ["scan"] + ([] if input_dependent else ["matmul"])
    sequential = run_with_grads(cls(learnable=("k", "c", "v_th"), parallel="sequential"), xs)
    for form in forms:
        layer = cls(learnable=("k", "c", "v_th"), parallel=form)
        compare(layer, *xs)  # against the reference loop
        spikes, states, grads, _ = run_with_grads(layer, xs, weights=sequential[3])
        assert torch.equal(spikes, sequential[0]) and layer.last_form["form"] == form
        for name in grads:
            assert_close(grads[name], sequential[2][name], torch.float32, name)


def test_matmul_needs_uniform_A():
    layer = Z.LIFNoReset(tau=torch.full((5,), 2.0) + torch.rand(5), parallel="matmul")
    with pytest.raises(nd.InputError) as err:
        layer(torch.rand(4, 5))
    assert err.value.code == "ND409"
    scan = Z.LIFNoReset(tau=layer.tau.clone(), parallel="scan")
    compare(scan, *require_safe_inputs(scan, 9, (5,)))


def test_auto_rule_and_repr():
    layer = Z.LIFNoReset(backend="torch")
    layer(torch.rand(4, 3))
    assert layer.last_form == {"form": "sequential"}            # short sequences stay sequential
    assert layer.last_route.kernels.device_type == "cpu"
    layer.reset_state()
    layer(torch.rand(200, 3))
    assert layer.last_form == {"form": "scan"}                  # few neurons
    layer.reset_state()
    layer(torch.rand(64, 5000))
    assert layer.last_form == {"form": "sequential"}            # many neurons: the loop is faster
    assert "parallel='auto'" in repr(layer)
    assert [layer.choose_form(T, n) for T, n in [(8, 3), (64, 3), (1024, 256), (1024, 65536)]] == \
        ["sequential", "scan", "scan", "sequential"]
    lif = Z.LIF(backend="torch")
    lif(torch.rand(64, 3))
    assert lif.last_form == {"form": "sequential"}  # neurons with reset: exact mode only on request


def test_auto_rule_table_per_device_and_backend():
    from neurodsl.dispatch import AUTO_RULES, auto_form
    # CPU, torch backend (measured): the scan from 16 steps up to 2048 neuron-equivalents, 4096 for T in 128..1024
    assert [auto_form(T, 3, True, "cpu", "torch") for T in (8, 16, 64, 4096)] == ["sequential"] + ["scan"] * 3
    assert [auto_form(T, 4096, True, "cpu", "torch") for T in (64, 128, 1024, 2048)] == \
        ["sequential", "scan", "scan", "sequential"]
    assert auto_form(4096, 2048, True, "cpu", "torch") == "scan"
    assert auto_form(1024, 4097, True, "cpu", "torch") == "sequential"
    # n_eff: k^2 for k states, x2 for fp64
    assert auto_form(1024, 2048, True, "cpu", "torch", k=2) == "sequential"
    assert auto_form(1024, 1024, True, "cpu", "torch", k=2) == "scan"
    # matmul: with two or more states, up to T = 256, when A is one matrix
    assert [auto_form(256, 256, u, "cpu", "torch", k=k) for u, k in ((True, 2), (False, 2), (True, 1))] == \
        ["matmul", "scan", "scan"]
    assert auto_form(1024, 256, True, "cpu", "torch", k=2) == "scan"
    assert auto_form(1024, 4096, True, "cpu", "torch", dtype="float64") == "sequential"
    assert auto_form(1024, 2048, True, "cpu", "torch", dtype="float64") == "scan"
    # CPU, C backend (measured): its loop wins everywhere
    assert {auto_form(T, n, True, "cpu", "c") for T in (16, 1024, 4096) for n in (16, 4096)} == {"sequential"}
    # CUDA, Triton (provisional): the chunked scan where the loop is latency-bound (long T, few neurons)
    assert auto_form(4096, 4096, True, "cuda", "triton") == "scan"
    assert auto_form(16384, 1024, True, "cuda", "triton") == "scan"
    assert auto_form(64, 4096, True, "cuda", "triton") == "sequential"
    assert auto_form(1024, 65536, True, "cuda", "triton") == "sequential"
    assert auto_form(256, 1 << 20, True, "cuda", "triton") == "sequential"
    assert auto_form(4096, 4096, True, "cuda", "triton", k=2) == "scan"
    assert auto_form(4096, 4096, True, "cuda", "triton", k=2, dtype="float64") == "scan"
    assert auto_form(256, 16384, True, "cuda", "triton", k=2) == "sequential"
    assert not AUTO_RULES[("cuda", "triton")].measured and AUTO_RULES[("cpu", "torch")].measured
    # the layer asks with its own backend and device
    assert Z.LIFNoReset(backend="c").choose_form(1024, 256) == "sequential"
    assert Z.LIFNoReset(backend="torch").choose_form(1024, 256) == "scan"
    assert Z.LIFNoReset(backend="triton").choose_form(4096, 4096, device="cuda") == "scan"


@pytest.mark.parametrize("cls", [Z.QIF, Z.Izhikevich])
def test_parallel_request_on_nonlinear_neuron_is_a_typed_error(cls):
    with pytest.raises(nd.SpecError) as err:
        cls(parallel="scan")
    assert err.value.code == "ND141"


# -- exact mode -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, kw", [(Z.LIF, {}), (Z.LIF, dict(reset_mode="soft")), (Z.IF, {}),
                                     (Z.IF, dict(reset_mode="soft")), (Z.ALIF, {}), (Z.CubaLIF, {})],
                         ids=["LIF-hard", "LIF-soft", "IF-hard", "IF-soft", "ALIF", "CubaLIF"])
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_exact_mode_equals_sequential(cls, kw, backend):
    T = 24 if backend == "torch" else 6
    params = tuple(p for p in cls._params_decl if p in ("tau", "v_th", "beta", "c_decay"))
    layer = cls(parallel="scan", backend=backend, learnable=params, **kw)
    xs = require_safe_inputs(layer, T, (2, 7), scale=0.8, offset=0.5)
    compare(layer, *xs)
    assert layer.last_form["form"] == "exact-scan"
    assert 1 <= layer.last_form["passes"] <= T + 1
    seq = run_with_grads(cls(parallel="sequential", backend=backend, learnable=params, **kw), xs)
    par = run_with_grads(layer, xs, weights=seq[3])
    assert torch.equal(par[0], seq[0])


def test_exact_mode_falls_back_when_capped():
    layer = Z.LIF(parallel="scan", max_iterations=1)
    xs = require_safe_inputs(layer, 20, (4,), offset=1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compare(layer, *xs)
    assert layer.last_form == {"form": "sequential", "fallback": True}
    assert any("did not converge" in str(w.message) for w in caught)


@pytest.mark.parametrize("seed", range(3))
def test_exact_mode_iteration_counts_are_bounded(seed):
    layer = Z.LIF(parallel="scan")
    xs = require_safe_inputs(layer, 40, (16,), seed=seed, scale=1.0, offset=0.6)
    with torch.no_grad():
        layer(*xs)
    assert 2 <= layer.last_form["passes"] <= 41


# -- PSN / PSU families ------------------------------------------------------------------------------
def _theta(u):
    return (u >= 0).to(u.dtype)


def test_psn_matches_matrix_formula_and_trains():
    T = 6
    psn = nd.psn.PSN(T)
    x = torch.randn(T, 2, 3, requires_grad=True)
    s = psn(x)
    expected = _theta(torch.einsum("ts,sbn->tbn", psn.weight, x) + psn.bias[:, None, None])
    assert torch.equal(s, expected)
    s.sum().backward()
    assert psn.weight.grad is not None and x.grad is not None and torch.isfinite(x.grad).all()


def test_masked_psn_mask_and_schedule():
    T, k = 6, 2
    m = nd.psn.MaskedPSN(k, T, lam=1.0)
    i = torch.arange(T)
    for a in range(T):
        for b in range(T):
            assert m.mask[a, b] == float(b <= a <= b + k - 1)
    x = torch.randn(T, 4)
    assert torch.equal(m(x), _theta(m.weight * m.mask @ x + m.bias[:, None]))
    m.lam = 0.0
    assert torch.equal(m(x), _theta(m.weight @ x + m.bias[:, None]))
    assert nd.psn.masked_psn_lambda(0, 10) == 0.0 and nd.psn.masked_psn_lambda(9, 10) == 1.0
    del i


def test_sliding_psn_banded_equals_direct_sum():
    k, T = 3, 7
    sp = nd.psn.SlidingPSN(k)
    assert torch.allclose(sp.weight, torch.tensor([0.25, 0.5, 1.0]))
    x = torch.randn(T, 5)
    direct = torch.stack([sum(sp.weight[i] * (x[t - k + 1 + i] if t - k + 1 + i >= 0 else torch.zeros(5))
                              for i in range(k)) for t in range(T)]) + sp.bias
    assert torch.allclose(sp.banded(T) @ x + sp.bias, direct, atol=1e-6)
    assert torch.equal(sp(x), _theta(sp.banded(T) @ x + sp.bias))
    assert sp(torch.randn(11, 5)).shape == (11, 5)  # any T


def test_psu_family_matrices_and_outputs():
    T, tau = 5, 2.0
    m1, m2 = nd.psn.psu_matrices(T, tau)
    for i in range(T):
        for j in range(T):
            assert m1[i, j] == (tau ** -(i - j + 1) if i >= j else 0.0)
            assert m2[i, j] == (-(tau ** -(i - j)) if i > j else 0.0)
    x = torch.randn(T, 3)
    psu = nd.psn.PSU(T, tau=tau, v_th=0.5)
    d = m1 @ x
    assert torch.equal(psu(x), _theta(d + 0.5 * (m2 @ torch.sigmoid(d)) - 0.5))
    ipsu = nd.psn.IPSU(T)
    lin = (ipsu.weight * torch.tril(torch.ones(T, T))) @ x + ipsu.bias[:, None]
    assert torch.equal(ipsu(x), _theta(lin + m2 @ x - ipsu.v_th))
    rpsu = nd.psn.RPSU(T)
    lin = (rpsu.weight * torch.tril(torch.ones(T, T))) @ x + rpsu.bias[:, None]
    assert torch.equal(rpsu(x), _theta(m1 @ x + m2 @ torch.sigmoid(lin) - rpsu.v_th))
    xg = x.clone().requires_grad_()
    rpsu(xg).sum().backward()
    assert rpsu.weight.grad is not None and torch.isfinite(xg.grad).all()


# -- the scans -------------------------------------------------------------------------------------
def _loop(A, b, v0, reverse=False):
    """V_t = A_t V_{t-1} + b_t one step at a time (reverse: V_t = A_t V_{t+1} + b_t from V_T = v0)."""
    T, n, k = b.shape
    A = A.expand(T, n, k, k)
    v, out = v0, [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        v = torch.einsum("nij,nj->ni", A[t], v) + b[t]
        out[t] = v
    return torch.stack(out)


A_SHAPES = {"one-A": lambda T, n: (1, 1), "per-neuron": lambda T, n: (1, n), "per-step": lambda T, n: (T, n)}


def _problem(k, T, n, shape, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    A = torch.rand(*A_SHAPES[shape](T, n), k, k, generator=gen, dtype=dtype) * 0.9 / k
    return A, torch.randn(T, n, k, generator=gen, dtype=dtype), torch.randn(n, k, generator=gen, dtype=dtype)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", list(A_SHAPES))
def test_torch_scans_equal_the_loop(k, shape):
    from kernels_gen.scans import chunked_scan, doubling_scan
    for T in (1, 2, 7, 33, 100):
        A, b, v0 = _problem(k, T, 5, shape, seed=T)
        want, back = _loop(A, b, v0), _loop(A, b, v0, reverse=True)
        torch.testing.assert_close(doubling_scan(A, b, v0), want, rtol=1e-12, atol=1e-12)
        for bt in (1, 4, 16):       # one step per chunk, several chunks with a partial last, one partial chunk
            torch.testing.assert_close(chunked_scan(A, b, v0, bt), want, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(chunked_scan(A, b, v0, bt, reverse=True), back, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [1, 2])
def test_blocked_matmul_and_its_gradients_equal_the_loop(k):
    from kernels_gen.scans import blocked_matmul
    A, b, v0 = _problem(k, 300, 4, "one-A", seed=k)
    w = torch.randn(300, 4, k, dtype=torch.float64)
    got, want = [], []
    for fn, out in ((lambda *a: blocked_matmul(a[0][0, 0], *a[1:], 8), got), (_loop, want)):  # 38 chunks: 2 levels
        leaves = [t.clone().requires_grad_() for t in (A, b, v0)]
        V = fn(*leaves)
        out += [V, *torch.autograd.grad((V * w).sum(), leaves)]
    for g, e in zip(got, want):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k, shape, T", [(1, "one-A", 5), (1, "one-A", 37), (1, "per-neuron", 37), (1, "per-step", 37),
                                         (2, "per-step", 37), (3, "per-neuron", 16), (4, "one-A", 37)])
def test_triton_chunked_scan_and_adjoint_equal_the_torch_scans(k, shape, T, monkeypatch):
    """2 neuron blocks x 3 chunks of 16 steps (the last partial): summaries, carries and replay all run."""
    from kernels_gen import parallel
    monkeypatch.setattr(parallel, "scan_tiles", lambda T, n, device: (8, 16))
    A, b, v0 = _problem(k, T, 11, shape, seed=k + T)
    w = torch.randn(T, 11, k, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    results = {}
    for backend in ("triton", "torch"):
        leaves = [t.clone().requires_grad_() for t in (A, b, v0)]
        V = parallel.scan(*leaves, backend)
        results[backend] = [V, *torch.autograd.grad((V * w).sum(), leaves)]
    torch.testing.assert_close(results["torch"][0], _loop(A, b, v0), rtol=1e-12, atol=1e-12)
    for got, want, what in zip(results["triton"], results["torch"], ("V", "dA", "db", "dv0")):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=what)


def test_triton_scan_gradcheck():
    from kernels_gen.parallel import scan
    gen = torch.Generator().manual_seed(0)
    A = (torch.rand(3, 2, 2, 2, generator=gen, dtype=torch.float64) * 0.4).requires_grad_()
    b = torch.randn(3, 2, 2, generator=gen, dtype=torch.float64).requires_grad_()
    v0 = torch.randn(2, 2, generator=gen, dtype=torch.float64).requires_grad_()
    shared = (torch.rand(1, 1, 2, 2, generator=gen, dtype=torch.float64) * 0.4).requires_grad_()  # one A for all
    for a in (A, shared):  # fast mode: a random projection (each evaluation is three interpreted kernel launches)
        assert torch.autograd.gradcheck(lambda A, b, v0: scan(A, b, v0, "triton"), (a, b, v0), fast_mode=True)


def test_scan_keeps_a_shared_A_unexpanded():
    """A expanded over steps or neurons reaches the scan as one matrix; its gradient is the sum."""
    from kernels_gen.parallel import scan
    A, b, v0 = _problem(2, 9, 3, "one-A", seed=3)
    full = A.clone().requires_grad_()
    V = scan(full.expand(9, 3, 2, 2), b, v0)
    torch.testing.assert_close(V, _loop(A, b, v0), rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(V.sum(), full)
    leaf = A.clone().requires_grad_()
    (want,) = torch.autograd.grad(_loop(leaf, b, v0).sum(), leaf)
    assert grad.shape == (1, 1, 2, 2)
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_chunked_and_blocked_forms_through_the_layer_equal_sequential(backend, monkeypatch):
    """Small chunks so that T = 40 crosses them: the torch chunked scan, the blocked matmul, the Triton kernels."""
    from kernels_gen import parallel
    monkeypatch.setattr(parallel, "TORCH_DOUBLING_MAX_T", 0)
    monkeypatch.setattr(parallel, "TORCH_DOUBLING_MAX_ELEMENTS", 0)
    monkeypatch.setattr(parallel, "MATMUL_CHUNK", 4)
    monkeypatch.setattr(parallel, "scan_tiles", lambda T, n, device: (16, 16))
    for cls, learn in ((Z.LIFNoReset, ("tau", "v_th")), (Z.CubaLIF.without_reset(), ("c_decay", "v_decay"))):
        xs = require_safe_inputs(cls(learnable=learn), 40, (2, 5), scale=0.6, offset=0.4)
        seq = run_with_grads(cls(learnable=learn, parallel="sequential", backend="torch"), xs)
        for form in ("scan", "matmul"):
            layer = cls(learnable=learn, parallel=form, backend=backend)
            spikes, _, grads, _ = run_with_grads(layer, xs, weights=seq[3])
            assert torch.equal(spikes, seq[0]) and layer.last_form == {"form": form}
            for name in grads:
                assert_close(grads[name], seq[2][name], torch.float32, f"{cls.__name__} {form} {name}")


def test_gemm_precision_is_opt_in():
    from kernels_gen.parallel import gemm_precision, matmul
    A, b, v0 = _problem(1, 200, 6, "one-A", seed=4, dtype=torch.float32)
    leaf = b.clone().requires_grad_()
    exact = matmul(A[0, 0], leaf, v0)                          # the default: fp32 GEMMs
    exact.sum().backward()
    torch.testing.assert_close(exact, _loop(A, b, v0), rtol=1e-5, atol=1e-5)
    with gemm_precision("bf16"):
        rounded_leaf = b.clone().requires_grad_()
        rounded = matmul(A[0, 0], rounded_leaf, v0)
    rounded.sum().backward()                                   # backward GEMMs keep the forward's precision
    assert 1e-5 < (rounded - exact).abs().max().item() < 5e-2  # inputs rounded to bfloat16, fp32 accumulation
    assert not torch.equal(rounded_leaf.grad, leaf.grad)
    torch.testing.assert_close(rounded_leaf.grad, leaf.grad, rtol=2e-2, atol=0)
    with gemm_precision("tf32"):                               # tensor cores exist on CUDA only: exact here
        torch.testing.assert_close(matmul(A[0, 0], b, v0), exact, rtol=0, atol=0)
    with pytest.raises(nd.InputError) as err:
        with gemm_precision("fp16"):
            pass
    assert err.value.code == "ND124"


@pytest.mark.parametrize("cls, learn", [(Z.LIFNoReset, ("tau", "v_th")), (Z.CubaLIF.without_reset(), ("c_decay",)),
                                        (Z.ALIF.without_reset(), ("tau", "beta"))], ids=lambda c: getattr(c, "__name__", ""))
def test_triton_backend_scan_form_matches_reference(cls, learn):
    layer = cls(backend="triton", parallel="scan", learnable=learn)
    compare(layer, *require_safe_inputs(layer, 70, (2, 5), scale=0.6, offset=0.4))
    assert layer.last_form == {"form": "scan"}


def test_parallel_spikes_keep_the_fp64_gradient():
    """ParallelSpike returns spikes in fire's dtype: a float32 spike tensor would round fp64 gradients to fp32."""
    x = torch.rand(16, 3, 4, dtype=torch.float64) * 2.5
    w = torch.randn(16, 3, 4, dtype=torch.float64)
    grads = {}
    for form in ("sequential", "scan", "matmul"):
        xa = x.clone().requires_grad_()
        (Z.LIFNoReset(parallel=form)(xa) * w).sum().backward()
        grads[form] = xa.grad
    for form in ("scan", "matmul"):
        torch.testing.assert_close(grads[form], grads["sequential"], rtol=1e-12, atol=1e-12)


def test_triton_scan_op_takes_non_contiguous_tensors():
    from kernels_gen.parallel import _doubling_scan, triton_scan
    gen = torch.Generator().manual_seed(5)
    A = torch.rand(6, 3, 2, 2, generator=gen) * 0.5
    b = torch.rand(3, 6, 2, generator=gen).transpose(0, 1)      # [T, N, k], not contiguous
    v0 = torch.rand(3, 2, generator=gen)
    assert not b.is_contiguous()
    torch.testing.assert_close(triton_scan(A, b, v0), _doubling_scan(A, b, v0))


# -- on a GPU (gpu_check's CUDA step runs these with TRITON_INTERPRET=0) ------------------------------------
def cuda_compiled(test):
    """Marked gpu; skipped without CUDA, and under the interpreter (it would run the CUDA tensors' kernels)."""
    test = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET", "0") == "1", reason="compiled Triton only")(test)
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")(test))


@cuda_compiled
@pytest.mark.parametrize("k, shape", [(1, "one-A"), (1, "per-neuron"), (2, "per-step")])
def test_chunked_scan_cuda_equals_the_torch_scan(k, shape):
    """Many neuron blocks and chunks (the GPU tiles), fp64: forward and every gradient."""
    from kernels_gen import parallel
    A, b, v0 = (t.cuda() for t in _problem(k, 3000, 700, shape, seed=k))
    w = torch.randn(b.shape, dtype=b.dtype, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    results = {}
    for backend in ("triton", "torch"):
        leaves = [t.clone().requires_grad_() for t in (A, b, v0)]
        V = parallel.scan(*leaves, backend)
        results[backend] = [V, *torch.autograd.grad((V * w).sum(), leaves)]
    for got, want, what in zip(results["triton"], results["torch"], ("V", "dA", "db", "dv0")):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=what)


@cuda_compiled
@pytest.mark.parametrize("form", ["scan", "matmul", "auto"])
def test_parallel_forms_cuda_equal_the_sequential_kernel(form):
    """Long T, few neurons (the case parallel forms are for), fp64 so that no spike sits at the threshold."""
    x = torch.rand(4096, 2, 32, dtype=torch.float64, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    results = {}
    for parallel in ("sequential", form):
        layer = Z.LIFNoReset(parallel=parallel, backend="triton", learnable=("tau",)).cuda().double()
        xr = (x * 2.5).requires_grad_()
        s = layer(xr)
        (s * torch.arange(s.numel(), device="cuda", dtype=s.dtype).reshape(s.shape).sin()).sum().backward()
        results[parallel] = (s.detach(), xr.grad, layer.tau.grad, layer.last_form["form"])
    seq, par = results["sequential"], results[form]
    assert par[3] == ("scan" if form == "auto" else form) and 0 < seq[0].mean() < 1
    assert torch.equal(par[0], seq[0])
    torch.testing.assert_close(par[1], seq[1], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(par[2], seq[2], rtol=1e-9, atol=1e-9)
