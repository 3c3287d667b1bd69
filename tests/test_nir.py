"""NIR export / import (neurodsl.nir_io): round trips, files, hand-built graphs against Euler references, errors."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

import neurodsl as nd
from neurodsl import zoo
from neurodsl.containers import SeqToBatch, StepLoop

nir = pytest.importorskip("nir")
from neurodsl.nir_io import NIRError, NIRGraphModule, from_nir, to_nir  # noqa: E402

DT = 1e-3


def run(model, x):
    nd.reset_states(model)
    return model(x)


def assert_same_model(a: nn.Module, b: nn.Module):
    """Same layer types, neuron variants and parameter values (shapes included) in the same order."""
    layers_a = [m for m in a.modules() if not list(m.children())]
    layers_b = [m for m in b.modules() if not list(m.children())]
    assert [type(m) for m in layers_a] == [type(m) for m in layers_b]
    for m, n in zip(layers_a, layers_b):
        if isinstance(m, nd.Neuron):
            assert m.spec.options == n.spec.options
            for name in m.spec.params:
                assert torch.equal(m.param_value(name).detach(), n.param_value(name)), name
        else:
            for (name, p), (_, q) in zip(m.named_parameters(), n.named_parameters()):
                assert torch.equal(p.detach(), q.detach()), name


def mlp(decay_input: bool) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 5),
        zoo.LIF(tau=torch.tensor([1.5, 2.0, 3.0, 4.0, 8.0]), v_th=0.3, v_reset=-0.2, decay_input=decay_input),
        nn.Linear(5, 4, bias=False),
        zoo.IF(v_th=torch.tensor([0.1, 0.2, 0.3, 0.4]), v_reset=0.05),
    )


@pytest.mark.parametrize("decay_input", [True, False])
def test_linear_lif_if_round_trip(decay_input):
    model = mlp(decay_input)
    graph = to_nir(model, (6,), dt=DT)
    assert [type(n).__name__ for n in graph.nodes.values()] == ["Input", "Affine", "LIF", "Linear", "IF", "Output"]
    lif = graph.nodes["1"]
    np.testing.assert_allclose(lif.tau, [1.5e-3, 2e-3, 3e-3, 4e-3, 8e-3])
    np.testing.assert_allclose(lif.r, 1.0 if decay_input else [1.5, 2.0, 3.0, 4.0, 8.0])
    np.testing.assert_allclose(lif.v_leak, -0.2, rtol=1e-6)
    np.testing.assert_allclose(graph.nodes["3"].r, 1 / DT)
    back = from_nir(graph, dt=DT)
    assert isinstance(back, nn.Sequential) and list(dict(back.named_children())) == ["0", "1", "2", "3"]
    assert_same_model(model, back)
    x = torch.rand(12, 3, 6) * 4
    spikes = run(model, x)
    assert 0 < spikes.mean() < 1 and torch.equal(spikes, run(back, x))


@pytest.mark.parametrize("flatten", [nn.Flatten(2), SeqToBatch(nn.Flatten())], ids=["Flatten(2)", "SeqToBatch"])
def test_conv_flatten_linear_cubalif_round_trip(flatten):
    torch.manual_seed(1)
    model = nn.Sequential(
        SeqToBatch(nn.Conv2d(2, 3, 3, padding=1)),
        zoo.LIF(tau=torch.tensor([2.0, 3.0, 5.0]).reshape(3, 1, 1), v_th=0.2),   # per channel
        flatten,
        nn.Linear(48, 5),
        zoo.CubaLIF(c_decay=torch.tensor([0.3, 0.5, 0.6, 0.7, 0.9]), v_decay=0.8, v_th=0.1),
    )
    graph = to_nir(model, torch.zeros(1, 1, 2, 4, 4), dt=DT)
    assert [type(n).__name__ for n in graph.nodes.values()] == ["Input", "Conv2d", "LIF", "Flatten", "Affine",
                                                               "CubaLIF", "Output"]
    assert graph.nodes["1"].tau.shape == (3, 4, 4) and graph.nodes["2"].start_dim == 0
    cuba = graph.nodes["4"]
    np.testing.assert_allclose(cuba.tau_syn, DT / (1 - np.array([0.3, 0.5, 0.6, 0.7, 0.9], np.float32)))
    np.testing.assert_allclose(cuba.w_in, cuba.tau_syn / DT)
    np.testing.assert_allclose(cuba.r, cuba.tau_mem / DT)
    back = from_nir(graph, dt=DT)
    assert isinstance(back[0], SeqToBatch) and isinstance(back[2], nn.Flatten)
    assert back[1].tau.shape == (3, 1, 1) and back[4].v_decay.shape == ()
    assert_same_model(model, back)
    x = (torch.rand(10, 2, 2, 4, 4) < 0.5).float() * 2
    spikes = run(model, x)
    assert spikes.sum() > 0 and torch.equal(spikes, run(back, x))


def test_soft_reset_is_not_exported_and_plif_becomes_lif():
    for soft in (zoo.LIF(reset_mode="soft"), zoo.IF(reset_mode="soft")):
        with pytest.raises(NIRError) as info:
            to_nir(nn.Sequential(nn.Linear(3, 2), soft), (3,))
        assert info.value.code == "ND501" and "soft" in str(info.value)
    plif = nn.Sequential(nn.Linear(3, 2), zoo.PLIF(w=torch.tensor([0.5, -1.0]), decay_input=False, v_reset=0.2))
    back = from_nir(to_nir(plif, (3,), dt=DT), dt=DT)
    assert type(back[1]) is zoo.LIF
    torch.testing.assert_close(back[1].tau, 1 / torch.sigmoid(torch.tensor([0.5, -1.0])))
    x = torch.rand(15, 4, 3) * 3
    assert torch.equal(run(plif, x), run(back, x))


def test_write_read_import(tmp_path):
    model = mlp(decay_input=True)
    path = tmp_path / "mlp.nir"
    nir.write(path, to_nir(model, (6,), dt=DT))
    loaded = nir.read(path)
    assert set(loaded.nodes) == {"input", "0", "1", "2", "3", "output"}
    x = torch.rand(9, 2, 6) * 2
    expected = run(model, x)
    assert torch.equal(run(from_nir(loaded, dt=DT), x), expected)
    assert torch.equal(run(from_nir(path, dt=DT), x), expected)      # a path is read for you


def test_conv_graph_survives_a_file(tmp_path):
    model = nn.Sequential(SeqToBatch(nn.Conv2d(1, 2, 3, stride=2, padding=1, bias=False)), nn.Flatten(2),
                          nn.Linear(8, 3), zoo.IF(v_th=0.5))
    nir.write(tmp_path / "conv.nir", to_nir(model, (1, 4, 4), dt=DT))
    back = from_nir(tmp_path / "conv.nir", dt=DT)
    assert back[0][0].stride == (2, 2) and back[0][0].padding == (1, 1)
    x = torch.rand(6, 2, 1, 4, 4)
    assert torch.equal(run(model, x), run(back, x))


def test_multi_layer_seq_to_batch_and_step_loop_export():
    torch.manual_seed(2)
    model = nn.Sequential(SeqToBatch(nn.Conv2d(1, 2, 3), nn.Flatten()),
                          StepLoop(nn.Linear(8, 3), zoo.LIF(step_mode="s", v_th=0.2)))
    graph = to_nir(model, (1, 4, 4), dt=DT)
    assert list(graph.nodes) == ["input", "0.0", "0.1", "1.0", "1.1", "output"]
    back = from_nir(graph, dt=DT)
    x = torch.rand(8, 2, 1, 4, 4) * 2
    spikes = run(model, x)
    assert 0 < spikes.mean() < 1 and torch.equal(spikes, run(back, x))


def euler_lif(x, tau, r, v_leak, v_th, v_reset, dt):
    """NIR's LIF, tau dv/dt = (v_leak - v) + r I, by forward Euler; spike when v > v_th, then v = v_reset."""
    v, spikes, vs = torch.broadcast_to(v_reset, x.shape[1:]).clone(), [], []
    for xt in x:
        v = v + dt / tau * (v_leak - v + r * xt)
        s = (v > v_th).to(x.dtype)
        v = torch.where(s > 0, v_reset, v)
        spikes.append(s)
        vs.append(v)
    return torch.stack(spikes), torch.stack(vs)


