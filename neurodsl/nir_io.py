"""Export to and import from NIR, the Neuromorphic Intermediate Representation (``pip install nir``).

:func:`to_nir` turns a model built from ``nn.Sequential``, ``nn.Linear``, ``nn.Conv2d`` (inside
:class:`~neurodsl.containers.SeqToBatch`), ``nn.Flatten``, ``nn.Identity`` and the zoo's ``LIF``, ``PLIF``,
``IF`` and ``CubaLIF`` into a ``nir.NIRGraph``. :func:`from_nir` builds a module from a graph: an
``nn.Sequential`` for a chain, a :class:`NIRGraphModule` for any other graph, recurrent ones included.
Both work in neurodsl's multi-step layout ``[T, batch, *shape]``.

Time convention: NIR neurons are ODEs; one neurodsl step is one forward-Euler step of length ``dt``.

Neurons: each neuron class states its own mapping, next to its equations (the zoo's ``LIF``, ``PLIF``,
``IF`` and ``CubaLIF``). A class exports when it defines ``nir_node(shape, dt)``; :func:`from_nir` builds
it from the NIR node type its ``nir_type`` names, through the classmethod ``from_nir_node(node, dt,
**options)``. This module is the generic part: the graph walk, the non-neuron layers, and the helpers
those methods use live in :mod:`neurodsl.interop`.
See docs/nir.md.

>>> import pytest; nir = pytest.importorskip("nir")   # the optional dependency
>>> import torch, neurodsl as nd
>>> from neurodsl.nir_io import from_nir, to_nir
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), nd.zoo.LIF(tau=4.0))
>>> graph = to_nir(net, input_shape=(4,), dt=1e-3)
>>> {name: type(node).__name__ for name, node in graph.nodes.items()}
{'input': 'Input', '0': 'Affine', '1': 'LIF', 'output': 'Output'}
>>> graph.nodes["1"].tau                              # 4 steps of 1 ms
array([0.004, 0.004, 0.004])
>>> x = torch.rand(6, 2, 4) * 3
>>> torch.equal(from_nir(graph, dt=1e-3)(x), net(x))
True
"""
from __future__ import annotations

import functools
import math
import operator
import re
from collections import OrderedDict, deque
from collections.abc import Sequence
from graphlib import TopologicalSorter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import zoo
from .containers import SeqToBatch, StepLoop
from .errors import NIRError
from .functional import neurons
from .neuron import Neuron

try:
    import nir
except ImportError:  # optional dependency: the functions say how to install it
    nir = None

__all__ = ["to_nir", "from_nir", "NIRGraphModule", "NIRError"]



