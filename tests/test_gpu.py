"""Real CUDA Triton kernels (skipped without CUDA).

The test session enables the Triton interpreter (conftest), and the interpreter would also run
CUDA tensors' kernels. So, by default, ``test_gpu_cases_in_subprocess`` re-runs this file in a
child pytest with ``TRITON_INTERPRET=0``, where the cases below compile and launch real kernels.
Run them directly with ``TRITON_INTERPRET=0 pytest tests/test_gpu.py``.

Every case draws its inputs with ``neurodsl.testing.inputs_for`` and asserts a 5-50% firing rate, so no
case compares silent neurons. The case functions live in tests/helpers.py; tests/test_zoo.py runs the
same ones on the CPU (torch backend, same sizes).
"""
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import neurodsl as nd
from neurodsl import zoo
from neurodsl.testing import check_against_reference, inputs_for, layer_for_check

from helpers import (assert_firing, checked, fp64_case, layer_rates, low_precision_case, network, vector_params_case,
                     zoo_case)

pytestmark = pytest.mark.gpu

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
compiled_only = pytest.mark.skipif(INTERPRETED, reason="runs in the TRITON_INTERPRET=0 child of "
                                                       "test_gpu_cases_in_subprocess")
GPU_TOL = 10.0  # GPU exp/div are a few ulp off torch's CPU functions; Triton contracts to FMAs


@pytest.mark.skipif(not INTERPRETED, reason="already the compiled-Triton run")
def test_gpu_cases_in_subprocess():
    env = dict(os.environ, TRITON_INTERPRET="0")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                          str(Path(__file__)), "-k", "not in_subprocess"],
                         cwd=Path(__file__).parent.parent, env=env, capture_output=True, text=True, timeout=540)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    assert " passed" in out.stdout


@compiled_only
@pytest.mark.parametrize("program_shape", [(4, 1000), (1, 4099)], ids=["8-programs", "9-programs-ragged"])
@pytest.mark.parametrize("cls", zoo.ALL, ids=lambda c: c.__name__)
def test_zoo_cuda_fp32_matches_reference(cls, program_shape):
    result = zoo_case(cls, "triton", "cuda", shape=program_shape, tol_scale=GPU_TOL)
    assert result.neurons >= 4000


@compiled_only
def test_auto_backend_runs_triton_on_cuda():
    layer = zoo.ALIF().cuda()
    assert layer.resolve_backend(torch.device("cuda")) == "triton"
    result = checked(layer, 8, (3, 1400), seed=5, tol_scale=GPU_TOL)
    assert result.outputs[0].is_cuda


@compiled_only
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_low_precision_input_on_cuda(dtype):
    low_precision_case(dtype, "triton", "cuda", tol_scale=GPU_TOL)


@compiled_only
def test_vector_params_state_seqs_and_init_on_cuda():
    vector_params_case("triton", "cuda", tol_scale=GPU_TOL)


@compiled_only
def test_fp64_on_cuda():
    fp64_case("triton", "cuda", tol_scale=100.0)


@compiled_only
@pytest.mark.parametrize("cls", [zoo.ALIF, zoo.Izhikevich, zoo.CubaLIF], ids=lambda c: c.__name__)
def test_reference_run_on_cuda(cls):
    """The reference loop builds every state on the inputs' device (it built some on the CPU)."""
    layer = layer_for_check(cls, backend="torch").cuda()
    (x,) = inputs_for(layer, 8, (2, 2000), seed=6)
    spikes, seqs = nd.reference_run(layer, x)
    assert spikes.is_cuda and all(v.is_cuda for v in seqs.values())
    assert_firing(float(spikes.mean()), cls.__name__)
    check_against_reference(layer, x, tol_scale=GPU_TOL).assert_ok()  # generated torch code on CUDA too


@compiled_only
@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "autocast-fp16"])
def test_torch_compile_fullgraph_on_cuda(autocast):
    net, x = network("cuda")
    eager = copy.deepcopy(net)
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")  # eager Linear numerics: exact compare
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
    with torch.autocast("cuda", dtype=torch.float16, enabled=autocast):
        for rate in layer_rates(eager, x):
            assert_firing(rate, "network layer")
    assert torch.equal(yc, ye)
    for a, b in zip(gc, ge):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


