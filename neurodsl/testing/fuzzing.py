"""The spec-fuzzing campaign: random valid neurons, each compiled and checked against the reference loop.

``python -m neurodsl.testing --examples N [--backend torch|triton] [--device cpu|cuda] [--seed S]
[--out FILE.json]`` draws N cases (:func:`~neurodsl.testing.strategies.cases`: a random neuron, surrogate,
learnable set, T, shape and sometimes initial states), compiles each on that backend and device, and
compares forward and every gradient with :func:`~neurodsl.testing.check.check_against_reference` on
inputs calibrated to fire (:func:`~neurodsl.testing.check.inputs_for`). It prints
``campaign: N drawn, C compared, F failed`` and the failures, writes every draw to the JSON file, and
exits 1 on any failure or when nothing was compared. ``--backend triton --device cpu`` runs the
Triton interpreter.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import UsageError


@dataclass
class CampaignReport:
    """Every draw of a campaign (``draws``: dicts with ``status`` 'compared' | 'skipped' | 'failed')."""

    backend: str
    device: str
    seed: int
    examples: int
    draws: list = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(d["status"] == status for d in self.draws)

    @property
    def ok(self) -> bool:
        """No draw failed and at least one was compared."""
        return self.count("failed") == 0 and self.count("compared") > 0

    def line(self) -> str:
        return (f"campaign: {len(self.draws)} drawn, {self.count('compared')} compared, "
                f"{self.count('failed')} failed")

    def to_json(self) -> dict:
        return {**asdict(self), "drawn": len(self.draws), "compared": self.count("compared"),
                "failed": self.count("failed"), "skipped": self.count("skipped")}


def check_case(case, device: str = "cpu", max_flip_fraction: float = 0.01) -> dict:
    """Check one :func:`~neurodsl.testing.strategies.cases` draw; a record for the report (never raises)."""
    from .check import check_against_reference, initial_states, inputs_for
    from .strategies import describe
    layer, T, shape, seed, with_init = case
    record = {"name": type(layer).__name__, "T": T, "shape": list(shape), "seed": seed, "init": with_init,
              "surrogate": repr(layer.surrogate), "learnable": [n for n, _ in layer.named_parameters()],
              "detach_reset": layer.detach_reset}
    try:
        layer = layer.to(device)
        init = initial_states(layer, shape, seed=seed) if with_init else None
        xs = inputs_for(layer, T, shape, seed=seed, init=init)
        result = check_against_reference(layer, *xs, init=init, max_flip_fraction=max_flip_fraction)
    except Exception as err:  # a crash is a finding: report it with the spec
        record.update(status="failed", failures=[f"{type(err).__name__}: {err}"],
                      traceback=traceback.format_exc(limit=6), spec=describe(type(layer)))
        return record
    record.update(rate=result.rate, flips=result.flips, mismatches=result.mismatches,
                  compared=sum(result.compared.values()), errors=result.errors)
    if result.failures:
        record.update(status="failed", failures=list(result.failures), spec=describe(type(layer)))
    elif result.skipped:
        record.update(status="skipped", reason=result.skipped, spec=describe(type(layer)))
    else:
        record.update(status="compared")
    return record


def campaign(examples: int = 200, backend: str = "torch", device: str = "cpu", seed: int = 0,
             max_steps: int = 6, max_flip_fraction: float = 0.01) -> CampaignReport:
    """Draw ``examples`` cases with hypothesis and check each; returns the :class:`CampaignReport` (failures
    are recorded, not raised). The same ``seed`` draws the same cases in a fresh process (hypothesis also
    draws constants from the modules loaded so far, so a second campaign in one process may differ)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    from .strategies import cases
    report = CampaignReport(backend, device, seed, examples)

    @hypothesis_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(cases(backend=backend, max_steps=max_steps))
    def run(case):
        if len(report.draws) < examples:
            report.draws.append(check_case(case, device, max_flip_fraction))

    run()
    return report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m neurodsl.testing",
                                     description="neurodsl spec-fuzzing campaign: random neurons vs the reference loop")
    parser.add_argument("--examples", type=int, default=200, help="cases to draw (default 200)")
    from ..dispatch import backend_names
    parser.add_argument("--backend", choices=backend_names(), default="torch")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed: the same seed draws the same cases "
                        "(in a fresh process)")
    parser.add_argument("--out", help="write every draw to this JSON file")
    parser.add_argument("--max-steps", type=int, default=6, help="longest sequence drawn (default 6)")
    return parser


def main(argv=None) -> int:
    """The command line; returns the exit code (0 all compared cases match, 1 a failure or nothing
    compared, 2 a usage error)."""
    args = _parser().parse_args(argv)
    try:
        validate(args)
    except UsageError as err:
        print(f"python -m neurodsl.testing: {err}", file=sys.stderr)
        return 2
    configure_triton(args.backend, args.device)
    report = campaign(args.examples, args.backend, args.device, args.seed, args.max_steps)
    print(report.line())
    for i, d in enumerate(report.draws):
        if d["status"] == "failed":
            print(f"  FAILED draw {i}: {d['name']} T={d['T']} shape={tuple(d['shape'])} seed={d['seed']} "
                  f"{d['surrogate']}: {'; '.join(d['failures'])}")
            print(f"    spec: {json.dumps(d['spec'])}")
    skipped = report.count("skipped")
    if skipped:
        reasons = sorted({d["reason"] for d in report.draws if d["status"] == "skipped"})
        print(f"  {skipped} skipped: {'; '.join(reasons)}")
    if report.count("compared") == 0:
        print("  [ND806] nothing was compared")
    if args.out:
        Path(args.out).write_text(json.dumps(report.to_json(), indent=1, default=str))
        print(f"  wrote {args.out}")
    return 0 if report.ok else 1


def validate(args) -> None:
    """Raise UsageError (ND804, ND805, ND807) for arguments the campaign cannot run with."""
    if args.examples < 1:
        raise UsageError("ND804", f"--examples {args.examples}: draw at least 1 case")
    if args.max_steps < 1:
        raise UsageError("ND804", f"--max-steps {args.max_steps}: use at least 1 step")
    if args.out:
        parent = Path(args.out).resolve().parent
        if not parent.is_dir():
            raise UsageError("ND805", f"--out {args.out}: directory {parent} does not exist")
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise UsageError("ND807", "--device cuda: torch sees no CUDA device (use --device cpu)")


def configure_triton(backend: str, device: str) -> None:
    """Before triton is imported: the interpreter for Triton on the CPU, compiled kernels on CUDA."""
    if backend == "triton" and device == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"
    elif device == "cuda":
        os.environ["TRITON_INTERPRET"] = "0"
