"""torch.compile(fullgraph=True), the registered torch ops, and autocast.

Layers run two custom ops (``neurodsl::neuron_forward`` / ``neurodsl::neuron_backward``) with fake
implementations and a registered backward, so Dynamo traces a model with neurodsl layers in one graph.
These tests compare compiled runs with eager runs (forward, every gradient, carried states) on both
backends, check the fake implementations with ``torch.library.opcheck``, and check autocast. Reset-free
neurons keep their parallel form under torch.compile (traced into the graph); exact mode runs sequentially.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo
from torch import nn

import neurodsl as nd
from kernels_gen.ops import compute_dtype, register
from neurodsl import zoo
from neurodsl.compiler import compile_spec

BACKENDS = ["torch", "triton"]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class TwoInput(nd.Neuron):
    v = nd.State(0.0)
    g = nd.State(0.0)
    tau = nd.Param(3.0)

    def charge(self, exc, inh):
        return dict(g=self.g * 0.5 + inh, v=self.v + (exc - self.g - self.v) / self.tau)

    def fire(self):
        return self.v - 1.0

    def reset(self, s):
        return dict(v=self.v * (1 - s))


def model(backend):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), zoo.ALIF(learnable=("tau", "beta"), backend=backend),
                        nn.Linear(16, 8), zoo.PLIF(backend=backend, v_th=0.3))
    with torch.no_grad():  # strong enough weights that both layers spike
        net[2].weight.mul_(4)
        net[2].bias.add_(0.5)
    return net


def grads(net, x):
    return [x.grad] + [p.grad for p in net.parameters()]


def run_both(net, x, compile_backend="aot_eager", calls=2):
    """Spikes and grads of ``calls`` consecutive calls (states carried), compiled vs eager."""
    eager = copy.deepcopy(net)
    compiled = torch.compile(net, fullgraph=True, backend=compile_backend)
    outs = []
    for module, runner in ((net, compiled), (eager, eager)):
        xi = x.clone().requires_grad_()
        ys = [runner(xi) for _ in range(calls)]
        sum(y.sum() * (i + 1) for i, y in enumerate(ys)).backward()
        outs.append((ys, grads(module, xi)))
    return outs


@pytest.mark.parametrize("backend", BACKENDS)
def test_fullgraph_model_matches_eager(backend):
    net = model(backend)
    x = torch.randn(6, 3, 4) * 4
    (ys_c, g_c), (ys_e, g_e) = run_both(net, x)
    assert sum(y.sum() for y in ys_e) > 0  # spikes happen, so the surrogate path is exercised
    for yc, ye in zip(ys_c, ys_e):
        assert torch.equal(yc, ye)
    for gc, ge in zip(g_c, g_e):
        assert gc is not None and ge is not None
        torch.testing.assert_close(gc, ge, rtol=1e-5, atol=1e-6)
    assert g_e[0].abs().sum() > 0


def test_inductor_compiles_and_matches():
    net = model("torch")
    x = torch.randn(5, 2, 4) * 4
    (ys_c, g_c), (ys_e, g_e) = run_both(net, x, compile_backend="inductor", calls=1)
    assert torch.equal(ys_c[0], ys_e[0])
    for gc, ge in zip(g_c, g_e):
        torch.testing.assert_close(gc, ge, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_states_options_and_inference(backend):
    layer = TwoInput(backend=backend, learnable=("tau",), store_state_seqs=True)
    eager = copy.deepcopy(layer)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    exc, inh = torch.rand(7, 2, 3) * 3, torch.rand(7, 2, 3) * 0.5
    assert torch.equal(compiled(exc, inh), eager(exc, inh))
    for name in ("v", "g"):
        assert torch.equal(layer.state_seqs[name], eager.state_seqs[name])
        assert torch.equal(getattr(layer, name), getattr(eager, name))
    layer.reset_state(), eager.reset_state()
    with torch.no_grad():
        assert torch.equal(compiled(exc, inh), eager(exc, inh))
    assert layer.last_form == {"form": "sequential"}


def test_single_step_loop_compiles():
    layer = zoo.LIF(step_mode="s", backend="torch")
    eager = copy.deepcopy(layer)
    step = torch.compile(layer, fullgraph=True, backend="aot_eager")
    xs = torch.rand(5, 2, 3) * 3
    xc, xe = xs.clone().requires_grad_(), xs.clone().requires_grad_()
    outs_c = torch.stack([step(x) for x in xc])
    outs_e = torch.stack([eager(x) for x in xe])
    assert torch.equal(outs_c, outs_e) and outs_e.sum() > 0
    assert torch.equal(layer.v, eager.v)
    (outs_c * torch.arange(1.0, 6.0)[:, None, None]).sum().backward()
    (outs_e * torch.arange(1.0, 6.0)[:, None, None]).sum().backward()
    torch.testing.assert_close(xc.grad, xe.grad)   # BPTT through the carried state across compiled calls
    assert xe.grad[0].abs().sum() > 0


def test_changing_requires_grad_or_surrogate_retraces():
    layer = zoo.PLIF(backend="torch")
    eager = copy.deepcopy(layer)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    x = torch.rand(4, 3) * 3

    def check():
        layer.reset_state(), eager.reset_state()
        xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
        compiled(xc).sum().backward(), eager(xe).sum().backward()
        torch.testing.assert_close(xc.grad, xe.grad)
        return xc.grad

    first = check()
    assert layer.w.grad is not None
    for module in (layer, eager):
        module.surrogate = nd.surrogate.Sigmoid(alpha=3.0)
    assert not torch.allclose(check(), first)  # the new surrogate's gradient, not the old one's
    for module in (layer, eager):
        module.w.requires_grad_(False)
        module.w.grad = None
    check()
    assert layer.w.grad is None


def test_changing_backend_retraces():
    seen = []
    layer = zoo.LIF(backend="torch")
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    real = layer._kernels_for_trace

    def spy(*args):
        kernels = real(*args)
        seen.append(kernels.backend)
        return kernels

    spy._dynamo_marked_constant = True
    layer._kernels_for_trace = spy
    x = torch.rand(4, 3) * 3
    first = compiled(x)
    layer.reset_state()
    layer.backend = "triton"
    assert torch.equal(compiled(x), first)
    assert seen == ["torch", "triton"]

def test_dynamic_batch_size():
    layer = zoo.LIF(backend="torch")
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager", dynamic=True)
    for batch in (2, 5, 9):
        x = torch.rand(4, batch, 3) * 3
        layer.reset_state()
        assert torch.equal(compiled(x), zoo.LIF(backend="torch")(x))


# -- parallel forms ----------------------------------------------------------------------------------

def graph_recorder(graphs):
    """A torch.compile backend that keeps each FX graph Dynamo hands it and runs it as is."""
    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward
    return backend


def called_ops(graphs):
    """Targets of every call in the graphs and their subgraphs (autograd.Function bodies are subgraphs)."""
    return {str(node.target) for gm in graphs for sub in gm.modules() if isinstance(sub, torch.fx.GraphModule)
            for node in sub.graph.nodes if node.op == "call_function"}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("parallel", ["scan", "matmul", "auto"])
def test_reset_free_parallel_forms_compile(backend, parallel):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 6), zoo.LIF.without_reset()(parallel=parallel, backend=backend,
                                                                  learnable=("tau",), v_th=0.5))
    eager, graphs = copy.deepcopy(net), []
    compiled = torch.compile(net, fullgraph=True, backend=graph_recorder(graphs))
    x = torch.randn(40, 3, 4) * 3                 # T = 40: parallel='auto' picks a parallel form too
    xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    yc, ye = compiled(xc), eager(xe)
    assert torch.equal(yc, ye) and 0 < ye.sum() < ye.numel()
    assert net[1].last_form == eager[1].last_form != {"form": "sequential"}
    (yc * torch.arange(1.0, 41.0)[:, None, None]).sum().backward()
    (ye * torch.arange(1.0, 41.0)[:, None, None]).sum().backward()
    for gc, ge in zip(grads(net, xc), grads(eager, xe)):
        torch.testing.assert_close(gc, ge, rtol=1e-5, atol=1e-5)
    assert net[1].tau.grad.abs() > 0
    ops = called_ops(graphs)
    assert not any("neuron_forward" in op for op in ops)     # the parallel form, traced into the graph
    assert any("triton_scan" in op for op in ops) == (backend == "triton" and eager[1].last_form["form"] == "scan")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("parallel", ["scan", "matmul"])
def test_parallel_form_alone_gets_gradients_under_compile(backend, parallel):
    """The layer is the whole graph, so its input is a graph input that requires grad. Under torch 2.11 the
    spike op's no-op ``.to(dtype)`` output (an alias of an intermediate) made every gradient exactly 0."""
    torch.manual_seed(0)
    layer = zoo.LIFNoReset(parallel=parallel, backend=backend, learnable=("tau",))
    eager = copy.deepcopy(layer)
    x = torch.rand(48, 2, 8) * 2
    xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    yc = torch.compile(layer, fullgraph=True, backend="aot_eager")(xc)
    ye = eager(xe)
    assert torch.equal(yc, ye) and 0 < ye.sum() < ye.numel()
    weights = torch.randn(ye.shape)
    (yc * weights).sum().backward()
    (ye * weights).sum().backward()
    assert xe.grad.abs().sum() > 0 and eager.tau.grad.abs() > 0
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.tau.grad, eager.tau.grad, rtol=1e-5, atol=1e-4)


