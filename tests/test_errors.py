"""Every reachable code of ``neurodsl.errors.CATALOGUE`` is triggered and asserted by code."""
import math
import os
import subprocess
import sys
import textwrap

import pytest
import sympy as sp
import torch

import neurodsl as nd
from kernels_gen import ops
from kernels_gen.errors import CodegenError
from kernels_gen.backends.torch.printer import TorchPrinter
from kernels_gen.backends.triton.printer import TritonPrinter
from neurodsl import zoo
from neurodsl.errors import CATALOGUE

COVERED: set[str] = set()  # codes some test below triggers (filled at import by @covers and SPEC_CASES)


def covers(*codes):
    """Mark a test as triggering ``codes`` (it asserts each of them with ``expect``)."""
    def mark(fn):
        COVERED.update(codes)
        return fn
    return mark


def expect(exc_type, code, fn):
    with pytest.raises(exc_type) as info:
        fn()
    err = info.value
    codes = getattr(err, "codes", (err.code,))
    assert code in codes, f"expected {code}, got {codes}"
    assert err.code.startswith("ND")
    return err


def define(body: str, name="Bad"):
    """Define a Neuron subclass from source; class definition is where spec errors must fire."""
    scope = {"nd": nd, "math": math, "torch": torch, "sp": sp}
    exec(textwrap.dedent(body).replace("class Bad", f"class {name}"), scope)  # noqa: S102
    return scope[name]


GOOD_FIRE_RESET = """
    def fire(self):
        return self.v - 1.0
"""


