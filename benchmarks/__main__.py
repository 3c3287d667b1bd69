"""``python -m benchmarks run --suite cpu|gpu|all --out results/``, ``python -m benchmarks report`` and
``python -m benchmarks summary OUTDIR`` (the one-screen summary of ``scripts/gpu_check.sh``)."""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a suite, print a table, write CSV + JSON")
    run.add_argument("--suite", choices=("cpu", "gpu", "all"), default="cpu")
    run.add_argument("--out", type=Path, default=Path("results"))
    run.add_argument("--device", choices=("cpu", "cuda"), default=None,
                     help="default: cuda for the gpu suite, cpu for the cpu suite")
    run.add_argument("--tiny", action="store_true", help="tiny sizes (smoke test of every code path; "
                     "torch.compile runs with the aot_eager backend, no code generation)")
    run.add_argument("--with-compile", action="store_true", help="include the loop under torch.compile on CPU")
    run.add_argument("--warmup", type=int, default=None)
    run.add_argument("--reps", type=int, default=None)
    run.add_argument("--budget-s", type=float, default=None,
                     help="suite time budget in seconds, shared among the scenarios (default: the sum of their "
                          "shares, about 205 s for gpu); sizes left when a share is spent are skipped with a note")
    run.add_argument("--only", default=None, help="comma-separated scenario names")
    run.add_argument("--no-progress", action="store_true")
    rep = sub.add_parser("report", help="regenerate docs/benchmarks.md and the plots from result files")
    rep.add_argument("--results", type=Path, default=Path("results"))
    rep.add_argument("--docs", type=Path, default=Path("docs/benchmarks.md"))
    rep.add_argument("--img-dir", type=Path, default=None, help="default: <docs dir>/img")
    env = sub.add_parser("env", help="write the machine and software description (JSON) to a file")
    env.add_argument("--out", type=Path, required=True)
    summ = sub.add_parser("summary", help="one-screen summary of a scripts/gpu_check.sh output folder")
    summ.add_argument("outdir", type=Path)
    summ.add_argument("--write", type=Path, default=None, help="also write the summary here")
    return parser


def result_stem(suite: str, device: str, tiny: bool, only: str | None) -> str:
    """File stem of a run's results: letters, digits, '.', '_' and '-' only (copy tools reject the rest)."""
    stem = f"bench-{suite}-{device}" + ("-tiny" if tiny else "") + (f"-only-{only}" if only else "")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem)


def run_suite(suite: str, device_name: str, args) -> Path:
    import torch

    from . import plan, report, scenarios
    from .machine import machine_info

    device = torch.device(device_name)
    tiny = args.tiny
    warmup = args.warmup if args.warmup is not None else (0 if tiny else (3 if device.type == "cuda" else 2))
    reps = args.reps if args.reps is not None else (1 if tiny else (5 if device.type == "cuda" else 3))
    rounds = 1 if tiny else (2 if device.type == "cuda" else 3)
    items = plan.plan(suite, device, tiny, args.with_compile)
    if args.only:
        keep = set(args.only.split(","))
        items = [i for i in items if i["name"] in keep]
    budget = args.budget_s if args.budget_s is not None else (
        max(600.0, plan.default_budget(items)) if tiny else plan.default_budget(items))
    stem = result_stem(suite, device.type, tiny, args.only)
    meta = dict(suite=suite, device=device.type, tiny=tiny, warmup=warmup, reps=f"{rounds} rounds x {reps}",
                budget_s=budget, machine=machine_info(),
                plan=[{k: v for k, v in i.items() if k in ("name", "about", "budget_s")} for i in items],
                scenario_wall_s={}, started=time.strftime("%Y-%m-%d %H:%M:%S"))
    print(f"{suite} suite on {device.type}{' (tiny sizes)' if tiny else ''}: warm-ups up to {warmup}, "
          f"{rounds} interleaved rounds x up to {reps} reps, time budget {budget:.0f} s")
    for item in items:
        print(f"  {item['name']}: {item.get('about', '')}")
    t0 = time.monotonic()
    bar = _progress(len(items), f"{suite} suite", args.no_progress)
    ctx = scenarios.Context(suite, device, tiny, warmup, reps, args.with_compile, t0 + budget, rounds=rounds,
                            compile_backend="aot_eager" if tiny else "inductor")

    def on_row(row):
        bar.set_postfix_str(f"{row.get('scenario')} {row.get('case', '')} {row.get('impl', '')}"[:60])
        meta["wall_s"] = time.monotonic() - t0
        report.write_results(args.out, stem, meta, ctx.rows)  # incremental: a killed run keeps what it measured

    ctx.on_rows = on_row
    weight_left = sum(i.get("budget_s", 1.0) for i in items)
    for item in items:
        bar.set_description(f"{suite}: {item['name']}")
        ctx.start_scenario(item.get("budget_s", 1.0), weight_left)
        weight_left -= item.get("budget_s", 1.0)
        t_item = time.monotonic()
        scenarios.run_item(ctx, item)
        meta["scenario_wall_s"][item["name"]] = round(time.monotonic() - t_item, 1)
        bar.update()
    bar.close()
    meta["wall_s"] = time.monotonic() - t0
    json_path, csv_path = report.write_results(args.out, stem, meta, ctx.rows)
    print(report.console_table(ctx.rows))
    print(f"\n{suite} suite on {device.type}: {meta['wall_s']:.0f} s; wrote {json_path} and {csv_path}")
    return json_path


def _commit() -> str | None:
    import subprocess
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent.parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _progress(total: int, desc: str, disable: bool):
    """A tqdm bar on stderr; a silent stand-in where tqdm is not installed (e.g. a bare GPU machine)."""
    try:
        from tqdm import tqdm
    except ImportError:
        disable = True
    if not disable:
        return tqdm(total=total, desc=desc, file=sys.stderr)

    class _Quiet:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None
    return _Quiet()


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "env":
        import json

        from .machine import machine_info
        info = dict(machine_info(), date=time.strftime("%Y-%m-%d %H:%M:%S"), commit=_commit())
        args.out.write_text(json.dumps(info, indent=1))
        print(" | ".join(f"{k} {v}" for k, v in info.items() if k in ("gpu", "python", "torch", "triton")))
        return 0
    if args.command == "summary":
        from .summary import summarize
        text = summarize(args.outdir)
        print(text)
        if args.write:
            args.write.write_text(text + "\n")
        return 0
    if args.command == "report":
        from .report import write_docs
        path = write_docs(args.results, args.docs, args.img_dir)
        print(f"wrote {path}")
        return 0
    suites = ("cpu", "gpu") if args.suite == "all" else (args.suite,)
    if args.device == "cpu" or (args.device is None and args.suite == "cpu"):
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported: triton backend on CPU tensors
    import torch
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    for suite in suites:
        device = args.device or ("cuda" if suite == "gpu" else "cpu")
        if device == "cuda" and not torch.cuda.is_available():
            print(f"{suite} suite skipped: no CUDA device (use --device cpu --tiny to exercise its code paths)",
                  file=sys.stderr)
            continue
        run_suite(suite, device, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
