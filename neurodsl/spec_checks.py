"""Validation used by spec capture (and by ``surrogate.Custom``): one layer for everything a user writes.

* :func:`check_expression` — a returned value: its kind, every node (supported functions only), every
  constant (real, finite in float64) and the size limits :data:`MAX_DEPTH` / :data:`MAX_NODES`, in one
  linear pass over the expression graph (nothing recursive runs before the limits are checked).
* :func:`call_on_symbols` — run a user function on symbols and turn what it raises into problems.
* :func:`check_signature`, :func:`python_comparisons` — the methods' form, and ``==`` / ``!=`` applied to
  symbols (a structural test that folds to a constant True/False).
* :func:`agrees_on_tensors` — the method run on tensors (as ``nd.reference_run`` does) gives what the
  captured equation gives at the same values: catches operations that fold on symbols.
* :func:`real_default`, :func:`check_variants` — declarations.

Every check reports through ``add(code, symbol, message)`` so callers collect all problems at once.

>>> import sympy as sp
>>> found = []
>>> check_expression(lambda *p: found.append(p), "v", sp.Symbol("v") + sp.log(-1))
>>> found[0][0]
'ND115'
"""
from __future__ import annotations

import ast
import functools
import inspect
import math
import numbers
import textwrap
import tokenize

import sympy as sp
import torch
from sympy.functions.elementary.piecewise import ExprCondPair
from sympy.logic.boolalg import And, Boolean, BooleanAtom, BooleanFunction, Not, Or

from .mathfns import SUPPORTED_FUNCTIONS, CaptureProblem, capturing

#: Longest chain of nested operations in one expression (e.g. ``tanh`` nested 64 times).
MAX_DEPTH = 64
#: Most operations in one expression, counted as written out (shared subexpressions count each time).
MAX_NODES = 2_000

_STRUCTURE = (sp.Symbol, sp.Number, sp.NumberSymbol, sp.Add, sp.Mul, sp.Pow, sp.Piecewise, ExprCondPair,
              sp.core.relational.Relational, And, Or, Not, BooleanAtom, type(sp.I))
_BOOLEAN = (sp.core.relational.Relational, BooleanFunction, BooleanAtom)

# torch/numpy-style methods people call on values, and what to write instead.
_METHOD_HINTS = {
    "clamp": "nd.clamp(x, lo, hi)", "clip": "nd.clamp(x, lo, hi)", "exp": "nd.exp(x)", "log": "nd.log(x)",
    "sqrt": "nd.sqrt(x)", "sigmoid": "nd.sigmoid(x)", "tanh": "nd.tanh(x)", "relu": "nd.relu(x)",
    "abs": "abs(x)", "maximum": "nd.maximum(a, b)", "minimum": "nd.minimum(a, b)", "max": "nd.maximum(a, b)",
    "min": "nd.minimum(a, b)", "atan": "nd.atan(x)", "arctan": "nd.atan(x)", "erf": "nd.erf(x)",
    "erfc": "nd.erfc(x)", "sin": "nd.sin(x)", "cos": "nd.cos(x)", "pow": "x ** p", "square": "x ** 2",
    "neg": "-x", "where": "nd.where(cond, a, b)", "eq": "nd.eq(a, b)", "ne": "nd.ne(a, b)",
    "reciprocal": "1 / x", "item": "the expression itself", "float": "the expression itself",
}


def user_text(expr) -> str:
    """An expression as the user wrote it: plan names (h_v, p_tau, x_x) shown as v, tau, x.

    The renaming does not re-evaluate (sympy's rewriting of nested functions is exponential in depth).
    """
    expr = sp.sympify(expr)
    names = {s: sp.Symbol(s.name.split("_", 1)[1]) for s in expr.free_symbols if s.name[:2] in ("v_", "h_", "x_", "p_")}
    with sp.evaluate(False):
        renamed = expr.xreplace(names)
    return sp.sstr(renamed)


