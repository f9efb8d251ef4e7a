"""compress / decompress: image files <-> a code file, streamed in batches with bounded memory."""

from __future__ import annotations

import os
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from convae.atomic import commit, temp_path
from convae.entropy import EntropyCoder
from convae.errors import ConvaeError, DataError, FormatError, OutputError, UsageError
from convae.format import CodeWriter, ImageEntry, manifest_path, open_codes, symbol_dtype
from convae.images import Decoded, find_images, output_name, read_image, restore
from convae.metrics import bits_per_pixel, per_image_mse, psnr, ssim
from convae.models.base import Autoencoder
from convae.quantize import INTEGER, Quantizer
from convae.registry import resolve_name
from convae.zoo import LoadedModel, load_model

Progress = Callable[[int], None]


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
    """The K-th of N contiguous, disjoint slices of ``count`` items."""
    k, n = shard
    return slice((k - 1) * count // n, k * count // n)


def _pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = -h % stride, -w % stride
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return x.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _prefetch(pool: ThreadPoolExecutor, chunks: Iterator[list[Any]], fn: Callable[[Any], Any]) -> Iterator[tuple]:
    """Yield (chunk, results) while the next chunk is already being read in the pool."""
    pending = None
    for chunk in chunks:
        futures = [pool.submit(fn, item) for item in chunk]
        if pending is not None:
            yield pending[0], [f.result() for f in pending[1]]
        pending = (chunk, futures)
    if pending is not None:
        yield pending[0], [f.result() for f in pending[1]]


def _try_read(item: tuple[Path, str, int]) -> Decoded | DataError:
    path, _, channels = item
    try:
        return read_image(path, channels)
    except DataError as exc:
        return exc


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _select_quantizer(model: Autoencoder, bits: int | None) -> Quantizer:
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
    start = time.perf_counter()
    loaded = load_model(model)
    net = loaded.model.to(device)
    q = _select_quantizer(net, bits).to(device)
    coder = None if raw or q.freqs.shape[1] != int(q.levels) else EntropyCoder(q.freqs.cpu().numpy())
    root, files = find_images(inputs)
    total_files = len(files)
    if shard:
        files = files[shard_slice(total_files, shard)]
    rels = [p.relative_to(root).as_posix() for p in files]
    writer = CodeWriter(out, force)
    summary = Summary()
    stats = defaultdict(float)
    latent_shapes = set()
    dtype = np.dtype(np.uint8) if coder else symbol_dtype(int(q.levels))
    try:
        with ThreadPoolExecutor(_workers()) as pool:
            items = [(p, r, net.in_channels) for p, r in zip(files, rels, strict=True)]
            for chunk, decoded in _prefetch(pool, _chunks(items, batch_size), _try_read):
                good = []
                for (path, rel, _), d in zip(chunk, decoded, strict=True):
                    if isinstance(d, DataError):
                        if on_error == "stop":
                            raise d
                        summary.skipped.append({"path": str(path), "error": str(d)})
                    elif raw and d.alpha is not None:
                        err = f"{path}: has transparency, which --raw cannot keep; drop --raw"
                        if on_error == "stop":
                            raise DataError(err)
                        summary.skipped.append({"path": str(path), "error": err})
                    else:
                        good.append((path, rel, d))
                symbols, recon = _encode_batch(net, q, [d for _, _, d in good], device, verify)
                for i, (path, rel, d) in enumerate(good):
                    sym = symbols[i]
                    latent_shapes.add(sym.shape)
                    payload = coder.encode(sym) if coder else sym.astype(dtype).tobytes()
                    alpha = zlib.compress(d.alpha.tobytes(), 9) if d.alpha is not None else b""
                    h, w = d.pixels.shape[:2]
                    entry = ImageEntry(rel, w, h, d.mode, d.has_alpha, len(payload) + len(alpha), len(alpha))
                    writer.add(entry, payload + alpha)
                    summary.input_bytes += path.stat().st_size
                    summary.pixels += w * h
                    if verify:
                        _accumulate(stats, d.pixels, recon[i])
                if progress:
                    progress(len(chunk))
        if not writer.entries:
            raise DataError("no image could be read; nothing was written")
        header = model_header(loaded, q, "ans" if coder else "raw")
        if shard:
            header["shard"] = {"index": shard[0], "count": shard[1], "total_images": total_files}
        shape = (len(writer.entries), *latent_shapes.pop()) if not coder and len(latent_shapes) == 1 else None
        writer.commit(header, dtype, shape)
    finally:
        writer.close()
    summary.images = len(writer.entries)
    summary.output_bytes = out.stat().st_size + manifest_path(out).stat().st_size
    summary.seconds = time.perf_counter() - start
    summary.extra = {"codes": str(out), "manifest": str(manifest_path(out)), "model": loaded.source,
                     "coding": "ans" if coder else "raw", "levels": int(q.levels)}
    if verify:
        summary.extra["verify"] = _verify_report(stats)
    return summary


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
        x = _pad(x.permute(0, 3, 1, 2).float().div_(255), net.stride)
        s = q.to_symbols(net.encode(x))
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
    if not isinstance(want, dict) or not isinstance(want.get("variant"), str):
        raise FormatError("manifest is malformed (model)")
    loaded = load_model(model or resolve_name(want["variant"]))
    if loaded.sha256 != want.get("sha256"):
        raise FormatError(
            f"these codes were made with weights sha256 {str(want.get('sha256'))[:12]}… "
            f"({want['variant']}, from {want.get('source')}); {loaded.source} has sha256 {loaded.sha256[:12]}… "
            "— pass --model with the weights that made them"
        )
    return loaded


def _manifest_quantizer(net: Autoencoder, manifest: dict[str, Any]) -> Quantizer:
    qm = manifest.get("quantizer")
    if not isinstance(qm, dict) or not isinstance(qm.get("levels"), int):
        raise FormatError("manifest is malformed (quantizer)")
    q = net.quantizer
    if qm["levels"] != int(q.levels):
        bits = qm["levels"].bit_length() - 1
        if qm["levels"] != 1 << bits or not 1 <= bits <= 16 or int(q.mode) == INTEGER:
            raise FormatError("manifest quantiser does not fit the model")
        q = q.with_bits(bits)
    return q


def _symbols_for(entry: ImageEntry, data: bytes, net: Autoencoder, q: Quantizer, coder: EntropyCoder | None,
                 dtype: np.dtype) -> tuple[np.ndarray, np.ndarray | None]:
    shape = net.latent_shape(entry.height, entry.width)
    body, alpha_bytes = data[: len(data) - entry.alpha_nbytes], data[len(data) - entry.alpha_nbytes :]
    if coder is not None:
        sym = coder.decode(body, shape)
    else:
        if len(body) != int(np.prod(shape)) * dtype.itemsize:
            raise FormatError(f"{entry.path}: code length disagrees with its size in the manifest")
        sym = np.frombuffer(body, dtype=dtype).reshape(shape).astype(np.int64)
        if sym.max(initial=0) >= int(q.levels):
            raise FormatError(f"{entry.path}: symbol out of range")
    alpha = None
    if entry.alpha_nbytes:
        try:
            alpha = np.frombuffer(zlib.decompress(alpha_bytes), dtype=np.uint8)
        except zlib.error as exc:
            raise FormatError(f"{entry.path}: corrupt alpha channel") from exc
        if alpha.size != entry.width * entry.height:
            raise FormatError(f"{entry.path}: alpha channel has the wrong size")
        alpha = alpha.reshape(entry.height, entry.width)
    return sym, alpha


def decompress(
    src: Path,
    out_dir: Path,
    model: str | None = None,
    force: bool = False,
    batch_size: int = 256,
    device: str = "cpu",
    progress: Progress | None = None,
) -> Summary:
    """Decode a code file into one PNG per image under ``out_dir``, at original size and mode."""
    start = time.perf_counter()
    cf = open_codes(src)
    loaded = _decoder_model(cf.manifest, model)
    net = loaded.model.to(device)
    q = _manifest_quantizer(net, cf.manifest).to(device)
    coder = None
    if cf.manifest["coding"] == "ans":
        if q.freqs.shape[1] != int(q.levels):
            raise FormatError("codes are entropy coded but the model has no table for their quantiser")
        coder = EntropyCoder(q.freqs.cpu().numpy())
    dtype = np.dtype(cf.manifest["codes"]["dtype"])
    names: list[str] = []
    taken: set[str] = set()
    for e in cf.entries:
        names.append(output_name(e.path, taken))
        taken.add(names[-1])
    _prepare_out_dir(out_dir, names, force)
    summary = Summary(input_bytes=src.stat().st_size + manifest_path(src).stat().st_size)
    with ThreadPoolExecutor(_workers()) as pool:
        writes = []
        for chunk in _chunks(zip(cf.payloads(), names, strict=True), batch_size):
            parsed = [(e, name, *_symbols_for(e, data, net, q, coder, dtype)) for (e, data), name in chunk]
            for e, name, pixels, alpha in _decode_batch(net, q, parsed, device):
                img = restore(pixels, e.mode, alpha, e.has_alpha)
                writes.append(pool.submit(_save_png, img, out_dir / name))
                summary.pixels += e.width * e.height
            for f in writes:
                summary.output_bytes += f.result()
            writes.clear()
            if progress:
                progress(len(chunk))
    summary.images = len(cf.entries)
    summary.seconds = time.perf_counter() - start
    summary.extra = {"out_dir": str(out_dir), "model": loaded.source}
    return summary


@torch.inference_mode()
def _decode_batch(net: Autoencoder, q: Quantizer, parsed: list[tuple], device: str) -> Iterator[tuple]:
    by_shape = defaultdict(list)
    for i, (_, _, sym, _) in enumerate(parsed):
        by_shape[sym.shape].append(i)
    out: list[tuple | None] = [None] * len(parsed)
    for _, idx in by_shape.items():
        s = torch.from_numpy(np.stack([parsed[i][2] for i in idx]).astype(np.int64)).to(device)
        x = _to_uint8(net.decode(q.from_symbols(s)).cpu())
        for j, i in enumerate(idx):
            e, name, _, alpha = parsed[i]
            out[i] = (e, name, np.ascontiguousarray(x[j, : e.height, : e.width]), alpha)
    yield from out


def _prepare_out_dir(out_dir: Path, names: list[str], force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} exists and is not a folder")
    if not force:
        clash = next((n for n in names if (out_dir / n).exists()), None)
        if clash:
            raise OutputError(f"{out_dir / clash} already exists; pass --force to overwrite")
    try:
        for parent in sorted({(out_dir / n).parent for n in names}):
            parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out_dir}: {exc.strerror or exc}") from exc
    if not os.access(out_dir, os.W_OK):
        raise OutputError(f"output folder {out_dir} is not writable")


def _save_png(img: Any, path: Path) -> int:
    with temp_path(path) as tmp:
        img.save(tmp, format="PNG")
        size = tmp.stat().st_size
        commit(tmp, path)
    return size
