"""Rate-distortion of a codec trained with ``convae train --data DIR`` on held-out images of its domain.

Beside it, in the same run: JPEG, WebP (method 6) and AVIF one file per image and as one mosaic of
all images (fairer to them on small images, whose file headers dominate); for colour images, AVIF
with full-resolution colour too (``avif444``: Pillow's AVIF default and every lossy WebP halve the
colour's resolution); the shipped ``photoh-*`` family and the default ``photov``, before training; and,
for 28x28 gray images, the Fashion-MNIST ``fmc-*``.
Every convae point is real compress + decompress (bytes on disk, manifest included; decoded PNGs in
the images' own mode). Prints the Bjøntegaard deltas as JSON; the full report goes to OUT.

Run: ``python scripts/eval_domain.py WEIGHTS HELD_OUT_DIR OUT [--limit N]`` (docs/TRAINING.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from convae.evaluation.bjontegaard import bd_psnr
from convae.evaluation.rd import QUALITIES, Report, _curve, classical, convae_families, deltas, shipped
from convae.images import find_images, read_image

QUALITIES_TRAINED = [0, 15, 30, 50, 70, 85, 100]
BASELINES = ("webp", "avif", "webp-mosaic", "avif-mosaic", "jpeg", "avif444", "avif444-mosaic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights")
    parser.add_argument("held_out", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    _, files = find_images([args.held_out])
    files = files[: args.limit]
    images = [read_image(p).pixels for p in files]
    report = Report(args.out, args.held_out.name, images, lambda m: print(m, flush=True))
    rgb = images[0].shape[2] == 3  # colour images: AVIF with full-resolution colour too (WebP has none)
    classical(report, QUALITIES | ({"avif444": QUALITIES["avif"]} if rgb else {}),
              tiled=len({a.shape for a in images}) == 1)
    families = {"convae-trained": [f"{args.weights}@{q}" for q in QUALITIES_TRAINED],
                "convae-photoh": shipped("photoh-*"),
                "convae-photov": [f"photov@{q}" for q in QUALITIES_TRAINED]}
    if images[0].shape == (28, 28, 1):
        families["convae-fmc"] = shipped("fmc-*")
    convae_families(report, families, args.out / "work")
    d = deltas(report)
    trained = _curve(report.codecs["convae-trained"])
    result = {
        "images": len(images), "size": list(images[0].shape), "weights": args.weights,
        "bd_psnr_db": {ref: d["convae-trained"]["bd"][ref]["bd_psnr_db"] for ref in BASELINES
                       if ref in d["convae-trained"]["bd"]},
        "bd_psnr_db_vs_convae": {name: round(bd_psnr(_curve(report.codecs[name]), trained), 3)
                                 for name in families if name != "convae-trained"},
        "points": {name: [[round(b, 4), round(p, 3)] for b, p in zip(*_curve(doc), strict=True)]
                   for name, doc in report.codecs.items()},
    }
    (args.out / "domain.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "points"}))


if __name__ == "__main__":
    main()
