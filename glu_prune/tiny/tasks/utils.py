"""Offline loaders and scoring for the glu_tiny_* twin tasks (found by lm-eval via !function).

Data is read from ``data/`` next to this file, so the tasks work from any cwd and
after ``pip install``, with HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set: nothing is
downloaded. Metric code is lm-eval's own wherever it imports offline.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets

# Reused as-is from lm-eval (all offline).
from lm_eval.tasks.hellaswag.utils import process_docs as hellaswag_process_docs  # noqa: F401
from lm_eval.tasks.leaderboard.musr.utils import doc_to_text as musr_doc_to_text  # noqa: F401
from lm_eval.tasks.truthfulqa.utils import process_results_mc2  # noqa: F401
from lm_eval.tasks.wikitext.preprocess_wikitext import (  # noqa: F401
    process_results as wikitext_process_results,
    wikitext_detokenizer,
)
from lm_eval.tasks.winogrande.preprocess_winogrande import (  # noqa: F401
    doc_to_choice as winogrande_doc_to_choice,
    doc_to_target as winogrande_doc_to_target,
    doc_to_text as winogrande_doc_to_text,
)

__all__ = ["load", "hellaswag_process_docs", "musr_doc_to_text", "process_results_mc2",
           "wikitext_process_results", "wikitext_detokenizer", "winogrande_doc_to_choice",
           "winogrande_doc_to_target", "winogrande_doc_to_text", "ifeval_process_results",
           "agg_inst_level_acc"]

DATA = Path(__file__).resolve().parent / "data"


def load(data_file: str, **_: object) -> datasets.DatasetDict:
    """``custom_dataset``: every ``data/<data_file>.<split>.jsonl`` as one split."""
    splits = {}
    for path in sorted(DATA.glob(f"{data_file}.*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line]
        splits[path.name[len(data_file) + 1:-len(".jsonl")]] = datasets.Dataset.from_list(rows)
    if not splits:
        raise FileNotFoundError(f"no data files for {data_file!r} in {DATA}")
    return datasets.DatasetDict(splits)


# ------------------------------------------------------------------ IFEval, offline
# lm-eval's ifeval imports instructions_util, which calls nltk.download("punkt_tab") at
# import time (network). The twin therefore re-implements the checks of the instruction
# ids it uses (same ids, same kwargs, same rules, minus the langdetect language check)
# and lm-eval's strict/loose scoring around them.
def _words(text: str) -> int:
    return len(re.findall(r"\w+", text))  # = nltk RegexpTokenizer(r"\w+"), as in lm-eval


def _check(inst_id: str, kw: dict, value: str) -> bool:
    """Whether ``value`` follows instruction ``inst_id`` (IFEval's rules)."""
    if inst_id == "change_case:english_lowercase":
        return value.islower()
    if inst_id == "change_case:english_capital":
        return value.isupper()
    if inst_id == "keywords:existence":
        return all(re.search(k, value, flags=re.IGNORECASE) for k in kw["keywords"])
    if inst_id == "startend:quotation":
        v = value.strip()
        return len(v) > 1 and v[0] == '"' and v[-1] == '"'
    if inst_id == "startend:end_checker":
        return value.strip().strip('"').lower().endswith(kw["end_phrase"].strip().lower())
    if inst_id == "length_constraints:number_words":
        n = _words(value)
        return n < kw["num_words"] if kw["relation"] == "less than" else n >= kw["num_words"]
    if inst_id == "punctuation:no_comma":
        return not re.search(r"\,", value)
    raise KeyError(f"instruction {inst_id!r} is not supported by the offline twin")


def _follows(doc: dict, responses: list[str]) -> list[bool]:
    return [any(r.strip() and _check(i, {k: v for k, v in kw.items() if v}, r) for r in responses)
            for i, kw in zip(doc["instruction_id_list"], doc["kwargs"])]


def _loose_variants(response: str) -> list[str]:
    """lm-eval's loose variants: drop first/last line, strip '*'."""
    r = response.split("\n")
    cut = [response, "\n".join(r[1:]).strip(), "\n".join(r[:-1]).strip(), "\n".join(r[1:-1]).strip()]
    return cut + [c.replace("*", "") for c in cut]


def ifeval_process_results(doc: dict, results: list[str]) -> dict:
    """Prompt- and instruction-level strict and loose accuracy, as lm-eval's ifeval."""
    strict = _follows(doc, [results[0]])
    loose = _follows(doc, _loose_variants(results[0]))
    return {"prompt_level_strict_acc": all(strict), "inst_level_strict_acc": strict,
            "prompt_level_loose_acc": all(loose), "inst_level_loose_acc": loose}


def agg_inst_level_acc(items: list[list[bool]]) -> float:
    """Mean over all instructions of all prompts (lm-eval's ifeval aggregation)."""
    flat = [x for sub in items for x in sub]
    return sum(flat) / len(flat)
