"""Every function of the registry agrees with torch on every backend, over magnitudes 1e-30..1e3, both signs.

Each registry entry is printed by each backend's printer into a one-line kernel (a torch expression; a Triton
kernel through the interpreter) and compared, in fp32, with the entry's torch implementation in fp64 rounded
to fp32: relative error within the entry's documented ``rel_tol`` (plus an absolute floor at the edge of fp32's
normal range). Integer-valued exponents of any size are exact powers (negative bases included), and the
printers never turn them into exp/log.
"""
from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings, strategies as st

from kernels_gen import backends
from kernels_gen.functions import REGISTRY

X, Y = sp.Symbol("x", real=True), sp.Symbol("y", real=True)
TINY = 1.2e-38                                            # fp32's smallest normal: results below count as 0
MAGNITUDES = torch.tensor([0.0] + [10.0 ** e for e in range(-30, 4)] + [0.3, 0.5, 0.7, 1.5, 2.5, 4.5, 9.0, 30.0,
                                                                       88.0, 100.0, 500.0], dtype=torch.float64)


def sample(domain: str) -> torch.Tensor:
    both = torch.cat([MAGNITUDES, -MAGNITUDES])
    return {"real": both, "positive": MAGNITUDES[MAGNITUDES > 0], "nonnegative": MAGNITUDES}[domain]


def evaluate(backend: str, expr, values: dict[str, torch.Tensor], tmp_path) -> torch.Tensor:
    """``expr`` printed by ``backend``'s printer and run on fp32 tensors."""
    printer = backends.get(backend).printer("float32")
    text = printer.doprint(expr)
    args = {k: v.to(torch.float32).contiguous() for k, v in values.items()}
    if backend == "torch":
        return eval(text, {"torch": torch}, dict(args))  # noqa: S307 - our own printed expression
    if backend == "c":
        return evaluate_c(text, args, tmp_path)
    names = sorted(args)
    source = "\n".join([
        "import triton", "import triton.language as tl", "import kernels_gen.backends.triton.mathlib as _nd",
        "COMPUTE: tl.constexpr = tl.float32", "", "@triton.jit",
        f"def kernel({', '.join(n + '_ptr' for n in names)}, out_ptr, N, BLOCK: tl.constexpr):",
        "    offs = tl.arange(0, BLOCK)", "    mask = offs < N",
        *[f"    {n} = tl.load({n}_ptr + offs, mask=mask, other=1.0)" for n in names],
        f"    tl.store(out_ptr + offs, {text}, mask=mask)", ""])
    path = tmp_path / f"k_{abs(hash(source))}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    n = next(iter(args.values())).numel()
    out = torch.empty(n, dtype=torch.float32)
    module.kernel[(1,)](*[args[k] for k in names], out, n, BLOCK=max(16, 1 << (n - 1).bit_length()))
    return out


def evaluate_c(text: str, args: dict[str, torch.Tensor], tmp_path) -> torch.Tensor:
    """A printed C expression as a one-loop fp32 library, built with the C backend's toolchain."""
    import ctypes

    from kernels_gen.backends import base
    from kernels_gen.backends.c import toolchain
    chain = toolchain.toolchain()
    if isinstance(chain, Exception):
        pytest.skip(str(chain))
    names = sorted(args)
    mathlib = base.environment(str(backends.get("c").folder)).get_template("mathlib.c.j2").render()
    source = "\n".join(["#include <math.h>", "#include <stdint.h>", mathlib,
                        f"void kernel({', '.join(f'const float* {n}_ptr' for n in names)}, float* out, int64_t N) {{",
                        "    for (int64_t i = 0; i < N; i++) {",
                        *[f"        const float {n} = {n}_ptr[i];" for n in names],
                        f"        out[i] = {text};", "    }", "}", ""])
    path = tmp_path / f"k_{abs(hash(source))}.so"
    chain.compile(source, path)
    n = next(iter(args.values())).numel()
    out = torch.empty(n, dtype=torch.float32)
    ctypes.CDLL(str(path)).kernel(*[ctypes.c_void_p(args[k].data_ptr()) for k in names],
                                  ctypes.c_void_p(out.data_ptr()), ctypes.c_int64(n))
    return out


def assert_agrees(got: torch.Tensor, want64: torch.Tensor, rel_tol: float, what: str):
    want = want64.to(torch.float32).to(torch.float64)   # what fp32 can hold
    got = got.to(torch.float64)
    finite = torch.isfinite(want)
    assert torch.equal(torch.isnan(got), torch.isnan(want)), f"{what}: NaN where torch has none (or the reverse)"
    inf = torch.isinf(want)
    assert torch.equal(got[inf], want[inf]), f"{what}: infinities differ"
    err = (got - want).abs()[finite]
    bound = rel_tol * want.abs()[finite] + TINY
    if not err.numel():
        return
    worst = int(torch.argmax(err - bound))
    assert bool((err <= bound).all()), (f"{what}: error {float(err[worst]):.3g} > {float(bound[worst]):.3g} at "
                                        f"torch value {float(want[finite][worst]):.6g}")


UNARY = [f for f in REGISTRY.values() if f.arity == 1 and f.name not in ("sign", "heaviside", "sqrt")]


