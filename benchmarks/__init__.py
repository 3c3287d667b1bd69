"""Benchmark harness for neurodsl: ``python -m benchmarks run|report`` (see docs/benchmarks.md).

Modules: ``machine`` (what ran it), ``timing`` (min/median-of-N timers), ``neurons`` (benchmark neurons and
plain PyTorch loops), ``peers`` (every implementation behind one interface), ``scenarios`` (what is timed, per
suite), ``codegen`` (code generation latency in fresh processes), ``report`` (tables, CSV/JSON, docs, plots).
"""
