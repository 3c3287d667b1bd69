"""Hostile neuron classes: each one ends in correct behaviour or a typed SpecError when the class is defined.

Each rejected case asserts its code (and, where the point is the advice, what the message tells the user to
write); each accepted case runs the layer on the torch backend against ``nd.reference_run``.
"""
from __future__ import annotations

import functools
import math
import time

import numpy as np
import pytest
import sympy as sp
import torch

import neurodsl as nd
from neurodsl import spec_checks
from neurodsl.analysis import classify
from neurodsl.spec import check_class_variants


def rejects(code, build, *, says=""):
    """``build()`` (which defines a class or builds a surrogate) raises a SpecError carrying ``code``."""
    with pytest.raises(nd.SpecError) as info:
        build()
    err = info.value
    assert code in err.codes, f"expected {code}, got {err.codes}: {err}"
    assert says in str(err), f"{says!r} not in {err}"
    return err


def neuron(charge=lambda self, x: dict(v=self.v + x), fire=lambda self: self.v - 1.0, reset=None, name="Hostile",
           **namespace):
    """A class from its methods (v: State(0.0), tau: Param(2.0) unless given)."""
    ns = dict(v=nd.State(0.0), tau=nd.Param(2.0), charge=charge, fire=fire)
    ns.update(namespace)
    if reset is not None:
        ns["reset"] = reset
    return type(name, (nd.Neuron,), ns)


def agrees(cls, n_inputs=1, backend="torch", **kwargs):
    """Correct behaviour: spikes and input gradients of the layer equal the reference loop's."""
    layer = cls(backend=backend, **kwargs)
    torch.manual_seed(0)
    xs = [torch.rand(6, 5) * 2 - 0.4 for _ in range(n_inputs)]
    a = [x.clone().requires_grad_() for x in xs]
    b = [x.clone().requires_grad_() for x in xs]
    spikes = layer(*a)
    ref, _ = nd.reference_run(layer, *b)
    assert torch.equal(spikes, ref)
    spikes.sum().backward()
    ref.sum().backward()
    for ga, gb in zip(a, b):
        torch.testing.assert_close(ga.grad, gb.grad, rtol=1e-4, atol=1e-5)
    return spikes


# -- conditions and Python comparisons (ND113, ND135) -------------------------------------------------------------
def test_equality_in_where_is_rejected_with_the_fix():
    def build():
        class EqWhere(nd.Neuron):
            v = nd.State(0.0)

            def charge(self, x):
                return dict(v=nd.where(self.v == 0, x, self.v + x))

            def fire(self):
                return self.v - 1.0
    rejects("ND113", build, says="nd.eq")


@pytest.mark.parametrize("cond", [True, 1.0, "v"], ids=["python-bool", "number", "expression"])
def test_where_condition_must_be_a_condition(cond):
    pick = (lambda self, x: self.v) if cond == "v" else (lambda self, x: cond)
    rejects("ND113", lambda: neuron(charge=lambda self, x: dict(v=nd.where(pick(self, x), x, self.v + x))))


def test_equality_folded_into_arithmetic_is_found_in_the_source():
    def build():
        class Folded(nd.Neuron):
            v = nd.State(0.0)

            def charge(self, x):
                return dict(v=self.v + x + 1.0 * (self.v == 0))   # (self.v == 0) is False on symbols

            def fire(self):
                return self.v - 1.0
    rejects("ND113", build, says="self.v == 0")


def test_if_on_a_parameter_equality_is_found_in_the_source():
    """(Without source, e.g. a class built by exec, running the method on tensors finds it: ND135 in test_errors.)"""
    def build():
        class ParamIf(nd.Neuron):
            v = nd.State(0.0)
            v_th = nd.Param(1.0)

            def charge(self, x):
                if self.v_th != 1.0:
                    return dict(v=self.v + x)
                return dict(v=self.v + 2 * x)

            def fire(self):
                return self.v - self.v_th
    rejects("ND113", build, says="self.v_th != 1.0")


def test_python_and_on_conditions_points_to_ampersand():
    rejects("ND106", lambda: neuron(charge=lambda self, x: dict(v=nd.where((self.v > 0) and (x > 0), x, self.v))),
            says="&, |, ~")


