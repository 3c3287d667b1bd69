"""Render a :class:`~kernels_gen.plan.KernelPlan` into Python source for one backend.

All decisions live here; the Jinja2 templates only place already-printed strings.

>>> from kernels_gen.render import indent_block
>>> print(indent_block(["a = 1", "b = a"], 4))
    a = 1
    b = a
"""
from __future__ import annotations

import functools
from pathlib import Path

import jinja2

from .plan import (CODEGEN_VERSION, KernelPlan, ParallelPlan, SPIKE, charged_name, grad_name, input_name, new_name,
                   param_name, prev_name)
from .printers import TorchPrinter, TritonPrinter

BACKENDS = ("torch", "triton")
_PRINTERS = {"torch": TorchPrinter, "triton": TritonPrinter}
_TEMPLATES = {"torch": "torch_kernels.py.j2", "triton": "triton_kernels.py.j2"}


def indent_block(lines: list[str], spaces: int) -> str:
    """Indent each line of a straight-line program; an empty program becomes ``pass``."""
    pad = " " * spaces
    return "\n".join(pad + line for line in (lines or ["pass"]))


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).with_name("templates"))),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    env.filters["block"] = indent_block
    return env


def print_program(program, printer) -> list[str]:
    """``target = expr`` lines for a tuple of :class:`~kernels_gen.plan.Assign`."""
    return [f"{a.target.name} = {printer.doprint(a.expr)}" for a in program]


def _versions() -> dict[str, str]:
    import torch
    try:
        import importlib.metadata as md
        triton_version = md.version("triton")
    except Exception:  # triton not installed: the torch backend still works
        triton_version = "none"
    return {"torch_version": torch.__version__, "triton_version": triton_version}


def render_context(plan: KernelPlan, backend: str, key: str) -> dict:
    """Every name and printed program a template needs, as plain strings and lists."""
    printer = _PRINTERS[backend]()
    states, params = plan.states, [param_name(p.name) for p in plan.params]
    prev = [prev_name(s) for s in states]
    saved = [charged_name(s) for s in plan.saved_states]
    inputs = [input_name(i) for i in plan.inputs]
    needed_inputs = [input_name(i) for i in plan.needed_inputs]
    grad_new = [grad_name(new_name(s)) for s in states]
    grad_inputs = [grad_name(x) for x in inputs]
    grad_params = [grad_name(param_name(p.name)) for p in plan.grad_params]
    grad_param_acc = [f"acc_{g}" for g in grad_params]
    prev_init = [f"init_{prev_name(s)}" for s in plan.prev_states]
    compute = f"tl.{plan.compute_dtype}"
    prev_source = (lambda h: f"save_{h}[t - 1]") if backend == "torch" else (lambda h: f"prev_{h}")
    param_loads = [
        f"{p} = tl.load({p}_ptr + offs, mask=mask, other=1.0).to({compute})" if pp.vector
        else f"{p} = tl.load({p}_ptr).to({compute})"
        for p, pp in zip(params, plan.params)
    ]
    meta = dict(states=plan.states, inputs=plan.inputs, saved_states=plan.saved_states,
                prev_states=plan.prev_states, needed_inputs=plan.needed_inputs,
                params=tuple((p.name, p.vector, p.needs_grad) for p in plan.params), compute_dtype=plan.compute_dtype)
    return dict(
        meta=repr(meta), name=plan.name, key=key, fingerprint=plan.fingerprint(), codegen_version=CODEGEN_VERSION,
        backend=backend, compute=compute, fp64=plan.compute_dtype == "float64", **_versions(),
        fwd_args=prev + inputs + params, fwd_body=print_program(plan.forward, printer),
        fwd_returns=[SPIKE] + [new_name(s) for s in states] + saved,
        needs_prev=plan.needs_prev,
        prev_args=saved + params, prev_body=print_program(plan.recompute_prev, printer),
        prev_returns=[prev_name(s) for s in plan.prev_states],
        prev_arg_sources=[prev_source(h) for h in saved] + params,
        prev_init=prev_init, all_init=[f"init_{v}" for v in prev],
        prev_init_pairs=list(zip([prev_name(s) for s in plan.prev_states], prev_init)),
        bwd_args=saved + [prev_name(s) for s in plan.prev_states] + needed_inputs + params + ["gspike"] + grad_new,
        bwd_body=print_program(plan.backward, printer),
        bwd_returns=[grad_name(v) for v in prev] + grad_inputs + grad_params,
        inputs=inputs, needed_inputs=needed_inputs,
        inputs_seq=[f"{x}_seq" for x in inputs], input_pairs=[(x, f"{x}_seq") for x in inputs],
        needed_input_pairs=[(x, f"{x}_seq") for x in needed_inputs],
        state_prev=prev, state_seq=[f"seq_{s}" for s in states],
        state_pairs=list(zip(prev, [new_name(s) for s in states])),
        state_triples=list(zip(prev, [new_name(s) for s in states], [f"seq_{s}" for s in states])),
        saved=saved, param_names=params, param_loads=param_loads,
        grad_new=grad_new, grad_state_in=[f"gout_{s}" for s in states],
        grad_seq_pairs=list(zip(grad_new, [f"gout_{s}" for s in states])),
        grad_input_seq=[f"{g}_seq" for g in grad_inputs],
        grad_input_pairs=(list(zip([f"{g}_seq" for g in grad_inputs], grad_inputs)) if backend == "torch"
                          else list(zip(grad_inputs, grad_inputs))),
        grad_param_acc=grad_param_acc, grad_param_pairs=list(zip(grad_param_acc, grad_params)),
        grad_carry_pairs=list(zip(grad_new, [grad_name(v) for v in prev])),
        fwd_kernel_args=[f"{x}_ptr" for x in inputs] + [f"init_{v}_ptr" for v in prev] + [f"{p}_ptr" for p in params]
        + ["spike_ptr"] + [f"out_{v}_ptr" for v in prev] + [f"save_{h}_ptr" for h in saved],
        bwd_kernel_args=["gspike_ptr"] + [f"gout_{g}_ptr" for g in grad_new] + [f"save_{h}_ptr" for h in saved]
        + [f"{x}_ptr" for x in needed_inputs] + [f"{i}_ptr" for i in prev_init] + [f"{p}_ptr" for p in params]
        + [f"{g}_ptr" for g in grad_inputs] + [f"ginit_{g}_ptr" for g in grad_new]
        + [f"{a}_ptr" for a in grad_param_acc],
    )


