"""Shapes, step modes, carried state, stored sequences, dtype, state_dict, training, backend choice."""
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import neurodsl as nd
from neurodsl import zoo

from helpers import assert_close, compare, require_safe_inputs, safe_inputs


class TwoInput(nd.Neuron):
    """A two-input neuron declared only in this test file (excitatory / inhibitory drive)."""

    v = nd.State(0.0)
    g = nd.State(0.2)
    tau = nd.Param(2.0)
    gain = nd.Param(0.7)
    v_th = nd.Param(1.0)

    def charge(self, exc, inh):
        return dict(v=self.v + (exc - self.gain * inh * nd.sigmoid(self.g) - self.v) / self.tau,
                    g=0.5 * self.g + nd.tanh(inh))

    def fire(self):
        return self.v - self.v_th

    def reset(self, s):
        return dict(v=self.v * (1 - s))


shapes = st.lists(st.integers(1, 7), min_size=1, max_size=4).filter(lambda s: 1 <= len(s) <= 4)


@given(shape=shapes, T=st.integers(1, 5), seed=st.integers(0, 1000),
       cls=st.sampled_from([zoo.LIF, zoo.ALIF, zoo.CubaLIF, TwoInput]))
def test_hypothesis_shapes_torch(shape, T, seed, cls):
    layer = cls(backend="torch", learnable=cls.spec.params[:2])
    xs = safe_inputs(layer, T, tuple(shape), seed=seed)
    assume(xs is not None)
    spikes, states, _ = compare(layer, *xs)
    assert spikes.shape == (T, *shape)
    assert all(v.shape == tuple(shape) for v in states.values())


@pytest.mark.parametrize("shape", [(1,), (17,), (3, 5), (2, 3, 3), (1, 2, 3, 1)], ids=str)
def test_shapes_triton_interpreter(shape):
    """N not a multiple of 16 (masked lanes), T = 1 and ranks 1-4 under the interpreter."""
    layer = zoo.ALIF(backend="triton", learnable=("tau", "beta"))
    for T in (1, 3):
        xs = require_safe_inputs(layer, T, shape, seed=T)
        compare(layer, *xs)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("cls", [zoo.ALIF, TwoInput], ids=lambda c: c.__name__)
def test_single_step_equals_multi_step(cls, backend):
    multi = cls(backend=backend, learnable=("tau",))
    single = cls(backend=backend, learnable=("tau",), step_mode="s")
    xs = require_safe_inputs(multi, 5, (3, 4), seed=2)
    xm = [x.clone().requires_grad_() for x in xs]
    xsgl = [x.clone().requires_grad_() for x in xs]
    out_m = multi(*xm)
    out_s = torch.stack([single(*[x[t] for x in xsgl]) for t in range(5)])
    assert torch.equal(out_m, out_s)
    for name in cls.spec.states:
        assert_close(single._carried[name], multi._carried[name], torch.float32, name)
    w = torch.randn_like(out_m)
    loss_m = (out_m * w).sum() + sum(multi._carried[k].sum() for k in cls.spec.states)
    loss_s = (out_s * w).sum() + sum(single._carried[k].sum() for k in cls.spec.states)
    g_m = torch.autograd.grad(loss_m, xm + [multi.tau])
    g_s = torch.autograd.grad(loss_s, xsgl + [single.tau])
    for a, b in zip(g_s, g_m):
        assert_close(a, b, torch.float32, "grad")


def test_single_step_takes_per_step_shape():
    layer = zoo.LIF(step_mode="s")
    out = layer(torch.tensor([2.0, 0.1]))
    assert out.shape == (2,)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_carrying_state_across_calls_equals_one_long_call(backend):
    layer = zoo.Izhikevich(backend=backend, learnable=("a", "b"), **zoo.Izhikevich.check_kwargs)
    long = zoo.Izhikevich(backend=backend, learnable=("a", "b"), **zoo.Izhikevich.check_kwargs)
    (x,) = require_safe_inputs(layer, 7, (2, 5), seed=3)
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    out = torch.cat([layer(xa[:3]), layer(xa[3:4]), layer(xa[4:])])
    ref = long(xb)
    assert torch.equal(out, ref)
    for k in ("v", "w"):
        assert_close(getattr(layer, k), getattr(long, k), torch.float32, k)
    # carried states keep their graph: gradients flow across calls
    loss = out.sum() + layer.v.sum() + layer.w.sum()
    ref_loss = ref.sum() + long.v.sum() + long.w.sum()
    ga = torch.autograd.grad(loss, [xa, layer.a, layer.b])
    gb = torch.autograd.grad(ref_loss, [xb, long.a, long.b])
    for a, b in zip(ga, gb):
        assert_close(a, b, torch.float32, "grad")
    assert ga[0][:3].abs().sum() > 0


