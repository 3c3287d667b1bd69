"""``python -m benchmarks run --suite cpu|gpu|all --out results/`` and ``python -m benchmarks report``."""
from __future__ import annotations

import argparse
import os
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
    run.add_argument("--tiny", action="store_true", help="tiny sizes (smoke test of every code path)")
    run.add_argument("--with-compile", action="store_true", help="include the loop under torch.compile on CPU")
    run.add_argument("--warmup", type=int, default=None)
    run.add_argument("--reps", type=int, default=None)
    run.add_argument("--budget-s", type=float, default=None,
                     help="per-suite time budget; later cases are skipped with a note (gpu default 540 s)")
    run.add_argument("--only", default=None, help="comma-separated scenario names")
    run.add_argument("--no-progress", action="store_true")
    rep = sub.add_parser("report", help="regenerate docs/benchmarks.md and the plots from result files")
    rep.add_argument("--results", type=Path, default=Path("results"))
    rep.add_argument("--docs", type=Path, default=Path("docs/benchmarks.md"))
    rep.add_argument("--img-dir", type=Path, default=None, help="default: <docs dir>/img")
    return parser


def run_suite(suite: str, device_name: str, args) -> Path:
    import torch
    from tqdm import tqdm

    from . import report, scenarios
    from .machine import machine_info

    device = torch.device(device_name)
    tiny = args.tiny
    warmup = args.warmup if args.warmup is not None else (0 if tiny else (3 if device.type == "cuda" else 2))
    reps = args.reps if args.reps is not None else (1 if tiny else (5 if device.type == "cuda" else 3))
    rounds = 1 if tiny else (2 if device.type == "cuda" else 3)
    budget = args.budget_s if args.budget_s is not None else (540.0 if suite == "gpu" else 1500.0)
    items = scenarios.plan(suite, device, tiny, args.with_compile)
    if args.only:
        keep = set(args.only.split(","))
        items = [i for i in items if i["name"] in keep]
    stem = f"bench-{suite}-{device.type}" + ("-tiny" if tiny else "") + (f"-only-{args.only.replace(',', '+')}"
                                                                           if args.only else "")
    meta = dict(suite=suite, device=device.type, tiny=tiny, warmup=warmup, reps=f"{rounds} rounds x {reps}",
                machine=machine_info(),
                plan=[{k: v for k, v in i.items() if k in ("name", "about")} for i in items],
                started=time.strftime("%Y-%m-%d %H:%M:%S"))
    print(f"{suite} suite on {device.type}{' (tiny sizes)' if tiny else ''}: warm-ups {warmup}, "
          f"{rounds} interleaved rounds x {reps} reps")
    for item in items:
        print(f"  {item['name']}: {item.get('about', '')}")
    t0 = time.monotonic()
    bar = tqdm(total=len(items), desc=f"{suite} suite", disable=args.no_progress, file=sys.stderr)
    ctx = scenarios.Context(suite, device, tiny, warmup, reps, args.with_compile, t0 + budget, rounds=rounds)

    def on_row(row):
        bar.set_postfix_str(f"{row.get('scenario')} {row.get('case', '')} {row.get('impl', '')}"[:60])
        meta["wall_s"] = time.monotonic() - t0
        report.write_results(args.out, stem, meta, ctx.rows)  # incremental: a killed run keeps what it measured

    ctx.on_rows = on_row
    for item in items:
        bar.set_description(f"{suite}: {item['name']}")
        scenarios.run_item(ctx, item)
        bar.update()
    bar.close()
    meta["wall_s"] = time.monotonic() - t0
    json_path, csv_path = report.write_results(args.out, stem, meta, ctx.rows)
    print(report.console_table(ctx.rows))
    print(f"\n{suite} suite on {device.type}: {meta['wall_s']:.0f} s; wrote {json_path} and {csv_path}")
    return json_path


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
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
