"""Quality baselines (accuracy, perplexity): the file format, validation, look-up and pinning.

One JSON file per model (``baselines/<model>.json``)::

    {"format": 1, "model": "...", "provenance": {...}, "settings": {...informative...},
     "benchmarks": {"mmlu": {"task", "num_fewshot", "limit", "chat_template",
                             "task_version"}},
     "results": {"<variant slug>": {"mmlu": {"acc,none": {"value", "stderr", "n"}}}}}

``benchmarks`` holds the settings that change scores; a run must match them to be
compared. ``task_version`` (the task's ``metadata.version`` as lm-eval reports it) is
written by every pin; files without it (published figures) are compared without it.
Files are written with sorted keys and indentation, so a diff reads well.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from glu_prune.catalog.benchmarks import Benchmark
from glu_prune.core.importance import known_methods
from glu_prune.core.variants import VariantId
from glu_prune.evaluation import MetricValue, atomic_write_text
from glu_prune.judging.locking import locked
from glu_prune.judging.verdict import UPDATE_FLAG, Check, JudgingError, Subject

FORMAT = 1
MUST_MATCH: tuple[str, ...] = ("task", "num_fewshot", "limit", "chat_template")
VERSION_KEY = "task_version"  # must match too, where the file has it

# ---------------------------------------------------------------- the file: validate


def baseline_path(directory: str | Path, model: str) -> Path:
    """The baseline file of ``model`` in ``directory``."""
    return Path(directory) / f"{model}.json"


def _fail(path: Path, fieldname: str, problem: str) -> JudgingError:
    return JudgingError(f"{path}: field {fieldname}: {problem}")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


REASONS = {"stderr": "stderr_reason", "n": "n_reason"}  # a null stderr / n says why
METRIC_KEYS = {"value", "stderr", "n", *REASONS.values()}


def _check_metric(path: Path, where: str, entry: Any) -> None:
    if not isinstance(entry, dict):
        raise _fail(path, where, f"expected an object with value, stderr, n; got {entry!r}")
    missing = [k for k in ("value", *REASONS) if k not in entry]
    if set(entry) - METRIC_KEYS or missing:
        raise _fail(path, where, f"expected keys value, stderr, n (and stderr_reason / "
                                 f"n_reason where null); got {sorted(entry)}")
    if not _number(entry["value"]) or not math.isfinite(entry["value"]):
        raise _fail(path, f"{where}.value", f"expected a finite number, got {entry['value']!r}")
    se = entry["stderr"]
    if se is not None and (not _number(se) or not math.isfinite(se) or se < 0):
        raise _fail(path, f"{where}.stderr", f"expected a number >= 0 or null, got {se!r}")
    n = entry["n"]
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise _fail(path, f"{where}.n", f"expected an integer >= 1 or null, got {n!r}")
    for key, reason in REASONS.items():  # null turns a check off: only with a stated reason
        if entry[key] is None and not (isinstance(entry.get(reason), str) and entry[reason]):
            raise _fail(path, f"{where}.{key}", f"null without a reason; give {key} or "
                                                f"say why there is none in {reason!r}")


def metric_entry(mv: MetricValue) -> dict[str, Any]:
    """The stored form of a measured metric; a missing stderr or n names its reason."""
    entry: dict[str, Any] = {"value": _round(mv.value), "stderr": _round(mv.stderr),
                             "n": mv.n}
    if mv.stderr is None:
        entry["stderr_reason"] = "lm-eval reported no standard error for this metric"
    if mv.n is None:
        entry["n_reason"] = "lm-eval reported no sample count for this task"
    return entry


def _check_settings(path: Path, name: str, s: Any) -> None:
    where = f"benchmarks.{name}"
    if not isinstance(s, dict) or set(s) - {VERSION_KEY} != set(MUST_MATCH):
        got = sorted(s) if isinstance(s, dict) else repr(s)
        raise _fail(path, where, f"expected keys {', '.join(MUST_MATCH)} (and optionally "
                                 f"{VERSION_KEY}); got {got}")
    if VERSION_KEY in s and not isinstance(s[VERSION_KEY], str):
        raise _fail(path, f"{where}.{VERSION_KEY}",
                    f"expected the task's version as a string, got {s[VERSION_KEY]!r}")
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


def _check_results(path: Path, data: dict, known: Mapping[str, Benchmark] | None) -> None:
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


def validate(data: Any, path: Path, known: Mapping[str, Benchmark] | None = None) -> None:
    """Raise ``JudgingError`` naming the first bad field; ``known`` = the model's benchmarks."""
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
    _check_results(path, data, known)


