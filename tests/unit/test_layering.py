"""The package's imports flow one way, in layers:

    base (console, tiny, task_fixtures) -> catalog -> core -> evaluation | performance
    -> judging -> results -> plugin -> entry (cli, tools, __main__, the package's __init__)

A module imports its own layer or layers before it, never a later one and never a sibling
(evaluation and performance do not import each other); no modules import each other in a
loop; no function imports a module of the package (third-party heavy imports in functions
are fine); modules and functions stay small. Reads the source with ``ast``, imports nothing.

``python tests/unit/test_layering.py`` prints what breaks the rules now, in the form of the
exception tables below.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "glu_prune"

# name -> (rank, module prefixes). Lower ranks come first; equal ranks are siblings.
LAYERS: dict[str, tuple[int, tuple[str, ...]]] = {
    "base": (0, ("glu_prune.console", "glu_prune.tiny", "glu_prune.task_fixtures")),
    "catalog": (1, ("glu_prune.catalog",)),
    "core": (2, ("glu_prune.core",)),
    "evaluation": (3, ("glu_prune.evaluation",)),
    "performance": (3, ("glu_prune.performance",)),
    "judging": (4, ("glu_prune.judging",)),
    "results": (5, ("glu_prune.results",)),
    "plugin": (6, ("glu_prune.plugin",)),
    # entry points: nothing in the package imports them (python -m, console script, pytest)
    "entry": (7, ("glu_prune.cli", "glu_prune.tools", "glu_prune.__main__",
                  "glu_prune.tiny.__main__", "glu_prune.task_fixtures.__main__")),
}
ROOT_LAYER = "entry"  # glu_prune/__init__.py: the public API's re-exports
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50

# Known exceptions, each with who removes it. Empty since the restructuring of issue #12:
# a new entry is a debt someone signs for, not a way to make the test pass.
ALLOWED_AGAINST_LAYERS: dict[tuple[str, str], str] = {}
ALLOWED_LOOPS: dict[frozenset[str], str] = {}
ALLOWED_IN_FUNCTION: dict[tuple[str, str], str] = {}
ALLOWED_LONG: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    in_function: bool
    type_only: bool  # under ``if TYPE_CHECKING:``: a direction, not a runtime edge

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.imported}"


@lru_cache(maxsize=1)
def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def layer_of(module: str) -> str | None:
    if module == "glu_prune":
        return ROOT_LAYER
    best, best_len = None, -1
    for name, (_, prefixes) in LAYERS.items():
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = name, len(p)
    return best


def _target(name: str) -> str | None:
    """The package module ``name`` refers to (a name inside a module: that module)."""
    known = modules()
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


@lru_cache(maxsize=None)
def imports_of(module: str) -> tuple[Import, ...]:
    path = modules()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            func = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                     ast.Lambda))
            typed = type_only or (isinstance(child, ast.If)
                                  and "TYPE_CHECKING" in ast.unparse(child.test))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in child.names]
            for name in names:
                if name.split(".")[0] != "glu_prune":
                    continue
                target = _target(name)
                if target is not None and target != module:
                    found.append(Import(module, target, child.lineno, in_function, type_only))
            visit(child, func, typed)

    visit(tree, False, False)
    return tuple(found)


def against_layers(layer: str) -> list[Import]:
    rank = LAYERS[layer][0]
    bad = []
    for module in modules():
        if layer_of(module) != layer:
            continue
        for imp in imports_of(module):
            other = layer_of(imp.imported)
            if other != layer and LAYERS[other][0] >= rank:
                bad.append(imp)
    return bad


def loops() -> list[frozenset[str]]:
    """Strongly connected components (more than one module) of the runtime import graph."""
    graph = {m: {i.imported for i in imports_of(m) if not i.type_only} for m in modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in graph:
        if v not in index:
            connect(v)
    return found


def function_imports() -> list[Import]:
    return [i for m in modules() for i in imports_of(m) if i.in_function]


def too_long() -> dict[str, int]:
    """Modules over MAX_MODULE_LINES and functions over MAX_FUNCTION_LINES (lines)."""
    out = {}
    for module, path in modules().items():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            out[module] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    out[f"{module}:{node.name}"] = length
    return out


# ---------------------------------------------------------------- the tests


def test_every_module_has_a_layer():
    missing = [m for m in modules() if layer_of(m) is None]
    assert not missing, f"modules in no layer (add them to LAYERS): {missing}"


@pytest.mark.parametrize("layer", list(LAYERS))
def test_imports_follow_the_layers(layer):
    bad = [i for i in against_layers(layer)
           if (i.importer, i.imported) not in ALLOWED_AGAINST_LAYERS]
    assert not bad, (f"imports from layer {layer} into its own later or sibling layers:\n  "
                     + "\n  ".join(f"{i} ({layer_of(i.imported)})" for i in bad))


def test_no_import_loops():
    bad = [sorted(c) for c in loops() if c not in ALLOWED_LOOPS]
    assert not bad, "modules importing each other in a loop:\n  " + "\n  ".join(
        " <-> ".join(c) for c in bad)


def test_no_package_import_inside_a_function():
    bad = [i for i in function_imports() if (i.importer, i.imported) not in ALLOWED_IN_FUNCTION]
    assert not bad, ("imports of the package's own modules inside functions (import at "
                     "module level; a loop this would make means the layering is wrong):\n  "
                     + "\n  ".join(map(str, bad)))


def test_modules_and_functions_stay_small():
    bad = {k: n for k, n in too_long().items() if k not in ALLOWED_LONG}
    assert not bad, (f"over {MAX_MODULE_LINES} lines (module) or {MAX_FUNCTION_LINES} lines "
                     f"(function): " + ", ".join(f"{k} {n}" for k, n in sorted(bad.items())))


if __name__ == "__main__":  # the current exceptions, to paste into the tables above
    print("ALLOWED_AGAINST_LAYERS = {")
    for layer in LAYERS:
        for i in sorted({(i.importer, i.imported) for i in against_layers(layer)}):
            print(f"    {i!r}: 'OWNER',")
    print("}\nALLOWED_LOOPS = {")
    for c in loops():
        print(f"    frozenset({sorted(c)!r}): 'OWNER',")
    print("}\nALLOWED_IN_FUNCTION = {")
    for i in sorted({(i.importer, i.imported) for i in function_imports()}):
        print(f"    {i!r}: 'OWNER',")
    print("}\nALLOWED_LONG = {")
    for k, n in sorted(too_long().items()):
        print(f"    {k!r}: 'OWNER',  # {n} lines")
    print("}")
