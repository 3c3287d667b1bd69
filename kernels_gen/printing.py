"""What every backend's expression printer shares: precedence, numbers, powers, conditions, functions.

A backend subclasses :class:`KernelPrinter` and fills its hooks: ``FUNCTIONS`` (one rule per entry of the
function registry, :mod:`kernels_gen.functions`: a format string over the printed arguments, or a method
name), ``WHERE`` (the select call) and :meth:`KernelPrinter.real_power` / :meth:`KernelPrinter.integer_power`.
Constant subexpressions (``exp(2)``) are folded to floats first, so every backend prints the same numbers.

>>> import sympy as sp
>>> from kernels_gen.backends.torch.printer import TorchPrinter
>>> x = sp.Symbol("x", real=True)
>>> TorchPrinter().doprint(x**2 + sp.exp(x))
'(x*x) + torch.exp(x)'
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from .errors import CodegenError
from .functions import REGISTRY, fold_constants, lookup

#: Integer exponents up to this size print as products (x*x*x); larger ones go through the backend's
#: ``integer_power`` (exact repeated squaring), never through exp/log.
INLINE_POWER_MAX = 8


def integral_exponent(exp: sp.Expr) -> int | None:
    """The exponent as an int when it is integer-valued (``9`` or ``9.0``), else None."""
    if exp.is_Integer:
        return int(exp)
    if exp.is_Float and float(exp).is_integer() and abs(float(exp)) < 2 ** 31:
        return int(float(exp))
    return None


class KernelPrinter(StrPrinter):
    """Shared printing rules; a backend fills the hooks (see the module docstring)."""

    module = ""
    FUNCTIONS: dict[str, str] = {}
    WHERE = "where"

    def __init__(self, settings=None):
        super().__init__(settings)
        self.helpers_used: set[str] = set()  # backend helper functions the printed code calls

    def check_registry(self) -> None:
        """Every registry function has a printing rule here (a backend is incomplete otherwise)."""
        missing = sorted(name for name, f in REGISTRY.items() if not f.structural and name not in self.FUNCTIONS)
        if missing:
            raise TypeError(f"{type(self).__name__} has no printing rule for {', '.join(missing)}")

    def doprint(self, expr):  # noqa: D401 - sympy API
        return super().doprint(fold_constants(sp.sympify(expr)))

    def call(self, fn: str, *args) -> str:
        return f"{fn}({', '.join(a if isinstance(a, str) else self._print(a) for a in args)})"

    def apply(self, name: str, *args) -> str:
        """Print registry function ``name`` on ``args`` with this backend's rule (a format string)."""
        return self.FUNCTIONS[name].format(*(a if isinstance(a, str) else self._print(a) for a in args))

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
        n = integral_exponent(exp)
        if n == 0:
            return "1.0"
        if n is not None and abs(n) <= INLINE_POWER_MAX:
            body = "*".join([self.parenthesize(base, PRECEDENCE["Pow"] + 1)] * abs(n))
            body = f"({body})" if abs(n) > 1 else body  # a product must stay one factor, e.g. in a denominator
            return f"1.0/{body}" if n < 0 else body
        if n is not None:
            power = self.integer_power(base, abs(n))
            return f"1.0/{power}" if n < 0 else power
        if exp == sp.Rational(1, 2):
            return self.apply("sqrt", base)
        if exp == sp.Rational(-1, 2):
            return f"1.0/{self.apply('sqrt', base)}"
        return self.real_power(base, exp)

    #: the square of ``{0}`` in this backend's device library: :meth:`integer_power` squares repeatedly with it
    SQUARE = ""

    def integer_power(self, base, n: int) -> str:
        """``base ** n`` for an integer n > INLINE_POWER_MAX, exactly (no exp/log): one :attr:`SQUARE` chain per
        set bit of n, multiplied."""
        factors, text = [], self._print(base)
        for bit in range(n.bit_length()):
            if n >> bit & 1:
                factors.append(text)
            text = self.SQUARE.format(text)
        return "(" + "*".join(reversed(factors)) + ")"

    def real_power(self, base, exp) -> str:
        """``base ** exp`` for a non-integer exponent."""
        raise NotImplementedError

    def _print_Function(self, expr):
        entry = lookup(type(expr).__name__)
        if entry is None or entry.structural or entry.name not in self.FUNCTIONS:
            raise CodegenError("ND203", f"function '{type(expr).__name__}' has no {self.module} printer; "
                                        f"supported: {', '.join(sorted(REGISTRY))}")
        return self.apply(entry.name, *expr.args)

    def _print_Piecewise(self, expr):
        *pieces, (last_value, last_cond) = expr.args
        if last_cond != sp.true:
            raise CodegenError("ND204", f"Piecewise without a default branch: {expr}")
        out = self._print(last_value)
        for value, cond in reversed(pieces):
            out = self.where(cond, value, out)
        return out

    def _print_Heaviside(self, expr):
        arg = expr.args[0]
        h0 = expr.args[1] if len(expr.args) > 1 else sp.Rational(1, 2)
        inner = self.where(sp.Eq(arg, 0), h0, sp.Float(0.0))
        return self.where(arg > 0, sp.Float(1.0), inner)

    def _print_sign(self, expr):
        arg = expr.args[0]
        inner = self.where(arg < 0, sp.Float(-1.0), "0.0")
        return self.where(arg > 0, sp.Float(1.0), inner)

    def _print_Max(self, expr):
        return self.min_max(expr, "maximum")

    def _print_Min(self, expr):
        return self.min_max(expr, "minimum")

    def min_max(self, expr, which):
        args = list(expr.args)
        out = self._print(args[0])
        for other in args[1:]:
            out = self.FUNCTIONS[which].format(out, self._print(other))
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
        return self.where(cond, a, b)

    def _print_Not(self, expr):
        return f"(~{self._print(expr.args[0])})"

    def where(self, cond, a, b):
        b_text = b if isinstance(b, str) else self._print(b)
        return f"{self.WHERE}({self._print(cond)}, {self._print(a)}, {b_text})"
