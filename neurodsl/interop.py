"""Parameter helpers for mapping neurons to and from other tools (NIR, SpikingJelly).

The zoo's mapping methods (``nir_node``, ``from_nir_node``, ``from_spikingjelly``) use these, and so can a
user's own neuron class; ``neurodsl.nir_io`` and ``neurodsl.containers`` do the graph and model walking.
This module imports nothing of neurodsl but its errors and surrogates, so the zoo can import it.

>>> allclose([2.0, 2.000001], 2.0), param_from_array("tau", [2.0, 2.0])
(True, 2.0)
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from . import surrogate as sg
from .errors import NIRError, Problem, SpecError

__all__ = ["param_arrays", "param_from_array", "allclose", "require", "spikingjelly_options"]

_RTOL, _ATOL = 1e-5, 1e-8  # how close an imported parameter must be to the value a mapping requires

#: SpikingJelly surrogates with the same formula (and the same alpha) as neurodsl's of that name.
_SAME_SURROGATES = ("Sigmoid", "ATan", "PiecewiseQuadratic", "PiecewiseExp", "SoftSign", "Erf", "Rect")


def param_arrays(layer, shape: Sequence[int]) -> dict[str, np.ndarray]:
    """Every parameter of ``layer`` as a float64 array of the per-sample ``shape`` (the values NIR stores).

    For a neuron's ``nir_node(shape, dt)``. Raises :class:`NIRError` ND501 for a parameter that does not
    broadcast to ``shape`` (one value per neuron).

    >>> import neurodsl as nd
    >>> p = param_arrays(nd.zoo.LIF(tau=torch.tensor([2.0, 4.0])), (2,))
    >>> p["tau"], p["v_th"]
    (array([2., 4.]), array([1., 1.]))
    """
    shape = tuple(shape)
    arrays = {}
    for name in layer.spec.params:
        value = layer.param_value(name).detach().to("cpu", torch.float64)
        while value.dim() > len(shape) and value.shape[0] == 1:
            value = value[0]
        try:
            arrays[name] = np.broadcast_to(value.numpy(), shape).copy()
        except ValueError:
            raise NIRError("ND501", f"parameter '{name}' of shape {tuple(value.shape)} is not per neuron of "
                                    f"shape {shape}") from None
    return arrays


def param_from_array(name: str, values) -> float | torch.Tensor:
    """A neuron parameter from a NIR array: a number if all neurons agree, else a float32 tensor without the
    axes along which values are constant (so a ``[C, 1, 1]`` per-channel parameter keeps that shape).

    For a neuron's ``from_nir_node``; ``name`` is for the ND502 error a non-finite value raises.

    >>> param_from_array("tau", [2.0, 2.0]), param_from_array("tau", [[2.0, 3.0], [2.0, 3.0]])
    (2.0, tensor([2., 3.]))
    """
    a = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise NIRError("ND502", f"'{name}' is not finite")
    if a.size and np.all(a == a.flat[0]):
        return float(a.flat[0])
    for axis in range(a.ndim):
        if np.all(a == np.take(a, [0], axis=axis)):
            a = np.take(a, [0], axis=axis)
    while a.ndim and a.shape[0] == 1:
        a = a[0]
    return torch.tensor(a, dtype=torch.float32)


def allclose(a, b) -> bool:
    """Whether ``a`` and ``b`` agree in float64 within the import tolerance (``rtol=1e-5``, ``atol=1e-8``).

    For a neuron's ``from_nir_node``, to check that a node's parameters fit the class's mapping.

    >>> allclose([1.0, 2.0], 1.0), allclose([2.0, 2.000001], 2.0)
    (False, True)
    """
    return bool(np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=_RTOL, atol=_ATOL))


def require(ok: bool, node, cls: type, rule: str) -> None:
    """Raise :class:`NIRError` ND502 unless ``ok``: ``node`` needs ``rule`` to map to the neuron class ``cls``.

    >>> import pytest, numpy as np; nir = pytest.importorskip("nir")
    >>> import neurodsl as nd
    >>> require(False, nir.IF(r=np.ones(2), v_threshold=np.ones(2)), nd.zoo.IF, "r = 1/dt")
    Traceback (most recent call last):
    neurodsl.errors.NIRError: [ND502] nir.IF needs r = 1/dt to map to neurodsl's IF
    """
    if not ok:
        raise NIRError("ND502", f"nir.{type(node).__name__} needs {rule} to map to neurodsl's {cls.__name__}")


def spikingjelly_options(node, **overrides) -> dict:
    """The ``nd.Neuron`` options equal to a SpikingJelly neuron node's, then ``overrides``.

    Reads ``detach_reset``, ``step_mode``, ``store_v_seq`` (as ``store_state_seqs``) and the surrogate
    (the neurodsl surrogate of the same name and alpha, unless ``overrides`` has ``surrogate``); raises
    :class:`~neurodsl.errors.SpecError` ND133 when no neurodsl surrogate equals it. A zoo class's
    ``from_spikingjelly`` adds the neuron's own parameters.
    """
    options = dict(detach_reset=bool(node.detach_reset), step_mode=node.step_mode,
                   store_state_seqs=bool(getattr(node, "store_v_seq", False)))
    if "surrogate" not in overrides:
        fn = node.surrogate_function
        name = type(fn).__name__
        if name not in _SAME_SURROGATES or not getattr(fn, "spiking", True):
            raise SpecError([Problem("ND133", type(node).__name__, "surrogate_function", name,
                                     f"no neurodsl surrogate equals SpikingJelly's {name}; "
                                     "pass surrogate=nd.surrogate.<...>")])
        options["surrogate"] = getattr(sg, name)(alpha=float(fn.alpha))
    return {**options, **overrides}
