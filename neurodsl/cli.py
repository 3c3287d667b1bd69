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

from .errors import UsageError


def _enable_interpreter_without_cuda() -> None:
    import torch
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


def load_neuron(name: str) -> list:
    """Neuron classes named by ``name``: a zoo name (``ALIF``), a file (``path.py`` or ``path.py:Class``) or a
    module (``pkg.mod:Class``). Raises :class:`~neurodsl.errors.UsageError` (ND801-ND803) naming the problem."""
    path, _, cls_name = name.partition(":")
    if path.endswith(".py") or os.sep in path or Path(path).exists():
        return _load_file(Path(path), cls_name)
    if cls_name:
        return [_load_module_class(path, cls_name)]
    import neurodsl as nd
    for cls in nd.zoo.ALL:
        if cls.__name__.lower() == name.lower():
            return [cls]
    raise UsageError("ND803", f"no zoo neuron '{name}' (zoo: {', '.join(c.__name__ for c in nd.zoo.ALL)}; "
                              "or name FILE.py[:Class] or module:Class)")


def _is_neuron(obj) -> bool:
    from .neuron import Neuron
    return inspect.isclass(obj) and issubclass(obj, Neuron) and "charge" in obj._equations


def _load_module_class(module_name: str, cls_name: str):
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: modules in the current directory
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UsageError("ND802", f"cannot import module '{module_name}': {err}") from err
    cls = getattr(module, cls_name, None)
    if not _is_neuron(cls):
        what = "does not exist" if cls is None else "is no neuron class (nd.Neuron with charge and fire)"
        raise UsageError("ND803", f"{module_name}:{cls_name} {what}")
    return cls


def _load_file(path: Path, cls_name: str) -> list:
    if not path.exists():
        raise UsageError("ND801", f"no such file: {path}")
    if path.is_dir():
        raise UsageError("ND801", f"{path} is a directory; name a .py file in it (FILE.py[:Class])")
    if path.suffix != ".py":
        raise UsageError("ND801", f"{path} is not a Python file (.py)")
    module = _import_file(path)
    defined = [obj for obj in vars(module).values() if _is_neuron(obj) and obj.__module__ == module.__name__]
    found = [c for c in defined if c.__name__ == cls_name] if cls_name else defined
    if found:
        return found
    if cls_name and _is_neuron(getattr(module, cls_name, None)):
        return [getattr(module, cls_name)]  # imported into the file and named explicitly
    if cls_name:
        listed = ", ".join(c.__name__ for c in defined) or "none"
        raise UsageError("ND803", f"no neuron class '{cls_name}' in {path} (it defines: {listed})")
    imported = sorted({f"{c.__module__}:{c.__name__}" for c in vars(module).values() if _is_neuron(c)})
    hint = (f"; it only imports {', '.join(imported)}: name one as module:Class, e.g. {imported[0]}" if imported
            else "; define a subclass of nd.Neuron with charge and fire in it")
    raise UsageError("ND803", f"no neuron class defined in {path}{hint}")


def _import_file(path: Path):
    """Import a neuron file; its failures become one-line ND802 errors (spec errors stay SpecError)."""
    from .errors import NeuroDSLError
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # invalid neurons raise SpecError here, at class definition
    except NeuroDSLError:
        raise
    except SyntaxError as err:
        raise UsageError("ND802", f"{path}:{err.lineno}: SyntaxError: {err.msg}") from None
    except SystemExit as err:
        raise UsageError("ND802", f"{path} called sys.exit({err.code!r}) while being imported; put script code "
                                  "under `if __name__ == '__main__':`") from None
    except Exception as err:
        import traceback
        frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename) == path.resolve()
                  or Path(f.filename) == path]
        where = f"{path}:{frames[-1].lineno}" if frames else str(path)
        raise UsageError("ND802", f"{where}: importing it raised {type(err).__name__}: {err}") from None
    return module


def check_neuron(cls, backend: str, trials: int = 3, T: int = 8, shape=(4, 33), seed: int = 0) -> list:
    """``trials`` reference checks of ``cls`` on ``backend`` (:func:`neurodsl.testing.check_against_reference`):
    every parameter and the surrogate's alpha learnable, random initial states, inputs at a 5-50% firing rate."""
    from .testing import check_against_reference, initial_states, inputs_for, layer_for_check
    results = []
    for trial in range(trials):
        layer = layer_for_check(cls, backend=backend)
        init = initial_states(layer, shape, seed=seed + trial)
        xs = inputs_for(layer, T, shape, seed=seed + trial, init=init)
        results.append(check_against_reference(layer, *xs, init=init, seed=seed + trial))
    return results


