"""What the training examples share: their common options, the digits data, one pass over a data set, the loop.

``digits_conv.py``, ``randman.py`` and ``recurrent_single_step.py`` import it as ``import training``
(``python examples/<name>.py`` puts ``examples/`` on ``sys.path``). Inputs are time-major sequences
``[T, N, ...]`` with labels ``[N]``; every batch is a new sequence.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import neurodsl as nd

#: The per-epoch line of :func:`fit`, formatted with ``epoch``, ``train_acc``, ``test_acc`` and ``seconds``.
EPOCH_LINE = "epoch {epoch:>2}  train acc {train_acc:.3f}  test acc {test_acc:.3f}  {seconds:.1f} s"


def options(doc: str, *, epochs: int, lr: float, tiny: str) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc``, with the options every example takes: ``--epochs``,
    ``--batch-size`` (64), ``--lr``, ``--seed`` (0) and ``--tiny`` (``tiny`` says what it shrinks)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help=tiny)
    return p


def device() -> torch.device:
    """CUDA when available (neurodsl then runs its Triton kernels), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_digits_split(limit: int | None, seed: int):
    """scikit-learn's 8x8 digits (bundled, no download): ``x_train, y_train, x_test, y_test``.

    Images are ``[N, 8, 8]`` in [0, 1], split 80 / 20, stratified, with ``random_state=seed``. With a
    ``limit``, only the first ``limit`` training and ``limit // 2`` test images are kept."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
    if limit:
        x_tr, y_tr, x_te, y_te = x_tr[:limit], y_tr[:limit], x_te[:limit // 2], y_te[:limit // 2]
    return x_tr, y_tr, x_te, y_te


def mean_over_time(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The class scores [B, classes] of a model whose output is [T, B, classes]: its mean over time."""
    return model(x).mean(0)


def run_epoch(model, x, y, batch_size: int, optimizer=None, forward=mean_over_time) -> float:
    """One pass over the sequences ``x`` [T, N, ...] with labels ``y`` [N]; returns the accuracy.

    With an ``optimizer`` it trains: shuffled batches, cross-entropy, one step a batch. Without, it evaluates
    the batches in order, without gradients. ``forward(model, inputs)`` gives the logits [B, classes]."""
    model.train(optimizer is not None)
    order = torch.randperm(len(y)) if optimizer else torch.arange(len(y))
    correct = 0
    with torch.set_grad_enabled(optimizer is not None):
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            nd.reset_states(model)                                   # a new sequence: forget the states
            logits = forward(model, x[:, idx])
            if optimizer:
                loss = nn.functional.cross_entropy(logits, y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            correct += int((logits.argmax(1) == y[idx]).sum())
    return correct / len(y)


def fit(model, train, test, *, epochs: int, lr: float, batch_size: int, forward=mean_over_time,
        test_each_epoch: bool = True, epoch_line: str = EPOCH_LINE, summary: str | None = None) -> dict:
    """Train with Adam and a cosine learning-rate schedule over ``epochs``; ``train`` and ``test`` are ``(x, y)``.

    The test set is evaluated (batches of 256) after every epoch, or with ``test_each_epoch=False`` only after
    the last. After each epoch it prints ``epoch_line`` (see :data:`EPOCH_LINE`; ``seconds`` is the epoch's
    training time); with a ``summary``, then ``final test accuracy ..., ... s per training epoch (median;
    <summary>)``. Returns the last ``train_acc`` and ``test_acc``, ``seconds_per_epoch`` (the median) and
    ``times`` (each epoch's training time)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    times, test_acc = [], None
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        train_acc = run_epoch(model, *train, batch_size, optimizer, forward)
        scheduler.step()
        times.append(time.perf_counter() - t0)
        if test_each_epoch or epoch == epochs:
            test_acc = run_epoch(model, *test, 256, forward=forward)
        print(epoch_line.format(epoch=epoch, train_acc=train_acc, test_acc=test_acc, seconds=times[-1]), flush=True)
    per_epoch = statistics.median(times)
    if summary is not None:
        print(f"final test accuracy {test_acc:.3f}, {per_epoch:.1f} s per training epoch (median; {summary})")
    return dict(test_acc=test_acc, train_acc=train_acc, seconds_per_epoch=per_epoch, times=times)
