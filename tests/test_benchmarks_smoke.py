"""Smoke test of the benchmark harness: every scenario of both suites at tiny sizes on CPU, plus the pieces of
``scripts/gpu_check.sh`` that run without a GPU (its dry run and the summary on fake step outputs).

The GPU suite's code paths run with device="cpu" (neurodsl's triton backend through the Triton interpreter).
Each suite runs in its own subprocess, both at once, so TRITON_INTERPRET is set before triton is imported.
"""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import neurons, peers, report, scenarios
from benchmarks.__main__ import result_stem

ROOT = Path(__file__).resolve().parent.parent
SUITES = {"cpu": ["--suite", "cpu"], "gpu": ["--suite", "gpu", "--device", "cpu"]}


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    procs = {}
    for suite, args in SUITES.items():
        env = dict(os.environ, TRITON_INTERPRET="1", NEURODSL_CACHE_DIR=str(out / f"cache-{suite}"))
        procs[suite] = subprocess.Popen([sys.executable, "-m", "benchmarks", "run", *args, "--tiny",
                                         "--out", str(out / "results"), "--no-progress"],
                                        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = {}
    for suite, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=420)  # ~40 s on 2 idle cores; generous for a loaded machine
        assert proc.returncode == 0, stderr[-3000:]
        outputs[suite] = stdout
    return out, outputs


def _rows(out, suite):
    return json.loads((out / "results" / f"bench-{suite}-cpu-tiny.json").read_text())


def test_every_scenario_writes_csv_and_json(tiny_results):
    out, stdout = tiny_results
    assert "gpu suite on cpu" in stdout["gpu"] and "cpu suite on cpu" in stdout["cpu"]
    for suite in ("cpu", "gpu"):
        data = _rows(out, suite)
        assert data["meta"]["machine"]["cpu"] and data["meta"]["machine"]["torch"]
        rows = data["rows"]
        planned = {item["name"] for item in data["meta"]["plan"]}
        timed = {r["scenario"] for r in rows if "min_ms" in r}
        assert planned == timed, planned - timed
        assert set(data["meta"]["scenario_wall_s"]) == planned
        failed = [r for r in rows if str(r.get("note", "")).startswith("failed")]
        assert not failed, failed
        budget = [r for r in rows if "budget" in str(r.get("note", ""))]
        assert not budget, budget  # tiny runs are not cut short
        # every implementation that ran computes the same spikes as neurodsl (loops, peers, compiled forms)
        checked = [r for r in rows if "agreement" in r]
        assert checked and all(r["agreement"] == 1.0 and r["comparable"] for r in checked), \
            [(r["scenario"], r["impl"], r["agreement"]) for r in checked if r["agreement"] != 1.0]
        with (out / "results" / f"bench-{suite}-cpu-tiny.csv").open() as handle:
            assert len(list(csv.DictReader(handle))) == len(rows)
    gpu_rows = _rows(out, "gpu")["rows"]
    grads = [r for r in gpu_rows if r.get("scenario") == "paper000" and "grad_rel_err" in r]
    assert grads and all(r["grad_rel_err"] < 1e-4 for r in grads if r["impl"] in ("spikingjelly", "torch-loop"))


def test_roofline_bytes_come_from_the_layer_benchmarked(tiny_results):
    out, stdout = tiny_results
    rows = _rows(out, "gpu")["rows"]
    lif = {r["mode"]: r for r in rows if r["scenario"] == "lif_sizes" and r["impl"] == "neurodsl-triton"}
    assert {m: lif[m]["bytes_per_step"] for m in lif} == {"infer": 8, "fwd": 12, "bwd": 12, "fwdbwd": 24}
    alif = next(r for r in rows if r["scenario"] == "custom_alif" and r["impl"] == "neurodsl-triton"
                and r["mode"] == "fwdbwd")
    assert alif["bytes_per_step"] == neurons.neurodsl_layer("alif", "torch").analysis().bytes_per_neuron_step()[
        "total"] == 32
    assert all(r["floor_ms"] > 0 and r["gbps"] > 0 for r in rows if r.get("bytes_per_step"))
    assert "Bytes per neuron-step" in stdout["gpu"]