@pytest.mark.parametrize("r_is_tau_over_dt", [False, True], ids=["r=1", "r=tau/dt"])
def test_hand_built_affine_lif_matches_forward_euler(r_is_tau_over_dt):
    dt = 0.5e-3
    rng = np.random.default_rng(3)
    weight, bias = rng.normal(size=(4, 3)).astype(np.float32), np.array([0.1, 0.0, -0.1, 0.2], np.float32)
    tau = np.array([1e-3, 2e-3, 4e-3, 1e-2])
    r = tau / dt if r_is_tau_over_dt else np.ones(4)
    v_rest = np.full(4, -0.1)
    threshold = np.array([0.2, 0.4, 0.6, 0.8])
    graph = nir.NIRGraph(
        nodes={"in": nir.Input(input_type=np.array([3])), "fc": nir.Affine(weight=weight, bias=bias),
               "lif": nir.LIF(tau=tau, r=r, v_leak=v_rest, v_threshold=threshold, v_reset=v_rest),
               "out": nir.Output(output_type=np.array([4]))},
        edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")])
    model = from_nir(graph, dt=dt, store_state_seqs=True)
    assert model.lif.spec.options == (("decay_input", not r_is_tau_over_dt), ("reset_mode", "hard"))
    x = torch.rand(40, 5, 3, dtype=torch.float64) * (0.5 if r_is_tau_over_dt else 2.0)
    current = x @ torch.from_numpy(weight).double().T + torch.from_numpy(bias).double()
    ref_spikes, ref_v = euler_lif(current, *map(torch.from_numpy, (tau, r, v_rest, threshold, v_rest)), dt)
    spikes = model(x.float())
    assert 0 < ref_spikes.mean() < 1
    assert torch.equal(spikes, ref_spikes.float())
    torch.testing.assert_close(model.lif.state_seqs["v"], ref_v.float(), atol=1e-5, rtol=1e-5)


def test_hand_built_cubalif_matches_its_euler_convention():
    """I integrates first; v integrates the updated I (as snnTorch and SpikingJelly discretise CubaLIF)."""
    dt = 1e-3
    tau_syn, tau_mem = np.array([2e-3, 5e-3, 1e-2]), np.array([4e-3, 4e-3, 2e-2])
    threshold = np.array([0.5, 1.0, 1.5])
    graph = nir.NIRGraph.from_list(
        nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=np.zeros(3), v_threshold=threshold,
                    w_in=tau_syn / dt))
    model = from_nir(graph, dt=dt)
    x = torch.rand(50, 4, 3, dtype=torch.float64)
    i = v = torch.zeros(4, 3, dtype=torch.float64)
    t_syn, t_mem, w_in, r, thr = map(torch.from_numpy, (tau_syn, tau_mem, tau_syn / dt, tau_mem / dt, threshold))
    ref = []
    for xt in x:
        i = i + dt / t_syn * (-i + w_in * xt)
        v = v + dt / t_mem * (0.0 - v + r * i)
        s = (v > thr).double()
        v = torch.where(s > 0, 0.0, v)
        ref.append(s)
    ref = torch.stack(ref)
    assert 0 < ref.mean() < 1 and torch.equal(model(x.float()), ref.float())


