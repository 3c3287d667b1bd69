"""Former home of the printers and DSL helpers; they live in :mod:`kernels_gen.backends` (per backend),
:mod:`kernels_gen.printing` and :mod:`kernels_gen.functions` now. Kept while callers move."""
from .backends.torch.printer import TorchPrinter  # noqa: F401
from .backends.triton.printer import TritonPrinter  # noqa: F401
from .functions import fold_constants, sigmoid  # noqa: F401
