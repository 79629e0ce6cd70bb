"""Baselines: load, validate, compare and update. The tolerance rules live here only.

One JSON file per model (``baselines/<model>.json``)::

    {"format": 1, "model": "...", "provenance": {...}, "settings": {...informative...},
     "benchmarks": {"mmlu": {"task", "num_fewshot", "limit", "chat_template"}},
     "results": {"<variant slug>": {"mmlu": {"acc,none": {"value", "stderr", "n"}}}}}

``benchmarks`` holds the settings that change scores; a run must match them to be
compared. Files are written with sorted keys and indentation, so a diff reads well.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from glu_prune.catalog.benchmarks import Benchmark, Metric
from glu_prune.evaluation.harness import MetricValue, atomic_write_text

FORMAT = 1
MUST_MATCH: tuple[str, ...] = ("task", "num_fewshot", "limit", "chat_template")
UPDATE_FLAG = "--glu-update-baselines"


class BaselineError(ValueError):
    """A baseline file that cannot be used; the message names the file and the field."""


# ---------------------------------------------------------------- the comparison rule


@dataclass(frozen=True)
class Tolerance:
    """How far a measurement may stray from its baseline before it counts.

    Accuracy-like: ``max(abs_floor, z * sqrt(se_base^2 + se_run^2))`` (absolute).
    Perplexity: a relative tolerance, ``ppl_rel`` unless ``ppl_rel_by_benchmark`` names one.
    """

    z: float = 2.0
    abs_floor: float = 0.01  # one point: below this, differences are hardware/batch noise
    ppl_rel: float = 0.05
    ppl_rel_by_benchmark: Mapping[str, float] = field(
        default_factory=lambda: {"lambada_openai": 0.10})  # per-doc ppl has a long tail

    def __post_init__(self) -> None:
        # A NaN bound compares False both ways, so a NaN tolerance would pass everything.
        values = {name: getattr(self, name) for name in ("z", "abs_floor", "ppl_rel")}
        values.update({f"ppl_rel_by_benchmark[{b!r}]": v
                       for b, v in self.ppl_rel_by_benchmark.items()})
        for name, value in values.items():
            if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and math.isfinite(value) and value >= 0):
                raise ValueError(f"tolerance {name} must be a finite number >= 0, got {value!r}")

    def rel_for(self, benchmark: str) -> float:
        return float(self.ppl_rel_by_benchmark.get(benchmark, self.ppl_rel))


def effective_stderr(mv: MetricValue) -> float:
    """The stderr used in the bound: the reported one, else binomial from ``n``, else 0."""
    if mv.stderr is not None:
        return float(mv.stderr)
    if mv.n and 0.0 <= mv.value <= 1.0:
        return math.sqrt(mv.value * (1.0 - mv.value) / mv.n)
    return 0.0


def _fmt(mv: MetricValue) -> str:
    se = f" ± {mv.stderr:.4f}" if mv.stderr is not None else ""
    n = f" (n={mv.n})" if mv.n else ""
    return f"{mv.value:.4f}{se}{n}"


@dataclass(frozen=True)
class Comparison:
    """One metric of one variant against its baseline."""

    model: str
    slug: str
    benchmark: str
    metric: Metric
    base: MetricValue
    run: MetricValue
    worse_by: float  # > 0 is worse; absolute for accuracy, relative for perplexity
    bound: float
    bound_text: str
    source: str = ""  # the baseline file

    @property
    def outcome(self) -> str:
        """``regressed``, ``improved`` (beyond the same bound) or ``ok``."""
        if self.worse_by > self.bound:
            return "regressed"
        if -self.worse_by > self.bound:
            return "improved"
        return "ok"

    @property
    def regressed(self) -> bool:
        return self.outcome == "regressed"

    def message(self) -> str:
        """Model, variant, benchmark, metric, baseline ± se, measured ± se and the bound."""
        what = "worse" if self.worse_by >= 0 else "better"
        amount = abs(self.worse_by)
        amount_text = (f"{amount:.4f}" if self.metric.kind == "accuracy"
                       else f"{100 * amount:.1f}%")
        return (f"{self.model} / {self.slug} / {self.benchmark} / {self.metric.key} "
                f"{self.outcome}: baseline {_fmt(self.base)}, measured {_fmt(self.run)}; "
                f"{what} by {amount_text} vs bound {self.bound_text}"
                + (f" [baseline file {self.source}]" if self.source else ""))

    def record(self) -> dict[str, Any]:
        """Plain data for the results table."""
        return {"model": self.model, "variant": self.slug, "benchmark": self.benchmark,
                "metric": self.metric.key, "kind": self.metric.kind,
                "direction": self.metric.direction,
                "baseline": self.base.value, "baseline_stderr": self.base.stderr,
                "measured": self.run.value, "measured_stderr": self.run.stderr,
                "n": self.run.n, "worse_by": self.worse_by, "bound": self.bound,
                "outcome": self.outcome}


def compare_metric(model: str, slug: str, benchmark: str, metric: Metric, base: MetricValue,
                   run: MetricValue, tol: Tolerance, source: str = "") -> Comparison:
    """Apply the one comparison rule. Non-finite numbers are an error naming them."""
    where = f"{model} / {slug} / {benchmark} / {metric.key}"
    if not run.finite:
        raise BaselineError(f"{where}: measured value is {run.value!r}, not a finite number "
                            f"(lm-eval produced it; the variant is likely broken)")
    if not base.finite:
        raise BaselineError(f"{source or 'baseline'}: field results.{slug}.{benchmark}."
                            f"{metric.key}.value is {base.value!r}, not a finite number")
    sign = 1.0 if metric.direction == "higher" else -1.0
    if metric.kind == "accuracy":
        se_b, se_r = effective_stderr(base), effective_stderr(run)
        stat = tol.z * math.sqrt(se_b ** 2 + se_r ** 2)
        bound = max(tol.abs_floor, stat)
        worse = sign * (base.value - run.value)
        text = (f"{bound:.4f} = max(abs_floor {tol.abs_floor:g}, z {tol.z:g} × "
                f"sqrt({se_b:.4f}² + {se_r:.4f}²))")
    else:
        rel = tol.rel_for(benchmark)
        if base.value <= 0 or run.value <= 0:
            raise BaselineError(f"{where}: perplexities must be > 0 (baseline {base.value}, "
                                f"measured {run.value})")
        ratio = run.value / base.value if sign < 0 else base.value / run.value
        worse = ratio - 1.0 if ratio >= 1.0 else 1.0 - 1.0 / ratio  # symmetric in log space
        bound = rel
        text = f"{100 * rel:g}% relative"
    return Comparison(model, slug, benchmark, metric, base, run, worse, bound, text, source)


# ---------------------------------------------------------------- files: load and validate


def baseline_path(directory: str | Path, model: str) -> Path:
    return Path(directory) / f"{model}.json"


def _fail(path: Path, fieldname: str, problem: str) -> BaselineError:
    return BaselineError(f"{path}: field {fieldname}: {problem}")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_metric(path: Path, where: str, entry: Any) -> None:
    if not isinstance(entry, dict):
        raise _fail(path, where, f"expected an object with value, stderr, n; got {entry!r}")
    unknown = set(entry) - {"value", "stderr", "n"}
    if unknown or "value" not in entry:
        raise _fail(path, where, f"expected keys value, stderr, n; got {sorted(entry)}")
    if not _number(entry["value"]) or not math.isfinite(entry["value"]):
        raise _fail(path, f"{where}.value", f"expected a finite number, got {entry['value']!r}")
    se = entry.get("stderr")
    if se is not None and (not _number(se) or not math.isfinite(se) or se < 0):
        raise _fail(path, f"{where}.stderr", f"expected a number >= 0 or null, got {se!r}")
    n = entry.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise _fail(path, f"{where}.n", f"expected an integer >= 1 or null, got {n!r}")


def _check_settings(path: Path, name: str, s: Any) -> None:
    where = f"benchmarks.{name}"
    if not isinstance(s, dict) or set(s) != set(MUST_MATCH):
        got = sorted(s) if isinstance(s, dict) else repr(s)
        raise _fail(path, where, f"expected keys {', '.join(MUST_MATCH)}; got {got}")
    if not isinstance(s["task"], str):
        raise _fail(path, f"{where}.task", f"expected a task name, got {s['task']!r}")
    if not isinstance(s["num_fewshot"], int) or s["num_fewshot"] < 0:
        raise _fail(path, f"{where}.num_fewshot",
                    f"expected an integer >= 0, got {s['num_fewshot']!r}")
    if s["limit"] is not None and (not isinstance(s["limit"], int) or s["limit"] < 1):
        raise _fail(path, f"{where}.limit", f"expected null or an integer >= 1, "
                                            f"got {s['limit']!r}")
    if not isinstance(s["chat_template"], bool):
        raise _fail(path, f"{where}.chat_template",
                    f"expected true or false, got {s['chat_template']!r}")


def validate(data: Any, path: Path, known: Mapping[str, Benchmark] | None = None) -> None:
    """Raise ``BaselineError`` naming the first bad field; ``known`` = the model's benchmarks."""
    if not isinstance(data, dict):
        raise _fail(path, "(top level)", f"expected an object, got {type(data).__name__}")
    for key, kind in (("format", int), ("model", str), ("benchmarks", dict), ("results", dict)):
        if not isinstance(data.get(key), kind):
            raise _fail(path, key, f"expected {kind.__name__}, got {data.get(key)!r}")
    if data["format"] != FORMAT:
        raise _fail(path, "format", f"expected {FORMAT}, got {data['format']!r}")
    names = ", ".join(known) if known is not None else ""
    for name, s in data["benchmarks"].items():
        if known is not None and name not in known:
            raise _fail(path, f"benchmarks.{name}",
                        f"unknown benchmark {name!r}; known for {data['model']}: {names}")
        _check_settings(path, name, s)
    for slug, entries in data["results"].items():
        if not slug.startswith(f"{data['model']}-") or not isinstance(entries, dict):
            raise _fail(path, f"results.{slug}", f"expected an object keyed by benchmark, "
                                                 f"under a slug starting {data['model']}-")
        for name, metrics in entries.items():
            where = f"results.{slug}.{name}"
            if name not in data["benchmarks"]:
                raise _fail(path, where, f"benchmark {name!r} has no settings under "
                                         f"benchmarks.{name}")
            if not isinstance(metrics, dict):
                raise _fail(path, where, f"expected an object keyed by metric, got {metrics!r}")
            for key, entry in metrics.items():
                if known is not None and key not in {m.key for m in known[name].metrics}:
                    raise _fail(path, f"{where}.{key}", f"unknown metric {key!r}; {name} "
                                f"judges {', '.join(m.key for m in known[name].metrics)}")
                _check_metric(path, f"{where}.{key}", entry)


