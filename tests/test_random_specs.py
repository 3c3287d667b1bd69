"""Random valid neuron classes, built at runtime from ``neurodsl.testing``'s one generator: generated module ==
reference loop.

``neurodsl.testing.cases`` draws a neuron (1-4 states, 1-2 inputs, random expression trees over every
supported function, numeric or parameter-named state defaults, any state firing, hard / soft / jump /
keep / expression resets or none), a surrogate (alpha learnable or not), a learnable set, detach_reset,
T, a 1-3 dim per-step shape and sometimes initial states. Each draw is checked with
``check_against_reference`` and raises on a mismatch, so hypothesis shrinks a failure to a small spec;
at least 80% of the draws must be compared (a draw compares nothing only when every neuron flips at
the threshold or the reference's fire values are not finite, and that reason is recorded).
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings

import neurodsl as nd
from neurodsl.testing import cases, check_against_reference, initial_states, inputs_for, neurons
from neurodsl.testing.strategies import BINARY, UNARY, evaluate

from helpers import compare


def check_draw(case):
    """Check one draw; raise on a mismatch (hypothesis shrinks it), return the result."""
    layer, T, shape, seed, with_init = case
    init = initial_states(layer, shape, seed=seed) if with_init else None
    xs = inputs_for(layer, T, shape, seed=seed, init=init)
    result = check_against_reference(layer, *xs, init=init)
    assert not result.failures, f"{type(layer).__name__}: {result.summary()}"
    return result


def assert_mostly_compared(results):
    compared = [r for r in results if r.ok]
    assert len(compared) >= 0.8 * len(results), [r.summary() for r in results if not r.ok]
    assert all(r.skipped for r in results if not r.ok)  # every draw not compared has its reason
    assert sum(r.compared.get("spikes", 0) for r in compared) > 0


def test_random_specs_torch_match_reference():
    results = []

    @given(cases(backend="torch"))
    def run(case):
        results.append(check_draw(case))

    run()
    assert_mostly_compared(results)


def test_random_specs_triton_interpreter_match_reference():
    results = []

    @settings(max_examples=max(3, settings.default.max_examples // 4))  # the interpreter is slower
    @given(cases(backend="triton", max_steps=3, max_states=3))
    def run(case):
        results.append(check_draw(case))

    run()
    assert_mostly_compared(results)


@given(cls=neurons())
def test_random_spec_captures_every_state_and_input(cls):
    spec = cls.spec
    assert len(spec.charge) == len(spec.states) == len(spec.reset)
    assert spec.inputs == tuple(f"x{i}" for i in range(len(spec.inputs)))
    x_syms = {sym.name for _, e in spec.charge for sym in e.free_symbols if sym.name.startswith("x_")}
    assert x_syms == {f"x_{i}" for i in spec.inputs}
    assert cls.spec is cls.variant_spec()


def _node_charge(tree):
    def charge(self, x):
        return dict(v=0.7 * self.v + nd.tanh(evaluate(tree, {"v": self.v, "x": x})) + x)
    return charge


@pytest.mark.parametrize("kind", sorted(UNARY) + sorted(BINARY))
def test_every_tree_node_is_supported(kind):
    """Each node kind of the generator builds a valid single-state neuron and matches the reference."""
    tree = (kind, ("leaf", "v")) if kind in UNARY else (kind, ("leaf", "v"), ("leaf", "x"))
    cls = type(f"Node_{kind}", (nd.Neuron,), dict(
        v=nd.State(0.11), charge=_node_charge(tree), fire=lambda self: self.v - 1.0,
        reset=lambda self, s: dict(v=self.v * (1 - s))))
    layer = cls(backend="torch", learnable=(), surrogate=nd.surrogate.Sigmoid(learnable=True))
    xs = inputs_for(layer, 4, (30,), seed=1)
    result = check_against_reference(layer, *xs).assert_ok()
    assert 0 < result.rate < 1


def _kink_neuron(fn):
    def charge(self, x):
        return dict(v=fn(self.v) + x)
    return type("Kink", (nd.Neuron,), dict(v=nd.State(0.0), charge=charge, fire=lambda self: self.v - 1.0,
                                           reset=lambda self, s: dict(v=self.v * (1 - s))))


@pytest.mark.parametrize("fn", [nd.relu, lambda v: nd.maximum(v, 0.0), lambda v: nd.clamp(v, 0.0, 5.0), abs],
                         ids=["relu", "maximum", "clamp", "abs"])
def test_kink_at_reset_value_matches_reference(fn):
    """relu/maximum/clamp/abs of a state that sits exactly at the kink (default 0, hard reset to 0).

    This is not a measure-zero event: every step after a reset (and the first step) evaluates the
    kink exactly, so the kernel and the reference must agree on the subgradient there.
    """
    layer = _kink_neuron(fn)(backend="torch")
    x = torch.tensor([[2.0, 0.3], [0.5, 0.4], [0.3, 0.2]])
    compare(layer, x)
