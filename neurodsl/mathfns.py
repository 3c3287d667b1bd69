"""Functions usable inside ``charge`` / ``fire`` / ``reset``.

Each works on sympy expressions (when the class is captured) and on torch tensors
(when the reference loop runs the same methods), so one definition serves both.

>>> import sympy as sp, torch
>>> v = sp.Symbol("v", real=True)
>>> relu(v)
Max(0.0, v)
>>> relu(torch.tensor([-1.0, 2.0]))
tensor([0., 2.])
"""
from __future__ import annotations

import math

import sympy as sp
import torch

from kernels_gen.printers import sigmoid as _sym_sigmoid

__all__ = ["exp", "log", "sqrt", "sigmoid", "tanh", "relu", "clamp", "minimum", "maximum", "where", "erf",
           "erfc", "atan", "SUPPORTED_FUNCTIONS"]

#: sympy function classes a spec may contain (printable on every backend).
SUPPORTED_FUNCTIONS = frozenset({"exp", "log", "sigmoid", "tanh", "Abs", "Max", "Min", "Piecewise", "erf", "erfc",
                                 "atan", "sign", "Heaviside"})


def _is_tensor(*args) -> bool:
    return any(isinstance(a, torch.Tensor) for a in args)


def _is_symbolic(*args) -> bool:
    return any(isinstance(a, sp.Basic) for a in args)


def _unary(sym_fn, torch_fn, float_fn):
    def fn(x):
        if _is_tensor(x):
            return torch_fn(x)
        if _is_symbolic(x):
            return sym_fn(x)
        return float_fn(x)
    fn.__name__ = torch_fn.__name__
    fn.__doc__ = f"{fn.__name__}(x) on sympy expressions, tensors and floats."
    return fn


exp = _unary(sp.exp, torch.exp, math.exp)
log = _unary(sp.log, torch.log, math.log)
sqrt = _unary(sp.sqrt, torch.sqrt, math.sqrt)
sigmoid = _unary(_sym_sigmoid, torch.sigmoid, lambda x: 1.0 / (1.0 + math.exp(-x)))
tanh = _unary(sp.tanh, torch.tanh, math.tanh)
erf = _unary(sp.erf, torch.erf, math.erf)
erfc = _unary(sp.erfc, torch.erfc, math.erfc)
atan = _unary(sp.atan, torch.atan, math.atan)


def relu(x):
    """max(x, 0); its gradient at exactly 0 is 1/2 (the kink convention of :func:`maximum`)."""
    return maximum(x, 0.0)


def _tensors(a, b):
    """Both operands as tensors (a number becomes a tensor like the other operand)."""
    like = a if isinstance(a, torch.Tensor) else b
    return tuple(v if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=like.dtype, device=like.device)
                 for v in (a, b))


def minimum(a, b):
    """Elementwise minimum; at a tie the gradient splits equally (Heaviside(0) = 1/2, as derived)."""
    if _is_tensor(a, b):
        return torch.minimum(*_tensors(a, b))
    if _is_symbolic(a, b):
        return sp.Min(a, b)
    return min(a, b)


def maximum(a, b):
    """Elementwise maximum; at a tie the gradient splits equally (Heaviside(0) = 1/2, as derived)."""
    if _is_tensor(a, b):
        return torch.maximum(*_tensors(a, b))
    if _is_symbolic(a, b):
        return sp.Max(a, b)
    return max(a, b)


def clamp(x, lo, hi):
    """min(max(x, lo), hi)."""
    return minimum(maximum(x, lo), hi)


def where(cond, a, b):
    """``a`` where ``cond`` holds, else ``b`` (cond: a comparison such as ``self.v > 0``)."""
    if _is_tensor(cond, a, b):
        return torch.where(cond, a, b)
    if _is_symbolic(cond, a, b):
        return sp.Piecewise((a, cond), (b, True))
    return a if cond else b
