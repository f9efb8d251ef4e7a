"""``compress --effort`` on the photo evaluation set: the default family with and without refinement, beside
WebP (method 6) and AVIF, measured in one run (issue 21).

Real coded bytes (the whole code file, manifest included; ``verify`` decodes the symbols written), PSNR-RGB of
the mean MSE over the first N BSDS500/val photos; BD-PSNR over each pair's common rate range.
Run: ``python scripts/eval_effort.py [N_PHOTOS] [EFFORT] [FAMILY]`` (default 10 100 photoh); prints JSON.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from convae.codec.api import compress
from convae.evaluation.baselines import per_image
from convae.evaluation.bjontegaard import bd_psnr, bd_rate
from convae.evaluation.rd import QUALITIES
from convae.zoo import shipped_qualities

VAL = Path(__file__).resolve().parents[2] / "shared/data/photos/BSDS500/val"


def convae_curve(photos: list[Path], family: str, effort: int) -> list[dict]:
    """One point per shipped quality of ``family``: bpp, PSNR and seconds per megapixel to compress."""
    pixels = sum(np.prod(Image.open(p).size) for p in photos)
    points = []
    for quality, name in sorted(shipped_qualities(f"{family}-q2").items()):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            s = compress(photos, Path(tmp) / "c.npy", model=name, verify=True, effort=effort).as_dict()
            points.append({"quality": quality, "bpp": s["bpp"], "psnr": s["psnr"],
                           "encode_s_per_mp": (time.perf_counter() - t) / pixels * 1e6})
    return points


def main() -> None:
    n, effort, family = (int(sys.argv[1]) if len(sys.argv) > 1 else 10, int(sys.argv[2]) if len(sys.argv) > 2
                         else 100, sys.argv[3] if len(sys.argv) > 3 else "photoh")
    photos = sorted(VAL.glob("*.jpg"))[:n]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in photos]
    curves = {f"{family}": convae_curve(photos, family, 0), f"{family} --effort {effort}":
              convae_curve(photos, family, effort)}
    for codec in ("webp", "avif"):
        curves[codec] = [{"quality": q, "bpp": (pt := per_image(images, codec, q)).bpp, "psnr": pt.psnr}
                         for q in QUALITIES[codec]]

    def curve(name: str) -> tuple[list[float], list[float]]:
        return [p["bpp"] for p in curves[name]], [p["psnr"] for p in curves[name]]

    deltas = {f"{test} vs {anchor}": {"bd_psnr": round(bd_psnr(curve(anchor), curve(test)), 3),
                                      "bd_rate_percent": round(bd_rate(curve(anchor), curve(test)), 2)}
              for test in list(curves)[:2] for anchor in [*list(curves)[2:], family] if test != anchor}
    print(json.dumps({"photos": n, "effort": effort, "curves": curves, "deltas": deltas}, indent=1))


if __name__ == "__main__":
    main()
