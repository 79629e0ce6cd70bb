"""Accuracy of every variant on every benchmark of its set, against the stored baselines.

Ids read ``test_accuracy[<variant slug>-<benchmark>]``, so ``-k 1b`` / ``-k tiny`` /
``-k p40`` / ``-k mmlu`` select naturally. Each benchmark of a variant is evaluated on its own
(one lm-eval call, cached as soon as it finishes), so a failing benchmark fails only its own
tests; each test judges one benchmark's accuracy metrics.
"""

import pytest

pytestmark = pytest.mark.accuracy


def test_accuracy(glu_eval, variant, accuracy_benchmark):
    glu_eval.check(variant, accuracy_benchmark, "accuracy")
