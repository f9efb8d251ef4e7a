"""``fm-q*`` and ``photo-q*``: GDN codecs with a factorized entropy model (Ballé et al. 2018)."""

from __future__ import annotations

import torch
from torch import Tensor

from convae.entropy.prior import FactorizedPrior
from convae.models.learned import LearnedCodec, register_family


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


FM = {"in_channels": 1, "n": 48, "m": 32, "depth": 2, "post": 0}
PHOTO = {"in_channels": 3, "n": 48, "m": 64, "depth": 3, "post": 0}
FM_LAMBDAS = {"fm-q1": 0.0006, "fm-q2": 0.0015, "fm-q3": 0.005, "fm-q4": 0.02}
PHOTO_LAMBDAS = {"photo-q2": 0.01}

register_family(FactorizedAutoencoder, "factorized",
                "GDN + factorized prior, untrained template (set in_channels, n, m, depth, lmbda)",
                pretrained=False, **FM, lmbda=0.01)
for _name, _lmbda in FM_LAMBDAS.items():
    register_family(FactorizedAutoencoder, _name, f"Fashion-MNIST, 7x7x32 latents, factorized prior, lambda {_lmbda}",
                    **FM, lmbda=_lmbda)
for _name, _lmbda in PHOTO_LAMBDAS.items():
    register_family(FactorizedAutoencoder, _name,
                    f"RGB photos of any size, stride 8, factorized prior, lambda {_lmbda}", **PHOTO, lmbda=_lmbda)
