"""No user name can collide with a generated identifier (kernels_gen/names.py), on any backend.

Names are drawn to hit the generated ones: suffixes and prefixes the templates use (``a`` and ``a_seq``,
``tau`` and ``tau_ptr``), the templates' own locals (``spike``, ``T``, ``offs``, ``idx``, ``torch``, ``tl``),
and random identifiers. Every drawn neuron runs forward and backward on every backend and matches the
reference loop.
"""
from __future__ import annotations

import keyword

import pytest
import torch
from hypothesis import given, settings, strategies as st

import neurodsl as nd
from kernels_gen import backends

from helpers import compare

TRICKY = ["a", "a_seq", "seq_x_a", "tau", "tau_ptr", "ptr_p_tau", "x", "x_x", "v", "v_v", "h_v", "n_v", "spike",
          "fire", "T", "N", "t", "i", "idx", "offs", "mask", "zero", "BLOCK", "COMPUTE", "torch", "tl", "triton",
          "gspike", "gspike_total", "gfire", "save", "init", "states", "params", "inputs", "store_seqs", "grad_spikes",
          "acc_gp_tau", "gout_gn_v", "init_v_v", "out_v_v", "back", "has_prev", "K", "A_PARAMS", "META", "c0", "b0",
          "r0", "q0", "k0", "m0", "forward_kernel", "backward_kernel"]
identifiers = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,8}", fullmatch=True).filter(lambda n: not keyword.iskeyword(n))
names = st.one_of(st.sampled_from(TRICKY), identifiers)

RESERVED = {"spec", "variants", "surrogate", "parallel", "backend", "forward", "reset", "charge", "fire", "analysis"}


def _neuron(states, inputs, params):
    s1, s2 = states
    x1, x2 = inputs
    p1, p2 = params

    def charge(self, a, b):
        return {s1: getattr(self, s1) * 0.5 * getattr(self, p1) + a, s2: 0.6 * getattr(self, s2) + b * getattr(self, p2)}

    def fire(self):
        return getattr(self, s1) - 1.0 + 0.2 * getattr(self, s2)

    def reset(self, s):
        return {s1: getattr(self, s1) * (1 - s), s2: getattr(self, s2) + 0.1 * s}

    import inspect
    charge.__signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                              for n in ("self", x1, x2)])
    namespace = {s1: nd.State(0.0), s2: nd.State(0.0), p1: nd.Param(1.2), p2: nd.Param(0.8),
                 "charge": charge, "fire": fire, "reset": reset, "__module__": __name__}
    return type("Named", (nd.Neuron,), namespace)


@settings(max_examples=8)
@given(st.lists(names, min_size=6, max_size=6, unique=True).filter(lambda ns: not set(ns) & RESERVED))
@pytest.mark.parametrize("backend", backends.names())
def test_random_user_names_never_collide(backend, drawn):
    states, inputs, params = drawn[:2], drawn[2:4], drawn[4:]
    cls = _neuron(states, inputs, params)
    layer = cls(backend=backend, learnable=tuple(params))
    torch.manual_seed(0)
    xs = [torch.rand(5, 3) * 1.5 for _ in inputs]
    compare(layer, *xs)


@pytest.mark.parametrize("backend", backends.names())
def test_names_that_once_collided(backend):
    """Inputs ``a`` and ``a_seq`` (the torch loop overwrote one with the other) and parameters ``tau`` and
    ``tau_ptr`` (Triton loaded ``p_tau_ptr`` from ``p_tau_ptr_ptr``)."""
    cls = _neuron(("v", "w"), ("a", "a_seq"), ("tau", "tau_ptr"))
    layer = cls(backend=backend, learnable=("tau", "tau_ptr"))
    torch.manual_seed(1)
    xs = [torch.rand(6, 4) * 1.5, torch.rand(6, 4) * 3.0]
    spikes, _, _ = compare(layer, *xs)
    assert 0 < spikes.sum() < spikes.numel()
