"""What each suite runs, at which sizes, and the share of the suite's time budget each scenario gets.

``budget_s`` is the scenario's share of the default suite budget (the sum over a suite); ``--budget-s`` scales
every share. Sizes are the full ones unless ``tiny`` (the smoke test of every code path).
"""
from __future__ import annotations

import torch

#: Host-overhead case: tiny tensors, so the time of a call is what the host spends launching it.
OVERHEAD_SHAPE = (8, 64)


def plan(suite: str, device: torch.device, tiny: bool, with_compile: bool) -> list[dict]:
    """The scenario list; the ``gpu`` suite's shares add up to 205 s (about 3.5 minutes on one H100/H200)."""
    return _cpu(tiny, with_compile) if suite == "cpu" else _gpu(device, tiny, with_compile)


def default_budget(items: list[dict]) -> float:
    return float(sum(item.get("budget_s", 0) for item in items))


def _cpu(tiny: bool, with_compile: bool) -> list[dict]:
    ours, loop = "neurodsl-torch", ["torch-loop"] + (["torch-compile-loop"] if with_compile else [])
    c_ours = "neurodsl-c"  # the C backend (what backend='auto' runs on CPU with a C compiler), next to ours
    peer_lif = ["spikingjelly", "snntorch", "norse"]
    items = [dict(name="copy_bandwidth", budget_s=5, about="memory copy (roofline reference)"),
             dict(name="host_overhead", kind="lif", impls=[ours, c_ours, "spikingjelly"], shapes=[OVERHEAD_SHAPE],
                  modes=("infer", "fwd", "fwdbwd"), budget_s=15,
                  about=f"per-call host time of a layer call on {list(OVERHEAD_SHAPE)} (all overhead)")]
    n, t = (256, 8) if tiny else (65536, 64)
    items.append(dict(name="lif_cpu", kind="lif", impls=[ours, c_ours, *peer_lif, *loop], shapes=[(t, n)],
                      modes=("infer", "fwd", "bwd", "fwdbwd"), roofline=True, budget_s=120,
                      about=f"LIF fwd+bwd, T={t}, N={n} (the CPU target case)"))
    n0, ts = (256, (4, 8)) if tiny else (65536, (8, 32, 128))
    items.append(dict(name="paper000", kind="paper000", impls=[ours, c_ours, "spikingjelly", "torch-loop"],
                      shapes=[(t, n0) for t in ts], modes=("infer", "fwdbwd"), roofline=True, budget_s=150,
                      about=f"paper 000 LIF, scaled to N={n0}, T in {list(ts)} (GPU suite: N=1,000,000)"))
    b, n1, ts = (2, 64, (4,)) if tiny else (16, 4096, (4, 16, 32))
    for kind in ("lif", "plif"):
        items.append(dict(name=f"{kind}_sizes", kind=kind, impls=[ours, c_ours, "spikingjelly", "torch-loop"],
                          shapes=[(t, b, n1) for t in ts], modes=("fwdbwd",), budget_s=90,
                          about=f"{kind.upper()} fwd+bwd on [T, {b}, {n1}] (GPU suite: [T, 64, 65536]), fp32"))
    t2, b2, n2 = (6, 2, 32) if tiny else (100, 16, 1024)
    items.append(dict(name="network", kind="lif", impls=[ours, c_ours, f"{ours}-compiled", *peer_lif, "torch-loop"],
                      shapes=[(t2, b2, n2)], modes=("fwd", "bwd", "fwdbwd"), network=n2, budget_s=200,
                      about=f"Linear({n2},{n2}) + LIF, batch {b2}, T={t2} (GPU suite: 16384 neurons, T=500)"))
    n3, t3 = (256, 8) if tiny else (65536, 64)
    for kind in ("alif", "izhikevich"):
        items.append(dict(name=f"custom_{kind}", kind=kind, impls=[ours, c_ours, "sj-flexsn", "torch-loop"],
                          shapes=[(t3, n3)], modes=("fwd", "fwdbwd"), budget_s=90,
                          about=f"custom neuron {kind}, T={t3}, N={n3}"))
    forms = ["neurodsl-scan", "neurodsl-matmul", "neurodsl-auto"]
    shapes = [(4, 8), (8, 8)] if tiny else [(64, 256), (1024, 256), (4096, 256), (64, 65536), (1024, 4096)]
    items.append(_parallel_forms(ours, forms, forms[:1] if tiny else forms[:2], shapes,
                                 compiled_cases=1 if tiny else len(shapes), budget_s=300))
    items.append(dict(name="codegen", kinds=("lif",) if tiny else ("lif", "alif", "izhikevich"),
                      backends=("torch",) if tiny else ("torch", "triton"), reps=1 if tiny else 3, budget_s=120,
                      about="codegen latency: cold / warm disk cache (fresh processes), memo"))
    items.append(_online(tiny, (2, 8, 8, 4) if tiny else (32, 256, 256, 200), budget_s=120))
    return items


def _online(tiny: bool, size: tuple, budget_s: float) -> dict:
    """neurodsl.online: one online step (e-prop, OTTT, SLTT) against the layer's inference step, and the peak
    memory of T training steps against BPTT's (benchmarks/online.py)."""
    B, n_in, n, T = size
    return dict(name="online_step", shape=(B, n_in, n), T=T, rules=("eprop", "ottt", "sltt"), budget_s=budget_s,
                about=f"online step of Linear({n_in},{n}) + ALIF, batch {B}, vs the inference step; peak memory "
                      f"of {T} steps vs BPTT")


