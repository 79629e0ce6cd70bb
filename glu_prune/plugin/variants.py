"""The suite's variant axis in pytest: parametrization, run order, build counting and the
xdist grouping guard.

A variant's slug is in every test id (``-k p40`` selects naturally); each variant's tests
share one xdist group (``--dist loadgroup`` runs them on one worker, so each variant is
built once per run) and run together (so one variant is resident at a time).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import pytest
import xdist

from glu_prune.catalog.models import MODELS
from glu_prune.core.loading import weights_obtainable
from glu_prune.core.variants import SHAPES, VariantId
from glu_prune.evaluation import PreflightError, check_ifeval_resources
from glu_prune.plugin.quality import PARAM_BY_KIND
from glu_prune.plugin.results import plain_nodeid

BUILD_KEY = "glu_build"  # user_properties entry: (slug, "<pid>:<n-th build>") per real build

# Extra per-variant parameters: argname -> fn(metafunc, variant_id) -> [(value, id_suffix)].
# The test is parametrized over (variant, value) pairs with id "<slug>-<id_suffix>".
ParamsFn = Callable[[pytest.Metafunc, VariantId], list[tuple[Any, str]]]


def all_model_names() -> list[str]:
    """Registered model names in registry order."""
    return list(MODELS)


def order_key(vid: VariantId, model_order: Iterable[str]) -> tuple:
    """Sort key that keeps models in registry order, level 0 first, then per shape (width,
    depth, global) levels ascending (depth: layers removed)."""
    order = {m: i for i, m in enumerate(model_order)}
    return (order.get(vid.model, len(order)), not vid.is_base, SHAPES.index(vid.shape),
            vid.pct, vid.layers, vid.method, vid.round_to)


def variant_of(item: pytest.Item) -> VariantId | None:
    """The ``variant_id`` parameter of a suite test (None for other tests)."""
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("variant_id") if callspec else None


def parametrize(metafunc: pytest.Metafunc, variants: list[VariantId],
                per_variant: dict[str, ParamsFn]) -> None:
    """Parametrize a test that uses ``variant`` over the run's variants (and at most one
    per-variant axis, e.g. the variant's accuracy benchmarks), one xdist group per variant."""
    if "variant" not in metafunc.fixturenames:
        return
    extra = [name for name in per_variant if name in metafunc.fixturenames]
    group = pytest.mark.xdist_group  # one xdist group per variant, set at collection
    if not extra:
        metafunc.parametrize("variant_id", [pytest.param(v, id=v.slug, marks=group(v.slug))
                                            for v in variants])
        return
    (name,) = extra  # one extra axis per test keeps ids readable
    metafunc.parametrize(("variant_id", name), [
        pytest.param(v, value, id=f"{v.slug}-{suffix}", marks=group(v.slug))
        for v in variants for value, suffix in per_variant[name](metafunc, v)])


def order(items: list[pytest.Item]) -> None:
    """Run each variant's tests together, models in registry order, levels ascending;
    other tests first, in collection order."""
    models = all_model_names()

    def key(pair: tuple[int, pytest.Item]) -> tuple:
        index, item = pair
        vid = variant_of(item)
        return (1, order_key(vid, models), index) if vid else (0, (), index)

    items[:] = [item for _, item in sorted(enumerate(items), key=key)]


def check_selected_resources(items: list[pytest.Item], models_dir: str | None,
                             obtainable: Callable[..., bool] = weights_obtainable) -> None:
    """Stop before any model is built when a selected benchmark cannot score here.

    lm-eval's ifeval fails inside scoring, after all generation, when nltk's punkt_tab
    data is missing; so check it up front, for models whose weights can be had
    (``obtainable(model, models_dir)``; a model that will skip for missing weights never
    reaches scoring).
    """
    needs = {vid.model for item in items if (vid := variant_of(item)) is not None
             and any(getattr(b, "task", None) == "ifeval" for b in _benchmarks_of(item))}
    if any(obtainable(m, models_dir) for m in sorted(needs)):
        try:
            check_ifeval_resources()
        except PreflightError as exc:
            raise pytest.UsageError(f"glu-prune: {exc}") from None


def _benchmarks_of(item: pytest.Item) -> list[Any]:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return [params[p] for p in PARAM_BY_KIND.values() if p in params]


class BuildCounter:
    """Counts variant builds over all workers (each variant should be built once per run).

    Each build carries its own id (process, n-th build of that slug), so a report seen
    twice by the controller is not counted twice, while a real rebuild is.
    """

    def __init__(self) -> None:
        self.builds: dict[str, int] = {}  # slug -> builds over all workers
        self._seen: set[tuple[str, str]] = set()

    def count(self, report: pytest.TestReport) -> None:
        """Count the builds ``report`` carries (called for every report)."""
        for name, value in report.user_properties:
            if name == BUILD_KEY and tuple(value) not in self._seen:
                self._seen.add(tuple(value))
                self.builds[value[0]] = self.builds.get(value[0], 0) + 1


class LoadgroupGuard:
    """Controller-side check that ``--dist loadgroup`` really groups the suite by variant.

    xdist's workers tell the controller an item's group by appending ``@<group>`` to its
    node id; when a pytest/xdist pair breaks that (pytest-xdist issue 1386), a variant's
    tests spread over all workers and every worker builds every variant. Refuse such a
    run before any test starts instead of silently spending N times the GPU time.
    """

    def __init__(self, slugs: list[str]) -> None:
        self.slugs = slugs

    def ungrouped(self, nodeid: str) -> bool:
        """Whether ``nodeid`` is a variant's test that carries no xdist group suffix."""
        head, bracket, _ = nodeid.rpartition("]")
        if not bracket or plain_nodeid(nodeid) != nodeid:  # not parametrized, or grouped
            return False
        params = head.rpartition("[")[2]
        return any(params == s or params.startswith(s + "-") for s in self.slugs)

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """Refuse the run (``pytest.UsageError``) when a worker's ids lack their group."""
        bad = next((nodeid for nodeid in ids if self.ungrouped(nodeid)), None)
        if bad is not None:
            raise pytest.UsageError(
                f"glu-prune: --dist loadgroup is not grouping tests by variant here (pytest "
                f"{pytest.__version__}, pytest-xdist {xdist.__version__}; pytest-xdist "
                f"issue 1386): {bad} came back without its '@<variant>' group suffix, so "
                f"every worker would build every variant. Install the versions glu-prune "
                f"pins (pytest<9.2) or run without -n.")
