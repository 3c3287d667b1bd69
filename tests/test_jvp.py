"""Forward-mode AD through neuron layers: the generated tangent kernels (torch and Triton backends).

* smooth mode, fp64: ``torch.func.jvp`` / ``torch.autograd.forward_ad`` of a layer equal forward AD through the
  reference loop (every tangent: inputs, initial states, learnable parameters and alpha);
* spike mode: the tangent kernel is the adjoint of the reference loop's autograd, u·jvp(v) = vjp_ref(u)·v,
  also for random specs from ``neurodsl.testing``, and ``torch.func.jacrev`` products J·v equal jvp(v);
* the tangent templates declare what they read; a backend without a tangent kernel raises ND310.
"""
from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from hypothesis import Phase, given, settings
from torch import nn

import neurodsl as nd
from kernels_gen import backends
from kernels_gen.backends import base
from neurodsl.analysis import KernelOptions
from neurodsl.analysis.tangent import derive_tangent_plan
from neurodsl.testing import cases, initial_states, inputs_for, layer_for_check

BACKENDS = ["torch", "triton"]
F64 = torch.float64


class Reference(nn.Module):
    """The reference loop as a module, so ``functional_call`` swaps the layer's parameters for both sides."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, *xs, state=None):
        spikes, seqs = nd.reference_run(self.layer, *xs, init=state)
        return spikes, {k: v[-1] for k, v in seqs.items()}


class Layer(nn.Module):
    """The layer with a fresh start on every call, returning (spikes, final states) like :class:`Reference`."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, *xs, state=None):
        self.layer.reset_state()
        spikes = self.layer(*xs, state=state)
        return spikes, {s: self.layer.state_value(s) for s in self.layer.spec.states}


def _setup(layer, T=5, shape=(2, 3), seed=0):
    layer = layer.double()
    init = {k: v.double() for k, v in initial_states(layer, shape, seed=seed).items()}
    xs = [x.double() for x in inputs_for(layer, T, shape, seed=seed, init=init)]
    params = {f"layer.{k}": v.detach() for k, v in layer.named_parameters()}
    gen = torch.Generator().manual_seed(seed + 1)
    rand = lambda t: torch.randn(t.shape, generator=gen, dtype=F64)  # noqa: E731
    tangents = ([rand(x) for x in xs], {k: rand(v) for k, v in init.items()}, {k: rand(v) for k, v in params.items()})
    return layer, xs, init, params, tangents


def _jvp(module, xs, init, params, tangents):
    """(outputs, output tangents) of ``module`` by torch.func.jvp over inputs, initial states and parameters."""
    def f(xs, init, params):
        return torch.func.functional_call(module, params, tuple(xs), {"state": init})
    return torch.func.jvp(f, (xs, init, params), tangents)


def _flat(out):
    spikes, states = out
    return [spikes, *states.values()]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", [nd.zoo.LIF, nd.zoo.ALIF, nd.zoo.CubaLIF, nd.zoo.Izhikevich, nd.zoo.PLIF])
