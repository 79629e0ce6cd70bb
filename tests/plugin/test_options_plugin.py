"""Bad --glu-* values stop the run in configure (exit 4, one line) before any model time;
a wrong model found under a name fails that model's tests with both values named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from glu_prune import load_model

ROOT = Path(__file__).parents[2]

# Each variant test marks that it got its model; a configure error must leave no mark.
MARKING_CONFTEST = '''
import pytest
from pathlib import Path

# the glu-prune plugin loads as a pytest11 entry point


@pytest.fixture
def variant(variant_id):
    Path("built").write_text(variant_id.slug)  # the suite would build the model here
    return variant_id
'''

# (arguments, the one ERROR line). Today's main ran every one of these to exit 0 here.
BAD = [
    (["--glu-ppl-tol=wikitext=nan"],
     "ERROR: glu-prune: --glu-ppl-tol=wikitext=nan: 'nan' is not a tolerance; valid: a finite "
     "number >= 0, e.g. 0.05"),
    (["--glu-ppl-tol=wikitext=-1"],
     "ERROR: glu-prune: --glu-ppl-tol=wikitext=-1: '-1' is not a tolerance; *"),
    (["--glu-ppl-tol=wikitxt=0.1"],
     "ERROR: glu-prune: --glu-ppl-tol=wikitxt=0.1: 'wikitxt' is not a perplexity benchmark; "
     "valid: one number, or name=value pairs with names lambada_openai, wikitext"),
    (["--glu-z=-1"], "ERROR: glu-prune: --glu-z=-1.0: valid: a finite number >= 0"),
    (["--glu-limit=0"], "ERROR: glu-prune: --glu-limit=0: valid: an integer >= 1"),
    (["--glu-batch-size=0"], "ERROR: glu-prune: --glu-batch-size=0: valid: an integer >= 1"),
    (["--glu-cache-dir=afile"],
     "ERROR: glu-prune: --glu-cache-dir=afile: a file, not a folder; valid: a folder this "
     "user can write (created when absent)"),
    (["--glu-report=afile"], "ERROR: glu-prune: --glu-report=afile: a file, not a folder; *"),
    (["--glu-round-to=0"],
     "ERROR: glu-prune: --glu-round-to=0: 0 is below 1; valid: a comma list of integers >= 1"),
    (["--glu-models-dir=nowhere"],
     "ERROR: glu-prune: --glu-models-dir=nowhere: does not exist; valid: an existing folder *"),
    (["--glu-device=gpu0"], "ERROR: glu-prune: --glu-device=gpu0: not a torch device; *"),
    (["--glu-perf-dtype=half-ish"],
     "ERROR: glu-prune: --glu-perf-dtype=half-ish: valid: a torch floating dtype name *"),
    (["--glu-prompt-lens=128,-5"], "ERROR: glu-prune: --glu-prompt-lens=128,-5: -5 is below 1; *"),
    (["--glu-new-tokens=1"], "ERROR: glu-prune: --glu-new-tokens=1: valid: an integer >= 2"),
    (["--glu-perf-tolerance=nan"],
     "ERROR: glu-prune: --glu-perf-tolerance=nan: valid: a finite number >= 0"),
    (["--glu-update-baselines", "--glu-baselines-dir=afile/sub"],
     "ERROR: glu-prune: --glu-baselines-dir=afile/sub: a file, not a folder (*afile is); *"),
    # the placement options (issue 24), in the space form and the = form
    (["--glu-device-map", "pipeline"],
     "ERROR: glu-prune: --glu-device-map=pipeline: unknown device map; valid: auto, balanced, "
     "balanced_low_0, sequential"),
    (["--glu-device-map=auto", "--glu-max-memory", "cpu=lots"],
     "ERROR: glu-prune: --glu-max-memory=cpu=lots: 'lots' is not a size; valid: device=size "
     "pairs such as 0=70GiB,1=70GiB,cpu=200GiB (GPU index or cpu)"),
    (["--glu-device-map=auto", "--glu-max-memory=0=70GiB,0=1GiB"],
     "ERROR: glu-prune: --glu-max-memory=0=70GiB,0=1GiB: device '0' is given twice; *"),
    (["--glu-offload-folder", "afile"],
     "ERROR: glu-prune: --glu-offload-folder=afile: needs --glu-device-map; *"),
]


@pytest.fixture
def marking_suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(MARKING_CONFTEST)
    pytester.makepyfile(test_v="def test_v(variant):\n    pass\n")
    (pytester.path / "afile").write_text("")  # a file where a folder is expected
    return pytester


@pytest.mark.parametrize("args,line", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_option_stops_the_run_before_any_test(marking_suite, args, line):
    res = marking_suite.runpytest_inprocess("--glu-models=tiny-llama", "--glu-levels=0", *args)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines([line])
    errors = [x for x in res.stderr.lines if x.startswith("ERROR:")]
    assert len(errors) == 1, errors  # one line, no traceback
    assert not (marking_suite.path / "built").exists()  # no model was built
    assert "passed" not in res.stdout.str() and "test_v" not in res.stdout.str()


def test_good_options_still_run(marking_suite):
    res = marking_suite.runpytest_inprocess("--glu-models=tiny-llama", "--glu-levels=0",
                                            "--glu-ppl-tol=wikitext=0.2", "--glu-z=1",
                                            "--glu-cache-dir=new/cache", "--glu-report=out")
    res.assert_outcomes(passed=1)
    assert (marking_suite.path / "built").read_text() == "tiny-llama-maw-p0"


def test_a_placement_runs_and_refuses_xdist(marking_suite):
    args = ["--glu-models=tiny-llama", "--glu-levels=0", "--glu-device-map", "sequential",
            "--glu-max-memory=cpu=4MB", "--glu-offload-folder", "offload"]
    marking_suite.runpytest_inprocess(*args).assert_outcomes(passed=1)
    res = marking_suite.runpytest_inprocess("-p", "xdist", "-n", "2", *args)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["ERROR: glu-prune: --glu-device-map spreads one model over "
                              "several devices and -n pins one GPU per worker: run without -n"])


def test_bad_option_stops_an_xdist_run_in_the_controller(marking_suite):
    res = marking_suite.runpytest_inprocess("-p", "xdist", "-n", "2", "--glu-models=tiny-llama",
                                            "--glu-ppl-tol=wikitext=nan")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["ERROR: glu-prune: --glu-ppl-tol=wikitext=nan: *"])
    assert not (marking_suite.path / "built").exists()


def test_wrong_model_fails_its_suite_tests(tmp_path):
    """The tiny model saved as llama-3.2-1b/: the suite's own invariant test fails on it
    (not skipped, not run) with the registered and the found architecture named."""
    model, _ = load_model("tiny-llama", device="cpu")
    model.save_pretrained(tmp_path / "models" / "llama-3.2-1b")
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "invariants",
           "tests/suite/test_invariants.py::test_variant_shapes_and_counts",
           "--glu-models=llama-3.2-1b", "--glu-levels=0,40",
           f"--glu-models-dir={tmp_path / 'models'}", f"--glu-report={tmp_path / 'report'}",
           f"--glu-cache-dir={tmp_path / 'cache'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, out[-3000:] + proc.stderr[-3000:]
    # a fixture's failure is reported as an error at setup; both of the model's tests get it
    assert "2 errors" in out and "passed" not in out and "skipped" not in out, out[-3000:]
    errors = out.split("= ERRORS =", 1)[-1].split("= glu-prune results =", 1)[0]
    assert errors.count("llama-3.2-1b: the model at ") == 2, out[-3000:]  # one per test
    assert ("is not llama-3.2-1b's registered architecture: hidden_size 128 vs registered "
            "2048, num_hidden_layers 4 vs registered 16, ") in out
    assert "point GLU_PRUNE_MODELS_DIR / --glu-models-dir at a folder whose llama-3.2-1b/" in out
    assert "Traceback" not in out
