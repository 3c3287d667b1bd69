"""The naming scheme of every identifier in generated code.

User names (states, inputs, parameters) reach generated code only behind a *category* prefix —
``v_`` (state before charge), ``h_`` (charged), ``n_`` (after reset), ``x_`` (input), ``p_`` (parameter) —
and every other name derived from them puts a *role* in front: ``<role>_<category>_<user name>``, with roles
made of letters only (``seq``, ``ptr``, ``init``, ``save``, ...; gradients prepend ``g``: ``gv_v``). Since no
role or category contains an underscore, no two derived names can be equal (the first ``_`` ends the role),
and fixed names (``spike``, ``fire``, ``T``, ``offs``, ``_step``) never have that form. Nothing a user names a
state can collide with a generated name (tests/test_naming.py draws random names against every template).

>>> derived("seq", input_name("a")), derived("seq", input_name("a_seq"))
('seq_x_a', 'seq_x_a_seq')
>>> derived("ptr", param_name("tau")), derived("ptr", param_name("tau_ptr"))
('ptr_p_tau', 'ptr_p_tau_ptr')
"""
from __future__ import annotations

import sympy as sp

SPIKE = "spike"
FIRE = "fire"


def prev_name(state: str) -> str:
    """State value at t-1 (what ``charge`` reads)."""
    return f"v_{state}"


def charged_name(state: str) -> str:
    """Charged value H[t] (what ``fire`` and ``reset`` read)."""
    return f"h_{state}"


def new_name(state: str) -> str:
    """State value at t after reset."""
    return f"n_{state}"


def input_name(inp: str) -> str:
    return f"x_{inp}"


def param_name(param: str) -> str:
    return f"p_{param}"


def grad_name(symbol_name: str) -> str:
    """Gradient of the loss w.r.t. the value named ``symbol_name``."""
    return f"g{symbol_name}"


def derived(role: str, name: str) -> str:
    """``name`` in a ``role`` (letters only): the pointer, sequence, saved copy, ... of a plan name."""
    if not role.isalpha():
        raise ValueError(f"a role is letters only, got {role!r}")
    return f"{role}_{name}"


def sym(name: str) -> sp.Symbol:
    """The real-valued symbol every plan uses for ``name``."""
    return sp.Symbol(name, real=True)
