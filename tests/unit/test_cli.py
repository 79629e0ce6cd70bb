"""The command line: prune saves model + report; table prints the expansion table."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from glu_prune.cli import main


@pytest.fixture(autouse=True)
def console_script(monkeypatch):
    """Run ``main`` as the ``glu-prune`` console script does: the program name in its
    messages comes from ``sys.argv[0]``, which is pytest's own (``python -m pytest`` gives
    ``.../pytest/__main__.py``, read as ``python -m glu_prune``)."""
    monkeypatch.setattr("sys.argv", ["/venv/bin/glu-prune"])


def test_table(capsys):
    assert main(["table", "llama-3.2-1b", "--levels", "0,10,40"]) == 0
    out = capsys.readouterr().out
    assert "7,373" in out and "4,916" in out and "1,155,303,424" in out


def test_prune_saves_model_tokenizer_report(tmp_path, capsys):
    out = tmp_path / "p40"
    assert main(["prune", "tiny-llama", "--pct", "40", "--round-to", "4", "--out", str(out)]) == 0
    report = json.loads((out / "prune_report.json").read_text())
    assert report["intermediate_size_after"] == 308 and report["round_to"] == 4
    assert len(report["kept_indices"]) == report_layers(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert model.config.intermediate_size == 308
    assert "saved tiny-llama" in capsys.readouterr().out


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_saved_files_take_the_umask_like_any_other_file(tmp_path, umask):
    """transformers writes model.safetensors through a 0600 temporary file; the saved
    variant's files all get 0666 less the umask, as the tokenizer and config already did."""
    old = os.umask(umask)
    try:
        assert main(["prune", "tiny-llama", "--pct", "40", "--out", str(tmp_path / "v")]) == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "v").iterdir()}
    assert "model.safetensors" in modes
    assert set(modes.values()) == {0o666 & ~umask}, modes


def report_layers(path) -> int:
    return json.loads((path / "config.json").read_text())["num_hidden_layers"]


def test_bad_pct_is_a_clean_error(tmp_path, capsys):
    assert main(["prune", "tiny-llama", "--pct", "120", "--out", str(tmp_path)]) == 2
    assert "pct must be in [0, 100), got 120" in capsys.readouterr().err


def test_prune_refuses_a_non_empty_out_without_force(tmp_path, capsys):
    out = tmp_path / "p40"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["prune", "tiny-llama", "--pct", "40", "--out", str(out)]) == 2
    assert f"--out {out} is not empty; pass --force" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_prune_out_may_not_be_a_file(tmp_path, capsys):
    out = tmp_path / "p40"
    out.write_text("x")
    assert main(["prune", "tiny-llama", "--pct", "40", "--out", str(out)]) == 2
    assert f"--out {out} is a file; give a folder" in capsys.readouterr().err


def test_force_replaces_the_folder_without_leftovers(tmp_path):
    out = tmp_path / "saved"
    assert main(["prune", "tiny-llama", "--pct", "40", "--out", str(out)]) == 0
    assert main(["prune", "tiny-llama", "--pct", "10", "--out", str(out), "--force"]) == 0
    assert json.loads((out / "config.json").read_text())["intermediate_size"] == 461
    assert [p.name for p in tmp_path.iterdir()] == ["saved"]  # no temporary or old folder


