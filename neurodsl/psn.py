"""Parallel Spiking Neuron (paper 003) and Parallel Spiking Unit (paper 002) families.

These neurons are defined by T×T (or banded) matrices over time rather than by a per-step
recurrence, so they are ``nn.Module`` s over ``[T, *shape]`` inputs: one GEMM over [T, N], then
the spike Θ(H) elementwise with any neurodsl surrogate (ATan, alpha 2, by default).

>>> import torch
>>> psn = PSN(T=8)
>>> psn(torch.randn(8, 2, 3)).shape
torch.Size([8, 2, 3])
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import surrogate as sg
from .reference import spike_fn

__all__ = ["PSN", "MaskedPSN", "SlidingPSN", "PSU", "IPSU", "RPSU", "masked_psn_lambda"]


class _TimeMatrixNeuron(nn.Module):
    """Shared parts: the surrogate, the spike and applying a [T, T] matrix over [T, *shape]."""

    smooth = False

    def __init__(self, surrogate: sg.Surrogate | None = None):
        super().__init__()
        self.surrogate = sg.ATan() if surrogate is None else surrogate
        alpha = torch.tensor(self.surrogate.alpha)
        if self.surrogate.learnable:
            self.surrogate_alpha = nn.Parameter(alpha)
        else:
            self.register_buffer("surrogate_alpha", alpha)

    @staticmethod
    def over_time(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``matrix @ x`` with x [T, *shape] flattened to [T, N]."""
        return (matrix @ x.reshape(x.shape[0], -1)).reshape(matrix.shape[0], *x.shape[1:])

    def spike(self, u: torch.Tensor) -> torch.Tensor:
        return spike_fn(self, u)

    @staticmethod
    def _check_T(x: torch.Tensor, T: int):
        if x.shape[0] != T:
            raise ValueError(f"expected T = {T} time steps, got input of shape {tuple(x.shape)}")


class PSN(_TimeMatrixNeuron):
    """PSN: H = W X + B with a learnable T×T W (nn.Linear init) and bias B (init -1); S = Θ(H)."""

    def __init__(self, T: int, surrogate: sg.Surrogate | None = None):
        super().__init__(surrogate)
        self.T = T
        self.weight = nn.Parameter(torch.empty(T, T))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.full((T,), -1.0))

    def effective_weight(self) -> torch.Tensor:
        return self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_T(x, self.T)
        h = self.over_time(self.effective_weight(), x) + self.bias.view(-1, *([1] * (x.dim() - 1)))
        return self.spike(h)


def masked_psn_lambda(epoch: int, epochs: int) -> float:
    """The authors' progressive-mask schedule: λ = min(1, 8·epoch / (epochs − 1))."""
    return min(1.0, 8.0 * epoch / max(epochs - 1, 1))


class MaskedPSN(PSN):
    """Masked PSN of order k: W ⊙ M_k(λ), ``M_k[i][j] = 1`` iff j ≤ i ≤ j + k − 1, M(λ) = λ M_k + (1 − λ).

    Set ``lam`` (e.g. from :func:`masked_psn_lambda`) during training; λ = 1 gives the order-k mask.
    """

    def __init__(self, k: int, T: int, lam: float = 1.0, surrogate: sg.Surrogate | None = None):
        super().__init__(T, surrogate)
        self.k, self.lam = k, lam
        i = torch.arange(T)
        self.register_buffer("mask", ((i[None, :] <= i[:, None]) & (i[:, None] <= i[None, :] + k - 1)).float())

    def effective_weight(self) -> torch.Tensor:
        return self.weight * (self.lam * self.mask + (1.0 - self.lam))


class SlidingPSN(_TimeMatrixNeuron):
    """Sliding PSN of order k: H[t] = Σ_{i<k} W_i X[t − k + 1 + i] + b, any T, as one banded GEMM.

    Exponential init W_i = 2^(i − k + 1) (``exp_init=True``), bias init −1.
    """

    def __init__(self, k: int, exp_init: bool = True, surrogate: sg.Surrogate | None = None):
        super().__init__(surrogate)
        self.k = k
        init = torch.pow(2.0, torch.arange(k, dtype=torch.float32) - k + 1) if exp_init else torch.rand(k) / k
        self.weight = nn.Parameter(init)
        self.bias = nn.Parameter(torch.tensor(-1.0))

    def banded(self, T: int) -> torch.Tensor:
        """The T×T banded matrix: row t holds W_i at column t − k + 1 + i."""
        t = torch.arange(T, device=self.weight.device)
        offset = t[None, :] - t[:, None] + self.k - 1           # i for column j of row t
        valid = (offset >= 0) & (offset < self.k)
        return torch.where(valid, self.weight[offset.clamp(0, self.k - 1)], torch.zeros((), device=t.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spike(self.over_time(self.banded(x.shape[0]), x) + self.bias)


def psu_matrices(T: int, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PSU leak ``m1[i][j] = tau^−(i−j+1)`` (i ≥ j) and reset ``m2[i][j] = −tau^−(i−j)`` (i > j)."""
    i = torch.arange(T, dtype=torch.float32)
    d = i[:, None] - i[None, :]
    m1 = torch.where(d >= 0, tau ** (-(d + 1)), torch.zeros(()))
    m2 = torch.where(d > 0, -(tau ** (-d)), torch.zeros(()))
    return m1, m2


class PSU(_TimeMatrixNeuron):
    """PSU (paper 002): D = m1 X; V = D + V_th·m2·sigmoid(D); S = Θ(V − V_th)."""

    def __init__(self, T: int, tau: float = 2.0, v_th: float = 0.5, surrogate: sg.Surrogate | None = None):
        super().__init__(surrogate)
        self.T, self.tau, self.v_th = T, tau, v_th
        m1, m2 = psu_matrices(T, tau)
        self.register_buffer("m1", m1)
        self.register_buffer("m2", m2)

    def membrane(self, x: torch.Tensor) -> torch.Tensor:
        d = self.over_time(self.m1, x)
        return d + self.v_th * self.over_time(self.m2, torch.sigmoid(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_T(x, self.T)
        return self.spike(self.membrane(x) - self.v_th)


class _LearnedPSU(PSU):
    def __init__(self, T: int, tau: float = 2.0, v_th: float = 0.5, surrogate: sg.Surrogate | None = None):
        super().__init__(T, tau, v_th, surrogate)
        self.weight = nn.Parameter(torch.empty(T, T))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.bias = nn.Parameter(torch.zeros(T))
        self.register_buffer("tril", torch.tril(torch.ones(T, T)))

    def learned(self, x: torch.Tensor) -> torch.Tensor:
        return self.over_time(self.weight * self.tril, x) + self.bias.view(-1, *([1] * (x.dim() - 1)))


class IPSU(_LearnedPSU):
    """IPSU: V = (W ⊙ tril) X + b + m2 X."""

    def membrane(self, x: torch.Tensor) -> torch.Tensor:
        return self.learned(x) + self.over_time(self.m2, x)


class RPSU(_LearnedPSU):
    """RPSU: V = m1 X + m2·sigmoid((W ⊙ tril) X + b)."""

    def membrane(self, x: torch.Tensor) -> torch.Tensor:
        return self.over_time(self.m1, x) + self.over_time(self.m2, torch.sigmoid(self.learned(x)))
