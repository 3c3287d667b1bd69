"""The one function registry: every function a neuron's equations may use.

Each :class:`MathFunction` carries its sympy form (what a captured spec contains), its tensor implementation
(what the reference loop runs) and its float implementation (constants at class definition), plus the
relative error generated code may have against torch. The DSL (``neurodsl.mathfns``) builds ``nd.exp``, ...
from it; spec validation accepts exactly its sympy classes; every backend's printer must print every entry
(checked when the backend registers, and swept over magnitudes 1e-30..1e3 by tests/test_functions.py).

>>> sorted(f.name for f in REGISTRY.values())[:4]
['abs', 'atan', 'cos', 'erf']
>>> REGISTRY["sigmoid"].tensor(__import__("torch").tensor(0.0)).item()
0.5
>>> float(fold_constants(sigmoid(sp.Integer(0)) + sp.pi))
3.641592653589793
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import sympy as sp
import torch

from .errors import CodegenError


class sigmoid(sp.Function):
    """Logistic function, kept symbolic so it prints as one fused call."""

    is_real = True

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    @classmethod
    def eval(cls, arg):
        if arg.is_Number:
            return 1 / (1 + sp.exp(-arg))
        return None


def _sigmoid_float(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@dataclass(frozen=True)
class MathFunction:
    """A function usable in equations: its sympy form, tensor and float implementations, and accuracy.

    ``sympy_class``: the class name it has inside a captured expression (``Abs`` for ``abs``).
    ``domain``: where it is defined on the reals (sweep tests draw from there).
    ``rel_tol``: the largest relative error generated fp32 code may have against torch over that domain
    (plus an absolute floor of ``rel_tol`` near results of 0). ``structural`` entries (powers, conditions,
    sign, Heaviside) are printed by :class:`~kernels_gen.printing.KernelPrinter` from the backend's hooks;
    every other entry needs one printing rule per backend.
    """

    name: str
    sympy_class: str
    arity: int
    build: Callable
    tensor: Callable
    number: Callable
    domain: str = "real"          # 'real' | 'positive' | 'nonnegative'
    rel_tol: float = 2e-6
    structural: bool = False      # printed from sympy's own node (Pow, Piecewise, ...) by the shared printer

    def __call__(self, *args):
        return self.build(*args)


def _where_tensor(cond, a, b):
    return torch.where(cond, a, b)


_ENTRIES = [
    MathFunction("exp", "exp", 1, sp.exp, torch.exp, math.exp),
    MathFunction("log", "log", 1, sp.log, torch.log, math.log, domain="positive"),
    MathFunction("sqrt", "sqrt", 1, sp.sqrt, torch.sqrt, math.sqrt, domain="nonnegative"),
    MathFunction("sigmoid", "sigmoid", 1, sigmoid, torch.sigmoid, _sigmoid_float),
    MathFunction("tanh", "tanh", 1, sp.tanh, torch.tanh, math.tanh),
    MathFunction("erf", "erf", 1, sp.erf, torch.erf, math.erf),
    MathFunction("erfc", "erfc", 1, sp.erfc, torch.erfc, math.erfc, rel_tol=2e-5),
    MathFunction("atan", "atan", 1, sp.atan, torch.atan, math.atan),
    MathFunction("sin", "sin", 1, sp.sin, torch.sin, math.sin, rel_tol=1e-5),
    MathFunction("cos", "cos", 1, sp.cos, torch.cos, math.cos, rel_tol=1e-5),
    MathFunction("abs", "Abs", 1, sp.Abs, torch.abs, abs),
    MathFunction("sign", "sign", 1, sp.sign, torch.sign, lambda x: float((x > 0) - (x < 0)), structural=True),
    MathFunction("minimum", "Min", 2, sp.Min, torch.minimum, min),
    MathFunction("maximum", "Max", 2, sp.Max, torch.maximum, max),
    MathFunction("pow", "Pow", 2, sp.Pow, torch.pow, math.pow, domain="positive", rel_tol=1e-5, structural=True),
    MathFunction("where", "Piecewise", 3, lambda c, a, b: sp.Piecewise((a, c), (b, True)), _where_tensor,
                 lambda c, a, b: a if c else b, structural=True),
    MathFunction("heaviside", "Heaviside", 1, sp.Heaviside, lambda x: torch.heaviside(x, torch.full_like(x, 0.5)),
                 lambda x: 1.0 if x > 0 else (0.5 if x == 0 else 0.0), structural=True),
]

#: DSL name -> entry.
REGISTRY: dict[str, MathFunction] = {f.name: f for f in _ENTRIES}
#: sympy class name -> entry (what validation and the printers look up).
BY_SYMPY_CLASS: dict[str, MathFunction] = {f.sympy_class: f for f in _ENTRIES}


def lookup(sympy_class: str) -> MathFunction | None:
    """The entry for a sympy class name found in an expression (None: not supported)."""
    return BY_SYMPY_CLASS.get(sympy_class)


def fold_constants(expr: sp.Expr) -> sp.Expr:
    """Replace every numeric non-literal subexpression (``exp(2)``, ``pi``) by a Float.

    Raises ``CodegenError`` ND201 when such a constant is not a real number (``log(-1)``).
    """
    replacements = {}
    for sub in sp.preorder_traversal(expr):
        if getattr(sub, "is_number", False) and not sub.is_Number and not isinstance(sub, sp.logic.boolalg.BooleanAtom):
            value = sub.evalf(20)
            if not value.is_Number:
                raise CodegenError("ND201", f"constant {sub} is not a real number")
            replacements[sub] = sp.Float(value)
    return expr.xreplace(replacements) if replacements else expr
