"""Results data: the record schema, its order, JSON files, the run environment, and merging.

Every suite test reports its numbers as a :class:`Record` (a plain dict on the wire, so it
travels in ``report.user_properties`` from xdist workers). Never imports pytest; the
tables are drawn by ``glu_prune.results.report``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import os
import platform
import re
import secrets
import socket
import subprocess
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable

LOG = logging.getLogger(__name__)

SCHEMA = "glu-prune-results/1"
RECORD_KEYS = ("glu_record", "glu_eval")  # user_properties names read (the eval suite: glu_eval)
VERDICTS = ("ok", "regression", "improvement", "no baseline", "pinned")
CAPABILITY_KINDS = ("accuracy", "perplexity")
PERF_KINDS = ("latency", "energy")
KIND_ORDER = ("invariant", "accuracy", "perplexity", "latency", "energy")
# aliases other record producers use -> schema names
_ALIASES = {"measured": "value", "measured_stderr": "stderr", "outcome": "verdict",
            "ideal_speedup": "ideal", "total_params": "params", "slug": "variant"}
_VERDICT_ALIASES = {"regressed": "regression", "improved": "improvement"}
_SLUG = re.compile(r"^(?P<model>.+)-(?P<method>[A-Za-z0-9_]+)-p(?P<pct>\d+(?:_\d+)?)"
                   r"(?:-r(?P<round_to>\d+))?$")


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
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """Normalize a plain dict (schema names, known aliases; unknown keys go to ``extra``)."""
        names = {f.name for f in fields(cls)}
        d: dict[str, Any] = {}
        extra = dict(data.get("extra") or {})
        for key, value in data.items():
            key2 = _ALIASES.get(key, key)
            if key == "extra":
                continue
            if key2 in names and key2 not in d:
                d[key2] = value
            else:
                extra[key] = value
        missing = [k for k in ("benchmark", "metric", "value") if d.get(k) is None]
        if missing or not (d.get("variant") or d.get("model")):
            raise ValueError(f"record needs benchmark, metric, value and variant (or model); "
                             f"missing {missing or ['variant']} in {_short(data)}")
        _coerce_numbers(d, data)
        _fill_identity(d)
        _fill_kind(d)
        _fill_verdict(d, extra)
        _fill_registry(d)
        if d.get("direction") not in (None, "higher", "lower"):
            raise ValueError(f"record direction must be 'higher' or 'lower', got "
                             f"{d['direction']!r} in {_short(data)}")
        return cls(**d, extra=extra)

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


def _short(data: dict[str, Any]) -> str:
    return repr({k: data[k] for k in list(data)[:6]})


_FLOATS = ("value", "stderr", "baseline", "baseline_stderr", "bound", "ideal", "expansion_ratio")
_INTS = ("n", "intermediate_size", "params")


def _coerce_numbers(d: dict[str, Any], data: dict[str, Any]) -> None:
    """Plain float/int (numpy or torch scalars would not survive JSON or xdist's wire)."""
    for names, cast in ((_FLOATS, float), (_INTS, int)):
        for key in names:
            value = d.get(key)
            if value is None:
                continue
            if isinstance(value, (bool, str)) or not isinstance(value, numbers.Real):
                raise ValueError(f"record {key} must be a number or null, got {value!r} "
                                 f"in {_short(data)}")
            d[key] = cast(value)


def parse_slug(slug: str) -> dict[str, Any]:
    """``llama-3.2-1b-maw-p40-r128`` -> model, method, pct, round_to (empty dict if not a slug)."""
    m = _SLUG.match(slug or "")
    if not m:
        return {}
    return {"model": m["model"], "method": m["method"], "pct": float(m["pct"].replace("_", ".")),
            "round_to": int(m["round_to"] or 1)}


def _fill_identity(d: dict[str, Any]) -> None:
    parsed = parse_slug(d.get("variant") or "")
    for key, value in parsed.items():
        if d.get(key) is None:
            d[key] = value
    if not d.get("variant"):
        d["variant"] = d["model"]
    if not d.get("model"):
        d["model"] = d["variant"]
    if d.get("pct") is not None:
        d["pct"] = float(d["pct"])
    d["round_to"] = int(d.get("round_to") or 1)


def _fill_kind(d: dict[str, Any]) -> None:
    """Perf records may omit kind/direction: infer them from unit and benchmark name."""
    unit, bench = str(d.get("unit") or ""), str(d["benchmark"])
    if not d.get("kind"):
        if bench.startswith("energy") or unit.startswith("J") or unit == "W":
            d["kind"] = "energy"
        elif unit in ("s", "ms", "tok/s") or bench.split("@")[0] in ("ttft", "tpot",
                                                                     "throughput"):
            d["kind"] = "latency"
        else:
            d["kind"] = "other"
    if d.get("direction") is None and d["kind"] in PERF_KINDS:
        d["direction"] = "higher" if unit.endswith("/s") else "lower"


def _fill_verdict(d: dict[str, Any], extra: dict[str, Any]) -> None:
    v = d.get("verdict")
    if v is None:
        return
    v = _VERDICT_ALIASES.get(v, v)
    if isinstance(v, str) and v.startswith("no baseline") and v != "no baseline":
        extra.setdefault("verdict_detail", v)  # keep the reason, show the plain verdict
        v = "no baseline"
    if v not in VERDICTS:
        raise ValueError(f"record verdict must be one of {VERDICTS} (or null), got {v!r} "
                         f"for {d['variant']} / {d['benchmark']}")
    d["verdict"] = v


def _fill_registry(d: dict[str, Any]) -> None:
    """Group, direction and architecture from the registries, when the record lacks them."""
    info = _benchmark_info(d["model"]).get(d["benchmark"])
    if info is not None:
        if d.get("group") is None:
            d["group"] = info["group"]
        if d.get("direction") is None:
            d["direction"] = info["directions"].get(d["metric"])
    if d.get("pct") is not None and d.get("intermediate_size") is None:
        arch = architecture(d["model"], d["pct"], d["round_to"])
        if arch:
            d["intermediate_size"] = arch["intermediate_size"]
            d["expansion_ratio"] = d.get("expansion_ratio") or arch["expansion_ratio"]
            d["params"] = d.get("params") or arch["total_params"]


# ---------------------------------------------------------------- registries (optional)


_CHANCE_METRICS = ("acc", "acc_norm")  # chance applies to choice accuracy, not exact match


def _canonical_order() -> list[str]:
    """Every model's benchmarks in the base models' order (instruct sets list theirs in
    another order; one order lets base and instruct tables be read side by side)."""
    try:
        from glu_prune.catalog.benchmarks import BASE_NAMES, REAL_BENCHMARKS
    except ImportError:
        return []
    return list(BASE_NAMES) + [b for b in REAL_BENCHMARKS if b not in BASE_NAMES]


@lru_cache(maxsize=None)
def _benchmark_info(model: str) -> dict[str, dict[str, Any]]:
    """name -> {index, group, directions, metrics, chance, n}; empty when the registry
    cannot say."""
    try:
        from glu_prune.catalog.benchmarks import benchmarks_for

        benches = benchmarks_for(model)
    except Exception as exc:  # noqa: BLE001  (benchmarks.py optional; unknown models fine)
        LOG.debug("no benchmark registry for %s: %s", model, exc)
        return {}
    order = _canonical_order()
    return {b.name: {"index": order.index(b.name) if b.name in order else len(order) + i,
                     "group": b.group, "metrics": [m.key for m in b.metrics],
                     "directions": {m.key: m.direction for m in b.metrics},
                     "chance": b.chance, "n": b.n}
            for i, b in enumerate(benches)}


def chance_level(model: str, benchmark: str, metric: str) -> float | None:
    """Chance level of a choice-accuracy metric (``acc``, ``acc_norm``), else None."""
    if metric.partition(",")[0] not in _CHANCE_METRICS:
        return None
    return (_benchmark_info(model).get(benchmark) or {}).get("chance")


def registry_size(model: str, benchmark: str) -> int | None:
    """The benchmark's test-set size from the registry (None when unknown)."""
    return (_benchmark_info(model).get(benchmark) or {}).get("n")


@lru_cache(maxsize=None)
def _architecture_rows(model: str, levels: tuple[float, ...], round_to: int) -> list[dict]:
    try:
        from glu_prune.catalog.models import get_model_spec
        from glu_prune.core.arithmetic import expansion_table

        # the embedded architecture dict serves as the config: no transformers import needed
        config = SimpleNamespace(**get_model_spec(model).architecture)
        return expansion_table(config, levels, round_to=round_to)
    except (KeyError, ValueError, ImportError) as exc:
        LOG.debug("no architecture for %s: %s", model, exc)
        return []


def architecture(model: str, pct: float, round_to: int) -> dict[str, Any] | None:
    rows = _architecture_rows(model, (0.0, float(pct)), round_to)
    if not rows:
        return None
    base, row = rows
    # percentage actually removed (differs from the level when round_to > 1)
    removed = 100.0 * (base["intermediate_size"] - row["intermediate_size"]) \
        / base["intermediate_size"]
    return {**row, "pruned_pct": removed}


def model_index(model: str) -> int:
    """Position of ``model`` in the registry (unknown models last)."""
    try:
        from glu_prune.catalog.models import MODELS

        return list(MODELS).index(model)
    except (ImportError, ValueError):
        return 10**6


# ---------------------------------------------------------------- order


def _natural(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


_PERF_ORDER = ("ttft", "tpot", "throughput", "mlp", "energy")


def benchmark_key(model: str, benchmark: str) -> tuple:
    """Registry order for known benchmarks, then speed benchmarks by family, then by name."""
    info = _benchmark_info(model).get(benchmark)
    if info is not None:
        return (0, info["index"], ())
    family = re.split(r"[@\-_]", benchmark)[0]
    fam = _PERF_ORDER.index(family) if family in _PERF_ORDER else len(_PERF_ORDER)
    return (1, fam, _natural(benchmark))


def metric_key(model: str, benchmark: str, metric: str) -> tuple:
    info = _benchmark_info(model).get(benchmark)
    if info is not None and metric in info["metrics"]:
        return (0, info["metrics"].index(metric), metric)
    return (1, 0, metric)


def sort_key(r: Record) -> tuple:
    """Models in registry order, levels ascending, benchmarks in registry order."""
    kind = KIND_ORDER.index(r.kind) if r.kind in KIND_ORDER else len(KIND_ORDER)
    return (model_index(r.model), r.model, r.pct if r.pct is not None else -1.0,
            r.method or "", r.round_to, kind, benchmark_key(r.model, r.benchmark),
            metric_key(r.model, r.benchmark, r.metric), r.variant, r.test or "")


def sort_records(records: Iterable[Record]) -> list[Record]:
    return sorted(records, key=sort_key)


def same_measurement(a: Record, b: Record) -> bool:
    """Whether two records of one identity agree (then one of them is a harmless copy)."""
    return (a.value, a.stderr, a.verdict, a.baseline) == (b.value, b.stderr, b.verdict,
                                                          b.baseline)


def dedupe(pairs: Iterable[tuple[Record, str]]) -> tuple[list[Record], list[str]]:
    """Drop copies of the same measurement; ``pairs`` are (record, where it came from).

    Returns (sorted records, conflicts); a conflict names model / variant / kind /
    benchmark / metric, both values and both sources.
    """
    seen: dict[tuple, tuple[Record, str]] = {}
    conflicts: list[str] = []
    for r, source in pairs:
        old = seen.get(r.identity)
        if old is None:
            seen[r.identity] = (r, source)
        elif not same_measurement(old[0], r):
            conflicts.append(f"{' / '.join(r.identity)}: {old[0].value!r} from {old[1]} vs "
                             f"{r.value!r} from {source}")
    return sort_records(r for r, _ in seen.values()), conflicts


# ---------------------------------------------------------------- environment


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def device_name() -> str:
    """The GPU's name when this process already uses torch with CUDA, else the CPU."""
    torch = sys.modules.get("torch")  # never import torch just to name the machine
    try:
        if torch is not None and torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except Exception as exc:  # noqa: BLE001  (a broken driver must not lose the results)
        LOG.debug("no CUDA device name: %s", exc)
    return f"cpu {platform.machine()}"


def git_commit(root: str | os.PathLike | None = None) -> str | None:
    """``HEAD`` of the repository at ``root``, or None outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Machine and library versions of this run (results.json; one line in results.md)."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "device": device_name(),
            "versions": {d: _version(d) for d in ("torch", "transformers", "lm-eval",
                                                  "pytest", "pytest-xdist",
                                                  "pytest-benchmark", "glu-prune")},
            "git_commit": git_commit(root)}


def header_line(runs: list[dict[str, Any]]) -> str:
    """One short line naming where the numbers come from (identical for identical machines)."""
    parts = []
    for run in runs:
        env = run.get("environment") or {}
        v = env.get("versions") or {}
        commit = (env.get("git_commit") or "")[:10]
        parts.append(f"{env.get('device', '?')}; python {env.get('python', '?')}, "
                     f"torch {v.get('torch')}, transformers {v.get('transformers')}, "
                     f"lm-eval {v.get('lm-eval')}" + (f"; commit {commit}" if commit else ""))
    unique = sorted(set(parts))
    return "Measured on " + " | ".join(unique) if unique else ""


# ---------------------------------------------------------------- JSON


def document(records: Iterable[Record], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``results.json`` content: every record (sorted), each run's settings/machine, and
    ``complete``: false when any run stopped before all its selected tests ran."""
    return {"schema": SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "complete": all(run.get("complete", True) for run in runs),
            "runs": runs, "records": [r.to_dict() for r in sort_records(records)]}


def write_text_atomically(path: Path, text: str) -> Path:
    """Write ``path`` through a temporary file beside it: a reader (or a run stopped while
    writing) sees the old file or the new one, never half of each."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(doc: dict[str, Any], path: Path) -> Path:
    return write_text_atomically(path, json.dumps(doc, indent=1, sort_keys=False) + "\n")


def load_document(path: str | os.PathLike) -> tuple[list[Record], list[dict[str, Any]]]:
    """Records and runs of one ``results.json``; errors name the file and what is wrong."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read results JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA \
            or not isinstance(doc.get("records"), list):
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{path}: not a glu-prune results file (schema {got!r}; expected "
                         f"{SCHEMA!r} with a 'records' list)")
    records = []
    for i, item in enumerate(doc["records"]):
        try:
            records.append(Record.from_dict(item))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: records[{i}]: {exc}") from None
    runs = doc.get("runs") or []
    if not isinstance(runs, list) or not all(isinstance(run, dict) for run in runs):
        raise ValueError(f"{path}: 'runs' must be a list of objects, got {runs!r:.80}")
    return adopt_unlabelled(records, runs, doc.get("created"), str(path))


# ---------------------------------------------------------------- runs and accumulation

EARLIER_RUN = "earlier"  # id prefix of the run of records written before runs had ids


def new_run_id(started: datetime) -> str:
    """A run's id: its start time (sorts, and says when) and 4 hex digits (unique)."""
    return f"{started.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def run_of(record: Record) -> str | None:
    """The id of the run that measured ``record``."""
    return record.extra.get("run")


def stamp(records: Iterable[Record], run_id: str) -> list[Record]:
    """``records`` as measured by run ``run_id`` (copies; the run id goes to ``extra``)."""
    return [replace(r, extra={**r.extra, "run": run_id}) for r in records]


def adopt_unlabelled(records: list[Record], runs: list[dict[str, Any]], created: str | None,
                     path: str) -> tuple[list[Record], list[dict[str, Any]]]:
    """Ids for a results file written before runs had them: each run without one gets
    ``earlier-<n>-<hash of the file's path>`` (and the file's creation time as its start
    and end when it has none); records that name no run belong to the first of them."""
    if all(run_of(r) for r in records) and all(run.get("id") for run in runs):
        return records, runs
    tag = hashlib.sha1(path.encode()).hexdigest()[:6]  # two such files merged stay apart
    adopted = [run if run.get("id") else
               {"started": created, "finished": created, **run,
                "id": f"{EARLIER_RUN}-{i + 1}-{tag}"} for i, run in enumerate(runs)]
    first = next((run["id"] for run in adopted if run["id"].startswith(EARLIER_RUN)), None)
    if first is None:  # records without a run, beside runs that all have ids
        first = f"{EARLIER_RUN}-0-{tag}"
        adopted.insert(0, {"id": first, "started": created, "finished": created})
    return [r if run_of(r) else stamp([r], first)[0] for r in records], adopted


_PERF_CONDITIONS = ("device", "dtype", "layers", "weights", "threads")


def _conditions(r: Record, runs: dict[str, dict[str, Any]]) -> tuple[str, tuple]:
    """(quality | speed, the settings its number depends on): a record is only comparable
    with records of the same model measured under the same ones."""
    if r.kind in CAPABILITY_KINDS:
        env = (runs.get(run_of(r) or "") or {}).get("environment") or {}
        version = (env.get("versions") or {}).get("lm-eval")
        names = tuple(name for name, _, _ in _RECORD_SETTINGS) + ("lm-eval version",)
        values = tuple(_hashable(r.extra.get(key)) for _, key, _ in _RECORD_SETTINGS)
        return "quality", tuple(zip(names, values + (version,), strict=True))
    if r.kind in PERF_KINDS:
        return "speed", tuple((k, _hashable(r.extra.get(k))) for k in _PERF_CONDITIONS)
    return r.kind, ()


def accumulate(old_records: list[Record], old_runs: list[dict[str, Any]],
               new_records: list[Record], run: dict[str, Any]
               ) -> tuple[list[Record], list[dict[str, Any]], list[str]]:
    """The report folder after ``run``: the latest record per measurement.

    ``new_records`` replace the old records of the same identity; older records stay,
    naming their run. Old records of a model and kind (quality / speed) that this run
    measured under other settings (limit, chat template, batch size, lm-eval version;
    device, dtype, depth, weights, threads) are dropped: they are not comparable, and
    the returned lines say what was dropped and why. Runs no record names any more are
    dropped; ``run`` is always kept (a run that recorded nothing still shows).
    """
    by_id = {r["id"]: r for r in [*old_runs, run]}
    fresh = {r.identity for r in new_records}
    now: dict[tuple[str, str], set] = defaultdict(set)
    for r in new_records:
        kind, conditions = _conditions(r, by_id)
        now[(r.model, kind)].add(conditions)
    kept, dropped = [], defaultdict(lambda: [0, set()])
    for r in old_records:
        if r.identity in fresh:
            continue
        kind, conditions = _conditions(r, by_id)
        if now.get((r.model, kind)) and conditions not in now[(r.model, kind)]:
            dropped[(r.model, kind)][0] += 1
            dropped[(r.model, kind)][1].add(conditions)
            continue
        kept.append(r)
    used = {run_of(r) for r in kept}
    runs = [old for old in old_runs if old["id"] in used and old["id"] != run["id"]] + [run]
    notes = [f"dropped {n} earlier {kind} record(s) of {model} measured under other settings "
             f"({_describe_conditions(old)}) than this run's "
             f"({_describe_conditions(now[(model, kind)])})"
             for (model, kind), (n, old) in sorted(dropped.items())]
    return sort_records(kept + list(new_records)), runs, notes


def _describe_conditions(conditions: set) -> str:
    return " | ".join(", ".join(f"{k} {v}" for k, v in c) for c in sorted(conditions, key=repr))


# ---------------------------------------------------------------- merging shards

# Settings that change scores, as (name shown, record extra key, run option). Shards
# measured under different values are not one table: a limit of 100 examples and the
# full test set differ by more than the tolerance on their own.
_RECORD_SETTINGS = (("limit", "limit", "glu_limit"),
                    ("chat template", "chat_template", "glu_chat_template"),
                    ("batch size", "batch_size", "glu_batch_size"))
SCORE_SETTINGS = tuple(name for name, _, _ in _RECORD_SETTINGS) + ("lm-eval version", "dtype")


def score_settings(records: list[Record], runs: list[dict[str, Any]]) -> dict[str, set]:
    """Setting name -> the values a results file was measured under.

    Evaluation settings count only when the file has accuracy/perplexity records (a
    speed-only shard's default --glu-limit changed nothing); each record's own values
    (suite records carry them) win over its run's options. dtype comes from the records
    (speed records carry theirs).
    """
    values: dict[str, set] = defaultdict(set)
    quality = [r for r in records if r.kind in CAPABILITY_KINDS]
    for name, key, option in _RECORD_SETTINGS:
        from_records = {_hashable(r.extra[key]) for r in quality if key in r.extra}
        from_runs = {_hashable((run.get("options") or {}).get(option)) for run in runs
                     if option in (run.get("options") or {})}
        values[name] |= from_records or (from_runs if quality else set())
    if quality:
        values["lm-eval version"] |= {((run.get("environment") or {}).get("versions") or {})
                                      .get("lm-eval") for run in runs}
    values["dtype"] |= {_hashable(r.extra["dtype"]) for r in records if "dtype" in r.extra}
    return {name: v for name, v in values.items() if v}


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def mixed_settings(shards: dict[str, dict[str, set]]) -> list[str]:
    """One line per score-changing setting whose value differs between shards (file ->
    its settings), naming each value and the files measured under it."""
    lines = []
    for name in SCORE_SETTINGS:
        where: dict[Any, list[str]] = defaultdict(list)
        for path, settings in shards.items():
            for value in sorted(settings.get(name, ()), key=repr):
                where[value].append(path)
        if len(where) > 1:
            lines.append(f"{name}: " + "; ".join(f"{value!r} in {', '.join(paths)}"
                                                 for value, paths in where.items()))
    return lines


def merge(paths: Iterable[str | os.PathLike], *, allow_mixed_settings: bool = False
          ) -> tuple[list[Record], list[dict[str, Any]], list[str]]:
    """Records, runs and mixed-setting lines of several shards.

    The same measurement with different numbers in two files is an error naming both;
    so are shards measured under different score-changing settings (limit, chat template,
    batch size, lm-eval version, dtype), unless ``allow_mixed_settings``: then the
    returned lines say what was mixed, for the results to show.
    """
    pairs, runs, settings = [], [], {}
    for path in paths:
        records, shard_runs = load_document(path)
        pairs += [(r, str(path)) for r in records]
        runs += [{**run, "source": run.get("source") or str(path)} for run in shard_runs]
        settings[str(path)] = score_settings(records, shard_runs)
    mixed = mixed_settings(settings)
    if mixed and not allow_mixed_settings:
        # one line: the CLI shows an error's first line only
        raise ValueError("shards measured under different score-changing settings (pass "
                         "--allow-mixed-settings to merge them anyway): " + " | ".join(mixed))
    records, conflicts = dedupe(pairs)
    if conflicts:
        raise ValueError(f"{len(conflicts)} conflicting duplicate records (same model / "
                         f"variant / kind / benchmark / metric, different numbers): "
                         + " | ".join(conflicts))
    return records, runs, mixed


# ---------------------------------------------------------------- the report folder's lock

LOCK_NAME = ".glu-prune.lock"


class ReportFolderBusy(OSError):
    """Another live run holds the report folder's lock (an OSError, like EBUSY)."""


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (unknown counts as alive)."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: alive
        return True
    return True


@dataclass
class ReportLock:
    """An exclusive lock on a report folder: ``<folder>/.glu-prune.lock``, created with
    O_EXCL and holding this run's pid, host, start time and command.

    Two runs writing one folder would silently mix or overwrite each other's results, so
    the second is refused up front, naming the holder. A lock left by a dead process on
    this host is taken over with a warning (``taken_over``); one from another host is
    never judged stale (its pid means nothing here). ``release`` removes the lock, and
    the folders ``acquire`` created when nothing else was written into them.
    """

    path: Path
    holder: dict[str, Any]
    created: list[Path] = field(default_factory=list)  # deepest first
    taken_over: str | None = None

    @classmethod
    def acquire(cls, folder: str | os.PathLike, command: str = "") -> ReportLock:
        """Take the lock of ``folder`` (created if missing); ReportFolderBusy when held."""
        folder = Path(folder).absolute()
        created = [p for p in (folder, *folder.parents) if not p.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                  "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "token": secrets.token_hex(8)}  # tells two locks of one process apart
        lock = cls(folder / LOCK_NAME, holder, created)
        if not lock._create():
            lock._take_over_stale()
        return lock

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.holder, fh)
        return True

    def _take_over_stale(self) -> None:
        """Replace a dead local process's lock; raise ReportFolderBusy for any other."""
        other = read_lock(self.path)
        stale = (other.get("host") == self.holder["host"] and isinstance(other.get("pid"), int)
                 and not _pid_alive(other["pid"]))
        if not stale:
            raise ReportFolderBusy(_busy_message(self.path, other))
        # rename first: of two runs taking over at once only one can move the stale file
        aside = self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            raise ReportFolderBusy(_busy_message(self.path, read_lock(self.path))) from None
        moved = read_lock(aside)
        if moved != other:  # another run took it over first: give its lock back
            os.rename(aside, self.path)
            raise ReportFolderBusy(_busy_message(self.path, moved))
        aside.unlink()
        if not self._create():
            raise ReportFolderBusy(_busy_message(self.path, read_lock(self.path)))
        self.taken_over = (f"took over the lock {self.path} of a run that is gone "
                           f"({_describe(other)}): its results may be incomplete")
        LOG.warning("%s", self.taken_over)

    def release(self) -> None:
        """Remove the lock (if still ours) and the empty folders ``acquire`` created."""
        if read_lock(self.path) == self.holder:
            self.path.unlink(missing_ok=True)
        for folder in self.created:
            try:
                folder.rmdir()  # only when empty: written results stay
            except OSError:
                break

    def __enter__(self) -> ReportLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def read_lock(path: Path) -> dict[str, Any]:
    """The holder recorded in a lock file ({} when it is gone or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "holder unknown: the lock file is empty or unreadable"
    return (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
            + (f": {holder['command']}" if holder.get("command") else ""))


def _busy_message(path: Path, holder: dict[str, Any]) -> str:
    return (f"the report folder {path.parent} is in use by another run ({_describe(holder)}); "
            f"lock file {path}. Wait for that run, give another --glu-report folder, or, "
            f"if that run is gone, delete the lock file")
