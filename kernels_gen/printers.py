"""Print sympy expressions as Triton (``tl.*``) or torch (``torch.*``) code.

Both printers share precedence handling with sympy's ``StrPrinter`` and differ only
in the function table. Constant subexpressions (``exp(2)``) are folded to floats
first, integer powers become products, so the same expression prints the same way
for compiled Triton, the Triton interpreter and torch.

>>> import sympy as sp
>>> x = sp.Symbol("x", real=True)
>>> TritonPrinter().doprint(x**2 + sp.exp(x))
'(x*x) + tl.exp(x)'
>>> TorchPrinter().doprint(x / sp.Symbol("y", real=True)**2)
'x/(y*y)'
>>> TorchPrinter().doprint(sp.Max(x, 0))
'torch.clamp(x, min=0.0)'
"""
from __future__ import annotations

import numpy as np
import sympy as sp
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

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


def fold_constants(expr: sp.Expr) -> sp.Expr:
    """Replace every numeric non-literal subexpression (``exp(2)``, ``pi``) by a Float."""
    replacements = {}
    for sub in sp.preorder_traversal(expr):
        if getattr(sub, "is_number", False) and not sub.is_Number and not isinstance(sub, sp.logic.boolalg.BooleanAtom):
            value = sub.evalf(20)
            if not value.is_Number:
                raise CodegenError("ND201", f"constant {sub} is not a real number")
            replacements[sub] = sp.Float(value)
    return expr.xreplace(replacements) if replacements else expr


class _KernelPrinter(StrPrinter):
    """Shared rules; subclasses fill ``call`` names and the few backend-specific forms."""

    module = ""
    funcs: dict[str, str] = {}

    def doprint(self, expr):  # noqa: D401 - sympy API
        return super().doprint(fold_constants(sp.sympify(expr)))

    def _call(self, fn: str, *args) -> str:
        return f"{fn}({', '.join(self._print(a) for a in args)})"

    # numbers -------------------------------------------------------------
    def _print_Integer(self, expr):
        return f"{float(expr.p)!r}"

    def _print_Rational(self, expr):
        return f"{float(expr)!r}"

    def _print_Float(self, expr):
        value = float(expr)
        if value != value or value in (float("inf"), float("-inf")):
            raise CodegenError("ND202", f"non-finite constant {expr} in generated code")
        return repr(value)

    def _print_Half(self, expr):
        return "0.5"

    def _print_One(self, expr):
        return "1.0"

    def _print_Zero(self, expr):
        return "0.0"

    def _print_NegativeOne(self, expr):
        return "-1.0"

    def _print_BooleanTrue(self, expr):
        return "True"

    def _print_BooleanFalse(self, expr):
        return "False"

    def _print_Infinity(self, expr):
        raise CodegenError("ND202", "infinite constant in generated code")

    _print_NegativeInfinity = _print_Infinity
    _print_NaN = _print_Infinity
    _print_ComplexInfinity = _print_Infinity

    # arithmetic ----------------------------------------------------------
    def _print_Pow(self, expr, rational=False):
        base, exp = expr.args
        prec = PRECEDENCE["Mul"]
        if exp.is_Integer and 0 < abs(int(exp)) <= 8:
            n = abs(int(exp))
            body = "*".join([self.parenthesize(base, PRECEDENCE["Pow"] + 1)] * n)
            body = f"({body})" if n > 1 else body  # a product must stay one factor, e.g. in a denominator
            return f"1.0/{body}" if exp < 0 else body
        if exp == sp.Rational(1, 2):
            return self._call(self.funcs["sqrt"], base)
        if exp == sp.Rational(-1, 2):
            return f"1.0/{self._call(self.funcs['sqrt'], base)}"
        return self._real_pow(base, exp, prec)  # each backend's printer defines _real_pow

    def _print_Function(self, expr):
        name = type(expr).__name__
        if name in self.funcs:
            return self._call(self.funcs[name], *expr.args)
        raise CodegenError("ND203", f"function '{name}' has no {self.module} printer; "
                                    f"supported: {', '.join(sorted(self.funcs))}")

    def _print_Piecewise(self, expr):
        *pieces, (last_value, last_cond) = expr.args
        if last_cond != sp.true:
            raise CodegenError("ND204", f"Piecewise without a default branch: {expr}")
        out = self._print(last_value)
        for value, cond in reversed(pieces):
            out = self._where(cond, value, out)
        return out

    def _print_Heaviside(self, expr):
        arg = expr.args[0]
        h0 = expr.args[1] if len(expr.args) > 1 else sp.Rational(1, 2)
        inner = self._where(sp.Eq(arg, 0), h0, sp.Float(0.0))
        return self._where(arg > 0, sp.Float(1.0), inner)

    def _print_sign(self, expr):
        arg = expr.args[0]
        inner = self._where(arg < 0, sp.Float(-1.0), "0.0")
        return self._where(arg > 0, sp.Float(1.0), inner)

    def _print_Max(self, expr):
        return self._min_max(expr, "maximum")

    def _print_Min(self, expr):
        return self._min_max(expr, "minimum")

    def _min_max(self, expr, which):
        args = list(expr.args)
        out = self._print(args[0])
        for other in args[1:]:
            out = f"{self.funcs[which]}({out}, {self._print(other)})"
        return out

    def _print_Relational(self, expr):
        op = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}[expr.rel_op]
        prec = PRECEDENCE["Relational"]
        return f"({self.parenthesize(expr.lhs, prec)} {op} {self.parenthesize(expr.rhs, prec)})"

    def _print_And(self, expr):
        return "(" + " & ".join(self._print(a) for a in expr.args) + ")"

    def _print_Or(self, expr):
        return "(" + " | ".join(self._print(a) for a in expr.args) + ")"

    def _print_ITE(self, expr):
        """Boolean if-then-else (sympy writes it for conditions on piecewise values)."""
        cond, a, b = expr.args
        return self._where(cond, a, b)

    def _print_Not(self, expr):
        return f"(~{self._print(expr.args[0])})"

    def _where(self, cond, a, b):
        b_text = b if isinstance(b, str) else self._print(b)
        return f"{self.funcs['where']}({self._print(cond)}, {self._print(a)}, {b_text})"


