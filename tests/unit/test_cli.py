"""The command line: prune saves model + report; table prints the expansion table."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from glu_prune.cli import main


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
