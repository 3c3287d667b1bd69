"""Surrogate gradients for the spike Θ(u): forward is always ``u >= 0``.

A surrogate is defined by its *primitive* g(u; alpha), written with neurodsl's math
functions so it works on sympy (the compiler derives g' and dg/dalpha) and on torch
(the reference loop differentiates it with autograd). A custom surrogate may instead
give only its gradient. ``alpha`` is a runtime value and may be learnable.

>>> import sympy as sp
>>> u = sp.Symbol("u", real=True)
>>> sp.simplify(ATan().derivative(u, sp.Symbol("a")) - (sp.Symbol("a") / 2) / (1 + (sp.pi * sp.Symbol("a") * u / 2) ** 2))
0
"""
from __future__ import annotations

import inspect
import math
import numbers
from typing import Callable

import sympy as sp
import torch

from . import mathfns as m
from .errors import Problem, SpecError
from .spec_checks import call_on_symbols, check_expression

__all__ = ["Surrogate", "Sigmoid", "ATan", "PiecewiseQuadratic", "PiecewiseExp", "SoftSign", "SuperSpike", "Erf",
           "Rect", "Custom", "ALL"]


class Surrogate:
    """Base class: subclasses define ``primitive(u, alpha)`` (or ``gradient`` for gradient-only ones)."""

    default_alpha = 1.0

    def __init__(self, alpha: float | None = None, learnable: bool = False):
        alpha = self.default_alpha if alpha is None else alpha
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < float(alpha) < math.inf:
            raise SpecError([Problem("ND120", type(self).__name__, "", "alpha", f"alpha={alpha!r}: alpha must be a "
                                     "positive finite number, e.g. alpha=2.0")])
        self.alpha = float(alpha)
        self.learnable = learnable
        if learnable and not self.has_primitive:
            raise SpecError([Problem("ND131", type(self).__name__, "", "alpha",
                                     "a surrogate defined by its gradient alone cannot learn alpha")])

    has_primitive = True

    def primitive(self, u, alpha):
        """g(u; alpha), a smooth step from 0 to 1; works on sympy and torch. Subclasses define it."""
        raise TypeError(f"{type(self).__name__} defines no primitive")

    def is_step(self) -> bool:
        """Whether the primitive rises from 0 to 1 (what smooth mode emits as spikes); SuperSpike's does not."""
        if not self.has_primitive:
            return False
        far = torch.tensor([-1e4, 1e4], dtype=torch.float64)
        ends = self.primitive(far, torch.tensor(self.alpha, dtype=torch.float64))
        return bool(abs(float(ends[0])) < 1e-3 and abs(float(ends[1]) - 1.0) < 1e-3)

    def gradient(self, u, alpha):
        """dg/du; for a surrogate with a primitive, sympy's derivative of it."""
        return sp.diff(self.primitive(u, alpha), u)

    # -- symbolic forms used by the analysis --------------------------------
    def derivative(self, u: sp.Symbol, alpha: sp.Symbol) -> sp.Expr:
        if self.has_primitive:
            return sp.diff(self.primitive(u, alpha), u)
        return sp.sympify(self.gradient(u, alpha))

    def alpha_derivative(self, u: sp.Symbol, alpha: sp.Symbol) -> sp.Expr:
        return sp.diff(self.primitive(u, alpha), alpha)

    def canonical(self) -> str:
        """Text identifying the surrogate's formula (not alpha's value); computed once."""
        if "_canonical" not in self.__dict__:
            u, a = sp.Symbol("u", real=True), sp.Symbol("alpha", real=True)
            form = self.primitive(u, a) if self.has_primitive else self.gradient(u, a)
            self._canonical = f"{type(self).__name__}:{self.has_primitive}:{sp.srepr(sp.sympify(form))}"
        return self._canonical

    def __repr__(self):
        extra = ", learnable=True" if self.learnable else ""
        return f"{type(self).__name__}(alpha={self.alpha:g}{extra})"


class Sigmoid(Surrogate):
    """g = sigmoid(alpha u); g' = alpha s (1 - s). Default alpha 4."""
    default_alpha = 4.0

    def primitive(self, u, alpha):
        return m.sigmoid(alpha * u)


class ATan(Surrogate):
    """g = atan(pi alpha u / 2) / pi + 1/2; g' = (alpha/2) / (1 + (pi alpha u / 2)^2). Default alpha 2."""
    default_alpha = 2.0

    def primitive(self, u, alpha):
        pi = sp.pi if isinstance(u, sp.Basic) else math.pi
        return m.atan(pi * alpha * u / 2) / pi + 0.5


class PiecewiseQuadratic(Surrogate):
    """g' = alpha - alpha^2 |u| for |u| <= 1/alpha, else 0. Default alpha 1."""

    def primitive(self, u, alpha):
        inner = -alpha ** 2 * u * abs(u) / 2 + alpha * u + 0.5
        return m.where(u > 1 / alpha, 1.0 + 0 * u, m.where(u < -1 / alpha, 0.0 * u, inner))


class PiecewiseExp(Surrogate):
    """g' = (alpha/2) exp(-alpha |u|). Default alpha 1."""

    def primitive(self, u, alpha):
        return m.where(u < 0, m.exp(alpha * u) / 2, 1 - m.exp(-alpha * u) / 2)


