"""PNG charts of a results set (matplotlib: the optional ``[plots]`` extra).

Per model: each benchmark's relative change against the expansion ratio, the fragile vs
robust group means against the share of neurons removed, and one panel per speed
benchmark with the measured speedup (95 % interval as error bars) and the ideal one.
Every benchmark has its own colour and marker; rounded variants (``round_to`` > 1) are
series of their own, drawn hollow at the size they actually keep. Uses matplotlib's
object API (``Figure``), never pyplot's global state, so it works headless and inside a
pytest run.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

from glu_prune.results.analysis import (benchmark_changes, by_model, chance_benchmarks,
                                        group_means)
from glu_prune.results.lookup import architecture, benchmark_key, sort_records
from glu_prune.results.perf_tables import measured_on, perf_records, speedup_of
from glu_prune.results.record import Record

LOG = logging.getLogger(__name__)

# 13 base benchmarks: every one gets its own colour (tab20's dark shades, then its light
# ones) and its own marker, so no two series look alike even in grey print; the light
# shades' markers (from "d" on) differ most from those of their dark twins.
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "d", "p", "h", "8", "H")
DPI = 120


def _figure(rows: int = 1, cols: int = 1) -> tuple[Any, Any]:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plots need matplotlib: pip install 'glu-prune[plots]' "
                          f"({exc})") from None
    fig = Figure(figsize=(5.5 * cols if cols > 1 else 9, 4.2 * rows if rows > 1 else 5.5),
                 layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def _panels(n: int) -> tuple[Any, list[Any]]:
    """A figure with ``n`` panels, two a row (one when ``n`` is 1); spare axes hidden."""
    cols = min(2, n)
    fig, axes = _figure(math.ceil(n / cols), cols)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def style(index: int) -> dict[str, Any]:
    """Colour and marker of series ``index``: distinct for the first 15 series."""
    from matplotlib import colormaps

    tab20 = colormaps["tab20"].colors
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))  # dark shades first
    return {"color": tab20[order[index % 20]], "marker": MARKERS[index % len(MARKERS)]}


def _drawn(rounded: bool, base: dict[str, Any]) -> dict[str, Any]:
    """Exact levels: filled markers; rounded ones: hollow markers on a dotted line."""
    if not rounded:
        return base
    return {**base, "markerfacecolor": "white", "linestyle": ":"}


def _colour_index(model: str, bench: str, benches: Sequence[str]) -> int:
    """A benchmark's place in the registry's order, so it has one colour in every chart."""
    key = benchmark_key(model, bench)
    return key[1] if key[0] == 0 else len(MARKERS) + list(benches).index(bench)


def _left_out_note(fig: Any, records: Sequence[Record]) -> None:
    """Name the benchmarks left out for being at chance at level 0 (their change is noise)."""
    left_out = chance_benchmarks(records)
    if left_out:
        fig.supxlabel(f"left out, at chance at level 0: {', '.join(left_out)}",
                      fontsize="small", color="dimgrey")


def _ratio(model: str, pct: float, round_to: int, records: Sequence[Record]) -> float | None:
    arch = architecture(model, pct, round_to)
    if arch is not None:
        return arch["expansion_ratio"]
    return next((r.expansion_ratio for r in records
                 if r.pct == pct and r.round_to == round_to), None)


def removed_pct(model: str, pct: float, round_to: int) -> float:
    """Share of MLP neurons a variant actually removes (p40-r64 of 512 keeps 320: 37.5)."""
    arch = architecture(model, pct, round_to)
    return arch["pruned_pct"] if arch is not None else pct


def _series(keys: Sequence[tuple[float, str, int]]) -> list[tuple[str, int]]:
    """(method, round_to) series, exact before rounded."""
    return sorted({(k[1], k[2]) for k in keys}, key=lambda s: (s[1], s[0]))


def _series_name(method: str, round_to: int, several_methods: bool) -> str:
    parts = [method] if several_methods else []
    return " ".join(parts + ([f"rounded to {round_to}"] if round_to > 1 else []))


def _rounded_legend(ax: Any, roundings: set[int], loc: str = "best") -> None:
    """One legend entry per rounding, for the hollow markers (the benchmarks' entries
    are the filled ones)."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    for r in sorted(x for x in roundings if x > 1):
        handles.append(Line2D([], [], color="grey", marker="o", markerfacecolor="white",
                              linestyle=":"))
        labels.append(f"hollow, dotted: rounded to {r}")
    ax.legend(handles, labels, fontsize="small", ncols=2, loc=loc)


