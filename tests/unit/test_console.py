"""The quiet console: library bars and chatter silenced, one progress line per benchmark."""

from __future__ import annotations

import io
import logging
import re

import pytest
from lm_eval.models.dummy import DummyLM
from tqdm import tqdm

from glu_prune import console


ELAPSED = re.compile(r"\[\d\d:\d\d\]")  # tqdm's elapsed time, which varies with load


class Terminal(io.StringIO):
    """A text stream that says it is a terminal (so a progress line redraws live)."""

    def isatty(self) -> bool:
        return True


def lm_eval_bars() -> None:
    """Bars as lm-eval draws them: explicit ``disable=False``, iterated and updated."""
    DummyLM().loglikelihood([object()] * 5)  # lm-eval's own tqdm(requests, disable=False)
    bar = tqdm(total=4, disable=False, desc="Running loglikelihood requests")
    for _ in range(4):
        bar.update(1)
    bar.close()


def test_lm_eval_bars_are_silenced(capsys):
    lm_eval_bars()
    assert "Running loglikelihood requests" in capsys.readouterr().err  # shown without
    with console.quiet_libraries():
        lm_eval_bars()
    assert capsys.readouterr().err == ""


def test_transformers_hub_and_datasets_bars_are_silenced(capsys):
    from datasets.utils.tqdm import tqdm as datasets_tqdm
    from huggingface_hub.utils import tqdm as hub_tqdm
    from transformers.utils import logging as hf_logging

    def draw() -> None:
        list(hf_logging.tqdm(range(3), desc="Loading weights"))
        list(hub_tqdm(range(3), desc="Fetching files"))
        list(datasets_tqdm(range(3), desc="Generating split"))

    with console.quiet_libraries():
        draw()
    assert capsys.readouterr().err == ""


def test_verbose_changes_nothing_and_the_patch_is_undone(capsys):
    from tqdm import std

    before = std.tqdm.__dict__["__init__"]
    with console.quiet_libraries(verbose=True):
        lm_eval_bars()
    assert "Running loglikelihood requests" in capsys.readouterr().err
    with console.quiet_libraries():
        with console.quiet_libraries():  # nested: only the outer block restores
            pass
        lm_eval_bars()
    assert capsys.readouterr().err == ""
    assert std.tqdm.__dict__["__init__"] is before  # tqdm exactly as it was
    lm_eval_bars()
    assert "Running loglikelihood requests" in capsys.readouterr().err


def test_info_logs_are_silenced_warnings_pass_and_levels_come_back(caplog):
    lm_eval_log = logging.getLogger("lm_eval.evaluator")
    before = logging.getLogger("lm_eval").level
    with caplog.at_level(logging.INFO):
        with console.quiet_libraries():
            lm_eval_log.info("Building contexts for mmlu")
            lm_eval_log.warning("metric acc has no aggregation")
        lm_eval_log.info("after the block")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["metric acc has no aggregation", "after the block"]
    assert logging.getLogger("lm_eval").level == before


def test_library_prints_go_to_the_debug_log(capsys, caplog):
    with caplog.at_level(logging.DEBUG, logger=console.LOG.name), console.quiet_libraries():
        print("bootstrapping for stddev: mean")  # what lm-eval prints
    assert capsys.readouterr().out == ""
    assert [r.getMessage() for r in caplog.records] == ["bootstrapping for stddev: mean"]


def test_a_log_file_gets_exactly_one_line_per_benchmark():
    log = io.StringIO()
    with console.quiet_libraries():
        for bench in ("mmlu", "gsm8k"):
            with console.progress_line("tiny-llama-maw-p40", bench, file=log) as line:
                lm_eval_bars()
                line.finish("acc,none=0.27")
    lines = log.getvalue().replace("\r", "").splitlines()
    assert [ELAPSED.sub("[t]", line) for line in lines] == [
        "tiny-llama-maw-p40 mmlu: acc,none=0.27 [t]", "tiny-llama-maw-p40 gsm8k: acc,none=0.27 [t]"]


def test_the_line_follows_the_bars_lm_eval_wanted_shown():
    screen = Terminal()
    with console.quiet_libraries(), \
            console.progress_line("tiny-llama-maw-p40", "mmlu", file=screen) as line:
        list(tqdm(range(7), disable=True))  # a bar its caller turned off: not followed
        lm_eval_bars()
        assert (line.n, line.total) == (4, 4)
        line.finish("cached")
    drawn = screen.getvalue()
    assert "0/4 " in drawn and "Running loglikelihood requests" in drawn  # drawn live
    assert "/7 " not in drawn
    final = drawn.rsplit("\r", 1)[-1]
    assert ELAPSED.sub("[t]", final).rstrip() == "tiny-llama-maw-p40 mmlu: cached [t]"


def test_iterated_bars_are_counted_and_still_iterate_fully():
    with console.quiet_libraries(), console.progress_line("v", "b", file=io.StringIO()) as line:
        got = list(tqdm(["a", "b", "c"], desc="building requests"))
        assert got == ["a", "b", "c"] and (line.n, line.total) == (3, 3)


def test_a_failure_ends_the_line_and_propagates():
    log = io.StringIO()
    with pytest.raises(RuntimeError, match="out of memory"):
        with console.progress_line("v", "gsm8k", file=log):
            raise RuntimeError("out of memory")
    assert ELAPSED.sub("[t]", log.getvalue().replace("\r", "")) == \
        "v gsm8k: failed: RuntimeError [t]\n"


def test_braces_in_a_note_are_text():
    log = io.StringIO()
    with console.progress_line("v", "b", file=log) as line:
        line.finish("{acc} = 1")
    assert "v b: {acc} = 1 [" in log.getvalue()