@dataclass
class BaselineFile:
    """A validated baseline file."""

    path: Path
    data: dict[str, Any]

    @property
    def model(self) -> str:
        return self.data["model"]

    def why_absent(self, benchmark: str, metrics: list[str] | None = None) -> str:
        """Why an entry is missing, from the provenance (``absent`` per "bench metric",
        else its ``note``), else "not pinned yet"."""
        prov = self.data.get("provenance")
        prov = prov if isinstance(prov, dict) else {}
        absent = prov.get("absent") if isinstance(prov.get("absent"), dict) else {}
        for key in metrics or []:
            if f"{benchmark} {key}" in absent:
                return str(absent[f"{benchmark} {key}"])
        return str(prov.get("note") or "not pinned yet")

    def settings(self, benchmark: str) -> dict[str, Any] | None:
        return self.data["benchmarks"].get(benchmark)

    def entry(self, slug: str, benchmark: str) -> dict[str, MetricValue] | None:
        metrics = self.data["results"].get(slug, {}).get(benchmark)
        if metrics is None:
            return None
        return {k: MetricValue(float(v["value"]), v.get("stderr"), v.get("n"))
                for k, v in metrics.items()}

    def slugs(self) -> list[str]:
        return list(self.data["results"])


def load_baseline(path: str | Path, known: Mapping[str, Benchmark] | None = None) -> BaselineFile:
    """Read and validate ``path``; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise BaselineError(f"{path}: baseline file missing; pin one with "
                            f"`pytest -m \"accuracy or perplexity\" {UPDATE_FLAG}` "
                            f"and review the diff")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                            f"column {exc.colno}); fix it or restore it from git") from None
    except UnicodeDecodeError as exc:
        raise BaselineError(f"{path}: not UTF-8 text ({exc.reason})") from None
    validate(data, path, known)
    return BaselineFile(path, data)


def settings_mismatch(bf: BaselineFile, benchmark: str, run: Mapping[str, Any],
                      base: Mapping[str, MetricValue] | None = None,
                      measured: Mapping[str, MetricValue] | None = None,
                      slug: str = "") -> list[str]:
    """Each score-changing setting where ``run`` differs from the baseline, as a sentence.

    Given the baseline entry ``base`` (of variant ``slug``) and this run's ``measured``
    metrics, a run with no limit whose sample count differs from the baseline's is one too:
    the same settings on a different data set or revision measure something else.
    """
    stored = bf.settings(benchmark) or {}
    out = []
    for key in MUST_MATCH:
        if stored.get(key) != run.get(key):
            out.append(f"{key}: baseline {json.dumps(stored.get(key))} "
                       f"({bf.path} benchmarks.{benchmark}.{key}), "
                       f"this run {json.dumps(run.get(key))}")
    if run.get("limit") is None and base and measured:
        out.extend(_count_mismatch(bf, benchmark, base, measured, slug))
    return out


def _count_mismatch(bf: BaselineFile, benchmark: str, base: Mapping[str, MetricValue],
                    measured: Mapping[str, MetricValue], slug: str) -> list[str]:
    task = (bf.settings(benchmark) or {}).get("task", benchmark)
    out = []
    for key, run in measured.items():
        stored = base.get(key)
        if stored is None or stored.n is None or run.n is None or stored.n == run.n:
            continue
        where = f"results.{slug}.{benchmark}.{key}.n" if slug else f"{benchmark} {key} n"
        out.append(f"n (samples) of {key}: baseline {stored.n} ({bf.path} {where}), this run "
                   f"{run.n} with no limit: a different data set or revision of {task}")
    return out


def mismatch_help(diffs: list[str]) -> str:
    """The failure text of a settings mismatch: each difference, then the two ways out."""
    return ("settings that change scores differ from the baseline's:\n  " + "\n  ".join(diffs)
            + f"\nrerun with the baseline's settings and data, or re-pin with {UPDATE_FLAG} "
              "(rewrites this benchmark's settings) and review the diff")


# ---------------------------------------------------------------- update


def dump(data: dict[str, Any]) -> str:
    """The canonical text of a baseline file (sorted keys, indented, final newline)."""
    return json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialize read-modify-write of baseline files between xdist workers (POSIX)."""
    try:
        import fcntl
    except ImportError:  # no flock here: single-process updates are still safe
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _skeleton(model: str, provenance: Mapping[str, Any], info: Mapping[str, Any]) -> dict:
    return {"format": FORMAT, "model": model, "provenance": dict(provenance),
            "settings": dict(info), "benchmarks": {}, "results": {}}


