"""The one distortion accumulator: its means match the per-image definitions, whatever the batching."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest

from convae.metrics import MAX_PSNR, Distortion, per_image_mse, pixels_to_tensor, psnr, ssim
from tests.conftest import make_images


def _pairs(n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    originals = [a[:, :, None] for a in make_images(n, seed=seed)]
    recons = [np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8) for a in originals]
    return originals, recons


def test_report_is_the_mean_of_per_image_values():
    originals, recons = _pairs(9, seed=1)
    recons[4] = originals[4]  # lossless: infinite PSNR, capped in the mean
    x, y = pixels_to_tensor(originals), pixels_to_tensor(recons)
    mses = per_image_mse(x, y).tolist()
    d = Distortion()
    d.add(x, y)
    r = d.report()
    assert r["images"] == 9
    assert r["mse"] == pytest.approx(np.mean(mses), rel=1e-12)
    assert r["psnr"] == pytest.approx(psnr(np.mean(mses)), rel=1e-12)
    assert r["mean_psnr"] == pytest.approx(np.mean([min(psnr(m), MAX_PSNR) for m in mses]), rel=1e-12)
    assert r["ssim"] == pytest.approx(float(ssim(x, y).mean()), rel=1e-6)


def test_batching_does_not_change_the_report():
    originals, recons = _pairs(10, seed=2)
    whole, pieces = Distortion(), Distortion()
    whole.add_pixels(originals, recons)
    for i in range(0, 10, 3):
        pieces.add_pixels(originals[i : i + 3], recons[i : i + 3])
    a, b = whole.report(), pieces.report()
    assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-6) for k in a)


def test_sums_can_live_in_the_callers_dict_and_without_ssim():
    originals, recons = _pairs(4, seed=3)
    sums: defaultdict[str, float] = defaultdict(float)
    for a, b in zip(originals, recons, strict=True):
        Distortion(sums).add_pixels([a], [b])
    held = Distortion()
    held.add_pixels(originals, recons)
    assert Distortion(sums).report() == pytest.approx(held.report(), rel=1e-6)
    plain = Distortion(with_ssim=False)
    plain.add_pixels(originals, recons)
    assert set(plain.report()) == {"images", "mse", "psnr", "mean_psnr"}


def test_no_images_report_zero_means():
    assert Distortion().report() == {"images": 0, "mse": 0.0, "psnr": math.inf, "mean_psnr": 0.0, "ssim": 0.0}
