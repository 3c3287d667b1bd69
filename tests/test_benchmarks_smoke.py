"""Smoke test of the benchmark harness: every scenario of both suites at tiny sizes on CPU.

The GPU suite's code paths run with device="cpu" (neurodsl's triton backend through the Triton interpreter);
the harness runs in a subprocess so TRITON_INTERPRET is set before triton is imported.
"""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, TRITON_INTERPRET="1", NEURODSL_CACHE_DIR=str(out / "cache"))
    run = subprocess.run([sys.executable, "-m", "benchmarks", "run", "--suite", "all", "--device", "cpu", "--tiny",
                          "--out", str(out / "results"), "--no-progress"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=170)
    assert run.returncode == 0, run.stderr[-3000:]
    return out, run.stdout


def test_every_scenario_writes_csv_and_json(tiny_results):
    out, stdout = tiny_results
    assert "gpu suite on cpu" in stdout and "cpu suite on cpu" in stdout
    for suite in ("cpu", "gpu"):
        data = json.loads((out / "results" / f"bench-{suite}-cpu-tiny.json").read_text())
        assert data["meta"]["machine"]["cpu"] and data["meta"]["machine"]["torch"]
        rows = data["rows"]
        planned = {item["name"] for item in data["meta"]["plan"]}
        timed = {r["scenario"] for r in rows if "min_ms" in r}
        assert planned == timed, planned - timed
        failed = [r for r in rows if str(r.get("note", "")).startswith("failed")]
        assert not failed, failed
        ours = [r for r in rows if r.get("impl", "").startswith("neurodsl") and "agreement" in r]
        assert ours and all(r["agreement"] == 1.0 for r in ours)
        with (out / "results" / f"bench-{suite}-cpu-tiny.csv").open() as handle:
            assert len(list(csv.DictReader(handle))) == len(rows)
    gpu_rows = json.loads((out / "results" / "bench-gpu-cpu-tiny.json").read_text())["rows"]
    assert any(r["impl"] == "neurodsl-triton" and r.get("gbps") for r in gpu_rows)  # roofline path ran


def test_report_writes_markdown_and_plots(tiny_results):
    out, _ = tiny_results
    docs = out / "docs" / "benchmarks.md"
    run = subprocess.run([sys.executable, "-m", "benchmarks", "report", "--results", str(out / "results"),
                          "--docs", str(docs)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    text = docs.read_text()
    assert "## Targets and where we stand" in text and "unmeasured" in text and "### codegen" in text
    assert list((out / "docs" / "img").glob("*.png"))
