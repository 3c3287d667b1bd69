"""Backends: one folder each (printer, context builder, templates, launcher), registered here by name.

``backend='auto'`` picks, per device, the available backend with the highest ``auto_priority``; a new backend
registers itself with :func:`register` and needs no change anywhere else.

>>> import torch
>>> names()
('torch', 'triton', 'c')
>>> choose_auto(torch.device("cpu")).name in ("c", "torch")   # c where a working C compiler was found
True
"""
from __future__ import annotations

import torch

from ..errors import BackendError
from .base import Backend

_BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Add ``backend`` under ``backend.name`` (its printer must print every registry function)."""
    backend.printer().check_registry()
    _BACKENDS[backend.name] = backend
    return backend


def names() -> tuple[str, ...]:
    """Every registered backend name."""
    return tuple(_BACKENDS)


def get(name: str) -> Backend:
    try:
        return _BACKENDS[name]
    except KeyError:
        raise BackendError("ND305", f"no backend named {name!r}; registered: {', '.join(_BACKENDS)}") from None


def choose_auto(device: torch.device) -> Backend:
    """The backend ``backend='auto'`` runs on ``device``: the available one with the highest priority."""
    ranked = [(b.auto_priority(device), b) for b in _BACKENDS.values()]
    ranked = [(p, b) for p, b in ranked if p is not None and b.unavailable(device) is None]
    return max(ranked, key=lambda pb: pb[0])[1]


def check(name: str, device: torch.device) -> Backend:
    """The backend ``name``, or its typed error when it cannot run tensors on ``device``."""
    backend = get(name)
    error = backend.unavailable(device)
    if error is not None:
        raise error
    return backend


from .torch import TorchBackend  # noqa: E402
from .triton import TritonBackend  # noqa: E402
from .c import CBackend  # noqa: E402

register(TorchBackend())
register(TritonBackend())
register(CBackend())
