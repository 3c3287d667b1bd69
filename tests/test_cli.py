"""The `neurodsl` command line: the README's main job (`neurodsl demo`) in a fresh process, and compile,
show and check in-process, including the exit code when a kernel disagrees with the reference."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from neurodsl import cli
from neurodsl.compiler import compile_parallel, compile_spec

ROOT = Path(__file__).resolve().parent.parent
CUSTOM = str(ROOT / "examples" / "custom_neuron.py")


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("NEURODSL_CACHE_DIR", str(tmp_path))
    compile_spec.cache_clear(), compile_parallel.cache_clear()  # in-process memo: the next compile writes here
    yield tmp_path
    compile_spec.cache_clear(), compile_parallel.cache_clear()


def test_demo_main_job_in_a_fresh_process(tmp_path):
    env = dict(os.environ, NEURODSL_CACHE_DIR=str(tmp_path))
    env.pop("TRITON_INTERPRET", None)               # the CLI turns the interpreter on itself without CUDA
    run = subprocess.run([sys.executable, "-m", "neurodsl", "demo"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "Neuron ALIF" in out and "All kernels match the reference." in out
    assert len(re.findall(r"^  \w+ +(torch|triton) +0 ", out, re.M)) >= 20   # every zoo neuron, both backends
    accuracy = float(re.search(r"final training accuracy: ([\d.]+)", out).group(1))
    assert accuracy >= 0.9
    assert any(tmp_path.glob("ALIF-*.triton.py")) and any(tmp_path.glob("ALIF-*.torch.py"))


def test_compile_a_user_file_reports_and_caches(fresh_cache, capsys):
    assert cli.main(["compile", CUSTOM]) == 0
    out = capsys.readouterr().out
    assert "Neuron AdExLike" in out and "Backward step" in out
    keys = re.findall(r"^(torch|triton): key (\w+)", out, re.M)
    assert [b for b, _ in keys] == ["torch", "triton"]
    for backend, key in keys:
        assert (fresh_cache / f"AdExLike-{key}.{backend}.py").is_file()
    assert "parallel forms:" in out and "parallel='auto' with N=256" in out


def test_show_prints_the_stamped_kernel(fresh_cache, capsys):
    assert cli.main(["show", "ALIF", "--kernel", "forward"]) == 0
    forward = capsys.readouterr().out
    assert "# spec: ALIF" in forward and "@triton.jit" in forward and "def forward_kernel" in forward
    assert cli.main(["show", f"{CUSTOM}:AdExLike", "--kernel", "backward", "--backend", "torch"]) == 0
    backward = capsys.readouterr().out
    assert "# spec: AdExLike" in backward and "backend torch" in backward and "triton" not in backward.split("\n", 3)[3]
    assert "# ---- backward ----" in backward and "# ---- forward ----" not in backward
    with pytest.raises(SystemExit):
        cli.main(["show", "NoSuchNeuron"])


def test_check_passes_and_fails_by_exit_code(fresh_cache, capsys, monkeypatch):
    assert cli.main(["check", "LIF", "--backend", "torch", "triton", "--trials", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("OK") == 2 and "MISMATCH" not in out
    monkeypatch.setattr(cli, "check_neuron", lambda *a, **k: dict(spike_mismatches=3, state_err=0.0, grad_err=0.0))
    assert cli.main(["check", "LIF", "--backend", "torch"]) == 1
    assert "MISMATCH" in capsys.readouterr().out
