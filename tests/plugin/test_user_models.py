"""A model the user brings (``--glu-model``, the models file): registered beside the presets,
run end to end by the suite, and refused with one line (exit 4) when it cannot be used.

Each run is a subprocess of the real suite in this checkout (its test files, its plugin),
on random-weight folders in the tiny model's shape, saved with ``save_pretrained``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from glu_prune import tiny
from glu_prune.catalog.models import MODELS
from glu_prune.catalog.sources import BadSource, register, source_name, spec_from_source
from glu_prune.catalog.tasks import benchmark_from_task
from glu_prune.performance.timing import mlp_block

ROOT = Path(__file__).resolve().parents[2]
SHAPE = {k: tiny.TINY_CONFIG[k] for k in (
    "vocab_size", "hidden_size", "intermediate_size", "num_attention_heads",
    "num_key_value_heads", "max_position_embeddings")}
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _folder(path: Path, model_type: str, *, weights: bool = True, **extra) -> Path:
    """A 2-layer random-weight ``model_type`` model in the tiny shape, with the tiny
    tokenizer (so perplexity can run offline)."""
    # pad id 0: some families' defaults (Phi-3: 32000) lie outside the tiny vocabulary
    config = AutoConfig.for_model(model_type, **{**SHAPE, "pad_token_id": 0, **extra},
                                  num_hidden_layers=2)
    if weights:
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(path)
        AutoTokenizer.from_pretrained(tiny.MODEL_DIRS["tiny-llama"]).save_pretrained(path)
    else:
        config.save_pretrained(path)
    return path


def _suite(tmp_path: Path, *args: str, files=("test_invariants.py",)) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "no:randomly",
           *(str(ROOT / "tests" / "suite" / f) for f in files),
           f"--glu-report={tmp_path / 'report'}", f"--glu-cache-dir={tmp_path / 'cache'}",
           f"--glu-baselines-dir={tmp_path / 'baselines'}", *args]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **OFFLINE})


def _usage_error(run: subprocess.CompletedProcess) -> str:
    """The one error line of an exit-4 run."""
    assert run.returncode == 4, run.stdout[-2000:] + run.stderr[-2000:]
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, run.stderr
    return lines[0]


# ---------------------------------------------------------------- the registry, in-process


def test_names_come_from_folder_or_hub_id():
    assert source_name("./models/My-Qwen/") == "my-qwen"
    assert source_name("Qwen/Qwen2.5-0.5B") == "qwen2.5-0.5b"


def test_folder_becomes_a_spec_with_its_architecture(tmp_path):
    folder = _folder(tmp_path / "My-Qwen", "qwen2")
    spec = spec_from_source(str(folder))
    assert (spec.name, spec.hf_id, spec.local_dir, spec.shape_only) == (
        "my-qwen", None, folder.resolve(), False)
    assert spec.architecture["model_type"] == "qwen2"
    assert spec.intermediate_size == SHAPE["intermediate_size"]


def test_a_preset_is_a_source_too():
    """The presets are the same kind of entry: named by hub id they need no hub."""
    assert spec_from_source("meta-llama/Llama-3.2-1B") is MODELS["llama-3.2-1b"]
    assert spec_from_source("tiny-llama") is MODELS["tiny-llama"]


@pytest.mark.parametrize("case,message", [
    ("missing", r"does not exist; valid: a model folder or a hub id"),
    ("no-config", r"no config.json in this folder"),
    ("gpt2", r"model_type 'gpt2'.*not gated"),
    ("corrupt", r"corrupt weights in model.safetensors"),
])
def test_bad_sources_name_the_problem(tmp_path, case, message):
    folder = tmp_path / case
    if case == "no-config":
        folder.mkdir()
    elif case == "gpt2":
        AutoConfig.for_model("gpt2", n_layer=1, n_embd=32, n_head=2).save_pretrained(folder)
    elif case == "corrupt":
        _folder(folder, "qwen2", weights=False)
        (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00not a header")
    with pytest.raises(BadSource, match=message):
        spec_from_source(str(folder))


# ---------------------------------------------------------------- the suite, end to end


# one of each layout: split (Mistral), split with attention biases (Qwen2), GeGLU with
# per-layer sliding windows (Gemma 2), fused gate_up_proj (Phi-3)
FAMILIES = ["mistral", "qwen2", "gemma2", "phi3"]


@pytest.mark.slow
@pytest.mark.parametrize("model_type", FAMILIES)
def test_user_folder_runs_end_to_end(tmp_path, model_type):
    """Invariants and perplexity of a user folder: no baseline (skips), pinned with the update
    flag (fails on purpose), then judged (passes) and in results.md; a different model under
    the same name then fails on the pinned architecture."""
    _folder(tmp_path / "my-qwen", model_type)
    (tmp_path / "models.toml").write_text(
        '[models.my-qwen]\nsource = "my-qwen"\nlevels = [0, 40]\nbenchmarks = "tiny"\n')
    args = ("--glu-models-file", "models.toml", "-k", "my-qwen and wikitext or my-qwen and "
            "shapes", "-m", "invariants or perplexity", "--glu-limit", "4", "-rs")
    files = ("test_invariants.py", "test_perplexity.py")
    first = _suite(tmp_path, *args, files=files)
    assert first.returncode == 0 and "2 passed, 2 skipped" in first.stdout, first.stdout[-3000:]
    assert "no baseline" in first.stdout
    pin = _suite(tmp_path, *args, "--glu-update-baselines", files=files)
    assert pin.returncode == 1 and "2 failed, 2 passed" in pin.stdout, pin.stdout[-3000:]
    pinned = json.loads((tmp_path / "baselines" / "my-qwen.json").read_text())
    assert pinned["settings"]["architecture"]["model_type"] == model_type
    judged = _suite(tmp_path, *args, files=files)
    assert judged.returncode == 0 and "4 passed" in judged.stdout, judged.stdout[-3000:]
    md = (tmp_path / "report" / "results.md").read_text()
    assert "my-qwen" in md and "wikitext" in md
    _folder(tmp_path / "my-qwen", model_type, weights=True, intermediate_size=256)
    other = _suite(tmp_path, *args, files=files)
    assert other.returncode == 1, other.stdout[-3000:]
    assert "was pinned for another model under this name: intermediate_size pinned 512 " \
           "vs 256" in other.stdout, other.stdout[-3000:]


def test_shape_only_folder_builds_random_weights_and_skips_quality(tmp_path):
    _folder(tmp_path / "shape-mistral", "mistral", weights=False)
    run = _suite(tmp_path, "--glu-model", "shape-mistral", "-k", "shape-mistral", "--glu-levels",
                 "0,40", "-m", "invariants or perplexity", "-rs",
                 files=("test_invariants.py", "test_perplexity.py"))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout and "skipped" in run.stdout, run.stdout[-2000:]
    assert "holds config.json only (shape-only)" in run.stdout, run.stdout[-2000:]


def test_gpt2_folder_exits_4_with_one_line(tmp_path):
    AutoConfig.for_model("gpt2", n_layer=1, n_embd=32, n_head=2).save_pretrained(
        tmp_path / "gpt2-folder")
    line = _usage_error(_suite(tmp_path, "--glu-model", "gpt2-folder"))
    assert "gpt2-folder" in line and "model_type 'gpt2'" in line


def test_hub_id_offline_exits_4_with_one_line(tmp_path):
    line = _usage_error(_suite(tmp_path, "--glu-model", "nobody-here/not-cached-0"))
    assert "nobody-here/not-cached-0: hub id while offline" in line


def test_models_file_from_ini_sets_levels_and_tasks(tmp_path):
    _folder(tmp_path / "kept", "qwen2")
    (tmp_path / "glu-models.toml").write_text(
        '[models.kept-qwen]\nsource = "kept"\nlevels = [0, 30]\ninstruct = false\n'
        'benchmarks = ["arc_easy", "wikitext:word_perplexity"]\n')
    # -o sets the ini key as a line in pytest.ini would (the checkout's pytest.ini is in use)
    run = _suite(tmp_path, "-o", f"glu_models_file={tmp_path / 'glu-models.toml'}",
                 "-k", "kept-qwen", "--collect-only",
                 files=("test_invariants.py", "test_accuracy.py", "test_perplexity.py"))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    ids = sorted(ln.split("::")[1] for ln in run.stdout.splitlines() if "kept-qwen" in ln)
    assert ids == sorted([
        "test_variant_shapes_and_counts[kept-qwen-maw-p0]",
        "test_variant_shapes_and_counts[kept-qwen-maw-p30]",
        "test_accuracy[kept-qwen-maw-p0-arc_easy]", "test_accuracy[kept-qwen-maw-p30-arc_easy]",
        "test_perplexity[kept-qwen-maw-p0-wikitext]",
        "test_perplexity[kept-qwen-maw-p30-wikitext]"]), run.stdout[-3000:]


def test_models_file_gives_a_model_its_own_methods(tmp_path):
    """``methods`` in a model's table: its variants use those; other models keep
    --glu-methods (maw by default); an unknown method exits 4 naming the valid ones."""
    _folder(tmp_path / "kept", "qwen2")
    toml = tmp_path / "glu-models.toml"
    toml.write_text('[models.kept-qwen]\nsource = "kept"\nlevels = [0, 30]\n'
                    'methods = ["wanda_sp", "l2"]\nbenchmarks = "tiny"\n')
    run = _suite(tmp_path, "--glu-models-file", str(toml), "-k", "kept-qwen or tiny-llama-",
                 "--glu-models", "tiny-llama", "--glu-levels", "0,30", "--collect-only",
                 files=("test_invariants.py",))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    ids = {ln.split("::")[1] for ln in run.stdout.splitlines()
           if "test_variant_shapes_and_counts[" in ln}
    assert ids == {
        "test_variant_shapes_and_counts[kept-qwen-wanda_sp-p0]",
        "test_variant_shapes_and_counts[kept-qwen-wanda_sp-p30-c-tinycorpus-n128-l256-b8-s0]",
        "test_variant_shapes_and_counts[kept-qwen-l2-p30]",
        "test_variant_shapes_and_counts[tiny-llama-maw-p0]",
        "test_variant_shapes_and_counts[tiny-llama-maw-p30]"}, run.stdout[-3000:]
    toml.write_text('[models.kept-qwen]\nsource = "kept"\nmethods = ["mawx"]\n')
    bad = _suite(tmp_path, "--glu-models-file", str(toml), "--collect-only",
                 files=("test_invariants.py",))
    assert bad.returncode == 4 and "[models.kept-qwen] methods ['mawx']; valid: a list of" \
        in bad.stdout + bad.stderr, bad.stdout[-2000:] + bad.stderr[-2000:]


# ---------------------------------------------------------------- any lm-eval task


def test_any_lm_eval_task_takes_metrics_and_direction_from_its_config():
    arc = benchmark_from_task("arc_easy")
    assert [(m.key, m.direction, m.kind) for m in arc.metrics] == [
        ("acc,none", "higher", "accuracy"), ("acc_norm,none", "higher", "accuracy")]
    # wikitext's YAML names no direction: lm-eval's registered default (lower) is used
    wiki = benchmark_from_task("wikitext:word_perplexity")
    assert [(m.key, m.direction, m.kind) for m in wiki.metrics] == [
        ("word_perplexity,none", "lower", "perplexity")]
    gsm = benchmark_from_task("gsm8k:exact_match,strict-match")
    assert [m.key for m in gsm.metrics] == ["exact_match,strict-match"]
    assert gsm.num_fewshot == 5
    with pytest.raises(ValueError, match="unknown lm-eval task or group 'arc_eesy'"):
        benchmark_from_task("arc_eesy")
    with pytest.raises(ValueError, match="has no metric 'f1'; known: acc,none, acc_norm,none"):
        benchmark_from_task("arc_easy:f1")


# ---------------------------------------------------------------- latency on any model


def test_lone_mlp_block_is_the_models_own(tmp_path):
    """The lone-block benchmark times the model's own MLP: Phi-3's fused gate_up_proj."""
    spec = register(spec_from_source(str(_folder(tmp_path / "block-phi3", "phi3",
                                                 weights=False))))
    block = mlp_block(spec.name, 100, torch.float32, "cpu")
    assert type(block).__name__ == "Phi3MLP"
    assert block.gate_up_proj.weight.shape == (200, SHAPE["hidden_size"])
    assert block(torch.randn(1, 3, SHAPE["hidden_size"])).shape == (1, 3, SHAPE["hidden_size"])
