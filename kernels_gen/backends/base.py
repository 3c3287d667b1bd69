"""What a backend is: a printer, a context builder, templates and a launcher, in one folder.

A backend subclasses :class:`Backend` and registers an instance with :func:`kernels_gen.backends.register`.
Its templates live in its folder and start with a declaration of the names they use::

    {#- uses: name, key, fwd_args, ... -#}

:func:`render_template` checks the context it is given against that declaration (and the declaration against
what the template really reads, via Jinja2's own parser), so a template and its context builder cannot drift
apart; tests/test_templates.py renders every template of every backend this way.
"""
from __future__ import annotations

import abc

import functools
import re
from pathlib import Path

import jinja2
import jinja2.meta
import torch

from ..errors import BackendError, CodegenError
from ..names import charged_name, derived, grad_name, input_name, new_name, param_name, prev_name
from ..plan import CODEGEN_VERSION, SPIKE, TSPIKE, KernelPlan, tangent_name
from ..versions import versions

SHARED_TEMPLATES = Path(__file__).with_name("templates")
_USES = re.compile(r"\{#-?\s*uses:(?P<names>[^#]*?)\s*-?#\}")


def indent_block(lines: list[str], spaces: int) -> str:
    """Indent each line of a straight-line program; an empty program becomes ``pass``.

    >>> print(indent_block(["a = 1", "b = a"], 4))
        a = 1
        b = a
    """
    pad = " " * spaces
    return "\n".join(pad + line for line in (lines or ["pass"]))


