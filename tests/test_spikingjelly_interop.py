"""A SpikingJelly model whose LIFNodes are replaced by nd.zoo.LIF computes the same spikes and gradients,
and SpikingJelly's reset_net / set_step_mode work on the mixed model."""
import copy
import warnings

import pytest
import torch
from torch import nn

import neurodsl as nd
from neurodsl.containers import replace_lif_nodes

sj = pytest.importorskip("spikingjelly.activation_based")
from spikingjelly.activation_based import functional, layer, neuron, surrogate  # noqa: E402

NODE_CONFIGS = [
    dict(),                                                                     # SpikingJelly's defaults
    dict(tau=3.0, v_reset=None, decay_input=False, v_threshold=0.5, surrogate_function=surrogate.ATan()),
    dict(tau=1.5, v_reset=-0.2, detach_reset=True, surrogate_function=surrogate.PiecewiseQuadratic(alpha=2.0)),
]


def sj_model(config):
    torch.manual_seed(0)
    model = nn.Sequential(
        layer.Conv2d(2, 4, 3, padding=1, step_mode="m"), layer.BatchNorm2d(4, step_mode="m"),
        neuron.LIFNode(step_mode="m", **config),
        layer.MaxPool2d(2, step_mode="m"), layer.Flatten(step_mode="m"),
        layer.Linear(4 * 4 * 4, 10, step_mode="m"),
        neuron.LIFNode(step_mode="m", **config),
    )
    with torch.no_grad():
        model[5].weight.mul_(4.0)                    # enough drive for the output layer to spike
    return model


def mixed_pair(config):
    ref = sj_model(config)
    ours = replace_lif_nodes(copy.deepcopy(ref))
    return ref, ours


def run(model, x):
    x = x.clone().requires_grad_()
    out = model(x)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    return out.detach(), x.grad


@pytest.mark.parametrize("config", NODE_CONFIGS, ids=["default", "soft-no-decay-atan", "detach-pwq"])
def test_replaced_lif_matches_spikingjelly(config):
    ref, ours = mixed_pair(config)
    lifs = [m for m in ours.modules() if isinstance(m, nd.zoo.LIF)]
    assert len(lifs) == 2 and not any(isinstance(m, neuron.LIFNode) for m in ours.modules())
    assert lifs[0].step_mode == "m" and lifs[0].detach_reset == config.get("detach_reset", False)
    x = torch.rand(6, 3, 2, 8, 8) * 3
    out_ref, grad_ref = run(ref, x)
    out_ours, grad_ours = run(ours, x)
    assert 0 < out_ref.mean() < 1 and torch.equal(out_ours, out_ref)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=1e-4, atol=1e-5)
    for p_ours, p_ref in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(p_ours.grad, p_ref.grad, rtol=1e-4, atol=1e-5)


def test_reset_net_and_set_step_mode_on_the_mixed_model():
    ref, ours = mixed_pair({})
    ours.eval()
    x = torch.rand(5, 3, 2, 8, 8) * 3
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")              # SpikingJelly warns that nd neurons are no MemoryModule
        multi = ours(x)
        assert all(m.v is not None for m in nd.neurons(ours))
        functional.reset_net(ours)
        assert all(m.v is None for m in nd.neurons(ours))
        assert torch.equal(ours(x), multi)           # the same sequence again, from fresh states
        functional.reset_net(ours)
        functional.set_step_mode(ours, "s")
        assert {m.step_mode for m in ours.modules() if hasattr(m, "step_mode")} == {"s"}
        single = torch.stack([ours(x_t) for x_t in x])
    assert torch.equal(single, multi)


def test_replace_rejects_a_surrogate_without_equal_form():
    model = nn.Sequential(neuron.LIFNode(surrogate_function=surrogate.SuperSpike(alpha=2.0)))
    with pytest.raises(nd.SpecError, match="SuperSpike") as info:
        replace_lif_nodes(model)
    assert info.value.code == "ND133"
    replace_lif_nodes(model, surrogate=nd.surrogate.ATan())
    assert isinstance(model[0], nd.zoo.LIF)


def test_lif_from_spikingjelly_reads_the_node_and_takes_overrides():
    node = neuron.LIFNode(tau=3.0, v_threshold=0.5, v_reset=-0.1, decay_input=False, detach_reset=True,
                          surrogate_function=surrogate.Sigmoid(alpha=3.0), step_mode="s", store_v_seq=True)
    lif = nd.zoo.LIF.from_spikingjelly(node, tau=5.0, backend="torch")
    assert lif.spec.options == (("decay_input", False), ("reset_mode", "hard"))
    assert (lif.tau.item(), lif.v_th.item(), round(lif.v_reset.item(), 6)) == (5.0, 0.5, -0.1)
    assert lif.detach_reset and lif.step_mode == "s" and lif.store_state_seqs and lif.backend == "torch"
    assert isinstance(lif.surrogate, nd.surrogate.Sigmoid) and lif.surrogate.alpha == 3.0


def test_v_seq_matches_spikingjelly_store_v_seq():
    node = neuron.LIFNode(tau=2.5, v_reset=None, step_mode="m", store_v_seq=True)
    lif = nd.zoo.LIF.from_spikingjelly(node)
    x = torch.rand(7, 3, 5) * 2
    assert lif.v_seq is None                                # nothing stored before the first call
    ours, ref = lif(x), node(x)
    assert torch.equal(ours, ref) and 0 < ref.sum()
    assert lif.v_seq.shape == (7, 3, 5)
    torch.testing.assert_close(lif.v_seq, node.v_seq)
    assert torch.equal(lif.v_seq[-1], lif.v)
    lif.reset_state()
    assert lif.v_seq is None
