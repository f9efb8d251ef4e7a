"""compress / decompress: image files <-> a code file, streamed in batches with bounded memory.

The image workers (imagepool.py) start before this module imports the model side (inference.py,
PyTorch), so reading overlaps that import. Memory is bounded by the read-ahead
(``READ_AHEAD_BYTES``), batches of ``batch_size`` images and ``MAX_BATCH_PIXELS`` pixels, one chunk
of symbols at a time (chunks.py), codes streamed to a temporary file and read back through a memory
map; only the per-image manifest entries grow with the number of images.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from convae._imports import torch_loading
from convae.atomic import publish, staged_folder
from convae.codec.chunks import Chunker, Latent, chunk_payload
from convae.codec.format import CodeWriter, open_codes, symbol_dtype
from convae.codec.imagepool import ImagePool, written_bytes
from convae.codec.manifest import ImageEntry, ShardInfo
from convae.codec.shards import job_inputs, parse_shard
from convae.errors import DataError, FormatError, OutputError, UsageError
from convae.images import Decoded, as_written, batched, max_pixels, output_names, over_limit, to_channels
from convae.quality import variant_quality

Progress = Callable[[int, int], None]  # (images just done, images in the run)
COLOUR_MODEL = "photov"  # zoo.DEFAULT_MODEL, named in the refusal of colour images (no zoo import here)
GRAY_TOLERANCE = 2  # channel spread (of 255) up to which an RGB image counts as gray: lossy formats' rounding
MAX_BATCH_PIXELS = 1 << 22  # pixels per forward pass: bounds activation memory for large images
__all__ = ["Summary", "compress", "decompress", "parse_shard"]  # parse_shard: for the CLI


@dataclass
class Summary:
    """What a compress or decompress run did (printed by the CLI, or as JSON)."""

    images: int = 0
    input_bytes: int = 0
    output_bytes: int = 0
    pixels: int = 0
    seconds: float = 0.0
    skipped: list[dict[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    decoded: bool = False  # a decompress run: the code file is the input, not the output

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict with derived rates, in the code file's frame either way: ``bpp`` is the code
        file's bits per image pixel and ``ratio`` the image files' bytes over the code file's."""
        code, images = (self.input_bytes, self.output_bytes) if self.decoded else (self.output_bytes, self.input_bytes)
        return {
            "images": self.images,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "bpp": round(8 * code / self.pixels, 4) if self.pixels else None,
            "ratio": round(images / code, 3) if code else None,
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.images / self.seconds, 1) if self.seconds else None,
            "skipped": self.skipped,
            **self.extra,
        }


