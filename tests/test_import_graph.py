"""No import circles in the product: a static walk of every module of src/ and viewer/.

The graph is read from the source with ``ast``, not from a running interpreter, so that
imports inside functions (lazy imports) and under ``if TYPE_CHECKING:`` count as much as
module-level ones: a circle through a lazy import is still a circle in the design, and only
waits for the wrong call order to fail.

The rule for one import in module ``m`` of a dotted name ``a.b.c`` (``from a.b import c``
names ``a.b.c`` when that is a module, else ``a.b``; relative imports are resolved first):

* an edge ``m -> a.b.c``;
* for an import that runs (not one under ``if TYPE_CHECKING:``, which never does), an edge
  ``m -> P`` for every package ``P`` above ``a.b.c`` that does not hold ``m``, since Python runs
  ``P/__init__.py`` first. A package holding ``m`` is skipped: a module importing a sibling does
  not depend on its own package's ``__init__`` beyond being part of it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"dsviewer": "src", "dsviewer.viewer": "viewer", "dsviewer.configs": "configs"}


def module_files() -> dict[str, Path]:
    """Every module of the product, by its installed dotted name (see setup.py)."""
    modules = {}
    for package, folder in FOLDERS.items():
        root = REPO_ROOT / folder
        for path in sorted(root.rglob("*.py")):
            relative = path.relative_to(root).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if name.startswith("dsviewer.viewer") and package == "dsviewer":
                continue  # src/ holds no viewer/ folder; guard against a stray one
            modules[name] = path
    return modules


def typing_only(tree: ast.AST) -> set[int]:
    """The ids of the import nodes under ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    found = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None) if isinstance(node, ast.If) else None
        name = getattr(test, "id", None) or getattr(test, "attr", None)
        if name == "TYPE_CHECKING":
            found.update(id(inner) for part in node.body for inner in ast.walk(part))
    return found


def imported_names(path: Path, module: str, is_package: bool,
                   modules: dict[str, Path]) -> set[tuple[str, bool]]:  # fmt: skip
    """Every dotted name ``path`` imports, anywhere in the file, relative imports resolved
    (``from a.b import c`` names ``a.b.c`` when that is a module, else ``a.b``), each with
    whether the import runs (False under ``TYPE_CHECKING``)."""
    package = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    typing = typing_only(tree)
    names = set()
    for node in ast.walk(tree):
        runs = id(node) not in typing
        if isinstance(node, ast.Import):
            names.update((alias.name, runs) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                name = f"{base}.{alias.name}"
                names.add((name if name in modules else base, runs))
    return names


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for name, runs in imported_names(path, module, path.name == "__init__.py", modules):
            while name and name not in modules:  # an outside package, or a.b of a.b.f
                name = name.rpartition(".")[0]
            if not name or name == module:
                continue
            targets.add(name)
            parent = name.rpartition(".")[0]
            while parent and runs:  # the packages above it run first, unless they hold this
                if parent in modules and not (module == parent or module.startswith(parent + ".")):
                    targets.add(parent)
                parent = parent.rpartition(".")[0]
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:  # recursion depth is bounded by the module count (~200)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walk_sees_lazy_and_type_checking_imports():
    """The rule on a hand-made package: a function-level import and a TYPE_CHECKING import
    close a circle that module-level imports alone would not show."""
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}
    assert cycles(graph) == [["p.a", "p.b", "p.c"]]
    tree = import_graph()
    # viewer/session/runs.py imports ModelSession inside RunLoader.__init__ and LoadedScene
    # under TYPE_CHECKING only: both are edges.
    assert {"dsviewer.viewer.session.model", "dsviewer.viewer.session.loaded"} <= tree[
        "dsviewer.viewer.session.runs"]
    # src/model/predict.py names dataset.types under TYPE_CHECKING: an edge to that module, but
    # not to dsviewer.dataset's __init__, which such an import never runs
    assert "dsviewer.dataset.types" in tree["dsviewer.model.predict"]
    assert "dsviewer.dataset" not in tree["dsviewer.model.predict"]
    # relative imports (src/model/__init__.py: ``from .checkpoint import ...``) resolve
    assert "dsviewer.model.checkpoint" in tree["dsviewer.model"]
    # importing dsviewer.viewer.export.layout from outside runs viewer/export/__init__.py first
    assert "dsviewer.viewer.export" in tree["dsviewer.viewer.export_cli"]


def test_no_import_circles():
    graph = import_graph()
    assert len(graph) > 100  # the walk found the product, not an empty folder
    found = cycles(graph)
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


COMMAND_LINES = ("dsviewer.viewer.options", "dsviewer.viewer.cli", "dsviewer.viewer.export_cli",
                 "dsviewer.viewer.eval_cli", "dsviewer.viewer.patch_cli")  # fmt: skip


def inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("library, forbidden", [
    ("dsviewer.viewer.evaluation", COMMAND_LINES),
    ("dsviewer.viewer.export", COMMAND_LINES),
    ("dsviewer.viewer.session", (*COMMAND_LINES, "dsviewer.viewer.gui", "dsviewer.viewer.export",
                                 "dsviewer.viewer.evaluation", "dsviewer.viewer.compare")),
])  # fmt: skip
def test_libraries_do_not_import_the_command_lines(library, forbidden):
    """The eval and export libraries and the session layer take run specs and settings: none of
    their modules imports a command-line module (nor, for the session layer, any consumer)."""
    graph = import_graph()
    offenders = sorted(f"{m} -> {t}" for m, targets in graph.items() if inside(m, library)
                       for t in targets if any(inside(t, f) for f in forbidden))  # fmt: skip
    assert not offenders
