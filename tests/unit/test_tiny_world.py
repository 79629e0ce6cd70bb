"""The embedded tiny world: deterministic corpus, no eval leakage, offline twin tasks, shipped files."""

from __future__ import annotations

import json

import pytest

from glu_prune import tiny
from glu_prune.tiny import corpus, twins, world

# What the real lm-eval tasks produce (output type, few-shot, metric names, filter names).
REAL = {
    "wikitext": ("loglikelihood_rolling", 0,
                 {"word_perplexity", "byte_perplexity", "bits_per_byte"}, {"none"}),
    "mmlu": ("multiple_choice", 5, {"acc"}, {"none"}),
    "arc_challenge": ("multiple_choice", 0, {"acc", "acc_norm"}, {"none"}),
    "hellaswag": ("multiple_choice", 0, {"acc", "acc_norm"}, {"none"}),
    "winogrande": ("multiple_choice", 0, {"acc"}, {"none"}),
    "piqa": ("multiple_choice", 0, {"acc", "acc_norm"}, {"none"}),
    "boolq": ("multiple_choice", 0, {"acc"}, {"none"}),
    "lambada_openai": ("loglikelihood", 0, {"perplexity", "acc"}, {"none"}),
    "truthfulqa_mc1": ("multiple_choice", 0, {"acc"}, {"none"}),
    "truthfulqa_mc2": ("multiple_choice", 0, {"acc"}, {"none"}),
    "gsm8k": ("generate_until", 5, {"exact_match"}, {"strict-match", "flexible-extract"}),
    "ifeval": ("generate_until", 0, {"prompt_level_strict_acc", "inst_level_strict_acc",
                                     "prompt_level_loose_acc", "inst_level_loose_acc"}, {"none"}),
    "leaderboard_musr": ("multiple_choice", 0, {"acc_norm"}, {"none"}),
}


@pytest.fixture(scope="module")
def train_text() -> str:
    """A sizeable sample of the training corpus as one string."""
    return "\n\n".join(corpus.training_docs(30_000))


@pytest.fixture(scope="module")
def twin_data() -> dict:
    return twins.build_twins()


def test_corpus_is_deterministic_from_seed():
    a = list(corpus.training_docs(300))
    assert a == list(corpus.training_docs(300))
    assert a != list(corpus.training_docs(300, seed=world.SEED + 7))
    assert world.make_people() == world.make_people()
    assert list(corpus.chat_pairs(50)) == list(corpus.chat_pairs(50))


def test_twin_data_is_deterministic_and_matches_shipped_files(twin_data):
    assert twin_data == twins.build_twins()
    for name, splits in twin_data.items():
        for split, items in splits.items():
            path = twins.DATA_DIR / f"{name}.{split}.jsonl"
            shipped = [json.loads(x) for x in path.read_text().splitlines()]
            assert shipped == items, f"{path.name} is stale: run python -m glu_prune.tiny write-twins"


def test_eval_phrasings_are_held_out():
    for attr in world.ATTRS:
        assert not set(world.EVAL_QUESTIONS[attr]) & set(world.TRAIN_QUESTIONS[attr])
        assert not set(world.EVAL_QUESTIONS[attr]) & set(world.TRAIN_FACTS[attr])


