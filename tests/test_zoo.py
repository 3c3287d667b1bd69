"""Every zoo neuron (every variant) x every surrogate: generated module == reference loop.

The torch backend covers the full grid; the Triton interpreter covers every neuron and every
surrogate at least once (small T, small N: it runs Python per program and step). The realistic-size
cases of tests/test_gpu.py (N >= 4000, inputs at a 5-50% firing rate) run here on the torch backend.
"""
import itertools
import zlib

import pytest
import torch

import neurodsl as nd
from neurodsl import zoo

from neurodsl.testing import inputs_for, layer_for_check

from helpers import (NEURONS, assert_firing, compare, fp64_case, layer_rates, low_precision_case, network,
                     require_safe_inputs, vector_params_case, zoo_case)


def variant_configs():
    """(class, variant kwargs) for every combination of every class's variants."""
    out = []
    for cls in zoo.ALL:
        names = list(cls.variants)
        for combo in itertools.product(*cls.variants.values()):
            out.append((cls, dict(zip(names, combo))))
    return out


VARIANTS = variant_configs()


def surrogate_factories():
    """name -> factory(learnable_alpha) for every built-in surrogate plus both kinds of Custom."""
    out = {cls.__name__: (lambda learn, cls=cls: cls(learnable=learn)) for cls in nd.surrogate.ALL}
    out["CustomPrimitive"] = lambda learn: nd.surrogate.Custom(
        primitive=lambda u, a: nd.sigmoid(a * u) * 0.5 + nd.tanh(a * u) * 0.25 + 0.25, alpha=2.5, learnable=learn,
        name="SigTanh")
    out["CustomGradient"] = lambda learn: nd.surrogate.Custom(
        gradient=lambda u, a: a / (1 + (a * u) ** 2), alpha=1.5, name="Lorentz")
    return out


SURROGATES = surrogate_factories()


def vid(cfg):
    cls, variant = cfg
    return cls.__name__ + "".join(f"-{k}={v}" for k, v in variant.items())


def make(cls, variant, surrogate_name, backend="torch", learn_alpha=True, **kw):
    extra, learnable = NEURONS[cls]
    primitive = surrogate_name != "CustomGradient"
    surrogate = SURROGATES[surrogate_name](learn_alpha and primitive)
    return cls(backend=backend, surrogate=surrogate, learnable=learnable, **extra, **variant, **kw)


def test_variant_grid_is_complete():
    names = {vid(c) for c in VARIANTS}
    assert len([n for n in names if n.startswith("IF-")]) == 2
    assert len([n for n in names if n.startswith("LIF-")]) == 4
    assert len([n for n in names if n.startswith("PLIF-")]) == 4
    assert len(VARIANTS) == 20  # QIF, EIF and KLIF inherit reset_mode too


@pytest.mark.parametrize("surrogate_name", list(SURROGATES))
@pytest.mark.parametrize("cfg", VARIANTS, ids=vid)
def test_zoo_torch_matches_reference(cfg, surrogate_name):
    cls, variant = cfg
    detach = (list(SURROGATES).index(surrogate_name) % 2) == 1
    layer = make(cls, variant, surrogate_name, detach_reset=detach)
    xs = inputs_for(layer, 5, (3, 4), seed=zlib.crc32(vid(cfg).encode()) % 1000)
    spikes, _, grads = compare(layer, *xs)
    if surrogate_name != "CustomGradient":
        assert "surrogate_alpha" in grads


@pytest.mark.parametrize("cls", zoo.ALL, ids=lambda c: c.__name__)
def test_zoo_spikes_actually_happen(cls):
    """Guard against vacuous comparisons: inputs_for's inputs make every neuron class fire 5-50%."""
    layer = make(cls, {}, "ATan")
    xs = inputs_for(layer, 6, (4, 10), seed=1)
    assert_firing(float(layer(*xs).detach().mean()), cls.__name__)


@pytest.mark.parametrize("cls", zoo.ALL, ids=lambda c: c.__name__)
def test_zoo_per_neuron_tensor_params(cls):
    """Per-neuron (vector) params, learnable, with a per-neuron initial state from a tensor param."""
    extra, learnable = NEURONS[cls]
    F = 5
    gen = torch.Generator().manual_seed(7)
    tensors = {}
    for name in learnable[:3]:
        default = cls._params_decl[name].default
        tensors[name] = default + 0.1 * torch.rand(F, generator=gen) + (0.05 if name.startswith("tau") else 0.0)
    if "v_reset" in cls._params_decl and "v_reset" not in tensors:
        tensors["v_reset"] = cls._params_decl["v_reset"].default + 0.05 * torch.rand(F, generator=gen)
    layer = cls(backend="torch", learnable=learnable, surrogate=nd.surrogate.Sigmoid(learnable=True),
                **{**extra, **tensors})
    xs = inputs_for(layer, 5, (2, F), seed=3)
    compare(layer, *xs)
    opts = layer._last_options
    assert any(opts.vector_params)


