"""neurodsl.online: the rules against BPTT (exact where they must be), against SpikingJelly's OTTT and the
published ALIF e-prop recursion, the deferred (scan) form, the per-step API, and memory independent of T."""
from __future__ import annotations

import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from torch import nn

import neurodsl as nd
import neurodsl.online as online
from neurodsl.errors import OnlineError
from neurodsl.online.memory import peak_memory
from neurodsl.testing import layers

F64 = torch.float64


def _assert_grads_equal(actual, expected, rtol=1e-9, atol=1e-11):
    assert set(actual) == set(expected)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=rtol, atol=atol, msg=name)


def _weighted_loss(T, batch, features, seed=1):
    """loss_t = Σ w_t · output_t: the learning signal of the output is w_t."""
    w = torch.randn(T, batch, features, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return lambda t, out: (out * w[t]).sum(), w


def _single_layer(neuron, n_in=3, n=4, T=12, batch=2, seed=0, scale=5.0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(n_in, n), neuron).double()
    x = torch.rand(T, batch, n_in, dtype=F64) * scale
    return model, x, _weighted_loss(T, batch, n, seed)[0]


ZOO = [
    (nd.zoo.LIF, dict(tau=torch.full((4,), 2.5), learnable=("tau", "v_th"))),
    (nd.zoo.ALIF, dict(learnable=("tau", "tau_a", "beta"), surrogate=nd.surrogate.ATan(learnable=True))),
    (nd.zoo.CubaLIF, dict(learnable=("c_decay", "v_decay"), detach_reset=True)),
    (nd.zoo.Izhikevich, dict(learnable=("a", "b"), a=0.5, b=0.2)),
    (nd.zoo.PLIF, dict(reset_mode="soft")),
]


@pytest.mark.parametrize("algorithm", ["rtrl", "eprop"])
@pytest.mark.parametrize("cls,kwargs", ZOO, ids=[c.__name__ for c, _ in ZOO])
def test_rtrl_and_eprop_equal_bptt_for_one_layer(cls, kwargs, algorithm):
    """Linear -> neuron with per-step losses: nothing recurs across neurons, so e-prop is exact (as RTRL)."""
    model, x, loss = _single_layer(cls(backend="torch", **kwargs))
    expected = online.gradients(model, x, loss, "bptt")
    assert sum(bool(g.abs().max() > 0) for g in expected.values()) >= len(expected) - 1   # spikes happened
    _assert_grads_equal(online.gradients(model, x, loss, algorithm), expected)


def test_random_specs_eprop_and_rtrl_equal_bptt_for_one_layer():
    """Random neurons of neurodsl.testing (1-4 states, random surrogate, learnable set, detach_reset)."""
    checked = []

    @settings(max_examples=8, phases=[Phase.explicit, Phase.reuse, Phase.generate])
    @given(layers(backend="torch", max_inputs=1), st.integers(0, 2 ** 16))
    def run(layer, seed):
        model, x, loss = _single_layer(layer, T=6, seed=seed % 1000, scale=1.5)
        expected = online.gradients(model, x, loss, "bptt")
        if not all(torch.isfinite(g).all() for g in expected.values()):
            return
        scale = max(float(g.abs().max()) for g in expected.values())
        for algorithm in ("eprop", "rtrl"):
            _assert_grads_equal(online.gradients(model, x, loss, algorithm), expected, rtol=1e-7,
                                atol=1e-9 * max(1.0, scale))
        checked.append(type(layer).__name__)

    run()
    assert len(checked) >= 5


def test_rtrl_is_exact_for_two_layers_and_eprop_is_not():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 5), nd.zoo.ALIF(backend="torch", learnable=("tau",)), nn.Linear(5, 4),
                          nd.zoo.LIF(backend="torch", learnable=("tau",)), nn.Linear(4, 2)).double()
    x = torch.rand(10, 2, 3, dtype=F64) * 3
    loss = _weighted_loss(10, 2, 2)[0]
    expected = online.gradients(model, x, loss, "bptt")
    _assert_grads_equal(online.gradients(model, x, loss, "rtrl"), expected)
    eprop = online.gradients(model, x, loss, "eprop")
    _assert_grads_equal({k: eprop[k] for k in ("2.weight", "2.bias", "3.tau", "4.weight", "4.bias")},
                        {k: expected[k] for k in ("2.weight", "2.bias", "3.tau", "4.weight", "4.bias")})
    assert not torch.allclose(eprop["0.weight"], expected["0.weight"])    # no credit through layer 2's states