def _eval_strings(twin_data: dict) -> dict[str, list[str]]:
    """Per twin, the item strings that must never occur in training text."""
    t = {k: v[next(iter(v))] for k, v in twin_data.items()}
    lines = [ln.strip() for d in t["wikitext"] for ln in d["page"].split("\n") if len(ln) > 80]
    from lm_eval.tasks.wikitext.preprocess_wikitext import wikitext_detokenizer

    return {
        "mmlu": [d["question"] for d in t["mmlu"]],
        "arc_challenge": [d["question"] for d in t["arc_challenge"]],
        "truthfulqa": [d["question"] for d in t["truthfulqa_mc1"]],
        "lambada": [d["text"].rsplit(" ", 1)[0] for d in t["lambada_openai"]],
        "gsm8k": [d["question"] for d in t["gsm8k"]],
        "ifeval": [d["prompt"] for d in t["ifeval"]],
        "boolq": [d["question"] for d in t["boolq"]],
        "piqa": [d["goal"] for d in t["piqa"]],
        "winogrande": [d["sentence"].replace("_", d[f"option{d['answer']}"])
                       for d in t["winogrande"]],
        "musr": [d["narrative"] for d in t["leaderboard_musr"]],
        "boolq passage": [d["passage"] for d in t["boolq"]],
        "hellaswag": [f"{d['ctx_a']} {d['ctx_b'].capitalize()} {d['endings'][int(d['label'])]}"
                      for d in t["hellaswag"]],
        "wikitext": [wikitext_detokenizer({"page": ln}).strip() for ln in lines],
    }


def test_no_eval_item_appears_in_training_text(train_text, twin_data):
    for twin, strings in _eval_strings(twin_data).items():
        assert strings, twin
        leaked = [s for s in strings if s in train_text]
        assert not leaked, f"{twin}: {len(leaked)} eval items occur in training text, e.g. {leaked[0]!r}"


def test_eval_key_split_is_about_one_in_eight():
    assert sum(world.is_eval_key(f"k{i}") for i in range(8000)) in range(800, 1200)


def test_twin_sizes_match_data(twin_data):
    for name, n in tiny.TWIN_SIZES.items():
        split = next(s for s in twin_data[name] if s not in ("dev", "train") or name == "ifeval")
        assert len(twin_data[name][split]) == n, name
    assert set(tiny.TWIN_TASKS) == set(REAL) == set(tiny.BASE_BENCHMARKS)
    assert set(tiny.INSTRUCT_BENCHMARKS) <= set(tiny.BASE_BENCHMARKS)
    assert len(tiny.INSTRUCT_BENCHMARKS) == 7


