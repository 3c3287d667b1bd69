"""e-prop's per-synapse trace in factorised form, where the derived Jacobians make it exact.

The trace of synapse (j ← i) for state m is ε^m_t = Σ_m' J[m,m'] ε^m'_{t-1} + K[m] z_t. When J is constant and
diagonal (λ_m, one value for the whole layer) and K is constant (c_m, per neuron at most), every component
factorises: ε^m_t = c_m · ẑ^m_t with the presynaptic trace ẑ^m_t = λ_m ẑ^m_{t-1} + z_t (B·n_in values instead of
B·n·n_in; states with the same λ share one). The spike's part of the gradient, Σ_m ds/dv_m · ε^m_{t-1}, is then
read off the neuron's own tangent step in one extra direction per trace (the states' tangents set to c_m), and
∂L_t/∂W = (L ⊙ ds/dI)ᵀ z_t + Σ_g (L ⊙ ds/dv·c_g)ᵀ ẑ^g_{t-1}: matrix products, no per-synapse pass. This is the
standard LIF e-prop (Bellec et al.) for a LIF with reset by subtraction whose reset is not differentiated.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy as sp
import torch

from ..analysis.jacobians import jacobians


@dataclass
class Factorisation:
    """Groups of states that share one presynaptic trace: (λ, [(state, c), ...]) per group, as functions of
    the unit's parameter values (evaluated again only when a parameter changes)."""

    groups: list[tuple[object, list[tuple[int, object]]]]
    _cache: tuple | None = field(default=None, repr=False)

    def values(self, unit) -> tuple[list[float], list[list[tuple[int, torch.Tensor]]]]:
        """λ per group, and (state, c_m as [n] or [1]) per group: what the state tangents start at."""
        key = unit.versions()
        if self._cache is None or self._cache[0] != key:
            leaks = [float(leak(unit)) for leak, _ in self.groups]
            cs = [[(m, c(unit)) for m, c in states] for _, states in self.groups]
            self._cache = (key, (leaks, cs), [unit.param_tensor(n) for n in unit.layer.spec.params])
        return self._cache[1]


def _evaluator(expr: sp.Expr, unit):
    """``expr`` (of the plan's ``p_<name>`` symbols) as a function of the unit's current parameter values
    (a [n] or [1] tensor), and whether it has one value per neuron."""
    symbols = sorted(expr.free_symbols, key=lambda s: s.name)
    names = [s.name[2:] for s in symbols]
    fn = sp.lambdify(symbols, expr, "numpy")

    def evaluate(u):
        value = fn(*(u.flat_param(n).detach().cpu().double().numpy() for n in names))
        device = u.states[0].device
        return torch.as_tensor(np.asarray(value, dtype=np.float64), device=device).to(u.cdt).reshape(-1)
    return evaluate, any(unit.flat_param(n).numel() > 1 for n in names)


def factorisation(unit) -> Factorisation | None:
    """The exact factorised form of the unit's synapse trace, or None when J or K is not of that form (or a
    leak has one value per neuron): then e-prop keeps the general per-synapse trace."""
    jac = jacobians(unit.layer.spec, unit.options)
    J, K, k = jac.J, jac.K, len(jac.states)
    if not (jac._constant(J) and jac._constant(K)):
        return None
    if any(J[a, b] != 0 for a in range(k) for b in range(k) if a != b) or K.shape[1] != 1:
        return None
    by_leak: dict[sp.Expr, list[int]] = {}
    for m in range(k):
        if K[m, 0] != 0:                     # a state the input never enters keeps a zero trace (J diagonal)
            by_leak.setdefault(sp.simplify(J[m, m]), []).append(m)
    groups = []
    for leak, states in by_leak.items():
        leak_fn, per_neuron = _evaluator(leak, unit)
        if per_neuron:
            return None
        groups.append((leak_fn, [(m, _evaluator(K[m, 0], unit)[0]) for m in states]))
    return Factorisation(groups)
