"""Accuracy of every variant on every benchmark of its set, against the stored baselines.

Ids read ``test_accuracy[<variant slug>-<benchmark>]``, so ``-k 1b`` / ``-k tiny`` /
``-k p40`` / ``-k mmlu`` select naturally. Each variant is evaluated once (one lm-eval
call over all its selected benchmarks); each test judges one benchmark's accuracy metrics.
"""

import pytest

pytestmark = pytest.mark.accuracy


def test_accuracy(glu_eval, variant, accuracy_benchmark):
    glu_eval.check(variant, accuracy_benchmark, "accuracy")
