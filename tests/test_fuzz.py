"""The tools users get from ``neurodsl.testing``: the reference check (that it finds what it must and tolerates
only near-threshold flips), the firing-rate input generator, the fuzzing campaign and its command line
(CI-sized; the long campaign is ``python -m neurodsl.testing --examples 2000``), and invalid-spec strategies."""
import json
import re

import pytest
import torch
from hypothesis import given, settings

import neurodsl as nd
from neurodsl import zoo
from neurodsl.errors import UsageError
from neurodsl.testing import (DEFECTS, check_against_reference, firing_rate, initial_states, inputs_for,
                              invalid_neurons, layer_for_check)
from neurodsl.testing import fuzzing
from neurodsl.testing.fuzzing import campaign


# -- the reference check ------------------------------------------------------------------------------------------
def perturbed(layer, delta):
    """``layer`` seen through a kernel that adds ``delta`` ([T, *shape]) to its input: a stand-in for rounding."""
    run = layer.forward
    layer.forward = lambda x, state=None: run(x + delta, state=state)
    return layer


def near_threshold_if(n=1000, near=10):
    """IF inputs (v_th = 1) whose first ``near`` neurons get u = -1e-6 at step 0, the rest firing normally."""
    layer = zoo.IF(backend="torch", learnable=("v_th",))
    (x,) = inputs_for(layer, 6, (n,), seed=0)
    x[0, :near] = 1.0 - 1e-6
    delta = torch.zeros_like(x)
    delta[0, :near] = 3e-6  # the "kernel" rounds these over the threshold
    return layer, x, delta


def test_check_passes_and_counts_what_it_compared():
    layer = layer_for_check(zoo.ALIF, backend="torch")
    xs = inputs_for(layer, 8, (3, 200), seed=2)
    init = initial_states(layer, (3, 200), seed=2)
    result = check_against_reference(layer, *xs, init=init).assert_ok()
    assert result.neurons == 600 and result.steps == 8 and result.compared["spikes"] == 4800
    assert {"state:v", "state:a", "grad:x0", "grad:init_v", "grad:init_a", "grad:tau", "grad:beta",
            "grad:surrogate_alpha"} <= set(result.compared)
    assert 0.05 <= result.rate <= 0.5 and result.flips == result.mismatches == 0


def test_near_threshold_flips_are_counted_and_the_rest_compared():
    layer, x, delta = near_threshold_if(near=10)
    result = check_against_reference(perturbed(layer, delta), x).assert_ok()
    assert result.flips == 10 and result.mismatches == 0 and result.max_flips == 10
    assert result.compared["spikes"] == 990 * 6 and result.compared["grad:x0"] == 990 * 6
    assert result.compared["grad:v_th"] == 1  # a shared parameter's gradient still compares (flips weigh 0)


def test_too_many_flips_fail():
    layer, x, delta = near_threshold_if(near=11)
    result = check_against_reference(perturbed(layer, delta), x)
    assert not result.ok and result.flips == 11 and "near-threshold flips" in result.failures[0]
    assert check_against_reference(layer, x, max_flip_fraction=0.02).ok


def test_a_flip_away_from_the_threshold_is_a_mismatch():
    layer, x, _ = near_threshold_if(near=0)
    delta = torch.zeros_like(x)
    delta[2, 500] = 0.5
    result = check_against_reference(perturbed(layer, delta), x)
    assert result.mismatches == 1 and not result.ok
    with pytest.raises(AssertionError, match="differ at a fire value beyond the margin"):
        result.assert_ok()


@pytest.mark.parametrize("what", ["input", "state", "grad"])
def test_state_and_gradient_errors_are_found(what):
    layer = layer_for_check(zoo.LIF, backend="torch")
    (x,) = inputs_for(layer, 6, (2, 50), seed=1)
    run = layer.forward

    def broken(x, state=None):
        if what == "grad":  # same forward values, gradient scaled by 1.001
            x = x + 1e-3 * (x - x.detach())
        out = run(x, state=state)
        if what == "state":
            layer._carried["v"] = layer._carried["v"] * (1 + 1e-3)
        return out
    layer.forward = broken if what != "input" else (lambda x, state=None: run(x * (1 + 1e-3), state=state))
    result = check_against_reference(layer, x)
    assert not result.ok and result.failures
    prefix = {"grad": "grad:", "state": "state:v", "input": "state:v"}[what]
    assert any(f.startswith(prefix) for f in result.failures), result.failures
    assert all(f.startswith("grad:") for f in result.failures) or what != "grad"  # its forward is exact


def test_nothing_compared_is_an_error():
    layer, x, delta = near_threshold_if(n=1, near=1)
    result = check_against_reference(perturbed(layer, delta), x)
    assert result.skipped and not result.ok and not result.failures
    with pytest.raises(UsageError) as err:
        result.assert_ok()
    assert err.value.code == "ND806"