def summarize(results) -> tuple[str, str]:
    """('OK' | 'MISMATCH' | 'NOT COMPARED', one line) for the results of :func:`check_neuron`."""
    def errors(kind):
        return max(r.max_error(kind) for r in results)
    rate = sum(r.rate for r in results) / max(1, len(results))
    text = (f"{len(results)} trials, {sum(r.neurons for r in results)} neurons x {results[0].steps} steps, "
            f"firing rate {rate:.2f}, {sum(r.flips for r in results)} near-threshold flips, "
            f"{sum(r.mismatches for r in results)} spike mismatches, "
            f"{sum(len(r.compared) for r in results)} tensors compared, max |state err| {errors('state:'):.1e}, "
            f"max |grad err| {errors('grad:'):.1e}")
    failures = [f for r in results for f in r.failures]
    if failures:
        return "MISMATCH", text + "; " + "; ".join(failures[:3])
    skipped = [r.skipped for r in results if r.skipped]
    if skipped:
        return "NOT COMPARED", f"[ND806] {len(skipped)} of {len(results)} trials compared nothing: {skipped[0]}"
    return "OK", text


def cmd_demo(args) -> int:
    import torch
    import neurodsl as nd
    from .dispatch import backends_on
    backends = list(backends_on("cpu"))
    print(f"neurodsl {nd.__version__} demo  (torch {torch.__version__}, "
          f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU, Triton interpreter'})\n")
    print(nd.zoo.ALIF.analysis())
    print("\nGenerated kernels vs the naive reference loop (fwd + bwd; every param, alpha and initial state learnable; "
          "inputs firing 5-50%):")
    print(f"  {'neuron':<12} {'backend':<8} {'spike mismatches':>17} {'flips':>6} {'max |state err|':>16} "
          f"{'max |grad err|':>15} {'compile+run':>12}")
    failures = 0
    for cls in nd.zoo.ALL:
        for backend in backends:
            t0 = time.perf_counter()
            (r,) = check_neuron(cls, backend, trials=1, T=6, shape=(2, 40))
            failures += not r.ok
            print(f"  {cls.__name__:<12} {backend:<8} {r.mismatches:>17} {r.flips:>6} {r.max_error('state:'):>16.2e} "
                  f"{r.max_error('grad:'):>15.2e} "
                  f"{time.perf_counter() - t0:>11.2f}s{'' if r.ok else '  ' + summarize([r])[0]}")
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
        from .dispatch import backends_on
        for backend in backends_on("cpu"):
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
    _require_positive(trials=args.trials)
    failures = 0
    for cls in load_neuron(args.target):
        from .dispatch import backends_on
        for backend in args.backend or backends_on("cpu"):
            verdict, text = summarize(check_neuron(cls, backend, trials=args.trials))
            failures += verdict != "OK"
            print(f"{cls.__name__} [{backend}] {verdict}: {text}")
    return 1 if failures else 0


def _require_positive(**counts) -> None:
    for name, value in counts.items():
        if value < 1:
            raise UsageError("ND804", f"--{name} {value}: must be at least 1")


def cmd_plot(args) -> int:
    _require_positive(neurons=args.neurons, steps=args.steps)
    cls = load_neuron(args.target)[0]
    out = Path(args.out or f"{cls.__name__}.png")
    if args.out and args.out.endswith(("/", os.sep)) and not out.is_dir():
        raise UsageError("ND805", f"--out {args.out}: directory {out.resolve()} does not exist")
    if out.is_dir():
        out = out / f"{cls.__name__}.png"
    if not out.resolve().parent.is_dir():
        raise UsageError("ND805", f"--out {args.out}: directory {out.resolve().parent} does not exist")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit("neurodsl plot needs matplotlib: pip install -e '.[examples]' -c constraints.txt") from None
    from .plot import plot_step_response
    kwargs = {k: v for k, v in getattr(cls, "check_kwargs", {}).items() if k in cls._params_decl}
    plot_step_response(cls, str(out), steps=args.steps, amplitude=args.amplitude, neurons=args.neurons, **kwargs)
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


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (and exit code 2), like every other CLI failure."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _backend_names() -> tuple[str, ...]:
    from .dispatch import backend_names
    return backend_names()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="neurodsl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("demo", help="compile built-in neurons, check them against the reference, train a tiny SNN")
    p = sub.add_parser("compile", help="analyse a neuron file and generate its kernels")
    p.add_argument("target", help="FILE.py or FILE.py:Class (or a zoo name)")
    p = sub.add_parser("show", help="print a generated kernel")
    p.add_argument("target", help="zoo name (e.g. ALIF) or FILE.py:Class")
    p.add_argument("--kernel", choices=("forward", "backward", "all"), default="forward")
    p.add_argument("--backend", choices=_backend_names(), default="triton")
    p = sub.add_parser("check", help="randomised equivalence check against the reference loop")
    p.add_argument("target")
    p.add_argument("--backend", nargs="+", choices=_backend_names(), default=None,
                   help="backends to check (default: every one that runs here)")
    p.add_argument("--trials", type=int, default=3, help="random draws per backend (at least 1)")
    p = sub.add_parser("plot", help="PNG of a neuron's states and spikes for a step input (needs matplotlib)")
    p.add_argument("target", help="zoo name (e.g. LIF), FILE.py[:Class] or module:Class")
    p.add_argument("--out", help="PNG path, or a directory for NAME.png (default NAME.png)")
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