class NIRGraphModule(nn.Module):
    """Runs a graph of modules; a node gets the sum of its predecessors' outputs.

    ``edges`` name modules, ``input_name`` and ``output_name``, as in NIR. :func:`from_nir` returns one for
    graphs that are not a chain, and :func:`to_nir` exports it back. An acyclic graph runs each module
    once over all T steps, in topological order:

    >>> block = NIRGraphModule({"a": torch.nn.Identity(), "b": torch.nn.Identity()},
    ...                        [("in", "a"), ("in", "b"), ("a", "b"), ("a", "out"), ("b", "out")], "in", "out")
    >>> block(torch.ones(1, 1)).item()                  # a = x, b = x + a, out = a + b
    3.0

    A graph with cycles (a recurrent network) runs step by step. An edge on a cycle that does not lead
    farther from the input (by shortest path) is delayed (``delayed``). This breaks every cycle, delays
    nothing off a cycle, and does not depend on the order of the edge list. Each delayed edge carries
    its source's output from the previous step (nothing at the first step), so ``rec`` below feeds
    ``acc`` the value it had one step earlier. What the delayed edges carry is state,
    like the neurons' (``reset_state()`` and ``detach_state()`` handle both):

    >>> loop = NIRGraphModule({"acc": torch.nn.Identity(), "rec": torch.nn.Identity()},
    ...                       [("in", "acc"), ("acc", "rec"), ("rec", "acc"), ("acc", "out")], "in", "out")
    >>> loop.delayed, loop(torch.ones(4, 1)).flatten().tolist()    # acc[t] = x[t] + acc[t-1]
    ([('rec', 'acc')], [1.0, 2.0, 3.0, 4.0])

    With every neuron inside in single-step mode (``step_mode='s'``), a call is one step of ``[B, ...]``.
    """

    carries_state = True  # nd.reset_states / nd.detach_states reach the delayed edges' values

    def __init__(self, modules: dict[str, nn.Module], edges: Sequence[tuple[str, str]], input_name: str,
                 output_name: str):
        super().__init__()
        self.nodes = nn.ModuleDict(modules)
        self.edges = [tuple(edge) for edge in edges]
        self.input_name, self.output_name = input_name, output_name
        self.delayed = _back_edges(self.edges, input_name)
        self.predecessors: dict[str, list[str]] = {name: [] for name in [*modules, output_name]}
        self.fed_back: dict[str, list[str]] = {name: [] for name in modules}
        for src, dst in self.edges:
            (self.fed_back if (src, dst) in self.delayed else self.predecessors)[dst].append(src)
        self.order = [n for n in TopologicalSorter(self.predecessors).static_order() if n in self.nodes]
        self._feedback: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = neurons(self.nodes)
        if not self.delayed or (inside and all(m.step_mode == "s" for m in inside)):
            return self._run(x)
        # One step at a time: every module sees [1, B, ...] and its neurons carry their states across steps.
        steps, seqs = [], {m: [] for m in inside if m.store_state_seqs}
        for x_t in x.split(1):
            steps.append(self._run(x_t))
            for m, per_step in seqs.items():
                per_step.append(m.state_seqs)
        for m, per_step in seqs.items():  # state_seqs over all T steps, not the last one
            m.state_seqs = {k: torch.cat([step[k] for step in per_step]) for k in per_step[0]}
        return torch.cat(steps)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.input_name: x}
        for name in self.order:
            fed_back = [self._feedback[p] for p in self.fed_back[name] if p in self._feedback]  # none at t = 0
            values[name] = self.nodes[name](_sum([values[p] for p in self.predecessors[name]] + fed_back))
        if self.delayed:
            self._feedback = {src: values[src] for src, _ in self.delayed}
        return _sum(values[p] for p in self.predecessors[self.output_name])

    def reset_state(self) -> None:
        """Forget what the delayed edges carry and the states of the neurons inside."""
        self._feedback = {}
        for m in neurons(self.nodes):
            m.reset_state()

    def reset(self) -> None:
        """Same as :meth:`reset_state` (for SpikingJelly's ``functional.reset_net``)."""
        self.reset_state()

    def detach_state(self) -> None:
        """Cut the autograd history of what the delayed edges carry and of the neurons' states (truncated BPTT)."""
        self._feedback = {k: v.detach() for k, v in self._feedback.items()}
        for m in neurons(self.nodes):
            m.detach_state()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_feedback"] = {k: v.detach() for k, v in self._feedback.items()}
        return state


def _back_edges(edges: list[tuple[str, str]], start: str) -> list[tuple[str, str]]:
    """The edges that get a one-step delay: those on a cycle that do not lead farther from ``start``
    (by shortest path). What remains is acyclic, and no edge off a cycle is delayed."""
    successors = _successors(edges)
    depth = _depths(successors, start)
    far = len(depth)  # nodes start does not reach
    reach = {node: set(_depths(successors, node)) for node in {*successors, *(dst for _, dst in edges)}}
    return sorted({(src, dst) for src, dst in edges
                   if src in reach[dst] and depth.get(dst, far) <= depth.get(src, far)})


def _sum(tensors):
    return functools.reduce(operator.add, tensors)