def render(plan: KernelPlan, backend: str, key: str) -> str:
    """The full source of ``backend``'s kernel module for ``plan``."""
    return _environment().get_template(_TEMPLATES[backend]).render(**render_context(plan, backend, key))


def render_parallel(plan: ParallelPlan, key: str) -> str:
    """The torch module of a :class:`~kernels_gen.plan.ParallelPlan` (coefficients, reset, fire, spike)."""
    printer = TorchPrinter()
    k = len(plan.states)
    params = [param_name(p.name) for p in plan.params]
    pairs = [(i, j) for i in range(k) for j in range(k)]
    meta = dict(states=plan.states, inputs=plan.inputs, params=tuple((p.name, p.vector, p.needs_grad)
                                                                    for p in plan.params))
    context = dict(
        meta=repr(meta), name=plan.name, key=key, fingerprint=plan.fingerprint(), codegen_version=CODEGEN_VERSION,
        backend="parallel-torch", **_versions(), k=k, time_invariant=plan.time_invariant, a_params=repr(plan.a_params),
        has_reset=bool(plan.reset),
        coeff_args=[input_name(i) for i in plan.inputs] + params, coeff_body=print_program(plan.coefficients, printer),
        a_names=[f"a_{i}_{j}" for i, j in pairs], b_names=[f"b_{i}" for i in range(k)],
        reset_args=[SPIKE] + params, reset_body=print_program(plan.reset, printer),
        g_names=[f"g_{i}_{j}" for i, j in pairs] if plan.reset else ["None"],
        c_names=[f"c_{i}" for i in range(k)] if plan.reset else ["None"],
        fire_args=[charged_name(s) for s in plan.states] + params, fire_body=print_program(plan.fire, printer),
        spike_args=["fire"] + params, spike_body=print_program(plan.spike, printer),
    )
    return _environment().get_template("parallel_torch.py.j2").render(**context)


def render_scan(k: int, key: str) -> str:
    """The Triton scan kernel for ``k`` coupled states (combine function unrolled for k×k matrices)."""
    idx = [(i, j) for i in range(k) for j in range(k)]
    first = [f"a1_{i}{j}" for i, j in idx] + [f"b1_{i}" for i in range(k)]
    second = [f"a2_{i}{j}" for i, j in idx] + [f"b2_{i}" for i in range(k)]
    body = [f"a_{i}{j} = " + " + ".join(f"a2_{i}{m} * a1_{m}{j}" for m in range(k)) for i, j in idx]
    body += [f"b_{i} = " + " + ".join(f"a2_{i}{m} * b1_{m}" for m in range(k)) + f" + b2_{i}" for i in range(k)]
    returns = [f"a_{i}{j}" for i, j in idx] + [f"b_{i}" for i in range(k)]
    loads = [f"a_{i}{j} = tl.load(a_ptr + cell * {k * k} + {i * k + j}, mask=m, other={1.0 if i == j else 0.0})"
             for i, j in idx]
    loads += [f"b_{i} = tl.load(b_ptr + cell * {k} + {i}, mask=m, other=0.0)" for i in range(k)]
    scanned = [f"s{name}" for name in returns]
    outputs = []
    for i in range(k):
        terms = " + ".join(f"sa_{i}{j} * carry_{j}[None, :]" for j in range(k))
        outputs.append(f"v_{i} = {terms} + sb_{i}")
        outputs.append(f"tl.store(out_ptr + cell * {k} + {i}, v_{i}, mask=m)")
    context = dict(meta=repr({"k": k}), name=f"scan{k}", key=key, fingerprint=key, codegen_version=CODEGEN_VERSION,
                   backend="triton-scan", **_versions(), k=k, combine_args=first + second, combine_body=body,
                   combine_returns=returns, loads=loads, scanned=scanned, elements=returns, outputs=outputs)
    return _environment().get_template("scan_triton.py.j2").render(**context)
