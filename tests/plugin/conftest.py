"""Shared set-up of the pytester tests of the plugin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import glu_prune

REPO = Path(glu_prune.__file__).resolve().parent.parent


@pytest.fixture
def checkout_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subprocess pytest runs import this checkout's glu_prune even when it is not installed."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


@pytest.fixture
def fake_variants(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester folder whose tests are parametrized like the suite but build no model."""
    pytester.makeconftest('''
import pytest

# the glu-prune plugin loads as a pytest11 entry point


@pytest.fixture
def variant(variant_id):  # parametrized like the suite, but builds nothing
    return variant_id
''')
    return pytester
