"""Read any common image file into uint8 pixels for a model, and restore reconstructions.

Modes: 1, L, LA, P, PA, RGB, RGBA, CMYK, YCbCr, I;16 (and variants), I, F. EXIF orientation is
applied. Alpha is split off (kept losslessly by the codec); 16-bit images are coded at 8 bits
and written back as 16-bit. PNG cannot hold CMYK, so CMYK images come back as RGB. What coding
drops is warned about by name: frames after the first (GIF, APNG, TIFF), an ICC profile.

Images declaring more than ``max_pixels()`` pixels (``MAX_PIXELS`` unless raised) are refused as
decompression bombs before any pixel is decoded; Pillow's fixed check is replaced by this one.
"""

from __future__ import annotations

import functools
import io
import math
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from convae.atomic import write_bytes
from convae.errors import DataError, UsageError

# Pillow formats a folder scan skips: they need external programs or are stubs without a decoder
_NOT_SCANNED = frozenset({"EPS", "BUFR", "GRIB", "HDF5", "MPEG", "WMF"})
MAX_PIXELS = 1 << 26  # the default limit per image: 67 M pixels (8192 x 8192); larger ones are refused as bombs
PIXEL_CEILING = 1 << 31  # the highest the limit may be raised to, and the most a manifest may declare
LIMIT_ENV = "CONVAE_MAX_PIXELS"  # set by --max-pixels, so that worker processes see it too
Image.MAX_IMAGE_PIXELS = None  # Pillow's fixed bomb check (a warning, then an error at 179 M): ours replaces it
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_GRAY = ("1", "L", "LA", "La", "F", *_SIXTEEN_BIT)
_CHANNEL_MODES = {1: "L", 3: "RGB"}

T = TypeVar("T")

@dataclass
class Decoded:
    """Pixels as the model needs them, plus what is needed to restore the original."""

    pixels: np.ndarray  # (H, W, C) uint8, C = the model's channels
    alpha: np.ndarray | None  # (H, W) uint8, None when the image has no or a fully opaque alpha
    mode: str  # original PIL mode
    has_alpha: bool


@functools.cache
def image_suffixes() -> frozenset[str]:
    """File suffixes a folder scan takes: those of every format this Pillow can open (what a file argument takes)."""
    registered = Image.registered_extensions()
    return frozenset(ext for ext, fmt in registered.items() if fmt in Image.OPEN and fmt not in _NOT_SCANNED)


def find_images(inputs: list[Path]) -> tuple[Path, list[Path]]:
    """Expand files and folders (recursively) into image files sorted by path relative to a root.

    The root is the input folder itself for a single folder, else the common parent of all inputs.
    """
    files: list[Path] = []
    for item in inputs:
        if not item.exists():
            raise DataError(f"{item}: no such file or folder")
        if item.is_dir():
            suffixes = image_suffixes()
            found = [p for p in item.rglob("*") if p.suffix.lower() in suffixes and p.is_file()]
            if not found:
                raise DataError(f"{item}: folder holds no images (no file ending in a suffix Pillow reads, such as "
                                ".png .jpg .webp .tif .pgm; `python -m PIL.features` lists them)")
            files.extend(found)
        else:
            files.append(item)
    if len(inputs) == 1 and inputs[0].is_dir():
        root = inputs[0]
    else:  # absolute without resolving symlinks, so a linked file keeps its name
        files = [Path(os.path.abspath(p)) for p in files]
        root = Path(os.path.commonpath([str(p.parent) for p in files]))
    files = sorted(set(files), key=lambda p: p.relative_to(root).as_posix())
    return root, files


def read_image(path: Path, channels: int | None = None) -> Decoded:
    """Decode ``path`` into uint8 pixels with ``channels`` (1 or 3) channels, or (None) its own: 1 for
    grayscale modes, else 3 (``to_channels`` converts them later, to the same pixels)."""
    with _open(path) as img:
        try:
            _warn_dropped(path, img)
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # no copy of images that need no rotation
        except MemoryError as exc:
            raise DataError(f"{path}: too large to decode in memory") from exc
        except Exception as exc:  # Pillow's decoders raise many types (OSError, SyntaxError, struct.error...)
            raise DataError(f"{path}: cannot decode image ({_reason(exc)})") from exc
        return _split(img, channels)


def _warn_dropped(path: Path, img: Image.Image) -> None:
    """Warn (one line, naming the file) about what coding drops: frames after the first, an ICC profile."""
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        warnings.warn(f"{path}: has {frames} frames; only the first is coded", stacklevel=3)
    if img.info.get("icc_profile"):
        warnings.warn(f"{path}: its ICC colour profile is dropped (pixels are coded as stored; the PNG is untagged)",
                      stacklevel=3)


