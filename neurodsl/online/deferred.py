"""E-prop over a stored sequence: the traces by a parallel scan instead of step by step.

Given the spikes, every trace recursion is linear: ε_t = J_t ε_{t-1} + b_t with J_t, b_t known once the forward
pass has run. So the deferred mode runs the chain over all T steps (storing each neuron layer's values and the
same-step learning signals), reads J, K, G and the spike's row off the generated tangent step (one direction
per state, input and parameter), and solves each recursion with :func:`kernels_gen.parallel.scan` (log-depth).
The gradients equal online e-prop's; memory is O(T) (what the online form avoids), time is parallel in T.
"""
from __future__ import annotations

import torch

from kernels_gen.parallel import scan

from ..errors import OnlineError
from .model import accumulate
from .rules import EProp


def deferred_eprop(model, inputs: torch.Tensor, loss_fn) -> torch.Tensor:
    """Accumulate e-prop's ``.grad`` for Σ_t loss_fn(t, output_t) over ``inputs`` [T, batch, ...]; returns the
    total loss."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 2:
        raise OnlineError("ND906", f"the deferred mode takes inputs [T, batch, ...], got "
                                   f"{tuple(getattr(inputs, 'shape', ()))}")
    rule = EProp(model)
    T = inputs.shape[0]
    records = {i: dict(prev=[], current=[], z=[], signal=[None] * T) for i in rule.units}
    total = 0.0
    for t, x in enumerate(inputs):
        h = x
        for i, module in enumerate(rule.modules):
            if i in rule.units:
                h = _step(rule, i, h, records[i], t)
            elif i in rule.synapse_of.values():
                records[i + 1]["z"].append(h.detach())
                h = rule._synapse_step(i, module, h)
            else:
                h = module(h)
        total = total + loss_fn(t, h)
    total.backward()
    for i in rule.units:
        _gradients(rule, i, records[i])
    rule.reset()
    return total.detach()


def _step(rule, i, current, record, t):
    """The forward step and ds/dI of one neuron layer; its values are stored for the scan."""
    unit = rule.units[i]
    values = unit.values(current)
    zero, one = values.new_zeros(1, 1, 1), values.new_ones(1, 1, 1)
    prev = [v[..., None] for v in unit.states]
    spike, new, tspike, _ = unit.tangent_step(prev, values[..., None], unit.params("bn"), [zero] * len(prev), one,
                                              [zero] * len(unit.learnable))
    record["prev"].append(torch.stack(unit.states))
    record["current"].append(values)
    unit.states = [v[..., 0] for v in new]

    def signal(grad):
        record["signal"][t] = grad.detach().reshape(unit.batch, unit.n).to(unit.cdt)
    return unit.output(current, spike[..., 0], tspike[..., 0], signal, rule._anchor)


def _gradients(rule, i, record) -> None:
    """Scan every trace of neuron layer ``i`` over time and contract it with the stored learning signals."""
    unit = rule.units[i]
    prev, current = torch.stack(record["prev"]), torch.stack(record["current"])        # [T, k, B, n], [T, B, n]
    T, k = prev.shape[:2]
    signal = torch.stack([s if s is not None else torch.zeros_like(current[0]) for s in record["signal"]])
    P = len(unit.learnable)
    eye = torch.eye(k + 1 + P, dtype=current.dtype, device=current.device)
    col = lambda c: eye[c].reshape(1, 1, 1, -1)  # noqa: E731 - one direction per state, the input, each parameter
    _, _, ts, tn = unit.tangent_step([prev[:, m, ..., None] for m in range(k)], current[..., None], unit.params("bn"),
                                     [col(m) for m in range(k)], col(k), [col(k + 1 + q) for q in range(P)])
    J = torch.stack([t[..., :k] for t in tn], -2)                                    # [T, B, n, k, k]
    K = torch.stack([t[..., k] for t in tn], -1)                                     # [T, B, n, k]
    N = unit.batch * unit.n

    def readout(b: torch.Tensor, direct: torch.Tensor, rows: int, start=()) -> torch.Tensor:
        """e_t = S_t·ε_{t-1} + direct_t for ε_t = J_t ε_{t-1} + b_t, b: [T, B, n, rows, k]; ε before the first
        step is 0, or 1 for the states in ``start`` (those that start at the parameter)."""
        A = J[:, :, :, None].expand(T, unit.batch, unit.n, rows, k, k).reshape(T, N * rows, k, k)
        v0 = b.new_zeros(N * rows, k)
        v0[:, list(start)] = 1.0
        eps = scan(A, b.reshape(T, N * rows, k), v0).reshape(T, unit.batch, unit.n, rows, k)
        eps_prev = torch.cat([v0.reshape(1, unit.batch, unit.n, rows, k), eps[:-1]])
        return (ts[..., None, :k] * eps_prev).sum(-1) + direct                      # [T, B, n, rows]

    for q, name in enumerate(unit.learnable):
        G = torch.stack([t[..., k + 1 + q] for t in tn], -1)                        # [T, B, n, k]
        e = readout(G[..., None, :], ts[..., k + 1 + q, None], 1, unit.starts_at(name))[..., 0]
        flat = unit.flat_param(name)
        total = (signal * e).sum((0, 1))
        accumulate(flat, total if flat.numel() > 1 else total.sum().reshape(1))
    j = rule.synapse_of.get(i)
    if j is None:
        return
    linear = rule.modules[j]
    if linear.bias is not None and linear.bias.requires_grad:
        e = readout(K[..., None, :], ts[..., k, None], 1)[..., 0]
        accumulate(linear.bias, (signal * e).sum((0, 1)))
    if linear.weight.requires_grad:
        z = torch.stack(record["z"]).reshape(T, unit.batch, 1, -1).to(current.dtype)       # [T, B, 1, n_in]
        b = K[:, :, :, None, :] * z[..., None]                                          # [T, B, n, n_in, k]
        e = readout(b, ts[..., k, None] * z, z.shape[-1])
        accumulate(linear.weight, torch.einsum("tbj,tbji->ji", signal, e))
