"""One glu-prune session per pytest process: options read once, the variant matrix, the
builder, the results collector and, when first needed, the evaluation and latency suites.

The plugin's hooks and fixtures (``glu_prune.plugin``) each hand off to it; it lives under
``SESSION_KEY``, the plugin's only stash key.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Callable

import pytest

from glu_prune.console import quiet_libraries
from glu_prune.catalog.models import get_model_spec
from glu_prune.core.loading import (MODELS_DIR_ENV, ArchitectureMismatch, UnreadableWeights,
                                    WeightsUnavailable)
from glu_prune.core.variants import BuiltVariant, VariantCache, VariantId, select_variants
from glu_prune.plugin import quality
from glu_prune.plugin.gpus import pin_worker
from glu_prune.plugin.options import Options
from glu_prune.plugin.perf import PerfSuite
from glu_prune.plugin.placement import refuse_under_xdist
from glu_prune.plugin.results import ResultsCollector
from glu_prune.plugin.unmeasured import unmeasured
from glu_prune.plugin.variants import (BUILD_KEY, BuildCounter, LoadgroupGuard,
                                       all_model_names, parametrize)

LOG = logging.getLogger(__name__)

XDIST_GROUP_MARKER = "xdist_group(name): run in one xdist worker (per variant)"


class GluSession:
    """The session's state; ``start`` builds it in ``pytest_configure``."""

    def __init__(self, config: pytest.Config, opts: Options, variants: list[VariantId]) -> None:
        self.config = config
        self.opts = opts
        self.variants = variants
        self.cache = VariantCache(device=opts.device, model_dir=opts.models_dir,
                                  calibration=opts.calibration_for, placement=opts.placement,
                                  stream_dir=opts.stream_dir)
        self.builds = BuildCounter()
        self.worker = hasattr(config, "workerinput")
        # the controller writes the results; xdist workers only send records
        self.results = None if self.worker else ResultsCollector(
            opts.report_dir, plots=opts.plots, models=opts.models or all_model_names(),
            options=opts.raw, args=list(config.invocation_params.args), root=config.rootpath,
            workers=getattr(config.option, "numprocesses", None))
        loadgroup = not self.worker and getattr(config.option, "dist", None) == "loadgroup"
        self.guard = LoadgroupGuard([v.slug for v in variants]) if loadgroup else None
        self._quality: quality.EvalSession | None = None
        self.perf = PerfSuite(opts)

    @classmethod
    def start(cls, config: pytest.Config) -> GluSession:
        """Pin this xdist worker's GPU (before anything can start CUDA), read and check the
        options, refuse what cannot run, select the variant matrix."""
        workerinput = getattr(config, "workerinput", None)
        if workerinput is not None:  # an xdist worker: take its own GPU before CUDA starts
            try:
                pin_worker(workerinput["workerid"], int(workerinput["workercount"]))
            except ValueError as exc:
                raise pytest.UsageError(f"glu-prune: {exc}") from None
        opts = Options.read(config)  # after pinning: checking --glu-device may start CUDA
        if opts.stream and opts.shapes.shapes != ("width",):
            raise pytest.UsageError(
                f"glu-prune: --glu-stream builds width variants only (the same neurons cut "
                f"in every layer); --glu-shapes={','.join(opts.shapes.shapes)} asks for "
                f"others: drop one of the two")
        PerfSuite.refuse_xdist(config)
        refuse_under_xdist(config, opts.placement)
        # registered here so --strict-markers runs also work with -p no:xdist
        config.addinivalue_line("markers", XDIST_GROUP_MARKER)
        try:
            variants = select_variants(opts.models or all_model_names(), opts.methods,
                                       opts.levels, opts.round_tos, opts.calibration_for)
            variants = opts.shapes.expand(variants, opts.calibration_for)
        except (KeyError, ValueError) as exc:
            raise pytest.UsageError(f"glu-prune: {exc.args[0]}") from None
        return cls(config, opts, variants)

    @property
    def quality(self) -> quality.EvalSession:
        """The accuracy/perplexity session, made when a test first needs it."""
        if self._quality is None:
            self._quality = quality.EvalSession.from_options(
                self.opts, self.say, self.uncaptured, newline=self._newline())
        return self._quality

    def say(self, message: str) -> None:
        """Progress of the evaluation: logged (the console shows one line per benchmark)."""
        quality.LOG.info(message)

    def uncaptured(self) -> Any:
        """A context in which lm-eval's bars reach the terminal (capture off), when there
        is a terminal; else nothing changes."""
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        if capman is not None and self._reporter() is not None:
            return capman.global_and_fixture_disabled()
        return contextlib.nullcontext()

    def _reporter(self) -> Any:
        return self.config.pluginmanager.get_plugin("terminalreporter")

    def _newline(self) -> Callable[[], None]:
        reporter = self._reporter()
        return reporter.ensure_newline if reporter is not None else quality._no_newline

    def parametrize(self, metafunc: pytest.Metafunc) -> None:
        """Variant tests (x their per-variant axis), then the latency/energy axes."""
        parametrize(metafunc, self.variants, quality.PER_VARIANT_PARAMS)
        self.perf.parametrize(metafunc)

    def build(self, variant_id: VariantId, request: pytest.FixtureRequest) -> BuiltVariant:
        """The ``variant`` fixture: ``variant_id`` built once per process; skips when its
        weights cannot be had (fails with ``--glu-require-weights`` or
        ``--glu-require-baselines``), fails in one line on a wrong model or an unreadable
        weights file."""
        before = self.cache.builds.get(variant_id.slug, 0)
        wrong_model = None
        try:
            # transformers' "Loading weights" bar and load chatter: only with pytest -v
            with quiet_libraries(verbose=self.opts.verbose > 0):
                built = self.cache.get(variant_id)
        except WeightsUnavailable as exc:
            if self.opts.require_weights:
                pytest.fail(str(exc), pytrace=False)
            unmeasured(str(exc), self.opts.require_baselines)
        except ArchitectureMismatch as exc:  # a wrong model, not a missing one: never a skip
            spec = get_model_spec(variant_id.model)
            wrong_model = (f"{exc}; point {MODELS_DIR_ENV} / --glu-models-dir at a folder "
                           f"whose {spec.name}/ holds {spec.hf_id or 'that model'}")
        except UnreadableWeights as exc:  # a broken model, not a missing one: never a skip
            wrong_model = str(exc)
        if wrong_model is not None:  # failed outside the except: pytest would print it twice
            pytest.fail(wrong_model, pytrace=False)
        if self.cache.builds[variant_id.slug] > before:  # travels to the xdist controller
            event = f"{os.getpid()}:{self.cache.builds[variant_id.slug]}"  # one id per build
            request.node.user_properties.append((BUILD_KEY, (variant_id.slug, event)))
        return built

    def release(self) -> None:
        """Unlock the report folder (when the session never finished)."""
        if self.results is not None:
            self.results.release()


SESSION_KEY = pytest.StashKey[GluSession]()


def session_of(config: pytest.Config) -> GluSession:
    """The glu-prune session of ``config`` (started in ``pytest_configure``)."""
    return config.stash[SESSION_KEY]
