"""Split the time axis of a reset-free linear neuron across processes (``torch.distributed``).

Each rank holds a contiguous chunk of the T steps. A reset-free linear neuron is the affine recurrence
V_t = A_t V_{t-1} + b_t (A_t is k×k per neuron, from the generated parallel-coefficient module), so:

1. every rank reduces its chunk to one affine map V_end = M V_start + u (:func:`chunk_transition`);
2. one differentiable ``all_gather`` of (M, u) lets every rank fold the maps of the ranks before it into its
   incoming state (its carry); rank 0 starts from the layer's initial state;
3. every rank scans its chunk from that carry (the single-process scan, which is affine in its initial state,
   so this equals the local scan from 0 corrected by (A_t···A_1)·carry) and fires with the generated fire
   function and surrogate.

Backward is autograd through these steps; the gather's adjoint sums every rank's gradient for each rank's
(M, u), which carries the reverse recurrence's boundary terms back to earlier chunks. docs/distributed.md has
the math, a runnable example and the NCCL command line.

>>> import torch
>>> [tuple(split_time(torch.zeros(10, 3), r, 4).shape) for r in range(4)]
[(3, 3), (3, 3), (2, 3), (2, 3)]
>>> A, b = torch.full((4, 1, 1, 1), 0.5), torch.ones(4, 1, 1)   # V_t = V_{t-1}/2 + 1, four steps
>>> M, u = chunk_transition(A, b)
>>> M.flatten().tolist(), u.flatten().tolist()                   # V_4 = V_0/16 + 1.875
([0.0625], [1.875])
"""
from __future__ import annotations


import torch
import torch.distributed as dist
from torch import nn

from kernels_gen.ops import compute_dtype
from kernels_gen.parallel import ParallelSpike, scan

from . import layer_io
from .analysis import classify_as_written
from .compiler import compile_parallel
from .errors import DistributedError, InputError
from .neuron import Neuron

__all__ = ["TimeSplit", "split_time", "chunk_transition", "sum_gradients"]


