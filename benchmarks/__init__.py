"""Benchmark harness for neurodsl: ``python -m benchmarks run|report|summary|env`` (see docs/benchmarks.md).

Modules: ``machine`` (what ran it), ``timing`` (min/median-of-N timers, budgets, CUDA-graph replay),
``neurons`` (benchmark neurons and plain PyTorch loops), ``peers`` (every implementation behind one
interface), ``plan`` (what each suite runs, sizes and time shares), ``scenarios`` (how a case is timed),
``overhead`` (per-call host time), ``codegen`` (code generation latency in fresh processes), ``report``
(tables, CSV/JSON, docs, plots), ``summary`` (the one-screen summary of ``scripts/gpu_check.sh``).
"""
