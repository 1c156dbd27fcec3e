"""The shape of the package: no import cycle, no private names across packages, layers respected.

Every import counts: top level, inside functions, and under ``TYPE_CHECKING``. The graph is
read from the source with ``ast`` (nothing is imported), so the test also holds for modules
whose optional dependencies are missing. docs/architecture.md describes the layers checked here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "memkern"

#: The layers, lowest first. A module may import its own layer and the ones below, never above.
LAYERS: list[set[str]] = [
    {"errors", "version", "files", "models", "regexes"},
    {"validation", "prompts", "embed", "llm", "store", "reader", "retrieval", "governance", "lifecycle", "jobs",
     "cubefile", "organize"},
    {"kernel"},
    {"ops", "memory"},
    {"api"},
    {"scheduler"},
    {"mos"},
    {"client", "server", "mcp", "ui", "bench"},
    {"cli"},
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """``[(imported module, names taken from it)]`` for every import statement in the file."""
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names if alias.name.split(".")[0] == "memkern"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "memkern":
                continue
            names = [alias.name for alias in node.names]
            # ``from memkern.ops import memories`` imports the module memkern.ops.memories.
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            out += [(sub, []) for sub in submodules]
            rest = [n for n in names if f"{target}.{n}" not in modules]
            if rest or not submodules:
                out.append((target, rest))
    return out


def _graph() -> tuple[dict[str, set[str]], dict[str, list[tuple[str, list[str]]]]]:
    modules = _modules()
    raw = {name: _imports(name, path, modules) for name, path in modules.items()}
    edges = {name: {target for target, _ in found if target in modules and target != name}
             for name, found in raw.items()}
    return edges, raw


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _layer(module: str) -> int | None:
    top = module.split(".")[1] if module.count(".") else ""
    for number, names in enumerate(LAYERS):
        if top in names:
            return number
    return None


def test_the_import_graph_has_no_cycle():
    edges, _ = _graph()
    assert _cycles(edges) == []


def test_no_module_imports_a_private_name_of_another_package():
    _, raw = _graph()
    offences = []
    for name, found in raw.items():
        package = name.rsplit(".", 1)[0] if name.count(".") > 1 else name
        for target, names in found:
            for imported in names:
                if imported.startswith("_") and not imported.startswith("__") and not target.startswith(package):
                    offences.append(f"{name} imports {target}.{imported}")
    assert offences == []


def test_lower_layers_never_import_higher_ones():
    edges, _ = _graph()
    upward = []
    for name, targets in edges.items():
        mine = _layer(name)
        for target in targets:
            theirs = _layer(target)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{name} -> {target}")
    assert sorted(upward) == []


def test_every_package_is_placed_in_a_layer():
    tops = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in PACKAGE.rglob("*.py")}
    tops -= {"__init__", "__main__", "data"}
    assert {t for t in tops if _layer(f"memkern.{t}") is None} == set()
