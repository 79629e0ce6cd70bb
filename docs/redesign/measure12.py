"""Measure glu_prune's structure: modules, line counts, import graph, loops (SCCs),
functions over 50 lines, in-function imports of glu_prune modules.

usage: python docs/redesign/measure12.py [ROOT]   (ROOT holds glu_prune/; default .)
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
PKG = "glu_prune"


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for p in sorted((root / PKG).rglob("*.py")):
        rel = p.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports(path: Path, mods: dict[str, Path], me: str):
    """(target, lineno, in_function, type_checking) for each import of a package module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    pkg_of_me = me if path.name == "__init__.py" else me.rpartition(".")[0]

    def visit(node, in_func, in_tc):
        for child in ast.iter_child_nodes(node):
            func = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            tc = in_tc or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, ast.Import):
                for a in child.names:
                    if a.name.split(".")[0] == PKG:
                        t = resolve(a.name, mods)
                        if t:
                            out.append((t, child.lineno, in_func, in_tc))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = pkg_of_me.split(".")
                    parts = parts[: len(parts) - (child.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                if base.split(".")[0] != PKG:
                    continue
                for a in child.names:
                    full = f"{base}.{a.name}"
                    t = full if full in mods else resolve(base, mods)
                    if t:
                        out.append((t, child.lineno, in_func, in_tc))
            visit(child, func, tc)

    visit(tree, False, False)
    return out


def functions(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            strong(v)
    return out


def main() -> None:
    mods = modules(ROOT)
    graph_all: dict[str, set[str]] = defaultdict(set)
    graph_top: dict[str, set[str]] = defaultdict(set)
    infunc = set()
    total = 0
    print(f"# {len(mods)} modules under {ROOT / PKG}\n")
    print("## modules (lines)")
    for m, p in sorted(mods.items(), key=lambda kv: -len(kv[1].read_text().splitlines())):
        n = len(p.read_text().splitlines())
        total += n
        flag = "  OVER 400" if n > 400 else ""
        print(f"{n:5d}  {m}{flag}")
    print(f"{total:5d}  total\n")
    for m, p in mods.items():
        graph_all.setdefault(m, set())
        for t, line, in_func, in_tc in imports(p, mods, m):
            if t == m or in_tc:
                continue
            graph_all[m].add(t)
            if not in_func:
                graph_top[m].add(t)
            else:
                infunc.add((m, line, t))
    edges = sum(len(v) for v in graph_all.values())
    print(f"## import graph: {edges} edges (module- and function-level, TYPE_CHECKING excluded)")
    for m in sorted(graph_all):
        if graph_all[m]:
            print(f"  {m} -> {', '.join(sorted(x.removeprefix('glu_prune.') for x in graph_all[m]))}")
    print("\n## loops (strongly connected components, all imports)")
    for c in sccs(graph_all):
        print("  " + " <-> ".join(c))
    print("\n## loops (module-level imports only)")
    for c in sccs(graph_top) or [["none"]]:
        print("  " + " <-> ".join(c))
    stmts = {(m, line) for m, line, _ in infunc}
    print(f"\n## in-function imports of glu_prune modules: {len(stmts)} statements "
          f"({len(infunc)} statement->module edges) in {len({m for m, _ in stmts})} modules")
    for m, line, t in sorted(infunc):
        print(f"  {m}:{line} -> {t}")
    print("\n## functions over 50 lines")
    long = []
    for m, p in mods.items():
        for name, line, n in functions(p):
            if n > 50:
                long.append((n, m, name, line))
    for n, m, name, line in sorted(long, reverse=True):
        print(f"  {n:4d}  {m}.{name} (line {line})")
    print(f"  ({len(long)} functions)")


if __name__ == "__main__":
    main()
