"""Hypothesis strategies for fuzzing neurodsl (and your own checks).

* :func:`neurons` draws random *valid* neuron classes: 1–4 states, 1–2 inputs, random expression
  trees over every supported function, state defaults that are numbers or a parameter's name, the
  fire value on any state, and hard / soft / jump / keep / expression resets (or none). Every draw
  must compile and match :func:`neurodsl.reference_run` forward and backward.
* :func:`layers` builds a drawn class with a random surrogate (alpha learnable or not), a random
  set of learnable parameters and ``detach_reset``; :func:`cases` adds T, a per-step shape (1–3
  dims), a data seed and, sometimes, initial states: what the campaign and the fuzz tests check.
* :func:`invalid_neurons` draws a class body with one defect and the error code it must raise
  (when the class is defined, naming the method).

Trees are kept numerically tame: every state is a contraction of itself plus a bounded term of its
tree and the input drive; log and sqrt see ``1 + a**2``, exp a clamped or tanh'd argument. So fp32
kernels and the reference stay within tolerance over short sequences.

>>> from hypothesis import given, settings
>>> @settings(max_examples=3, derandomize=True, database=None)
... @given(neurons())
... def check(cls):
...     assert cls.spec.states
>>> check()
"""
from __future__ import annotations

import inspect
import itertools
import math

from hypothesis import strategies as st
from sympy.logic.boolalg import BooleanAtom

from .. import mathfns as m
from .. import surrogate as sg
from ..neuron import Neuron
from ..spec import Param, State

UNARY = {
    "tanh": m.tanh, "sigmoid": m.sigmoid, "abs": abs, "relu": m.relu, "neg": lambda a: -a,
    "exp": lambda a: m.exp(m.clamp(a, -3.0, 3.0)), "exp_tanh": lambda a: m.exp(m.tanh(a)),
    "log": lambda a: m.log(1.0 + a * a), "sqrt": lambda a: m.sqrt(1.0 + a * a), "square": lambda a: a * a,
    "cube_tanh": lambda a: m.tanh(a) ** 3, "erf": m.erf, "atan": m.atan,
    "pow_frac": lambda a: (1.0 + m.sigmoid(a)) ** 1.5,
}
BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (1.0 + b * b), "min": m.minimum, "max": m.maximum,
    "where": lambda a, b: _where(a > b, a, b * 0.5), "clamp": lambda a, b: m.clamp(a, -1.0 - b * b, 1.0 + b * b),
    "pow": lambda a, b: (1.0 + a * a) ** m.sigmoid(b),
}


def _where(cond, a, b):
    """nd.where, or the chosen branch when both sides are numbers (a constant condition is a spec error)."""
    if isinstance(cond, (bool, BooleanAtom)):
        return a if cond else b
    return m.where(cond, a, b)


