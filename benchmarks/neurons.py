"""The neurons benchmarked: the DSL neuron of paper 000, and plain PyTorch per-step equations of every kind.

Every kind uses V_th/V_reset/tau as named in docs/benchmarks.md and the ATan surrogate with alpha = 2, so all
implementations compute the same spikes (checked before timing) and comparable gradients.
"""
from __future__ import annotations

import math

import torch

import neurodsl as nd


class Paper000LIF(nd.Neuron):
    """Paper 000's single LIF layer: H = k_tau * V + X, hard reset to 0, V_th = 0.3 (k_tau = 0.2)."""

    v = nd.State(0.0)
    k_tau = nd.Param(0.2)
    v_th = nd.Param(0.3)

    def charge(self, x):
        return dict(v=self.k_tau * self.v + x)

    def fire(self):
        return self.v - self.v_th

    def reset(self, s):
        return dict(v=self.v * (1 - s))


#: Izhikevich parameters used everywhere (SpikingJelly's a = b = 0 would make W trivial).
IZH = dict(a=0.1, b=0.2, tau=2.0, v_c=0.8, a0=1.0, v_rest=-0.1, tau_w=2.0, v_th=1.0, v_reset=-0.1)
ALIF = dict(tau=2.0, tau_a=20.0, beta=1.8, v_th=1.0)
KINDS = ("lif", "plif", "paper000", "alif", "izhikevich")


def neurodsl_layer(kind: str, backend: str, parallel: str = "sequential") -> nd.Neuron:
    if kind == "lif_noreset":  # the parallel-forms scenario: learnable tau so gradients reach the GEMM weight
        return nd.zoo.LIFNoReset(backend=backend, parallel=parallel, learnable=("tau",))
    if kind == "lif":
        return nd.zoo.LIF(backend=backend, tau=2.0, v_th=1.0, v_reset=0.0, decay_input=True, reset_mode="hard")
    if kind == "plif":
        return nd.zoo.PLIF(backend=backend)
    if kind == "paper000":
        return Paper000LIF(backend=backend)
    if kind == "alif":
        return nd.zoo.ALIF(backend=backend, **ALIF)
    if kind == "izhikevich":
        return nd.zoo.Izhikevich(backend=backend, **IZH)
    raise ValueError(kind)


class _ATanSpike(torch.autograd.Function):
    """Θ(u) forward, ATan surrogate derivative backward.

    Not the straight-through sum ``Θ(u) + (g(u) - g(u).detach())``: compiled to a GPU kernel, ``g - g`` may be
    contracted into ``fma(a, b, -a*b)`` (the rounding error of ``a*b``, not 0), so "no spike" comes out as a
    tiny nonzero number and the compiled loop stops computing exact spikes.
    """

    @staticmethod
    def forward(ctx, u, alpha):
        ctx.save_for_backward(u)
        ctx.alpha = alpha
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        half_pi_alpha = math.pi * ctx.alpha / 2
        return grad * (ctx.alpha / 2) / (1 + (half_pi_alpha * u) ** 2), None


def atan_spike(u: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Θ(u) forward (exactly 0 or 1, eager and compiled), ATan(alpha) surrogate backward."""
    return _ATanSpike.apply(u, alpha)


def initial_states(kind: str, like: torch.Tensor) -> tuple:
    zeros = torch.zeros_like(like)
    if kind == "izhikevich":
        return (zeros + IZH["v_reset"], zeros.clone())
    if kind == "alif":
        return (zeros, zeros.clone())
    return (zeros,)


def step(kind: str, x: torch.Tensor, states: tuple, params: dict) -> tuple:
    """One time step of ``kind``: returns (spike, new states)."""
    if kind == "lif":
        (v,) = states
        h = v + (x - v) / 2.0
        s = atan_spike(h - 1.0)
        return s, (h * (1 - s),)
    if kind == "plif":
        (v,) = states
        h = v + (x - v) * torch.sigmoid(params["w"])
        s = atan_spike(h - 1.0)
        return s, (h * (1 - s),)
    if kind == "paper000":
        (v,) = states
        h = 0.2 * v + x
        s = atan_spike(h - 0.3)
        return s, (h * (1 - s),)
    if kind == "alif":
        v, a = states
        p = ALIF
        h = v + (x - v) / p["tau"]
        a = a - a / p["tau_a"]
        s = atan_spike(h - p["v_th"] - p["beta"] * a)
        return s, (h * (1 - s), a + s)
    if kind == "izhikevich":
        v, w = states
        p = IZH
        h = v + (x + p["a0"] * (v - p["v_rest"]) * (v - p["v_c"]) - w) / p["tau"]
        s = atan_spike(h - p["v_th"])
        w = w + (p["a"] * (h - p["v_rest"]) - w) / p["tau_w"] + p["b"] * s
        return s, (h * (1 - s) + p["v_reset"] * s, w)
    raise ValueError(kind)


def loop_forward(kind: str, x_seq: torch.Tensor, params: dict) -> torch.Tensor:
    """The plain PyTorch per-step loop over [T, ...] (fp32 math, spikes in the input dtype)."""
    states = initial_states(kind, x_seq[0].float())
    spikes = []
    for t in range(x_seq.shape[0]):
        s, states = step(kind, x_seq[t].float(), states, params)
        spikes.append(s)
    return torch.stack(spikes).to(x_seq.dtype)


# -- SpikingJelly FlexSN cores (module-level, no captured tensors; ATan alpha = 2 via SJ's autograd function) --
def _sj_spike(u):
    from spikingjelly.activation_based import surrogate
    return surrogate.atan.apply(u, 2.0)


def flexsn_alif_core(x, v, a):
    h = v + (x - v) / 2.0
    a = a - a / 20.0
    s = _sj_spike(h - 1.0 - 1.8 * a)
    return s, h * (1.0 - s), a + s


def flexsn_izhikevich_core(x, v, w):
    h = v + (x + (v + 0.1) * (v - 0.8) - w) / 2.0
    s = _sj_spike(h - 1.0)
    w = w + (0.1 * (h + 0.1) - w) / 2.0 + 0.2 * s
    return s, h * (1.0 - s) - 0.1 * s, w