# -- export -----------------------------------------------------------------------------------------------
def to_nir(model: nn.Module, input_shape: Sequence[int] | torch.Tensor, dt: float = 1.0) -> nir.NIRGraph:
    """The NIR graph of ``model`` (not run, not changed); raises :class:`NIRError` ND501 for what NIR cannot express
    (ND504 for a ``dt`` that is not a positive number).

    ``input_shape`` is the shape of one sample, without time and batch (``(2, 8, 8)``), or a sample input
    ``[T, B, *shape]``. ``dt`` is the length of one step in NIR's time unit: time constants are
    ``steps * dt``. The model is read in neurodsl's multi-step layout ``[T, B, *shape]``, so ``nn.Conv2d``
    must sit inside :class:`~neurodsl.containers.SeqToBatch` (or :class:`~neurodsl.containers.StepLoop`)
    and ``nn.Flatten`` must start at dim 2 or later (or sit inside one of them). Surrogates, learnable
    flags, ``detach_reset`` and carried states are not exported. A neuron exports through its class's
    ``nir_node(shape, dt)``; a subclass does not inherit it (it may change the equations).

    >>> import pytest; nir = pytest.importorskip("nir")
    >>> import neurodsl as nd
    >>> graph = to_nir(nd.zoo.CubaLIF(c_decay=0.5), (3,), dt=1e-3)
    >>> cuba = graph.nodes["cubalif"]
    >>> cuba.tau_syn, cuba.w_in                         # dt / (1 - c_decay), tau_syn / dt
    (array([0.002, 0.002, 0.002]), array([2., 2., 2.]))
    """
    _require_nir()
    _check_dt(dt)
    shape = tuple(input_shape.shape[2:]) if isinstance(input_shape, torch.Tensor) else tuple(map(int, input_shape))
    exporter = _Exporter(dt)
    exits = exporter.walk(model, "", [exporter.add("input", nir.Input(input_type=np.array(shape)), [])], lead=2)
    out_shape = exporter.common_shape("output", exits)
    exporter.add("output", nir.Output(output_type=np.array(out_shape)), exits)
    return nir.NIRGraph(nodes=exporter.nodes, edges=exporter.edges, type_check=True)


class _Exporter:
    """Walks a model; ``walk`` takes and returns the (node name, per-sample shape) pairs feeding the next module."""

    def __init__(self, dt: float):
        self.dt = dt
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []

    def add(self, name: str, node, preds: list[tuple[str, tuple]]) -> tuple[str, tuple]:
        while name in self.nodes:
            name += "_"
        sources = [p for p, _ in preds]
        if len(set(sources)) != len(sources):
            raise NIRError("ND501", f"{name}: gets the same signal twice; NIR sums distinct edges only")
        self.nodes[name] = node
        self.edges += [(src, name) for src in sources]
        return name, tuple(int(n) for n in node.output_type["output"])

    @staticmethod
    def common_shape(name: str, preds: list[tuple[str, tuple]]) -> tuple:
        shapes = {shape for _, shape in preds}
        if len(shapes) != 1:
            raise NIRError("ND501", f"{name}: sums inputs of different shapes {sorted(shapes)}")
        return shapes.pop()

    def walk(self, module: nn.Module, name: str, preds: list, lead: int) -> list:
        """``lead``: dims before the per-sample shape (2 for [T, B], 1 inside SeqToBatch and StepLoop)."""
        if isinstance(module, (SeqToBatch, StepLoop)):
            if isinstance(module, SeqToBatch) and any(isinstance(m, Neuron) for m in module.modules()):
                raise NIRError("ND501", f"{name}: a neuron inside SeqToBatch would see T*B as time")
            children = list(module.children())
            if len(children) == 1:  # the wrapper names the node
                return self.walk(children[0], name, preds, lead=1)
            lead = 1
        if isinstance(module, nn.Sequential):
            for child_name, child in module.named_children():
                preds = self.walk(child, _join(name, child_name), preds, lead)
            return preds
        if isinstance(module, NIRGraphModule):
            exits, entries = {module.input_name: preds}, {}
            for key in module.order:
                feeding = [pair for p in module.predecessors[key] for pair in exits[p]]
                before = len(self.edges)
                exits[key] = self.walk(module.nodes[key], _join(name, key), feeding, lead)
                sources = {node for node, _ in feeding}   # where the module's input went: its entry nodes
                entries[key] = list(dict.fromkeys(d for s, d in self.edges[before:] if s in sources))
            for src, dst in module.delayed:  # the recurrent edges, once both ends exist
                if not entries[dst]:
                    raise NIRError("ND501", f"{_join(name, dst)}: a recurrent edge ends at a module that exports "
                                            "no NIR node")
                self.edges += [(node, entry) for node, _ in exits[src] for entry in entries[dst]]
            return [pair for p in module.predecessors[module.output_name] for pair in exits[p]]
        if isinstance(module, nn.Identity):
            return preds
        label = name or type(module).__name__.lower()
        convert = _EXPORTERS.get(type(module))
        if convert is None and "nir_node" not in vars(type(module)):  # neurons declare their own NIR node
            raise NIRError("ND501", f"{label}: {_no_nir_node(type(module))} (supported: "
                                    f"{', '.join(t.__name__ for t in _EXPORTERS)}, Identity, the containers and "
                                    "neurons that declare nir_node: "
                                    f"{', '.join(c.__name__ for c in zoo.ALL if 'nir_node' in vars(c))})")
        shape = self.common_shape(label, preds)
        if convert is not None:
            node = convert(self, module, shape, lead, label)
        else:
            try:
                node = module.nir_node(shape, self.dt)
            except NIRError as err:
                raise NIRError(err.code, f"{label}: {err.message}") from None
        return [self.add(label, node, preds)]


