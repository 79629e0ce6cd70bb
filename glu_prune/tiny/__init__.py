"""The embedded tiny Llama world: a small trained model and offline benchmark twins.

Light on import (no torch): paths and names only.
"""

from __future__ import annotations

from pathlib import Path

from glu_prune.tiny.config import TINY_CONFIG

ROOT: Path = Path(__file__).resolve().parent
TASKS_DIR: Path = ROOT / "tasks"
MODEL_DIRS: dict[str, Path] = {
    "tiny-llama": ROOT / "tiny-llama",
    "tiny-llama-instruct": ROOT / "tiny-llama-instruct",
}

BASE_BENCHMARKS: tuple[str, ...] = (
    "wikitext", "mmlu", "arc_challenge", "hellaswag", "winogrande", "piqa", "boolq",
    "lambada_openai", "truthfulqa_mc1", "truthfulqa_mc2", "gsm8k", "ifeval",
    "leaderboard_musr",
)
INSTRUCT_BENCHMARKS: tuple[str, ...] = (
    "leaderboard_musr", "truthfulqa_mc1", "truthfulqa_mc2", "lambada_openai", "mmlu",
    "gsm8k", "ifeval",
)
TWIN_TASKS: dict[str, str] = {b: f"glu_tiny_{b}" for b in BASE_BENCHMARKS}
# Evaluated items per twin (wikitext: documents); must match twins.TWINS (a unit test checks).
TWIN_SIZES: dict[str, int] = {b: 500 for b in BASE_BENCHMARKS} | {
    "wikitext": 8, "lambada_openai": 200, "gsm8k": 100, "ifeval": 60}
# Chance level of each twin's first accuracy metric (uniform guess over the choices;
# lambada: picking one of the story's two names; truthfulqa_mc2: 2 of 5 choices true).
CHANCE: dict[str, float] = {
    "mmlu": 0.25, "arc_challenge": 0.25, "hellaswag": 0.25, "winogrande": 0.5, "piqa": 0.5,
    "boolq": 0.5, "lambada_openai": 0.5, "truthfulqa_mc1": 0.25, "truthfulqa_mc2": 0.4,
    "leaderboard_musr": 1 / 3}


__all__ = ["TINY_CONFIG", "TASKS_DIR", "MODEL_DIRS", "TWIN_TASKS", "BASE_BENCHMARKS",
           "INSTRUCT_BENCHMARKS", "TWIN_SIZES",
           "CHANCE"]
