"""Records on their way from a test to the results: ``emit`` puts them in the test
report's ``user_properties`` (plain dicts: xdist's wire carries builtins only),
``records_of`` takes them out on the controller, and :class:`Recorder` is the
``glu_record`` fixture's value.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import pytest

from glu_prune.catalog import benchmarks as catalog_benchmarks
from glu_prune.core.variants import VariantId
from glu_prune.results.lookup import architecture
from glu_prune.results.record import RECORD_KEY, Record

_SCHEMA = frozenset(f.name for f in fields(Record))
_IDENTITY = ("model", "method", "pct", "round_to")


def emit(node: Any, *records: Record) -> None:
    """Send ``records`` with the test's report (also from an xdist worker)."""
    for record in records:
        node.user_properties.append((RECORD_KEY, record.to_dict()))


def records_of(report: pytest.TestReport) -> list[dict[str, Any]]:
    """The raw record dicts a test report carries."""
    return [value for name, value in report.user_properties if name == RECORD_KEY]


def _registered(model: str, benchmark: str, metric: str) -> dict[str, Any]:
    """Group and direction of a benchmark registered for ``model`` ({} when it is not)."""
    try:
        bench = catalog_benchmarks.get_benchmark(model, benchmark)
    except (KeyError, ValueError):
        return {}
    directions = {m.key: m.direction for m in bench.metrics}
    return {"group": bench.group, "direction": directions.get(metric)}


def _architecture(vid: VariantId) -> dict[str, Any]:
    """Intermediate size, expansion ratio and parameters of a registered width variant
    (other shapes: nothing; their reports carry theirs, and a width level's would be wrong)."""
    if vid.shape != "width":
        return {}
    arch = architecture(vid.model, vid.pct, vid.round_to)
    if not arch:
        return {}
    return {"intermediate_size": arch["intermediate_size"],
            "expansion_ratio": arch["expansion_ratio"], "params": arch["total_params"]}


@dataclass
class Recorder:
    """``glu_record(benchmark=..., metric=..., value=..., kind=..., ...)``: one record of
    the test's variant (its ``variant_id`` parameter, else the ``model=``, ``method=``
    (default maw), ``pct=``, ``round_to=`` keywords), appended to the test's report.

    Group and direction come from the benchmark registry, architecture fields from the
    model registry, when the test gives none; keywords that are no schema field go to
    ``extra``. Returns the record as sent (a dict).
    """

    node: Any
    variant_id: VariantId | None = None

    def __call__(self, *, benchmark: str, metric: str, value: Any, kind: str = "other",
                 **given: Any) -> dict[str, Any]:
        vid = self._variant(given)
        fields_ = {k: v for k, v in given.items() if k in _SCHEMA}
        extra = {**fields_.pop("extra", {}),
                 **{k: v for k, v in given.items() if k not in _SCHEMA}}
        known = {**_registered(vid.model, benchmark, metric), **_architecture(vid)}
        fields_.update({k: v for k, v in known.items() if fields_.get(k) is None})
        verdict = fields_.pop("verdict", None)
        record = Record.of(vid, benchmark, metric, value, kind=kind, verdict=verdict,
                           extra=extra, **fields_)
        emit(self.node, record)
        return record.to_dict()

    def _variant(self, given: dict[str, Any]) -> VariantId:
        """The variant named by the keywords (removed from ``given``), else the test's."""
        named = {k: given.pop(k) for k in _IDENTITY if k in given}
        slug = given.pop("variant", None)
        if "model" in named:
            if named.get("pct") is None:
                raise ValueError(f"glu_record: model={named['model']!r} needs pct= (the "
                                 f"pruning level) too")
            vid = VariantId(named["model"], named.get("method") or "maw", float(named["pct"]),
                            int(named.get("round_to") or 1))
        elif self.variant_id is not None and not named:
            vid = self.variant_id
        else:
            raise ValueError(f"glu_record: name the variant with the keywords model=, "
                             f"method= (default maw), pct=, round_to= (default 1), or use "
                             f"the variant fixture; got {dict(named, variant=slug)}")
        if slug is not None and slug != vid.slug:
            raise ValueError(f"glu_record: variant={slug!r} is not the slug of {vid} "
                             f"({vid.slug!r}); give model=, method=, pct=, round_to= only")
        return vid


def recorder_for(request: pytest.FixtureRequest) -> Recorder:
    """The ``glu_record`` fixture's value for the requesting test."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    return Recorder(request.node, params.get("variant_id"))
