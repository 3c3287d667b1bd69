"""What a backend is: a printer, a context builder, templates and a launcher, in one folder.

A backend subclasses :class:`Backend` and registers an instance with :func:`kernels_gen.backends.register`.
Its templates live in its folder and start with a declaration of the names they use::

    {#- uses: name, key, fwd_args, ... -#}

:func:`render_template` checks the context it is given against that declaration (and the declaration against
what the template really reads, via Jinja2's own parser), so a template and its context builder cannot drift
apart; tests/test_templates.py renders every template of every backend this way.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import jinja2
import jinja2.meta
import torch

from ..errors import BackendError, CodegenError
from ..names import charged_name, derived, grad_name, input_name, new_name, param_name, prev_name
from ..plan import CODEGEN_VERSION, KernelPlan
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


class Backend:
    """One code generator and launcher. Subclasses set the class attributes and implement the methods."""

    name = ""
    folder: Path = Path()
    template = "kernels.py.j2"
    #: kernels load inputs and incoming gradients of any float dtype (fp16/bf16/fp32/fp64) and write input
    #: gradients in that dtype, converting in registers; otherwise the ops convert them to the compute dtype
    native_float_io = False

    def unavailable(self, device: torch.device) -> BackendError | None:
        """None when this backend can run tensors on ``device``, else the typed error saying why not."""
        raise NotImplementedError

    def auto_priority(self, device: torch.device) -> int | None:
        """Rank for ``backend='auto'`` on ``device`` (the highest available wins); None: never chosen by auto."""
        return None

    def printer(self, compute_dtype: str = "float32"):
        """This backend's expression printer."""
        raise NotImplementedError

    def context(self, plan: KernelPlan, key: str, label: str) -> dict:
        raise NotImplementedError

    def render(self, plan: KernelPlan, key: str, label: str) -> str:
        """The full source of this backend's kernel module for ``plan``."""
        return render_template(environment(str(self.folder)), self.template, self.context(plan, key, label))

    def forward(self, module, inputs, init_states, params, store_seqs, io_dtype, save):
        """(spikes [T, N] in ``io_dtype``, states, saved charged values) from the generated module."""
        raise NotImplementedError

    def backward(self, module, grad_spikes, grad_states, saved, inputs, init_states, params, store_seqs):
        """(grads of inputs [T, N], of initial states [N], per-neuron grads of learnable params [N])."""
        raise NotImplementedError


def print_program(program, printer) -> list[str]:
    """``target = expr`` lines for a tuple of :class:`~kernels_gen.plan.Assign`."""
    return [f"{a.target.name} = {printer.doprint(a.expr)}" for a in program]
