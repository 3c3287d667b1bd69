"""A user-defined neuron, compiled and checked with the CLI:

    neurodsl compile examples/custom_neuron.py
    neurodsl check examples/custom_neuron.py:AdExLike
    neurodsl show examples/custom_neuron.py:AdExLike --kernel backward --backend torch
"""
import neurodsl as nd


class AdExLike(nd.Neuron):
    """Adaptive exponential neuron with a saturating synaptic current and two inputs (excitatory, inhibitory)."""

    v = nd.State("v_reset")
    w = nd.State(0.0)
    tau = nd.Param(2.0)
    tau_w = nd.Param(10.0)
    delta_t = nd.Param(0.5)
    theta = nd.Param(0.8)
    a = nd.Param(0.1)
    b = nd.Param(0.2)
    v_th = nd.Param(1.0)
    v_reset = nd.Param(0.0)

    def charge(self, exc, inh):
        drive = nd.tanh(exc) - nd.sigmoid(inh)
        leak = -self.v + self.delta_t * nd.exp(nd.minimum(self.v - self.theta, 2.0) / self.delta_t)
        return dict(v=self.v + (leak - self.w + drive) / self.tau,
                    w=self.w + (self.a * self.v - self.w) / self.tau_w)

    def fire(self):
        return self.v - self.v_th

    def reset(self, s):
        return dict(v=nd.where(s > 0, self.v_reset, self.v), w=self.w + self.b * s)