# -- ND1xx: spec errors, raised at class definition ---------------------------------------------
SPEC_CASES = {
    "ND101-unknown-self": ("ND101", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            tau = nd.Param(2.0)
            def charge(self, x): return dict(v=self.v + x / self.tua)
            def fire(self): return self.v - 1.0
    """),
    "ND101-unused-input": ("ND101", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x, y): return dict(v=self.v + x)
            def fire(self): return self.v - 1.0
    """),
    "ND101-spike-outside-reset": ("ND101", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): return dict(v=self.v + x)
            def fire(self): return self.v - 1.0 + self.spike
    """),
    "ND102": ("ND102", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): return dict(v=self.v + x, w=x)
            def fire(self): return self.v - 1.0
    """),
    "ND103-module-attr": ("ND103", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            forward = nd.Param(1.0)
            def charge(self, x): return dict(v=self.v + x)
            def fire(self): return self.v - 1.0
    """),
    "ND103-reserved": ("ND103", """
        class Bad(nd.Neuron):
            spec = nd.State(0.0)
            def charge(self, x): return dict(spec=self.spec + x)
            def fire(self): return self.spec - 1.0
    """),
    "ND104-fire-comparison": ("ND104", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): return dict(v=self.v + x)
            def fire(self): return self.v >= 1.0
    """),
    "ND104-charge-not-dict": ("ND104", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): return (self.v + x,)
            def fire(self): return self.v - 1.0
    """),
    "ND104-assigns-self": ("ND104", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x):
                self.v = self.v + x
                return dict(v=self.v + x)
            def fire(self): return self.v - 1.0
    """),
    "ND105-symbolic": ("ND105", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): return dict(v=self.v + x / 0)
            def fire(self): return self.v - 1.0
    """),
    "ND105-python": ("ND105", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): return dict(v=self.v + x * (1 / 0))
            def fire(self): return self.v - 1.0
    """),
    "ND106-math-exp": ("ND106", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): return dict(v=self.v + math.exp(x))
            def fire(self): return self.v - 1.0
    """),
    "ND106-python-if": ("ND106", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x):
                if self.v > 0:
                    return dict(v=x)
                return dict(v=self.v + x)
            def fire(self): return self.v - 1.0
    """),
    "ND106-unsupported-function": ("ND106", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): return dict(v=self.v + sp.cosh(x))
            def fire(self): return self.v - 1.0
    """),
    "ND107": ("ND107", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): return dict(v=self.v + x + float("nan"))
            def fire(self): return self.v - 1.0
    """),
    "ND108-unknown-param": ("ND108", """
        class Bad(nd.Neuron):
            v = nd.State("v_nope")
            def charge(self, x): return dict(v=self.v + x)
            def fire(self): return self.v - 1.0
    """),
    "ND108-not-a-number": ("ND108", """
        class Bad(nd.Neuron):
            v = nd.State(None)
            def charge(self, x): return dict(v=self.v + x)
            def fire(self): return self.v - 1.0
    """),
    "ND109-no-fire": ("ND109", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): return dict(v=self.v + x)
    """),
    "ND109-no-input": ("ND109", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self): return dict(v=self.v + 1.0)
            def fire(self): return self.v - 1.0
    """),
    "ND111-underscore": ("ND111", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            _tau = nd.Param(2.0)
            def charge(self, x): return dict(v=self.v + x)
            def fire(self): return self.v - 1.0
    """),
    "ND111-input": ("ND111", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, _x): return dict(v=self.v + _x)
            def fire(self): return self.v - 1.0
    """),
    "ND112": ("ND112", """
        class Bad(nd.Neuron):
            tau = nd.Param(2.0)
            def charge(self, x): return dict()
            def fire(self): return self.tau - 1.0
    """),
    "ND113-equality-condition": ("ND113", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): return dict(v=nd.where(self.v == 0, x, self.v + x))
            def fire(self): return self.v - 1.0
    """),
    "ND113-number-condition": ("ND113", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): return dict(v=nd.where(self.v, x, self.v + x))
            def fire(self): return self.v - 1.0
    """),
    "ND114-charge-none": ("ND114", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): dict(v=self.v + x)
            def fire(self): return self.v - 1.0
    """),
    "ND114-charge-empty": ("ND114", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): return {}
            def fire(self): return self.v - 1.0
    """),
    "ND115": ("ND115", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): return dict(v=self.v + x * nd.log(-1.0))
            def fire(self): return self.v - 1.0
    """),
    "ND107-overflow": ("ND107", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): return dict(v=self.v + x * nd.exp(1000.0))
            def fire(self): return self.v - 1.0
    """),
    "ND116": ("ND116", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x):
                e = self.v
                for _ in range(100):
                    e = nd.tanh(e)
                return dict(v=e + x)
            def fire(self): return self.v - 1.0
    """),
    "ND117-staticmethod": ("ND117", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            @staticmethod
            def charge(self, x): return dict(v=self.v + x)
            def fire(self): return self.v - 1.0
    """),
    "ND117-reset-without-spike": ("ND117", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): return dict(v=self.v + x)
            def fire(self): return self.v - 1.0
            def reset(self): return dict(v=self.v * 0)
    """),
    "ND118": ("ND118", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            tau = nd.Param("2.0")
            def charge(self, x): return dict(v=self.v + x / self.tau)
            def fire(self): return self.v - 1.0
    """),
    "ND119": ("ND119", """
        class Bad(nd.Neuron):
            variants = dict(backend=("fast", "slow"))
            v = nd.State(0.0)
            def charge(self, x): return dict(v=self.v + x)
            def fire(self): return self.v - 1.0
    """),
    "ND134": ("ND134", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): return dict(v=self.v + {"gain": 2.0}["gian"] * x)
            def fire(self): return self.v - 1.0
    """),
    "ND135-fails-on-tensors": ("ND135", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            tau = nd.Param(2.0)
            def charge(self, x): return dict(v=self.v * sp.exp(-1 / self.tau) + x)
            def fire(self): return self.v - 1.0
    """),
    "ND135-folds-on-symbols": ("ND135", """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            v_th = nd.Param(1.0)
            def charge(self, x):
                if self.v_th == 1.0:          # False on symbols, True on tensors
                    return dict(v=self.v + 2 * x)
                return dict(v=self.v + x)
            def fire(self): return self.v - self.v_th
    """),
}


