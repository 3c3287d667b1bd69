"""Run generated kernels: launchers per backend and the autograd op over [T, N] tensors.

The front end hands :func:`neuron_op` flat tensors: inputs ``[T, N]``, initial
states ``[N]`` and parameters ``[N]`` (per neuron) or ``[1]`` (scalar), in the order
of the plan. Gradients come back in the same shapes. Launchers read the generated
module's ``META`` so a cache hit needs no symbolic work.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable

import torch

from . import cache, render
from .errors import BackendError
from .plan import KernelPlan


def compute_dtype(io_dtype: torch.dtype) -> torch.dtype:
    """fp64 math for fp64 tensors, fp32 math for everything else."""
    return torch.float64 if io_dtype == torch.float64 else torch.float32


def interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def block_size(n: int, device: torch.device) -> int:
    """Few large programs under the interpreter (Python cost per program); 512 lanes on a GPU."""
    limit = 65536 if device.type == "cpu" else 512
    return min(limit, max(16, 1 << (max(n, 1) - 1).bit_length()))


@dataclass
class CompiledNeuron:
    """Kernels for one plan key; the plan is derived (and sources generated) only on a cache miss."""

    name: str
    key: str
    build_plan: Callable[[], KernelPlan]
    _modules: dict[str, ModuleType] = field(default_factory=dict)
    _plan: KernelPlan | None = None

    @property
    def plan(self) -> KernelPlan:
        if self._plan is None:
            self._plan = self.build_plan()
        return self._plan

    def source(self, backend: str) -> str:
        """Freshly rendered source (no cache)."""
        return render.render(self.plan, backend, self.key)

    def module(self, backend: str) -> ModuleType:
        if backend not in self._modules:
            if backend == "triton":
                _require_triton()
            self._modules[backend] = cache.load_module(self.name, self.key, backend, lambda: self.source(backend))
        return self._modules[backend]

    def cached_source(self, backend: str) -> str:
        """The source the module runs (from the cache)."""
        self.module(backend)
        return cache.cached_source(self.name, self.key, backend) or self.source(backend)

    def meta(self, backend: str) -> dict:
        return self.module(backend).META

    # -- launches ---------------------------------------------------------
    def forward(self, backend, inputs, init_states, params, store_seqs, io_dtype, save=True):
        """Spikes, states and (when ``save``) the charged values backward needs."""
        if backend == "torch":
            spikes, states, saved = self.module("torch").forward(inputs, init_states, params, store_seqs, save)
            return spikes.to(io_dtype), states, saved
        meta = self.meta("triton")
        T, n = inputs[0].shape
        cdt, device = init_states[0].dtype, inputs[0].device
        spikes = torch.empty((T, n), dtype=io_dtype, device=device)
        out_shape = (T, n) if store_seqs else (n,)
        states = [torch.empty(out_shape, dtype=cdt, device=device) for _ in meta["states"]]
        saved = [torch.empty((T, n) if save else (1,), dtype=cdt, device=device) for _ in meta["saved_states"]]
        args = [*inputs, *init_states, *params, spikes, *states, *saved]
        _launch(self.module("triton").forward_kernel, n, device, args, T, store_seqs, SAVE=save)
        return spikes, tuple(states), tuple(saved)

    def backward(self, backend, grad_spikes, grad_states, saved, inputs, init_states, params, store_seqs):
        if backend == "torch":
            return self.module("torch").backward(grad_spikes, grad_states, saved, inputs, init_states, params,
                                                 store_seqs)
        meta = self.meta("triton")
        T, n = grad_spikes.shape
        cdt, device = init_states[0].dtype, grad_spikes.device
        needed = [inputs[meta["inputs"].index(i)] for i in meta["needed_inputs"]]
        prev_init = [init_states[meta["states"].index(s)] for s in meta["prev_states"]]
        grad_inputs = [torch.empty((T, n), dtype=cdt, device=device) for _ in meta["inputs"]]
        grad_init = [torch.empty((n,), dtype=cdt, device=device) for _ in meta["states"]]
        grad_params = [torch.empty((n,), dtype=cdt, device=device) for p in meta["params"] if p[2]]
        args = [grad_spikes, *grad_states, *saved, *needed, *prev_init, *params, *grad_inputs, *grad_init,
                *grad_params]
        _launch(self.module("triton").backward_kernel, n, device, args, T, store_seqs)
        return tuple(grad_inputs), tuple(grad_init), tuple(grad_params)


def _launch(kernel, n, device, args, T, store_seqs, **flags):
    block = block_size(n, device)
    grid = (-(-n // block),)
    kernel[grid](*args, T, n, STORE_SEQS=store_seqs, BLOCK=block, **flags)


def _require_triton() -> None:
    try:
        import triton  # noqa: F401
    except ImportError as err:  # pragma: no cover - triton is a dependency
        raise BackendError("ND301", "backend='triton' needs the triton package: pip install triton") from err


def check_backend(backend: str, device: torch.device) -> None:
    """Raise a typed error when ``backend`` cannot run tensors on ``device``."""
    if backend == "triton" and device.type == "cpu" and not interpreter_enabled():
        raise BackendError("ND302", "backend='triton' on CPU tensors needs the Triton interpreter: set "
                                    "TRITON_INTERPRET=1 before triton is imported, or use backend='torch'")
    if backend == "triton" and device.type not in ("cpu", "cuda"):
        raise BackendError("ND303", f"backend='triton' does not run on device '{device.type}'")


class NeuronFunction(torch.autograd.Function):
    """Autograd op: forward and backward are generated kernels, no per-step graph."""

    @staticmethod
    def forward(ctx, compiled: CompiledNeuron, backend: str, store_seqs: bool, io_dtype, counts, precomputed,
                *tensors):
        n_in, n_st, _ = counts
        inputs, init_states, params = tensors[:n_in], tensors[n_in:n_in + n_st], tensors[n_in + n_st:]
        if precomputed is None:
            spikes, states, saved = compiled.forward(backend, inputs, init_states, params, store_seqs, io_dtype)
        else:  # a parallel solver already found the forward values; backward stays the generated kernel
            spikes, states, saved = precomputed
        meta = compiled.meta(backend)
        needed = [inputs[meta["inputs"].index(i)] for i in meta["needed_inputs"]]
        ctx.save_for_backward(*saved, *needed, *init_states, *params)
        ctx.meta = (compiled, backend, store_seqs, counts, len(saved), len(needed), tuple(inputs[0].shape))
        return (spikes, *states)

    @staticmethod
    def backward(ctx, grad_spikes, *grad_states):
        compiled, backend, store_seqs, (n_in, n_st, n_par), n_saved, n_needed, in_shape = ctx.meta
        meta = compiled.meta(backend)
        tensors = ctx.saved_tensors
        saved = tensors[:n_saved]
        needed = tensors[n_saved:n_saved + n_needed]
        init_states = tensors[n_saved + n_needed:n_saved + n_needed + n_st]
        params = tensors[n_saved + n_needed + n_st:]
        cdt, device = init_states[0].dtype, init_states[0].device
        grad_spikes = _dense(grad_spikes, in_shape, cdt, device)
        state_shape = in_shape if store_seqs else in_shape[1:]
        grad_states = tuple(_dense(g, state_shape, cdt, device) for g in grad_states)
        inputs = [None] * n_in
        for name, tensor in zip(meta["needed_inputs"], needed):
            inputs[meta["inputs"].index(name)] = tensor
        grad_inputs, grad_init, grad_params = compiled.backward(
            backend, grad_spikes, grad_states, saved, inputs, init_states, params, store_seqs)
        param_grads = [None] * n_par
        learnable = [(i, vector) for i, (_, vector, needs_grad) in enumerate(meta["params"]) if needs_grad]
        for (i, vector), g in zip(learnable, grad_params):
            param_grads[i] = g if vector else g.sum().reshape(1)
        return (None, None, None, None, None, None, *grad_inputs, *grad_init, *param_grads)


def _dense(grad, shape, dtype, device):
    """Gradients as contiguous tensors in ``dtype`` (None -> zeros; stride-0 from ``.sum()`` -> dense)."""
    if grad is None:
        return torch.zeros(shape, dtype=dtype, device=device)
    return grad.to(dtype).contiguous()


def neuron_op(compiled: CompiledNeuron, backend: str, inputs, init_states, params, store_seqs: bool = False,
              precomputed=None):
    """Run one layer over time: returns ``(spikes [T, N], states)`` (final [N] or sequences [T, N]).

    ``precomputed``: ``(spikes, states, saved)`` found by another solver (the exact parallel mode);
    the generated backward kernel then differentiates through them.
    """
    io_dtype = inputs[0].dtype
    cdt = compute_dtype(io_dtype)
    check_backend(backend, inputs[0].device)
    if backend == "torch":
        inputs = [x.to(cdt) for x in inputs]
    inputs = [x.contiguous() for x in inputs]
    init_states = [v.to(cdt).contiguous() for v in init_states]
    params = [p.to(cdt).contiguous() for p in params]
    counts = (len(inputs), len(init_states), len(params))
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (*inputs, *init_states, *params))):
        if precomputed is not None:
            return precomputed[0], tuple(precomputed[1])
        spikes, states, _ = compiled.forward(backend, inputs, init_states, params, store_seqs, io_dtype, save=False)
        return spikes, tuple(states)  # inference: nothing saved, 8 B/neuron-step for LIF in fp32
    spikes, *states = NeuronFunction.apply(compiled, backend, store_seqs, io_dtype, counts, precomputed,
                                           *inputs, *init_states, *params)
    return spikes, tuple(states)
