"""The record schema: one measured number of one variant, as every suite test reports it.

Producers build a :class:`Record` with :meth:`Record.of` (identity from the variant, the
verdict from the judging code) and send ``record.to_dict()`` through the test report's
``user_properties`` (xdist serializes builtins only); readers rebuild it with
:meth:`Record.from_dict`. Imports nothing of the package at run time.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from glu_prune.core.variants import VariantId

SCHEMA = "glu-prune-results/1"
RECORD_KEY = "glu_record"  # the user_properties name every record travels under
VERDICTS = ("ok", "regression", "improvement", "no baseline", "pinned")
QUALITY_KINDS = ("accuracy", "perplexity")
SPEED_KINDS = ("latency", "energy")
KIND_ORDER = ("invariant", "accuracy", "perplexity", "latency", "energy")
KINDS = KIND_ORDER + ("other",)
DIRECTIONS = ("higher", "lower")
SHAPES = ("width", "depth", "global")  # glu_prune.core.variants.SHAPES (no import: see above)

_FLOATS = ("value", "stderr", "baseline", "baseline_stderr", "bound", "ideal", "expansion_ratio",
           "pct")
_INTS = ("n", "intermediate_size", "params", "round_to")
_REQUIRED = ("model", "variant", "benchmark", "metric", "value")


@dataclass
class Record:
    """One measured number of one variant, as every suite test reports it."""

    model: str
    variant: str
    benchmark: str
    metric: str
    value: float
    kind: str = "other"
    method: str | None = None
    pct: float | None = None
    round_to: int = 1
    intermediate_size: int | None = None
    expansion_ratio: float | None = None
    params: int | None = None  # total parameters after pruning
    stderr: float | None = None
    n: int | None = None
    unit: str = ""
    direction: str | None = None  # "higher" | "lower"
    group: str | None = None  # "fragile" | "robust"
    baseline: float | None = None
    baseline_stderr: float | None = None
    bound: float | None = None
    verdict: str | None = None  # None: shown, not judged
    ideal: float | None = None  # ideal speedup (perf records)
    test: str | None = None  # the pytest node id that recorded it
    # what the variant cut (a depth record's pct is None: no width level describes it;
    # its layers removed, and the removed indices, are in extra)
    shape: str = "width"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Plain float/int (numpy or torch scalars survive neither JSON nor xdist's wire);
        verdict, direction and kind from their lists. ValueError names the field."""
        for name in _REQUIRED[:4]:
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"record {name} must be a non-empty string, got "
                                 f"{getattr(self, name)!r} in {self._short()}")
        for names, cast in ((_FLOATS, float), (_INTS, int)):
            for name in names:
                setattr(self, name, _number(name, getattr(self, name), cast, self))
        if self.round_to is None:
            raise ValueError(f"record round_to must be an integer, got None in {self._short()}")
        _one_of("verdict", self.verdict, VERDICTS, self)
        _one_of("direction", self.direction, DIRECTIONS, self)
        if self.shape not in SHAPES:
            raise ValueError(f"record shape must be one of {SHAPES}, got {self.shape!r} "
                             f"in {self._short()}")
        if self.kind not in KINDS:
            raise ValueError(f"record kind must be one of {KINDS}, got {self.kind!r} "
                             f"in {self._short()}")
        if not isinstance(self.extra, dict):
            raise ValueError(f"record extra must be a dict, got {self.extra!r:.80}")

    @classmethod
    def of(cls, variant: VariantId, benchmark: str, metric: str, value: float, *, kind: str,
           verdict: Any = None, extra: Mapping[str, Any] | None = None, **fields: Any
           ) -> Record:
        """The record of ``variant`` (a VariantId: model, slug, method, level, rounding).

        ``verdict`` is a ``judging.Verdict`` (read by attribute: outcome, baseline,
        baseline_stderr, bound, detail; its detail goes to ``extra["verdict_detail"]``) or
        one of :data:`VERDICTS`.
        Every other field by keyword (unit, direction, group, stderr, n, params, ...).
        """
        judged: dict[str, Any] = {}
        extra = dict(extra or {})
        if isinstance(verdict, str):  # a verdict word of VERDICTS (e.g. a test's own)
            judged = {"verdict": verdict}
        elif verdict is not None:
            judged = {"verdict": verdict.outcome, "baseline": verdict.baseline,
                      "baseline_stderr": verdict.baseline_stderr, "bound": verdict.bound}
            if getattr(verdict, "detail", ""):
                extra["verdict_detail"] = verdict.detail
        shape = getattr(variant, "shape", "width")
        if shape == "depth":
            extra.setdefault("layers_removed", variant.layers)
        return cls(model=variant.model, variant=variant.slug, method=variant.method,
                   pct=None if shape == "depth" else variant.pct, round_to=variant.round_to,
                   benchmark=benchmark, metric=metric, value=value, kind=kind, shape=shape,
                   **judged, **fields, extra=extra)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """The record of a plain dict with schema names only (results.json, xdist's wire);
        unknown keys and missing required ones are a ValueError naming them."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a record must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"record has unknown keys {unknown} (schema names: "
                             f"{[f.name for f in fields(cls)]}) in {_short(data)}")
        missing = [k for k in _REQUIRED if data.get(k) is None]
        if missing:
            raise ValueError(f"record needs {', '.join(_REQUIRED)}; missing {missing} "
                             f"in {_short(data)}")
        return cls(**{**data, "extra": dict(data.get("extra") or {})})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (every schema key present)."""
        return asdict(self)

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        """What makes two records the same measurement (duplicates must agree)."""
        return (self.model, self.variant, self.kind, self.benchmark, self.metric)

    @property
    def judged(self) -> bool:
        return self.verdict is not None

    def _short(self) -> str:
        return f"{self.variant} / {self.benchmark} / {self.metric}"


def _short(data: Mapping[str, Any]) -> str:
    return repr({k: data[k] for k in list(data)[:6]})


def _number(name: str, value: Any, cast: type, record: Record) -> Any:
    if value is None:
        return None
    if isinstance(value, (bool, str)) or not isinstance(value, numbers.Real):
        raise ValueError(f"record {name} must be a number or null, got {value!r} "
                         f"in {record._short()}")
    return cast(value)


def _one_of(name: str, value: Any, valid: tuple[str, ...], record: Record) -> None:
    if value is not None and value not in valid:
        raise ValueError(f"record {name} must be one of {valid} (or null), got {value!r} "
                         f"in {record._short()}")
