"""The derived per-step Jacobians (neurodsl.analysis.jacobians): formulas, verdicts, the report's section."""
from __future__ import annotations

import sympy as sp
import torch

import neurodsl as nd
from kernels_gen.plan import sym
from neurodsl.analysis import KernelOptions
from neurodsl.analysis.jacobians import PSI, jacobians


def _options(cls, learnable=(), detach_reset=False, surrogate=None):
    return KernelOptions(surrogate or nd.surrogate.ATan(), detach_reset, (False,) * len(cls.spec.params), learnable)


def _zero(matrix) -> bool:
    return all(sp.simplify(e) == 0 for e in sp.Matrix(matrix))


def test_alif_jacobians_are_the_hand_derived_ones():
    jac = jacobians(nd.zoo.ALIF.spec, _options(nd.zoo.ALIF, learnable=("tau", "beta")))
    h_v, h_a, s, tau, tau_a, beta, v, x = map(sym, ("h_v", "h_a", "spike", "p_tau", "p_tau_a", "p_beta", "v_v",
                                                      "x_x"))
    # v' = H_v (1 - s), a' = H_a + s, fire = H_v - v_th - β H_a: C = ∂R/∂H + ∂R/∂s ψ ∂h/∂H
    C = sp.Matrix([[1 - s - h_v * PSI, h_v * beta * PSI], [PSI, 1 - beta * PSI]])
    leak = sp.diag(1 - 1 / tau, 1 - 1 / tau_a)
    assert _zero(jac.C - C) and _zero(jac.dF_dv - leak) and _zero(jac.J - C * leak)
    assert _zero(jac.K - C * sp.Matrix([1 / tau, 0]))
    dF_dtau = sp.Matrix([-(x - v) / tau ** 2, 0])
    assert _zero(jac.G[:, 0] - C * dF_dtau)                                     # tau: through the charge
    assert _zero(jac.G[:, 1] - sp.Matrix([-h_v, 1]) * PSI * (-h_a))             # beta: through fire and reset
    assert _zero(jac.spike_dv - PSI * sp.Matrix([[1, -beta]]) * leak)
    assert jac.leak_verdict == "constant-diagonal" and jac.structure() == "full" and not jac.J_constant


def test_detach_reset_drops_the_spike_term_of_C():
    jac = jacobians(nd.zoo.ALIF.spec, _options(nd.zoo.ALIF, detach_reset=True))
    s = sym("spike")
    assert _zero(jac.C - sp.diag(1 - s, 1))
    assert jac.structure() == "diagonal"


def test_verdicts_constant_diagonal_block_and_state_dependent():
    no_reset = jacobians(nd.zoo.LIFNoReset.spec, _options(nd.zoo.LIFNoReset))
    assert no_reset.J_constant and no_reset.structure() == "diagonal" and no_reset.leak_verdict == "constant-diagonal"
    cuba = jacobians(nd.zoo.CubaLIF.spec, _options(nd.zoo.CubaLIF))
    assert cuba.leak_verdict == "constant" and cuba.leak is None
    qif = jacobians(nd.zoo.QIF.spec, _options(nd.zoo.QIF))
    assert qif.leak_verdict == "state-dependent"

    class Traced(nd.Neuron):
        """A LIF with an input trace w that the spike never reads: J is block-diagonal."""
        v = nd.State(0.0)
        w = nd.State(0.0)
        c = nd.State(0.0)

        def charge(self, x):
            return dict(v=0.9 * self.v + x, w=0.5 * self.w + self.c + x, c=0.7 * self.c + self.w)

        def fire(self):
            return self.v - 1.0

        def reset(self, s):
            return dict(v=self.v * (1 - s))

    jac = jacobians(Traced.spec, _options(Traced))
    assert jac.structure() == "block-diagonal" and set(jac.blocks()) == {("v",), ("w", "c")}
    assert "block-diagonal: {v} | {w, c}" in jac.explain()[1]


def test_jacobians_are_memoised_and_match_finite_differences_in_smooth_mode():
    options = KernelOptions(nd.surrogate.Sigmoid(), False, (False,) * 4, (), "float64", True)
    spec = nd.zoo.ALIF.spec
    assert jacobians(spec, options) is jacobians(spec, options)
    layer = nd.zoo.ALIF(smooth=True, surrogate=nd.surrogate.Sigmoid()).double()
    v0, a0, x = torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64), torch.tensor(0.9)

    def step(v, a):
        _, seqs = nd.reference_run(layer, x.double().reshape(1, 1), init={"v": v.reshape(1), "a": a.reshape(1)})
        return torch.stack([seqs["v"][0, 0], seqs["a"][0, 0]])
    numeric = torch.autograd.functional.jacobian(step, (v0, a0))
    numeric = torch.stack([numeric[0], numeric[1]], 1)
    jac = jacobians(spec, options)
    p = {name: float(layer.param_value(name)) for name in spec.params}       # as the layer holds them (fp32)
    h_v = 0.7 + (float(x) - 0.7) / p["tau"]
    h_a = 0.2 * (1 - 1 / p["tau_a"])
    u = h_v - p["v_th"] - p["beta"] * h_a
    spike = 1 / (1 + torch.exp(torch.tensor(-4.0 * u, dtype=torch.float64)))
    values = {sym("h_v"): h_v, sym("h_a"): h_a, sym("spike"): float(spike), sym("fire"): u, sym("p__alpha"): 4.0}
    values.update({sym(f"p_{name}"): value for name, value in p.items()})
    values[PSI] = float(jac.psi.subs(values))
    J = torch.tensor([[float(e.subs(values)) for e in row] for row in jac.J.tolist()], dtype=torch.float64)
    torch.testing.assert_close(J, numeric, rtol=1e-12, atol=1e-12)


def test_the_report_prints_the_jacobians_and_their_verdicts():
    text = str(nd.zoo.ALIF(learnable=("tau",)).analysis())
    section = text.split("Per-step Jacobians")[1].split("Parallel forms")[0]
    assert "C[v,v] = -H_v*ψ - spike + 1" in section and "J[a,v] = ψ*(1 - 1/tau)" in section
    assert "K[v,x]" in section and "G[v,tau]" in section and "G[a,beta]" not in section
    assert "λ_v = 1 - 1/tau, λ_a = 1 - 1/tau_a" in section and "(2×2) is time-varying" in section
    assert "J (1×1) is constant and diagonal" in str(nd.zoo.LIFNoReset.analysis())
