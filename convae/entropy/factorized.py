"""Entropy coding of integer symbols with ``constriction``'s ANS coder.

Each latent channel has its own categorical model built from the integer frequency table stored
with the weights (``quantizer.freqs``). The tables are integers, and constriction quantises them
to fixed point deterministically, so a bitstream decodes bit-exactly on any machine. A chunk of
images is one stream: images and channels are pushed last to first, so they pop first to last.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import constriction
import numpy as np

from convae.errors import FormatError


class EntropyCoder:
    """Codes chunks of ``(C, H, W)`` symbol arrays into one stream; one categorical model per channel."""

    def __init__(self, freqs: np.ndarray) -> None:
        freqs = np.asarray(freqs, dtype=np.float64)
        self.levels = freqs.shape[1]
        self.models = [constriction.stream.model.Categorical(row / row.sum(), perfect=False) for row in freqs]

    def encode(self, symbols: list[np.ndarray]) -> bytes:
        """Bitstream bytes (little-endian 32-bit words) for the symbols of a chunk's images."""
        coder = constriction.stream.stack.AnsCoder()
        for image in reversed(symbols):
            for c in reversed(range(image.shape[0])):
                coder.encode_reverse(image[c].reshape(-1).astype(np.int32), self.models[c])
        return stream_bytes(coder)

    def decode(self, data: bytes, shapes: list[tuple[int, int, int]]) -> list[np.ndarray]:
        """Symbols of each shape decoded from ``data``; a stream of the wrong length is refused."""
        out = [np.empty(shape, dtype=np.int32) for shape in shapes]
        with reading(data) as coder:
            for image in out:
                for c in range(image.shape[0]):
                    image[c] = coder.decode(self.models[c], image[c].size).reshape(image.shape[1:])
        return out


def stream_bytes(coder: constriction.stream.stack.AnsCoder) -> bytes:
    """An encoder's stream as bytes: little-endian 32-bit words."""
    return coder.get_compressed().astype("<u4").tobytes()


@contextmanager
def reading(data: bytes) -> Iterator[constriction.stream.stack.AnsCoder]:
    """A decoder over ``data``; a corrupt stream, or data left once the body has decoded, raises ``FormatError``."""
    if len(data) % 4:  # (empty is valid: symbols whose cumulative frequency is 0 leave the coder empty)
        raise FormatError("corrupt bitstream (length is not a whole number of 32-bit words)")
    try:
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        yield coder
    except (ValueError, RuntimeError) as exc:  # constriction refuses e.g. a stream ending in a zero word
        raise FormatError(f"corrupt bitstream ({exc})") from exc
    if not coder.is_empty():
        raise FormatError("corrupt bitstream (data left over after the last symbol)")
