"""A compress job's inputs and its shards: ``--shard K/N`` slices of the sorted input list.

Slices are cut at multiples of ``CHUNK`` once every shard gets a whole chunk, so that ``merge``
joins them into the file one process would have written; the job id ties the shards together.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from convae.codec.manifest import CHUNK, ShardInfo
from convae.errors import UsageError
from convae.images import find_images


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


def job_id(rels: list[str]) -> str:
    """sha256 of a job's full, sorted input list: shards of one job share it, and ``merge`` checks it."""
    h = hashlib.sha256()
    for r in rels:
        h.update(r.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


def job_inputs(inputs: list[Path], shard: tuple[int, int] | None
               ) -> tuple[list[Path], list[str], int, ShardInfo | None]:
    """The files to code, their manifest paths, the first one's index in the job, and the shard's header."""
    root, files = find_images(inputs)
    rels = [p.relative_to(root).as_posix() for p in files]
    if not shard:
        return files, rels, 0, None
    part = shard_slice(len(files), shard)
    info = ShardInfo(shard[0], shard[1], len(files), job_id(rels))
    if part.start >= part.stop:
        raise UsageError(f"--shard {shard[0]}/{shard[1]}: this shard is empty (the job has only "
                         f"{len(files)} images); use at most that many shards")
    return files[part], rels[part], part.start, info
