"""neurodsl: write a spiking neuron's charge / fire / reset equations once, get fused Triton and torch
kernels with derived gradients, wrapped as an ``nn.Module``.

>>> import torch, neurodsl as nd
>>> layer = nd.zoo.ALIF()
>>> layer(torch.randn(4, 2, 3)).shape
torch.Size([4, 2, 3])
"""
from . import containers, online, psn, surrogate, zoo
from .containers import SeqToBatch, StepLoop, replace_lif_nodes
from .errors import (BackendError, CacheError, CodegenError, DistributedError, InputError, NeuroDSLError, NIRError,
                     OnlineError, SpecError, UsageError)
from .functional import detach_states, neurons, reset_states, set_step_mode
from .mathfns import (atan, clamp, cos, eq, erf, erfc, exp, log, maximum, minimum, ne, relu, sigmoid, sin, sqrt,
                      tanh, where)
from .neuron import Neuron
from .reference import reference_run
from .spec import NeuronSpec, Param, State

__version__ = "0.1.0"

__all__ = ["containers", "online", "OnlineError", "SeqToBatch", "StepLoop", "replace_lif_nodes", "psn", "Neuron", "State", "Param", "NeuronSpec", "surrogate", "zoo", "reference_run", "reset_states",
           "detach_states", "set_step_mode", "neurons", "NeuroDSLError", "SpecError", "InputError",
           "BackendError", "CacheError", "CodegenError", "DistributedError", "NIRError", "UsageError", "exp", "log", "sqrt", "sigmoid", "tanh", "relu", "clamp", "minimum",
           "maximum", "where", "eq", "ne", "erf", "erfc", "atan", "sin", "cos"]
