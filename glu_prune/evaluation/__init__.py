"""lm-eval on an in-memory model, one benchmark at a time; content identities
and the result cache; checks that run before evaluation.

Other packages import these names from here, not from the modules inside:
``settings`` (what a run is and returns, cache keys), ``cache`` (the result cache),
``harness`` (lm-eval calls), ``runner`` (one variant, benchmark by benchmark),
``identity`` (content identities), ``preflight`` (checks before evaluating).
"""

from glu_prune.evaluation.cache import ResultCache, atomic_write_text
from glu_prune.evaluation.harness import EvalError, TaskSource
from glu_prune.evaluation.identity import model_identity, task_fingerprint
from glu_prune.evaluation.preflight import PreflightError, check_ifeval_resources
from glu_prune.evaluation.runner import (BenchmarkFailed, VariantEvaluation, VariantRunner,
                                         benchmark_failure, evaluate_variant)
from glu_prune.evaluation.settings import (BenchResult, EvalSettings, MetricValue, cache_key,
                                           run_settings)

__all__ = ["BenchResult", "BenchmarkFailed", "EvalError", "EvalSettings", "MetricValue",
           "PreflightError", "ResultCache", "TaskSource", "VariantEvaluation", "VariantRunner",
           "atomic_write_text", "benchmark_failure", "cache_key", "check_ifeval_resources",
           "evaluate_variant", "model_identity", "run_settings", "task_fingerprint"]
