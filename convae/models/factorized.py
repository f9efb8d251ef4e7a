"""The ``factorized`` architecture: GDN codecs with a factorized entropy model (Ballé et al. 2018)."""

from __future__ import annotations

import torch
from torch import Tensor

from convae.entropy.prior import FactorizedPrior
from convae.models.learned import LearnedCodec
from convae.registry import register_model


class FactorizedAutoencoder(LearnedCodec):
    """GDN transforms (``LearnedCodec``) with one learned density per latent channel."""

    def __init__(self, in_channels: int = 1, n: int = 64, m: int = 48, depth: int = 2, lmbda: float = 0.01,
                 post: int = 0) -> None:
        super().__init__(in_channels, n, m, depth, lmbda, post)
        self.prior = FactorizedPrior(m)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Reconstruction from rounded latents (straight-through) and the bits of the noisy latents."""
        y = self.encode(x)
        if self.training:
            bits = self.prior.bits(y + torch.empty_like(y).uniform_(-0.5, 0.5))
            y_hat = y + (torch.round(y) - y).detach()
        else:
            y_hat = torch.round(y)
            bits = self.prior.bits(y_hat)
        return self.decode(y_hat), bits


@register_model("factorized", in_channels=1, n=48, m=32, depth=2, post=0, lmbda=0.01)
def factorized(**config: object) -> FactorizedAutoencoder:
    """GDN + factorized prior (set in_channels, n, m, depth, lmbda)."""
    return FactorizedAutoencoder(**config)
