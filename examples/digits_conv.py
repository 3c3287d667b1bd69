"""A convolutional SNN on scikit-learn's 8x8 digits (bundled with scikit-learn, no download).

Direct encoding: the image is the input at each of T steps. Conv2d / BatchNorm / pooling run over
[T, B, ...] by merging T into the batch (``SeqToBatch``); the neurons run over T. The class score is the
output layer's mean over time.

    python examples/digits_conv.py                    # nd.zoo.LIF
    python examples/digits_conv.py --neuron custom    # ExpLeak, defined below in the DSL
    python examples/digits_conv.py --tiny             # a few seconds (tests)

Needs scikit-learn: ``pip install -e ".[examples]" -c constraints.txt``. Runs on CUDA when available.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import neurodsl as nd
from neurodsl.containers import SeqToBatch


class ExpLeak(nd.Neuron):
    """Exponential leak, soft reset (subtract the threshold), learnable per-channel tau and threshold."""

    v = nd.State(0.0)
    tau = nd.Param(2.0)
    v_th = nd.Param(1.0)

    def charge(self, x):
        return dict(v=self.v * nd.exp(-1.0 / self.tau) + x)

    def fire(self):
        return self.v - self.v_th

    def reset(self, s):
        return dict(v=self.v - self.v_th * s)


def neuron(kind: str, channels: int, spatial: bool) -> nn.Module:
    if kind == "lif":
        return nd.zoo.LIF()
    shape = (channels, 1, 1) if spatial else (channels,)
    return ExpLeak(tau=torch.full(shape, 2.0), v_th=torch.full(shape, 1.0), learnable=("tau", "v_th"))


def conv_snn(kind: str, width: int, classes: int = 10) -> nn.Sequential:
    """[T, B, 1, 8, 8] -> [T, B, classes]: two conv blocks (conv, BN, neuron, 2x2 max-pool), a linear readout."""
    return nn.Sequential(
        SeqToBatch(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)),
        neuron(kind, width, spatial=True),
        SeqToBatch(nn.MaxPool2d(2), nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width)),
        neuron(kind, 2 * width, spatial=True),
        SeqToBatch(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * width * 4, classes)),
    )


def load_data(limit: int | None, seed: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0   # [1797, 1, 8, 8] in [0, 1]
    y = torch.tensor(digits.target)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
    if limit:
        x_tr, y_tr, x_te, y_te = x_tr[:limit], y_tr[:limit], x_te[:limit // 2], y_te[:limit // 2]
    return x_tr, y_tr, x_te, y_te


def run_epoch(model, x, y, T, batch_size, optimizer=None) -> float:
    """One pass over (x, y); trains when an optimizer is given. Returns the accuracy."""
    model.train(optimizer is not None)
    order = torch.randperm(len(x)) if optimizer else torch.arange(len(x))
    correct = 0
    with torch.set_grad_enabled(optimizer is not None):
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            inputs = x[idx].unsqueeze(0).repeat(T, 1, 1, 1, 1)        # direct encoding: [T, B, 1, 8, 8]
            nd.reset_states(model)                                   # every batch is a new sequence
            logits = model(inputs).mean(0)
            if optimizer:
                loss = nn.functional.cross_entropy(logits, y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            correct += int((logits.argmax(1) == y[idx]).sum())
    return correct / len(x)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--neuron", choices=("lif", "custom"), default="lif")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--T", type=int, default=4, help="time steps")
    p.add_argument("--width", type=int, default=16, help="channels of the first conv")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="1 epoch, 256 training images, T=2 (seconds)")
    args = p.parse_args(argv)
    limit = None
    if args.tiny:
        args.epochs, args.T, args.width, limit = 1, 2, 4, 256

    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x_tr, y_tr, x_te, y_te = (t.to(device) for t in load_data(limit, args.seed))
    model = conv_snn(args.neuron, args.width).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs)
    print(f"digits: {len(x_tr)} train / {len(x_te)} test images, T={args.T}, neuron={args.neuron}, device={device}")
    times = []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        train_acc = run_epoch(model, x_tr, y_tr, args.T, args.batch_size, optimizer)
        scheduler.step()
        times.append(time.perf_counter() - t0)
        test_acc = run_epoch(model, x_te, y_te, args.T, 256)
        print(f"epoch {epoch + 1:>2}  train acc {train_acc:.3f}  test acc {test_acc:.3f}  {times[-1]:.1f} s")
    per_epoch = sorted(times)[len(times) // 2]
    print(f"final test accuracy {test_acc:.3f}, {per_epoch:.1f} s per training epoch (median; {args.neuron})")
    return dict(test_acc=test_acc, train_acc=train_acc, seconds_per_epoch=per_epoch)


if __name__ == "__main__":
    main()
