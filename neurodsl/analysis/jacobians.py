"""Per-step Jacobians of a neuron: what every online learning rule (RTRL, e-prop, OTTT, ...) needs.

One step, with charge ṽ = F(v, I; θ) (the charged values H), fire s = Θ(h(ṽ)) with surrogate derivative
ψ = σ'(h(ṽ)), and reset v' = R(ṽ, s):

    C = ∂R/∂ṽ + (∂R/∂s)·ψ·∂h/∂ṽ        post-charge factor (the second term is dropped under detach_reset)
    J = C·∂F/∂v    (k×k)                how the states after the step depend on the states before it
    K = C·∂F/∂I    (k×inputs)           ... on the input current
    G = C·∂F/∂θ + ∂R/∂θ + (∂R/∂s)·ψ·∂h/∂θ   ... on the parameters (direct terms of fire and reset included)

and the spike's row: ds/dv = ψ·∂h/∂ṽ·∂F/∂v, ds/dI = ψ·∂h/∂ṽ·∂F/∂I, ds/dθ = ψ·(∂h/∂ṽ·∂F/∂θ + ∂h/∂θ).
Expressions use the plan's symbols (``v_<state>`` before the step, ``h_<state>`` charged, ``x_<input>``,
``p_<param>``, ``spike``, ``fire``) and :data:`PSI` for ψ. :func:`jacobians` is pure and memoised like ``derive_plan``.

>>> import neurodsl as nd
>>> from neurodsl.analysis import KernelOptions
>>> jac = jacobians(nd.zoo.LIF.spec, KernelOptions(nd.surrogate.ATan(), vector_params=(False,) * 3))
>>> jac.J[0, 0]
(1 - 1/p_tau)*(psi*(-h_v + p_v_reset) - spike + 1)
>>> jac.leak, jac.leak_verdict
((1 - 1/p_tau,), 'constant-diagonal')
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp

from kernels_gen.plan import FIRE, SPIKE, param_name, sym

from ..spec import NeuronSpec
from .derive import ALPHA, KernelOptions, real_diff

#: ψ, the surrogate derivative σ'(u) at u = fire (a placeholder symbol; :attr:`StepJacobians.psi` is its value).
PSI = sym("psi")

Matrix = sp.ImmutableMatrix


@dataclass(frozen=True)
class StepJacobians:
    """The derived Jacobians of one step (see the module docstring); matrices are ``sympy.ImmutableMatrix``.

    ``params`` are the parameters the θ-columns belong to: the learnable ones (and ``_alpha``, the surrogate's
    alpha, when it is learnable), in the plan's order.
    """

    states: tuple[str, ...]
    inputs: tuple[str, ...]
    params: tuple[str, ...]
    dF_dv: Matrix        # k×k, charge w.r.t. the states before the step
    dF_dI: Matrix        # k×m
    dF_dtheta: Matrix    # k×p
    dh_dH: Matrix        # 1×k, fire w.r.t. the charged values
    dh_dtheta: Matrix    # 1×p
    dR_dH: Matrix        # k×k
    dR_ds: Matrix        # k×1 (zero under detach_reset)
    dR_dtheta: Matrix    # k×p
    psi: sp.Expr         # σ'(fire), in terms of the symbol ``fire`` = h(H)
    dspike_dalpha: sp.Expr   # ∂g/∂alpha at ``fire`` (0 unless alpha is learnable)
    all_params: tuple[str, ...] = ()   # every parameter (and _alpha): what "constant" may depend on

    # -- the products ---------------------------------------------------------------
    @property
    def C(self) -> Matrix:
        return Matrix(self.dR_dH + self.dR_ds * PSI * self.dh_dH)

    @property
    def J(self) -> Matrix:
        return Matrix(self.C * self.dF_dv)

    @property
    def K(self) -> Matrix:
        return Matrix(self.C * self.dF_dI)

    @property
    def G(self) -> Matrix:
        g = self.C * self.dF_dtheta + self.dR_dtheta + self.dR_ds * PSI * self.dh_dtheta
        return Matrix(g + self.dR_ds * self._alpha_row())

    @property
    def spike_dv(self) -> Matrix:
        """ds/dv (1×k) through the charge."""
        return Matrix(PSI * self.dh_dH * self.dF_dv)

    @property
    def spike_dI(self) -> Matrix:
        return Matrix(PSI * self.dh_dH * self.dF_dI)

    @property
    def spike_dtheta(self) -> Matrix:
        return Matrix(PSI * (self.dh_dH * self.dF_dtheta + self.dh_dtheta) + self._alpha_row())

    def _alpha_row(self) -> Matrix:
        """∂s/∂alpha through the surrogate (only for a learnable alpha's column)."""
        return Matrix([[self.dspike_dalpha if p == ALPHA else 0 for p in self.params]])

    # -- verdicts ------------------------------------------------------------------
    def _constant(self, matrix: Matrix) -> bool:
        """Entries depend on parameters only (no state, charged value, input, spike or ψ)."""
        allowed = {sym(param_name(p)) for p in self.all_params}
        return all(e.free_symbols <= allowed for e in matrix)

    @property
    def leak(self) -> tuple[sp.Expr, ...] | None:
        """The diagonal of ∂F/∂v when it is constant and diagonal (the closed-form leak λ per state), else None."""
        if self.leak_verdict != "constant-diagonal":
            return None
        return tuple(self.dF_dv[i, i] for i in range(len(self.states)))

    @property
    def leak_verdict(self) -> str:
        """'constant-diagonal', 'constant' or 'state-dependent': of the reset-free charge Jacobian ∂F/∂v."""
        if not self._constant(self.dF_dv):
            return "state-dependent"
        return "constant-diagonal" if _is_diagonal(self.dF_dv) else "constant"

    @property
    def J_constant(self) -> bool:
        """J depends on parameters only: the exact trace of every synapse is a leaky presynaptic trace."""
        return self._constant(self.J)

    def blocks(self, matrix: Matrix | None = None) -> tuple[tuple[str, ...], ...]:
        """Groups of states coupled by ``matrix`` (J by default): connected components of its nonzero pattern."""
        matrix = self.J if matrix is None else matrix
        k = len(self.states)
        parent = list(range(k))

        def root(i):
            while parent[i] != i:
                i = parent[i]
            return i
        for i in range(k):
            for j in range(k):
                if i != j and matrix[i, j] != 0:
                    parent[root(i)] = root(j)
        groups: dict[int, list[str]] = {}
        for i, s in enumerate(self.states):
            groups.setdefault(root(i), []).append(s)
        return tuple(tuple(g) for g in groups.values())

    def structure(self, matrix: Matrix | None = None) -> str:
        """'diagonal', 'block-diagonal' or 'full' (one coupled block) for J (or ``matrix``)."""
        blocks = self.blocks(matrix)
        if all(len(b) == 1 for b in blocks):
            return "diagonal"
        return "full" if len(blocks) == 1 else "block-diagonal"

    def explain(self, show=sp.sstr) -> list[str]:
        """One line each: the leak of the charge, and the structure of J (``show`` prints an expression)."""
        k = len(self.states)
        if self.leak_verdict == "constant-diagonal":
            lam = ", ".join(f"λ_{s} = {show(e)}" for s, e in zip(self.states, self.leak))
            leak = f"∂F/∂v is constant and diagonal: {lam} (the closed-form leak OTTT's trace uses)"
        elif self.leak_verdict == "constant":
            leak = "∂F/∂v is constant but couples states (no per-state leak λ; OTTT needs a diagonal one)"
        else:
            leak = "∂F/∂v depends on the states or inputs (no closed-form leak; OTTT does not apply)"
        shape = self.structure()
        if shape == "block-diagonal":
            shape += ": " + " | ".join("{" + ", ".join(b) + "}" for b in self.blocks())
        const = "constant" if self.J_constant else "time-varying (depends on states, inputs or the spike)"
        return [leak, f"J ({k}×{k}) is {const} and {shape}"]


def _is_diagonal(matrix: Matrix) -> bool:
    return all(matrix[i, j] == 0 for i in range(matrix.rows) for j in range(matrix.cols) if i != j)


def _jacobian(exprs, symbols) -> Matrix:
    return Matrix([[real_diff(e, s) for s in symbols] for e in exprs]) if symbols else Matrix.zeros(len(exprs), 0)


@functools.lru_cache(maxsize=512)
def jacobians(spec: NeuronSpec, options: KernelOptions) -> StepJacobians:
    """The per-step Jacobians of ``spec`` under ``options`` (memoised; see the module docstring)."""
    prev, charged, inputs, params = spec.symbols()
    alpha, fire, spike = sym(param_name(ALPHA)), sym(FIRE), sym(SPIKE)
    learnable = [p for p in spec.params if p in options.learnable]
    theta_names = tuple(learnable) + ((ALPHA,) if ALPHA in options.learnable else ())
    theta = [params[p] for p in learnable] + ([alpha] if ALPHA in options.learnable else [])
    charge = [e for _, e in spec.charge]
    reset = dict((t.name, e) for t, e in spec.reset)
    reset = [reset[f"n_{s}"] for s in spec.states]
    h = [charged[s] for s in spec.states]
    dR_ds = Matrix.zeros(len(h), 1) if options.detach_reset else _jacobian(reset, [spike])
    psi = options.surrogate.derivative(fire, alpha)
    dalpha = options.surrogate.alpha_derivative(fire, alpha) if ALPHA in options.learnable else sp.Integer(0)
    jac = StepJacobians(
        states=spec.states, inputs=spec.inputs, params=theta_names,
        dF_dv=_jacobian(charge, [prev[s] for s in spec.states]), dF_dI=_jacobian(charge, list(inputs.values())),
        dF_dtheta=_jacobian(charge, theta), dh_dH=_jacobian([spec.fire], h), dh_dtheta=_jacobian([spec.fire], theta),
        dR_dH=_jacobian(reset, h), dR_ds=dR_ds, dR_dtheta=_jacobian(reset, theta), psi=psi, dspike_dalpha=dalpha,
        all_params=tuple(spec.params) + (ALPHA,),
    )
    return jac
