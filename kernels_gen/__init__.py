"""kernels_gen: the back end. A :class:`~kernels_gen.plan.KernelPlan` (sympy step equations, names,
dtypes) becomes Triton and torch source through printers and Jinja2 templates, is cached on disk by
content hash, and runs as a torch autograd op. It never imports ``neurodsl``."""
from .plan import Assign, KernelPlan, ParamPlan

__all__ = ["Assign", "KernelPlan", "ParamPlan"]
