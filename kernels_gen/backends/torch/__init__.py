"""The torch backend: the step programs printed as eager torch code, the time loop in Python (any device)."""
from __future__ import annotations

from pathlib import Path

import sympy as sp
import torch

from ...names import charged_name, input_name, param_name
from ...plan import SPIKE, TSPIKE, KernelPlan, ParallelPlan
from ..base import (Backend, PlanNames, TangentNames, environment, header_context, plan_meta, print_program,
                    render_template)
from .printer import TorchPrinter


def kernel_context(plan: KernelPlan, key: str, label: str) -> dict:
    """Every name and printed program ``kernels.py.j2`` declares, as plain strings and lists."""
    printer = TorchPrinter()
    n = PlanNames(plan)
    role = PlanNames.role
    seq_inputs, seq_states, save = role("seq", n.inputs), role("seq", n.prev), role("save", n.saved)
    seq_of_input = dict(zip(n.inputs, seq_inputs))
    save_of = dict(zip(n.saved, save))
    init_prev = role("init", n.prev)
    return dict(
        **header_context(label=label, key=key, fingerprint=plan.fingerprint(), backend="torch", meta=plan_meta(plan)),
        fwd_args=n.prev + n.inputs + n.params, fwd_body=print_program(plan.forward, printer),
        fwd_returns=[SPIKE] + n.new + n.saved,
        seq_inputs=seq_inputs, prev=n.prev, params=n.params, save_pairs=list(zip(n.saved, save)),
        seq_states=seq_states, step_inputs=list(zip(n.inputs, seq_inputs)),
        state_updates=list(zip(n.prev, n.new, seq_states)),
        needs_prev=plan.needs_prev, prev_args=n.saved + n.params, prev_body=print_program(plan.recompute_prev, printer),
        prev_returns=n.prev_states, prev_call_args=[f"{save_of[h]}[t - 1]" for h in n.saved] + n.params,
        prev_init=[init_prev[n.prev.index(v)] for v in n.prev_states],
        bwd_args=n.saved + n.prev_states + n.needed_inputs + n.params + ["gspike"] + n.grad_new,
        bwd_body=print_program(plan.backward, printer), bwd_returns=n.grad_prev + n.grad_inputs + n.grad_params,
        init_prev=init_prev, gout_states=role("gout", n.grad_new), grad_new=n.grad_new,
        grad_seq_pairs=list(zip(n.grad_new, role("gout", n.grad_new))), saved_loads=list(zip(n.saved, save)),
        needed_loads=[(x, seq_of_input[x]) for x in n.needed_inputs],
        seq_grad_inputs=role("seq", n.grad_inputs), grad_input_stores=list(zip(role("seq", n.grad_inputs),
                                                                               n.grad_inputs)),
        acc_grad_params=role("acc", n.grad_params), acc_updates=list(zip(role("acc", n.grad_params), n.grad_params)),
        grad_carries=list(zip(n.grad_new, n.grad_prev)),
    )


def tangent_body(plan: KernelPlan, tan: TangentNames) -> list[str]:
    """The tangent program, each tangent output (a sum of coefficient × tangent) as one product and in-place
    ``addcmul_`` / ``add_`` (a pass less per term than ``a*b + c*d``: these run on [*S, D] tangents)."""
    printer = TorchPrinter()
    tangents = {*tan.prev, *tan.inputs, *tan.params}
    outputs = {*tan.returns[tan.returns.index(TSPIKE):]}
    lines = []
    for a in plan.tangent:
        terms = _linear_terms(a.expr, tangents) if a.target.name in outputs else None
        if not terms:
            lines.append(f"{a.target.name} = {printer.doprint(a.expr)}")
            continue
        terms.sort(key=lambda ct: ct[1] in tan.params)          # parameter tangents last: they may be scalars
        (coeff, first), rest = terms[0], terms[1:]
        text = f"{first}.clone()" if coeff is None else f"torch.mul({first}, {printer.doprint(coeff)})"
        for coeff, tangent in rest:
            text += (f".add_({tangent})" if coeff is None else
                     f".add_({tangent}, alpha={printer.doprint(coeff)})" if coeff.is_Number else
                     f".addcmul_({tangent}, {printer.doprint(coeff)})")
        lines.append(f"{a.target.name} = {text}")
    return lines


def _linear_terms(expr, tangents: set[str]):
    """``[(coefficient or None, tangent name)]`` of a sum of coefficient × tangent, else None."""
    terms = []
    for term in sp.Add.make_args(expr):
        factors = sp.Mul.make_args(term)
        found = [f for f in factors if isinstance(f, sp.Symbol) and f.name in tangents]
        if len(found) != 1:
            return None
        rest = sp.Mul(*(f for f in factors if f is not found[0]))
        terms.append((None if rest == 1 else rest, found[0].name))
    return terms


def tangent_context(plan: KernelPlan, key: str, label: str) -> dict:
    """The names ``tangent.py.j2`` declares: the step program and the time loop over values and tangents."""
    n, tan, role = PlanNames(plan), TangentNames(plan), PlanNames.role
    seq_inputs, seq_states = role("seq", n.inputs), role("seq", n.prev)
    tseq_inputs, tseq_states = role("tseq", n.inputs), role("tseq", n.prev)
    return dict(
        **header_context(label=label, key=key, fingerprint=plan.fingerprint(), backend="torch", meta=plan_meta(plan)),
        seq_inputs=seq_inputs, prev=n.prev, params=n.params, step_inputs=list(zip(n.inputs, seq_inputs)),
        state_updates=list(zip(n.prev, n.new, seq_states)), seq_states=seq_states,
        tan_args=tan.args, tan_body=tangent_body(plan, tan), tan_returns=tan.returns,
        tseq_inputs=tseq_inputs, tprev=tan.prev, tparams=tan.params, tseq_states=tseq_states,
        tstep_inputs=list(zip(tan.inputs, tseq_inputs)), tstate_updates=list(zip(tan.prev, tan.new, tseq_states)),
    )


