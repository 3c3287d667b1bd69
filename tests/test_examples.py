"""The examples at tiny size (in-process), `neurodsl plot`, and the containers."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import neurodsl as nd
from neurodsl.containers import SeqToBatch, StepLoop

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def example(name):
    """Import examples/<name>.py as a module (its main() is not run), with examples/ on sys.path as
    `python examples/<name>.py` has it, for the examples' `import training`."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "examples"))
    return module


@pytest.mark.parametrize("neuron", ["lif", "custom"])
def test_digits_conv_tiny(neuron, capsys):
    pytest.importorskip("sklearn")
    result = example("digits_conv").main(["--tiny", "--neuron", neuron])
    assert 0 <= result["test_acc"] <= 1 and result["seconds_per_epoch"] > 0
    assert "final test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("neuron", ["lif", "custom"])
def test_digits_conv_learns(neuron):
    pytest.importorskip("sklearn")
    result = example("digits_conv").main(["--epochs", "2", "--T", "2", "--width", "8", "--neuron", neuron])
    assert result["test_acc"] > 0.6  # 10 classes: chance is 0.1; the default run reaches 0.98


def test_digits_custom_neuron_matches_reference():
    ExpLeak = example("digits_conv").ExpLeak
    layer = ExpLeak(tau=torch.full((3, 1, 1), 2.5), learnable=("tau", "v_th"))
    x = torch.rand(5, 2, 3, 4, 4) * 2
    spikes, _ = nd.reference_run(layer, x)
    assert torch.equal(layer(x), spikes)


def test_randman_generator_is_seeded_with_one_spike_per_unit():
    randman = example("randman").randman
    x, y = randman(classes=3, units=7, steps=40, samples=5, seed=1)
    assert x.shape == (40, 15, 7) and y.shape == (15,)
    assert torch.equal(x.sum(0), torch.ones(15, 7)) and torch.equal(torch.bincount(y), torch.full((3,), 5))
    x2, y2 = randman(classes=3, units=7, steps=40, samples=5, seed=1)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, randman(classes=3, units=7, steps=40, samples=5, seed=2)[0])


def test_randman_tiny(capsys):
    rows = example("randman").main(["--tiny"])
    forms = {r["model"]: r["form"] for r in rows}
    assert forms == {"LIF": "sequential", "PSN": "GEMM over T", "LIF-noreset-scan": "scan",
                     "LIF-noreset-matmul": "matmul"}
    assert "| model | form |" in capsys.readouterr().out
    assert max(r["test_acc"] for r in rows) > 0.5  # above chance even at tiny size
    scan, matmul = (next(r for r in rows if r["model"] == m) for m in ("LIF-noreset-scan", "LIF-noreset-matmul"))
    assert scan["test_acc"] == matmul["test_acc"] and scan["train_acc"] == matmul["train_acc"]  # one neuron


def test_online_randman_tiny(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # thousands of tiny ops: a second intra-op thread only waits on a busy machine
    try:
        rows = example("online_randman").main(["--tiny", "--plot", str(tmp_path / "cosine.png")])
    finally:
        torch.set_num_threads(threads)
    assert [r["algorithm"] for r in rows] == ["bptt", "eprop", "ottt"]
    assert all(0 <= r["test_acc"] <= 1 and r["seconds_per_epoch"] > 0 and r["peak_mb"] > 0 for r in rows)
    out = capsys.readouterr().out
    assert "| eprop | 0.weight | 1.0000 | 1.0000 |" in out          # one neuron layer: e-prop is BPTT's gradient
    assert (tmp_path / "cosine.png").read_bytes().startswith(PNG)


@pytest.mark.parametrize("extra", [[], ["--no-recurrence"]])
def test_recurrent_single_step_tiny(extra):
    pytest.importorskip("sklearn")
    result = example("recurrent_single_step").main(["--tiny", *extra])
    assert 0 <= result["test_acc"] <= 1


def test_recurrent_single_step_learns():
    pytest.importorskip("sklearn")
    result = example("recurrent_single_step").main(["--epochs", "2", "--hidden", "32", "--repeat", "1"])
    assert result["test_acc"] > 0.25  # chance is 0.1; the default run reaches 0.91


def test_recurrent_model_runs_single_step_and_resets():
    module = example("recurrent_single_step")
    model = module.RecurrentSNN(nd.zoo.LIF(), 8, 6, 3)
    nd.set_step_mode(model, "s")
    x = torch.rand(4, 2, 8)
    first, v_first = model(x), model.neuron.v
    assert v_first.shape == (2, 6)
    model(x)
    assert not torch.equal(model.neuron.v, v_first)     # the second sequence started from the carried states
    nd.reset_states(model)
    assert torch.equal(model(x), first) and torch.equal(model.neuron.v, v_first)


def test_plot_cli_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "lif.png"
    env = dict(os.environ, TRITON_INTERPRET="1")
    run = subprocess.run([sys.executable, "-m", "neurodsl", "plot", "LIF", "--out", str(out), "--steps", "40"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert out.read_bytes().startswith(PNG) and "wrote" in run.stdout


def test_plot_user_neuron_in_process(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from neurodsl.cli import main
    out = tmp_path / "adex.png"
    assert main(["plot", str(ROOT / "examples" / "custom_neuron.py:AdExLike"), "--out", str(out), "--neurons", "2",
                 "--steps", "30"]) == 0
    assert out.read_bytes().startswith(PNG)
    capsys.readouterr()
    assert main(["plot", "NoSuchNeuron"]) == 2
    assert "[ND803] no zoo neuron 'NoSuchNeuron'" in capsys.readouterr().err


def test_step_response_traces_every_state():
    from neurodsl.plot import step_response
    x, spikes, states = step_response(nd.zoo.CubaLIF, steps=30, amplitude=2.0, neurons=3)
    assert set(states) == {"i", "v"} and states["v"].shape == (30, 3)
    assert spikes[:3].sum() == 0 and spikes[:, -1].sum() > 0   # silent before the step, the strongest fires


def test_seq_to_batch_equals_manual_reshape_with_batchnorm():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3)
    wrapped = SeqToBatch(conv, bn)
    x = torch.randn(4, 5, 2, 6, 6, requires_grad=True)
    y = wrapped(x)
    manual = bn(conv(x.reshape(20, 2, 6, 6))).reshape(4, 5, 3, 6, 6)
    assert y.shape == (4, 5, 3, 6, 6) and torch.equal(y, manual)
    assert bn.num_batches_tracked == 2                        # statistics over all T * B samples, in train mode
    y.sum().backward()
    assert x.grad.shape == x.shape and conv.weight.grad is not None
    wrapped.eval()
    torch.testing.assert_close(wrapped(x), bn(conv(x.flatten(0, 1))).unflatten(0, (4, 5)))


def test_step_loop_equals_multi_step_neuron():
    x = torch.rand(6, 2, 5) * 2
    multi = nd.zoo.ALIF()(x)
    assert torch.equal(StepLoop(nd.zoo.ALIF(step_mode="s"))(x), multi)
    assert torch.equal(StepLoop(nn.Identity(), nd.zoo.ALIF(step_mode="s"))(x), multi)


def test_time_split_example_under_torchrun():
    import re
    import subprocess
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          str(ROOT / "examples" / "time_split.py"), "--steps", "101", "--neurons", "8"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    line = re.search(r"spikes equal to one process: (\w+), max gradient difference (\S+)", run.stdout)
    assert line and line[1] == "True" and float(line[2]) < 1e-12, run.stdout
