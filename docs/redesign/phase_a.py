#!/usr/bin/env python3
"""Phase A of the one-way restructuring: subpackages, 1:1 moves, four splits by name, and
a rewrite of every import / module string in glu_prune/, tests/, benchmarks/, conftest.py.

Run from the repository root of a clean, committed work tree, with the project's virtualenv
(ruff, torch): python docs/redesign/phase_a.py   (test_layering.py, fill_allowlist.py beside it)
Then:  ruff check --select F glu_prune tests benchmarks conftest.py
       python docs/redesign/measure12.py . ; pytest -q -p no:cacheprovider
It prints what it could not rewrite by itself (expected: nothing). Not idempotent: run once
(to retry: git reset --hard && git clean -fd glu_prune tests).
"""
from __future__ import annotations

import ast
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path.cwd()
if not (ROOT / "glu_prune" / "__init__.py").is_file():
    sys.exit("run from the repository root")

PACKAGES = {  # new subpackage -> its __init__ docstring (plugin/__init__ is pytest_plugin.py)
    "catalog": "What exists: the model registry (HF ids, embedded architectures, levels) and the\n"
               "benchmark registry (lm-eval task, few-shot, metrics with direction, group).",
    "core": "What pruning is: importance scores, config arithmetic (kept counts, parameters,\n"
            "FLOPs, bytes, ideal speedups), surgery, variants, loading.",
    "evaluation": "lm-eval on an in-memory model, one benchmark at a time; content identities\n"
                  "and the result cache; checks that run before evaluation.",
    "performance": "Timing (prefill, decode, throughput, paired rounds), perf settings and\n"
                   "models, and the NVML energy meter.",
    "judging": "Baselines, and the one tolerance / verdict / pin-and-update flow for quality\n"
               "and for speed.",
    "results": "The results record, analysis, tables, plots, writing and merging.",
    "tools": "Tools beside the suite: tiny-model training and method comparison, the dress\n"
             "rehearsal, building the reference baselines.",
}

MOVES = {  # old module -> new module (one file each)
    "glu_prune.benchmarks": "glu_prune.catalog.benchmarks",
    "glu_prune.importance": "glu_prune.core.importance",
    "glu_prune.variants": "glu_prune.core.variants",
    "glu_prune.calibration": "glu_prune.core.calibration",
    "glu_prune.compensate": "glu_prune.core.compensate",
    "glu_prune.evaluate": "glu_prune.evaluation.harness",
    "glu_prune.identity": "glu_prune.evaluation.identity",
    "glu_prune.preflight": "glu_prune.evaluation.preflight",
    "glu_prune.energy": "glu_prune.performance.energy",
    "glu_prune.baselines": "glu_prune.judging.quality",
    "glu_prune.perf_baselines": "glu_prune.judging.speed",
    "glu_prune.report_io": "glu_prune.results.record_io",
    "glu_prune.report": "glu_prune.results.report",
    "glu_prune.report_perf": "glu_prune.results.perf_tables",
    "glu_prune.plots": "glu_prune.results.plots",
    "glu_prune.pytest_plugin": "glu_prune.plugin",  # -> glu_prune/plugin/__init__.py
    "glu_prune.pytest_perf": "glu_prune.plugin.perf",
    "glu_prune.pytest_results": "glu_prune.plugin.results",
    "glu_prune.options": "glu_prune.plugin.options",
    "glu_prune.gpus": "glu_prune.plugin.gpus",
    "glu_prune.reference": "glu_prune.tools.build_reference",
    "glu_prune.tiny.compare": "glu_prune.tools.tiny_compare",
    "glu_prune.tiny.train": "glu_prune.tools.tiny_train",
    "glu_prune.task_fixtures.rehearse": "glu_prune.tools.rehearse",
}

