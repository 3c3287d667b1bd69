"""What every scenario shares: the run's :class:`Context`, the benchmark input and the timed call of a mode.

Scenarios (:mod:`.scenarios`, :mod:`.overhead`, :mod:`.online`) import from here; :mod:`.scenarios` runs them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from . import peers


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
    scenario_deadline: float = float("inf")
    compile_backend: str = "inductor"

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def scenario_left(self) -> float:
        return min(self.scenario_deadline, self.deadline) - time.monotonic()

    def start_scenario(self, weight: float, weight_left: float) -> float:
        """Give the next scenario its share of the suite time left; returns the share in seconds."""
        share = max(0.0, self.time_left()) * (weight / weight_left if weight_left > 0 else 1.0)
        self.scenario_deadline = time.monotonic() + share
        return share

    def add(self, **row):
        row.setdefault("suite", self.suite)
        row.setdefault("device", self.device.type)
        self.rows.append(row)
        if self.on_rows:
            self.on_rows(row)


def seeded_generator(device, seed: int) -> torch.Generator:
    """A seeded generator on ``device``: GB-sized inputs are drawn where they are used, not on the host."""
    return torch.Generator(device=device).manual_seed(seed)


def make_input(kind, shape, device, dtype, seed=0):
    """The benchmark input: uniform in [0, 0.5) for paper 000 (its V_th is 0.3), [0, 1.5) otherwise."""
    scale = 0.5 if kind == "paper000" else 1.5
    x = torch.rand(shape, generator=seeded_generator(device, seed), device=device)
    return (x * scale).to(dtype)


def mode_fn(mode, runner, x, g):
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