def test_forward_ad_equals_the_reference_loop_in_smooth_mode(cls, backend):
    layer, xs, init, params, tangents = _setup(layer_for_check(cls, backend=backend, smooth=True))
    (out, tout), (ref, tref) = (_jvp(m, xs, init, params, tangents) for m in (Layer(layer), Reference(layer)))
    for a, b in zip(_flat(out), _flat(ref)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(_flat(tout), _flat(tref)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    assert any(t.abs().max() > 0 for t in _flat(tout))


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_ad_dual_tensors_equal_func_jvp(backend):
    layer = nd.zoo.ALIF(tau=torch.full((3,), 2.0), learnable=("tau",), backend=backend).double()
    x, tx = torch.rand(6, 2, 3, dtype=F64) * 2, torch.randn(6, 2, 3, dtype=F64)
    out, tout = torch.func.jvp(lambda x: layer(x), (x,), (tx,))
    layer.reset_state()
    with fwAD.dual_level():
        dual = layer(fwAD.make_dual(x, tx))
        assert torch.equal(fwAD.unpack_dual(dual).primal, out)
        torch.testing.assert_close(fwAD.unpack_dual(dual).tangent, tout, rtol=0, atol=0)
        carried = fwAD.unpack_dual(layer.state_value("v")).tangent      # carried states keep their tangents
        assert carried is not None and carried.shape == (2, 3)


def _adjoint_check(module_ours, module_ref, xs, init, params, tangents, seed=5):
    """u·jvp_ours(v) against vjp_ref(u)·v for random u: the tangent kernel is the adjoint of the reference's
    autograd (in spike mode too, where forward AD cannot run through the reference)."""
    out, tout = _jvp(module_ours, xs, init, params, tangents)
    gen = torch.Generator().manual_seed(seed)
    us = [torch.randn(t.shape, generator=gen, dtype=F64) for t in _flat(out)]
    lhs = sum((u * t).sum() for u, t in zip(us, _flat(tout)))
    scale = sum((u * t).abs().sum() for u, t in zip(us, _flat(tout)))
    leaves = ([x.clone().requires_grad_() for x in xs], {k: v.clone().requires_grad_() for k, v in init.items()},
              {k: v.clone().requires_grad_() for k, v in params.items()})
    ref = torch.func.functional_call(module_ref, leaves[2], tuple(leaves[0]), {"state": leaves[1]})
    assert all(torch.equal(a, b) for a, b in zip(_flat(ref)[:1], _flat(out)[:1]))    # the same spikes
    flat_leaves = [*leaves[0], *leaves[1].values(), *leaves[2].values()]
    grads = torch.autograd.grad(_flat(ref), flat_leaves, us, allow_unused=True)
    flat_tangents = [*tangents[0], *tangents[1].values(), *tangents[2].values()]
    rhs = sum((g * v).sum() for g, v in zip(grads, flat_tangents) if g is not None)
    scale = scale + sum((g * v).abs().sum() for g, v in zip(grads, flat_tangents) if g is not None)
    assert abs(lhs - rhs) <= 1e-9 * scale + 1e-12, (lhs, rhs, scale)   # relative to the terms summed
    return lhs


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", [nd.zoo.LIF, nd.zoo.ALIF, nd.zoo.EIF, nd.zoo.KLIF])
def test_tangent_is_the_adjoint_of_the_reference_gradient(cls, backend):
    layer, xs, init, params, tangents = _setup(layer_for_check(cls, backend=backend))
    assert _adjoint_check(Layer(layer), Reference(layer), xs, init, params, tangents) != 0


@pytest.mark.parametrize("detach_reset", [False, True])
def test_detach_reset_drops_the_spike_path_of_the_tangent(detach_reset):
    layer, xs, init, params, tangents = _setup(layer_for_check(nd.zoo.ALIF, backend="torch",
                                                               detach_reset=detach_reset))
    _adjoint_check(Layer(layer), Reference(layer), xs, init, params, tangents)


def test_random_specs_tangent_is_the_adjoint_of_the_reference_gradient():
    checked = []

    @settings(max_examples=8, phases=[Phase.explicit, Phase.reuse, Phase.generate])
    @given(cases(backend="torch", max_steps=4))
    def run(case):
        layer, T, shape, seed, _ = case
        layer, xs, init, params, tangents = _setup(layer, T, shape, seed)
        if not all(torch.isfinite(t).all() for t in _flat(Reference(layer)(*xs, state=init))):
            return
        _adjoint_check(Layer(layer), Reference(layer), xs, init, params, tangents)
        checked.append(type(layer).__name__)

    run()
    assert len(checked) >= 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_jacrev_products_equal_jvp(backend):
    layer = nd.zoo.ALIF(backend=backend, learnable=("tau", "beta")).double()
    x, v = torch.rand(4, 3, dtype=F64) * 2, torch.randn(4, 3, dtype=F64)

    def f(x):
        layer.reset_state()
        return layer(x)
    J = torch.func.jacrev(f)(x)                  # vmap over the generated backward
    _, tangent = torch.func.jvp(f, (x,), (v,))
    torch.testing.assert_close(torch.einsum("abcd,cd->ab", J, v), tangent, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("learnable", [(), ("tau", "beta")], ids=["fixed", "learnable"])
@pytest.mark.parametrize("backend", [*BACKENDS, "c"])
def test_func_grad_equals_autograd(backend, learnable):
    """torch.func.grad through a layer (the backward then sees the saved inputs and parameters as tensors that
    functorch tracks): the same input and parameter gradients as torch.autograd."""
    if backend not in nd.dispatch.backends_on("cpu"):
        pytest.skip(f"backend {backend} does not run here")
    layer = nd.zoo.ALIF(backend=backend, learnable=learnable).double()
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(6, 5, dtype=torch.float64, generator=gen) * 2
    w = torch.randn(6, 5, dtype=torch.float64, generator=gen)
    params = {k: v.detach() for k, v in layer.named_parameters()}

    def loss(x, params):  # the spikes' gradient depends on the spikes: functorch tracks it into the backward
        layer.reset_state()
        s = torch.func.functional_call(layer, params, (x,))
        return (s * w + s * s).sum()
    got = torch.func.grad(loss, argnums=(0, 1))(x, params)
    xr = x.clone().requires_grad_()
    layer.reset_state()
    s = layer(xr)
    want = torch.autograd.grad((s * w + s * s).sum(), [xr, *layer.parameters()])
    assert want[0].abs().sum() > 0
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
    for (name, g), gw in zip(got[1].items(), want[1:]):
        torch.testing.assert_close(g, gw, rtol=1e-12, atol=1e-12, msg=name)


def test_parallel_forms_run_the_sequential_tangent():
    x, v = torch.rand(40, 3, dtype=F64), torch.randn(40, 3, dtype=F64)
    scan = nd.zoo.LIF.without_reset()(parallel="scan", backend="torch").double()
    seq = nd.zoo.LIF.without_reset()(parallel="sequential", backend="torch").double()
    out, tangent = torch.func.jvp(lambda x: scan(x), (x,), (v,))
    assert scan.last_form["form"] == "sequential"
    expected = torch.func.jvp(lambda x: seq(x), (x,), (v,))
    torch.testing.assert_close(tangent, expected[1], rtol=0, atol=0)
    assert torch.equal(scan(x), seq(x)) and scan.last_form["form"] == "scan"   # without tangents: the scan


@pytest.mark.parametrize("name", BACKENDS)
def test_tangent_template_declares_what_it_reads_and_gets_it(name):
    backend = backends.get(name)
    env = base.environment(str(backend.folder))
    declared = base.declared_names(env, backend.tangent_template)
    assert base.used_names(env, backend.tangent_template) == declared
    for cls, learn in ((nd.zoo.ALIF, ("tau", "beta", "_alpha")), (nd.zoo.CubaLIF, ())):
        options = KernelOptions(nd.surrogate.ATan(), vector_params=(True,) + (False,) * (len(cls.spec.params) - 1),
                                learnable=learn)
        plan = derive_tangent_plan(cls.spec, options)
        assert set(backend.tangent_context(plan, "k" * 20, plan.name)) == declared
        assert backend.render_tangent(plan, "k" * 20, plan.name).startswith("# Generated by neurodsl")


def test_tangent_program_is_linear_in_the_tangents():
    """Each tangent output is one sum of per-neuron coefficient × tangent (what lets online learning run the
    program on many directions at once); zero Jacobian entries leave no term."""
    plan = derive_tangent_plan(nd.zoo.LIF.without_reset().spec, KernelOptions(nd.surrogate.ATan()))
    outputs = {a.target.name: a.expr for a in plan.tangent if a.target.name.startswith("t")}
    assert set(outputs) == {"tspike", "tn_v"}
    for expr in outputs.values():
        assert all(sum(s.name.startswith("t") for s in term.free_symbols) == 1 for term in expr.args)
    assert plan.tangent and not nd.zoo.LIF.without_reset().analysis().plan.tangent   # derived only when asked


class _NoTangent(type(backends.get("torch"))):
    name = "notangent"
    tangent_context = base.Backend.tangent_context
    tangent = base.Backend.tangent


def test_a_backend_without_a_tangent_kernel_refuses_with_nd310(monkeypatch):
    monkeypatch.setitem(backends._BACKENDS, "notangent", _NoTangent())
    layer = nd.zoo.LIF(backend="notangent")
    x = torch.rand(3, 4)
    assert layer(x).shape == (3, 4)                                # forward and backward still run
    layer.reset_state()
    with pytest.raises(nd.BackendError) as info:
        torch.func.jvp(lambda x: layer(x), (x,), (torch.ones_like(x),))
    assert info.value.code == "ND310"


def test_a_parameter_with_a_tangent_is_differentiated():
    """A parameter swapped in with a forward-mode tangent (not requires_grad) gets kernels that differentiate it."""
    layer = nd.zoo.LIF(backend="torch").double()                   # tau is a buffer
    x = torch.rand(5, 4, dtype=F64) * 2
    f = lambda tau: torch.func.functional_call(layer, {"tau": tau}, (x,))  # noqa: E731
    _, tangent = torch.func.jvp(f, (torch.tensor(2.0, dtype=F64),), (torch.tensor(1.0, dtype=F64),))
    assert "tau" in layer.last_route.kernels.options.learnable and tangent.abs().sum() > 0
    learnable = nd.zoo.LIF(backend="torch", learnable=("tau",)).double()
    g = lambda tau: torch.func.functional_call(learnable, {"tau": tau}, (x,))  # noqa: E731
    expected = torch.func.jvp(g, (torch.tensor(2.0, dtype=F64),), (torch.tensor(1.0, dtype=F64),))[1]
    torch.testing.assert_close(tangent, expected, rtol=0, atol=0)


def test_a_tangent_on_a_parameter_the_kernels_do_not_differentiate_raises_nd311():
    """The op refuses (typed) a tangent its kernels would drop, e.g. from a caller with stale kernel options."""
    from kernels_gen import ops
    from neurodsl.compiler import compile_spec
    spec = nd.zoo.LIF.spec
    key = ops.register(compile_spec(spec, KernelOptions(nd.surrogate.ATan(), vector_params=(False,) * 3)))
    x, v0 = torch.rand(3, 4), torch.zeros(4)
    params = [torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([2.0]), torch.tensor([2.0])]
    with fwAD.dual_level(), pytest.raises(nd.BackendError) as info:
        params[2] = fwAD.make_dual(params[2], torch.ones(1))
        ops.neuron_op(key, "torch", [x], [v0], params)
    assert info.value.code == "ND311"
