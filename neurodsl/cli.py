"""The ``neurodsl`` command line: demo, compile, show, check, plot, cache.

Run ``neurodsl --help``. On a machine without CUDA the CLI enables the Triton
interpreter (``TRITON_INTERPRET=1``) so the Triton kernels run on the CPU too.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import os
import sys
import time
from pathlib import Path


def _enable_interpreter_without_cuda() -> None:
    import torch
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


def load_neuron(name: str):
    """A zoo class by name (``ALIF``), from a file (``path.py`` or ``path.py:Class``) or a module (``pkg.mod:Class``)."""
    import neurodsl as nd
    if ".py" not in name and ":" in name:
        module_name, _, cls_name = name.partition(":")
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # as `python -m` does: modules in the current directory
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except (ImportError, AttributeError) as err:
            raise SystemExit(f"neurodsl: cannot load {name}: {err}") from err
        if not (inspect.isclass(cls) and issubclass(cls, nd.Neuron)):
            raise SystemExit(f"neurodsl: {name} is not a neurodsl Neuron class")
        return [cls]
    if ".py" not in name:
        for cls in nd.zoo.ALL:
            if cls.__name__.lower() == name.lower():
                return [cls]
        raise SystemExit(f"neurodsl: no zoo neuron '{name}' (zoo: {', '.join(c.__name__ for c in nd.zoo.ALL)})")
    path, _, cls_name = name.partition(":")
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    if spec is None:
        raise SystemExit(f"neurodsl: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # invalid neurons raise SpecError here, at class definition
    found = [obj for obj in vars(module).values() if inspect.isclass(obj) and issubclass(obj, nd.Neuron)
             and obj.__module__ == module.__name__ and "charge" in obj._equations]
    if cls_name:
        found = [c for c in found if c.__name__ == cls_name]
    if not found:
        raise SystemExit(f"neurodsl: no neuron class {cls_name or ''} in {path}")
    return found


def _default_kwargs(cls) -> dict:
    """Parameter values that make a neuron's every term matter in checks (nonzero a, b for Izhikevich)."""
    return {k: v for k, v in {"a": 0.5, "b": 0.2}.items() if k in cls._params_decl and cls._params_decl[k].default == 0}


def check_neuron(cls, backend: str, trials: int = 3, T: int = 8, shape=(4, 33), seed: int = 0) -> dict:
    """Randomised equivalence check of ``cls``'s kernels against the reference loop; returns max errors."""
    import torch
    import neurodsl as nd
    gen = torch.Generator().manual_seed(seed)
    worst = {"spike_mismatches": 0, "state_err": 0.0, "grad_err": 0.0}
    for _ in range(trials):
        params = tuple(cls._params_decl)
        layer = cls(backend=backend, learnable=params, **_default_kwargs(cls))
        xs = [torch.randn(T, *shape, generator=gen) * 0.8 + 0.6 for _ in layer.spec.inputs]
        xa = [x.clone().requires_grad_() for x in xs]
        xb = [x.clone().requires_grad_() for x in xs]
        spikes = layer(*xa)
        finals = [layer.state_value(s) for s in layer.spec.states]
        w = torch.randn(spikes.shape, generator=gen)
        grads = torch.autograd.grad((spikes * w).sum() + sum(f.sum() for f in finals), [*xa, *layer.parameters()])
        ref_spikes, seqs = nd.reference_run(layer, *xb)
        ref_loss = (ref_spikes * w).sum() + sum(seqs[s][-1].sum() for s in layer.spec.states)
        ref_grads = torch.autograd.grad(ref_loss, [*xb, *layer.parameters()])
        worst["spike_mismatches"] += int((spikes != ref_spikes).sum())
        worst["state_err"] = max(worst["state_err"], max(float((f - seqs[s][-1]).detach().abs().max())
                                                         for f, s in zip(finals, layer.spec.states)))
        worst["grad_err"] = max(worst["grad_err"], max(float((a - b).detach().abs().max()) for a, b in zip(grads, ref_grads)))
    return worst