class SoftSign(Surrogate):
    """g = (alpha u / (1 + |alpha u|) + 1) / 2; g' = 1 / (2 alpha (1/alpha + |u|)^2). Default alpha 2."""
    default_alpha = 2.0

    def primitive(self, u, alpha):
        return (alpha * u / (1 + abs(alpha * u)) + 1) / 2


class SuperSpike(Surrogate):
    """Fast sigmoid (Zenke & Ganguli 2018): g = u / (1 + alpha |u|); g' = 1 / (1 + alpha |u|)^2. Default alpha 1.

    g rises from -1/alpha to 1/alpha, not from 0 to 1, so smooth mode refuses it (ND131): a step with this
    gradient does not exist unless alpha = 2."""

    def primitive(self, u, alpha):
        return u / (1 + alpha * abs(u))


class Erf(Surrogate):
    """g = erfc(-alpha u) / 2; g' = (alpha / sqrt(pi)) exp(-(alpha u)^2). Default alpha 2."""
    default_alpha = 2.0

    def primitive(self, u, alpha):
        return m.erfc(-alpha * u) / 2


class Rect(Surrogate):
    """g' = alpha for |u| < 0.5/alpha, else 0. Default alpha 1."""

    def primitive(self, u, alpha):
        return m.where(abs(u) < 0.5 / alpha, alpha * u + 0.5, m.where(u < 0, 0.0 * u, 1.0 + 0 * u))


class Custom(Surrogate):
    """A user surrogate from a primitive g(u, alpha) or a gradient g'(u, alpha) (neurodsl math functions).

    >>> import neurodsl as nd
    >>> sg = Custom(primitive=lambda u, a: nd.sigmoid(a * u), alpha=3.0)
    >>> sg.alpha
    3.0
    """

    def __init__(self, primitive: Callable | None = None, gradient: Callable | None = None,
                 alpha: float = 1.0, learnable: bool = False, name: str = "Custom"):
        if (primitive is None) == (gradient is None):
            raise SpecError([Problem("ND132", "Custom", "", "", "give exactly one of primitive= or gradient=")])
        self._primitive, self._gradient, self.name = primitive, gradient, name
        self.has_primitive = primitive is not None
        super().__init__(alpha, learnable)
        _validate_custom(self, primitive or gradient, "primitive" if self.has_primitive else "gradient")

    def primitive(self, u, alpha):
        return self._primitive(u, alpha)

    def gradient(self, u, alpha):
        return self._gradient(u, alpha)

    def canonical(self) -> str:
        return f"{self.name}:" + super().canonical()

    def __repr__(self):
        return super().__repr__().replace("Custom(", f"{self.name}(", 1)


def _validate_custom(sg: Custom, fn, role: str) -> None:
    """Check a custom form like a spec's equations, on symbols and on tensors; raise ND120 with every problem.

    On symbols it must be one supported expression of u and alpha that depends on u (and so must its
    derivatives, which the kernels use); on a tensor of u values it must give finite values of the same
    shape (the reference loop, ``nd.reference_run``, runs it on tensors).
    """
    problems: list[Problem] = []

    def add(code, symbol, message):
        problems.append(Problem("ND120", sg.name, role, symbol, message))

    u, a = sp.Symbol("u", real=True), sp.Symbol("alpha", real=True)
    try:
        inspect.signature(fn).bind(u, a)
    except (TypeError, ValueError):
        add("ND120", "", f"{role}= must be a function of two arguments (u, alpha), got {fn!r}"[:200])
        raise SpecError(problems) from None
    expr = call_on_symbols(add, role, fn, u, a)
    expr = None if expr is None else check_expression(add, role, expr)
    if expr is not None:
        extra = sorted(s.name for s in expr.free_symbols - {u, a})
        if extra:
            add("ND120", extra[0], f"{role} uses {', '.join(extra)}; it may use only its arguments u and alpha")
        elif not expr.has(u):
            add("ND120", "u", f"{role} does not depend on u ({expr}), so no gradient would flow")
        derived = [("d/du", sp.diff(expr, u))] if sg.has_primitive else []
        derived += [("d/dalpha", sp.diff(expr, a))] if sg.has_primitive and sg.learnable else []
        for what, d in derived if not problems else []:
            check_expression(add, f"{role} {what}", d)
    if not problems:
        _check_on_tensors(add, role, fn, sg.alpha)
    if problems:
        raise SpecError(problems)


def _check_on_tensors(add, role, fn, alpha) -> None:
    u = torch.linspace(-3.0, 3.0, 13, dtype=torch.float64)
    try:
        out = fn(u, torch.tensor(alpha, dtype=torch.float64))
    except Exception as err:  # noqa: BLE001 - any failure is reported as the typed error
        add("ND120", "", f"{role} works on symbols but fails on tensors ({type(err).__name__}: {err}); write it with "
                         "neurodsl's functions (nd.exp, nd.where, ...), which work on both")
        return
    if not isinstance(out, torch.Tensor) or out.shape != u.shape:
        add("ND120", "", f"{role} on a tensor of u values must give a tensor of the same shape, got "
                         f"{type(out).__name__}{tuple(getattr(out, 'shape', ()))}; use only u and alpha in it")
    elif not torch.isfinite(out).all():
        add("ND120", "", f"{role} gives non-finite values for some u in [-3, 3]; a surrogate must be finite everywhere")


#: Every built-in surrogate class.
ALL = (Sigmoid, ATan, PiecewiseQuadratic, PiecewiseExp, SoftSign, SuperSpike, Erf, Rect)
