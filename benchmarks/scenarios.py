"""What is timed, per suite. Each scenario appends flat result rows (dicts) to ``ctx.rows``.

Modes: ``infer`` forward under no_grad; ``fwd`` forward with autograd on (what training pays, saves for
backward); ``bwd`` backward alone (``retain_graph`` on one forward); ``fwdbwd`` both.
Sizes per suite live in :func:`plan`; ``tiny`` shrinks everything for the smoke test.
"""
from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import dataclass, field

import torch

from . import peers, timing
from .codegen import measure_codegen

#: Published numbers (paper 000, A100, N = 1,000,000, per run): impl -> {T: ms}.
PAPER000 = {"PyTorch loop (A100, paper 000)": {8: 0.646, 128: 9.647}, "CUDA (A100, paper 000)": {8: 0.054, 128: 0.763}}
#: Bytes each fused fp32 kernel must move per neuron-step (LIF-type neuron with one state).
BYTES_PER_STEP = {"infer": 8, "fwd": 12, "bwd": 12, "fwdbwd": 24}


@dataclass
class Context:
    suite: str
    device: torch.device
    tiny: bool
    warmup: int
    reps: int
    with_compile: bool
    deadline: float
    rounds: int = 1
    rows: list = field(default_factory=list)
    copy_gbps: float | None = None
    on_rows: object = None  # callback after each case (progress + incremental save)

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def add(self, **row):
        row.setdefault("suite", self.suite)
        row.setdefault("device", self.device.type)
        self.rows.append(row)
        if self.on_rows:
            self.on_rows(row)


