"""The one exception hierarchy of neurodsl, rooted here so both packages share it.

Every error has a stable ``code`` (``ND`` + three digits). Tests assert codes,
never message text. The front end (``neurodsl.errors``) re-exports these.

>>> from kernels_gen.errors import CodegenError
>>> CodegenError("ND201", "no printer for 'foo'").code
'ND201'
"""
from __future__ import annotations


class NeuroDSLError(Exception):
    """Base class: ``code`` is stable, ``str(err)`` reads '[ND101] ...'."""

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(f"[{code}] {message}")


class SpecError(NeuroDSLError):
    """The neuron spec is invalid (raised when the class is defined)."""


class CodegenError(NeuroDSLError):
    """An expression cannot be printed for a backend."""


class BackendError(NeuroDSLError):
    """The requested backend cannot run here (e.g. Triton on CPU without the interpreter)."""


class InputError(NeuroDSLError):
    """Tensors handed to a module do not fit it (rank, device, dtype, ...)."""


class CacheError(NeuroDSLError):
    """The on-disk kernel cache could not be used."""