def _no_nir_node(cls: type) -> str:
    """Why ``cls`` does not export: it declares no ``nir_node``, or inherits one (a subclass may change equations)."""
    owner = next((c for c in cls.__mro__ if "nir_node" in vars(c)), None)
    if owner is None:
        return f"{cls.__name__} has no NIR counterpart here"
    return (f"{cls.__name__} inherits nir_node from {owner.__name__} but may change its equations; declare "
            f"nir_node on {cls.__name__} (e.g. nir_node = {owner.__name__}.nir_node)")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _export_linear(ex: _Exporter, m: nn.Linear, shape: tuple, lead: int, label: str):
    if len(shape) != 1:
        raise NIRError("ND501", f"{label}: nn.Linear on per-sample shape {shape}; NIR's Affine takes vectors "
                                "(flatten first)")
    if m.bias is None:
        return nir.Linear(weight=_np(m.weight))
    return nir.Affine(weight=_np(m.weight), bias=_np(m.bias))


def _export_conv2d(ex: _Exporter, m: nn.Conv2d, shape: tuple, lead: int, label: str):
    if lead != 1 or len(shape) != 3:
        raise NIRError("ND501", f"{label}: nn.Conv2d needs [N, C, H, W]: wrap it in neurodsl.containers."
                                f"SeqToBatch (got per-sample shape {shape})")
    if m.padding_mode != "zeros":
        raise NIRError("ND501", f"{label}: padding_mode={m.padding_mode!r}; NIR pads with zeros")
    if m.groups != 1:  # nir's type check reads weight.shape[1] as the input channels
        raise NIRError("ND501", f"{label}: groups={m.groups}; nir's Conv2d type check supports groups=1 only")
    bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_channels, dtype=np.float32)
    return nir.Conv2d(input_shape=shape[1:], weight=_np(m.weight), stride=m.stride, padding=m.padding,
                      dilation=m.dilation, groups=m.groups, bias=bias)


def _export_flatten(ex: _Exporter, m: nn.Flatten, shape: tuple, lead: int, label: str):
    ndim = lead + len(shape)
    start, end = m.start_dim % ndim, m.end_dim % ndim
    if start < lead:
        raise NIRError("ND501", f"{label}: nn.Flatten(start_dim={m.start_dim}) merges the time/batch dims; use "
                                f"start_dim={lead}")
    return nir.Flatten(input_type={"input": np.array(shape)}, start_dim=start - lead,
                       end_dim=-1 if end == ndim - 1 else end - lead)


#: Exporters of the non-neuron layers (neurons export through their ``nir_node``).
_EXPORTERS = {nn.Linear: _export_linear, nn.Conv2d: _export_conv2d, nn.Flatten: _export_flatten}