# Splits by top-level name: source -> (default destination, {destination: [names]}).
SPLITS: dict[str, tuple[str, dict[str, list[str]]]] = {
    "glu_prune.prune": ("glu_prune.core.prune", {
        "glu_prune.core.arithmetic": ["_is_number", "check_level", "kept_count", "pct_of",
                                      "config_param_count", "prefill_flops",
                                      "decode_weight_bytes", "expansion_table"]}),
    "glu_prune.models": ("glu_prune.core.loading", {
        "glu_prune.catalog.models": ["BASE_LEVELS", "INSTRUCT_LEVELS", "_LLAMA32_COMMON",
                                     "_LLAMA32_1B", "_LLAMA32_3B", "_INSTRUCT_EOS",
                                     "ARCHITECTURE_KEYS", "ModelSpec", "_tiny_specs",
                                     "_build_registry", "MODELS", "get_model_spec",
                                     "make_config"]}),
    "glu_prune.perf": ("glu_prune.performance.settings", {
        "glu_prune.performance.models": ["PerfModel", "PerfModels"],
        "glu_prune.performance.timing": [
            "synchronize", "random_prompt", "prefill", "fixed_length_config", "generate",
            "_cache_argument", "_cache_of", "DecodeStart", "start_decode", "decode",
            "mlp_block_size", "mlp_block_id", "mlp_block", "run_block"],
        "glu_prune.performance.stats": ["Call", "median_interval", "Speedup", "run_paired",
                                        "timing_stats", "spread", "Row"],
        "glu_prune.core.arithmetic": ["ideal_prefill_speedup", "ideal_decode_speedup"],
        "glu_prune.plugin.perf_session": ["make_record", "emit_record", "_unit_of",
                                          "PerfContext", "TABLE_COLUMNS", "_cell",
                                          "markdown_table", "records_from_benchmark_json",
                                          "summary_lines"]}),
    # the pytest glue of evaluation (B3) apart from judging one test and recording it (B2)
    "glu_prune.suite_eval": ("glu_prune.plugin.quality", {
        "glu_prune.plugin.judge": ["Judge", "_lookup", "_no_baseline", "judge_for"]}),
}
# A split module named alone in a docstring or comment: the package (or main part) it became.
BARE = {"glu_prune.perf": "glu_prune.performance", "glu_prune.models": "glu_prune.catalog.models",
        "glu_prune.prune": "glu_prune.core.prune", "glu_prune.suite_eval": "glu_prune.plugin.quality"}
COPIED = {"LOG"}  # module-level names every destination that uses them gets its own copy of
DOCSTRINGS = {
    "glu_prune.core.arithmetic": "Config arithmetic, from a config alone: kept counts, parameters, prefill FLOPs,\n"
                                 "decode weight bytes, the expansion table and ideal speedups.",
    "glu_prune.core.prune": "GLU width pruning: neuron selection and surgery.\n\n"
                            "Neuron j of a layer is row j of ``gate_proj`` and ``up_proj`` and column j of\n"
                            "``down_proj``. Pruning keeps the same ``k`` neurons-per-layer count everywhere, slices\n"
                            "those three matrices and sets ``config.intermediate_size = k``. Nothing else changes.",
    "glu_prune.catalog.models": "Model registry: HF ids, embedded architectures and pruning levels.\n\n"
                                "The real Llama-3.2 architectures are embedded (public configs) so shapes, parameter\n"
                                "counts and speed work without downloading weights.",
    "glu_prune.core.loading": "Loading registered models: local folders, the shipped tiny weights, the hub, or\n"
                              "random weights of the exact architecture; the architecture check.",
    "glu_prune.performance.settings": "Latency/energy settings: defaults per device, the perf variants and levels.",
    "glu_prune.performance.models": "Perf variants built by the suite's variant cache (local weights, else random\n"
                                    "weights of the exact shape).",
    "glu_prune.performance.timing": "The timed calls: prefill (TTFT), decode (TPOT), generate, the lone MLP block.\n\n"
                                    "Every timed call synchronizes the device inside itself, so a wall-clock timer\n"
                                    "around it measures the work, not the launch.",
    "glu_prune.performance.stats": "Paired rounds (reference and variant alternating), the speedup with its interval,\n"
                                   "timing statistics, and the measured row of one benchmark.",
    "glu_prune.plugin.perf_session": "Session state of the latency/energy tests: judging rows against the device\n"
                                     "baselines, their records, and the terminal summary.",
    "glu_prune.plugin.quality": "pytest-facing glue of the accuracy/perplexity suite: the evaluation session\n"
                                "(settings, cache, the run's tasks, the current variant's runner), the\n"
                                "per-variant benchmark parameters and the evaluation options.",
    "glu_prune.plugin.judge": "The glu_eval fixture's object: evaluate one benchmark of a variant (once per\n"
                              "session), judge it against the baseline file and record it.",
}


