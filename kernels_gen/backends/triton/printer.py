"""Expressions as Triton ``tl`` code: core ``tl`` functions plus :mod:`.mathlib` (imported as ``_nd``), so the
interpreter runs the same kernels as a GPU.

>>> import sympy as sp
>>> x = sp.Symbol("x", real=True)
>>> TritonPrinter("float32").doprint(x**2 + sp.tanh(x))
'(x*x) + _nd.tanh_f32(x)'
>>> TritonPrinter("float32").doprint(x**13)
'(_nd.sq(_nd.sq(_nd.sq(x)))*_nd.sq(_nd.sq(x))*x)'
"""
from __future__ import annotations

import numpy as np

from ...printing import KernelPrinter


class TritonPrinter(KernelPrinter):
    module = "triton"
    WHERE = "tl.where"
    SQUARE = "_nd.sq({0})"

    def __init__(self, compute_dtype: str = "float32", settings=None):
        super().__init__(settings)
        self.compute_dtype = compute_dtype
        suffix = "f64" if compute_dtype == "float64" else "f32"
        self.FUNCTIONS = {
            "exp": "tl.exp({0})", "log": "tl.log({0})", "sqrt": "tl.sqrt({0})", "sigmoid": "tl.sigmoid({0})",
            "tanh": f"_nd.tanh_{suffix}({{0}})", "erf": "tl.erf({0})", "erfc": "_nd.erfc({0})",
            "atan": f"_nd.atan_{suffix}({{0}})", "sin": "tl.sin({0})", "cos": "tl.cos({0})", "abs": "tl.abs({0})",
            "minimum": "tl.minimum({0}, {1})", "maximum": "tl.maximum({0}, {1})",
        }

    def real_power(self, base, exp) -> str:
        return f"tl.exp({self._print(exp)}*tl.log({self._print(base)}))"

    def where(self, cond, a, b):
        """tl.where materialises two literal branches as fp32: give inexact constants the compute dtype."""
        a_text = self._branch(a)
        b_text = b if isinstance(b, str) else self._branch(b)
        return f"tl.where({self._print(cond)}, {a_text}, {b_text})"

    def _branch(self, value) -> str:
        text = self._print(value)
        if getattr(value, "is_Number", False) and float(np.float32(float(value))) != float(value):
            return f"tl.full((), {text}, COMPUTE)"
        return text

