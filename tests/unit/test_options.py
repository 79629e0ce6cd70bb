"""The options, parsed once: every --glu-* value is checked by its one parser, each error is
one line, and the rest of the plugin reads the resulting ``Options``."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

from glu_prune.judging import Tolerance
from glu_prune.plugin.options import BadOption, Options, parse_ppl_tol


def run_check(tmp_path: Path, **given) -> Options:
    """Options of ``given`` (``glu_z=-1.0`` style names), the rest at their defaults."""
    values = {f"--{k.replace('_', '-')}": v for k, v in given.items()}
    return Options.parse(values, tmp_path, tmp_path)


# (option values as argparse hands them over, what the one line must say)
BAD = [
    ({"glu_models": "llama-3.2-1b,gpt2"}, r"--glu-models=llama-3.2-1b,gpt2: unknown model "
                                          r"'gpt2'; valid: registered models llama-3.2-1b, "),
    ({"glu_methods": "maw,magnitude"}, r"unknown method 'magnitude'; valid: methods .*maw"),
    ({"glu_levels": "15"}, r"--glu-levels=15: level 15 is not registered; valid: levels "
                           r"registered for llama-3.2-1b, .*: 0, 10, 20, 30, 40, 50, 60"),
    ({"glu_models": "llama-3.2-1b-instruct", "glu_levels": "20"},
     r"level 20 is not registered; valid: levels registered for llama-3.2-1b-instruct: "
     r"0, 10, 40, 60$"),
    ({"glu_levels": "nan"}, r"--glu-levels=nan: level nan is not registered"),
    ({"glu_levels": "ten"}, r"'ten' is not a number"),
    ({"glu_round_to": "0"}, r"--glu-round-to=0: 0 is below 1; valid: a comma list of "
                            r"integers >= 1"),
    ({"glu_round_to": "1,1.5"}, r"--glu-round-to=1,1.5: '1.5' is not an integer"),
    ({"glu_device": "gpu"}, r"--glu-device=gpu: not a torch device; valid: a torch device"),
    ({"glu_device": "cuda:99"}, r"--glu-device=cuda:99: this machine has \d+ CUDA device"),
    ({"glu_limit": 0}, r"--glu-limit=0: valid: an integer >= 1"),
    ({"glu_batch_size": -4}, r"--glu-batch-size=-4: valid: an integer >= 1"),
    ({"glu_z": -1.0}, r"--glu-z=-1.0: valid: a finite number >= 0"),
    ({"glu_z": math.nan}, r"--glu-z=nan: valid: a finite number >= 0"),
    ({"glu_ppl_tol": "wikitext=nan"}, r"--glu-ppl-tol=wikitext=nan: 'nan' is not a "
                                      r"tolerance; valid: a finite number >= 0"),
    ({"glu_ppl_tol": "wikitext=-1"}, r"--glu-ppl-tol=wikitext=-1: '-1' is not a tolerance"),
    ({"glu_ppl_tol": "inf"}, r"--glu-ppl-tol=inf: 'inf' is not a tolerance"),
    ({"glu_ppl_tol": "wikitxt=0.1"}, r"'wikitxt' is not a perplexity benchmark; valid: one "
                                     r"number, or name=value pairs with names lambada_openai, "
                                     r"wikitext"),
    ({"glu_ppl_tol": "mmlu=0.1"}, r"'mmlu' is not a perplexity benchmark"),
    ({"glu_ppl_tol": "wikitext=0.1,wikitext=0.2"}, r"'wikitext' is given twice"),
    ({"glu_prompt_lens": "128,0"}, r"--glu-prompt-lens=128,0: 0 is below 1"),
    ({"glu_new_tokens": 1}, r"--glu-new-tokens=1: valid: an integer >= 2"),
    ({"glu_perf_rounds": 0}, r"--glu-perf-rounds=0: valid: an integer >= 1"),
    ({"glu_perf_layers": 0}, r"--glu-perf-layers=0: valid: an integer >= 1"),
    ({"glu_perf_dtype": "bf16"}, r"--glu-perf-dtype=bf16: valid: a torch floating dtype"),
    ({"glu_perf_dtype": "int8"}, r"--glu-perf-dtype=int8: valid: a torch floating dtype"),
    ({"glu_perf_tolerance": math.inf}, r"--glu-perf-tolerance=inf: valid: a finite number"),
    ({"glu_device_name": " / "}, r"--glu-device-name=' / ': valid: a name with letters"),
    ({"glu_calib_source": "wikitext"}, r"--glu-calib-source=wikitext: unknown source; valid: "
                                       r"tinycorpus, c4, or the path of an existing text file"),
    ({"glu_calib_sequences": 0}, r"--glu-calib-sequences=0: valid: an integer >= 1"),
    ({"glu_calib_length": 1}, r"--glu-calib-length=1: valid: an integer >= 2"),
    ({"glu_calib_batch_size": 0}, r"--glu-calib-batch-size=0: valid: an integer >= 1"),
    ({"glu_calib_seed": -1}, r"--glu-calib-seed=-1: valid: an integer >= 0"),
]


@pytest.mark.parametrize("given,message", BAD,
                         ids=[",".join(f"{k}={v}" for k, v in g.items()) for g, _ in BAD])
def test_bad_value_is_one_line_naming_option_value_and_valid(tmp_path, given, message):
    with pytest.raises(ValueError, match=message) as err:
        run_check(tmp_path, **given)
    assert "\n" not in str(err.value)


def test_good_values_pass(tmp_path):
    run_check(tmp_path, glu_models="tiny-llama,llama-3.2-1b", glu_methods="maw,vow",
              glu_levels="0,40", glu_round_to="1,128", glu_device="cpu", glu_limit=5,
              glu_batch_size=1, glu_z=0.0, glu_ppl_tol="wikitext=0.2,lambada_openai=0",
              glu_cache_dir="new/cache", glu_report="results", glu_prompt_lens="32,128",
              glu_new_tokens=2, glu_perf_rounds=1, glu_perf_layers=1,
              glu_perf_dtype="bfloat16", glu_perf_tolerance=0.0, glu_device_name="ci-box",
              glu_calib_source="tinycorpus", glu_calib_sequences=4, glu_calib_length=64,
              glu_calib_batch_size=2, glu_calib_seed=3)
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_data_driven_methods_are_accepted(tmp_path):
    run_check(tmp_path, glu_methods="maw,act,wanda_sp,flap,maw_hybrid")


def test_calibration_options_reach_every_model_s_settings(tmp_path):
    text = tmp_path / "calib.txt"
    text.write_text("some calibration text\n" * 50)
    values = {"--glu-calib-source": str(text), "--glu-calib-sequences": 4,
              "--glu-calib-length": 64, "--glu-calib-seed": 3}
    opts = Options.parse(values, tmp_path, tmp_path)
    tiny, real = opts.calibration_for("tiny-llama"), opts.calibration_for("llama-3.2-1b-instruct")
    assert (tiny.n_sequences, tiny.seq_len, tiny.seed, tiny.batch_size) == (4, 64, 3, 8)
    assert tiny.source.tag == real.source.tag and real.chat_template and not tiny.chat_template
    unset = Options.parse({}, tmp_path, tmp_path)
    assert unset.calibration_for("tiny-llama").tag == "c-tinycorpus-n128-l256-b8-s0"
    assert unset.calibration_for("llama-3.2-1b").tag == "c-c4-n128-l2048-b8-s0"



@pytest.mark.parametrize("option", ["glu_cache_dir", "glu_report"])
def test_output_folder_that_is_a_file(tmp_path, option):
    (tmp_path / "taken").write_text("")
    with pytest.raises(BadOption, match=rf"--{option.replace('_', '-')}=taken: a file, not a "
                                        r"folder; valid: a folder this user can write"):
        run_check(tmp_path, **{option: "taken"})
    with pytest.raises(BadOption, match=r"=taken/sub: a file, not a folder \(.*taken is\)"):
        run_check(tmp_path, **{option: "taken/sub"})


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root may write anywhere")
def test_output_folder_not_writable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(BadOption, match=r"--glu-cache-dir=locked/c: .*locked is not writable"):
        run_check(tmp_path, glu_cache_dir="locked/c")


def test_baselines_dir(tmp_path):
    run_check(tmp_path, glu_baselines_dir="missing")  # a first run: tests skip, naming it
    run_check(tmp_path, glu_baselines_dir="missing", glu_update_baselines=True)  # created later
    (tmp_path / "baselines").write_text("")
    with pytest.raises(BadOption, match=r"^--glu-baselines-dir=baselines: a file, not a "
                                        r"folder; valid: a folder of <model>.json baselines"):
        run_check(tmp_path, glu_baselines_dir="baselines")
    # with --glu-update-baselines the default folder (<rootdir>/baselines) is written too
    with pytest.raises(BadOption, match=r"--glu-baselines-dir=.*baselines: a file, not a folder"):
        run_check(tmp_path, glu_update_baselines=True)


def test_models_dir_option_and_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("GLU_PRUNE_MODELS_DIR", raising=False)
    with pytest.raises(BadOption, match=r"--glu-models-dir=nope: does not exist; valid: an "
                                        r"existing folder holding <model-name>/"):
        run_check(tmp_path, glu_models_dir="nope")
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("GLU_PRUNE_MODELS_DIR", str(tmp_path / "file"))
    with pytest.raises(BadOption, match=r"^GLU_PRUNE_MODELS_DIR=.*file: is a file"):
        run_check(tmp_path)
    run_check(tmp_path, glu_models_dir=str(tmp_path))  # the option wins over the environment


def test_plots_need_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now raises ImportError
    with pytest.raises(BadOption, match=r"^--glu-plots: matplotlib is not installed; valid: "
                                        r"install matplotlib"):
        run_check(tmp_path, glu_plots=True)
    run_check(tmp_path, glu_plots=False)


def test_ppl_tol_parses_numbers_and_known_names():
    assert parse_ppl_tol(None) == {} and parse_ppl_tol("0") == {"ppl_rel": 0.0}
    assert parse_ppl_tol(" wikitext = 0.2 ")["ppl_rel_by_benchmark"] == {
        "lambada_openai": 0.1, "wikitext": 0.2}
    with pytest.raises(pytest.UsageError, match=r"expected name=value, got '0.1'"):
        parse_ppl_tol("0.1,wikitext=0.2")


@pytest.mark.parametrize("kwargs,message", [
    ({"ppl_rel_by_benchmark": {"wikitext": math.nan}},
     r"tolerance ppl_rel_by_benchmark\['wikitext'\] must be a finite number >= 0, got nan"),
    ({"ppl_rel_by_benchmark": {"wikitext": -1}}, r"\['wikitext'\] .* got -1"),
    ({"z": math.inf}, r"tolerance z must be a finite number >= 0, got inf"),
])
def test_tolerance_rejects_what_would_disable_or_invert_the_gate(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Tolerance(**kwargs)