def test_detach_state_cuts_the_graph():
    layer = zoo.LIF(backend="torch")
    x = (torch.rand(4, 6) * 2).requires_grad_()
    layer(x[:2])
    layer.detach_state()
    out = layer(x[2:])
    (g,) = torch.autograd.grad(out.sum() + layer.v.sum(), [x])
    assert torch.all(g[:2] == 0) and g[2:].abs().sum() > 0


def test_reset_state_and_reset_states_restart_from_defaults():
    net = torch.nn.Sequential(torch.nn.Identity(), zoo.ALIF(backend="torch"), zoo.IF(backend="torch"))
    x = torch.rand(5, 3, 4) * 2 + 1.0
    first = net(x)
    assert net[1].v is not None and net[1].a is not None
    second = net(x)
    assert not torch.equal(first, second)  # the carried adaptation changes the response
    nd.reset_states(net)
    assert net[1].v is None and net[2].v is None
    assert torch.equal(net(x), first)
    net[1].reset_state()
    assert net[1]._carried == {} and net[1].state_seqs == {}
    net[2].reset()
    assert net[2].v is None


def test_reset_state_allows_a_new_batch_shape():
    layer = zoo.LIF()
    layer(torch.rand(2, 3, 4))
    layer.reset_state()
    assert layer(torch.rand(2, 5, 4)).shape == (2, 5, 4)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("cls", [zoo.ALIF, zoo.CubaLIF, zoo.Izhikevich, TwoInput], ids=lambda c: c.__name__)
def test_store_state_seqs_values_and_gradients(cls, backend):
    kw = dict(getattr(cls, "check_kwargs", {}))
    layer = cls(backend=backend, store_state_seqs=True, learnable=cls.spec.params[:2], **kw)
    xs = require_safe_inputs(layer, 5, (2, 3), seed=4)
    _, states, grads = compare(layer, *xs)  # weights on every step of every state sequence
    assert all(v.shape == (5, 2, 3) for v in states.values())
    for k in cls.spec.states:
        assert torch.equal(layer._carried[k], layer.state_seqs[k][-1])
        assert getattr(layer, f"{k}_seq") is layer.state_seqs[k]  # SpikingJelly's v_seq, for every state


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_initial_state_gradients(backend):
    layer = zoo.CubaLIF(backend=backend, learnable=("v_decay",))
    init = {"i": 0.2 * torch.randn(3, 4), "v": 0.3 * torch.rand(3, 4)}
    xs = require_safe_inputs(layer, 4, (3, 4), seed=5, init=init)
    _, _, grads = compare(layer, *xs, init=init)
    assert grads["init_i"].abs().sum() > 0 and grads["init_v"].abs().sum() > 0


def test_initial_state_broadcasts_from_scalar_and_row():
    layer = zoo.LIF(backend="torch")
    x = torch.rand(3, 2, 4) * 2
    a = layer(x, state={"v": torch.tensor(0.3)})
    layer.reset_state()
    b = layer(x, state={"v": torch.full((2, 4), 0.3)})
    layer.reset_state()
    c = layer(x, state={"v": torch.full((4,), 0.3)})
    assert torch.equal(a, b) and torch.equal(a, c)


