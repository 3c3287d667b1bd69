"""The reference check: a layer against :func:`neurodsl.reference_run`, forward and every gradient.

:func:`check_against_reference` runs a layer (any backend, device, dtype) and the naive reference
loop on the same inputs and compares spikes, states and the gradients of a random weighted loss
with respect to the inputs, the initial states and every learnable parameter (a learnable
surrogate alpha included). It stays sound at realistic sizes, where some fire value always lies
within rounding error of the threshold: a neuron whose spikes differ is a *flip* when its first
differing step has a reference fire value within the margin of 0 (else it is a mismatch). Flipped
neurons are left out (neurons are independent: their loss weights are zeroed in both runs, so
every gradient, per-neuron parameters included, still compares), and their number is bounded.

:func:`inputs_for` draws inputs whose reference firing rate lies in a band (5–50 % by default), so a
check never compares silent or saturated neurons; :func:`layer_for_check` builds a neuron with its
class's ``check_kwargs`` and every parameter (and the surrogate's alpha) learnable.

>>> import neurodsl as nd
>>> layer = layer_for_check(nd.zoo.ALIF, backend="torch")
>>> xs = inputs_for(layer, 8, (4, 50), seed=0)
>>> result = check_against_reference(layer, *xs, init=initial_states(layer, (4, 50)))
>>> result.ok, 0.05 <= result.rate <= 0.5, result.compared["grad:surrogate_alpha"]
(True, True, 1)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..reference import reference_run


@dataclass(frozen=True)
class Tolerance:
    """``rtol`` for tensors of a dtype (``atol = rtol * max(1, max|expected|)``); ``margin``: fire values
    closer to 0 than this, in computations of that dtype, may legitimately round either way."""

    rtol: float
    margin: float


TOLERANCES = {
    torch.float64: Tolerance(1e-10, 1e-9),
    torch.float32: Tolerance(1e-5, 1e-4),
    torch.float16: Tolerance(2e-3, 1e-4),
    torch.bfloat16: Tolerance(1.6e-2, 1e-4),
}
"""Tolerances per dtype. A tensor compares at the coarser of its own dtype's and the compute dtype's (fp64
for fp64 inputs, else fp32) ``rtol``; the margin is the compute dtype's."""


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype neurodsl computes in for inputs of ``dtype``."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def tolerance(dtype: torch.dtype, input_dtype: torch.dtype | None = None) -> float:
    """``rtol`` for a tensor of ``dtype`` from a run on ``input_dtype`` inputs."""
    own = TOLERANCES.get(dtype, TOLERANCES[torch.float32]).rtol
    return own if input_dtype is None else max(own, TOLERANCES[compute_dtype(input_dtype)].rtol)


@dataclass
class CheckResult:
    """What :func:`check_against_reference` compared and found.

    ``compared`` counts the elements compared per tensor (``spikes``, ``state:<name>``,
    ``grad:<leaf>``), ``errors`` holds their largest absolute difference; ``flips`` neurons were left
    out (at most ``max_flips``), ``mismatches`` neurons differ beyond the margin; ``rate`` is the
    reference's spike rate. ``ok``: nothing failed and something was compared (``skipped`` says
    why not).
    """

    neurons: int
    steps: int
    rate: float = 0.0
    flips: int = 0
    max_flips: int = 0
    mismatches: int = 0
    compared: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    skipped: str | None = None
    outputs: tuple = field(default=(), repr=False)  #: the layer's (spikes, states, grads)

    @property
    def ok(self) -> bool:
        return not self.failures and self.skipped is None

    def max_error(self, kind: str) -> float:
        """The largest absolute error over the tensors whose name starts with ``kind`` ('state:', 'grad:')."""
        return max((v for k, v in self.errors.items() if k.startswith(kind)), default=0.0)

    def summary(self) -> str:
        """One line: what was compared, the largest errors and what failed."""
        text = (f"{self.neurons} neurons x {self.steps} steps, firing rate {self.rate:.3f}, "
                f"{self.flips} near-threshold flips, {self.mismatches} spike mismatches, "
                f"{len(self.compared)} tensors compared, max |state err| {self.max_error('state:'):.2e}, "
                f"max |grad err| {self.max_error('grad:'):.2e}")
        if self.skipped:
            text += f"; compared nothing: {self.skipped}"
        return text + "".join(f"; {f}" for f in self.failures)

    def assert_ok(self) -> CheckResult:
        """Raise AssertionError on a failure, ``UsageError`` ND806 when nothing was compared; returns self."""
        if self.failures:
            raise AssertionError(self.summary())
        if self.skipped:
            from ..errors import UsageError
            raise UsageError("ND806", f"the reference check compared nothing: {self.skipped}; draw other inputs "
                                      "(neurodsl.testing.inputs_for)")
        return self


