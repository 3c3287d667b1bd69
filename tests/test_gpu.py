"""Real CUDA Triton kernels (skipped without CUDA).

The test session enables the Triton interpreter (conftest), and the interpreter would also run
CUDA tensors' kernels. So, by default, ``test_gpu_cases_in_subprocess`` re-runs this file in a
child pytest with ``TRITON_INTERPRET=0``, where the cases below compile and launch real kernels.
Run them directly with ``TRITON_INTERPRET=0 pytest tests/test_gpu.py``.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import neurodsl as nd
from neurodsl import zoo

from helpers import NEURONS, compare, require_safe_inputs

pytestmark = pytest.mark.gpu

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
compiled_only = pytest.mark.skipif(INTERPRETED, reason="runs in the TRITON_INTERPRET=0 child of "
                                                       "test_gpu_cases_in_subprocess")


@pytest.mark.skipif(not INTERPRETED, reason="already the compiled-Triton run")
def test_gpu_cases_in_subprocess():
    env = dict(os.environ, TRITON_INTERPRET="0")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                          str(Path(__file__)), "-k", "not in_subprocess"],
                         cwd=Path(__file__).parent.parent, env=env, capture_output=True, text=True, timeout=540)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    assert " passed" in out.stdout


def _cuda(layer, xs):
    layer = layer.cuda()
    return layer, [x.cuda() for x in xs]


@compiled_only
@pytest.mark.parametrize("cls", zoo.ALL, ids=lambda c: c.__name__)
def test_zoo_cuda_fp32_matches_reference(cls):
    extra, learnable = NEURONS[cls]
    layer = cls(backend="triton", learnable=learnable, surrogate=nd.surrogate.ATan(learnable=True), **extra)
    xs = require_safe_inputs(layer, 12, (4, 1000), seed=1)  # N = 4000: several 512-lane programs
    layer, xs = _cuda(layer, xs)
    assert layer.resolve_backend(xs[0].device) == "triton"
    compare(layer, *xs, tol_scale=10.0)  # GPU exp/div are a few ulp off torch's


@compiled_only
def test_auto_backend_runs_triton_on_cuda():
    layer = zoo.ALIF()
    (x,) = require_safe_inputs(layer, 8, (3, 700), seed=5)
    layer, (x,) = _cuda(layer, [x])
    assert layer.resolve_backend(x.device) == "triton"
    spikes = layer(x)
    assert spikes.is_cuda
    assert torch.equal(spikes, nd.reference_run(layer, x)[0])


@compiled_only
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_low_precision_input_on_cuda(dtype):
    layer = zoo.LIF(backend="triton", learnable=("tau",), tau=2.0 + torch.rand(300))
    (x,) = require_safe_inputs(layer, 10, (5, 300), seed=2, dtype=dtype)
    layer, (x,) = _cuda(layer, [x])
    spikes, states, grads = compare(layer, x, tol_scale=10.0)
    assert spikes.dtype == dtype and states["v"].dtype == torch.float32


@compiled_only
def test_vector_params_state_seqs_and_init_on_cuda():
    layer = zoo.Izhikevich(backend="triton", a=0.5, b=0.2, learnable=("a", "b", "tau"), tau=2.0 + torch.rand(513),
                           store_state_seqs=True)
    init = {"v": 0.1 * torch.randn(3, 513), "w": 0.1 * torch.randn(3, 513)}
    xs = require_safe_inputs(layer, 8, (3, 513), seed=3, init=init)
    layer, xs = _cuda(layer, xs)
    compare(layer, *xs, init={k: v.cuda() for k, v in init.items()}, tol_scale=10.0)


@compiled_only
def test_fp64_on_cuda():
    layer = zoo.EIF(backend="triton", learnable=("tau", "delta_T")).double()
    xs = require_safe_inputs(layer, 8, (2, 600), seed=4, dtype=torch.float64)
    layer, xs = _cuda(layer, xs)
    compare(layer, *xs, tol_scale=100.0)


@compiled_only
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "autocast-fp16"])
def test_torch_compile_fullgraph_on_cuda(autocast):
    import copy
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 1024), zoo.ALIF(learnable=("tau", "beta")),
                              torch.nn.Linear(1024, 256), zoo.PLIF()).cuda()
    eager = copy.deepcopy(net)
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")  # eager Linear numerics: exact compare
    x = torch.randn(16, 8, 64, device="cuda") * 3
    outs = []
    for module, runner in ((net, compiled), (eager, eager)):
        xi = x.clone().requires_grad_()
        with torch.autocast("cuda", dtype=torch.float16, enabled=autocast):
            y = runner(xi)
        y.float().sum().backward()
        outs.append((y, [xi.grad] + [p.grad for p in module.parameters()]))
    (yc, gc), (ye, ge) = outs
    assert net[1].resolve_backend(x.device) == "triton"
    assert yc.dtype == (torch.float16 if autocast else torch.float32)
    assert torch.equal(yc, ye) and ye.sum() > 0
    for a, b in zip(gc, ge):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


@compiled_only
def test_torch_compile_inductor_on_cuda():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 1024), zoo.LIF()).cuda()
    x = torch.randn(16, 8, 64, device="cuda") * 3
    expected = net(x)
    net[1].reset_state()
    got = torch.compile(net, fullgraph=True)(x)
    assert (got == expected).float().mean() > 0.999  # Inductor's fused bias add may round differently


@compiled_only
@pytest.mark.parametrize("parallel", ["scan", "matmul"])
def test_torch_compile_parallel_forms_on_cuda(parallel):
    import copy
    torch.manual_seed(0)
    layer = zoo.LIF.without_reset()(parallel=parallel, learnable=("tau",)).cuda()
    eager = copy.deepcopy(layer)
    x = torch.rand(256, 4, 64, device="cuda") * 2
    xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    yc = torch.compile(layer, fullgraph=True, backend="aot_eager")(xc)
    ye = eager(xe)
    assert layer.last_form == eager.last_form == {"form": parallel}
    assert torch.equal(yc, ye) and 0 < ye.sum() < ye.numel()
    yc.sum().backward(), ye.sum().backward()
    torch.testing.assert_close(xc.grad, xe.grad)
    torch.testing.assert_close(layer.tau.grad, eager.tau.grad)
