"""The factorized-prior family: shapes, the rate term, and bit-exact entropy-coded round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from convae.registry import create_model, list_models
from PIL import Image

from convae.codec.api import compress, decompress
from convae.data import load_dataset
from convae.entropy.quantize import INTEGER
from convae.training.recipes import RECIPES
from convae.training.train import train
from convae.zoo import load_model
from tests.conftest import make_images, train_tiny, write_pngs

TINY = {"n": 8, "m": 4}


def test_variants_are_registered_with_integer_quantiser():
    names = list_models("fm-q*")
    assert len(names) >= 4 and "photo-q2" in list_models("photo-*")
    for name in names:
        assert int(create_model(name).quantizer.mode) == INTEGER
    assert create_model("seed").variant == "seed"


@pytest.mark.parametrize(("name", "size", "latent"), [("fm-q1", (28, 28), (7, 7)), ("photo-q2", (24, 40), (3, 5))])
def test_shapes(name, size, latent):
    net = create_model(name).eval()
    x = torch.rand(2, net.in_channels, *size)
    with torch.no_grad():
        y = net.encode(x)
        x_hat, bits = net(x)
    assert y.shape == (2, net.latent_channels, *latent)
    assert x_hat.shape == x.shape and float(bits) > 0
    assert float(x_hat.min()) >= 0 and float(x_hat.max()) <= 1


def test_odd_sizes_pad_to_the_stride():
    net = create_model("photo-q2")
    assert net.latent_shape(37, 45) == (net.latent_channels, 5, 6)


def _fit_bits(lmbda: float, steps: int = 60) -> float:
    torch.manual_seed(0)
    net = create_model("factorized", **TINY, lmbda=lmbda)
    x = torch.from_numpy(make_images(32, size=16, seed=3)).float().div(255)[:, None]
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in range(steps):
        loss, _ = net.criterion(x, net(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        return float(net(x)[1])


def test_lower_lambda_spends_fewer_bits():
    assert _fit_bits(0.0005) < _fit_bits(0.05)


@pytest.fixture(scope="module")
def tiny_factorized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny factorized model trained for one epoch on generated images, calibrated and saved."""
    folder = tmp_path_factory.mktemp("fz-train")
    write_pngs(folder, make_images(128, seed=5))
    out = tmp_path_factory.mktemp("fz-model") / "fz.safetensors"
    return train_tiny(out, folder, "factorized", lr=3e-3, **TINY, lmbda=0.01)


def test_entropy_coded_round_trip_is_bit_exact(tiny_factorized, tmp_path):
    src = tmp_path / "in"
    imgs = make_images(6, size=30, seed=7)  # 30 is not a multiple of the stride: padded and cropped back
    write_pngs(src, imgs)
    first = compress([src], tmp_path / "a.npy", model=str(tiny_factorized))
    compress([src], tmp_path / "b.npy", model=str(tiny_factorized))
    assert first.extra["coding"] == "ans"
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
    decompress(tmp_path / "a.npy", tmp_path / "out1", model=str(tiny_factorized))
    decompress(tmp_path / "a.npy", tmp_path / "out2", model=str(tiny_factorized))
    net = load_model(str(tiny_factorized)).model
    for i, a in enumerate(imgs):
        name = f"img{i:04d}.png"
        got = np.asarray(Image.open(tmp_path / "out1" / name))
        assert got.shape == a.shape
        assert (tmp_path / "out1" / name).read_bytes() == (tmp_path / "out2" / name).read_bytes()
        x = torch.nn.functional.pad(torch.from_numpy(a).float().div(255)[None, None], (0, 2, 0, 2), mode="replicate")
        with torch.no_grad():  # what the codec produces: encode, quantise, decode
            recon = net.decode(net.quantizer.quantize(net.encode(x)))
        want = recon[0, 0, :30, :30].mul(255).round().clamp(0, 255).to(torch.uint8).numpy()
        assert np.array_equal(got, want)


def test_rgb_model_codes_grayscale_photos(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "rgb"
    folder.mkdir()
    blobs = make_images(24, size=24, seed=9)
    for i in range(8):
        Image.fromarray(np.stack(blobs[3 * i : 3 * i + 3], axis=-1)).save(folder / f"{i}.png")
    weights = tmp_path / "rgb.safetensors"
    net = create_model("factorized", in_channels=3, **TINY, depth=3, lmbda=0.01)
    train(net, load_dataset(str(folder), 3), weights, RECIPES["fast"].override(epochs=1, batch_size=4, lr=1e-3))
    gray = tmp_path / "gray"
    write_pngs(gray, make_images(2, size=20, seed=1))
    compress([gray], tmp_path / "g.npy", model=str(weights))
    decompress(tmp_path / "g.npy", tmp_path / "g-out", model=str(weights))
    with Image.open(tmp_path / "g-out" / "img0000.png") as img:
        assert img.mode == "L" and img.size == (20, 20)
