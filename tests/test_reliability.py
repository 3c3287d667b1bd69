"""Reliability of the running module: input validation, strided inputs and gradients, NaN / Inf,
int64 offsets, determinism and fp16 / bf16 inputs (see docs/reliability.md).

The error codes themselves are covered by tests/test_errors.py and fp16/bf16 against the reference
loop by tests/test_shapes_modes.py; this file adds what those leave out.
"""
from __future__ import annotations

import re

import pytest
import torch

import neurodsl as nd
from kernels_gen.backends.triton import block_size
from neurodsl import zoo

from helpers import assert_close, compare, require_safe_inputs, run_with_grads

BACKENDS = ["torch", "triton"]
NAN, INF = float("nan"), float("inf")
# the Triton interpreter computes with numpy, which warns about NaN / Inf arithmetic
numpy_nonfinite = pytest.mark.filterwarnings("ignore:(invalid value|overflow) encountered:RuntimeWarning")


def expect_code(code, fn):
    with pytest.raises(nd.InputError) as err:
        fn()
    assert err.value.code == code, str(err.value)


class TwoIn(nd.Neuron):
    """Excitatory and inhibitory drive (two inputs)."""

    v = nd.State(0.0)
    tau = nd.Param(2.0)

    def charge(self, exc, inh):
        return dict(v=self.v + (exc - inh - self.v) / self.tau)

    def fire(self):
        return self.v - 1.0

    def reset(self, s):
        return dict(v=self.v * (1 - s))


# -- input validation --------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_rank_depends_on_step_mode(backend):
    x = torch.rand(3, 4) * 2
    assert zoo.LIF(backend=backend)(x).shape == (3, 4)  # 'm': [T, *shape]
    single = zoo.LIF(backend=backend, step_mode="s")
    assert single(x).shape == (3, 4)  # 's': one step of shape [3, 4]
    single.reset_state()
    assert single(torch.tensor(2.0)).shape == ()  # 's' takes a 0-d step ...
    expect_code("ND401", lambda: zoo.LIF(backend=backend)(torch.tensor(2.0)))  # ... 'm' needs a time dim
    # a layer carrying a [4] state refuses a step of another rank until reset_state()
    layer = zoo.LIF(backend=backend, step_mode="s")
    layer(torch.rand(4))
    expect_code("ND408", lambda: layer(torch.rand(3, 4)))
    layer.reset_state()
    assert layer(torch.rand(3, 4)).shape == (3, 4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_time_dim_zero_raises_but_zero_neurons_is_empty(backend):
    expect_code("ND404", lambda: zoo.LIF(backend=backend)(torch.rand(0, 3)))
    expect_code("ND404", lambda: zoo.ALIF(backend=backend)(torch.rand(0, 2, 3)))
    expect_code("ND404", lambda: TwoIn(backend=backend)(torch.rand(0, 3), torch.rand(0, 3)))
    assert zoo.LIF(backend=backend)(torch.rand(3, 0)).shape == (3, 0)
    assert zoo.LIF(backend=backend, step_mode="s")(torch.rand(0, 3)).shape == (0, 3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int32, torch.int64, torch.complex64], ids=str)
