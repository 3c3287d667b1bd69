"""A naive per-step PyTorch reference loop, independent of the code generator.

It calls the neuron's own ``charge`` / ``fire`` / ``reset`` methods on torch tensors
(neurodsl's math functions dispatch to torch), uses autograd for every gradient, and
spikes Θ(u) whose gradient is autograd's derivative of the surrogate's primitive g.
Use it to check any neuron, zoo or your own.

>>> import torch, neurodsl as nd
>>> layer = nd.zoo.LIF()
>>> x = torch.rand(8, 5) * 2
>>> spikes, states = reference_run(layer, x)
>>> torch.equal(spikes, layer(x))
True
"""
from __future__ import annotations

import torch

from .neuron import Neuron


class _TensorSelf:
    def __init__(self, values: dict, options: dict):
        self.__dict__.update(options)
        self.__dict__.update(values)


class _SurrogateSpike(torch.autograd.Function):
    """Θ(u) forward (exactly 0 or 1; Θ(NaN) = 0), the surrogate's gradient backward.

    The gradient is autograd's derivative of the surrogate's primitive when it has one, else its declared
    ``gradient``. A straight-through ``Θ(u) + (g − g.detach())`` is the same in exact arithmetic, but a
    compiler may fuse ``g − g`` into a multiply-add that leaves a rounding error instead of 0.
    """

    @staticmethod
    def forward(ctx, u, alpha, surrogate):
        ctx.save_for_backward(u, alpha)
        ctx.surrogate = surrogate
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        u, alpha = ctx.saved_tensors
        sg, nan = ctx.surrogate, torch.isnan(u)
        grad = torch.where(nan, torch.zeros_like(grad), grad)           # no spike at NaN, and no gradient
        with torch.enable_grad():
            u_ = torch.where(nan, torch.zeros_like(u), u).detach().requires_grad_()
            a_ = alpha.detach().requires_grad_()
            if sg.has_primitive:
                du, dalpha = torch.autograd.grad(sg.primitive(u_, a_), (u_, a_), grad, allow_unused=True)
            else:
                du, dalpha = grad * sg.gradient(u_, a_).detach(), None
        return du, dalpha if ctx.needs_input_grad[1] else None, None


def spike_fn(layer: Neuron, u: torch.Tensor) -> torch.Tensor:
    """Θ(u) forward with the layer's surrogate gradient (or the smooth primitive in smooth mode)."""
    sg, alpha = layer.surrogate, layer.surrogate_alpha.to(device=u.device, dtype=u.dtype)
    if layer.smooth and sg.has_primitive:
        return sg.primitive(u, alpha)
    return _SurrogateSpike.apply(u, alpha, sg)


def reference_run(layer: Neuron, *inputs: torch.Tensor, init: dict | None = None, return_fire: bool = False):
    """Run ``layer``'s equations step by step over ``inputs`` ([T, *shape] each).

    Returns ``(spikes [T, *shape], {state: [T, *shape]})`` (plus the fire values [T, *shape] when
    ``return_fire``); differentiable w.r.t. inputs, ``init`` tensors and the layer's parameters.
    """
    spec, eq = layer.spec, type(layer)._equations
    options = dict(spec.options)
    dtype = inputs[0].dtype if inputs[0].dtype == torch.float64 else torch.float32
    xs = [x.to(dtype) for x in inputs]
    shape, device = xs[0].shape[1:], xs[0].device
    params = {p: layer.param_value(p).to(device=device, dtype=dtype) for p in spec.params}
    state = {}
    for name, default in zip(spec.states, spec.state_defaults):
        if init and name in init:
            value = init[name]
        elif isinstance(default, str):
            value = params[default]
        else:
            value = float(default)
        state[name] = torch.as_tensor(value, device=device).to(dtype).expand(shape)
    spikes, fires, seqs = [], [], {s: [] for s in spec.states}
    for t in range(xs[0].shape[0]):
        charged = dict(state)
        charged.update(eq["charge"](_TensorSelf({**state, **params}, options), *[x[t] for x in xs]))
        u = eq["fire"](_TensorSelf({**charged, **params}, options))
        s = spike_fn(layer, u)
        new = dict(charged)
        if "reset" in eq:
            s_reset = s.detach() if layer.detach_reset else s
            new.update(eq["reset"](_TensorSelf({**charged, **params}, options), s_reset))
        state = {k: torch.as_tensor(v, device=device).expand(shape) for k, v in new.items()}
        spikes.append(s.expand(shape))
        fires.append(torch.as_tensor(u, dtype=dtype, device=device).expand(shape))
        for k in spec.states:
            seqs[k].append(state[k])
    out = torch.stack(spikes).to(inputs[0].dtype), {k: torch.stack(v) for k, v in seqs.items()}
    return (*out, torch.stack(fires)) if return_fire else out
