"""The command line: prune saves model + report; table prints the expansion table."""

from __future__ import annotations

import json

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