def test_deferred_eprop_equals_online_eprop():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 4), nd.zoo.ALIF(backend="torch", learnable=("tau", "beta")),
                          nn.Linear(4, 3), nd.zoo.LIF(backend="torch", learnable=("v_th",))).double()
    x = torch.rand(14, 2, 3, dtype=F64) * 3
    loss = _weighted_loss(14, 2, 3)[0]
    _assert_grads_equal(online.gradients(model, x, loss, "eprop", deferred=True),
                        online.gradients(model, x, loss, "eprop"))


def test_sltt_is_the_same_step_gradient_and_ottt_without_leak_equals_it():
    """With λ = 0 (tau = 1: the LIF forgets everything each step) OTTT's trace is the input: OTTT = SLTT, and
    both equal BPTT for the weights (no temporal path exists)."""
    lif = nd.zoo.LIF(tau=1.0, decay_input=False, reset_mode="soft", backend="torch")
    model, x, loss = _single_layer(lif)
    expected = online.gradients(model, x, loss, "bptt")
    _assert_grads_equal(online.gradients(model, x, loss, "sltt"), expected)
    _assert_grads_equal(online.gradients(model, x, loss, "ottt"), expected)


def _spikingjelly_ottt(model, x, w, trace_inputs):
    """The same model in SpikingJelly's OTTT (OTTTSequential of Linear / OTTTLIFNode), trained step by step."""
    sj = pytest.importorskip("spikingjelly.activation_based")
    from spikingjelly.activation_based import functional, layer as sj_layer, neuron as sj_neuron, surrogate
    modules = []
    for m in model:
        if isinstance(m, nd.Neuron):
            modules.append(sj_neuron.OTTTLIFNode(tau=float(m.tau), decay_input=False, v_threshold=float(m.v_th),
                                                 v_reset=None, surrogate_function=surrogate.Sigmoid(alpha=4.0),
                                                 detach_reset=True, step_mode="s"))
        else:
            copy = nn.Linear(m.in_features, m.out_features).double()
            copy.load_state_dict(m.state_dict())
            modules.append(copy)
    net = sj_layer.OTTTSequential(*modules).double().train()
    functional.reset_net(net)
    lam = 1 - 1 / float(model[1].tau)
    trace = None
    for t in range(x.shape[0]):
        if trace_inputs:        # the input's trace on the first layer too: SpikingJelly's GradwithTrace
            trace = x[t].clone() if trace is None else trace * lam + x[t]
            out = net([x[t], trace])
        else:
            out = net(x[t])
        spikes = out[0] if isinstance(out, list) else out
        (spikes * w[t]).sum().backward()
    assert sj is not None
    return {f"{i}.{n}": p.grad for i, m in enumerate(net) for n, p in m.named_parameters()}


