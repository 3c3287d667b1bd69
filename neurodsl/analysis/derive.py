"""Derive one time step's forward and backward programs and what backward must save.

Per step (states V, charged H, inputs X, params P, spike s = Θ(u)):

    H = C(V[t-1], X, P);  u = F(H, P);  s = Θ(u);  V[t] = R(H, s, P)

Backward (g· are gradients of the loss; σ' is the surrogate derivative):

    gs = gS + Σ_i gV_i ∂R_i/∂s              (∂R/∂s := 0 with detach_reset)
    gu = gs σ'(u)
    gH_j = Σ_i gV_i ∂R_i/∂H_j + gu ∂F/∂H_j
    gV[t-1]_k = Σ_j gH_j ∂C_j/∂V_k;   gX_m = Σ_j gH_j ∂C_j/∂X_m
    gP += Σ_i gV_i ∂R_i/∂P + gu ∂F/∂P + Σ_j gH_j ∂C_j/∂P      (+ gs ∂g/∂alpha for a learnable alpha)

Backward recomputes u and s from the saved H, and V[t-1] from H[t-1] when it needs
it, so only the charged values it reads are saved.

The tangent (forward-mode) step is derived in :mod:`.tangent`.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import sympy as sp

from kernels_gen.versions import version_key
from kernels_gen.functions import fold_constants
from kernels_gen.plan import (FIRE, SPIKE, Assign, KernelPlan, ParamPlan, charged_name, grad_name, input_name,
                              new_name, param_name, prev_name, sym)

from ..spec import NeuronSpec

ALPHA = "_alpha"  # the surrogate's alpha, passed to kernels as one more scalar parameter


@dataclass(frozen=True)
class KernelOptions:
    """Everything besides the spec that shapes the generated code."""

    surrogate: object                       # a neurodsl Surrogate
    detach_reset: bool = False
    vector_params: tuple[bool, ...] = ()    # per spec param: one value per neuron (True) or a scalar
    learnable: tuple[str, ...] = ()         # params (and ALPHA) that receive gradients
    compute_dtype: str = "float32"
    smooth: bool = False                    # test mode: spike = surrogate primitive instead of Θ

    def __post_init__(self):  # computed once: the key is looked up on every layer call
        object.__setattr__(self, "_canonical", (
            f"{self.surrogate.canonical()}|detach={self.detach_reset}|vec={self.vector_params}|"
            f"learn={sorted(self.learnable)}|{self.compute_dtype}|smooth={self.smooth}"))
        object.__setattr__(self, "_hash", hash(self._canonical))

    def canonical(self) -> str:
        return self._canonical

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return isinstance(other, KernelOptions) and self.canonical() == other.canonical()


def plan_key(spec: NeuronSpec, options: KernelOptions) -> str:
    """Cache key: spec, kernel options and tool versions; computed without deriving anything."""
    text = "\n".join([version_key(), spec.canonical(), options.canonical()])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def real_diff(expr: sp.Expr, symbol: sp.Symbol) -> sp.Expr:
    """∂expr/∂symbol for real-valued equations: sympy writes d|f| for an f it cannot prove real (e.g.
    ``(1 + sigmoid(h))**1.5``) with ``re(f)`` and ``im(f)``, which no printer has; every value is real here."""
    d = sp.diff(expr, symbol)
    if d.has(sp.re, sp.im):
        d = d.replace(sp.re, lambda a: a).replace(sp.im, lambda a: sp.Integer(0))
    return d


def cse_program(targets: list[sp.Symbol], exprs: list[sp.Expr], prefix: str) -> list[Assign]:
    """Common-subexpression elimination; constants are folded first so no temporary is a bare number."""
    names = sp.numbered_symbols(prefix, real=True)
    temps, reduced = sp.cse([fold_constants(sp.sympify(e)) for e in exprs], symbols=names,
                            optimizations="basic", order="none")
    return [Assign(t, e) for t, e in temps] + [Assign(t, e) for t, e in zip(targets, reduced)]


def _spike_expr(spec_fire_sym: sp.Symbol, options: KernelOptions, alpha: sp.Symbol) -> sp.Expr:
    if options.smooth:
        return options.surrogate.primitive(spec_fire_sym, alpha)
    return sp.Piecewise((sp.Integer(1), spec_fire_sym >= 0), (sp.Integer(0), True))


def _fire_and_reset(spec: NeuronSpec, options: KernelOptions, alpha, prefix: str,
                    targets: list[sp.Symbol] | None = None, states: tuple[str, ...] | None = None) -> list[Assign]:
    """u = F(H); s = Θ(u); then the reset values of ``states`` assigned to ``targets``."""
    fire, spike = sym(FIRE), sym(SPIKE)
    program = [Assign(fire, spec.fire), Assign(spike, _spike_expr(fire, options, alpha))]
    states = spec.states if states is None else states
    reset = dict((t.name, e) for t, e in spec.reset)
    exprs = [reset[new_name(s)] for s in states]
    return program + cse_program(targets or [sym(new_name(s)) for s in states], exprs, prefix)


def forward_program(spec: NeuronSpec, options: KernelOptions) -> list[Assign]:
    alpha = sym(param_name(ALPHA))
    charge = cse_program([t for t, _ in spec.charge], [e for _, e in spec.charge], "c")
    outputs = {t for t, _ in spec.charge} | {sym(SPIKE)} | {sym(new_name(s)) for s in spec.states}
    return propagate_constants(charge + _fire_and_reset(spec, options, alpha, "r"), outputs)


def backward_program(spec: NeuronSpec, options: KernelOptions) -> list[Assign]:
    prev, charged, inputs, params = spec.symbols()
    alpha = sym(param_name(ALPHA))
    fire, spike = sym(FIRE), sym(SPIKE)
    reset = [e for _, e in spec.reset]
    charge = [e for _, e in spec.charge]
    g_new = [sym(grad_name(new_name(s))) for s in spec.states]
    g_spike, g_s, g_fire = sym("gspike"), sym("gspike_total"), sym("gfire")
    g_h = [sym(grad_name(charged_name(s))) for s in spec.states]

    program = [Assign(fire, spec.fire), Assign(spike, _spike_expr(fire, options, alpha))]
    ds = sp.Integer(0) if options.detach_reset else sum(g * real_diff(r, spike) for g, r in zip(g_new, reset))
    program.append(Assign(g_s, g_spike + ds))
    program.append(Assign(g_fire, g_s * options.surrogate.derivative(fire, alpha)))
    for s, gh in zip(spec.states, g_h):
        h = charged[s]
        expr = sum(g * real_diff(r, h) for g, r in zip(g_new, reset)) + g_fire * real_diff(spec.fire, h)
        program.append(Assign(gh, expr))

    targets, exprs = [], []
    for s in spec.states:
        targets.append(sym(grad_name(prev_name(s))))
        exprs.append(sum(gh * real_diff(c, prev[s]) for gh, c in zip(g_h, charge)))
    for i in spec.inputs:
        targets.append(sym(grad_name(input_name(i))))
        exprs.append(sum(gh * real_diff(c, inputs[i]) for gh, c in zip(g_h, charge)))
    for p in spec.params:
        if p in options.learnable:
            ps = params[p]
            targets.append(sym(grad_name(param_name(p))))
            exprs.append(sum(g * real_diff(r, ps) for g, r in zip(g_new, reset)) + g_fire * real_diff(spec.fire, ps)
                         + sum(gh * real_diff(c, ps) for gh, c in zip(g_h, charge)))
    if ALPHA in options.learnable:
        targets.append(sym(grad_name(param_name(ALPHA))))
        exprs.append(g_s * options.surrogate.alpha_derivative(fire, alpha))
    outputs = set(targets)
    program = program + cse_program(targets, [sp.sympify(e) for e in exprs], "b")
    return prune(propagate_constants(program, outputs), outputs)


def propagate_constants(program: list[Assign], outputs: set[sp.Symbol]) -> list[Assign]:
    """Substitute assignments whose value is a number into later ones (generated code then never holds
    a Python float where a tensor is expected); outputs keep their assignment."""
    known, out = {}, []
    for a in program:
        expr = fold_constants(a.expr.xreplace(known)) if known else fold_constants(a.expr)
        if expr.is_Number and a.target not in outputs:
            known[a.target] = expr
            continue
        out.append(Assign(a.target, expr))
    return out


def prune(program: list[Assign], outputs: set[sp.Symbol]) -> list[Assign]:
    """Drop assignments whose targets neither reach ``outputs`` nor later assignments."""
    live, kept = set(outputs), []
    for a in reversed(program):
        if a.target in live:
            kept.append(a)
            live |= a.expr.free_symbols
    return kept[::-1]


def _free(program: list[Assign]) -> set[sp.Symbol]:
    assigned, free = set(), set()
    for a in program:
        free |= a.expr.free_symbols - assigned
        assigned.add(a.target)
    return free


def plan_params(spec: NeuronSpec, options: KernelOptions) -> tuple[ParamPlan, ...]:
    vectors = options.vector_params or (False,) * len(spec.params)
    out = [ParamPlan(p, v, p in options.learnable) for p, v in zip(spec.params, vectors)]
    return tuple(out) + (ParamPlan(ALPHA, False, ALPHA in options.learnable),)


@functools.lru_cache(maxsize=512)
def derive_plan(spec: NeuronSpec, options: KernelOptions) -> KernelPlan:
    """The kernel plan for ``spec`` under ``options`` (memoised)."""
    prev, charged, inputs, _ = spec.symbols()
    forward = forward_program(spec, options)
    backward = backward_program(spec, options)
    used = _free(backward)
    prev_states = tuple(s for s in spec.states if prev[s] in used)
    targets = [prev[s] for s in prev_states]
    recompute = prune(propagate_constants(_fire_and_reset(spec, options, sym(param_name(ALPHA)), "q",
                                                          targets=targets, states=prev_states), set(targets)),
                      set(targets)) if prev_states else []
    used |= _free(recompute)
    saved = tuple(s for s in spec.states if charged[s] in used)
    needed_inputs = tuple(i for i in spec.inputs if inputs[i] in used)
    plan = KernelPlan(
        name=spec.name, states=spec.states, inputs=spec.inputs, params=plan_params(spec, options),
        forward=tuple(forward), recompute_prev=tuple(recompute), backward=tuple(backward),
        saved_states=saved, prev_states=prev_states, needed_inputs=needed_inputs,
        compute_dtype=options.compute_dtype,
    )
    return plan
