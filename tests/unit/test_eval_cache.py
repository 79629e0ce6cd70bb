"""The result cache's keys are content identities: a hit means the same model (every
weight byte, config, tokenizer) on the same task data; unreadable entries are recomputed.

Fail on the old code (per-tensor L1/L2 norms and the task name as key; a cache reader
that trusted the entry's layout): the sign, row-swap and negation cases, the tokenizer
normalizer, the changed data set (it served n = 8), and the null, list, missing-metric,
string-value, n-zero and other-benchmark entries (a crash, or a result served).
"""

import copy
import json
import shutil
from types import SimpleNamespace

import pytest
import torch

import glu_prune.evaluation.runner as runner_mod
from glu_prune import tiny
from glu_prune.catalog.benchmarks import get_benchmark
from glu_prune.evaluation import (EvalSettings, ResultCache, TaskSource, evaluate_variant,
                                  model_identity, task_fingerprint)
from glu_prune.evaluation import settings as settings_mod
from glu_prune.evaluation.cache import CacheEntryWarning
from glu_prune.evaluation.harness import load_tasks, make_lm, task_manager_for
from glu_prune.judging import Tolerance

WIKI = get_benchmark("tiny-llama", "wikitext")
MMLU = get_benchmark("tiny-llama", "mmlu")
PIQA = get_benchmark("tiny-llama", "piqa")


@pytest.fixture(scope="module")
def tiny_model():
    from glu_prune.core.loading import load_model

    return load_model("tiny-llama", device="cpu")


def _mlp(model, layer=0):
    return model.model.layers[layer].mlp


def _one_element(m):
    _mlp(m).down_proj.weight[0, 0] += 1.0


def _sign_of_one_element(m):
    _mlp(m).up_proj.weight[3, 5] *= -1.0


def _two_rows_swapped(m):
    w = _mlp(m).gate_proj.weight
    w[[0, 1]] = w[[1, 0]]


def _negated_tensor(m):
    _mlp(m, 1).down_proj.weight.neg_()


def _config(m):
    m.config.rms_norm_eps = m.config.rms_norm_eps * 10


@pytest.mark.parametrize("change", [_sign_of_one_element, _two_rows_swapped, _negated_tensor,
                                    _one_element, _config])
def test_model_identity_changes_with_any_weight_value_or_the_config(tiny_model, change):
    model, tok = tiny_model
    twin = copy.deepcopy(model)
    assert model_identity(twin, tok) == model_identity(model, tok)
    with torch.no_grad():
        change(twin)
    assert model_identity(twin, tok) != model_identity(model, tok)


def test_model_identity_follows_the_tokenizer_and_survives_lm_eval(tiny_model):
    from tokenizers import normalizers

    model, tok = tiny_model
    base = model_identity(model, tok)
    lowercase = copy.deepcopy(tok)  # same vocabulary, other token ids for the same text
    lowercase.backend_tokenizer.normalizer = normalizers.Lowercase()
    assert model_identity(model, lowercase) != base
    template = copy.deepcopy(tok)
    template.chat_template = "{{ messages[0]['content'] }}"
    assert model_identity(model, template) != base
    no_pad = copy.deepcopy(tok)
    no_pad.pad_token = None
    before = model_identity(model, no_pad)
    make_lm(model, no_pad, EvalSettings())  # HFLM sets a pad token on its own copy only
    assert no_pad.pad_token is None and model_identity(model, no_pad) == before


def test_tensor_digest_reads_values_in_logical_order_with_the_shape():
    from glu_prune.evaluation.identity import tensor_digest

    t = torch.arange(12, dtype=torch.bfloat16).reshape(3, 4)
    assert tensor_digest(t.t()) == tensor_digest(t.t().contiguous()) != tensor_digest(t)
    assert tensor_digest(t.reshape(4, 3)) != tensor_digest(t)
    assert tensor_digest(t.float()) != tensor_digest(t)  # same values, other dtype


def test_tied_weights_are_hashed_once(tiny_model, monkeypatch):
    from glu_prune.evaluation import identity

    tied = copy.deepcopy(tiny_model[0])
    tied.lm_head.weight = tied.model.embed_tokens.weight
    hashed, real = [], identity.tensor_digest
    monkeypatch.setattr(identity, "tensor_digest", lambda t: hashed.append(t) or real(t))
    identity.weights_digest(tied)
    assert len(hashed) == len(tied.state_dict()) - 1