def layer_for_check(cls, **overrides):
    """``cls`` built for a check: its ``check_kwargs`` (e.g. Izhikevich's nonzero ``a``, ``b``), every
    parameter learnable and a learnable ATan surrogate, unless ``overrides`` say otherwise."""
    from ..surrogate import ATan
    kwargs = {"learnable": tuple(cls._params_decl), "surrogate": ATan(learnable=True)}
    kwargs.update(getattr(cls, "check_kwargs", {}))
    kwargs.update(overrides)
    return cls(**kwargs)


def _device(module) -> torch.device:
    for t in [*module.parameters(), *module.buffers()]:
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def firing_rate(module, *inputs, init: dict | None = None) -> float:
    """The spike rate of a neuron's reference loop on ``inputs`` (of any other module: its own output)."""
    from ..neuron import Neuron
    if isinstance(module, Neuron):
        spikes = reference_run(module, *inputs, init=init)[0]
    else:
        from ..functional import reset_states
        reset_states(module)
        spikes = module(*inputs)
        reset_states(module)
    return float(spikes.float().mean())


def inputs_for(module, T: int, shape, *, rate=(0.05, 0.5), seed: int = 0, scale: float = 1.0,
               dtype: torch.dtype = torch.float32, device=None, init: dict | None = None, n_inputs: int | None = None):
    """Inputs ``offset + scale * z`` ([T, *shape] each, z standard normal from ``seed``) for ``module``.

    The offset is calibrated so the firing rate (:func:`firing_rate`) lies within ``rate``, near its
    geometric middle (a bracketing search and a bisection, assuming the rate grows with the offset);
    when no offset reaches the band (tiny sizes) the closest draw is returned. ``module`` is a neuron
    or any module whose output is spikes; inputs go to its device unless ``device`` is given.
    """
    device = _device(module) if device is None else torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    count = n_inputs if n_inputs is not None else len(getattr(getattr(module, "spec", None), "inputs", (0,)))
    zs = [torch.randn((T, *shape), generator=gen, dtype=torch.float64) for _ in range(count)]
    lo, hi = rate
    target = math.sqrt(max(lo, 1e-6) * hi)

    def draw(offset):
        return [(offset + scale * z).to(dtype).to(device) for z in zs]

    seen = {}

    def rate_at(offset):
        if offset not in seen:
            seen[offset] = firing_rate(module, *draw(offset), init=init)
        return seen[offset]

    def good(r):
        return lo <= r <= hi and abs(math.log(max(r, 1e-9) / target)) < math.log(1.6)

    low = high = None  # offsets with a rate below / above the target
    for offset in (0.5, 1.0, 0.0, 2.0, -1.0, 4.0, -2.0, 8.0, -4.0, 16.0):
        r = rate_at(offset)
        if good(r):
            break
        if r < target and (low is None or offset > low):
            low = offset
        if r > target and (high is None or offset < high):
            high = offset
        if low is not None and high is not None and low < high:
            for _ in range(10):
                mid = (low + high) / 2
                r = rate_at(mid)
                if good(r):
                    break
                low, high = (mid, high) if r < target else (low, mid)
            break

    def distance(r):  # 0 inside the band, then closeness to the target
        outside = 0.0 if lo <= r <= hi else abs(math.log(max(r, 1e-9) / (lo if r < lo else hi)))
        return outside, abs(math.log(max(r, 1e-9) / target))

    return draw(min(seen, key=lambda o: distance(seen[o])))


def initial_states(layer, shape, *, seed: int = 0, spread: float = 0.1, dtype: torch.dtype = torch.float32) -> dict:
    """Initial states near each state's default (``default + spread * z``), for checks of their gradients."""
    gen = torch.Generator().manual_seed(seed + 7919)
    device = _device(layer)
    out = {}
    for name, default in zip(layer.spec.states, layer.spec.state_defaults):
        base = layer.param_value(default).detach().to(dtype) if isinstance(default, str) else float(default)
        z = torch.randn(tuple(shape), generator=gen, dtype=torch.float64).to(dtype).to(device)
        out[name] = (base + spread * z).expand(tuple(shape)).clone()
    return out


