"""No work outside the kernels that the math does not need, and per-call decisions made once.

A dispatch mode records every aten op of a forward + backward and the size of what it makes: on the Triton
backend (run by the interpreter here, the same launcher as on a GPU) nothing of size [T, N] may be filled with
zeros, converted or copied outside the kernels — for fp32 and for fp16/bf16 inputs. The interpreter's own
``copy_``/``set_`` (how it moves data between numpy and tensors) are not ops of ours and are ignored.
"""
from __future__ import annotations

import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from neurodsl import zoo

T, N = 8, 1024
WASTE = {"aten.zeros.default", "aten.zeros_like.default", "aten.fill_.Scalar", "aten.new_zeros.default",
         "aten._to_copy.default", "aten.clone.default", "aten.to.dtype", "aten.ones_like.default"}


class FullSizeOps(TorchDispatchMode):
    """Counts the ops that return a tensor with at least T·N elements."""

    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outs = out if isinstance(out, (tuple, list)) else [out]
        if any(isinstance(o, torch.Tensor) and o.numel() >= T * N for o in outs):
            self.ops[str(func)] += 1
        return out


def full_size_ops(layer, dtype, grad_states=False):
    x = (torch.rand(T, N) * 2).to(dtype).requires_grad_()
    g = torch.randn(T, N).to(dtype)
    layer(x).backward(g)                              # compile and warm up outside the count
    layer.reset_state()
    with FullSizeOps() as counter:
        out = layer(x)
        loss = (out * g).sum()
        if grad_states:
            loss = loss + layer.v.sum()
        loss.backward()
    return counter.ops


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("neuron", [zoo.LIF, zoo.ALIF], ids=lambda c: c.__name__)
def test_triton_forward_backward_makes_nothing_full_size_outside_the_kernels(neuron, dtype):
    layer = neuron(backend="triton", learnable=("tau",))
    ops = full_size_ops(layer, dtype)
    assert not set(ops) & WASTE, dict(ops)
    # allocated empty, each once: the spikes and the saved charged values (forward), the input gradient (backward)
    from kernels_gen.ops import registered
    saved = len(registered(layer.last_route.kernels.key).meta("triton")["saved_states"])
    assert ops["aten.empty.memory_format"] == 1 + saved + 1, dict(ops)


def test_a_used_final_state_costs_no_full_size_zeros():
    ops = full_size_ops(zoo.LIF(backend="triton"), torch.float32, grad_states=True)
    assert not set(ops) & WASTE, dict(ops)


def test_decisions_are_made_once_per_shape(monkeypatch):
    import neurodsl.dispatch as dispatch
    calls = []
    real = dispatch.kernels_for
    monkeypatch.setattr(dispatch, "kernels_for", lambda *a, **k: calls.append(1) or real(*a, **k))
    layer = zoo.LIF()
    for _ in range(5):
        layer(torch.rand(4, 3))
    layer(torch.rand(6, 3))                           # another T: one more decision
    with torch.no_grad():
        layer(torch.rand(6, 3))                       # grad mode does not change the kernels
    assert len(calls) == 2
    layer.detach_reset = True                         # a setting that changes the generated code
    layer(torch.rand(6, 3))
    assert len(calls) == 3 and layer.last_route.kernels.options.detach_reset