def test_spike_output_aliases_nothing():
    from kernels_gen.parallel import fresh_output
    fire = torch.randn(3, 2)
    made = torch.where(fire >= 0, 1.0, 0.0)
    assert fresh_output(made, fire) is made                       # already a new tensor of the right dtype
    assert fresh_output(fire, fire) is not fire                   # never the input itself
    assert fresh_output(made, fire.double()).dtype == torch.float64
    assert torch.equal(fresh_output(1.0, fire), torch.ones(3, 2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_state_scan_with_per_neuron_params_compiles_with_dynamic_batch(backend):
    layer = zoo.CubaLIF.without_reset()(parallel="scan", backend=backend, learnable=("v_decay",),
                                        v_decay=torch.linspace(0.5, 0.9, 3))
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager", dynamic=True)
    for batch in (2, 5):
        layer.reset_state()
        x = torch.rand(9, batch, 3) * 3
        ref = zoo.CubaLIF.without_reset()(parallel="sequential", backend="torch", v_decay=layer.v_decay.detach())
        assert torch.equal(compiled(x), ref(x))
        torch.testing.assert_close(layer.v, ref.v)
        assert layer.last_form == {"form": "scan"}


def test_matmul_with_per_neuron_a_raises_nd409_under_fullgraph():
    """Raised while Dynamo picks the kernels, so it is the typed error (Dynamo may wrap it), not a trace failure."""
    layer = zoo.LIF.without_reset()(parallel="matmul", backend="torch", tau=torch.linspace(2.0, 4.0, 3))
    with pytest.raises(Exception) as info:
        torch.compile(layer, fullgraph=True, backend="aot_eager")(torch.rand(40, 2, 3))
    chain, err = [], info.value
    while err is not None:
        chain.append(err)
        err = err.__cause__ or err.__context__
    assert any(isinstance(e, nd.InputError) and e.code == "ND409" for e in chain), chain


def test_exact_mode_runs_sequentially_under_compile():
    layer = zoo.LIF(parallel="scan", backend="torch")
    eager = copy.deepcopy(layer)
    x = torch.rand(12, 2, 3) * 2
    ye = eager(x)
    assert eager.last_form["form"] == "exact-scan"
    assert torch.equal(torch.compile(layer, fullgraph=True, backend="aot_eager")(x), ye)
    assert layer.last_form == {"form": "sequential"}


def test_trace_time_constant_marker_matches_torch():
    from neurodsl.neuron import Neuron
    marked = torch.compiler.assume_constant_result(lambda: None)
    flags = {k for k in vars(marked)}
    assert flags and flags <= set(vars(Neuron._kernels_for_trace))


# -- the registered ops ---------------------------------------------------------------------------

def op_args(neuron_cls, backend, store_seqs, save, T=5, n=6, dtype=torch.float32, learn=(), vector=False):
    layer = neuron_cls(backend=backend, learnable=learn)
    options = layer.kernel_options((vector,) * len(layer.spec.params), dtype)
    key = register(compile_spec(layer.spec, options))
    gen = torch.Generator().manual_seed(3)
    cdt = compute_dtype(dtype)  # the op's contract, as neuron_op prepares it: states and params in the compute
    in_dt = cdt if backend == "torch" else dtype  # dtype; inputs too on the torch backend
    inputs = [(torch.rand(T, n, generator=gen) * 2).to(in_dt) for _ in layer.spec.inputs]
    init = [torch.zeros(n, dtype=cdt) for _ in layer.spec.states]
    spread = torch.linspace(1.0, 1.2, n, dtype=cdt) if vector else torch.ones(1, dtype=cdt)
    params = [(layer.param_value(p).reshape(1).to(cdt) * spread).detach().requires_grad_(save and p in learn)
              for p in layer.spec.params] + [layer.surrogate_alpha.reshape(1).to(cdt).detach().clone()]
    for x in inputs:
        x.requires_grad_(save)
    return key, backend, store_seqs, save, dtype, inputs, init, params, []


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("neuron_cls", [zoo.LIF, zoo.ALIF, zoo.CubaLIF, TwoInput], ids=lambda c: c.__name__)
@pytest.mark.parametrize("store_seqs", [False, True])
def test_forward_op_passes_opcheck(backend, neuron_cls, store_seqs):
    learn = tuple(neuron_cls.spec.params[:1])
    for save in (True, False):
        args = op_args(neuron_cls, backend, store_seqs, save, learn=learn)
        torch.library.opcheck(torch.ops.neurodsl.neuron_forward.default, args,
                              test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16], ids=str)
def test_forward_op_opcheck_dtypes_and_per_neuron_params(backend, dtype):
    for save in (True, False):
        args = op_args(zoo.ALIF, backend, False, save, dtype=dtype, learn=("tau", "beta"), vector=True)
        torch.library.opcheck(torch.ops.neurodsl.neuron_forward.default, args,
                              test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


def test_forward_op_opcheck_precomputed():
    key, backend, store_seqs, save, dtype, inputs, init, params, _ = op_args(zoo.LIF, "torch", False, True)
    with torch.no_grad():
        found = torch.ops.neurodsl.neuron_forward(key, backend, store_seqs, True, dtype, inputs, init, params, [])
    out = torch.ops.neurodsl.neuron_forward(key, backend, store_seqs, True, dtype, inputs, init, params,
                                            [t.clone() for t in found])
    assert all(torch.equal(a, b) for a, b in zip(out, found))
    torch.library.opcheck(torch.ops.neurodsl.neuron_forward.default,
                          (key, backend, store_seqs, True, dtype, inputs, init, params, [t.clone() for t in found]),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_op_passes_opcheck(backend):
    args = op_args(zoo.ALIF, backend, False, True, learn=("tau",))
    key, _, store_seqs, _, dtype, inputs, init, params, _ = args
    out = torch.ops.neurodsl.neuron_forward(*args)
    n_states = len(init)
    saved = [t.detach() for t in out[1 + n_states:]]
    meta = compile_spec(zoo.ALIF.spec, zoo.ALIF(learnable=("tau",)).kernel_options(
        (False,) * len(zoo.ALIF.spec.params))).meta(backend)
    needed = [inputs[meta["inputs"].index(i)].detach() for i in meta["needed_inputs"]]
    grad_spikes = torch.rand_like(out[0])
    grad_states = [torch.rand(out[0].shape[1]) for _ in range(n_states)]
    torch.library.opcheck(torch.ops.neurodsl.neuron_backward.default,
                          (key, backend, store_seqs, grad_spikes, grad_states, saved, needed, init,
                           [p.detach() for p in params]),
                          test_utils=("test_schema", "test_faketensor"))


# -- autocast ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_spikes_in_input_dtype_fp32_math(backend, dtype):
    torch.manual_seed(1)
    lin, layer = nn.Linear(4, 8), zoo.ALIF(learnable=("tau",), backend=backend)
    ref_layer = copy.deepcopy(layer)
    x = torch.randn(6, 2, 4) * 4
    xa = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        h = lin(xa)
        spikes = layer(h)
    assert h.dtype == dtype and spikes.dtype == dtype  # spikes come back in the dtype they got
    assert layer.v.dtype == torch.float32 and layer.a.dtype == torch.float32  # states stay fp32
    spikes.float().sum().backward()
    # the same math as an fp32 run on the half-precision pre-activations, upcast
    hf = h.detach().float().requires_grad_()
    ref = ref_layer(hf)
    assert torch.equal(spikes.float(), ref)
    ref.sum().backward()
    torch.testing.assert_close(layer.tau.grad, ref_layer.tau.grad, rtol=1e-5, atol=1e-6)
    assert xa.grad is not None and xa.grad.dtype == torch.float32


def test_autocast_under_compile():
    net = model("torch")
    eager = copy.deepcopy(net)
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    x = torch.randn(5, 2, 4) * 4
    xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yc, ye = compiled(xc), eager(xe)
    assert yc.dtype == torch.bfloat16
    assert torch.equal(yc, ye) and ye.sum() > 0
    yc.float().sum().backward(), ye.float().sum().backward()
    for gc, ge in zip(grads(net, xc), grads(eager, xe)):
        torch.testing.assert_close(gc, ge)