def test_state_dict_round_trip():
    src = zoo.ALIF(learnable=("tau", "beta"), tau=torch.full((4,), 2.0),
                   surrogate=nd.surrogate.Sigmoid(learnable=True))
    with torch.no_grad():
        src.tau.add_(torch.linspace(0.1, 0.9, 4))
        src.beta.fill_(1.1)
        src.v_th.fill_(0.8)
        src.surrogate_alpha.fill_(3.0)
    sd = src.state_dict()
    assert {"tau", "beta", "v_th", "tau_a", "surrogate_alpha"} <= set(sd)
    dst = zoo.ALIF(learnable=("tau", "beta"), tau=torch.full((4,), 2.0),
                   surrogate=nd.surrogate.Sigmoid(learnable=True))
    dst.load_state_dict(sd)
    x = torch.rand(6, 3, 4) * 2
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    sa, sb = src(xa), dst(xb)
    assert torch.equal(sa, sb)
    ga = torch.autograd.grad(sa.sum(), [xa, src.tau, src.surrogate_alpha])
    gb = torch.autograd.grad(sb.sum(), [xb, dst.tau, dst.surrogate_alpha])
    for a, b in zip(ga, gb):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_double_module_runs_fp64(backend):
    layer = zoo.EIF(backend=backend, learnable=("tau", "delta_T"), surrogate=nd.surrogate.ATan(learnable=True))
    layer = layer.double()
    assert layer.tau.dtype == torch.float64 and layer.surrogate_alpha.dtype == torch.float64
    xs = require_safe_inputs(layer, 5, (3, 4), seed=6, dtype=torch.float64)
    spikes, states, grads = compare(layer, *xs)  # fp64 tolerance 1e-10
    assert spikes.dtype == torch.float64
    assert states["v"].dtype == torch.float64
    assert layer._last_options.compute_dtype == "float64"
    assert all(g.dtype == torch.float64 for g in grads.values())


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_half_and_bfloat16_inputs_compute_in_fp32(backend):
    layer = zoo.LIF(backend=backend)
    x = (torch.rand(3, 5) * 2).half()
    spikes = layer(x)
    assert spikes.dtype == torch.float16
    assert layer.v.dtype == torch.float32
    ref = zoo.LIF(backend="torch")(x.float())
    assert torch.equal(spikes.float(), ref)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_low_precision_inputs_match_reference(backend, dtype):
    """fp16/bf16 inputs: math in fp32, spikes and input gradients in the input dtype."""
    layer = zoo.ALIF(backend=backend, learnable=("tau", "beta"))
    (x,) = require_safe_inputs(layer, 5, (3, 6), seed=12, dtype=dtype)
    spikes, states, grads = compare(layer, x)
    assert spikes.dtype == dtype and states["v"].dtype == torch.float32
    assert grads["x0"].dtype == dtype and grads["tau"].dtype == torch.float32


def test_optimizer_step_changes_learnable_params_only():
    layer = zoo.PLIF(learnable=("w", "v_th"), surrogate=nd.surrogate.ATan(learnable=True))
    before = {n: t.detach().clone() for n, t in [*layer.named_parameters(), *layer.named_buffers()]}
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    x = torch.rand(6, 4, 5) * 2
    loss = (layer(x) - 0.3).pow(2).mean() + layer.v.pow(2).mean()
    loss.backward()
    opt.step()
    params = dict(layer.named_parameters())
    assert set(params) == {"w", "v_th", "surrogate_alpha"}
    for name in params:
        assert not torch.equal(params[name].detach(), before[name]), name
    for name, buf in layer.named_buffers():
        assert torch.equal(buf, before[name]), name


def test_learnable_defaults_follow_param_declaration():
    assert set(dict(zoo.PLIF().named_parameters())) == {"w"}
    assert set(dict(zoo.KLIF().named_parameters())) == {"k"}
    assert set(dict(zoo.LIF().named_parameters())) == set()
    assert set(dict(zoo.PLIF(learnable=()).named_parameters())) == set()


def cpu_auto() -> str:
    """What backend='auto' runs on CPU: the C backend where a working C compiler was found, else torch."""
    from kernels_gen.backends.c import toolchain
    return "torch" if isinstance(toolchain.toolchain(), Exception) else "c"


def test_backend_auto_picks_c_or_torch_on_cpu(monkeypatch):
    import neurodsl.dispatch as neuron_mod
    seen = []
    real = neuron_mod.neuron_op

    def spy(key, backend, *args, **kw):
        seen.append(backend)
        return real(key, backend, *args, **kw)

    monkeypatch.setattr(neuron_mod, "neuron_op", spy)
    layer = zoo.LIF()
    assert layer.backend == "auto"
    assert layer.resolve_backend(torch.device("cpu")) == cpu_auto()
    assert layer.resolve_backend(torch.device("cuda")) == "triton"
    layer(torch.rand(3, 4))
    assert seen == [cpu_auto()]
    assert zoo.LIF(backend="triton").resolve_backend(torch.device("cpu")) == "triton"


def test_user_two_input_neuron():
    layer = TwoInput(backend="torch", learnable=("tau", "gain"))
    assert layer.spec.inputs == ("exc", "inh")
    exc, inh = require_safe_inputs(layer, 5, (4, 3), seed=8)
    _, _, grads = compare(layer, exc, inh)
    assert grads["x1"].abs().sum() > 0  # the inhibitory input receives gradient


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_kernel_source_names_spec_and_key(backend):
    layer = zoo.ALIF(backend=backend, learnable=("tau",))
    layer(torch.rand(2, 3))
    key = nd.compiler.compile_spec(layer.spec, layer._last_options).key
    fwd = layer.kernel_source("forward")
    bwd = layer.kernel_source("backward")
    for text in (fwd, bwd):
        assert "spec: ALIF" in text and key in text
        assert f"backend {backend}" in text
    assert "def forward" in fwd or "def forward_kernel" in fwd
    assert "backward" in bwd and "# ---- forward ----" not in bwd
    assert "# ---- backward ----" not in fwd
    whole = layer.kernel_source("all")
    assert "# ---- forward ----" in whole and "# ---- backward ----" in whole
    with pytest.raises(ValueError):
        layer.kernel_source("sideways")


