"""Step response of a neuron: every state's trace and the spike raster (``neurodsl plot NAME``).

matplotlib (the ``examples`` or ``bench`` extra) is imported only when a figure is drawn, and only its object API is
used (Agg canvas, no pyplot), so plotting changes no global matplotlib state.

>>> import neurodsl as nd
>>> x, spikes, states = step_response(nd.zoo.ALIF, steps=20, amplitude=3.0, neurons=2)
>>> x.shape, spikes.shape, sorted(states)
(torch.Size([20, 2]), torch.Size([20, 2]), ['a', 'v'])
"""
from __future__ import annotations

from pathlib import Path

import torch


def step_response(neuron_cls, steps: int = 100, amplitude: float = 2.0, neurons: int = 4, onset: int | None = None,
                  **kwargs):
    """Run ``neurons`` neurons of ``neuron_cls(**kwargs)`` for ``steps`` steps on a step input.

    Neuron i receives ``amplitude * (i + 1) / neurons`` from step ``onset`` (default ``steps // 10``) on, on
    its first input; further inputs of a multi-input neuron stay 0. Returns ``(input [T, n], spikes [T, n],
    {state: [T, n]})``.
    """
    layer = neuron_cls(store_state_seqs=True, **kwargs)
    onset = steps // 10 if onset is None else onset
    x = torch.zeros(steps, neurons)
    x[onset:] = amplitude * torch.arange(1, neurons + 1) / neurons
    inputs = [x] + [torch.zeros_like(x)] * (len(layer.spec.inputs) - 1)
    with torch.no_grad():
        spikes = layer(*inputs)
    return x, spikes, dict(layer.state_seqs)


def plot_step_response(neuron_cls, out: str | Path = "neuron.png", steps: int = 100, amplitude: float = 2.0,
                       neurons: int = 4, **kwargs) -> Path:
    """Write a PNG: the input, one panel per state, and the spike raster. Returns the path."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    x, spikes, states = step_response(neuron_cls, steps, amplitude, neurons, **kwargs)
    colors = colormaps["viridis"]([i / max(neurons - 1, 1) * 0.9 for i in range(neurons)])
    fig = Figure(figsize=(8, 1.6 * (len(states) + 2) + 0.6), layout="constrained")
    axes = fig.subplots(len(states) + 2, 1, sharex=True)
    panels = [("input", x)] + list(states.items())
    for ax, (name, seq) in zip(axes, panels):
        for i in range(neurons):
            ax.plot(seq[:, i].numpy(), color=colors[i], lw=1.2)
        ax.set_ylabel(name)
    axes[-1].eventplot([torch.nonzero(spikes[:, i]).flatten().numpy() for i in range(neurons)], colors=colors,
                       lineoffsets=range(neurons), linelengths=0.8)
    axes[-1].set_ylabel("spikes")
    axes[-1].set_yticks(range(neurons), [f"{float(x[-1, i]):.2g}" for i in range(neurons)])
    axes[-1].set_ylim(-0.6, neurons - 0.4)
    axes[-1].set_xlabel("time step")
    counts = ", ".join(str(int(c)) for c in spikes.sum(0))
    fig.suptitle(f"{neuron_cls.__name__}: step input, amplitude up to {amplitude:g}; spikes per neuron: {counts}")
    out = Path(out)
    fig.savefig(out, dpi=110)
    return out
