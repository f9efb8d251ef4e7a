"""Held-out validation while training: estimated bpp and PSNR of whole images at a few rates.

Each image is coded whole (edge-padded to a multiple of the stride, the padding left out of the
error and of the pixel count), in eval mode with rounded latents; the rate is the entropy model's
estimate of the bits, which the coded bytes match to within the file's few bytes of overhead.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from convae.data import ImageSet
from convae.models.base import Autoencoder

VARIABLE_QUALITIES = (0, 50, 100)  # the -q points a variable-rate model is validated at
BATCH = 16


def quality_points(model: Autoencoder) -> tuple[int | None, ...]:
    """The ``-q`` values to validate at: three for a variable-rate model, the one rate otherwise."""
    return VARIABLE_QUALITIES if hasattr(model, "set_quality") else (None,)


@torch.inference_mode()
def validate(model: Autoencoder, images: ImageSet) -> dict[str, Any]:
    """``{"val_loss", "val_mse", "val": {q: {"bpp", "psnr"}}}`` over every image of ``images``."""
    model.eval()
    points, losses, mses = {}, [], []
    for q in quality_points(model):
        if q is not None:
            model.set_quality(q)  # type: ignore[attr-defined]
        sq, bits, pixels, values = _sums(model, images)
        mse = sq / values
        bpp = bits / pixels if bits is not None else None
        points[str(q) if q is not None else "-"] = {"bpp": bpp, "psnr": 10 * math.log10(1 / max(mse, 1e-12))}
        lmbda = getattr(model, "lmbda", None)
        losses.append(lmbda * 255**2 * mse + bpp if lmbda is not None and bpp is not None else mse)
        mses.append(mse)
    model.eval()  # back to the default rate
    return {"val_loss": sum(losses) / len(losses), "val_mse": mses[len(mses) // 2], "val": points}


def _sums(model: Autoencoder, images: ImageSet) -> tuple[float, float | None, int, int]:
    """Squared error, bits, pixels and sample values over ``images`` at the model's current rate."""
    device = next(model.parameters()).device
    sq, bits, pixels, values = 0.0, 0.0, 0, 0
    step = BATCH if images.stacked else 1
    for start in range(0, len(images), step):
        x = images.batch(torch.arange(start, min(start + step, len(images)))).to(device)
        h, w = x.shape[-2:]
        s = model.stride
        padded = F.pad(x, (0, -w % s, 0, -h % s), mode="replicate") if (h % s or w % s) else x
        x_hat, b = model(padded.contiguous(memory_format=torch.channels_last))
        sq += float(((x_hat[..., :h, :w] - x) ** 2).sum())
        values += x.numel()
        pixels += x.shape[0] * h * w
        bits = None if b is None or bits is None else bits + float(b)
    return sq, bits, pixels, values
