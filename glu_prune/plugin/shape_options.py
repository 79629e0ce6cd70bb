"""The pruning-shape options: ``--glu-shapes`` (which shapes run) and
``--glu-depth-methods`` (how depth variants choose their layers): one field of ``Options``
(``shape_field``), declared, checked and read here.

The default runs width only, so a run without these options selects, names and costs
what it did before shapes existed. Other shapes are matched to the width levels at
equal parameters (``glu_prune.core.matching.shape_variants``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from glu_prune.core.depth import LAYER_METHODS
from glu_prune.core.matching import shape_variants
from glu_prune.core.shapes import SHAPE_BUILDERS
from glu_prune.core.variants import CalibrationFor, VariantId
from glu_prune.plugin.checks import BadOption, parse_list
from glu_prune.plugin.option_spec import Parsing, Spec, options

SHAPES_OPTION, DEPTH_METHODS_OPTION = "--glu-shapes", "--glu-depth-methods"
DEFAULT_SHAPES = ("width",)
DEFAULT_DEPTH_METHODS = ("bi", "angular", "last")  # ShortGPT, Gromov et al., the baseline

SPECS = (
    Spec(SHAPES_OPTION, f"comma list of pruning shapes: {', '.join(SHAPE_BUILDERS)}; depth "
                        f"and global variants are matched to each width level at equal "
                        f"parameters, ids say the shape (-k depth, -k global) "
                        f"(default: {','.join(DEFAULT_SHAPES)})", metavar="LIST"),
    Spec(DEPTH_METHODS_OPTION, f"comma list of layer selection methods of depth variants: "
                               f"{', '.join(LAYER_METHODS)}; bi and angular score on the "
                               f"calibration data, see --glu-calib-* (default: "
                               f"{','.join(DEFAULT_DEPTH_METHODS)}, when depth is a shape)",
         metavar="LIST"),
)


def _items(text: Any) -> list[str]:
    return parse_list(text) or []


def check_shape_options(shapes_text: Any, methods_text: Any) -> None:
    """``ValueError`` (one line) for an unknown shape or layer method, a name given twice,
    or depth methods given while depth is not a shape."""
    for option, text, known in ((SHAPES_OPTION, shapes_text, list(SHAPE_BUILDERS)),
                                (DEPTH_METHODS_OPTION, methods_text, list(LAYER_METHODS))):
        items = _items(text)
        valid = f"a comma list of {', '.join(known)}"
        if text is not None and not items:
            raise BadOption(option, text, valid, "empty")
        for name in items:
            if name not in known:
                raise BadOption(option, text, valid, f"unknown name {name!r}")
            if items.count(name) > 1:
                raise BadOption(option, text, valid, f"{name!r} is given twice")
    if methods_text is not None and "depth" not in (_items(shapes_text) or DEFAULT_SHAPES):
        raise BadOption(DEPTH_METHODS_OPTION, methods_text,
                        f"add depth to {SHAPES_OPTION}, or drop {DEPTH_METHODS_OPTION}",
                        f"given, but depth is not in {SHAPES_OPTION}, so no depth variant "
                        f"would use them")


@dataclass(frozen=True)
class ShapeChoice:
    """The shapes a run asked for and the depth variants' layer methods."""

    shapes: tuple[str, ...] = DEFAULT_SHAPES
    depth_methods: tuple[str, ...] = DEFAULT_DEPTH_METHODS

    @classmethod
    def read(cls, p: Parsing) -> ShapeChoice:
        """The checked values of the two options."""
        shapes, methods = p.raw(SHAPES_OPTION), p.raw(DEPTH_METHODS_OPTION)
        check_shape_options(shapes, methods)
        return cls(tuple(_items(shapes)) or DEFAULT_SHAPES,
                   tuple(_items(methods)) or DEFAULT_DEPTH_METHODS)

    def expand(self, width: Sequence[VariantId], calibration: CalibrationFor
               ) -> list[VariantId]:
        """The run's variants: ``width`` itself when only width is asked for (as before
        shapes existed), else the requested shapes matched to its levels."""
        if self.shapes == DEFAULT_SHAPES:
            return list(width)
        return shape_variants(width, self.shapes, self.depth_methods, calibration)


def shape_field() -> Any:
    """The ``Options`` field the two options fill (a ``ShapeChoice``)."""
    return options(SPECS, ShapeChoice.read)
