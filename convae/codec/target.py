"""Rate targeting per job (``compress --target-psnr`` / ``--max-bpp``): the quality of the model whose result
over the whole job meets the target, found by bisection over its qualities.

A code file holds one model, so the pick is one quality for the job, not one per image: the job's
PSNR (of the mean MSE over its images) and its bpp (the whole code file's bits per image pixel) are
what must meet the target. The qualities are a shipped family's (``fmh-q1`` ... ``q5``) or, for a
variable-rate model (``photov``, your own), the whole numbers 0..100. Both rate and PSNR grow with
quality, so a bisection finds the pick in about log2(count) passes (7 for 0..100), each a full
``compress`` to a hidden file beside ``out``; the picked pass's file is renamed to ``out``, the others
removed. Every pass is deterministic, so the pick and its bytes are too.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from convae.codec.api import Progress, Summary, compress
from convae.errors import OutputError, UsageError

VARIABLE_QUALITIES = list(range(101))  # a variable-rate model's qualities to search: -q 0..100 in whole steps


def model_qualities(model: str | None) -> tuple[str, list[int]]:
    """The model to code with and its qualities, ascending: a shipped family's rates, or 0..100 for a
    variable-rate model; refused for a model of one fixed rate."""
    from convae.zoo import DEFAULT_MODEL, is_weights_path, load_model, shipped_qualities

    name = model or DEFAULT_MODEL
    qualities = [] if is_weights_path(name) else list(shipped_qualities(name))
    if not qualities and hasattr(load_model(name).model, "set_quality"):
        qualities = VARIABLE_QUALITIES
    if not qualities:
        raise UsageError(f"--target-psnr/--max-bpp pick a quality of a shipped family (e.g. fmh-q3) or of a "
                         f"variable-rate model (photov, or one trained with `convae train --data DIR`); {name!r} "
                         "has one rate only")
    return name, qualities


def _check_targets(target_psnr: float | None, max_bpp: float | None, options: dict[str, Any]) -> None:
    if target_psnr is None and max_bpp is None:
        raise UsageError("give --target-psnr and/or --max-bpp")
    if target_psnr is not None and not 0 < target_psnr < 100:
        raise UsageError(f"--target-psnr {target_psnr:g}: give decibels between 0 and 100, such as 32")
    if max_bpp is not None and not max_bpp > 0:
        raise UsageError(f"--max-bpp {max_bpp:g}: give bits per pixel above 0, such as 0.5")
    if options.get("shard"):
        raise UsageError("--target-psnr/--max-bpp pick one quality per job, and shards that picked different "
                         "ones cannot be merged; pick one with -q (see `convae models`)")
    if options.get("quality") is not None:
        raise UsageError("give --quality or --target-psnr/--max-bpp, not both")


def compress_to_target(inputs: list[Path], out: Path, model: str | None = None, target_psnr: float | None = None,
                       max_bpp: float | None = None, force: bool = False, progress: Progress | None = None,
                       **options: Any) -> Summary:
    """Compress at the lowest quality whose job PSNR reaches ``target_psnr`` within ``max_bpp`` (either may be None).

    Only ``max_bpp``: the highest quality within it. Unmet: the highest quality within ``max_bpp`` (or the
    highest of all), else the lowest; the summary's ``target`` says which target was missed and lists every
    quality tried, ascending (``bpp``, ``psnr``). Other ``options`` go to ``compress``.
    """
    _check_targets(target_psnr, max_bpp, options)
    options.pop("quality", None)
    name, qualities = model_qualities(model)
    options.pop("verify", None)  # every pass verifies: its PSNR is what meets the target
    if out.exists() and not force:
        raise OutputError(f"{out} already exists; pass --force to overwrite")
    start = time.perf_counter()
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".target", dir=out.parent))
    runs: dict[int, Summary] = {}

    def run(quality: int) -> dict[str, Any]:
        if quality not in runs:
            done, passes = len(runs), max(len(runs) + 1, math.ceil(math.log2(len(qualities) + 1)))
            scaled = (lambda n, total: progress(done * total + n, passes * total)) if progress else None
            runs[quality] = compress(inputs, stage / f"q{quality}.npy", model=name, quality=quality, verify=True,
                                     force=True, progress=scaled, **options)
        row = runs[quality].as_dict()
        return {"quality": quality, "model": row["model"], "bpp": row["bpp"], "psnr": row["psnr"]}

    try:
        pick, missed = _search(qualities, run, target_psnr, max_bpp)
        os.replace(stage / f"q{pick}.npy", out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    summary = runs[pick]
    summary.extra["codes"] = str(out)
    summary.extra["target"] = {"psnr": target_psnr, "max_bpp": max_bpp, "quality": pick, "met": not missed,
                               "missed": missed, "tried": [run(q) for q in sorted(runs)]}
    with contextlib.suppress(OSError):
        summary.output_bytes = out.stat().st_size
    summary.seconds = time.perf_counter() - start
    return summary


def _first(count: int, test: Callable[[int], bool]) -> int:
    """The first index in ``range(count)`` where ``test`` (false, then true) holds; ``count`` if none."""
    lo, hi = 0, count
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if test(mid) else (mid + 1, hi)
    return lo


def _search(qualities: list[int], run: Callable[[int], dict[str, Any]], target_psnr: float | None,
            max_bpp: float | None) -> tuple[int, list[str]]:
    """The quality to keep and the targets it misses (``psnr``, ``max_bpp``), bisecting the ascending
    ``qualities`` (rate and PSNR both grow with quality)."""
    top = len(qualities)  # the qualities below top are the candidates left
    if target_psnr is not None:
        meets = _first(top, lambda i: run(qualities[i])["psnr"] >= target_psnr)
        if meets < top and (max_bpp is None or run(qualities[meets])["bpp"] <= max_bpp):
            return qualities[meets], []
        top = meets  # none meets the PSNR, or the first that does takes too many bytes (and so all above it)
    missed = [] if target_psnr is None else ["psnr"]
    if max_bpp is None:
        return qualities[-1], missed
    within = _first(top, lambda i: run(qualities[i])["bpp"] > max_bpp)  # qualities[:within] fit in max_bpp
    if within == 0:
        lowest = run(qualities[0])
        return qualities[0], ["max_bpp"] + (["psnr"] if target_psnr and lowest["psnr"] < target_psnr else [])
    return qualities[within - 1], missed
