"""The shapes chart (matplotlib, the optional ``[plots]`` extra): quality change against
decode speedup, one point per pruned variant, each shape its own colour and each method
its own marker, level 0 as the reference at (1, 0).

A variant whose decode speed was not measured is drawn in a narrow strip of its own at
the left, at its quality change: shown, never placed at a speed nobody measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from glu_prune.results.analysis import by_model, group_means
from glu_prune.results.equal_params import Member, members, speedup
from glu_prune.results.perf_tables import family, perf_records
from glu_prune.results.plots import DPI, _figure, style
from glu_prune.results.record import QUALITY_KINDS, SHAPES, Record

SHAPE_COLOURS = {"width": "tab:blue", "depth": "tab:red", "global": "tab:green"}
METHOD_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _decode_bench(records: Sequence[Record]) -> str | None:
    """The first TPOT (decode) benchmark measured, the speed this chart reads."""
    return next((b for b in sorted({r.benchmark for r in perf_records(records)})
                 if family(b) == "tpot"), None)


def _points(records: Sequence[Record]) -> list[tuple[Member, float, float | None]]:
    """(member, mean quality change in %, decode speedup or None) per variant whose quality
    change is known."""
    quality = [r for r in records if r.kind in QUALITY_KINDS]
    means = group_means(quality, key=lambda r: r.variant)
    bench, perf = _decode_bench(records), perf_records(records)
    out = []
    for m in members(records):
        change = means.get(m.slug, {}).get("all")
        if change is not None:
            out.append((m, 100 * change, speedup(m, bench, perf) if bench else None))
    return out


def _look(m: Member, methods: dict[tuple[str, str], int]) -> dict[str, Any]:
    key = (m.shape, m.records[0].method)
    marker = METHOD_MARKERS[methods.setdefault(key, len(
        [k for k in methods if k[0] == m.shape])) % len(METHOD_MARKERS)]
    return {"color": SHAPE_COLOURS.get(m.shape, style(SHAPES.index(m.shape))["color"]),
            "marker": marker, "markersize": 8, "linestyle": "none"}


def _level(m: Member) -> str:
    r = m.records[0]
    if m.shape == "depth":
        return f"d{r.extra.get('layers_removed', '?')}"
    return f"p{r.pct:g}" + (f"-r{r.round_to}" if r.round_to > 1 else "")


def _draw(ax: Any, points: list, xs: list[float], methods: dict, seen: set) -> None:
    for (m, change, _speed), x in zip(points, xs):
        name = f"{m.shape} {m.records[0].method}"
        ax.plot([x], [change], label=None if name in seen else name, **_look(m, methods))
        seen.add(name)
        ax.annotate(_level(m), (x, change), textcoords="offset points", xytext=(5, 4),
                    fontsize="x-small")


def shapes_figure(model: str, records: Sequence[Record]) -> Any:
    """The chart of ``model``'s variants of every shape (None: only width ran, or no
    variant has a quality change)."""
    if not any(r.shape != "width" for r in records):
        return None
    points = _points(records)
    if not points:
        return None
    timed = [p for p in points if p[2] is not None]
    untimed = [p for p in points if p[2] is None]
    fig, axes = _figure()  # matplotlib's guard and the charts' size and layout
    fig.delaxes(axes[0][0])
    if untimed:  # a strip of their own for variants with no decode speed
        strip, ax = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1, 5]})
    else:
        ax = fig.subplots(1, 1)
        strip = None
    methods: dict[tuple[str, str], int] = {}
    seen: set[str] = set()
    ax.plot([1.0], [0.0], marker="*", color="grey", markersize=12, linestyle="none",
            label="level 0 (reference)")
    _draw(ax, timed, [p[2] for p in timed], methods, seen)
    panels = [ax] if strip is None else [ax, strip]
    ylabel = "mean relative change in quality, % (negative = worse)"
    if strip is not None:
        _draw(strip, untimed, [(i + 1) / (len(untimed) + 1) for i in range(len(untimed))],
              methods, seen)
        strip.set(xlim=(0, 1), xticks=[], title="decode speed\nnot measured", ylabel=ylabel)
    else:
        ax.set(ylabel=ylabel)
    for a in panels:
        a.axhline(0, color="grey", linewidth=0.8)
    ax.axvline(1, color="grey", linewidth=0.8, linestyle=":")
    bench = _decode_bench(records)
    ax.set(xlabel=f"decode speedup vs level 0, measured ({bench or 'no TPOT run'})",
           title=f"{model}: quality vs decode speed per shape")
    handles, labels = [], []
    for a in panels:
        h, lab = a.get_legend_handles_labels()
        handles += h
        labels += lab
    ax.legend(handles, labels, fontsize="small", loc="best")
    return fig


def write_shape_plots(records: Sequence[Record], out_dir: str | Path) -> list[Path]:
    """``<model>-shapes.png`` in ``out_dir`` per model whose records hold another shape
    than width."""
    paths = []
    for model, recs in by_model(records).items():
        fig = shapes_figure(model, recs)
        if fig is not None:
            paths.append(Path(out_dir) / f"{model}-shapes.png")
            fig.savefig(paths[-1], dpi=DPI)
    return paths
