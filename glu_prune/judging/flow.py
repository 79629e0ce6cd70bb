"""The one judging flow, for quality and speed alike: pin every check (update), or
compare each with its baseline (after pytest-regressions' ``perform_regression_check``).
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

from glu_prune.evaluation import MetricValue
from glu_prune.judging.rules import Tolerance, compare
from glu_prune.judging.verdict import Check, Subject, Verdict


class Store(Protocol):
    """What a baseline store offers the flow (``QualityBaselines``, ``SpeedBaselines``)."""

    @property
    def path(self) -> Any: ...

    def get(self, subject: Subject) -> MetricValue | None: ...

    def why_absent(self, subject: Subject) -> str: ...

    def pin(self, checks: Sequence[Check], settings: Mapping[str, Any]) -> str: ...


def judge(checks: Sequence[Check], store: Store, tol: Tolerance, *, update: bool,
          settings: Mapping[str, Any] | None = None, source: str = "") -> list[Verdict]:
    """One verdict per check, in order.

    With ``update`` every check is pinned in one write and each verdict is ``pinned`` (it
    fails: a person reviews the diff). Otherwise a check without a baseline is ``no
    baseline`` (why, in ``detail``) and the others are compared by ``rules.compare``.
    ``source`` names the baseline in messages (default: the store's path).
    ``JudgingError`` (a bad file or value) propagates.
    """
    source = source or str(store.path)
    if update:
        old = [store.get(c.subject) for c in checks]
        changes = store.pin(checks, settings or {})
        return [Verdict(c.subject, "pinned", c.run, None if o is None else o.value,
                        source=source, kind=c.kind, unit=c.unit, changes=changes)
                for c, o in zip(checks, old)]
    verdicts = []
    for c in checks:
        base = store.get(c.subject)
        if base is None:
            verdicts.append(Verdict(c.subject, "no baseline", c.run, source=source,
                                    detail=store.why_absent(c.subject), kind=c.kind,
                                    unit=c.unit))
        else:
            verdicts.append(compare(c, base, tol, source))
    return verdicts
