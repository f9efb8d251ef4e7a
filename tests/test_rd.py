"""The RD report: Bjøntegaard math on curves with known answers, and the pipeline on tiny data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from convae.registry import create_model
from PIL import Image

from convae.data import IDX_FILES, load_dataset
from convae.evaluation.baselines import mosaic, per_image, tile, untile
from convae.evaluation.bjontegaard import bd_psnr, bd_psnr_vs_best, bd_rate
from convae.evaluation.rd import run_rd
from convae.training.recipes import RECIPES
from convae.training.train import train
from tests.conftest import make_images

RATES = np.array([0.4, 0.8, 1.3, 2.1, 3.0])
PSNRS = 22 + 7 * np.log2(RATES)


def test_bd_psnr_of_a_shifted_curve_is_the_shift():
    assert bd_psnr((RATES, PSNRS), (RATES, PSNRS + 1.5)) == pytest.approx(1.5, abs=1e-9)
    assert bd_psnr((RATES, PSNRS), (RATES, PSNRS - 2.0)) == pytest.approx(-2.0, abs=1e-9)


def test_bd_rate_of_a_scaled_curve_is_the_scale():
    assert bd_rate((RATES, PSNRS), (RATES * 0.75, PSNRS)) == pytest.approx(-25.0, abs=1e-6)
    assert bd_rate((RATES, PSNRS), (RATES * 1.2, PSNRS)) == pytest.approx(20.0, abs=1e-6)


def test_bd_against_the_best_of_several_anchors():
    worse = (RATES, PSNRS - 3)
    better = (RATES, PSNRS + 0.5)
    assert bd_psnr_vs_best([worse, better], (RATES, PSNRS + 2), (0.5, 2.0)) == pytest.approx(1.5, abs=1e-9)
    assert np.isnan(bd_psnr((RATES, PSNRS), (RATES * 10, PSNRS)))  # no overlap: undefined, not a number


def test_tile_round_trip_and_mosaic_amortises_headers():
    imgs = make_images(10, seed=4)[..., None]
    assert np.array_equal(untile(tile(imgs, 4), 10, 28, 28), imgs)
    assert mosaic(imgs, "webp", 50).bpp < per_image(list(imgs), "webp", 50).bpp


def _write_idx(folder: Path, split: str, images: np.ndarray) -> None:
    n, h, w = images.shape
    header = b"".join(v.to_bytes(4, "big") for v in (2051, n, h, w))
    (folder / IDX_FILES[split][0]).write_bytes(gzip.compress(header + images.tobytes()))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A fake Fashion-MNIST folder, a few RGB photos, and a tiny factorized model trained on the train split."""
    root = tmp_path_factory.mktemp("rd-data")
    fashion = root / "fashion"
    fashion.mkdir()
    _write_idx(fashion, "train", make_images(96, seed=1))
    _write_idx(fashion, "test", make_images(12, seed=2))
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (20, 27, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    torch.manual_seed(0)
    weights = root / "fz.safetensors"
    net = create_model("factorized", n=8, m=4, lmbda=0.01)
    train(net, load_dataset(f"fashion-mnist:{fashion}", 1), weights, RECIPES["fast"].override(epochs=1, batch_size=32))
    return fashion, photos, weights


def test_pipeline_writes_compressai_json_summary_and_plot(tiny_data, tmp_path):
    fashion, photos, weights = tiny_data
    out = tmp_path / "rd"
    logs: list[str] = []
    summary = run_rd(out, fashion, photos, quick=True, fm_models=[str(weights)], photo_models=[], log=logs.append)
    assert set(summary["datasets"]) == {"fashion-mnist", "photos-gray", "photos-rgb"}
    fm = summary["datasets"]["fashion-mnist"]
    assert {"jpeg", "webp", "avif", "webp-mosaic", "avif-mosaic", "png", "pca", "convae-fm"} <= set(fm["codecs"])
    for codec in fm["codecs"]:
        doc = json.loads((out / "fashion-mnist" / f"{codec}.json").read_text())
        assert {"name", "description", "results"} <= set(doc)
        res = doc["results"]
        assert {"psnr", "ssim", "bpp", "encoding_time", "decoding_time"} <= set(res)
        assert len({len(res[k]) for k in ("psnr", "ssim", "bpp", "encoding_time", "decoding_time")}) == 1
    ours = fm["codecs"]["convae-fm"]["results"]
    setting = ours["settings"][0]
    assert ours["bpp"][0] == pytest.approx(8 * (setting["npy_bytes"] + setting["manifest_bytes"]) / (12 * 784),
                                           abs=1e-5)
    assert fm["codecs"]["png"]["results"]["psnr"] == [None]  # lossless: infinite PSNR is null in JSON
    point = fm["deltas"]["convae-fm"]["points"][0]
    assert point["model"] == str(weights) and "webp-mosaic" in point["psnr_gain_at_equal_bpp"]
    assert (out / "rd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| convae-fm |" in (out / "summary.md").read_text()
    assert fm["megapixels_per_image"] == pytest.approx(784 / 1e6)
    row = next(line for line in (out / "summary.md").read_text().splitlines() if line.startswith("| convae-fm |"))
    assert row.split("|")[-2].strip() == f"{ours['decoding_time'][0] / (784 / 1e6):.3f}"  # decode s/MP
    assert json.loads((out / "summary.json").read_text())["datasets"].keys() == summary["datasets"].keys()
    logs.clear()
    run_rd(out, fashion, photos, quick=True, fm_models=[str(weights)], photo_models=[], log=logs.append)
    assert logs and all("reused" in line for line in logs)  # same images, settings and weights: nothing re-measured


def test_cli_rd_quick(runner, tiny_data, tmp_path, monkeypatch):
    from convae.cli.app import app

    fashion, photos, _ = tiny_data
    monkeypatch.setattr("convae.evaluation.rd.shipped", lambda pattern: [])
    result = runner.invoke(app, ["eval", "--rd", "--quick", "--data", f"fashion-mnist:{fashion}", "--photos",
                                 str(photos), "--out", str(tmp_path / "o"), "--json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "summary.json").is_file()
    bad = runner.invoke(app, ["eval", "--rd", "--data", str(tmp_path), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "fashion-mnist:PATH" in bad.output


def test_eval_without_data_or_rd_is_a_usage_error(runner):
    from convae.cli.app import app

    result = runner.invoke(app, ["eval"])
    assert result.exit_code == 2


def test_avif444_keeps_the_colour_resolution_that_pillows_default_avif_halves():
    """Red and blue columns one pixel wide: 4:2:0 (Pillow's default) averages them to purple, 4:4:4 keeps them."""
    stripes = np.zeros((32, 32, 3), np.uint8)
    stripes[:, ::2, 0], stripes[:, 1::2, 2] = 255, 255
    half, full = per_image([stripes], "avif", 90), per_image([stripes], "avif444", 90)
    assert half.psnr < 15 < 40 < full.psnr