@pytest.mark.parametrize("cls", zoo.ALL, ids=lambda c: c.__name__)
def test_zoo_conv_shaped_inputs(cls):
    """4-D per-step inputs [B, C, H, W] with [C, 1, 1] params."""
    extra, learnable = NEURONS[cls]
    C = 3
    name = learnable[0]
    default = cls._params_decl[name].default
    value = default + torch.linspace(0.0, 0.2, C).reshape(C, 1, 1)
    layer = cls(backend="torch", learnable=learnable, **{**extra, name: value})
    xs = inputs_for(layer, 4, (2, C, 3, 2), seed=5)
    _, _, grads = compare(layer, *xs)
    assert grads[name].shape == (C, 1, 1)


# -- Triton interpreter ---------------------------------------------------------------------------
SURROGATE_NAMES = list(SURROGATES)
TRITON_CASES = [(cls, {}, SURROGATE_NAMES[i % len(SURROGATE_NAMES)]) for i, cls in enumerate(zoo.ALL)]
TRITON_CASES += [(zoo.LIF, dict(reset_mode="soft", decay_input=False), "Sigmoid"),
                 (zoo.PLIF, dict(reset_mode="soft", decay_input=True), "ATan"),
                 (zoo.IF, dict(reset_mode="soft"), "Rect")]


def test_triton_cases_cover_every_neuron_and_surrogate():
    assert {c for c, _, _ in TRITON_CASES} == set(zoo.ALL)
    assert {s for _, _, s in TRITON_CASES} == set(SURROGATES)


@pytest.mark.parametrize("cls,variant,surrogate_name", TRITON_CASES,
                         ids=[f"{c.__name__}-{s}-{i}" for i, (c, _, s) in enumerate(TRITON_CASES)])
def test_zoo_triton_interpreter_matches_reference(cls, variant, surrogate_name):
    layer = make(cls, variant, surrogate_name, backend="triton")
    xs = inputs_for(layer, 4, (2, 5), seed=11)
    compare(layer, *xs)


def test_triton_interpreter_vector_params_and_state_seqs():
    layer = zoo.ALIF(backend="triton", learnable=("tau", "beta"), tau=2.0 + torch.rand(7), store_state_seqs=True,
                     surrogate=nd.surrogate.ATan(learnable=True))
    xs = inputs_for(layer, 4, (3, 7), seed=2)
    compare(layer, *xs, init={"v": 0.3 * torch.rand(3, 7), "a": 0.1 * torch.rand(3, 7)})


def test_triton_matches_torch_backend_bitwise_spikes():
    torch_layer = layer_for_check(zoo.Izhikevich, backend="torch")
    triton_layer = layer_for_check(zoo.Izhikevich, backend="triton")
    (x,) = require_safe_inputs(torch_layer, 6, (19,), seed=4)  # two implementations: every spike must agree
    assert torch.equal(torch_layer(x), triton_layer(x))
    torch.testing.assert_close(torch_layer.v, triton_layer.v, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch_layer.w, triton_layer.w, rtol=1e-5, atol=1e-5)


# -- the realistic-size cases of tests/test_gpu.py, on the CPU ---------------------------------------------------
def test_izhikevich_checks_with_nonzero_a_and_b():
    """The zoo class carries its check arguments; every check (CLI, tests) builds the layer from them."""
    assert NEURONS[zoo.Izhikevich] == (dict(a=0.5, b=0.2), tuple(zoo.Izhikevich._params_decl))
    layer = layer_for_check(zoo.Izhikevich)
    assert layer.a.item() == 0.5 and abs(layer.b.item() - 0.2) < 1e-7 and layer.surrogate_alpha.requires_grad


@pytest.mark.parametrize("cls", zoo.ALL, ids=lambda c: c.__name__)
def test_zoo_realistic_size_cpu(cls):
    result = zoo_case(cls, "torch", "cpu")  # N = 4000, T = 12, init, learnable alpha; asserts 5-50% firing
    assert result.neurons == 4000 and result.flips <= result.max_flips == 40
    assert "grad:surrogate_alpha" in result.compared and "grad:init_v" in result.compared


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_dtype_cases_realistic_size_cpu(dtype):
    if dtype == torch.float64:
        fp64_case("torch", "cpu")
    else:
        low_precision_case(dtype, "torch", "cpu")


def test_vector_params_case_realistic_size_cpu():
    vector_params_case("torch", "cpu")


@pytest.mark.parametrize("kind", ["alif-plif", "lif"])
def test_gpu_networks_fire_on_cpu(kind):
    """The compile-on-CUDA networks get inputs at which every spiking layer fires 5-50%."""
    net, x = network("cpu", kind)
    for rate in layer_rates(net, x):
        assert_firing(rate, kind)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for rate in layer_rates(net, x):
            assert_firing(rate, kind + " autocast")
