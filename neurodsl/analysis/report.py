"""The human-readable analysis report of a neuron (``Neuron.analysis()``)."""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from kernels_gen.plan import KernelPlan

from ..spec import NeuronSpec
from .derive import KernelOptions, derive_plan
from .jacobians import StepJacobians, jacobians
from .linearity import LinearityVerdict, ResetVerdict, classify, classify_as_written

_PREFIX = {"v_": "{}[t-1]", "h_": "H_{}", "n_": "{}[t]", "x_": "{}", "p_": "{}"}


def display_name(name: str) -> str:
    """Plan identifier -> reader's name: v_v -> v[t-1], h_v -> H_v, p_tau -> tau, gv_v -> ∂L/∂v[t-1]."""
    if name.startswith("g") and name[1:3] in _PREFIX:
        return f"∂L/∂{display_name(name[1:])}"
    if name == "psi":
        return "ψ"
    if name[:2] in _PREFIX:
        return _PREFIX[name[:2]].format(name[2:]).replace("_alpha", "alpha")
    return name


def _show(expr) -> str:
    """Readable names, and folded constants with 8 significant digits (the kernels keep full precision)."""
    names = {s: sp.Symbol(display_name(s.name)) for s in expr.free_symbols}
    names.update({f: sp.Float(f, 8) for f in expr.atoms(sp.Float)})
    return sp.sstr(expr.xreplace(names))


def _program(program) -> list[str]:
    return [f"    {display_name(a.target.name)} = {_show(a.expr)}" for a in program]


@dataclass(frozen=True)
class AnalysisReport:
    """Everything the analyzer decided for one spec and kernel options; ``str()`` renders it."""

    spec: NeuronSpec
    options: KernelOptions
    plan: KernelPlan
    linearity: LinearityVerdict
    as_written: ResetVerdict
    jacobians: StepJacobians

    def bytes_per_neuron_step(self, io_bytes: int = 4, compute_bytes: int = 4) -> dict[str, int]:
        """Bytes the fused kernels move per neuron and step, by mode: ``inference`` (inputs in, spikes out),
        ``forward`` (training: also the saved charged values), ``backward`` (spike gradient and saved values
        in, re-read inputs, input gradients out) and ``total`` = forward + backward. ``io_bytes``: the
        inputs' dtype (2 for fp16/bf16), ``compute_bytes``: the saved values' (4, or 8 for fp64). The time
        floor is these bytes over the device's copy bandwidth (the benchmark prints it next to each row)."""
        p = self.plan
        inference = io_bytes * (len(p.inputs) + 1)
        forward = inference + compute_bytes * len(p.saved_states)
        backward = io_bytes + compute_bytes * len(p.saved_states) + io_bytes * len(p.needed_inputs) \
            + io_bytes * len(p.inputs)
        return {"inference": inference, "forward": forward, "backward": backward, "total": forward + backward}

    def __str__(self) -> str:
        s, p = self.spec, self.plan
        lines = [f"Neuron {s.name}  (spec hash {s.hash})",
                 f"  states: {', '.join(s.states)}   inputs: {', '.join(s.inputs)}   "
                 f"params: {', '.join(s.params) or '-'}",
                 f"  surrogate: {self.options.surrogate!r}   detach_reset: {self.options.detach_reset}   "
                 f"learnable: {', '.join(sorted(self.options.learnable)) or '-'}",
                 "", "Forward step (charge -> fire -> reset):"]
        lines += _program(p.forward)
        lines += ["", "Backward step (BPTT, surrogate for dΘ, after common-subexpression elimination):"]
        lines += _program(p.backward)
        lines += ["", "Saved for backward:"]
        lines.append(f"    charged values: {', '.join('H_' + x for x in p.saved_states) or 'none'}")
        lines.append(f"    inputs re-read: {', '.join(p.needed_inputs) or 'none'}")
        lines.append("    recomputed: fire, spike" + (f", {', '.join(x + '[t-1]' for x in p.prev_states)} "
                                                      "from H[t-1]" if p.prev_states else ""))
        b = self.bytes_per_neuron_step()
        lines += ["", f"Bytes per neuron-step (fp32): inference {b['inference']}, training forward {b['forward']}, "
                      f"backward {b['backward']}, total {b['total']}"]
        lines += ["", "Per-step Jacobians (online learning; ψ = surrogate derivative at fire, docs/online.md):"]
        lines += _jacobian_lines(self.jacobians)
        lines += ["", "Parallel forms:",
                  "    reset-free dynamics: " + self.linearity.explain(),
                  "    as written: " + self.as_written.explain()]
        if self.as_written.spike_driven:
            lines.append(f"    without_reset() removes the spike-driven updates of: "
                         f"{', '.join(self.as_written.spike_driven)}")
        return "\n".join(lines)


def _jacobian_lines(jac: StepJacobians) -> list[str]:
    """The nonzero entries of C, J, K and G (learnable parameters only), then the leak and structure verdicts."""
    def entries(name, matrix, rows, cols):
        found = [f"{name}[{r},{c}] = {_show(sp.sympify(matrix[i, j]))}" for i, r in enumerate(rows)
                 for j, c in enumerate(cols) if matrix[i, j] != 0]
        return found or [f"{name} = 0"]
    states = jac.states
    lines = entries("C", jac.C, states, states) + entries("J", jac.J, states, states)
    lines += entries("K", jac.K, states, jac.inputs)
    if jac.params:
        lines += entries("G", jac.G, states, [display_name("p_" + p) for p in jac.params])
    return [f"    {line}" for line in lines + jac.explain(_show)]


def analyse(spec: NeuronSpec, options: KernelOptions) -> AnalysisReport:
    return AnalysisReport(spec, options, derive_plan(spec, options), classify(spec), classify_as_written(spec),
                          jacobians(spec, options))
