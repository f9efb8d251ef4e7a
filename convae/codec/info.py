"""Describe a code file without decoding it (`convae info`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convae.codec.format import manifest_path, open_codes
from convae.metrics import bits_per_pixel


def describe_codes(path: Path) -> dict[str, Any]:
    """Format version, model, image and chunk counts, sizes, bytes and bits per pixel of a validated code file."""
    cf = open_codes(path)
    doc = cf.manifest
    total = path.stat().st_size + manifest_path(path).stat().st_size
    pixels = sum(e.width * e.height for e in cf.entries)
    sizes = sorted({f"{e.width}x{e.height}" for e in cf.entries})
    return {
        "format": doc["format"],
        "version": doc["version"],
        "variant": doc["model"]["variant"],
        "model_source": doc["model"].get("source"),
        "weights_sha256": doc["model"]["sha256"],
        "coding": doc["coding"],
        "levels": doc["quantizer"]["levels"],
        "images": len(cf.entries),
        "chunks": len(cf.chunks),
        "sizes": sizes if len(sizes) <= 20 else [*sizes[:20], f"... {len(sizes) - 20} more"],
        "modes": sorted({e.mode for e in cf.entries}),
        "pixels": pixels,
        "codes_bytes": path.stat().st_size,
        "manifest_bytes": manifest_path(path).stat().st_size,
        "total_bytes": total,
        "bits_per_pixel": bits_per_pixel(total, pixels),
        "shard": doc.get("shard"),
    }