def skip_graph() -> nir.NIRGraph:
    """in -> a -> lif1 -> b -> lif2 -> out, plus in -> c -> lif2: lif2 gets b(...) + c(x)."""
    rng = np.random.default_rng(7)

    def affine(n_out, n_in):
        return nir.Affine(weight=rng.uniform(-0.5, 1.0, size=(n_out, n_in)).astype(np.float32),
                          bias=rng.normal(size=n_out).astype(np.float32) * 0.1)

    def lif(n):
        return nir.LIF(tau=np.full(n, 3 * DT), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.full(n, 0.3))

    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([4])), "a": affine(3, 4), "lif1": lif(3), "b": affine(3, 3),
               "c": affine(3, 4), "lif2": lif(3), "output": nir.Output(output_type=np.array([3]))},
        edges=[("input", "a"), ("a", "lif1"), ("lif1", "b"), ("b", "lif2"), ("input", "c"), ("c", "lif2"),
               ("lif2", "output")])


def test_dag_import_sums_inputs_and_exports_back():
    model = from_nir(skip_graph(), dt=DT)
    assert isinstance(model, NIRGraphModule)
    n = model.nodes
    x = torch.rand(20, 3, 4) * 2
    expected = n["lif2"](n["b"](n["lif1"](n["a"](x))) + n["c"](x))
    assert 0 < expected.mean() < 1 and torch.equal(run(model, x), expected)
    graph = to_nir(model, (4,), dt=DT)
    assert sorted(graph.edges) == sorted(skip_graph().edges)
    assert torch.equal(run(from_nir(graph, dt=DT), x), expected)


