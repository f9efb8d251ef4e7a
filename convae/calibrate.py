"""Calibrate a trained model's quantiser: latent ranges and per-channel symbol frequencies."""

from __future__ import annotations

import torch

from convae.data import ImageSet
from convae.models.base import Autoencoder

MAX_CALIBRATION_IMAGES = 20000


@torch.inference_mode()
def calibrate(model: Autoencoder, images: ImageSet, crop: int | None = None, batch_size: int = 500) -> None:
    """Fit ``model.quantizer`` on (up to 20,000 of) ``images``: range first, then symbol counts."""
    model.eval()
    n = min(len(images), MAX_CALIBRATION_IMAGES)
    q = model.quantizer

    def latents():
        gen = torch.Generator().manual_seed(0)
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(start + batch_size, n))
            yield model.encode(images.batch(idx, crop, gen))

    c = model.latent_channels
    lo = torch.full((c,), float("inf"))
    hi = torch.full((c,), float("-inf"))
    for y in latents():
        flat = y.transpose(0, 1).reshape(c, -1)
        lo = torch.minimum(lo, flat.min(1).values)
        hi = torch.maximum(hi, flat.max(1).values)
    q.fit_range(lo, hi)
    levels = int(q.levels)
    counts = torch.zeros(c, levels, dtype=torch.int64)
    for y in latents():
        s = q.to_symbols(y).transpose(0, 1).reshape(c, -1)
        counts += torch.stack([torch.bincount(s[i], minlength=levels) for i in range(c)])
    q.fit_freqs(counts)
    model.fit_side(latents)
