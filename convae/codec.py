"""compress / decompress: image files <-> a code file, streamed in batches with bounded memory.

Memory stays bounded whatever the number of images: inputs are read a few at a time ahead of the
encoder, a batch holds at most ``batch_size`` images and ``MAX_BATCH_PIXELS`` pixels, the chunk
being coded at most ``CHUNK`` images' symbols (see convae/chunks.py), codes go straight to a
temporary file, and decompress reads the codes through a memory map, one chunk at a time. Only the
per-image manifest entries (a path and a few integers each) grow with the number of images.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import time
import zlib
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from convae.atomic import publish, staged_folder
from convae.chunks import Chunker, Latent, chunk_payload, read_chunk
from convae.entropy import EntropyCoder
from convae.errors import ConvaeError, DataError, FormatError, OutputError, UsageError, WeightsError
from convae.format import CHUNK, CodeFile, CodeWriter, ImageEntry, manifest_path, open_codes, symbol_dtype
from convae.images import Decoded, find_images, output_names, read_image, restore
from convae.metrics import bits_per_pixel, per_image_mse, psnr, ssim
from convae.models.base import Autoencoder
from convae.quantize import INTEGER, Quantizer
from convae.registry import UnknownModelError, get_spec
from convae.zoo import LoadedModel, load_model, retired_weights

Progress = Callable[[int, int], None]  # (images just done, images in the run)
T = TypeVar("T")
MAX_BATCH_PIXELS = 1 << 22  # pixels per forward pass: bounds activation memory for large images


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

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict with derived rates."""
        return {
            "images": self.images,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "bits_per_pixel": round(bits_per_pixel(self.output_bytes, self.pixels), 4) if self.pixels else None,
            "ratio": round(self.input_bytes / self.output_bytes, 3) if self.output_bytes else None,
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.images / self.seconds, 1) if self.seconds else None,
            "skipped": self.skipped,
            **self.extra,
        }


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> ``(K, N)`` with ``1 <= K <= N``."""
    if text is None:
        return None
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected K/N, e.g. 2/4") from None
    if not 1 <= k <= n:
        raise UsageError(f"--shard {text!r}: need 1 <= K <= N")
    return k, n


def shard_slice(count: int, shard: tuple[int, int]) -> slice:
    """The K-th of N contiguous, disjoint slices of ``count`` items, cut at multiples of ``CHUNK`` if each gets one."""
    k, n = shard
    if count < CHUNK * n:
        return slice((k - 1) * count // n, k * count // n)
    blocks = -(-count // CHUNK)
    return slice((k - 1) * blocks // n * CHUNK, min(count, k * blocks // n * CHUNK))


def pad_to_stride(x: torch.Tensor, stride: int) -> torch.Tensor:
    """``x`` padded at the bottom and right (replicating edges) to multiples of ``stride``."""
    h, w = x.shape[-2:]
    ph, pw = -h % stride, -w % stride
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return x.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _read_ahead(pool: ThreadPoolExecutor, fn: Callable[[Any], T], items: Iterable[Any], window: int) -> Iterator[T]:
    """``fn(item)`` for each item, in order, computed in ``pool`` at most ``window`` items ahead."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _batches(items: Iterable[T], max_count: int, pixels: Callable[[T], int]) -> Iterator[list[T]]:
    """Consecutive batches of at most ``max_count`` items and about ``MAX_BATCH_PIXELS`` pixels."""
    batch: list[T] = []
    total = 0
    for item in items:
        batch.append(item)
        total += pixels(item)
        if len(batch) >= max_count or total >= MAX_BATCH_PIXELS:
            yield batch
            batch, total = [], 0
    if batch:
        yield batch


SMALL_IMAGE_BYTES = 1 << 14  # about a 64x64 RGB image


