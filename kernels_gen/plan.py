"""The kernel plan: the typed contract between the front end and the code generator.

A plan holds one time step of a neuron as sympy assignments over symbols whose
names are the identifiers the generated code uses (:mod:`kernels_gen.names`),
plus what the kernels must load, save and return. ``kernels_gen`` prints and
templates a plan; it never looks at how the plan was derived.

>>> import sympy as sp
>>> v, x, h = sp.symbols("v_v x_x h_v")
>>> Assign(h, v + x).target.name
'h_v'
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import sympy as sp

from .names import FIRE, SPIKE, charged_name, grad_name, input_name, new_name, param_name, prev_name, sym

CODEGEN_VERSION = "7"

__all__ = ["CODEGEN_VERSION", "Assign", "ParamPlan", "KernelPlan", "ParallelPlan", "SPIKE", "FIRE", "TSPIKE",
           "prev_name", "charged_name", "new_name", "input_name", "param_name", "grad_name", "tangent_name", "sym"]

#: The tangent (forward-mode derivative) of the spike in a tangent program.
TSPIKE = "tspike"


def tangent_name(symbol_name: str) -> str:
    """Tangent (forward-mode derivative) of the value named ``symbol_name``: ``v_v`` -> ``tv_v``.

    Like gradient names (``g`` + name), a ``t`` in front of a category-prefixed name can equal no derived name
    (those put a letters-only role and ``_`` before a category-prefixed name) and no fixed name.

    >>> tangent_name(prev_name("v")), tangent_name(param_name("tau"))
    ('tv_v', 'tp_tau')
    """
    return f"t{symbol_name}"


def _fingerprint(fields: list, programs) -> str:
    """Content hash of plan fields and step programs (with the codegen version)."""
    parts = [CODEGEN_VERSION] + [repr(f) for f in fields]
    for program in programs:
        parts += [f"{a.target.name}={sp.srepr(a.expr)}" for a in program]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Assign:
    """``target = expr`` in a straight-line step program."""

    target: sp.Symbol
    expr: sp.Expr


@dataclass(frozen=True)
class ParamPlan:
    """A parameter as the kernel sees it: one scalar, or one value per neuron."""

    name: str
    vector: bool
    needs_grad: bool


@dataclass(frozen=True)
class KernelPlan:
    """Everything needed to generate forward and backward kernels for one neuron.

    Programs (tuples of :class:`Assign`), evaluated per neuron and time step:

    * ``forward``: from prev states, inputs and params to charged values, ``fire``,
      ``spike`` and new states.
    * ``recompute_prev``: from the charged values of step t-1 to the state values
      at t-1 (only the states in ``prev_states``, which backward reads).
    * ``backward``: from the recomputed forward values and the incoming gradients
      ``gspike`` and ``gn_<state>`` to ``gv_<state>``, ``gx_<input>`` and
      ``gp_<param>`` for params with ``needs_grad``.
    * ``tangent``: forward-mode derivative of one step, self-contained (it recomputes the forward values):
      from prev states, inputs, params and their tangents ``tv_<state>``, ``tx_<input>``, ``tp_<param>``
      (params with ``needs_grad`` only) to ``spike``, ``n_<state>``, ``tspike`` and ``tn_<state>``. The
      tangent outputs are linear in the tangent inputs with per-neuron coefficients computed first, so the
      program also runs on tangents with extra trailing dimensions (several directions per neuron, by
      broadcasting the forward values).
    """

    name: str
    states: tuple[str, ...]
    inputs: tuple[str, ...]
    params: tuple[ParamPlan, ...]
    forward: tuple[Assign, ...]
    recompute_prev: tuple[Assign, ...]
    backward: tuple[Assign, ...]
    saved_states: tuple[str, ...]
    prev_states: tuple[str, ...]
    needed_inputs: tuple[str, ...]
    compute_dtype: str = "float32"
    tangent: tuple[Assign, ...] = ()

    @property
    def needs_prev(self) -> bool:
        return bool(self.prev_states)

    @property
    def grad_params(self) -> tuple[ParamPlan, ...]:
        return tuple(p for p in self.params if p.needs_grad)

    def fingerprint(self) -> str:
        """Content hash of everything that shapes the generated code."""
        return _fingerprint([self.name, self.states, self.inputs, self.params, self.saved_states, self.prev_states,
                             self.needed_inputs, self.compute_dtype],
                            (self.forward, self.recompute_prev, self.backward, self.tangent))


@dataclass(frozen=True)
class ParallelPlan:
    """A neuron whose per-step update is affine in its states, for scan / matmul / exact forms.

    Programs (tuples of :class:`Assign`), vectorised over time:

    * ``coefficients``: inputs, params -> ``a_<i>_<j>`` and ``b_<i>`` with H = A·V[t-1] + b.
    * ``reset``: ``spike``, params -> ``g_<i>_<j>`` and ``c_<i>`` with V[t] = G(s)·H + c(s)
      (empty when the neuron has no spike-driven update).
    * ``fire``: charged values ``h_<state>``, params -> ``fire``.
    * ``spike``: ``fire``, params -> ``spike`` (forward value), ``dspike`` (surrogate derivative)
      and ``dalpha`` (derivative w.r.t. the surrogate's alpha).
    """

    name: str
    states: tuple[str, ...]
    inputs: tuple[str, ...]
    params: tuple[ParamPlan, ...]
    coefficients: tuple[Assign, ...]
    reset: tuple[Assign, ...]
    fire: tuple[Assign, ...]
    spike: tuple[Assign, ...]
    time_invariant: bool
    a_params: tuple[str, ...] = ()   # parameters that appear in A (matmul needs them scalar)

    def fingerprint(self) -> str:
        return _fingerprint(["parallel", self.name, self.states, self.inputs, self.params, self.time_invariant,
                             self.a_params], (self.coefficients, self.reset, self.fire, self.spike))