# -- values ---------------------------------------------------------------------------------------------
def check_expression(add, target: str, value, limits: bool = True):
    """``value`` as a validated sympy expression, or None after reporting why not via ``add``."""
    if isinstance(value, bool):
        add("ND104", target, f"'{target}' is the Python value {value}: a comparison such as == or != on symbols "
                             "compares formulas, not values; return a number-valued expression (use nd.where with "
                             "nd.eq / nd.ne for equality)")
        return None
    if isinstance(value, complex) or isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
        add("ND115", target, f"'{target}' is the complex number {value}; equations are real-valued")
        return None
    if not isinstance(value, (numbers.Real, sp.Basic)):
        add("ND104", target, f"'{target}' must be one scalar expression, got {type(value).__name__} (tensors, "
                             "arrays, tuples and strings cannot be captured)")
        return None
    expr = sp.sympify(value)
    if isinstance(expr, _BOOLEAN) or isinstance(expr, Boolean) and not isinstance(expr, sp.Symbol):
        add("ND104", target, f"'{target}' is a condition ({user_text(expr)}); return a number-valued expression "
                             "(fire: return v - v_th, not v >= v_th)")
        return None
    if not isinstance(expr, sp.Expr):
        add("ND104", target, f"'{target}' is a sympy {type(expr).__name__}, not one scalar expression")
        return None
    return expr if _scan(add, target, expr, limits) else None


