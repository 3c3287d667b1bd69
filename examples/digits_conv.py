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

import torch
from torch import nn

import neurodsl as nd
from neurodsl.containers import SeqToBatch

import training  # examples/training.py: what the training examples share


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


def direct_encoding(images: torch.Tensor, T: int) -> torch.Tensor:
    """Images [N, 8, 8] -> [T, N, 1, 8, 8]: the same one-channel image is the input at each of the T steps."""
    return images.unsqueeze(1).unsqueeze(0).repeat(T, 1, 1, 1, 1)


def main(argv=None) -> dict:
    p = training.options(__doc__, epochs=8, lr=5e-3, tiny="1 epoch, 256 training images, T=2 (seconds)")
    p.add_argument("--neuron", choices=("lif", "custom"), default="lif")
    p.add_argument("--T", type=int, default=4, help="time steps")
    p.add_argument("--width", type=int, default=16, help="channels of the first conv")
    args = p.parse_args(argv)
    if args.tiny:
        args.epochs, args.T, args.width = 1, 2, 4

    device = training.device()
    digits = training.load_digits_split(limit=256 if args.tiny else None, seed=args.seed)
    x_tr, y_tr, x_te, y_te = (t.to(device) for t in digits)
    train, test = (direct_encoding(x_tr, args.T), y_tr), (direct_encoding(x_te, args.T), y_te)
    torch.manual_seed(args.seed)                                     # the initial weights
    model = conv_snn(args.neuron, args.width).to(device)
    print(f"digits: {len(y_tr)} train / {len(y_te)} test images, T={args.T}, neuron={args.neuron}, device={device}")
    return training.fit(model, train, test, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                        summary=args.neuron)


if __name__ == "__main__":
    main()
