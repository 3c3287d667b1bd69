"""The packages layer one way: ``neurodsl`` (front end) -> ``kernels_gen`` (back end), never back.

The rules and the import reader live in scripts/import_graph.py (which also draws the graph): the front end
reaches the back end through its contract everywhere, and through its runners only in the modules whose job
that is.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(graph)


def test_no_layering_violations():
    assert graph.violations() == []


def test_the_reader_sees_imports_inside_functions_and_relative_ones():
    edges = graph.edges()
    assert "kernels_gen.cache" in edges["neurodsl.cli"]              # imported inside a function
    assert "neurodsl.dispatch" in edges["neurodsl.neuron"]            # from . import dispatch
    assert "kernels_gen.backends.base" in edges["kernels_gen.backends.torch"]   # from ..base import ...


def test_a_back_edge_is_reported(monkeypatch):
    real = graph.edges
    monkeypatch.setattr(graph, "edges", lambda: {**real(), "kernels_gen.ops": real()["kernels_gen.ops"] | {"neurodsl.neuron"}})
    assert any("kernels_gen.ops -> neurodsl.neuron" in v for v in graph.violations())


def test_runner_table_has_no_stale_rows():
    edges = graph.edges()
    for module, allowed in graph.RUNNERS.items():
        assert all(any(t == a or t.startswith(a + ".") for t in edges[module]) for a in allowed), module


def test_the_script_draws_and_exits_zero():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "import_graph.py"), "--mermaid"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("flowchart LR") and "0 layering violations" in out.stderr
