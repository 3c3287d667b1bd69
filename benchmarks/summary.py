"""The one-screen summary of a ``scripts/gpu_check.sh`` output folder (``python -m benchmarks summary OUTDIR``).

Reads what the steps left there, each part optional (a step that failed may have written nothing):
``env.json`` (GPU and versions), ``steps.tsv`` (``name<TAB>exit code<TAB>seconds<TAB>log``, one line a step),
the pytest junit files named in it, ``campaign.json`` (or the ``campaign: ...`` line of its log) and
``bench/bench-*.json`` (the GPU suite's results).
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from .report import comparable

_CAMPAIGN_LINE = re.compile(r"campaign: (\d+) drawn, (\d+) compared, (\d+) failed")


def summarize(outdir: Path) -> str:
    outdir = Path(outdir)
    env = _json(outdir / "env.json") or {}
    runs = sorted((outdir / "bench").glob("bench-*.json")) if (outdir / "bench").is_dir() else []
    rows = [r for path in runs for r in (_json(path) or {}).get("rows", [])]
    meta = (_json(runs[0]) or {}).get("meta", {}) if runs else {}
    machine = meta.get("machine", {})
    lines = ["neurodsl GPU check" + (f" ({env['date']})" if env.get("date") else ""),
             _environment(env, machine), "", f"{'step':<24}{'result':<11}{'time':>7}  details"]
    steps = _steps(outdir)
    for step in steps:
        lines.append(f"{step['name']:<24}{step['result']:<11}{step['seconds']:>6}s  {_details(outdir, step, rows)}")
    if not steps:
        lines.append("(no steps.tsv: nothing ran)")
    lines += [""] + _headlines(rows)
    failed = [s["name"] for s in steps if s["result"] not in ("ok", "no tests")]
    lines += ["", f"overall: {'FAILED (' + ', '.join(failed) + ')' if failed else 'ok'}"
              + (f"; logs and results in {outdir}" if steps else "")]
    return "\n".join(lines)


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _environment(env: dict, machine: dict) -> str:
    gpu = env.get("gpu") or machine.get("gpu") or "no GPU seen"
    parts = [f"GPU: {gpu}" + (f" ({env.get('gpu_memory_gib') or machine.get('gpu_memory_gib')} GiB)"
                              if env.get("gpu_memory_gib") or machine.get("gpu_memory_gib") else "")]
    for key in ("python", "torch", "triton", "cuda_runtime", "gpu_driver", "spikingjelly", "commit"):
        value = env.get(key) or machine.get(key)
        if value:
            parts.append(f"{key} {value}")
    return " | ".join(parts)


def _steps(outdir: Path) -> list[dict]:
    path = outdir / "steps.tsv"
    if not path.exists():
        return []
    steps = []
    for line in path.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        name, rc, seconds = fields[:3]
        rc = int(rc) if rc.lstrip("-").isdigit() else -1
        junit = fields[4] if len(fields) > 4 else ""
        result = {0: "ok", 124: "TIMED OUT", 137: "KILLED"}.get(rc, f"FAILED({rc})")
        if rc == 5 and name == "tests_cuda":  # pytest: no test selected (no CUDA cases in those files)
            result = "no tests"
        steps.append(dict(name=name, rc=rc, result=result, seconds=seconds,
                          log=fields[3] if len(fields) > 3 else "", junit=junit))
    return steps


def junit_counts(path: Path) -> dict | None:
    """passed / failed / errors / skipped of a pytest junit XML (None if missing or unreadable)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    return dict(passed=total["tests"] - total["failures"] - total["errors"] - total["skipped"],
                failed=total["failures"], errors=total["errors"], skipped=total["skipped"])


