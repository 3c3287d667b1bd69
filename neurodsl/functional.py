"""Model-wide helpers (SpikingJelly's ``functional`` counterparts).

>>> import torch, neurodsl as nd
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), nd.zoo.LIF())
>>> _ = net(torch.ones(5, 2, 3))
>>> reset_states(net)
>>> net[1].v is None
True
"""
from __future__ import annotations

from torch import nn

from .errors import Problem, SpecError
from .neuron import Neuron


def neurons(model: nn.Module):
    """Every neurodsl neuron in ``model``."""
    return [m for m in model.modules() if isinstance(m, Neuron)]


def _stateful(model: nn.Module):
    """Neurons, and neurodsl modules that carry state of their own (a recurrent NIRGraphModule's loop edges).

    Those declare ``carries_state = True``; a user's module with a ``reset_state`` that calls
    :func:`reset_states` on itself is not called back.
    """
    return [m for m in model.modules() if isinstance(m, Neuron) or getattr(type(m), "carries_state", False)]


def reset_states(model: nn.Module) -> None:
    """Reset the carried states of every neuron in ``model`` (and of a recurrent ``NIRGraphModule``)."""
    for m in _stateful(model):
        m.reset_state()


def detach_states(model: nn.Module) -> None:
    """Detach the carried states of every neuron in ``model`` (and of a recurrent ``NIRGraphModule``)."""
    for m in _stateful(model):
        m.detach_state()


def set_step_mode(model: nn.Module, step_mode: str) -> None:
    """Switch every neuron in ``model`` to 'm' (multi-step) or 's' (single-step).

    Neurons inside a :class:`~neurodsl.containers.StepLoop` stay single-step: the loop feeds them one step
    at a time whatever the rest of the model does.
    """
    from .containers import StepLoop
    if step_mode not in ("m", "s"):
        raise SpecError([Problem("ND124", type(model).__name__, "set_step_mode", "step_mode",
                                 f"step_mode={step_mode!r}: use 'm' or 's'")])
    looped = {id(m) for loop in model.modules() if isinstance(loop, StepLoop) for m in neurons(loop)}
    for m in neurons(model):
        if id(m) not in looped:
            m.step_mode = step_mode
