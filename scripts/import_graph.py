"""Draw and check how the packages import each other: ``python scripts/import_graph.py [--mermaid]``.

Prints every import edge between modules of ``neurodsl`` (front end) and ``kernels_gen`` (back end), grouped by
module, and the layering rules; exits 1 when a rule is broken:

* ``kernels_gen`` never imports ``neurodsl``;
* a front-end module imports the back end only through its contract (:data:`CONTRACT`), except the runners
  (:data:`RUNNERS`), which may also use the back-end modules listed for them.

``--mermaid`` prints the module graph as a Mermaid flowchart instead (paste it into any Mermaid viewer).
tests/test_layering.py runs the same checks.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("neurodsl", "kernels_gen")

#: kernels_gen modules every front-end module may import: the typed contract between the packages.
CONTRACT = {"kernels_gen.plan", "kernels_gen.names", "kernels_gen.functions", "kernels_gen.errors",
            "kernels_gen.versions"}
#: front-end modules that run generated code, and the back-end modules they may use for it.
RUNNERS = {
    "neurodsl.compiler": {"kernels_gen.ops", "kernels_gen.parallel"},          # spec + options -> kernels
    "neurodsl.dispatch": {"kernels_gen.backends", "kernels_gen.ops", "kernels_gen.parallel"},
    "neurodsl.distributed": {"kernels_gen.ops", "kernels_gen.parallel"},       # the chunk scan of TimeSplit
    "neurodsl.online.deferred": {"kernels_gen.parallel"},                     # e-prop traces by a scan
    "neurodsl.cli": {"kernels_gen.cache"},                                     # neurodsl cache list|clear
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imports(path: Path, name: str) -> set[str]:
    """Project modules ``path`` imports (relative imports resolved; ``from a import b`` counts as a.b when a.b
    is a module, else as a)."""
    known, found = modules(), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def edges() -> dict[str, set[str]]:
    return {name: imports(path, name) for name, path in modules().items()}


def _allowed(target: str, allowed: set[str]) -> bool:
    return any(target == a or target.startswith(a + ".") for a in allowed) or target == "kernels_gen"


def violations() -> list[str]:
    """Every import that breaks the layering, as 'importer -> imported: why'."""
    out = []
    for source, targets in edges().items():
        for target in sorted(targets):
            if source.startswith("kernels_gen") and target.startswith("neurodsl"):
                out.append(f"{source} -> {target}: the back end imports the front end")
            elif source.startswith("neurodsl") and target.startswith("kernels_gen") and \
                    not _allowed(target, CONTRACT | RUNNERS.get(source, set())):
                out.append(f"{source} -> {target}: not the back end's contract, and {source} is no runner of it")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mermaid", action="store_true", help="print a Mermaid flowchart of the module graph")
    args = parser.parse_args(argv)
    graph = edges()
    if args.mermaid:
        print("flowchart LR")
        for source, targets in sorted(graph.items()):
            for target in sorted(targets):
                print(f"  {source.replace('.', '_')}[{source}] --> {target.replace('.', '_')}[{target}]")
    else:
        for source, targets in sorted(graph.items()):
            crossing = sorted(t for t in targets if t.split(".")[0] != source.split(".")[0])
            inside = sorted(t for t in targets if t.split(".")[0] == source.split(".")[0])
            print(f"{source}\n    same package: {', '.join(inside) or '-'}\n    other package: {', '.join(crossing) or '-'}")
    broken = violations()
    for line in broken:
        print(f"LAYERING: {line}", file=sys.stderr)
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports, {len(broken)} layering violations",
          file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
