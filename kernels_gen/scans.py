"""V_t = A_t V_{t-1} + b_t over [T, N, k] in plain torch: three ways, none with autograd bookkeeping of its own
except :func:`blocked_matmul` (autograd differentiates its GEMMs).

Shapes: b [T, N, k], v0 [N, k], A [Ta, Na, k, k] with Ta in {1, T} and Na in {1, N} (one matrix for every step
and/or neuron is not expanded).

* :func:`doubling_scan` — log2(T) Hillis–Steele passes over the whole sequence (few ops: small problems);
* :func:`chunked_scan` — chunks of ``bt`` steps: every chunk's summary in ``bt`` sequential steps (all chunks at
  once), the carries between chunks, then a replay of every chunk from its carry (about 2·bt + log2(T/bt) ops,
  each over T/bt · N elements; the torch form of the Triton chunked scan);
* :func:`blocked_matmul` — one A for every step and neuron: inside each chunk a [bt·k, bt·k] lower-triangular
  tile of powers of A times the chunk's inputs (one GEMM for all chunks), the chunk ends carried by the same
  form over the chunks with A^bt, then the carry added through A^(j+1). Never builds anything T×T.

>>> A, b, v0 = torch.full((1, 1, 1, 1), 0.5), torch.ones(6, 2, 1), torch.zeros(2, 1)
>>> chunked_scan(A, b, v0, 4)[:, 0, 0]
tensor([1.0000, 1.5000, 1.7500, 1.8750, 1.9375, 1.9688])
>>> torch.allclose(blocked_matmul(A[0, 0], b, v0, 2), doubling_scan(A, b, v0))
True
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .errors import InputError


def _mv(m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Batched matrix-vector product m [..., k, k] · s [..., k] (broadcasting)."""
    k = m.shape[-1]
    if k == 1:
        return m[..., 0] * s
    if m.numel() == k * k:                                  # one matrix for all: a GEMM with k columns
        return s @ m.reshape(k, k).T
    return (m * s.unsqueeze(-2)).sum(-1)


