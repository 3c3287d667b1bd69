"""Built-in neurons, written in the same DSL users use (no hand-written kernels).

Equations and defaults follow SpikingJelly 2.0 (V_th = 1, V_reset = 0 unless noted).
Options that change equations are ``variants``: ``reset_mode`` ('hard' | 'soft') and,
for LIF-like neurons, ``decay_input`` (True | False).

Exchange with other tools sits next to the equations it translates: ``nir_type`` / ``nir_node`` /
``from_nir_node`` map a class to and from NIR (one step = one forward-Euler step of length ``dt``;
``neurodsl.nir_io`` walks the graphs), and ``LIF.from_spikingjelly`` maps SpikingJelly's ``LIFNode``.

>>> import torch
>>> LIF(reset_mode="soft", decay_input=False)(torch.ones(4, 3)).shape
torch.Size([4, 3])
"""
from __future__ import annotations

from . import mathfns as m
from .errors import NIRError
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

    def _nir_params(self, shape):
        """Per-neuron parameter arrays for a NIR node; NIR neurons reset to v_reset, so no soft reset."""
        from .interop import param_arrays
        if dict(self.spec.options).get("reset_mode") != "hard":
            raise NIRError("ND501", "reset_mode='soft' (v -= v_th); NIR neurons reset to v_reset")
        return param_arrays(self, shape)


class IF(_ResetNeuron):
    """Integrate-and-fire: H = V + X."""

    nir_type = "IF"
    v = State("v_reset")

    def charge(self, x):
        return dict(v=self.v + x)

    def nir_node(self, shape, dt):
        """``nir.IF``: one Euler step of ``dv/dt = r I`` adds ``X`` when ``r = 1/dt``."""
        import nir
        import numpy as np
        p = self._nir_params(shape)
        return nir.IF(r=np.full(shape, 1.0 / dt), v_threshold=p["v_th"], v_reset=p["v_reset"])

    @classmethod
    def from_nir_node(cls, node, dt, **options):
        """From ``nir.IF`` with ``r = 1/dt``."""
        import numpy as np
        from .interop import allclose, param_from_array as value, require
        require(allclose(np.asarray(node.r, np.float64) * dt, 1.0), node, cls, "r = 1/dt")
        return cls(v_th=value("v_threshold", node.v_threshold), v_reset=value("v_reset", node.v_reset),
                   reset_mode="hard", **options)


class LIF(_ResetNeuron):
    """Leaky integrate-and-fire; decay_input: H = V + (X - (V - V_reset))/tau, else H = V - (V - V_reset)/tau + X.

    With the soft reset the leak is towards 0 (as in SpikingJelly)."""

    variants = dict(_RESET, decay_input=(True, False))
    nir_type = "LIF"
    v = State("v_reset")
    tau = Param(2.0)

    def charge(self, x):
        rest = self.v_reset if self.reset_mode == "hard" else 0.0
        if self.decay_input:
            return dict(v=self.v + (x - (self.v - rest)) / self.tau)
        return dict(v=self.v - (self.v - rest) / self.tau + x)

    def nir_node(self, shape, dt):
        """``nir.LIF``, ``tau dv/dt = (v_leak - v) + r I``, with ``tau = tau_steps·dt``, ``v_leak = v_reset`` and
        ``r = 1`` (decay_input) or ``tau_steps``."""
        p = self._nir_params(shape)
        return _nir_lif(self, p["tau"], p, dt)

    @classmethod
    def from_nir_node(cls, node, dt, **options):
        """From ``nir.LIF`` with ``v_leak = v_reset`` and ``r = 1`` (decay_input) or ``tau/dt``."""
        import numpy as np
        from .interop import allclose, param_from_array as value, require
        tau = np.asarray(node.tau, np.float64) / dt
        decay_input = allclose(node.r, 1.0)
        require(decay_input or allclose(node.r, tau), node, cls, "r = 1 (decay_input=True) or r = tau/dt")
        require(allclose(node.v_leak, node.v_reset), node, cls, "v_leak = v_reset")
        return cls(tau=value("tau", tau), v_th=value("v_threshold", node.v_threshold),
                   v_reset=value("v_reset", node.v_reset), decay_input=decay_input, reset_mode="hard", **options)

    @classmethod
    def from_spikingjelly(cls, node, **overrides):
        """The LIF equal to SpikingJelly's ``LIFNode`` ``node`` (``v_reset=None``: soft reset); ``overrides`` win."""
        from .interop import spikingjelly_options
        params = dict(tau=float(node.tau), decay_input=bool(node.decay_input), v_th=float(node.v_threshold),
                      reset_mode="soft" if node.v_reset is None else "hard", v_reset=float(node.v_reset or 0.0))
        return cls(**{**params, **spikingjelly_options(node, **overrides)})


def _nir_lif(layer, tau_steps, p, dt):
    """The ``nir.LIF`` of a LIF-like layer with ``tau_steps`` and its per-neuron parameter arrays ``p``."""
    import nir
    import numpy as np
    decay_input = dict(layer.spec.options)["decay_input"]
    return nir.LIF(tau=tau_steps * dt, r=np.ones_like(tau_steps) if decay_input else tau_steps.copy(),
                   v_leak=p["v_reset"].copy(), v_threshold=p["v_th"], v_reset=p["v_reset"])


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

    def nir_node(self, shape, dt):
        """``nir.LIF`` as for LIF, with ``tau_steps = 1/sigmoid(w)`` (no ``nir_type``: it imports as LIF)."""
        import numpy as np
        p = self._nir_params(shape)
        return _nir_lif(self, 1.0 + np.exp(-p["w"]), p, dt)


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

    check_kwargs = dict(a=0.5, b=0.2)  # checks: a, b nonzero (SpikingJelly's default 0 would hide W's terms)

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

    nir_type = "CubaLIF"
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

    def nir_node(self, shape, dt):
        """``nir.CubaLIF`` (V integrates the updated I): ``tau_syn = dt/(1 - c_decay)``, ``tau_mem = dt/(1 - v_decay)``,
        ``w_in = tau_syn/dt``, ``r = tau_mem/dt``, ``v_leak = v_reset = 0``."""
        import nir
        import numpy as np
        from .interop import param_arrays
        p = param_arrays(self, shape)
        if np.any(p["c_decay"] == 1) or np.any(p["v_decay"] == 1):
            raise NIRError("ND501", "c_decay or v_decay = 1 (no decay) has no finite NIR time constant")
        tau_syn, tau_mem = dt / (1 - p["c_decay"]), dt / (1 - p["v_decay"])
        return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=np.zeros(shape),
                           v_threshold=p["v_th"], v_reset=np.zeros(shape), w_in=tau_syn / dt)

    @classmethod
    def from_nir_node(cls, node, dt, **options):
        """From ``nir.CubaLIF`` with ``v_leak = v_reset = 0``, ``r = tau_mem/dt`` and ``w_in = tau_syn/dt``."""
        import numpy as np
        from .interop import allclose, param_from_array as value, require
        tau_syn, tau_mem = np.asarray(node.tau_syn, np.float64), np.asarray(node.tau_mem, np.float64)
        require(allclose(node.v_leak, 0.0) and allclose(node.v_reset, 0.0), node, cls, "v_leak = v_reset = 0")
        require(allclose(node.r, tau_mem / dt) and allclose(node.w_in, tau_syn / dt), node, cls,
                "r = tau_mem/dt and w_in = tau_syn/dt")
        return cls(c_decay=value("c_decay", 1 - dt / tau_syn), v_decay=value("v_decay", 1 - dt / tau_mem),
                   v_th=value("v_threshold", node.v_threshold), **options)


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