def campaign_counts(outdir: Path, log: str = "") -> dict | None:
    """Counts of campaign.json, or the sum over campaign-<i>.json (a campaign split over processes)."""
    parts = [_json(p) for p in sorted(outdir.glob("campaign*.json"))]
    parts = [d for d in parts if d and "drawn" in d]
    if parts:
        return {k: sum(d.get(k, 0) for d in parts) for k in ("drawn", "compared", "failed", "skipped")}
    text = (outdir / log).read_text(errors="replace") if log and (outdir / log).is_file() else ""
    found = _CAMPAIGN_LINE.findall(text)
    if found:
        drawn, compared, failed = map(int, found[-1])
        return dict(drawn=drawn, compared=compared, failed=failed)
    return None


def _details(outdir: Path, step: dict, rows: list) -> str:
    if step["junit"]:
        counts = junit_counts(outdir / step["junit"])
        if counts is None:
            text = "no junit file (pytest did not finish)"
        else:
            text = ", ".join(f"{v} {k}" for k, v in counts.items() if v or k == "passed")
            if step["rc"] == 5:
                text = "no CUDA case selected"
        return f"{text}; log {step['log']}"
    if step["name"] == "campaign":
        counts = campaign_counts(outdir, step["log"])
        text = ", ".join(f"{v} {k}" for k, v in counts.items()) if counts else "no campaign counts"
        return f"{text}; log {step['log']}"
    if step["name"] == "bench":
        timed = [r for r in rows if "min_ms" in r]
        skipped = [r for r in rows if str(r.get("note", "")).startswith("skipped")]
        budget = [r for r in skipped if "budget" in str(r.get("note", ""))]
        failed = [r for r in rows if str(r.get("note", "")).startswith("failed")]
        flagged = sorted({f"{r['scenario']}/{r['impl']}" for r in timed if not comparable(r)})
        text = (f"{len(timed)} timed, {len(skipped)} skipped ({len(budget)} for time), {len(failed)} failed"
                + (f"; NOT COMPARABLE: {', '.join(flagged)}" if flagged else ""))
        return f"{text}; log {step['log']}"
    return f"log {step['log']}" if step["log"] else ""


# -- headline ratios ---------------------------------------------------------------------------------------
def _pick(rows, **want):
    found = [r for r in rows if all(r.get(k) == v for k, v in want.items()) and "min_ms" in r]
    return min(found, key=lambda r: r["min_ms"]) if found else None


def _cell(row) -> str:
    if row is None:
        return "—"
    return f"{row['min_ms']:.3g} ms" + ("" if comparable(row) else " (NOT COMPARABLE)")


def _ratio(peer, ours) -> str:
    if peer is None or ours is None or not comparable(peer) or not comparable(ours) or not ours["min_ms"]:
        return ""
    return f"{peer['min_ms'] / ours['min_ms']:.2f}x"


def _vs(label: str, rows, peer_impl: str, peer_name: str, ours_impl: str = "neurodsl-triton", **want) -> str:
    ours, peer = _pick(rows, impl=ours_impl, **want), _pick(rows, impl=peer_impl, **want)
    if ours is None and peer is None:
        return f"  {label:<38}not measured"
    ratio = _ratio(peer, ours)
    return (f"  {label:<38}neurodsl {_cell(ours):<11} {peer_name} {_cell(peer)}"
            + (f" -> {ratio}" if ratio else ""))


