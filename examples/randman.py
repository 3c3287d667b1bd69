"""Randman (Zenke & Vogels 2021): LIF vs PSN vs a reset-free parallel LIF on long spike sequences.

Each class is a random smooth manifold: ``dim`` intrinsic coordinates are mapped to ``units`` embedding
coordinates by random smooth functions (sums of sinusoids with a 1/f^alpha spectrum). A sample is a point
on its class's manifold; each embedding coordinate, scaled to [0, 1], becomes the time of the one spike
of that input unit within T steps. The generator below is numpy only and seeded.

    python examples/randman.py                       # T=200: LIF, PSN, LIF without reset (scan, matmul)
    python examples/randman.py --steps 500
    python examples/randman.py --tiny                # a few seconds (tests)

Runs on CUDA when available.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

import neurodsl as nd
from neurodsl.containers import SeqToBatch

import training  # examples/training.py: what the training examples share


def randman(classes=10, units=50, steps=200, samples=100, dim=1, alpha=2.0, seed=0):
    """Spike rasters [T, classes * samples, units] (one spike per unit) and labels, shuffled."""
    rng = np.random.default_rng(seed)
    freqs = int(np.ceil(1e-3 ** (-1.0 / alpha)))                 # components until the spectrum is < 1e-3
    spectrum = 1.0 / (1.0 + np.arange(freqs)) ** alpha
    times, labels = [], []
    for k in range(classes):
        a, b, c = rng.random((3, units, dim, freqs))              # one random smooth function per unit and dim
        x = rng.random((samples, dim))                            # points on the manifold
        phase = 2 * np.pi * (np.arange(freqs) * b * x[:, None, :, None] + c)
        y = (a * spectrum * np.sin(phase)).sum(-1).prod(-1)       # [samples, units]
        y = (y - y.min(0)) / (y.max(0) - y.min(0))                # each unit's coordinate in [0, 1]
        times.append(np.round(y * (steps - 1)).astype(np.int64))
        labels.append(np.full(samples, k))
    order = rng.permutation(classes * samples)
    times, labels = np.concatenate(times)[order], np.concatenate(labels)[order]
    raster = np.zeros((steps, len(times), units), dtype=np.float32)
    np.put_along_axis(raster, times[None], 1.0, axis=0)
    return torch.from_numpy(raster), torch.from_numpy(labels)


#: name -> neuron(T, tau). The reset-free LIF is the same neuron class without its reset, in two parallel forms.
MODELS = {
    "LIF": lambda T, tau: nd.zoo.LIF(tau=tau),
    "LIF-soft": lambda T, tau: nd.zoo.LIF(tau=tau, reset_mode="soft"),
    "PSN": lambda T, tau: nd.psn.PSN(T),
    "LIF-noreset-scan": lambda T, tau: nd.zoo.LIF.without_reset()(tau=tau, parallel="scan"),
    "LIF-noreset-matmul": lambda T, tau: nd.zoo.LIF.without_reset()(tau=tau, parallel="matmul"),
}


def network(neuron: nn.Module, units: int, hidden: int, classes: int) -> nn.Sequential:
    """[T, B, units] -> [T, B, classes]; the class score is the readout's mean over time.

    BatchNorm over all steps and samples scales the sparse input current to what the neurons need."""
    return nn.Sequential(SeqToBatch(nn.Linear(units, hidden), nn.BatchNorm1d(hidden)), neuron,
                         nn.Linear(hidden, classes))


def train(name, data, args, device) -> dict:
    """Train and test one model; prints a line per epoch, returns the row of the summary table."""
    x_tr, y_tr, x_te, y_te = data
    torch.manual_seed(args.seed)
    neuron = MODELS[name](args.steps, args.tau)
    model = network(neuron, x_tr.shape[2], args.hidden, args.classes).to(device)
    epoch_line = f"  {name:<18} " + "epoch {epoch:>2}  train acc {train_acc:.3f}  {seconds:.2f} s"
    result = training.fit(model, (x_tr, y_tr), (x_te, y_te), epochs=args.epochs, lr=args.lr,
                          batch_size=args.batch_size, test_each_epoch=False, epoch_line=epoch_line)
    form = getattr(neuron, "last_form", {}).get("form", "GEMM over T")
    return dict(model=name, form=form, params=sum(p.numel() for p in model.parameters()),
                train_acc=result["train_acc"], test_acc=result["test_acc"],
                seconds_per_epoch=result["seconds_per_epoch"], first_epoch=result["times"][0])


def main(argv=None) -> list[dict]:
    p = training.options(__doc__, epochs=10, lr=1e-2, tiny="T=32, 2 classes, 1 epoch (seconds)")
    p.add_argument("--steps", type=int, default=200, help="T, time steps per sample")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--units", type=int, default=50, help="input neurons (embedding dimension)")
    p.add_argument("--dim", type=int, default=1, help="manifold dimension")
    p.add_argument("--samples", type=int, default=200, help="samples per class (80%% train, 20%% test)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--tau", type=float, default=10.0, help="membrane time constant (steps) of the LIFs")
    p.add_argument("--models", nargs="+", choices=tuple(MODELS),
                   default=["LIF", "PSN", "LIF-noreset-scan", "LIF-noreset-matmul"])
    args = p.parse_args(argv)
    if args.tiny:
        args.steps, args.classes, args.units, args.samples, args.hidden, args.epochs = 32, 2, 10, 20, 16, 1

    device = training.device()
    x, y = randman(args.classes, args.units, args.steps, args.samples, args.dim, seed=args.seed)
    split = int(0.8 * len(y))
    data = [t.to(device) for t in (x[:, :split], y[:split], x[:, split:], y[split:])]
    print(f"randman: {args.classes} classes, {args.units} units, T={args.steps}, dim={args.dim}, "
          f"{split} train / {len(y) - split} test samples, device={device}")
    rows = [train(name, data, args, device) for name in args.models]
    print("\n| model | form | parameters | train acc | test acc | s / epoch (median) | first epoch |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['form']} | {r['params']} | {r['train_acc']:.3f} | {r['test_acc']:.3f} | "
              f"{r['seconds_per_epoch']:.2f} | {r['first_epoch']:.2f} |")
    return rows


if __name__ == "__main__":
    main()
