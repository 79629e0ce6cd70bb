"""Baselines, and the one tolerance / verdict / pin-and-update flow for quality
and for speed.

``verdict`` (what a check is and what judging says, the one message format), ``rules`` (the
tolerances), ``flow`` (``judge``: pin or compare), ``quality_store`` (per-model accuracy and
perplexity files), ``speed_store`` (per-device latency and energy files). Other packages
import these names from here.
"""

from glu_prune.judging.flow import judge
from glu_prune.judging.quality_store import QualityBaselines
from glu_prune.judging.rules import Tolerance, prefill_efficiency_floor
from glu_prune.judging.speed_store import DeviceInfo, SpeedBaselines, describe_device
from glu_prune.judging.verdict import (OUTCOMES, UPDATE_FLAG, Check, JudgingError, Subject,
                                       Verdict)

__all__ = ["Tolerance", "DeviceInfo", "describe_device", "JudgingError", "Subject", "Check",
           "Verdict", "judge", "UPDATE_FLAG", "OUTCOMES", "QualityBaselines", "SpeedBaselines",
           "prefill_efficiency_floor"]
