"""Entropy coding of integer symbols with ``constriction``'s ANS coder.

Each latent channel has its own categorical model built from the integer frequency table stored
with the weights (``quantizer.freqs``). The tables are integers, and constriction quantises them
to fixed point deterministically, so a bitstream decodes bit-exactly on any machine.
"""

from __future__ import annotations

import constriction
import numpy as np

from convae.errors import FormatError


class EntropyCoder:
    """Codes ``(C, H, W)`` symbol arrays; one categorical model per channel."""

    def __init__(self, freqs: np.ndarray) -> None:
        freqs = np.asarray(freqs, dtype=np.float64)
        self.levels = freqs.shape[1]
        self.models = [constriction.stream.model.Categorical(row / row.sum(), perfect=False) for row in freqs]

    def encode(self, symbols: np.ndarray) -> bytes:
        """Bitstream bytes (little-endian 32-bit words) for one image's symbols."""
        coder = constriction.stream.stack.AnsCoder()
        for c in reversed(range(symbols.shape[0])):
            coder.encode_reverse(symbols[c].reshape(-1).astype(np.int32), self.models[c])
        return coder.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        """Symbols ``shape`` decoded from ``data``; a stream of the wrong length is refused."""
        if len(data) % 4:  # (empty is valid: symbols whose cumulative frequency is 0 leave the coder empty)
            raise FormatError("corrupt bitstream (length is not a whole number of 32-bit words)")
        out = np.empty(shape, dtype=np.int32)
        n = shape[1] * shape[2]
        try:
            coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
            for c in range(shape[0]):
                out[c] = coder.decode(self.models[c], n).reshape(shape[1:])
        except (ValueError, RuntimeError) as exc:  # constriction refuses e.g. a stream ending in a zero word
            raise FormatError(f"corrupt bitstream ({exc})") from exc
        if not coder.is_empty():
            raise FormatError("corrupt bitstream (data left over after the last symbol)")
        return out
