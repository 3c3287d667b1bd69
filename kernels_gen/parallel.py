"""Solve affine neuron steps in parallel over time.

Given the generated coefficient module of a :class:`~kernels_gen.plan.ParallelPlan`:

* :func:`scan` — log-depth (Hillis–Steele) scan of V_t = A_t V_{t-1} + b_t over [T, N, k];
* :func:`matmul` — one T×T (block) lower-triangular GEMM when A is the same for every t and neuron;
* :func:`solve_exact` — neurons with reset: iterate "scan, then threshold" from s = 0 until the spike
  train stops changing (a causal fixed point: exact after at most T + 1 passes).

Everything but the Triton scan is plain torch, so it runs on CPU and CUDA, autograd differentiates it and
torch.compile traces it; the Triton scan is the custom op ``neurodsl::triton_scan``, opaque to Dynamo.

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

import torch

from . import cache
from .versions import version_key
from .plan import ParallelPlan
from .registry import Registry


def _field(values, T: int, n: int, k: int, like: torch.Tensor, rows: int) -> torch.Tensor:
    """Coefficients (floats, [1], [N] or [T, N] tensors) stacked into [T, N, rows, k] (or [T, N, k])."""
    out = [torch.as_tensor(v, dtype=like.dtype, device=like.device).expand(T, n) for v in values]
    stacked = torch.stack(out, dim=-1)
    return stacked.reshape(T, n, rows, k) if rows else stacked


def is_uniform(values) -> bool:
    """True when every coefficient is one number for all t and neurons (the matmul form applies)."""
    return all(not isinstance(v, torch.Tensor) or v.numel() == 1 for v in values)


def _doubling_scan(A: torch.Tensor, b: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
    """V_t = A_t V_{t-1} + b_t by log2(T) Hillis–Steele passes (no autograd bookkeeping)."""
    T, k = b.shape[0], b.shape[-1]
    if k == 1:
        a, c = A[..., 0, 0], b[..., 0]
        shift = 1
        while shift < T:
            c = torch.cat([c[:shift], c[shift:] + a[shift:] * c[:-shift]])
            a = torch.cat([a[:shift], a[shift:] * a[:-shift]])
            shift *= 2
        return (a * v0[:, 0] + c)[..., None]
    shift = 1
    while shift < T:
        b = torch.cat([b[:shift], b[shift:] + torch.einsum("tnij,tnj->tni", A[shift:], b[:-shift])])
        A = torch.cat([A[:shift], torch.einsum("tnij,tnjk->tnik", A[shift:], A[:-shift])])
        shift *= 2
    return torch.einsum("tnij,nj->tni", A, v0) + b


def _scan_module(k: int):
    from .backends.triton import render_scan
    key = hashlib.sha256(f"scan|{k}|{version_key()}".encode()).hexdigest()[:20]
    return cache.load_module(f"scan{k}", key, "triton", lambda: render_scan(k, key))


def scan_tiles(T: int, n: int, device: torch.device) -> tuple[int, int]:
    """(neurons per program, steps per chunk) of the Triton scan: few, large programs under the interpreter
    (Python cost per program), 128 × 32 tiles on a GPU."""
    on_cpu = device.type == "cpu"
    return (min(4096 if on_cpu else 128, max(16, 1 << (n - 1).bit_length())),
            min(64 if on_cpu else 32, max(16, 1 << (T - 1).bit_length())))


def _triton_scan(A: torch.Tensor, b: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
    """The same recurrence with the generated Triton kernel (tl.associative_scan over chunks, carry between)."""
    T, n, k = b.shape
    out = torch.empty(b.shape, dtype=b.dtype, device=b.device)  # contiguous, as the kernel indexes it
    block, chunk = scan_tiles(T, n, b.device)
    _scan_module(k).scan_kernel[(-(-n // block),)](A.contiguous(), b.contiguous(), v0.contiguous(), out, T, n,
                                                    CHUNK=chunk, BLOCK=block)
    return out


# An opaque op for torch.compile: Dynamo traces the doubling scan (plain torch) but not a Triton launch.
triton_scan = torch.library.custom_op("neurodsl::triton_scan", _triton_scan, mutates_args=())


@triton_scan.register_fake
def _(A: torch.Tensor, b: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(b)


_SCANS = {"triton": triton_scan}  # a backend without a scan of its own uses the doubling scan (plain torch)


def _scan_of(backend: str):
    return _SCANS.get(backend, _doubling_scan)


class _Scan(torch.autograd.Function):
    """Forward: a scan (doubling in torch, or the Triton kernel). Backward: the reverse recurrence
    λ_t = g_t + A_{t+1}^T λ_{t+1}, the same scan over flipped time, so memory stays O(T·N·k)."""

    @staticmethod
    def forward(ctx, A, b, v0, backend):
        V = _scan_of(backend)(A, b, v0)
        ctx.save_for_backward(A, V, v0)
        ctx.backend = backend
        return V

    @staticmethod
    def backward(ctx, grad_V):
        A, V, v0 = ctx.saved_tensors
        At = A.transpose(-1, -2)
        # reversed time u = T-1-t: λ'_u = A_{t+1}^T λ'_{u-1} + g'_u; the u = 0 coefficient meets λ = 0
        coeff = torch.cat([At[:1], At[1:].flip(0)])
        lam = _scan_of(ctx.backend)(coeff, grad_V.flip(0).contiguous(), torch.zeros_like(v0)).flip(0)
        prev = torch.cat([v0[None], V[:-1]])
        grad_A = lam[..., :, None] * prev[..., None, :] if ctx.needs_input_grad[0] else None
        grad_v0 = torch.einsum("nji,nj->ni", A[0], lam[0]) if ctx.needs_input_grad[2] else None
        return grad_A, lam, grad_v0, None


def scan(A: torch.Tensor, b: torch.Tensor, v0: torch.Tensor, backend: str = "torch") -> torch.Tensor:
    """V_t = A_t V_{t-1} + b_t for A [T, N, k, k], b [T, N, k], v0 [N, k]; returns V [T, N, k].

    ``backend``: 'torch' (log-depth doubling) or 'triton' (generated tl.associative_scan kernel).
    Differentiable; backward is the reverse recurrence (see :class:`_Scan`).
    """
    A = A.expand(b.shape[0], b.shape[1], b.shape[2], b.shape[2])
    return _Scan.apply(A, b, v0, backend)


def matmul(A: torch.Tensor, b: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
    """The same recurrence with one A [k, k] for all t and neurons, as one lower-triangular GEMM."""
    T, n, k = b.shape
    P, A_m = torch.eye(k, dtype=b.dtype, device=b.device)[None], A
    while P.shape[0] < T + 1:                                 # doubling: A^(m+j) = A^m A^j, log2(T) products
        P, A_m = torch.cat([P, A_m @ P]), A_m @ A_m
    P = P[:T + 1]                                             # P[d] = A^d, [T + 1, k, k]
    t = torch.arange(T, device=b.device)
    d = t[:, None] - t[None, :]
    W = P[d.clamp(min=0)] * (d >= 0)[..., None, None].to(b.dtype)   # [T, T, k, k]
    W = W.permute(0, 2, 1, 3).reshape(T * k, T * k)
    V = (W @ b.permute(0, 2, 1).reshape(T * k, n)).reshape(T, k, n).permute(0, 2, 1)
    return V + torch.einsum("tij,nj->tni", P[1:], v0)


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
        a_raw, A, b = self.coefficients(inputs, params, inputs[0])
        if form == "matmul" and not is_uniform(a_raw):
            raise ValueError("the matmul form needs one A for every time step and neuron")
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
