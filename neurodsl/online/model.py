"""A model as the online rules see it: a chain of stateless modules and neuron layers, run one step at a time.

:func:`chain` flattens an ``nn.Sequential`` (``SeqToBatch`` / ``StepLoop`` / nested ``Sequential`` unpacked: every
module then sees one step ``[B, ...]``). :class:`NeuronUnit` runs one neuron layer of it: states carried as plain
tensors (no graph through time), the generated tangent step (forward values and several tangent directions in
one call), and :class:`InstantSpike`, the spike whose gradient is only the same-step path ds/dI (the learning
signal ∂L_t/∂s_t it receives is recorded for the traces).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .. import dispatch, layer_io
from ..analysis.derive import ALPHA
from ..compiler import compile_spec
from ..errors import BackendError, OnlineError
from ..neuron import Neuron


def chain(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` in call order, containers unpacked (OnlineError ND901 for anything else)."""
    if not isinstance(model, nn.Sequential):
        raise OnlineError("ND901", f"online learning runs an nn.Sequential of layers and neurodsl neurons, got "
                                   f"{type(model).__name__}; wrap it: nn.Sequential(nn.Linear(...), nd.zoo.LIF(), ...)")
    out = []
    for child in model.children():
        out += chain(child) if isinstance(child, nn.Sequential) else [child]
    return out


def check_chain(modules: list[nn.Module]) -> None:
    """At least one neuron, each with one input (what a chain passes)."""
    neurons = [m for m in modules if isinstance(m, Neuron)]
    if not neurons:
        raise OnlineError("ND901", "the model has no neurodsl neuron: online rules follow the traces of neuron states")
    for m in neurons:
        if len(m.spec.inputs) != 1:
            raise OnlineError("ND901", f"{type(m).__name__} takes {len(m.spec.inputs)} inputs "
                                       f"({', '.join(m.spec.inputs)}); a chain passes one tensor per step")


def trainable(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in module.named_parameters() if p.requires_grad]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


class InstantSpike(torch.autograd.Function):
    """Forward: the spikes (computed by the step). Backward: ∂L/∂I = ∂L/∂s · ds/dI of the same step only, and
    ∂L/∂s (the learning signal) handed to ``record``."""

    @staticmethod
    def forward(ctx, current, spikes, ds_dI, record, anchor):
        ctx.save_for_backward(ds_dI)
        ctx.record = record
        return spikes.clone()

    @staticmethod
    def backward(ctx, grad):
        (ds_dI,) = ctx.saved_tensors
        ctx.record(grad)
        return grad * ds_dI, None, None, None, None


