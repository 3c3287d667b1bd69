"""Declarations (``State``, ``Param``) and capture of a neuron class into a plain-data spec.

``capture`` evaluates ``charge``, ``fire`` and ``reset`` once on sympy symbols named
as the kernel plan names them (``v_<state>`` before charge, ``h_<state>`` after,
``x_<input>``, ``p_<param>``, ``spike``) and validates the result, collecting every
problem before raising one :class:`~neurodsl.errors.SpecError`.

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

from kernels_gen.plan import SPIKE, charged_name, new_name, input_name, param_name, prev_name, sym

from .errors import Problem, SpecError
from .mathfns import SUPPORTED_FUNCTIONS


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

    def __init__(self, default: float | str = 0.0, doc: str = ""):
        self.default, self.doc, self.name = default, doc, ""

    def __repr__(self):
        return f"State({self.default!r})"


class Param(_Declaration):
    """A neuron parameter with a default value; ``learnable`` is the default for instances."""

    lookup = "param_value"

    def __init__(self, default: float, learnable: bool = False, doc: str = ""):
        self.default, self.learnable, self.doc, self.name = default, learnable, doc, ""

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

    def __init__(self, recorder, method, values, options):
        object.__setattr__(self, "_recorder", recorder)
        object.__setattr__(self, "_method", method)
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_options", options)

    def __getattr__(self, name):
        if name in self._values:
            return self._values[name]
        if name in self._options:
            return self._options[name]
        known = ", ".join(sorted(self._values)) or "none"
        self._recorder.add("ND101", self._method, name, f"unknown symbol 'self.{name}' (known: {known})")
        return sp.Symbol(f"unknown_{name}", real=True)

    def __setattr__(self, name, value):
        self._recorder.add("ND104", self._method, name, f"assigns self.{name}; return new values instead")


class _Recorder:
    def __init__(self, cls_name):
        self.cls_name = cls_name
        self.problems: list[Problem] = []

    def add(self, code, method, symbol, message):
        self.problems.append(Problem(code, self.cls_name, method, symbol, message))

    def raise_if_any(self):
        if self.problems:
            raise SpecError(self.problems)


def user_text(expr) -> str:
    """An expression as the user wrote it: plan names (h_v, p_tau, x_x) shown as v, tau, x."""
    expr = sp.sympify(expr)
    names = {s: sp.Symbol(s.name.split("_", 1)[1]) for s in expr.free_symbols if s.name[:2] in ("v_", "h_", "x_", "p_")}
    return sp.sstr(expr.xreplace(names))


def _valid_name(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")


def _call(rec: _Recorder, method: str, fn, *args):
    try:
        return fn(*args)
    except TypeError as err:
        rec.add("ND106", method, "", f"unsupported operation on a symbol: {err}; use neurodsl functions "
                                     f"(nd.exp, nd.where, ...) instead of math/torch/if")
    except ZeroDivisionError:
        rec.add("ND105", method, "", "division by a constant zero")
    return None


def _check_expr(rec: _Recorder, method: str, target: str, value):
    """Validate one returned value; returns a sympy expression or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, sp.Basic)):
        rec.add("ND104", method, target, f"'{target}' must be one scalar expression, got {type(value).__name__}")
        return None
    expr = sp.sympify(value)
    boolean = (sp.core.relational.Relational, sp.logic.boolalg.BooleanFunction, sp.logic.boolalg.BooleanAtom)
    if isinstance(expr, boolean) or not isinstance(expr, sp.Expr):  # a bare Symbol is also a sympy Boolean
        rec.add("ND104", method, target, f"'{target}' is a condition ({user_text(expr)}); return a number-valued "
                                         "expression (fire: return v - v_th, not v >= v_th)")
        return None
    if expr.has(sp.zoo):
        rec.add("ND105", method, target, f"'{target}' divides by a constant zero: {user_text(expr)}")
        return None
    if expr.has(sp.nan, sp.oo, -sp.oo):
        rec.add("ND107", method, target, f"'{target}' contains a non-finite constant: {user_text(expr)}")
        return None
    for fn in expr.atoms(sp.Function):
        if type(fn).__name__ not in SUPPORTED_FUNCTIONS:
            rec.add("ND106", method, type(fn).__name__, f"function '{type(fn).__name__}' is not supported")
    if any(s.name.startswith("unknown_") for s in expr.free_symbols):
        return None
    return expr


