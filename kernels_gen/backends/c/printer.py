"""Expressions as C: sympy's C semantics behind the shared printer hooks, fp32 (``expf``, ``1.0f``) or fp64.

Helpers with no exact libm equivalent (``nd_sigmoid``, NaN-propagating min/max, the repeated squaring of
exact integer powers) are ``static inline`` functions of the generated source's math library
(``mathlib.c.j2``), one per compute dtype (suffix ``f`` for fp32, none for fp64, as in libm).

>>> import sympy as sp
>>> x = sp.Symbol("x", real=True)
>>> CPrinter("float32").doprint(x**2 / 3 + sp.exp(x))
'(x*x)/3.0f + expf(x)'
>>> CPrinter("float64").doprint(x**-13)
'1.0/(nd_sq(nd_sq(nd_sq(x)))*nd_sq(nd_sq(x))*x)'
>>> CPrinter("float32").doprint(sp.Piecewise((x, x > 1), (0, True)))
'((x > 1.0f) ? x : 0.0f)'
"""
from __future__ import annotations

from sympy.printing.precedence import PRECEDENCE

from ...printing import KernelPrinter, integral_exponent, INLINE_POWER_MAX


class CPrinter(KernelPrinter):
    module = "c"

    def __init__(self, compute_dtype: str = "float32", settings=None):
        super().__init__(settings)
        self.compute_dtype = compute_dtype
        f = "f" if compute_dtype == "float32" else ""
        self.suffix = f
        self.SQUARE = f"nd_sq{f}({{0}})"
        self.ctype = "float" if f else "double"
        self.FUNCTIONS = {
            "exp": f"exp{f}({{0}})", "log": f"log{f}({{0}})", "sqrt": f"sqrt{f}({{0}})",
            "sigmoid": f"nd_sigmoid{f}({{0}})", "tanh": f"tanh{f}({{0}})", "erf": f"erf{f}({{0}})",
            "erfc": f"erfc{f}({{0}})", "atan": f"atan{f}({{0}})", "sin": f"sin{f}({{0}})",
            "cos": f"cos{f}({{0}})", "abs": f"fabs{f}({{0}})",
            "minimum": f"nd_min{f}({{0}}, {{1}})", "maximum": f"nd_max{f}({{0}}, {{1}})",
        }

    # numbers: literals of the compute type (a double literal would promote fp32 math to fp64)
    def literal(self, text: str) -> str:
        return text + self.suffix

    def _print_Integer(self, expr):
        return self.literal(super()._print_Integer(expr))

    def _print_Rational(self, expr):
        return self.literal(super()._print_Rational(expr))

    def _print_Float(self, expr):
        return self.literal(super()._print_Float(expr))

    def _print_Half(self, expr):
        return self.literal("0.5")

    def _print_One(self, expr):
        return self.literal("1.0")

    def _print_Zero(self, expr):
        return self.literal("0.0")

    def _print_NegativeOne(self, expr):
        return self.literal("-1.0")

    def _print_BooleanTrue(self, expr):
        return "1"

    def _print_BooleanFalse(self, expr):
        return "0"

    def _print_Not(self, expr):
        return f"(!{self._print(expr.args[0])})"

    def _print_And(self, expr):
        return "(" + " && ".join(self._print(a) for a in expr.args) + ")"

    def _print_Or(self, expr):
        return "(" + " || ".join(self._print(a) for a in expr.args) + ")"

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.args
        n = integral_exponent(exp)
        one = self.literal("1.0")
        if n == 0:
            return one
        if n is not None:
            if abs(n) <= INLINE_POWER_MAX:
                body = "*".join([self.parenthesize(base, PRECEDENCE["Pow"] + 1)] * abs(n))
                body = f"({body})" if abs(n) > 1 else body
            else:
                body = self.integer_power(base, abs(n))
            return f"{one}/{body}" if n < 0 else body
        if exp.is_Rational and exp.q == 2 and abs(exp.p) == 1:
            root = self.apply("sqrt", base)
            return f"{one}/{root}" if exp.p < 0 else root
        return self.real_power(base, exp)

    def real_power(self, base, exp) -> str:
        return f"pow{self.suffix}({self._print(base)}, {self._print(exp)})"

    def _print_sign(self, expr):
        arg = expr.args[0]
        inner = self.where(arg < 0, self.literal("-1.0"), self.literal("0.0"))
        return self.where(arg > 0, self.literal("1.0"), inner)

    def where(self, cond, a, b):
        b_text = b if isinstance(b, str) else self._print(b)
        a_text = a if isinstance(a, str) else self._print(a)
        return f"({self._print(cond)} ? {a_text} : {b_text})"
