"""Online learning (``neurodsl.online``): one online step against the plain inference step of the same layer.

Layer ``Linear(n_in, n) + ALIF`` (learnable tau), batch B, one step at a time. Rows (``mode``):

* ``infer``: the layer's inference step (``torch.no_grad``, states carried): what the online step is compared with;
* ``step``: ``rule.step(x_t)``: forward values and the rule's trace update (e-prop: neuron-local traces in the
  generated tangent step and every per-synapse trace; OTTT: the presynaptic trace; SLTT: none);
* ``step+backward``: ``rule.step`` then ``rule.backward(loss_t)`` (the gradients out of the traces);
* ``step (factorised)``: e-prop on ``Linear(n_in, n) + LIF`` with reset by subtraction, not differentiated (J and K
  constant: the exact trace is B·n_in presynaptic traces, neurodsl.online.factor), against that layer's inference;
* ``peak``: peak tensor memory (``peak_mem_mb``) of ``T`` training steps: BPTT over the sequence against the
  rules (whose memory does not grow with T: tests/test_online.py checks 100 against 1000 steps).
"""
from __future__ import annotations

import torch
from torch import nn

from . import timing
from .context import Context


def _layer(n_in: int, n: int, device, factorised: bool = False):
    import neurodsl as nd
    torch.manual_seed(0)
    neuron = (nd.zoo.LIF(backend="torch", reset_mode="soft", detach_reset=True, learnable=("tau",)) if factorised
              else nd.zoo.ALIF(backend="torch", learnable=("tau",)))
    return nn.Sequential(nn.Linear(n_in, n), neuron).to(device)


def online_step(ctx: Context, item: dict) -> None:
    """Every row with one intra-op thread: the per-step ops are small, and on a busy CPU a second thread makes
    them many times slower (both the inference step and the online steps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _online_step(ctx, item)
    finally:
        torch.set_num_threads(threads)


def _online_step(ctx: Context, item: dict) -> None:
    import neurodsl as nd
    from neurodsl import online
    (B, n_in, n), T = item["shape"], item["T"]
    device = ctx.device
    case = f"Linear({n_in},{n})+ALIF, B={B}"
    base = dict(scenario=item["name"], neuron="alif", dtype="float32", case=case, shape=f"{B}x{n_in}x{n}",
                n_neurons=B * n)
    gen = torch.Generator(device=device).manual_seed(1)
    x = (torch.rand((T, B, n_in), generator=gen, device=device) < 0.2).float()
    loss = lambda t, out: out.sum()  # noqa: E731
    model = _layer(n_in, n, device)
    counter = iter(range(10 ** 9))

    def infer():
        with torch.no_grad():
            model(x[next(counter) % T][None])
    nd.reset_states(model)
    reps = 2 if ctx.tiny else 30
    result = timing.measure(infer, device, warmup=1 if ctx.tiny else 5, reps=reps)
    infer_ms = result["min_ms"]
    ctx.add(**base, impl="neurodsl (inference)", mode="infer", T=1, min_ms=result["min_ms"],
            median_ms=result["median_ms"], reps=reps, note="Linear + the neuron's forward kernel, one step")
    for name in item["rules"]:
        rule = online.RULES[name](model)

        def step():
            rule.step(x[next(counter) % T])

        def update():
            t = next(counter) % T
            rule.backward(loss(t, rule.step(x[t])))
        for mode, fn in (("step", step), ("step+backward", update)):
            if ctx.scenario_left() <= 0:
                ctx.add(**base, impl=f"neurodsl-{name}", mode=mode, note="skipped: scenario time budget spent")
                continue
            result = timing.measure(fn, device, warmup=1 if ctx.tiny else 5, reps=reps)
            ctx.add(**base, impl=f"neurodsl-{name}", mode=mode, T=1, min_ms=result["min_ms"],
                    median_ms=result["median_ms"], reps=reps,
                    note=f"{result['min_ms'] / infer_ms:.2f}x the inference step (min over min)")
        rule.reset()
    model.zero_grad()
    _factorised_step(ctx, item, x, loss, base, reps)
    for impl, run in [("bptt", lambda: online.bptt(model, x, loss))] + [
            (name, lambda name=name: _online_run(online.RULES[name](model), x, loss)) for name in item["rules"]]:
        if ctx.scenario_left() <= 0:
            ctx.add(**base, impl=f"neurodsl-{impl}", mode="peak", T=T, note="skipped: scenario time budget spent")
            continue
        peak = online.peak_memory(run) / 2 ** 20
        ctx.add(**base, impl=f"neurodsl-{impl}", mode="peak", T=T, peak_mem_mb=peak, min_ms=0.0,
                note=f"peak tensor memory of {T} training steps")
        model.zero_grad()


def _online_run(rule, x, loss):
    for t in range(x.shape[0]):
        rule.backward(loss(t, rule.step(x[t])))


def _factorised_step(ctx: Context, item: dict, x, loss, base: dict, reps: int) -> None:
    """e-prop's factorised trace (LIF, reset by subtraction not differentiated) against that layer's inference."""
    import neurodsl as nd
    from neurodsl import online
    (B, n_in, n), T = item["shape"], item["T"]
    model = _layer(n_in, n, ctx.device, factorised=True)
    base = dict(base, neuron="lif (soft reset, detached)", case=f"Linear({n_in},{n})+LIF soft detached, B={B}")
    counter = iter(range(10 ** 9))
    rule = online.EProp(model)

    def infer():
        with torch.no_grad():
            model(x[next(counter) % T][None])

    def update():
        t = next(counter) % T
        rule.backward(loss(t, rule.step(x[t])))
    nd.reset_states(model)
    times = {}
    for mode, fn in (("infer", infer), ("step+backward (factorised)", update)):
        if ctx.scenario_left() <= 0:
            ctx.add(**base, impl="neurodsl-eprop", mode=mode, note="skipped: scenario time budget spent")
            return
        times[mode] = timing.measure(fn, ctx.device, warmup=1 if ctx.tiny else 5, reps=reps)
    assert rule._trace[1]["factor"] is not None
    ctx.add(**base, impl="neurodsl (inference)", mode="infer", T=1, min_ms=times["infer"]["min_ms"],
            median_ms=times["infer"]["median_ms"], reps=reps, note="Linear + the neuron's forward kernel, one step")
    r = times["step+backward (factorised)"]
    ctx.add(**base, impl="neurodsl-eprop", mode="step+backward (factorised)", T=1, min_ms=r["min_ms"],
            median_ms=r["median_ms"], reps=reps,
            note=f"{r['min_ms'] / times['infer']['min_ms']:.2f}x the inference step (min over min)")
    model.zero_grad()
