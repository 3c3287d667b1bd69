"""Declarations (``State``, ``Param``) and capture of a neuron class into a plain-data spec.

``capture`` evaluates ``charge``, ``fire`` and ``reset`` once on sympy symbols named
as the kernel plan names them (``v_<state>`` before charge, ``h_<state>`` after,
``x_<input>``, ``p_<param>``, ``spike``) and validates the result, collecting every
problem before raising one :class:`~neurodsl.errors.SpecError` (the checks live in
:mod:`neurodsl.spec_checks`).

>>> import neurodsl as nd
>>> class IFNeuron(nd.Neuron):
...     v = nd.State(0.0)
...     v_th = nd.Param(1.0)
...     def charge(self, x): return dict(v=self.v + x)
...     def fire(self): return self.v - self.v_th
...     def reset(self, s): return dict(v=self.v * (1 - s))
>>> IFNeuron.spec.charge
((h_v, v_v + x_x),)
"""
from __future__ import annotations

import hashlib
import inspect
import keyword
from dataclasses import dataclass

import sympy as sp
import torch

from kernels_gen.plan import SPIKE, charged_name, new_name, input_name, param_name, prev_name, sym

from .errors import Problem, SpecError
from .spec_checks import (agrees_on_tensors, call_on_symbols, check_expression, check_signature, check_variants,
                          default_problem, python_comparisons, real_default, user_text)

__all__ = ["State", "Param", "NeuronSpec", "capture", "check_class_variants", "user_text"]


class _Declaration:
    """Shared descriptor behaviour: on an instance, read the runtime value through ``lookup``."""

    lookup = ""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        return getattr(instance, self.lookup)(self.name)


class State(_Declaration):
    """A neuron state; ``default`` is a number or the name of a parameter (e.g. ``"v_reset"``)."""

    lookup = "state_value"

    def __init__(self, default: float | str = 0.0):
        self.default, self.name = real_default(default), ""

    def __repr__(self):
        return f"State({self.default!r})"


class Param(_Declaration):
    """A neuron parameter with a default value; ``learnable`` is the default for instances.

    ``default`` is a real number (numpy scalars are converted to ``float``); anything else is reported
    (``ND118``) when the class is defined.
    """

    lookup = "param_value"

    def __init__(self, default: float, learnable: bool = False):
        self.default, self.learnable, self.name = real_default(default), learnable, ""

    def __repr__(self):
        return f"Param({self.default!r}, learnable={self.learnable})"


@dataclass(frozen=True)
class NeuronSpec:
    """One neuron variant as plain data: every state has a charge and a reset expression."""

    name: str
    states: tuple[str, ...]
    state_defaults: tuple[float | str, ...]
    params: tuple[str, ...]
    param_defaults: tuple[float, ...]
    inputs: tuple[str, ...]
    options: tuple[tuple[str, object], ...]
    charge: tuple[tuple[sp.Symbol, sp.Expr], ...]   # (h_<state>, expr of v_*, x_*, p_*)
    fire: sp.Expr                                   # expr of h_*, p_*; spike = fire >= 0
    reset: tuple[tuple[sp.Symbol, sp.Expr], ...]    # (n_<state>, expr of h_*, spike, p_*)
    has_reset: bool
    doc: str = ""

    def canonical(self) -> str:
        """Text that changes exactly when the generated code would (defaults excluded: runtime values)."""
        rows = [self.name, repr(self.states), repr(self.params), repr(self.inputs), repr(self.options)]
        rows += [f"{t.name}={sp.srepr(e)}" for t, e in self.charge + self.reset]
        rows.append(f"fire={sp.srepr(self.fire)}")
        return "\n".join(rows)

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:16]

    def symbols(self):
        """Name -> symbol maps used by analysis: (prev, charged, inputs, params)."""
        return ({s: sym(prev_name(s)) for s in self.states}, {s: sym(charged_name(s)) for s in self.states},
                {i: sym(input_name(i)) for i in self.inputs}, {p: sym(param_name(p)) for p in self.params})


