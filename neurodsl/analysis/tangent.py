"""The tangent (forward-mode) step of a spec, and the plan that carries it.

The tangent step is linear in the tangents tV, tX, tP with the per-step Jacobians of :mod:`.jacobians` as
coefficients: tV[t] = J·tV[t-1] + K·tX + G·tP and tS = ψ∂h/∂H·(∂F/∂V·tV[t-1] + ...).
"""
from __future__ import annotations

import dataclasses
import functools

import sympy as sp

from kernels_gen.plan import FIRE, SPIKE, TSPIKE, Assign, KernelPlan, input_name, new_name, param_name, prev_name, \
    sym, tangent_name

from ..spec import NeuronSpec
from .derive import ALPHA, KernelOptions, cse_program, derive_plan, forward_program, propagate_constants, \
    prune
from .jacobians import PSI, jacobians


def tangent_program(spec: NeuronSpec, options: KernelOptions) -> list[Assign]:
    """One forward step plus its tangent: ``spike``, ``n_*``, ``tspike`` and ``tn_*`` from the prev states, inputs,
    params and the tangents ``tv_*``, ``tx_*`` and ``tp_*`` of the learnable params (``KernelPlan.tangent``).

    Per-neuron coefficients (``jv_i_k`` = J, ``jx_i_m`` = K, ``jp_i_q`` = G and the spike's row ``sv_k``, ``sx_m``,
    ``sp_q``) come first; each tangent output is then one sum of coefficient × tangent over the nonzero entries.
    """
    jac = jacobians(spec, options)
    prev, _, inputs, params = spec.symbols()
    alpha, fire = sym(param_name(ALPHA)), sym(FIRE)
    tv = [sym(tangent_name(prev_name(s))) for s in spec.states]
    tx = [sym(tangent_name(input_name(i))) for i in spec.inputs]
    tp = [sym(tangent_name(param_name(p))) for p in jac.params]
    psi = options.surrogate.derivative(fire, alpha)
    rows = [(sym(tangent_name(new_name(s))), jac.J.row(i), jac.K.row(i), jac.G.row(i), f"{i}")
            for i, s in enumerate(spec.states)]
    rows.append((sym(TSPIKE), jac.spike_dv, jac.spike_dI, jac.spike_dtheta, ""))
    coeff_targets, coeff_exprs, outputs = [], [], []
    for target, dv, dx, dp, row in rows:
        terms = []
        for role, coeffs, tangents in (("jv" if row else "sv", dv, tv), ("jx" if row else "sx", dx, tx),
                                       ("jp" if row else "sp", dp, tp)):
            for col, (coeff, tangent) in enumerate(zip(coeffs, tangents)):
                coeff = sp.sympify(coeff).xreplace({PSI: psi})
                if coeff == 0:
                    continue
                name = sym(f"{role}_{row}_{col}" if row else f"{role}_{col}")
                coeff_targets.append(name)
                coeff_exprs.append(coeff)
                terms.append(name * tangent)
        outputs.append(Assign(target, sp.Add(*terms)))
    program = forward_program(spec, options) + cse_program(coeff_targets, coeff_exprs, "d") + outputs
    keep = {sym(SPIKE), sym(TSPIKE)} | {sym(new_name(s)) for s in spec.states} | {a.target for a in outputs}
    return prune(propagate_constants(program, keep), keep)


@functools.lru_cache(maxsize=512)
def derive_tangent_plan(spec: NeuronSpec, options: KernelOptions) -> KernelPlan:
    """:func:`derive_plan` with its ``tangent`` program filled (memoised): what the tangent kernels are made from,
    derived only when forward-mode AD or online learning first needs them."""
    return dataclasses.replace(derive_plan(spec, options), tangent=tuple(tangent_program(spec, options)))
