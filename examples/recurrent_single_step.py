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

import torch
from torch import nn

import neurodsl as nd

import training  # examples/training.py: what the training examples share


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


def as_rows(images: torch.Tensor, repeat: int) -> torch.Tensor:
    """Images [N, 8, 8] -> sequences [8 * repeat, N, 8]: row by row, each row shown for ``repeat`` steps."""
    return images.repeat_interleave(repeat, dim=1).transpose(0, 1).contiguous()


def main(argv=None) -> dict:
    p = training.options(__doc__, epochs=20, lr=1e-2, tiny="1 epoch, 256 training images (seconds)")
    p.add_argument("--neuron", default="LIF", help="a zoo neuron name (LIF, ALIF, ...)")
    p.add_argument("--no-recurrence", action="store_true", help="drop W_rec (a feed-forward baseline)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--repeat", type=int, default=2, help="steps per image row (T = 8 * repeat)")
    args = p.parse_args(argv)
    if args.tiny:
        args.epochs, args.hidden, args.repeat = 1, 16, 1

    device = training.device()
    x_tr, y_tr, x_te, y_te = training.load_digits_split(limit=256 if args.tiny else None, seed=args.seed)
    train = as_rows(x_tr, args.repeat).to(device), y_tr.to(device)          # [T, N, 8], [N]
    test = as_rows(x_te, args.repeat).to(device), y_te.to(device)
    torch.manual_seed(args.seed)                                     # the initial weights
    neuron = getattr(nd.zoo, args.neuron)()
    model = RecurrentSNN(neuron, 8, args.hidden, 10, recurrent=not args.no_recurrence).to(device)
    nd.set_step_mode(model, "s")                                     # every neuron in the model: one step a call
    kind = "feed-forward" if args.no_recurrence else "recurrent"
    print(f"digits row by row: T={len(train[0])}, {len(y_tr)} train / {len(y_te)} test, {kind} "
          f"{args.neuron}, {args.hidden} hidden, device={device}")
    return training.fit(model, train, test, epochs=args.epochs, lr=args.lr,
                        batch_size=args.batch_size, forward=lambda model, x: model(x),   # already [B, classes]
                        summary=f"{kind} {args.neuron}")


if __name__ == "__main__":
    main()