class _SymbolicSelf:
    """Stand-in for ``self`` while a method is evaluated on symbols; records unknown names."""

    def __init__(self, recorder, method, values, options, cls):
        for key, value in dict(_recorder=recorder, _method=method, _values=values, _options=options, _cls=cls).items():
            object.__setattr__(self, key, value)

    def __getattr__(self, name):
        if name in self._values:
            return self._values[name]
        if name in self._options:
            return self._options[name]
        if name.startswith("__"):
            raise AttributeError(name)  # protocol probes (copy, numpy, ...) find nothing here
        known = ", ".join(sorted(self._values)) or "none"
        attr = inspect.getattr_static(self._cls, name, _MISSING)
        if attr is _MISSING:
            why = f"unknown symbol 'self.{name}' (known: {known})"
        elif inspect.isfunction(attr) or isinstance(attr, (staticmethod, classmethod)):
            why = (f"'self.{name}' is a method; methods cannot run on the symbols the equations are captured with: "
                   f"use a module-level function of the values instead")
        elif isinstance(attr, property):
            why = f"'self.{name}' is a property; declare it with nd.Param, or compute it inside {self._method}"
        else:
            why = (f"'self.{name}' is a plain class attribute ({attr!r}"[:120] + "), not a declaration: declare it "
                   f"as nd.Param(...) or nd.State(...), or write the number itself (known: {known})")
        self._recorder.add("ND101", self._method, name, why)
        return sp.Symbol(f"unknown_{name}", real=True)

    def __setattr__(self, name, value):
        self._recorder.add("ND104", self._method, name, f"assigns self.{name}; return new values instead")


_MISSING = object()
_MODULE_ATTRIBUTES = frozenset(vars(torch.nn.Module()))  # instance attributes every module has (training, ...)


class _Recorder:
    def __init__(self, cls_name):
        self.cls_name = cls_name
        self.problems: list[Problem] = []

    def add(self, code, method, symbol, message):
        self.problems.append(Problem(code, self.cls_name, method, symbol, message))

    def adder(self, method):
        """``add(code, symbol, message)`` for one method (the form :mod:`.spec_checks` reports through)."""
        return lambda code, symbol, message: self.add(code, method, symbol, message)

    def raise_if_any(self):
        if self.problems:
            raise SpecError(self.problems)


def _valid_name(name: str) -> bool:
    return isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")


def _check_value(rec: _Recorder, method: str, target: str, value):
    """Validate one returned value; returns a sympy expression or None."""
    return check_expression(rec.adder(method), target, value)


def _returned_dict(rec, method, result, states):
    if result is None:
        rec.add("ND114", method, "", f"{method} returns None (a missing `return`?); return dict(state=expr, ...)"
                + ("; return {} to keep every state" if method == "reset" else ""))
        return {}
    if not isinstance(result, dict):
        rec.add("ND104", method, "", f"{method} must return a dict of state -> expression, got {type(result).__name__}")
        return {}
    if not result and method == "charge":
        rec.add("ND114", method, "", "charge returns an empty dict, so the inputs would be ignored; return "
                                     "dict(state=expr, ...) with the new value of at least one state")
    out = {}
    for key, value in result.items():
        if isinstance(key, str) and key not in states:
            rec.add("ND102", method, key, f"returns '{key}', which is not a state (states: {', '.join(states)})")
            continue
        if key not in states:
            shown = user_text(key) if isinstance(key, sp.Basic) else repr(key)
            rec.add("ND102", method, shown, f"returns {shown} as a key, which is not a state name (states: "
                                            f"{', '.join(states)}); write dict(v=...)")
            continue
        expr = _check_value(rec, method, key, value)
        if expr is not None:
            out[key] = expr
    return out


def _check_declarations(rec, cls, declared_states, declared_params, options):
    states, params = list(declared_states), list(declared_params)
    for name in states + params:
        if not _valid_name(name):
            rec.add("ND111", "", name, f"'{name}' is not a valid state/parameter name")
    if not states:
        rec.add("ND112", "", "", "declares no nd.State")
    for name, st in declared_states.items():
        d = st.default
        if isinstance(d, str):
            if d not in declared_params:
                rec.add("ND108", "", name, f"State default {d!r} is neither a number nor a parameter name")
        elif default_problem(d):
            rec.add("ND108", "", name, f"State default: {default_problem(d)}; use a float or a Param's name")
    for name, p in declared_params.items():
        if default_problem(p.default):
            rec.add("ND118", "", name, f"Param default: {default_problem(p.default)}; write nd.Param(2.0) (per-neuron "
                                       f"values go to the constructor: {cls.__name__}({name}=torch.tensor([...])))")
        if not isinstance(p.learnable, bool):
            rec.add("ND118", "", name, f"Param learnable={p.learnable!r}: use True or False")
    for name, decl in {**declared_states, **declared_params}.items():
        found = inspect.getattr_static(cls, name, decl)
        if found is not decl:
            rec.add("ND103", "", name, f"'{name}' is declared with nd.{type(decl).__name__} in a base class, but "
                                       f"{cls.__name__} sets {name} = {found!r}"[:160] + ", which hides it; remove the "
                                       "assignment, or declare it again with nd.State / nd.Param")
    keywords = _constructor_keywords(cls)
    for name in states + params:
        if name in keywords or name in _MODULE_ATTRIBUTES:
            what = "a constructor keyword" if name in keywords else "an nn.Module attribute"
            rec.add("ND103", "", name, f"name '{name}' clashes with {what}; rename it")
    _variant_problems(rec, cls, states, params)


