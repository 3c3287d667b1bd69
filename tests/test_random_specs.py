"""Random valid neuron classes, built at runtime: generated module == reference loop.

A hypothesis strategy draws 1-3 states, 1-2 inputs, random parameter values and random
expression trees over every supported function, with or without a reset, and builds the class
with ``type(name, (nd.Neuron,), namespace)``. Expressions are kept numerically tame: new states
are a contraction of the old one plus a bounded (tanh / sigmoid / clamp) term, log and sqrt only
see positive arguments (1 + e**2), and kinked functions (abs, relu, min, max, where, clamp) get
an offset so that states sitting exactly at a reset value never hit a kink.
"""
from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import neurodsl as nd

from helpers import compare, safe_inputs

# Distinct "odd" constants: offsets never cancel parameter values or reset values exactly.
OFFSETS = (0.173, -0.291, 0.417, -0.0637, 0.5531)
PARAM_VALUES = (0.35, 0.62, 0.8, 1.25, 1.7)
STATE_DEFAULTS = (0.0, 0.11, -0.23, 0.4)
DECAYS = (0.3, 0.55, 0.8, 0.95)
_counter = itertools.count()


# -- expression trees: nested tuples, evaluated on whatever `self` holds (sympy or torch) ------------
UNARY = ("tanh", "sigmoid", "exp_tanh", "log1p_sq", "sqrt1p_sq", "abs", "relu", "neg", "square", "cube_tanh",
         "atan", "erf", "pow_frac")
BINARY = ("add", "sub", "mul", "div_pos", "min", "max", "where", "clamp")


def leaves(names):
    return st.one_of(st.sampled_from([("sym", n) for n in names]), st.sampled_from([("const", c) for c in OFFSETS]))


def trees(names, max_leaves=6):
    def extend(children):
        return st.one_of(
            st.tuples(st.sampled_from(UNARY), children, st.sampled_from(OFFSETS)),
            st.tuples(st.sampled_from(BINARY), children, children, st.sampled_from(OFFSETS)),
        )
    return st.recursive(leaves(names), extend, max_leaves=max_leaves)


def evaluate(tree, env):
    kind = tree[0]
    if kind == "sym":
        return env[tree[1]]
    if kind == "const":
        return tree[1]
    if kind in UNARY:
        a, c = evaluate(tree[1], env), tree[2]
        return {
            "tanh": lambda: nd.tanh(a),
            "sigmoid": lambda: nd.sigmoid(a),
            "exp_tanh": lambda: nd.exp(nd.tanh(a)),
            "log1p_sq": lambda: nd.log(1 + nd.tanh(a) ** 2),
            "sqrt1p_sq": lambda: nd.sqrt(1 + nd.tanh(a) ** 2),
            "abs": lambda: abs(a + c),
            "relu": lambda: nd.relu(a + c),
            "neg": lambda: -a,
            "square": lambda: nd.tanh(a) ** 2,
            "cube_tanh": lambda: nd.tanh(a) ** 3,
            "atan": lambda: nd.atan(a),
            "erf": lambda: nd.erf(nd.tanh(a)),
            "pow_frac": lambda: (1 + nd.sigmoid(a)) ** 1.5,
        }[kind]()
    a, b, c = evaluate(tree[1], env), evaluate(tree[2], env), tree[3]
    return {
        "add": lambda: a + b,
        "sub": lambda: a - b,
        "mul": lambda: nd.tanh(a) * b,
        "div_pos": lambda: a / (1 + nd.tanh(b) ** 2),
        "min": lambda: nd.minimum(a, b + c),
        "max": lambda: nd.maximum(a + c, b),
        "where": lambda: nd.where(a + 0 * b > c, b, -b),
        "clamp": lambda: nd.clamp(a, -abs(c) - 0.5, abs(c) + 0.5) + 0 * b,
    }[kind]()


BOUNDS = ("tanh", "sigmoid", "clamp")


def bounded(kind, value):
    if kind == "tanh":
        return nd.tanh(value)
    if kind == "sigmoid":
        return nd.sigmoid(value) - 0.5
    return nd.clamp(value, -1.0, 1.0)


def _make_method(name, args, body):
    """A real function with the named arguments (capture reads charge's signature)."""
    src = f"def {name}(self, {', '.join(args)}):\n    return _body(self, {', '.join(args)})\n"
    scope = {"_body": body}
    exec(src, scope)  # noqa: S102 - test-only construction of a method with a given signature
    return scope[name]