def test_failed_save_leaves_the_old_variant_loadable_and_no_temp_folder(tmp_path, capsys,
                                                                        monkeypatch):
    import errno

    from transformers import PreTrainedModel

    out = tmp_path / "saved"
    assert main(["prune", "tiny-llama", "--pct", "40", "--out", str(out)]) == 0
    before = sorted(p.name for p in out.iterdir())

    def disk_full(self, folder, **kwargs):  # what running out of disk did: half a variant
        (folder / "config.json").write_text(json.dumps({"intermediate_size": 461}))
        (folder / "model.safetensors").write_bytes(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", disk_full)
    assert main(["prune", "tiny-llama", "--pct", "10", "--out", str(out), "--force"]) == 1
    err = capsys.readouterr().err
    assert f"could not save the pruned model to {out}" in err and "No space left" in err
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == before
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert model.config.intermediate_size == 308
    assert [p.name for p in tmp_path.iterdir()] == ["saved"]


def test_interrupted_save_of_a_new_folder_leaves_nothing(tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    def interrupted(self, folder, **kwargs):
        (folder / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(["prune", "tiny-llama", "--pct", "40", "--out", str(tmp_path / "new")])
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- one-line errors, early checks


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if the command gets as far as loading a model."""
    def load_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad value was rejected")
    monkeypatch.setattr("glu_prune.core.sources.load_model", load_model)


def one_line(text: str) -> str:
    """``text`` when it is exactly one line (what every expected CLI error must be)."""
    assert text.endswith("\n") and text.count("\n") == 1, text
    return text


@pytest.mark.parametrize("argv,message", [
    (["--pct", "150"], "llama-3.2-1b: --pct must be in [0, 100), got 150.0"),
    (["--pct", "nan"], "llama-3.2-1b: --pct must be in [0, 100), got nan"),
    (["--pct", "10", "--round-to", "0"], "--round-to must be an integer >= 1, got 0"),
    (["--pct", "10", "--round-to", "8192"], "--round-to 8192 is at or above the intermediate "
                                            "size 8192"),
    (["--pct", "0.001", "--round-to", "128"], "nothing would be pruned; ask for more pruning "
                                              "or a smaller --round-to"),
    (["--expansion-ratio", "5"], "--expansion-ratio must be in (0, 4) (the current "
                                 "intermediate_size/hidden_size = 8192/2048), got 5.0"),
])
def test_bad_levels_are_rejected_before_loading(argv, message, tmp_path, capsys, no_loading):
    code = main(["prune", "llama-3.2-1b", *argv, "--out", str(tmp_path / "out")])
    assert code == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith("glu-prune: error: ") and message in err


@pytest.mark.parametrize("argv,message", [
    (["prune", "llama-3.2-1b", "--pct", "10", "--method", "mawx"],
     "argument --method: invalid choice: 'mawx' (choose from "),
    (["prune", "llama-3.2-1b"], "one of the arguments --pct --expansion-ratio --depth --remove-layers is required"),
    (["prune", "llama-3.2-1b", "--pct", "ten"], "argument --pct: invalid float value: 'ten'"),
])
def test_usage_errors_are_one_line_naming_the_fix(argv, message, tmp_path, capsys, no_loading,
                                                  monkeypatch):
    monkeypatch.setattr("sys.argv", ["/some/env/bin/glu-prune"])  # as the console script
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith("glu-prune prune: error: ") and message in err
    assert err.endswith("; see glu-prune prune --help\n")


def test_an_unknown_name_is_no_folder_and_lists_the_registered_ones(tmp_path, capsys,
                                                                   no_loading):
    """MODEL is a registered name or a source; a name that is neither exits 4, one line."""
    assert main(["prune", "llama-9b", "--pct", "10", "--out", str(tmp_path / "out")]) == 4
    err = one_line(capsys.readouterr().err)
    assert "model source llama-9b: does not exist" in err
    assert "or a registered name: llama-3.2-1b, llama-3.2-3b" in err


def test_program_name_follows_how_it_was_started():
    from glu_prune.cli import build_parser, program_name

    assert program_name("/venv/bin/glu-prune") == "glu-prune"
    assert program_name("/src/glu_prune/__main__.py") == "python -m glu_prune"
    assert build_parser("glu-prune").format_usage().startswith("usage: glu-prune ")


def test_missing_weights_are_one_line_naming_the_cli_options(tmp_path):
    """The issue's case, end to end: `python -m glu_prune prune llama-3.2-1b` offline."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("GLU_PRUNE_MODELS_DIR", None)  # nothing on this machine may provide the weights
    done = subprocess.run([sys.executable, "-m", "glu_prune", "prune", "llama-3.2-1b",
                           "--pct", "40", "--out", str(tmp_path / "pruned")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    err = one_line(done.stderr)
    assert err.startswith("python -m glu_prune: error: llama-3.2-1b: offline mode")
    assert "--model-dir DIR" in err and "--weights random" in err
    assert "Traceback" not in err


def test_wrong_model_dir_is_one_line_naming_model_dir(tmp_path, capsys):
    from glu_prune import load_model

    model, _ = load_model("tiny-llama", dtype=torch.float32, device="cpu")
    model.save_pretrained(tmp_path / "models" / "llama-3.2-1b")  # a wrong model, not missing
    capsys.readouterr()  # the set-up's own output
    code = main(["prune", "llama-3.2-1b", "--pct", "40", "--model-dir",
                 str(tmp_path / "models"), "--out", str(tmp_path / "out")])
    assert code == 2
    err = one_line(capsys.readouterr().err)
    assert "is not llama-3.2-1b's registered architecture" in err
    assert err.endswith("; pass --model-dir DIR with a folder that holds llama-3.2-1b\n")


def test_table_levels_errors_name_the_option(capsys):
    assert main(["table", "llama-3.2-1b", "--levels", "10,x"]) == 2
    assert "--levels '10,x': 'x' is not a number" in one_line(capsys.readouterr().err)
    assert main(["table", "llama-3.2-1b", "--levels", "150"]) == 2
    assert "a --levels entry must be in [0, 100), got 150.0" in one_line(
        capsys.readouterr().err)


def test_prune_is_quiet_unless_verbose(tmp_path, capsys):
    assert main(["prune", "tiny-llama", "--pct", "40", "--out", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().err == ""  # no "Loading weights" bar, no INFO lines
    assert main(["prune", "tiny-llama", "--pct", "40", "--out", str(tmp_path / "b"), "-v"]) == 0
    err = capsys.readouterr().err
    assert "Loading weights" in err and "Writing model shards" in err  # -v after the command


def test_plots_without_matplotlib_is_refused_before_merging(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # import fails
    code = main(["report", "merge", str(tmp_path / "a.json"), "-o", str(tmp_path / "out"),
                 "--plots"])
    assert code == 2
    err = one_line(capsys.readouterr().err)
    assert '--plots needs matplotlib, which is not installed: pip install -e ".[plots]"' in err
    assert not (tmp_path / "out").exists()


def _plugin_options() -> dict[str, dict]:
    """The plugin's --glu-* options as declared (name -> addoption keyword arguments)."""
    from glu_prune.plugin.options import add_options

    declared: dict[str, dict] = {}

    class Group:
        def addoption(self, name, **kwargs):
            declared[name] = kwargs

    class Parser:
        def getgroup(self, *args, **kwargs):
            return Group()

        def addini(self, *args, **kwargs):
            pass

    add_options(Parser())
    return declared


def _cli_prune_options() -> dict[str, object]:
    from glu_prune.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    prune = sub.choices["prune"]
    return {s: a for a in prune._actions for s in a.option_strings}


def test_cli_and_plugin_accept_the_same_methods_and_calibration_options():
    """One definition: every --glu-calib-X is the CLI's --calib-X with the same type and
    help, and --method accepts exactly the methods --glu-methods accepts."""
    from glu_prune.core.importance import known_methods

    plugin, cli = _plugin_options(), _cli_prune_options()
    calib = {name.removeprefix("--glu-"): kw for name, kw in plugin.items()
             if name.startswith("--glu-calib-")}
    assert len(calib) == 5
    for suffix, kw in calib.items():
        action = cli[f"--{suffix}"]
        assert (action.type, action.help) == (kw.get("type"), kw["help"]), suffix
    from glu_prune.core.depth import LAYER_METHODS

    # every width method of the plugin, plus the layer choices of --depth
    assert set(cli["--method"].choices) == set(known_methods()) | set(LAYER_METHODS)
    assert {"act", "wanda_sp", "flap", "maw_hybrid"} <= set(known_methods())


def test_prune_with_a_calibration_method_saves_a_reloadable_model(tmp_path):
    out = tmp_path / "flap"
    assert main(["prune", "tiny-llama", "--pct", "40", "--method", "flap",
                 "--calib-sequences", "4", "--calib-length", "64", "--out", str(out)]) == 0
    report = json.loads((out / "prune_report.json").read_text())
    assert report["method"] == "flap" and report["compensated"] is True
    assert report["calibration"] == "c-tinycorpus-n4-l64-b8-s0"
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert model.config.mlp_bias is True and model.config.intermediate_size == 308


def test_report_names_the_requested_and_the_removed_percentage(tmp_path):
    """40 % of 512 removes floor(204.8) = 204 neurons: 39.84 % removed, 40 asked for."""
    out = tmp_path / "p40"
    assert main(["prune", "tiny-llama", "--pct", "40", "--out", str(out)]) == 0
    report = json.loads((out / "prune_report.json").read_text())
    assert report["pct_requested"] == 40.0 and report["pct_removed"] == 100 * 204 / 512
    assert "pct" not in report


@pytest.mark.parametrize("argv, message", [
    (["--calib-seed", "3"], "--calib-seed given, but --method maw uses no calibration data"),
    (["--method", "flap", "--calib-length", "1"], "--calib-length=1: valid: an integer >= 2"),
    (["--method", "flap", "--calib-source", "wikitext"], "--calib-source=wikitext: unknown "
                                                         "source; valid: tinycorpus"),
])
def test_calibration_option_errors_name_the_cli_s_own_flags(tmp_path, capsys, argv, message,
                                                            no_loading):
    assert main(["prune", "tiny-llama", "--pct", "40", *argv,
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and "--glu-" not in err and err.count("\n") == 1
def _corrupt_tiny(models: Path, garbage: bytes) -> Path:
    """The shipped tiny-llama folder copied into ``models``, its weights replaced."""
    import shutil

    from glu_prune.catalog.models import get_model_spec

    folder = models / "tiny-llama"
    shutil.copytree(get_model_spec("tiny-llama").local_dir, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(garbage(weights.read_bytes()) if callable(garbage) else garbage)
    return weights


@pytest.mark.parametrize("garbage", [b"\x00\xffnot a safetensors file" * 8,
                                     lambda good: good[: len(good) // 2]],
                         ids=["garbage", "truncated"])
def test_corrupt_weights_are_one_line_naming_the_file(tmp_path, capsys, garbage):
    """Issue 19, point 8: a corrupt model.safetensors gave a long traceback; now one line
    naming the file, the error and the fix."""
    weights = _corrupt_tiny(tmp_path / "models", garbage)
    code = main(["prune", "tiny-llama", "--pct", "40", "--model-dir",
                 str(tmp_path / "models"), "--out", str(tmp_path / "out")])
    err = one_line(capsys.readouterr().err)
    assert code == 2 and "Traceback" not in err
    assert f"tiny-llama: cannot read {weights} (" in err
    assert err.endswith("the file is corrupt or incomplete: download or save the model again\n")