def _headlines(rows: list) -> list[str]:
    if not rows:
        return ["headlines: no GPU benchmark results"]
    out = ["headlines (min times; 'Nx' = peer time / neurodsl time, above 1 = neurodsl faster):"]
    for dtype in ("float32", "float16"):
        for mode, what in (("fwdbwd", "fwd+bwd"), ("infer", "inference")):
            case = _pick(rows, scenario="lif_sizes", dtype=dtype, mode=mode, T=64)
            shape = case["shape"] if case else "64x64x65536"
            out.append(_vs(f"LIF [{shape}] {dtype} {what}", rows, "spikingjelly", "SJ",
                           scenario="lif_sizes", dtype=dtype, mode=mode, T=64))
    shapes = {r["T"]: r["shape"] for r in rows if r.get("scenario") == "paper000" and "min_ms" in r}
    for mode, what in (("fwdbwd", "fwd+bwd"), ("infer", "inference")):
        for t in sorted(shapes):
            out.append(_vs(f"paper-000 [{shapes[t]}] {what}", rows, "spikingjelly", "SJ",
                           scenario="paper000", mode=mode, T=t))
        if shapes:
            t = max(shapes)
            out.append(_vs(f"paper-000 [{shapes[t]}] {what}", rows, "torch-loop", "loop",
                           scenario="paper000", mode=mode, T=t))
    out.append(_vs("paper-000 loop under torch.compile", rows, "torch-compile-loop", "compiled loop",
                   scenario="compiled_loop", mode="fwdbwd"))
    for kind in ("alif", "izhikevich"):
        if any(r.get("scenario") == f"custom_{kind}" for r in rows):
            out.append(_vs(f"{kind} fwd+bwd", rows, "sj-flexsn", "FlexSN", scenario=f"custom_{kind}",
                           mode="fwdbwd"))
    out += _parallel(rows) + _overhead(rows)
    flagged = sorted({f"{r['scenario']}/{r['impl']} ({r['agreement']:.1%})" for r in rows
                      if "min_ms" in r and not comparable(r)})
    if flagged:
        out.append("  NOT COMPARABLE (spikes agree < 99.9%, times left out): " + ", ".join(flagged))
    return out


def _parallel(rows: list) -> list[str]:
    par = [r for r in rows if r.get("scenario") == "parallel_forms" and r.get("mode") == "fwdbwd" and "min_ms" in r]
    out = []
    for case in dict.fromkeys(r["case"] for r in par):
        here = [r for r in par if r["case"] == case]
        seq = next((r for r in here if r["impl"] in ("neurodsl-triton", "neurodsl-torch")), None)
        auto = next((r for r in here if r["impl"].endswith("-auto") and comparable(r)), None)
        forms = [r for r in here if r is not seq and r is not auto and comparable(r)]
        if seq is None or not forms:
            continue
        best = min(forms, key=lambda r: r["min_ms"])
        bad = [r["impl"] for r in here if (r.get("grad_rel_err") or 0) > 1e-3]
        line = (f"  parallel {case:<29}sequential {seq['min_ms']:.3g} ms, best {best['impl']} "
                f"{best['min_ms']:.3g} ms -> {seq['min_ms'] / best['min_ms']:.2f}x")
        if auto is not None:  # parallel='auto' against the fastest eager form of its backend (sequential included)
            eager = [r for r in [seq, *forms] if not r["impl"].endswith("-compiled")]
            fastest = min(eager, key=lambda r: r["min_ms"])
            ratio = fastest["min_ms"] / auto["min_ms"]
            line += (f"; auto {auto['min_ms']:.3g} ms = {ratio:.2f}x the fastest ({fastest['impl']})"
                     + (" AUTO BELOW 0.95x" if ratio < 0.95 else ""))
        out.append(line + (f"; GRADIENTS DIFFER: {', '.join(bad)}" if bad else ""))
    return out


def _overhead(rows: list) -> list[str]:
    over = [r for r in rows if r.get("scenario") == "host_overhead" and "min_ms" in r]
    out = []
    for impl in dict.fromkeys(r["impl"] for r in over):
        parts = []
        for mode in ("infer", "fwd", "fwdbwd"):
            call = next((r for r in over if r["impl"] == impl and r["mode"] == mode and r.get("timer") == "call"), None)
            graph = next((r for r in over if r["impl"] == impl and r["mode"] == mode and r.get("timer") == "graph"),
                         None)
            if call:
                parts.append(f"{mode} {call['median_ms']:.3g} ms" + (f" (graph {graph['median_ms']:.3g})"
                                                                     if graph else ""))
        if parts:
            case = next(r["case"] for r in over if r["impl"] == impl)
            out.append(f"  host time per call, {impl} [{case}]: " + ", ".join(parts))
    return out
