"""The `neurodsl` command line: the README's main job (`neurodsl demo`) in a fresh process, and compile,
show and check in-process, including the exit code when a kernel disagrees with the reference or the
check compared nothing, and every failure as one line naming the problem with a non-zero exit code."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from neurodsl import cli
from neurodsl.compiler import compile_parallel, compile_spec
from neurodsl.testing import CheckResult

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
    assert cli.main(["show", "NoSuchNeuron"]) == 2
    assert "[ND803] no zoo neuron 'NoSuchNeuron'" in capsys.readouterr().err


def test_check_passes_and_fails_by_exit_code(fresh_cache, capsys, monkeypatch):
    assert cli.main(["check", "LIF", "--backend", "torch", "triton", "--trials", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("OK") == 2 and "MISMATCH" not in out
    assert re.search(r"LIF \[triton\] OK: 1 trials, 132 neurons x 8 steps, firing rate 0\.\d+, \d+ near-threshold flips, "
                     r"0 spike mismatches, 8 tensors compared", out)
    mismatch = CheckResult(neurons=4, steps=2, mismatches=3, compared={"spikes": 2},
                           failures=["spikes: 3 neurons differ at a fire value beyond the margin"])
    monkeypatch.setattr(cli, "check_neuron", lambda *a, **k: [mismatch])
    assert cli.main(["check", "LIF", "--backend", "torch"]) == 1
    assert "LIF [torch] MISMATCH" in capsys.readouterr().out


def test_check_that_compares_nothing_fails(capsys, monkeypatch):
    nothing = CheckResult(neurons=1, steps=2, flips=1, skipped="every one of the 1 neurons flipped near the threshold")
    monkeypatch.setattr(cli, "check_neuron", lambda *a, **k: [nothing])
    assert cli.main(["check", "LIF", "--backend", "torch"]) == 1
    assert "LIF [torch] NOT COMPARED: [ND806]" in capsys.readouterr().out


def test_check_uses_the_zoo_check_arguments(monkeypatch):
    seen = []
    real = cli.check_neuron

    def spy(cls, backend, **kw):
        results = real(cls, backend, **{**kw, "trials": 1})
        seen.append(results)
        return results
    monkeypatch.setattr(cli, "check_neuron", spy)
    assert cli.main(["check", "Izhikevich", "--backend", "torch", "--trials", "1"]) == 0
    (result,) = seen[0]
    assert {"grad:a", "grad:b", "grad:surrogate_alpha", "grad:init_v", "grad:init_w"} <= set(result.compared)


FILES = {
    "syntax.py": "def f(:\n    pass\n",
    "exits.py": "import sys\nsys.exit(0)\n",
    "raises.py": "import neurodsl as nd\nvalue = 1 / 0\n",
    "imports_only.py": "from neurodsl.zoo import ALIF, LIF\n",
}
FAILURES = [
    (["check", "{tmp}/missing.py"], "ND801", "no such file"),
    (["check", "{tmp}"], "ND801", "is a directory"),
    (["check", "{tmp}/syntax.py"], "ND802", "syntax.py:1: SyntaxError"),
    (["check", "{tmp}/exits.py"], "ND802", "called sys.exit(0) while being imported"),
    (["check", "{tmp}/raises.py"], "ND802", "raises.py:2: importing it raised ZeroDivisionError"),
    (["check", "{tmp}/imports_only.py"], "ND803", "it only imports neurodsl.zoo:ALIF, neurodsl.zoo:LIF"),
    (["check", "{tmp}/imports_only.py:Nope"], "ND803", "no neuron class 'Nope'"),
    (["check", "NoSuchNeuron"], "ND803", "no zoo neuron 'NoSuchNeuron'"),
    (["check", "no_such_module:X"], "ND802", "cannot import module 'no_such_module'"),
    (["check", "os:path"], "ND803", "os:path is no neuron class"),
    (["check", "LIF", "--trials", "0"], "ND804", "--trials 0"),
    (["plot", "LIF", "--neurons", "0"], "ND804", "--neurons 0"),
    (["plot", "LIF", "--steps", "0"], "ND804", "--steps 0"),
    (["plot", "LIF", "--out", "{tmp}/no/such/dir/lif.png"], "ND805", "does not exist"),
    (["check", "LIF", "--trials", "x"], None, "argument --trials: invalid int value"),
    (["frobnicate"], None, "invalid choice: 'frobnicate'"),
]


def run_cli(argv, capsys):
    try:
        rc = cli.main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        rc = exit_.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize("argv,code,text", FAILURES, ids=[" ".join(a).replace("{tmp}", "") for a, _, _ in FAILURES])
def test_every_cli_failure_is_one_line_and_a_nonzero_exit(argv, code, text, tmp_path, capsys):
    for name, source in FILES.items():
        (tmp_path / name).write_text(source)
    rc, out, err = run_cli([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1, err  # one line
    assert text in err and (code is None or f"[{code}]" in err), err


def test_plot_into_a_directory_writes_name_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert cli.main(["plot", "Izhikevich", "--out", str(tmp_path), "--steps", "10"]) == 0
    assert (tmp_path / "Izhikevich.png").stat().st_size > 0
