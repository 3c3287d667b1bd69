"""Built-in neurons, written in the same DSL users use (no hand-written kernels).

Equations and defaults follow SpikingJelly 2.0 (V_th = 1, V_reset = 0 unless noted).
Options that change equations are ``variants``: ``reset_mode`` ('hard' | 'soft') and,
for LIF-like neurons, ``decay_input`` (True | False).

>>> import torch
>>> LIF(reset_mode="soft", decay_input=False)(torch.ones(4, 3)).shape
torch.Size([4, 3])
"""
from __future__ import annotations

from . import mathfns as m
from .neuron import Neuron
from .spec import Param, State

__all__ = ["IF", "LIF", "PLIF", "ALIF", "QIF", "EIF", "Izhikevich", "KLIF", "CubaLIF", "LIFNoReset", "ALL"]

_RESET = {"reset_mode": ("hard", "soft")}


class _ResetNeuron(Neuron):
    """Shared fire/reset of single-voltage neurons: hard reset to v_reset or soft reset by v_th."""

    variants = dict(_RESET)
    v_th = Param(1.0)
    v_reset = Param(0.0)

    def fire(self):
        return self.v - self.v_th

    def reset(self, s):
        if self.reset_mode == "hard":
            return dict(v=self.v * (1 - s) + self.v_reset * s)
        return dict(v=self.v - self.v_th * s)


class IF(_ResetNeuron):
    """Integrate-and-fire: H = V + X."""

    v = State("v_reset")

    def charge(self, x):
        return dict(v=self.v + x)


class LIF(_ResetNeuron):
    """Leaky integrate-and-fire; decay_input: H = V + (X - (V - V_reset))/tau, else H = V - (V - V_reset)/tau + X.

    With the soft reset the leak is towards 0 (as in SpikingJelly)."""

    variants = dict(_RESET, decay_input=(True, False))
    v = State("v_reset")
    tau = Param(2.0)

    def charge(self, x):
        rest = self.v_reset if self.reset_mode == "hard" else 0.0
        if self.decay_input:
            return dict(v=self.v + (x - (self.v - rest)) / self.tau)
        return dict(v=self.v - (self.v - rest) / self.tau + x)


class PLIF(_ResetNeuron):
    """Parametric LIF: 1/tau = sigmoid(w), w learnable (w = -ln(init_tau - 1); 0 for tau = 2)."""

    variants = dict(_RESET, decay_input=(True, False))
    v = State("v_reset")
    w = Param(0.0, learnable=True)

    def charge(self, x):
        rest = self.v_reset if self.reset_mode == "hard" else 0.0
        k = m.sigmoid(self.w)
        if self.decay_input:
            return dict(v=self.v + (x - (self.v - rest)) * k)
        return dict(v=self.v - (self.v - rest) * k + x)


class ALIF(Neuron):
    """LIF with an adaptive threshold (Bellec et al. 2018): threshold v_th + beta*a, a jumps by the spike."""

    v = State(0.0)
    a = State(0.0)
    tau = Param(2.0)
    tau_a = Param(20.0)
    beta = Param(1.8)
    v_th = Param(1.0)

    def charge(self, x):
        return dict(v=self.v + (x - self.v) / self.tau, a=self.a - self.a / self.tau_a)

    def fire(self):
        return self.v - self.v_th - self.beta * self.a

    def reset(self, s):
        return dict(v=self.v * (1 - s), a=self.a + s)


class QIF(_ResetNeuron):
    """Quadratic integrate-and-fire: H = V + (X + a0 (V - v_rest)(V - v_c))/tau."""

    v = State("v_reset")
    v_reset = Param(-0.1)
    tau = Param(2.0)
    v_c = Param(0.8)
    a0 = Param(1.0)
    v_rest = Param(0.0)

    def charge(self, x):
        return dict(v=self.v + (x + self.a0 * (self.v - self.v_rest) * (self.v - self.v_c)) / self.tau)


class EIF(_ResetNeuron):
    """Exponential integrate-and-fire: H = V + (X + v_rest - V + delta_T exp((V - theta_rh)/delta_T))/tau."""

    v = State("v_reset")
    v_reset = Param(-0.1)
    tau = Param(2.0)
    delta_T = Param(1.0)
    theta_rh = Param(0.8)
    v_rest = Param(0.0)

    def charge(self, x):
        spike_current = self.delta_T * m.exp((self.v - self.theta_rh) / self.delta_T)
        return dict(v=self.v + (x + self.v_rest - self.v + spike_current) / self.tau)


class Izhikevich(Neuron):
    """Izhikevich-type neuron (SpikingJelly form): W updates from the charged V and jumps by b on a spike."""

    v = State("v_reset")
    w = State(0.0)
    tau = Param(2.0)
    v_c = Param(0.8)
    a0 = Param(1.0)
    v_rest = Param(-0.1)
    tau_w = Param(2.0)
    a = Param(0.0)
    b = Param(0.0)
    v_th = Param(1.0)
    v_reset = Param(-0.1)

    def charge(self, x):
        return dict(v=self.v + (x + self.a0 * (self.v - self.v_rest) * (self.v - self.v_c) - self.w) / self.tau)

    def fire(self):
        return self.v - self.v_th

    def reset(self, s):
        return dict(v=self.v * (1 - s) + self.v_reset * s,
                    w=self.w + (self.a * (self.v - self.v_rest) - self.w) / self.tau_w + self.b * s)


class KLIF(_ResetNeuron):
    """KLIF: LIF charge, then H = ReLU(k H) with a learnable scale k (init 1)."""

    v = State("v_reset")
    tau = Param(2.0)
    k = Param(1.0, learnable=True)

    def charge(self, x):
        rest = self.v_reset if self.reset_mode == "hard" else 0.0
        h = self.v + (x - (self.v - rest)) / self.tau
        return dict(v=m.relu(self.k * h))


class CubaLIF(Neuron):
    """Current-based LIF: I[t] = c_decay I + X; V[t] = v_decay V + I[t] (written with the previous I)."""

    i = State(0.0)
    v = State(0.0)
    c_decay = Param(0.5)
    v_decay = Param(0.75)
    v_th = Param(0.5)

    def charge(self, x):
        return dict(i=self.c_decay * self.i + x, v=self.v_decay * self.v + self.c_decay * self.i + x)

    def fire(self):
        return self.v - self.v_th

    def reset(self, s):
        return dict(v=self.v * (1 - s))


class LIFNoReset(Neuron):
    """LIF without reset (paper 003): H = V + (X - V)/tau, spike = Θ(H - v_th); a linear recurrence."""

    v = State(0.0)
    tau = Param(2.0)
    v_th = Param(1.0)

    def charge(self, x):
        return dict(v=self.v + (x - self.v) / self.tau)

    def fire(self):
        return self.v - self.v_th


#: Every zoo neuron class.
ALL = (IF, LIF, PLIF, ALIF, QIF, EIF, Izhikevich, KLIF, CubaLIF, LIFNoReset)