def _small_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched product of small matrices a [..., k, k] · b [..., k, k] (elementwise: no tiny-GEMM batches)."""
    if a.shape[-1] == 1:
        return a * b
    return (a.unsqueeze(-1) * b.unsqueeze(-3)).sum(-2)


def doubling_scan(A: torch.Tensor, b: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
    """log2(T) Hillis–Steele passes (each pass combines step t with step t - shift)."""
    T = b.shape[0]
    b = torch.cat([b[:1] + _mv(A[0], v0), b[1:]])         # V_0 = A_0 v0 + b_0: then scan from zero
    const = A.shape[0] == 1
    a = A[0] if const else A                              # one A for all steps: its powers by squaring
    shift = 1
    while shift < T:
        b = torch.cat([b[:shift], b[shift:] + _mv(a if const else a[shift:], b[:-shift])])
        if 2 * shift < T:
            a = _small_mm(a, a) if const else torch.cat([a[:shift], _small_mm(a[shift:], a[:-shift])])
        shift *= 2
    return b


def chunked_scan(A: torch.Tensor, b: torch.Tensor, v0: torch.Tensor, bt: int, reverse: bool = False) -> torch.Tensor:
    """Chunks of ``bt`` steps: summaries (sequential inside chunks, all chunks at once), carries, replay.

    ``reverse``: V_t = A_t V_{t+1} + b_t from V_T = v0 (the adjoint's direction), by indexing, without flips.
    """
    T, n, k = b.shape
    nc = -(-T // bt)
    if nc == 1:
        bt = T
    pad = nc * bt - T
    where = (pad, 0) if reverse else (0, pad)              # dead steps come last in processing order
    bb = (F.pad(b, (0, 0, 0, 0) + where) if pad else b).view(nc, bt, n, k)
    const = A.shape[0] == 1
    Ac = A[0] if const else (F.pad(A, (0, 0, 0, 0, 0, 0) + where) if pad else A).view(nc, bt, A.shape[1], k, k)
    steps = range(bt - 1, -1, -1) if reverse else range(bt)
    starts = v0[None]
    if nc > 1:
        part = slice(1, None) if reverse else slice(None, -1)   # the chunk processed last needs no summary
        e = torch.zeros((nc - 1, n, k), dtype=b.dtype, device=b.device)
        P = None if const else torch.eye(k, dtype=b.dtype, device=b.device).expand(nc - 1, A.shape[1], k, k)
        for j in steps:                                  # 1. chunk summaries
            m = Ac if const else Ac[part, j]
            e = _mv(m, e) + bb[part, j]
            if not const:
                P = _small_mm(m, P)
        if const:
            P = torch.linalg.matrix_power(Ac, bt)[None]
        elif reverse:
            P = P.flip(0)
        ends = doubling_scan(P, e.flip(0) if reverse else e, v0)   # 2. carries, in processing order
        starts = torch.cat([v0[None], ends])
        starts = starts.flip(0) if reverse else starts
    s = starts.expand(nc, n, k)
    out = torch.empty((nc, bt, n, k), dtype=b.dtype, device=b.device)
    for j in steps:                                      # 3. replay every chunk from its carry
        s = _mv(Ac if const else Ac[:, j], s) + bb[:, j]
        out[:, j] = s
    out = out.view(nc * bt, n, k)
    return out[pad:] if reverse else out[:T]


# -- GEMM precision ------------------------------------------------------------------------------------
PRECISIONS = ("fp32", "tf32", "bf16")
_precision = "fp32"  # a module global: torch.compile reads (and guards) it while tracing


@contextlib.contextmanager
def gemm_precision(mode: str):
    """GEMMs of the matmul form inside this block: 'fp32' (exact, the default), 'tf32' (tensor cores on CUDA:
    inputs rounded to 10 mantissa bits) or 'bf16' (inputs rounded to bfloat16); accumulation stays fp32.

    The choice is taken when the forward runs and its backward GEMMs use the same. Process-wide (not per
    thread). Under torch.compile the setting at trace time is compiled in.
    """
    global _precision
    if mode not in PRECISIONS:
        raise InputError("ND124", f"gemm_precision({mode!r}): use one of {', '.join(map(repr, PRECISIONS))}")
    before, _precision = _precision, mode
    try:
        yield
    finally:
        _precision = before


def _mm(W: torch.Tensor, X: torch.Tensor, mode: str) -> torch.Tensor:
    """W [M, K] @ X [B, K, N] -> [B, M, N] in fp32 (or fp64) accumulation with ``mode``'s inputs."""
    if mode == "fp32" or W.dtype != torch.float32:
        return W @ X
    if mode == "bf16":
        Wb, Xb = W.to(torch.bfloat16), X.to(torch.bfloat16)
        if X.is_cuda and not torch.compiler.is_compiling():
            return torch.bmm(Wb.expand(X.shape[0], *W.shape), Xb, out_dtype=torch.float32)
        return Wb.float() @ Xb.float()                     # the same rounding, multiplied in fp32
    if X.is_cuda and not torch.compiler.is_compiling():    # tf32: tensor cores for this product only
        flag = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            return W @ X
        finally:
            torch.backends.cuda.matmul.allow_tf32 = flag
    return W @ X                                           # tf32 off CUDA (or while tracing): the global setting


class _Gemm(torch.autograd.Function):
    """W @ X with the precision chosen at forward time, in forward and backward."""

    @staticmethod
    def forward(ctx, W, X, mode):
        ctx.save_for_backward(W, X)
        ctx.mode = mode
        return _mm(W, X, mode)

    @staticmethod
    def backward(ctx, grad):
        W, X = ctx.saved_tensors
        gW = gX = None
        if ctx.needs_input_grad[0]:   # sum over the batch of grad[b] @ X[b]^T: one [M, B·N] @ [B·N, K] product
            rows = grad.transpose(0, 1).reshape(W.shape[0], -1)
            cols = X.transpose(1, 2).reshape(1, -1, W.shape[1])
            gW = _mm(rows, cols, ctx.mode)[0]
        if ctx.needs_input_grad[1]:
            gX = _mm(W.T, grad, ctx.mode)
        return gW, gX, None


def _gemm(W: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    mode = _precision
    return W @ X if mode == "fp32" else _Gemm.apply(W, X, mode)


# -- the matmul form -------------------------------------------------------------------------------------
def powers(A: torch.Tensor, count: int) -> torch.Tensor:
    """[A^0, A^1, ..., A^(count-1)] for A [k, k], by doubling (log2(count) products)."""
    P, A_m = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)[None], A
    while P.shape[0] < count:
        P, A_m = torch.cat([P, A_m @ P]), A_m @ A_m
    return P[:count]


def _toeplitz(P: torch.Tensor, T: int) -> torch.Tensor:
    """The [T·k, T·k] lower-triangular block matrix W[(t,i), (s,j)] = (A^(t-s))_ij from P[d] = A^d."""
    k = P.shape[-1]
    t = torch.arange(T, device=P.device)
    d = t[:, None] - t[None, :]
    W = P[d.clamp(min=0)] * (d >= 0)[..., None, None].to(P.dtype)   # [T, T, k, k]
    return W.permute(0, 2, 1, 3).reshape(T * k, T * k)


def dense_matmul(A: torch.Tensor, b: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
    """One [T·k, T·k] GEMM (small T)."""
    T, n, k = b.shape
    P = powers(A, T + 1)
    rows = b.permute(0, 2, 1).reshape(1, T * k, n)
    V = _gemm(_toeplitz(P, T), rows).reshape(T, k, n).permute(0, 2, 1)
    return V + torch.einsum("tij,nj->tni", P[1:], v0)


def blocked_matmul(A: torch.Tensor, b: torch.Tensor, v0: torch.Tensor, bt: int) -> torch.Tensor:
    """Block lower-triangular GEMMs: chunks of ``bt`` steps (see the module docstring)."""
    T, n, k = b.shape
    if T <= 2 * bt:
        return dense_matmul(A, b, v0)
    nc = -(-T // bt)
    pad = nc * bt - T
    P = powers(A, bt + 1)
    rows = F.pad(b, (0, 0, 0, 0, 0, pad)).view(nc, bt, n, k).permute(0, 1, 3, 2).reshape(nc, bt * k, n)
    local = _gemm(_toeplitz(P, bt), rows)                                     # [nc, bt·k, n], zero start
    ends = local[:, (bt - 1) * k:].permute(0, 2, 1)                          # [nc, n, k]
    after = blocked_matmul(P[bt], ends, v0, bt)                              # the state after each chunk
    starts = torch.cat([v0[None], after[:-1]]).permute(0, 2, 1)              # [nc, k, n]
    V = local + P[1:].reshape(bt * k, k) @ starts                            # + A^(j+1) · carry
    return V.view(nc, bt, k, n).permute(0, 1, 3, 2).reshape(nc * bt, n, k)[:T]
