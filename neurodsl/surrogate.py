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

import math
from typing import Callable

import sympy as sp

from . import mathfns as m
from .errors import Problem, SpecError

__all__ = ["Surrogate", "Sigmoid", "ATan", "PiecewiseQuadratic", "PiecewiseExp", "SoftSign", "SuperSpike", "Erf",
           "Rect", "Custom", "ALL"]


class Surrogate:
    """Base class: subclasses define ``primitive(u, alpha)`` (or ``gradient`` for gradient-only ones)."""

    default_alpha = 1.0

    def __init__(self, alpha: float | None = None, learnable: bool = False):
        self.alpha = float(self.default_alpha if alpha is None else alpha)
        self.learnable = learnable
        if learnable and not self.has_primitive:
            raise SpecError([Problem("ND131", type(self).__name__, "", "alpha",
                                     "a surrogate defined by its gradient alone cannot learn alpha")])

    has_primitive = True

    def primitive(self, u, alpha):
        """g(u; alpha), a smooth step from 0 to 1; works on sympy and torch. Subclasses define it."""
        raise TypeError(f"{type(self).__name__} defines no primitive")

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
    """Fast sigmoid (Zenke & Ganguli 2018): g = u / (1 + alpha |u|); g' = 1 / (1 + alpha |u|)^2. Default alpha 1."""

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

    def primitive(self, u, alpha):
        return self._primitive(u, alpha)

    def gradient(self, u, alpha):
        return self._gradient(u, alpha)

    def canonical(self) -> str:
        return f"{self.name}:" + super().canonical()

    def __repr__(self):
        return super().__repr__().replace("Custom(", f"{self.name}(", 1)


#: Every built-in surrogate class.
ALL = (Sigmoid, ATan, PiecewiseQuadratic, PiecewiseExp, SoftSign, SuperSpike, Erf, Rect)
