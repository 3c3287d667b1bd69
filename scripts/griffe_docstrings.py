"""Griffe extension for the docs build (mkdocs.yml): render neurodsl's plain-prose docstrings as Markdown.

The docstrings are written for ``help()`` and doctest: reST-style roles (``:class:`~a.b.C```) and
``>>>`` examples. Rendered verbatim as Markdown, a role shows its markup and a doctest line becomes a
nested block quote. This extension rewrites the docstring text griffe loaded (never the source):

* every doctest example (a ``>>>`` line up to the next blank line) becomes a fenced ``pycon`` block;
* ``:class:`~a.b.C```, ``:func:`f```, ``:meth:``, ``:mod:``, ``:data:``, ``:attr:`` become inline code
  wrapped in an *optional* autorefs cross-reference: a link when the target is rendered somewhere in
  the site, plain code otherwise (optional references never warn).

Loaded by mkdocstrings from ``mkdocs.yml`` (``extensions: [scripts/griffe_docstrings.py]``).
"""
from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")


def fence_doctests(text: str) -> str:
    """Wrap each run of doctest lines (``>>>`` up to a blank line) in a ```` ```pycon ```` fence."""
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i])
                i += 1
            if out and out[-1].strip():
                out.append("")  # a fence needs a blank line before it inside a paragraph
            out += [f"{indent}```pycon", *block, f"{indent}```"]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _qualify(target: str, obj: griffe.Object) -> str:
    """A role target as a full dotted path, resolved as Sphinx does: absolute names as they are,
    ``.name`` against the module, a bare name against the enclosing class first, then the module."""
    module = obj if obj.is_module else obj.module
    if target.startswith("."):
        return module.path + target
    head = target.split(".")[0]
    if head in ("neurodsl", "kernels_gen", "torch", "sympy", "triton"):
        return target
    scope = obj if obj.is_class else obj.parent
    while scope is not None and not scope.is_module:
        if scope.is_class and head in scope.members:
            return f"{scope.path}.{target}"
        scope = scope.parent
    return f"{module.path}.{target}"


def roles_to_refs(text: str, obj: griffe.Object) -> str:
    def replace(match: re.Match) -> str:
        tilde, target = match.groups()
        shown = target.rsplit(".", 1)[-1] if tilde else target.lstrip(".")
        return f'<autoref identifier="{_qualify(target, obj)}" optional><code>{shown}</code></autoref>'

    return ROLE.sub(replace, text)


class PlainDocstrings(griffe.Extension):
    """Rewrite roles and doctests in every docstring once the object tree is complete."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.is_alias or obj.docstring is None:
            return
        obj.docstring.value = roles_to_refs(fence_doctests(obj.docstring.value), obj)