@pytest.mark.parametrize("trace_inputs", [False, True])
def test_ottt_equals_spikingjelly_ottt(trace_inputs):
    pytest.importorskip("spikingjelly")
    torch.manual_seed(5)
    lif = lambda: nd.zoo.LIF(tau=2.0, decay_input=False, reset_mode="soft", backend="torch",  # noqa: E731
                             surrogate=nd.surrogate.Sigmoid(alpha=4.0), detach_reset=True)
    model = nn.Sequential(nn.Linear(3, 5), lif(), nn.Linear(5, 4), lif()).double()
    x = torch.rand(12, 2, 3, dtype=F64) * 2
    loss, w = _weighted_loss(12, 2, 4)
    rule = online.OTTT(model, trace_inputs=trace_inputs)
    for t in range(12):
        rule.backward(loss(t, rule.step(x[t])))
    ours = {n: p.grad for n, p in model.named_parameters()}
    expected = _spikingjelly_ottt(model, x, w, trace_inputs)
    _assert_grads_equal(ours, expected)
    assert all(g.abs().max() > 0 for g in ours.values())


class BellecALIF(nd.Neuron):
    """ALIF of Bellec et al. (2020): v^{t+1} = α v^t + I − z^t v_th, a^{t+1} = ρ a^t + z^t, A = v_th + β a, in
    charge/fire/reset form (states after the reset, so the reset divides by the decays); the reset of v is not
    differentiated (a ``where`` on the spike), as in the published e-prop."""

    v = nd.State(0.0)
    a = nd.State(0.0)
    decay = nd.Param(0.8)
    rho = nd.Param(0.9)
    beta = nd.Param(0.6)
    v_th = nd.Param(1.0)

    def charge(self, x):
        return dict(v=self.decay * self.v + x, a=self.rho * self.a)

    def fire(self):
        return self.v - self.v_th - self.beta * self.a

    def reset(self, s):
        return dict(v=nd.where(s > 0.5, self.v - self.v_th / self.decay, self.v), a=self.a + s / self.rho)


