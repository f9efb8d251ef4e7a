"""The protocol every chunk coder implements: a list of equally shaped symbol arrays <-> one ANS stream."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class ChunkCoder(Protocol):
    """Entropy coder of one model: ``(C, H, W)`` quantiser symbols of a chunk of images to bytes and back."""

    def encode(self, symbols: list[np.ndarray]) -> bytes:
        """One stream holding every array of ``symbols`` (all of one shape)."""
        ...

    def decode(self, data: bytes, shapes: list[tuple[int, int, int]]) -> list[np.ndarray]:
        """The arrays ``encode`` was given, from its stream and their shapes; ``FormatError`` if damaged."""
        ...
