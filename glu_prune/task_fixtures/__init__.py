"""Serve lm-eval's real tasks their datasets from local fixture rows, offline.

lm-eval's own task definitions (YAML, utils, few-shot samplers, filters,
``process_results``, group aggregation) run unchanged; only the dataset download is
replaced. ``ConfigurableTask.download`` calls ``datasets.load_dataset(path=..., name=...)``
through the ``datasets`` name of ``lm_eval.api.task``; :func:`serve_fixtures` swaps that
one name for a module that answers ``load_dataset`` from fixture files and passes every
other attribute through, so nothing else in the process sees a change.

A fixture file (``data/<owner>__<dataset>.json``) holds one dataset path: its features in
``datasets.Features.to_dict()`` form, and per config name (``null`` for none) the rows of
each split the task's YAML names. The rows are written for this project in the dataset's
real schema (field names, types, splits, label encodings); they are not the dataset's rows.

The same mechanism is a dress rehearsal of a real run (``python -m glu_prune.task_fixtures``,
``rehearse.py`` beside this file; README "Dress rehearsal").
"""

from __future__ import annotations

import contextlib
import json
import logging
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

LOG = logging.getLogger(__name__)

DATA_DIR: Path = Path(__file__).resolve().parent / "data"

FixtureKey = tuple[str, str | None]  # (dataset_path, dataset_name)


class FixtureMissing(LookupError):
    """A task asked for a dataset (path, name) that has no fixture rows."""


@dataclass(frozen=True)
class DatasetFixture:
    """The fixture rows of one (dataset path, config name), with the dataset's features."""

    path: str
    name: str | None
    features: dict[str, Any]  # datasets.Features.to_dict() form
    splits: dict[str, list[dict[str, Any]]]

    def to_dataset_dict(self) -> Any:
        """A ``datasets.DatasetDict`` of the rows, typed by the dataset's real features."""
        import datasets

        features = datasets.Features.from_dict(self.features)
        return datasets.DatasetDict({
            split: datasets.Dataset.from_list(rows, features=features)
            for split, rows in self.splits.items()})


def fixture_file_name(dataset_path: str) -> str:
    """File name of ``dataset_path``'s fixture (``cais/mmlu`` -> ``cais__mmlu.json``)."""
    return dataset_path.replace("/", "__") + ".json"


def read_fixture_file(path: Path) -> list[DatasetFixture]:
    """The fixtures of one file, one per config; errors name the file and the bad field."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    missing = {"path", "features", "configs"} - set(doc)
    if missing:
        raise ValueError(f"{path}: fixture file lacks {', '.join(sorted(missing))}; it needs "
                         f"'path', 'features' and 'configs'")
    out = []
    for config in doc["configs"]:
        if not config.get("splits"):
            raise ValueError(f"{path}: config {config.get('name')!r} has no splits")
        out.append(DatasetFixture(doc["path"], config.get("name"), doc["features"],
                                  config["splits"]))
    return out


def load_fixtures(root: Path = DATA_DIR) -> dict[FixtureKey, DatasetFixture]:
    """Every fixture under ``root``, keyed by (dataset path, config name)."""
    files = sorted(Path(root).glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no fixture files (*.json) in {root}")
    fixtures: dict[FixtureKey, DatasetFixture] = {}
    for f in files:
        for fx in read_fixture_file(f):
            if fixture_file_name(fx.path) != f.name:
                raise ValueError(f"{f}: holds dataset {fx.path!r}, whose fixture file must be "
                                 f"named {fixture_file_name(fx.path)}")
            fixtures[(fx.path, fx.name)] = fx
    return fixtures


class FixtureLoader:
    """A stand-in for ``datasets.load_dataset`` that answers from fixture rows.

    ``requests`` records every (path, name) asked for, so callers can tell which
    datasets a run actually read.
    """

    def __init__(self, fixtures: dict[FixtureKey, DatasetFixture]) -> None:
        self.fixtures = fixtures
        self.requests: list[FixtureKey] = []

    def __call__(self, path: str, name: str | None = None, **kwargs: Any) -> Any:
        key = (path, name)
        self.requests.append(key)
        fixture = self.fixtures.get(key)
        if fixture is None:
            names = sorted(str(n) for p, n in self.fixtures if p == path)
            have = (f"fixtures of {path}: {', '.join(names)}" if names
                    else f"no fixture file {fixture_file_name(path)}")
            raise FixtureMissing(f"no fixture rows for dataset {path!r} config {name!r} "
                                 f"({have}); add them under {DATA_DIR.name}/")
        if kwargs:  # download_mode, cache_dir...: meaningless for in-memory rows
            LOG.debug("fixture %s/%s: ignoring load_dataset arguments %s", path, name,
                      sorted(kwargs))
        return fixture.to_dataset_dict()


def _datasets_shim(real: types.ModuleType, loader: FixtureLoader) -> types.ModuleType:
    """A module that is ``real`` except for ``load_dataset``."""
    shim = types.ModuleType(real.__name__, real.__doc__)
    shim.__getattr__ = lambda attr: getattr(real, attr)  # type: ignore[attr-defined]
    shim.load_dataset = loader  # type: ignore[attr-defined]
    return shim


@contextlib.contextmanager
def serve_fixtures(root: Path = DATA_DIR) -> Iterator[FixtureLoader]:
    """Within the block, lm-eval tasks read their datasets from the fixtures under ``root``.

    Only the ``datasets`` name inside ``lm_eval.api.task`` is replaced (and restored on
    exit), so other code's ``datasets.load_dataset`` (the tiny twins' JSON files, for one)
    is untouched. A dataset without fixture rows raises :class:`FixtureMissing`.
    """
    import lm_eval.api.task as task_module

    loader = FixtureLoader(load_fixtures(root))
    real = task_module.datasets
    task_module.datasets = _datasets_shim(real, loader)
    try:
        yield loader
    finally:
        task_module.datasets = real


__all__ = ["DATA_DIR", "DatasetFixture", "FixtureLoader", "FixtureMissing",
           "fixture_file_name", "load_fixtures", "read_fixture_file", "serve_fixtures"]