def test_alif_eprop_trace_equals_the_published_recursion():
    """ε^v ← α ε^v + z;  ε^a ← ψ ε^v + (ρ − βψ) ε^a;  e = ψ (ε^v − β ε^a)  (NOTES §9, Bellec et al. 2020)."""
    layer = BellecALIF(backend="torch")
    model, x, loss = _single_layer(layer, n_in=3, n=4, T=15)
    _, w = _weighted_loss(15, 2, 4, seed=0)              # the learning signal of _single_layer's loss
    rule = online.EProp(model)
    ours_v, ours_a = [], []
    for t in range(15):
        rule.backward(loss(t, rule.step(x[t])))
        eps_v, eps_a = rule.eligibility()                 # [B, n, n_in]: the traces after the step's reset
        ours_v.append(eps_v.clone())
        ours_a.append(eps_a.clone())
    z = model[0](x).detach()
    _, _, fire = nd.reference_run(layer, z, return_fire=True)
    u = fire.detach().requires_grad_()
    psi = torch.autograd.grad(layer.surrogate.primitive(u, layer.surrogate_alpha.double()).sum(), u)[0]
    alpha, rho, beta = (float(layer.param_value(p)) for p in ("decay", "rho", "beta"))   # fp32-rounded values
    ev, ea = torch.zeros(2, 4, 3, dtype=F64), torch.zeros(2, 4, 3, dtype=F64)
    grad, psi_prev = torch.zeros(4, 3, dtype=F64), torch.zeros(2, 4, dtype=F64)
    for t in range(15):
        ev, ea = alpha * ev + x[t][:, None, :], psi_prev[..., None] * ev + (rho - beta * psi_prev)[..., None] * ea
        grad += torch.einsum("bj,bji->ji", w[t], psi[t][..., None] * (ev - beta * ea))
        psi_prev = psi[t]
        # ours keep the traces after the reset: ε^v unchanged, ε^a already advanced by one step but for ρ
        torch.testing.assert_close(ours_v[t], ev, rtol=1e-10, atol=1e-12)
        ea_next = psi[t][..., None] * ev + (rho - beta * psi[t])[..., None] * ea
        torch.testing.assert_close(ours_a[t] * rho, ea_next, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(model[0].weight.grad, grad, rtol=1e-10, atol=1e-12)
    assert psi.abs().max() > 0 and grad.abs().max() > 0


FACTORISED = [
    (nd.zoo.LIF, dict(reset_mode="soft", detach_reset=True, learnable=("tau", "v_th"))),   # Bellec's LIF
    (nd.zoo.LIFNoReset, dict(learnable=("tau",))),
]


@pytest.mark.parametrize("cls,kwargs", FACTORISED, ids=[c.__name__ for c, _ in FACTORISED])
def test_factorised_eprop_trace_equals_the_general_one(cls, kwargs):
    """J and K constant, J diagonal: e-prop keeps B·n_in presynaptic traces instead of B·n·n_in synapse traces,
    with the same traces, the same gradients as the general path, and BPTT's."""
    model, x, loss = _single_layer(cls(backend="torch", **kwargs), n_in=3, n=4, T=15)
    rules = [online.EProp(model), online.EProp(model, factorise=False)]
    for t in range(15):
        for rule in rules:
            rule.backward(loss(t, rule.step(x[t])))
        for a, b in zip(rules[0].eligibility(), rules[1].eligibility()):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    fast, general = rules[0]._trace[1], rules[1]._trace[1]
    assert fast["factor"] is not None and "synapse" not in fast and fast["pre"].shape == (1, 2, 3)
    assert general["factor"] is None and general["synapse"][0].shape == (3, 4, 2)
    expected = online.gradients(model, x, loss, "bptt")
    _assert_grads_equal(online.gradients(model, x, loss, "eprop"), expected)
    assert expected["0.weight"].abs().max() > 0


@pytest.mark.parametrize("layer", [
    nd.zoo.LIF(tau=torch.full((4,), 2.5), reset_mode="soft", detach_reset=True),   # one leak per neuron
    nd.zoo.LIF(reset_mode="soft"),                                                     # reset differentiated
    nd.zoo.ALIF(detach_reset=True),                                                    # hard reset: J varies
], ids=["per-neuron-leak", "reset-differentiated", "hard-reset"])
def test_eprop_keeps_the_general_trace_where_it_does_not_factorise(layer):
    model, x, loss = _single_layer(layer, T=6)
    rule = online.EProp(model)
    rule.step(x[0])
    assert rule._trace[1]["factor"] is None


def test_cached_parameters_and_leaks_follow_updates():
    """Parameters and OTTT's leak are reused between steps until a parameter changes: in place (optimizers,
    torch.no_grad()) or replaced."""
    layer = nd.zoo.LIF(tau=2.0, backend="torch", learnable=("tau",))
    model = nn.Sequential(nn.Linear(3, 4), layer).double()
    rule = online.OTTT(model)
    x = torch.rand(2, 3, dtype=F64)
    tau_at = layer.spec.params.index("tau")
    rule.step(x)
    assert rule._leak_value(1) == pytest.approx(0.5)
    with torch.no_grad():
        layer.tau.fill_(4.0)
    rule.step(x)
    assert rule._leak_value(1) == pytest.approx(0.75)
    assert float(rule.units[1].params("d")[tau_at]) == 4.0
    layer.tau.data = torch.tensor(8.0, dtype=F64)
    rule.step(x)
    assert rule._leak_value(1) == pytest.approx(0.875)
    assert float(rule.units[1].params("d")[tau_at]) == 8.0


def test_per_step_api_accumulates_and_resets():
    """``.grad`` accumulates over steps and sequences; the optimizer steps when the user likes; reset() starts a
    new sequence (the same gradients again)."""
    model, x, loss = _single_layer(nd.zoo.ALIF(backend="torch", learnable=("tau",)))
    rule = online.EProp(model)
    for t in range(x.shape[0]):
        rule.backward(loss(t, rule.step(x[t])))
    once = {n: p.grad.clone() for n, p in model.named_parameters()}
    rule.reset()
    for t in range(x.shape[0]):
        rule.backward(loss(t, rule.step(x[t])))
    _assert_grads_equal({n: p.grad for n, p in model.named_parameters()}, {n: 2 * g for n, g in once.items()})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model[0].weight.detach().clone()
    optimizer.step()
    assert not torch.equal(model[0].weight, before)
    with pytest.raises(OnlineError) as info:
        rule.step(x[0, :1])                                   # another batch size mid-sequence
    assert info.value.code == "ND905"


def test_a_step_without_backward_still_advances_the_traces():
    """Losses only at some steps (e.g. the last): the traces of the steps between are still updated."""
    model, x, _ = _single_layer(nd.zoo.LIF(backend="torch", learnable=("tau",)), T=10)
    loss = lambda t, out: out.sum() if t in (4, 9) else out.sum() * 0.0     # noqa: E731
    sparse = lambda t, out: out.sum()                                        # noqa: E731
    rule = online.EProp(model)
    for t in range(10):
        out = rule.step(x[t])
        if t in (4, 9):
            rule.backward(sparse(t, out))
    ours = {n: p.grad for n, p in model.named_parameters()}
    _assert_grads_equal(ours, online.gradients(model, x, loss, "bptt"))


def test_conv_layers_run_ottt_and_sltt_and_eprop_refuses():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nd.zoo.LIF(backend="torch", tau=2.0), nn.Flatten(),
                          nn.Linear(2 * 5 * 5, 3)).double()
    x = torch.rand(6, 2, 1, 5, 5, dtype=F64) * 3
    loss = _weighted_loss(6, 2, 3)[0]
    expected = online.gradients(model, x, loss, "bptt")
    for algorithm in ("ottt", "sltt", "rtrl"):
        grads = online.gradients(model, x, loss, algorithm)
        assert set(grads) == set(expected) and all(torch.isfinite(g).all() for g in grads.values())
    _assert_grads_equal(online.gradients(model, x, loss, "rtrl"), expected)
    with pytest.raises(OnlineError) as info:
        online.EProp(model)
    assert info.value.code == "ND902"