def _variant_problems(rec, cls, states, params) -> None:
    taken = {n: "state" for n in states}
    taken.update({n: "parameter" for n in params})
    taken.update({n: "constructor keyword" for n in _constructor_keywords(cls)})
    for code, symbol, message in check_variants(cls.__name__, getattr(cls, "variants", {}), taken):
        rec.add(code, "", symbol, message)


def check_class_variants(cls) -> None:
    """Raise ``SpecError`` ND119 when ``cls.variants`` cannot be selected (not a dict, values not a non-empty
    tuple of hashable values, a name taken by a state, parameter or constructor keyword).

    ``capture`` runs the same check; call this before selecting a variant, which hashes the values.
    """
    rec = _Recorder(cls.__name__)
    decls = {name: value for klass in reversed(cls.__mro__) for name, value in vars(klass).items()
             if isinstance(value, (State, Param))}
    _variant_problems(rec, cls, [n for n, d in decls.items() if isinstance(d, State)],
                      [n for n, d in decls.items() if isinstance(d, Param)])
    rec.raise_if_any()


def _constructor_keywords(cls) -> list[str]:
    try:
        params = inspect.signature(cls.__init__).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in list(params)[1:] if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _check_methods(rec, cls, equations) -> dict[str, list[str]]:
    """Argument names (after self) of each well-formed method present."""
    args = {}
    for method in ("charge", "fire", "reset"):
        if method not in equations:
            owner = next((k for k in cls.__mro__ if method in vars(k)), None)
            if method == "reset":
                continue
            if owner is not None:
                kind = "a second nd.Neuron base" if hasattr(owner, "_equations") else "not an nd.Neuron subclass"
                rec.add("ND109", method, "", f"'{method}' comes from {owner.__name__} ({kind}); equations are read "
                        f"from the first nd.Neuron base's line only: write {method} = {owner.__name__}.{method} in "
                        f"{cls.__name__}")
            else:
                rec.add("ND109", method, "", f"missing method '{method}'")
            continue
        names = check_signature(rec.adder(method), method, equations[method])
        if names is not None:
            args[method] = names
    if args.get("charge") == []:
        rec.add("ND109", "charge", "", "charge(self, x, ...) needs at least one input argument")
    for name in args.get("charge", []):
        if not _valid_name(name):
            rec.add("ND111", "charge", name, f"input name '{name}' is not valid")
    return args