def _returned_dict(rec, method, result, states):
    if result is None:
        return {}
    if not isinstance(result, dict):
        rec.add("ND104", method, "", f"{method} must return a dict of state -> expression, got {type(result).__name__}")
        return {}
    out = {}
    for key, value in result.items():
        if key not in states:
            rec.add("ND102", method, str(key), f"returns '{key}', which is not a state (states: {', '.join(states)})")
            continue
        expr = _check_expr(rec, method, key, value)
        if expr is not None:
            out[key] = expr
    return out


def capture(cls, equations: dict, declared_states: dict, declared_params: dict, options: dict) -> NeuronSpec:
    """Evaluate the ``equations`` methods (charge, fire, reset) on symbols; return the validated spec."""
    rec = _Recorder(cls.__name__)
    states, params = list(declared_states), list(declared_params)
    for name in states + params:
        if not _valid_name(name):
            rec.add("ND111", "", name, f"'{name}' is not a valid state/parameter name")
    if not states:
        rec.add("ND112", "", "", "declares no nd.State")
    for name, st in declared_states.items():
        d = st.default
        if isinstance(d, str) and d not in declared_params or not isinstance(d, (int, float, str)) or isinstance(d, bool):
            rec.add("ND108", "", name, f"State default {d!r} is neither a number nor a parameter name")
    for method in ("charge", "fire"):
        if not callable(equations.get(method)):
            rec.add("ND109", method, "", f"missing method '{method}'")
    rec.raise_if_any()

    inputs = [p for p in list(inspect.signature(equations['charge']).parameters)[1:]]
    if not inputs:
        rec.add("ND109", "charge", "", "charge(self, x, ...) needs at least one input argument")
    for name in inputs:
        if not _valid_name(name):
            rec.add("ND111", "charge", name, f"input name '{name}' is not valid")
    rec.raise_if_any()

    prev = {s: sym(prev_name(s)) for s in states}
    charged = {s: sym(charged_name(s)) for s in states}
    psyms = {p: sym(param_name(p)) for p in params}
    xsyms = [sym(input_name(i)) for i in inputs]
    spike = sym(SPIKE)

    charge_self = _SymbolicSelf(rec, "charge", {**prev, **psyms}, options)
    charge_out = _returned_dict(rec, "charge", _call(rec, "charge", equations["charge"], charge_self, *xsyms), states)
    after_self = {**charged, **psyms}
    fire_val = _call(rec, "fire", equations["fire"], _SymbolicSelf(rec, "fire", after_self, options))
    fire_expr = _check_expr(rec, "fire", "fire", fire_val) if fire_val is not None or not rec.problems else None
    has_reset = callable(equations.get("reset"))
    reset_out = {}
    if has_reset:
        reset_val = _call(rec, "reset", equations["reset"], _SymbolicSelf(rec, "reset", after_self, options), spike)
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

    return NeuronSpec(
        name=cls.__name__, states=tuple(states),
        state_defaults=tuple(declared_states[s].default for s in states),
        params=tuple(params), param_defaults=tuple(float(declared_params[p].default) for p in params),
        inputs=tuple(inputs), options=tuple(sorted(options.items())),
        charge=tuple((charged[s], charge_out.get(s, prev[s])) for s in states),
        fire=fire_expr,
        reset=tuple((sym(new_name(s)), reset_out.get(s, charged[s])) for s in states),
        has_reset=has_reset, doc=inspect.getdoc(cls) or "",
    )


def _check_symbols(rec, method, target, expr, allowed):
    for s in expr.free_symbols - allowed:
        shown = user_text(s)
        rec.add("ND101", method, shown, f"'{target}' uses '{shown}', which is not available in {method}")
