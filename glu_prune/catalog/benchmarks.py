"""Benchmark registry: lm-eval task, few-shot, judged metrics (with direction), group, size.

Each metric declares its direction and kind, so comparison code never guesses which way
is better. Benchmark *names* are the study's (``mmlu``, ``wikitext``...); the tiny models
use the same names with offline twin tasks (``glu_tiny_mmlu``...), so test ids and
baseline files read the same for every model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from glu_prune import tiny
from glu_prune.catalog.models import get_model_spec
from glu_prune.catalog.registry import Registry, UnknownName

Direction = Literal["higher", "lower"]
Kind = Literal["accuracy", "perplexity"]
KINDS: tuple[str, ...] = ("accuracy", "perplexity")
GROUPS: tuple[str, ...] = ("fragile", "robust")


@dataclass(frozen=True)
class Metric:
    """One judged number, in lm-eval's ``metric,filter`` form (``acc,none``)."""

    key: str
    direction: Direction
    kind: Kind

    def __post_init__(self) -> None:
        if "," not in self.key:
            raise ValueError(f"metric key must be lm-eval's 'metric,filter' form, got {self.key!r}")
        if self.direction not in ("higher", "lower"):
            raise ValueError(f"direction must be 'higher' or 'lower', got {self.direction!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def stderr_key(self) -> str:
        """lm-eval's stderr key for this metric (``acc_stderr,none``)."""
        name, filt = self.key.split(",", 1)
        return f"{name}_stderr,{filt}"


def _acc(key: str) -> Metric:
    return Metric(key, "higher", "accuracy")


def _ppl(key: str) -> Metric:
    return Metric(key, "lower", "perplexity")


@dataclass(frozen=True)
class Benchmark:
    """One benchmark as the suite runs it."""

    name: str  # the study's name; used in test ids and baseline files
    task: str  # lm-eval task or group name
    num_fewshot: int
    metrics: tuple[Metric, ...]
    group: str  # "fragile" (knowledge, language modelling) or "robust"
    n: int | None  # test-set size (None: not known ahead, e.g. a twin still being built)
    # a uniform guess over a fixed number of choices; None where the count varies per item
    # (truthfulqa, musr) or the answer is open-ended (lambada, gsm8k, ifeval, wikitext)
    chance: float | None = None

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"{self.name}: group must be one of {GROUPS}, got {self.group!r}")
        if not self.metrics:
            raise ValueError(f"{self.name}: a benchmark needs at least one metric")

    def metrics_of(self, kind: str) -> tuple[Metric, ...]:
        """The metrics of one kind (``accuracy`` or ``perplexity``), in declared order."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return tuple(m for m in self.metrics if m.kind == kind)

    def metric(self, key: str) -> Metric:
        """The declared metric ``key``; the error lists this benchmark's metrics."""
        for m in self.metrics:
            if m.key == key:
                return m
        raise KeyError(f"{self.name} has no metric {key!r}; its metrics: "
                       f"{', '.join(m.key for m in self.metrics)}")

    @property
    def has_accuracy(self) -> bool:
        return bool(self.metrics_of("accuracy"))

    @property
    def has_perplexity(self) -> bool:
        return bool(self.metrics_of("perplexity"))


