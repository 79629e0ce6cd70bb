"""The tolerance rules (they live here only): how far a measurement may stray from its
baseline, for quality (accuracy, perplexity) and speed (latency, energy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from glu_prune.evaluation import MetricValue
from glu_prune.judging.verdict import JudgingError, Check, Verdict, SPEED_KINDS

DEFAULT_SPEED_TOLERANCE = 0.10
MIN_PREFILL_EFFICIENCY = 0.8  # measured/FLOP-ideal prefill speedup, aligned, at 40 % (GPU)
EFFICIENCY_MIN_PROMPT_LEN = 2048  # shorter 1B prefills are bound by eager kernel launches
# Below this hidden size a prefill's GEMMs are too small to be compute-bound on a GPU, so
# time does not follow FLOPs and the floor would judge launch overhead, not pruning.
EFFICIENCY_MIN_HIDDEN = 2048


def _finite_non_negative(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


@dataclass(frozen=True)
class Tolerance:
    """How far a measurement may stray from its baseline before it counts.

    Accuracy-like: ``max(abs_floor, z * sqrt(se_base^2 + se_run^2))`` (absolute).
    Perplexity: a relative tolerance, ``ppl_rel`` unless ``ppl_rel_by_benchmark`` names one.
    Latency and energy: ``speed_rel``, relative, in the metric's worse direction.
    """

    z: float = 2.0
    abs_floor: float = 0.01  # one point: below this, differences are hardware/batch noise
    ppl_rel: float = 0.05
    ppl_rel_by_benchmark: Mapping[str, float] = field(
        default_factory=lambda: {"lambada_openai": 0.10})  # per-doc ppl has a long tail
    speed_rel: float = DEFAULT_SPEED_TOLERANCE

    def __post_init__(self) -> None:
        # A NaN bound compares False both ways, so a NaN tolerance would pass everything.
        values = {name: getattr(self, name) for name in ("z", "abs_floor", "ppl_rel",
                                                         "speed_rel")}
        values.update({f"ppl_rel_by_benchmark[{b!r}]": v
                       for b, v in self.ppl_rel_by_benchmark.items()})
        for name, value in values.items():
            if not _finite_non_negative(value):
                raise ValueError(f"tolerance {name} must be a finite number >= 0, got {value!r}")

    def rel_for(self, benchmark: str) -> float:
        """The relative perplexity tolerance of ``benchmark``."""
        return float(self.ppl_rel_by_benchmark.get(benchmark, self.ppl_rel))


def effective_stderr(mv: MetricValue) -> float:
    """The stderr used in the bound: the reported one, else binomial from ``n``, else 0."""
    if mv.stderr is not None:
        return float(mv.stderr)
    if mv.n and 0.0 <= mv.value <= 1.0:
        return math.sqrt(mv.value * (1.0 - mv.value) / mv.n)
    return 0.0


def outcome_of(worse_by: float, bound: float) -> str:
    """``regression``, ``improvement`` (beyond the same bound) or ``ok``."""
    if worse_by > bound:
        return "regression"
    return "improvement" if -worse_by > bound else "ok"


def compare(check: Check, base: MetricValue, tol: Tolerance, source: str = "") -> Verdict:
    """Apply the rule of ``check.kind``. Non-finite or impossible numbers are a
    ``JudgingError`` naming them."""
    s = check.subject
    if not check.run.finite:
        raise JudgingError(f"{s}: measured value is {check.run.value!r}, not a finite number "
                           f"(lm-eval produced it; the variant is likely broken)")
    if not base.finite:
        raise JudgingError(f"{source or 'baseline'}: field results.{s.variant}.{s.benchmark}."
                           f"{s.metric}.value is {base.value!r}, not a finite number")
    if check.kind == "accuracy":
        worse, bound, text = _accuracy(check, base, tol)
    elif check.kind in SPEED_KINDS:
        worse, bound, text = _speed(check, base, tol)
    else:
        worse, bound, text = _perplexity(check, base, tol)
    return Verdict(s, outcome_of(worse, bound), check.run, base.value, base.stderr, worse, bound,
                   text, source, kind=check.kind, unit=check.unit, baseline_n=base.n)


def _sign(check: Check) -> float:
    return 1.0 if check.direction == "higher" else -1.0


def _accuracy(check: Check, base: MetricValue, tol: Tolerance) -> tuple[float, float, str]:
    """Absolute difference against the statistical bound of both standard errors."""
    se_b, se_r = effective_stderr(base), effective_stderr(check.run)
    bound = max(tol.abs_floor, tol.z * math.sqrt(se_b ** 2 + se_r ** 2))
    text = (f"{bound:.4f} = max(abs_floor {tol.abs_floor:g}, z {tol.z:g} × "
            f"sqrt({se_b:.4f}² + {se_r:.4f}²))")
    return _sign(check) * (base.value - check.run.value), bound, text


def _perplexity(check: Check, base: MetricValue, tol: Tolerance) -> tuple[float, float, str]:
    """Relative change, symmetric in log space, against the benchmark's relative bound."""
    run = check.run
    if base.value <= 0 or run.value <= 0:
        raise JudgingError(f"{check.subject}: perplexities must be > 0 (baseline {base.value}, "
                           f"measured {run.value})")
    ratio = run.value / base.value if _sign(check) < 0 else base.value / run.value
    worse = ratio - 1.0 if ratio >= 1.0 else 1.0 - 1.0 / ratio
    rel = tol.rel_for(check.subject.benchmark)
    return worse, rel, f"{100 * rel:g}% relative"


def _speed(check: Check, base: MetricValue, tol: Tolerance) -> tuple[float, float, str]:
    """Relative change against the baseline, in the metric's worse direction."""
    if not base.value > 0:
        raise JudgingError(f"{check.subject}: baseline must be > 0, got {base.value!r}")
    change = (check.run.value - base.value) / base.value
    return -_sign(check) * change, tol.speed_rel, f"{100 * tol.speed_rel:g}% relative"


def prefill_efficiency_floor(model_hidden: int, model_intermediate: int, pct: float,
                             round_to: int, prompt_len: int, device: str) -> float | None:
    """The minimum measured/ideal prefill speedup asserted for this row, or ``None``.

    Any family's aligned 40 % variant (``round_to`` > 1) is held to it on a GPU at long
    prompts when its MLP GEMMs are compute-bound (hidden >= ``EFFICIENCY_MIN_HIDDEN``, as
    the 1B shape, where the floor was measured); everything else is reported, not
    asserted. The shape comes from the model's own config (``model_intermediate`` is its
    unpruned width: a model already pruned below 2x its hidden size is not held either).
    """
    if (str(device).startswith("cuda") and model_hidden >= EFFICIENCY_MIN_HIDDEN
            and model_intermediate >= 2 * model_hidden
            and pct == 40 and round_to > 1 and prompt_len >= EFFICIENCY_MIN_PROMPT_LEN):
        return MIN_PREFILL_EFFICIENCY
    return None