def _capability_panel(ax: Any, model: str, records: Sequence[Record],
                      changes: dict, method: str | None, benches: Sequence[str]) -> None:
    """One method's (or every series', when ``method`` is None) benchmark curves."""
    groups = {r.benchmark: r.group for r in records}
    for m, rt in _series(list(changes)):
        if method is not None and m != method:
            continue
        keys = sorted(k for k in changes if (k[1], k[2]) == (m, rt))
        for bench in benches:
            pts = [] if rt > 1 else [(_ratio(model, 0.0, 1, records), 0.0)]  # level 0: 0
            pts += [(_ratio(model, k[0], rt, records), 100 * changes[k][bench])
                    for k in keys if bench in changes[k]]
            pts = [(x, y) for x, y in pts if x is not None]
            if not pts:
                continue
            base = {**style(_colour_index(model, bench, benches)),
                    "linestyle": "--" if groups.get(bench) == "robust" else "-"}
            ax.plot(*zip(*pts), label=None if rt > 1 else bench, **_drawn(rt > 1, base))
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.invert_xaxis()  # left to right = more pruning
    ax.set(xlabel="expansion ratio (intermediate / hidden)", title=method or "")


def capability_figure(model: str, records: Sequence[Record]) -> Any:
    """Each benchmark's relative change (%) against the expansion ratio, one panel per
    importance method when several ran (one colour per benchmark in all); None: no data."""
    changes = benchmark_changes(records)
    if not changes:
        return None
    benches = sorted({b for c in changes.values() for b in c},
                     key=lambda b: benchmark_key(model, b))
    methods = sorted({k[1] for k in changes})
    panels = [None] if len(methods) == 1 else methods
    fig, axes = _panels(len(panels))
    for ax, method in zip(axes, panels):
        _capability_panel(ax, model, records, changes, method, benches)
    for ax in axes[::2]:  # the left column
        ax.set_ylabel("relative change in quality, % (negative = worse)")
    fig.suptitle(f"{model}: benchmarks vs expansion ratio (solid fragile, dashed robust)",
                 fontsize="medium")
    _left_out_note(fig, records)
    _rounded_legend(axes[0], {k[2] for k in changes}, loc="lower left")
    return fig


def group_figure(model: str, records: Sequence[Record]) -> Any:
    """Mean relative change of the fragile and the robust group against the share of
    neurons actually removed (None: no data)."""
    means = group_means(records)
    if not any("fragile" in m or "robust" in m for m in means.values()):
        return None
    several = len({k[1] for k in means}) > 1
    fig, axes = _figure()
    ax = axes[0][0]
    for s, (method, rt) in enumerate(_series(list(means))):
        for g, (group, line) in enumerate((("fragile", "-"), ("robust", "--"))):
            pts = [] if rt > 1 else [(0.0, 0.0)]
            pts += [(removed_pct(model, k[0], rt), 100 * m[group]) for k, m in means.items()
                    if (k[1], k[2]) == (method, rt) and group in m]
            if len(pts) > (0 if rt > 1 else 1):
                # several methods: one colour and marker per method, the line says the group
                base = {**style(s if several else (g if rt == 1 else 2 * s + g)),
                        "linestyle": line}
                name = " ".join(filter(None, (group, _series_name(method, rt, several))))
                ax.plot(*zip(*pts), label=name, **_drawn(rt > 1, base))
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set(xlabel="MLP neurons removed, %",
           ylabel="mean relative change in quality, % (negative = worse)",
           title=f"{model}: fragile vs robust")
    _left_out_note(fig, records)
    ax.legend(fontsize="small")
    return fig