def recurrent_graph() -> nir.NIRGraph:
    """in -> fc -> lif -> out, and lif -> rec -> lif: a recurrent layer whose loop NIR leaves undelayed."""
    rng = np.random.default_rng(11)
    n = 5
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([3])),
               "fc": nir.Affine(weight=rng.uniform(-0.2, 1.0, size=(n, 3)).astype(np.float32),
                                bias=np.full(n, 0.05, np.float32)),
               "lif": nir.LIF(tau=np.linspace(2, 6, n) * DT, r=np.ones(n), v_leak=np.zeros(n),
                              v_threshold=np.full(n, 0.4), v_reset=np.zeros(n)),
               "rec": nir.Linear(weight=(rng.normal(size=(n, n)) * 0.4).astype(np.float32)),
               "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")])


def test_recurrent_graph_runs_step_by_step_like_forward_euler(tmp_path):
    graph = recurrent_graph()
    model = from_nir(graph, dt=DT)
    assert isinstance(model, NIRGraphModule) and model.delayed == [("rec", "lif")]
    x = torch.rand(30, 4, 3, dtype=torch.float64) * 2
    node = graph.nodes
    w_in, b_in, w_rec = (torch.from_numpy(a).double() for a in (node["fc"].weight, node["fc"].bias, node["rec"].weight))
    tau, th = torch.from_numpy(node["lif"].tau), 0.4
    v, s, ref = torch.zeros(4, 5, dtype=torch.float64), torch.zeros(4, 5, dtype=torch.float64), []
    for x_t in x:  # the loop closes through the previous step's spikes
        v = v + DT / tau * (-v + x_t @ w_in.T + b_in + s @ w_rec.T)
        s = (v > th).double()
        v = torch.where(s > 0, 0.0, v)
        ref.append(s)
    ref = torch.stack(ref)
    assert 0.05 < ref.mean() < 0.95
    spikes = model(x.float())
    assert torch.equal(spikes, ref.float())
    exported = to_nir(model, (3,), dt=DT)                      # the loop exports as it came
    assert sorted(exported.edges) == sorted(graph.edges)
    nir.write(tmp_path / "rnn.nir", exported)
    assert torch.equal(from_nir(tmp_path / "rnn.nir", dt=DT)(x.float()), spikes)


def test_recurrent_graph_carries_state_and_backpropagates_through_time():
    model = from_nir(recurrent_graph(), dt=DT, backend="torch")
    x = (torch.rand(24, 2, 3) * 2).requires_grad_()
    whole = model(x)
    nd.reset_states(model)
    assert torch.equal(torch.cat([model(x[:10]), model(x[10:])]), whole)  # neurons and the loop carry over
    nd.reset_states(model)
    assert model._feedback == {} and torch.equal(copy.deepcopy(model)(x), whole)
    # BPTT through the loop equals the same loop written out with the model's own layers
    nd.reset_states(model)
    (model(x) * torch.linspace(0, 1, 5)).sum().backward()
    grads = [x.grad.clone()] + [p.grad.clone() for p in model.parameters()]
    x.grad = None
    model.zero_grad()
    fc, lif, rec = model.nodes["fc"], copy.deepcopy(model.nodes["lif"]), model.nodes["rec"]
    lif.reset_state()
    lif.step_mode = "s"
    s, out = None, []
    for x_t in x:
        s = lif(fc(x_t) + (rec(s) if s is not None else 0))
        out.append(s)
    (torch.stack(out) * torch.linspace(0, 1, 5)).sum().backward()
    manual = [x.grad] + [p.grad for p in model.parameters()]
    assert manual[0].abs().sum() > 0 and model.nodes["rec"].weight.grad.abs().sum() > 0
    for got, want in zip(grads, manual):
        torch.testing.assert_close(got, want)