def test_kernel_source_auto_shows_the_backend_it_runs_and_explicit_backend_triton():
    layer = zoo.LIF()                       # backend='auto' runs C on CPU: kernel_source shows that source
    assert f"backend {cpu_auto()}" in layer.kernel_source("forward")
    assert ("void forward_kernel" if cpu_auto() == "c" else "import torch") in layer.kernel_source("forward")
    assert "backend triton" in layer.kernel_source("forward", backend="triton")


def test_analysis_report_mentions_states_and_params():
    text = str(zoo.ALIF.analysis())
    assert "Neuron ALIF" in text and "states: v, a" in text and "tau_a" in text
    inst = str(zoo.ALIF(learnable=("tau",)).analysis())
    assert "learnable: tau" in inst
    assert "soft" in str(zoo.LIF.analysis(reset_mode="soft")) or zoo.LIF.variant_spec(reset_mode="soft").options


def test_set_step_mode_and_neurons_helpers():
    net = torch.nn.Sequential(zoo.LIF(), torch.nn.Identity(), zoo.ALIF())
    assert len(nd.neurons(net)) == 2
    nd.set_step_mode(net, "s")
    assert all(m.step_mode == "s" for m in nd.neurons(net))
    assert net(torch.rand(3, 4)).shape == (3, 4)
    with pytest.raises(nd.SpecError) as err:
        nd.set_step_mode(net, "x")
    assert err.value.code == "ND124"


def test_set_step_mode_leaves_neurons_in_a_step_loop_single_step():
    looped = nd.StepLoop(zoo.LIF(step_mode="s"))
    net = torch.nn.Sequential(zoo.ALIF(step_mode="s"), looped)
    nd.set_step_mode(net, "m")
    assert net[0].step_mode == "m" and looped[0].step_mode == "s"
    x = torch.rand(6, 2, 3) * 3
    expected = zoo.LIF()(zoo.ALIF()(x))
    assert torch.equal(net(x), expected)


def test_reassigned_surrogate_equals_a_fresh_layer():
    x = torch.rand(5, 4) * 3
    changed, fresh = zoo.LIF(), zoo.LIF(surrogate=nd.surrogate.Sigmoid(alpha=8.0))
    changed.surrogate = nd.surrogate.Sigmoid(alpha=8.0)
    grads = []
    for layer in (changed, fresh):
        xi = x.clone().requires_grad_()
        layer(xi).sum().backward()
        grads.append(xi.grad)
    assert torch.equal(*grads) and grads[0].abs().sum() > 0
    assert float(changed.surrogate_alpha) == 8.0 and "surrogate_alpha" in dict(changed.named_buffers())
    changed.surrogate = nd.surrogate.ATan(alpha=3.0, learnable=True)
    assert set(dict(changed.named_parameters())) == {"surrogate_alpha"}
    with pytest.raises(nd.SpecError) as err:
        changed.surrogate = "atan"
    assert err.value.code == "ND132"


def test_deepcopy_and_pickle_mid_training():
    import copy
    import io
    layer = zoo.PLIF()
    x = torch.rand(5, 2, 3) * 3
    layer(x.requires_grad_()).sum().backward()          # carried v has autograd history
    twin = copy.deepcopy(layer)
    assert torch.equal(twin.v, layer.v) and not twin.v.requires_grad
    reset_free = zoo.ALIF.without_reset()(tau=3.0, learnable=("tau",))
    reset_free(x)
    buffer = io.BytesIO()
    torch.save(torch.nn.Sequential(reset_free), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)[0]
    assert type(loaded) is zoo.ALIF.without_reset() and torch.equal(loaded.tau, reset_free.tau)
    loaded.reset_state(), reset_free.reset_state()
    assert torch.equal(loaded(x), reset_free(x))


def test_reset_states_does_not_call_back_a_users_reset_state():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lif = zoo.LIF(backend="torch")

        def reset_state(self):            # a common pattern: the model resets itself through nd
            nd.reset_states(self)

    net = Net()
    net.lif(torch.rand(3, 2) * 3)
    net.reset_state()                     # no recursion
    assert net.lif.v is None
