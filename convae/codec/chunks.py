"""Chunks: runs of consecutive images with one latent shape, coded together as one payload.

A chunk holds at most ``capacity(shape)`` images (``CHUNK``, fewer for large latents) and never
spans a job index that is a multiple of ``CHUNK``, so the shards of a job cut at such indices hold
exactly the chunks one process makes. Its payload is the code bytes of all its images (one ANS
stream, or the raw symbols back to back) followed by the alpha bytes of those that have them.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import numpy as np

from convae.codec.manifest import CHUNK, MAX_CHUNK_SYMBOLS, ImageEntry
from convae.entropy.coder import ChunkCoder
from convae.errors import FormatError

T = TypeVar("T")
Latent = tuple[ImageEntry, np.ndarray, bytes]  # an image's entry, symbols (C, h, w) and alpha bytes


def capacity(shape: tuple[int, ...]) -> int:
    """The most images of latent ``shape`` one chunk holds."""
    return min(CHUNK, max(1, MAX_CHUNK_SYMBOLS // math.prod(shape)))


class Chunker(Generic[T]):
    """Groups items, added in job order, into chunks and hands each complete chunk to ``emit``."""

    def __init__(self, emit: Callable[[list[T]], None]) -> None:
        self.emit = emit
        self.items: list[T] = []
        self.shape: tuple[int, ...] = ()
        self.block = 0

    def add(self, index: int, shape: tuple[int, ...], item: T) -> None:
        """Add the item at job index ``index`` whose latent has ``shape``."""
        if self.items and (shape != self.shape or index // CHUNK != self.block or len(self.items) >= capacity(shape)):
            self.flush()
        if not self.items:
            self.shape, self.block = shape, index // CHUNK
        self.items.append(item)

    def flush(self) -> None:
        """Emit the pending chunk, if any (call once after the last item)."""
        if self.items:
            items, self.items = self.items, []
            self.emit(items)


def chunk_payload(latents: list[Latent], coder: ChunkCoder | None, dtype: np.dtype) -> bytes:
    """A chunk's bytes: entropy-coded (or raw ``dtype``) symbols, then the alpha bytes."""
    symbols = [s for _, s, _ in latents]
    body = coder.encode(symbols) if coder else np.stack(symbols).astype(dtype).tobytes()
    return body + b"".join(a for _, _, a in latents)


def read_chunk(entries: Sequence[ImageEntry], data: bytes, latent_shape: Callable[[int, int], tuple[int, int, int]],
               coder: ChunkCoder | None, dtype: np.dtype, levels: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Symbols and alpha (or None) of each image of a chunk; refuses inconsistent or corrupt payloads."""
    where = f"chunk at {entries[0].path}"
    shapes = {latent_shape(e.height, e.width) for e in entries}
    shape = shapes.pop()
    if shapes:
        raise FormatError(f"{where}: its images have different latent shapes")
    if len(entries) > capacity(shape):
        raise FormatError(f"{where}: {len(entries)} images of this size are more than a chunk may hold")
    split = len(data) - sum(e.alpha_nbytes for e in entries)
    body = data[:split]
    if coder is not None:
        symbols = coder.decode(body, [shape] * len(entries))
    else:
        if len(body) != len(entries) * math.prod(shape) * dtype.itemsize:
            raise FormatError(f"{where}: code length disagrees with the image sizes in the manifest")
        symbols = list(np.frombuffer(body, dtype=dtype).reshape(len(entries), *shape).astype(np.int64))
        if max(int(s.max()) for s in symbols) >= levels:
            raise FormatError(f"{where}: symbol out of range")
    alphas = []
    for e in entries:
        alphas.append(_inflate_alpha(e, data[split : split + e.alpha_nbytes]))
        split += e.alpha_nbytes
    return list(zip(symbols, alphas, strict=True))


def _inflate_alpha(entry: ImageEntry, data: bytes) -> np.ndarray | None:
    if not data:
        return None
    try:
        inflate = zlib.decompressobj()
        raw = inflate.decompress(data, entry.width * entry.height + 1)  # bounded: no zip bomb
    except zlib.error as exc:
        raise FormatError(f"{entry.path}: corrupt alpha channel") from exc
    if len(raw) != entry.width * entry.height or not inflate.eof:
        raise FormatError(f"{entry.path}: alpha channel has the wrong size")
    return np.frombuffer(raw, dtype=np.uint8).reshape(entry.height, entry.width)