COVERED.update(code for code, _ in SPEC_CASES.values())


@pytest.mark.parametrize("case", list(SPEC_CASES))
def test_spec_errors_at_class_definition(case):
    code, body = SPEC_CASES[case]
    err = expect(nd.SpecError, code, lambda: define(body))
    assert isinstance(err, nd.NeuroDSLError)
    assert all(p.code in CATALOGUE for p in err.problems)
    assert err.code == err.codes[0]


def test_spec_error_collects_every_problem():
    body = """
        class Bad(nd.Neuron):
            v = nd.State(0.0)
            def charge(self, x): return dict(v=self.v + x / self.tua, w=x)
            def fire(self): return self.v >= 1.0
    """
    err = expect(nd.SpecError, "ND101", lambda: define(body))
    assert {"ND101", "ND102", "ND104"} <= set(err.codes)
    assert len(err.problems) == len(err.codes) >= 3


def test_variant_specs_are_validated_at_definition():
    """Every variant combination is captured when the class is defined, so a broken branch fails early."""
    body = """
        class Bad(nd.Neuron):
            variants = {"mode": ("ok", "broken")}
            v = nd.State(0.0)
            def charge(self, x):
                if self.mode == "broken":
                    return dict(v=self.v + x * self.missing)
                return dict(v=self.v + x)
            def fire(self): return self.v - 1.0
    """
    expect(nd.SpecError, "ND101", lambda: define(body))


@covers('ND110')
def test_nd110_option_value():
    expect(nd.SpecError, "ND110", lambda: zoo.LIF(reset_mode="medium"))
    expect(nd.SpecError, "ND110", lambda: zoo.LIF.variant_spec(nope=1))
    expect(nd.SpecError, "ND110", lambda: zoo.LIF.analysis(decay_input="yes"))


@covers('ND109')
def test_nd109_abstract_instantiation():
    class Base(nd.Neuron):
        v = nd.State(0.0)

    expect(nd.SpecError, "ND109", lambda: Base())


@covers("ND120")
def test_nd120_invalid_surrogate():
    expect(nd.SpecError, "ND120", lambda: nd.surrogate.Custom(primitive=lambda u, a: sp.floor(a * u)))
    expect(nd.SpecError, "ND120", lambda: nd.surrogate.Custom(gradient=lambda u, a: math.exp(-a * u * u)))
    expect(nd.SpecError, "ND120", lambda: nd.surrogate.ATan(alpha=float("nan")))


@covers('ND121', 'ND122', 'ND123', 'ND124', 'ND131', 'ND132')
# -- instantiation ----------------------------------------------------------------------------------
def test_instantiation_errors():
    expect(nd.SpecError, "ND121", lambda: zoo.LIF(taux=3.0))
    expect(nd.SpecError, "ND122", lambda: zoo.LIF(learnable=("tau", "nope")))
    expect(nd.SpecError, "ND123", lambda: zoo.LIF(tau="2.0"))
    expect(nd.SpecError, "ND123", lambda: zoo.LIF(tau=torch.tensor([2, 3])))
    expect(nd.SpecError, "ND123", lambda: zoo.LIF(tau=True))
    expect(nd.SpecError, "ND124", lambda: zoo.LIF(step_mode="x"))
    expect(nd.SpecError, "ND124", lambda: zoo.LIF(backend="cuda"))
    expect(nd.SpecError, "ND131", lambda: nd.surrogate.Custom(gradient=lambda u, a: a, learnable=True))
    expect(nd.SpecError, "ND131",
           lambda: zoo.LIF(smooth=True, surrogate=nd.surrogate.Custom(gradient=lambda u, a: a / (1 + u * u))))
    # SuperSpike's primitive rises from -1/alpha to 1/alpha: smooth "spikes" were negative (-0.63 for -0.5)
    expect(nd.SpecError, "ND131", lambda: zoo.LIF(smooth=True, surrogate=nd.surrogate.SuperSpike()))
    expect(nd.SpecError, "ND132", lambda: zoo.LIF(surrogate="atan"))
    expect(nd.SpecError, "ND132", lambda: nd.surrogate.Custom())
    expect(nd.SpecError, "ND132", lambda: nd.surrogate.Custom(primitive=lambda u, a: u, gradient=lambda u, a: a))