# ---------------------------------------------------------------- task data


@pytest.fixture
def tasks_copy(tmp_path, monkeypatch):
    """A private copy of the twin tasks, used wherever the suite finds twin tasks."""
    folder = tmp_path / "tasks"
    shutil.copytree(tiny.TASKS_DIR, folder)
    monkeypatch.setattr(tiny, "TASKS_DIR", folder)
    return folder


def _rewrite_lines(path, edit):
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def _fingerprint(benchmark, limit=None):
    return task_fingerprint(load_tasks(task_manager_for([benchmark]), [benchmark]), limit)


def test_task_fingerprint_follows_the_evaluated_documents_only(tasks_copy):
    data = tasks_copy / "data" / "piqa.validation.jsonl"
    full, first4 = _fingerprint(PIQA), _fingerprint(PIQA, 4)
    assert _fingerprint(PIQA) == full and full != first4  # deterministic; limit selects docs

    def edit(i):
        def change(lines):
            doc = json.loads(lines[i])
            doc["goal"] += " (edited)"
            return lines[:i] + [json.dumps(doc)] + lines[i + 1:]
        return change
    _rewrite_lines(data, edit(6))  # beyond the limit: the first 4 documents are unchanged
    assert _fingerprint(PIQA, 4) == first4 and _fingerprint(PIQA) != full
    _rewrite_lines(data, edit(2))
    assert _fingerprint(PIQA, 4) != first4


def test_task_fingerprint_follows_the_few_shot_documents_and_the_task_config(tasks_copy):
    before = _fingerprint(MMLU, 3)
    _rewrite_lines(tasks_copy / "data" / "mmlu.dev.jsonl", lambda lines: lines[::-1])
    after_shots = _fingerprint(MMLU, 3)
    assert after_shots != before
    yaml = tasks_copy / "mmlu.yaml"
    yaml.write_text(yaml.read_text().replace("about the tiny world", "about a tiny world"))
    assert _fingerprint(MMLU, 3) != after_shots


def test_task_fingerprint_follows_helpers_the_task_functions_call(tasks_copy):
    """lm-eval records ifeval_process_results' own text; _words, which it calls through
    _check, changes the scores just as much."""
    ifeval = get_benchmark("tiny-llama", "ifeval")
    before = _fingerprint(ifeval)
    utils = tasks_copy / "utils.py"
    old = 'return len(re.findall(r"\\w+", text))'
    assert old in utils.read_text()
    utils.write_text(utils.read_text().replace(old, 'return len(text.split())'))
    assert _fingerprint(ifeval) != before


def test_a_changed_data_set_is_never_served_from_the_cache(tiny_model, tasks_copy, tmp_path):
    """4 of the 8 wikitext twin documents removed: the old key served the n = 8 value."""
    model, tok = tiny_model
    cache, slug = ResultCache(tmp_path / "cache"), "tiny-llama-maw-p0"
    first = evaluate_variant(model, tok, slug, [WIKI], EvalSettings(), cache)
    assert first.results["wikitext"].metrics["word_perplexity,none"].n == 8
    _rewrite_lines(tasks_copy / "data" / "wikitext.test.jsonl", lambda lines: lines[:4])
    again = evaluate_variant(model, tok, slug, [WIKI], EvalSettings(), cache)
    result = again.results["wikitext"]
    assert not result.cached and result.metrics["word_perplexity,none"].n == 4
    assert len(list((tmp_path / "cache" / slug).iterdir())) == 2  # both kept, keyed apart


# ---------------------------------------------------------------- once per variant


def _fake_seams(monkeypatch, counts):
    def identity(model, tok):
        counts["identity"] += 1
        return f"id-{id(model)}"

    def run(lm, tm, objects, settings):
        counts["run"] += 1
        (task,) = [o.task_name for o in objects]
        b = next(b for b in (WIKI, MMLU, PIQA) if b.task == task)
        return {"results": {task: {m.key: 0.5 for m in b.metrics}},
                "n-samples": {task: {"effective": 7}}, "n-shot": {task: b.num_fewshot}}

    def make_lm(model, tok, settings):
        counts["lm"] += 1
        return "lm"
    monkeypatch.setattr(runner_mod, "model_identity", identity)
    monkeypatch.setattr(runner_mod, "run_tasks", run)
    monkeypatch.setattr(runner_mod, "make_lm", make_lm)


