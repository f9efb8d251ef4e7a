"""Describe a code file without decoding it (`convae info`)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from convae.codec.format import manifest_path, open_codes
from convae.metrics import bits_per_pixel


def describe_codes(path: Path) -> dict[str, Any]:
    """Format version, model, image and chunk counts, sizes, bytes and bits per pixel of a validated code file."""
    m = open_codes(path).manifest
    header = m.header
    total = path.stat().st_size + manifest_path(path).stat().st_size
    pixels = sum(e.width * e.height for e in m.entries)
    sizes = sorted({f"{e.width}x{e.height}" for e in m.entries})
    return {
        "format": m.format,
        "version": m.version,
        "variant": header.model.variant,
        "model_source": header.model.source,
        "weights_sha256": header.model.sha256,
        "coding": header.coding,
        "levels": header.quantizer.levels,
        "images": len(m.entries),
        "chunks": len(m.chunks),
        "sizes": sizes if len(sizes) <= 20 else [*sizes[:20], f"... {len(sizes) - 20} more"],
        "modes": sorted({e.mode for e in m.entries}),
        "pixels": pixels,
        "codes_bytes": path.stat().st_size,
        "manifest_bytes": manifest_path(path).stat().st_size,
        "total_bytes": total,
        "bits_per_pixel": bits_per_pixel(total, pixels),
        "shard": asdict(header.shard) if header.shard else None,
    }
