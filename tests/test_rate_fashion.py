"""The issue's rate and quality floor on real Fashion-MNIST: seed at 8 bits, the 10k test images as PNGs.

<= 200 bytes per image on disk, everything counted (codes + manifest), and quantisation costs
<= 0.3 dB PSNR versus the float latents. The model is trained here: 2 epochs of the fast recipe.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from convae.codec.format import open_codes
from convae.data import read_idx_images
from convae.metrics import psnr
from tests.codec_util import invoke, ok
from tests.conftest import FASHION, needs_fashion, write_pngs


@needs_fashion
@pytest.mark.slow
def test_fashion_mnist_rate_and_quantisation_floor(runner, tmp_path):
    weights = tmp_path / "seed.safetensors"
    ok(invoke(runner, "train", "--model", "seed", "--data", f"fashion-mnist:{FASHION}", "--epochs", "2", "--out",
              weights, "--quiet"))
    images = read_idx_images(FASHION / "t10k-images-idx3-ubyte.gz")
    folder = tmp_path / "test"
    write_pngs(folder, images)
    npy = tmp_path / "test.npy"
    r = invoke(runner, "compress", folder, npy, "--model", weights, "--json")
    ok(r)
    summary = json.loads(r.stdout)
    on_disk = npy.stat().st_size
    assert summary["images"] == 10000 and summary["output_bytes"] == on_disk and summary["coding"] == "ans"
    e = invoke(runner, "eval", "--model", weights, "--data", f"fashion-mnist:{FASHION}:test", "--json")
    ok(e)
    ev = json.loads(e.stdout)
    # the decoded PNGs hold what eval measured
    ok(invoke(runner, "decompress", npy, tmp_path / "recon", "--model", weights, "--quiet"))
    decoded = np.stack([np.asarray(Image.open(tmp_path / "recon" / f"img{i:04d}.png")) for i in range(10000)])
    png_psnr = psnr(float(np.mean((decoded / 255.0 - images / 255.0) ** 2)))
    print(f"\nFashion-MNIST test set, seed 2 epochs: {on_disk / 10000:.1f} bytes/image on disk "
          f"(manifest {open_codes(npy).manifest_bytes} bytes in all), "
          f"PSNR float {ev['psnr_float']:.3f} dB, 8-bit {ev['psnr']:.3f} dB, decoded PNGs {png_psnr:.3f} dB")
    assert on_disk / 10000 <= 200
    assert ev["psnr_float"] - ev["psnr"] <= 0.3
    assert png_psnr == pytest.approx(ev["psnr"], abs=0.01)
