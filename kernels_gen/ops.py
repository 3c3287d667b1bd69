"""Run generated kernels: launchers per backend and the autograd op over [T, N] tensors.

The front end hands :func:`neuron_op` flat tensors: inputs ``[T, N]``, initial
states ``[N]`` and parameters ``[N]`` (per neuron) or ``[1]`` (scalar), in the order
of the plan. Gradients come back in the same shapes. Launchers read the generated
module's ``META`` so a cache hit needs no symbolic work.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable

import torch
from torch._C._functorch import TransformType
from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

from . import backends, cache
from .errors import BackendError
from .plan import KernelPlan
from .registry import Registry

_forward_ad = torch.autograd.forward_ad
_functorch_active = torch._C._are_functorch_transforms_active


def compute_dtype(io_dtype: torch.dtype) -> torch.dtype:
    """fp64 math for fp64 tensors, fp32 math for everything else."""
    return torch.float64 if io_dtype == torch.float64 else torch.float32


@dataclass
class CompiledNeuron:
    """Kernels for one plan key; the plan is derived (and sources generated) only on a cache miss."""

    name: str
    key: str
    build_plan: Callable[[], KernelPlan]
    _modules: dict[str, ModuleType] = field(default_factory=dict)
    _plan: KernelPlan | None = None
    build_tangent_plan: Callable[[], KernelPlan] | None = None   # the plan with its tangent program filled

    @property
    def plan(self) -> KernelPlan:
        if self._plan is None:
            self._plan = self.build_plan()
        return self._plan

    def source(self, backend: str) -> str:
        """Freshly rendered source (no cache)."""
        return backends.get(backend).render(self.plan, self.key, cache.safe_label(self.name))

    def module(self, backend: str) -> ModuleType:
        if backend not in self._modules:
            self._modules[backend] = cache.load_module(self.name, self.key, backend,
                                                       lambda: self.source(backend))
        return self._modules[backend]

    def cached_source(self, backend: str) -> str:
        """The source the module runs (from the cache)."""
        self.module(backend)
        return cache.cached_source(self.name, self.key, backend) or self.source(backend)

    def meta(self, backend: str) -> dict:
        return self.module(backend).META

    def output_shapes(self, backend, T, n, store_seqs, save):
        """Shapes of the states and saved values :meth:`forward` returns ([1] placeholders without ``save``)."""
        meta = self.meta(backend)
        return ([(T, n) if store_seqs else (n,)] * len(meta["states"]),
                [(T, n) if save else (1,)] * len(meta["saved_states"]))

    # -- launches ---------------------------------------------------------
    def forward(self, backend, inputs, init_states, params, store_seqs, io_dtype, save=True):
        """Spikes, states and (when ``save``) the charged values backward needs."""
        return backends.get(backend).forward(self.module(backend), inputs, init_states, params, store_seqs, io_dtype,
                                             save)

    def backward(self, backend, grad_spikes, grad_states, saved, inputs, init_states, params, store_seqs):
        return backends.get(backend).backward(self.module(backend), grad_spikes, grad_states, saved, inputs,
                                              init_states, params, store_seqs)

    # -- forward-mode derivative: a module of its own, generated on first use ---------------------------------
    def tangent_module(self, backend: str) -> ModuleType:
        """The tangent kernels (``Backend.render_tangent``; ND310 from a backend that has none)."""
        name = f"{backend}_tangent"
        if name not in self._modules:
            source = lambda: backends.get(backend).render_tangent((self.build_tangent_plan or self.build_plan)(),  # noqa: E731
                                                                  self.key, cache.safe_label(self.name))
            self._modules[name] = cache.load_module(self.name, self.key, name, source)
        return self._modules[name]

    def tangent(self, backend, inputs, init_states, params, tangent_inputs, tangent_init, tangent_params, store_seqs,
                io_dtype):
        """Spikes, states and their forward-mode tangents (``Backend.tangent``)."""
        return backends.get(backend).tangent(self.tangent_module(backend), inputs, init_states, params,
                                             tangent_inputs, tangent_init, tangent_params, store_seqs, io_dtype)

    def tangent_step(self, backend, prev, inputs, params, tangent_prev, tangent_inputs, tangent_params):
        """One step with several tangent directions per neuron (``Backend.tangent_step``, for online learning)."""
        return backends.get(backend).tangent_step(self.tangent_module(backend), prev, inputs, params, tangent_prev,
                                                  tangent_inputs, tangent_params)


def check_backend(backend: str, device: torch.device) -> backends.Backend:
    """The backend, or its typed error when it cannot run tensors on ``device``."""
    return backends.check(backend, device)


# -- registered torch ops ----------------------------------------------------------
# The front end registers each CompiledNeuron under its plan key; the ops below take that key (a string), so
# torch.compile sees two opaque custom ops with fake (shape-only) implementations and a registered backward,
# never the Python that chooses and generates the kernels.
_REGISTRY = Registry("compiled neuron")


def register(compiled: CompiledNeuron) -> str:
    """Make ``compiled`` reachable from the torch ops; returns the key to pass them."""
    return _REGISTRY.add(compiled).key


registered = _REGISTRY.get


def _fresh(outputs, inputs, backend: str | None = None) -> list[torch.Tensor]:
    """Custom ops may not return their inputs: copy any output that shares storage with one (nothing to check for
    a ``backend`` whose launchers allocate every output, ``Backend.fresh_outputs``)."""
    if backend is not None and backends.get(backend).fresh_outputs:
        return list(outputs)
    taken = {t.untyped_storage().data_ptr() for t in inputs if t.numel()}
    return [t.clone() if t.numel() and t.untyped_storage().data_ptr() in taken else t for t in outputs]


def _neuron_forward(key: str, backend: str, store_seqs: bool, save: bool, io_dtype: torch.dtype,
                   inputs: list[torch.Tensor], init_states: list[torch.Tensor], params: list[torch.Tensor],
                   precomputed: list[torch.Tensor]) -> list[torch.Tensor]:
    """``[spikes, *states, *saved]`` of one layer over time (``precomputed``: those values, found by a solver).

    Contract (what :func:`neuron_op` prepares): contiguous [T, N] inputs, [N] initial states and [N] or [1]
    params; states and params in the compute dtype (:func:`compute_dtype` of ``io_dtype``), inputs too on
    the torch backend. Spikes come back in ``io_dtype``, states and saved values in the compute dtype.
    """
    if precomputed:
        return [t.clone() for t in precomputed]
    spikes, states, saved = registered(key).forward(backend, inputs, init_states, params, store_seqs, io_dtype,
                                                    save)
    return _fresh([spikes, *states, *saved], [*inputs, *init_states, *params], backend)


neuron_forward = torch.library.custom_op("neurodsl::neuron_forward", _neuron_forward, mutates_args=())


@neuron_forward.register_fake
def _neuron_forward_fake(key, backend, store_seqs, save, io_dtype, inputs, init_states, params, precomputed):
    if precomputed:
        return [torch.empty_like(t) for t in precomputed]
    T, n = inputs[0].shape
    state_shapes, saved_shapes = registered(key).output_shapes(backend, T, n, store_seqs, save)
    cdt = init_states[0].dtype
    return [inputs[0].new_empty((T, n), dtype=io_dtype),
            *(inputs[0].new_empty(s, dtype=cdt) for s in state_shapes + saved_shapes)]


def _neuron_backward(key, backend, store_seqs, grad_spikes, grad_states, saved, needed, init_states, params):
    """``[*grad_inputs, *grad_init_states, *grad_learnable_params]`` (per-neuron partials) by the generated BPTT."""
    compiled = registered(key)
    meta = compiled.meta(backend)
    inputs = [None] * len(meta["inputs"])
    for name, tensor in zip(meta["needed_inputs"], needed):
        inputs[meta["inputs"].index(name)] = tensor
    grad_inputs, grad_init, grad_params = compiled.backward(backend, grad_spikes, grad_states, saved, inputs,
                                                            init_states, params, store_seqs)
    return _fresh([*grad_inputs, *grad_init, *grad_params],
                  [grad_spikes, *grad_states, *saved, *needed, *init_states, *params], backend)


@torch.library.custom_op("neurodsl::neuron_backward", mutates_args=())
def neuron_backward(key: str, backend: str, store_seqs: bool, grad_spikes: torch.Tensor,
                    grad_states: list[torch.Tensor], saved: list[torch.Tensor], needed: list[torch.Tensor],
                    init_states: list[torch.Tensor], params: list[torch.Tensor]) -> list[torch.Tensor]:
    """``[*grad_inputs, *grad_init_states, *grad_learnable_params]`` (per-neuron partials) by the generated BPTT."""
    return _neuron_backward(key, backend, store_seqs, grad_spikes, grad_states, saved, needed, init_states, params)


@neuron_backward.register_fake
def _neuron_backward_fake(key, backend, store_seqs, grad_spikes, grad_states, saved, needed, init_states, params):
    meta = registered(key).meta(backend)
    T, n = grad_spikes.shape
    cdt = init_states[0].dtype
    grad_inputs = [grad_spikes.new_empty((T, n)) for _ in meta["inputs"]]  # in the incoming gradient's dtype
    shapes = [(n,)] * len(meta["states"]) + [(n,)] * sum(1 for p in meta["params"] if p[2])
    return grad_inputs + [grad_spikes.new_empty(s, dtype=cdt) for s in shapes]


@torch.library.register_vmap("neurodsl::neuron_backward")
def _neuron_backward_vmap(info, in_dims, key, backend, store_seqs, grad_spikes, grad_states, saved, needed,
                          init_states, params):
    """Batched gradients (``torch.func.jacrev``, ``vmap`` over a backward): one generated backward per batch entry."""
    def take(value, dim, b):
        if isinstance(value, list):
            return [take(v, d, b) for v, d in zip(value, dim)]
        return value if dim is None else value.select(dim, b)
    args = (key, backend, store_seqs, grad_spikes, grad_states, saved, needed, init_states, params)
    runs = [torch.ops.neurodsl.neuron_backward(*(take(a, d, b) for a, d in zip(args, in_dims)))
            for b in range(info.batch_size)]
    return [torch.stack(outs) for outs in zip(*runs)], [0] * len(runs[0])


def _setup_context(ctx, inputs, output):
    key, backend, store_seqs, save, io_dtype, xs, init_states, params, precomputed = inputs
    meta = registered(key).meta(backend)
    n_states = len(init_states)
    saved = output[1 + n_states:]
    needed = [xs[meta["inputs"].index(i)] for i in meta["needed_inputs"]]
    ctx.save_for_backward(*saved, *needed, *init_states, *params)
    ctx.layout = (key, backend, store_seqs, len(xs), n_states, len(saved), len(needed), len(precomputed))
    ctx.in_shape = tuple(xs[0].shape)
    ctx.io_dtype = io_dtype


def _backward(ctx, grads, direct: bool = False):
    key, backend, store_seqs, n_in, n_st, n_saved, n_needed, n_pre = ctx.layout
    tensors = ctx.saved_tensors
    saved, rest = tensors[:n_saved], tensors[n_saved:]
    needed, init_states, params = rest[:n_needed], rest[n_needed:n_needed + n_st], rest[n_needed + n_st:]
    cdt, device = init_states[0].dtype, init_states[0].device
    state_shape = ctx.in_shape if store_seqs else ctx.in_shape[1:]
    # a backend that loads any float dtype reads the incoming gradient as it is (no full-size conversion)
    gdt = ctx.io_dtype if backends.get(backend).native_float_io else cdt
    grad_spikes = _dense(grads[0], ctx.in_shape, gdt, device)
    grad_states = [_dense(g, state_shape, cdt, device) for g in grads[1:1 + n_st]]
    if not direct and _functorch_active():
        # torch.func.grad / vjp / jacrev: first-order gradients, from the values only (the op's autograd cannot
        # run under functorch); a derivative of them (grad of grad, jacfwd of jacrev) is refused, never dropped
        if sum(i.key() in (TransformType.Grad, TransformType.Jvp) for i in retrieve_all_functorch_interpreters()) > 1:
            raise _second_order_error()
        grad_spikes, grad_states, saved, needed, init_states, params = (
            [t.detach() for t in group] for group in ([grad_spikes], grad_states, saved, needed, init_states, params))
        grad_spikes = grad_spikes[0]
    # ``direct`` (the eager Function, no functorch transform active): the implementation itself, without the
    # dispatcher's per-call cost; otherwise the op (traced by torch.compile, batched by its vmap rule)
    out = (_neuron_backward if direct else torch.ops.neurodsl.neuron_backward)(
        key, backend, store_seqs, grad_spikes, grad_states, list(saved), list(needed), list(init_states), list(params))
    grad_inputs, grad_init, grad_learnable = out[:n_in], out[n_in:n_in + n_st], out[n_in + n_st:]
    grad_params: list = [None] * len(params)
    learnable = [(i, vector) for i, (_, vector, needs_grad) in enumerate(registered(key).meta(backend)["params"])
                 if needs_grad]
    for (i, vector), g in zip(learnable, grad_learnable):
        grad_params[i] = g if vector else g.sum().reshape(1)
    return None, None, None, None, None, list(grad_inputs), list(grad_init), grad_params, [None] * n_pre


neuron_forward.register_autograd(_backward, setup_context=_setup_context)


def _second_order_error() -> BackendError:
    return BackendError("ND312", "a derivative of a neuron layer's gradient was asked for (backward with "
                                 "create_graph=True and then through the gradients, torch.autograd.functional.jvp / "
                                 "hvp / hessian, a gradient penalty, torch.func.grad of torch.func.grad): the "
                                 "generated backward kernels are not differentiated themselves; use torch.func.jvp or "
                                 "torch.autograd.forward_ad for forward-mode derivatives")


def _no_second_order(ctx, grads):
    raise _second_order_error()


# the backward op may see tensors that require grad (torch.func.grad, create_graph=True): its gradients then carry
# a node that refuses a second derivative with a typed error instead of silently dropping it
neuron_backward.register_autograd(_no_second_order, setup_context=lambda ctx, inputs, output: None)


class _EagerNeuron(torch.autograd.Function):
    """Eager mode's route to the registered op's forward, context and backward, without the dispatcher's
    per-call cost (~0.1 ms, which dominates small single-step layers); tensors arrive flat for autograd.
    Forward-mode AD (``torch.func.jvp``, ``torch.autograd.forward_ad``) runs the generated tangent kernel."""

    @staticmethod
    def forward(key, backend, store_seqs, io_dtype, counts, forward_ad, *tensors):
        return tuple(_neuron_forward(key, backend, store_seqs, True, io_dtype, *_unflatten(counts, tensors)))

    @staticmethod
    def setup_context(ctx, inputs, output):
        key, backend, store_seqs, io_dtype, counts, forward_ad, *tensors = inputs
        _setup_context(ctx, (key, backend, store_seqs, True, io_dtype, *_unflatten(counts, tensors)), output)
        # the saved charged values are outputs only so that they can be saved: no gradient flows into them, and
        # autograd must not fill [T, N] zeros for them (nor for unused states) before calling backward
        ctx.mark_non_differentiable(*output[1 + counts[1]:])
        ctx.set_materialize_grads(False)
        ctx.counts = counts
        if forward_ad:  # only then: the inputs would otherwise live as long as the graph
            ctx.save_for_forward(*tensors)

    @staticmethod
    def backward(ctx, *grads):
        # a plain backward (no graph of the gradients, no functorch transform): the implementation directly
        direct = not torch.is_grad_enabled() and not _functorch_active()
        grad_inputs, grad_init, grad_params, grad_pre = _backward(ctx, grads, direct)[5:]
        return None, None, None, None, None, None, *grad_inputs, *grad_init, *grad_params, *grad_pre

    @staticmethod
    def jvp(ctx, *tangents):
        key, backend, store_seqs = ctx.layout[:3]
        xs, init, params, _ = _unflatten(ctx.counts, ctx.saved_tensors)
        txs, tinit, tparams, _ = _unflatten(ctx.counts, tangents[6:])
        cdt = init[0].dtype
        zero_or = lambda t, like: torch.zeros_like(like, dtype=cdt) if t is None else t.to(cdt).contiguous()  # noqa: E731
        learnable = []
        for (name, _, needs_grad), p, t in zip(registered(key).meta(backend)["params"], params, tparams):
            if needs_grad:
                learnable.append(zero_or(t, p))
            elif t is not None:
                raise BackendError("ND311", f"a forward-mode tangent reached the parameter '{name}', which is not "
                                            f"learnable, so no generated kernel computes its tangent; make it "
                                            f"learnable (learnable=('{name}',)) or pass its value without a tangent")
        out = torch.ops.neurodsl.neuron_tangent(key, backend, store_seqs, ctx.io_dtype, list(xs), list(init),
                                                list(params), [zero_or(t, x) for t, x in zip(txs, xs)],
                                                [zero_or(t, v) for t, v in zip(tinit, init)], learnable)
        n_states = len(init)
        return (out[1 + n_states], *out[2 + n_states:], *([None] * (ctx.layout[5])))


class _EagerNeuronPlain(torch.autograd.Function):
    """:class:`_EagerNeuron` where no functorch transform is active: the same forward, context, backward and jvp,
    with the context set up inside ``forward``. ``Function.apply`` binds the arguments to the signature of a
    ``forward`` that has a separate ``setup_context`` on every call (``inspect.signature``, tens of µs)."""

    @staticmethod
    def forward(ctx, key, backend, store_seqs, io_dtype, counts, forward_ad, *tensors):
        out = _EagerNeuron.forward(key, backend, store_seqs, io_dtype, counts, forward_ad, *tensors)
        _EagerNeuron.setup_context(ctx, (key, backend, store_seqs, io_dtype, counts, forward_ad, *tensors), out)
        return out

    backward = _EagerNeuron.backward
    jvp = _EagerNeuron.jvp


@torch.library.custom_op("neurodsl::neuron_tangent", mutates_args=())
def neuron_tangent(key: str, backend: str, store_seqs: bool, io_dtype: torch.dtype, inputs: list[torch.Tensor],
                   init_states: list[torch.Tensor], params: list[torch.Tensor], tangent_inputs: list[torch.Tensor],
                   tangent_init: list[torch.Tensor], tangent_params: list[torch.Tensor]) -> list[torch.Tensor]:
    """``[spikes, *states, spike tangents, *state tangents]`` by the generated tangent kernel (an op, so that
    functorch's wrapped tensors reach the kernels unwrapped)."""
    spikes, states, tspikes, tstates = registered(key).tangent(backend, inputs, init_states, params, tangent_inputs,
                                                               tangent_init, tangent_params, store_seqs, io_dtype)
    return _fresh([spikes, *states, tspikes, *tstates],
                  [*inputs, *init_states, *params, *tangent_inputs, *tangent_init, *tangent_params])


@neuron_tangent.register_fake
def _neuron_tangent_fake(key, backend, store_seqs, io_dtype, inputs, init_states, params, tangent_inputs,
                         tangent_init, tangent_params):
    T, n = inputs[0].shape
    shape = (T, n) if store_seqs else (n,)
    states = [inputs[0].new_empty(shape, dtype=init_states[0].dtype) for _ in init_states]
    spikes = inputs[0].new_empty((T, n), dtype=io_dtype)
    return [spikes, *states, torch.empty_like(spikes), *(torch.empty_like(v) for v in states)]


def has_tangent(tensors) -> bool:
    """Whether any of ``tensors`` carries a forward-mode tangent (``forward_ad`` dual, or inside ``torch.func.jvp``)."""
    if not torch.compiler.is_compiling() and _forward_ad._current_level < 0 and not _functorch_active():
        return False  # eager, no dual level and no functorch transform active: no tensor can carry a tangent
    return any(_forward_ad.unpack_dual(t).tangent is not None for t in tensors)


def _as_compute(tensors, cdt: torch.dtype) -> list[torch.Tensor]:
    """``tensors`` in ``cdt``, contiguous (the same tensors where they already are)."""
    return [t if t.dtype == cdt and t.is_contiguous() else t.to(cdt).contiguous() for t in tensors]


def _unflatten(counts, tensors):
    groups, start = [], 0
    for count in counts:
        groups.append(list(tensors[start:start + count]))
        start += count
    return groups


def _dense(grad, shape, dtype, device):
    """Gradients as contiguous tensors in ``dtype`` (None -> zeros; stride-0 from ``.sum()`` -> dense)."""
    if grad is None:
        return torch.zeros(shape, dtype=dtype, device=device)
    return grad.to(dtype).contiguous()


def neuron_op(key: str, backend: str, inputs, init_states, params, store_seqs: bool = False, precomputed=None):
    """Run one layer over time: returns ``(spikes [T, N], states)`` (final [N] or sequences [T, N]).

    ``key``: from :func:`register`. ``precomputed``: ``(spikes, states, saved)`` found by another solver (the
    exact parallel mode); the generated backward kernel then differentiates through them.
    """
    io_dtype = inputs[0].dtype
    cdt = compute_dtype(io_dtype)
    # the backend was checked for this device when its kernels were chosen (neurodsl.dispatch.kernels_for)
    if backends.get(backend).native_float_io:
        inputs = [x if x.is_contiguous() else x.contiguous() for x in inputs]
    else:
        inputs = _as_compute(inputs, cdt)
    init_states, params = _as_compute(init_states, cdt), _as_compute(params, cdt)
    compiling = torch.compiler.is_compiling()
    save = torch.is_grad_enabled() and any(t.requires_grad for t in (*inputs, *init_states, *params))
    forward_ad = not compiling and has_tangent((*inputs, *init_states, *params))
    if not save and not forward_ad and precomputed is not None:
        return precomputed[0], tuple(precomputed[1])
    flat_pre = [] if precomputed is None else [precomputed[0], *precomputed[1], *precomputed[2]]
    groups = (list(inputs), list(init_states), list(params), flat_pre)
    if compiling:
        out = torch.ops.neurodsl.neuron_forward(key, backend, store_seqs, save, io_dtype, *groups)
    elif save or forward_ad:
        fn = _EagerNeuron if _functorch_active() else _EagerNeuronPlain
        out = fn.apply(key, backend, store_seqs, io_dtype, tuple(map(len, groups)), forward_ad,
                       *[t for group in groups for t in group])
    else:  # inference: no autograd node
        out = _neuron_forward(key, backend, store_seqs, save, io_dtype, *groups)
    return out[0], tuple(out[1:1 + len(init_states)])  # without grads nothing is saved: 8 B/neuron-step for LIF