# -- import -----------------------------------------------------------------------------------------------
def from_nir(graph: nir.NIRGraph | str | Path, dt: float = 1.0, *, neurons: Sequence[type[Neuron]] = (),
             **neuron_options) -> nn.Module:
    """A module running ``graph`` (or the graph in a NIR file) on ``[T, B, *shape]`` inputs.

    Chains become an ``nn.Sequential`` named after the graph's nodes, other graphs a
    :class:`NIRGraphModule`; in a graph with cycles (a recurrent network), each edge that closes a cycle
    carries the previous step's value. ``dt`` must be the step the graph was exported with. Weights and
    parameters are float32; per-neuron parameter arrays become per-neuron tensors (constant ones become
    numbers). A neuron node becomes the zoo class whose ``nir_type`` names its type (``LIF``, ``IF``,
    ``CubaLIF``); ``neurons`` adds classes of your own (they take precedence for their ``nir_type``).
    ``neuron_options`` go to every neuron (e.g. ``surrogate=``, ``backend=``). Raises
    :class:`NIRError` ND502 for a node without a neurodsl counterpart, ND503 for a graph that is not
    one-input, one-output and reachable from its Input, and ND504 for a ``dt`` that is not a positive number.

    >>> import pytest, numpy as np; nir = pytest.importorskip("nir")
    >>> graph = nir.NIRGraph.from_list(nir.Affine(np.eye(2, dtype=np.float32), np.zeros(2, np.float32)),
    ...                                nir.IF(r=np.full(2, 10.0), v_threshold=np.array([1.0, 2.0])))
    >>> model = from_nir(graph, dt=0.1)
    >>> [(name, type(layer).__name__) for name, layer in model.named_children()]
    [('affine', 'Linear'), ('if', 'IF')]
    >>> model[1].v_th                               # a per-neuron parameter
    tensor([1., 2.])
    >>> model(torch.ones(4, 1, 2)).squeeze(1).T.tolist()   # neuron 0 fires every step, neuron 1 every other
    [[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0]]
    """
    _require_nir()
    _check_dt(dt)
    if isinstance(graph, (str, Path)):
        graph = nir.read(graph)
    nodes, graph_edges = _inline_subgraphs(graph)
    inputs = [key for key, node in nodes.items() if isinstance(node, nir.Input)]
    outputs = [key for key, node in nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NIRError("ND503", f"the graph has {len(inputs)} Input and {len(outputs)} Output nodes; one of each "
                                "is supported")
    names = _module_names(nodes)
    inp, out = names[inputs[0]], names[outputs[0]]
    registry = {**_ZOO_NEURONS, **{cls.nir_type: cls for cls in neurons}}
    modules = {names[key]: _import_node(node, key, dt, neuron_options, registry)
               for key, node in nodes.items() if names[key] not in (inp, out)}
    edges = [(names[a], names[b]) for a, b in graph_edges]
    predecessors: dict[str, list[str]] = {name: [] for name in names.values()}
    for src, dst in edges:
        predecessors[dst].append(src)
    unfed = [n for n, p in predecessors.items() if not p and n != inp]
    if unfed:
        raise NIRError("ND503", f"nodes {unfed} have no incoming edge; every node but the Input needs one")
    if predecessors[inp]:
        raise NIRError("ND503", f"the Input '{inputs[0]}' has incoming edges")
    successors = _successors(edges)
    unreached = set(predecessors) - set(_depths(successors, inp))
    if unreached:
        raise NIRError("ND503", f"nodes {sorted(unreached)} cannot be reached from the Input '{inputs[0]}'")
    chain = _chain(edges, inp, out, len(modules))
    if chain is not None:
        return nn.Sequential(OrderedDict((name, modules[name]) for name in chain))
    return NIRGraphModule(modules, edges, inp, out)


def _inline_subgraphs(graph, prefix: str = "") -> tuple[dict, list[tuple[str, str]]]:
    """The nodes and edges of ``graph`` with every nested ``NIRGraph`` inlined: its nodes become
    ``'sub.node'``, and edges to or from ``sub`` connect to what its Input feeds and its Output gets."""
    nodes, edges, entries, exits = {}, [], {}, {}
    for key, node in graph.nodes.items():
        name = prefix + key
        if not isinstance(node, nir.NIRGraph):
            nodes[name], entries[key], exits[key] = node, [name], [name]
            continue
        inner, inner_edges = _inline_subgraphs(node, name + ".")
        ins = [k for k, n in inner.items() if isinstance(n, nir.Input)]
        outs = [k for k, n in inner.items() if isinstance(n, nir.Output)]
        if len(ins) != 1 or len(outs) != 1 or (ins[0], outs[0]) in inner_edges:
            raise NIRError("ND503", f"subgraph '{name}' has {len(ins)} Input and {len(outs)} Output nodes (or "
                                    "passes its Input straight through); one of each is supported")
        entries[key] = [dst for src, dst in inner_edges if src == ins[0]]
        exits[key] = [src for src, dst in inner_edges if dst == outs[0]]
        if not entries[key] or not exits[key]:
            raise NIRError("ND503", f"subgraph '{name}': its Input feeds nothing or its Output gets nothing")
        nodes.update((k, n) for k, n in inner.items() if k not in (ins[0], outs[0]))
        edges += [(src, dst) for src, dst in inner_edges if src != ins[0] and dst != outs[0]]
    edges += [(a, b) for src, dst in graph.edges for a in exits[src] for b in entries[dst]]
    return nodes, edges


def _successors(edges: list[tuple[str, str]]) -> dict[str, list[str]]:
    successors: dict[str, list[str]] = {}
    for src, dst in edges:
        successors.setdefault(src, []).append(dst)
    return successors


def _depths(successors: dict[str, list[str]], start: str) -> dict[str, int]:
    """Shortest-path length from ``start`` of every node it reaches (breadth-first)."""
    depth, queue = {start: 0}, deque([start])
    while queue:
        node = queue.popleft()
        for n in successors.get(node, []):
            if n not in depth:
                depth[n] = depth[node] + 1
                queue.append(n)
    return depth


def _module_names(keys) -> dict[str, str]:
    """NIR node names made valid as module names ('0.lif' -> '0_lif'), kept unique."""
    names: dict[str, str] = {}
    containers = (nn.Sequential(), nn.ModuleDict())
    for key in keys:
        name = re.sub(r"\W", "_", key) or "node"
        if any(hasattr(c, name) for c in containers):  # 'forward', 'training', ...
            name = f"node_{name}"
        while name in names.values():
            name += "_"
        names[key] = name
    return names


def _chain(edges: list[tuple[str, str]], inp: str, out: str, n_modules: int) -> list[str] | None:
    """The module names in order if the graph is a single path from ``inp`` to ``out``, else None."""
    successors = _successors(edges)
    order, node = [], inp
    while node != out:
        if len(successors.get(node, [])) != 1:
            return None
        node = successors[node][0]
        order.append(node)
    return order[:-1] if len(order) - 1 == n_modules and len(edges) == len(order) else None


def _import_node(node, key: str, dt: float, options: dict, neurons: dict[str, type[Neuron]]) -> nn.Module:
    kind = type(node).__name__
    importer = _IMPORTERS.get(kind)
    if importer is not None:
        return importer(node, key, dt, options)
    if kind not in neurons:
        raise NIRError("ND502", f"node '{key}': nir.{kind} has no neurodsl counterpart (supported: "
                                f"{', '.join([*_IMPORTERS, *neurons])})")
    try:
        return neurons[kind].from_nir_node(node, dt, **options)
    except NIRError as err:
        raise NIRError(err.code, f"node '{key}': {err.message}") from None


def _f32(array) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), dtype=torch.float32)