BOUNDS = {"tanh": m.tanh, "sigmoid": lambda a: m.sigmoid(a) - 0.5, "clamp": lambda a: m.clamp(a, -1.0, 1.0)}
#: How a drawn reset updates a state (``s`` the spike): what the generated kernels must differentiate.
RESETS = ("hard", "hard_to", "soft", "jump", "keep", "tree")
STATE_DEFAULTS = (0.0, 0.0, 0.11, -0.23, 0.4, "g")  # a number or a parameter's name
DECAYS = (1.0, 0.6, 1.2)  # times k (at most 0.8): every state contracts
_counter = itertools.count()


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
    """A random valid ``nd.Neuron`` subclass with parameters ``k``, ``g``, ``v_th`` (see the module docstring)."""
    n_states = draw(st.integers(1, max_states))
    n_inputs = draw(st.integers(1, max_inputs))
    states = [f"s{i}" for i in range(n_states)]
    inputs = [f"x{i}" for i in range(n_inputs)]
    params = {"k": draw(st.floats(0.1, 0.8)), "g": draw(st.floats(0.2, 1.0)), "v_th": draw(st.floats(0.3, 1.2))}
    names = states + list(params)
    defaults = [draw(st.sampled_from(STATE_DEFAULTS)) for _ in states]
    decays = [draw(st.sampled_from(DECAYS)) for _ in states]
    bounds = [draw(st.sampled_from(sorted(BOUNDS))) for _ in states]
    charge_trees = [draw(trees(states + inputs + list(params), depth)) for _ in states]
    fire_state = draw(st.sampled_from(states))
    drive_all = draw(st.booleans())  # the input drive reaches every state, or only the one that fires
    fire_tree = draw(trees(names, depth))
    with_reset = draw(st.booleans()) if reset is None else reset
    reset_kinds = [draw(st.sampled_from(RESETS)) for _ in states]
    reset_trees = [draw(trees(names, max(1, depth - 1))) if kind == "tree" else None for kind in reset_kinds]

    def charge(self, *xs):
        values = _values(self, names, dict(zip(inputs, xs)))
        drive = sum(xs) / len(xs)
        return {s: decay * self.k * values[s] + self.g * BOUNDS[bound](evaluate(t, values))
                + (0.5 * drive if drive_all or s == fire_state else 0.0)
                for s, decay, bound, t in zip(states, decays, bounds, charge_trees)}

    def fire(self):
        values = _values(self, names)
        return values[fire_state] + 0.3 * m.tanh(evaluate(fire_tree, values)) - self.v_th

    def reset_fn(self, s):
        values = _values(self, names)
        rules = {"hard": lambda v, t: v * (1 - s), "hard_to": lambda v, t: v * (1 - s) + self.g * s,
                 "soft": lambda v, t: v - self.v_th * s, "jump": lambda v, t: v + 0.2 * s,
                 "keep": lambda v, t: v, "tree": lambda v, t: v + s * m.tanh(evaluate(t, values))}
        return {name: rules[kind](values[name], t) for name, kind, t in zip(states, reset_kinds, reset_trees)}

    charge.__signature__ = _signature(inputs)
    namespace = {s: State(d) for s, d in zip(states, defaults)}
    namespace.update({p: Param(v) for p, v in params.items()})
    namespace.update(charge=charge, fire=fire, __module__=__name__)
    if with_reset:
        namespace["reset"] = reset_fn
    return type(f"Fuzzed{next(_counter)}_{n_states}s{n_inputs}i", (Neuron,), namespace)


def _signature(inputs):
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in inputs]
    return inspect.Signature(params)


#: Surrogates :func:`layers` draws from: (factory, can learn alpha).
SURROGATES = (sg.ATan, sg.Sigmoid, sg.Erf, sg.SuperSpike, sg.SoftSign, sg.PiecewiseExp, sg.PiecewiseQuadratic,
              sg.Rect)


@st.composite
def layers(draw, backend: str = "torch", **neuron_kw):
    """A layer of a :func:`neurons` class: random surrogate (learnable alpha or not), random learnable
    parameters, random ``detach_reset``."""
    cls = draw(neurons(**neuron_kw))
    learnable = draw(st.lists(st.sampled_from(cls.spec.params), unique=True))
    surrogate = draw(st.sampled_from(SURROGATES))(learnable=draw(st.booleans()))
    return cls(backend=backend, surrogate=surrogate, learnable=tuple(learnable), detach_reset=draw(st.booleans()))


#: Per-step shapes :func:`cases` draws from (1–3 dims, at most 36 neurons).
SHAPES = st.one_of(st.tuples(st.integers(1, 21)), st.tuples(st.integers(1, 3), st.integers(1, 12)),
                   st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 6)))


@st.composite
def cases(draw, backend: str = "torch", max_steps: int = 6, **neuron_kw):
    """(layer, T, per-step shape, data seed, with initial states): one draw of a fuzz campaign."""
    return (draw(layers(backend, **neuron_kw)), draw(st.integers(1, max_steps)), draw(SHAPES),
            draw(st.integers(0, 2 ** 16)), draw(st.booleans()))


def describe(cls) -> dict:
    """A neuron class's equations as text (charge, fire, reset), e.g. to report a failing draw."""
    spec = cls.spec
    return {"name": cls.__name__, "states": dict(zip(spec.states, map(str, spec.state_defaults))),
            "params": {p: cls._params_decl[p].default for p in spec.params},
            "charge": {str(t): str(e) for t, e in spec.charge}, "fire": str(spec.fire),
            "reset": {str(t): str(e) for t, e in spec.reset} if spec.has_reset else {}}


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
