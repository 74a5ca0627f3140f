"""The code's shape, measured from its AST (no import is executed): the size limits, one seam for optuna, no
second address for a name, no import cycles and at most one import that climbs the package layers.

Imports are read wherever they are (module level and inside functions) except under `if TYPE_CHECKING:`,
which never runs. A module's imports name modules of ablate (`from .x import y` is `x`, or `x.y` when that is
a module); an import "climbs" when a package imports one above it in `LAYERS`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# bottom to top: a package (or top-level module, `evidence`) may import those before it
LAYERS = ["evidence", "config", "nn", "measure", "train", "sweep", "report", "commands", "cli", "__main__"]
# the one import allowed to climb: solving `match:` widths counts networks while the study loads
CLIMBS_ALLOWED = {("ablate.config.load", "ablate.measure.isocost")}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / "ablate").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()
TREES = {name: ast.parse(path.read_text()) for name, path in MODULES.items()}


def _runtime_nodes(node: ast.AST):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            continue
        yield child
        yield from _runtime_nodes(child)


def _imported(module: str, is_package: bool, tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module imported from, names) of every runtime import of ablate."""
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "ablate"]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if target.split(".")[0] == "ablate":
                out.append((target, [a.name for a in node.names]))
    return out


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, tree in TREES.items():
        deps = set()
        for target, names in _imported(name, MODULES[name].name == "__init__.py", tree):
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            deps.update(subs or [target])
        graph[name] = {d for d in deps if d in MODULES and d != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_no_import_cycles_and_at_most_one_climbing_import() -> None:
    graph = _graph()
    assert _cycles(graph) == []
    climbs = {(a, b) for a, deps in graph.items() for b in deps
              if _layer(a) is not None and _layer(b) is not None and _layer(b) > _layer(a)}
    assert climbs <= CLIMBS_ALLOWED, sorted(climbs - CLIMBS_ALLOWED)
    assert len(climbs) <= 1


def _defined(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node in tree.body:
            names.add(node.name)
    for node in tree.body:
        for sub in ast.walk(node) if isinstance(node, ast.If | ast.Try) else [node]:
            if isinstance(sub, ast.FunctionDef | ast.ClassDef):
                names.add(sub.name)
            targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target] if isinstance(
                sub, ast.AnnAssign) else []
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def test_every_name_is_imported_from_its_home() -> None:
    """No re-exports: a `from ablate.x import name` (in ablate/, tests/, bench/) names something x defines."""
    defined = {name: _defined(tree) for name, tree in TREES.items()}
    wrong = []
    for path in sorted([*ROOT.glob("ablate/**/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("bench/*.py")]):
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for target, names in _imported(module, path.name == "__init__.py", ast.parse(path.read_text())):
            if target in defined:
                wrong += [f"{path.relative_to(ROOT)}: {n} from {target}" for n in names
                          if n not in defined[target] and f"{target}.{n}" not in MODULES]
    assert wrong == []


def test_module_attributes_are_read_from_their_home() -> None:
    """`from ablate.x import module as m` then `m.name`: `name` is defined in that module, not imported into it."""
    defined = {name: _defined(tree) for name, tree in TREES.items()}
    imported_modules = {name: {(a.asname or a.name).split(".")[0] for node in tree.body if isinstance(node, ast.Import)
                               for a in node.names} for name, tree in TREES.items()}  # `worker.mp`: patchable
    wrong = []
    for path in sorted([*ROOT.glob("ablate/**/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("bench/*.py")]):
        tree = ast.parse(path.read_text())
        alias = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ablate":
                alias.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names
                              if f"{node.module}.{a.name}" in MODULES})
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in alias:
                target = alias[node.value.id]
                if (node.attr not in defined[target] | imported_modules[target] and not node.attr.startswith("__")
                        and f"{target}.{node.attr}" not in MODULES):
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert wrong == []


def test_optuna_is_imported_by_at_most_three_modules_and_nothing_is_re_exported() -> None:
    optuna = [name for name, path in MODULES.items()
              if re.search(r"^\s*(import optuna|from optuna)", path.read_text(), re.M)]
    assert len(optuna) <= 3 and "ablate.sweep.store" in optuna, optuna
    assert [name for name, path in MODULES.items() if "noqa: F401" in path.read_text()] == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_and_functions_stay_small(name: str) -> None:
    """Modules of at most 400 lines; functions of at most 60 (one screen)."""
    tree = TREES[name]
    assert len(MODULES[name].read_text().splitlines()) <= 400
    long = [f"{f.name}: {f.end_lineno - f.lineno + 1} lines" for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) and f.end_lineno - f.lineno + 1 > 60]
    assert long == []