def test_recurrent_graph_single_step_edge_order_and_state_seqs():
    graph = recurrent_graph()
    model = from_nir(graph, dt=DT, store_state_seqs=True)
    x = torch.rand(9, 4, 3) * 2
    spikes = model(x)
    lif = model.nodes["lif"]
    assert lif.state_seqs["v"].shape == (9, 4, 5)                # every step, not the last one
    assert torch.equal(lif.v_seq[-1], lif.v)
    shuffled = nir.NIRGraph(nodes=graph.nodes, edges=list(reversed(graph.edges)))
    again = from_nir(shuffled, dt=DT)
    assert again.delayed == model.delayed == [("rec", "lif")]    # the edge list's order does not matter
    assert torch.equal(again(x), spikes)
    model.reset_state()                                          # the loop's values and the neurons inside
    assert model._feedback == {} and lif.v is None
    nd.set_step_mode(model, "s")                                 # one call per step, [B, ...]
    assert torch.equal(torch.stack([model(x_t) for x_t in x]), spikes)
    assert lif.v.shape == (4, 5)


def test_export_of_a_loop_into_a_nested_graph_module_reaches_every_entry():
    eye = torch.eye(2)

    def linear():
        layer = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            layer.weight.copy_(eye * 0.5)
        return layer

    inner = NIRGraphModule({"p": linear(), "q": linear()}, [("i", "p"), ("i", "q"), ("p", "o"), ("q", "o")], "i", "o")
    outer = NIRGraphModule({"inner": inner, "lif": zoo.LIF(v_th=0.6), "rec": linear()},
                           [("x", "inner"), ("inner", "lif"), ("lif", "rec"), ("rec", "inner"), ("lif", "y")],
                           "x", "y")
    assert outer.delayed == [("rec", "inner")]
    graph = to_nir(outer, (2,), dt=DT)
    assert {("rec", "inner.p"), ("rec", "inner.q")} <= set(graph.edges)
    x = torch.rand(12, 3, 2) * 2
    expected = outer(x)
    assert 0 < expected.mean() < 1 and torch.equal(from_nir(graph, dt=DT)(x), expected)


def test_nested_subgraphs_are_inlined():
    """A recurrent layer packed as a subgraph (how some exporters write one) imports like the flat graph."""
    flat = recurrent_graph()
    n = flat.nodes
    layer = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([5])), "lif": n["lif"], "w_rec": n["rec"],
                                "output": nir.Output(output_type=np.array([5]))},
                         edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    nested = nir.NIRGraph(nodes={"input": n["input"], "fc": n["fc"], "rlif": layer, "output": n["output"]},
                          edges=[("input", "fc"), ("fc", "rlif"), ("rlif", "output")])
    model = from_nir(nested, dt=DT)
    assert model.delayed == [("rlif_w_rec", "rlif_lif")] and model.order == ["fc", "rlif_lif", "rlif_w_rec"]
    x = torch.rand(20, 3, 3) * 2
    expected = from_nir(flat, dt=DT)(x)
    assert 0 < expected.mean() < 1 and torch.equal(model(x), expected)
    two_inputs = nir.NIRGraph(nodes={"a": nir.Input(np.array([5])), "b": nir.Input(np.array([5])),
                                     "output": nir.Output(np.array([5]))},
                              edges=[("a", "output"), ("b", "output")], type_check=False)
    bad = nir.NIRGraph(nodes={"input": n["input"], "fc": n["fc"], "sub": two_inputs, "output": n["output"]},
                       edges=[("input", "fc"), ("fc", "sub"), ("sub", "output")], type_check=False)
    assert "subgraph 'sub'" in str(expect_code("ND503", lambda: from_nir(bad)))


def test_neuron_options_reach_every_neuron():
    model = from_nir(to_nir(mlp(True), (6,), dt=DT), dt=DT, surrogate=nd.surrogate.Sigmoid(alpha=3.0),
                     backend="torch")
    assert all(isinstance(m.surrogate, nd.surrogate.Sigmoid) and m.backend == "torch" for m in nd.neurons(model))