def capture(cls, equations: dict, declared_states: dict, declared_params: dict, options: dict) -> NeuronSpec:
    """Evaluate the ``equations`` methods (charge, fire, reset) on symbols; return the validated spec."""
    rec = _Recorder(cls.__name__)
    _check_declarations(rec, cls, declared_states, declared_params, options)
    args = _check_methods(rec, cls, equations)
    rec.raise_if_any()

    states, params, inputs = list(declared_states), list(declared_params), args["charge"]
    prev = {s: sym(prev_name(s)) for s in states}
    charged = {s: sym(charged_name(s)) for s in states}
    psyms = {p: sym(param_name(p)) for p in params}
    xsyms = [sym(input_name(i)) for i in inputs]
    spike = sym(SPIKE)
    has_reset = "reset" in equations

    def run(method, values, *call_args):
        python_comparisons(rec.adder(method), method, equations[method], set(values), args[method])
        return call_on_symbols(rec.adder(method), method, equations[method],
                               _SymbolicSelf(rec, method, values, options, cls), *call_args)

    n_before = len(rec.problems)
    charge_val = run("charge", {**prev, **psyms}, *xsyms)
    charge_out = {}
    if charge_val is not None or len(rec.problems) == n_before:  # None after an exception: already reported
        charge_out = _returned_dict(rec, "charge", charge_val, states)
    after_self = {**charged, **psyms}
    n_before = len(rec.problems)
    fire_val = run("fire", after_self)
    fire_expr = None
    if fire_val is None and len(rec.problems) == n_before:
        rec.add("ND114", "fire", "", "fire returns None (a missing `return`?); return one expression, e.g. "
                                     "self.v - self.v_th")
    elif fire_val is not None:
        fire_expr = _check_value(rec, "fire", "fire", fire_val)
    reset_out = {}
    if has_reset:
        n_before = len(rec.problems)
        reset_val = run("reset", after_self, spike)
        if reset_val is not None or len(rec.problems) == n_before:
            reset_out = _returned_dict(rec, "reset", reset_val, states)
    for i, x in enumerate(xsyms):
        if charge_out and not any(e.has(x) for e in charge_out.values()):
            rec.add("ND101", "charge", inputs[i], f"input '{inputs[i]}' is never used by charge")
    allowed_charge = set(prev.values()) | set(psyms.values()) | set(xsyms)
    allowed_after = set(charged.values()) | set(psyms.values())
    for name, expr in charge_out.items():
        _check_symbols(rec, "charge", name, expr, allowed_charge)
    if fire_expr is not None:
        _check_symbols(rec, "fire", "fire", fire_expr, allowed_after)
    for name, expr in reset_out.items():
        _check_symbols(rec, "reset", name, expr, allowed_after | {spike})
    rec.raise_if_any()

    spec = NeuronSpec(
        name=cls.__name__, states=tuple(states),
        state_defaults=tuple(declared_states[s].default for s in states),
        params=tuple(params), param_defaults=tuple(float(declared_params[p].default) for p in params),
        inputs=tuple(inputs), options=tuple(sorted(options.items())),
        charge=tuple((charged[s], charge_out.get(s, prev[s])) for s in states),
        fire=fire_expr,
        reset=tuple((sym(new_name(s)), reset_out.get(s, charged[s])) for s in states),
        has_reset=has_reset, doc=inspect.getdoc(cls) or "",
    )
    _check_on_tensors(rec, spec, equations, options, charge_out, reset_out)
    rec.raise_if_any()
    return spec


# Two generic points: states at default + shift, every input x, spike 1 (values away from kinks and thresholds).
_POINTS = ((0.3137, 0.5173), (-0.2291, -0.6121))


def _check_on_tensors(rec, spec: NeuronSpec, equations, options, charge_out, reset_out) -> None:
    """Each method on float64 tensors (as nd.reference_run runs it) must agree with its captured equation."""
    params = dict(zip(spec.params, spec.param_defaults))
    base = {s: params[d] if isinstance(d, str) else d for s, d in zip(spec.states, spec.state_defaults)}
    prev, charged, inputs, psyms = spec.symbols()
    states = {s: [v + shift for shift, _ in _POINTS] for s, v in base.items()}
    xs = [x for _, x in _POINTS]
    p_at = {psyms[p]: sp.Float(v) for p, v in params.items()}
    at_prev = [{**{prev[s]: sp.Float(v[k]) for s, v in states.items()}, **{inputs[i]: sp.Float(xs[k]) for i in
                                                                             spec.inputs}, **p_at} for k in range(2)]
    at_after = [{**{charged[s]: sp.Float(v[k]) for s, v in states.items()}, **p_at, sym(SPIKE): sp.Float(1.0)}
                for k in range(2)]
    self_values = {**states, **params}
    agrees_on_tensors(rec.adder("charge"), "charge", equations["charge"], self_values, [xs] * len(spec.inputs),
                      at_prev, options, charge_out)
    agrees_on_tensors(rec.adder("fire"), "fire", equations["fire"], self_values, [], at_after, options, spec.fire)
    if spec.has_reset:
        agrees_on_tensors(rec.adder("reset"), "reset", equations["reset"], self_values, [[1.0, 1.0]], at_after,
                          options, reset_out)


_PLAN_PREFIXES = ("v_", "h_", "x_", "p_")


def _check_symbols(rec, method, target, expr, allowed):
    for s in expr.free_symbols - allowed:
        if s.name.startswith("unknown_"):
            continue  # reported where it was read
        shown = user_text(s)
        if s.name[:2] in _PLAN_PREFIXES or s.name == SPIKE:
            rec.add("ND101", method, shown, f"'{target}' uses '{shown}', which is not available in {method}")
        else:
            rec.add("ND101", method, shown, f"'{target}' uses the sympy symbol '{s.name}', which neurodsl did not "
                                            "create: read states and parameters as self.<name>, inputs as charge's "
                                            "arguments")