def test_compare_grads_table_and_plot(tmp_path):
    model, x, loss = _single_layer(nd.zoo.LIF(backend="torch", tau=torch.full((4,), 2.0), learnable="tau"))
    result = online.compare_grads(model, x, loss)
    rows = {(r["algorithm"], r["parameter"]): r for r in result.rows}
    assert rows[("eprop", "0.weight")]["cosine"] == pytest.approx(1.0, abs=1e-12)
    assert rows[("rtrl", "1.tau")]["relative_norm"] == pytest.approx(1.0, abs=1e-12)
    assert "ottt" in result.skipped and "ND903" in result.skipped["ottt"]    # per-neuron tau: no single leak
    assert result.table().startswith("| algorithm | parameter | cosine vs bptt |")
    pytest.importorskip("matplotlib")
    result.plot(tmp_path / "cosine.png")
    assert (tmp_path / "cosine.png").read_bytes().startswith(b"\x89PNG")


@pytest.fixture
def one_thread():
    """Thousands of tiny ops: one intra-op thread (a second one only waits for the first on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_online_memory_does_not_grow_with_T(one_thread):
    """Peak tensor memory of 1000 online e-prop steps is within 10% of 100 steps (BPTT's grows with T)."""
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(8, 32, bias=False), nd.zoo.IF(backend="torch"))   # few ops per step: fast
    x = torch.rand(1000, 16, 8)
    loss = lambda t, out: out.sum()  # noqa: E731

    def online_run(T):
        rule = online.EProp(model)
        for t in range(T):
            rule.backward(loss(t, rule.step(x[t])))

    short, long = peak_memory(lambda: online_run(100)), peak_memory(lambda: online_run(1000))
    assert long <= 1.1 * short, (short, long)
    bptt = [peak_memory(lambda: online.bptt(model, x[:T], loss)) for T in (100, 300)]
    assert bptt[1] > 1.5 * bptt[0] and bptt[0] > short                       # the measure sees BPTT's growth