@compiled_only
def test_torch_compile_inductor_on_cuda():
    net, x = network("cuda", "lif")
    (rate,) = layer_rates(net, x)
    assert_firing(rate, "LIF")
    expected = net(x)
    net[1].reset_state()
    got = torch.compile(net, fullgraph=True)(x)
    assert (got == expected).float().mean() > 0.999  # Inductor's fused bias add may round differently


@compiled_only
@pytest.mark.parametrize("parallel", ["scan", "matmul"])
@pytest.mark.parametrize("make", [lambda **kw: zoo.LIF.without_reset()(**kw), lambda **kw: zoo.LIFNoReset(**kw)],
                         ids=["LIF.without_reset", "LIFNoReset"])
def test_torch_compile_parallel_forms_on_cuda(make, parallel):
    """Compiled x.grad and tau.grad equal eager (they were exactly zero on CUDA under torch 2.11)."""
    layer = make(parallel=parallel, backend="triton", learnable=("tau",)).cuda()
    eager = copy.deepcopy(layer)
    (x,) = inputs_for(layer, 256, (4, 64), seed=7)
    xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    yc = torch.compile(layer, fullgraph=True, backend="aot_eager")(xc)
    ye = eager(xe)
    assert layer.last_form == eager.last_form == {"form": parallel}
    assert_firing(float(ye.detach().mean()), f"{parallel} form")
    assert torch.equal(yc, ye)
    w = torch.randn(ye.shape, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    (yc * w).sum().backward(), (ye * w).sum().backward()
    assert xe.grad.abs().max() > 0 and eager.tau.grad.abs() > 0
    torch.testing.assert_close(xc.grad, xe.grad)
    torch.testing.assert_close(layer.tau.grad, eager.tau.grad)


# -- host side: no synchronisation, CUDA graphs, reduce-overhead -----------------------------------------------

@compiled_only
def test_training_step_never_synchronises():
    """Forward, backward and an SGD step issue no device->host synchronisation (the call path reads no values)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(32, 256), zoo.ALIF(learnable=("tau", "beta")),
                              torch.nn.Linear(256, 8), zoo.LIF()).cuda()
    opt = torch.optim.SGD(net.parameters(), lr=1e-2)
    x = torch.randn(16, 4, 32, device="cuda") * 3
    for warm in (True, False):  # the first call compiles and loads kernels (file reads): not under the check
        nd.reset_states(net)
        torch.cuda.set_sync_debug_mode(0 if warm else "error")
        try:
            loss = net(x).sum()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        finally:
            torch.cuda.set_sync_debug_mode(0)


@compiled_only
def test_layer_call_captures_in_a_cuda_graph():
    layer = zoo.LIF(learnable=("tau",)).cuda()
    static_x = torch.rand(8, 4096, device="cuda") * 2
    with torch.no_grad():
        expected = layer(static_x).clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                layer.reset_state()
                layer(static_x)                       # warm-up on a side stream, as CUDA graphs require
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        layer.reset_state()
        with torch.cuda.graph(graph):
            static_out = layer(static_x)
        static_x.copy_(torch.rand(8, 4096, device="cuda") * 2)
        graph.replay()
        layer.reset_state()
        assert torch.equal(static_out, layer(static_x))
        assert not torch.equal(static_out, expected)  # the replay used the new input


@compiled_only
def test_reduce_overhead_mode_matches_eager():
    torch.manual_seed(0)
    layer, eager = zoo.ALIF(learnable=("tau",)).cuda(), zoo.ALIF(learnable=("tau",)).cuda()
    compiled = torch.compile(layer, mode="reduce-overhead")
    for _ in range(4):
        x = torch.rand(8, 4, 512, device="cuda") * 2
        layer.reset_state(), eager.reset_state()
        assert torch.equal(compiled(x).clone(), eager(x))
