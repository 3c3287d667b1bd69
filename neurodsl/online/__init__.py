"""Online learning derived from the equations: eligibility traces, memory independent of the sequence length.

Every rule needs, per neuron, the Jacobians of the step equations (:mod:`neurodsl.analysis.jacobians`); the
generated tangent kernels evaluate them together with the forward step. Rules (:mod:`.rules`): :class:`RTRL`
(exact, the oracle), :class:`EProp` / :class:`OSTL` (exact per-neuron traces), :class:`OTTT` (presynaptic traces
with the derived leak) and :class:`SLTT` (same-step gradient only). Per step::

    rule = nd.online.EProp(model)        # model: nn.Sequential of nn.Linear / nn.Conv2d and neurodsl neurons
    for t in range(T):
        out = rule.step(x[t])            # [batch, ...] -> the model's output at t
        rule.backward(loss_fn(t, out))   # accumulates .grad; optimizer.step() whenever you like
    rule.reset()                         # before the next sequence

:func:`gradients` runs any algorithm over a whole sequence ('bptt' as the reference) and :func:`compare_grads`
tabulates each one's cosine similarity with BPTT. See docs/online.md.
"""
from .compare import ALGORITHMS, GradientComparison, bptt, compare_grads, gradients
from .memory import peak_memory
from .rules import OSTL, OTTT, RTRL, RULES, SLTT, EProp, OnlineRule

__all__ = ["OnlineRule", "RTRL", "EProp", "OSTL", "OTTT", "SLTT", "RULES", "ALGORITHMS", "gradients",
           "compare_grads", "GradientComparison", "bptt", "peak_memory"]