def cmd_demo(args) -> int:
    import torch
    import neurodsl as nd
    backends = ["torch", "triton"]
    print(f"neurodsl {nd.__version__} demo  (torch {torch.__version__}, "
          f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU, Triton interpreter'})\n")
    print(nd.zoo.ALIF.analysis())
    print("\nGenerated kernels vs the naive reference loop (fwd + bwd, random inputs, all params learnable):")
    print(f"  {'neuron':<12} {'backend':<8} {'spike mismatches':>17} {'max |state err|':>16} {'max |grad err|':>15} "
          f"{'compile+run':>12}")
    failures = 0
    for cls in nd.zoo.ALL:
        for backend in backends:
            t0 = time.perf_counter()
            r = check_neuron(cls, backend, trials=1, T=6, shape=(2, 40))
            ok = r["spike_mismatches"] == 0 and r["state_err"] < 1e-4 and r["grad_err"] < 1e-3
            failures += not ok
            print(f"  {cls.__name__:<12} {backend:<8} {r['spike_mismatches']:>17} {r['state_err']:>16.2e} "
                  f"{r['grad_err']:>15.2e} {time.perf_counter() - t0:>11.2f}s{'' if ok else '  MISMATCH'}")
    print("\nTraining a small SNN (Linear -> LIF -> Linear -> ALIF, rate readout) on a synthetic 2-class task:")
    acc = _train_demo()
    print(f"  final training accuracy: {acc:.2f}")
    print("\nAll kernels match the reference." if not failures else f"\n{failures} kernel checks FAILED.")
    return 1 if failures else 0


def _train_demo(steps: int = 30) -> float:
    import torch
    from torch import nn
    import neurodsl as nd
    torch.manual_seed(0)
    T, batch, features = 8, 64, 16
    centers = torch.randn(2, features)
    labels = torch.randint(0, 2, (batch,))
    data = centers[labels] + 0.5 * torch.randn(batch, features)
    net = nn.Sequential(nn.Linear(features, 32), nd.zoo.LIF(), nn.Linear(32, 2),
                        nd.zoo.ALIF(learnable=("tau", "beta")))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for step in range(steps):
        nd.reset_states(net)
        rates = net(data.expand(T, batch, features)).mean(0)
        loss = nn.functional.cross_entropy(rates * 5, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == steps - 1:
            acc = (rates.argmax(1) == labels).float().mean().item()
            print(f"  step {step:>3}  loss {loss.item():.4f}  accuracy {acc:.2f}")
    return acc


def cmd_compile(args) -> int:
    for cls in load_neuron(args.target):
        layer = cls()
        print(cls.analysis())
        for backend in ("torch", "triton"):
            from .compiler import compile_spec
            compiled = compile_spec(layer.spec, layer.kernel_options())
            t0 = time.perf_counter()
            compiled.module(backend)
            print(f"\n{backend}: key {compiled.key}  ({time.perf_counter() - t0:.3f}s)  "
                  f"{_entry(compiled.name, compiled.key, backend)}")
        _print_forms(layer)
    return 0


def _print_forms(layer) -> None:
    """The parallel form parallel='auto' picks at a few sequence lengths, and the parallel module."""
    from .analysis import classify_as_written
    from .compiler import compile_parallel
    verdict = classify_as_written(layer.spec)
    print(f"\nparallel forms: {verdict.explain()}")
    uniform = not any(layer.param_value(p).numel() > 1 for p in layer.spec.params)
    for n in (256, 4096, 65536):
        picks = ", ".join(f"T={T}: {layer.choose_form(T, n, uniform)}" for T in (8, 64, 1024, 4096))
        print(f"  parallel='auto' with N={n}: {picks}")
    if verdict.exact:
        solver = compile_parallel(layer.spec, layer.kernel_options())
        solver.module()
        print(f"  parallel module: {_entry(solver.name, solver.key, 'parallel')}")


def _entry(name, key, backend):
    from kernels_gen import cache
    return cache.entry_path(name, key, backend)


def cmd_show(args) -> int:
    cls = load_neuron(args.target)[0]
    print(cls().kernel_source(args.kernel, backend=args.backend))
    return 0


def cmd_check(args) -> int:
    failures = 0
    for cls in load_neuron(args.target):
        for backend in args.backend:
            r = check_neuron(cls, backend, trials=args.trials)
            ok = r["spike_mismatches"] == 0 and r["state_err"] < 1e-4 and r["grad_err"] < 1e-3
            failures += not ok
            print(f"{cls.__name__} [{backend}] {'OK' if ok else 'MISMATCH'}: {r}")
    return 1 if failures else 0


def cmd_plot(args) -> int:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit("neurodsl plot needs matplotlib: pip install -e '.[examples]' -c constraints.txt") from None
    from .plot import plot_step_response
    cls = load_neuron(args.target)[0]
    out = args.out or f"{cls.__name__}.png"
    plot_step_response(cls, out, steps=args.steps, amplitude=args.amplitude, neurons=args.neurons,
                       **_default_kwargs(cls))
    print(f"wrote {out}: {cls.__name__}, {args.neurons} neurons, {args.steps} steps, step input up to "
          f"{args.amplitude:g}")
    return 0


def cmd_cache(args) -> int:
    from kernels_gen import cache
    if args.action == "clear":
        print(f"removed {cache.clear()} entries from {cache.cache_dir()}")
    else:
        entries = cache.list_entries()
        print(f"{cache.cache_dir()}: {len(entries)} entries")
        for path in entries:
            print(f"  {path.name}  {path.stat().st_size} B")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neurodsl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="compile built-in neurons, check them against the reference, train a tiny SNN")
    p = sub.add_parser("compile", help="analyse a neuron file and generate its kernels")
    p.add_argument("target", help="FILE.py or FILE.py:Class (or a zoo name)")
    p = sub.add_parser("show", help="print a generated kernel")
    p.add_argument("target", help="zoo name (e.g. ALIF) or FILE.py:Class")
    p.add_argument("--kernel", choices=("forward", "backward", "all"), default="forward")
    p.add_argument("--backend", choices=("torch", "triton"), default="triton")
    p = sub.add_parser("check", help="randomised equivalence check against the reference loop")
    p.add_argument("target")
    p.add_argument("--backend", nargs="+", choices=("torch", "triton"), default=["torch", "triton"])
    p.add_argument("--trials", type=int, default=3)
    p = sub.add_parser("plot", help="PNG of a neuron's states and spikes for a step input (needs matplotlib)")
    p.add_argument("target", help="zoo name (e.g. LIF), FILE.py[:Class] or module:Class")
    p.add_argument("--out", help="PNG path (default NAME.png)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--amplitude", type=float, default=2.0, help="largest step height; neuron i gets (i+1)/n of it")
    p.add_argument("--neurons", type=int, default=4)
    p = sub.add_parser("cache", help="list or clear cached kernel sources")
    p.add_argument("action", choices=("list", "clear"))
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _enable_interpreter_without_cuda()
    from .errors import NeuroDSLError
    handlers = {"demo": cmd_demo, "compile": cmd_compile, "show": cmd_show, "check": cmd_check, "plot": cmd_plot,
                "cache": cmd_cache}
    try:
        return handlers[args.command](args)
    except NeuroDSLError as err:
        print(f"neurodsl: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
