"""Timers: CUDA events + synchronize on a GPU, ``time.perf_counter`` on the CPU; min and median of N after warm-ups."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


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