@st.composite
def neuron_classes(draw, max_states=3, max_inputs=2):
    n_states = draw(st.integers(1, max_states))
    n_inputs = draw(st.integers(1, max_inputs))
    n_params = draw(st.integers(1, 3))
    states = [f"s{i}" for i in range(n_states)]
    inputs = [f"x{i}" for i in range(n_inputs)]
    params = [f"p{i}" for i in range(n_params)]
    defaults = [draw(st.sampled_from(STATE_DEFAULTS + tuple(params))) for _ in states]
    param_values = {p: draw(st.sampled_from(PARAM_VALUES)) for p in params}

    charge_trees = {s: draw(trees(states + inputs + params)) for s in states}
    charge_bounds = {s: draw(st.sampled_from(BOUNDS)) for s in states}
    decays = {s: draw(st.sampled_from(DECAYS)) for s in states}
    fire_state = draw(st.sampled_from(states))
    fire_tree = draw(trees(states + params, max_leaves=4))
    fire_threshold = draw(st.sampled_from(params + ["one"]))
    reset_kind = draw(st.sampled_from(["none", "hard", "soft", "tree"]))
    reset_state = draw(st.sampled_from(states))
    reset_tree = draw(trees(states + params, max_leaves=3))

    def charge_body(self, *xs):
        env = {**{s: getattr(self, s) for s in states}, **dict(zip(inputs, xs)),
               **{p: getattr(self, p) for p in params}}
        drive = sum(xs)  # every input reaches the first state
        out = {}
        for i, s in enumerate(states):
            term = bounded(charge_bounds[s], evaluate(charge_trees[s], env))
            out[s] = decays[s] * env[s] + term + (drive if i == 0 else 0)
        return out

    def fire_body(self):
        env = {**{s: getattr(self, s) for s in states}, **{p: getattr(self, p) for p in params}}
        threshold = 1.0 if fire_threshold == "one" else env[fire_threshold]
        return env[fire_state] - threshold + 0.3 * nd.tanh(evaluate(fire_tree, env))

    def reset_body(self, s):
        env = {**{k: getattr(self, k) for k in states}, **{p: getattr(self, p) for p in params}}
        v = env[reset_state]
        if reset_kind == "hard":
            new = v * (1 - s) + env[params[0]] * s
        elif reset_kind == "soft":
            new = v - env[params[-1]] * s
        else:
            new = v + s * nd.tanh(evaluate(reset_tree, env))
        return {reset_state: new}

    namespace = {s: nd.State(d) for s, d in zip(states, defaults)}
    namespace.update({p: nd.Param(param_values[p]) for p in params})
    namespace["charge"] = _make_method("charge", inputs, charge_body)
    namespace["fire"] = _make_method("fire", [], lambda self: fire_body(self))
    if reset_kind != "none":
        namespace["reset"] = _make_method("reset", ["s"], reset_body)
    name = f"Random{next(_counter)}"
    return type(name, (nd.Neuron,), namespace)


SURROGATES = st.sampled_from([
    lambda: nd.surrogate.ATan(), lambda: nd.surrogate.Sigmoid(learnable=True), lambda: nd.surrogate.Erf(),
    lambda: nd.surrogate.SuperSpike(learnable=True), lambda: nd.surrogate.SoftSign(),
    lambda: nd.surrogate.PiecewiseExp(learnable=True),
])


@st.composite
def layers(draw, backend="torch"):
    cls = draw(neuron_classes())
    learnable = draw(st.lists(st.sampled_from(cls.spec.params), unique=True))
    layer = cls(backend=backend, surrogate=draw(SURROGATES)(), learnable=tuple(learnable),
                detach_reset=draw(st.booleans()))
    return layer


@given(layer=layers(), T=st.integers(1, 6), n=st.integers(1, 21), seed=st.integers(0, 2**16))
def test_random_spec_torch_matches_reference(layer, T, n, seed):
    xs = safe_inputs(layer, T, (n,), seed=seed, offset=0.5, scale=1.0)
    assume(xs is not None)
    compare(layer, *xs)


@settings(max_examples=max(4, settings.default.max_examples // 3))  # the interpreter is slower
@given(layer=layers(backend="triton"), seed=st.integers(0, 2**16))
def test_random_spec_triton_interpreter_matches_reference(layer, seed):
    xs = safe_inputs(layer, 3, (2, 3), seed=seed, offset=0.5, scale=1.0)
    assume(xs is not None)
    compare(layer, *xs)


@given(cls=neuron_classes())
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


def test_every_tree_node_is_supported():
    """Each node kind builds a valid single-state neuron and matches the reference."""
    for kind in UNARY + BINARY:
        tree = (kind, ("sym", "v"), 0.173) if kind in UNARY else (kind, ("sym", "v"), ("sym", "x"), 0.173)
        cls = type(f"Node_{kind}", (nd.Neuron,), dict(
            v=nd.State(0.11), charge=_node_charge(tree), fire=lambda self: self.v - 1.0,
            reset=lambda self, s: dict(v=self.v * (1 - s))))
        layer = cls(backend="torch")
        xs = safe_inputs(layer, 4, (6,), seed=1, offset=0.5)
        assert xs is not None
        compare(layer, *xs)


def _kink_neuron(fn):
    def charge(self, x):
        return dict(v=fn(self.v) + x)
    return type("Kink", (nd.Neuron,), dict(v=nd.State(0.0), charge=charge, fire=lambda self: self.v - 1.0,
                                           reset=lambda self, s: dict(v=self.v * (1 - s))))


@pytest.mark.parametrize("fn", [nd.relu, lambda v: nd.maximum(v, 0.0), lambda v: nd.clamp(v, 0.0, 5.0)],
                         ids=["relu", "maximum", "clamp"])
def test_kink_at_reset_value_matches_reference(fn):
    """relu/maximum/clamp of a state that sits exactly at the kink (default 0, hard reset to 0).

    This is not a measure-zero event: every step after a reset (and the first step) evaluates the
    kink exactly, so the kernel and the reference must agree on the subgradient there.
    """
    layer = _kink_neuron(fn)(backend="torch")
    x = torch.tensor([[2.0, 0.3], [0.5, 0.4], [0.3, 0.2]])
    compare(layer, x)
