"""Code generation latency: cold (empty cache dir), warm disk cache, in-process memo.

One fresh interpreter per measurement pair runs ``_SCRIPT``: it imports torch and neurodsl (``import`` time,
which includes capturing every zoo spec, is reported separately), then forks. The child loads the kernel
module into the empty cache directory (cold: codegen + write); the parent, which never generated it and so has
an empty in-process memo, then loads it from the disk cache (warm) and times memo hits.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_SCRIPT = r"""
import json, os, sys, time
t0 = time.perf_counter()
import torch, neurodsl as nd
from neurodsl.compiler import compile_spec
from benchmarks.neurons import neurodsl_layer
kind, backend = sys.argv[1], sys.argv[2]
if backend == "triton":
    import triton  # imported before timing: its own import cost is not codegen
layer = neurodsl_layer(kind, backend)
import_s = time.perf_counter() - t0

def load():
    t = time.perf_counter()
    compile_spec(layer.spec, layer.kernel_options()).module(backend)
    return time.perf_counter() - t

read, write = os.pipe()
pid = os.fork()
if pid == 0:  # the cold load, in a child that shares nothing with the parent's memo
    os.close(read)
    os.write(write, json.dumps(dict(cold_s=load())).encode())
    os._exit(0)
os.close(write)
with os.fdopen(read) as pipe:
    cold = json.loads(pipe.read())
_, status = os.waitpid(pid, 0)
if status != 0:
    sys.exit(f"cold load failed in the child (status {status})")
warm_s = load()
n = 2000
t = time.perf_counter()
for _ in range(n):
    compile_spec(layer.spec, layer.kernel_options()).module(backend)
memo_s = (time.perf_counter() - t) / n
print(json.dumps(dict(import_s=import_s, cold_s=cold["cold_s"], warm_s=warm_s, memo_s=memo_s)))
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
    """Seconds of cold and warm loads over ``reps`` fresh processes (each with its own empty cache), the memo
    hit time and the import time."""
    cold, warm, memo, imports = [], [], [], []
    for _ in range(reps):
        with tempfile.TemporaryDirectory(prefix="neurodsl-bench-cache-") as cache:
            res = _run_once(kind, backend, Path(cache))
        cold.append(res["cold_s"])
        warm.append(res["warm_s"])
        memo.append(res["memo_s"])
        imports.append(res["import_s"])
    return {"cold": cold, "warm": warm, "memo": memo, "import": imports}
