"""Parallel forms: the affine step of a linear neuron as a :class:`~kernels_gen.plan.ParallelPlan`.

For the reset-free dynamics H = A·V[t-1] + b_t (A_ij = ∂C_i/∂V_j, b = C(V=0)); with a
reset that is affine given the spike, V[t] = G(s)·H + c(s) (G_ij = ∂R_i/∂H_j, c = R(H=0)).

>>> import neurodsl as nd
>>> from neurodsl.analysis import KernelOptions
>>> plan = parallel_plan(nd.zoo.LIF.spec, KernelOptions(nd.surrogate.ATan()))
>>> [a.target.name for a in plan.coefficients][-2:]
['a_0_0', 'b_0']
"""
from __future__ import annotations

import functools

import sympy as sp

from kernels_gen.plan import FIRE, SPIKE, Assign, ParallelPlan, param_name, sym

from ..spec import NeuronSpec
from .derive import ALPHA, KernelOptions, _spike_expr, cse_program, plan_params
from .linearity import classify, classify_as_written


def _matrix_program(matrix, vector, mat_name: str, vec_name: str, prefix: str) -> list[Assign]:
    k = len(vector)
    targets = [sym(f"{mat_name}_{i}_{j}") for i in range(k) for j in range(k)] + [sym(f"{vec_name}_{i}")
                                                                                 for i in range(k)]
    exprs = [sp.sympify(matrix[i][j]) for i in range(k) for j in range(k)] + [sp.sympify(v) for v in vector]
    return cse_program(targets, exprs, prefix)


@functools.lru_cache(maxsize=256)
def parallel_plan(spec: NeuronSpec, options: KernelOptions) -> ParallelPlan | None:
    """The plan for parallel forms, or None when the neuron is not affine (see the verdicts)."""
    verdict, as_written = classify(spec), classify_as_written(spec)
    if not verdict.parallelizable:
        return None
    prev, charged, _, _ = spec.symbols()
    zero_states = {v: 0 for v in prev.values()}
    charge = [e for _, e in spec.charge]
    b = [e.xreplace(zero_states) for e in charge]
    coefficients = _matrix_program(verdict.matrix, b, "a", "b", "k")
    reset_program: list[Assign] = []
    if as_written.spike_driven:
        if not as_written.exact:
            return None
        h_syms = [charged[s] for s in spec.states]
        reset = [e for _, e in spec.reset]
        G = [[sp.diff(r, h) for h in h_syms] for r in reset]
        c = [r.xreplace({h: 0 for h in h_syms}) for r in reset]
        reset_program = _matrix_program(G, c, "g", "c", "m")
    alpha, fire = sym(param_name(ALPHA)), sym(FIRE)
    spike_program = [
        Assign(sym(SPIKE), _spike_expr(fire, options, alpha)),
        Assign(sym("dspike"), options.surrogate.derivative(fire, alpha)),
        Assign(sym("dalpha"), options.surrogate.alpha_derivative(fire, alpha) if ALPHA in options.learnable
               else sp.Integer(0)),
    ]
    params_in_a = {f.name for row in verdict.matrix for e in row for f in sp.sympify(e).free_symbols}
    return ParallelPlan(
        a_params=tuple(p for p in spec.params if param_name(p) in params_in_a),
        name=spec.name, states=spec.states, inputs=spec.inputs, params=plan_params(spec, options),
        coefficients=tuple(coefficients), reset=tuple(reset_program), fire=(Assign(fire, spec.fire),),
        spike=tuple(spike_program), time_invariant=verdict.kind == "linear-time-invariant",
    )