def read_baseline(path: str | Path, known: Mapping[str, Benchmark] | None = None) -> dict:
    """Read and validate ``path``; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise JudgingError(f"{path}: baseline file missing; pin one with "
                           f"`pytest -m \"accuracy or perplexity\" {UPDATE_FLAG}` "
                           f"and review the diff")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise JudgingError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                           f"column {exc.colno}); fix it or restore it from git") from None
    except UnicodeDecodeError as exc:
        raise JudgingError(f"{path}: not UTF-8 text ({exc.reason})") from None
    validate(data, path, known)
    return data


def dump(data: dict[str, Any]) -> str:
    """The canonical text of a baseline file (sorted keys, indented, final newline)."""
    return json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"


def mismatch_help(diffs: list[str]) -> str:
    """The failure text of a settings mismatch: each difference, then the two ways out."""
    return ("settings that change scores differ from the baseline's:\n  " + "\n  ".join(diffs)
            + f"\nrerun with the baseline's settings and data, or re-pin with {UPDATE_FLAG} "
              "(rewrites this benchmark's settings) and review the diff")


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)  # six decimals keep diffs readable


# ---------------------------------------------------------------- the store


@dataclass
class QualityBaselines:
    """The baseline file of one model: look-ups, settings checks and pinning.

    ``data`` is None when the file does not exist yet (only loaded so with ``required=False``,
    to pin). ``provenance`` and ``info`` are written into a file that a pin creates.
    """

    path: Path
    model: str
    known: Mapping[str, Benchmark] | None = None
    data: dict[str, Any] | None = None
    provenance: Mapping[str, Any] = field(default_factory=lambda: {"source": "glu-prune runs"})
    info: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: str | Path, model: str,
             known: Mapping[str, Benchmark] | None = None, *,
             required: bool = True) -> QualityBaselines:
        """``model``'s baselines from ``directory``; ``JudgingError`` names a bad file."""
        path = baseline_path(directory, model)
        if not required and not path.exists():
            return cls(path, model, known)
        return cls(path, model, known, read_baseline(path, known))

    def _results(self) -> dict[str, Any]:
        return self.data["results"] if self.data is not None else {}

    def settings(self, benchmark: str) -> dict[str, Any] | None:
        """The score-changing settings the file holds for ``benchmark``."""
        return self.data["benchmarks"].get(benchmark) if self.data is not None else None

    def slugs(self) -> list[str]:
        """The variants with entries, in file order."""
        return list(self._results())

    def entry(self, slug: str, benchmark: str) -> dict[str, MetricValue] | None:
        """The metrics pinned for ``slug`` on ``benchmark``."""
        metrics = self._results().get(slug, {}).get(benchmark)
        if metrics is None:
            return None
        return {k: MetricValue(float(v["value"]), v.get("stderr"), v.get("n"))
                for k, v in metrics.items()}

    def _candidates(self, model: str, slug: str) -> list[str]:
        """``slug``, then (for level 0, the same model under every method) every p0 entry
        of the model in file order."""
        p0 = {VariantId(model, m, 0).slug for m in known_methods()}
        if slug not in p0:
            return [slug]
        return [slug] + [s for s in self.slugs() if s in p0 and s != slug]

    def entry_for(self, vid: VariantId, benchmark: str) -> tuple[str, dict] | None:
        """(slug of the entry, its metrics) that judges ``vid`` on ``benchmark``."""
        for slug in self._candidates(vid.model, vid.slug):
            if (entry := self.entry(slug, benchmark)) is not None:
                return slug, entry
        return None

    def get(self, subject: Subject) -> MetricValue | None:
        """The baseline of one metric (level 0 of any method serves level 0)."""
        for slug in self._candidates(subject.model, subject.variant):
            entry = self.entry(slug, subject.benchmark)
            if entry is not None:
                return entry.get(subject.metric)
        return None

    def why_absent(self, subject: Subject | None = None, benchmark: str = "",
                   metrics: Sequence[str] = ()) -> str:
        """Why an entry is missing, from the provenance (``absent`` per "bench metric",
        else its ``note``), else "not pinned yet"."""
        if subject is not None:
            benchmark, metrics = subject.benchmark, [subject.metric]
        prov = (self.data or {}).get("provenance")
        prov = prov if isinstance(prov, dict) else {}
        absent = prov.get("absent") if isinstance(prov.get("absent"), dict) else {}
        for key in metrics:
            if f"{benchmark} {key}" in absent:
                return str(absent[f"{benchmark} {key}"])
        return str(prov.get("note") or "not pinned yet")

    def settings_mismatch(self, benchmark: str, run: Mapping[str, Any],
                          base: Mapping[str, MetricValue] | None = None,
                          measured: Mapping[str, MetricValue] | None = None,
                          slug: str = "") -> list[str]:
        """Each score-changing setting where ``run`` differs from the baseline, as a sentence.

        Given the baseline entry ``base`` (of variant ``slug``) and this run's ``measured``
        metrics, a run with no limit whose sample count differs from the baseline's is one
        too: the same settings on a different data set or revision measure something else.
        Nothing is pinned for ``benchmark`` (no settings, hence no entries): no mismatch.
        The task's version is compared where both the file and ``run`` have the key (the
        check before evaluating leaves it out: reading it loads the task).
        """
        stored = self.settings(benchmark)
        if stored is None:
            return []
        out = []
        versioned = VERSION_KEY in stored and VERSION_KEY in run  # run: None = no version
        for key in (*MUST_MATCH, *([VERSION_KEY] if versioned else [])):
            if stored.get(key) != run.get(key):
                out.append(f"{key}: baseline {json.dumps(stored.get(key))} "
                           f"({self.path} benchmarks.{benchmark}.{key}), "
                           f"this run {json.dumps(run.get(key))}")
        if run.get("limit") is None and base and measured:
            out.extend(self._count_mismatch(benchmark, base, measured, slug))
        return out

    def _count_mismatch(self, benchmark: str, base: Mapping[str, MetricValue],
                        measured: Mapping[str, MetricValue], slug: str) -> list[str]:
        task = (self.settings(benchmark) or {}).get("task", benchmark)
        out = []
        for key, run in measured.items():
            stored = base.get(key)
            if stored is None or stored.n is None or run.n is None or stored.n == run.n:
                continue
            where = f"results.{slug}.{benchmark}.{key}.n" if slug else f"{benchmark} {key} n"
            out.append(f"n (samples) of {key}: baseline {stored.n} ({self.path} {where}), this "
                       f"run {run.n} with no limit: a different data set or revision of {task}")
        return out

    def pin(self, checks: Sequence[Check], settings: Mapping[str, Any]) -> str:
        """Write the measured metrics of ``checks``; nothing else changes. Returns what else
        the pin changed (entries dropped by a settings change), or "".

        A missing file is created. When the run's score-changing ``settings`` differ from the
        file's for a benchmark, they are rewritten and that benchmark's entries of other
        variants (measured under the old settings) are dropped. A corrupt file or a
        non-finite value raises ``JudgingError`` and nothing is written.
        """
        for c in checks:
            s = c.subject
            if not c.run.finite:
                raise JudgingError(f"{self.path}: refusing to write results.{s.variant}."
                                   f"{s.benchmark}.{s.metric}.value = {c.run.value!r} "
                                   f"(not a finite number)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.path.parent):
            data = self._fresh()
            dropped: list[str] = []
            for c in checks:
                dropped += _set_settings(data, c.subject, settings)
            for c in checks:
                s, mv = c.subject, c.run
                entry = data["results"].setdefault(s.variant, {}).setdefault(s.benchmark, {})
                entry[s.metric] = metric_entry(mv)
            validate(data, self.path, self.known)  # never write a file we could not read back
            atomic_write_text(self.path, dump(data))
            self.data = data
        if not dropped:
            return ""
        return (f"settings changed, so these entries measured under the old settings were "
                f"removed: {', '.join(dropped)}")

    def _fresh(self) -> dict[str, Any]:
        """The file as it is now on disk (another worker may have pinned), or a skeleton."""
        if self.path.exists():
            data = read_baseline(self.path, self.known)
        else:
            data = {"format": FORMAT, "model": self.model, "provenance": dict(self.provenance),
                    "settings": dict(self.info), "benchmarks": {}, "results": {}}
        if data["model"] != self.model:
            raise _fail(self.path, "model", f"file is for {data['model']!r}, not {self.model!r}")
        if data.get("provenance", {}).get("source") == "none" and self.provenance:
            data["provenance"] = dict(self.provenance)  # a first pin replaces "no numbers yet"
        return data


def _set_settings(data: dict[str, Any], subject: Subject,
                  run: Mapping[str, Any]) -> list[str]:
    """Rewrite ``subject.benchmark``'s settings when the run's differ; returns the entries
    of other variants that this drops (measured under the old settings)."""
    benchmark, slug = subject.benchmark, subject.variant
    new_settings = {k: run.get(k) for k in MUST_MATCH}
    if run.get(VERSION_KEY) is not None:
        new_settings[VERSION_KEY] = run[VERSION_KEY]
    if data["benchmarks"].get(benchmark) == new_settings:
        return []
    dropped = []
    if benchmark in data["benchmarks"]:
        for other, entries in data["results"].items():
            if other != slug and entries.pop(benchmark, None) is not None:
                dropped.append(f"results.{other}.{benchmark}")
        data["results"].get(slug, {}).pop(benchmark, None)
    data["benchmarks"][benchmark] = new_settings
    return dropped
