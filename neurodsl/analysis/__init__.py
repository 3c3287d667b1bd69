"""Pure, memoised analyses of a :class:`~neurodsl.spec.NeuronSpec`.

* :mod:`.derive` — forward and backward step programs, what to save: a ``KernelPlan``.
* :mod:`.linearity` — classification of the reset-free dynamics (for parallel forms).
* :mod:`.report` — the human-readable report ``Neuron.analysis()`` prints.
"""
from .derive import KernelOptions, derive_plan, plan_key
from .linearity import LinearityVerdict, ResetVerdict, classify, classify_as_written
from .report import AnalysisReport, analyse

__all__ = ["KernelOptions", "derive_plan", "plan_key", "LinearityVerdict", "ResetVerdict", "classify", "classify_as_written", "AnalysisReport", "analyse"]