def test_xor_of_conditions_is_rejected():
    rejects("ND106", lambda: neuron(charge=lambda self, x: dict(v=nd.where((self.v > 0) ^ (x > 0), x, self.v))))


def test_nd_eq_and_ne_work_on_every_path():
    class Sticky(nd.Neuron):
        """Starts integrating only once v has left 0; ne gates a leak."""
        v = nd.State(0.0)
        w = nd.State(0.0)

        def charge(self, x):
            return dict(v=nd.where(nd.eq(self.v, 0.0), x, self.v + 0.5 * x),
                        w=nd.where(nd.ne(self.w, 0.0), 0.5 * self.w, x) + 0.1)

        def fire(self):
            return self.v - 1.0

        def reset(self, s):
            return dict(v=self.v * (1 - s))
    assert isinstance(Sticky.spec.charge[0][1], sp.Piecewise)
    spikes = agrees(Sticky)
    agrees(Sticky, backend="triton")  # the Triton interpreter (conftest sets TRITON_INTERPRET=1)
    x = torch.full((3, 1), 0.6)
    _, states = nd.reference_run(Sticky(), x)
    assert states["v"][:, 0].tolist() == pytest.approx([0.6, 0.9, 0.0])   # 0.6 (v was 0), 0.6 + 0.3, spike
    assert spikes.shape == (6, 5)


def test_comparing_a_variant_option_is_fine():
    class Mode(nd.Neuron):
        variants = dict(mode=("a", "b"))
        v = nd.State(0.0)

        def charge(self, x):
            if self.mode == "a":
                return dict(v=self.v + x)
            return dict(v=0.5 * self.v + x)

        def fire(self):
            return self.v - 1.0
    assert Mode.spec.charge != Mode.variant_spec(mode="b").charge
    agrees(Mode, mode="b")


# -- what the methods return (ND114, ND104) -----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["charge", "fire", "reset"])
def test_returning_nothing_is_rejected(method):
    nothing = {"charge": lambda self, x: None, "fire": lambda self: None, "reset": lambda self, s: None}[method]
    err = rejects("ND114", lambda: neuron(**{method: nothing}, **({} if method == "reset" else
                                                                   {"reset": lambda self, s: dict(v=self.v)})))
    assert err.problems[0].method == method


def test_charge_returning_an_empty_dict_is_rejected():
    rejects("ND114", lambda: neuron(charge=lambda self, x: {}), says="inputs would be ignored")


def test_reset_returning_an_empty_dict_keeps_every_state():
    keeps = neuron(reset=lambda self, s: {}, name="KeepAll")
    without = neuron(name="NoReset")
    x = torch.rand(6, 4) * 2
    assert torch.equal(keeps()(x), without()(x))
    agrees(keeps)


def test_a_method_set_to_none_is_rejected():
    """(Base.without_reset() removes a reset; a reset returning {} keeps every state.)"""
    class Base(nd.Neuron):
        v = nd.State(0.0)

        def charge(self, x):
            return dict(v=self.v + x)

        def fire(self):
            return self.v - 1.0

        def reset(self, s):
            return dict(v=self.v * (1 - s))

    def build():
        class NoReset(Base):
            reset = None
    rejects("ND117", build, says="def reset(self, s)")
    assert not Base.without_reset().spec.has_reset
    agrees(Base.without_reset())


@pytest.mark.parametrize("value", [torch.zeros(3), torch.tensor(1.0), np.array([1.0, 2.0]), (1.0, 2.0), "v + x",
                                   sp.Matrix([1.0]), sp.Tuple(1.0, 2.0)],
                         ids=["tensor", "scalar-tensor", "ndarray", "tuple", "string", "matrix", "sympy-tuple"])
def test_non_scalar_values_are_rejected(value):
    rejects("ND104", lambda: neuron(fire=lambda self: value))


@pytest.mark.parametrize("key", [0, "V", "x"])
def test_keys_that_are_no_state(key):
    rejects("ND102", lambda: neuron(charge=lambda self, x: {key: self.v + x}))


def test_an_expression_as_key_is_named():
    rejects("ND102", lambda: neuron(charge=lambda self, x: {self.v: self.v + x}), says="returns v as a key")


