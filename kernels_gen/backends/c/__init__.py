"""The C backend: the kernel plan printed to C, built with the system compiler, called through ctypes (CPU).

Forward and backward kernels with the time loop inside, OpenMP over blocks of neurons and the step over a
block as one loop the compiler vectorises. The training forward saves nothing: the backward re-runs the
forward per block (the same inlined ``nd_step``, so bit-identical charged values) into a per-thread buffer,
in segments of :func:`segment_steps` steps, then sweeps it in reverse (``META``: no saved states, every input
re-read). The generated module (a verified cache entry like every backend's) holds ``META`` and
``C_SOURCE``; :mod:`.toolchain` builds that source into a library stored next to it in the cache.
fp16/bf16 inputs are converted by the ops (``native_float_io = False``), math is fp32 (fp64 for fp64).
Forward-mode AD runs the torch backend's tangent kernels.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

import torch

from ...errors import BackendError
from ...names import derived
from ...plan import SPIKE, Assign, KernelPlan
from ..base import Backend, PlanNames, header_context, plan_meta
from ..torch import TorchBackend
from . import toolchain
from .printer import CPrinter

_TORCH = TorchBackend()

#: Neurons per block: one vectorised inner loop per time step over this many neurons (states stay in L1).
BLOCK = 256
#: Bytes of the backward's per-thread buffer of re-run charged values: a block's whole sequence up to 4096 steps
#: of LIF (2048 of ALIF) in fp32. Longer ones run in segments, from the states at each segment's start, found by
#: one extra forward pass. Never more than saving would take: the charged values of one block per thread.
#: (Measured: buffers of 512 KiB to 4 MiB within 10%, fewer segments ahead; smaller blocks instead of segments
#: were slower, up to 2x at N = 1024, where every time step of a block lies on another page.)
BUFFER_BYTES = 4 << 20


def c_program(program: tuple[Assign, ...], printer: CPrinter, args: list[str]) -> list[str]:
    """C statements for a straight-line program: each target declared at its first assignment."""
    known, lines = set(args), []
    for a in program:
        name = a.target.name
        lines.append(f"{name} = {printer.doprint(a.expr)};" if name in known else
                     f"nd_real {name} = {printer.doprint(a.expr)};")
        known.add(name)
    return lines


def _function(args: list[str], outs: list[str], body: list[str], out: str = "ret"):
    """(parameter list, body) of a static step function: values in, results through pointers."""
    params = [f"nd_real {a}" for a in args] + [f"nd_real* restrict {derived(out, r)}" for r in outs]
    return params, body + [f"*{derived(out, r)} = {r};" for r in outs]


def segment_steps(plan: KernelPlan) -> int:
    """Time steps per segment of the backward's re-run: its buffer of charged values (steps x saved states x
    ``BLOCK``) stays within ``BUFFER_BYTES``."""
    size = 4 if plan.compute_dtype == "float32" else 8
    return max(16, BUFFER_BYTES // (max(1, len(plan.saved_states)) * BLOCK * size))


def kernel_meta(plan: KernelPlan) -> dict:
    """The plan's META as the C kernels run it: nothing saved by the forward, every input re-read by the backward
    (which re-runs the forward from the initial states)."""
    return {**plan_meta(plan), "saved_states": (), "needed_inputs": plan.inputs}


def kernel_context(plan: KernelPlan, key: str, label: str) -> dict:
    """Every name and statement ``kernels.c.j2`` declares (plus the header's), as plain strings and lists."""
    printer = CPrinter(plan.compute_dtype)
    n = PlanNames(plan)
    role = PlanNames.role
    ptr = lambda name: derived("ptr", name)  # noqa: E731 - the pointer argument of a plan name
    blk = lambda name: derived("blk", name)  # noqa: E731 - a block's array of a plan name
    cin = lambda name: f"const nd_real* restrict {ptr(name)}"  # noqa: E731
    cout = lambda name: f"nd_real* restrict {ptr(name)}"  # noqa: E731
    init, out, save = role("init", n.prev), role("out", n.prev), role("save", n.saved)
    prev_index = [n.prev.index(v) for v in n.prev_states]
    gout, ginit, acc = role("gout", n.grad_new), role("ginit", n.grad_new), role("acc", n.grad_params)
    rec, prev_saved, scratch = role("rec", n.prev_states), role("prev", n.saved), role("tmp", n.saved)
    vector = dict(zip(n.params, (p.vector for p in plan.params)))
    row_params = [cin(p) if vector[p] else f"const nd_real {p}" for p in n.params]
    row_param_args = [f"{ptr(p)} + n0" if vector[p] else p for p in n.params]
    param_loads = [f"const nd_real {p} = {ptr(p)}[j];" for p in n.params if vector[p]]

    fwd_args, fwd_outs = n.prev + n.inputs + n.params, [SPIKE] + n.new + n.saved
    step_params, step_body = _function(fwd_args, fwd_outs, c_program(plan.forward, printer, fwd_args))
    prev_args = n.saved + n.params
    prev_params, prev_body = _function(prev_args, n.prev_states, c_program(plan.recompute_prev, printer, prev_args))
    bwd_args = n.saved + n.prev_states + n.needed_inputs + n.params + ["gspike"] + n.grad_new
    bwd_outs = n.grad_prev + n.grad_inputs + n.grad_params
    bwd_params, bwd_body = _function(bwd_args, bwd_outs, c_program(plan.backward, printer, bwd_args))

    fwd_ptrs = ([cin(x) for x in n.inputs] + [cin(i) for i in init] + [cin(p) for p in n.params]
                + ["nd_real* restrict spike_ptr"] + [cout(o) for o in out])
    bwd_ptrs = (["const nd_real* restrict gspike_ptr"] + [cin(g) for g in gout] + [cin(x) for x in n.inputs]
                + [cin(i) for i in init] + [cin(p) for p in n.params]
                + [cout(g) for g in n.grad_inputs] + [cout(g) for g in ginit] + [cout(a) for a in acc])
    names_of = lambda params: [p.rsplit(" ", 1)[1] for p in params]  # noqa: E731
    prev_row = ([cin(p) for p in prev_saved] + [cin(i) for i in role("init", n.prev_states)]
                + ["const int has_prev"] if plan.needs_prev else [])
    # the backward's re-run: charged values of step t at hrow (saved state i at i * ND_BLOCK),
    # the states before the segment's first step at start (state i at i * ND_BLOCK)
    prev_row_args = ([f"hrow - back + {i} * ND_BLOCK" for i in range(len(save))]
                     + [f"start + {i} * ND_BLOCK" for i in prev_index] + ["t > t0"] if plan.needs_prev else [])
    state_arrays = [f"nd_real* restrict {blk(v)}" for v in n.prev]
    fwd_row_loads = (param_loads + [f"const nd_real {v} = {blk(v)}[j];" for v in n.prev]
                     + [f"const nd_real {x} = {ptr(x)}[j];" for x in n.inputs])
    return dict(
        **header_context(label=label, key=key, fingerprint=plan.fingerprint(), backend="c", meta=kernel_meta(plan)),
        ctype=printer.ctype, block=BLOCK, segment=segment_steps(plan), states=len(n.prev),
        saved_count=len(n.saved), needs_prev=plan.needs_prev,
        step_params=step_params, step_body=step_body, prev_params=prev_params, prev_body=prev_body,
        bwd_params=bwd_params, bwd_body=bwd_body,
        # forward
        fwd_kernel_params=fwd_ptrs, fwd_block_args=names_of(fwd_ptrs),
        state_decls=[f"nd_real {blk(v)}[ND_BLOCK];" for v in n.prev],
        scalar_param_loads=[f"const nd_real {p} = {ptr(p)}[0];" for p in n.params if not vector[p]],
        state_inits=[f"{blk(v)}[j] = {ptr(i)}[n];" for v, i in zip(n.prev, init)],
        fwd_row_params=[cin(x) for x in n.inputs] + row_params + state_arrays
        + ["nd_real* restrict spike_ptr"] + [cout(o) for o in out],
        fwd_row_args=[f"{ptr(x)} + row" for x in n.inputs] + row_param_args + [blk(v) for v in n.prev]
        + ["spike_ptr + row"] + [f"{ptr(o)} + seq" for o in out],
        fwd_row_loads=fwd_row_loads,
        step_decls=[f"nd_real {', '.join(fwd_outs)};"],
        step_call=f"nd_step({', '.join(fwd_args + ['&' + r for r in fwd_outs])});",
        fwd_row_stores=[f"spike_ptr[j] = {SPIKE};"]
        + [line for v, new, o in zip(n.prev, n.new, out)
           for line in (f"{blk(v)}[j] = {new};", f"{ptr(o)}[j] = {new};")],
        # backward: the forward re-run into a buffer, then the reverse sweep
        rec_row_params=[cin(x) for x in n.inputs] + row_params + state_arrays + [cout(s) for s in save],
        rec_row_stores=[f"{blk(v)}[j] = {new};" for v, new in zip(n.prev, n.new)]
        + [f"{ptr(s)}[j] = {h};" for h, s in zip(n.saved, save)],
        rec_row_args=[f"{ptr(x)} + t * N + n0" for x in n.inputs] + row_param_args + [blk(v) for v in n.prev]
        + [f"hrow + {i} * ND_BLOCK" for i in range(len(save))],
        pass_row_args=[f"{ptr(x)} + t * N + n0" for x in n.inputs] + row_param_args + [blk(v) for v in n.prev]
        + scratch,
        scratch_decls=[f"nd_real {t}[ND_BLOCK];" for t in scratch],
        start_stores=[f"ckpt[{i} * ND_BLOCK + j] = {ptr(s)}[n];" for i, s in enumerate(init)],
        ckpt_stores=[f"ckpt[(t + 1) / seg * ND_STATES * ND_BLOCK + {i} * ND_BLOCK + j] = {blk(v)}[j];"
                     for i, v in enumerate(n.prev)],
        state_loads=[f"{blk(v)}[j] = start[{i} * ND_BLOCK + j];" for i, v in enumerate(n.prev)],
        bwd_kernel_params=bwd_ptrs, bwd_block_args=names_of(bwd_ptrs),
        grad_decls=[f"nd_real {blk(g)}[ND_BLOCK];" for g in n.grad_new + acc],
        grad_inits=[f"{blk(g)}[j] = store_seqs ? (nd_real)0 : {ptr(go)}[n];" for g, go in zip(n.grad_new, gout)]
        + [f"{blk(a)}[j] = 0;" for a in acc],
        bwd_row_params=["const nd_real* restrict gspike_ptr"] + [cin(g) for g in gout] + [cin(s) for s in save]
        + prev_row + [cin(x) for x in n.needed_inputs] + row_params + [cout(g) for g in n.grad_inputs]
        + [f"nd_real* restrict {blk(g)}" for g in n.grad_new + acc],
        bwd_row_args=["gspike_ptr + row"] + [f"store_seqs ? {ptr(g)} + row : nd_zeros" for g in gout]
        + [f"hrow + {i} * ND_BLOCK" for i in range(len(save))] + prev_row_args
        + [f"{ptr(x)} + row" for x in n.needed_inputs]
        + row_param_args + [f"{ptr(g)} + row" for g in n.grad_inputs] + [blk(g) for g in n.grad_new + acc],
        bwd_row_loads=[f"const nd_real {g} = {blk(g)}[j] + {ptr(go)}[j];" for g, go in zip(n.grad_new, gout)]
        + ["const nd_real gspike = gspike_ptr[j];"] + param_loads
        + [f"const nd_real {h} = {ptr(s)}[j];" for h, s in zip(n.saved, save)]
        + [f"const nd_real {x} = {ptr(x)}[j];" for x in n.needed_inputs]
        + ([f"const nd_real {p} = {ptr(p)}[j];" for p in prev_saved] + [f"nd_real {r};" for r in rec]
           if plan.needs_prev else []),
        prev_call=f"nd_prev_state({', '.join(prev_saved + n.params + ['&' + r for r in rec])});",
        prev_selects=[f"const nd_real {v} = has_prev ? {r} : {ptr(i)}[j];"
                      for v, r, i in zip(n.prev_states, rec, role("init", n.prev_states))],
        bwd_decls=[f"nd_real {', '.join(bwd_outs)};"] if bwd_outs else [],
        bwd_call=f"nd_step_backward({', '.join(bwd_args + ['&' + r for r in bwd_outs])});",
        bwd_row_stores=[f"{ptr(g)}[j] = {g};" for g in n.grad_inputs] + [f"{blk(a)}[j] += {g};" for a, g in
                                                                        zip(acc, n.grad_params)]
        + [f"{blk(g_new)}[j] = {g_prev};" for g_new, g_prev in zip(n.grad_new, n.grad_prev)],
        grad_final_stores=[f"{ptr(gi)}[n] = {blk(g)}[j];" for g, gi in zip(n.grad_new, ginit)]
        + [f"{ptr(a)}[n] = {blk(a)}[j];" for a in acc],
    )


_OPENMP_PID: int | None = None


def threads() -> int:
    """OpenMP threads for a kernel: ``torch.get_num_threads()``, or 1 in a process forked after this one ran
    kernels on several threads (GNU OpenMP's thread pool does not survive a fork: the child would hang)."""
    global _OPENMP_PID
    wanted = torch.get_num_threads()
    if wanted > 1:
        if _OPENMP_PID is None:
            _OPENMP_PID = os.getpid()
        elif _OPENMP_PID != os.getpid():
            return 1
    return wanted


def _call(fn, tensors, *flags, restype=None):
    """Call a kernel with the raw pointers of contiguous CPU ``tensors``, then T, N (int64) and int flags."""
    if fn.argtypes is None:
        fn.argtypes = [ctypes.c_void_p] * len(tensors) + [ctypes.c_int64] * 2 + [ctypes.c_int] * (len(flags) - 2)
        fn.restype = restype
    return fn(*[t.data_ptr() for t in tensors], *flags)


class CBackend(Backend):
    """Compiled C on CPU tensors, with the system compiler (the fastest CPU backend where one works)."""

    name = "c"
    folder = Path(__file__).parent
    fresh_outputs = True

    def unavailable(self, device: torch.device) -> BackendError | None:
        if device.type != "cpu":
            return BackendError("ND307", f"backend='c' runs CPU tensors only, not device '{device.type}'; use "
                                         "backend='auto' (Triton on CUDA) or backend='torch'")
        found = toolchain.toolchain()
        return found if isinstance(found, BackendError) else None

    def auto_priority(self, device: torch.device) -> int | None:
        return 5 if device.type == "cpu" else None

    def printer(self, compute_dtype: str = "float32"):
        return CPrinter(compute_dtype)

    def context(self, plan: KernelPlan, key: str, label: str) -> dict:
        return kernel_context(plan, key, label)

    @staticmethod
    def library(module):
        """The loaded library of a generated module (built on first use, from the cache after that)."""
        loaded = module.__dict__.setdefault("_c_libraries", {})  # per toolchain: no source hashing per call
        setting = toolchain.setting()
        lib = loaded.get(setting)
        if lib is None:
            found = toolchain.toolchain()
            if isinstance(found, BackendError):
                raise found
            lib = loaded[setting] = toolchain.library(module.LABEL, module.C_SOURCE, found)
        return lib

    def forward(self, module, inputs, init_states, params, store_seqs, io_dtype, save):
        """Spikes and states; nothing saved (``META['saved_states']`` is empty: the backward re-runs the forward)."""
        meta, lib = module.META, self.library(module)
        T, n = inputs[0].shape
        cdt = init_states[0].dtype
        spikes = torch.empty((T, n), dtype=cdt)
        states = [torch.empty((T, n) if store_seqs else (n,), dtype=cdt) for _ in meta["states"]]
        _call(lib.forward_kernel, [*inputs, *init_states, *params, spikes, *states], T, n, int(store_seqs),
              threads())
        return spikes.to(io_dtype), tuple(states), ()

    def backward(self, module, grad_spikes, grad_states, saved, inputs, init_states, params, store_seqs):
        meta, lib = module.META, self.library(module)
        T, n = grad_spikes.shape
        cdt = init_states[0].dtype
        grad_inputs = [torch.empty((T, n), dtype=cdt) for _ in meta["inputs"]]
        grad_init = [torch.empty((n,), dtype=cdt) for _ in meta["states"]]
        grad_params = [torch.empty((n,), dtype=cdt) for p in meta["params"] if p[2]]
        if _call(lib.backward_kernel, [grad_spikes, *grad_states, *inputs, *init_states, *params, *grad_inputs,
                                       *grad_init, *grad_params], T, n, int(store_seqs), threads(),
                 restype=ctypes.c_int):
            raise MemoryError(f"{module.LABEL}: the C backward could not allocate its per-thread buffers "
                              f"(T={T}, N={n})")
        return tuple(grad_inputs), tuple(grad_init), tuple(grad_params)

    # forward-mode AD and online learning: the torch backend's generated tangent kernels (torch code, on CPU)
    def tangent_context(self, plan: KernelPlan, key: str, label: str) -> dict:
        return _TORCH.tangent_context(plan, key, label)

    def render_tangent(self, plan: KernelPlan, key: str, label: str) -> str:
        return _TORCH.render_tangent(plan, key, label)

    def tangent(self, module, *args):
        return _TORCH.tangent(module, *args)

    def tangent_step(self, module, *args):
        return _TORCH.tangent_step(module, *args)
