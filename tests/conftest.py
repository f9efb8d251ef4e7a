"""Shared fixtures: small generated images, a tiny trained model, the real data when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CONVAE_DATA", REPO.parent / "shared" / "data"))
FASHION = SHARED_DATA / "fashion-mnist"

needs_fashion = pytest.mark.skipif(
    not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"real Fashion-MNIST not found at {FASHION} (set CONVAE_DATA)",
)


def make_images(n: int, size: int = 28, seed: int = 0) -> np.ndarray:
    """Smooth random blobs, uint8 (n, size, size): learnable, unlike white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.zeros((n, size, size))
    for i in range(n):
        for _ in range(3):
            cx, cy, r = [*rng.uniform(0.2, 0.8, 2).tolist(), rng.uniform(0.1, 0.3)]
            out[i] += rng.uniform(0.3, 1.0) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


def write_pngs(folder: Path, images: np.ndarray, prefix: str = "img") -> list[Path]:
    """Write each uint8 array as ``folder/prefixNNNN.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, a in enumerate(images):
        p = folder / f"{prefix}{i:04d}.png"
        Image.fromarray(a).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def train_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """256 generated 28x28 grayscale PNGs to train on."""
    folder = tmp_path_factory.mktemp("train")
    write_pngs(folder, make_images(256, seed=1))
    return folder


def train_tiny(out: Path, data: Path, variant: str, epochs: int = 1, batch_size: int = 32, lr: float | None = None,
               **config: object) -> Path:
    """Train ``variant`` (``config``) from seed 0 on the images in ``data``, fast recipe; returns the weights path."""
    from convae.registry import create_model

    from convae.data import load_dataset
    from convae.training.recipes import RECIPES
    from convae.training.train import train

    torch.manual_seed(0)
    net = create_model(variant, **config)
    train(net, load_dataset(str(data), net.in_channels), out,
          RECIPES["fast"].override(epochs=epochs, batch_size=batch_size, lr=lr))
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, train_folder: Path) -> Path:
    """A `seed` model trained for 2 epochs on the generated images (weights path)."""
    return train_tiny(tmp_path_factory.mktemp("model") / "tiny.safetensors", train_folder, "seed", epochs=2)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """12 generated 28x28 grayscale PNGs in a fresh folder."""
    folder = tmp_path / "images"
    write_pngs(folder, make_images(12, seed=2))
    return folder


def check_chunk_round_trip(net, sizes: tuple[tuple[int, int], ...] = ((28, 9), (36, 3), (4, 1))) -> None:
    """For ``(size, count)`` generated images: one chunk decodes to the same symbols, and decoding and
    re-encoding on one torch thread gives the same symbols and bytes (the entropy model is thread-independent)."""
    coder = net.entropy_coder(net.quantizer)
    for size, n in sizes:
        x = torch.from_numpy(make_images(n, size=size, seed=size)).float().div(255)[:, None]
        with torch.no_grad():
            symbols = list(net.quantizer.to_symbols(net.encode(x)).numpy())
        data = coder.encode(symbols)
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            back = coder.decode(data, [s.shape for s in symbols])
            one_thread = coder.encode(symbols)
        finally:
            torch.set_num_threads(threads)
        assert all(np.array_equal(a, b) for a, b in zip(symbols, back, strict=True))
        assert one_thread == data