def test_non_floating_inputs_raise_nd405(backend, dtype):
    expect_code("ND405", lambda: zoo.LIF(backend=backend)(torch.ones(2, 3, dtype=dtype)))
    expect_code("ND405", lambda: TwoIn(backend=backend)(torch.ones(2, 3), torch.ones(2, 3, dtype=dtype)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_of_different_shape_or_dtype_raise_nd403(backend):
    layer = TwoIn(backend=backend)
    a = torch.rand(3, 4)
    expect_code("ND403", lambda: layer(a, torch.rand(3, 5)))
    expect_code("ND403", lambda: layer(a, torch.rand(4, 4)))
    expect_code("ND403", lambda: layer(a, torch.rand(3, 1)))  # no broadcasting between inputs
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        expect_code("ND403", lambda: layer(a, a.to(dtype)))
    assert layer(a, a.t().contiguous().t()).shape == (3, 4)  # strides may differ


@pytest.mark.parametrize("backend", BACKENDS)
def test_fp64_input_with_fp32_params_computes_in_fp64(backend):
    """The layer is not converted: fp32 parameters are widened, math and outputs are fp64."""
    layer = zoo.ALIF(backend=backend, learnable=("tau", "beta"))
    assert layer.tau.dtype == torch.float32
    xs = require_safe_inputs(layer, 6, (3, 4), seed=7, dtype=torch.float64)
    spikes, states, grads = compare(layer, *xs)  # fp64 tolerance for fp64 tensors, fp32 for fp32 grads
    assert layer._last_options.compute_dtype == "float64"
    assert spikes.dtype == torch.float64 and all(v.dtype == torch.float64 for v in states.values())
    assert grads["x0"].dtype == torch.float64
    assert grads["tau"].dtype == torch.float32 and layer.tau.dtype == torch.float32  # params stay fp32
    # the same as converting the layer with .double() (its params hold the same values)
    wide = zoo.ALIF(backend=backend, learnable=("tau", "beta")).double()
    s2, st2, g2, _ = run_with_grads(wide, xs)
    assert torch.equal(spikes, s2)
    for k in states:
        assert torch.equal(states[k], st2[k])
    assert torch.equal(grads["x0"], g2["x0"])
    assert torch.equal(grads["tau"], g2["tau"].float())


# -- strided inputs and upstream gradients -----------------------------------------------------------
def _views(T=5, B=3, N=4, seed=0):
    """(name, leaf, view maker): each view is non-contiguous or has a stride-0 dim, shape [T, B, N]."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=g) * 2  # noqa: E731
    return [
        ("transpose", r(T, N, B), lambda b: b.transpose(1, 2)),
        ("time-minor", r(B, T, N), lambda b: b.transpose(0, 1)),
        ("step-2 slice", r(T, B, 2 * N), lambda b: b[:, :, ::2]),
        ("expand batch (stride 0)", r(T, 1, N), lambda b: b.expand(T, B, N)),
        ("expand time (stride 0)", r(1, B, N), lambda b: b.expand(T, B, N)),
        ("scalar expand (all strides 0)", r(1, 1, 1), lambda b: b.expand(T, B, N)),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", range(6), ids=[v[0] for v in _views()])
def test_strided_inputs_equal_contiguous_copies(backend, case):
    name, base, view = _views()[case]
    assert not view(base).is_contiguous() or 0 in view(base).stride()
    results = []
    for contiguous in (False, True):
        layer = zoo.ALIF(backend=backend, learnable=("tau", "beta"), tau=torch.full((3, 4), 2.0))
        leaf = base.clone().requires_grad_()
        x = view(leaf).contiguous() if contiguous else view(leaf)
        spikes = layer(x)
        w = torch.linspace(-1, 1, spikes.numel()).reshape(spikes.shape)
        loss = (spikes * w).sum() + layer.v.sum() + (layer.a * 0.5).sum()
        grads = torch.autograd.grad(loss, [leaf, layer.tau, layer.beta])
        results.append((spikes, layer.v, layer.a, *grads))
    for a, b in zip(*results):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_per_neuron_parameter(backend):
    x = torch.rand(5, 3, 4) * 2
    tau = 1.5 + torch.rand(4, 3)
    a = zoo.LIF(backend=backend, tau=tau.t(), learnable=("tau",))
    b = zoo.LIF(backend=backend, tau=tau.t().contiguous(), learnable=("tau",))
    assert torch.equal(a(x), b(x))
    ga = torch.autograd.grad(a.v.sum(), [a.tau])[0]
    gb = torch.autograd.grad(b.v.sum(), [b.tau])[0]
    assert torch.equal(ga, gb)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stride0_and_non_contiguous_upstream_gradients(backend):
    """`.sum()` hands backward stride-0 gradients, a transposed weight a non-contiguous one."""
    layer = zoo.CubaLIF(backend=backend, learnable=("v_decay",))
    (x,) = require_safe_inputs(layer, 6, (3, 4), seed=9)
    wt = torch.randn(6, 4, 3).transpose(1, 2)  # non-contiguous
    losses = {
        "sum": lambda s, st: s.sum() + st["v"].sum() + st["i"].sum(),
        "transposed": lambda s, st: (s * wt).sum() + (st["v"].t() * wt[0].t()).sum(),
        "dense": lambda s, st: (s * torch.ones_like(s)).sum() + (st["v"] * torch.ones(3, 4)).sum()
                               + (st["i"] * torch.ones(3, 4)).sum(),
    }
    out = {}
    for name, loss_fn in losses.items():
        for ref in (False, True):
            xa = x.clone().requires_grad_()
            if ref:
                s, seqs = nd.reference_run(layer, xa)
                st = {k: v[-1] for k, v in seqs.items()}
            else:
                layer.reset_state()
                s = layer(xa)
                st = {"v": layer.v, "i": layer.i}
            out[name, ref] = torch.autograd.grad(loss_fn(s, st), [xa, layer.v_decay])
        for a, b in zip(out[name, False], out[name, True]):
            assert torch.isfinite(a).all()
            assert_close(a, b, torch.float32, f"{name} grad")
    for a, b in zip(out["sum", False], out["dense", False]):  # stride 0 vs dense ones: same kernel input
        assert torch.equal(a, b)


# -- NaN / Inf -----------------------------------------------------------------------------------------
NONFINITE = [((2, 3), NAN), ((1, 5), INF), ((3, 6), -INF), ((0, 7), NAN)]


def _nonfinite_input(T=6, N=10, seed=0):
    x = torch.rand(T, N, generator=torch.Generator().manual_seed(seed)) * 2
    for (t, n), value in NONFINITE:
        x[t, n] = value
    return x


@numpy_nonfinite
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", [zoo.LIF, zoo.ALIF, zoo.Izhikevich, zoo.CubaLIF], ids=lambda c: c.__name__)
def test_nan_inf_propagate_as_in_reference(cls, backend):
    kw = dict(getattr(cls, "check_kwargs", {}))
    layer = cls(backend=backend, store_state_seqs=True, **kw)
    x = _nonfinite_input()
    spikes = layer(x)
    with torch.no_grad():
        ref, seqs, fire = nd.reference_run(layer, x, return_fire=True)
    assert torch.isfinite(spikes).all() and ((spikes == 0) | (spikes == 1)).all(), "spikes are always 0 or 1"
    defined = ~torch.isnan(ref)
    assert torch.equal(spikes[defined], ref[defined])
    assert torch.equal(spikes, (fire >= 0).to(spikes.dtype)), "spike = Θ(fire); Θ(NaN) = 0"
    for k in layer.spec.states:
        got, want = layer.state_seqs[k], seqs[k]
        assert torch.equal(torch.isnan(got), torch.isnan(want)), f"state {k}: NaN positions differ"
        assert torch.equal(torch.isinf(got), torch.isinf(want)), f"state {k}: Inf positions differ"
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)
    # neurons are independent: the others run as if the bad values were not there
    bad = sorted({n for (_, n), _ in NONFINITE})
    good = [n for n in range(x.shape[1]) if n not in bad]
    clean = cls(backend=backend, store_state_seqs=True, **kw)
    assert torch.equal(clean(x[:, good]), spikes[:, good])
    input_symbols = {sp_sym for _, expr in layer.spec.charge for sp_sym in expr.free_symbols
                     if sp_sym.name.startswith("x_")}
    for k, (_, charge) in zip(layer.spec.states, layer.spec.charge):
        assert torch.equal(clean.state_seqs[k], layer.state_seqs[k][:, good])
        if charge.free_symbols & input_symbols:  # states the input reaches keep a trace of NaN/Inf
            assert not torch.isfinite(layer.state_seqs[k][-1, bad]).any(), f"state {k}: NaN/Inf input leaves no trace"
        # a state driven only by spikes (ALIF's a) stays finite: Θ(NaN) = 0, as in the reference loop


def test_reference_spikes_are_heaviside_for_nan_fire():
    """reference_run's straight-through spike Θ(u) + (g(u) - g(u).detach()) must have the value Θ(u)."""
    x = torch.tensor([[0.5], [NAN], [0.5]])
    spikes, _ = nd.reference_run(zoo.LIF(), x)
    assert torch.equal(spikes.detach(), torch.zeros(3, 1)), spikes


@numpy_nonfinite
@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_parameter_and_initial_state(backend):
    """A NaN per-neuron parameter or initial state poisons that neuron only; spikes stay 0/1."""
    tau = torch.full((5,), 2.0)
    tau[1] = NAN
    layer = zoo.LIF(backend=backend, tau=tau)
    x = torch.rand(4, 5) * 3
    init = torch.zeros(5)
    init[3] = NAN
    spikes = layer(x, state={"v": init})
    ref, seqs = nd.reference_run(layer, x, init={"v": init})
    assert ((spikes == 0) | (spikes == 1)).all()
    assert torch.equal(torch.isnan(layer.v), torch.isnan(seqs["v"][-1].detach()))
    assert torch.isnan(layer.v[[1, 3]]).all() and torch.isfinite(layer.v[[0, 2, 4]]).all()
    keep = [0, 2, 4]
    assert torch.equal(spikes[:, keep], ref.detach()[:, keep])


# -- int64 offsets -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [zoo.IF, zoo.QIF, zoo.ALIF], ids=lambda c: c.__name__)
def test_triton_source_computes_offsets_in_int64(cls):
    layer = cls(backend="triton", learnable=cls.spec.params)
    layer(torch.rand(2, 3))
    src = layer.kernel_source("all", backend="triton")
    kernels = re.split(r"\ndef (?=forward_kernel|backward_kernel)", src)[1:]
    assert [k.split("(")[0] for k in kernels] == ["forward_kernel", "backward_kernel"]
    for body in kernels:
        assert "offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)" in body
        assert "int32" not in body
    assert "idx = offs\n" in kernels[0] and "idx += N" in kernels[0]
    assert "idx = offs + (T - 1).to(tl.int64) * N" in kernels[1] and "idx -= N" in kernels[1]
    # every global access is at offs (per neuron) or idx (per neuron and step), both int64
    for ptr, index in re.findall(r"tl\.(?:load|store)\((\w+_ptr) \+ (\w+)", src):
        assert index in ("offs", "idx"), f"{ptr} indexed by {index}"


def _emulate_offsets(T: int, N: int, BLOCK: int, cast: bool):
    """The kernel's offset arithmetic for the last program, with Triton's integer types.

    Scalar kernel args below 2**31 are i32 (larger ones i64), ``tl.program_id`` and ``tl.arange``
    are i32; i32 (+|*) i64 -> i64. ``cast=False`` drops the ``.to(tl.int64)`` calls.
    """
    i32, i64 = torch.int32, torch.int64
    # 1-element tensors, not 0-d ones: torch lets 0-d tensors promote like Python scalars
    n_t = torch.tensor([N], dtype=i32 if N < 2 ** 31 else i64)
    t_t = torch.tensor([T], dtype=i32)
    pid = torch.tensor([-(-N // BLOCK) - 1], dtype=i32)
    offs = (pid.to(i64) if cast else pid) * BLOCK + torch.arange(BLOCK, dtype=i32)
    fwd = offs.clone()
    for _ in range(T - 1):  # forward: idx = offs; idx += N after each step
        fwd = fwd + n_t
    bwd = offs + ((t_t - 1).to(i64) if cast else (t_t - 1)) * n_t  # backward start: last step
    return offs, fwd, bwd, bwd - n_t


@pytest.mark.parametrize("T,N", [(3, 2 ** 30 + 77), (1025, 2 ** 21 + 3), (2, 2 ** 31 + 5)])
def test_offset_arithmetic_does_not_overflow(T, N):
    assert T * N > 2 ** 31
    BLOCK = block_size(N, torch.device("cuda"))
    offs, fwd, bwd, prev = _emulate_offsets(T, N, BLOCK, cast=True)
    first = (-(-N // BLOCK) - 1) * BLOCK  # Python ints: exact
    want = [first + j for j in range(BLOCK)]
    assert offs.dtype == fwd.dtype == bwd.dtype == torch.int64
    assert offs.tolist() == want
    assert fwd.tolist() == bwd.tolist() == [(T - 1) * N + n for n in want]
    assert prev.tolist() == [(T - 2) * N + n for n in want]
    assert max(bwd.tolist()) > 2 ** 31 - 1
    # without the casts the same formula wraps around in int32 (this is what the casts prevent)
    _, _, bad_bwd, _ = _emulate_offsets(T, N, BLOCK, cast=False)
    assert bad_bwd.tolist() != bwd.tolist()


@pytest.mark.gpu
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward+backward"])
def test_lif_with_more_than_2_31_elements_on_gpu(backward):
    """T * N > 2**31: neurons far into the array must behave like neurons at the start."""
    T, N, period = 512, 2 ** 22 + 3, 7
    assert T * N > 2 ** 31
    free, _ = torch.cuda.mem_get_info()
    need = (44 if backward else 14) * 2 ** 30
    if free < need:
        pytest.skip(f"needs {need / 2 ** 30:.0f} GiB free GPU memory, {free / 2 ** 30:.0f} GiB available")
    dev = torch.device("cuda")
    drive = (0.2 + 0.3 * (torch.arange(N, device=dev) % period)).half()
    x = drive.expand(T, N)  # constant over time: neuron n behaves like neuron n % period
    layer = zoo.LIF(backend="triton", learnable=("tau",) if backward else ())
    small = zoo.LIF(backend="triton", learnable=("tau",) if backward else ())
    xs = x[:, :period].contiguous()
    if backward:
        xa = x.clone().requires_grad_()
        spikes = layer(xa)
        (gx,) = torch.autograd.grad(spikes.float().sum() + layer.v.sum(), [xa])
        xb = xs.clone().requires_grad_()
        small_spikes = small(xb)
        (gx_small,) = torch.autograd.grad(small_spikes.float().sum() + small.v.sum(), [xb])
    else:
        with torch.no_grad():
            spikes = layer(x)
            small_spikes = small(xs)
    full = N - N % period
    assert torch.equal(spikes[:, :period], small_spikes)
    assert torch.equal(spikes[:, :full].view(T, -1, period), small_spikes.unsqueeze(1).expand(T, full // period, period))
    assert torch.equal(spikes[:, full:], small_spikes[:, : N % period])
    assert torch.equal(layer.v[:full].view(-1, period), small.v.expand(full // period, period))
    assert small_spikes.any() and not small_spikes.all()
    if backward:
        assert torch.equal(gx[:, :full].view(T, -1, period), gx_small.unsqueeze(1).expand(T, full // period, period))
        assert torch.equal(gx[:, full:], gx_small[:, : N % period])


# -- determinism --------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", [zoo.ALIF, zoo.Izhikevich, TwoIn], ids=lambda c: c.__name__)
def test_repeated_runs_are_bitwise_identical(cls, backend):
    kw = dict(getattr(cls, "check_kwargs", {}))
    learn = cls.spec.params[:2]
    vec = {cls.spec.params[0]: torch.linspace(1.5, 3.0, 20).reshape(4, 5)}

    def make():
        return cls(backend=backend, learnable=learn, surrogate=nd.surrogate.Sigmoid(learnable=True), **vec, **kw)

    layer = make()
    xs = require_safe_inputs(layer, 7, (4, 5), seed=11)
    runs = [run_with_grads(layer, xs) for _ in range(3)] + [run_with_grads(make(), xs)]
    first = runs[0]
    assert set(first[2]) >= {"x0", *learn, "surrogate_alpha"}
    for spikes, states, grads, _ in runs[1:]:
        assert torch.equal(spikes, first[0])
        for k in states:
            assert torch.equal(states[k], first[1][k]), k
        for k in grads:
            assert torch.equal(grads[k], first[2][k]), k


# -- fp16 / bf16 inputs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("cls", [zoo.CubaLIF, zoo.Izhikevich, TwoIn], ids=lambda c: c.__name__)
def test_low_precision_equals_fp32_run_on_rounded_inputs(cls, dtype, backend):
    """fp16/bf16 inputs compute in fp32: identical to an fp32 run on x.float(); only the input
    gradient is rounded to the input dtype (upstream gradients representable in ``dtype``)."""
    kw = dict(getattr(cls, "check_kwargs", {}))
    layer = cls(backend=backend, learnable=cls.spec.params[:2], store_state_seqs=True, **kw)
    xs = require_safe_inputs(layer, 6, (3, 5), seed=13, dtype=dtype)
    gen = torch.Generator().manual_seed(3)
    weights = (torch.randn(6, 3, 5, generator=gen).to(dtype).double(),
               {k: torch.randn(6, 3, 5, generator=gen).double() for k in cls.spec.states})
    low = run_with_grads(layer, xs, weights=weights)
    high = run_with_grads(layer, [x.float() for x in xs], weights=weights)
    assert low[0].dtype == dtype and torch.equal(low[0].float(), high[0])
    for k in cls.spec.states:
        assert low[1][k].dtype == torch.float32 and torch.equal(low[1][k], high[1][k]), k
    for k in low[2]:
        if k.startswith("x"):
            assert low[2][k].dtype == dtype
            assert torch.equal(low[2][k], high[2][k].to(dtype)), k
        else:
            assert torch.equal(low[2][k], high[2][k]), k
    # and against the reference loop at the documented tolerance (TOL in tests/helpers.py)
    compare(layer, *xs)