def _input(kind, shape, device, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    scale = 0.5 if kind == "paper000" else 1.5
    return (torch.rand(shape, generator=gen) * scale).to(device=device, dtype=dtype)


def _mode_fn(mode, runner, x, g):
    if mode == "infer":
        def fn():
            runner.reset()
            with torch.no_grad():
                runner(x)
        return fn
    if mode == "fwd":
        def fn():
            runner.reset()
            runner(x)
        return fn
    if mode == "fwdbwd":
        def fn():
            runner.reset()
            x.grad = None
            runner(x).backward(g)
        return fn
    if mode == "bwd":
        if not runner.retains_graph:
            raise peers.Skip("backward alone is not timed: a compiled graph cannot be retained for repeats")
        runner.reset()
        out = runner(x)

        def fn():
            x.grad = None
            out.backward(g, retain_graph=True)
        return fn
    raise ValueError(mode)


def bench_case(ctx: Context, scenario: str, kind: str, impls, shape, dtype=torch.float32, modes=("fwdbwd",),
               make=None, label: str = "", roofline: bool = False):
    """Time ``impls`` on one input: agreement with the first runnable impl, then each mode."""
    device = ctx.device
    T, n = shape[0], math.prod(shape[1:])
    base = dict(scenario=scenario, neuron=kind, dtype=str(dtype).replace("torch.", ""), T=T,
                shape="x".join(map(str, shape)), n_neurons=n, case=label or f"T={T}")
    x = _input(kind, shape, device, dtype).requires_grad_(True)
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(make.out_shape(shape) if make else shape, generator=gen).to(device=device, dtype=dtype)
    ref, ready = None, []
    for impl in impls:
        if ctx.time_left() < 0:
            ctx.add(**base, impl=impl, note="skipped: suite time budget used up")
            continue
        try:
            runner = peers.build(impl, kind, device, dtype)
            if make:
                runner = make.wrap(runner, device, dtype)
            runner.reset()
            t0 = time.perf_counter()
            with torch.no_grad():
                spikes = runner(x).float()
            first_s = time.perf_counter() - t0
        except peers.Skip as err:
            ctx.add(**base, impl=impl, note=f"skipped: {err}")
            continue
        except Exception as err:  # noqa: BLE001 - a failing peer is a result, not a crash
            ctx.add(**base, impl=impl, note=f"failed: {type(err).__name__}: {str(err)[:160]}")
            continue
        ref = spikes if ref is None else ref
        note = runner.note + (f"; first call {first_s:.1f} s" if impl == "torch-compile-loop" else "")
        ready.append((impl, runner, (spikes == ref).float().mean().item(), note))
    spike_rate = ref.mean().item() if ref is not None else None
    for mode in modes:
        # Rounds interleave the implementations so a burst of load on a shared machine hits all of them.
        fns, samples, errors = {}, {impl: [] for impl, *_ in ready}, {}
        for impl, runner, *_ in ready:
            try:
                fns[impl] = _mode_fn(mode, runner, x, g)
            except Exception as err:  # noqa: BLE001
                errors[impl] = err
        for rnd in range(ctx.rounds):
            for impl in list(fns):
                try:
                    samples[impl] += timing.measure(fns[impl], device, ctx.warmup if rnd == 0 else 0,
                                                    ctx.reps)["times"]
                except Exception as err:  # noqa: BLE001
                    errors[impl] = err
                    del fns[impl]
        for impl, runner, agreement, note in ready:
            if impl in errors:
                err = errors[impl]
                what = "skipped: " if isinstance(err, peers.Skip) else f"failed: {type(err).__name__}: "
                ctx.add(**base, impl=impl, mode=mode, note=what + str(err)[:160])
                continue
            times = samples[impl]
            peak = timing.peak_memory_mb(_mode_fn(mode, runner, x, g), device) if mode != "bwd" else None
            row = dict(base, impl=impl, mode=mode, agreement=agreement, peak_mem_mb=peak, note=note,
                       spike_rate=spike_rate, min_ms=min(times), median_ms=statistics.median(times),
                       reps=len(times))
            if roofline and impl.startswith("neurodsl") and dtype == torch.float32:
                row["bytes"] = BYTES_PER_STEP[mode] * T * n
                row["gbps"] = row["bytes"] / (row["min_ms"] * 1e-3) / 1e9
                if ctx.copy_gbps:
                    row["frac_copy"] = row["gbps"] / ctx.copy_gbps
            ctx.add(**row)
        del fns
        gc.collect()
    del ready
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class _Network:
    """Linear(n, n) then the neuron, on [T, batch, n] (same weights for every impl)."""

    def __init__(self, n):
        self.n = n

    def out_shape(self, shape):
        return shape

    def wrap(self, runner, device, dtype):
        gen = torch.Generator().manual_seed(2)
        linear = torch.nn.Linear(self.n, self.n).to(dtype)
        with torch.no_grad():
            bound = 1 / math.sqrt(self.n)
            linear.weight.copy_(torch.rand(linear.weight.shape, generator=gen) * 2 * bound - bound)
            linear.bias.fill_(0.5)
        linear = linear.to(device)
        return peers.Runner(lambda x: runner(linear(x)), runner.reset, runner.note, [linear], runner.retains_graph)


# -- suites -------------------------------------------------------------------------------------------------
def plan(suite: str, device: torch.device, tiny: bool, with_compile: bool) -> list[dict]:
    """The scenario list with sizes; ``cpu`` is scaled to ~10 min on 2 cores, ``gpu`` to one 10-min run."""
    cuda = device.type == "cuda"
    ours = "neurodsl-triton" if suite == "gpu" else "neurodsl-torch"
    compile_ok = cuda or with_compile
    loop = ["torch-loop"] + (["torch-compile-loop"] if compile_ok else [])
    peer_lif = ["spikingjelly", "snntorch", "norse"]
    items = []
    if suite == "cpu":
        n, t = (256, 8) if tiny else (65536, 64)
        items.append(dict(name="lif_cpu", kind="lif", impls=[ours, *peer_lif, *loop], shapes=[(t, n)],
                          modes=("fwd", "bwd", "fwdbwd"), about=f"LIF fwd+bwd, T={t}, N={n} (the CPU target case)"))
        n0, ts = (256, (4, 8)) if tiny else (65536, (8, 32, 128))
        items.append(dict(name="paper000", kind="paper000", impls=[ours, "spikingjelly", "torch-loop"],
                          shapes=[(t, n0) for t in ts], modes=("infer", "fwdbwd"),
                          about=f"paper 000 LIF, scaled to N={n0}, T in {list(ts)} (GPU suite: N=1,000,000)"))
        b, n1, ts = (2, 64, (4,)) if tiny else (16, 4096, (4, 16, 32))
        for kind in ("lif", "plif"):
            items.append(dict(name=f"{kind}_sizes", kind=kind, impls=[ours, "spikingjelly", "torch-loop"],
                              shapes=[(t, b, n1) for t in ts], modes=("fwdbwd",),
                              about=f"{kind.upper()} fwd+bwd on [T, {b}, {n1}] (GPU suite: [T, 64, 65536]), fp32"))
        t2, b2, n2 = (6, 2, 32) if tiny else (100, 16, 1024)
        items.append(dict(name="network", kind="lif", impls=[ours, f"{ours}-compiled", *peer_lif, "torch-loop"],
                          shapes=[(t2, b2, n2)], modes=("fwd", "bwd", "fwdbwd"), network=n2,
                          about=f"Linear({n2},{n2}) + LIF, batch {b2}, T={t2} (GPU suite: 16384 neurons, T=500)"))
        n3, t3 = (256, 8) if tiny else (65536, 64)
        for kind in ("alif", "izhikevich"):
            items.append(dict(name=f"custom_{kind}", kind=kind, impls=[ours, "sj-flexsn", "torch-loop"],
                              shapes=[(t3, n3)], modes=("fwd", "fwdbwd"),
                              about=f"custom neuron {kind}, T={t3}, N={n3}"))
    else:  # gpu
        items.append(dict(name="copy_bandwidth", about="device-to-device copy (roofline reference)"))
        n0, ts = (512, (4, 8)) if tiny else (1_000_000, (8, 16, 32, 64, 128))
        items.append(dict(name="paper000", kind="paper000", impls=[ours, "spikingjelly", "torch-loop"] +
                          (["torch-compile-loop"] if compile_ok else []), shapes=[(t, n0) for t in ts],
                          modes=("infer", "fwd", "bwd", "fwdbwd"), roofline=True, compile_max_T=32,
                          about=f"paper 000 LIF, N={n0}, T in {list(ts)}"))
        b, n1, ts = (2, 256, (4,)) if tiny else (64, 65536, (4, 16, 32))
        dtypes = (torch.float32,) if tiny else (torch.float32, torch.float16)
        for kind in ("lif", "plif"):
            items.append(dict(name=f"{kind}_sizes", kind=kind, impls=[ours, "spikingjelly", "torch-loop"],
                              shapes=[(t, b, n1) for t in ts], dtypes=dtypes, modes=("fwd", "bwd", "fwdbwd"),
                              roofline=True, about=f"{kind.upper()} on [T, {b}, {n1}], fp32 and fp16"))
        t2, b2, n2 = (6, 2, 64) if tiny else (500, 16, 16384)
        items.append(dict(name="network", kind="lif", impls=[ours, f"{ours}-compiled", *peer_lif, "torch-loop"],
                          shapes=[(t2, b2, n2)], modes=("fwd", "bwd", "fwdbwd"), network=n2,
                          about=f"Linear({n2},{n2}) + LIF, batch {b2}, T={t2}"))
        n3, t3 = (512, 8) if tiny else (1_048_576, 64)
        for kind in ("alif", "izhikevich"):
            items.append(dict(name=f"custom_{kind}", kind=kind, impls=[ours, "sj-flexsn", "torch-loop"],
                              shapes=[(t3, n3)], modes=("fwd", "bwd", "fwdbwd"),
                              about=f"custom neuron {kind}, T={t3}, N={n3}"))
    # reset-free LIF: sequential vs scan vs matmul (the parallel forms), T up to 4096
    forms = ["neurodsl-scan", "neurodsl-matmul"] if suite == "cpu" else ["neurodsl-triton-scan", "neurodsl-triton-matmul"]
    seq, par = ours, forms + [f"{form}-compiled" for form in forms]
    shapes = [(8, 64), (16, 64)] if tiny else (
        [(64, 256), (1024, 256), (4096, 256), (64, 65536), (1024, 4096)] if suite == "cpu"
        else [(64, 256), (1024, 256), (4096, 256), (64, 65536), (1024, 65536), (4096, 65536)])
    items.append(dict(name="parallel_forms", kind="lif_noreset", impls=[seq, *par], shapes=shapes,
                      modes=("fwdbwd",), about="reset-free LIF (learnable tau): sequential vs scan vs matmul, eager and "
                      "under torch.compile(fullgraph=True)"))
    backends = (("torch",) if suite == "cpu" else ("triton",)) if tiny else ("torch", "triton")
    items.append(dict(name="codegen", kinds=("lif",) if tiny else ("lif", "alif", "izhikevich"), backends=backends,
                      reps=1 if tiny else 3, about="codegen latency: cold / warm disk cache (fresh processes), memo"))
    return items


def run_item(ctx: Context, item: dict) -> None:
    name = item["name"]
    if name == "copy_bandwidth":
        nbytes = 2 ** 22 if ctx.tiny else 2 ** 30
        result = timing.copy_bandwidth_gbps(ctx.device, nbytes, ctx.warmup, max(ctx.reps, 5))
        ctx.copy_gbps = result["gbps"]
        ctx.add(scenario=name, impl="torch copy_", mode="copy", bytes=result["bytes"], gbps=result["gbps"],
                min_ms=result["min_ms"], median_ms=result["median_ms"], reps=result["reps"],
                case=f"{nbytes >> 20} MiB")
        return
    if name == "codegen":
        for kind in item["kinds"]:
            for backend in item["backends"]:
                if ctx.time_left() < 0:
                    ctx.add(scenario=name, neuron=kind, impl=f"neurodsl-{backend}", note="skipped: time budget")
                    continue
                try:
                    res = measure_codegen(kind, backend, item["reps"])
                except Exception as err:  # noqa: BLE001
                    ctx.add(scenario=name, neuron=kind, impl=f"neurodsl-{backend}", note=f"failed: {err}")
                    continue
                imp = statistics.median(res["import"])
                for mode in ("cold", "warm", "memo"):
                    vals = [v * 1e3 for v in res[mode]]
                    ctx.add(scenario=name, neuron=kind, impl=f"neurodsl-{backend}", mode=mode, case=mode,
                            min_ms=min(vals), median_ms=statistics.median(vals), reps=len(vals),
                            note=f"fresh process; import neurodsl {imp:.2f} s (not included)" if mode != "memo"
                            else "in-process compile_spec(...).module() hit")
        return
    make = _Network(item["network"]) if item.get("network") else None
    for dtype in item.get("dtypes", (torch.float32,)):
        for shape in item["shapes"]:
            impls = [i for i in item["impls"]
                     if i != "torch-compile-loop" or shape[0] <= item.get("compile_max_T", 10 ** 9)]
            several_n = len({math.prod(sh[1:]) for sh in item["shapes"]}) > 1
            label = f"T={shape[0]}" + (f", N={math.prod(shape[1:])}" if several_n else "") + \
                (f", {str(dtype)[6:]}" if len(item.get("dtypes", ())) > 1 else "")
            bench_case(ctx, name, item["kind"], impls, shape, dtype, item["modes"], make, label,
                       item.get("roofline", False))
