"""Compiled kernels by key, so a torch op or code that torch.compile traces reaches them from a string.

>>> from types import SimpleNamespace
>>> kernels = Registry("compiled neuron")
>>> kernels.add(SimpleNamespace(key="abc", name="LIF")).name
'LIF'
>>> kernels.get("abc").name
'LIF'
"""
from __future__ import annotations

from .errors import BackendError


class Registry:
    """Objects with a ``key`` attribute, registered by the front end when a layer first needs them."""

    def __init__(self, what: str):
        self.what, self._items = what, {}

    def add(self, item):
        """Register ``item`` under ``item.key``; returns it."""
        self._items[item.key] = item
        return item

    def get(self, key: str):
        """The item registered under ``key``; ``BackendError`` ND304 when this process has none."""
        try:
            return self._items[key]
        except KeyError:
            raise BackendError("ND304", f"no {self.what} is registered under key '{key}' in this process; "
                                        "run the layer once (or build it) before loading a compiled graph") from None