def mod_path(mod: str) -> Path:
    """glu_prune.a.b -> glu_prune/a/b.py (a package's module -> its __init__.py)."""
    rel = Path(*mod.split("."))
    pkg = ROOT / rel / "__init__.py"
    return pkg if pkg.exists() or mod == "glu_prune.plugin" else ROOT / rel.with_suffix(".py")


def tracked(path: Path) -> bool:
    return subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], cwd=ROOT,
                          capture_output=True).returncode == 0


def git_mv(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if tracked(src):
        subprocess.run(["git", "mv", str(src), str(dst)], cwd=ROOT, check=True)
    else:
        src.rename(dst)
        subprocess.run(["git", "add", str(dst)], cwd=ROOT, check=True)


def git_rm(path: Path) -> None:
    if tracked(path):
        subprocess.run(["git", "rm", "-q", "-f", str(path)], cwd=ROOT, check=True)
    else:
        path.unlink()


# ---------------------------------------------------------------- splitting by name


def defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def used_names(text: str) -> set[str]:
    return {n.id for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Name)}


def chunks_of(src: str) -> tuple[list[ast.stmt], list[tuple[list[str], str]]]:
    """(import statements, [(names defined, text with the comments above it)])."""
    text = mod_path(src).read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    tree = ast.parse(text)
    imports, chunks, prev_end = [], [], 0
    for i, node in enumerate(tree.body):
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            prev_end = node.end_lineno
            continue  # the module docstring
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                               ast.Assign, ast.AnnAssign)):
            chunks.append((defined_names(node), "".join(lines[prev_end:node.end_lineno])))
        else:
            sys.exit(f"{src}: cannot split a top-level {type(node).__name__} at line {start}")
        prev_end = node.end_lineno
    return imports, chunks


def import_header(nodes: list[ast.stmt]) -> str:
    """One statement per module, names merged, isort's sections and order (ruff removes
    the unused names afterwards)."""
    froms: dict[str, list[str]] = {}
    plain: set[str] = set()
    for n in nodes:
        if isinstance(n, ast.ImportFrom):
            names = froms.setdefault(n.module, [])
            for a in n.names:
                text = a.name + (f" as {a.asname}" if a.asname else "")
                if text not in names:
                    names.append(text)
        else:
            plain.add(ast.unparse(n)[len("import "):])

    def section(module: str) -> int:
        top = module.split(".")[0]
        return 2 if top == "glu_prune" else 0 if top in sys.stdlib_module_names else 1

    out = ["from __future__ import annotations"]
    for sec in range(3):
        block = [f"import {m}" for m in sorted(plain) if section(m) == sec]
        block += [fmt_from(m, sorted(ns, key=lambda x: (not x[0].isupper(), x)), "")
                  for m, ns in sorted(froms.items()) if section(m) == sec and m != "__future__"]
        if block:
            out += [""] + block
    return "\n".join(out) + "\n"


def run_splits() -> list[Path]:
    parts: dict[str, list[tuple[str, list[tuple[list[str], str]]]]] = {}
    headers: dict[str, list[ast.stmt]] = {}
    copies: dict[str, dict[str, str]] = {}
    for src, (default, plan) in SPLITS.items():
        imports, chunks = chunks_of(src)
        route = {name: dest for dest, names in plan.items() for name in names}
        missing = set(route) - {n for names, _ in chunks for n in names}
        if missing:
            sys.exit(f"{src}: names not found (the file changed?): {sorted(missing)}")
        for names, text in chunks:
            if set(names) <= COPIED:
                copies.setdefault(src, {})[names[0]] = text
                continue
            dests = {route.get(n, default) for n in names}
            if len(dests) != 1:
                sys.exit(f"{src}: one statement defines names for two files: {names}")
            dest = dests.pop()
            group = parts.setdefault(dest, [])
            if not group or group[-1][0] != src:
                group.append((src, []))
            group[-1][1].append((names, text))
            headers.setdefault(dest, []).extend(imports)
    owner = {n: dest for dest, groups in parts.items() for _, cs in groups for ns, _ in cs
             for n in ns}
    written = []
    for dest, groups in parts.items():
        body = "\n\n".join("".join(t for _, t in cs).strip("\n") + "\n" for _, cs in groups)
        used = used_names(body)
        copied = "".join(t.strip("\n") + "\n" for src, _ in groups
                         for name, t in copies.get(src, {}).items() if name in used)
        siblings: dict[str, list[str]] = {}
        imported = {(a.asname or a.name) for n in headers[dest] for a in n.names}
        for name in sorted(used - imported):
            if owner.get(name, dest) != dest:
                siblings.setdefault(owner[name], []).append(name)
        cross = [ast.ImportFrom(module=m, names=[ast.alias(n) for n in ns], level=0)
                 for m, ns in siblings.items()]
        doc = DOCSTRINGS.get(dest, "")
        text = (f'"""{doc}\n"""\n\n' + import_header(headers[dest] + cross)
                + ("\n" + copied if copied else "") + "\n\n" + body)
        path = mod_path(dest)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            sys.exit(f"{path} exists already")
        path.write_text(text, encoding="utf-8")
        written.append(path)
        for m in siblings:
            print(f"  split: {dest} imports {m} ({', '.join(siblings[m])})")
    for src in SPLITS:
        git_rm(mod_path(src))
    subprocess.run(["git", "add", *map(str, written)], cwd=ROOT, check=True)
    return written