def _gpu(device: torch.device, tiny: bool, with_compile: bool) -> list[dict]:
    ours = "neurodsl-triton"
    compile_loop = ["torch-compile-loop"] if (device.type == "cuda" or with_compile) else []
    items = [dict(name="copy_bandwidth", budget_s=2, about="device-to-device copy (roofline reference)"),
             dict(name="host_overhead", kind="lif", impls=[ours, "spikingjelly"], shapes=[OVERHEAD_SHAPE],
                  modes=("infer", "fwd", "fwdbwd"), budget_s=8, graphs=True,
                  about=f"per-call host time of a layer call on {list(OVERHEAD_SHAPE)} (synchronised), "
                        "next to CUDA-graph replay of the same call")]
    n0, ts = (512, (4, 8)) if tiny else (1_000_000, (8, 16, 32, 64, 128))
    items.append(dict(name="paper000", kind="paper000", impls=[ours, "spikingjelly", "torch-loop"],
                      shapes=[(t, n0) for t in ts], modes=("infer", "fwd", "bwd", "fwdbwd"), roofline=True,
                      budget_s=40, about=f"paper 000 LIF, N={n0}, T in {list(ts)}"))
    if compile_loop:  # compiles per T and grad mode (tens of seconds each): one T, fwd+bwd, its own time share
        items.append(dict(name="compiled_loop", kind="paper000", impls=[ours, "torch-loop", *compile_loop],
                          shapes=[(ts[0], n0)], modes=("fwdbwd",), budget_s=20,
                          about=f"paper 000 LIF, N={n0}, T={ts[0]}: the per-step loop under torch.compile"))
    b, n1, ts = (2, 256, (4,)) if tiny else (64, 65536, (64, 16))  # T=64 first: the headline case
    dtypes = (torch.float32,) if tiny else (torch.float32, torch.float16)
    items.append(dict(name="lif_sizes", kind="lif", impls=[ours, "spikingjelly", "torch-loop"],
                      shapes=[(t, b, n1) for t in ts], dtypes=dtypes, modes=("infer", "fwd", "bwd", "fwdbwd"),
                      roofline=True, budget_s=20, about=f"LIF on [T, {b}, {n1}], fp32 and fp16"))
    items.append(dict(name="plif_sizes", kind="plif", impls=[ours, "spikingjelly", "torch-loop"],
                      shapes=[(t, b, n1) for t in ts], dtypes=dtypes, modes=("fwd", "bwd", "fwdbwd"),
                      roofline=True, budget_s=15, about=f"PLIF on [T, {b}, {n1}], fp32 and fp16"))
    t2, b2, n2 = (6, 2, 64) if tiny else (500, 16, 16384)
    items.append(dict(name="network", kind="lif", impls=[ours, f"{ours}-compiled", "spikingjelly", "snntorch",
                                                         "norse", "torch-loop"],
                      shapes=[(t2, b2, n2)], modes=("fwd", "bwd", "fwdbwd"), network=n2, budget_s=25,
                      about=f"Linear({n2},{n2}) + LIF, batch {b2}, T={t2}"))
    n3, t3 = (512, 8) if tiny else (1_048_576, 64)
    for kind in ("alif", "izhikevich"):
        items.append(dict(name=f"custom_{kind}", kind=kind, impls=[ours, "sj-flexsn", "torch-loop"],
                          shapes=[(t3, n3)], modes=("fwd", "bwd", "fwdbwd"), roofline=True, budget_s=15,
                          about=f"custom neuron {kind}, T={t3}, N={n3}"))
    forms = ["neurodsl-triton-scan", "neurodsl-triton-matmul", "neurodsl-triton-auto"]
    # the targets first (few neurons, long T: chunked scan >= 5x and >= 10x the loop), then where the loop wins
    shapes = [(4, 8), (8, 8)] if tiny else [(4096, 4096), (16384, 1024), (1024, 65536), (256, 1_048_576),
                                            (64, 65536)]
    items.append(_parallel_forms(ours, forms, forms[:1], shapes, compiled_cases=1, budget_s=30))
    items.append(dict(name="codegen", kinds=("lif",) if tiny else ("lif", "izhikevich"), backends=("triton",),
                      reps=1, budget_s=15, about="codegen latency of the triton backend: cold / warm disk cache "
                      "(fresh processes), memo (the torch backend's is in the CPU suite)"))
    return items


def _parallel_forms(seq: str, forms: list[str], compiled: list[str], shapes: list, compiled_cases: int,
                    budget_s: float) -> dict:
    """Reset-free LIF: sequential vs scan vs matmul vs what parallel='auto' picks (same backend), eager;
    ``compiled`` forms also under torch.compile, at the first ``compiled_cases`` sizes."""
    return dict(name="parallel_forms", kind="lif_noreset", impls=[seq, *forms, *(f"{f}-compiled" for f in compiled)],
                shapes=shapes, modes=("fwdbwd",), compiled_cases=compiled_cases, budget_s=budget_s,
                about="reset-free LIF (learnable tau): sequential vs scan vs matmul vs parallel='auto', eager and "
                      f"under torch.compile(fullgraph=True) (compiled forms at the first {compiled_cases} size(s))")
