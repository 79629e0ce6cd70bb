"""lm-eval calls on an in-memory (pruned) model: task managers, task objects with their
few-shot set, the HFLM wrapper, one seeded ``evaluate`` call and the metrics it reported.

The unit of work is one benchmark of one variant (``glu_prune.evaluation.runner``), so an
lm-eval call covers one benchmark; task managers are built once per run (``TaskSource``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
from typing import Any, Iterator, Sequence

from glu_prune import tiny
from glu_prune.catalog.benchmarks import Benchmark, needs_default_tasks, uses_twins
from glu_prune.evaluation.identity import task_fingerprint, task_version
from glu_prune.evaluation.settings import PYTHON_SEED, EvalSettings, MetricValue

__all__ = ["EvalError", "TaskSource", "check_fewshot", "extract_metrics", "load_tasks",
           "make_lm", "run_tasks", "task_manager_for"]


class EvalError(RuntimeError):
    """lm-eval ran but its output cannot be used (missing metric, wrong few-shot...)."""


@contextlib.contextmanager
def _serial_bootstrap() -> Iterator[None]:
    """lm-eval bootstraps stderrs in a process pool; forking a torch process in pytest is
    slow and can hang, so bootstrap in-process for the duration of the call."""
    old = os.environ.get("DISABLE_MULTIPROC")
    os.environ["DISABLE_MULTIPROC"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("DISABLE_MULTIPROC", None)
        else:
            os.environ["DISABLE_MULTIPROC"] = old


SMALL_MODEL_PARAMS = 50_000_000  # below this, CPU ops are too small to split over threads


@contextlib.contextmanager
def _cpu_threads_for(model: Any) -> Iterator[None]:
    """One torch thread for a small model on CPU, restored afterwards.

    The tiny model's ops take microseconds; splitting them over threads costs more in
    synchronization than it saves, and on a shared 2-core runner the spin-waits made
    decoding 15x slower (measured: 10 tokens at batch 16, 10 s with 2 threads, 0.6 s with 1).
    """
    import torch

    small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS
    if getattr(model, "device", None) is None or model.device.type != "cpu" or not small:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def task_manager_for(benchmarks: Sequence[Benchmark]):
    """A new TaskManager that knows the tasks of ``benchmarks`` (lm-eval's own index only
    when needed: indexing it takes ~10 s). ``TaskSource`` keeps them for a whole run."""
    from lm_eval.tasks import TaskManager

    include = [str(tiny.TASKS_DIR)] if uses_twins(benchmarks) else None
    return TaskManager(include_path=include, include_defaults=needs_default_tasks(benchmarks))


def load_tasks(task_manager: Any, benchmarks: Sequence[Benchmark]) -> list[Any]:
    """Task/Group objects for ``benchmarks``, each leaf set to its benchmark's few-shot.

    ``simple_evaluate`` takes one ``num_fewshot`` for all tasks; the suite needs mmlu and
    gsm8k at 5 and the rest at 0, so few-shot is set per task here.
    """
    objects = []
    for b in benchmarks:
        loaded = task_manager.load([b.task])
        if not loaded["tasks"]:
            raise EvalError(f"lm-eval task {b.task!r} (benchmark {b.name}) loaded no tasks")
        for task in loaded["tasks"].values():
            task.set_config(key="num_fewshot", value=b.num_fewshot)
        top = loaded["groups"].get(b.task) or loaded["tasks"].get(b.task)
        objects.extend([top] if top is not None else loaded["tasks"].values())
    return objects


def make_lm(model: Any, tokenizer: Any, settings: EvalSettings) -> Any:
    """lm-eval's wrapper (HFLM) of the in-memory model, built once per variant.

    It gets a copy of the tokenizer: HFLM sets a missing pad token in place, which would
    change the tokenizer's identity for the next variant sharing it.
    """
    from lm_eval.models.huggingface import HFLM

    if tokenizer is None:
        raise EvalError("lm-eval needs the model's tokenizer, and none was loaded")
    return HFLM(pretrained=model, tokenizer=copy.deepcopy(tokenizer),
                batch_size=settings.batch_size, max_length=settings.max_length)


def run_tasks(lm: Any, task_manager: Any, objects: Sequence[Any],
              settings: EvalSettings) -> dict[str, Any]:
    """lm-eval's ``evaluate`` over loaded task objects on the wrapped model; raw results.

    Seeded as ``simple_evaluate`` seeds, which is not called because it also collects
    environment info on every call (torch's collect_env runs pip and other subprocesses:
    0.5 s a call here, measured), a cost one call per benchmark would pay 13 times a
    variant. Reseeding per call also makes a benchmark's result independent of which
    other benchmarks ran before it, as a cached result must be.
    """
    import numpy as np
    import torch
    from lm_eval.evaluator import evaluate

    task_dict = task_manager.load(list(objects))
    for task in task_dict["tasks"].values():
        task.set_fewshot_seed(seed=settings.seed)
    random.seed(PYTHON_SEED)
    np.random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    with _serial_bootstrap(), _cpu_threads_for(lm.model):
        raw = evaluate(
            lm=lm, task_dict=task_dict, limit=settings.limit,
            cache_requests=False,  # never share requests or responses between variants
            bootstrap_iters=settings.bootstrap_iters, log_samples=False,
            apply_chat_template=settings.chat_template,
            fewshot_as_multiturn=settings.chat_template)
    if raw is None:
        raise EvalError("lm-eval returned no results (not rank 0?)")
    return raw


def _leaf_tasks(raw: dict[str, Any], name: str) -> list[str]:
    """Leaf task names under ``name`` (itself when it is a task)."""
    children = raw.get("group_subtasks", {}).get(name)
    if not children:
        return [name]
    return [leaf for child in children for leaf in _leaf_tasks(raw, child)]


def _stderr(value: Any) -> float | None:
    try:
        se = float(value)
    except (TypeError, ValueError):
        return None  # lm-eval writes "N/A" where it has no stderr
    return se if math.isfinite(se) else None


def extract_metrics(raw: dict[str, Any], benchmark: Benchmark) -> dict[str, MetricValue]:
    """The judged metrics of ``benchmark`` from lm-eval's raw results.

    Non-finite values are kept (the comparison fails on them with a clear message); a
    missing metric is an error naming what lm-eval did report.
    """
    row = raw.get("results", {}).get(benchmark.task)
    if row is None:
        raise EvalError(f"lm-eval reported nothing for task {benchmark.task!r} "
                        f"(benchmark {benchmark.name}); reported: "
                        f"{', '.join(raw.get('results', {}))}")
    leaves = _leaf_tasks(raw, benchmark.task)
    counts = [raw.get("n-samples", {}).get(t, {}).get("effective") for t in leaves]
    n = sum(counts) if counts and all(isinstance(c, int) for c in counts) else None
    out = {}
    for m in benchmark.metrics:
        if m.key not in row:
            have = sorted(k for k in row if "," in k and "_stderr" not in k)
            raise EvalError(f"lm-eval task {benchmark.task!r} did not report {m.key!r}; it "
                            f"reported: {', '.join(have)}")
        out[m.key] = MetricValue(float(row[m.key]), _stderr(row.get(m.stderr_key)), n)
    return out


def check_fewshot(raw: dict[str, Any], benchmark: Benchmark) -> None:
    shots = raw.get("n-shot", {})
    for leaf in _leaf_tasks(raw, benchmark.task):
        got = shots.get(leaf)
        if got is not None and int(got) != benchmark.num_fewshot:
            raise EvalError(f"{leaf} ran {got}-shot, but benchmark {benchmark.name} is "
                            f"{benchmark.num_fewshot}-shot")


# ---------------------------------------------------------------- tasks, once per run


class TaskSource:
    """Benchmarks' lm-eval tasks for a whole run: one TaskManager per kind of task folder
    (twins, lm-eval's own), and each task's content fingerprint computed once.

    ``manager``: use this TaskManager for every benchmark (tests, custom task folders).
    """

    def __init__(self, manager: Any = None) -> None:
        self._fixed = manager
        self._managers: dict[tuple[bool, bool], Any] = {}
        self._hashes: dict[tuple, str] = {}
        self._versions: dict[tuple, str | None] = {}
        self._fresh: tuple[tuple, list[Any]] | None = None  # loaded for a fingerprint

    def manager(self, benchmark: Benchmark) -> Any:
        """The run's TaskManager that knows ``benchmark``'s task."""
        if self._fixed is not None:
            return self._fixed
        kind = (uses_twins([benchmark]), needs_default_tasks([benchmark]))
        if kind not in self._managers:
            self._managers[kind] = task_manager_for([benchmark])
        return self._managers[kind]

    def load(self, benchmark: Benchmark) -> list[Any]:
        """Fresh task objects for one run of ``benchmark`` (few-shot set)."""
        fresh, self._fresh = self._fresh, None
        if fresh is not None and fresh[0] == (benchmark.task, benchmark.num_fewshot):
            return fresh[1]
        return load_tasks(self.manager(benchmark), [benchmark])

    def _objects(self, benchmark: Benchmark) -> list[Any]:
        """Task objects to inspect; kept in one slot, so that a cache miss right after runs
        these (``load``) and cache hits hold no data sets."""
        key = (benchmark.task, benchmark.num_fewshot)
        if self._fresh is None or self._fresh[0] != key:
            self._fresh = (key, load_tasks(self.manager(benchmark), [benchmark]))
        return self._fresh[1]

    def fingerprint(self, benchmark: Benchmark, limit: int | None) -> str:
        """The task's content fingerprint at ``limit`` (loads the task on first use)."""
        key = (benchmark.task, benchmark.num_fewshot, limit)
        if key not in self._hashes:
            objects = self._objects(benchmark)
            self._hashes[key] = task_fingerprint(objects, limit)
            self._versions.setdefault(key[:2], task_version(objects))  # no second load later
        return self._hashes[key]

    def version(self, benchmark: Benchmark) -> str | None:
        """The task's version as lm-eval reports it (``identity.task_version``)."""
        key = (benchmark.task, benchmark.num_fewshot)
        if key not in self._versions:
            self._versions[key] = task_version(self._objects(benchmark))
        return self._versions[key]
