"""What a layer holds between calls and what its constructor accepts: typed errors at the right moment.

Carried states follow the per-step shape exactly, ``layer.<state> = value`` sets the carried state (SpikingJelly's
habit), ``state=`` rejects unknown names and shapes, constructor arguments are validated with typed codes, and the
names a state or parameter may not take are derived from what an instance really sets.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import neurodsl as nd
from neurodsl import zoo
from neurodsl.neuron import INSTANCE_ATTRIBUTES, reserved_names


def code_of(fn):
    with pytest.raises(nd.NeuroDSLError) as info:
        fn()
    return info.value.code


def test_instance_attributes_list_what_an_instance_sets():
    layer = zoo.ALIF(learnable=("tau",))
    layer(torch.rand(3, 2))
    module_internals = set(vars(nn.Module()))
    assert set(vars(layer)) - module_internals <= INSTANCE_ATTRIBUTES
    assert {"surrogate_alpha"} <= set(layer._buffers) | set(layer._parameters)


@pytest.mark.parametrize("name", ["parallel", "max_iterations", "last_form", "last_route", "verdict", "forward",
                                  "state_seqs", "to"])
def test_a_parameter_named_like_a_module_attribute_fails_at_class_definition(name):
    assert name in reserved_names()
    with pytest.raises(nd.SpecError) as info:
        type("Clash", (nd.Neuron,), {"v": nd.State(0.0), name: nd.Param(1.0), "__module__": __name__,
                                     "charge": lambda self, x: {"v": self.v + x}, "fire": lambda self: self.v - 1.0})
    assert info.value.code == "ND103"


def test_carried_state_must_keep_the_per_step_shape():
    layer = zoo.LIF()
    layer(torch.rand(2, 3, 4))
    assert code_of(lambda: layer(torch.rand(2, 4, 3))) == "ND408"  # same number of neurons, another shape
    layer.reset_state()
    assert layer(torch.rand(2, 4, 3)).shape == (2, 4, 3)


def test_assigning_a_state_sets_the_carried_state():
    layer, reference = zoo.LIF(), zoo.LIF()
    x = torch.rand(5, 3) * 2
    start = torch.full((3,), 0.9)
    layer.v = start                                   # SpikingJelly: node.v = ...
    assert torch.equal(layer.v, start) and "v" not in vars(layer)
    assert torch.equal(layer(x), reference(x, state={"v": start}))
    layer.v = 0.5                                     # a number: every neuron
    assert torch.equal(layer(x), reference(x, state={"v": torch.full((3,), 0.5)}))
    assert code_of(lambda: setattr(layer, "v", "high")) == "ND410"


def test_state_argument_rejects_unknown_names_strings_and_shapes():
    layer = zoo.ALIF()
    x = torch.rand(4, 2, 3)
    assert code_of(lambda: layer(x, state={"vv": torch.zeros(2, 3)})) == "ND410"
    assert code_of(lambda: layer(x, state={"v": "zero"})) == "ND410"
    assert code_of(lambda: layer(x, state={"v": torch.zeros(5)})) == "ND410"
    assert code_of(lambda: layer(x, state=[torch.zeros(2, 3)])) == "ND410"
    assert layer(x, state={"v": 0.2, "a": torch.zeros(3)}).shape == (4, 2, 3)  # numbers and rows broadcast


def test_training_after_inference_mode_continues_from_the_carried_state():
    layer = zoo.LIF(learnable=("tau",))
    with torch.inference_mode():
        layer(torch.rand(3, 4))
    x = torch.rand(3, 4, requires_grad=True)
    layer(x).sum().backward()                          # no "Inference tensors cannot be saved for backward"
    assert layer.tau.grad is not None


def test_parameter_values_numpy_and_huge():
    assert zoo.LIF(tau=np.float32(3.0)).tau.item() == 3.0
    assert zoo.LIF(tau=np.float64(3.0)).tau.item() == 3.0
    assert code_of(lambda: zoo.LIF(tau=10 ** 400)) == "ND123"
    assert code_of(lambda: zoo.LIF(tau=float("nan"))) == "ND123"
    assert code_of(lambda: zoo.LIF(tau="2.0")) == "ND123"


def test_learnable_argument_forms():
    assert set(dict(zoo.LIF(learnable="tau").named_parameters())) == {"tau"}
    assert code_of(lambda: zoo.LIF(learnable=True)) == "ND122"
    assert code_of(lambda: zoo.LIF(learnable=("tua",))) == "ND122"
    with pytest.warns(UserWarning, match="not trained"):
        layer = zoo.LIF(tau=torch.tensor(2.0, requires_grad=True))
    assert "tau" not in dict(layer.named_parameters())


@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_max_iterations_must_be_a_positive_int(value):
    assert code_of(lambda: zoo.LIF(parallel="scan", max_iterations=value)) == "ND124"


def test_unknown_backend_is_rejected_at_construction():
    assert code_of(lambda: zoo.LIF(backend="cuda")) == "ND124"


def test_kernel_source_is_the_source_the_layer_runs():
    layer = zoo.LIF()                                   # backend='auto' on CPU runs c (torch without a compiler)
    cpu = layer.resolve_backend(torch.device("cpu"))
    assert cpu in ("c", "torch") and f"backend {cpu}" in layer.kernel_source("forward")
    layer(torch.rand(2, 3))
    assert f"backend {cpu}" in layer.kernel_source("all") and layer.last_route.kernels.backend == cpu
    assert "backend triton" in layer.kernel_source("forward", backend="triton")
