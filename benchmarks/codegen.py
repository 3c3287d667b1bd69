"""Code generation latency: cold (empty cache dir, fresh process), warm disk cache (fresh process), in-process memo.

Each measurement runs ``_SCRIPT`` in a new interpreter; ``import`` time (which includes capturing every zoo
spec) is reported separately from the time to get a loaded kernel module from ``compile_spec(...).module()``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import torch, neurodsl as nd
from neurodsl.compiler import compile_spec
from benchmarks.neurons import neurodsl_layer
kind, backend = sys.argv[1], sys.argv[2]
if backend == "triton":
    import triton  # imported before timing: its own import cost is not codegen
t1 = time.perf_counter()
layer = neurodsl_layer(kind, backend)
opts = layer.kernel_options()
t2 = time.perf_counter()
compile_spec(layer.spec, opts).module(backend)
t3 = time.perf_counter()
n = 2000
for _ in range(n):
    compile_spec(layer.spec, layer.kernel_options()).module(backend)
t4 = time.perf_counter()
print(json.dumps(dict(import_s=t1 - t0, load_s=t3 - t2, memo_s=(t4 - t3) / n)))
"""


def _run_once(kind: str, backend: str, cache: Path) -> dict:
    env = dict(os.environ, NEURODSL_CACHE_DIR=str(cache))
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _SCRIPT, kind, backend], capture_output=True, text=True, env=env,
                         cwd=root, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "subprocess failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_codegen(kind: str, backend: str, reps: int) -> dict:
    """min/median seconds of cold and warm loads over ``reps`` fresh processes, and the memo hit time."""
    cold, warm, memo, imports = [], [], [], []
    for _ in range(reps):
        with tempfile.TemporaryDirectory(prefix="neurodsl-bench-cache-") as cache:
            first = _run_once(kind, backend, Path(cache))
            second = _run_once(kind, backend, Path(cache))
        cold.append(first["load_s"])
        warm.append(second["load_s"])
        memo += [first["memo_s"], second["memo_s"]]
        imports += [first["import_s"], second["import_s"]]
    return {"cold": cold, "warm": warm, "memo": memo, "import": imports}