# -- constants (ND105, ND107, ND115) -----------------------------------------------------------------------------
CONSTANTS = {
    "log-negative": ("ND115", lambda: nd.log(-1.0)),
    "sqrt-negative": ("ND115", lambda: nd.sqrt(-2.0)),
    "complex": ("ND115", lambda: 1 + 2j),
    "numpy-complex": ("ND115", lambda: np.complex128(1j)),
    "exp-overflow": ("ND107", lambda: nd.exp(1000.0)),
    "exp-tower": ("ND107", lambda: nd.exp(nd.exp(nd.exp(1000.0)))),
    "huge-int": ("ND107", lambda: 10 ** 400),
    "math-domain": ("ND107", lambda: math.log(-1.0)),
    "python-overflow": ("ND107", lambda: 2.0 ** 5000),
    "inf": ("ND107", lambda: float("inf")),
    "sympy-oo": ("ND107", lambda: sp.oo),
    "sympy-nan": ("ND107", lambda: sp.nan),
    "zero-division": ("ND105", lambda: 1 / 0),
    "sympy-zoo": ("ND105", lambda: sp.zoo),
}


@pytest.mark.parametrize("case", list(CONSTANTS))
def test_bad_constants_are_typed_at_definition(case):
    code, constant = CONSTANTS[case]
    start = time.perf_counter()
    rejects(code, lambda: neuron(charge=lambda self, x: dict(v=self.v + x * constant())))
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("scaled", [lambda x: math.pi * x, lambda x: np.float32(0.5) * x, lambda x: np.float64(0.25) * x,
                                    lambda x: nd.exp(-1.0) * x, lambda x: x * 1e30 * 1e-30, lambda x: x * 3 / 4],
                         ids=["math.pi", "float32", "float64", "nd-on-float", "large-float", "int-ratio"])
def test_good_constants_work(scaled):
    agrees(neuron(charge=lambda self, x: dict(v=0.5 * self.v + scaled(x))))


@pytest.mark.parametrize("scaled", [lambda x: sp.pi * x, lambda x: sp.Rational(1, 3) * x, lambda x: np.array(0.5) * x,
                                    lambda x: x * 10 ** 30 / 10 ** 30],
                         ids=["sympy-pi", "sympy-rational", "0d-array", "big-int"])
def test_constants_that_fail_on_tensors(scaled):
    """Fine on symbols, but nd.reference_run multiplies tensors by them: plain floats work on both."""
    rejects("ND135", lambda: neuron(charge=lambda self, x: dict(v=0.5 * self.v + scaled(x))), says="math.pi")


