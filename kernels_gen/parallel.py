"""Solve affine neuron steps in parallel over time.

Given the generated coefficient module of a :class:`~kernels_gen.plan.ParallelPlan`:

* :func:`scan` — V_t = A_t V_{t-1} + b_t over [T, N, k]: on 'triton' the generated chunked kernels (chunks
  of time x blocks of neurons: summaries, carries, replay), elsewhere the torch scans of
  :mod:`kernels_gen.scans` (doubling for short sequences, chunked above);
* :func:`matmul` — block lower-triangular GEMMs when A is the same for every t and neuron;
* :func:`solve_exact` — neurons with reset: iterate "scan, then threshold" from s = 0 until the spike
  train stops changing (a causal fixed point: exact after at most T + 1 passes).

Everything but the Triton scan is plain torch, so it runs on CPU and CUDA, autograd differentiates it and
torch.compile traces it; the Triton scan and its adjoint are the custom ops ``neurodsl::triton_scan`` and
``neurodsl::triton_scan_adjoint``, opaque to Dynamo.

>>> import torch
>>> a, b = torch.full((5, 1, 1, 1), 0.5), torch.ones(5, 1, 1)
>>> scan(a, b, torch.zeros(1, 1))[:, 0, 0]
tensor([1.0000, 1.5000, 1.7500, 1.8750, 1.9375])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable

import hashlib
import math

import torch

from . import cache, scans
from .scans import gemm_precision  # noqa: F401 - part of this module's interface
from .versions import version_key
from .plan import ParallelPlan
from .registry import Registry


def _field(values, T: int, n: int, k: int, like: torch.Tensor, rows: int) -> torch.Tensor:
    """Coefficients (floats, [1], [N] or [T, N] tensors) stacked into [T, N, rows, k] (or [T, N, k])."""
    if rows == 0 and k == 1 and isinstance(values[0], torch.Tensor) and values[0].dtype == like.dtype:
        return values[0].expand(T, n)[..., None]                  # one state: a view, no copy
    out = [torch.as_tensor(v, dtype=like.dtype, device=like.device).expand(T, n) for v in values]
    stacked = torch.stack(out, dim=-1)
    return stacked.reshape(T, n, rows, k) if rows else stacked


def _matrix(values, T: int, n: int, k: int, like: torch.Tensor) -> torch.Tensor:
    """A as [Ta, Na, k, k]: Ta = 1 unless an entry depends on the input, Na = 1 unless one is per neuron."""
    shapes = [tuple(v.shape) for v in values if isinstance(v, torch.Tensor)]
    ta = T if any(len(s) == 2 and s[0] != 1 for s in shapes) else 1
    na = n if any(len(s) >= 1 and s[-1] != 1 for s in shapes) else 1
    out = [torch.as_tensor(v, dtype=like.dtype, device=like.device).expand(ta, na) for v in values]
    return torch.stack(out, dim=-1).reshape(ta, na, k, k)


def is_uniform(values) -> bool:
    """True when every coefficient is one number for all t and neurons (the matmul form applies)."""
    return all(not isinstance(v, torch.Tensor) or v.numel() == 1 for v in values)


# -- tiles ----------------------------------------------------------------------------------------------
def _pow2(x: int) -> int:
    return 1 << (max(x, 1) - 1).bit_length()


def scan_tiles(T: int, n: int, device: torch.device) -> tuple[int, int]:
    """(neurons per program, steps per chunk) of the Triton chunked scan.

    On a GPU: 128 neurons per program (fewer for small N) and chunks of about sqrt(T) steps (16 to 128), so
    that T = N = 4096 runs 32 x 64 programs of 64 steps and the carry pass walks 64 chunk summaries. Under
    the interpreter (CPU tensors): few, large programs (its cost is per program and step).
    """
    if device.type == "cpu":
        return min(4096, max(16, _pow2(n))), min(64, max(16, _pow2(T)))
    return min(128, max(32, _pow2(n))), min(128, max(16, _pow2(math.isqrt(max(T - 1, 0)) + 1)))


#: The torch scan: the doubling scan (few large ops) up to this many steps, or this many neuron-steps; the
#: chunked scan (about 2·sqrt(T) ops over T/sqrt(T)·N elements, linear work) above. Under torch.compile always
#: the doubling scan: Inductor fuses its passes, and compiles it in less than half the time (measured: T = 1024,
#: N = 256 on CPU, 62 s vs 145 s for the first call, then 9.5 ms vs 12.2 ms fwd+bwd).
TORCH_DOUBLING_MAX_T = 64
TORCH_DOUBLING_MAX_ELEMENTS = 1 << 17


def torch_chunk(T: int) -> int:
    """Steps per chunk of the torch chunked scan (about sqrt(T), at least 16)."""
    return max(16, _pow2(math.isqrt(T)))


#: Steps per chunk of the blocked matmul form (a [bt·k, bt·k] tile per GEMM).
MATMUL_CHUNK = 64


def _torch_scan(A: torch.Tensor, b: torch.Tensor, v0: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """The torch scans; ``reverse``: V_t = A_t V_{t+1} + b_t from V_T = v0."""
    T, n = b.shape[:2]
    if T > TORCH_DOUBLING_MAX_T and T * n > TORCH_DOUBLING_MAX_ELEMENTS and not torch.compiler.is_compiling():
        return scans.chunked_scan(A, b, v0, torch_chunk(T), reverse)
    if reverse:
        return scans.doubling_scan(A.flip(0), b.flip(0), v0).flip(0)
    return scans.doubling_scan(A, b, v0)


_doubling_scan = scans.doubling_scan  # the reference the tests compare the other scans with


# -- the Triton chunked scan ----------------------------------------------------------------------------
def _scan_module(k: int):
    from .backends.triton import render_scan
    key = hashlib.sha256(f"scan|{k}|{version_key()}".encode()).hexdigest()[:20]
    return cache.load_module(f"scan{k}", key, "triton", lambda: render_scan(k, key))


def _chunked_launch(A, b, init, reverse: bool, V=None, v0=None, grad_a: bool = False):
    """Run summary, carry and replay kernels; returns (out [T, N, k], dL/dA in A's shape or None)."""
    T, n, k = b.shape
    block, bt = scan_tiles(T, n, b.device)
    nc = -(-T // bt)
    shape = tuple(A.shape)
    if shape[0] > 1 and shape[1] == 1 and n > 1:       # one A per step for all neurons: index it per neuron
        A = A.expand(T, n, k, k)
    A, b = A.to(b.dtype).contiguous(), b.contiguous()
    ta, na = A.shape[:2]
    sa_t, sa_n = (na * k * k if ta > 1 else 0), (k * k if na > 1 else 0)
    const = ta == 1
    flags = dict(REVERSE=reverse, A_CONST=const, num_warps=max(1, min(4, block // 32)))
    mod, grid = _scan_module(k), -(-n // block)
    pb = b.new_empty((max(nc - 1, 1), n, k))
    pa = pb if const else b.new_empty((max(nc - 1, 1), n, k, k))
    if nc > 1:
        mod.summary_kernel[(grid, nc - 1)](A, b, pa, pb, T, n, sa_t, sa_n, bt, BLOCK=block, **flags)
    start = b.new_empty((nc, n, k))
    mod.carry_kernel[(grid,)](A, pa, pb, start if init is None else init.to(b.dtype).contiguous(), start, nc, n,
                              sa_n, bt.bit_length() - 1, BLOCK=block, HAS_INIT=init is not None, **flags)
    out = b.new_empty((T, n, k))
    mode = 0 if not grad_a else (2 if const else 1)
    ga = out if mode == 0 else b.new_empty((T, n, k, k) if mode == 1 else (nc, n, k, k))
    mod.replay_kernel[(grid, nc)](A, b, start, out, out if V is None else V.contiguous(),
                                  start if v0 is None else v0.to(b.dtype).contiguous(), ga, T, n, sa_t, sa_n,
                                  bt, BLOCK=block, GRAD_A=mode, **flags)
    if mode == 0:
        return out, None
    if mode == 2:
        ga = ga.sum(0, keepdim=True)
    return out, _reduce_to(ga, shape)


def _reduce_to(grad: torch.Tensor, shape: tuple) -> torch.Tensor:
    """``grad`` summed over the dimensions where ``shape`` has one entry (the broadcast ones)."""
    dims = [d for d in range(grad.dim()) if shape[d] == 1 and grad.shape[d] != 1]
    return (grad.sum(dims, keepdim=True) if dims else grad).reshape(shape)


def _triton_scan(A: torch.Tensor, b: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
    """V_t = A_t V_{t-1} + b_t with the generated chunked Triton kernels."""
    return _chunked_launch(A, b, v0, reverse=False)[0]


def _triton_adjoint(A: torch.Tensor, V: torch.Tensor, v0: torch.Tensor, grad: torch.Tensor,
                    grad_a: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """λ_t = A_{t+1}^T λ_{t+1} + g_t (reverse time, flipped indexing) and, if asked, dL/dA = Σ λ_t V_{t-1}^T."""
    lam, ga = _chunked_launch(A, grad, None, reverse=True, V=V, v0=v0, grad_a=grad_a)
    return lam, (ga if grad_a else lam.new_empty(0))


# Opaque ops for torch.compile: Dynamo traces the torch scans (plain torch) but not a Triton launch.
triton_scan = torch.library.custom_op("neurodsl::triton_scan", _triton_scan, mutates_args=())
triton_scan_adjoint = torch.library.custom_op("neurodsl::triton_scan_adjoint", _triton_adjoint, mutates_args=())


@triton_scan.register_fake
def _(A: torch.Tensor, b: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
    return b.new_empty(b.shape)


@triton_scan_adjoint.register_fake
def _(A, V, v0, grad, grad_a):
    return grad.new_empty(grad.shape), A.new_empty(A.shape if grad_a else (0,))


_SCANS = {"triton": triton_scan}  # a backend without a scan of its own uses the torch scans


def _scan_of(backend: str):
    return _SCANS.get(backend, _torch_scan)


def _torch_adjoint(A, V, v0, grad, grad_a: bool):
    """The adjoint with the torch scans over reversed time; dL/dA reduced to A's shape."""
    At = A.transpose(-1, -2)
    coeff = At if A.shape[0] == 1 else torch.cat([At[1:], At[-1:]])  # step t: A_{t+1}^T (the last meets λ_T = 0)
    lam = _torch_scan(coeff, grad, torch.zeros_like(v0), reverse=True)
    if not grad_a:
        return lam, None
    if A.shape[0] > 1:                                              # one A per step: one gradient per step
        prev = torch.cat([v0[None], V[:-1]])
        return lam, _reduce_to(lam[..., :, None] * prev[..., None, :], tuple(A.shape))
    # Σ_t λ_t V_{t-1}^T without materialising the products
    first = lam[0, :, :, None] * v0[:, None, :]                     # t = 0 meets v0
    if A.shape[1] > 1:
        rest = torch.einsum("tni,tnj->nij", lam[1:], V[:-1])
        return lam, (rest + first)[None]
    rest = torch.einsum("tni,tnj->ij", lam[1:], V[:-1])
    return lam, (rest + first.sum(0))[None, None]


class _Scan(torch.autograd.Function):
    """Forward: a scan (torch, or the Triton chunked kernels). Backward: the reverse recurrence
    λ_t = g_t + A_{t+1}^T λ_{t+1} by the same machinery over reversed time, so memory stays O(T·N·k);
    dL/dA_t = λ_t V_{t-1}^T, summed where A is shared by steps or neurons."""

    @staticmethod
    def forward(ctx, A, b, v0, backend):
        V = _scan_of(backend)(A, b, v0)
        ctx.save_for_backward(A, V, v0)
        ctx.backend = backend
        return V

    @staticmethod
    def backward(ctx, grad_V):
        A, V, v0 = ctx.saved_tensors
        need_a = ctx.needs_input_grad[0]
        if ctx.backend == "triton":
            lam, grad_A = triton_scan_adjoint(A, V, v0, grad_V.contiguous(), need_a)
        else:
            lam, grad_A = _torch_adjoint(A, V, v0, grad_V, need_a)
        grad_v0 = scans._mv(A[0].transpose(-1, -2), lam[0]) if ctx.needs_input_grad[2] else None
        return (grad_A if need_a else None), lam, grad_v0, None


def scan(A: torch.Tensor, b: torch.Tensor, v0: torch.Tensor, backend: str = "torch") -> torch.Tensor:
    """V_t = A_t V_{t-1} + b_t for b [T, N, k], v0 [N, k] and A broadcastable to [T, N, k, k] (one matrix for
    every step and/or neuron stays one); returns V [T, N, k].

    ``backend``: 'triton' runs the generated chunked kernels; any other the torch scans (doubling for short
    sequences, chunked above). Differentiable; backward is the reverse recurrence (see :class:`_Scan`).
    """
    T, n, k = b.shape
    A = A.reshape((1,) * (4 - A.dim()) + tuple(A.shape))
    if A.shape[0] > 1 and A.stride(0) == 0:          # expanded over time: keep one
        A = A[:1]
    if A.shape[1] > 1 and A.stride(1) == 0:          # expanded over neurons: keep one
        A = A[:, :1]
    return _Scan.apply(A, b, v0, backend)


def matmul(A: torch.Tensor, b: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
    """The same recurrence with one A [k, k] for all t and neurons, as block lower-triangular GEMMs
    (:func:`kernels_gen.scans.blocked_matmul`; GEMM precision: :func:`gemm_precision`)."""
    return scans.blocked_matmul(A, b, v0, MATMUL_CHUNK)


def fresh_output(value, like: torch.Tensor) -> torch.Tensor:
    """``value`` in ``like``'s dtype as a tensor that aliases nothing else the autograd.Function made.

    A no-op ``.to(dtype)`` returns its argument, and Dynamo in torch 2.11 (``autograd_function_apply``)
    silently zeroes the gradient of a forward output that aliases an intermediate; the spike must also keep
    ``like``'s dtype, since ``torch.where(c, 1.0, 0.0)`` is float32 and would round fp64 gradients.
    """
    if not isinstance(value, torch.Tensor):
        return torch.full_like(like, value)
    if value.dtype != like.dtype:
        return value.to(like.dtype)  # a conversion: a new tensor
    return value.clone() if value is like else value


class ParallelSpike(torch.autograd.Function):
    """spike = Θ(fire) (or the smooth primitive), with the generated surrogate derivative in backward."""

    @staticmethod
    def forward(ctx, fire, alpha, spike_fn, params):
        spike, dspike, dalpha = spike_fn(fire, *params)
        ctx.save_for_backward(*(torch.as_tensor(d, dtype=fire.dtype, device=fire.device) for d in (dspike, dalpha)))
        ctx.alpha_shape = alpha.shape
        return fresh_output(spike, fire)

    @staticmethod
    def backward(ctx, grad):
        dspike, dalpha = ctx.saved_tensors
        grad_alpha = (grad * dalpha).sum().reshape(ctx.alpha_shape) if ctx.needs_input_grad[1] else None
        return grad * dspike, grad_alpha, None, None


@dataclass
class CompiledParallel:
    """The generated coefficient module of a parallel plan (cached like the sequential kernels)."""

    name: str
    key: str
    build_plan: Callable[[], ParallelPlan]
    _module: ModuleType | None = field(default=None)

    def module(self) -> ModuleType:
        if self._module is None:
            from .backends.torch import render_parallel
            label = cache.safe_label(self.name)
            self._module = cache.load_module(self.name, self.key, "parallel",
                                             lambda: render_parallel(self.build_plan(), self.key, label))
        return self._module

    def source(self) -> str:
        self.module()
        return cache.cached_source(self.name, self.key, "parallel")

    def uniform(self, vector_params: dict[str, bool]) -> bool:
        """One A for every step and neuron: time-invariant, and every parameter in A is a scalar."""
        mod = self.module()
        return mod.TIME_INVARIANT and not any(vector_params.get(p, False) for p in mod.A_PARAMS)

    def coefficients(self, inputs, params, like):
        """``(a_raw, A [T, N, k, k], b [T, N, k])`` of V_t = A_t V_{t-1} + b_t for inputs [T, N] and flat params."""
        mod = self.module()
        T, n = inputs[0].shape
        a_raw, b_raw = mod.coefficients(*inputs, *params)
        return a_raw, _field(a_raw, T, n, mod.K, like, mod.K), _field(b_raw, T, n, mod.K, like, 0)

    def solve(self, form: str, inputs, init, params, backend: str = "torch"):
        """Reset-free neuron: (spikes [T, N], state sequences [T, N] each, form used); differentiable.

        ``form``: 'scan' or 'matmul' (needs one A for all t and neurons: ValueError otherwise).
        """
        mod = self.module()
        T, n = inputs[0].shape
        like = inputs[0]
        a_raw, b_raw = mod.coefficients(*inputs, *params)
        if form == "matmul" and not is_uniform(a_raw):
            raise ValueError("the matmul form needs one A for every time step and neuron")
        A, b = _matrix(a_raw, T, n, mod.K, like), _field(b_raw, T, n, mod.K, like, 0)
        v0 = torch.stack(list(init), dim=-1)
        V = matmul(A[0, 0], b, v0) if form == "matmul" else scan(A, b, v0, backend)
        states = [V[..., i] for i in range(mod.K)]
        spikes = ParallelSpike.apply(mod.fire(*states, *params), params[-1], mod.spike, params)
        return spikes, states, form

    def solve_exact(self, form: str, inputs, init, params, max_iterations: int, backend: str = "torch"):
        """Neuron with reset: the causal fixed point s = Θ(F(H(s))) without gradients.

        Returns (spikes, charged H [T, N] per state, states V [T, N] per state, passes), or None when
        it did not converge within ``max_iterations`` passes.
        """
        mod = self.module()
        T, n = inputs[0].shape
        with torch.no_grad():
            _, A, b = self.coefficients(inputs, params, inputs[0])
            v0 = torch.stack(list(init), dim=-1)
            spikes = torch.zeros_like(inputs[0])
            for passes in range(1, max_iterations + 1):
                g_raw, c_raw = mod.reset_coefficients(spikes, *params)
                G = _field(g_raw, T, n, mod.K, spikes, mod.K)
                c = _field(c_raw, T, n, mod.K, spikes, 0)
                V = _scan_of(backend)(G @ A, torch.einsum("tnij,tnj->tni", G, b) + c, v0)
                prev = torch.cat([v0[None], V[:-1]])
                H = torch.einsum("tnij,tnj->tni", A, prev) + b
                fire = mod.fire(*[H[..., i] for i in range(mod.K)], *params)
                new = torch.as_tensor(mod.spike(fire, *params)[0], dtype=spikes.dtype, device=spikes.device)
                new = new.expand_as(spikes)
                if torch.equal(new, spikes):
                    return spikes, [H[..., i] for i in range(mod.K)], [V[..., i] for i in range(mod.K)], passes
                spikes = new.clone()
        return None


_SOLVERS = Registry("parallel solver")


def register(solver: CompiledParallel) -> str:
    """Make ``solver`` reachable by key from code that torch.compile traces; returns the key."""
    return _SOLVERS.add(solver).key


registered = _SOLVERS.get
