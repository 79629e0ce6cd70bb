"""Under ``-n 2 --dist loadgroup`` every variant's tests run on one worker (pytester, no
model is built), and a pytest/xdist pair that stops grouping is refused before any test."""

from __future__ import annotations

from collections import defaultdict

import pytest

from glu_prune.plugin.variants import LoadgroupGuard
from glu_prune.plugin.results import plain_nodeid

# three tests per variant; each writes "<variant> <worker>" to a file of its own
SUITE = '''
import os

import pytest


@pytest.mark.parametrize("n", range(3))
def test_where(variant, n):
    out = os.path.join(os.environ["WHERE"], f"{variant.slug}-{n}")
    with open(out, "w") as fh:
        fh.write(f"{variant.slug} {os.environ.get('PYTEST_XDIST_WORKER', 'main')}")
'''


def test_each_variant_runs_on_one_worker(fake_variants: pytest.Pytester, checkout_on_path: None,
                                         monkeypatch: pytest.MonkeyPatch):
    pytester = fake_variants
    pytester.makepyfile(test_groups=SUITE)
    where = pytester.mkdir("where")
    monkeypatch.setenv("WHERE", str(where))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup", "-v",
        "--glu-models=tiny-llama", "--glu-levels=0,10,20,30,40,50",
        timeout=180)
    result.assert_outcomes(passed=18)
    workers = defaultdict(set)
    for path in where.iterdir():
        slug, worker = path.read_text().split()
        workers[slug].add(worker)
    assert len(workers) == 6
    assert all(len(w) == 1 for w in workers.values()), dict(workers)
    assert set().union(*workers.values()) == {"gw0", "gw1"}  # really spread over both
    result.stdout.fnmatch_lines(["*test_where*tiny-llama-maw-p10-0*@tiny-llama-maw-p10*"])


def test_guard_finds_only_ungrouped_variant_tests():
    guard = LoadgroupGuard(["tiny-llama-maw-p0", "tiny-llama-maw-p0-r128"])
    assert guard.ungrouped("t.py::test_a[tiny-llama-maw-p0]")
    assert guard.ungrouped("t.py::test_a[tiny-llama-maw-p0-mmlu]")
    assert guard.ungrouped("t.py::test_a[tiny-llama-maw-p0-r128-mmlu]")
    assert not guard.ungrouped("t.py::test_a[tiny-llama-maw-p0-mmlu]@tiny-llama-maw-p0")
    assert not guard.ungrouped("t.py::test_a[tiny-llama-maw-p00]")  # not a slug of the run
    assert not guard.ungrouped("t.py::test_a[tiny-llama-maw-p40-mmlu]")
    assert not guard.ungrouped("t.py::test_plain")
    assert not guard.ungrouped("t.py::test_b[x@y]")


def test_guard_refuses_the_run_naming_the_test_and_the_fix():
    guard = LoadgroupGuard(["tiny-llama-maw-p0"])
    guard.pytest_xdist_node_collection_finished(None, ["t.py::test_a[tiny-llama-maw-p0]@g",
                                                       "t.py::test_plain"])
    with pytest.raises(pytest.UsageError, match=r"t\.py::test_a\[tiny-llama-maw-p0-mmlu\] "
                                                r"came back without .*pytest<9\.2"):
        guard.pytest_xdist_node_collection_finished(
            None, ["t.py::test_plain", "t.py::test_a[tiny-llama-maw-p0-mmlu]"])


@pytest.mark.parametrize(("nodeid", "plain"), [
    ("t.py::test_a[tiny-llama-maw-p0-mmlu]@tiny-llama-maw-p0", "t.py::test_a[tiny-llama-maw-p0-mmlu]"),  # noqa: E501
    ("t.py::test_a[tiny-llama-maw-p0-mmlu]", "t.py::test_a[tiny-llama-maw-p0-mmlu]"),
    ("t.py::test_a[a@b]", "t.py::test_a[a@b]"),  # an '@' in the parameters stays
    ("t.py::test_a[a@b]@g", "t.py::test_a[a@b]"),
    ("t.py::test_a@g", "t.py::test_a"),
    ("t.py::test_a", "t.py::test_a"),
])
def test_plain_nodeid_strips_only_the_xdist_group_suffix(nodeid, plain):
    assert plain_nodeid(nodeid) == plain
