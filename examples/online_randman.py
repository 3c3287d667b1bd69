"""Randman trained online (e-prop, OTTT: memory independent of T) against BPTT, on long sequences.

The data are Randman manifolds (examples/randman.py), rate-coded as in Slax's R-Randman: each input unit fires
at every step with a probability given by its manifold coordinate, so every step carries the class. The model is
``Linear -> LIF -> Linear`` with a loss at every step (cross-entropy of that step's readout); the prediction is
the readout averaged over time. BPTT backpropagates the summed loss through all T steps; the online rules
(``neurodsl.online``) follow each parameter's effect through time with traces and update once per sequence.

    python examples/online_randman.py                       # T=500: BPTT, e-prop, OTTT
    python examples/online_randman.py --steps 1000 --neuron alif
    python examples/online_randman.py --tiny                # seconds (tests)
    python examples/online_randman.py --samples 50 --batch-size 32 --threads 1   # docs/online.md's run

Prints, per algorithm: test accuracy, training time per epoch, the peak tensor memory of one training batch,
and the cosine similarity of e-prop's, OTTT's and SLTT's gradients with BPTT's (table, and a plot with --plot).
"""
from __future__ import annotations

import time

import torch
from torch import nn

import neurodsl as nd
from neurodsl import online

import training  # examples/training.py: the shared options
from randman import randman

NEURONS = {
    "lif": lambda tau: nd.zoo.LIF(tau=tau, decay_input=False, reset_mode="soft", surrogate=nd.surrogate.ATan()),
    "alif": lambda tau: nd.zoo.ALIF(tau=tau, tau_a=4 * tau, beta=0.2, surrogate=nd.surrogate.ATan()),
}


def rate_coded(classes, units, steps, samples, dim, seed, max_rate):
    """Firing probabilities [N, units] (the manifold coordinates, scaled) and labels [N]."""
    raster, labels = randman(classes, units, steps, samples, dim, seed=seed)   # one spike at time ∝ coordinate
    coordinate = raster.argmax(0).float() / max(1, steps - 1)
    return coordinate * max_rate, labels


def spikes(rates: torch.Tensor, steps: int, generator: torch.Generator) -> torch.Tensor:
    """Bernoulli spike trains [steps, N, units] at ``rates``."""
    return (torch.rand((steps, *rates.shape), generator=generator) < rates).float()


def network(units, hidden, classes, neuron, tau, seed) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(units, hidden), NEURONS[neuron](tau), nn.Linear(hidden, classes))
    with torch.no_grad():
        model[0].weight.mul_(4.0)          # sparse input spikes: enough current to fire from the first epoch
    return model


def step_loss(out: torch.Tensor, y: torch.Tensor, steps: int) -> torch.Tensor:
    """The loss of one step: cross-entropy of its readout (the sum over steps is the training objective)."""
    return nn.functional.cross_entropy(out, y) / steps


def train_bptt(model, x, y, optimizer):
    nd.reset_states(model)
    out = model(x)                                                         # [T, B, classes], multi-step
    loss = nn.functional.cross_entropy(out.flatten(0, 1), y.repeat(x.shape[0]))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return out.mean(0)


def train_online(rule, x, y, optimizer):
    rule.reset()
    optimizer.zero_grad()
    total = 0.0
    for t in range(x.shape[0]):
        out = rule.step(x[t])
        rule.backward(step_loss(out, y, x.shape[0]))
        total = total + out.detach()
    optimizer.step()                                                       # once per sequence
    return total / x.shape[0]


@torch.no_grad()
def accuracy(model, rates, labels, steps, generator, batch=256) -> float:
    correct = 0
    for i in range(0, len(labels), batch):
        nd.reset_states(model)
        logits = model(spikes(rates[i:i + batch], steps, generator)).mean(0)
        correct += int((logits.argmax(1) == labels[i:i + batch]).sum())
    return correct / len(labels)


