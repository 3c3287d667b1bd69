"""Recompute or save: does the backward pay for re-running the forward instead of reading saved charged values?

Two schemes for training LIF (1 state) and ALIF (2 states), hard reset, ATan surrogate, learnable ``tau``, fp32:

- ``save``: neurodsl's generated C kernels as they are. The forward writes spikes and the charged values H of the
  saved states; the backward reads H[t] (and H[t-1] for v[t-1]), dL/dS and x, and writes dL/dx.
- ``recompute C=c``: the forward writes what inference writes (spikes) plus the states every c steps; the backward
  re-runs the forward over each segment of c steps from its checkpoint into a per-thread buffer of c x states x 256
  charged values, then sweeps the segment in reverse. ``C=T`` keeps only the initial state.

Both run the same generated step functions (recompute.c is appended to the generated source and compiled with
neurodsl's toolchain and flags), so the gradients must be bit-identical; they are also checked against the
module's autograd (``nd.zoo.LIF(backend='c', learnable=('tau',))``). Times are fwd+bwd per call, the schemes
interleaved round by round, min and median of ``--rounds``. The byte counts are the DRAM traffic each scheme needs
(fp32, per neuron and time step); the GPU column is a prediction from them at 4.2 TB/s, not a measurement.

Run from the repository root of commit 66de129 (the last whose C backend saves H; later ones recompute, and this
script then stops with that message): ``python benchmarks/experiments/recompute.py [--rounds 7] [--quick]``.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root, when run as a script

import torch  # noqa: E402

import neurodsl as nd  # noqa: E402
from kernels_gen.backends.c import toolchain  # noqa: E402

NEURONS = {"LIF": (nd.zoo.LIF, "EX_LIF"), "ALIF": (nd.zoo.ALIF, "EX_ALIF")}
SHAPES = ((64, 65536), (256, 16384))          # 16 MiB per [T, N] array: DRAM-resident
CACHE_SHAPES = ((64, 4096),)                   # 1 MiB per array: L3-resident, shows the extra compute
GPU_BANDWIDTH = 4.2e12  # H200 HBM3e, bytes/s (nominal 4.8; ~4.2 is what a copy reaches)


class Neuron:
    """One neuron's generated C kernels plus the recompute kernels, built into one library."""

    def __init__(self, name: str, build_dir: Path):
        cls, define = NEURONS[name]
        self.name = name
        self.module = cls(backend="c", learnable=("tau",))
        ns: dict = {}
        exec(self.module.kernel_source("all", backend="c"), ns)  # the generated module: META and C_SOURCE
        self.meta = ns["META"]
        if not self.meta["saved_states"]:
            sys.exit("recompute.py compares the C backend's former save scheme with recompute; the C backend now "
                     "recomputes (it saves no charged values), so run this experiment from commit 66de129: "
                     "git worktree add /tmp/nd-save 66de129 && cd /tmp/nd-save && python "
                     "benchmarks/experiments/recompute.py")
        self.states = len(self.meta["states"])
        source = ns["C_SOURCE"] + f"\n#define {define}\n" + (HERE / "recompute.c").read_text()
        chain = toolchain.toolchain()
        if isinstance(chain, Exception):
            raise chain
        self.flags = " ".join(chain.flags)
        path = build_dir / f"recompute_{name}.so"
        chain.compile(source, path)
        self.lib = ctypes.CDLL(str(path))
        values = {"_alpha": self.module.surrogate_alpha}
        self.params = torch.stack([values.get(p[0], getattr(self.module, p[0], None)).detach().float().reshape(())
                                   for p in self.meta["params"]])
        i64, i32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
        s = self.states
        self.lib.forward_kernel.argtypes = [ptr] * (1 + s + len(self.params) + 1 + s + s) + [i64, i64, i32, i32, i32]
        self.lib.backward_kernel.argtypes = [ptr] * (1 + s + s + 1 + 1 + len(self.params) + 1 + s + 1) + [i64, i64,
                                                                                                        i32, i32]
        self.lib.ex_forward_kernel.argtypes = [ptr] * 6 + [i64, i64, i64, i32]
        self.lib.ex_backward_kernel.argtypes = [ptr] * 8 + [i64, i64, i64, i32]
        self.lib.ex_backward_kernel.restype = ctypes.c_int

    # -- the two schemes, on preallocated buffers ---------------------------------------------------------
    def buffers(self, T: int, N: int, C: int | None, seed: int = 0) -> dict:
        g = torch.Generator().manual_seed(seed)
        s = self.states
        b = {"x": torch.randn(T, N, generator=g) * 1.5 + 0.6, "gspike": torch.randn(T, N, generator=g),
             "init": torch.zeros(s, N), "spike": torch.empty(T, N), "fin": torch.empty(s, N),
             "gx": torch.empty(T, N), "ginit": torch.empty(s, N), "acc": torch.empty(N), "gout": torch.zeros(s, N)}
        if C is None:
            b["saved"] = torch.empty(s, T, N)
        else:
            b["ckpt"] = torch.empty((T + C - 1) // C, s, N)
        return b

    def _p(self, k: int) -> int:
        return self.params.data_ptr() + 4 * k

    def save_forward(self, b: dict, threads: int, save: bool = True) -> None:
        T, N = b["x"].shape
        s, saved = self.states, b.get("saved")
        self.lib.forward_kernel(b["x"].data_ptr(), *[b["init"][i].data_ptr() for i in range(s)],
                                *[self._p(k) for k in range(len(self.params))], b["spike"].data_ptr(),
                                *[b["fin"][i].data_ptr() for i in range(s)],
                                *[saved[i].data_ptr() if save else b["gx"].data_ptr() for i in range(s)],
                                T, N, 0, int(save), threads)

    def save_backward(self, b: dict, threads: int) -> None:
        T, N = b["x"].shape
        s = self.states
        self.lib.backward_kernel(b["gspike"].data_ptr(), *[b["gout"][i].data_ptr() for i in range(s)],
                                 *[b["saved"][i].data_ptr() for i in range(s)], b["x"].data_ptr(),
                                 b["init"][0].data_ptr(), *[self._p(k) for k in range(len(self.params))],
                                 b["gx"].data_ptr(), *[b["ginit"][i].data_ptr() for i in range(s)],
                                 b["acc"].data_ptr(), T, N, 0, threads)

    def recompute_forward(self, b: dict, C: int, threads: int) -> None:
        T, N = b["x"].shape
        self.lib.ex_forward_kernel(b["x"].data_ptr(), b["init"].data_ptr(), self.params.data_ptr(),
                                   b["spike"].data_ptr(), b["fin"].data_ptr(), b["ckpt"].data_ptr(), T, N, C, threads)

    def recompute_backward(self, b: dict, C: int, threads: int) -> None:
        T, N = b["x"].shape
        if self.lib.ex_backward_kernel(b["gspike"].data_ptr(), b["x"].data_ptr(), b["init"].data_ptr(),
                                       b["ckpt"].data_ptr(), self.params.data_ptr(), b["gx"].data_ptr(),
                                       b["ginit"].data_ptr(), b["acc"].data_ptr(), T, N, C, threads):
            raise MemoryError("recompute backward: no segment buffer")

    def run(self, scheme: str, b: dict, threads: int, repeat: int = 1) -> tuple[float, float]:
        """Seconds per call of ``scheme`` ('save' or 'C=<int>'), each pass ``repeat`` times in a row: forward and
        backward wall time, then the same as CPU time of the calling thread (with one thread the kernels run on it,
        so this leaves out the time other jobs on a shared machine hold the core)."""
        if scheme == "save":
            fwd, bwd = (lambda: self.save_forward(b, threads)), (lambda: self.save_backward(b, threads))
        else:
            C = int(scheme[2:])
            fwd = lambda: self.recompute_forward(b, C, threads)  # noqa: E731
            bwd = lambda: self.recompute_backward(b, C, threads)  # noqa: E731
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(repeat):
            fwd()
        t1, c1 = time.perf_counter(), time.thread_time()
        for _ in range(repeat):
            bwd()
        t2, c2 = time.perf_counter(), time.thread_time()
        return (t1 - t0) / repeat, (t2 - t1) / repeat, (c1 - c0) / repeat, (c2 - c1) / repeat

    # -- checks ----------------------------------------------------------------------------------------------
    def autograd(self, x: torch.Tensor, gspike: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Spikes, dL/dx and dL/dtau of the nn.Module (C backend, autograd) for L = sum(S * gspike)."""
        self.module.zero_grad()
        if hasattr(self.module, "reset"):
            self.module.reset()
        xr = x.clone().requires_grad_(True)
        out = self.module(xr)
        (out * gspike).sum().backward()
        return out.detach(), xr.grad, self.module.tau.grad.clone()

    def check(self, T: int, N: int, Cs: list[int], threads: int) -> dict:
        """Bitwise comparison of every recompute variant with the save scheme, and of the save scheme with the
        module's autograd (dL/dtau there is the kernels' per-neuron partials summed by torch)."""
        ref = self.buffers(T, N, None)
        self.run("save", ref, threads)
        spikes, gx, gtau = self.autograd(ref["x"], ref["gspike"])
        result = {"T": T, "N": N, "spike_rate": float(ref["spike"].mean()),
                  "module_spikes_equal": bool(torch.equal(spikes, ref["spike"])),
                  "module_gx_equal": bool(torch.equal(gx, ref["gx"])),
                  "module_gtau_rel_diff": float((gtau - ref["acc"].sum()).abs() / gtau.abs().clamp_min(1e-30))}
        for C in Cs:
            b = self.buffers(T, N, C)
            self.run(f"C={C}", b, threads)
            result[f"C={C}_bitwise_equal"] = all(torch.equal(b[k], ref[k])
                                                 for k in ("spike", "fin", "gx", "ginit", "acc"))
        return result


def bytes_per_neuron_step(states: int, x_needed: bool, C: int | None, T: int) -> dict:
    """DRAM bytes per neuron-step (fp32): forward, backward (per-neuron values loaded once are left out, except
    checkpoints, which are (ceil(T/C) - 1) x states per neuron, written once and read once)."""
    if C is None:
        fwd = 4 + 4 + 4 * states                        # x, spike, H
        bwd = 4 + 4 * states + 4 * x_needed + 4         # dL/dS, H, x (if the gradient needs it), dL/dx
    else:
        ck = 4 * states * ((T + C - 1) // C - 1) / T
        fwd = 4 + 4 + ck                                # x, spike, checkpoints
        bwd = 4 + 4 + 4 + ck                            # dL/dS, x (recompute; the sweep re-reads it from cache), dL/dx
    return {"forward": fwd, "backward": bwd, "total": fwd + bwd}


def copy_bandwidth(threads: int, n: int = 1 << 24) -> float:
    """Bytes/s of a 64 MiB fp32 copy (read + write), best of 5: the CPU's streaming ceiling."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n), torch.empty(n)
    best = float("inf")
    for _ in range(6):
        t0 = time.perf_counter()
        b.copy_(a)
        best = min(best, time.perf_counter() - t0)
    return 2 * 4 * n / best


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown")
    return {"cpu": cpu, "cores": os.cpu_count(), "uptime": subprocess.run(["uptime"], capture_output=True,
                                                                            text=True).stdout.strip(),
            "torch": torch.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--segments", type=int, nargs="+", default=[16, 64], help="checkpoint intervals C (and T)")
    ap.add_argument("--quick", action="store_true", help="one small shape, 3 rounds (a smoke run)")
    ap.add_argument("--json", type=Path, default=HERE / "recompute_results.json")
    args = ap.parse_args()
    shapes = ((32, 4096),) if args.quick else SHAPES + CACHE_SHAPES
    rounds = 3 if args.quick else args.rounds
    info = {"machine_before": machine(), "rounds": rounds, "checks": [], "timings": [], "bytes": []}
    print(f"# {info['machine_before']['cpu']}, {info['machine_before']['cores']} cores; "
          f"{info['machine_before']['uptime']}")
    info["copy_GBps"] = {t: copy_bandwidth(t) / 1e9 for t in args.threads}
    print("# copy bandwidth (64 MiB fp32, read+write): "
          + ", ".join(f"{t} thread(s) {v:.1f} GB/s" for t, v in info["copy_GBps"].items()))
    with tempfile.TemporaryDirectory(prefix="neurodsl-recompute-") as tmp:
        neurons = [Neuron(name, Path(tmp)) for name in NEURONS]
        info["flags"] = neurons[0].flags
        for neuron in neurons:  # the save scheme's byte count is the analysis report's
            report = neuron.module.analysis().bytes_per_neuron_step()
            mine = bytes_per_neuron_step(neuron.states, True, None, 64)
            assert [report[k] for k in mine] == list(mine.values()), (neuron.name, report, mine)
        for neuron in neurons:
            for T, N in ((37, 1000), *(s for s in shapes if s not in CACHE_SHAPES)):
                r = neuron.check(T, N, sorted({*args.segments, T, 5}), max(args.threads))
                info["checks"].append({"neuron": neuron.name, **r})
                print(f"# check {neuron.name} T={T} N={N}: {r}")
                if not (r["module_spikes_equal"] and r["module_gx_equal"] and r["module_gtau_rel_diff"] < 1e-5
                        and all(v for k, v in r.items() if k.endswith("bitwise_equal"))):
                    raise SystemExit(f"gradients differ: {neuron.name} {r}")
        print("\n| neuron | T x N | threads | scheme | fwd min / med ms | bwd min / med ms | fwd+bwd min / med ms "
              "| fwd+bwd CPU min / med ms | B/neuron-step | CPU GB/s at min | GPU prediction us |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for neuron in neurons:
            for T, N in shapes:
                schemes = ["save"] + [f"C={c}" for c in sorted({*args.segments, T}) if c <= T]
                bufs = {s: neuron.buffers(T, N, None if s == "save" else int(s[2:])) for s in schemes}
                repeat = max(1, (1 << 21) // (T * N))  # small shapes: several calls per sample
                for threads in args.threads:
                    times = {s: [] for s in schemes}
                    for s in schemes:
                        neuron.run(s, bufs[s], threads)  # warm-up: pages touched, code loaded
                    for r in range(rounds):
                        for s in schemes[r % len(schemes):] + schemes[:r % len(schemes)]:  # rotate the order
                            times[s].append(neuron.run(s, bufs[s], threads, repeat))
                    for s in schemes:
                        f = [r[0] for r in times[s]]
                        bw = [r[1] for r in times[s]]
                        tot = [r[0] + r[1] for r in times[s]]
                        cpu = [r[2] + r[3] for r in times[s]] if threads == 1 else [float("nan")]
                        by = bytes_per_neuron_step(neuron.states, True, None if s == "save" else int(s[2:]), T)
                        row = {"neuron": neuron.name, "T": T, "N": N, "threads": threads, "scheme": s,
                               "load": os.getloadavg()[0],
                               "fwd_ms": [1e3 * min(f), 1e3 * statistics.median(f)],
                               "bwd_ms": [1e3 * min(bw), 1e3 * statistics.median(bw)],
                               "total_ms": [1e3 * min(tot), 1e3 * statistics.median(tot)],
                               "total_cpu_ms": [1e3 * min(cpu), 1e3 * statistics.median(cpu)],
                               "fwd_cpu_ms_median": 1e3 * statistics.median(r[2] for r in times[s]),
                               "bwd_cpu_ms_median": 1e3 * statistics.median(r[3] for r in times[s]),
                               "bytes": by, "cpu_GBps": by["total"] * T * N / min(tot) / 1e9,
                               "gpu_us_predicted": by["total"] * T * N / GPU_BANDWIDTH * 1e6}
                        info["timings"].append(row)
                        print(f"| {neuron.name} | {T} x {N} | {threads} | {s} | "
                              f"{row['fwd_ms'][0]:.1f} / {row['fwd_ms'][1]:.1f} | "
                              f"{row['bwd_ms'][0]:.1f} / {row['bwd_ms'][1]:.1f} | "
                              f"{row['total_ms'][0]:.1f} / {row['total_ms'][1]:.1f} | "
                              f"{row['total_cpu_ms'][0]:.1f} / {row['total_cpu_ms'][1]:.1f} | {by['total']:.2f} | "
                              f"{row['cpu_GBps']:.1f} | {row['gpu_us_predicted']:.1f} |")
    print("\n| neuron | dL/dx only or + dL/dtau | save fwd / bwd / total | recompute C=16, T=64 | recompute C=T "
          "| GPU us per 2^22 neuron-steps at 4.2 TB/s (prediction): save -> C=T |")
    print("|---|---|---|---|---|---|")
    for name, states in (("LIF", 1), ("ALIF", 2)):
        for x_needed in (False, True):
            by = [bytes_per_neuron_step(states, x_needed, C, 64) for C in (None, 16, 64)]
            info["bytes"].append({"neuron": name, "x_needed": x_needed, "save": by[0], "C=16": by[1], "C=T": by[2]})
            us = [b["total"] * (1 << 22) / GPU_BANDWIDTH * 1e6 for b in (by[0], by[2])]
            print(f"| {name} | {'+ dL/dtau' if x_needed else 'dL/dx only'} | "
                  + " | ".join(f"{b['forward']:g} / {b['backward']:g} / {b['total']:g}" for b in by)
                  + f" | {us[0]:.1f} -> {us[1]:.1f} |")
    info["machine_after"] = machine()
    print(f"\n# after: {info['machine_after']['uptime']}")
    if not args.quick:
        args.json.write_text(json.dumps(info, indent=1))
        print(f"# results: {args.json}")


if __name__ == "__main__":
    main()
