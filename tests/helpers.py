"""Shared test helpers, built on the one reference check in ``neurodsl.testing``.

``compare`` is :func:`neurodsl.testing.check_against_reference` raising on failure: spikes equal up to
bounded near-threshold flips, states and every gradient (inputs, parameters including a learnable
surrogate alpha, initial states) within ``neurodsl.testing.TOLERANCES``. ``zoo_case`` and the other
``*_case`` functions are the realistic-size checks tests/test_gpu.py runs on CUDA and tests/test_zoo.py
runs on the CPU (torch backend): same code, so their logic is tested without a GPU.

``safe_inputs`` draws inputs whose every fire value keeps a margin from 0. Checks against the reference
do not need it; tests comparing two implementations bitwise (parallel vs sequential forms) do.
"""
from __future__ import annotations

import torch

import neurodsl as nd
from neurodsl import zoo
from neurodsl.testing import (TOLERANCES, check_against_reference, initial_states, inputs_for, layer_for_check,
                              tolerance)
from neurodsl.testing.check import compute_dtype, forward, gradients, loss_weights

#: The firing-rate band every realistic-size check asserts (and inputs_for aims at).
RATE = (0.05, 0.5)


def _check_args(cls):
    """(constructor kwargs, learnable params) that layer_for_check uses for ``cls``."""
    kwargs = dict(getattr(cls, "check_kwargs", {}))
    return kwargs, tuple(kwargs.pop("learnable", tuple(cls._params_decl)))


# zoo class -> (extra constructor kwargs, learnable params), from the classes' own check_kwargs
NEURONS = {cls: _check_args(cls) for cls in zoo.ALL}


def tol(dtype):
    return tolerance(dtype)


def assert_close(actual, expected, dtype, what="", tol_scale=1.0):
    """allclose at the TOLERANCES rtol of ``actual``'s dtype or of ``dtype``'s compute dtype (the coarser), times
    ``tol_scale``; atol is rtol scaled by max(1, max|expected|) (gradients summed over steps can be large)."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    t = tolerance(actual.dtype, dtype) * tol_scale
    expected = expected.to(actual.dtype)
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=t, atol=t * scale, msg=lambda m: f"{what}: {m}")


def assert_firing(rate, what=""):
    assert RATE[0] <= rate <= RATE[1], f"{what}: firing rate {rate:.3f} outside {RATE}"


# -- fire margins (for bitwise comparisons of two implementations) ------------------------------------------------
@torch.no_grad()
def fire_values(layer: nd.Neuron, *inputs: torch.Tensor, init: dict | None = None) -> torch.Tensor:
    """The fire value ``u`` of every neuron and step, [T, *shape] (from the reference loop)."""
    *_, fire = nd.reference_run(layer, *inputs, init=init, return_fire=True)
    return fire


def fire_margin_ok(layer, *inputs, init=None) -> bool:
    """True when every fire value is finite and at least the compute dtype's margin away from 0."""
    u = fire_values(layer, *inputs, init=init)
    margin = TOLERANCES[compute_dtype(inputs[0].dtype)].margin
    return bool(torch.isfinite(u).all()) and bool((u.abs() >= margin).all())


def safe_inputs(layer, T, shape, *, n_inputs=None, seed=0, scale=1.0, offset=0.8, dtype=torch.float32,
                init=None, tries=40):
    """Random inputs ``offset + scale * randn`` ([T, *shape] each) whose fire values keep the margin.

    Returns a list of tensors, or None when no draw in ``tries`` attempts qualifies (likely at large sizes).
    """
    n_inputs = len(layer.spec.inputs) if n_inputs is None else n_inputs
    gen = torch.Generator().manual_seed(seed)
    for _ in range(tries):
        xs = [offset + scale * torch.randn((T, *shape), generator=gen, dtype=torch.float64) for _ in range(n_inputs)]
        xs = [x.to(dtype) for x in xs]
        if fire_margin_ok(layer, *xs, init=init):
            return xs
    return None


def require_safe_inputs(layer, T, shape, **kw):
    xs = safe_inputs(layer, T, shape, **kw)
    assert xs is not None, "could not draw inputs with every fire value away from 0"
    return xs


# -- module vs reference ----------------------------------------------------------------------------------------
def run_with_grads(layer, xs, init=None, weights=None, reference=False):
    """Run ``layer`` (or the reference loop) and return (spikes, states, grads dict, weights).

    States are the final states, or the whole sequences when ``layer.store_state_seqs``. The loss is a
    random weighted sum of spikes and states (pass ``weights`` to reuse another run's).
    """
    spikes, states, leaves, _ = forward(layer, xs, init, reference)
    weights = loss_weights(spikes, states) if weights is None else weights
    grads = gradients(spikes, states, leaves, weights)
    return spikes.detach(), {k: v.detach() for k, v in states.items()}, grads, weights