def test_identity_and_lm_wrapper_are_made_once_per_variant(monkeypatch, tmp_path):
    from glu_prune.plugin.quality import EvalSession

    counts = {"identity": 0, "run": 0, "lm": 0}
    _fake_seams(monkeypatch, counts)
    session = EvalSession(EvalSettings(), Tolerance(), ResultCache(tmp_path), tmp_path, False)
    first = SimpleNamespace(model=object(), tokenizer=None, slug="v-p0")
    for b in (WIKI, MMLU, PIQA, WIKI):
        session.result(first, b)
    assert counts == {"identity": 1, "run": 3, "lm": 1}
    second = SimpleNamespace(model=object(), tokenizer=None, slug="v-p10")
    session.result(second, MMLU)
    assert counts == {"identity": 2, "run": 4, "lm": 2}
    assert session.tasks.manager(WIKI) is session.tasks.manager(PIQA)  # one for the run


# ---------------------------------------------------------------- unreadable entries


def _with(good, **changes):
    return json.dumps({**good, **changes}).encode()


@pytest.mark.parametrize("spoil", [
    lambda good: json.dumps(good).encode()[:40],  # truncated
    lambda good: b"\x00\xff garbage",
    lambda good: b"null",
    lambda good: b"[]",
    lambda good: _with(good, format=1),  # an older layout
    lambda good: _with(good, metrics={}),  # the judged metric missing
    lambda good: _with(good, metrics={"acc,none": {"value": "0.5", "stderr": None, "n": 7}}),
    lambda good: _with(good, metrics={"acc,none": {"value": 0.5, "stderr": None, "n": 0}}),
    lambda good: _with(good, benchmark="boolq"),  # another benchmark's result
    # issue 19, point 7: the runner never writes non-finite values, so one is corruption;
    # a NaN was served from the cache and failed every rerun
    lambda good: _with(good, metrics={"acc,none": {"value": float("nan"), "stderr": None,
                                                   "n": 7}}),
    lambda good: _with(good, metrics={"acc,none": {"value": 0.5, "stderr": float("inf"),
                                                   "n": 7}}),
], ids=["truncated", "garbage", "null", "list", "old-format", "missing-metric",
        "value-a-string", "n-zero", "other-benchmark", "nan-value", "inf-stderr"])
def test_an_unreadable_cache_entry_is_warned_once_and_recomputed(monkeypatch, tmp_path,
                                                                  spoil):
    """One warning (pytest shows warnings in its summary; a log line stayed captured)."""
    counts = {"identity": 0, "run": 0, "lm": 0}
    _fake_seams(monkeypatch, counts)
    cache, tasks, model = ResultCache(tmp_path), TaskSource(), object()
    evaluate_variant(model, None, "v", [PIQA], EvalSettings(), cache, tasks=tasks)
    (path,) = (tmp_path / "v").iterdir()
    good = json.loads(path.read_text())
    path.write_bytes(spoil(good))
    key16 = path.name.split(".")[1]  # the file is named by the key's first 16 characters
    with pytest.warns(CacheEntryWarning) as warned:
        assert cache.get("v", "piqa", key16, ["acc,none"]) is None
        assert cache.get("v", "piqa", key16, ["acc,none"]) is None
    messages = [str(w.message) for w in warned if "unreadable cache entry" in str(w.message)]
    assert len(messages) == 1 and str(path) in messages[0]
    out = evaluate_variant(model, None, "v", [PIQA], EvalSettings(), cache, tasks=tasks)
    assert out.evaluated == ["piqa"] and counts["run"] == 2  # recomputed, not a crash
    assert json.loads(path.read_text()) == good  # and the entry is whole again


@pytest.mark.parametrize("library", ["torch", "transformers", "lm_eval"])
def test_the_cache_key_follows_the_library_versions(monkeypatch, library):
    """Issue 19, point 7: another torch or transformers can change a score, so it is a new
    cache entry (before, torch's version was not in the key; transformers' only through
    the config's JSON)."""
    settings_mod.library_versions.cache_clear()
    before = settings_mod.cache_key("v", "piqa", {"task": "piqa"})
    real = settings_mod.version
    monkeypatch.setattr(settings_mod, "version",
                        lambda name: "0.0.other" if name == library else real(name))
    settings_mod.library_versions.cache_clear()
    try:
        assert settings_mod.cache_key("v", "piqa", {"task": "piqa"}) != before
    finally:
        settings_mod.library_versions.cache_clear()
