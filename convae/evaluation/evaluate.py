"""Evaluate a model on a data set: distortion with float and quantised latents, and real bits."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convae.atomic import write_bytes
from convae.codec.chunks import Chunker
from convae.codec.inference import pad_to_stride, select_quantizer
from convae.data import ImageSet, load_dataset
from convae.errors import UsageError
from convae.metrics import bits_per_pixel, per_image_mse, psnr, ssim
from convae.zoo import load_model


def _batches(images: ImageSet, batch_size: int):
    if images.stacked:
        for start in range(0, len(images), batch_size):
            yield images.batch(torch.arange(start, min(start + batch_size, len(images))))
    else:
        for img in images.images:
            yield img[None].float() / 255


@torch.inference_mode()
def evaluate(model: str | None, data: str, bits: int | None = None, limit: int | None = None,
             grid: Path | None = None, grid_count: int = 16, batch_size: int = 500) -> dict[str, Any]:
    """MSE/PSNR of float latents, MSE/PSNR/SSIM of quantised latents, and entropy-coded bits per pixel."""
    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit}: must be at least 1")
    loaded = load_model(model)
    net = loaded.model
    q = select_quantizer(net, bits)
    ds = load_dataset(data, net.in_channels, split="test")
    images = ds.test if ds.test is not None else ds.train
    if limit is not None:
        images = ImageSet(images.images[:limit], images.name)
    coder = net.entropy_coder(q)
    sums = {"mse_float": 0.0, "mse": 0.0, "psnr": 0.0, "ssim": 0.0, "bytes": 0, "pixels": 0, "n": 0}

    def code_chunk(chunk: list[np.ndarray]) -> None:
        sums["bytes"] += len(coder.encode(chunk))

    chunker: Chunker[np.ndarray] = Chunker(code_chunk)  # chunked as the codec does, so the bytes match
    shown: list[torch.Tensor] = []
    for x in _batches(images, batch_size):
        h, w = x.shape[-2:]
        y = net.encode(pad_to_stride(x, net.stride))
        s = q.to_symbols(y)
        x_float = net.decode(y)[..., :h, :w]
        x_q = net.decode(q.from_symbols(s))[..., :h, :w]
        x_q8 = x_q.mul(255).round().div(255)  # what a decoded PNG holds
        mse_q = per_image_mse(x, x_q8)
        sums["mse_float"] += float(per_image_mse(x, x_float).sum())
        sums["mse"] += float(mse_q.sum())
        sums["psnr"] += sum(min(psnr(float(m)), 100.0) for m in mse_q)
        sums["ssim"] += float(ssim(x, x_q8).sum())
        sym = s.numpy()
        if coder is not None:
            for i in range(len(sym)):
                chunker.add(sums["n"] + i, sym[i].shape, sym[i])
        else:
            sums["bytes"] += math.ceil(sym[0].size * math.log2(int(q.levels)) / 8) * len(sym)
        sums["pixels"] += h * w * len(x)
        sums["n"] += len(x)
        if grid is not None and len(shown) < grid_count:
            shown += [torch.stack([x[i], x_q8[i]]) for i in range(min(len(x), grid_count - len(shown)))]
    chunker.flush()
    n = sums["n"]
    result = {
        "model": loaded.source,
        "variant": net.variant,
        "weights_sha256": loaded.sha256,
        "data": data,
        "images": n,
        "levels": int(q.levels),
        "coding": "ans" if coder else "raw",
        "mse_float": sums["mse_float"] / n,
        "psnr_float": psnr(sums["mse_float"] / n),
        "mse": sums["mse"] / n,
        "psnr": psnr(sums["mse"] / n),
        "mean_psnr": sums["psnr"] / n,
        "ssim": sums["ssim"] / n,
        "bytes_per_image": sums["bytes"] / n,
        "bits_per_pixel": bits_per_pixel(sums["bytes"], sums["pixels"]),
    }
    if grid is not None and shown:
        write_grid(shown, grid)
        result["grid"] = str(grid)
    return result


def write_grid(pairs: list[torch.Tensor], path: Path) -> None:
    """PNG with originals on the top row and reconstructions below (same-size images)."""
    import io

    from PIL import Image

    from convae.images import restore

    size = pairs[0].shape[-2:]
    pairs = [p for p in pairs if p.shape[-2:] == size]
    top = torch.cat([p[0] for p in pairs], dim=-1)
    bottom = torch.cat([p[1] for p in pairs], dim=-1)
    grid = torch.cat([top, bottom], dim=-2).mul(255).round().clamp(0, 255).to(torch.uint8)
    pixels = np.ascontiguousarray(grid.permute(1, 2, 0).numpy())
    img: Image.Image = restore(pixels, "L" if pixels.shape[2] == 1 else "RGB", None, False)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_bytes(path, buf.getvalue())
