"""The fixture mechanism that serves lm-eval's real tasks their datasets offline.

The end-to-end run of all 13 real tasks is tests/suite/test_real_tasks.py; these tests
check the files and the patch itself, without a model.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from glu_prune.catalog.benchmarks import REAL_BENCHMARKS
from glu_prune.evaluation import EvalSettings
from glu_prune.task_fixtures import (
    DATA_DIR,
    FixtureLoader,
    FixtureMissing,
    fixture_file_name,
    load_fixtures,
    read_fixture_file,
    serve_fixtures,
)
from glu_prune.tools.rehearse import (IFEVAL_MAX_GEN_TOKS, real_benchmarks, select_benchmarks,
                                      settings_for)


@pytest.fixture(scope="module")
def fixtures():
    return load_fixtures()


def _rows(fixtures, path, name, split):
    return fixtures[(path, name)].splits[split]


def test_every_fixture_builds_a_typed_dataset(fixtures):
    for (path, name), fx in fixtures.items():
        dd = fx.to_dataset_dict()
        for split, ds in dd.items():
            assert len(ds) == len(fx.splits[split]) > 0, f"{path}/{name}/{split}"


def test_mmlu_fixture_has_every_subject_lm_eval_defines(fixtures):
    import lm_eval

    yamls = (Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default").glob("mmlu_*.yaml")
    subjects = {json.loads(line.split(":", 1)[1]) for f in yamls
                for line in f.read_text().splitlines() if line.startswith('"dataset_name"')}
    assert len(subjects) == 57
    have = {name for path, name in fixtures if path == "cais/mmlu"}
    assert have == subjects
    for s in subjects:  # lm-eval evaluates test and takes the first 5 of dev as shots
        assert len(_rows(fixtures, "cais/mmlu", s, "test")) == 2
        assert len(_rows(fixtures, "cais/mmlu", s, "dev")) == 5


def test_label_encodings_are_the_ones_lm_eval_utils_expect(fixtures):
    mmlu = fixtures[("cais/mmlu", "anatomy")].to_dataset_dict()["test"].features
    assert mmlu["answer"].names == ["A", "B", "C", "D"]
    boolq = fixtures[("aps/super_glue", "boolq")].to_dataset_dict()["validation"].features
    assert boolq["label"].names == ["False", "True"]
    for row in _rows(fixtures, "Rowan/hellaswag", None, "validation"):
        assert row["label"] in {"0", "1", "2", "3"}  # a string: utils.process_docs int()s it
    for row in _rows(fixtures, "allenai/winogrande", "winogrande_xl", "validation"):
        assert row["answer"] in {"1", "2"} and row["sentence"].count("_") == 1
    for row in _rows(fixtures, "openai/gsm8k", "main", "test"):
        assert "\n#### " in row["answer"]  # the strict-match filter's anchor
    for split in ("murder_mysteries", "object_placements", "team_allocation"):
        for row in _rows(fixtures, "TAUR-Lab/MuSR", None, split):
            choices = ast.literal_eval(row["choices"])  # musr utils literal_eval it
            assert choices[row["answer_index"]] == row["answer_choice"]
    for row in _rows(fixtures, "truthfulqa/truthful_qa", "multiple_choice", "validation"):
        assert row["mc1_targets"]["labels"][0] == 1 and sum(row["mc1_targets"]["labels"]) == 1


def test_ifeval_kwargs_carry_every_field_like_the_dataset(fixtures, monkeypatch):
    """IFEval stores one struct per instruction with all fields, unused ones null;
    lm-eval's utils drop the nulls before building each instruction."""
    import nltk

    monkeypatch.setattr(nltk, "download", lambda *a, **k: False)  # lm-eval's import-time try
    from lm_eval.tasks.ifeval import instructions_registry

    rows = _rows(fixtures, "google/IFEval", None, "train")
    fields = set(fixtures[("google/IFEval", None)].features["kwargs"]["feature"])
    for row in rows:
        assert len(row["kwargs"]) == len(row["instruction_id_list"])
        assert all(set(kw) == fields for kw in row["kwargs"])
        assert all(i in instructions_registry.INSTRUCTION_DICT
                   for i in row["instruction_id_list"])