@dataclass
class UpdateResult:
    """What an update changed: per metric (old, new), and entries dropped by a settings change."""

    path: Path
    changed: dict[str, tuple[float | None, float]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)

    def message(self, slug: str, benchmark: str) -> str:
        parts = [f"{k}: {'none' if old is None else f'{old:.6g}'} -> {new:.6g}"
                 for k, (old, new) in self.changed.items()]
        text = (f"baseline updated ({UPDATE_FLAG}): {self.path} results.{slug}.{benchmark}: "
                + "; ".join(parts))
        if self.dropped:
            text += (f"\nsettings changed, so these entries measured under the old settings "
                     f"were removed: {', '.join(self.dropped)}")
        return text + "\nreview the diff (git diff) and rerun without the flag"


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)  # six decimals keep diffs readable


def update_baseline(path: str | Path, model: str, slug: str, benchmark: str,
                    measured: Mapping[str, MetricValue], run_settings: Mapping[str, Any],
                    known: Mapping[str, Benchmark] | None = None,
                    provenance: Mapping[str, Any] | None = None,
                    info: Mapping[str, Any] | None = None) -> UpdateResult:
    """Write the measured metrics of one (variant, benchmark); nothing else changes.

    A missing file is created. When the run's score-changing settings differ from the
    file's for this benchmark, the settings are rewritten and the benchmark's entries of
    other variants (measured under the old settings) are dropped and listed. A corrupt file
    or a non-finite value raises ``BaselineError`` and nothing is written.
    """
    path = Path(path)
    for key, mv in measured.items():
        if not mv.finite:
            raise BaselineError(f"{path}: refusing to write results.{slug}.{benchmark}.{key}"
                                f".value = {mv.value!r} (not a finite number)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent):
        if path.exists():
            data = load_baseline(path, known).data
        else:
            data = _skeleton(model, provenance or {"source": "glu-prune runs"}, info or {})
        if data["model"] != model:
            raise _fail(path, "model", f"file is for {data['model']!r}, not {model!r}")
        if data.get("provenance", {}).get("source") == "none" and provenance:
            data["provenance"] = dict(provenance)  # a first pin replaces "no numbers yet"
        result = UpdateResult(path)
        new_settings = {k: run_settings.get(k) for k in MUST_MATCH}
        if data["benchmarks"].get(benchmark) != new_settings:
            if benchmark in data["benchmarks"]:
                for other, entries in data["results"].items():
                    if other != slug and entries.pop(benchmark, None) is not None:
                        result.dropped.append(f"results.{other}.{benchmark}")
                data["results"].get(slug, {}).pop(benchmark, None)
            data["benchmarks"][benchmark] = new_settings
        entry = data["results"].setdefault(slug, {}).setdefault(benchmark, {})
        for key, mv in measured.items():
            old = entry.get(key, {}).get("value")
            entry[key] = {"value": _round(mv.value), "stderr": _round(mv.stderr), "n": mv.n}
            result.changed[key] = (old, float(entry[key]["value"]))
        validate(data, path, known)  # never write a file we could not read back
        atomic_write_text(path, dump(data))
    return result



if __name__ == "__main__":  # python -m glu_prune.judging.quality build-reference [...]
    import sys

    if sys.argv[1:2] != ["build-reference"]:
        raise SystemExit("usage: python -m glu_prune.judging.quality build-reference "
                         "[--reference DIR] [--out DIR]")
    from glu_prune.tools.build_reference import main

    raise SystemExit(main(sys.argv[2:]))