@covers("ND141", "ND409")
def test_parallel_form_errors():
    expect(nd.SpecError, "ND141", lambda: zoo.QIF(parallel="scan"))          # nonlinear charge
    expect(nd.SpecError, "ND141", lambda: zoo.LIF(parallel="matmul", smooth=True))  # exact mode needs Θ
    expect(nd.SpecError, "ND124", lambda: zoo.LIF(parallel="diagonal"))
    layer = zoo.LIFNoReset(parallel="matmul", tau=torch.tensor([2.0, 3.0, 4.0]))
    expect(nd.NeuroDSLError, "ND409", lambda: layer(torch.rand(4, 2, 3)))


def test_matmul_error_has_the_catalogued_class():
    """docs/errors.md: the hundreds digit tells the class (4xx InputError, raised at call time)."""
    layer = zoo.LIFNoReset(parallel="matmul", tau=torch.tensor([2.0, 3.0, 4.0]))
    expect(nd.InputError, "ND409", lambda: layer(torch.rand(4, 2, 3)))


# -- ND2xx: code generation (printers directly) ---------------------------------------------------------
X = sp.Symbol("x", real=True)


@covers('ND201', 'ND202', 'ND203', 'ND204')
@pytest.mark.parametrize("printer", [TritonPrinter, TorchPrinter], ids=lambda p: p.module)
def test_codegen_errors(printer):
    expect(CodegenError, "ND201", lambda: printer().doprint(X + sp.sqrt(-2)))
    expect(CodegenError, "ND202", lambda: printer().doprint(X + sp.oo))
    expect(CodegenError, "ND202", lambda: printer().doprint(X * sp.Float("inf")))
    expect(CodegenError, "ND203", lambda: printer().doprint(sp.cosh(X)))
    expect(CodegenError, "ND204", lambda: printer().doprint(sp.Piecewise((X, X > 0))))
    assert issubclass(CodegenError, nd.NeuroDSLError) and nd.CodegenError is CodegenError


