"""Classify a spec's reset-free dynamics: is H = A V[t-1] + b with A free of states?

Verdicts (``LinearityVerdict.kind``):

* ``"linear-time-invariant"`` — A depends on parameters only (e.g. LIF, CUBA-LIF);
* ``"linear-input-dependent"`` — A depends on inputs at t too, never on states;
* ``"nonlinear"`` — some charge is nonlinear in a state; ``term`` and ``state`` name it.

>>> import neurodsl as nd
>>> classify(nd.zoo.QIF.spec).kind
'nonlinear'
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp

from ..spec import NeuronSpec


@dataclass(frozen=True)
class LinearityVerdict:
    kind: str
    state: str = ""          # the state whose charge breaks linearity
    term: str = ""           # the offending term, as text
    matrix: tuple = ()       # A as nested tuples of sympy expressions (linear kinds)
    has_reset: bool = False  # the neuron as written has a spike-driven update

    @property
    def parallelizable(self) -> bool:
        return self.kind != "nonlinear"

    def explain(self) -> str:
        if self.kind == "nonlinear":
            return f"not parallelizable: charge of {self.state} is nonlinear in the states: {self.term}"
        what = "parameters only" if self.kind == "linear-time-invariant" else "parameters and inputs at t"
        return f"{self.kind}: H = A·V[t-1] + b_t with A depending on {what}"


@functools.lru_cache(maxsize=256)
def classify(spec: NeuronSpec) -> LinearityVerdict:
    """Verdict on the charge equations alone (the reset-free dynamics)."""
    prev, _, inputs, _ = spec.symbols()
    state_syms = set(prev.values())
    input_syms = set(inputs.values())
    rows, input_dependent = [], False
    for (target, expr), state in zip(spec.charge, spec.states):
        row = []
        for s in spec.states:
            coeff = sp.diff(expr, prev[s])
            if coeff.free_symbols & state_syms:
                return LinearityVerdict("nonlinear", state=state, term=_offending_term(expr, state_syms),
                                        has_reset=spec.has_reset)
            input_dependent |= bool(coeff.free_symbols & input_syms)
            row.append(coeff)
        rows.append(tuple(row))
    kind = "linear-input-dependent" if input_dependent else "linear-time-invariant"
    return LinearityVerdict(kind, matrix=tuple(rows), has_reset=spec.has_reset)


def _offending_term(expr: sp.Expr, state_syms: set) -> str:
    """The additive term of ``expr`` (factored) whose state-derivative still holds a state."""
    for term in sp.Add.make_args(sp.expand(expr)):
        if any(sp.diff(term, s).free_symbols & state_syms for s in state_syms):
            return str(_display(sp.factor(term)))
    return str(_display(expr))


def _display(expr: sp.Expr) -> sp.Expr:
    """Replace plan names (v_v, p_tau, x_x) by user names for messages."""
    return expr.xreplace({s: sp.Symbol(s.name.split("_", 1)[1]) for s in expr.free_symbols if "_" in s.name})