def test_export_leaves_the_model_alone_and_accepts_identity():
    model = nn.Sequential(nn.Identity(), nn.Linear(3, 2), zoo.LIF(), nn.Identity())
    model(torch.rand(4, 2, 3))
    v = model[2].v.clone()
    graph = to_nir(model, (3,), dt=DT)
    assert list(graph.nodes) == ["input", "1", "2", "output"] and torch.equal(model[2].v, v)


def expect_code(code, fn):
    with pytest.raises(NIRError) as info:
        fn()
    assert info.value.code == code and isinstance(info.value, nd.NeuroDSLError)
    return info.value


def test_export_errors():
    seq = nn.Sequential
    expect_code("ND501", lambda: to_nir(seq(nn.Linear(3, 2), zoo.ALIF()), (3,)))
    expect_code("ND501", lambda: to_nir(seq(nn.Linear(3, 2), nn.ReLU()), (3,)))
    expect_code("ND501", lambda: to_nir(seq(nn.Conv2d(1, 2, 3)), (1, 5, 5)))                   # not in SeqToBatch
    expect_code("ND501", lambda: to_nir(seq(SeqToBatch(nn.Conv2d(2, 2, 3, groups=2))), (2, 5, 5)))
    expect_code("ND501", lambda: to_nir(seq(SeqToBatch(seq(nn.Conv2d(1, 2, 3), zoo.LIF()))), (1, 5, 5)))
    expect_code("ND501", lambda: to_nir(seq(nn.Flatten()), (2, 3)))                            # merges T and B
    expect_code("ND501", lambda: to_nir(seq(nn.Linear(3, 2)), (4, 3)))                         # Linear on 2-D
    expect_code("ND501", lambda: to_nir(zoo.CubaLIF(c_decay=1.0), (3,)))
    expect_code("ND501", lambda: to_nir(zoo.LIF(tau=torch.ones(2, 3) * 2), (3,)))              # not per neuron
    expect_code("ND504", lambda: to_nir(zoo.LIF(), (3,), dt=0.0))
    err = expect_code("ND501", lambda: to_nir(nn.Sequential(nn.Linear(3, 3), zoo.IF(reset_mode="soft")), (3,)))
    assert str(err).startswith("[ND501] 1: reset_mode='soft'")                # the layer's name leads the message


class StrictLIF(zoo.LIF):
    """A subclass may change the equations, so it does not inherit LIF's NIR mapping."""


def test_inherited_nir_node_is_not_used():
    err = expect_code("ND501", lambda: to_nir(StrictLIF(), (3,)))
    assert "inherits nir_node from LIF" in str(err)
    StrictLIF.nir_node = zoo.LIF.nir_node                                       # an explicit opt-in
    try:
        assert type(to_nir(StrictLIF(), (3,)).nodes["strictlif"]).__name__ == "LIF"
    finally:
        del StrictLIF.nir_node


def test_import_errors():
    lif = dict(tau=np.full(2, 2.0), v_threshold=np.ones(2))
    expect_code("ND502", lambda: from_nir(nir.NIRGraph.from_list(nir.LI(tau=np.ones(2), r=np.ones(2),
                                                                        v_leak=np.zeros(2)))))
    expect_code("ND502", lambda: from_nir(nir.NIRGraph.from_list(nir.LIF(r=np.full(2, 3.0), v_leak=np.zeros(2),
                                                                         **lif))))
    expect_code("ND502", lambda: from_nir(nir.NIRGraph.from_list(nir.LIF(r=np.ones(2), v_leak=np.ones(2), **lif))))
    err = expect_code("ND502", lambda: from_nir(nir.NIRGraph.from_list(nir.IF(r=np.ones(2), v_threshold=np.ones(2))),
                                                dt=0.5))
    assert str(err) == "[ND502] node 'if': nir.IF needs r = 1/dt to map to neurodsl's IF"
    cuba = dict(tau_syn=np.full(2, 2.0), tau_mem=np.full(2, 4.0), v_leak=np.zeros(2), v_threshold=np.ones(2))
    expect_code("ND502", lambda: from_nir(nir.NIRGraph.from_list(nir.CubaLIF(r=np.ones(2), **cuba))))
    assert isinstance(from_nir(nir.NIRGraph.from_list(nir.CubaLIF(r=np.full(2, 4.0), w_in=2.0, **cuba))), nn.Module)
    inner = nir.NIRGraph.from_list(nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2)))
    err = expect_code("ND502", lambda: from_nir(nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "sub": inner,
                                                                    "output": nir.Output(np.array([2]))},
                                                             edges=[("input", "sub"), ("sub", "output")])))
    assert "node 'sub.li'" in str(err)                     # a node inside a subgraph is named by its path