# ---------------------------------------------------------------- rewriting imports

OLD = set(MOVES) | set(SPLITS)
PROBLEMS: list[str] = []


def route(old: str, name: str | None) -> str:
    """New module of ``name`` imported from old module ``old``."""
    if old in SPLITS:
        default, plan = SPLITS[old]
        for dest, names in plan.items():
            if name in names:
                return dest
        return default
    return MOVES.get(old, old)


def attrs_used(text: str, local: str) -> set[str]:
    """Attributes of ``local`` used in ``text``: ``local.name`` and setattr(local, "name")."""
    dotted = re.findall(rf"(?<![\w.]){re.escape(local)}\.(\w+)", text)
    patched = re.findall(rf"setattr\(\s*{re.escape(local)}\s*,\s*[\"'](\w+)[\"']", text)
    return set(dotted) | set(patched)


_BOUND: dict[str, set[str]] = {}


def bound_in(module: str) -> set[str]:
    """Top-level names a new module binds (definitions and imports)."""
    if module not in _BOUND:
        tree = ast.parse(mod_path(module).read_text(encoding="utf-8"))
        names = set()
        for n in tree.body:
            if isinstance(n, (ast.Import, ast.ImportFrom)):
                names |= {(a.asname or a.name).split(".")[0] for a in n.names}
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(n.name)
            elif isinstance(n, (ast.Assign, ast.AnnAssign)):
                names |= set(defined_names(n))
        _BOUND[module] = names
    return _BOUND[module]


def route_attr(old: str, name: str) -> str:
    """Like route(), for an attribute of the old module object (also its imported names,
    e.g. perf.time)."""
    default, plan = SPLITS[old]
    dests = [default, *plan]
    if any(name in names for names in plan.values()) or name in bound_in(default):
        return route(old, name)
    found = [d for d in dests if name in bound_in(d)]
    return found[0] if found else default


SPLIT_ALIASES: list[tuple[str, dict[str, str]]] = []  # (local, attr -> new local) per file


def module_for_split_alias(text: str, old: str, local: str, where: str) -> str | None:
    """The one part that ``local.attr`` uses refer to; with several, None and a plan in
    SPLIT_ALIASES to import each part under its own name and rename the uses."""
    attrs = attrs_used(text, local)
    dests = {route_attr(old, a) for a in attrs}
    if len(dests) == 1:
        return dests.pop()
    names = {d: ("_" if local.startswith("_") else "") + d.rpartition(".")[2] for d in dests}
    if any(re.search(rf"\b{n}\b", text) for n in names.values()):
        PROBLEMS.append(f"{where}: {local} (= {old}) is used for names of {sorted(dests)}: "
                        f"import those modules by hand")
        return None
    SPLIT_ALIASES.append((local, {a: names[route_attr(old, a)] for a in attrs}))
    return None


