"""glu-prune: structured width pruning of Llama GLU-MLP layers, and a pytest suite to judge it."""

from glu_prune.models import MODELS, ModelSpec, WeightsUnavailable, get_model_spec, load_model
from glu_prune.prune import PruneReport, expansion_table, kept_count, prune_glu_mlp

__version__ = "0.1.0"
__all__ = ["MODELS", "ModelSpec", "PruneReport", "WeightsUnavailable", "expansion_table",
           "get_model_spec", "kept_count", "load_model", "prune_glu_mlp", "__version__"]
