"""Perplexity of every variant (wikitext, lambada) against the stored baselines.

Judged by a relative tolerance (``--glu-ppl-tol``); lambada_openai also appears in
test_accuracy, where only its accuracy is judged.
"""

import pytest

pytestmark = pytest.mark.perplexity


def test_perplexity(glu_eval, variant, perplexity_benchmark):
    glu_eval.check(variant, perplexity_benchmark, "perplexity")
