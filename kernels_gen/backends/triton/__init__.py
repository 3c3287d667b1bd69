"""The Triton backend: one fused forward and one backward kernel per neuron, the time loop in registers.

Runs CUDA tensors with compiled Triton, and CPU tensors through the Triton interpreter
(``TRITON_INTERPRET=1`` set before triton is imported).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ...errors import BackendError
from ...plan import SPIKE, KernelPlan
from ..base import (Backend, PlanNames, TangentNames, environment, header_context, plan_meta, print_program,
                    render_template)
from .printer import TritonPrinter


def interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def block_size(n: int, device: torch.device) -> int:
    """Few large programs under the interpreter (Python cost per program); 512 lanes on a GPU."""
    limit = 65536 if device.type == "cpu" else 512
    return min(limit, max(16, 1 << (max(n, 1) - 1).bit_length()))


def kernel_context(plan: KernelPlan, key: str, label: str) -> dict:
    """Every name and statement ``kernels.py.j2`` declares, as plain strings and lists."""
    printer = TritonPrinter(plan.compute_dtype)
    compute = f"tl.{plan.compute_dtype}"
    n = PlanNames(plan)
    role = PlanNames.role
    ptr = lambda name: f"ptr_{name}"  # noqa: E731 - the pointer argument of a plan name
    loaded = lambda name, offset: f"{name} = tl.load({ptr(name)} + {offset}, mask=mask, other=0.0).to({compute})"  # noqa: E731
    param_loads = [f"{p} = tl.load({ptr(p)} + offs, mask=mask, other=1.0).to({compute})" if pp.vector
                   else f"{p} = tl.load({ptr(p)}).to({compute})" for p, pp in zip(n.params, plan.params)]
    init = role("init", n.prev)
    out = role("out", n.prev)
    save = role("save", n.saved)
    prev_init = [init[n.prev.index(v)] for v in n.prev_states]
    prev_saved = role("prev", n.saved)
    gout, ginit = role("gout", n.grad_new), role("ginit", n.grad_new)
    acc = role("acc", n.grad_params)
    return dict(
        **header_context(label=label, key=key, fingerprint=plan.fingerprint(), backend="triton",
                         meta=plan_meta(plan)),
        compute=compute,
        fwd_args=n.prev + n.inputs + n.params, fwd_body=print_program(plan.forward, printer),
        fwd_returns=[SPIKE] + n.new + n.saved,
        fwd_kernel_args=[ptr(x) for x in n.inputs] + [ptr(i) for i in init] + [ptr(p) for p in n.params]
        + ["ptr_spike"] + [ptr(o) for o in out] + [ptr(s) for s in save],
        param_loads=param_loads,
        init_loads=[f"{v} = tl.load({ptr(i)} + offs, mask=mask, other=0.0).to({compute})" for v, i in zip(n.prev, init)],
        input_loads=[loaded(x, "idx") for x in n.inputs],
        save_stores=[f"tl.store({ptr(s)} + idx, {h}, mask=mask)" for h, s in zip(n.saved, save)],
        state_updates=[(v, new, f"tl.store({ptr(o)} + idx, {v}, mask=mask)") for v, new, o in zip(n.prev, n.new, out)],
        final_stores=[f"tl.store({ptr(o)} + offs, {v}, mask=mask)" for v, o in zip(n.prev, out)],
        needs_prev=plan.needs_prev, prev_args=n.saved + n.params, prev_body=print_program(plan.recompute_prev, printer),
        prev_returns=n.prev_states, prev_call_args=prev_saved + n.params,
        bwd_args=n.saved + n.prev_states + n.needed_inputs + n.params + ["gspike"] + n.grad_new,
        bwd_body=print_program(plan.backward, printer), bwd_returns=n.grad_prev + n.grad_inputs + n.grad_params,
        bwd_kernel_args=["ptr_gspike"] + [ptr(g) for g in gout] + [ptr(s) for s in save]
        + [ptr(x) for x in n.needed_inputs] + [ptr(i) for i in prev_init] + [ptr(p) for p in n.params]
        + [ptr(g) for g in n.grad_inputs] + [ptr(g) for g in ginit] + [ptr(a) for a in acc],
        prev_init_loads=[f"{i} = tl.load({ptr(i)} + offs, mask=mask, other=0.0).to({compute})" for i in prev_init],
        grad_init_loads=[(g, f"{g} = tl.load({ptr(go)} + offs, mask=mask, other=0.0).to({compute})")
                         for g, go in zip(n.grad_new, gout)],
        acc_inits=[f"{a} = zero" for a in acc],
        grad_seq_adds=[f"{g} += tl.load({ptr(go)} + idx, mask=mask, other=0.0).to({compute})"
                       for g, go in zip(n.grad_new, gout)],
        saved_loads=[f"{h} = tl.load({ptr(s)} + idx, mask=mask, other=0.0).to({compute})"
                     for h, s in zip(n.saved, save)],
        prev_saved_loads=[f"{p} = tl.load({ptr(s)} + idx - back, mask=mask, other=0.0).to({compute})"
                          for p, s in zip(prev_saved, save)],
        needed_loads=[loaded(x, "idx") for x in n.needed_inputs],
        prev_selects=[f"{v} = tl.where(has_prev, {v}, {i})" for v, i in zip(n.prev_states, prev_init)],
        # bf16 input gradients are rounded to nearest even, as torch's .to() does (a plain store of a float32
        # value into a bf16 pointer truncates in the interpreter); fp16 stores round to nearest even everywhere
        grad_input_stores=[(f"tl.store({ptr(g)} + idx, _nd.round_bf16({g} + zero), mask=mask)",
                            f"tl.store({ptr(g)} + idx, {g} + zero, mask=mask)") for g in n.grad_inputs],
        acc_updates=[f"{a} += {g}" for a, g in zip(acc, n.grad_params)],
        grad_carries=[f"{g_new} = {g_prev} + zero" for g_new, g_prev in zip(n.grad_new, n.grad_prev)],
        shift_saved=[f"{h} = {p}" for h, p in zip(n.saved, prev_saved)],
        grad_init_stores=[f"tl.store({ptr(gi)} + offs, {g}, mask=mask)" for g, gi in zip(n.grad_new, ginit)],
        acc_stores=[f"tl.store({ptr(a)} + offs, {a}, mask=mask)" for a in acc],
    )


def tangent_context(plan: KernelPlan, key: str, label: str) -> dict:
    """The names ``tangent.py.j2`` declares: forward and tangent step, values and tangents carried in registers."""
    compute = f"tl.{plan.compute_dtype}"
    n, tan, role = PlanNames(plan), TangentNames(plan), PlanNames.role
    ptr = lambda name: f"ptr_{name}"  # noqa: E731
    init, out, tout = role("init", n.prev), role("out", n.prev), role("tout", n.prev)
    load = lambda name, offset: f"{name} = tl.load({ptr(name)} + {offset}, mask=mask, other=0.0).to({compute})"  # noqa: E731
    return dict(
        **header_context(label=label, key=key, fingerprint=plan.fingerprint(), backend="triton",
                         meta=plan_meta(plan)),
        compute=compute,
        param_loads=[f"{p} = tl.load({ptr(p)} + offs, mask=mask, other=1.0).to({compute})" if pp.vector
                     else f"{p} = tl.load({ptr(p)}).to({compute})" for p, pp in zip(n.params, plan.params)],
        init_loads=[f"{v} = tl.load({ptr(i)} + offs, mask=mask, other=0.0).to({compute})" for v, i in zip(n.prev, init)],
        input_loads=[load(x, "idx") for x in n.inputs],
        state_updates=[(v, new, f"tl.store({ptr(o)} + idx, {v}, mask=mask)") for v, new, o in zip(n.prev, n.new, out)],
        final_stores=[f"tl.store({ptr(o)} + offs, {v}, mask=mask)" for v, o in zip(n.prev, out)],
        tan_args=tan.args, tan_body=print_program(plan.tangent, TritonPrinter(plan.compute_dtype)),
        tan_returns=tan.returns,
        tan_kernel_args=[ptr(x) for x in n.inputs] + [ptr(i) for i in init] + [ptr(p) for p in n.params]
        + [ptr(x) for x in tan.inputs] + [ptr(v) for v in tan.prev] + [ptr(p) for p in tan.params]
        + ["spike_ptr", "tspike_ptr"] + [ptr(o) for o in out] + [ptr(o) for o in tout],
        tparam_loads=[load(t, "offs") if pp.vector else f"{t} = tl.load({ptr(t)}).to({compute})"
                      for t, pp in zip(tan.params, plan.grad_params)],
        tinit_loads=[load(v, "offs") for v in tan.prev],
        tinput_loads=[load(x, "idx") for x in tan.inputs],
        tstate_updates=[(v, new, f"tl.store({ptr(o)} + idx, {v}, mask=mask)")
                        for v, new, o in zip(tan.prev, tan.new, tout)],
        tfinal_stores=[f"tl.store({ptr(o)} + offs, {v}, mask=mask)" for v, o in zip(tan.prev, tout)],
    )


def scan_context(k: int, key: str) -> dict:
    """The names ``scan.py.j2`` declares: loads, steps and stores of the chunked scan unrolled for k×k matrices."""
    idx = [(i, j) for i in range(k) for j in range(k)]
    rng = range(k)
    one = lambda i, j: 1.0 if i == j else 0.0  # noqa: E731 - identity entries (masked A loads leave a step as is)
    m_load = lambda i, j, e: f"m{i}{j} = tl.load(a_ptr + a_off + {e}, mask=a_mask, other={one(i, j)})"  # noqa: E731
    product = lambda x, y, out: [f"o{i}{j} = " + " + ".join(f"{x}{i}{m} * {y}{m}{j}" for m in rng)  # noqa: E731
                                 for i, j in idx] + [f"{out}{i}{j} = o{i}{j}" for i, j in idx]
    matvec = lambda mat, rhs: [f"n{i} = " + " + ".join(f"{mat}{i}{j} * s{j}" for j in rng) + f" + {rhs}{i}"  # noqa: E731
                               for i in rng] + [f"s{i} = n{i}" for i in rng]
    return dict(
        **header_context(label=f"scan{k}", key=key, fingerprint=key, backend="triton-scan", meta={"k": k}),
        k=k,
        zero_states=[f"s{i} = zero" for i in rng],
        identity=[f"p{i}{j} = zero + {one(i, j)}" for i, j in idx],
        m_loads=[m_load(i, j, i * k + j) for i, j in idx],
        m_loads_t=[m_load(i, j, j * k + i) for i, j in idx],
        rhs_loads=[f"r{i} = tl.load(b_ptr + row * {k} + {i}, mask=live, other=0.0)" for i in rng],
        state_step=matvec("m", "r"),
        prod_step=product("m", "p", "p"),
        summary_stores=[f"tl.store(pb_ptr + cell * {k} + {i}, s{i}, mask=mask)" for i in rng] + [
            "if not A_CONST:"] + [f"    tl.store(pa_ptr + cell * {k * k} + {i * k + j}, p{i}{j}, mask=mask)"
                                  for i, j in idx],
        init_loads=[f"s{i} = tl.load(init_ptr + offs * {k} + {i}, mask=mask, other=0.0)" for i in rng],
        start_stores=[f"tl.store(start_ptr + cell * {k} + {i}, s{i}, mask=mask)" for i in rng],
        q_from_m=[f"q{i}{j} = m{i}{j}" for i, j in idx],
        squaring=product("q", "q", "q"),
        q_loads=[f"q{i}{j} = tl.load(pa_ptr + cell * {k * k} + {i * k + j}, mask=mask, other=0.0)" for i, j in idx],
        e_loads=[f"r{i} = tl.load(pb_ptr + cell * {k} + {i}, mask=mask, other=0.0)" for i in rng],
        carry_step=matvec("q", "r"),
        start_loads=[f"s{i} = tl.load(start_ptr + cell * {k} + {i}, mask=mask, other=0.0)" for i in rng],
        out_stores=[f"tl.store(out_ptr + row * {k} + {i}, s{i}, mask=live)" for i in rng],
        v0_loads=[f"w0_{j} = tl.load(v0_ptr + offs * {k} + {j}, mask=mask, other=0.0)" for j in rng],
        prev_loads=[f"w{j} = tl.where(t > 0, tl.load(v_ptr + (row - N) * {k} + {j}, mask=has_prev, other=0.0), w0_{j})"
                    for j in rng],
        grad_a_stores=[f"tl.store(ga_ptr + row * {k * k} + {i * k + j}, s{i} * w{j}, mask=live)" for i, j in idx],
        grad_a_zero=[f"g{i}{j} = zero" for i, j in idx],
        grad_a_adds=[f"g{i}{j} += tl.where(live, s{i} * w{j}, 0.0)" for i, j in idx],
        grad_a_part_stores=[f"tl.store(ga_ptr + cell * {k * k} + {i * k + j}, g{i}{j}, mask=mask)" for i, j in idx],
    )


def render_scan(k: int, key: str) -> str:
    """The chunked Triton scan kernels (summary, carry, replay) for ``k`` coupled states."""
    return render_template(environment(str(Path(__file__).parent)), "scan.py.j2", scan_context(k, key))


class TritonBackend(Backend):
    """Compiled Triton on CUDA; the interpreter on CPU tensors (tests, machines without a GPU)."""

    name = "triton"
    folder = Path(__file__).parent
    native_float_io = True
    fresh_outputs = True

    def unavailable(self, device: torch.device) -> BackendError | None:
        if device.type == "cpu" and not interpreter_enabled():
            return BackendError("ND302", "backend='triton' on CPU tensors needs the Triton interpreter: set "
                                         "TRITON_INTERPRET=1 before triton is imported, or use backend='torch'")
        if device.type not in ("cpu", "cuda"):
            return BackendError("ND303", f"backend='triton' does not run on device '{device.type}'")
        try:
            import triton  # noqa: F401
        except ImportError:  # pragma: no cover - triton is a dependency
            return BackendError("ND301", "backend='triton' needs the triton package: pip install triton")
        return None

    def auto_priority(self, device: torch.device) -> int | None:
        return 10 if device.type == "cuda" else None

    def printer(self, compute_dtype: str = "float32"):
        return TritonPrinter(compute_dtype)

    def context(self, plan: KernelPlan, key: str, label: str) -> dict:
        return kernel_context(plan, key, label)

    def tangent_context(self, plan: KernelPlan, key: str, label: str) -> dict:
        return tangent_context(plan, key, label)

    def forward(self, module, inputs, init_states, params, store_seqs, io_dtype, save):
        meta = module.META
        T, n = inputs[0].shape
        cdt, device = init_states[0].dtype, inputs[0].device
        spikes = torch.empty((T, n), dtype=io_dtype, device=device)
        state_shape = (T, n) if store_seqs else (n,)
        states = [torch.empty(state_shape, dtype=cdt, device=device) for _ in meta["states"]]
        # charged values are saved in the compute dtype: saving fp16 ones measured 20x the documented fp16
        # gradient tolerance (docs/compile.md, "Saved-state precision")
        saved = [torch.empty((T, n), dtype=cdt, device=device) if save else torch.zeros(1, dtype=cdt, device=device)
                 for _ in meta["saved_states"]]  # without ``save`` one defined placeholder element each
        args = [*inputs, *init_states, *params, spikes, *states, *saved]
        launch(module.forward_kernel, n, device, args, T, STORE_SEQS=store_seqs, SAVE=save)
        return spikes, tuple(states), tuple(saved)

    def backward(self, module, grad_spikes, grad_states, saved, inputs, init_states, params, store_seqs):
        meta = module.META
        T, n = grad_spikes.shape
        cdt, device = init_states[0].dtype, grad_spikes.device
        needed = [inputs[meta["inputs"].index(i)] for i in meta["needed_inputs"]]
        prev_init = [init_states[meta["states"].index(s)] for s in meta["prev_states"]]
        grad_inputs = [torch.empty((T, n), dtype=grad_spikes.dtype, device=device) for _ in meta["inputs"]]
        grad_init = [torch.empty((n,), dtype=cdt, device=device) for _ in meta["states"]]
        grad_params = [torch.empty((n,), dtype=cdt, device=device) for p in meta["params"] if p[2]]
        args = [grad_spikes, *grad_states, *saved, *needed, *prev_init, *params, *grad_inputs, *grad_init,
                *grad_params]
        launch(module.backward_kernel, n, device, args, T, STORE_SEQS=store_seqs,
               BF16_IO=grad_spikes.dtype == torch.bfloat16)
        return tuple(grad_inputs), tuple(grad_init), tuple(grad_params)

    def tangent(self, module, inputs, init_states, params, tangent_inputs, tangent_init, tangent_params, store_seqs,
                io_dtype):
        meta = module.META
        T, n = inputs[0].shape
        cdt, device = init_states[0].dtype, inputs[0].device
        spikes, tspikes = (torch.empty((T, n), dtype=io_dtype, device=device) for _ in range(2))
        shape = (T, n) if store_seqs else (n,)
        states = [torch.empty(shape, dtype=cdt, device=device) for _ in meta["states"]]
        tstates = [torch.empty(shape, dtype=cdt, device=device) for _ in meta["states"]]
        args = [*inputs, *init_states, *params, *tangent_inputs, *tangent_init, *tangent_params, spikes, tspikes,
                *states, *tstates]
        launch(module.tangent_kernel, n, device, args, T, STORE_SEQS=store_seqs)
        return spikes, tuple(states), tspikes, tuple(tstates)


def launch(kernel, n, device, args, T, **flags):
    block = block_size(n, device)
    kernel[(-(-n // block),)](*args, T, n, BLOCK=block, **flags)

