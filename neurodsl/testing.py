"""Hypothesis strategies for fuzzing neurodsl (and your own checks).

* :func:`neurons` draws random *valid* neuron classes: 1–4 states, 1–2 inputs, random expression
  trees over the supported functions, with or without a reset. Every draw must compile and match
  :func:`neurodsl.reference_run` forward and backward.
* :func:`invalid_neurons` draws a class body with one defect and the error code it must raise
  (when the class is defined, naming the method).

Trees are kept numerically tame (charges are contractions plus a bounded drive), so fp32 kernels and
the reference stay within tolerance over short sequences.

>>> from hypothesis import given, settings
>>> @settings(max_examples=3, derandomize=True, database=None)
... @given(neurons())
... def check(cls):
...     assert cls.spec.states
>>> check()

Long campaign: ``python -m neurodsl.testing --examples 500`` (see :func:`campaign`).
"""
from __future__ import annotations

import math

from hypothesis import strategies as st

from . import mathfns as m
from .neuron import Neuron
from .spec import Param, State

UNARY = {
    "tanh": m.tanh, "sigmoid": m.sigmoid, "abs": abs, "relu": m.relu,
    "exp": lambda a: m.exp(m.clamp(a, -3.0, 3.0)), "log": lambda a: m.log(1.0 + a * a),
    "sqrt": lambda a: m.sqrt(1.0 + a * a), "square": lambda a: a * a, "erf": m.erf,
}
BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (1.0 + b * b), "min": m.minimum, "max": m.maximum,
    "where": lambda a, b: m.where(a > b, a, b * 0.5), "clamp": lambda a, b: m.clamp(a, -1.0 - b * b, 1.0 + b * b),
    "pow": lambda a, b: (1.0 + a * a) ** m.sigmoid(b),
}


def trees(leaves: list[str], depth: int = 3):
    """Expression trees as nested tuples: ('leaf', name) | ('const', c) | (op, child[, child])."""
    leaf = st.one_of(st.sampled_from(leaves).map(lambda n: ("leaf", n)),
                     st.floats(-1.5, 1.5, allow_nan=False).map(lambda c: ("const", round(c, 3))))
    return st.recursive(leaf, lambda kids: st.one_of(
        st.tuples(st.sampled_from(sorted(UNARY)), kids),
        st.tuples(st.sampled_from(sorted(BINARY)), kids, kids)), max_leaves=2 ** depth)


def evaluate(tree, values: dict):
    """Evaluate a tree with neurodsl's functions (works on sympy symbols and on tensors)."""
    kind = tree[0]
    if kind == "leaf":
        return values[tree[1]]
    if kind == "const":
        return tree[1]
    if kind in UNARY:
        return UNARY[kind](evaluate(tree[1], values))
    return BINARY[kind](evaluate(tree[1], values), evaluate(tree[2], values))


def _values(self, names, inputs=None):
    out = {n: getattr(self, n) for n in names}
    out.update(inputs or {})
    return out


@st.composite
def neurons(draw, max_states: int = 4, max_inputs: int = 2, reset: bool | None = None, depth: int = 3):
    """A random valid ``nd.Neuron`` subclass (see the module docstring)."""
    n_states = draw(st.integers(1, max_states))
    n_inputs = draw(st.integers(1, max_inputs))
    states = [f"s{i}" for i in range(n_states)]
    inputs = [f"x{i}" for i in range(n_inputs)]
    params = {"k": draw(st.floats(0.1, 0.8)), "g": draw(st.floats(0.2, 1.0)), "v_th": draw(st.floats(0.3, 1.2))}
    charge_trees = [draw(trees(states + inputs + list(params), depth)) for _ in states]
    fire_tree = draw(trees(states + list(params), depth))
    with_reset = draw(st.booleans()) if reset is None else reset
    reset_kinds = [draw(st.sampled_from(["hard", "soft", "jump", "keep"])) for _ in states]
    names = states + list(params)

    def charge(self, *xs):
        values = _values(self, names, dict(zip(inputs, xs)))
        drive = sum(xs) / len(xs)
        return {s: self.k * values[s] + self.g * m.tanh(evaluate(t, values)) + 0.5 * drive
                for s, t in zip(states, charge_trees)}

    def fire(self):
        values = _values(self, names)
        return values[states[0]] + 0.3 * m.tanh(evaluate(fire_tree, values)) - self.v_th

    def reset_fn(self, s):
        rules = {"hard": lambda v: v * (1 - s), "soft": lambda v: v - self.v_th * s,
                 "jump": lambda v: v + 0.2 * s, "keep": lambda v: v}
        return {name: rules[kind](getattr(self, name)) for name, kind in zip(states, reset_kinds)}

    charge.__signature__ = _signature(inputs)
    namespace = {s: State(0.0) for s in states}
    namespace.update({p: Param(v) for p, v in params.items()})
    namespace.update(charge=charge, fire=fire, __module__=__name__)
    if with_reset:
        namespace["reset"] = reset_fn
    return type(f"Fuzzed{n_states}s{n_inputs}i", (Neuron,), namespace)


