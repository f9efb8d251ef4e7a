"""Describe a code file without decoding it (`convae info`)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from convae.codec.format import CodeFile, open_codes
from convae.metrics import bits_per_pixel
from convae.quality import variant_quality


def describe_codes(path: Path) -> dict[str, Any]:
    """Format version, model, image and chunk counts, sizes, bytes and bits per pixel of a validated code file,
    and per image its path, size, mode and bytes (``image_bytes``)."""
    cf = open_codes(path)
    m = cf.manifest
    header = m.header
    pixels = sum(e.width * e.height for e in m.entries)
    sizes = sorted({f"{e.width}x{e.height}" for e in m.entries})
    return {
        "format": m.format,
        "version": m.version,
        "variant": header.model.variant,
        "model_source": header.model.source,
        "weights_sha256": header.model.sha256,
        "quality": variant_quality(header.model.variant, header.model.level),
        "coding": header.coding,
        "levels": header.quantizer.levels,
        "images": len(m.entries),
        "chunks": len(m.chunks),
        "sizes": sizes if len(sizes) <= 20 else [*sizes[:20], f"... {len(sizes) - 20} more"],
        "modes": sorted({e.mode for e in m.entries}),
        "pixels": pixels,
        "codes_bytes": m.codes.nbytes if m.version >= 3 else cf.file_bytes - cf.manifest_bytes,
        "manifest_bytes": cf.manifest_bytes,
        "total_bytes": cf.file_bytes,
        "bpp": bits_per_pixel(cf.file_bytes, pixels),
        "bits_per_pixel": bits_per_pixel(cf.file_bytes, pixels),  # 0.2's name, kept: tests/test_codec_compat.py
        "shard": asdict(header.shard) if header.shard else None,
        "per_image": image_bytes(cf),
    }


def image_bytes(cf: CodeFile) -> list[dict[str, Any]]:
    """Per image: path, width, height, mode and ``bytes``, its share of its chunk's payload.

    An image's alpha bytes are its own; the chunk's code bytes are split evenly over its images (the
    first ones get the remainder), which is exact for ``raw`` codes (every image of a chunk has the same
    latent shape) and an even share of the one ANS stream for ``ans``. The shares add up to the codes."""
    out: list[dict[str, Any]] = []
    first = 0
    for count, nbytes in cf.manifest.chunks:
        entries = cf.manifest.entries[first : first + count]
        code = nbytes - sum(e.alpha_nbytes for e in entries)
        for i, e in enumerate(entries):
            share = code // count + (i < code % count) + e.alpha_nbytes
            out.append({"path": e.path, "width": e.width, "height": e.height, "mode": e.mode, "bytes": share})
        first += count
    return out