@covers('ND301')
# -- ND3xx: backends ------------------------------------------------------------------------------------
def test_nd301_triton_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` now raises ImportError
    from kernels_gen import backends
    expect(nd.BackendError, "ND301", lambda: backends.check("triton", torch.device("cpu")))


def test_nd302_in_process(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    layer = zoo.LIF(backend="triton")
    expect(nd.BackendError, "ND302", lambda: layer(torch.rand(2, 3)))


@covers('ND302')
def test_nd302_subprocess_without_interpreter():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = textwrap.dedent("""
        import torch, neurodsl as nd
        try:
            nd.zoo.LIF(backend="triton")(torch.rand(2, 3))
        except nd.BackendError as err:
            print("CODE", err.code)
        else:
            print("CODE none")
    """)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "CODE ND302" in out.stdout


@covers('ND304')
def test_unregistered_kernel_key():
    x = torch.rand(3, 4)
    expect(nd.BackendError, "ND304", lambda: ops.neuron_op("no-such-key", "torch", [x], [torch.zeros(4)],
                                                           [torch.ones(1)]))


@covers('ND303')
def test_nd303_other_device():
    expect(nd.BackendError, "ND303", lambda: ops.check_backend("triton", torch.device("meta")))
    layer = zoo.LIF(backend="triton").to("meta")
    expect(nd.BackendError, "ND303", lambda: layer(torch.rand(2, 3, device="meta")))


@covers('ND305')
def test_nd305_unknown_backend_name():
    from kernels_gen import backends
    expect(nd.BackendError, "ND305", lambda: backends.get("cuda"))


@covers("ND306", "ND307", "ND308", "ND309")
def test_c_backend_errors(monkeypatch, tmp_path):
    from kernels_gen import backends
    from kernels_gen.backends.c import toolchain
    expect(nd.BackendError, "ND307", lambda: ops.check_backend("c", torch.device("meta")))
    layer = zoo.LIF(backend="c").to("meta")
    expect(nd.BackendError, "ND307", lambda: layer(torch.rand(2, 3, device="meta")))
    chain = toolchain.toolchain()
    if isinstance(chain, nd.BackendError):
        pytest.skip(f"no working C compiler here: {chain}")
    expect(nd.BackendError, "ND308", lambda: chain.compile("this is not C;", tmp_path / "bad.so"))
    (tmp_path / "garbage.so").write_text("not a library")
    expect(nd.BackendError, "ND309", lambda: toolchain.load_library(tmp_path / "garbage.so"))
    monkeypatch.setenv("NEURODSL_CC", str(tmp_path / "no-such-cc"))
    err = expect(nd.BackendError, "ND306", lambda: backends.check("c", torch.device("cpu")))
    assert "no-such-cc" in err.message
    expect(nd.BackendError, "ND306", lambda: zoo.LIF(backend="c")(torch.rand(2, 3)))


@covers('ND205')
def test_nd205_template_and_context_disagree():
    from kernels_gen import backends
    from kernels_gen.backends import base
    from neurodsl.analysis import derive_plan
    backend = backends.get("torch")
    plan = derive_plan(zoo.LIF.spec, zoo.LIF().kernel_options())
    context = backend.context(plan, "k", "LIF")
    env = base.environment(str(backend.folder))
    expect(CodegenError, "ND205", lambda: base.render_template(env, backend.template, {**context, "stray": 1}))


@covers('ND410')
def test_nd410_state_argument_and_assignment():
    layer = zoo.ALIF()
    x = torch.rand(3, 2, 4)
    expect(nd.InputError, "ND410", lambda: layer(x, state={"vv": torch.zeros(2, 4)}))
    expect(nd.InputError, "ND410", lambda: layer(x, state={"v": torch.zeros(3)}))
    expect(nd.InputError, "ND410", lambda: setattr(layer, "v", "zero"))


@covers("ND801", "ND802", "ND803", "ND804", "ND805", "ND806", "ND807")
def test_usage_errors(tmp_path):
    from neurodsl import cli
    from neurodsl.errors import UsageError
    from neurodsl.testing import CheckResult, fuzzing
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(0)\n")
    (tmp_path / "imports.py").write_text("from neurodsl.zoo import LIF\n")
    expect(UsageError, "ND801", lambda: cli.load_neuron(str(tmp_path / "missing.py")))
    expect(UsageError, "ND802", lambda: cli.load_neuron(str(tmp_path / "exits.py")))
    expect(UsageError, "ND803", lambda: cli.load_neuron(str(tmp_path / "imports.py")))
    parse = fuzzing._parser().parse_args
    expect(UsageError, "ND804", lambda: fuzzing.validate(parse(["--examples", "0"])))
    expect(UsageError, "ND805", lambda: fuzzing.validate(parse(["--out", str(tmp_path / "no" / "x.json")])))
    expect(UsageError, "ND806", lambda: CheckResult(neurons=1, steps=1, skipped="x").assert_ok())
    if not torch.cuda.is_available():
        expect(UsageError, "ND807", lambda: fuzzing.validate(parse(["--device", "cuda"])))


# -- ND4xx: inputs ----------------------------------------------------------------------------------------
class TwoIn(nd.Neuron):
    v = nd.State(0.0)

    def charge(self, a, b):
        return dict(v=self.v + a - b)

    def fire(self):
        return self.v - 1.0


@covers('ND401', 'ND402', 'ND403', 'ND404', 'ND405', 'ND406', 'ND407', 'ND408')
def test_input_errors():
    lif = zoo.LIF()
    expect(nd.InputError, "ND401", lambda: lif(torch.tensor(1.0)))
    expect(nd.InputError, "ND402", lambda: lif(torch.rand(2, 3), torch.rand(2, 3)))
    expect(nd.InputError, "ND402", lambda: TwoIn()(torch.rand(2, 3)))
    expect(nd.InputError, "ND403", lambda: TwoIn()(torch.rand(2, 3), torch.rand(2, 4)))
    expect(nd.InputError, "ND403", lambda: TwoIn()(torch.rand(2, 3), torch.rand(2, 3).double()))
    expect(nd.InputError, "ND404", lambda: lif(torch.rand(0, 3)))
    expect(nd.InputError, "ND405", lambda: lif(torch.ones(2, 3, dtype=torch.int64)))
    expect(nd.InputError, "ND405", lambda: lif([[1.0, 2.0]]))
    expect(nd.InputError, "ND406", lambda: zoo.LIF()(torch.rand(2, 3, device="meta")))
    expect(nd.InputError, "ND407", lambda: zoo.LIF(tau=torch.full((4,), 2.0))(torch.rand(2, 3, 5)))
    expect(nd.InputError, "ND407", lambda: zoo.LIF(tau=torch.full((3, 1), 2.0))(torch.rand(2, 4, 3)))
    carried = zoo.LIF()
    carried(torch.rand(2, 3, 4))
    expect(nd.InputError, "ND408", lambda: carried(torch.rand(2, 5, 4)))


def test_nd408_is_not_raised_when_state_is_given():
    layer = zoo.LIF()
    layer(torch.rand(2, 3, 4))
    out = layer(torch.rand(2, 5, 4), state={"v": torch.zeros(5, 4)})
    assert out.shape == (2, 5, 4)


# -- catalogue bookkeeping ------------------------------------------------------------------------------
def test_every_catalogue_code_is_covered():
    missing = set(CATALOGUE) - COVERED
    assert not missing, f"codes no test triggers: {sorted(missing)}"
    assert COVERED <= set(CATALOGUE)


def test_error_hierarchy_and_codes():
    assert all(code.startswith("ND") and len(code) == 5 for code in CATALOGUE)
    for cls in (nd.SpecError, nd.InputError, nd.BackendError, nd.CodegenError):
        assert issubclass(cls, nd.NeuroDSLError)
    err = nd.InputError("ND404", "x")
    assert err.code == "ND404" and str(err).startswith("[ND404]")


# -- ND5xx: NIR exchange (neurodsl.nir_io; the `nir` package is optional) ----------------------------------
@covers("ND501", "ND502", "ND503")
def test_nir_exchange_errors():
    nir = pytest.importorskip("nir")
    import numpy as np

    from neurodsl.nir_io import NIRError, from_nir, to_nir

    assert issubclass(NIRError, nd.NeuroDSLError)
    expect(NIRError, "ND501", lambda: to_nir(torch.nn.Sequential(torch.nn.Linear(3, 2), zoo.LIF(reset_mode="soft")),
                                             (3,)))
    expect(NIRError, "ND501", lambda: to_nir(zoo.ALIF(), (3,)))
    leaky = nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2))
    expect(NIRError, "ND502", lambda: from_nir(nir.NIRGraph.from_list(leaky)))
    unreachable_loop = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "if": nir.IF(r=np.ones(2), v_threshold=np.ones(2)),
               "rec": nir.Linear(weight=np.eye(2, dtype=np.float32)), "output": nir.Output(np.array([2]))},
        edges=[("input", "output"), ("if", "rec"), ("rec", "if")], type_check=False)
    expect(NIRError, "ND503", lambda: from_nir(unreachable_loop))


# -- ND6xx: time splitting across processes (neurodsl.distributed) ----------------------------------------
@covers("ND601", "ND602")
def test_distributed_errors():
    from neurodsl.distributed import TimeSplit
    from neurodsl.errors import DistributedError

    assert issubclass(DistributedError, nd.NeuroDSLError)
    expect(DistributedError, "ND601", lambda: TimeSplit(zoo.LIF()))                    # spike-driven reset
    expect(DistributedError, "ND601", lambda: TimeSplit(zoo.QIF.without_reset()()))    # nonlinear charge
    expect(DistributedError, "ND601", lambda: TimeSplit(torch.nn.Linear(2, 2)))
    assert not torch.distributed.is_initialized()
    expect(DistributedError, "ND602", lambda: TimeSplit(zoo.LIFNoReset())(torch.rand(4, 3)))


# -- ND7xx: the on-disk kernel cache (more in tests/test_cache_security.py) --------------------------------
@covers("ND701", "ND702", "ND703")
def test_cache_errors(monkeypatch, tmp_path):
    import tempfile

    from kernels_gen import cache
    from neurodsl.errors import CacheError

    assert issubclass(CacheError, nd.NeuroDSLError)
    monkeypatch.setattr(cache, "_WARNED", set())
    expect(CacheError, "ND701", lambda: cache.load_module("x", "../key", "torch", lambda: ""))
    expect(CacheError, "ND701", lambda: cache.entry_path("x", "0123abcd", "torch/.."))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / f"neurodsl-cache-{os.geteuid()}").symlink_to(tmp_path)  # a squatted per-user fallback
    expect(CacheError, "ND702", cache.private_dir)
    monkeypatch.setenv("NEURODSL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NEURODSL_CACHE_TRUST_SHARED", "yes")
    expect(CacheError, "ND703", cache.cache_dir)


# -- appended: ND133 (SpikingJelly surrogate without an equal) and ND504 (NIR dt) ---------------------------
@covers("ND133")
def test_nd133_spikingjelly_surrogate_without_equal():
    pytest.importorskip("spikingjelly.activation_based")
    from spikingjelly.activation_based import neuron, surrogate

    model = torch.nn.Sequential(neuron.LIFNode(surrogate_function=surrogate.SuperSpike(alpha=2.0)))
    err = expect(nd.SpecError, "ND133", lambda: nd.replace_lif_nodes(model))
    assert "SuperSpike" in str(err)
    expect(nd.SpecError, "ND133", lambda: zoo.LIF.from_spikingjelly(model[0]))


@covers("ND504")
def test_nd504_nir_dt():
    pytest.importorskip("nir")
    from neurodsl.nir_io import NIRError, from_nir, to_nir

    for dt in (0.0, -1e-3, float("nan"), float("inf"), True, "1e-3"):
        expect(NIRError, "ND504", lambda: to_nir(zoo.LIF(), (3,), dt=dt))
    expect(NIRError, "ND504", lambda: from_nir(to_nir(zoo.LIF(), (3,)), dt=0.0))


# -- ND310/ND311: the tangent kernels; ND9xx: online learning (neurodsl.online) -------------------------------
@covers("ND310", "ND311")
def test_tangent_kernel_errors(monkeypatch):
    import torch.autograd.forward_ad as fwAD

    from kernels_gen import backends
    from kernels_gen.backends import base
    from neurodsl.analysis import KernelOptions
    from neurodsl.compiler import compile_spec

    class NoTangent(type(backends.get("torch"))):
        name = "notangent"
        tangent_context = base.Backend.tangent_context

    monkeypatch.setitem(backends._BACKENDS, "notangent", NoTangent())
    layer = zoo.LIF(backend="notangent")
    x = torch.rand(3, 4)
    expect(nd.BackendError, "ND310", lambda: torch.func.jvp(lambda x: layer(x), (x,), (torch.ones_like(x),)))
    key = ops.register(compile_spec(zoo.LIF.spec, KernelOptions(nd.surrogate.ATan(), vector_params=(False,) * 3)))
    params = [torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([2.0]), torch.tensor([2.0])]
    with fwAD.dual_level():
        params[2] = fwAD.make_dual(params[2], torch.ones(1))       # a tangent on tau, which these kernels lack
        expect(nd.BackendError, "ND311", lambda: ops.neuron_op(key, "torch", [x], [torch.zeros(4)], params))


@covers("ND312")
@pytest.mark.parametrize("backend", ["c", "torch"])
def test_second_order_through_a_layer_is_refused(backend):
    """Gradients made with create_graph=True carry a node that refuses a second derivative (never a silent
    zero or a derivative that misses the kernels' dependence on their saved values)."""
    from kernels_gen.backends.c import toolchain
    if backend == "c" and not isinstance(toolchain.toolchain(), toolchain.Toolchain):
        pytest.skip("no C compiler")
    layer = zoo.LIF(backend=backend, learnable=("tau",)).double()
    x = (torch.rand(6, 4, dtype=torch.float64) * 2).requires_grad_()
    s = layer(x)
    g, = torch.autograd.grad((s * s).sum(), x, create_graph=True)
    assert g.requires_grad
    expect(nd.BackendError, "ND312", lambda: (g ** 2).sum().backward())
    expect(nd.BackendError, "ND312", lambda: torch.autograd.functional.jvp(
        lambda x: layer(x).sum(), x.detach(), torch.ones_like(x)))

    def loss(x):
        layer.reset_state()
        return (layer(x) ** 2).sum()
    expect(nd.BackendError, "ND312", lambda: torch.func.grad(lambda x: torch.func.grad(loss)(x).sum())(x.detach()))


@covers("ND901", "ND902", "ND903", "ND904", "ND905", "ND906")
def test_online_learning_errors():
    from torch import nn

    from neurodsl import online
    from neurodsl.errors import OnlineError

    assert issubclass(OnlineError, nd.NeuroDSLError)
    lif = lambda **kw: zoo.LIF(backend="torch", **kw)  # noqa: E731
    expect(OnlineError, "ND901", lambda: online.EProp(lif()))                              # not a Sequential
    expect(OnlineError, "ND901", lambda: online.EProp(nn.Sequential(nn.Linear(2, 3))))     # no neuron
    expect(OnlineError, "ND901", lambda: online.EProp(nn.Sequential(TwoIn())))             # two inputs
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), lif())
    expect(OnlineError, "ND902", lambda: online.EProp(conv))                                # no per-synapse trace
    expect(OnlineError, "ND902", lambda: online.OTTT(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 3), lif())))
    x = torch.rand(4, 2, 2)
    loss = lambda t, out: out.sum()  # noqa: E731
    expect(OnlineError, "ND903", lambda: online.gradients(nn.Sequential(nn.Linear(2, 3), zoo.CubaLIF(backend="torch")),
                                                          x, loss, "ottt"))                # coupled charge: no leak
    per_neuron = nn.Sequential(nn.Linear(2, 3), lif(tau=torch.full((3,), 2.0)))
    expect(OnlineError, "ND903", lambda: online.gradients(per_neuron, x, loss, "ottt"))   # one leak per neuron
    expect(OnlineError, "ND904", lambda: online.gradients(per_neuron, x, loss, "bptt2"))
    rule = online.EProp(per_neuron)
    rule.step(x[0])
    expect(OnlineError, "ND905", lambda: rule.step(torch.rand(3, 2)))                     # batch changed
    expect(OnlineError, "ND906", lambda: online.gradients(per_neuron, x, loss, "ottt", deferred=True))
    from neurodsl.online.deferred import deferred_eprop
    expect(OnlineError, "ND906", lambda: deferred_eprop(per_neuron, torch.rand(2), loss))
