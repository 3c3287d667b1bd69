"""Host overhead: per-call time of a layer call on tiny tensors, where the time is what the host spends.

On the CPU this shows host-side regressions without a GPU. On CUDA each call is synchronised (what a caller
waits per call) and, where capture works, the same call is also captured in a CUDA graph and replayed: the
difference is the host's share. Rows carry ``timer`` = ``call`` or ``graph``.
"""
from __future__ import annotations

import math

import torch

from . import peers, timing
from .context import Context, make_input, mode_fn


def host_overhead(ctx: Context, item: dict) -> None:
    (shape,) = item["shapes"]
    kind, modes = item["kind"], item["modes"]
    base = dict(scenario=item["name"], neuron=kind, dtype="float32", T=shape[0], shape="x".join(map(str, shape)),
                n_neurons=math.prod(shape[1:]), case=f"T={shape[0]}, N={math.prod(shape[1:])}")
    runners = {}
    for impl in item["impls"]:
        try:
            runners[impl] = peers.build(impl, kind, ctx.device, torch.float32)
        except peers.Skip as err:
            ctx.add(**base, impl=impl, note=f"skipped: {err}")
        except Exception as err:  # noqa: BLE001
            ctx.add(**base, impl=impl, note=f"failed: {type(err).__name__}: {str(err)[:160]}")
    # every per-call timing first: a capture that fails cannot disturb them
    units = [(timer, impl, mode) for timer in (("call", "graph") if item.get("graphs") else ("call",))
             for impl in runners for mode in modes]
    for done, (timer, impl, mode) in enumerate(units):
        row = dict(base, impl=impl, mode=mode, timer=timer)
        if ctx.scenario_left() <= 0:
            ctx.add(**row, note="skipped: scenario time budget spent")
            continue
        x = make_input(kind, shape, ctx.device, torch.float32).requires_grad_(True)
        g = torch.randn(shape, generator=torch.Generator(device=ctx.device).manual_seed(1), device=ctx.device)
        try:
            result = _time(ctx, runners[impl], mode, x, g, timer, ctx.scenario_left() / (len(units) - done))
        except Exception as err:  # noqa: BLE001 - a call or capture that fails is a result
            if timer == "graph" and not isinstance(err, peers.Skip):
                note = f"skipped: CUDA graph capture failed: {type(err).__name__}: {str(err)[:160]}"
                _settle(ctx.device)
            else:
                what = "skipped: " if isinstance(err, peers.Skip) else f"failed: {type(err).__name__}: "
                note = what + str(err)[:160]
            ctx.add(**row, note=note)
            continue
        ctx.add(**row, min_ms=result["min_ms"], median_ms=result["median_ms"], reps=result["reps"],
                note=("CUDA graph replay of the same call (device time per call)" if timer == "graph"
                      else "per call, host perf_counter, synchronised") + _note(runners[impl]))


def _settle(device) -> None:
    try:
        torch.cuda.synchronize(device)
    except Exception:  # noqa: BLE001 - the capture's error is already recorded
        pass


def _note(runner) -> str:
    return f"; {runner.note}" if runner.note else ""


def _time(ctx: Context, runner, mode: str, x, g, timer: str, seconds: float) -> dict:
    fn = mode_fn(mode, runner, x, g)
    if timer == "graph" and ctx.device.type != "cuda":
        raise peers.Skip("CUDA graphs need a CUDA device")
    calls = [timing.wall_ms(fn, ctx.device) for _ in range(1 if ctx.tiny else max(2, ctx.warmup))]
    most = 2 if ctx.tiny else 200
    reps = max(min(5, most), timing.reps_within(seconds, min(calls[1:] or calls), 1, most))
    if timer == "graph":
        return timing.graph_replay_ms(fn, ctx.device, max(3, reps // 10))
    return timing.measure_wall(fn, ctx.device, reps)
