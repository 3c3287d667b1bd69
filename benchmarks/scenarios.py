"""How a scenario is timed. Each scenario appends flat result rows (dicts) to ``ctx.rows``.

Modes: ``infer`` forward under no_grad; ``fwd`` forward with autograd on (what training pays, saves for
backward); ``bwd`` backward alone (``retain_graph`` on one forward); ``fwdbwd`` both.

Time: every scenario gets a share of the suite budget (``budget_s`` in :mod:`.plan`, redistributed as earlier
scenarios finish early), each case a share of its scenario, each mode a share of its case. Within a mode the
implementations are warmed up, their per-call time estimated, and the repetitions capped to fit; rounds
interleave the implementations. Sizes left when a scenario's time is spent are recorded as skipped, with why.

Like with like: every implementation's spikes are compared with the first one's (neurodsl) before timing.
Below :data:`AGREEMENT_MIN` the row is marked ``comparable=False`` and the report keeps its time out of
the ratios.
"""
from __future__ import annotations

import gc
import math
import statistics
import time
import torch

from . import peers, timing
from .codegen import measure_codegen
from .context import Context, make_input, mode_fn, seeded_generator

#: Below this fraction of equal spikes an implementation does not compute the same neuron: not comparable.
AGREEMENT_MIN = 0.999
_COMPILE_RESERVE_S = {"cuda": 10.0, "cpu": 60.0}  # scenario time an implementation needing torch.compile needs


def bytes_per_step(layer, dtype: torch.dtype) -> dict[str, int]:
    """Bytes a fused kernel must move per neuron-step, per mode, from the benchmarked layer's analysis report
    (inputs and spikes in ``dtype``, saved states and gradients in fp32)."""
    report = layer.analysis()
    io = torch.empty((), dtype=dtype).element_size()
    per = report.bytes_per_neuron_step(io_bytes=io, compute_bytes=4)
    infer = per.get("inference", io * (len(report.plan.inputs) + 1))
    return {"infer": infer, "fwd": per["forward"], "bwd": per["backward"], "fwdbwd": per["total"]}


def _roofline(ctx, runner, row, dtype, T, n):
    layer = next((m for m in runner.modules if hasattr(m, "analysis")), None)
    if layer is None or row["mode"] not in ("infer", "fwd", "bwd", "fwdbwd"):
        return
    per = bytes_per_step(layer, dtype)[row["mode"]]
    row.update(bytes_per_step=per, bytes=per * T * n)
    row["gbps"] = row["bytes"] / (row["min_ms"] * 1e-3) / 1e9
    if ctx.copy_gbps:
        row["floor_ms"] = row["bytes"] / (ctx.copy_gbps * 1e9) * 1e3
        row["frac_copy"] = row["floor_ms"] / row["min_ms"]


def _needs_compile(impl: str) -> bool:
    return impl.endswith("-compiled") or impl == "torch-compile-loop"


def _build(ctx, impls, kind, make, x, base, grad: bool):
    """Build each runner and compute its spikes on ``x`` (the first call, untimed): [(impl, runner, spikes, note)].

    ``grad``: make that call with autograd on (when no mode runs under no_grad, a compiled runner then
    compiles once, not twice)."""
    built = []
    for impl in impls:
        reserve = 0.0 if ctx.tiny else _COMPILE_RESERVE_S["cuda" if ctx.device.type == "cuda" else "cpu"]
        left = ctx.scenario_left()
        if left <= 0 or (_needs_compile(impl) and left < reserve):
            why = f"; torch.compile needs ~{reserve:.0f} s" if _needs_compile(impl) else ""
            ctx.add(**base, impl=impl, note=f"skipped: scenario time budget spent ({max(0.0, left):.0f} s left{why})")
            continue
        try:
            runner = peers.build(impl, kind, ctx.device, x.dtype, ctx.compile_backend)
            if make:
                runner = make.wrap(runner, ctx.device, x.dtype)
            runner.reset()
            t0 = time.perf_counter()
            with torch.set_grad_enabled(grad):
                spikes = runner(x).detach().float()
            timing.sync(ctx.device)
            first_s = time.perf_counter() - t0
        except peers.Skip as err:
            ctx.add(**base, impl=impl, note=f"skipped: {err}")
            continue
        except Exception as err:  # noqa: BLE001 - a failing peer is a result, not a crash
            ctx.add(**base, impl=impl, note=f"failed: {type(err).__name__}: {str(err)[:160]}")
            continue
        note = runner.note + (f"; first call {first_s:.1f} s" if first_s > 1.0 else "")
        built.append((impl, runner, spikes, note))
    return built


