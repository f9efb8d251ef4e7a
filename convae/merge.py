"""Join the shards of a ``compress --shard K/N`` job into the file one process would have written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from convae.errors import FormatError
from convae.format import CodeWriter, open_codes


def merge(shards: list[Path], out: Path, force: bool = False) -> dict[str, Any]:
    """Check the shards belong together (same model, quantiser, coding; all N present) and join them."""
    files = [open_codes(p) for p in shards]
    by_index: dict[int, Any] = {}
    for cf in files:
        info = cf.manifest.get("shard")
        if not isinstance(info, dict):
            raise FormatError(f"{cf.path}: not a shard (made without --shard)")
        if info["index"] in by_index:
            raise FormatError(f"{cf.path}: shard {info['index']} given twice")
        by_index[info["index"]] = cf
    first = files[0].manifest
    count = first["shard"]["count"]
    missing = sorted(set(range(1, count + 1)) - set(by_index))
    if missing:
        raise FormatError(f"shards {missing} of {count} are missing")
    keys = ("model", "quantizer", "coding")
    for cf in files:
        if any(cf.manifest[k] != first[k] for k in keys) or cf.manifest["shard"]["count"] != count:
            raise FormatError(f"{cf.path}: made with another model, quantiser or shard count than {files[0].path}")
        if cf.manifest["codes"]["dtype"] != first["codes"]["dtype"]:
            raise FormatError(f"{cf.path}: code dtype differs from {files[0].path}")
    ordered = [by_index[i] for i in range(1, count + 1)]
    shapes = {tuple(cf.codes.shape[1:]) for cf in ordered}
    writer = CodeWriter(out, force)
    try:
        for cf in ordered:
            for entry, payload in cf.payloads():
                writer.add(entry, payload)
        total = sum(len(cf.entries) for cf in ordered)
        if total != first["shard"]["total_images"]:
            raise FormatError(f"shards hold {total} images, the job had {first['shard']['total_images']}")
        header = {k: first[k] for k in keys}
        dtype = np.dtype(first["codes"]["dtype"])
        nd = {cf.codes.ndim for cf in ordered}
        shape = (total, *shapes.pop()) if nd == {4} and len(shapes) == 1 else None
        doc = writer.commit(header, dtype, shape)
    finally:
        writer.close()
    return {"shards": count, "images": total, "codes": str(out), "codes_sha256": doc["codes"]["sha256"]}
