"""Every implementation behind one interface: ``build(impl, kind, device, dtype) -> Runner``.

A runner maps an input sequence [T, ...] to spikes [T, ...] and forgets its state on ``reset()``. A peer
that is not installed (or cannot express a neuron) raises :class:`Skip`, and the harness records the reason.
All peers use tau = 2 (decay_input), V_th = 1, V_reset = 0, hard reset and ATan(alpha = 2) unless noted.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import torch

from . import neurons


class Skip(Exception):
    """This implementation cannot run here; the message says why."""


@dataclass
class Runner:
    call: Callable[[torch.Tensor], torch.Tensor]
    reset: Callable[[], None] = lambda: None
    note: str = ""
    modules: list = field(default_factory=list)
    retains_graph: bool = True  # False: backward(retain_graph=True) is refused (compiled graphs donate buffers)

    def __call__(self, x):
        return self.call(x)


def build(impl: str, kind: str, device: torch.device, dtype: torch.dtype,
          compile_backend: str = "inductor") -> Runner:
    """The runner of ``impl``; ``compile_backend`` is what implementations under ``torch.compile`` use
    (``aot_eager`` traces the same graph without generating code: the smoke test's choice)."""
    if impl not in _BUILDERS:
        raise Skip(f"unknown implementation {impl}")
    builder = _BUILDERS[impl]
    if impl.endswith("-compiled") or impl == "torch-compile-loop":
        return builder(kind, device, dtype, compile_backend=compile_backend)
    return builder(kind, device, dtype)


def _compile_note(backend: str) -> str:
    return "" if backend == "inductor" else f", torch.compile backend {backend}"


def _neurodsl(backend: str, kind, device, dtype, parallel: str = "sequential", compiled: bool = False,
              compile_backend: str = "inductor"):
    from kernels_gen.ops import check_backend
    from neurodsl.errors import BackendError
    try:
        check_backend(backend, device)
    except BackendError as err:
        raise Skip(str(err)) from err
    layer = neurons.neurodsl_layer(kind, backend, parallel).to(device)
    note = "Triton interpreter (CPU)" if backend == "triton" and device.type == "cpu" else ""
    if compiled:
        note = ", ".join(filter(None, [note, "torch.compile(fullgraph=True); first calls compile (not timed)"
                                       + _compile_note(compile_backend)]))
        torch._dynamo.reset()  # a fresh recompile budget per case; runners built before recompile in their warmup
    module = torch.compile(layer, fullgraph=True, backend=compile_backend) if compiled else layer
    return Runner(module, layer.reset_state, note, [layer], retains_graph=not compiled)


def _spikingjelly(kind, device, dtype):
    try:
        from spikingjelly.activation_based import neuron, surrogate
    except ImportError as err:
        raise Skip("spikingjelly not importable") from err
    common = dict(v_reset=0.0, surrogate_function=surrogate.ATan(alpha=2.0), detach_reset=False, step_mode="m")
    if kind == "lif":
        node = neuron.LIFNode(tau=2.0, decay_input=True, v_threshold=1.0, **common)
    elif kind == "paper000":  # H = (1 - 1/tau) V + X with tau = 1.25 is k_tau = 0.2
        node = neuron.LIFNode(tau=1.25, decay_input=False, v_threshold=0.3, **common)
    elif kind == "plif":
        node = neuron.ParametricLIFNode(init_tau=2.0, decay_input=True, v_threshold=1.0, **common)
    else:
        raise Skip(f"no SpikingJelly node for {kind} (see sj-flexsn)")
    node = node.to(device)
    return Runner(node, node.reset, _sj_note(kind, device), [node])


def _sj_note(kind, device) -> str:
    if device.type != "cuda":
        return "CPU torch path"
    import os
    var = {"plif": "SJ_PLIF_CUDA_IMPLEMENTATION"}.get(kind, "SJ_LIF_CUDA_IMPLEMENTATION")
    return f"{var}={os.environ.get(var, 'auto')}"


def _flexsn(kind, device, dtype):
    try:
        from spikingjelly.activation_based.neuron import FlexSN
    except ImportError as err:
        raise Skip("spikingjelly FlexSN not importable") from err
    cores = {"alif": neurons.flexsn_alif_core, "izhikevich": neurons.flexsn_izhikevich_core}
    if kind not in cores:
        raise Skip(f"FlexSN core not written for {kind}")
    node = FlexSN(core=cores[kind], num_states=2, step_mode="m").to(device)
    fresh = [True]

    def call(x):
        if fresh[0]:  # Izhikevich starts at v = v_reset (FlexSN's default states are zeros)
            node.states = tuple(s.to(x.dtype) for s in neurons.initial_states(kind, x[0].detach().float()))
            fresh[0] = False
        return node(x)

    def reset():
        node.reset()
        fresh[0] = True

    note = "CPU: FlexSN torch scan" if device.type != "cuda" else "FlexSN (triton if selectable, else HOP scan)"
    return Runner(call, reset, note, [node])


def _snntorch(kind, device, dtype):
    try:
        import snntorch
        from snntorch import surrogate
    except ImportError as err:
        raise Skip("snntorch not importable") from err
    if kind == "lif":  # mem = beta mem + x/tau with beta = 1 - 1/tau: the input is pre-scaled (timed)
        beta, threshold, scale = 0.5, 1.0, 0.5
    elif kind == "paper000":
        beta, threshold, scale = 0.2, 0.3, 1.0
    else:
        raise Skip(f"no snnTorch Leaky form for {kind}")
    leaky = snntorch.Leaky(beta=beta, threshold=threshold, spike_grad=surrogate.atan(alpha=2.0),
                           reset_mechanism="zero", reset_delay=False).to(device)

    def call(x):
        mem = torch.zeros_like(x[0])
        spikes = []
        for t in range(x.shape[0]):
            spk, mem = leaky(x[t] * scale if scale != 1.0 else x[t], mem)
            spikes.append(spk)
        return torch.stack(spikes)

    return Runner(call, lambda: None, "Leaky(reset_mechanism='zero', reset_delay=False)", [leaky])


def _norse(kind, device, dtype):
    try:
        from norse.torch import LIFBoxCell
        from norse.torch.functional.lif_box import LIFBoxParameters
    except ImportError as err:
        raise Skip("norse not importable") from err
    dt = 1e-3
    if kind == "lif":  # v + dt*tau_inv*(x - v) with dt*tau_inv = 1/2
        tau_inv, v_th, scale = 500.0, 1.0, 1.0
    elif kind == "paper000":  # (1 - c) v + c x' with c = 0.8 and x' = x / c
        tau_inv, v_th, scale = 800.0, 0.3, 1.25
    else:
        raise Skip(f"no Norse box-LIF form for {kind}")
    params = LIFBoxParameters(tau_mem_inv=torch.tensor(tau_inv, device=device), v_leak=torch.tensor(0.0, device=device),
                              v_th=torch.tensor(v_th, device=device), v_reset=torch.tensor(0.0, device=device))
    cell = LIFBoxCell(p=params, dt=dt).to(device)

    def call(x):
        state, spikes = None, []
        for t in range(x.shape[0]):
            z, state = cell(x[t] * scale if scale != 1.0 else x[t], state)
            spikes.append(z)
        return torch.stack(spikes)

    return Runner(call, lambda: None, "LIFBoxCell loop; surrogate SuperSpike (Norse has no ATan)", [cell])


def _loop_params(kind, device):
    return {"w": torch.zeros((), device=device, requires_grad=True)} if kind == "plif" else {}


def _torch_loop(kind, device, dtype):
    params = _loop_params(kind, device)
    return Runner(functools.partial(neurons.loop_forward, kind, params=params), note="eager per-step loop")


def _torch_compile_loop(kind, device, dtype, compile_backend: str = "inductor"):
    params = _loop_params(kind, device)
    compiled = torch.compile(functools.partial(neurons.loop_forward, kind, params=params), dynamic=False,
                             backend=compile_backend)
    return Runner(compiled, note="torch.compile of the loop (first call compiles; not timed)"
                  + _compile_note(compile_backend))


_BUILDERS = {
    "neurodsl-torch": functools.partial(_neurodsl, "torch"),
    "neurodsl-c": functools.partial(_neurodsl, "c"),
    "neurodsl-scan": functools.partial(_neurodsl, "torch", parallel="scan"),
    "neurodsl-matmul": functools.partial(_neurodsl, "torch", parallel="matmul"),
    "neurodsl-triton-scan": functools.partial(_neurodsl, "triton", parallel="scan"),
    "neurodsl-triton-matmul": functools.partial(_neurodsl, "triton", parallel="matmul"),
    "neurodsl-auto": functools.partial(_neurodsl, "torch", parallel="auto"),
    "neurodsl-triton-auto": functools.partial(_neurodsl, "triton", parallel="auto"),
    "neurodsl-triton": functools.partial(_neurodsl, "triton"),
    "neurodsl-torch-compiled": functools.partial(_neurodsl, "torch", compiled=True),
    "neurodsl-triton-compiled": functools.partial(_neurodsl, "triton", compiled=True),
    "neurodsl-scan-compiled": functools.partial(_neurodsl, "torch", parallel="scan", compiled=True),
    "neurodsl-matmul-compiled": functools.partial(_neurodsl, "torch", parallel="matmul", compiled=True),
    "neurodsl-triton-scan-compiled": functools.partial(_neurodsl, "triton", parallel="scan", compiled=True),
    "neurodsl-triton-matmul-compiled": functools.partial(_neurodsl, "triton", parallel="matmul", compiled=True),
    "spikingjelly": _spikingjelly,
    "sj-flexsn": _flexsn,
    "snntorch": _snntorch,
    "norse": _norse,
    "torch-loop": _torch_loop,
    "torch-compile-loop": _torch_compile_loop,
}