def _warm(fns, device, warmup, seconds):
    """Warm each fn up (at least once; more while within its share of ``seconds``); returns ms per call each."""
    per_call = {}
    for impl, fn in list(fns.items()):
        calls = []
        try:
            calls.append(timing.wall_ms(fn, device))
            share_ms = seconds * 1e3 / max(1, len(fns))
            while len(calls) < max(warmup, 2 if calls[0] > 1e3 else 1) and sum(calls) < 0.3 * share_ms:
                calls.append(timing.wall_ms(fn, device))  # a slow first call may compile: measure again
        except Exception as err:  # noqa: BLE001 - reported by the caller
            per_call[impl] = err
            continue
        per_call[impl] = min(calls[1:]) if len(calls) > 1 else calls[0]
    return per_call


def bench_case(ctx: Context, scenario: str, kind: str, impls, shape, dtype=torch.float32, modes=("fwdbwd",),
               make=None, label: str = "", roofline: bool = False, seconds: float = float("inf")):
    """Time ``impls`` on one input within about ``seconds``: agreement with the first runnable impl, then
    each mode (interleaved rounds, repetitions capped by the measured per-call time)."""
    device, deadline = ctx.device, time.monotonic() + seconds
    T, n = shape[0], math.prod(shape[1:])
    base = dict(scenario=scenario, neuron=kind, dtype=str(dtype).replace("torch.", ""), T=T,
                shape="x".join(map(str, shape)), n_neurons=n, case=label or f"T={T}")
    x = make_input(kind, shape, device, dtype).requires_grad_(True)
    g = torch.randn(make.out_shape(shape) if make else shape, generator=seeded_generator(device, 1), device=device)
    g = g.to(dtype)
    built = _build(ctx, impls, kind, make, x, base, grad="infer" not in modes)
    ref = built[0][2] if built else None
    ready = [(impl, runner, _agreement(spikes, ref), note) for impl, runner, spikes, note in built]
    spike_rate = ref.mean().item() if ref is not None else None
    del built
    for m, mode in enumerate(modes):
        if ctx.time_left() <= 0:
            for impl, *_ in ready:
                ctx.add(**base, impl=impl, mode=mode, note="skipped: suite time budget spent")
            continue
        share = max(0.0, deadline - time.monotonic()) / (len(modes) - m)
        fns, samples, errors, grads = {}, {impl: [] for impl, *_ in ready}, {}, {}
        for impl, runner, *_ in ready:
            try:
                fns[impl] = mode_fn(mode, runner, x, g)
            except Exception as err:  # noqa: BLE001
                errors[impl] = err
        per_call = {impl: 0.0 for impl in fns} if ctx.tiny else _warm(fns, device, ctx.warmup, share)
        for impl, est in per_call.items():
            if isinstance(est, Exception):
                errors[impl] = est
                del fns[impl]
        per_round = sum(per_call[impl] for impl in fns)
        left = max(0.0, deadline - time.monotonic()) / (len(modes) - m)
        rounds = ctx.rounds if per_round * ctx.rounds * 1e-3 <= left else 1
        reps = timing.reps_within(left, per_round, rounds, ctx.reps)
        for rnd in range(rounds):
            for impl in list(fns):
                try:
                    samples[impl] += timing.measure(fns[impl], device, 0, reps)["times"]
                except Exception as err:  # noqa: BLE001
                    errors[impl] = err
                    del fns[impl]
                    continue
                if mode == "fwdbwd" and rnd == rounds - 1 and x.grad is not None:
                    grads[impl] = x.grad.detach().float().clone() if not grads else _rel_err(x.grad, grads)
        ref_impl = next(iter(grads), None)
        for impl, runner, agreement, note in ready:
            if impl in errors:
                err = errors[impl]
                what = "skipped: " if isinstance(err, peers.Skip) else f"failed: {type(err).__name__}: "
                ctx.add(**base, impl=impl, mode=mode, note=what + str(err)[:160])
                continue
            times = samples[impl]
            peak = timing.peak_memory_mb(mode_fn(mode, runner, x, g), device) if mode != "bwd" else None
            comparable = agreement >= AGREEMENT_MIN
            if not comparable:
                note = "; ".join(filter(None, [f"NOT COMPARABLE: spikes agree on {agreement:.1%} "
                                               f"(< {AGREEMENT_MIN:.1%})", note]))
            row = dict(base, impl=impl, mode=mode, agreement=agreement, comparable=comparable, peak_mem_mb=peak,
                       note=note, spike_rate=spike_rate, min_ms=min(times), median_ms=statistics.median(times),
                       reps=len(times))
            if impl in grads and impl != ref_impl:
                row["grad_rel_err"] = grads[impl]
            if roofline and impl.startswith("neurodsl"):
                _roofline(ctx, runner, row, dtype, T, n)
            ctx.add(**row)
        del fns, grads
        gc.collect()
    del ready
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _agreement(spikes: torch.Tensor, ref: torch.Tensor) -> float:
    """Fraction of entries where ``spikes`` equals the reference's (0 if the shapes differ)."""
    return (spikes == ref).float().mean().item() if spikes.shape == ref.shape else 0.0


