"""Join the shards of a ``compress --shard K/N`` job: their chunks, back to back.

When the shards were cut at multiples of ``CHUNK`` (``shard_slice`` does so once every shard gets
a whole one) the result is byte for byte the file one process would have written.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from convae.codec.format import CodeFile, CodeWriter, open_codes
from convae.codec.manifest import ShardInfo
from convae.errors import FormatError


def merge(shards: list[Path], out: Path, force: bool = False) -> dict[str, Any]:
    """Check the shards belong to one job (same inputs, model, quantiser, coding; all N present) and join them."""
    ordered = _ordered_shards([open_codes(p) for p in shards])
    first = ordered[0].manifest
    total = sum(len(cf.manifest.entries) for cf in ordered)
    job_total = _shard(ordered[0]).total_images
    if total != job_total:
        raise FormatError(f"shards hold {total} images, the job had {job_total} "
                          "(made with --on-error skip?); merge needs every image")
    shapes = {tuple(cf.codes.shape[1:]) for cf in ordered if cf.codes.ndim == 4}
    shape = (total, *shapes.pop()) if len(shapes) == 1 and all(cf.codes.ndim == 4 for cf in ordered) else None
    writer = CodeWriter(out, force, shards)
    try:
        for cf in ordered:
            for entries, payload in cf.chunk_payloads():
                writer.add(entries, payload)
        merged = writer.commit(replace(first.header, shard=None), np.dtype(first.codes.dtype), shape)
    finally:
        writer.close()
    return {"shards": len(ordered), "images": total, "codes": str(out), "codes_sha256": merged.codes.sha256}


def _shard(cf: CodeFile) -> ShardInfo:
    """The shard header of a code file; refuses one made without ``--shard``."""
    if cf.manifest.header.shard is None:
        raise FormatError(f"{cf.path}: not a shard (made without --shard)")
    return cf.manifest.header.shard


def _ordered_shards(files: list[CodeFile]) -> list[CodeFile]:
    """The shards in index order, after checking they are all the N shards of one job."""
    by_index: dict[int, CodeFile] = {}
    first = files[0]
    for cf in files:
        info = _shard(cf)
        if info.index in by_index:
            raise FormatError(f"{cf.path}: shard {info.index} given twice")
        mine = _shard(first)
        if info.job != mine.job or info.count != mine.count:
            raise FormatError(f"{cf.path}: a shard of another job (other inputs or shard count) than {first.path}")
        if replace(cf.manifest.header, shard=None) != replace(first.manifest.header, shard=None):
            raise FormatError(f"{cf.path}: made with another model, quantiser or coding than {first.path}")
        if cf.manifest.codes.dtype != first.manifest.codes.dtype:
            raise FormatError(f"{cf.path}: code dtype differs from {first.path}")
        by_index[info.index] = cf
    count = _shard(first).count
    missing = sorted(set(range(1, count + 1)) - set(by_index))
    if missing:
        raise FormatError(f"shards {missing} of {count} are missing")
    return [by_index[i] for i in range(1, count + 1)]

