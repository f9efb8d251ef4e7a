"""Evaluate a model on a data set: distortion with float and quantised latents, and real bits."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convae.codec.chunks import Chunker
from convae.codec.inference import pad_to_stride, select_quantizer
from convae.data import ImageSet, load_dataset
from convae.entropy.quantize import Quantizer
from convae.errors import UsageError
from convae.images import batched, write_png
from convae.metrics import Distortion, bits_per_pixel
from convae.models.base import Autoencoder
from convae.zoo import load_at_quality


@torch.inference_mode()
def evaluate(model: str | None, data: str, bits: int | None = None, limit: int | None = None,
             grid: Path | None = None, grid_count: int = 16, batch_size: int = 500,
             quality: float | None = None) -> dict[str, Any]:
    """MSE/PSNR of float latents, MSE/PSNR/SSIM of quantised latents, and entropy-coded bits per pixel
    (``quality``: a family's -qN variant, or a variable-rate model's -q 0..100)."""
    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit}: must be at least 1")
    loaded = load_at_quality(model, quality)
    net = loaded.model
    q = select_quantizer(net, bits)
    images = _test_images(data, net.in_channels, limit)
    tally = _Tally(net, q, grid_count if grid is not None else 0)
    for x in _batches(images, batch_size):
        tally.add(x)
    result = {"model": loaded.source, "variant": net.variant, "weights_sha256": loaded.sha256, "data": data,
              **tally.report()}
    if grid is not None and tally.shown:
        write_grid(tally.shown, grid)
        result["grid"] = str(grid)
    return result


def _test_images(data: str, channels: int, limit: int | None) -> ImageSet:
    """The data set's test split (its only split when it has none), cut to ``limit`` images."""
    ds = load_dataset(data, channels, split="test")
    images = ds.test if ds.test is not None else ds.train
    return images if limit is None else ImageSet(images.images[:limit], images.name)


def _batches(images: ImageSet, batch_size: int) -> Iterator[torch.Tensor]:
    """Float batches of ``images``: up to ``batch_size`` when they share one size, else one image each."""
    for index in batched(range(len(images)), batch_size if images.stacked else 1):
        yield images.batch(torch.tensor(index)) if images.stacked else images.images[index[0]][None].float() / 255


class _Tally:
    """Distortion of float and quantised latents and the coded bytes, over batches; keeps ``keep`` image pairs."""

    def __init__(self, net: Autoencoder, q: Quantizer, keep: int) -> None:
        self.net, self.q, self.keep = net, q, keep
        self.coder = net.entropy_coder(q)
        self.chunker: Chunker[np.ndarray] = Chunker(self._code)  # chunked as the codec does, so the bytes match
        self.float_latents, self.quantised = Distortion(with_ssim=False), Distortion()
        self.images = self.bytes = self.pixels = 0
        self.shown: list[torch.Tensor] = []

    def _code(self, chunk: list[np.ndarray]) -> None:
        self.bytes += len(self.coder.encode(chunk))

    def add(self, x: torch.Tensor) -> None:
        """Code one batch ``(N, C, H, W)`` and measure its reconstructions."""
        net, q = self.net, self.q
        h, w = x.shape[-2:]
        y = net.encode(pad_to_stride(x, net.stride))
        s = q.to_symbols(y)
        self.float_latents.add(x, net.decode(y)[..., :h, :w])
        x_q8 = net.decode(q.from_symbols(s))[..., :h, :w].mul(255).round().div(255)  # what a decoded PNG holds
        self.quantised.add(x, x_q8)
        sym = s.numpy()
        if self.coder is not None:
            for i in range(len(sym)):
                self.chunker.add(self.images + i, sym[i].shape, sym[i])
        else:
            self.bytes += math.ceil(sym[0].size * math.log2(int(q.levels)) / 8) * len(sym)
        self.pixels += h * w * len(x)
        self.images += len(x)
        want = min(len(x), self.keep - len(self.shown))
        self.shown += [torch.stack([x[i], x_q8[i]]) for i in range(want)]

    def report(self) -> dict[str, Any]:
        """Code what is left, then the images, levels, coding, distortion and rate so far."""
        self.chunker.flush()
        f, d, n = self.float_latents.report(), self.quantised.report(), self.images
        return {"images": n, "levels": int(self.q.levels), "coding": "ans" if self.coder else "raw",
                "mse_float": f["mse"], "psnr_float": f["psnr"], "mse": d["mse"], "psnr": d["psnr"],
                "mean_psnr": d["mean_psnr"], "ssim": d["ssim"], "bytes_per_image": self.bytes / n,
                "bpp": bits_per_pixel(self.bytes, self.pixels)}


def write_grid(pairs: list[torch.Tensor], path: Path) -> None:
    """PNG with originals on the top row and reconstructions below (same-size images), written atomically."""
    size = pairs[0].shape[-2:]
    pairs = [p for p in pairs if p.shape[-2:] == size]
    top = torch.cat([p[0] for p in pairs], dim=-1)
    bottom = torch.cat([p[1] for p in pairs], dim=-1)
    grid = torch.cat([top, bottom], dim=-2).mul(255).round().clamp(0, 255).to(torch.uint8)
    write_png(path, np.ascontiguousarray(grid.permute(1, 2, 0).numpy()), atomic=True)
