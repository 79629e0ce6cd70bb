"""The options, parsed once: every --glu-* value is checked by its one parser, each error is
one line, and the rest of the plugin reads the resulting ``Options``."""

from __future__ import annotations

import math
import os
import sys
from collections import Counter
from dataclasses import fields
from pathlib import Path

import pytest

from glu_prune.judging import Tolerance
from glu_prune.plugin.option_spec import all_specs, declared_fields
from glu_prune.plugin.options import BadOption, Options, parse_ppl_tol
from glu_prune.plugin.perf import PerfSuite

pytest_plugins = ["pytester"]


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


# ---------------------------------------------------------------- parsed once, in one place


def test_every_glu_option_is_declared_by_one_field_of_options(pytestconfig):
    """Each --glu-* option pytest knows is declared once, by a field of ``Options`` (its
    parser beside it), and every field but the two run facts is filled from options."""
    specs = all_specs(Options)
    dests = [s.dest for s in specs]
    assert len(dests) == len(set(dests))  # no option declared twice
    known = {k for k in vars(pytestconfig.option) if k.startswith("glu_")}
    assert known and known == set(dests), sorted(known ^ set(dests))
    unfilled = {f.name for f in fields(Options)} - set(declared_fields(Options))
    assert unfilled == {"verbose", "raw"}


def test_unset_options_take_their_declared_defaults(tmp_path):
    opts = Options.parse({}, tmp_path, tmp_path)
    assert (opts.methods, opts.round_tos, opts.batch_size, opts.perf_tolerance) == (
        ["maw"], [1], 16, 0.1)
    assert opts.tolerance == Tolerance() and opts.report_dir == tmp_path / "results"
    assert opts.cache_dir == tmp_path / ".glu_cache" and opts.calibration == {}


# (argument, value): one of each kind of option - text, comma list, int, float, a value
# holding "=", a repeatable path, an on/off flag (None), a calibration option
SPACED = [("--glu-models", "tiny-llama"), ("--glu-levels", "0,40"), ("--glu-round-to", "1,64"),
          ("--glu-z", "1.5"), ("--glu-ppl-tol", "wikitext=0.2"), ("--glu-limit", "5"),
          ("--glu-new-tokens", "3"), ("--glu-perf-dtype", "float32"),
          ("--glu-perf-tolerance", "0.2"), ("--glu-calib-sequences", "4"),
          ("--glu-report", "out"), ("--glu-chat-template", None)]


def test_an_option_with_a_space_and_with_equals_parse_the_same(pytester):
    spaced = [x for arg, value in SPACED for x in (arg, value) if x is not None]
    joined = [arg if value is None else f"{arg}={value}" for arg, value in SPACED]
    a = Options.read(pytester.parseconfig(*spaced))
    b = Options.read(pytester.parseconfig(*joined))
    assert a == b
    assert (a.levels, a.round_tos, a.tolerance.z, a.limit, a.calibration) == (
        [0.0, 40.0], [1, 64], 1.5, 5, {"n_sequences": 4})
    assert a.tolerance.ppl_rel_by_benchmark["wikitext"] == 0.2 and a.chat_template
    errors = []
    for args in (["--glu-ppl-tol", "wikitext=nan"], ["--glu-ppl-tol=wikitext=nan"]):
        with pytest.raises(pytest.UsageError) as err:
            Options.read(pytester.parseconfig(*args))
        errors.append(str(err.value))
    assert errors[0] == errors[1] == ("glu-prune: --glu-ppl-tol=wikitext=nan: 'nan' is not a "
                                      "tolerance; valid: a finite number >= 0, e.g. 0.05")


def test_each_option_is_read_from_pytest_once_per_session(pytester, monkeypatch):
    """A run that parametrizes quality variants and latency models reads every --glu-*
    option from pytest exactly once (in ``Options.read``): the latency/energy settings,
    the variant matrix and the results collector all read the one ``Options``."""
    reads: Counter[str] = Counter()
    parses: list[Options] = []
    getoption, parse = pytest.Config.getoption, Options.parse.__func__

    def counting_getoption(config, name, *args, **kwargs):
        if config is not outer and str(name).lstrip("-").startswith("glu"):
            reads[name] += 1
        return getoption(config, name, *args, **kwargs)

    def counting_parse(cls, *args, **kwargs):
        parses.append(parse(cls, *args, **kwargs))
        return parses[-1]

    outer = pytester._request.config
    monkeypatch.setattr(pytest.Config, "getoption", counting_getoption)
    monkeypatch.setattr(Options, "parse", classmethod(counting_parse))
    pytester.makepyfile(test_both="def test_v(variant):\n    pass\n\n\n"
                                  "def test_p(perf_model):\n    pass\n")
    res = pytester.runpytest_inprocess("--collect-only", "-q", "-p", "no:cacheprovider",
                                       "--glu-models=tiny-llama", "--glu-levels=0,40",
                                       "--glu-perf-rounds=3", "--glu-prompt-lens=16")
    assert res.ret == 0, res.stdout.str()
    res.stdout.fnmatch_lines(["*test_p?tiny-llama-maw-p40*", "*test_v?tiny-llama-maw-p40*"])
    assert len(parses) == 1 and parses[0].perf_rounds == 3
    assert reads == {s.flag: 1 for s in all_specs(Options)}


def test_latency_settings_are_made_from_the_options_object(tmp_path):
    """No second parse: ``PerfSuite`` fills device defaults into the checked values only."""
    opts = Options.parse({"--glu-device": "cpu", "--glu-models": "tiny-llama",
                          "--glu-levels": "40", "--glu-round-to": "1,64",
                          "--glu-prompt-lens": "16,32", "--glu-new-tokens": 3,
                          "--glu-perf-rounds": 7, "--glu-perf-layers": 2,
                          "--glu-perf-dtype": "bfloat16", "--glu-perf-tolerance": 0.25},
                         tmp_path, tmp_path)
    s = PerfSuite(opts).settings()
    assert (s.device, s.dtype, s.prompt_lens, s.new_tokens, s.rounds, s.tolerance) == (
        "cpu", "bfloat16", (16, 32), 3, 7, 0.25)
    assert [(v.slug, v.layers) for v in s.variants] == [
        ("tiny-llama-maw-p0", 2), ("tiny-llama-maw-p40", 2), ("tiny-llama-maw-p40-r64", 2)]
