"""What judging produces: the subject of a check, the check, and its verdict with the
one message format shared by quality (accuracy, perplexity) and speed (latency, energy).
"""

from __future__ import annotations

from dataclasses import dataclass

from glu_prune.evaluation import MetricValue

OUTCOMES = ("ok", "regression", "improvement", "no baseline", "pinned")  # = results' VERDICTS
UPDATE_FLAG = "--glu-update-baselines"
QUALITY_KINDS = ("accuracy", "perplexity")
SPEED_KINDS = ("latency", "energy")
_REPIN = (f"if the change is expected, re-pin with {UPDATE_FLAG} and review the diff")


class JudgingError(ValueError):
    """A baseline file or a measurement that cannot be judged; the message names the file
    and the field, or the subject and the value."""


@dataclass(frozen=True)
class Subject:
    """One judged number: which model, variant (slug or perf key), benchmark and metric."""

    model: str
    variant: str
    benchmark: str
    metric: str

    def __str__(self) -> str:
        return f"{self.model} / {self.variant} / {self.benchmark} / {self.metric}"


@dataclass(frozen=True)
class Check:
    """A measurement to judge: ``kind`` picks the rule, ``direction`` which way is better."""

    subject: Subject
    run: MetricValue
    kind: str
    direction: str = "higher"
    unit: str = ""

    def __post_init__(self) -> None:
        if self.kind not in QUALITY_KINDS + SPEED_KINDS:
            raise ValueError(f"check kind must be one of {QUALITY_KINDS + SPEED_KINDS}, "
                             f"got {self.kind!r} for {self.subject}")
        if self.direction not in ("higher", "lower"):
            raise ValueError(f"check direction must be 'higher' or 'lower', got "
                             f"{self.direction!r} for {self.subject}")


def _fmt(mv: MetricValue, kind: str, unit: str) -> str:
    """``value ± se (n=)``; speed numbers keep six significant digits and their unit."""
    if kind in SPEED_KINDS:
        return f"{mv.value:.6g}" + (f" {unit}" if unit else "")
    se = f" ± {mv.stderr:.4f}" if mv.stderr is not None else ""
    n = f" (n={mv.n})" if mv.n else ""
    return f"{mv.value:.4f}{se}{n}"


def _old(x: float | None) -> str:
    return "none" if x is None else f"{x:.6g}"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check, with what it was compared against and why."""

    subject: Subject
    outcome: str
    run: MetricValue
    baseline: float | None = None
    baseline_stderr: float | None = None
    worse_by: float | None = None  # > 0 worse: absolute for accuracy, relative otherwise
    bound: float | None = None
    bound_text: str = ""
    source: str = ""  # the baseline file
    detail: str = ""  # why there is no baseline
    kind: str = "accuracy"
    unit: str = ""
    baseline_n: int | None = None
    changes: str = ""  # what a pin changed besides the value (entries dropped by new settings)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"verdict outcome must be one of {OUTCOMES}, got "
                             f"{self.outcome!r} for {self.subject}")

    @property
    def failed(self) -> bool:
        """Regressions fail, and so does pinning: a person reviews the diff."""
        return self.outcome in ("regression", "pinned")

    @property
    def judged(self) -> bool:
        """Compared with a baseline (ok, regression or improvement)."""
        return self.outcome in ("ok", "regression", "improvement")

    def message(self) -> str:
        """The one message format, quality and speed alike."""
        if self.outcome == "pinned":
            return self._pinned()
        if self.outcome == "no baseline":
            return no_baseline_message(self.subject.variant,
                                       f"{self.subject.benchmark} {self.subject.metric}",
                                       self.source, self.detail)
        base = MetricValue(self.baseline, self.baseline_stderr, self.baseline_n)
        worse_by = self.worse_by or 0.0
        amount = abs(worse_by)
        amount_text = f"{amount:.4f}" if self.kind == "accuracy" else f"{100 * amount:.1f}%"
        text = (f"{self.subject} {self.outcome}: baseline {_fmt(base, self.kind, self.unit)}, "
                f"measured {_fmt(self.run, self.kind, self.unit)}; "
                f"{'worse' if worse_by >= 0 else 'better'} by {amount_text} "
                f"vs bound {self.bound_text}"
                + (f" [baseline file {self.source}]" if self.source else ""))
        return text + (f"; {_REPIN}" if self.outcome == "regression" else "")

    def _pinned(self) -> str:
        text = (f"baseline pinned ({UPDATE_FLAG}): {self.subject}: {_old(self.baseline)} -> "
                f"{self.run.value:.6g} in {self.source}")
        if self.changes:
            text += f"; {self.changes}"
        return text + "; review the diff (git diff) and rerun without the flag"


def no_baseline_message(variant: str, what: str, source: str, detail: str) -> str:
    """Why a test has nothing to compare with, and how to pin one."""
    return (f"no baseline for {variant} / {what} in {source} ({detail}); pin one with "
            f"{UPDATE_FLAG} and review the diff")
