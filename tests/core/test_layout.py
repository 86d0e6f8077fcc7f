"""The package layout (DESIGN.md): the import graph of ``src/limelight`` has no cycle, and
``core`` depends on nothing below it.

The graph is built statically with :mod:`ast`, counting every import at any level (module
top, functions, classes) except those under ``if TYPE_CHECKING:``, so a lazy import inside a
function counts as much as a top-level one.
"""

from __future__ import annotations

import ast
import pathlib

import limelight

ROOT = pathlib.Path(limelight.__file__).parent
PACKAGE = "limelight"

#: Old import paths under ``core/`` kept as thin re-exports of their new homes (evaluation/,
#: zoo/), for compatibility only: nothing in the package imports them.
CORE_SHIMS = {
    "limelight.core.metric",
    "limelight.core.evaluate",
    "limelight.core.sanity",
    "limelight.core.loading",
}
SHIMS = CORE_SHIMS | {"limelight.plugins.metrics", "limelight.demo.benchmark"}

#: What ``core`` must never import: the layers below it and the frameworks.
FORBIDDEN_FOR_CORE = (
    "limelight.backends",
    "limelight.plugins",
    "limelight.evaluation",
    "limelight.zoo",
    "torch",
    "torchvision",
    "tensorflow",
    "keras",
)


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement outside ``if TYPE_CHECKING:`` blocks (their ``else`` counts)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _resolve(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The absolute names ``node`` imports: ``from X import y`` is ``X.y`` when that is a
    module of the package, else ``X``."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    names = set()
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        names.add(sub if sub in known else target)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> every absolute module name it imports (inside and outside the package)."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[name] = set().union(*(_resolve(name, is_package, node, known) for node in _imports(tree)))
    return graph


def _internal(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {t for t in targets if t in graph and t != m} for m, targets in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first = last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_function_level_imports_and_skips_type_checking():
    graph = import_graph()
    assert "limelight.core.api" in graph["limelight.evaluation.table"]
    assert "limelight.viz" in graph["limelight.core.explanation"]  # imported inside a function (plot)
    assert "limelight.core.explanation" not in graph["limelight.viz"]  # only under TYPE_CHECKING
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(_internal(import_graph()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_core_depends_on_nothing_below_it():
    graph = import_graph()
    bad = {
        (module, target)
        for module, targets in graph.items()
        if module.startswith("limelight.core") and module not in CORE_SHIMS
        for target in targets
        if any(target == f or target.startswith(f + ".") for f in FORBIDDEN_FOR_CORE)
    }
    assert not bad, f"core imports a layer below it or a framework: {sorted(bad)}"


def test_old_paths_are_shims_nothing_inside_uses():
    graph = import_graph()
    users = {(m, t) for m, targets in graph.items() for t in targets if t in SHIMS and m not in SHIMS}
    assert not users, f"modules import a compatibility shim instead of the new home: {sorted(users)}"
