"""A model measured through the real codec: compress a folder, decompress it, compare the PNGs.

What ``convae eval --data DIR`` reports and what the RD report's convae points are: bytes on disk
(the code file, manifest included) and the distortion of the decoded PNGs against the originals in
the images' own mode (gray or RGB), so eval, compress summaries and the RD report agree.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from convae.errors import UsageError
from convae.evaluation.baselines import Point, distortion
from convae.images import find_images, read_image


def codec_point(model: str, folder: Path, originals: list[np.ndarray], work: Path, bits: int | None = None) -> Point:
    """One convae model's point (``NAME`` or, for a variable-rate model, ``NAME@QUALITY``) on ``folder``'s
    images (``originals``, in the images' own mode): real bytes on disk, distortion of the decoded PNGs,
    seconds per image."""
    from convae.codec.api import compress, decompress
    from convae.codec.format import open_codes
    from convae.images import output_names

    codes, recon_dir = work / "codes.npy", work / "recon"
    shutil.rmtree(recon_dir, ignore_errors=True)
    name, _, quality = model.partition("@")
    enc = compress([folder], codes, model=name, quality=float(quality) if quality else None, bits=bits, force=True)
    dec = decompress(codes, recon_dir, model=name, force=True)
    root, files = find_images([folder])
    names = output_names([p.relative_to(root).as_posix() for p in files])
    recons = [read_image(recon_dir / n, a.shape[2]).pixels for n, a in zip(names, originals, strict=True)]
    manifest = open_codes(codes).manifest_bytes  # npy_bytes: the file without it
    npy = codes.stat().st_size - manifest
    return Point(8 * (npy + manifest) / enc.pixels, **distortion(originals, recons),
                 encoding_time=enc.seconds / len(files), decoding_time=dec.seconds / len(files),
                 setting={"model": model, "npy_bytes": npy, "manifest_bytes": manifest})


def evaluate_folder(model: str | None, folder: Path, quality: float | None = None, bits: int | None = None,
                    limit: int | None = None) -> dict[str, Any]:
    """``convae eval --data DIR``: ``codec_point`` of ``model`` (at ``quality``) on ``folder``'s images
    (the first ``limit`` of them in path order)."""
    from convae.zoo import DEFAULT_MODEL, load_at_quality

    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit}: must be at least 1")
    name = model or DEFAULT_MODEL
    loaded = load_at_quality(name, quality)
    variable = hasattr(loaded.model, "set_quality")
    target = name if quality is None else f"{name}@{quality:g}" if variable else loaded.model.variant
    root, files = find_images([folder])
    files = files[:limit]
    originals = [read_image(p).pixels for p in files]
    with tempfile.TemporaryDirectory(prefix="convae-eval-") as work:
        images = _linked(root, files, Path(work) / "in") if limit is not None else folder
        point = codec_point(target, images, originals, Path(work), bits)
    size = point.setting["npy_bytes"] + point.setting["manifest_bytes"]
    return {"model": loaded.source, "variant": loaded.model.variant, "weights_sha256": loaded.sha256,
            "data": str(folder), "quality": quality, "images": len(files), "bytes": size,
            "bpp": round(point.bpp, 4), "mse": round(10 ** (-point.psnr / 10), 8), "psnr": round(point.psnr, 3),
            "mean_psnr": round(point.mean_psnr, 3), "ssim": round(point.ssim, 4),
            "encode_s_per_image": round(point.encoding_time, 4), "decode_s_per_image": round(point.decoding_time, 4),
            "measured": "compress + decompress: bytes on disk, decoded PNGs in the images' own mode"}


def _linked(root: Path, files: list[Path], folder: Path) -> Path:
    """A folder holding ``files`` under their names relative to ``root`` (symlinks), for a ``--limit``."""
    for path in files:
        link = folder / path.relative_to(root)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path.resolve())
    return folder
