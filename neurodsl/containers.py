"""Containers for multi-step models, and swapping SpikingJelly's LIFNode for neurodsl's LIF.

A multi-step model passes ``[T, N, ...]`` tensors between layers. Stateless layers (Conv2d, BatchNorm,
pooling, Flatten, ...) know nothing about T, so :class:`SeqToBatch` merges T into the batch, applies
them once and splits T off again (SpikingJelly's ``SeqToANNContainer``). :class:`StepLoop` goes the
other way: it calls single-step modules once per step and stacks the outputs (``MultiStepContainer``).

>>> import torch, neurodsl as nd
>>> net = torch.nn.Sequential(
...     SeqToBatch(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4)),
...     nd.zoo.LIF(),
...     SeqToBatch(torch.nn.MaxPool2d(2), torch.nn.Flatten()))
>>> net(torch.rand(6, 2, 1, 8, 8)).shape      # [T, B, C, H, W] -> [T, B, 4 * 4 * 4]
torch.Size([6, 2, 64])
>>> StepLoop(nd.zoo.LIF(step_mode="s"))(torch.rand(6, 2, 3)).shape
torch.Size([6, 2, 3])
"""
from __future__ import annotations

import torch
from torch import nn

from .zoo import LIF

__all__ = ["SeqToBatch", "StepLoop", "replace_lif_nodes"]


class SeqToBatch(nn.Sequential):
    """``nn.Sequential`` of stateless layers applied to ``[T, N, ...]`` as one ``[T * N, ...]`` batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x.flatten(0, 1))
        return y.unflatten(0, x.shape[:2])


class StepLoop(nn.Sequential):
    """``nn.Sequential`` of single-step modules called on each step of ``[T, ...]``; outputs stacked over T."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([super(StepLoop, self).forward(x_t) for x_t in x])




def replace_lif_nodes(model: nn.Module, **overrides) -> nn.Module:
    """Replace every ``spikingjelly.activation_based.neuron.LIFNode`` in ``model`` by an equal ``nd.zoo.LIF``.

    Each node becomes ``nd.zoo.LIF.from_spikingjelly(node, **overrides)``, which reads ``tau``,
    ``decay_input``, ``v_threshold`` and ``v_reset`` (``None``: soft reset); :func:`spikingjelly_options`
    reads ``detach_reset``, ``step_mode``, ``store_v_seq`` and the surrogate (same name and alpha).
    ``overrides`` go to every new LIF (e.g. ``learnable=("tau",)``, ``backend="torch"``, ``surrogate=...``).
    Modifies ``model`` in place and returns it. SpikingJelly is imported here only. Raises
    :class:`~neurodsl.errors.SpecError` ND133 for a surrogate no neurodsl surrogate equals (unless
    ``surrogate=`` is given).
    """
    from spikingjelly.activation_based.neuron import LIFNode

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is LIFNode:
                setattr(parent, name, LIF.from_spikingjelly(child, **overrides))
    return model