def compare(layer, *xs, init=None, check_grads=True, tol_scale=1.0):
    """Assert module == reference (``neurodsl.testing.check_against_reference``); returns the layer's
    (spikes, states, grads)."""
    result = check_against_reference(layer, *xs, init=init, tol_scale=tol_scale, grads=check_grads).assert_ok()
    return result.outputs


# -- realistic-size cases: tests/test_gpu.py on CUDA, tests/test_zoo.py on the CPU --------------------------------
def checked(layer, T, shape, *, seed=1, dtype=torch.float32, init=True, tol_scale=1.0):
    """Inputs at a 5-50% firing rate (and initial states) for ``layer``, the reference check, the rate asserted."""
    init_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    states = initial_states(layer, shape, seed=seed, dtype=init_dtype) if init else None
    xs = inputs_for(layer, T, shape, seed=seed, dtype=dtype, init=states, rate=RATE)
    result = check_against_reference(layer, *xs, init=states, tol_scale=tol_scale).assert_ok()
    assert_firing(result.rate, type(layer).__name__)
    return result


def zoo_case(cls, backend, device, *, T=12, shape=(4, 1000), seed=1, tol_scale=1.0, **kw):
    """Every zoo neuron, fp32, N = 4000 (8 Triton programs of 512 lanes): all learnable, learnable alpha, init."""
    layer = layer_for_check(cls, backend=backend, **kw).to(device)
    return checked(layer, T, shape, seed=seed, tol_scale=tol_scale)


def low_precision_case(dtype, backend, device, *, shape=(5, 800), tol_scale=1.0):
    """fp16 / bf16 inputs (fp32 math): spikes and input grads in the input dtype, states fp32."""
    tau = 2.0 + torch.rand(shape[-1], generator=torch.Generator().manual_seed(2))
    layer = layer_for_check(zoo.LIF, backend=backend, tau=tau).to(device)
    result = checked(layer, 10, shape, seed=2, dtype=dtype, tol_scale=tol_scale)
    spikes, states, grads = result.outputs
    assert spikes.dtype == dtype and states["v"].dtype == torch.float32 and grads["x0"].dtype == dtype
    return result


def fp64_case(backend, device, *, shape=(2, 2000), tol_scale=1.0):
    layer = layer_for_check(zoo.EIF, backend=backend).double().to(device)
    result = checked(layer, 8, shape, seed=4, dtype=torch.float64, tol_scale=tol_scale)
    assert result.outputs[1]["v"].dtype == torch.float64
    return result


def vector_params_case(backend, device, *, shape=(3, 1400), tol_scale=1.0):
    """Per-neuron learnable params, every step's states (store_state_seqs) and initial states."""
    tau = 2.0 + torch.rand(shape[-1], generator=torch.Generator().manual_seed(3))
    layer = layer_for_check(zoo.Izhikevich, backend=backend, tau=tau, store_state_seqs=True).to(device)
    result = checked(layer, 8, shape, seed=3, tol_scale=tol_scale)
    assert result.compared["state:v"] == 8 * (result.neurons - result.flips)
    assert result.outputs[2]["tau"].shape == (shape[-1],)
    return result


def network(device, kind="alif-plif"):
    """A small SNN and inputs at which each of its spiking layers fires 5-50% (tests/test_gpu.py asserts it).

    'alif-plif': Linear -> ALIF -> Linear -> PLIF; 'lif': Linear -> LIF.
    """
    torch.manual_seed(0)
    if kind == "lif":
        net = torch.nn.Sequential(torch.nn.Linear(64, 1024), zoo.LIF())
    else:
        net = torch.nn.Sequential(torch.nn.Linear(64, 1024), zoo.ALIF(learnable=("tau", "beta")),
                                  torch.nn.Linear(1024, 256), zoo.PLIF())
        with torch.no_grad():
            net[2].weight.mul_(16.0)  # with the default init the sparse hidden spikes never make PLIF fire
    net = net.to(device)
    (x,) = inputs_for(net, 16, (8, 64), n_inputs=1, seed=0, scale=6.0, rate=RATE)
    return net, x


def layer_rates(net, x):
    """Firing rates of every spiking layer of ``net`` on ``x`` (eager, states reset before and after)."""
    rates = []
    hooks = [m.register_forward_hook(lambda m, i, o: rates.append(float(o.float().mean()))) for m in nd.neurons(net)]
    try:
        with torch.no_grad():
            nd.reset_states(net)
            net(x)
            nd.reset_states(net)
    finally:
        for h in hooks:
            h.remove()
    return rates