def run(algorithm, data, args) -> dict:
    """Train one model with ``algorithm`` ('bptt', 'eprop', 'ottt'); returns the row of the summary table."""
    rates, labels, test_rates, test_labels = data
    model = network(rates.shape[1], args.hidden, args.classes, args.neuron, args.tau, args.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    rule = None if algorithm == "bptt" else online.RULES[algorithm](model)
    gen = torch.Generator().manual_seed(args.seed)

    def train_batch(x, y):
        return train_bptt(model, x, y, optimizer) if rule is None else train_online(rule, x, y, optimizer)

    x0, y0 = spikes(rates[:args.batch_size], args.steps, gen), labels[:args.batch_size]
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    peak = online.peak_memory(lambda: train_batch(x0, y0))                 # one batch, then start afresh
    model.load_state_dict(snapshot)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    times = []
    for epoch in range(1, args.epochs + 1):
        t0, correct = time.perf_counter(), 0
        order = torch.randperm(len(labels), generator=gen)
        for i in range(0, len(labels), args.batch_size):
            idx = order[i:i + args.batch_size]
            logits = train_batch(spikes(rates[idx], args.steps, gen), labels[idx])
            correct += int((logits.argmax(1) == labels[idx]).sum())
        times.append(time.perf_counter() - t0)
        print(f"  {algorithm:<6} epoch {epoch:>2}  train acc {correct / len(labels):.3f}  {times[-1]:.1f} s",
              flush=True)
    test = accuracy(model, test_rates, test_labels, args.steps, gen)
    return dict(algorithm=algorithm, test_acc=test, seconds_per_epoch=sorted(times)[len(times) // 2],
                peak_mb=peak / 2 ** 20)


def gradient_comparison(data, args):
    """Cosine similarity of each rule's gradient with BPTT's, on one batch at initialisation."""
    rates, labels = data[0], data[1]
    model = network(rates.shape[1], args.hidden, args.classes, args.neuron, args.tau, args.seed)
    x = spikes(rates[:args.batch_size], args.steps, torch.Generator().manual_seed(args.seed + 1))
    y = labels[:args.batch_size]
    return online.compare_grads(model, x, lambda t, out: step_loss(out, y, x.shape[0]),
                                algorithms=("eprop", "ottt", "sltt"))


def main(argv=None) -> list[dict]:
    p = training.options(__doc__, epochs=10, lr=1e-2, tiny="T=12, 2 classes, 1 epoch (seconds)")
    p.set_defaults(batch_size=16)
    p.add_argument("--steps", type=int, default=500, help="T, time steps per sample")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--units", type=int, default=40, help="input units (embedding dimension)")
    p.add_argument("--dim", type=int, default=1, help="manifold dimension")
    p.add_argument("--samples", type=int, default=100, help="samples per class (80%% train, 20%% test)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--tau", type=float, default=5.0, help="membrane time constant (steps)")
    p.add_argument("--max-rate", type=float, default=0.2, help="firing probability per step at coordinate 1")
    p.add_argument("--neuron", choices=tuple(NEURONS), default="lif")
    p.add_argument("--algorithms", nargs="+", choices=("bptt", "eprop", "ottt", "sltt"),
                   default=["bptt", "eprop", "ottt"])
    p.add_argument("--plot", default=None, help="write the cosine-similarity plot here (PNG; needs matplotlib)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (1 suits the small per-step ops of online rules on a busy CPU)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tiny:
        args.steps, args.classes, args.units, args.samples, args.hidden, args.epochs = 12, 2, 8, 10, 8, 1
    torch.manual_seed(args.seed)
    rates, labels = rate_coded(args.classes, args.units, args.steps, args.samples, args.dim, args.seed,
                               args.max_rate)
    split = int(0.8 * len(labels))
    data = (rates[:split], labels[:split], rates[split:], labels[split:])
    print(f"randman (rate-coded): {args.classes} classes, {args.units} units, T={args.steps}, "
          f"{split} train / {len(labels) - split} test samples, {args.neuron.upper()} hidden {args.hidden}")
    rows = [run(algorithm, data, args) for algorithm in args.algorithms]
    print("\n| algorithm | test acc | s / epoch (median) | peak memory, one batch (MiB) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['algorithm']} | {r['test_acc']:.3f} | {r['seconds_per_epoch']:.1f} | {r['peak_mb']:.1f} |")
    comparison = gradient_comparison(data, args)
    print(f"\nGradients at initialisation, one batch, against BPTT:\n{comparison.table()}")
    if args.plot:
        comparison.plot(args.plot)
        print(f"wrote {args.plot}")
    return rows


if __name__ == "__main__":
    main()