@functools.lru_cache(maxsize=None)
def environment(folder: str) -> jinja2.Environment:
    """The Jinja2 environment of a backend's template folder (plus the shared header)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([folder, str(SHARED_TEMPLATES)]),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    env.filters["block"] = indent_block
    return env


def declared_names(env: jinja2.Environment, template: str) -> set[str]:
    """The names ``template`` declares in its ``{#- uses: ... -#}`` header (and those of what it includes)."""
    source = env.loader.get_source(env, template)[0]
    found = _USES.search(source)
    if found is None:
        raise CodegenError("ND205", f"template {template} declares no names ({{#- uses: ... -#}})")
    names = {n.strip() for n in found.group("names").replace("\n", " ").split(",") if n.strip()}
    for included in jinja2.meta.find_referenced_templates(env.parse(source)):
        names |= declared_names(env, included)
    return names


def used_names(env: jinja2.Environment, template: str) -> set[str]:
    """The names ``template`` (and what it includes) reads from its context, from Jinja2's parser."""
    source = env.loader.get_source(env, template)[0]
    names = set(jinja2.meta.find_undeclared_variables(env.parse(source)))
    for included in jinja2.meta.find_referenced_templates(env.parse(source)):
        names |= used_names(env, included)
    return names


def render_template(env: jinja2.Environment, template: str, context: dict) -> str:
    """Render ``template`` with exactly the names it declares (ND205 on a missing or an unused name)."""
    declared = declared_names(env, template)
    if set(context) != declared:
        raise CodegenError("ND205", f"template {template}: context has {sorted(set(context) - declared)} it does not "
                                    f"declare and lacks {sorted(declared - set(context))}")
    return env.get_template(template).render(**context)


def header_context(*, label: str, key: str, fingerprint: str, backend: str, meta: dict) -> dict:
    """The names ``_header.j2`` uses: what every generated file is stamped with."""
    return dict(label=label, key=key, fingerprint=fingerprint, codegen_version=CODEGEN_VERSION, backend=backend,
                meta=repr(meta), **versions())


def plan_meta(plan: KernelPlan) -> dict:
    """What a launcher needs at run time, so a cache hit needs no symbolic work."""
    return dict(states=plan.states, inputs=plan.inputs, saved_states=plan.saved_states,
                prev_states=plan.prev_states, needed_inputs=plan.needed_inputs,
                params=tuple((p.name, p.vector, p.needs_grad) for p in plan.params), compute_dtype=plan.compute_dtype)


class PlanNames:
    """Every identifier the step kernels of ``plan`` use, built once from :mod:`kernels_gen.names`."""

    def __init__(self, plan: KernelPlan):
        self.prev = [prev_name(s) for s in plan.states]
        self.new = [new_name(s) for s in plan.states]
        self.params = [param_name(p.name) for p in plan.params]
        self.inputs = [input_name(i) for i in plan.inputs]
        self.needed_inputs = [input_name(i) for i in plan.needed_inputs]
        self.saved = [charged_name(s) for s in plan.saved_states]
        self.prev_states = [prev_name(s) for s in plan.prev_states]
        self.grad_new = [grad_name(n) for n in self.new]
        self.grad_prev = [grad_name(v) for v in self.prev]
        self.grad_inputs = [grad_name(x) for x in self.inputs]
        self.grad_params = [grad_name(param_name(p.name)) for p in plan.grad_params]

    @staticmethod
    def role(role: str, names: list[str]) -> list[str]:
        return [derived(role, n) for n in names]


class TangentNames:
    """The identifiers of a plan's tangent program: its arguments (values, then tangents) and its returns."""

    def __init__(self, plan: KernelPlan, n: PlanNames | None = None):
        n = n or PlanNames(plan)
        self.prev = [tangent_name(v) for v in n.prev]
        self.new = [tangent_name(v) for v in n.new]
        self.inputs = [tangent_name(x) for x in n.inputs]
        self.params = [tangent_name(param_name(p.name)) for p in plan.grad_params]
        self.args = n.prev + n.inputs + n.params + self.prev + self.inputs + self.params
        self.returns = [SPIKE] + n.new + [TSPIKE] + self.new


class Backend(abc.ABC):
    """One code generator and launcher. Subclasses set the class attributes and implement the abstract methods
    (a backend missing one cannot be instantiated)."""

    name = ""
    folder: Path = Path()
    template = "kernels.py.j2"
    tangent_template = "tangent.py.j2"
    #: kernels load inputs and incoming gradients of any float dtype (fp16/bf16/fp32/fp64) and write input
    #: gradients in that dtype, converting in registers; otherwise the ops convert them to the compute dtype
    native_float_io = False
    #: forward returns tensors it allocated itself, never an input or a view of one (the ops then skip the
    #: aliasing check a custom op's outputs need)
    fresh_outputs = False

    @abc.abstractmethod
    def unavailable(self, device: torch.device) -> BackendError | None:
        """None when this backend can run tensors on ``device``, else the typed error saying why not."""
        raise NotImplementedError

    def auto_priority(self, device: torch.device) -> int | None:
        """Rank for ``backend='auto'`` on ``device`` (the highest available wins); None: never chosen by auto."""
        return None

    @abc.abstractmethod
    def printer(self, compute_dtype: str = "float32"):
        """This backend's expression printer."""
        raise NotImplementedError

    @abc.abstractmethod
    def context(self, plan: KernelPlan, key: str, label: str) -> dict:
        """The names this backend's template declares (``{#- uses: ... -#}``), for ``plan``."""
        raise NotImplementedError

    def render(self, plan: KernelPlan, key: str, label: str) -> str:
        """The full source of this backend's kernel module for ``plan``."""
        return render_template(environment(str(self.folder)), self.template, self.context(plan, key, label))

    @abc.abstractmethod
    def forward(self, module, inputs, init_states, params, store_seqs, io_dtype, save):
        """(spikes [T, N] in ``io_dtype``, states, saved charged values) from the generated module."""
        raise NotImplementedError

    @abc.abstractmethod
    def backward(self, module, grad_spikes, grad_states, saved, inputs, init_states, params, store_seqs):
        """(grads of inputs [T, N], of initial states [N], per-neuron grads of learnable params [N])."""
        raise NotImplementedError

    # -- forward-mode derivative (forward AD, online learning) ------------------------------------------
    # A separate module, generated only when asked for, from a plan whose ``tangent`` program is filled
    # (neurodsl.analysis.tangent.derive_tangent_plan). A backend that lacks it inherits these refusals (ND310).
    def tangent_context(self, plan: KernelPlan, key: str, label: str) -> dict:
        """The names ``tangent_template`` declares (a backend with a tangent kernel overrides this)."""
        raise self._no_tangent()

    def render_tangent(self, plan: KernelPlan, key: str, label: str) -> str:
        """The source of this backend's tangent module for ``plan`` (its ``tangent`` program filled)."""
        context = self.tangent_context(plan, key, label)
        return render_template(environment(str(self.folder)), self.tangent_template, context)

    def _no_tangent(self) -> BackendError:
        return BackendError("ND310", f"backend '{self.name}' has no tangent (forward-mode) kernel, which forward-mode "
                                     "AD (torch.func.jvp, torch.autograd.forward_ad) and neurodsl.online need; use "
                                     "backend='torch' (any device) or backend='triton'")

    def tangent(self, module, inputs, init_states, params, tangent_inputs, tangent_init, tangent_params, store_seqs,
                io_dtype):
        """The forward pass and its tangent, from the plan's ``tangent`` program.

        Takes what :meth:`forward` takes plus one tangent per input ([T, N]), per initial state ([N]) and per
        learnable param (``plan.grad_params``: [N] or [1], as the param), all in the compute dtype. Returns
        ``(spikes [T, N], states, spike tangents [T, N], state tangents)``, spikes and their tangents in
        ``io_dtype``, states (final [N], or [T, N] sequences with ``store_seqs``) in the compute dtype.
        ``module`` is the tangent module (:meth:`render_tangent`).
        """
        raise self._no_tangent()

    def tangent_step(self, module, prev, inputs, params, tangent_prev, tangent_inputs, tangent_params):
        """One step of the tangent program with several tangent directions per neuron (online learning).

        Every tensor broadcasts to one shape ``[*S, D]``: values shaped ``[*S, 1]`` (states, inputs, params, or
        [1] for a scalar param), tangents ``[*S, D]`` or anything broadcasting to it (D directions). Returns
        ``(spike [*S, 1], new states [*S, 1] each, spike tangent [*S, D], state tangents [*S, D] each)``.
        This default expands everything and runs :meth:`tangent` with T = 1; a backend may run the program on
        the broadcast shapes directly (the torch backend does).
        """
        tensors = [*prev, *inputs, *params, *tangent_prev, *tangent_inputs, *tangent_params]
        full = torch.broadcast_shapes(*(t.shape for t in tensors))
        flat = lambda t: t.expand(full).reshape(-1).contiguous()  # noqa: E731
        vector = lambda t: t.reshape(1) if t.numel() == 1 else flat(t)  # noqa: E731
        spikes, states, tspikes, tstates = self.tangent(
            module, [flat(x)[None] for x in inputs], [flat(v) for v in prev], [vector(p) for p in params],
            [flat(t)[None] for t in tangent_inputs], [flat(t) for t in tangent_prev],
            [vector(t) for t in tangent_params], False, prev[0].dtype)
        first = lambda t: t.reshape(full)[..., :1]  # noqa: E731 - the values are equal along the directions
        return first(spikes), [first(v) for v in states], tspikes.reshape(full), [t.reshape(full) for t in tstates]


def print_program(program, printer) -> list[str]:
    """``target = expr`` lines for a tuple of :class:`~kernels_gen.plan.Assign`."""
    return [f"{a.target.name} = {printer.doprint(a.expr)}" for a in program]
