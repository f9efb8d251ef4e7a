"""The ``-q 0..100`` scale of variable-rate models and its rate levels, kept free of PyTorch so that
`convae info` can name a code file's quality without loading a model."""

from __future__ import annotations

import re

LEVELS = 9  # trained rate levels 0..8 of a variable-rate model
DEFAULT_LEVEL = 5.0


def level_of(quality: float) -> float:
    """The rate level of ``-q quality`` (0..100, as in JPEG/WebP): ``8 * quality / 100``."""
    return (LEVELS - 1) * quality / 100


def quality_of(level: float) -> float:
    """``level_of``'s inverse, rounded to 2 decimals for summaries."""
    return round(100 * level / (LEVELS - 1), 2)


def variant_quality(variant: str, level: float | None) -> float | None:
    """The quality codes were made at: a variable-rate model's level on the 0..100 scale, else the ``N`` of a
    fixed-rate ``NAME-qN`` variant (the zoo's naming), else None."""
    if level is not None:
        return quality_of(level)
    match = re.fullmatch(r".+-q(\d+)", variant)
    return int(match[1]) if match else None
