"""The dispatcher: which backend, kernels and form run a layer call — decided once, then reused.

Every way of running a neuron (``Neuron.forward`` eager or under ``torch.compile``, ``TimeSplit``, benchmarks)
asks :func:`kernels_for` and :func:`form_for`, and runs the result with :func:`run`:

* :func:`kernels_for` — backend (``backend='auto'``: the available one with the highest priority for the device,
  :mod:`kernels_gen.backends`), the generated kernels (registered by key so torch ops reach them) and the
  parallel solver when the neuron has a linear form. Depends on (spec, kernel options, dtype, device type,
  compiling): memoised per layer, and a trace-time constant under ``torch.compile``.
* :func:`form_for` — 'sequential', 'scan', 'matmul' or 'exact-scan' / 'exact-matmul' for T steps of n neurons
  (the ``parallel='auto'`` rule, documented in docs/parallel.md).
* :func:`run` — executes the route: the fused sequential op, a parallel solver, or the exact fixed-point mode
  with its fallback to the sequential kernels.

>>> import torch, neurodsl as nd
>>> layer = nd.zoo.LIFNoReset(backend="torch")
>>> _ = layer(torch.rand(64, 3))
>>> layer.last_route.form, layer.last_route.kernels.backend
('scan', 'torch')
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from kernels_gen import backends
from kernels_gen.ops import compute_dtype, has_tangent, neuron_op, register, registered
from kernels_gen.parallel import register as register_solver, registered as registered_solver

from .analysis import KernelOptions
from .compiler import compile_parallel, compile_spec
from .errors import InputError

@dataclass(frozen=True)
class AutoRule:
    """When ``parallel='auto'`` runs a parallel form, for one (device type, backend of the sequential kernel).

    Parallel when some ``(min_T, max_T, max_n)`` of ``rows`` has min_T <= T <= max_T (None: no bound) and
    n_eff <= max_n, where
    n_eff = n · k^k_power · itemsize / 4 (k states, compute dtype): a parallel form's cost grows with the
    bytes (and, in torch, the k×k products) per neuron-step, the sequential kernel's is a chain of T dependent
    steps. Then matmul while A is uniform, T <= ``matmul_max_T`` and k >= ``matmul_min_k``, else scan.
    ``measured``: the rows come from measurements (docs/parallel.md has them), not from a roofline estimate.
    """

    rows: tuple[tuple[int, int | None, int], ...]
    matmul_max_T: int
    k_power: int
    measured: bool
    matmul_min_k: int = 1


#: parallel='auto' per (device type, backend); docs/parallel.md has the measurements behind each row.
AUTO_RULES = {
    # 2-core CPU, one thread, reset-free LIF / CubaLIF fwd+bwd, fp32 and fp64: the torch loop pays ~0.1 ms of op
    # overhead per step; with one state the torch scans beat the GEMMs or tie, with two the GEMMs win up to T = 256
    ("cpu", "torch"): AutoRule(rows=((16, None, 2048), (128, 1024, 4096)), matmul_max_T=256, k_power=2,
                               measured=True, matmul_min_k=2),
    # the C kernel's loop beats every torch parallel form at every measured shape (T 16..4096, N 16..4096)
    ("cpu", "c"): AutoRule(rows=(), matmul_max_T=0, k_power=1, measured=True),
    # the Triton interpreter (tests, machines without a GPU): as the torch backend
    ("cpu", "triton"): AutoRule(rows=((16, None, 2048), (128, 1024, 4096)), matmul_max_T=256, k_power=2,
                                measured=False, matmul_min_k=2),
    # PROVISIONAL until measured on a GPU (H200 figures and roofline, docs/parallel.md): the sequential kernel
    # walks T dependent steps (~1.4 us per step fwd+bwd at N <= 65536), the chunked scan costs ~0.2 ms plus ~20
    # passes over [T, N] (~38 ps per neuron-step at 4.2 TB/s)
    ("cuda", "triton"): AutoRule(rows=((128, None, 4096), (256, None, 16384), (1024, None, 32768)), matmul_max_T=0,
                                 k_power=1, measured=False),
    # PROVISIONAL: the torch backend's loop launches kernels per step on a GPU; a parallel form wins from a few steps
    ("cuda", "torch"): AutoRule(rows=((8, None, 1 << 40),), matmul_max_T=0, k_power=1, measured=False),
}


@dataclass(frozen=True)
class Kernels:
    """What runs a layer for one (spec, options, dtype, device type, compiling): chosen once, then reused."""

    backend: str
    key: str                      # the registered sequential kernels (kernels_gen.ops.registered)
    options: KernelOptions
    solver_key: str | None        # the registered parallel solver, when the neuron has a linear form
    uniform: bool                 # one A for every step and neuron (the matmul form applies)
    reset_free: bool              # no spike-driven update: the parallel forms are the whole neuron
    exact_mode: bool              # spike-driven, and the exact fixed-point mode can run here
    device_type: str = "cpu"      # where the tensors are (parallel='auto' decides per device)


@dataclass(frozen=True)
class Route:
    """The kernels and the form of one call."""

    kernels: Kernels
    form: str                     # 'sequential' | 'scan' | 'matmul' | 'exact-scan' | 'exact-matmul'


def backend_names() -> tuple[str, ...]:
    """The registered backends (``backend=`` takes one of them, or 'auto')."""
    return backends.names()


def backends_on(device) -> tuple[str, ...]:
    """The registered backends that can run tensors on ``device`` here (e.g. no 'c' without a C compiler)."""
    device = torch.device(device)
    return tuple(name for name in backends.names() if backends.get(name).unavailable(device) is None)


def differentiable(t: torch.Tensor) -> bool:
    """A parameter the kernels must differentiate for: it requires grad, or carries a forward-mode tangent."""
    return t.requires_grad or has_tangent((t,))


def resolve_backend(setting: str, device: torch.device) -> str:
    """``setting`` itself, or for 'auto' the backend chosen for ``device``."""
    return backends.choose_auto(device).name if setting == "auto" else setting


def kernels_for(layer, vector: tuple[bool, ...], dtype: torch.dtype, device: torch.device,
                compiling: bool = False) -> Kernels:
    """Backend, kernels and parallel solver for ``layer`` (raises the backend's typed error where it cannot run)."""
    backend = backends.check(resolve_backend(layer.backend, device), device).name
    options = layer.kernel_options(vector, dtype)
    compiled = compile_spec(layer.spec, options)
    compiled.meta(backend)  # generate (or load) now: never inside a torch op or a trace
    verdict = layer.verdict
    solver_key, uniform = None, False
    wants_parallel = layer.parallel != "sequential" and verdict.exact
    if wants_parallel and (layer.parallel != "auto" or not verdict.spike_driven):
        solver = compile_parallel(layer.spec, options)
        solver_key, uniform = register_solver(solver), solver.uniform(dict(zip(layer.spec.params, vector)))
        if layer.parallel == "matmul" and not verdict.spike_driven and not uniform:
            # raised here, where the kernels are chosen: under torch.compile this is outside the traced code
            raise InputError("ND409", f"{type(layer).__name__}: parallel='matmul' needs one matrix A for every step "
                                      "and neuron, but A has a per-neuron parameter or depends on the input; use "
                                      "parallel='scan'")
    # the exact mode iterates to a fixed point whose pass count depends on values: not while tracing, not on meta
    exact_mode = bool(verdict.spike_driven) and not compiling and device.type != "meta"
    return Kernels(backend, register(compiled), options, solver_key, uniform, not verdict.spike_driven, exact_mode,
                   device.type)


def form_for(layer, kernels: Kernels, T: int, n: int) -> str:
    """The form of a call of T steps of n neurons (the ``parallel='auto'`` rule: :func:`auto_form`).

    Neurons with a spike-driven update run the exact mode only when a parallel form is asked for.
    """
    if kernels.solver_key is None:
        return "sequential"
    asked = layer.parallel
    if asked == "auto":
        return auto_form(T, n, kernels.uniform, kernels.device_type, kernels.backend, len(layer.spec.states),
                         kernels.options.compute_dtype)
    if kernels.reset_free:
        return asked
    return f"exact-{asked}" if kernels.exact_mode else "sequential"


def auto_form(T: int, n: int, uniform: bool, device: str = "cpu", backend: str | None = None, k: int = 1,
              dtype: str = "float32") -> str:
    """``parallel='auto'`` for a reset-free linear neuron: 'sequential', 'scan' or 'matmul' (:data:`AUTO_RULES`).

    ``backend``: the one running the sequential kernel (None: what ``backend='auto'`` picks on ``device``).
    """
    if backend is None:
        backend = backends.choose_auto(torch.device(device)).name
    rule = AUTO_RULES.get((device, backend)) or AUTO_RULES.get((device, "torch")) or AUTO_RULES[("cpu", "torch")]
    n_eff = n * k ** rule.k_power * (2 if dtype == "float64" else 1)
    if not any(lo <= T <= (hi or T) and n_eff <= max_n for lo, hi, max_n in rule.rows):
        return "sequential"
    return "matmul" if uniform and T <= rule.matmul_max_T and k >= rule.matmul_min_k else "scan"


def run(layer, route: Route, inputs, init, params, store_seqs: bool):
    """Spikes [T, N] and states (final [N] or sequences [T, N]) of one call; records ``layer.last_form``."""
    kernels = route.kernels
    if route.form != "sequential" and has_tangent((*inputs, *init, *params)):
        route = Route(kernels, "sequential")  # forward-mode AD: the generated tangent kernel is sequential
    if route.form in ("scan", "matmul"):
        spikes, seqs = _solve_parallel(kernels, route.form, inputs, init, params)
        layer.last_form = {"form": route.form}
        return spikes, tuple(seqs if store_seqs else [v[-1] for v in seqs])
    if route.form.startswith("exact-"):
        result = _solve_exact(layer, kernels, route.form[len("exact-"):], inputs, init, params, store_seqs)
        if result is not None:
            return result
        layer.last_form = {"form": "sequential", "fallback": True}
    else:
        layer.last_form = {"form": "sequential"}
    return neuron_op(kernels.key, kernels.backend, inputs, init, params, store_seqs)


def _compute(tensors, dtype):
    return [t.to(dtype) for t in tensors]


def _solve_parallel(kernels: Kernels, form: str, inputs, init, params):
    cdt = compute_dtype(inputs[0].dtype)
    spikes, seqs, _ = registered_solver(kernels.solver_key).solve(form, _compute(inputs, cdt), _compute(init, cdt),
                                                                  _compute(params, cdt), backend=kernels.backend)
    return spikes.to(inputs[0].dtype), seqs


def _solve_exact(layer, kernels: Kernels, form: str, inputs, init, params, store_seqs):
    """The exact fixed-point mode: spikes by iteration, then the generated backward through them; None when it
    did not converge within ``layer.max_iterations`` passes (the caller runs the sequential kernels)."""
    T = inputs[0].shape[0]
    cdt = compute_dtype(inputs[0].dtype)
    found = registered_solver(kernels.solver_key).solve_exact(form, _compute(inputs, cdt), _compute(init, cdt),
                                                              _compute(params, cdt), layer.max_iterations or T + 1,
                                                              kernels.backend)
    if found is None:
        warnings.warn(f"{type(layer).__name__}: exact parallel mode did not converge in {layer.max_iterations} "
                      "passes; running the sequential kernel", RuntimeWarning, stacklevel=4)
        return None
    spikes, charged, states, passes = found
    saved_states = registered(kernels.key).meta(kernels.backend)["saved_states"]
    saved = [charged[layer.spec.states.index(s)].contiguous() for s in saved_states]
    states = states if store_seqs else [v[-1] for v in states]
    layer.last_form = {"form": f"exact-{form}", "passes": passes}
    return neuron_op(kernels.key, kernels.backend, inputs, init, params, store_seqs,
                     precomputed=(spikes.to(inputs[0].dtype), [v.contiguous() for v in states], saved))