@pytest.mark.parametrize("cls", [zoo.LIF, zoo.CubaLIF, zoo.Izhikevich], ids=lambda c: c.__name__)
def test_inputs_for_reaches_the_firing_band(cls):
    layer = layer_for_check(cls, backend="torch")
    xs = inputs_for(layer, 10, (500,), seed=3, rate=(0.1, 0.2))
    assert 0.1 <= firing_rate(layer, *xs) <= 0.2
    assert firing_rate(layer, *inputs_for(layer, 10, (500,), seed=3, rate=(0.3, 0.45))) >= 0.3


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_constant_subexpressions_are_folded_before_cse(backend):
    """Found by the 2000-spec campaign: a CSE temporary holding only a constant (exp(-1.5)) became a
    Python float in generated torch code, and torch.maximum(float, tensor) failed in backward."""
    class Const(nd.Neuron):
        v = nd.State(0.0)
        k = nd.Param(0.5)

        def charge(self, x):
            return dict(v=self.k * self.v + nd.tanh(nd.maximum(nd.exp(-1.5) * 2.0, self.v)) + x)

        def fire(self):
            return self.v - 1.0 + 0.3 * nd.tanh(nd.maximum(nd.exp(-1.5) * self.v, nd.exp(-1.5)))

    layer = Const(learnable=("k",), backend=backend)
    check_against_reference(layer, *inputs_for(layer, 5, (7,), seed=3)).assert_ok()


# -- the campaign -------------------------------------------------------------------------------------------------
def assert_campaign_compared(report):
    failed = [d for d in report.draws if d["status"] == "failed"]
    assert not failed, failed[:2]
    assert len(report.draws) == report.examples
    assert report.count("compared") >= 0.8 * len(report.draws)
    assert all(d.get("reason") for d in report.draws if d["status"] == "skipped")
    assert report.ok


def test_campaign_torch():
    assert_campaign_compared(campaign(max(6, settings.default.max_examples), backend="torch", seed=1))


def test_campaign_triton_interpreter():
    assert_campaign_compared(campaign(3, backend="triton", seed=2, max_steps=3))


def test_campaign_command_line(tmp_path, capsys):
    out = tmp_path / "campaign.json"
    assert fuzzing.main(["--examples", "3", "--seed", "4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^campaign: 3 drawn, 3 compared, 0 failed$", text, re.M)
    data = json.loads(out.read_text())
    assert (data["drawn"], data["compared"], data["failed"], data["backend"], data["device"]) == (3, 3, 0, "torch",
                                                                                               "cpu")
    assert all(d["status"] == "compared" and d["compared"] > 0 for d in data["draws"])


def test_campaign_command_line_fails_on_a_failure_or_nothing_compared(monkeypatch, capsys):
    def failing(case, device, max_flip_fraction):
        return {"name": "Fuzzed", "T": 2, "shape": [3], "seed": 0, "surrogate": "ATan(alpha=2)",
                "status": "failed", "failures": ["grad:k: 3 of 3 differ"], "spec": {"fire": "h_s0 - p_v_th"}}
    monkeypatch.setattr(fuzzing, "check_case", failing)
    assert fuzzing.main(["--examples", "2"]) == 1
    text = capsys.readouterr().out
    assert "campaign: 2 drawn, 0 compared, 2 failed" in text and "grad:k: 3 of 3 differ" in text
    monkeypatch.setattr(fuzzing, "check_case", lambda case, device, max_flip_fraction: {
        "status": "skipped", "reason": "every one of the 1 neurons flipped near the threshold"})
    assert fuzzing.main(["--examples", "2"]) == 1
    text = capsys.readouterr().out
    assert "campaign: 2 drawn, 0 compared, 0 failed" in text and "ND806" in text


@pytest.mark.parametrize("argv,code", [(["--examples", "0"], "ND804"), (["--out", "/no/such/dir/x.json"], "ND805"),
                                       (["--device", "cuda"], "ND807")])
def test_campaign_usage_errors(argv, code, capsys):
    if code == "ND807" and torch.cuda.is_available():
        pytest.skip("CUDA is available")
    assert fuzzing.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"[{code}]" in err


# -- invalid specs ------------------------------------------------------------------------------------------------
@given(invalid_neurons())
def test_random_invalid_specs_raise_typed_errors_at_definition(case):
    name, namespace, code, method = case
    with pytest.raises(nd.SpecError) as err:
        type(f"Bad_{name}", (nd.Neuron,), namespace)
    assert code in err.value.codes
    assert any(p.method == method for p in err.value.problems if p.code == code)


@pytest.mark.parametrize("name", sorted(DEFECTS))
def test_every_defect_kind(name):
    code, method, make = DEFECTS[name]
    with pytest.raises(nd.SpecError) as err:
        type(f"Bad_{name}", (nd.Neuron,), make())
    assert err.value.code == code and err.value.problems[0].method == method
