"""Result files (CSV + JSON), the console table, and docs/benchmarks.md with matplotlib plots."""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

COLUMNS = ["suite", "device", "scenario", "case", "neuron", "impl", "mode", "timer", "dtype", "T", "shape",
           "n_neurons", "min_ms", "median_ms", "reps", "agreement", "comparable", "grad_rel_err", "spike_rate",
           "peak_mem_mb", "bytes_per_step", "bytes", "floor_ms", "gbps", "frac_copy", "note"]


def write_results(out: Path, stem: str, meta: dict, rows: list) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out / f"{stem}.json", out / f"{stem}.csv"
    json_path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return json_path, csv_path


def _fmt(value, digits=3):
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def comparable(row: dict) -> bool:
    """A timed row whose spikes agree with the reference (rows without an agreement check count as comparable)."""
    return "min_ms" in row and row.get("comparable", True) is not False


def _label(row: dict) -> str:
    return row.get("impl", "") + (" (CUDA graph)" if row.get("timer") == "graph" else "")


def _ours(rows):
    return next((r for r in rows if r.get("impl", "").startswith("neurodsl") and comparable(r)), None)


def scenario_table(rows: list) -> list[str]:
    """Markdown lines: one row per (case, mode, impl), with ours/peer ratios of min times. Rows whose spikes do
    not agree with the reference show no time or ratio in the table; a footnote gives their times."""
    lines = ["| case | mode | impl | min ms | median ms | ours/peer | agree | grad err | peak MiB | note |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    groups, flagged = defaultdict(list), []
    for r in rows:
        groups[(r.get("case", ""), r.get("neuron", ""), r.get("mode", ""), r.get("timer", ""))].append(r)
    for (case, neuron, mode, _), group in groups.items():
        ours = _ours(group)
        for r in group:
            ratio, mark = "", ""
            if ours and comparable(r) and r is not ours and r["min_ms"]:
                ratio = f"{ours['min_ms'] / r['min_ms']:.2f}"
            if "min_ms" in r and not comparable(r):
                flagged.append(r)
                mark = f" †{len(flagged)}"
            agree = f"{r['agreement']:.4f}" if isinstance(r.get("agreement"), float) else ""
            label = f"{case} ({neuron})" if neuron and r.get("scenario") in ("codegen",) else case
            times = (f"{_fmt(r.get('min_ms'))} | {_fmt(r.get('median_ms'))}" if comparable(r) or "min_ms" not in r
                     else f"not comparable{mark} | —")
            lines.append(f"| {label} | {mode} | {_label(r)} | {times} | {ratio} | {agree} | "
                         f"{_fmt(r.get('grad_rel_err'), 2)} | {_fmt(r.get('peak_mem_mb'))} | {r.get('note', '')} |")
    if flagged:
        lines.append("")
        lines += [f"- †{i} {r.get('impl')} {r.get('case')} {r.get('mode')}: {_fmt(r['min_ms'])} ms, not "
                  f"comparable: its spikes agree with the reference on {r['agreement']:.1%} of entries"
                  for i, r in enumerate(flagged, 1)]
    return lines


def console_table(rows: list) -> str:
    head = (f"{'scenario':<18}{'case':<16}{'neuron':<12}{'mode':<7}{'impl':<32}{'min ms':>10}{'median':>10}"
            f"{'agree':>8}{'B/step':>7}{'GB/s':>9}  note")
    out = [head, "-" * len(head)]
    flagged = []
    for r in rows:
        agree = f"{r['agreement']:.3f}" if isinstance(r.get("agreement"), float) else ""
        if "min_ms" in r and not comparable(r):
            flagged.append(r)
            agree += "!"
        out.append(f"{r.get('scenario', ''):<18}{str(r.get('case', '')):<16}{r.get('neuron', '') or '':<12}"
                   f"{r.get('mode', '') or '':<7}{_label(r):<32}{_fmt(r.get('min_ms')):>10}"
                   f"{_fmt(r.get('median_ms')):>10}{agree:>8}{_fmt(r.get('bytes_per_step')):>7}"
                   f"{_fmt(r.get('gbps')):>9}  {r.get('note', '') or ''}")
    if flagged:
        out += ["", "! NOT COMPARABLE (spikes agree with the reference on < 99.9% of entries; times are not "
                    "comparable): " + ", ".join(sorted({f"{r['scenario']}/{r['impl']}" for r in flagged}))]
    roof = [r for r in rows if r.get("bytes_per_step") and r.get("mode") in ("infer", "fwd", "bwd", "fwdbwd")]
    if roof:
        out += ["", "Bytes per neuron-step (from the analysis report of the layer benchmarked) and the floor at "
                    "the measured copy bandwidth:"]
        for r in roof:
            floor = f", floor {r['floor_ms']:.3g} ms ({r['frac_copy']:.0%} of it)" if r.get("floor_ms") else ""
            out.append(f"  {r['scenario']} {r['case']} {r['mode']} {r['impl']} {r.get('dtype', '')}: "
                       f"{r['bytes_per_step']} B/step, {r['gbps']:.3g} GB/s{floor}")
    return "\n".join(out)


# -- targets ---------------------------------------------------------------------------------------------------
def _find(rows, **want):
    """Comparable timed rows matching ``want`` (a row whose spikes disagree is never a target's evidence)."""
    return [r for r in rows if all(r.get(k) == v for k, v in want.items()) and comparable(r)
            and r.get("timer", "call") == "call"]


def _min(rows, **want):
    found = _find(rows, **want)
    return min(r["min_ms"] for r in found) if found else None


def targets(runs: dict) -> list[tuple[str, str, str]]:
    """(target, measured, status) for every target of the issue; unmeasured ones say so."""
    cpu = [r for run in runs.values() if run["meta"].get("suite") == "cpu" and not run["meta"].get("tiny")
           for r in run["rows"]]
    gpu = [r for run in runs.values() if run["meta"].get("device") == "cuda" and not run["meta"].get("tiny")
           for r in run["rows"]]
    out = []
    ours = _min(cpu, scenario="lif_cpu", impl="neurodsl-torch", mode="fwdbwd")
    sj = _min(cpu, scenario="lif_cpu", impl="spikingjelly", mode="fwdbwd")
    if ours and sj:
        out.append(("CPU: LIF fwd+bwd T=64, N=65536 at least as fast as SpikingJelly 2.0 LIFNode",
                    f"neurodsl {ours:.1f} ms vs SJ {sj:.1f} ms (ours/SJ {ours / sj:.2f})",
                    ("met" if ours <= sj else "NOT met") + (" (margin within noise)" if 0.9 < ours / sj < 1.1 else "")))
    else:
        out.append(("CPU: LIF fwd+bwd T=64, N=65536 ≥ SpikingJelly LIFNode", "—", "unmeasured"))
    cold = _find(cpu, scenario="codegen", mode="cold")
    if cold:
        worst = max(cold, key=lambda r: r["median_ms"])
        out.append(("CPU: cold codegen ≤ 1 s", f"worst median {worst['median_ms']:.0f} ms ({worst['neuron']}, "
                    f"{worst['impl']})", "met" if worst["median_ms"] <= 1000 else "NOT met"))
        warm = max(_find(cpu, scenario="codegen", mode="warm"), key=lambda r: r["median_ms"])
        out.append(("CPU: warm cache hit in a new process ≤ 50 ms", f"worst median {warm['median_ms']:.1f} ms "
                    f"({warm['neuron']}, {warm['impl']})", "met" if warm["median_ms"] <= 50 else "NOT met"))
    else:
        out += [("CPU: cold codegen ≤ 1 s", "—", "unmeasured"), ("CPU: warm cache hit ≤ 50 ms", "—", "unmeasured")]
    gpu_targets = ["GPU (H100 fp32): fused LIF fwd+bwd ≥ 85% of copy bandwidth",
                   "GPU: ≥ 1.2x SpikingJelly's hand-written Triton LIF/PLIF",
                   "GPU: ≥ 2x FlexSN on ALIF/Izhikevich", "GPU: ≥ 40x the PyTorch loop at N = 1M, T = 128"]
    if not gpu:
        return out + [(t, "—", "unmeasured (no GPU run in results/)") for t in gpu_targets]
    frac = [r["frac_copy"] for r in _find(gpu, scenario="lif_sizes", mode="fwdbwd", dtype="float32")
            if r.get("frac_copy")]
    out.append((gpu_targets[0], f"best {max(frac):.0%}" if frac else "—",
                ("met" if max(frac) >= 0.85 else "NOT met") if frac else "unmeasured"))
    ratios = []
    for kind in ("lif", "plif"):
        for r in _find(gpu, scenario=f"{kind}_sizes", impl="spikingjelly", mode="fwdbwd", dtype="float32"):
            o = _min(gpu, scenario=f"{kind}_sizes", impl="neurodsl-triton", mode="fwdbwd", case=r["case"])
            if o:
                ratios.append(r["min_ms"] / o)
    out.append((gpu_targets[1], f"speedup {min(ratios):.2f}x–{max(ratios):.2f}x" if ratios else "—",
                ("met" if min(ratios) >= 1.2 else "NOT met") if ratios else "unmeasured"))
    ratios = []
    for kind in ("alif", "izhikevich"):
        f = _min(gpu, scenario=f"custom_{kind}", impl="sj-flexsn", mode="fwdbwd")
        o = _min(gpu, scenario=f"custom_{kind}", impl="neurodsl-triton", mode="fwdbwd")
        if f and o:
            ratios.append(f / o)
    out.append((gpu_targets[2], f"speedup {min(ratios):.2f}x–{max(ratios):.2f}x" if ratios else "—",
                ("met" if min(ratios) >= 2 else "NOT met") if ratios else "unmeasured"))
    loop = _min(gpu, scenario="paper000", impl="torch-loop", mode="fwdbwd", T=128)
    o = _min(gpu, scenario="paper000", impl="neurodsl-triton", mode="fwdbwd", T=128)
    out.append((gpu_targets[3], f"speedup {loop / o:.1f}x (fwd+bwd)" if loop and o else "—",
                ("met" if loop / o >= 40 else "NOT met") if loop and o else "unmeasured"))
    return out


# -- plots -----------------------------------------------------------------------------------------------------
def plot_scenario(rows: list, path: Path, title: str) -> bool:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in rows if comparable(r)]
    if not timed:
        return False
    mode = "fwdbwd" if any(r.get("mode") == "fwdbwd" for r in timed) else timed[0].get("mode")
    timed = [r for r in timed if r.get("mode") == mode]
    cases = list(dict.fromkeys(f"{r.get('case')}" + (f" {r['neuron']}" if r.get("scenario") == "codegen" else "")
                               for r in timed))
    impls = list(dict.fromkeys(_label(r) for r in timed))
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(cases) * max(1, len(impls)) / 3), 3.4))
    width = 0.8 / max(1, len(impls))
    for i, impl in enumerate(impls):
        xs, ys = [], []
        for j, case in enumerate(cases):
            for r in timed:
                label = f"{r.get('case')}" + (f" {r['neuron']}" if r.get("scenario") == "codegen" else "")
                if _label(r) == impl and label == case:
                    xs.append(j + i * width)
                    ys.append(r["min_ms"])
        ax.bar(xs, ys, width, label=impl)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cases))], cases, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel(f"{mode} min ms (log)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


# -- docs ------------------------------------------------------------------------------------------------------
_INTRO = """# Benchmarks

From "Targets and where we stand" on, generated by `python -m benchmarks report --results results/ --docs
docs/benchmarks.md` from the result files of `python -m benchmarks run` (rerun the report, do not edit those
parts by hand); the run notes and the section "CPU: the C backend" are written records of measurements made
with the same harness, kept in `results/NOTES.md` when the report is regenerated.

Commands:

```bash
# CPU suite (about 10 minutes on 2 cores); add --with-compile to include the loop under torch.compile (~1 min compile)
python -m benchmarks run --suite cpu --out results/
# GPU suite (about 3.5 minutes on one H100/H200; results are written after every case)
SJ_LIF_CUDA_IMPLEMENTATION=triton SJ_PLIF_CUDA_IMPLEMENTATION=triton python -m benchmarks run --suite gpu --out results/
# regenerate this page and docs/img/*.png
python -m benchmarks report --results results/ --docs docs/benchmarks.md
```

The whole GPU check (real-Triton tests, the random-spec campaign, this suite and a one-screen summary) is one
command: `scripts/gpu_check.sh OUTDIR` (see [GPU check](gpu.md)).

Method: CPU times are `time.perf_counter` min and median of N runs after warm-ups (the machine is shared, so
take the min as the estimate); GPU times use `torch.cuda.Event` pairs with synchronisation, peak memory is
`torch.cuda.max_memory_allocated` above the live baseline. Modes: `infer` = forward under `no_grad`, `fwd` =
forward with autograd on, `bwd` = backward alone, `fwdbwd` = both; the upstream gradient is a dense random
tensor. `ours/peer` is neurodsl's min time divided by the peer's (below 1 = neurodsl faster). Before timing,
every implementation's spikes are compared with the first implementation listed (neurodsl) on the same
input: `agree` is the fraction of equal spikes; below 0.999 the implementation does not compute the same
neuron, and its time is left out of the table and the ratios (a footnote gives it). `grad err` is the relative
L2 distance of the input gradient from neurodsl's (fwd+bwd). All peers use LIF tau = 2, decay_input, V_th = 1,
V_reset = 0, hard reset and ATan(alpha = 2) (Norse has no ATan: its forward spikes match, its surrogate is
SuperSpike; snnTorch's `Leaky` gets the input pre-scaled by 1/tau inside the timed call).

Time budget: each suite has one (`--budget-s`, default the sum of the scenarios' shares); each scenario gets a
share, each size a share of that, and repetitions are capped by the measured time per call. Sizes left when a
share is spent are listed as skipped, with the reason. `host_overhead` times one layer call on [8, 64] tensors
(all host overhead), per call and, on CUDA, as a CUDA-graph replay of the same call. Roofline tables give the
bytes per neuron-step of the layer benchmarked (its analysis report) and the floor at the measured copy
bandwidth.
"""


#: Published numbers (paper 000, A100, N = 1,000,000, per run): impl -> {T: ms}.
PAPER000 = {"PyTorch loop (A100, paper 000)": {8: 0.646, 128: 9.647}, "CUDA (A100, paper 000)": {8: 0.054, 128: 0.763}}


def write_docs(results: Path, docs: Path, img_dir: Path | None = None) -> Path:
    runs = {}
    for path in sorted(results.glob("bench-*.json")):
        runs[path.stem] = json.loads(path.read_text())
    img_dir = img_dir or docs.parent / "img"
    notes = results / "NOTES.md"  # optional run notes (load on the machine, reruns), included verbatim
    lines = [_INTRO] + ([notes.read_text().strip(), ""] if notes.exists() else []) + [
             "## Targets and where we stand", "",
             "| target | measured | status |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {s} |" for t, m, s in targets(runs)]
    lines += ["", "Only what was measured is reported. "
              + ("" if any(run["meta"].get("device") == "cuda" for run in runs.values()) else
                 "**These results include no GPU run: every GPU target above is not yet measured on a GPU.** "
                 "The GPU suite is ready; run the GPU command above on a CUDA machine and rerun the "
                 "report."), "",
              "Published anchors (not measured here): paper 000 (A100, N = 1,000,000, forward per run): PyTorch "
              "loop 0.646 ms / their CUDA 0.054 ms at T = 8, 9.647 ms / 0.763 ms at T = 128. SpikingJelly docs "
              "(RTX 4090, fp16 LIF fwd+bwd, 64 × 65536): T = 4 torch 0.99 / CuPy 0.67 / Triton 0.77 ms; T = 32 "
              "41.9 / 5.19 / 3.37 ms. Open-neuromorphic benchmark (Linear + LIF, batch 16, T = 500, 16,384 "
              "neurons): SpikingJelly CuPy 0.020 s fwd / 0.098 s bwd; snnTorch 0.714 / 2.36 s.", ""]
    for stem, run in runs.items():
        meta, rows = run["meta"], run["rows"]
        lines += [f"## Run `{stem}`", "", "| machine | |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in meta.get("machine", {}).items()]
        lines += [f"| suite / device / tiny | {meta.get('suite')} / {meta.get('device')} / {meta.get('tiny')} |",
                  f"| warm-ups / reps | {meta.get('warmup')} / {meta.get('reps')} |",
                  f"| wall time | {meta.get('wall_s', 0):.0f} s |", ""]
        for item in meta.get("plan", []):
            name = item["name"]
            srows = [r for r in rows if r.get("scenario") == name]
            if not srows:
                continue
            lines += [f"### {name}", "", item.get("about", ""), ""]
            if name == "copy_bandwidth":
                r = srows[0]
                lines += [f"Copy of {r['case']}: {r['min_ms']:.3f} ms, {r['gbps']:.0f} GB/s (read + write).", ""]
                continue
            img = img_dir / f"{stem}-{name}.png"
            if plot_scenario(srows, img, f"{stem}: {name}"):
                lines += [f"![{name}]({Path(img).relative_to(docs.parent) if img.is_relative_to(docs.parent) else img})",
                          ""]
            lines += scenario_table(srows) + [""]
            roof = [r for r in srows if r.get("bytes_per_step")]
            if roof:
                lines += ["Roofline: bytes each fused kernel must move per neuron-step (from the analysis report "
                          "of the layer benchmarked), achieved GB/s, and the time floor at the measured copy "
                          "bandwidth:", "", "| case | mode | impl | B/step | GB/s | floor ms | floor / min |",
                          "|---|---|---|---:|---:|---:|---:|"]
                lines += [f"| {r['case']} | {r['mode']} | {r['impl']} | {r['bytes_per_step']} | {r['gbps']:.0f} | "
                          f"{_fmt(r.get('floor_ms'))} | {_fmt(r.get('frac_copy'))} |" for r in roof] + [""]
            if name == "paper000":
                lines += ["Paper 000 published (A100, N = 1,000,000): " + "; ".join(
                    f"{impl}: " + ", ".join(f"T={t} {ms} ms" for t, ms in vals.items())
                    for impl, vals in PAPER000.items()), ""]
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text("\n".join(lines).rstrip() + "\n")
    return docs
