"""Tests that measure nothing for want of a baseline or of weights: a skip with its reason,
or, with ``--glu-require-baselines`` (nightly CI), a failure. Never a pass."""

from __future__ import annotations

from typing import NoReturn

import pytest

REQUIRE_FLAG = "--glu-require-baselines"


def unmeasured(reason: str, required: bool) -> NoReturn:
    """Skip with ``reason``; fail with it (naming the flag) when ``required``."""
    if required:
        pytest.fail(f"{reason} [{REQUIRE_FLAG}: measuring nothing is a failure]", pytrace=False)
    pytest.skip(reason)