def fmt_from(module: str, names: list[str], indent: str) -> str:
    line = f"{indent}from {module} import {', '.join(names)}"
    if len(line) <= 99:
        return line
    head = f"{indent}from {module} import ("
    out, cur = [], head
    for i, n in enumerate(names):
        piece = n + (", " if i < len(names) - 1 else ")")
        if len(cur) + len(piece.rstrip()) > 99 and cur.strip() not in ("", head.strip()):
            out.append(cur.rstrip())
            cur = " " * len(head) + piece
        else:
            cur += piece
    return "\n".join(out + [cur])


def rewrite_import(node: ast.stmt, text: str, me: str, where: str) -> list[str] | None:
    """New statements for an import of an old module (None: leave it as it is)."""
    if isinstance(node, ast.Import):
        out, changed = [], False
        for a in node.names:
            old = a.name
            if old in SPLITS:
                new = module_for_split_alias(text, old, a.asname or old, where) if a.asname \
                    else None
                if new is None:
                    PROBLEMS.append(f"{where}: import {old} without 'as': do it by hand")
                    return None
                out.append(f"import {new} as {a.asname}")
                changed = True
            elif old in MOVES:
                new = MOVES[old]
                out.append(f"import {new}" + (f" as {a.asname}" if a.asname else ""))
                changed = True
            else:
                out.append(f"import {old}" + (f" as {a.asname}" if a.asname else ""))
        return [" " * node.col_offset + line for line in out] if changed else None
    mod = node.module or ""
    if node.level or not mod.startswith("glu_prune"):
        return None
    groups: dict[str, list[str]] = {}
    changed = False
    for a in node.names:
        sub = f"{mod}.{a.name}"
        local = a.asname or a.name
        if sub in OLD:  # a module imported by name: from glu_prune import perf
            new = (module_for_split_alias(text, sub, local, where) if sub in SPLITS
                   else MOVES[sub])
            if new is None and SPLIT_ALIASES and SPLIT_ALIASES[-1][0] == local:
                for dest in sorted({route_attr(sub, a) for a in SPLIT_ALIASES[-1][1]}):
                    parent, _, leaf = dest.rpartition(".")
                    alias = next(v for k, v in SPLIT_ALIASES[-1][1].items()
                                 if route_attr(sub, k) == dest)
                    groups.setdefault(parent, []).append(f"{leaf} as {alias}")
                changed = True
                continue
            if new is None:
                return None
            parent, _, leaf = new.rpartition(".")
            groups.setdefault(parent, []).append(leaf + (f" as {local}" if leaf != local else ""))
            changed = True
        elif mod in OLD:
            new = route(mod, a.name)
            changed = True
            if new == me:
                continue  # now defined in this very module
            groups.setdefault(new, []).append(a.name + (f" as {a.asname}" if a.asname else ""))
        else:
            groups.setdefault(mod, []).append(a.name + (f" as {a.asname}" if a.asname else ""))
    if not changed:
        return None
    indent = " " * node.col_offset
    return [fmt_from(m, ns, indent) for m, ns in groups.items()]  # [] drops the statement


MODULE_STRING = re.compile(r"\bglu_prune(?:\.\w+)+")


def rewrite_dotted(match: re.Match, where: str) -> str:
    dotted = match.group(0)
    parts = dotted.split(".")
    for i in range(len(parts), 1, -1):
        old = ".".join(parts[:i])
        if old in OLD:
            rest = parts[i:]
            if old in SPLITS:
                if not rest:
                    return BARE[old]
                return ".".join([route(old, rest[0])] + rest)
            return ".".join([MOVES[old]] + rest)
    return dotted


def rewrite_code_in_string(s: str, where: str) -> str:
    """``import glu_prune.perf as perf`` inside a string (a conftest a test writes)."""
    def repl(m: re.Match) -> str:
        new = module_for_split_alias(s, m[1], m[2], where)
        return f"import {new} as {m[2]}" if new else m[0]
    pattern = r"import (" + "|".join(map(re.escape, SPLITS)) + r") as (\w+)"
    return re.sub(pattern, repl, s)