def test_host_overhead_rows(tiny_results):
    out, _ = tiny_results
    for suite in ("cpu", "gpu"):
        rows = [r for r in _rows(out, suite)["rows"] if r["scenario"] == "host_overhead"]
        calls = {(r["impl"], r["mode"]) for r in rows if r.get("timer") == "call" and r["min_ms"] > 0}
        ours = "neurodsl-torch" if suite == "cpu" else "neurodsl-triton"
        assert {(ours, m) for m in ("infer", "fwd", "fwdbwd")} <= calls
        graphs = [r for r in rows if r.get("timer") == "graph"]
        if suite == "gpu":  # the CUDA-graph replay is skipped with its reason off CUDA
            assert graphs and all(r["note"] == "skipped: CUDA graphs need a CUDA device" for r in graphs)
        else:
            assert not graphs


def test_report_writes_markdown_and_plots(tiny_results):
    out, _ = tiny_results
    docs = out / "docs" / "benchmarks.md"
    run = subprocess.run([sys.executable, "-m", "benchmarks", "report", "--results", str(out / "results"),
                          "--docs", str(docs)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    text = docs.read_text()
    assert "## Targets and where we stand" in text and "unmeasured" in text and "### codegen" in text
    assert "### host_overhead" in text and "Roofline" in text
    assert list((out / "docs" / "img").glob("*.png"))


def test_result_file_names_use_plain_characters():
    stem = result_stem("gpu", "cuda", False, "paper000,lif_sizes")
    assert re.fullmatch(r"[A-Za-z0-9._-]+", stem) and "paper000" in stem and "lif_sizes" in stem


def test_spike_of_the_loops_is_exact_and_has_the_atan_gradient():
    u = torch.tensor([-1.0, -1e-8, 0.0, 0.3, 2.0], requires_grad=True)
    s = neurons.atan_spike(u)
    assert s.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    s.sum().backward()
    expected = 1.0 / (1 + (torch.pi * u.detach()) ** 2)  # ATan(alpha=2): (alpha/2) / (1 + (pi alpha u / 2)^2)
    torch.testing.assert_close(u.grad, expected)


def _ones_peer(kind, device, dtype):
    return peers.Runner(lambda x: torch.ones_like(x), note="always fires")


def test_a_peer_with_other_spikes_is_flagged_not_compared(monkeypatch):
    monkeypatch.setitem(peers._BUILDERS, "always-fires", _ones_peer)
    ctx = scenarios.Context("cpu", torch.device("cpu"), True, 0, 1, False, deadline=float("inf"))
    scenarios.bench_case(ctx, "lif_cpu", "lif", ["neurodsl-torch", "torch-loop", "always-fires"], (4, 32),
                         modes=("fwd",))
    rows = {r["impl"]: r for r in ctx.rows}
    assert rows["torch-loop"]["comparable"] and rows["torch-loop"]["agreement"] == 1.0
    bad = rows["always-fires"]
    assert bad["comparable"] is False and bad["agreement"] < scenarios.AGREEMENT_MIN
    assert bad["note"].startswith("NOT COMPARABLE")
    table = "\n".join(report.scenario_table(ctx.rows))
    bad_line = next(line for line in table.splitlines() if "| always-fires |" in line)
    assert "not comparable †1" in bad_line and f"{bad['min_ms']:.3g}" not in bad_line.split("|")[4]
    assert f"- †1 always-fires T=4 fwd: {report._fmt(bad['min_ms'])} ms, not comparable" in table
    assert "! NOT COMPARABLE" in report.console_table(ctx.rows)
    assert report._find(ctx.rows, impl="always-fires") == []  # never evidence for a target


def test_sizes_past_the_scenario_budget_are_skipped_with_the_reason():
    ctx = scenarios.Context("cpu", torch.device("cpu"), False, 0, 1, False, deadline=float("inf"))
    ctx.scenario_deadline = 0.0  # the scenario's share is spent
    item = dict(name="lif_sizes", kind="lif", impls=["neurodsl-torch", "torch-loop"], shapes=[(4, 8), (8, 8)],
                modes=("fwdbwd",))
    scenarios.run_item(ctx, item)
    assert len(ctx.rows) == 4 and all("min_ms" not in r for r in ctx.rows)
    assert all(r["note"].startswith("skipped: scenario time budget spent") for r in ctx.rows)


def _fake_check_outputs(out: Path, bench_json: Path) -> None:
    (out / "bench").mkdir(parents=True)
    shutil.copy(bench_json, out / "bench" / bench_json.name)
    (out / "env.json").write_text(json.dumps({"gpu": "NVIDIA H200", "gpu_memory_gib": 139.8, "python": "3.12.3",
                                              "torch": "2.11.0+cu130", "triton": "3.6.0", "date": "2026-12-01"}))
    (out / "tests_gpu.xml").write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="20" failures="2" errors="1" '
        'skipped="3"></testsuite></testsuites>')
    (out / "campaign.json").write_text(json.dumps({"drawn": 60, "compared": 57, "failed": 0, "skipped": 3}))
    (out / "steps.tsv").write_text("env\t0\t3\tenv.log\t\n"
                                   "tests_gpu\t1\t120\ttests_gpu.log\ttests_gpu.xml\n"
                                   "tests_cuda\t5\t9\ttests_cuda.log\ttests_cuda.xml\n"
                                   "campaign\t0\t150\tcampaign.log\t\n"
                                   "bench\t124\t185\tbench.log\t\n")


def test_gpu_check_summary_on_fake_step_outputs(tiny_results, tmp_path):
    out, _ = tiny_results
    check = tmp_path / "check"
    _fake_check_outputs(check, out / "results" / "bench-gpu-cpu-tiny.json")
    run = subprocess.run([sys.executable, "-m", "benchmarks", "summary", str(check), "--write",
                          str(check / "summary.txt")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    text = (check / "summary.txt").read_text()
    assert text.strip() == run.stdout.strip()
    assert "GPU: NVIDIA H200 (139.8 GiB)" in text and "torch 2.11.0+cu130" in text and "triton 3.6.0" in text
    lines = {line.split()[0]: line for line in text.splitlines() if line and line.split()[0] in
             ("tests_gpu", "tests_cuda", "campaign", "bench")}
    assert "FAILED(1)" in lines["tests_gpu"] and "14 passed, 2 failed, 1 errors, 3 skipped" in lines["tests_gpu"]
    assert "no tests" in lines["tests_cuda"]
    assert "60 drawn, 57 compared, 0 failed, 3 skipped" in lines["campaign"]
    assert "TIMED OUT" in lines["bench"] and " timed, " in lines["bench"]
    assert "paper-000 [4x512] fwd+bwd" in text and "neurodsl " in text and "SJ " in text
    assert "host time per call, neurodsl-triton" in text
    assert text.strip().splitlines()[-1].startswith("overall: FAILED (tests_gpu, bench)")
    assert len(text.splitlines()) <= 50  # one screen


def test_gpu_check_script_parses_and_plans_every_step(tmp_path):
    script = ROOT / "scripts" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    run = subprocess.run(["bash", str(script), "--dry-run", str(tmp_path / "out"), str(tmp_path / "wheels")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    text = run.stdout
    assert f"--target {tmp_path / 'out'}/site" in text and "--no-index --no-deps" in text
    assert f"PYTHONPATH={tmp_path / 'out'}/site:{ROOT}" in text and "TRITON_INTERPRET=0" in text
    assert "tests/test_gpu.py -k not in_subprocess --junitxml" in text
    assert "tests/test_compile.py tests/test_parallel.py" in text
    assert "campaign: 4 processes x 15 examples, backend triton, device cuda" in text
    assert '-m neurodsl.testing --examples "$PER_PROC" --backend triton --device "$DEVICE" --seed' in text
    assert "-m benchmarks run --suite gpu --device cuda --budget-s" in text
    limits = {name: int(s) for name, s in re.findall(r"\[(\w+)\] timeout (\d+) s", text)}
    assert set(limits) == {"wheels", "env", "tests_gpu", "tests_cuda", "campaign", "bench"}
    # the tests run beside the campaign, the rest in sequence, then the summary (15 s): within 8 minutes
    tests = limits["tests_gpu"] + limits["tests_cuda"]
    assert limits["wheels"] + limits["env"] + max(tests, limits["campaign"]) + limits["bench"] + 15 <= 480, limits
    usage = subprocess.run(["bash", str(script)], cwd=ROOT, capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr
