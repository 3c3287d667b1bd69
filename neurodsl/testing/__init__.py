"""Testing tools: one reference check, a firing-rate input generator, and hypothesis strategies.

* :func:`check_against_reference` compares a layer (any backend, device, dtype) with
  :func:`neurodsl.reference_run`, forward and every gradient, and returns a :class:`CheckResult`;
  near-threshold spike flips are counted and bounded, not skipped (see :mod:`neurodsl.testing.check`).
  :func:`inputs_for` draws inputs at a target firing rate, :func:`initial_states` initial states,
  :func:`layer_for_check` a neuron with its class's ``check_kwargs`` and everything learnable.
* :func:`neurons`, :func:`layers`, :func:`cases` and :func:`invalid_neurons` are hypothesis
  strategies (:mod:`neurodsl.testing.strategies`; they need ``hypothesis``, imported on first use).
* ``python -m neurodsl.testing --examples N [--backend torch|triton] [--device cpu|cuda] [--seed S]
  [--out FILE.json]`` runs the fuzzing campaign (:mod:`neurodsl.testing.fuzzing`).

>>> import neurodsl as nd
>>> layer = layer_for_check(nd.zoo.Izhikevich, backend="torch")
>>> layer.a.item(), layer.a.requires_grad           # Izhikevich.check_kwargs: a=0.5, b=0.2
(0.5, True)
>>> check_against_reference(layer, *inputs_for(layer, 6, (3, 40))).assert_ok().flips
0
"""
from .check import (TOLERANCES, CheckResult, Tolerance, check_against_reference, firing_rate, initial_states,
                    inputs_for, layer_for_check, tolerance)

__all__ = ["check_against_reference", "CheckResult", "TOLERANCES", "Tolerance", "tolerance", "inputs_for",
           "firing_rate", "initial_states", "layer_for_check", "neurons", "layers", "cases", "invalid_neurons",
           "campaign"]

_LAZY = {"neurons": "strategies", "layers": "strategies", "cases": "strategies", "invalid_neurons": "strategies",
         "DEFECTS": "strategies", "describe": "strategies", "campaign": "fuzzing"}


def __getattr__(name):
    """Strategies and the campaign import hypothesis, so they load on first use."""
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