class TritonPrinter(_KernelPrinter):
    """Triton ``tl`` code; only core ``tl`` functions, so the interpreter runs it too."""

    module = "triton"
    funcs = {
        "exp": "tl.exp", "log": "tl.log", "sqrt": "tl.sqrt", "sigmoid": "tl.sigmoid", "Abs": "tl.abs",
        "erf": "tl.erf", "maximum": "tl.maximum", "minimum": "tl.minimum", "where": "tl.where",
        "sin": "tl.sin", "cos": "tl.cos", "floor": "tl.floor", "ceiling": "tl.ceil",
        "atan": "_atan",  # helper defined in the Triton template (no core tl.atan)
    }

    def _real_pow(self, base, exp, prec):
        return f"tl.exp({self._print(exp)}*tl.log({self._print(base)}))"

    def _where(self, cond, a, b):
        """tl.where materialises two literal branches as fp32: give inexact constants the compute dtype."""
        a_text = self._branch(a)
        b_text = b if isinstance(b, str) else self._branch(b)
        return f"tl.where({self._print(cond)}, {a_text}, {b_text})"

    def _branch(self, value) -> str:
        text = self._print(value)
        if getattr(value, "is_Number", False) and float(np.float32(float(value))) != float(value):
            return f"tl.full((), {text}, COMPUTE)"
        return text

    def _print_tanh(self, expr):
        return f"(2.0*tl.sigmoid(2.0*{self.parenthesize(expr.args[0], PRECEDENCE['Mul'])}) - 1.0)"

    def _print_erfc(self, expr):
        return f"(1.0 - tl.erf({self._print(expr.args[0])}))"


class TorchPrinter(_KernelPrinter):
    """Eager torch code over tensors (parameters are tensors, so every leaf is one)."""

    module = "torch"
    funcs = {
        "exp": "torch.exp", "log": "torch.log", "sqrt": "torch.sqrt", "sigmoid": "torch.sigmoid",
        "Abs": "torch.abs", "erf": "torch.erf", "erfc": "torch.erfc", "tanh": "torch.tanh",
        "maximum": "torch.maximum", "minimum": "torch.minimum", "where": "torch.where",
        "sin": "torch.sin", "cos": "torch.cos", "floor": "torch.floor", "ceiling": "torch.ceil",
        "atan": "torch.atan",
    }

    def _real_pow(self, base, exp, prec):
        return f"{self.parenthesize(base, PRECEDENCE['Pow'] + 1)}**{self.parenthesize(exp, PRECEDENCE['Pow'] + 1)}"

    def _min_max(self, expr, which):
        numbers = [a for a in expr.args if a.is_Number]
        others = [a for a in expr.args if not a.is_Number]
        out = self._print(others[0])
        for other in others[1:]:
            out = f"{self.funcs[which]}({out}, {self._print(other)})"
        for num in numbers:  # sympy keeps at most one folded number
            bound = "min" if which == "maximum" else "max"
            out = f"torch.clamp({out}, {bound}={self._print(num)})"
        return out