def _rel_err(grad: torch.Tensor, grads: dict) -> float:
    """Relative L2 distance of ``grad`` from the first gradient stored in ``grads`` (the reference's)."""
    ref = next(iter(grads.values()))
    return ((grad.detach().float() - ref).norm() / ref.norm().clamp_min(1e-30)).item()


class _Network:
    """Linear(n, n) then the neuron, on [T, batch, n] (the same weights for every impl of a case)."""

    def __init__(self, n):
        self.n = n
        self._weights = {}

    def out_shape(self, shape):
        return shape

    def wrap(self, runner, device, dtype):
        key = (str(device), dtype)
        if key not in self._weights:
            bound = 1 / math.sqrt(self.n)
            weight = torch.rand((self.n, self.n), generator=seeded_generator(device, 2), device=device) * 2 * bound - bound
            self._weights = {key: (weight.to(dtype), torch.full((self.n,), 0.5, device=device, dtype=dtype))}
        linear = torch.nn.Linear(self.n, self.n, device=device, dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(self._weights[key][0])
            linear.bias.copy_(self._weights[key][1])
        return peers.Runner(lambda x: runner(linear(x)), runner.reset, runner.note, [linear], runner.retains_graph)


def run_item(ctx: Context, item: dict) -> None:
    """Run one scenario of :func:`benchmarks.plan.plan` within ``ctx.scenario_deadline``."""
    name = item["name"]
    if name == "copy_bandwidth":
        nbytes = 2 ** 22 if ctx.tiny else (2 ** 30 if ctx.device.type == "cuda" else 2 ** 26)
        result = timing.copy_bandwidth_gbps(ctx.device, nbytes, ctx.warmup, max(ctx.reps, 5))
        ctx.copy_gbps = result["gbps"]
        ctx.add(scenario=name, impl="torch copy_", mode="copy", bytes=result["bytes"], gbps=result["gbps"],
                min_ms=result["min_ms"], median_ms=result["median_ms"], reps=result["reps"],
                case=f"{nbytes >> 20} MiB")
        return
    if name == "codegen":
        return _codegen(ctx, item)
    if name == "host_overhead":
        from .overhead import host_overhead
        return host_overhead(ctx, item)
    if name == "online_step":
        from .online import online_step
        return online_step(ctx, item)
    make = _Network(item["network"]) if item.get("network") else None
    cases = [(dtype, i, shape) for i, shape in enumerate(item["shapes"])  # sizes in plan order, each dtype
             for dtype in item.get("dtypes", (torch.float32,))]
    several_n = len({math.prod(sh[1:]) for sh in item["shapes"]}) > 1
    for c, (dtype, i, shape) in enumerate(cases):
        impls = [imp for imp in item["impls"]
                 if (imp != "torch-compile-loop" or shape[0] <= item.get("compile_max_T", 10 ** 9))
                 and (not imp.endswith("-compiled") or i < item.get("compiled_cases", 10 ** 9))]
        label = f"T={shape[0]}" + (f", N={math.prod(shape[1:])}" if several_n else "") + \
            (f", {str(dtype)[6:]}" if len(item.get("dtypes", ())) > 1 else "")
        left = ctx.scenario_left()
        if left <= 0:
            for impl in impls:
                ctx.add(scenario=name, neuron=item["kind"], case=label, T=shape[0], dtype=str(dtype)[6:],
                        shape="x".join(map(str, shape)), n_neurons=math.prod(shape[1:]), impl=impl,
                        note=f"skipped: scenario time budget spent ({len(cases) - c} of {len(cases)} sizes left)")
            continue
        bench_case(ctx, name, item["kind"], impls, shape, dtype, item["modes"], make, label,
                   item.get("roofline", False), seconds=left / (len(cases) - c))


def _codegen(ctx: Context, item: dict) -> None:
    name = item["name"]
    for kind in item["kinds"]:
        for backend in item["backends"]:
            if ctx.scenario_left() <= 0:
                ctx.add(scenario=name, neuron=kind, impl=f"neurodsl-{backend}",
                        note="skipped: scenario time budget spent")
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
