"""Paired rounds (reference and variant alternating), the speedup with its interval,
timing statistics, and the measured row of one benchmark.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from glu_prune.performance.settings import CONFIDENCE


# ---------------------------------------------------------------- paired rounds


@dataclass(frozen=True)
class Call:
    """A timed call; ``fresh`` makes its arguments anew each round, untimed."""

    fn: Callable[..., Any]
    args: tuple = ()
    fresh: Callable[[], tuple] | None = None

    def arguments(self) -> tuple:
        return self.fresh() if self.fresh is not None else self.args

    def timed(self) -> float:
        """Seconds of one call (pytest-benchmark's default timer, ``perf_counter``)."""
        args = self.arguments()
        t0 = time.perf_counter()
        self.fn(*args)
        return time.perf_counter() - t0


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE
                    ) -> tuple[float | None, float | None]:
    """Distribution-free confidence interval of the median (order statistics, scipy's
    ``quantile_test``); ``(None, None)`` when there are too few values for ``confidence``
    (fewer than 6 at 95 %)."""
    from scipy.stats import quantile_test

    if len(values) < 2:
        return None, None
    ci = quantile_test(list(values), q=statistics.median(values), p=0.5
                       ).confidence_interval(confidence)
    if not (math.isfinite(ci.low) and math.isfinite(ci.high)):
        return None, None
    return float(ci.low), float(ci.high)


def _same(t: float) -> float:
    return t


@dataclass(frozen=True)
class Speedup:
    """Reference time / variant time of each paired round, summarized by the median and a
    confidence interval of the median. Significant when the interval excludes 1.

    ``reference`` and ``variant`` keep the paired rounds' seconds, so a table can show the
    two medians the speedup was measured from (not the reference's own, separate test)."""

    ratios: tuple[float, ...]
    confidence: float = CONFIDENCE
    reference: tuple[float, ...] = ()
    variant: tuple[float, ...] = ()

    @classmethod
    def of_rounds(cls, reference: Sequence[float], variant: Sequence[float]) -> Speedup:
        """The speedup of paired rounds: ``reference[i]`` timed just before ``variant[i]``."""
        pairs = tuple(zip(reference, variant, strict=True))
        return cls(tuple(r / v for r, v in pairs), reference=tuple(reference),
                   variant=tuple(variant))

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def interval(self) -> tuple[float | None, float | None]:
        return median_interval(self.ratios, self.confidence)

    @property
    def significant(self) -> bool:
        low, high = self.interval
        return low is not None and (low > 1 or high < 1)

    def fields(self, scale: Callable[[float], float] = _same) -> dict[str, Any]:
        """The record fields: ``speedup`` and its interval, rounds and significance, and
        the paired rounds' medians in the row's unit (``scale`` maps seconds to it, as for
        :func:`spread`)."""
        low, high = self.interval
        pair = {}
        if self.reference and self.variant:
            pair = {"pair_reference": scale(statistics.median(self.reference)),
                    "pair_variant": scale(statistics.median(self.variant))}
        return {"speedup": self.median, "speedup_low": low, "speedup_high": high,
                "speedup_rounds": len(self.ratios), "speedup_confidence": self.confidence,
                "speedup_significant": self.significant, "speedup_paired": True, **pair}


def run_paired(benchmark: Any, variant: Call, reference: Call | None, *, rounds: int,
               warmup: int) -> tuple[Any, Speedup | None]:
    """Time ``variant`` with pytest-benchmark, each round preceded by a timed round of
    ``reference`` (pedantic's ``setup``): A B A B ... in one session.

    Returns the variant call's last result and the paired speedup (``None`` without a
    reference, or when benchmarks are disabled).
    """
    ref_times: list[float] = []

    def setup() -> tuple[tuple, dict]:
        if reference is not None:
            ref_times.append(reference.timed())
        return variant.arguments(), {}

    result = benchmark.pedantic(variant.fn, setup=setup, rounds=rounds, warmup_rounds=warmup)
    stats = getattr(benchmark.stats, "stats", None) if benchmark.stats else None
    if reference is None or stats is None:
        return result, None
    paired = ref_times[warmup:warmup + len(stats.data)]  # setup also ran before warm-ups
    return result, Speedup.of_rounds(paired, stats.data)


# ---------------------------------------------------------------- statistics and ideals


def timing_stats(benchmark: Any) -> dict[str, float]:
    """pytest-benchmark's statistics of the last run (quartiles, Tukey outliers), plus p90
    (which it does not give)."""
    s = benchmark.stats.stats
    data = sorted(s.data)
    p90 = data[0] if len(data) == 1 else statistics.quantiles(data, n=10, method="inclusive")[8]
    return {"median_s": s.median, "p90_s": p90, "mean_s": s.mean, "min_s": s.min,
            "max_s": s.max, "q1_s": s.q1, "q3_s": s.q3, "iqr_s": s.iqr,
            "outliers": s.iqr_outliers, "rounds": s.rounds}


def spread(stats: dict[str, float], scale: Callable[[float], float] = lambda t: t
           ) -> dict[str, Any]:
    """The quartiles of a timing in the row's own unit, rounds and Tukey outliers.

    ``scale`` turns seconds into the unit (per token: t / n; tokens/s: n / t, which
    reverses the order of the quartiles, hence the sort).
    """
    q1, q3 = sorted((scale(stats["q1_s"]), scale(stats["q3_s"])))
    return {"q1": q1, "q3": q3, "rounds": stats["rounds"], "outliers": stats["outliers"]}


# ---------------------------------------------------------------- judging and records


@dataclass
class Row:
    """One measured benchmark row of one variant: the judged metric and what goes beside it."""

    benchmark: str  # "ttft@512", "tpot", "throughput@b8", "mlp@T512", "energy-prefill@512"
    metric: str
    value: float
    unit: str
    higher_is_better: bool = False
    ideal_speedup: float | None = None
    spread: dict[str, Any] = field(default_factory=dict)  # q1, q3, rounds, outliers
    paired: Speedup | None = None  # speedup from rounds interleaved with the reference's
    scale: Callable[[float], float] = _same  # seconds of one round -> the row's unit
    conditions: dict[str, Any] = field(default_factory=dict)  # prompt_len, batch, new_tokens
    extra: dict[str, Any] = field(default_factory=dict)  # side numbers: shown, not judged