# -- operations that cannot run on symbols (ND106, ND135) -------------------------------------------------------
@pytest.mark.parametrize("op, fix", [
    (lambda v: v.clamp(0.0, 1.0), "nd.clamp(x, lo, hi)"), (lambda v: v.exp(), "nd.exp(x)"),
    (lambda v: v.sigmoid(), "nd.sigmoid(x)"), (lambda v: v.abs(), "abs(x)"),
    (lambda v: torch.exp(v), "nd.exp"), (lambda v: math.exp(v), "nd.exp"), (lambda v: np.exp(v), "nd.exp"),
    (lambda v: round(v), "nd."), (lambda v: int(v), "nd."), (lambda v: min(v, 1.0), "nd.minimum"),
    (lambda v: v % 1.0, "nd."), (lambda v: v // 2, "nd."), (lambda v: sp.floor(v), "nd."),
], ids=["clamp-method", "exp-method", "sigmoid-method", "abs-method", "torch.exp", "math.exp", "numpy.exp", "round",
        "int", "min", "mod", "floordiv", "floor"])
def test_unsupported_operations_say_what_to_write(op, fix):
    rejects("ND106", lambda: neuron(charge=lambda self, x: dict(v=op(self.v) + x)), says=fix)


@pytest.mark.parametrize("make", [lambda v: sp.Derivative(v ** 2, v), lambda v: sp.Integral(v, (v, 0, 1)),
                                  lambda v: sp.Function("f")(v)], ids=["Derivative", "Integral", "undefined"])
def test_sympy_constructs_are_rejected_by_name(make):
    err = rejects("ND106", lambda: neuron(charge=lambda self, x: dict(v=make(self.v) + x)))
    assert err.problems[0].symbol in ("Derivative", "Integral", "f")


@pytest.mark.parametrize("make", [lambda v: sp.exp(v), lambda v: sp.Heaviside(v) + v, lambda v: sp.tanh(v)],
                         ids=["sympy.exp", "sympy.Heaviside", "sympy.tanh"])
def test_sympy_functions_that_fail_on_tensors(make):
    """Accepted by the printers, but nd.reference_run runs methods on tensors: the nd.* functions work on both."""
    rejects("ND135", lambda: neuron(charge=lambda self, x: dict(v=0.5 * make(self.v) + x)), says="nd.exp")


def test_a_foreign_sympy_symbol_is_named():
    rejects("ND101", lambda: neuron(charge=lambda self, x: dict(v=sp.Symbol("v") + x)), says="did not create")


def test_a_tensor_constant_is_rejected():
    rejects("ND106", lambda: neuron(charge=lambda self, x: dict(v=self.v * torch.ones(3) + x)), says="not tensors")


def test_user_code_raising_is_typed():
    rejects("ND134", lambda: neuron(charge=lambda self, x: dict(v=self.v + [1.0][3] * x)), says="IndexError")


# -- method forms (ND117, ND109) ----------------------------------------------------------------------------------
def _gen(self, x):
    yield dict(v=self.v + x)


async def _async(self, x):
    return dict(v=self.v + x)


FORMS = {
    "keyword-only": dict(charge=lambda self, *, x: dict(v=self.v + x)),
    "var-keyword": dict(charge=lambda self, **kw: dict(v=self.v + kw["x"])),
    "var-positional": dict(charge=lambda self, *xs: dict(v=self.v + xs[0])),
    "default": dict(charge=lambda self, x=0.0: dict(v=self.v + x)),
    "reset-without-spike": dict(reset=lambda self: dict(v=self.v)),
    "reset-two-spikes": dict(reset=lambda self, s, t: dict(v=self.v)),
    "fire-with-input": dict(fire=lambda self, x: self.v - x),
    "no-self": dict(fire=lambda: 1.0),
    "staticmethod": dict(charge=staticmethod(lambda self, x: dict(v=self.v + x))),
    "classmethod": dict(charge=classmethod(lambda cls, x: dict(v=x))),
    "partial": dict(charge=functools.partial(lambda k, self, x: dict(v=self.v + k * x), 2.0)),
    "not-callable": dict(fire=1.0),
    "generator": dict(charge=_gen),
    "async": dict(charge=_async),
}


@pytest.mark.parametrize("case", list(FORMS))
def test_method_forms(case):
    err = rejects("ND117", lambda: neuron(**FORMS[case]), says="def ")
    assert err.problems[0].method in ("charge", "fire", "reset")


def test_methods_from_a_plain_mixin_are_explained():
    class FireMixin:
        def fire(self):
            return self.v - 1.0

    def build():
        class Mixed(FireMixin, nd.Neuron):
            v = nd.State(0.0)

            def charge(self, x):
                return dict(v=self.v + x)
    rejects("ND109", build, says="fire = FireMixin.fire")

    class Fixed(FireMixin, nd.Neuron):
        v = nd.State(0.0)
        fire = FireMixin.fire

        def charge(self, x):
            return dict(v=self.v + x)
    agrees(Fixed)


# -- declarations (ND118, ND108, ND111, ND103) --------------------------------------------------------------------
@pytest.mark.parametrize("default", ["abc", None, [1.0], "2.0", True, 10 ** 400, float("inf"), float("nan"), 1e39,
                                     torch.ones(2)],
                         ids=["string", "None", "list", "numeric-string", "bool", "huge-int", "inf", "nan",
                              "beyond-float32", "tensor"])
def test_bad_param_defaults(default):
    rejects("ND118", lambda: neuron(tau=nd.Param(default), charge=lambda self, x: dict(v=self.v + x / self.tau)))


def test_param_learnable_must_be_a_bool():
    rejects("ND118", lambda: neuron(tau=nd.Param(2.0, learnable="yes")))


@pytest.mark.parametrize("default", [np.float32(2.0), np.int64(2), np.float64(2.0), 2],
                         ids=["float32", "int64", "float64", "int"])
def test_numpy_and_int_defaults_work_like_floats(default):
    cls = neuron(tau=nd.Param(default), v=nd.State(np.float32(0.25)),
                 charge=lambda self, x: dict(v=self.v + x / self.tau))
    assert type(cls._params_decl["tau"].default) is float and cls.spec.param_defaults == (2.0,)
    assert cls.spec.state_defaults == (0.25,)
    agrees(cls)


@pytest.mark.parametrize("default", [10 ** 400, float("nan"), "nope", [0.0], True])
def test_bad_state_defaults(default):
    rejects("ND108", lambda: neuron(v=nd.State(default)))


def test_keyword_and_private_names():
    rejects("ND111", lambda: neuron(**{"lambda": nd.Param(1.0)}))
    rejects("ND111", lambda: neuron(_gain=nd.Param(1.0)))


@pytest.mark.parametrize("name", ["training", "parallel", "learnable", "max_iterations", "forward", "spec"])
def test_names_of_module_attributes_and_constructor_keywords(name):
    rejects("ND103", lambda: neuron(**{name: nd.Param(1.0)}))


def test_odd_but_valid_names_work():
    """A state and an input both named x, a parameter named spike, a state named like an internal prefix,
    a long name and a non-ASCII one."""
    long = "g" * 120
    cls = type("Odd", (nd.Neuron,), {
        "x": nd.State(0.0), "spike": nd.Param(0.5), "unknown_w": nd.State(0.1), long: nd.Param(0.9),
        "τ": nd.Param(2.0),
        "charge": lambda self, x: dict(x=self.x * getattr(self, long) + x / getattr(self, "τ"),
                                       unknown_w=self.unknown_w * 0.5 + self.spike * x),
        "fire": lambda self: self.x + 0.1 * self.unknown_w - 1.0,
        "reset": lambda self, s: dict(x=self.x * (1 - s) + self.spike * s),
    })
    agrees(cls)


# -- attributes that are no declarations (ND101) --------------------------------------------------------------------
def test_plain_class_attribute_is_explained():
    rejects("ND101", lambda: neuron(gain=2.0, charge=lambda self, x: dict(v=self.v + self.gain * x)),
            says="nd.Param(...)")


def test_property_is_explained():
    rejects("ND101", lambda: neuron(gain=property(lambda self: 2.0),
                                    charge=lambda self, x: dict(v=self.v + self.gain * x)), says="property")


def test_helper_method_is_explained_and_a_function_works():
    def helper(v, x):
        return 0.5 * v + x

    rejects("ND101", lambda: neuron(helper=lambda self, v, x: helper(v, x),
                                    charge=lambda self, x: dict(v=self.helper(self.v, x))), says="module-level")
    agrees(neuron(charge=lambda self, x: dict(v=helper(self.v, x))))


# -- inheritance -------------------------------------------------------------------------------------------------------
class _Base(nd.Neuron):
    v = nd.State(0.0)
    tau = nd.Param(2.0)

    def charge(self, x):
        return dict(v=self.v + (x - self.v) / self.tau)

    def fire(self):
        return self.v - 1.0

    def reset(self, s):
        return dict(v=self.v * (1 - s))


def test_a_state_redeclared_as_a_param_in_a_subclass():
    def build():
        class Flipped(_Base):
            v = nd.Param(1.0)
            w = nd.State(0.0)
    rejects("ND102", build)


def test_a_declaration_hidden_by_a_plain_attribute():
    def build():
        class Hidden(_Base):
            tau = 3.0
    rejects("ND103", build, says="hides it")


def test_overriding_defaults_and_one_method_works():
    class Slower(_Base):
        tau = nd.Param(4.0)

        def fire(self):
            return self.v - 0.5
    assert Slower.spec.param_defaults == (4.0,) and Slower.spec.charge == _Base.spec.charge
    agrees(Slower)


# -- variants (ND119) -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["backend", "surrogate", "parallel", "learnable", "step_mode", "tau", "v"])
def test_variant_names_that_are_taken(name):
    rejects("ND119", lambda: neuron(variants={name: ("a", "b")}))


@pytest.mark.parametrize("variants", [{"mode": "hard"}, {"1mode": ("a",)}],
                         ids=["string-values", "not-an-identifier"])
def test_malformed_variants(variants):
    rejects("ND119", lambda: neuron(variants=variants))


@pytest.mark.parametrize("variants", [{"mode": ([1], [2])}, {"mode": ()}, [("mode", ("a", "b"))]],
                         ids=["unhashable", "empty", "not-a-dict"])
def test_variant_declarations_checked_directly(variants):
    """spec.check_class_variants finds what fails before capture (selecting a variant hashes its values)."""
    class Host:
        pass
    Host.variants = variants
    rejects("ND119", lambda: check_class_variants(Host))


@pytest.mark.parametrize("variants", [{"mode": ([1], [2])}, {"mode": ()}, [("mode", ("a", "b"))]],
                         ids=["unhashable", "empty", "not-a-dict"])
def test_variant_declarations_fail_typed_at_definition(variants):
    rejects("ND119", lambda: neuron(variants=variants))


# -- size limits (ND116) and the cost of construction -------------------------------------------------------------
def _nested(depth, wrap=nd.tanh):
    def charge(self, x):
        e = self.v
        for _ in range(depth):
            e = wrap(e)
        return dict(v=e + x)
    return charge


@pytest.mark.parametrize("depth", [10, 20, 40])
def test_nested_functions_construct_fast(depth):
    start = time.perf_counter()
    cls = neuron(charge=_nested(depth), name=f"Nested{depth}")
    cls()
    assert time.perf_counter() - start < 1.0
    assert classify(cls.spec).term.startswith("tanh(tanh(")


@pytest.mark.parametrize("depth", [spec_checks.MAX_DEPTH, 1000])
def test_too_deep_is_typed(depth):
    start = time.perf_counter()
    rejects("ND116", lambda: neuron(charge=_nested(depth)), says=f"depth {spec_checks.MAX_DEPTH}")
    assert time.perf_counter() - start < 5


def test_exponentially_large_tree_is_typed():
    """A small graph whose tree (what code would print) doubles at every step."""
    def charge(self, x):
        e = self.v
        for _ in range(40):
            e = e * x * 0.5 + e * 0.5
        return dict(v=e)
    rejects("ND116", lambda: neuron(charge=charge), says="operations")


# -- Custom surrogates (ND120) ---------------------------------------------------------------------------------------
CUSTOM = {
    "floor": dict(primitive=lambda u, a: sp.floor(a * u)),
    "python-if": dict(primitive=lambda u, a: u if u > 0 else 0 * u),
    "math-exp": dict(gradient=lambda u, a: math.exp(-a * u * u)),
    "sympy-tanh": dict(primitive=lambda u, a: sp.tanh(a * u)),
    "torch-sigmoid": dict(primitive=lambda u, a: torch.sigmoid(a * u)),
    "constant": dict(primitive=lambda u, a: 0.5 + 0 * u),
    "one-argument": dict(primitive=lambda u: u),
    "tuple": dict(gradient=lambda u, a: (u, a)),
    "non-finite": dict(gradient=lambda u, a: nd.log(u)),
    "foreign-symbol": dict(gradient=lambda u, a: u * sp.Symbol("beta")),
    "string-alpha": dict(gradient=lambda u, a: a / (1 + u * u), alpha="2"),
    "zero-alpha": dict(gradient=lambda u, a: a / (1 + u * u), alpha=0.0),
}


@pytest.mark.parametrize("case", list(CUSTOM))
def test_bad_custom_surrogates_fail_when_built(case):
    rejects("ND120", lambda: nd.surrogate.Custom(**CUSTOM[case]))


def test_good_custom_surrogates_work():
    for sg in (nd.surrogate.Custom(gradient=lambda u, a: a / (1 + abs(a * u)) ** 2, alpha=2.0),
               nd.surrogate.Custom(primitive=lambda u, a: nd.sigmoid(a * u), alpha=3.0, learnable=True),
               nd.surrogate.Custom(primitive=lambda u, a: nd.where(u > 0, 1 - nd.exp(-a * u) / 2, nd.exp(a * u) / 2))):
        agrees(nd.zoo.LIF, surrogate=sg)


# -- sin and cos (supported: printed by every backend) ----------------------------------------------------------------
def test_sin_and_cos_work():
    class Theta(nd.Neuron):
        """A theta-neuron-like phase: d(theta) = (1 - cos theta) + (1 + cos theta) x."""
        th = nd.State(0.0)

        def charge(self, x):
            return dict(th=self.th + 0.3 * (1 - nd.cos(self.th)) + 0.5 * (1 + nd.cos(self.th)) * x)

        def fire(self):
            return nd.sin(self.th) - 0.9

        def reset(self, s):
            return dict(th=self.th - 2.0 * s)
    agrees(Theta)
    agrees(Theta, backend="triton")
