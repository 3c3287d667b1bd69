"""Shared test helpers: comparing a module against ``nd.reference_run`` and drawing safe inputs.

``compare`` runs a layer (generated kernels) and the naive reference loop on the same inputs,
then checks spikes exactly and states / every gradient (inputs, parameters including a learnable
surrogate alpha, initial states) to a dtype-dependent tolerance.

Spikes are a step function of the fire value ``u``; if some ``u`` lies within rounding error of 0,
the two implementations may legitimately disagree. ``safe_inputs`` therefore redraws inputs until
every fire value (recorded by ``fire_values``, a copy of the reference loop) keeps a margin from 0.
"""
from __future__ import annotations

import torch

import neurodsl as nd
from neurodsl import zoo

# zoo class -> (extra constructor kwargs, learnable params used by the tests)
NEURONS = {
    zoo.IF: ({}, ("v_th", "v_reset")),
    zoo.LIF: ({}, ("tau", "v_th", "v_reset")),
    zoo.PLIF: ({}, ("w", "v_th", "v_reset")),
    zoo.ALIF: ({}, ("tau", "tau_a", "beta", "v_th")),
    zoo.QIF: ({}, ("tau", "v_c", "a0", "v_rest", "v_reset", "v_th")),
    zoo.EIF: ({}, ("tau", "delta_T", "theta_rh", "v_rest", "v_th")),
    zoo.Izhikevich: (dict(a=0.5, b=0.2), ("tau", "v_c", "a0", "v_rest", "tau_w", "a", "b", "v_th", "v_reset")),
    zoo.KLIF: ({}, ("tau", "k", "v_th", "v_reset")),
    zoo.CubaLIF: ({}, ("c_decay", "v_decay", "v_th")),
    zoo.LIFNoReset: ({}, ("tau", "v_th")),
}
assert set(NEURONS) == set(zoo.ALL)

TOL = {torch.float32: 1e-5, torch.float64: 1e-10, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
MARGIN = {torch.float32: 1e-4, torch.float64: 1e-10}


def tol(dtype):
    return TOL.get(dtype, TOL[torch.float32])


def assert_close(actual, expected, dtype, what="", tol_scale=1.0):
    """allclose with rtol = atol = TOL (of ``dtype`` or, if coarser, of ``actual``'s dtype), times ``scale``.

    atol is further scaled by the magnitude of ``expected`` (gradients summed over steps can be large).
    """
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    t = max(tol(dtype), tol(actual.dtype)) * tol_scale
    expected = expected.to(actual.dtype)
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=t, atol=t * scale, msg=lambda m: f"{what}: {m}")


# -- fire margins ---------------------------------------------------------------------------------
@torch.no_grad()
def fire_values(layer: nd.Neuron, *inputs: torch.Tensor, init: dict | None = None) -> torch.Tensor:
    """The fire value ``u`` of every neuron and step, [T, *shape] (from the reference loop)."""
    *_, fire = nd.reference_run(layer, *inputs, init=init, return_fire=True)
    return fire


def fire_margin_ok(layer, *inputs, init=None) -> bool:
    """True when every fire value is finite and at least MARGIN[dtype] away from 0."""
    u = fire_values(layer, *inputs, init=init)
    margin = MARGIN[torch.float64 if inputs[0].dtype == torch.float64 else torch.float32]
    return bool(torch.isfinite(u).all()) and bool((u.abs() >= margin).all())


def safe_inputs(layer, T, shape, *, n_inputs=None, seed=0, scale=1.0, offset=0.8, dtype=torch.float32,
                init=None, tries=40):
    """Random inputs ``offset + scale * randn`` ([T, *shape] each) whose fire values keep the margin.

    Returns a list of tensors, or None when no draw in ``tries`` attempts qualifies.
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


# -- module vs reference ----------------------------------------------------------------------------
def _loss(spikes, states: dict, weights_spikes, weights_states):
    loss = (spikes.to(weights_spikes.dtype) * weights_spikes).sum()
    for k, w in weights_states.items():
        loss = loss + (states[k].to(w.dtype) * w).sum()
    return loss


def run_with_grads(layer, xs, init=None, weights=None, reference=False):
    """Run ``layer`` (or the reference loop) and return (spikes, states, grads dict, weights).

    States are the final states, or the whole sequences when ``layer.store_state_seqs``.
    The loss is a random weighted sum of spikes and states, so every output carries gradient.
    """
    xa = [x.detach().clone().requires_grad_() for x in xs]
    ia = {k: torch.as_tensor(v).detach().clone().requires_grad_() for k, v in (init or {}).items()}
    if reference:
        spikes, seqs = nd.reference_run(layer, *xa, init=ia or None)
        states = seqs if layer.store_state_seqs else {k: v[-1] for k, v in seqs.items()}
    else:
        layer.reset_state()
        spikes = layer(*xa, state=ia or None)
        states = dict(layer.state_seqs) if layer.store_state_seqs else dict(layer._carried)
    if weights is None:
        gen = torch.Generator().manual_seed(1234)
        wdt = torch.float64
        weights = (torch.randn(spikes.shape, generator=gen, dtype=wdt).to(spikes.device),
                   {k: torch.randn(v.shape, generator=gen, dtype=wdt).to(v.device) for k, v in states.items()})
    loss = _loss(spikes, states, *weights)
    named_params = list(layer.named_parameters())
    leaves = xa + list(ia.values()) + [p for _, p in named_params]
    names = [f"x{i}" for i in range(len(xa))] + [f"init_{k}" for k in ia] + [n for n, _ in named_params]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    out = {}
    for name, leaf, g in zip(names, leaves, grads):
        out[name] = torch.zeros_like(leaf) if g is None else g
    return spikes.detach(), {k: v.detach() for k, v in states.items()}, out, weights


def compare(layer, *xs, init=None, check_grads=True, tol_scale=1.0):
    """Assert module == reference: spikes exactly (to TOL in smooth mode); states and all gradients to TOL."""
    dtype = xs[0].dtype
    spikes, states, grads, weights = run_with_grads(layer, xs, init=init)
    r_spikes, r_states, r_grads, _ = run_with_grads(layer, xs, init=init, weights=weights, reference=True)
    assert spikes.dtype == xs[0].dtype
    if layer.smooth:  # smooth spikes are the surrogate primitive: real numbers, not 0/1
        assert_close(spikes, r_spikes, dtype, "smooth spikes", tol_scale)
    else:
        assert torch.equal(spikes, r_spikes), \
            f"spikes differ at {(spikes != r_spikes).nonzero()[:5].tolist()} (of {spikes.numel()})"
    assert set(states) == set(r_states) == set(layer.spec.states)
    for k in states:
        assert_close(states[k], r_states[k], dtype, f"state {k}", tol_scale)
    if check_grads:
        assert set(grads) == set(r_grads)
        for k in grads:
            assert torch.isfinite(grads[k]).all(), f"grad {k} not finite"
            assert_close(grads[k], r_grads[k], dtype, f"grad {k}", tol_scale)
    return spikes, states, grads