# -- running one side -----------------------------------------------------------------------------------------
def forward(layer, xs, init=None, reference=False):
    """Run ``layer`` (or its reference loop) on copies of ``xs`` / ``init`` that require grad.

    Returns (spikes, states, leaves, fire): states are the final states, or every step's when
    ``layer.store_state_seqs``; leaves maps ``x<i>``, ``init_<state>`` and the layer's parameter names to
    the tensors gradients are taken for; fire is the reference's fire values (None for the layer).
    """
    xa = [x.detach().clone().requires_grad_() for x in xs]
    ia = {k: torch.as_tensor(v).detach().clone().requires_grad_() for k, v in (init or {}).items()}
    fire = None
    if reference:
        spikes, seqs, fire = reference_run(layer, *xa, init=ia or None, return_fire=True)
        states = seqs if layer.store_state_seqs else {k: v[-1] for k, v in seqs.items()}
    else:
        layer.reset_state()
        step_mode, layer.step_mode = layer.step_mode, "m"
        try:
            spikes = layer(*xa, state=ia or None)
        finally:
            layer.step_mode = step_mode
        states = dict(layer.state_seqs) if layer.store_state_seqs else {s: layer.state_value(s)
                                                                         for s in layer.spec.states}
    leaves = {f"x{i}": x for i, x in enumerate(xa)}
    leaves.update({f"init_{k}": v for k, v in ia.items()})
    leaves.update(dict(layer.named_parameters()))
    return spikes, states, leaves, fire


def loss_weights(spikes, states, seed: int = 1234, keep=None):
    """Random float64 weights for spikes and every state (zero where ``keep``, a per-neuron mask, is False)."""
    gen = torch.Generator().manual_seed(seed)
    mask = None if keep is None else keep.to(torch.float64)

    def weight(t):
        w = torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t.device)
        return w if mask is None else w * mask
    return weight(spikes), {k: weight(v) for k, v in states.items()}


def gradients(spikes, states, leaves, weights):
    """Gradients of ``sum(w * spikes) + sum(w_k * state_k)`` for every leaf (zeros where unused)."""
    ws, wst = weights
    loss = (spikes.to(ws.dtype) * ws).sum()
    for k, w in wst.items():
        loss = loss + (states[k].to(w.dtype) * w).sum()
    names = list(leaves)
    grads = torch.autograd.grad(loss, [leaves[n] for n in names], allow_unused=True)
    return {n: torch.zeros_like(leaves[n]) if g is None else g for n, g in zip(names, grads)}


# -- comparing ------------------------------------------------------------------------------------------------
def _compare(result, name, actual, expected, rtol, keep=None):
    """Record ``actual`` vs ``expected`` (restricted to ``keep`` neurons) in ``result``."""
    if actual.shape != expected.shape:
        result.failures.append(f"{name}: shape {tuple(actual.shape)} != reference {tuple(expected.shape)}")
        return
    actual, expected = actual.detach(), expected.detach().to(actual.dtype)
    if keep is not None and actual.dim() >= keep.dim() and actual.shape[actual.dim() - keep.dim():] == keep.shape:
        lead = actual.dim() - keep.dim()
        actual, expected = actual[(slice(None),) * lead + (keep,)], expected[(slice(None),) * lead + (keep,)]
    result.compared[name] = actual.numel()
    if not actual.numel():
        return
    a, e = actual.double(), expected.double()
    finite = torch.isfinite(e)
    atol = rtol * max(1.0, float(e[finite].abs().max()) if finite.any() else 1.0)
    close = torch.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    diff = (a - e).abs()
    result.errors[name] = float(diff[finite & torch.isfinite(a)].max()) if (finite & torch.isfinite(a)).any() else 0.0
    if not bool(close.all()):
        bad = (~close).nonzero()[0].tolist()
        idx = tuple(bad)
        result.failures.append(f"{name}: {int((~close).sum())} of {a.numel()} differ beyond rtol {rtol:.1e} "
                               f"(first at {bad}: {float(a[idx]):.7g} vs reference {float(e[idx]):.7g})")