# Test-set sizes are lm-eval's defaults (reference/README.md); wikitext counts documents.
_REAL: tuple[Benchmark, ...] = (
    Benchmark("wikitext", "wikitext", 0, (_ppl("word_perplexity,none"),), "fragile", 62),
    Benchmark("mmlu", "mmlu", 5, (_acc("acc,none"),), "fragile", 14042, chance=0.25),
    Benchmark("arc_challenge", "arc_challenge", 0,
              (_acc("acc_norm,none"), _acc("acc,none")), "fragile", 1172, chance=0.25),
    Benchmark("hellaswag", "hellaswag", 0, (_acc("acc_norm,none"),), "fragile", 10042,
              chance=0.25),
    Benchmark("winogrande", "winogrande", 0, (_acc("acc,none"),), "fragile", 1267, chance=0.5),
    Benchmark("piqa", "piqa", 0, (_acc("acc,none"),), "fragile", 1838, chance=0.5),
    Benchmark("boolq", "boolq", 0, (_acc("acc,none"),), "fragile", 3270, chance=0.5),
    Benchmark("lambada_openai", "lambada_openai", 0,
              (_ppl("perplexity,none"), _acc("acc,none")), "fragile", 5153),
    Benchmark("truthfulqa_mc1", "truthfulqa_mc1", 0, (_acc("acc,none"),), "robust", 817),
    Benchmark("truthfulqa_mc2", "truthfulqa_mc2", 0, (_acc("acc,none"),), "robust", 817),
    Benchmark("gsm8k", "gsm8k", 5,
              (_acc("exact_match,strict-match"), _acc("exact_match,flexible-extract")),
              "fragile", 1319),
    Benchmark("ifeval", "ifeval", 0,
              (_acc("prompt_level_strict_acc,none"), _acc("inst_level_strict_acc,none")),
              "robust", 541),
    Benchmark("leaderboard_musr", "leaderboard_musr", 0, (_acc("acc_norm,none"),),
              "robust", 756),
)
REAL_BENCHMARKS: Registry[Benchmark] = Registry("benchmark", ((b.name, b) for b in _REAL))

BASE_NAMES: tuple[str, ...] = tuple(REAL_BENCHMARKS)
INSTRUCT_NAMES: tuple[str, ...] = ("leaderboard_musr", "truthfulqa_mc1", "truthfulqa_mc2",
                                   "lambada_openai", "mmlu", "gsm8k", "ifeval")


def _twin(b: Benchmark) -> Benchmark:
    """The tiny world's offline twin: same name, few-shot and metrics; its own task and size."""
    task = tiny.TWIN_TASKS.get(b.name)
    if task is None:
        raise KeyError(f"glu_prune.tiny.TWIN_TASKS has no twin for {b.name!r}; "
                       f"twins: {', '.join(tiny.TWIN_TASKS)}")
    sizes = getattr(tiny, "TWIN_SIZES", {})  # published by the tiny world when it knows them
    return replace(b, task=task, n=sizes.get(b.name), chance=tiny.CHANCE.get(b.name))


def _build_sets() -> Registry[tuple[Benchmark, ...]]:
    base = tuple(REAL_BENCHMARKS[n] for n in BASE_NAMES)
    instruct = tuple(REAL_BENCHMARKS[n] for n in INSTRUCT_NAMES)
    return Registry("benchmark set", [("base", base), ("instruct", instruct),
                                      ("tiny", tuple(_twin(b) for b in base)),
                                      ("tiny-instruct", tuple(_twin(b) for b in instruct))])


BENCHMARK_SETS: Registry[tuple[Benchmark, ...]] = _build_sets()
# The benchmarks of a set in registry order; an unknown set is an UnknownName listing the sets.
benchmark_set = BENCHMARK_SETS.get


def benchmarks_for(model_name: str) -> list[Benchmark]:
    """The benchmarks a registered model is judged on, in registry order."""
    return list(benchmark_set(get_model_spec(model_name).benchmark_set))


def get_benchmark(model_name: str, benchmark: str) -> Benchmark:
    """Benchmark ``benchmark`` of ``model_name``'s set; the error lists that set's names."""
    for b in benchmarks_for(model_name):
        if b.name == benchmark:
            return b
    names = ", ".join(b.name for b in benchmarks_for(model_name))
    raise UnknownName(f"unknown benchmark {benchmark!r} for model {model_name}; known: {names}")


def uses_twins(benchmarks: list[Benchmark] | tuple[Benchmark, ...]) -> bool:
    """Whether any of ``benchmarks`` is a tiny twin (its task folder must be included)."""
    twins = set(tiny.TWIN_TASKS.values())
    return any(b.task in twins for b in benchmarks)


def needs_default_tasks(benchmarks: list[Benchmark] | tuple[Benchmark, ...]) -> bool:
    """Whether any of ``benchmarks`` is one of lm-eval's own tasks (slow to index)."""
    twins = set(tiny.TWIN_TASKS.values())
    return any(b.task not in twins for b in benchmarks)
