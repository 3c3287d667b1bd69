"""Peak tensor memory of a piece of code (CPU allocations are invisible to ``tracemalloc``).

>>> import torch
>>> peak_memory(lambda: [torch.ones(1000) for _ in range(3)])   # three tensors of 4000 bytes, alive together
12000
"""
from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class PeakTensorMemory(TorchDispatchMode):
    """Follows every storage the ops allocate while active, until it is freed; ``peak``: the most bytes alive at
    once (tensors allocated before the mode, and temporaries inside one fused op, are not counted)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.refs: dict[int, weakref.ref] = {}

    def _free(self, key: int, nbytes: int) -> None:
        self.refs.pop(key, None)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outputs = (out,) if isinstance(out, torch.Tensor) else out if isinstance(out, (tuple, list)) else ()
        inputs = None
        for t in outputs:
            if isinstance(t, torch.Tensor) and not t._is_view():
                storage = t.untyped_storage()
                key, nbytes = storage.data_ptr(), storage.nbytes()
                if key and key not in self.refs:
                    if inputs is None:   # an output on an input's storage (detach, add_, ...) allocated nothing
                        inputs = {a.untyped_storage().data_ptr() for a in tree_flatten((args, kwargs))[0]
                                  if isinstance(a, torch.Tensor)}
                    if key in inputs:
                        continue
                    self.live += nbytes
                    self.peak = max(self.peak, self.live)
                    self.refs[key] = weakref.ref(storage, lambda _, key=key, nbytes=nbytes: self._free(key, nbytes))
        return out


def peak_memory(fn) -> int:
    """The peak bytes of tensors alive at once while ``fn()`` runs (those it creates). Every op passes through
    Python while measuring, so ``fn`` runs several times slower."""
    with PeakTensorMemory() as mode:
        fn()
    return mode.peak
