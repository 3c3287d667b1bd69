"""One entry point for every algorithm, and their gradients compared with BPTT's.

>>> import torch, neurodsl as nd
>>> from torch import nn
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> model = nn.Sequential(nn.Linear(4, 3), nd.zoo.LIF(tau=torch.full((3,), 2.0), learnable="tau", backend="torch"))
>>> x = torch.rand(20, 2, 4) * 2
>>> loss = lambda t, out: out.sum() * 0.1
>>> g = gradients(model, x, loss, "eprop")
>>> sorted(g)
['0.bias', '0.weight', '1.tau']
>>> bptt = gradients(model, x, loss, "bptt")
>>> all(torch.allclose(g[k], bptt[k], atol=1e-5) for k in g)       # one layer: e-prop is exact
True
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..errors import NeuroDSLError, OnlineError
from ..functional import reset_states
from ..neuron import Neuron
from .model import chain, check_chain
from .rules import RULES

#: What :func:`gradients` accepts ("bptt": autograd of Σ_t loss_t through the whole sequence).
ALGORITHMS = ("bptt", "rtrl", "eprop", "ottt", "sltt")


def gradients(model: nn.Module, inputs: torch.Tensor, loss_fn: Callable[[int, torch.Tensor], torch.Tensor],
              algorithm: str = "eprop", *, deferred: bool = False) -> dict[str, torch.Tensor]:
    """{parameter name: ∂(Σ_t loss_t)/∂parameter} by ``algorithm`` over ``inputs`` [T, batch, ...].

    ``model``: an ``nn.Sequential`` of layers and neurodsl neurons, run one step at a time from its initial
    states; ``loss_fn(t, output_t)``: the scalar loss of step t. ``.grad`` of the model is left as it was.
    ``deferred=True`` (e-prop): traces over the whole stored sequence by a parallel scan (given the spikes the
    trace recursion is linear) instead of step by step; same result, memory O(T).
    """
    if algorithm not in ALGORITHMS:
        raise OnlineError("ND904", f"unknown algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    kept = {n: p.grad for n, p in params}
    for _, p in params:
        p.grad = None
    try:
        if algorithm == "bptt":
            bptt(model, inputs, loss_fn)
        elif deferred:
            if algorithm != "eprop":
                raise OnlineError("ND906", f"the deferred mode computes e-prop traces by a scan; {algorithm!r} has "
                                           "no deferred form")
            from .deferred import deferred_eprop
            deferred_eprop(model, inputs, loss_fn)
        else:
            rule = RULES[algorithm](model)
            for t, x in enumerate(inputs):
                rule.backward(loss_fn(t, rule.step(x)))
        return {n: p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for n, p in params}
    finally:
        for n, p in params:
            p.grad = kept[n]
        reset_states(model)


def bptt(model: nn.Module, inputs: torch.Tensor, loss_fn) -> torch.Tensor:
    """Backpropagation through time of Σ_t loss_fn(t, output_t), stepping the chain like the online rules;
    accumulates ``.grad`` and returns the total loss."""
    modules = chain(model)
    check_chain(modules)
    reset_states(model)
    total = 0.0
    for t, x in enumerate(inputs):
        h = x
        for m in modules:
            h = m(h[None])[0] if isinstance(m, Neuron) and m.step_mode == "m" else m(h)
        total = total + loss_fn(t, h)
    total.backward()
    reset_states(model)
    return total.detach()


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    denominator = a.norm() * b.norm()
    return float(a @ b / denominator) if denominator > 0 else float("nan")


@dataclass
class GradientComparison:
    """Per algorithm and parameter: cosine similarity with the reference's gradient and relative norm
    (‖g‖ / ‖g_ref‖). ``skipped``: algorithm -> why it could not run on this model."""

    reference: str
    rows: list[dict] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    gradients: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def table(self) -> str:
        """A Markdown table (one row per algorithm and parameter)."""
        lines = [f"| algorithm | parameter | cosine vs {self.reference} | relative norm |", "|---|---|---|---|"]
        lines += [f"| {r['algorithm']} | {r['parameter']} | {r['cosine']:.4f} | {r['relative_norm']:.4f} |"
                  for r in self.rows]
        lines += [f"| {a} | (skipped: {why}) | | |" for a, why in self.skipped.items()]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def plot(self, path=None):
        """Bars of the cosine similarity per parameter and algorithm (matplotlib); saved to ``path`` if given."""
        import matplotlib
        if path is not None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        algorithms = list(dict.fromkeys(r["algorithm"] for r in self.rows))
        names = list(dict.fromkeys(r["parameter"] for r in self.rows))
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(names) * max(1, len(algorithms)) / 2), 3.2))
        width = 0.8 / max(1, len(algorithms))
        for k, algorithm in enumerate(algorithms):
            values = {r["parameter"]: r["cosine"] for r in self.rows if r["algorithm"] == algorithm}
            ax.bar([i + k * width for i in range(len(names))], [values.get(n, 0.0) for n in names], width,
                   label=algorithm)
        ax.set_xticks([i + width * (len(algorithms) - 1) / 2 for i in range(len(names))], names, rotation=20)
        ax.set_ylabel(f"cosine similarity vs {self.reference}")
        ax.set_ylim(min(0.0, *(r["cosine"] for r in self.rows)) if self.rows else 0.0, 1.05)
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.legend(fontsize=8)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
            plt.close(fig)
        return fig


def compare_grads(model: nn.Module, inputs: torch.Tensor, loss_fn, algorithms=("rtrl", "eprop", "ottt", "sltt"),
                  reference: str = "bptt") -> GradientComparison:
    """Each algorithm's gradients against ``reference``'s (default BPTT) on the same model, inputs and losses.

    An algorithm that cannot run on the model (e.g. 'ottt' without a closed-form leak) is listed in
    ``.skipped`` with its error instead of stopping the comparison.
    """
    for name in (reference, *algorithms):
        if name not in ALGORITHMS:
            raise OnlineError("ND904", f"unknown algorithm {name!r}; use one of {', '.join(ALGORITHMS)}")
    result = GradientComparison(reference)
    ref = result.gradients[reference] = gradients(model, inputs, loss_fn, reference)
    for algorithm in algorithms:
        try:
            grads = result.gradients[algorithm] = gradients(model, inputs, loss_fn, algorithm)
        except NeuroDSLError as err:
            result.skipped[algorithm] = str(err)
            continue
        for name, g in grads.items():
            norm = float(ref[name].double().norm())
            result.rows.append(dict(algorithm=algorithm, parameter=name, cosine=_cosine(g, ref[name]),
                                    relative_norm=float(g.double().norm()) / norm if norm > 0 else float("nan")))
    return result
