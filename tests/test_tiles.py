"""Tiled coding of large images: the cores cover the grid once, and tiles give the codes of one pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convae.codec import tiles
from convae.codec.inference import pad_to_stride, to_uint8
from convae.zoo import load_model


@pytest.mark.parametrize("h,w,core", [(1, 1, 4), (9, 13, 4), (8, 8, 8), (130, 7, 128)])
def test_cores_cover_the_latent_grid_exactly_once(h, w, core):
    seen = np.zeros((h, w), dtype=int)
    for (y0, y1, x0, x1), (wy0, wy1, wx0, wx1) in tiles.windows(h, w, core, 3):
        seen[y0:y1, x0:x1] += 1
        assert 0 <= wy0 <= y0 < y1 <= wy1 <= h and 0 <= wx0 <= x0 < x1 <= wx1 <= w
    assert (seen == 1).all()


def test_tiles_give_the_codes_and_pixels_of_one_pass(monkeypatch):
    """Small cores (4 latents) on a 200x136 image: symbols identical, pixels within float rounding."""
    net = load_model("photoh-q2").model.eval()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((1, 3, 17, 25), dtype=np.float32))
    x = torch.nn.functional.interpolate(x, size=(136, 200), mode="bicubic").clamp(0, 1)
    x = pad_to_stride(x, net.stride).contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr(tiles, "TILED_ABOVE", 0)
    q = net.quantizer
    with torch.inference_mode():
        s_one = q.to_symbols(net.encode(x))
        s_tiled = q.to_symbols(tiles.tiled_encode(net.encode, x, net.stride, core=4))
        assert torch.equal(s_one, s_tiled)
        y = q.from_symbols(s_one).contiguous(memory_format=torch.channels_last)
        one = to_uint8(net.decode(y)).astype(int)
        tiled = to_uint8(tiles.tiled_decode(net.decode, y, net.stride, core=4)).astype(int)
    diff = np.abs(one - tiled)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_small_images_run_in_one_pass():
    calls = []
    x = torch.zeros(1, 3, 64, 64)
    tiles.tiled_encode(lambda t: calls.append(t.shape) or t[..., ::8, ::8], x, 8)
    assert calls == [x.shape]


def _photo(name: str = "BSDS500/val/101085.jpg") -> np.ndarray:
    """A real evaluation photo where the shared data is present, else a smooth generated one of its size."""
    from PIL import Image

    from tests.conftest import SHARED_DATA

    path = SHARED_DATA / "photos" / name
    if path.is_file():
        return np.array(Image.open(path).convert("RGB"))
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.random((1, 3, 40, 60), dtype=np.float32))
    x = torch.nn.functional.interpolate(x, size=(321, 481), mode="bicubic").clamp(0, 1)
    return (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def test_no_seams_at_tile_borders(monkeypatch):
    """PSNR within 4 pixels of tile borders against the interior: the same for tiles as for one pass (no seams)."""
    net = load_model("photoh-q2").model.eval()
    img = _photo()
    h, w = img.shape[:2]
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    x = pad_to_stride(x, net.stride).contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr(tiles, "TILED_ABOVE", 0)
    core = 8  # latents: a border every 8 * stride pixels
    with torch.inference_mode():
        q = net.quantizer
        tiled_y = q.from_symbols(q.to_symbols(tiles.tiled_encode(net.encode, x, net.stride, core=core)))
        one_y = q.from_symbols(q.to_symbols(net.encode(x)))
        tiled = to_uint8(tiles.tiled_decode(net.decode, tiled_y, net.stride, core=core))[0, :h, :w].astype(float)
        one = to_uint8(net.decode(one_y))[0, :h, :w].astype(float)
    step = core * net.stride
    near = np.zeros((h, w), bool)
    for edge in range(step, max(h, w), step):
        near[max(0, edge - 4):edge + 4, :] = True
        near[:, max(0, edge - 4):edge + 4] = True

    def psnr(rec: np.ndarray, where: np.ndarray) -> float:
        return float(10 * np.log10(255**2 / ((rec - img)[where] ** 2).mean()))

    border, interior = psnr(tiled, near), psnr(tiled, ~near)
    print(f"\ntile borders {border:.3f} dB, interior {interior:.3f} dB; one pass: {psnr(one, near):.3f}, "
          f"{psnr(one, ~near):.3f} dB")
    assert abs(border - psnr(one, near)) < 0.01 and abs(interior - psnr(one, ~near)) < 0.01
