"""Expressions as eager torch code over tensors (parameters are tensors, so every leaf is one).

>>> import sympy as sp
>>> x, y = sp.symbols("x y", real=True)
>>> TorchPrinter().doprint(x / y**2)
'x/(y*y)'
>>> TorchPrinter().doprint(sp.Max(x, 0))
'torch.clamp(x, min=0.0)'
>>> TorchPrinter().doprint(x**11)
'torch.pow(x, 11.0)'
"""
from __future__ import annotations

from sympy.printing.precedence import PRECEDENCE

from ...printing import KernelPrinter


class TorchPrinter(KernelPrinter):
    module = "torch"
    WHERE = "torch.where"
    FUNCTIONS = {
        "exp": "torch.exp({0})", "log": "torch.log({0})", "sqrt": "torch.sqrt({0})", "sigmoid": "torch.sigmoid({0})",
        "tanh": "torch.tanh({0})", "erf": "torch.erf({0})", "erfc": "torch.erfc({0})", "atan": "torch.atan({0})",
        "sin": "torch.sin({0})", "cos": "torch.cos({0})", "abs": "torch.abs({0})",
        "minimum": "torch.minimum({0}, {1})", "maximum": "torch.maximum({0}, {1})",
    }

    def integer_power(self, base, n: int) -> str:
        # C pow() is exact in sign for integral exponents, and torch calls it per element
        return f"torch.pow({self._print(base)}, {float(n)!r})"

    def real_power(self, base, exp) -> str:
        return f"{self.parenthesize(base, PRECEDENCE['Pow'] + 1)}**{self.parenthesize(exp, PRECEDENCE['Pow'] + 1)}"

    def min_max(self, expr, which):
        numbers = [a for a in expr.args if a.is_Number]
        others = [a for a in expr.args if not a.is_Number]
        out = self._print(others[0])
        for other in others[1:]:
            out = self.FUNCTIONS[which].format(out, self._print(other))
        for num in numbers:  # sympy keeps at most one folded number
            bound = "min" if which == "maximum" else "max"
            out = f"torch.clamp({out}, {bound}={self._print(num)})"
        return out

