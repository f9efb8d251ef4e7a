"""The interface every variant implements: encode, decode, and a training loss."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch.nn.functional as F
from torch import Tensor, nn

from convae.entropy.coder import ChunkCoder
from convae.entropy.factorized import EntropyCoder
from convae.entropy.quantize import UNIFORM, Quantizer


class Autoencoder(nn.Module):
    """Base class of all variants.

    Subclasses set ``encoder`` and ``decoder`` and the class attributes below. Inputs are
    ``(N, in_channels, H, W)`` floats in ``[0, 1]`` with ``H`` and ``W`` multiples of ``stride``.
    """

    in_channels: int = 1
    latent_channels: int = 1
    stride: int = 1
    variant: str = ""
    config: dict

    def __init__(self, quant_mode: int = UNIFORM, bits: int = 8) -> None:
        super().__init__()
        self.quantizer = Quantizer(self.latent_channels, quant_mode, bits)

    def encode(self, x: Tensor) -> Tensor:
        """Float latents ``(N, latent_channels, H/stride, W/stride)``."""
        return self.encoder(x)

    def decode(self, y: Tensor) -> Tensor:
        """Reconstruction in ``[0, 1]``."""
        return self.decoder(y)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Training pass: reconstruction and, for variants with a rate term, total bits (else None)."""
        return self.decode(self.encode(x)), None

    def criterion(self, x: Tensor, out: tuple[Tensor, Tensor | None]) -> tuple[Tensor, dict[str, float]]:
        """Training loss from ``forward``'s output; plain autoencoders minimise the mean squared error."""
        mse = F.mse_loss(out[0], x)
        return mse, {"mse": mse.item()}

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Latent shape for an image of this size (padded up to a multiple of ``stride``)."""
        return (self.latent_channels, math.ceil(height / self.stride), math.ceil(width / self.stride))

    def entropy_coder(self, q: Quantizer) -> ChunkCoder | None:
        """The coder for symbols of ``q``: per-channel tables from ``q.freqs`` if it has one per level, else None."""
        if q.freqs.shape[1] != int(q.levels):
            return None
        return EntropyCoder(q.freqs.cpu().numpy())

    def rate_points(self) -> Iterator[None]:
        """Set each rate the model codes at in turn (one here; variable-rate models have several): calibration
        fits the quantiser to the latents of all of them."""
        yield

    def fit_side(self, latents: Callable[[], Iterator[Tensor]]) -> None:
        """Calibrate entropy-model state beyond the quantiser from ``latents()`` (float latents); none here."""