def check_against_reference(layer, *inputs, init: dict | None = None, seed: int = 1234, tol_scale: float = 1.0,
                            max_flip_fraction: float = 0.01, margin: float | None = None,
                            grads: bool = True) -> CheckResult:
    """Compare ``layer`` with :func:`neurodsl.reference_run` on ``inputs`` ([T, *shape] each).

    Spikes must be equal, except in *flipped* neurons: those whose first differing step has a reference
    fire value within ``margin`` of 0 (default: the compute dtype's in :data:`TOLERANCES`, times
    ``tol_scale``). Flips are counted and may number at most ``max(1, max_flip_fraction * neurons)``.
    On the other neurons, states (final, or every step with ``store_state_seqs``) and the gradients of a
    random weighted loss of spikes and states (``seed``) with respect to the inputs, ``init`` and every
    learnable parameter must agree to the :data:`TOLERANCES` ``rtol`` times ``tol_scale``; flipped
    neurons get zero loss weight in both runs, so every gradient is compared. Smooth layers compare
    spikes to tolerance. Returns a :class:`CheckResult`; call ``.assert_ok()`` to raise on failure.
    """
    xs = list(inputs)
    in_dtype = xs[0].dtype
    T, shape = xs[0].shape[0], tuple(xs[0].shape[1:])
    n = math.prod(shape)
    margin = TOLERANCES[compute_dtype(in_dtype)].margin * tol_scale if margin is None else margin
    result = CheckResult(neurons=n, steps=T, max_flips=max(1, int(max_flip_fraction * n)))
    spikes, states, leaves, _ = forward(layer, xs, init)
    r_spikes, r_states, r_leaves, fire = forward(layer, xs, init, reference=True)
    result.rate = float(r_spikes.detach().float().mean())
    fire = fire.detach()
    if not bool(torch.isfinite(fire).all()):
        result.skipped = "the reference's fire values are not all finite"
        return result
    if spikes.dtype != in_dtype:
        result.failures.append(f"spikes: dtype {spikes.dtype}, inputs {in_dtype}")
    keep = torch.ones(shape, dtype=torch.bool, device=spikes.device)
    if layer.smooth:
        _compare(result, "spikes", spikes, r_spikes, tolerance(spikes.dtype, in_dtype) * tol_scale)
    else:
        differ = (spikes.detach() != r_spikes.detach())
        flipped = differ.any(0)
        first = differ.to(torch.uint8).argmax(0, keepdim=True)
        u_first = fire.detach().gather(0, first)[0]
        near = u_first.abs() < margin
        result.flips = int((flipped & near).sum())
        result.mismatches = int((flipped & ~near).sum())
        keep = ~flipped
        result.compared["spikes"] = int(keep.sum()) * T
        if result.mismatches:
            where = (flipped & ~near).nonzero()[0].tolist()
            t = int(first[(0, *where)])
            result.failures.append(
                f"spikes: {result.mismatches} neurons differ at a fire value beyond the margin {margin:.1e} "
                f"(first: neuron {where}, step {t}, fire {float(fire[(t, *where)]):.4g})")
        if result.flips > result.max_flips:
            result.failures.append(f"spikes: {result.flips} near-threshold flips, more than {result.max_flips} "
                                   f"({max_flip_fraction:.1%} of {n} neurons)")
        if not bool(keep.any()):
            result.skipped = f"every one of the {n} neurons flipped near the threshold"
            return result
    for k in layer.spec.states:
        if k not in states or k not in r_states:
            result.failures.append(f"state:{k}: missing")
            continue
        _compare(result, f"state:{k}", states[k], r_states[k], tolerance(states[k].dtype, in_dtype) * tol_scale, keep)
    if grads:
        weights = loss_weights(spikes, states, seed, keep=keep)
        got = gradients(spikes, states, leaves, weights)
        want = gradients(r_spikes, r_states, r_leaves, weights)
        for name, g in got.items():
            _compare(result, f"grad:{name}", g, want[name], tolerance(g.dtype, in_dtype) * tol_scale, keep)
        result.outputs = (spikes.detach(), {k: v.detach() for k, v in states.items()}, got)
    else:
        result.outputs = (spikes.detach(), {k: v.detach() for k, v in states.items()}, {})
    return result
