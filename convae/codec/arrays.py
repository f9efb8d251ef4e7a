"""Arrays <-> code bytes: ``encode`` and ``decode`` for Python callers who hold pixels, not files.

Both go through the file pipeline (``api.compress``/``api.decompress``) in a private temporary folder, the
pixels as lossless PNGs: the same checks, the same code bytes and the same reconstructions as the CLI, by
construction, at the cost of a PNG round trip per image.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from convae.codec.api import compress, decompress
from convae.codec.format import open_codes
from convae.errors import UsageError
from convae.images import output_names, write_png

_CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def encode(images: np.ndarray | Sequence[np.ndarray], model: str | None = None, quality: float | None = None,
           gray: bool = False) -> bytes:
    """Code uint8 images (``(H, W)`` or ``(H, W, C)``, C = 1, 2, 3 or 4; one array or a list) into the bytes of
    one code file, as ``convae compress`` writes it (``np.load`` of the bytes reads it)."""
    arrays = [images] if isinstance(images, np.ndarray) else list(images)
    if not arrays:
        raise UsageError("encode: give at least one image")
    with tempfile.TemporaryDirectory(prefix="convae-encode-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for i, array in enumerate(arrays):
            write_png(folder / f"{i:08d}.png", _image(array, i))
        compress([folder], Path(tmp) / "codes.npy", model=model, quality=quality, gray=gray)
        return (Path(tmp) / "codes.npy").read_bytes()


def _image(array: np.ndarray, i: int) -> np.ndarray:
    """``array`` as ``(H, W, C)`` uint8 for ``write_png``, or a ``UsageError`` saying what is accepted."""
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] not in _CHANNELS or 0 in a.shape:
        raise UsageError(f"encode: image {i} is {a.dtype} {a.shape}; give uint8 arrays (H, W) or (H, W, C) with "
                         "C = 1, 2, 3 or 4")
    return a


def decode(codes: bytes | str | Path, model: str | None = None) -> list[np.ndarray]:
    """The images of a code file (its bytes, or its path) as uint8 ``(H, W, C)`` arrays in coding order:
    C = 1 (gray) or 3 (RGB), one more with transparency."""
    with tempfile.TemporaryDirectory(prefix="convae-decode-") as tmp:
        if isinstance(codes, bytes):
            path = Path(tmp) / "codes.npy"
            path.write_bytes(codes)
        else:
            path = Path(codes)
        names = output_names([e.path for e in open_codes(path).manifest.entries], ".npy")
        decompress(path, Path(tmp) / "out", model=model, fmt="npy")
        return [np.load(Path(tmp) / "out" / name, allow_pickle=False) for name in names]