def rewrite_strings(text: str, where: str) -> str:
    """Module names inside string literals and comments (pytest_plugins, -p, monkeypatch
    targets, logger names, docs)."""
    out = []
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    for tok in tokens:
        if tok.type in (tokenize.STRING, tokenize.COMMENT) and "glu_prune." in tok.string:
            new = rewrite_code_in_string(tok.string, where)
            new = MODULE_STRING.sub(lambda m: rewrite_dotted(m, where), new)
            if new != tok.string:
                out.append((tok.start, tok.end, new))
    if not out:
        return text
    lines = text.splitlines(keepends=True)
    for (sr, sc), (er, ec), new in reversed(out):
        if sr != er:  # a multi-line string: rebuild it from its lines
            first, last = lines[sr - 1], lines[er - 1]
            lines[sr - 1:er] = [first[:sc] + new + last[ec:]]
        else:
            line = lines[sr - 1]
            lines[sr - 1] = line[:sc] + new + line[ec:]
    return "".join(lines)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rewrite_file(path: Path) -> bool:
    text = path.read_text(encoding="utf-8")
    where = str(path.relative_to(ROOT))
    me = module_name(path)
    tree = ast.parse(text)
    scope = {}  # import node -> source of the function it sits in (its names' uses are there)
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for n in ast.walk(fn):
                scope[n] = ast.get_source_segment(text, fn)  # innermost wins (walked later)
    edits = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            new = rewrite_import(node, scope.get(node, text), me, where)
            if new is not None:
                edits.append((node.lineno, node.end_lineno, node.end_col_offset, new))
    lines = text.splitlines(keepends=True)
    for start, end, end_col, new in sorted(edits, reverse=True):
        tail = lines[end - 1][end_col:]  # a trailing comment, or just the newline
        lines[start - 1:end] = ["\n".join(new) + tail] if new else []
    joined = "".join(lines)
    while SPLIT_ALIASES:  # a split module used for names of several parts: rename the uses
        local, renames = SPLIT_ALIASES.pop()
        joined = re.sub(rf"(?<![\w.]){re.escape(local)}\.(\w+)",
                        lambda m: f"{renames.get(m[1], local)}.{m[1]}", joined)
    new_text = rewrite_strings(joined, where)
    if new_text != text:
        path.write_text(new_text, encoding="utf-8")
        return True
    return False


ROOT_INIT = '''"""glu-prune: structured width pruning of Llama GLU-MLP layers, and a pytest suite to judge it."""

from glu_prune.catalog import models  # noqa: F401  (README: glu_prune.models.make_config)
from glu_prune.catalog.models import MODELS, ModelSpec, get_model_spec
from glu_prune.core.arithmetic import expansion_table, kept_count
from glu_prune.core.loading import WeightsUnavailable, load_model
from glu_prune.core.prune import PruneReport, prune_glu_mlp

__version__ = "0.1.0"
__all__ = ["MODELS", "ModelSpec", "PruneReport", "WeightsUnavailable", "expansion_table",
           "get_model_spec", "kept_count", "load_model", "prune_glu_mlp", "__version__"]
'''


def reheader(path: Path) -> None:
    """Sort a split part's import block again (the rewrite renamed its modules)."""
    text = path.read_text(encoding="utf-8")
    nodes = [n for n in ast.parse(text).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    if not nodes:
        return
    lines = text.splitlines(keepends=True)
    first, last = nodes[0].lineno, nodes[-1].end_lineno
    lines[first - 1:last] = [import_header(nodes)]
    path.write_text("".join(lines), encoding="utf-8")


def tidy(path: Path) -> None:
    """After ruff removed unused imports: one blank line at most inside the import block,
    two after it, never more than two anywhere."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    last = max((n.end_lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))),
               default=0)
    lines = text.splitlines(keepends=True)
    head, rest = "".join(lines[:last]), "".join(lines[last:])
    head = re.sub(r"\n{3,}", "\n\n", head)
    rest = "\n\n" + re.sub(r"\n{4,}", "\n\n\n", rest.lstrip("\n"))
    rest = re.sub(r"^\n\n(LOG = )", r"\n\1", rest)  # the logger right below the imports
    path.write_text(head + rest, encoding="utf-8")


CUT_BANNER = "# ---------------------------------------------------------------- the pytest glue (pytester)"


def cut_quality_plugin_tests() -> Path:
    """tests/unit/test_evaluate.py's pytester part (the glu_eval flow, owned by B2) becomes
    tests/plugin/test_quality_plugin.py; the evaluation unit tests stay (owned by B4)."""
    src = ROOT / "tests" / "unit" / "test_evaluate.py"
    dst = ROOT / "tests" / "plugin" / "test_quality_plugin.py"
    text = src.read_text(encoding="utf-8")
    if CUT_BANNER not in text:
        sys.exit(f"{src}: banner {CUT_BANNER!r} not found: cut the pytester part by hand")
    head, tail = text.split(CUT_BANNER, 1)
    used = used_names(tail) | {w for w in re.findall(r"\w+", tail)}  # strings use names too
    kept = []
    for n in ast.parse(head).body:
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            names = [a for a in n.names if (a.asname or a.name).split(".")[0] in used]
            if names:
                kept.append(ast.ImportFrom(module=n.module, names=names, level=0)
                            if isinstance(n, ast.ImportFrom) else ast.Import(names=names))
    header = import_header(kept).replace("from __future__ import annotations\n\n", "", 1)
    dst.write_text('"""The glu_eval flow end to end (pytester): evaluate once per variant, judge '
                   'against the\nbaseline file, pin with --glu-update-baselines, fail with one '
                   'message."""\n\n' + header + "\n\n" + CUT_BANNER + tail, encoding="utf-8")
    src.write_text(head.rstrip("\n") + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "ruff", "check", "--quiet", "--fix", "--select",
                    "F401", str(src), str(dst)], cwd=ROOT)
    subprocess.run(["git", "add", str(src), str(dst)], cwd=ROOT, check=True)
    return dst