def test_missing_fixture_names_the_dataset_config_and_what_exists(fixtures):
    loader = FixtureLoader(fixtures)
    with pytest.raises(FixtureMissing) as info:
        loader("cais/mmlu", "astrology")
    message = str(info.value)
    assert "'cais/mmlu'" in message and "'astrology'" in message and "anatomy" in message
    with pytest.raises(FixtureMissing, match="no fixture file nobody__nothing.json"):
        loader("nobody/nothing")
    assert loader.requests == [("cais/mmlu", "astrology"), ("nobody/nothing", None)]


def test_serve_fixtures_replaces_only_lm_eval_tasks_load_dataset():
    import datasets
    import lm_eval.api.task as task_module

    real_load = datasets.load_dataset
    with serve_fixtures() as loader:
        shim = task_module.datasets
        assert shim.load_dataset is loader
        assert shim.Dataset is datasets.Dataset  # everything else passes through
        assert datasets.load_dataset is real_load  # other code is untouched
        dd = shim.load_dataset(path="EleutherAI/lambada_openai", name="default")
        assert list(dd) == ["test"] and len(dd["test"]) == 6
    assert task_module.datasets is datasets


def test_serve_fixtures_restores_after_an_error():
    import datasets
    import lm_eval.api.task as task_module

    with pytest.raises(FixtureMissing), serve_fixtures():
        task_module.datasets.load_dataset(path="nobody/nothing")
    assert task_module.datasets is datasets


def test_a_fixture_file_must_be_named_for_its_dataset(tmp_path):
    bad = tmp_path / "wrong.json"
    bad.write_text(json.dumps({"path": "a/b", "features": {}, "configs": [
        {"name": None, "splits": {"test": [{}]}}]}))
    with pytest.raises(ValueError, match="must be named a__b.json"):
        load_fixtures(tmp_path)
    assert fixture_file_name("a/b") == "a__b.json"


def test_a_fixture_file_without_features_is_refused(tmp_path):
    bad = tmp_path / "a__b.json"
    bad.write_text(json.dumps({"path": "a/b", "configs": []}))
    with pytest.raises(ValueError, match="lacks features"):
        read_fixture_file(bad)


def test_fixture_files_ship_in_the_package():
    assert DATA_DIR.is_dir() and len(list(DATA_DIR.glob("*.json"))) == 12


def test_rehearsal_runs_the_real_tasks_of_the_tiny_models():
    assert real_benchmarks("tiny-llama") == list(REAL_BENCHMARKS.values())
    assert {b.name for b in real_benchmarks("tiny-llama-instruct")} == {
        b.name for b in real_benchmarks("llama-3.2-1b-instruct")}


def test_ifeval_gets_room_to_generate_only_where_the_context_is_short():
    ifeval, mmlu = REAL_BENCHMARKS["ifeval"], REAL_BENCHMARKS["mmlu"]
    tiny = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=1024))
    llama = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=131072))
    base = EvalSettings()
    assert settings_for(ifeval, tiny, base).max_length == IFEVAL_MAX_GEN_TOKS + 1024
    assert settings_for(mmlu, tiny, base) == base
    assert settings_for(ifeval, llama, base) == base
    fixed = EvalSettings(max_length=4096)
    assert settings_for(ifeval, tiny, fixed) == fixed


def test_rehearsal_refuses_an_unknown_benchmark_naming_the_known():
    with pytest.raises(ValueError, match="unknown benchmark.*nope.*known: wikitext"):
        select_benchmarks("tiny-llama", "mmlu,nope")
    chosen = select_benchmarks("tiny-llama", "gsm8k, mmlu")
    assert [b.name for b in chosen] == ["mmlu", "gsm8k"]  # registry order
    assert select_benchmarks("tiny-llama", None) == real_benchmarks("tiny-llama")
