"""Calibrate a trained model's quantiser: latent ranges and per-channel symbol frequencies."""

from __future__ import annotations

import torch

from convae.data import ImageSet
from convae.models.base import Autoencoder

MAX_CALIBRATION_IMAGES = 20000


@torch.inference_mode()
def calibrate(model: Autoencoder, images: ImageSet, crop: int | None = None, batch_size: int = 500) -> None:
    """Fit ``model.quantizer`` on (up to 20,000 of) ``images`` at each of its rates: range first, then counts."""
    model.eval()
    n = min(len(images), MAX_CALIBRATION_IMAGES)

    def latents():
        for _ in model.rate_points():  # every rate of a variable-rate model, the same crops at each
            gen = torch.Generator().manual_seed(0)
            for start in range(0, n, batch_size):
                idx = torch.arange(start, min(start + batch_size, n))
                yield model.encode(images.batch(idx, crop, gen))

    model.quantizer.fit(latents)
    model.fit_side(latents)