def main() -> None:
    # .gitignore's "results/" (the report folder) would also hide glu_prune/results/
    ignore = ROOT / ".gitignore"
    lines = ignore.read_text(encoding="utf-8").splitlines()
    if "results/" in lines:
        lines[lines.index("results/")] = "/results/"
        ignore.write_text("\n".join(lines) + "\n", encoding="utf-8")
        subprocess.run(["git", "add", ".gitignore"], cwd=ROOT, check=True)
    for name, doc in PACKAGES.items():
        init = ROOT / "glu_prune" / name / "__init__.py"
        init.parent.mkdir(exist_ok=True)
        init.write_text(f'"""{doc}\n"""\n', encoding="utf-8")
        subprocess.run(["git", "add", str(init)], cwd=ROOT, check=True)
    written = run_splits()
    subprocess.run([sys.executable, "-m", "ruff", "check", "--quiet", "--fix", "--select",
                    "F401", *map(str, written)], cwd=ROOT)
    for old, new in MOVES.items():
        src = ROOT / Path(*old.split(".")).with_suffix(".py")
        dst = (ROOT / Path(*new.split(".")) / "__init__.py" if new == "glu_prune.plugin"
               else ROOT / Path(*new.split(".")).with_suffix(".py"))
        git_mv(src, dst)
    files = sorted({*ROOT.glob("glu_prune/**/*.py"), *ROOT.glob("tests/**/*.py"),
                    *ROOT.glob("benchmarks/*.py"), ROOT / "conftest.py"})
    changed = [f for f in files if rewrite_file(f)]
    print(f"rewrote imports or module strings in {len(changed)} files")
    subprocess.run([sys.executable, "-m", "ruff", "check", "--quiet", "--fix", "--select",
                    "F401", *map(str, written)], cwd=ROOT)
    for path in written:
        reheader(path)
        tidy(path)
    (ROOT / "glu_prune" / "__init__.py").write_text(ROOT_INIT, encoding="utf-8")
    print(f"cut {cut_quality_plugin_tests().relative_to(ROOT)} out of tests/unit/test_evaluate.py")
    subprocess.run(["git", "add", "-A", "glu_prune", "tests", "benchmarks", "conftest.py"],
                   cwd=ROOT, check=True)
    here = Path(__file__).resolve().parent  # test_layering.py and fill_allowlist.py beside this
    layering = ROOT / "tests" / "unit" / "test_layering.py"
    layering.write_text((here / "test_layering.py").read_text(encoding="utf-8"), encoding="utf-8")
    subprocess.run([sys.executable, str(here / "fill_allowlist.py"), "--write"], cwd=ROOT,
                   check=True)
    subprocess.run(["git", "add", str(layering)], cwd=ROOT, check=True)
    for p in PROBLEMS:
        print("BY HAND:", p)
    if not PROBLEMS:
        print("nothing left to do by hand")


if __name__ == "__main__":
    main()