class NeuronUnit:
    """One neuron layer of a chain: its kernels, parameters, carried states and the tangent step.

    Values are ``[B, n]`` (n neurons per sample); the tangent step sees them as ``[B, n, 1]`` against tangents
    ``[B, n, D]`` (D directions), or as ``[c, B, 1]`` against per-synapse traces ``[c, B, n_in]``.
    """

    def __init__(self, layer: Neuron):
        self.layer = layer
        self.states: list[torch.Tensor] | None = None
        self.feature_shape: tuple[int, ...] | None = None
        self.compiled = None
        self._params_cache: dict[str, tuple] = {}

    # -- per-call setup -----------------------------------------------------------------------------
    def setup(self, current: torch.Tensor) -> None:
        """Kernels and initial states for steps of ``current`` [B, *features] (once per sequence)."""
        layer = self.layer
        self.batch, self.feature_shape = current.shape[0], tuple(current.shape[1:])
        self.n = int(torch.tensor(self.feature_shape).prod()) if self.feature_shape else 1
        device = current.device
        self.cdt = compute_dtype(current.dtype)
        flat = [layer_io.flat_param(layer, p, self.feature_shape, device) for p in layer.spec.params]
        self.vector = tuple(v for _, v in flat)
        self.options = layer.kernel_options(self.vector, current.dtype)
        self.learnable = [p for p in self.options.learnable if p != ALPHA] + (
            [ALPHA] if ALPHA in self.options.learnable else [])
        self.compiled = compile_spec(layer.spec, self.options)
        self._synapse_compiled = None
        self._params_cache = {}
        self.backend = self._backend(device)
        shape = (self.batch, *self.feature_shape)
        like = current.detach().to(self.cdt)
        self.states = [layer_io.initial_state(layer, s, d, shape, self.batch * self.n, None, like)
                       .detach().to(self.cdt).reshape(self.batch, self.n)
                       for s, d in zip(layer.spec.states, layer.spec.state_defaults)]

    def _backend(self, device) -> str:
        """The layer's backend; with backend='auto' one that has a tangent kernel (else the torch backend)."""
        name = dispatch.resolve_backend(self.layer.backend, device)
        try:
            self.compiled.tangent_module(name)
        except BackendError as err:
            if err.code != "ND310" or self.layer.backend != "auto":
                raise
            name = "torch"
        return name

    def starts_at(self, name: str) -> list[int]:
        """The states whose initial value is parameter ``name`` (their sensitivity to it starts at 1)."""
        return [m for m, d in enumerate(self.layer.spec.state_defaults) if d == name]

    def param_tensor(self, name: str) -> torch.Tensor:
        """The learnable tensor behind ``name`` (``_alpha``: the surrogate's alpha)."""
        return self.layer.surrogate_alpha if name == ALPHA else self.layer.param_value(name)

    def flat_param(self, name: str) -> torch.Tensor:
        """``name`` as [n] (per neuron) or [1], differentiable w.r.t. the layer's tensor."""
        if name == ALPHA:
            return self.layer.surrogate_alpha.reshape(1)
        return layer_io.flat_param(self.layer, name, self.feature_shape, self.param_tensor(name).device)[0]

    def versions(self) -> tuple:
        """Identity, storage and version of every parameter tensor: changes when one is replaced or updated in
        place (as optimizers and ``torch.no_grad()`` updates do; an update through ``.data`` is seen at the next
        ``rule.reset()``). The caches that compare them keep the tensors alive, so an id is not reused meanwhile."""
        return tuple((id(t), t.data_ptr(), t._version)
                     for t in map(self.param_tensor, (*self.layer.spec.params, ALPHA)))

    def params(self, layout: str = "bn") -> list[torch.Tensor]:
        """Every kernel parameter (spec params, then alpha), detached, shaped to broadcast against values
        ``[B, n, 1]`` (layout 'bn'), ``[n, B, 1]`` (layout 'nb') or ``[B, n]`` (layout 'd': directions lead the
        tangents); reused while no parameter changes."""
        key = self.versions()
        cached = self._params_cache.get(layout)
        if cached is not None and cached[0] == key:
            return cached[1]
        out = []
        for name in (*self.layer.spec.params, ALPHA):
            p = self.flat_param(name).detach().to(self.cdt)
            if p.numel() > 1:
                p = p.reshape({"bn": (-1, 1), "nb": (-1, 1, 1), "d": (-1,)}[layout])
            out.append(p)
        self._params_cache[layout] = (key, out, [self.param_tensor(n) for n in (*self.layer.spec.params, ALPHA)])
        return out

    # -- stepping ---------------------------------------------------------------------------------------
    def tangent_step(self, prev, current, params, tangent_prev, tangent_current, tangent_params):
        """The generated step: (spike, new states, spike tangent, state tangents) on broadcast shapes."""
        return self.compiled.tangent_step(self.backend, prev, [current], params, tangent_prev, [tangent_current],
                                          tangent_params)

    def synapse_step(self, prev, current, params, tangent_prev, tangent_current):
        """The generated step with tangents of the states and the input only: the kernel compiled without
        learnable parameters, so a per-synapse trace pays no product with a zero parameter tangent."""
        if self._synapse_compiled is None:
            self._synapse_compiled = compile_spec(self.layer.spec, dataclasses.replace(self.options, learnable=()))
        return self._synapse_compiled.tangent_step(self.backend, prev, [current], params, tangent_prev,
                                                   [tangent_current], [])

    def values(self, current: torch.Tensor) -> torch.Tensor:
        """The input current [B, *features] as [B, n] in the compute dtype, without its graph."""
        if self.states is None or current.shape[0] != self.batch or tuple(current.shape[1:]) != self.feature_shape:
            if self.states is not None:
                raise OnlineError("ND905", f"{type(self.layer).__name__}: a step of shape {tuple(current.shape)} "
                                           f"after steps of {(self.batch, *self.feature_shape)}; call rule.reset() "
                                           "before a new sequence (or batch size)")
            self.setup(current)
        return current.detach().to(self.cdt).reshape(self.batch, self.n)

    def output(self, current, spikes, ds_dI, record, anchor) -> torch.Tensor:
        """The spikes [B, *features] in ``current``'s dtype, with the same-step gradient path (``anchor``: a
        tensor requiring grad, so the spikes join the loss's graph even when nothing before them learns)."""
        shape = current.shape
        s = spikes.reshape(shape).to(current.dtype)
        return InstantSpike.apply(current, s, ds_dI.reshape(shape).to(current.dtype), record, anchor)


def accumulate(tensor: torch.Tensor, grad: torch.Tensor) -> None:
    """Add ``grad`` into ``.grad`` of the leaf behind ``tensor`` (an expanded/reshaped view is reduced by autograd)."""
    if not tensor.requires_grad:
        return
    grad = grad.to(tensor.dtype)
    if tensor.is_leaf and grad.shape == tensor.shape:         # the common case, without an autograd call
        tensor.grad = grad.clone() if tensor.grad is None else tensor.grad.add_(grad)
    else:
        torch.autograd.backward([tensor], [grad])