def _speed_points(records: Sequence[Record]) -> list[tuple[float, float, float, float,
                                                           float | None, int]]:
    """(x, speedup, down, up, ideal, round_to) per variant; level 0 is (0, 1, 0, 0, 1)."""
    out = []
    ref = next((r for r in records if r.pct == 0), None)
    for r in records:
        speed, low, high = speedup_of(r, ref)
        if r.pct == 0:
            speed, low, high = 1.0, 1.0, 1.0
        if speed is None or r.pct is None:
            continue
        down = speed - low if low is not None else 0.0
        up = high - speed if high is not None else 0.0
        out.append((removed_pct(r.model, r.pct, r.round_to), speed, down, up,
                    r.ideal if r.pct else 1.0, r.round_to))
    return sorted(out)


def _speed_panel(ax: Any, bench: str, records: Sequence[Record]) -> None:
    """Measured speedups with their intervals (solid; rounded variants dashed and hollow,
    in the second colour) and the ideal ones (thin: dotted, rounded dash-dotted)."""
    points = _speed_points(records)
    for i, rt in enumerate(sorted({p[5] for p in points})):
        pts = [p for p in points if p[5] == rt or (rt > 1 and p[0] == 0.0)]
        x, name = [p[0] for p in pts], f" rounded to {rt}" if rt > 1 else ""
        look = {**style(i), "linestyle": "--" if rt > 1 else "-"}
        if rt > 1:
            look["markerfacecolor"] = "white"
        ax.errorbar(x, [p[1] for p in pts], yerr=[[p[2] for p in pts], [p[3] for p in pts]],
                    capsize=3, label=f"measured{name}", **look)
        ideal = [(p[0], p[4]) for p in pts if p[4]]
        if ideal:
            ax.plot(*zip(*ideal), color=look["color"], linestyle="-." if rt > 1 else ":",
                    linewidth=1.2, label=f"ideal{name}")
    ax.axhline(1, color="grey", linewidth=0.8)
    ax.set(title=bench, xlabel="MLP neurons removed, %", ylabel="speedup vs level 0")
    ax.legend(fontsize="x-small")


def performance_figure(model: str, records: Sequence[Record]) -> Any:
    """One panel per speed benchmark: measured speedup vs level 0 with its 95 % interval,
    and the ideal (FLOP or weight-byte) speedup, dotted, on every panel (None: no data)."""
    perf = sort_records(perf_records(records))
    benches = sorted({r.benchmark for r in perf}, key=lambda b: benchmark_key(model, b))
    benches = [b for b in benches if any(r.pct for r in perf if r.benchmark == b)]
    if not benches:
        return None
    fig, axes = _panels(len(benches))
    for ax, bench in zip(axes, benches):
        _speed_panel(ax, bench, [r for r in perf if r.benchmark == bench])
    whole = [r for r in perf if not r.benchmark.startswith("mlp")] or perf
    fig.suptitle(f"{model}: speedup vs unpruned (error bars: 95 % interval; thin: ideal)\n"
                 f"{measured_on(whole, beside_params=False)}", fontsize="medium")
    return fig


FIGURES = (("capabilities", capability_figure), ("groups", group_figure),
           ("performance", performance_figure))


def write_plots(records: Sequence[Record], out_dir: str | Path) -> list[Path]:
    """Every chart that the records allow, as ``<model>-<chart>.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for model, every in by_model(records).items():
        recs = [r for r in every if r.shape == "width"]  # the level charts are width's
        for name, draw in FIGURES:
            fig = draw(model, recs)
            if fig is not None:
                paths.append(out / f"{model}-{name}.png")
                fig.savefig(paths[-1], dpi=DPI)
    LOG.info("wrote %d charts to %s", len(paths), out)
    return paths
