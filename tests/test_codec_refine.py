"""``compress --effort N``: encoder-side latent refinement lowers the model's own loss, changes nothing for the
decoder, gives the same bytes on every run, and is refused where it cannot apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from convae.codec import refine
from convae.codec.inference import pad_to_stride
from convae.zoo import load_model
from tests.codec_util import gray, invoke, ok, one_line_error, save


@pytest.fixture
def photo_folder(tmp_path):
    g = gray(52, 70, 4)
    save(Image.fromarray(np.dstack([g, np.roll(g, 9, axis=0), 255 - g])), tmp_path / "in" / "p.png")
    return tmp_path / "in"


@pytest.mark.parametrize("name", ["photoh-q2", "photov"])
def test_refinement_lowers_the_rate_distortion_loss_of_the_rounded_latents(name):
    net = load_model(name).model.eval()
    g = torch.from_numpy(gray(52, 70, 4)).float() / 255
    x = pad_to_stride(torch.stack([g, g.roll(9, 0), 1 - g])[None], net.stride)
    with torch.inference_mode():
        y = net.encode(x)
        better = refine.refine(net, x, y, (52, 70), 40)
        before, after = (float(refine._loss(net, x, torch.round(v), 52, 70)) for v in (y, better))
    assert after < 0.97 * before, (before, after)


def test_effort_codes_decode_and_repeat_byte_for_byte(runner, tmp_path, photo_folder):
    for name in ("a", "b"):
        ok(invoke(runner, "compress", photo_folder, tmp_path / f"{name}.npy", "--effort", "15", "--quiet"))
    ok(invoke(runner, "compress", photo_folder, tmp_path / "plain.npy", "--quiet"))
    a = (tmp_path / "a.npy").read_bytes()
    assert a == (tmp_path / "b.npy").read_bytes() and a != (tmp_path / "plain.npy").read_bytes()
    ok(invoke(runner, "decompress", tmp_path / "a.npy", tmp_path / "r", "--quiet"))
    assert Image.open(tmp_path / "r" / "p.png").size == (70, 52)


def test_effort_is_refused_where_it_cannot_apply(runner, tmp_path, photo_folder, monkeypatch):
    out = tmp_path / "a.npy"
    one_line_error(invoke(runner, "compress", photo_folder, out, "-m", "fm-q1", "--gray", "--effort", "3"), 2,
                   "--effort")
    one_line_error(invoke(runner, "compress", photo_folder, out, "--effort", "-1"), 2, "--effort")
    assert not out.exists()


def test_large_images_are_refined_tile_by_tile_and_still_gain(monkeypatch):
    net = load_model("photoh-q2").model.eval()
    g = torch.from_numpy(gray(52, 70, 4)).float() / 255
    x = pad_to_stride(torch.stack([g, g.roll(9, 0), 1 - g])[None], net.stride)
    with torch.inference_mode():
        y = net.encode(x)
        whole = refine.refine(net, x, y, (52, 70), 40)
        monkeypatch.setattr(refine, "TILED_ABOVE", 1000)
        monkeypatch.setattr(refine, "CORE", 4)  # 7 x 9 latents in 6 tiles of at most 4 x 4
        tiled = refine.refine(net, x, y, (52, 70), 40)
        again = refine.refine(net, x, y, (52, 70), 40)
        before, after_whole, after_tiled = (float(refine._loss(net, x, torch.round(v), 52, 70))
                                            for v in (y, whole, tiled))
    assert torch.equal(tiled, again) and not torch.equal(tiled, whole)
    assert after_tiled < 0.97 * before, (before, after_whole, after_tiled)
    assert after_tiled < before - 0.7 * (before - after_whole), (before, after_whole, after_tiled)
