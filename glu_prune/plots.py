"""PNG charts of a results set (matplotlib: the optional ``[plots]`` extra).

Per model: each benchmark's relative change against the expansion ratio, the fragile vs
robust group means against the pruning level, and speedups against the level (measured
solid, ideal dotted). Uses matplotlib's object API (``Figure``), never pyplot's global
state, so it works headless and inside a pytest run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from glu_prune.report import (Record, benchmark_changes, by_model, group_means,
                              perf_records)
from glu_prune.report_io import architecture, sort_records

LOG = logging.getLogger(__name__)


def _figure() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plots need matplotlib: pip install 'glu-prune[plots]' "
                          f"({exc})") from None
    fig = Figure(figsize=(8, 5), layout="constrained")
    return fig, fig.subplots()


def _ratio(model: str, pct: float, round_to: int, records: Sequence[Record]) -> float | None:
    arch = architecture(model, pct, round_to)
    if arch is not None:
        return arch["expansion_ratio"]
    return next((r.expansion_ratio for r in records
                 if r.pct == pct and r.round_to == round_to), None)


def _series_name(method: str, round_to: int, several: bool) -> str:
    return (method + (f" r{round_to}" if round_to > 1 else "")) if several else ""


def capability_chart(model: str, records: Sequence[Record], path: Path) -> Path | None:
    """Each benchmark's relative change (%) against the expansion ratio."""
    changes = benchmark_changes(records)
    if not changes:
        return None
    groups = {r.benchmark: r.group for r in records}
    series = sorted({(k[1], k[2]) for k in changes})
    fig, ax = _figure()
    for method, rt in series:
        keys = sorted(k for k in changes if (k[1], k[2]) == (method, rt))
        benches = sorted({b for k in keys for b in changes[k]},
                         key=lambda b: [r.benchmark for r in records].index(b))
        for bench in benches:
            pts = [(_ratio(model, 0.0, 1, records), 0.0)]  # level 0: no change by definition
            pts += [(_ratio(model, k[0], rt, records), 100 * changes[k][bench])
                    for k in keys if bench in changes[k]]
            pts = [(x, y) for x, y in pts if x is not None]
            name = " ".join(filter(None, (bench, _series_name(method, rt, len(series) > 1))))
            ax.plot(*zip(*pts), marker="o", label=name,
                    linestyle="--" if groups.get(bench) == "robust" else "-")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.invert_xaxis()  # left to right = more pruning
    ax.set(xlabel="expansion ratio (intermediate / hidden)", ylabel="relative change in quality, %",
           title=f"{model}: benchmarks vs expansion ratio (solid fragile, dashed robust)")
    ax.legend(fontsize="small", ncols=2)
    fig.savefig(path, dpi=120)
    return path


def group_chart(model: str, records: Sequence[Record], path: Path) -> Path | None:
    """Mean relative change of the fragile and the robust group against the level."""
    means = group_means(records)
    if not any("fragile" in m or "robust" in m for m in means.values()):
        return None
    series = sorted({(k[1], k[2]) for k in means})
    fig, ax = _figure()
    for method, rt in series:
        for group, style in (("fragile", "-"), ("robust", "--")):
            pts = [(0.0, 0.0)] + [(k[0], 100 * m[group]) for k, m in means.items()
                                  if (k[1], k[2]) == (method, rt) and group in m]
            if len(pts) > 1:
                name = " ".join(filter(None, (group, _series_name(method, rt, len(series) > 1))))
                ax.plot(*zip(*pts), marker="o", linestyle=style, label=name)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set(xlabel="pruning level, % of MLP neurons removed",
           ylabel="mean relative change in quality, %", title=f"{model}: fragile vs robust")
    ax.legend()
    fig.savefig(path, dpi=120)
    return path


def performance_chart(model: str, records: Sequence[Record], path: Path) -> Path | None:
    """Measured speedup vs level 0 (solid) and the ideal speedup (dotted) per level."""
    perf = sort_records(perf_records(records))
    refs = {(r.benchmark, r.metric): r.value for r in perf if r.pct == 0 and r.value}
    lines: dict[tuple[str, str], list[tuple[float, float, float | None]]] = {}
    for r in perf:
        ref = refs.get((r.benchmark, r.metric))
        if ref is None or r.pct is None or not r.value:
            continue
        speed = r.value / ref if r.direction == "higher" else ref / r.value
        lines.setdefault((r.benchmark, r.metric), []).append((r.pct, speed, r.ideal))
    if not lines:
        return None
    fig, ax = _figure()
    for (bench, metric), pts in lines.items():
        line = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                       label=f"{bench} {metric}")[0]
        ideal = [(p[0], p[2]) for p in pts if p[2]]
        if ideal:
            ax.plot(*zip(*ideal), linestyle=":", color=line.get_color())
    ax.axhline(1, color="grey", linewidth=0.8)
    ax.set(xlabel="pruning level, % of MLP neurons removed",
           ylabel="speedup vs level 0 (dotted: ideal)", title=f"{model}: speed")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=120)
    return path


def write_plots(records: Sequence[Record], out_dir: str | Path) -> list[Path]:
    """Every chart that the records allow, as ``<model>-<chart>.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for model, recs in by_model(records).items():
        for name, chart in (("capabilities", capability_chart), ("groups", group_chart),
                            ("performance", performance_chart)):
            path = chart(model, recs, out / f"{model}-{name}.png")
            if path is not None:
                paths.append(path)
    LOG.info("wrote %d charts to %s", len(paths), out)
    return paths