def _workers(image_bytes: float) -> int:
    """Threads that read or write image files, for images of about ``image_bytes`` each.

    Small images cost mostly GIL-bound Python per file, so a second thread only adds contention
    (10,000 28x28 PNGs: 8% slower with two); large ones decode and encode in C, in parallel.
    """
    return 1 if image_bytes <= SMALL_IMAGE_BYTES else max(1, min(4, os.cpu_count() or 1))


def _mean_file_size(files: list[Path]) -> float:
    total = 0
    for path in files:
        with contextlib.suppress(OSError):  # an unreadable file is reported when it is read
            total += path.stat().st_size
    return total / max(1, len(files))


@contextlib.contextmanager
def _model_threads(device: str) -> Iterator[None]:
    """On the CPU, give the model half the cores and leave the rest to the pool's image threads.

    Measured on 2 cores: torch's spinning intra-op threads otherwise fight the PNG readers and
    writers, and 10,000 small images cost 1.7x the CPU time (see docs/PERFORMANCE.md).
    """
    before = torch.get_num_threads()
    want = min(before, max(1, (os.cpu_count() or 1) // 2))
    if device != "cpu" or want == before:
        yield
        return
    torch.set_num_threads(want)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def select_quantizer(model: Autoencoder, bits: int | None) -> Quantizer:
    """The model's calibrated quantiser, or one with ``bits`` bits per symbol (1 to 16)."""
    q = model.quantizer
    if not q.calibrated:
        raise ConvaeError(f"model {model.variant!r} has no calibrated quantiser; retrain it with `convae train`")
    if bits is not None:
        if not 1 <= bits <= 16:
            raise UsageError(f"--bits {bits}: choose 1 to 16")
        q = q.with_bits(bits)
    return q


def model_header(loaded: LoadedModel, q: Quantizer, coding: str) -> dict[str, Any]:
    """The manifest fields that name the model, quantiser and coding."""
    model = loaded.model
    return {
        "model": {"variant": model.variant, "source": loaded.source, "sha256": loaded.sha256},
        "quantizer": {
            "mode": "integer" if int(q.mode) == INTEGER else "uniform",
            "levels": int(q.levels),
            "lo": [float(v) for v in q.lo.tolist()],
            "hi": [float(v) for v in q.hi.tolist()],
        },
        "coding": coding,
    }


def job_id(rels: list[str]) -> str:
    """sha256 of a job's full, sorted input list: shards of one job share it, and ``merge`` checks it."""
    h = hashlib.sha256()
    for r in rels:
        h.update(r.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


def compress(
    inputs: list[Path],
    out: Path,
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
) -> Summary:
    """Compress image files and folders into ``out`` (.npy) and its manifest (.json)."""
    if on_error not in ("stop", "skip"):
        raise UsageError(f"--on-error {on_error!r}: use stop or skip")
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: must be at least 1")
    start = time.perf_counter()
    root, files = find_images(inputs)
    rels = [p.relative_to(root).as_posix() for p in files]
    header_shard, first = None, 0
    if shard:
        part = shard_slice(len(files), shard)
        first = part.start
        header_shard = {"index": shard[0], "count": shard[1], "total_images": len(files), "job": job_id(rels)}
        files, rels = files[part], rels[part]
        if not files:
            raise UsageError(f"--shard {shard[0]}/{shard[1]}: this shard is empty (the job has only "
                             f"{header_shard['total_images']} images); use at most that many shards")
    loaded = load_model(model)
    net = loaded.model.to(device, memory_format=torch.channels_last)  # 3x faster convolutions on CPU
    q = select_quantizer(net, bits).to(device)
    coder = None if raw else net.entropy_coder(q)
    dtype = np.dtype(np.uint8) if coder else symbol_dtype(int(q.levels))
    summary = Summary()
    stats: dict[str, float] = defaultdict(float)
    latent_shapes = set()
    writer = CodeWriter(out, force)
    chunker: Chunker[Latent] = Chunker(
        lambda chunk: writer.add([e for e, _, _ in chunk], chunk_payload(chunk, coder, dtype)))
    try:
        workers = _workers(_mean_file_size(files))  # a cheap proxy for the decoded size
        with _model_threads(device), ThreadPoolExecutor(workers) as pool:
            reads = _read_ahead(pool, lambda p: _try_read(p, net.in_channels), files, 4 * workers)
            items = zip(range(first, first + len(files)), files, rels, reads, strict=True)
            for batch in _batches(items, batch_size, lambda t: 0 if isinstance(t[3], DataError) else t[3].pixels.size):
                good = []
                for index, path, rel, d in batch:
                    if isinstance(d, Decoded) and coder is None and d.alpha is not None:
                        d = DataError(f"{path}: has transparency, which uncoded symbols cannot keep; drop "
                                      f"{'--raw' if raw else '--bits'} (entropy-coded files keep it)")
                    if isinstance(d, DataError):
                        if on_error == "stop":
                            raise d
                        summary.skipped.append({"path": str(path), "error": str(d)})
                    else:
                        good.append((index, path, rel, d))
                symbols, recon = _encode_batch(net, q, [d for *_, d in good], device, verify)
                for (index, path, rel, d), sym, rec in zip(good, symbols, recon, strict=True):
                    latent_shapes.add(sym.shape)
                    alpha = zlib.compress(d.alpha.tobytes(), 9) if d.alpha is not None else b""
                    h, w = d.pixels.shape[:2]
                    chunker.add(index, sym.shape, (ImageEntry(rel, w, h, d.mode, d.has_alpha, len(alpha)), sym, alpha))
                    summary.input_bytes += path.stat().st_size
                    summary.pixels += w * h
                    if verify:
                        _accumulate(stats, d.pixels, rec)
                if progress:
                    progress(len(batch), len(files))
        chunker.flush()
        if not writer.entries:
            raise DataError(f"no image could be read ({len(summary.skipped)} skipped, the first: "
                            f"{summary.skipped[0]['error']}); nothing was written")
        header = model_header(loaded, q, "ans" if coder else "raw")
        if header_shard:
            header["shard"] = header_shard
        shape = (len(writer.entries), *latent_shapes.pop()) if not coder and len(latent_shapes) == 1 else None
        writer.commit(header, dtype, shape)
    finally:
        writer.close()
    summary.images = len(writer.entries)
    summary.output_bytes = out.stat().st_size + manifest_path(out).stat().st_size
    summary.seconds = time.perf_counter() - start
    summary.extra = {"codes": str(out), "manifest": str(manifest_path(out)), "model": loaded.source,
                     "coding": "ans" if coder else "raw", "levels": int(q.levels)}
    if header_shard:
        summary.extra["shard"] = f"{shard[0]}/{shard[1]}"
    if verify:
        summary.extra["verify"] = _verify_report(stats)
    return summary


def _try_read(path: Path, channels: int) -> Decoded | DataError:
    try:
        return read_image(path, channels)
    except DataError as exc:
        return exc


@torch.inference_mode()
def _encode_batch(
    net: Autoencoder, q: Quantizer, decoded: list[Decoded], device: str, verify: bool
) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Symbols (and, with ``verify``, uint8 reconstructions) per image, batching equal sizes."""
    symbols: list[np.ndarray | None] = [None] * len(decoded)
    recon: list[np.ndarray | None] = [None] * len(decoded)
    by_size = defaultdict(list)
    for i, d in enumerate(decoded):
        by_size[d.pixels.shape].append(i)
    for (h, w, _), idx in by_size.items():
        x = torch.from_numpy(np.stack([decoded[i].pixels for i in idx])).to(device)
        x = pad_to_stride(x.permute(0, 3, 1, 2).float().div_(255), net.stride)
        s = q.to_symbols(net.encode(x.contiguous(memory_format=torch.channels_last)))
        if verify:
            r = _to_uint8(net.decode(q.from_symbols(s))[..., :h, :w].cpu())
        s = s.cpu().numpy()
        for j, i in enumerate(idx):
            symbols[i] = s[j]
            if verify:
                recon[i] = r[j]
    return symbols, recon


def _accumulate(stats: dict[str, float], original: np.ndarray, recon: np.ndarray) -> None:
    a = torch.from_numpy(original).permute(2, 0, 1)[None].float() / 255
    b = torch.from_numpy(recon).permute(2, 0, 1)[None].float() / 255
    mse = float(per_image_mse(a, b)[0])
    stats["n"] += 1
    stats["mse"] += mse
    stats["psnr"] += min(psnr(mse), 100.0)
    stats["ssim"] += float(ssim(a, b)[0])


def _verify_report(stats: dict[str, float]) -> dict[str, float]:
    n = stats["n"] or 1
    return {
        "mse": round(stats["mse"] / n, 6),
        "psnr_of_mean_mse": round(psnr(stats["mse"] / n), 3),
        "mean_psnr": round(stats["psnr"] / n, 3),
        "ssim": round(stats["ssim"] / n, 4),
    }


def _decoder_model(manifest: dict[str, Any], model: str | None) -> LoadedModel:
    want = manifest["model"]
    made_with = f"these codes were made with {want.get('source') or want['variant']}"
    if model is None:
        try:
            model = get_spec(want["variant"]).name
        except UnknownModelError as exc:
            raise FormatError(f"{made_with}, a variant this installation lacks ({exc})") from exc
        try:
            loaded = load_model(model)
        except WeightsError as exc:
            raise WeightsError(f"{exc}; {made_with}: pass --model with those weights") from exc
    else:
        loaded = load_model(model)
    if loaded.sha256 != want["sha256"]:
        retired = retired_weights(want["sha256"])
        if retired:
            raise FormatError(
                f"{made_with} as shipped in convae {retired['shipped_in']}, whose {retired['variant']} weights "
                f"have since been replaced: decode them with convae {retired['shipped_in']}, or pass --model "
                f"with its {retired['variant']}.safetensors"
            )
        raise FormatError(
            f"{made_with} (weights sha256 {want['sha256'][:12]}…); {loaded.source} has sha256 "
            f"{loaded.sha256[:12]}… — pass --model with the weights that made them"
        )
    return loaded


def _manifest_quantizer(net: Autoencoder, manifest: dict[str, Any]) -> Quantizer:
    levels = manifest["quantizer"]["levels"]
    q = net.quantizer
    if levels != int(q.levels):
        bits = levels.bit_length() - 1
        if levels != 1 << bits or not 1 <= bits <= 16 or int(q.mode) == INTEGER:
            raise FormatError("manifest quantiser does not fit the model")
        q = q.with_bits(bits)
    return q


def _latents(cf: CodeFile, net: Autoencoder, coder: EntropyCoder | None,
             levels: int) -> Iterator[tuple[ImageEntry, np.ndarray, np.ndarray | None]]:
    """``(entry, symbols, alpha or None)`` per image, decoding one chunk at a time."""
    dtype = np.dtype(cf.manifest["codes"]["dtype"])
    for entries, data in cf.chunk_payloads():
        decoded = read_chunk(entries, data, net.latent_shape, coder, dtype, levels)
        yield from ((e, sym, alpha) for e, (sym, alpha) in zip(entries, decoded, strict=True))


def decompress(
    src: Path,
    out_dir: Path,
    model: str | None = None,
    force: bool = False,
    batch_size: int = 256,
    device: str = "cpu",
    progress: Progress | None = None,
) -> Summary:
    """Decode a code file into one PNG per image under ``out_dir``, at original size and mode.

    PNGs are written to a hidden staging folder inside ``out_dir`` and moved into place only once
    every image decoded, so a failure leaves ``out_dir`` as it was.
    """
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: must be at least 1")
    start = time.perf_counter()
    cf = open_codes(src)
    loaded = _decoder_model(cf.manifest, model)
    net = loaded.model.to(device, memory_format=torch.channels_last)  # 3x faster convolutions on CPU
    q = _manifest_quantizer(net, cf.manifest).to(device)
    coder = net.entropy_coder(q) if cf.manifest["coding"] == "ans" else None
    if cf.manifest["coding"] == "ans" and coder is None:
        raise FormatError("codes are entropy coded but the model has no table for their quantiser")
    names = output_names([e.path for e in cf.entries])
    _check_targets(out_dir, names, force)
    summary = Summary(input_bytes=src.stat().st_size + manifest_path(src).stat().st_size)
    workers = _workers(sum(e.width * e.height for e in cf.entries) * net.in_channels / max(1, len(cf.entries)))
    with staged_folder(out_dir) as stage, _model_threads(device), ThreadPoolExecutor(workers) as pool:
        for parent in sorted({(stage / n).parent for n in names}):
            parent.mkdir(parents=True, exist_ok=True)
        items = zip(_latents(cf, net, coder, int(q.levels)), names, strict=True)
        writing: list = []  # the previous batch's PNGs, written in the pool while this batch decodes
        for batch in _batches(items, batch_size, lambda t: t[0][0].width * t[0][0].height):
            parsed = [(e, name, sym, alpha) for (e, sym, alpha), name in batch]
            decoded = _decode_batch(net, q, parsed, device)
            share = -(-len(decoded) // workers)  # one task per worker: few thread hand-offs
            saves = [pool.submit(_restore_pngs, decoded[i : i + share], stage) for i in range(0, len(decoded), share)]
            summary.output_bytes += sum(f.result() for f in writing)
            writing = saves
            summary.pixels += sum(e.width * e.height for e, *_ in parsed)
            if progress:
                progress(len(batch), len(names))
        summary.output_bytes += sum(f.result() for f in writing)
        publish(stage, out_dir, names)
    summary.images = len(cf.entries)
    summary.seconds = time.perf_counter() - start
    summary.extra = {"out_dir": str(out_dir), "model": loaded.source}
    return summary


@torch.inference_mode()
def _decode_batch(net: Autoencoder, q: Quantizer, parsed: list[tuple], device: str) -> list[tuple]:
    by_shape = defaultdict(list)
    for i, (_, _, sym, _) in enumerate(parsed):
        by_shape[sym.shape].append(i)
    out: list[tuple | None] = [None] * len(parsed)
    for _, idx in by_shape.items():
        s = torch.from_numpy(np.stack([parsed[i][2] for i in idx]).astype(np.int64)).to(device)
        x = _to_uint8(net.decode(q.from_symbols(s).contiguous(memory_format=torch.channels_last)).cpu())
        for j, i in enumerate(idx):
            e, name, _, alpha = parsed[i]
            out[i] = (e, name, np.ascontiguousarray(x[j, : e.height, : e.width]), alpha)
    return out  # a list, not a generator: inference mode is entered once per batch, not once per image


def _check_targets(out_dir: Path, names: list[str], force: bool) -> None:
    """Refuse a file where a folder should be, a folder where a file should be, and (without ``force``) any
    existing output: checked before anything is written, so publishing cannot stop half-way on them."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} exists and is not a folder")
    if not out_dir.exists():
        return
    for folder in sorted({str(p) for n in names for p in PurePosixPath(n).parents} - {"."}):
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


def _restore_pngs(decoded: list[tuple], folder: Path) -> int:
    """Write decoded images as PNGs in their original modes under ``folder`` (runs in the pool); returns the bytes."""
    total = 0
    for e, name, pixels, alpha in decoded:
        restore(pixels, e.mode, alpha, e.has_alpha).save(folder / name, format="PNG")
        total += (folder / name).stat().st_size
    return total