def max_pixels() -> int:
    """The pixel limit per image: ``MAX_PIXELS``, or what ``CONVAE_MAX_PIXELS`` (``--max-pixels``) sets."""
    raw = os.environ.get(LIMIT_ENV, "").strip().replace("_", "")
    if not raw:
        return MAX_PIXELS
    if not raw.isdigit() or not 1 <= int(raw) <= PIXEL_CEILING:
        raise UsageError(f"{LIMIT_ENV}={os.environ[LIMIT_ENV]!r}: give a whole number of pixels from 1 to "
                         f"{PIXEL_CEILING:,} (default {MAX_PIXELS:,})")
    return int(raw)


def over_limit(what: object, w: int, h: int, limit: int) -> DataError:
    """The error for an image of ``w`` x ``h`` over the pixel limit: what to do if it is real."""
    return DataError(f"{what}: declares {w}x{h} pixels, over the limit of {limit:,}: refused as a possible "
                     f"decompression bomb (if the image is real, raise the limit with --max-pixels {w * h})")


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or type(exc).__name__


def _open(path: Path) -> Image.Image:
    limit = max_pixels()
    try:
        img = Image.open(path)  # reads the header only; the size is checked below, before any pixel is decoded
    except Image.DecompressionBombError as exc:  # Pillow's own check is off (below); kept for plugins that call it
        raise DataError(f"{path}: refused as a possible decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise DataError(f"{path}: not an image file, or an unsupported format") from exc
    except PermissionError as exc:
        raise DataError(f"{path}: permission denied") from exc
    except IsADirectoryError as exc:
        raise DataError(f"{path}: is a folder, not an image file") from exc
    except Exception as exc:  # Pillow's header parsers may raise more than OSError on hostile files
        raise DataError(f"{path}: cannot read ({_reason(exc)})") from exc
    w, h = img.size
    if w <= 0 or h <= 0:
        img.close()
        raise DataError(f"{path}: declares {w}x{h} pixels: not an image")
    if w * h > limit:
        img.close()
        raise over_limit(path, w, h, limit)
    return img


def _split(img: Image.Image, channels: int | None) -> Decoded:
    mode = img.mode
    alpha = None
    has_alpha = mode in ("LA", "La", "RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        img = img.convert("LA" if mode in ("LA", "La") else "RGBA")
        a = np.asarray(img.getchannel("A"))
        alpha = None if bool((a == 255).all()) else a.copy()
        img = img.convert("L" if img.mode == "LA" else "RGB")
    if mode in _SIXTEEN_BIT:
        wide = np.asarray(img, dtype=np.int64)
        gray = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
        img = Image.fromarray(gray, "L")
    elif img.mode not in ("L", "RGB"):
        img = img.convert("L" if mode in _GRAY else "RGB")
    if channels is not None and img.mode != _CHANNEL_MODES[channels]:
        img = img.convert(_CHANNEL_MODES[channels])
    pixels = np.array(img, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return Decoded(np.ascontiguousarray(pixels), alpha, mode, has_alpha)


def to_channels(decoded: Decoded, channels: int) -> Decoded:
    """``read_image(path)``'s result with ``channels`` channels: the pixels ``read_image(path, channels)`` gives."""
    if decoded.pixels.shape[2] == channels:
        return decoded
    have = decoded.pixels[:, :, 0] if decoded.pixels.shape[2] == 1 else decoded.pixels
    pixels = np.array(Image.fromarray(have, _CHANNEL_MODES[decoded.pixels.shape[2]]).convert(_CHANNEL_MODES[channels]))
    return Decoded(pixels.reshape(*pixels.shape[:2], channels), decoded.alpha, decoded.mode, decoded.has_alpha)


def as_written(decoded: Decoded, recon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Original and reconstruction in the channels decompress writes: a gray image a colour model coded is
    compared in gray (as ``restore`` converts it), so PSNR is of what the user gets."""
    if decoded.mode in _GRAY and recon.shape[2] == 3 and decoded.pixels.shape[2] == 3:
        gray = np.array(Image.fromarray(recon, "RGB").convert("L"))
        return decoded.pixels[:, :, :1], gray[:, :, None]
    return decoded.pixels, recon


def restore(pixels: np.ndarray, mode: str, alpha: np.ndarray | None, has_alpha: bool) -> Image.Image:
    """Turn reconstructed uint8 ``(H, W, C)`` pixels back into an image of the original mode."""
    img = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, "L" if pixels.shape[2] == 1 else "RGB")
    want = "L" if mode in _GRAY else "RGB"
    if img.mode != want:
        img = img.convert(want)
    if has_alpha:
        a = Image.fromarray(alpha, "L") if alpha is not None else Image.new("L", img.size, 255)
        img.putalpha(a)
        return img
    if mode in _SIXTEEN_BIT:
        wide = np.asarray(img, dtype=np.uint16) * np.uint16(257)
        return Image.fromarray(wide.astype("<u2"))  # little-endian uint16 is Pillow's "I;16"
    if mode == "1":
        return img.convert("1", dither=Image.Dither.NONE)
    if mode == "P":
        return img.quantize(256, dither=Image.Dither.NONE)
    return img


def output_names(rels: list[str], suffix: str = ".png") -> list[str]:
    """Relative output paths for the inputs' relative paths: ``a.jpg`` -> ``a.png`` (or ``suffix``).

    An input that already ends in ``suffix`` keeps its name; any other input whose new name is
    taken gets ``a.jpg.png`` (then ``a.jpg.1.png``, ...). Names are compared case-folded, so they
    stay distinct on case-insensitive file systems too (``A.png``, ``a.png`` -> ``A.png``,
    ``a.png.png``): deterministic, clash-free, the same on every file system.
    """
    bases = [PurePosixPath(r).with_suffix(suffix).as_posix() for r in rels]
    claims = Counter(b.casefold() for b in bases)
    owners: dict[str, int] = {}  # case-folded name -> the input keeping it: the first so named, else a sole claimant
    for i, (r, b) in enumerate(zip(rels, bases, strict=True)):
        if (b == r or claims[b.casefold()] == 1) and b.casefold() not in owners:
            owners[b.casefold()] = i
    taken = set(owners)
    names = []
    for i, (r, b) in enumerate(zip(rels, bases, strict=True)):
        if owners.get(b.casefold()) == i:
            names.append(b)
            continue
        name, n = r + suffix, 0
        while name.casefold() in taken:
            n += 1
            name = f"{r}.{n}{suffix}"
        taken.add(name.casefold())
        names.append(name)
    return names


def png_bytes(img: Image.Image | np.ndarray) -> bytes:
    """``img``, or uint8 ``(H, W, C)`` pixels with 1 or 3 channels, encoded as a PNG in memory."""
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def array_bytes(pixels: np.ndarray, mode: str, alpha: np.ndarray | None, has_alpha: bool) -> bytes:
    """A reconstruction as a ``.npy`` file in memory: uint8 ``(H, W, C)``, C = 1 (gray) or 3 (RGB), one more
    with transparency; 8 bits per channel whatever the original's depth (the codec codes 8 bits)."""
    img = restore(pixels, "L" if mode in _GRAY else "RGB", alpha, has_alpha)
    array = np.asarray(img, dtype=np.uint8)
    buf = io.BytesIO()
    np.save(buf, array.reshape(*array.shape[:2], -1), allow_pickle=False)
    return buf.getvalue()


def write_new(path: Path, data: bytes) -> int:
    """Write ``data`` to the new file ``path`` (an existing one is an error) with one open, write and close."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    return len(data)


def write_png(path: Path, img: Image.Image | np.ndarray, atomic: bool = False) -> int:
    """Write ``img`` (as for ``png_bytes``) to ``path`` as a PNG; returns its size in bytes.

    ``atomic``: through a temporary file renamed onto ``path``. Otherwise the file must be new (an existing
    one is an error) and is made with one open, write and close: for a small image, Pillow's own save to a
    path (exists check, buffered file object, seeks) costs more than the encoding.
    """
    data = png_bytes(img)
    if atomic:
        write_bytes(path, data)
        return len(data)
    return write_new(path, data)


def batched(items: Iterable[T], max_count: int, weight: Callable[[T], float] | None = None,
            max_weight: float = math.inf) -> Iterator[list[T]]:
    """Consecutive lists of at most ``max_count`` items, a list also ending once the ``weight`` of its items
    (pixels, say) reaches ``max_weight``; items are taken one at a time, so ``items`` may be a stream."""
    batch: list[T] = []
    total = 0.0
    for item in items:
        batch.append(item)
        if weight is not None:
            total += weight(item)
        if len(batch) >= max_count or total >= max_weight:
            yield batch
            batch, total = [], 0.0
    if batch:
        yield batch
