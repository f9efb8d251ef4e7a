"""Baseline codec: Pillow WebP or JPEG, one file per image (run as a script; prints one JSON line).

``encode SRC DST``: every image under SRC -> DST/NAME.webp|.jpg. ``decode SRC DST``: every coded file
under SRC -> DST/NAME.png. A plain sequential loop, as a user would write it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from PIL import Image

SUFFIX = {"webp": ".webp", "jpeg": ".jpg"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("action", choices=("encode", "decode"))
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--format", choices=tuple(SUFFIX), default="webp")
    ap.add_argument("--quality", type=int, default=75)
    args = ap.parse_args()
    start = time.perf_counter()
    args.dst.mkdir(parents=True, exist_ok=True)
    if args.action == "encode":
        files = sorted(args.src.glob("*.png"))
        for path in files:
            with Image.open(path) as img:
                img.save(args.dst / (path.stem + SUFFIX[args.format]), quality=args.quality)
    else:
        files = sorted(args.src.glob("*" + SUFFIX[args.format]))
        for path in files:
            with Image.open(path) as img:
                img.save(args.dst / (path.stem + ".png"))
    out_bytes = sum(p.stat().st_size for p in args.dst.iterdir())
    seconds = round(time.perf_counter() - start, 3)
    print(json.dumps({"images": len(files), "seconds": seconds, "output_bytes": out_bytes}))


if __name__ == "__main__":
    main()
