"""Data sets: Fashion-MNIST IDX files and folders of images, held in memory as uint8.

Name a data set on the command line as ``fashion-mnist:PATH`` (a folder with the four IDX
``.gz`` files; ``fashion-mnist:PATH:test`` picks the split for eval) or as a folder of images;
``exclude`` globs (matched against paths relative to the folder) leave images of a folder out,
e.g. an evaluation set kept apart from training.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from convae.errors import DataError, UsageError
from convae.images import find_images, read_image

Crop = int | tuple[int, int] | None  # a random crop: N x N, or H x W

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclass
class ImageSet:
    """uint8 images ``(C, H, W)``: stacked when all share one size, else a list."""

    images: Tensor | list[Tensor]
    name: str = ""

    def __len__(self) -> int:
        return len(self.images)

    @property
    def stacked(self) -> bool:
        """True when every image has the same size (held as one ``(N, C, H, W)`` tensor)."""
        return isinstance(self.images, Tensor)

    def batch(self, index: Tensor, crop: Crop = None, generator: torch.Generator | None = None) -> Tensor:
        """Float ``[0, 1]`` batch of the images at ``index``, random-cropped to ``crop`` (N or (H, W)) if given."""
        if self.stacked and (crop is None or tuple(self.images.shape[-2:]) == crop_size(crop)):
            return self.images[index].float().div_(255)
        if crop is None and len(index) == 1:  # one image of a set of many sizes, whole (validation)
            return self.images[int(index[0])][None].float().div_(255)
        return torch.stack([_crop(self.images[int(i)], crop, generator) for i in index]).float().div_(255)


@dataclass
class Dataset:
    """A named data set: a training set and an optional test set."""

    spec: str
    train: ImageSet
    test: ImageSet | None
    info: dict = field(default_factory=dict)


def crop_size(crop: int | tuple[int, int]) -> tuple[int, int]:
    """``(height, width)`` of a crop given as N (square) or (H, W)."""
    return (crop, crop) if isinstance(crop, int) else (int(crop[0]), int(crop[1]))


def _crop(img: Tensor, size: Crop, generator: torch.Generator | None) -> Tensor:
    if size is None:
        raise DataError("images differ in size: pass --crop N to train on random N x N crops")
    ch, cw = crop_size(size)
    _, h, w = img.shape
    if h < ch or w < cw:
        img = torch.nn.functional.pad(img[None].float(), (0, max(0, cw - w), 0, max(0, ch - h)), mode="replicate")
        img = img[0].to(torch.uint8)
        _, h, w = img.shape
    top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
    return img[:, top : top + ch, left : left + cw]


def read_idx_images(path: Path) -> np.ndarray:
    """uint8 ``(N, 28, 28)`` from a gzip IDX3 file, validating magic, dims and length."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except FileNotFoundError as exc:
        raise DataError(f"{path}: missing Fashion-MNIST file") from exc
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a gzip IDX file ({exc})") from exc
    if len(raw) < 16 or int.from_bytes(raw[:4], "big") != 2051:
        raise DataError(f"{path}: not an IDX image file (bad magic number)")
    n, rows, cols = (int.from_bytes(raw[i : i + 4], "big") for i in (4, 8, 12))
    if len(raw) != 16 + n * rows * cols:
        raise DataError(f"{path}: IDX file is truncated ({len(raw) - 16} of {n * rows * cols} pixel bytes)")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def load_fashion_mnist(folder: Path, splits: tuple[str, ...] = ("train", "test")) -> dict[str, ImageSet]:
    """The requested Fashion-MNIST splits as ``(N, 1, 28, 28)`` uint8 image sets."""
    if not folder.is_dir():
        raise DataError(f"{folder}: Fashion-MNIST folder does not exist")
    out = {}
    for split in splits:
        arr = read_idx_images(folder / IDX_FILES[split][0])
        out[split] = ImageSet(torch.from_numpy(arr.copy()).unsqueeze(1), f"fashion-mnist/{split}")
    return out


def load_folder(folder: Path, channels: int, exclude: tuple[str, ...] = ()) -> ImageSet:
    """Every image under ``folder`` (recursive, sorted) converted to ``channels`` channels, minus ``exclude``."""
    _, files = find_images([folder])
    files = [p for p in files if not any(p.relative_to(folder).match(g) for g in exclude)]
    if not files:
        raise DataError(f"{folder}: every image is excluded by {', '.join(exclude)}")
    images = [torch.from_numpy(read_image(p, channels).pixels).permute(2, 0, 1).contiguous() for p in files]
    if len({tuple(t.shape) for t in images}) == 1:
        return ImageSet(torch.stack(images), str(folder))
    return ImageSet(images, str(folder))


def load_dataset(spec: str, channels: int, split: str | None = None, exclude: tuple[str, ...] = (),
                 limit: int | None = None) -> Dataset:
    """Parse a ``--data`` value and load it (see the module docstring for the syntax).

    ``split`` ("train"/"test") picks one Fashion-MNIST split unless the spec names one;
    ``exclude`` globs apply to folders only; ``limit`` keeps the first N training images.
    """
    ds = _load(spec, channels, split, exclude)
    if limit is not None:
        if limit < 1:
            raise UsageError(f"--limit {limit}: must be at least 1")
        ds.train = ImageSet(ds.train.images[:limit], ds.train.name)
        ds.info = {**ds.info, "train_limit": limit}
    return ds


def _load(spec: str, channels: int, split: str | None, exclude: tuple[str, ...]) -> Dataset:
    if spec.startswith("fashion-mnist:"):
        if exclude:
            raise UsageError("--exclude applies to folders of images, not to fashion-mnist:PATH")
        path, want = spec.split(":", 1)[1], split
        for name in IDX_FILES:
            if path.endswith(":" + name):
                path, want = path[: -len(name) - 1], name
        sets = load_fashion_mnist(Path(path), (want,) if want else tuple(IDX_FILES))
        if channels != 1:
            sets = {k: ImageSet(v.images.expand(-1, channels, -1, -1).contiguous(), v.name) for k, v in sets.items()}
        if want:
            return Dataset(spec, sets[want], sets[want], {"source": "Fashion-MNIST (MIT)", "split": want})
        return Dataset(spec, sets["train"], sets["test"], {"source": "Fashion-MNIST (MIT)"})
    if ":" in spec and not Path(spec).exists() and spec.split(":", 1)[0].isalpha() and len(spec.split(":", 1)[0]) > 1:
        raise UsageError(f"unknown data set kind in {spec!r}; use fashion-mnist:PATH or a folder of images")
    folder = Path(spec)
    if not folder.exists():
        raise DataError(f"{folder}: data folder does not exist")
    if not folder.is_dir():
        raise DataError(f"{folder}: --data must be a folder of images or fashion-mnist:PATH")
    images = load_folder(folder, channels, exclude)
    info = {"source": str(folder), "images": len(images)}
    if exclude:
        info["excluded"] = list(exclude)
    return Dataset(spec, images, None, info)
