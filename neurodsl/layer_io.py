"""A layer call's tensors, checked and flattened: what the dispatcher and the kernels take.

:func:`prepare` turns ``layer(*inputs, state=...)`` into a :class:`Call` — inputs [T, N], initial states [N],
parameters [1] or [N] plus the surrogate's alpha — raising the documented ``InputError`` for anything that does
not fit (wrong rank, dtype, device, shape; an unknown name in ``state=``; a carried state of another shape).
``Neuron.forward`` and ``TimeSplit`` both use it.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from .errors import InputError


@dataclass
class Call:
    """One layer call, flattened: ``T`` steps of ``n = prod(shape)`` neurons."""

    T: int
    shape: tuple[int, ...]
    n: int
    single: bool                  # single-step mode: the caller passed [*shape], gets [*shape] back
    inputs: list[torch.Tensor]    # [T, n] each, in the caller's dtype
    init: list[torch.Tensor]      # [n] each, one per state
    params: list[torch.Tensor]    # [1] or [n] each, then the surrogate's alpha [1]
    vector: tuple[bool, ...]      # per spec parameter: one value per neuron

    @property
    def dtype(self) -> torch.dtype:
        return self.inputs[0].dtype

    @property
    def device(self) -> torch.device:
        return self.inputs[0].device


def prepare(layer, inputs, state: dict | None, allow_empty: bool = False) -> Call:
    """Check and flatten ``layer(*inputs, state=state)`` (see the module docstring); ``allow_empty`` admits T = 0
    (a time chunk that got no steps)."""
    name = type(layer).__name__
    xs = check_inputs(layer, inputs)
    single = layer.step_mode == "s"
    if single:
        xs = [x.unsqueeze(0) for x in xs]
    if xs[0].dim() < 1 or (not single and inputs[0].dim() < 1):
        raise InputError("ND401", f"{name}: expected [T, *shape], got {tuple(inputs[0].shape)}")
    T, shape = xs[0].shape[0], tuple(xs[0].shape[1:])
    if T == 0 and not allow_empty:
        raise InputError("ND404", f"{name}: the time dimension is 0")
    n = math.prod(shape)
    device = xs[0].device
    flat = [flat_param(layer, p, shape, device) for p in layer.spec.params]
    params = [p for p, _ in flat] + [layer.surrogate_alpha.reshape(1)]
    check_state_names(layer, state)
    init = [initial_state(layer, s, d, shape, n, state, xs[0])
            for s, d in zip(layer.spec.states, layer.spec.state_defaults)]
    flat_xs = xs if len(shape) == 1 else [x.reshape(T, n) for x in xs]
    return Call(T, shape, n, single, flat_xs, init, params, tuple(v for _, v in flat))


def check_inputs(layer, inputs) -> list[torch.Tensor]:
    name = type(layer).__name__
    if len(inputs) != len(layer.spec.inputs):
        raise InputError("ND402", f"{name} takes {len(layer.spec.inputs)} input(s) "
                                  f"({', '.join(layer.spec.inputs)}), got {len(inputs)}")
    for x in inputs:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise InputError("ND405", f"{name}: inputs must be floating tensors, got "
                                      f"{getattr(x, 'dtype', type(x).__name__)}")
    first = inputs[0]
    for x in inputs[1:]:
        if x.shape != first.shape or x.device != first.device or x.dtype != first.dtype:
            raise InputError("ND403", f"{name}: inputs differ in shape/device/dtype")
    return list(inputs)


def flat_param(layer, name: str, shape, device):
    """Parameter ``name`` for ``prod(shape)`` neurons: ``([1] tensor, False)`` or ``([N] tensor, True)``."""
    p = layer.param_value(name)
    if p.device != device:
        raise InputError("ND406", f"{type(layer).__name__}: parameter '{name}' is on {p.device}, input on {device}")
    if p.numel() == 1:
        return p.reshape(1), False
    try:
        ok = torch.broadcast_shapes(p.shape, shape) == torch.Size(shape)
    except RuntimeError:
        ok = False
    if not ok:
        raise InputError("ND407", f"{type(layer).__name__}: parameter '{name}' of shape {tuple(p.shape)} does not "
                                  f"broadcast against the per-step shape {shape}")
    return p.expand(shape).reshape(-1), True


def check_state_names(layer, state: dict | None) -> None:
    if state is None:
        return
    if not isinstance(state, dict):
        raise InputError("ND410", f"{type(layer).__name__}: state= takes a dict of state name -> tensor, got "
                                  f"{type(state).__name__}")
    unknown = [k for k in state if k not in layer.spec.states]
    if unknown:
        raise InputError("ND410", f"{type(layer).__name__}: state= names {', '.join(map(repr, unknown))}, which "
                                  f"{'is' if len(unknown) == 1 else 'are'} no state (states: "
                                  f"{', '.join(layer.spec.states)})")


def initial_state(layer, name, default, shape, n, given, like) -> torch.Tensor:
    """State ``name``'s [n] start: from ``given`` (the ``state=`` argument), the carried state, or its default."""
    cls = type(layer).__name__
    if given and name in given:
        value = given[name]
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = torch.tensor(float(value), device=like.device)
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise InputError("ND410", f"{cls}: state={{'{name}': ...}} must be a number or a floating tensor, got "
                                      f"{getattr(value, 'dtype', type(value).__name__)}")
        value = value.to(like.device)
        if value.numel() == 1:
            return value.reshape(1).expand(n)
        try:
            return value.expand(shape).reshape(n)
        except RuntimeError:
            raise InputError("ND410", f"{cls}: state={{'{name}': ...}} of shape {tuple(value.shape)} does not "
                                      f"broadcast against the per-step shape {shape}") from None
    carried = layer.state_value(name)
    if carried is not None:
        if carried.dim() == 0:  # a number assigned to layer.<state>: every neuron starts from it
            return carried.to(like.device).reshape(1).expand(n)
        if tuple(carried.shape) != shape:
            raise InputError("ND408", f"{cls}: carried state '{name}' has shape {tuple(carried.shape)}, input per "
                                      f"step {shape}; call reset_state()")
        if not torch.compiler.is_compiling() and carried.is_inference() and torch.is_grad_enabled():
            carried = carried.clone()  # carried out of torch.inference_mode: a plain tensor from here on
        return carried.reshape(n)
    if isinstance(default, str):
        flat, vec = flat_param(layer, default, shape, like.device)
        return flat if vec else flat.expand(n)
    return torch.full((n,), float(default), device=like.device)
