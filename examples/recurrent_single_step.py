"""A recurrent SNN in single-step mode: scikit-learn's 8x8 digits read row by row.

The hidden layer's input at step t is ``W_in x[t] + W_rec s[t-1]``: it needs the previous step's spikes,
so the model runs one step at a time (``nd.set_step_mode(model, "s")``) and the neurons carry their
states from call to call. ``nd.reset_states(model)`` starts each batch as a new sequence. Each of the 8
rows is shown for ``--repeat`` steps; the class score is the readout's mean over time.

    python examples/recurrent_single_step.py                   # LIF, recurrent
    python examples/recurrent_single_step.py --no-recurrence   # the same network without W_rec
    python examples/recurrent_single_step.py --tiny            # a few seconds (tests)

Needs scikit-learn: ``pip install -e ".[examples]" -c constraints.txt``. Runs on CUDA when available.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import neurodsl as nd


class RecurrentSNN(nn.Module):
    """[T, B, inputs] -> [B, classes]; one call of the neuron per time step."""

    def __init__(self, neuron: nn.Module, inputs: int, hidden: int, classes: int, recurrent: bool = True,
                 gain: float = 5.0):
        super().__init__()
        self.inp = nn.Linear(inputs, hidden)
        self.rec = nn.Linear(hidden, hidden, bias=False) if recurrent else None
        with torch.no_grad():                      # inputs and spikes are in [0, 1]: larger initial weights
            for layer in (self.inp, self.rec):     # let the neurons fire from the first step
                if layer is not None:
                    layer.weight.mul_(gain)
        self.neuron = neuron
        self.out = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes = x.new_zeros(x.shape[1], self.out.in_features)
        score = 0.0
        for x_t in x:
            current = self.inp(x_t) + (self.rec(spikes) if self.rec is not None else 0.0)
            spikes = self.neuron(current)                   # single step: [B, hidden] -> [B, hidden]
            score = score + self.out(spikes)
        return score / len(x)


def load_rows(repeat: int, limit: int | None, seed: int):
    """Digits as sequences [8 * repeat, N, 8] (each row repeated), split 80 / 20."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32) / 16.0             # [N, 8 rows, 8 pixels]
    y = torch.tensor(digits.target)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
    if limit:
        x_tr, y_tr, x_te, y_te = x_tr[:limit], y_tr[:limit], x_te[:limit // 2], y_te[:limit // 2]
    as_seq = lambda images: images.repeat_interleave(repeat, dim=1).transpose(0, 1).contiguous()
    return as_seq(x_tr), y_tr, as_seq(x_te), y_te


def run_epoch(model, x, y, batch_size, optimizer=None) -> float:
    model.train(optimizer is not None)
    order = torch.randperm(x.shape[1]) if optimizer else torch.arange(x.shape[1])
    correct = 0
    with torch.set_grad_enabled(optimizer is not None):
        for i in range(0, x.shape[1], batch_size):
            idx = order[i:i + batch_size]
            nd.reset_states(model)                                   # a new sequence: forget the states
            logits = model(x[:, idx])
            if optimizer:
                loss = nn.functional.cross_entropy(logits, y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            correct += int((logits.argmax(1) == y[idx]).sum())
    return correct / x.shape[1]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--neuron", default="LIF", help="a zoo neuron name (LIF, ALIF, ...)")
    p.add_argument("--no-recurrence", action="store_true", help="drop W_rec (a feed-forward baseline)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--repeat", type=int, default=2, help="steps per image row (T = 8 * repeat)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="1 epoch, 256 training images (seconds)")
    args = p.parse_args(argv)
    limit = None
    if args.tiny:
        args.epochs, args.hidden, args.repeat, limit = 1, 16, 1, 256

    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x_tr, y_tr, x_te, y_te = (t.to(device) for t in load_rows(args.repeat, limit, args.seed))
    neuron = getattr(nd.zoo, args.neuron)()
    model = RecurrentSNN(neuron, 8, args.hidden, 10, recurrent=not args.no_recurrence).to(device)
    nd.set_step_mode(model, "s")                                     # every neuron in the model: one step a call
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs)
    kind = "feed-forward" if args.no_recurrence else "recurrent"
    print(f"digits row by row: T={x_tr.shape[0]}, {x_tr.shape[1]} train / {x_te.shape[1]} test, {kind} "
          f"{args.neuron}, {args.hidden} hidden, device={device}")
    times = []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        train_acc = run_epoch(model, x_tr, y_tr, args.batch_size, optimizer)
        scheduler.step()
        times.append(time.perf_counter() - t0)
        test_acc = run_epoch(model, x_te, y_te, 256)
        print(f"epoch {epoch + 1:>2}  train acc {train_acc:.3f}  test acc {test_acc:.3f}  {times[-1]:.1f} s")
    per_epoch = sorted(times)[len(times) // 2]
    print(f"final test accuracy {test_acc:.3f}, {per_epoch:.1f} s per training epoch (median; {kind} {args.neuron})")
    return dict(test_acc=test_acc, train_acc=train_acc, seconds_per_epoch=per_epoch)


if __name__ == "__main__":
    main()
