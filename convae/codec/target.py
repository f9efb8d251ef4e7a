"""Rate targeting per job (``compress --target-psnr`` / ``--max-bpp``): the quality of the model's family
whose result over the whole job meets the target, found by coding the job at each quality in turn.

A code file holds one model, so the pick is one quality for the job, not one per image: the job's
PSNR (of the mean MSE over its images) and its bpp (the whole code file's bits per image pixel) are
what must meet the target. Qualities are tried from the lowest up, each pass a full ``compress`` to a
hidden file beside ``out``; the picked pass's file is renamed to ``out``, the others removed. Every
pass is deterministic, so the pick and its bytes are too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from convae.codec.api import Progress, Summary, compress
from convae.errors import OutputError, UsageError


def family_qualities(model: str | None) -> tuple[str, list[int]]:
    """The model's family variant name and its shipped qualities, ascending (refused for a weights file)."""
    from convae.zoo import DEFAULT_MODEL, is_weights_path, shipped_qualities

    name = model or DEFAULT_MODEL
    qualities = [] if is_weights_path(name) else list(shipped_qualities(name))
    if not qualities:
        raise UsageError(f"--target-psnr/--max-bpp pick a quality of a shipped family (e.g. {DEFAULT_MODEL}); "
                         f"{name!r} has one rate only")
    return name, qualities


def compress_to_target(inputs: list[Path], out: Path, model: str | None = None, target_psnr: float | None = None,
                       max_bpp: float | None = None, force: bool = False, progress: Progress | None = None,
                       **options: Any) -> Summary:
    """Compress at the lowest quality whose job PSNR reaches ``target_psnr`` within ``max_bpp`` (either may be None).

    Only ``max_bpp``: the highest quality within it. Unmet: the highest quality within ``max_bpp`` (or the
    highest of all), else the lowest; the summary's ``target`` says which target was missed and lists every
    quality tried (``bpp``, ``psnr``). Other ``options`` go to ``compress``.
    """
    if target_psnr is None and max_bpp is None:
        raise UsageError("give --target-psnr and/or --max-bpp")
    if target_psnr is not None and not 0 < target_psnr < 100:
        raise UsageError(f"--target-psnr {target_psnr:g}: give decibels between 0 and 100, such as 32")
    if max_bpp is not None and not max_bpp > 0:
        raise UsageError(f"--max-bpp {max_bpp:g}: give bits per pixel above 0, such as 0.5")
    if options.get("shard"):
        raise UsageError("--target-psnr/--max-bpp pick one quality per job, and shards that picked different "
                         "ones cannot be merged; pick one with -q (see `convae models`)")
    name, qualities = family_qualities(model)
    options.pop("verify", None)  # every pass verifies: its PSNR is what meets the target
    if options.pop("quality", None) is not None:
        raise UsageError("give --quality or --target-psnr/--max-bpp, not both")
    if out.exists() and not force:
        raise OutputError(f"{out} already exists; pass --force to overwrite")
    start = time.perf_counter()
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".target", dir=out.parent))
    try:
        tried: list[dict[str, Any]] = []
        runs: dict[int, Summary] = {}
        for quality in qualities:
            scaled = (lambda n, total: progress(n, total * len(qualities))) if progress else None
            runs[quality] = s = compress(inputs, stage / f"q{quality}.npy", model=name, quality=quality,
                                         verify=True, force=True, progress=scaled, **options)
            row = s.as_dict()
            tried.append({"quality": quality, "model": row["model"], "bpp": row["bpp"], "psnr": row["psnr"]})
            if max_bpp is not None and row["bpp"] > max_bpp:
                break  # higher qualities only take more bytes
            if target_psnr is not None and row["psnr"] >= target_psnr:
                break
        pick, missed = _pick(tried, target_psnr, max_bpp)
        os.replace(stage / f"q{pick}.npy", out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    summary = runs[pick]
    summary.extra["codes"] = str(out)
    summary.extra["target"] = {"psnr": target_psnr, "max_bpp": max_bpp, "quality": pick, "met": not missed,
                               "missed": missed, "tried": tried}
    with contextlib.suppress(OSError):
        summary.output_bytes = out.stat().st_size
    summary.seconds = time.perf_counter() - start
    return summary


def _pick(tried: list[dict[str, Any]], target_psnr: float | None, max_bpp: float | None) -> tuple[int, list[str]]:
    """The quality to keep of those ``tried`` (ascending) and the targets it misses (``psnr``, ``max_bpp``)."""
    within = [t for t in tried if max_bpp is None or t["bpp"] <= max_bpp]
    if not within:
        return tried[0]["quality"], ["max_bpp"] + (["psnr"] if target_psnr and tried[0]["psnr"] < target_psnr
                                                   else [])
    meets = [t for t in within if target_psnr is None or t["psnr"] >= target_psnr]
    if meets:
        return (meets[0] if target_psnr is not None else within[-1])["quality"], []
    return within[-1]["quality"], ["psnr"]
