"""Everything follows the input's device and dtype, and device-dependent branches are exercised without a GPU.

The ``meta`` device has shapes and dtypes but no values, so any tensor built on the CPU by mistake fails loudly
there ("Tensor on device cpu is not on the expected device meta") -- the same fault that breaks CUDA runs. Every
zoo neuron, the reference loop, every parallel form, the PSN/PSU family and the containers run on it.

The GPU launch configuration (512-lane programs for the sequential kernels, 128 × 32 tiles for the Triton scan) is
forced on CPU tensors through the interpreter, so masking across several programs and chunks is checked here too.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import neurodsl as nd
from kernels_gen import parallel as kparallel
from kernels_gen.backends import triton as triton_backend
from neurodsl import zoo

META = torch.device("meta")


def _inputs(layer, T, shape, device=META, requires_grad=True):
    return [torch.randn(T, *shape, device=device, requires_grad=requires_grad) for _ in layer.spec.inputs]


@pytest.mark.parametrize("cls", zoo.ALL, ids=lambda c: c.__name__)
def test_zoo_neuron_runs_on_meta(cls):
    learnable = tuple(cls.spec.params)
    layer = cls(backend="torch", learnable=learnable, store_state_seqs=True).to(META)
    xs = _inputs(layer, 5, (3, 4))
    spikes = layer(*xs, state={s: torch.zeros(3, 4, device=META) for s in layer.spec.states[:1]})
    assert spikes.device == META and spikes.shape == (5, 3, 4) and spikes.dtype == torch.float32
    spikes.sum().backward()
    assert all(x.grad.device == META for x in xs)
    assert all(layer.param_value(p).grad.device == META for p in learnable)
    assert all(v.device == META for v in layer.state_seqs.values())
    layer(*[x.detach() for x in xs])  # the carried state, on meta too
    assert all(layer.state_value(s).device == META for s in layer.spec.states)


@pytest.mark.parametrize("cls", zoo.ALL, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16], ids=str)
def test_reference_loop_follows_device_and_dtype(cls, dtype):
    layer = cls().to(META)
    xs = [torch.randn(4, 3, device=META, dtype=dtype) for _ in layer.spec.inputs]
    spikes, states, fire = nd.reference_run(layer, *xs, init={layer.spec.states[0]: torch.zeros(3, device=META)},
                                            return_fire=True)
    assert spikes.device == fire.device == META and spikes.dtype == dtype
    assert all(v.device == META for v in states.values())


@pytest.mark.parametrize("form", ["scan", "matmul"])
@pytest.mark.parametrize("neuron", [zoo.LIFNoReset, zoo.CubaLIF.without_reset()], ids=["LIFNoReset", "CubaLIF"])
def test_reset_free_parallel_forms_on_meta(form, neuron):
    layer = neuron(parallel=form, backend="torch", learnable=tuple(neuron.spec.params[:1])).to(META)
    xs = _inputs(layer, 40, (2, 3))
    spikes = layer(*xs)
    spikes.sum().backward()
    assert spikes.device == META and layer.last_form == {"form": form}
    assert xs[0].grad.device == META


def test_exact_mode_on_meta_runs_the_sequential_kernel():
    """The fixed point's pass count depends on values; a meta tensor has none, so the sequential kernel runs."""
    layer = zoo.LIF(parallel="scan", backend="torch").to(META)
    spikes = layer(torch.randn(40, 3, device=META))
    assert spikes.device == META and layer.last_form["form"] == "sequential"


@pytest.mark.parametrize("make", [lambda: nd.psn.PSN(T=6), lambda: nd.psn.MaskedPSN(k=2, T=6),
                                  lambda: nd.psn.SlidingPSN(k=3), lambda: nd.psn.PSU(T=6),
                                  lambda: nd.psn.IPSU(T=6), lambda: nd.psn.RPSU(T=6)],
                         ids=["PSN", "MaskedPSN", "SlidingPSN", "PSU", "IPSU", "RPSU"])
def test_psn_family_on_meta(make):
    layer = make().to(META)
    x = torch.randn(6, 2, 3, device=META, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    assert y.device == x.grad.device == META and y.shape == x.shape


def test_containers_on_meta():
    net = nn.Sequential(nd.SeqToBatch(nn.Linear(3, 4)), zoo.ALIF(), nd.StepLoop(zoo.LIF(step_mode="s"))).to(META)
    y = net(torch.randn(5, 2, 3, device=META))
    assert y.device == META and y.shape == (5, 2, 4)
    nd.reset_states(net)


# -- the GPU launch configuration, on CPU tensors through the interpreter -------------------------------------

def test_sequential_kernels_with_gpu_blocks_match_the_torch_backend(monkeypatch):
    """512 lanes per program (the CUDA block) over N = 1100 neurons: three programs, the last one masked."""
    monkeypatch.setattr(triton_backend, "block_size", lambda n, device: min(512, max(16, 1 << (max(n, 1) - 1).bit_length())))
    torch.manual_seed(0)
    tau, x0 = 2.0 + torch.rand(1100), torch.rand(6, 1100) * 2
    outs = []
    for backend in ("triton", "torch"):
        layer = zoo.ALIF(backend=backend, learnable=("tau", "beta"), tau=tau)
        x = x0.clone().requires_grad_()
        spikes = layer(x)
        (spikes * torch.arange(1.0, 7.0)[:, None]).sum().backward()
        outs.append((spikes, x.grad, layer.tau.grad, layer.beta.grad, layer.v))
    assert 0 < outs[0][0].sum() < outs[0][0].numel()
    assert torch.equal(outs[0][0], outs[1][0])
    for a, b in zip(outs[0][1:], outs[1][1:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_triton_scan_with_gpu_tiles_matches_the_doubling_scan(monkeypatch):
    """128 neurons × 32 steps per tile (the CUDA tiles) over N = 300, T = 70: several programs and chunks."""
    monkeypatch.setattr(kparallel, "scan_tiles", lambda T, n, device: (128, 32))
    torch.manual_seed(1)
    A = torch.rand(70, 300, 2, 2) * 0.5
    b, v0 = torch.randn(70, 300, 2), torch.randn(300, 2)
    got = kparallel.scan(A, b, v0, backend="triton")
    want = kparallel.scan(A, b, v0, backend="torch")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
