"""Functions usable inside ``charge`` / ``fire`` / ``reset``.

Each works on sympy expressions (when the class is captured) and on torch tensors
(when the reference loop runs the same methods), so one definition serves both.
While a class is captured (:func:`capturing`), numbers stay symbolic too, so
``nd.log(-1.0)`` becomes a constant that validation rejects with a typed error
instead of a ``math`` error, and :func:`where` checks that its condition is one.

>>> import sympy as sp, torch
>>> v = sp.Symbol("v", real=True)
>>> relu(v)
Max(0.0, v)
>>> relu(torch.tensor([-1.0, 2.0]))
tensor([0., 2.])
>>> where(eq(v, 0), 1.0, v)
Piecewise((1.0, Eq(v, 0)), (v, True))
"""
from __future__ import annotations

import contextlib
import contextvars
import numbers

import sympy as sp
import torch

from kernels_gen.functions import REGISTRY

__all__ = ["exp", "log", "sqrt", "sigmoid", "tanh", "relu", "clamp", "minimum", "maximum", "where", "eq", "ne",
           "erf", "erfc", "atan", "sin", "cos", "SUPPORTED_FUNCTIONS", "CaptureProblem", "capturing"]

#: sympy function classes a spec may contain: those of the function registry (kernels_gen.functions), which
#: every backend prints.
SUPPORTED_FUNCTIONS = frozenset(f.sympy_class for f in REGISTRY.values())

_CAPTURING = contextvars.ContextVar("neurodsl_capturing", default=False)


class CaptureProblem(Exception):
    """A misuse found while a method runs on symbols; capture reports it as a ``SpecError`` problem."""

    def __init__(self, code: str, symbol: str, message: str, *exprs):
        super().__init__(message)
        self.code, self.symbol, self.message, self.exprs = code, symbol, message, exprs  # {0}: exprs[0], as written


@contextlib.contextmanager
def capturing():
    """While active, numbers given to these functions stay symbolic and :func:`where` checks its condition."""
    token = _CAPTURING.set(True)
    try:
        yield
    finally:
        _CAPTURING.reset(token)


def _is_tensor(*args) -> bool:
    return any(isinstance(a, torch.Tensor) for a in args)


def _is_symbolic(*args) -> bool:
    return any(isinstance(a, sp.Basic) for a in args)


def _number(x, fn: str):
    """A plain number as a sympy number (inside capture); anything else is no argument for ``fn``."""
    if isinstance(x, bool) or not isinstance(x, numbers.Number):
        raise CaptureProblem("ND106", fn, f"nd.{fn} got {type(x).__name__} {x!r}; pass a number or an expression "
                                          "of states, parameters and inputs")
    return sp.sympify(x)


def _unary(name, sym_fn, torch_fn, float_fn):
    def fn(x):
        if _is_tensor(x):
            return torch_fn(x)
        if _CAPTURING.get() and not _is_symbolic(x):
            x = _number(x, name)
        if _is_symbolic(x):
            # Numbers fold; expressions stay unevaluated: sympy's automatic rewriting of nested functions
            # queries assumptions whose cost grows exponentially with nesting depth.
            return sym_fn(x) if x.is_number else sym_fn(x, evaluate=False)
        return float_fn(x)
    fn.__name__ = name
    fn.__qualname__ = name
    fn.__doc__ = f"{name}(x) on sympy expressions, tensors and floats."
    return fn


def _from_registry(name):
    entry = REGISTRY[name]
    return _unary(name, entry.build, entry.tensor, entry.number)


exp, log, sqrt, sigmoid, tanh, erf, erfc, atan, sin, cos = map(
    _from_registry, ("exp", "log", "sqrt", "sigmoid", "tanh", "erf", "erfc", "atan", "sin", "cos"))


def relu(x):
    """max(x, 0); its gradient at exactly 0 is 1/2 (the kink convention of :func:`maximum`)."""
    return maximum(x, 0.0)


def _tensors(a, b):
    """Both operands as tensors (a number becomes a tensor like the other operand)."""
    like = a if isinstance(a, torch.Tensor) else b
    return tuple(v if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=like.dtype, device=like.device)
                 for v in (a, b))


def _binary(name, sym_fn, torch_fn, float_fn):
    def fn(a, b):
        if _is_tensor(a, b):
            return torch_fn(*_tensors(a, b))
        if _CAPTURING.get() and not _is_symbolic(a, b):
            a, b = _number(a, name), _number(b, name)
        if _is_symbolic(a, b):
            return sym_fn(a, b)
        return float_fn(a, b)
    fn.__name__ = name
    fn.__qualname__ = name
    return fn


minimum = _binary("minimum", REGISTRY["minimum"].build, REGISTRY["minimum"].tensor, REGISTRY["minimum"].number)
minimum.__doc__ = "Elementwise minimum; at a tie the gradient splits equally (Heaviside(0) = 1/2, as derived)."
maximum = _binary("maximum", REGISTRY["maximum"].build, REGISTRY["maximum"].tensor, REGISTRY["maximum"].number)
maximum.__doc__ = "Elementwise maximum; at a tie the gradient splits equally (Heaviside(0) = 1/2, as derived)."
eq = _binary("eq", sp.Eq, torch.eq, lambda a, b: a == b)
eq.__doc__ = ("The condition ``a == b`` for :func:`where` (Python's ``==`` on symbols compares formulas, "
              "not values, so it cannot be used there).")
ne = _binary("ne", sp.Ne, torch.ne, lambda a, b: a != b)
ne.__doc__ = "The condition ``a != b`` for :func:`where` (see :func:`eq`)."


def clamp(x, lo, hi):
    """min(max(x, lo), hi)."""
    return minimum(maximum(x, lo), hi)


_CONDITION_HINT = ("write a comparison such as self.v > 0, nd.eq(a, b) / nd.ne(a, b) for equality (Python's ==, != "
                   "on symbols compare formulas and give a constant True/False), or abs(a - b) < eps; combine "
                   "conditions with &, |, ~")


def _check_condition(cond):
    """Inside capture: ``cond`` must be a sympy condition, not a Python bool or a number-valued expression."""
    if isinstance(cond, (bool, sp.logic.boolalg.Boolean)) and not isinstance(cond, sp.Symbol):
        if isinstance(cond, bool):
            raise CaptureProblem("ND113", "where", f"nd.where got the Python value {cond} as its condition; "
                                                   + _CONDITION_HINT)
        return
    if isinstance(cond, sp.Basic):
        raise CaptureProblem("ND113", "where", "nd.where's condition {0} is not a condition; " + _CONDITION_HINT, cond)
    raise CaptureProblem("ND113", "where", f"nd.where's condition {type(cond).__name__} {cond!r} is not a condition; "
                                           + _CONDITION_HINT)


def where(cond, a, b):
    """``a`` where ``cond`` holds, else ``b`` (cond: a comparison such as ``self.v > 0``, or :func:`eq`)."""
    if _is_tensor(cond, a, b):
        return torch.where(cond, a, b)
    if _CAPTURING.get():
        _check_condition(cond)
        a = a if _is_symbolic(a) else _number(a, "where")
        b = b if _is_symbolic(b) else _number(b, "where")
    if _is_symbolic(cond, a, b):
        return sp.Piecewise((a, cond), (b, True))
    return a if cond else b