def _signature(inputs):
    import inspect
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in inputs]
    return inspect.Signature(params)


# -- invalid specs ------------------------------------------------------------------------------------
def _base(**methods):
    namespace = {"v": State(0.0), "tau": Param(2.0), "__module__": __name__,
                 "charge": lambda self, x: {"v": self.v + x / self.tau},
                 "fire": lambda self: self.v - 1.0}
    namespace.update(methods)
    return namespace


DEFECTS = {
    "unknown_symbol": ("ND101", "charge", lambda: _base(charge=lambda self, x: {"v": self.v + x / self.tua})),
    "wrong_key": ("ND102", "reset", lambda: _base(reset=lambda self, s: {"vv": self.v * (1 - s)})),
    "non_finite": ("ND107", "charge", lambda: _base(charge=lambda self, x: {"v": self.v + x * math.inf})),
    "nan_constant": ("ND107", "fire", lambda: _base(fire=lambda self: self.v - math.nan)),
    "unsupported_function": ("ND106", "charge", lambda: _base(charge=lambda self, x: {"v": math.exp(self.v) + x})),
    "division_by_zero": ("ND105", "charge", lambda: _base(charge=lambda self, x: {"v": self.v / 0 + x})),
    "non_scalar": ("ND104", "fire", lambda: _base(fire=lambda self: (self.v, self.v))),
    "condition_as_fire": ("ND104", "fire", lambda: _base(fire=lambda self: self.v >= 1.0)),
    "charge_not_dict": ("ND104", "charge", lambda: _base(charge=lambda self, x: self.v + x)),
    "python_branch": ("ND106", "fire", lambda: _base(fire=lambda self: 1.0 if self.v > 1 else 0.0)),
}


@st.composite
def invalid_neurons(draw):
    """(defect name, class namespace, expected code, method at fault)."""
    name = draw(st.sampled_from(sorted(DEFECTS)))
    code, method, make = DEFECTS[name]
    return name, make(), code, method


def check_against_reference(layer, T: int, n: int, seed: int, tol: float = 1e-4, margin: float = 1e-3) -> bool:
    """Forward and backward of ``layer`` vs :func:`neurodsl.reference_run` on random inputs.

    Spikes must be equal, states and every gradient (inputs, learnable params) close. Draws with a
    fire value within ``margin`` of 0 are skipped (returns False): one legitimate rounding flip there
    changes everything after it.
    """
    import torch

    from .reference import reference_run
    gen = torch.Generator().manual_seed(seed)
    xs = [torch.randn(T, n, generator=gen) * 0.5 + 0.5 for _ in layer.spec.inputs]
    with torch.no_grad():
        *_, fire = reference_run(layer, *xs, return_fire=True)
    if not bool(torch.isfinite(fire).all()) or bool((fire.abs() < margin).any()):
        return False
    params = [p for p in layer.parameters() if p.requires_grad]
    xa, xb = [x.clone().requires_grad_() for x in xs], [x.clone().requires_grad_() for x in xs]
    layer.reset_state()
    spikes = layer(*xa)
    finals = [layer.state_value(s) for s in layer.spec.states]
    ref, seqs = reference_run(layer, *xb)
    w = torch.randn(spikes.shape, generator=gen)
    grads = torch.autograd.grad((spikes * w).sum() + sum(f.sum() for f in finals), xa + params)
    ref_grads = torch.autograd.grad((ref * w).sum() + sum(seqs[s][-1].sum() for s in layer.spec.states), xb + params)
    assert torch.equal(spikes, ref), "spikes differ from the reference loop"
    for f, s in zip(finals, layer.spec.states):
        torch.testing.assert_close(f, seqs[s][-1].detach(), rtol=tol, atol=tol)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=tol, atol=tol * max(1.0, float(r.abs().max())))
    return True


def campaign(examples: int = 200) -> tuple[int, int]:
    """Fuzz ``examples`` random valid neurons against the reference loop (torch backend).

    Forward and backward (:func:`check_against_reference`). Returns (specs tried, specs compared:
    draws with a near-threshold fire value are skipped); raises on the first mismatch.
    """
    from hypothesis import HealthCheck, given, settings

    tried = []

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(neurons(), st.integers(1, 6), st.integers(1, 17), st.integers(0, 2 ** 16))
    def run(cls, T, n, data_seed):
        tried.append(check_against_reference(cls(learnable=("k", "g", "v_th")), T, n, data_seed))

    run()
    return len(tried), sum(tried)


if __name__ == "__main__":  # pragma: no cover - the long campaign command
    import argparse
    parser = argparse.ArgumentParser(description="neurodsl spec fuzzing campaign (torch backend)")
    parser.add_argument("--examples", type=int, default=500)
    args = parser.parse_args()
    tried, compared = campaign(args.examples)
    print(f"fuzzed specs: {tried} tried, {compared} compared forward and backward (the rest had a fire value "
          f"within 1e-3 of the threshold), all matched the reference loop")