def _ints(value, n: int) -> tuple[int, ...]:
    items = [int(v) for v in np.atleast_1d(np.asarray(value))]
    return tuple(items * n if len(items) == 1 else items)


def _linear_module(key: str, weight, bias) -> nn.Linear:
    w = _f32(weight)
    if w.dim() != 2:
        raise NIRError("ND502", f"node '{key}': weight of shape {tuple(w.shape)}; only 2-D weights are supported")
    linear = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    with torch.no_grad():
        linear.weight.copy_(w)
        if bias is not None:
            linear.bias.copy_(_f32(bias))
    return linear


def _import_conv2d(node, key, dt, options) -> nn.Module:
    w = _f32(node.weight)
    padding = node.padding.decode() if isinstance(node.padding, bytes) else node.padding
    groups = int(node.groups)
    conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=_ints(node.stride, 2),
                     padding=padding if isinstance(padding, str) else _ints(padding, 2),
                     dilation=_ints(node.dilation, 2), groups=groups)
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(_f32(node.bias))
    return SeqToBatch(conv)


def _import_flatten(node, key, dt, options) -> nn.Module:
    start, end = int(node.start_dim), int(node.end_dim)
    return nn.Flatten(start + 2 if start >= 0 else start, end + 2 if end >= 0 else end)  # after [T, B]


#: Importers of the non-neuron node types (neuron nodes go to the class whose ``nir_type`` names them).
_IMPORTERS = {"Affine": lambda node, key, dt, options: _linear_module(key, node.weight, node.bias),
              "Linear": lambda node, key, dt, options: _linear_module(key, node.weight, None),
              "Conv2d": _import_conv2d, "Flatten": _import_flatten}

#: The zoo's neuron classes by the NIR node type they import from (PLIF exports as LIF; LIF imports it).
_ZOO_NEURONS = {cls.nir_type: cls for cls in zoo.ALL if "nir_type" in vars(cls)}


# -- shared -----------------------------------------------------------------------------------------------
def _require_nir() -> None:
    if nir is None:
        raise ImportError("neurodsl.nir_io needs the 'nir' package: pip install nir")


def _check_dt(dt: float) -> None:
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise NIRError("ND504", f"dt must be a positive finite number, got {dt!r}")
