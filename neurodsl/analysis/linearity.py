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

from ..spec import NeuronSpec, user_text


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
        if not _Affine(state_syms).affine(expr):
            return LinearityVerdict("nonlinear", state=state, term=_offending_term(expr, state_syms),
                                    has_reset=spec.has_reset)
        row = []
        for s in spec.states:
            coeff = sp.diff(expr, prev[s])  # cheap: expr is affine in the states
            input_dependent |= bool(coeff.free_symbols & input_syms)
            row.append(coeff)
        rows.append(tuple(row))
    kind = "linear-input-dependent" if input_dependent else "linear-time-invariant"
    return LinearityVerdict(kind, matrix=tuple(rows), has_reset=spec.has_reset)


class _Affine:
    """Structural test "affine in ``syms``", linear in the expression's size (no differentiation).

    A sum is affine when every term is; a product when at most one factor depends on ``syms`` and that
    factor is affine; a where (Piecewise) when no condition depends on ``syms`` and every value is affine;
    any other node that depends on ``syms`` (a function, a power, min/max) is not.
    """

    def __init__(self, syms: set):
        self.syms, self._dep, self._aff = syms, {}, {}

    def depends(self, e) -> bool:
        key = id(e)
        if key not in self._dep:
            self._dep[key] = e in self.syms if not e.args else any(self.depends(a) for a in e.args)
        return self._dep[key]

    def affine(self, e) -> bool:
        key = id(e)
        if key not in self._aff:
            self._aff[key] = self._affine(e)
        return self._aff[key]

    def _affine(self, e) -> bool:
        if not self.depends(e) or e in self.syms:
            return True
        if isinstance(e, sp.Add):
            return all(self.affine(a) for a in e.args)
        if isinstance(e, sp.Mul):
            dependent = [a for a in e.args if self.depends(a)]
            return len(dependent) == 1 and self.affine(dependent[0])
        if isinstance(e, sp.Piecewise):
            return all(not self.depends(c) and self.affine(v) for v, c in e.args)
        return False


def _offending_term(expr: sp.Expr, state_syms: set) -> str:
    """The smallest additive term of ``expr``, as written, that is nonlinear in the states."""
    test = _Affine(state_syms)

    def find(e):
        for term in sp.Add.make_args(e):
            if not test.affine(term):
                inner = [f for f in sp.Mul.make_args(term) if f.is_Add and not test.affine(f)]
                return find(inner[0]) if inner else term
        return e

    return user_text(find(expr))


@dataclass(frozen=True)
class ResetVerdict:
    """The neuron as written: can its spikes be found by an exact parallel fixed point?

    ``exact`` holds when, for a given spike train, V[t] is affine in V[t-1] (linear charge and a
    reset affine in H, e.g. soft reset or hard reset as a gated update). ``spike_driven`` lists
    the states whose update reads the spike: ``without_reset()`` removes those updates.
    """

    exact: bool
    reason: str
    spike_driven: tuple[str, ...] = ()

    def explain(self) -> str:
        head = "exact parallel mode possible" if self.exact else "sequential only"
        return f"{head}: {self.reason}"


@functools.lru_cache(maxsize=256)
def classify_as_written(spec: NeuronSpec) -> ResetVerdict:
    """Verdict on the neuron with its reset (see :class:`ResetVerdict`)."""
    spike = next((s for e in (x for _, x in spec.reset) for s in e.free_symbols if s.name == "spike"), None)
    driven = tuple(st for st, (_, e) in zip(spec.states, spec.reset) if spike is not None and e.has(spike))
    charge = classify(spec)
    if not driven:
        return ResetVerdict(charge.parallelizable, "no spike-driven update, so the reset-free verdict applies", driven)
    if not charge.parallelizable:
        return ResetVerdict(False, f"charge of {charge.state} is nonlinear in the states: {charge.term}", driven)
    _, charged, _, _ = spec.symbols()
    h_syms = set(charged.values())
    for state, (_, expr) in zip(spec.states, spec.reset):
        if not _Affine(h_syms).affine(expr):
            return ResetVerdict(False, f"reset of {state} is nonlinear in the charged states: "
                                       f"{_offending_term(expr, h_syms)}", driven)
    return ResetVerdict(True, "given the spike train every update is affine in the states "
                              "(reset as a gated linear update)", driven)