@pytest.fixture(scope="module")
def twin_tasks():
    """Every twin task, loaded through lm-eval's TaskManager with the hub marked offline."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("HF_DATASETS_OFFLINE", "1")
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(tiny.TASKS_DIR), include_defaults=False)
    tasks = tm.load(list(tiny.TWIN_TASKS.values()))["tasks"]
    mp.undo()
    return tasks


@pytest.mark.parametrize("bench", list(REAL))
def test_twin_task_matches_real_task(twin_tasks, bench):
    task = twin_tasks[tiny.TWIN_TASKS[bench]]
    output_type, shots, metrics, filters = REAL[bench]
    cfg = task.config
    assert cfg.output_type == output_type
    assert (cfg.num_fewshot or 0) == shots
    assert {m["metric"] for m in cfg.metric_list} == metrics
    got_filters = {f["name"] for f in cfg.filter_list} if cfg.filter_list else {"none"}
    assert got_filters == filters
    docs = list(task.eval_docs)
    assert len(docs) == tiny.TWIN_SIZES[bench]
    if output_type == "multiple_choice":
        doc = docs[0]
        assert task.doc_to_text(doc) is not None and len(task.doc_to_choice(doc)) >= 2


def test_twin_content_changes_bump_the_version(twin_tasks):
    """Baselines record each task's version (``task_version``) and a run under another
    version fails its settings check; that guard holds only if a twin's prompt or data
    never change under the same version. ``tasks/versions.json`` keeps the digest of every
    version shipped."""
    table = json.loads(twins.VERSIONS_FILE.read_text())
    assert set(table) == set(tiny.TWIN_TASKS.values())
    for bench, task_name in tiny.TWIN_TASKS.items():
        version, digest = str(twin_tasks[task_name].VERSION), twins.twin_digest(bench)
        known = table[task_name]
        assert known.get(version) == digest, (
            f"{task_name} {version}: its YAML or data changed (digest {digest}, shipped "
            f"{known.get(version)}): bump metadata.version in tasks/{bench}.yaml, record "
            f"the new version's digest in tasks/versions.json and re-pin the tiny baselines"
            if version in known else f"{task_name} {version}: add its digest {digest} to "
            f"tasks/versions.json")


def test_twin_digest_sees_prompt_and_data_not_comments():
    text = (tiny.TASKS_DIR / "boolq.yaml").read_text()
    base = twins.twin_digest("boolq")
    assert twins.twin_digest("boolq", "# a new comment\n" + text) == base
    assert twins.twin_digest("boolq", text.replace("Answer:", "A:")) != base
    assert twins.twin_digest("truthfulqa_mc2") != twins.twin_digest(
        "truthfulqa_mc2", (tiny.TASKS_DIR / "truthfulqa_mc2.yaml").read_text() + "x: 1\n")


def test_twins_match_benchmark_registry():
    from glu_prune.catalog.benchmarks import benchmark_set

    for b in benchmark_set("tiny"):
        assert b.task == tiny.TWIN_TASKS[b.name]
        for m in b.metrics:
            name, filt = m.key.split(",")
            assert name in REAL[b.name][2] and filt in REAL[b.name][3], m.key
        assert b.num_fewshot == REAL[b.name][1]


@pytest.mark.parametrize("name", list(tiny.MODEL_DIRS))
def test_shipped_model_files(name):
    from transformers import AutoConfig, AutoTokenizer

    d = tiny.MODEL_DIRS[name]
    weights = d / "model.safetensors"
    assert weights.is_file(), f"{weights} missing: run python -m glu_prune.tiny train"
    assert weights.stat().st_size <= 8 * 2**20
    cfg = AutoConfig.from_pretrained(d)
    for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_key_value_heads",
              "tie_word_embeddings"):
        assert getattr(cfg, k) == tiny.TINY_CONFIG[k], k
    assert cfg.intermediate_size / cfg.hidden_size == 4
    tok = AutoTokenizer.from_pretrained(d)
    assert tok.chat_template and tok.bos_token and tok.eos_token and tok.pad_token
    assert len(tok) <= cfg.vocab_size  # embedding rows past the BPE vocabulary are padding
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_ifeval_offline_checks_agree_with_lm_eval(twin_data, monkeypatch):
    """The twin's re-implemented IFEval checks give lm-eval's answers (when importable)."""
    monkeypatch.setenv("LOCAL_RANK", "1")  # lm-eval skips its nltk download off rank 0
    registry = pytest.importorskip("lm_eval.tasks.ifeval.instructions_registry")
    import importlib.util

    spec = importlib.util.spec_from_file_location("twin_utils", tiny.TASKS_DIR / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    responses = ["the cat sleeps on the warm bed in the house.", "THE DOG RUNS IN THE GREEN PARK.",
                 '"The baker lives in the city."', "no, That is all.",
                 "The farmer lives in Varo and likes red a lot more than blue", ""]
    for doc in twin_data["ifeval"]["train"][:20]:
        for r in responses:
            for inst_id, kw in zip(doc["instruction_id_list"], doc["kwargs"]):
                inst = registry.INSTRUCTION_DICT[inst_id](inst_id)
                inst.build_description(**{k: v for k, v in kw.items() if v})
                want = bool(r.strip()) and inst.check_following(r)
                got = utils._follows({"instruction_id_list": [inst_id], "kwargs": [kw]}, [r])[0]
                assert got == want, (inst_id, r)


def test_training_is_bit_for_bit_reproducible(tmp_path):
    """``python -m glu_prune.tiny train`` is seeded and deterministic: two short runs write
    byte-identical weights for both models (same torch, same CPU)."""
    pytest.importorskip("torch")
    from glu_prune.tools.tiny_train import train_all

    for run in ("a", "b"):
        train_all(tmp_path / run, steps=4, n_docs=3000, instruct_steps=2)
    for name in tiny.MODEL_DIRS:
        a = (tmp_path / "a" / name / "model.safetensors").read_bytes()
        b = (tmp_path / "b" / name / "model.safetensors").read_bytes()
        assert a == b, f"{name}: two seeded runs wrote different weights"
