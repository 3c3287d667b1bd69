"""Timers: CUDA events + synchronize on a GPU, ``time.perf_counter`` on the CPU; min and median of N after warm-ups.

Also the time-budget helpers: :func:`wall_ms` times one synchronised call (host + device), and
:func:`reps_within` picks how many repetitions fit in what is left of a budget.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def wall_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Milliseconds of one call of ``fn`` from the host's view (synchronised before and after)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return (time.perf_counter() - t0) * 1e3


def reps_within(seconds_left: float, ms_per_rep: float, rounds: int, most: int) -> int:
    """Repetitions per round so that ``rounds`` rounds of reps costing ``ms_per_rep`` fit in ``seconds_left``
    (at least 1, at most ``most``)."""
    if ms_per_rep <= 0 or seconds_left == float("inf"):
        return most
    return max(1, min(most, int(seconds_left * 1e3 / (rounds * ms_per_rep))))


def measure(fn: Callable[[], object], device: torch.device, warmup: int = 2, reps: int = 5) -> dict:
    """Run ``fn`` ``warmup`` times untimed, then ``reps`` times; returns min/median milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return {"min_ms": min(times), "median_ms": statistics.median(times), "reps": reps, "times": times}


def measure_wall(fn: Callable[[], object], device: torch.device, reps: int) -> dict:
    """Per-call host time: ``perf_counter`` around each call, synchronised (what a caller waits per call)."""
    times = [wall_ms(fn, device) for _ in range(reps)]
    return {"min_ms": min(times), "median_ms": statistics.median(times), "reps": reps, "times": times}


def graph_replay_ms(fn: Callable[[], object], device: torch.device, reps: int) -> dict:
    """Capture one call of ``fn`` in a CUDA graph and time its replay (CUDA events over ``reps`` replays, each
    sample the mean of a burst of 10). Raises if capture fails (the caller records why)."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):  # warm-up on a side stream, as capture requires
        for _ in range(3):
            fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    torch.cuda.synchronize(device)
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 10)
    del graph
    return {"min_ms": min(times), "median_ms": statistics.median(times), "reps": reps, "times": times}


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float | None:
    """Extra GPU memory one call of ``fn`` allocates at its peak (None off CUDA)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20


def copy_bandwidth_gbps(device: torch.device, nbytes: int, warmup: int = 3, reps: int = 10) -> dict:
    """Device-to-device copy bandwidth, counting read + write (2 x nbytes per copy)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    result = measure(lambda: dst.copy_(src), device, warmup, reps)
    result["gbps"] = 2 * src.numel() * 4 / (result["min_ms"] * 1e-3) / 1e9
    result["bytes"] = 2 * src.numel() * 4
    return result
