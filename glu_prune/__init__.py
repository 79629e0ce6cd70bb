"""glu-prune: structured pruning of GLU-MLP decoders (width, per-layer widths, depth), and a
pytest suite to judge it."""

from glu_prune.catalog import models  # noqa: F401  (README: glu_prune.models.make_config)
from glu_prune.catalog.models import MODELS, ModelSpec, get_model_spec
from glu_prune.core.arithmetic import expansion_table, kept_count
from glu_prune.core.depth import prune_depth
from glu_prune.core.loading import WeightsUnavailable, load_model
from glu_prune.core.nonuniform import load_pruned, prune_global, prune_selective
from glu_prune.core.prune import PruneReport, prune_glu_mlp

__version__ = "0.1.0"
__all__ = ["MODELS", "ModelSpec", "PruneReport", "WeightsUnavailable", "expansion_table",
           "get_model_spec", "kept_count", "load_model", "load_pruned", "prune_depth",
           "prune_global", "prune_glu_mlp", "prune_selective", "__version__"]