@pytest.mark.parametrize("backend", backends.names())
@pytest.mark.parametrize("entry", UNARY + [REGISTRY["sqrt"]], ids=lambda f: f.name)
def test_unary_function_agrees_with_torch(backend, entry, tmp_path):
    x = sample(entry.domain)
    got = evaluate(backend, entry.build(X), {"x": x}, tmp_path)
    assert_agrees(got, entry.tensor(x.to(torch.float32).to(torch.float64)), entry.rel_tol,
                  f"{backend} {entry.name}")


@pytest.mark.parametrize("backend", backends.names())
@pytest.mark.parametrize("name", ["minimum", "maximum"])
def test_min_max_agree_with_torch(backend, name, tmp_path):
    x = sample("real")
    y = x.flip(0) * 0.7
    entry = REGISTRY[name]
    got = evaluate(backend, entry.build(X, Y), {"x": x, "y": y}, tmp_path)
    assert_agrees(got, entry.tensor(x.float().double(), y.float().double()), 0.0, f"{backend} {name}")


@pytest.mark.parametrize("backend", backends.names())
@pytest.mark.parametrize("build", [lambda: sp.sign(X), lambda: sp.Heaviside(X), lambda: sp.Piecewise((X * 2, X > 0.5),
                                                                                                      (-X, True))],
                         ids=["sign", "heaviside", "where"])
def test_structural_entries(backend, build, tmp_path):
    x = sample("real")
    want = sp.lambdify(X, build(), modules=[{"Heaviside": lambda v, h0=0.5: np.heaviside(v, h0)}, "numpy"])
    got = evaluate(backend, build(), {"x": x}, tmp_path)
    expected = torch.as_tensor(want(x.float().double().numpy()), dtype=torch.float64)
    assert_agrees(got, expected, 0.0, f"{backend} {build()}")


@pytest.mark.parametrize("backend", backends.names())
@pytest.mark.parametrize("exponent", [2, 3, 9, 13, 31, 64, -1, -7, 9.0, 2.0, -3.0])
def test_integer_powers_are_exact_powers(backend, exponent, tmp_path):
    """``x**9`` and ``x**2.0`` were exp(p·log x) on Triton: NaN for every negative x."""
    x = torch.tensor([-2.5, -1.3, -1.0, -0.7, -1e-3, 0.5, 1.0, 1.1, 3.0], dtype=torch.float64)
    text = backends.get(backend).printer("float32").doprint(X ** exponent)
    assert "log" not in text and "exp(" not in text.replace("_nd.", "")
    got = evaluate(backend, X ** exponent, {"x": x}, tmp_path)
    want = torch.pow(x.float().double(), float(exponent))
    assert_agrees(got, want, 1e-6 * max(1, abs(int(exponent))), f"{backend} x**{exponent}")


@pytest.mark.parametrize("backend", backends.names())
def test_real_powers_of_positive_bases(backend, tmp_path):
    x = sample("positive")[:-6]                          # away from overflow of x**2.5
    for exponent in (0.5, 1.5, 2.5, -0.5, 0.3):
        got = evaluate(backend, X ** sp.Float(exponent), {"x": x}, tmp_path)
        assert_agrees(got, torch.pow(x.float().double(), exponent), REGISTRY["pow"].rel_tol,
                      f"{backend} x**{exponent}")


@settings(max_examples=12, deadline=None)
@given(st.integers(-40, 40), st.floats(-3.0, 3.0, allow_nan=False).filter(lambda v: abs(v) > 1e-3))
def test_integer_power_property(exponent, base):
    """Any integer exponent, any sign of the base: the Triton printer's repeated squaring equals torch.pow."""
    tmp = pytest.importorskip("tempfile")
    with tmp.TemporaryDirectory() as d:
        from pathlib import Path
        x = torch.tensor([base, -base], dtype=torch.float64)
        got = evaluate("triton", X ** exponent, {"x": x}, Path(d))
    want = torch.pow(x.float().double(), float(exponent))
    want = torch.where(want.abs() > 3.4e38, torch.sign(want) * float("inf"), want)
    assert_agrees(got, want, 1e-6 * max(1, abs(exponent)), f"x**{exponent} at {base}")


@settings(max_examples=12, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=1, max_size=24),
       st.sampled_from([f.name for f in UNARY]))
def test_any_magnitude_agrees_with_torch(values, name):
    """Random fp32 magnitudes (hypothesis shrinks to the worst), each unary function, on the Triton printer."""
    import tempfile
    from pathlib import Path
    entry = REGISTRY[name]
    x = torch.tensor(values, dtype=torch.float64)
    x = {"real": x, "positive": x.abs() + 1e-30, "nonnegative": x.abs()}[entry.domain]
    with tempfile.TemporaryDirectory() as d:
        got = evaluate("triton", entry.build(X), {"x": x}, Path(d))
    assert_agrees(got, entry.tensor(x.float().double()), entry.rel_tol, f"triton {name}")


def test_every_registry_function_is_covered_here():
    covered = {f.name for f in UNARY} | {"sqrt", "minimum", "maximum", "sign", "heaviside", "where", "pow"}
    assert covered == set(REGISTRY), set(REGISTRY) ^ covered


def test_every_backend_prints_every_function():
    for name, entry in itertools.product(backends.names(), REGISTRY.values()):
        backends.get(name).printer().check_registry()