def _scan(add, target: str, expr: sp.Expr, limits: bool) -> bool:
    """One post-order pass over the expression graph; reports the first fault and returns False."""
    info: dict[int, tuple] = {}   # id(node) -> (height, tree size, symbolic, constant value, fault)
    stack = [(expr, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in info:
            continue
        if not expanded:  # first visit, outermost first: report an unsupported node before its arguments
            if not _node_ok(add, target, node):
                return False
            stack.append((node, True))
            stack.extend((a, False) for a in node.args if id(a) not in info)
            continue
        kids = [info[id(a)] for a in node.args]
        height = 1 + max((k[0] for k in kids), default=0)
        size = 1 + sum(k[1] for k in kids)
        if limits and (height > MAX_DEPTH or size > MAX_NODES):
            add("ND116", target, f"'{target}' is too large to compile: {'depth' if height > MAX_DEPTH else 'size'} "
                                 f"over the limit (depth {MAX_DEPTH}, {MAX_NODES} operations); split it with an "
                                 "extra state or simplify it")
            return False
        symbolic = isinstance(node, sp.Symbol) or any(k[2] for k in kids)
        value = fault = None
        if symbolic:
            bad = next((a for a, k in zip(node.args, kids) if k[4]), None)
            if bad is not None:
                return _report_constant(add, target, bad, info[id(bad)][4])
        elif not isinstance(node, _BOOLEAN + (ExprCondPair,)):
            fault = next((k[4] for k in kids if k[4]), None)
            if fault is None:
                value, fault = _constant(node, [k[3] for k in kids])
        info[id(node)] = (height, size, symbolic, value, fault)
    root = info[id(expr)]
    return _report_constant(add, target, expr, root[4]) if root[4] else True


def _report_constant(add, target, node, fault) -> bool:
    code, why = fault
    add(code, target, f"'{target}' contains the constant {user_text(node)}, {why}")
    return False


def _constant(node, kid_values):
    """``(value, None)`` for a constant node computed from its arguments' values, or ``(None, (code, why))``."""
    try:
        if node.is_Number:
            value = node
        elif node.args and all(v is not None for v in kid_values):
            value = node.func(*kid_values).evalf(20)
        else:
            value = node.evalf(20)
        if value.has(sp.I) or value.is_real is False:
            return None, ("ND115", "which is not a real number; equations are real-valued (e.g. nd.log or nd.sqrt "
                                   "of a negative number, a complex constant)")
        number = float(value) if value.is_Number else math.nan
    except (ArithmeticError, ValueError, TypeError) as err:
        return None, ("ND107", f"which cannot be computed ({err})")
    if not math.isfinite(number):
        return None, ("ND107", f"which is not a finite float64 number ({sp.Float(value, 6) if value.is_Number else value})")
    return value, None


def _node_ok(add, target, node) -> bool:
    if node is sp.zoo:
        add("ND105", target, f"'{target}' divides by a constant zero")
        return False
    if node in (sp.nan, sp.oo, -sp.oo):
        add("ND107", target, f"'{target}' contains a non-finite constant ({node})")
        return False
    if isinstance(node, sp.core.function.Application) and type(node).__name__ in SUPPORTED_FUNCTIONS:
        return True
    if isinstance(node, _STRUCTURE):
        return True
    name = type(node).__name__
    hint = "; use neurodsl's functions (nd.exp, nd.where, ...)"
    if name == "Xor":
        hint = "; combine conditions with &, | and ~"
    add("ND106", name, f"'{target}' uses '{name}', which is not supported{hint}")
    return False


# -- running user code on symbols ------------------------------------------------------------------------
def call_on_symbols(add, what: str, fn, *args):
    """``fn(*args)`` with neurodsl's functions in capture mode; what it raises becomes a problem (None)."""
    try:
        with capturing():
            return fn(*args)
    except CaptureProblem as err:
        add(err.code, err.symbol, err.message.format(*map(user_text, err.exprs)) if err.exprs else err.message)
    except RecursionError:
        add("ND116", "", f"{what} nests too deeply to evaluate (limit: depth {MAX_DEPTH})")
    except ZeroDivisionError:
        add("ND105", "", "division by a constant zero")
    except TypeError as err:
        text = str(err)
        if "truth value" in text or "cannot determine" in text:
            hint = ("a Python `if`, `and`, `or`, `not` or `min`/`max` on a value; use nd.where(cond, a, b), "
                    "&, |, ~ and nd.minimum / nd.maximum (an `if` on a variant option is fine)")
        elif any(k in text for k in ("convert expression", "must be Tensor", "real number", "ufunc", "loop of")):
            hint = "math, torch and numpy functions cannot take symbols; use neurodsl's (nd.exp, nd.tanh, nd.where, ...)"
        else:
            hint = "use neurodsl's functions (nd.exp, nd.where, ...) instead of math/torch/if"
        add("ND106", "", f"unsupported operation on a symbol ({err}): {hint}")
    except AttributeError as err:
        obj, name = getattr(err, "obj", None), getattr(err, "name", None) or ""
        if isinstance(obj, sp.Basic):
            instead = _METHOD_HINTS.get(name, "a neurodsl function (nd.exp, nd.clamp, ...)")
            add("ND106", name, f"values are symbols here and have no method .{name}(); write {instead} instead")
        else:
            add("ND134", "", f"{what} raised AttributeError: {err}")
    except (ArithmeticError, ValueError) as err:
        if isinstance(err, ArithmeticError) or "math domain" in str(err):  # math.log(-1.0), 2.0 ** 5000
            add("ND107", "", f"{what} computes a constant that is not a finite real number ({type(err).__name__}: "
                             f"{err}); use nd.exp, nd.log, ... so constants are checked, or fix the constant")
        else:  # a tensor, array or string combined with a symbol
            add("ND106", "", f"{what} combines a symbol with a value that cannot be part of an equation "
                             f"({type(err).__name__}: {err}); use numbers, not tensors, arrays or strings")
    except Exception as err:  # noqa: BLE001 - any failure of user code at class definition is a typed error
        add("ND134", "", f"{what} raised {type(err).__name__}: {err}")
    return None


class _TensorSelf:
    def __init__(self, values: dict, options: dict):
        self.__dict__.update(options)
        self.__dict__.update(values)


def _numeric(expr, at: dict):
    try:
        expr = sp.sympify(expr)
        value = complex(expr.xreplace({s: at[s] for s in expr.free_symbols if s in at}))
    except (TypeError, ValueError, ArithmeticError):
        return None
    return value.real if value.imag == 0 and math.isfinite(value.real) else None


def agrees_on_tensors(add, method: str, fn, self_values: dict, args: list, points: list[dict], options: dict,
                      captured) -> None:
    """Run ``fn`` once on float64 tensors holding one value per point, and compare with the captured equation.

    ``self_values`` / ``args`` map to lists (one value per point; parameters are plain numbers), ``points``
    gives each point's symbol -> sympy Float, ``captured`` is the expression (fire) or dict of them (charge,
    reset). A failure on tensors is reported; a different value only when it differs at every point (so a
    comparison that lands exactly on a boundary cannot cause a false report).
    """
    def t(x):
        return torch.tensor(x, dtype=torch.float64)

    n = len(points)
    try:
        out = fn(_TensorSelf({k: t(v) for k, v in self_values.items()}, options), *map(t, args))
        got = out if isinstance(captured, dict) else {method: out}
        pairs = list(captured.items()) if isinstance(captured, dict) else [(method, captured)]
        values = {name: torch.as_tensor(got[name], dtype=torch.float64) for name, _ in pairs}
    except Exception as err:  # noqa: BLE001 - reported as the typed error
        add("ND135", "", f"{method} works on symbols but fails on tensors ({type(err).__name__}: {err}); "
                         "nd.reference_run and `neurodsl check` run it on tensors: use neurodsl's functions "
                         "(nd.exp, nd.where, ...) and plain numbers (math.pi, 0.5), not sympy objects (sp.exp, sp.pi, "
                         "sp.Rational), arrays or integers beyond 64 bits")
        return
    for name, expr in pairs:
        try:
            tv = values[name].expand(n).tolist()
        except RuntimeError:
            add("ND135", name, f"{method} gives '{name}' the shape {tuple(values[name].shape)} for inputs of shape "
                               f"({n},) (a tensor or array constant in the method?); use numbers")
            continue
        found = [(a, b) for a, b in zip(tv, (_numeric(expr, at) for at in points))
                 if b is not None and math.isfinite(a) and abs(a - b) > 1e-6 * max(1.0, abs(a), abs(b))]
        if len(found) == n:
            add("ND135", name, f"{method} gives '{name}' = {found[0][0]:.6g} on tensors but {found[0][1]:.6g} from the "
                               f"equation captured on symbols ({user_text(expr)}): something in the method folds on "
                               "symbols, e.g. ==, != or `is` on a value, or an `if` on a parameter; use nd.where "
                               "with a comparison or nd.eq / nd.ne")


# -- methods ----------------------------------------------------------------------------------------------
_FORMS = {"charge": "def charge(self, x, ...)", "fire": "def fire(self)", "reset": "def reset(self, s)"}


def check_signature(add, method: str, fn) -> list[str] | None:
    """The argument names after ``self`` of a well-formed method, or None after reporting why not."""
    form = _FORMS[method]
    if isinstance(fn, (staticmethod, classmethod)):
        add("ND117", "", f"{method} is a {type(fn).__name__}; write it as a plain method: {form}")
        return None
    if not inspect.isfunction(fn):
        add("ND117", "", f"{method} is a {type(fn).__name__}, not a method; write {form}")
        return None
    if inspect.isgeneratorfunction(fn) or inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        add("ND117", "", f"{method} must return its result (no yield, no async): {form}")
        return None
    params = list(inspect.signature(fn).parameters.values())
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    odd = [p for p in params if p.kind not in plain]
    if odd:
        shown = ", ".join(("*" if p.kind == p.VAR_POSITIONAL else "**" if p.kind == p.VAR_KEYWORD else "*, ")
                          + p.name for p in odd)
        add("ND117", odd[0].name, f"{method} declares {shown}: each input must be a plain positional argument; "
                                  f"write {form}")
        return None
    defaults = [p.name for p in params if p.default is not p.empty]
    if defaults:
        add("ND117", defaults[0], f"{method}'s argument '{defaults[0]}' has a default value; inputs and the spike "
                                  f"are always given: {form}")
        return None
    if not params:
        add("ND117", "", f"{method} takes no 'self'; write {form}")
        return None
    expected = {"fire": 1, "reset": 2}.get(method)
    if expected is not None and len(params) != expected:
        why = "fire reads charged values and parameters only (charge reads the inputs)" if method == "fire" else \
              "reset receives the spike as its one argument"
        add("ND117", "", f"{method} takes {len(params)} argument(s); {why}: {form}")
        return None
    return [p.name for p in params[1:]]


def python_comparisons(add, method: str, fn, values: set[str], arg_names: list[str]) -> None:
    """Report ``a == b`` / ``a != b`` in ``fn``'s source where an operand reads a state, parameter or input.

    On symbols these compare formulas, not values, and give a constant True/False (e.g. ``self.v == 0``
    is False), so the spec silently differs from what the tensors would do.
    """
    for text, attrs, names in _equality_tests(fn):
        if attrs & values or names & set(arg_names):
            add("ND113", text, f"'{text}' compares symbols with == / !=, which tests whether two formulas are "
                               "identical and gives a constant True/False; use nd.where(nd.eq(a, b), ...) / nd.ne, "
                               "or abs(a - b) < eps")


@functools.lru_cache(maxsize=1024)
def _equality_tests(fn) -> tuple:
    """``(source text, self.<attrs> read, names read)`` of each ==/!= comparison in ``fn`` (parsed once)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError, tokenize.TokenError):
        # no source, or a file that is not this code's (exec, notebooks, lambdas inside expressions): the checks
        # on results (the tensor cross-check) still apply
        return ()
    funcs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == fn.__name__]
    if not funcs or not funcs[0].args.args:
        return ()
    self_name, found = funcs[0].args.args[0].arg, []
    for node in ast.walk(funcs[0]):
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            subs = [sub for x in (node.left, *node.comparators) for sub in ast.walk(x)]
            attrs = {sub.attr for sub in subs if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name)
                     and sub.value.id == self_name}
            names = {sub.id for sub in subs if isinstance(sub, ast.Name)}
            found.append((ast.unparse(node), frozenset(attrs), frozenset(names)))
    return tuple(found)


# -- declarations -----------------------------------------------------------------------------------------
def real_default(value):
    """A declaration's numeric default as a float (numpy scalars included); other values unchanged."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return value
    return value


def default_problem(value) -> str:
    """Why ``value`` is no valid numeric default ('' when it is one): finite and within float32."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, float)):
        return f"{str(value)[:20]}... is too large for a float"
    if isinstance(value, bool) or not isinstance(value, float):
        kind = f"the string {value!r}" if isinstance(value, str) else f"{type(value).__name__} {value!r}"[:80]
        return f"{kind} is not a number"
    if not math.isfinite(value) or abs(value) > 3.4028234663852886e38:
        return f"{value!r} is not a finite float32 number (parameters are stored as float32)"
    return ""


def check_variants(cls_name: str, variants, taken: dict[str, str]) -> list[tuple[str, str, str]]:
    """Problems ``(code, symbol, message)`` of a ``variants`` declaration.

    ``taken`` maps names the variants must not reuse to what they are ('parameter', 'constructor keyword', ...).
    """
    if not isinstance(variants, dict):
        return [("ND119", "variants", f"variants must be a dict name -> (allowed values, ...), got "
                                      f"{type(variants).__name__}")]
    out = []
    for name, values in variants.items():
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            out.append(("ND119", str(name), f"variant name {name!r} is not a plain identifier"))
        elif name in taken:
            out.append(("ND119", name, f"variant '{name}' has the name of a {taken[name]}, so {cls_name}({name}=...) "
                                       "could not select it; rename the variant"))
        if not isinstance(values, (tuple, list)) or not values:
            out.append(("ND119", str(name), f"variant '{name}' must list its allowed values as a non-empty tuple, "
                                            f"e.g. ('hard', 'soft'); got {values!r}"[:200]))
            continue
        for v in values:
            try:
                hash(v)
            except TypeError:
                out.append(("ND119", str(name), f"variant '{name}' has the unhashable value {v!r}; use strings, "
                                                "numbers, booleans or None"[:200]))
                break
    return out