def _typical_file_size(files: list[Path], sample: int = 64) -> float:
    """Mean size of about ``sample`` files spread over ``files``: it only sizes the image pool's tasks and
    picks the model's thread count, and the workers stat every file anyway."""
    sizes = []
    for path in files[:: max(1, len(files) // sample)]:
        with contextlib.suppress(OSError):  # an unreadable file is reported when it is read
            sizes.append(path.stat().st_size)
    return sum(sizes) / max(1, len(sizes))


def compress(
    inputs: str | Path | Sequence[str | Path],
    out: str | Path,
    model: str | None = None,
    bits: int | None = None,
    raw: bool = False,
    shard: tuple[int, int] | None = None,
    on_error: str = "stop",
    force: bool = False,
    verify: bool = False,
    batch_size: int = 256,
    device: str = "cpu",
    progress: Progress | None = None,
    quality: float | None = None,
    gray: bool = False,
    effort: int = 0,
) -> Summary:
    """Compress image files and folders (one path or several, ``str`` or ``Path``) into the code file ``out``
    (.npy, its manifest inside).

    ``quality`` picks the rate: 0..100 for a variable-rate model, else the shipped ``-qN`` variant of ``model``'s
    family (``zoo.with_quality``). A colour image (three channels that differ somewhere) is refused by a
    one-channel model unless ``gray``: then it is coded as gray on purpose, and the summary counts it
    (``colour_as_gray``). ``effort`` > 0 refines each image's latents in that many steps (``codec.refine``: fewer
    bytes at the same quality, much slower). Raises a ``ConvaeError`` subclass (``convae.errors``) on bad input.
    """
    inputs = [Path(inputs)] if isinstance(inputs, (str, Path)) else [Path(p) for p in inputs]
    out = Path(out)
    if on_error not in ("stop", "skip"):
        raise UsageError(f"--on-error {on_error!r}: use stop or skip")
    if batch_size < 1 or effort < 0:
        raise UsageError(f"--batch-size {batch_size}: must be at least 1" if batch_size < 1 else
                         f"--effort {effort}: must be 0 (none) or more steps")
    start = time.perf_counter()
    files, rels, first, shard_info = job_inputs(inputs, shard)
    writer = CodeWriter(out, force, files)
    try:
        with ImagePool(_typical_file_size(files)) as pool:
            reads = pool.read(files)  # starts reading now: PyTorch loads below while the first files decode
            run = _Encoding(writer, device, verify, shard_info, gray)
            run.effort = effort
            run.load(model, quality, bits, raw)
            items = zip(range(first, first + len(files)), files, rels, reads, strict=True)
            run.encode(pool, items, len(files), batch_size, on_error == "stop", progress)
        run.commit()
    finally:
        writer.close()
    return run.finish(out, time.perf_counter() - start)


class _Encoding:
    """One compress run past its inputs: the model, quantiser and coder, and the images coded so far."""

    def __init__(self, writer: CodeWriter, device: str, verify: bool, shard: ShardInfo | None, gray: bool) -> None:
        self.writer, self.device, self.verify, self.shard, self.gray = writer, device, verify, shard, gray
        self.as_gray = 0  # colour images coded as gray (``gray``)
        self.effort = 0  # steps of latent refinement per image
        self.summary = Summary()
        self.stats: dict[str, float] = defaultdict(float)  # verify's running sums
        self.latent_shapes: set[tuple[int, ...]] = set()

    def load(self, model: str | None, quality: int | None, bits: int | None, raw: bool) -> None:
        """Import PyTorch, then load the model, its quantiser and its coder."""
        with torch_loading():  # deliberately late: see the module docstring
            from convae.codec import inference as mi
            from convae.zoo import load_at_quality

        self.mi = mi
        self.loaded = load_at_quality(model, quality)
        self.net = mi.on_device(self.loaded, self.device)
        self.q = mi.select_quantizer(self.net, bits).to(self.device)
        self.coder = None if raw else self.net.entropy_coder(self.q)
        self.coding = "ans" if self.coder else "raw"
        self.dtype = np.dtype(np.uint8) if self.coder else symbol_dtype(int(self.q.levels))
        self.no_alpha = None if self.coder else "--raw" if raw else "--bits"  # the option that loses transparency
        self.chunker: Chunker[Latent] = Chunker(
            lambda chunk: self.writer.add([e for e, _, _ in chunk], chunk_payload(chunk, self.coder, self.dtype)))

    def encode(self, pool: ImagePool, items: Iterable[tuple], total: int, batch_size: int, stop: bool,
               progress: Progress | None) -> None:
        """Code ``(index, path, rel, read)`` items in batches; each chunk goes to the writer once complete."""
        mi = self.mi
        with mi.model_threads(self.device, pool.small_images) as all_cores:
            for batch in batched(items, batch_size, _read_pixels, MAX_BATCH_PIXELS):
                if not pool.reading():  # every file read: the workers need no cores of their own
                    all_cores()
                good = _readable(batch, self, stop)
                symbols, recon = mi.encode_batch(self.net, self.q, [d for _, _, d, _ in good], self.device,
                                                 self.verify, self.effort)
                self.latent_shapes.update(_queue_codes(self.chunker, good, symbols, self.summary))
                if self.verify:
                    for (_, _, d, _), rec in zip(good, recon, strict=True):
                        mi.accumulate(self.stats, *as_written(d, rec))
                if progress:
                    progress(len(batch), total)

    def commit(self) -> None:
        """Code the last chunk and write the code file (none without images)."""
        self.chunker.flush()
        entries, shapes = self.writer.entries, self.latent_shapes
        if not entries:
            skipped = self.summary.skipped
            raise DataError(f"no image could be read ({len(skipped)} skipped, the first: "
                            f"{skipped[0]['error']}); nothing was written")
        shape = (len(entries), *shapes.pop()) if not self.coder and len(shapes) == 1 else None
        self.writer.commit(self.mi.model_header(self.loaded, self.q, self.coding, self.shard), self.dtype, shape)

    def finish(self, out: Path, seconds: float) -> Summary:
        """The run's summary, once ``commit`` wrote ``out``."""
        summary = self.summary
        summary.images = len(self.writer.entries)
        summary.output_bytes = out.stat().st_size
        summary.seconds = seconds
        report = self.mi.verify_report(self.stats) if self.verify else None
        net = self.loaded.model
        summary.extra = {"codes": str(out), "model": self.loaded.source,
                         "quality": variant_quality(net.variant, getattr(net, "level", None)),
                         "coding": self.coding, "psnr": report["psnr_of_mean_mse"] if report else None}
        if self.gray:
            summary.extra["colour_as_gray"] = self.as_gray
        if self.shard:
            summary.extra["shard"] = f"{self.shard.index}/{self.shard.count}"
        if report:
            summary.extra["verify"] = report
        return summary


def _readable(batch: list[tuple], run: _Encoding, stop: bool) -> list[tuple]:
    """``(index, rel, decoded, size)`` for the batch's images that ``run`` can code, fitted to its model's channels.

    The others raise their ``DataError`` (``stop``) or are added to the run's skipped list: images with
    transparency when the coding cannot keep it (``run.no_alpha`` names the option), colour images for a
    one-channel model unless ``run.gray``.
    """
    good, channels = [], run.net.in_channels
    for index, path, rel, (d, size) in batch:
        if isinstance(d, Decoded) and run.no_alpha and d.alpha is not None:
            d = DataError(f"{path}: has transparency, which uncoded symbols cannot keep; drop {run.no_alpha} "
                          "(entropy-coded files keep it)")
        if isinstance(d, Decoded) and channels == 1 and is_colour(d.pixels):
            if not run.gray:
                d = DataError(f"{path}: a colour image, but {run.loaded.source} codes gray only; use a colour "
                              f"model (e.g. --model {COLOUR_MODEL}), or pass --gray to code it as gray")
            else:
                run.as_gray += 1
        if isinstance(d, DataError):
            if stop:
                raise d
            run.summary.skipped.append({"path": str(path), "error": str(d)})
        else:
            good.append((index, rel, to_channels(d, channels), size))
    return good


def is_colour(pixels: np.ndarray) -> bool:
    """True when ``(H, W, C)`` uint8 pixels hold colour: three channels that differ by more than
    ``GRAY_TOLERANCE`` somewhere. An RGB file whose channels are equal is gray (a one-channel model codes it
    exactly as its gray version), and so is one within the tolerance: a gray picture saved as WebP (which
    has no gray mode) comes back with channels 1 level apart; a colour photo's differ by tens."""
    return pixels.shape[2] == 3 and int((pixels.max(axis=2) - pixels.min(axis=2)).max(initial=0)) > GRAY_TOLERANCE


def _queue_codes(chunker: Chunker[Latent], good: list[tuple], symbols: list[np.ndarray],
                 summary: Summary) -> set[tuple[int, ...]]:
    """Hand a batch's symbols to ``chunker`` with their manifest entries (and zlib-compressed alpha);
    count the images' bytes and pixels in ``summary``. Returns the batch's latent shapes."""
    for (index, rel, d, size), sym in zip(good, symbols, strict=True):
        alpha = zlib.compress(d.alpha.tobytes(), 9) if d.alpha is not None else b""
        h, w = d.pixels.shape[:2]
        chunker.add(index, sym.shape, (ImageEntry(rel, w, h, d.mode, d.has_alpha, len(alpha)), sym, alpha))
        summary.input_bytes += size
        summary.pixels += w * h
    return {sym.shape for sym in symbols}


def _read_pixels(item: tuple) -> int:
    d = item[3][0]
    return 0 if isinstance(d, DataError) else d.pixels.size


def decompress(
    src: str | Path,
    out_dir: str | Path,
    model: str | None = None,
    force: bool = False,
    batch_size: int = 256,
    device: str = "cpu",
    progress: Progress | None = None,
    fmt: str = "png",
) -> Summary:
    """Decode a code file into one PNG per image under ``out_dir``, at original size and mode (``fmt`` "npy":
    one uint8 ``(H, W, C)`` array file per image instead, for ML use).

    Files are written to a hidden staging folder and moved into place only once every image
    decoded, so a failure leaves ``out_dir`` as it was.
    """
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: must be at least 1")
    if fmt not in ("png", "npy"):
        raise UsageError(f"--format {fmt!r}: use png or npy")
    src, out_dir = Path(src), Path(out_dir)
    start = time.perf_counter()
    cf = open_codes(src)
    entries, header = cf.manifest.entries, cf.manifest.header
    _check_pixel_limit(src, entries)
    names = output_names([e.path for e in entries], f".{fmt}")
    _check_targets(out_dir, names, force)
    summary = Summary(input_bytes=cf.file_bytes, decoded=True)
    pixels = sum(e.width * e.height for e in entries) / max(1, len(entries))
    # the pool inside the staging folder: its writes stop before the folder is cleaned up on a failure
    with _naming(src), staged_folder(out_dir) as stage, ImagePool(3 * pixels) as pool:  # forks before PyTorch loads
        with torch_loading():  # after the fork: see the module docstring
            from convae.codec import inference as mi

        loaded = mi.decoder_model(header.model, model)
        net = mi.on_device(loaded, device)
        q = mi.manifest_quantizer(net, header.quantizer).to(device)
        coder = net.entropy_coder(q) if header.coding == "ans" else None
        if header.coding == "ans" and coder is None:
            raise FormatError("codes are entropy coded but the model has no table for their quantiser")
        for parent in sorted({(stage / n).parent for n in names}):
            parent.mkdir(parents=True, exist_ok=True)
        items = zip(mi.latents(cf, net, coder, int(q.levels)), names, strict=True)
        writing: list = []  # the previous batch's PNGs, written by the pool while this batch decodes
        with mi.model_threads(device, pool.small_images):
            for batch in batched(items, batch_size, lambda t: t[0][0].width * t[0][0].height, MAX_BATCH_PIXELS):
                parsed = [(e, name, sym, alpha) for (e, sym, alpha), name in batch]
                saves = pool.write(mi.decode_batch(net, q, parsed, device), stage, fmt)
                summary.output_bytes += written_bytes(writing)
                writing = saves
                summary.pixels += sum(e.width * e.height for e, *_ in parsed)
                if progress:
                    progress(len(batch), len(names))
        summary.output_bytes += written_bytes(writing)
        publish(stage, out_dir, names, replace=force)
    summary.images = len(entries)
    summary.seconds = time.perf_counter() - start
    summary.extra = {"out_dir": str(out_dir), "model": loaded.source}
    return summary


@contextlib.contextmanager
def _naming(src: Path) -> Iterator[None]:
    """Errors found while decoding (a mismatched model, a corrupt stream) name the code file, as opening errors do."""
    try:
        yield
    except FormatError as exc:
        if str(exc).startswith(str(src)):
            raise
        raise FormatError(f"{src}: {exc}") from exc


def _check_pixel_limit(src: Path, entries: tuple[ImageEntry, ...]) -> None:
    """Refuse a code file declaring an image over the pixel limit before allocating for it."""
    limit = max_pixels()
    if big := next((e for e in entries if e.width * e.height > limit), None):
        raise over_limit(f"{src}: image {big.path}", big.width, big.height, limit)


def _check_targets(out_dir: Path, names: list[str], force: bool) -> None:
    """Refuse a file where a folder should be, a folder where a file should be, and (without ``force``) any
    existing output: checked before anything is written, so publishing cannot stop half-way on them."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} exists and is not a folder")
    if not out_dir.exists():
        return
    for folder in sorted({str(p) for n in names for p in PurePosixPath(n).parents} - {"."}):
        if os.path.islink(out_dir / folder):  # writing through it would put files outside out_dir
            raise OutputError(f"{out_dir / folder} is a symbolic link; convae writes only inside {out_dir}")
        if os.path.lexists(out_dir / folder) and not (out_dir / folder).is_dir():
            raise OutputError(f"{out_dir / folder} exists and is not a folder; move it away")
    for name in names:
        try:
            is_dir = stat.S_ISDIR(os.lstat(out_dir / name).st_mode)
        except FileNotFoundError:
            continue
        if is_dir:
            raise OutputError(f"{out_dir / name} is a folder; move it away")
        if not force:
            raise OutputError(f"{out_dir / name} already exists; pass --force to overwrite")