def parallel_context(plan: ParallelPlan, key: str, label: str) -> dict:
    """The names ``parallel.py.j2`` declares: coefficient, reset, fire and spike programs over [T, N]."""
    printer = TorchPrinter()
    k = len(plan.states)
    params = [param_name(p.name) for p in plan.params]
    pairs = [(i, j) for i in range(k) for j in range(k)]
    meta = dict(states=plan.states, inputs=plan.inputs, params=tuple((p.name, p.vector, p.needs_grad)
                                                                    for p in plan.params))
    return dict(
        **header_context(label=label, key=key, fingerprint=plan.fingerprint(), backend="parallel-torch", meta=meta),
        k=k, time_invariant=plan.time_invariant, a_params=repr(plan.a_params),
        coeff_args=[input_name(i) for i in plan.inputs] + params, coeff_body=print_program(plan.coefficients, printer),
        a_names=[f"a_{i}_{j}" for i, j in pairs], b_names=[f"b_{i}" for i in range(k)],
        reset_args=[SPIKE] + params, reset_body=print_program(plan.reset, printer),
        g_names=[f"g_{i}_{j}" for i, j in pairs] if plan.reset else ["None"],
        c_names=[f"c_{i}" for i in range(k)] if plan.reset else ["None"],
        fire_args=[charged_name(s) for s in plan.states] + params, fire_body=print_program(plan.fire, printer),
        spike_args=["fire"] + params, spike_body=print_program(plan.spike, printer),
    )


def render_parallel(plan: ParallelPlan, key: str, label: str) -> str:
    """The torch module of a :class:`~kernels_gen.plan.ParallelPlan` (coefficients, reset, fire, spike)."""
    return render_template(environment(str(Path(__file__).parent)), "parallel.py.j2",
                           parallel_context(plan, key, label))


class TorchBackend(Backend):
    """Runs anywhere torch runs; the reference point of every other backend."""

    name = "torch"
    folder = Path(__file__).parent

    def unavailable(self, device: torch.device):
        return None

    def auto_priority(self, device: torch.device) -> int | None:
        return 0

    def printer(self, compute_dtype: str = "float32"):
        return TorchPrinter()

    def context(self, plan: KernelPlan, key: str, label: str) -> dict:
        return kernel_context(plan, key, label)

    def tangent_context(self, plan: KernelPlan, key: str, label: str) -> dict:
        return tangent_context(plan, key, label)

    def forward(self, module, inputs, init_states, params, store_seqs, io_dtype, save):
        spikes, states, saved = module.forward(inputs, init_states, params, store_seqs, save)
        if not save:  # the launchers' common layout: one placeholder element per saved state
            saved = tuple(inputs[0].new_zeros((1,)) for _ in saved)
        return spikes.to(io_dtype), states, saved

    def backward(self, module, grad_spikes, grad_states, saved, inputs, init_states, params, store_seqs):
        return module.backward(grad_spikes, grad_states, saved, inputs, init_states, params, store_seqs)

    def tangent(self, module, inputs, init_states, params, tangent_inputs, tangent_init, tangent_params, store_seqs,
                io_dtype):
        spikes, states, tspikes, tstates = module.tangent(inputs, init_states, params, tangent_inputs, tangent_init,
                                                          tangent_params, store_seqs)
        return spikes.to(io_dtype), states, tspikes.to(io_dtype), tstates

    def tangent_step(self, module, prev, inputs, params, tangent_prev, tangent_inputs, tangent_params):
        """The generated step runs on the broadcast shapes directly: the values once per neuron, tangents as
        views expanded to the full shape (the tangent outputs are accumulated in place into their first term)."""
        k = len(prev)
        values = (*prev, *inputs, *params)
        shape = broadcast_shape(values)
        full = broadcast_shape((*values, *tangent_prev, *tangent_inputs, *tangent_params))
        tangents = [t if t.shape == full else t.expand(full) for t in (*tangent_prev, *tangent_inputs, *tangent_params)]
        out = module.tangent_step(*prev, *inputs, *params, *tangents)
        like = prev[0]
        dense = lambda v, s: v if isinstance(v, torch.Tensor) and v.shape == s else torch.zeros(  # noqa: E731
            s, dtype=like.dtype, device=like.device) + v
        return (dense(out[0], shape), [dense(v, shape) for v in out[1:1 + k]], dense(out[1 + k], full),
                [dense(t, full) for t in out[2 + k:]])


def broadcast_shape(tensors) -> torch.Size:
    """The shape ``tensors`` broadcast to (assumed compatible; cheaper than torch.broadcast_shapes per step)."""
    rank = max(t.dim() for t in tensors)
    out = [1] * rank
    for t in tensors:
        for i, d in enumerate(reversed(t.shape)):
            if d != 1:
                out[rank - 1 - i] = d
    return torch.Size(out)