def test_graph_structure_errors():
    two_inputs = nir.NIRGraph(
        nodes={"x": nir.Input(np.array([2])), "y": nir.Input(np.array([2])), "out": nir.Output(np.array([2]))},
        edges=[("x", "out"), ("y", "out")])
    expect_code("ND503", lambda: from_nir(two_inputs))
    eye = np.eye(2, dtype=np.float32)
    island = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "a": nir.Linear(eye), "b": nir.Linear(eye),
                                 "c": nir.Linear(eye), "output": nir.Output(np.array([2]))},
                          edges=[("input", "a"), ("a", "output"), ("b", "c"), ("c", "b")], type_check=False)
    err = expect_code("ND503", lambda: from_nir(island))        # a cycle no path from the Input reaches
    assert "['b', 'c']" in str(err)
    unfed = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "a": nir.Linear(eye), "b": nir.Linear(eye),
                                "output": nir.Output(np.array([2]))},
                         edges=[("input", "a"), ("a", "output"), ("b", "output")], type_check=False)
    expect_code("ND503", lambda: from_nir(unfed))


class Leaky(nd.Neuron):
    """A user's neuron (snnTorch's Leaky): v = beta v + x, hard reset to 0; NIR's LIF with r = tau/dt, v_leak = 0."""

    nir_type = "LIF"
    v = nd.State(0.0)
    beta = nd.Param(0.9)
    v_th = nd.Param(1.0)

    def charge(self, x):
        return dict(v=self.beta * self.v + x)

    def fire(self):
        return self.v - self.v_th

    def reset(self, s):
        return dict(v=self.v * (1 - s))

    def nir_node(self, shape, dt):
        from neurodsl.interop import param_arrays
        p = param_arrays(self, shape)
        tau = dt / (1 - p["beta"])
        return nir.LIF(tau=tau, r=tau / dt, v_leak=np.zeros(shape), v_threshold=p["v_th"], v_reset=np.zeros(shape))

    @classmethod
    def from_nir_node(cls, node, dt, **options):
        from neurodsl.interop import allclose, param_from_array, require
        require(allclose(node.r, node.tau / dt) and allclose(node.v_leak, 0) and allclose(node.v_reset, 0), node,
                cls, "r = tau/dt and v_leak = v_reset = 0")
        return cls(beta=param_from_array("beta", 1 - dt / node.tau),
                   v_th=param_from_array("v_threshold", node.v_threshold), **options)


def test_user_neuron_class_round_trips():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), Leaky(beta=torch.tensor([0.5, 0.8, 0.9]), v_th=0.4))
    graph = to_nir(model, (4,), dt=DT)
    assert type(graph.nodes["1"]).__name__ == "LIF"
    back = from_nir(graph, dt=DT, neurons=[Leaky], backend="torch")
    assert isinstance(back[1], Leaky) and back[1].backend == "torch"
    torch.testing.assert_close(back[1].beta, model[1].beta)
    x = torch.rand(12, 2, 4) * 2
    expected = run(model, x)
    assert 0 < expected.mean() < 1 and torch.equal(run(back, x), expected)
    assert isinstance(from_nir(graph, dt=DT)[1], zoo.LIF)                      # without neurons=: the zoo's LIF
    bad = nir.NIRGraph.from_list(nir.LIF(tau=np.full(2, 2e-3), r=np.ones(2), v_leak=np.zeros(2),
                                         v_threshold=np.ones(2)))
    assert "neurodsl's Leaky" in str(expect_code("ND502", lambda: from_nir(bad, dt=DT, neurons=[Leaky])))


def test_importing_neurodsl_does_not_import_nir():
    import subprocess
    import sys
    code = "import sys, neurodsl; assert 'nir' not in sys.modules and 'neurodsl.nir_io' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
