"""Any lm-eval task or group as a ``Benchmark``: its judged metrics and their direction read
from lm-eval's own task config (``metric_list``, ``higher_is_better``; a group's
``aggregate_metric_list``), never guessed. ``task:metric`` picks one metric.

A metric whose name says perplexity is judged as perplexity (relative tolerance), any other
as accuracy (stderr bound), as for the fixed sets.
"""

from __future__ import annotations

import functools
from typing import Any

from glu_prune.catalog.benchmarks import BENCHMARK_SETS, Benchmark, Metric, benchmark_set
from glu_prune.catalog.registry import UnknownName


@functools.lru_cache(maxsize=1)
def _manager() -> Any:
    """lm-eval's task index, built once (it reads every installed task YAML: seconds)."""
    from lm_eval.tasks import TaskManager  # lazily, as harness does: plugin start stays fast

    return TaskManager()


def task_config(task: str) -> dict[str, Any]:
    """lm-eval's config of ``task`` (includes resolved); ``UnknownName`` when no such task."""
    entry = _manager().task_index.get(task)
    if entry is None:
        close = _manager().match_tasks([f"{task}*"])[:5]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise UnknownName(f"unknown lm-eval task or group {task!r}{hint}")
    return dict(entry.cfg or {})


def _direction(item: dict[str, Any]) -> str:
    higher = item.get("higher_is_better")
    if higher is None:  # not in the YAML: lm-eval's own registered default for the metric
        from lm_eval.api.registry import is_higher_better

        higher = is_higher_better(item["metric"])
    return "higher" if higher else "lower"


def task_metrics(task: str) -> tuple[Metric, ...]:
    """Every metric lm-eval reports for ``task``, as ``metric,filter`` keys with direction."""
    cfg = task_config(task)
    items = cfg.get("metric_list") or cfg.get("aggregate_metric_list") or []
    filters = [f["name"] for f in cfg.get("filter_list") or []] or ["none"]
    out = []
    for item in items:
        if not isinstance(item.get("metric"), str):  # a callable metric: no name to key
            continue
        kind = "perplexity" if "perplexity" in item["metric"] else "accuracy"
        out += [Metric(f"{item['metric']},{f}", _direction(item), kind) for f in filters]
    if not out:
        raise ValueError(f"lm-eval task {task!r} declares no named metric; give one as "
                         f"{task}:<metric>")
    return tuple(out)


def benchmark_from_task(spec: str) -> Benchmark:
    """``task`` or ``task:metric`` (``metric`` or ``metric,filter``) as a Benchmark judged on
    lm-eval's declared metrics (or only the named one), with the task's own few-shot count."""
    task, _, wanted = spec.partition(":")
    metrics = task_metrics(task)
    if wanted:
        key = wanted if "," in wanted else f"{wanted},"
        metrics = tuple(m for m in metrics if m.key == wanted or m.key.startswith(key))
        if not metrics:
            known = ", ".join(m.key for m in task_metrics(task))
            raise UnknownName(f"{spec}: lm-eval task {task!r} has no metric {wanted!r}; "
                              f"known: {known}")
    shots = int(task_config(task).get("num_fewshot") or 0)
    # the fragile/robust split is the study's judgement per benchmark; a task it never
    # classified is counted with the knowledge-heavy (fragile) majority
    return Benchmark(task, task, shots, metrics, "fragile", None)


def register_task_set(name: str, specs: list[str]) -> str:
    """A benchmark set ``name`` of the given tasks (``task`` or ``task:metric``); the same
    set again is a no-op (pytester runs several sessions in one process). Returns ``name``."""
    benchmarks = tuple(benchmark_from_task(s) for s in specs)
    known = BENCHMARK_SETS.get(name, None)
    if known is None:
        BENCHMARK_SETS.register(name, benchmarks)
    elif benchmark_set(name) != benchmarks:
        raise ValueError(f"benchmark set {name!r} is already registered with other tasks")
    return name
