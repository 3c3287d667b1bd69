"""The one glue function: spec + kernel options -> compiled kernels (memoised in-process).

>>> import neurodsl as nd
>>> from neurodsl.analysis import KernelOptions
>>> c = compile_spec(nd.zoo.IF.spec, KernelOptions(nd.surrogate.ATan()))
>>> c is compile_spec(nd.zoo.IF.spec, KernelOptions(nd.surrogate.ATan()))
True
"""
from __future__ import annotations

import functools

from kernels_gen.ops import CompiledNeuron
from kernels_gen.parallel import CompiledParallel

from .analysis import KernelOptions, derive_plan, plan_key
from .analysis.tangent import derive_tangent_plan
from .analysis.parallel import parallel_plan
from .spec import NeuronSpec


@functools.lru_cache(maxsize=1024)
def compile_spec(spec: NeuronSpec, options: KernelOptions) -> CompiledNeuron:
    """Kernels for ``spec`` under ``options``; nothing is derived until a cache miss needs it."""
    return CompiledNeuron(spec.name, plan_key(spec, options), lambda: derive_plan(spec, options),
                          build_tangent_plan=lambda: derive_tangent_plan(spec, options))


@functools.lru_cache(maxsize=1024)
def compile_parallel(spec: NeuronSpec, options: KernelOptions) -> CompiledParallel:
    """The parallel-form coefficient module of ``spec`` (callers check the verdict first)."""
    return CompiledParallel(spec.name, plan_key(spec, options), lambda: parallel_plan(spec, options))