def split_time(x: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s contiguous chunk of ``x`` [T, ...] split over ``world`` ranks (a view).

    The first ``T % world`` ranks get one step more (``torch.tensor_split``); with T < world the last
    ranks get empty chunks, which :class:`TimeSplit` accepts.
    """
    return torch.tensor_split(x, world, dim=0)[rank]


def _matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a * b if a.shape[-1] == 1 else a @ b          # [.., k, k] @ [.., k, k]; elementwise for k = 1


def _apply(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * v if a.shape[-1] == 1 else (a @ v[..., None])[..., 0]   # [.., k, k] @ [.., k]


def chunk_transition(A: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunk's affine map (M [N, k, k], u [N, k]): V_T = M V_0 + u for V_t = A_t V_{t-1} + b_t.

    ``A`` [T, N, k, k], ``b`` [T, N, k]; M = A_T···A_1 and u is the chunk's final state from V_0 = 0.
    A pairwise (tree) reduction: log2(T) levels, O(T) work, differentiable by autograd.
    """
    n, k = b.shape[1], b.shape[2]
    if b.shape[0] == 0:
        return torch.eye(k, dtype=b.dtype, device=b.device).expand(n, k, k), b.new_zeros(n, k)
    while A.shape[0] > 1:
        even = A.shape[0] // 2 * 2
        first, later = slice(0, even, 2), slice(1, even, 2)   # (A2, b2) ∘ (A1, b1) = (A2 A1, A2 b1 + b2)
        A_pair, b_pair = _matmul(A[later], A[first]), _apply(A[later], b[first]) + b[later]
        A, b = torch.cat([A_pair, A[even:]]), torch.cat([b_pair, b[even:]])
    return A[0], b[0]


class _AllGather(torch.autograd.Function):
    """``all_gather`` stacked to [world, ...]; backward is its adjoint: each rank's slice receives the sum of
    every rank's gradient for it (an all-reduce, then this rank's row: gloo has no reduce-scatter)."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        out = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(out, x.contiguous(), group=group)
        return torch.stack(out)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad[dist.get_rank(ctx.group)], None


def _exchange(M, u, v0, rank: int, world: int, group):
    """(carry into this rank's chunk, global final state) from one all_gather of every rank's (M, u, v0)."""
    n, k = u.shape
    packed = torch.cat([M.reshape(n, k * k), u, v0], dim=1)
    if torch.is_grad_enabled() and not packed.requires_grad:
        packed = packed.detach().requires_grad_()  # so that every rank's backward joins the all-reduce
    table = _AllGather.apply(packed, group)       # [world, n, k*k + 2k]
    state = table[0, :, k * k + k:]               # rank 0's initial state; the other ranks sent zeros
    for j in range(world):
        if j == rank:
            carry = state                         # the state after the chunks of ranks 0 .. rank-1
        state = _apply(table[j, :, :k * k].reshape(n, k, k), state) + table[j, :, k * k:k * k + k]
    return carry, state


class TimeSplit(nn.Module):
    """Run ``layer`` (a reset-free linear neurodsl neuron) on this rank's chunk of the time axis.

    ``forward(*chunks, state=None)`` takes this rank's inputs [T_local, *shape] (same ``*shape`` on every rank,
    chunks in rank order, see :func:`split_time`) and returns this rank's spikes [T_local, *shape], equal to the
    corresponding steps of ``layer`` run on the whole sequence. Every rank of ``group`` (default: the world)
    must call it, and -- when gradients are needed -- call backward, as with DDP.

    * Initial state: ``state=`` (or the layer's carried state, or the State defaults) on rank 0; other ranks'
      are ignored. Afterwards every rank's ``layer`` carries the *global* final state, detached (gradients do
      not cross calls; pass a long sequence as one call).
    * ``layer.store_state_seqs=True`` leaves this chunk's state sequences in ``layer.state_seqs``.
    * Learnable parameters get this rank's share of the gradient: sum them over the ranks with
      :func:`sum_gradients` (not DDP, which averages) before the optimizer step.

    Raises ``DistributedError`` ND601 here for a neuron without a reset-free linear form, ND602 at call time
    without a process group.
    """

    def __init__(self, layer: Neuron, group=None):
        super().__init__()
        if not isinstance(layer, Neuron):
            raise DistributedError("ND601", f"TimeSplit wraps a neurodsl Neuron layer, got {type(layer).__name__}")
        verdict = classify_as_written(layer.spec)
        name = type(layer).__name__
        if not verdict.exact:
            raise DistributedError("ND601", f"{name}: no linear recurrence to split over time: {verdict.reason}")
        if verdict.spike_driven:
            raise DistributedError("ND601", f"{name}: spike-driven update of {', '.join(verdict.spike_driven)} "
                                            "(reset): a chunk's states depend on the spikes of earlier chunks; use "
                                            f"{name}.without_reset() or run it on one device")
        self.layer = layer
        self.group = group

    def forward(self, *inputs: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        layer, name = self.layer, type(self.layer).__name__
        if not (dist.is_available() and dist.is_initialized()) or dist.get_rank(self.group) < 0:
            raise DistributedError("ND602", f"TimeSplit({name}): no torch.distributed process group here; call "
                                            "torch.distributed.init_process_group first (on every rank)")
        rank, world = dist.get_rank(self.group), dist.get_world_size(self.group)
        if inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].dim() < 1:
            raise InputError("ND401", f"TimeSplit({name}): expected a chunk [T_local, *shape], got a scalar")
        call = layer_io.prepare(layer, inputs, state, allow_empty=True)  # T < world leaves some chunks empty
        T, shape, n = call.T, call.shape, call.n
        cdt = compute_dtype(call.dtype)
        kernels = layer.route(call).kernels
        solver = compile_parallel(layer.spec, kernels.options)
        mod = solver.module()
        k = mod.K
        cparams = [t.to(cdt) for t in call.params]
        cx = [x[:T].to(cdt) for x in call.inputs]
        # the initial state counts on rank 0 only; every rank computes it, so that a bad one fails on all alike
        init = torch.stack([v.to(cdt) for v in call.init], dim=-1)
        v0 = init if rank == 0 else torch.zeros_like(init)
        # 1. this chunk as one affine map V_end = M V_start + u
        A, b = cx[0].new_zeros(0, n, k, k), cx[0].new_zeros(0, n, k)
        if T:
            _, A, b = solver.coefficients(cx, cparams, cx[0])
        M, u = chunk_transition(A, b)
        # 2. exchange: the state this chunk starts from, and the global final state
        carry, final = _exchange(M, u, v0, rank, world, self.group)
        # 3. scan this chunk from its carry, then fire
        if T:
            V = scan(A, b, carry, kernels.backend)
            seqs = [V[..., i] for i in range(k)]
            spikes = ParallelSpike.apply(mod.fire(*seqs, *cparams), cparams[-1], mod.spike, cparams)
        else:
            # an empty chunk, still on the graph of the inputs and the carry (backward must reach the gather)
            spikes = sum(cx) + carry.reshape(-1)[:0].reshape(0, n)
            seqs = [spikes] * k
        if layer.store_state_seqs:
            layer.state_seqs = {s: v.reshape(T, *shape) for s, v in zip(layer.spec.states, seqs)}
        for i, s in enumerate(layer.spec.states):
            layer.set_state(s, final[:, i].detach().reshape(shape))
        layer.last_form = {"form": "time-split", "rank": rank, "world": world}
        return spikes.to(call.dtype).reshape(T, *shape)

    def extra_repr(self) -> str:
        return "group=WORLD" if self.group is None else f"group={self.group!r}"


def sum_gradients(module: nn.Module, group=None) -> None:
    """Sum every parameter's ``.grad`` over the ranks of ``group`` (in place; a missing grad counts as 0).

    After backward each rank holds the gradient of its own chunk's computations; the full gradient is their
    sum (DDP would average, i.e. divide by the world size). Call it on every rank before ``optimizer.step()``.
    """
    for p in module.parameters():
        if p.requires_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, group=group)
