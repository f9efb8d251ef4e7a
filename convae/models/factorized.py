"""``fm-q*`` and ``photo-q*``: fully convolutional codecs with GDN and a factorized entropy model.

The structure follows Ballé et al. 2018 ("variational image compression", factorized prior):
``depth`` stride-2 5x5 convolutions with GDN, a 3x3 convolution to ``m`` latent channels, and the
mirror image in the decoder. Latents are rounded to integers (quantiser mode ``integer``); the
training loss is ``lmbda * 255^2 * MSE + bits per pixel``, so ``lmbda`` sets the rate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convae.models.base import Autoencoder
from convae.models.gdn import GDN
from convae.models.prior import FactorizedPrior
from convae.quantize import INTEGER
from convae.registry import register_model


def _down(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 5, stride=2, padding=2)


def _up(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)


class FactorizedAutoencoder(Autoencoder):
    """GDN autoencoder with ``2**depth`` downsampling, ``n`` hidden and ``m`` latent channels."""

    def __init__(self, in_channels: int = 1, n: int = 64, m: int = 48, depth: int = 2, lmbda: float = 0.01) -> None:
        self.in_channels, self.latent_channels, self.stride = in_channels, m, 2**depth
        super().__init__(quant_mode=INTEGER)
        self.lmbda = lmbda
        enc: list[nn.Module] = []
        dec: list[nn.Module] = [nn.Conv2d(m, n, 3, padding=1), GDN(n, inverse=True)]
        for i in range(depth):
            enc += [_down(in_channels if i == 0 else n, n), GDN(n)]
            last = i == depth - 1
            dec += [_up(n, in_channels if last else n)] + ([] if last else [GDN(n, inverse=True)])
        self.encoder = nn.Sequential(*enc, nn.Conv2d(n, m, 3, padding=1))
        self.decoder = nn.Sequential(*dec)
        self.prior = FactorizedPrior(m)

    def decode(self, y: Tensor) -> Tensor:
        """Reconstruction; clamped to ``[0, 1]`` outside training."""
        x = self.decoder(y)
        return x if self.training else x.clamp(0, 1)

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

    def criterion(self, x: Tensor, out: tuple[Tensor, Tensor | None]) -> tuple[Tensor, dict[str, float]]:
        """``lmbda * 255^2 * MSE + bpp``; terms report both."""
        x_hat, bits = out
        mse = F.mse_loss(x_hat, x)
        bpp = bits / (x.shape[0] * x.shape[-2] * x.shape[-1])
        loss = self.lmbda * 255**2 * mse + bpp
        return loss, {"mse": mse.item(), "bpp": bpp.item()}


def _register(name: str, description: str, **config: object) -> None:
    def factory(**kwargs: object) -> FactorizedAutoencoder:
        return FactorizedAutoencoder(**kwargs)

    factory.__doc__ = description
    factory.__qualname__ = f"variant[{name}]"
    register_model(name, pretrained=f"{name}.safetensors" if name != "factorized" else None, **config)(factory)


FM = {"in_channels": 1, "n": 48, "m": 32, "depth": 2}
PHOTO = {"in_channels": 3, "n": 48, "m": 64, "depth": 3}
FM_LAMBDAS = {"fm-q1": 0.0006, "fm-q2": 0.0015, "fm-q3": 0.005, "fm-q4": 0.02}
PHOTO_LAMBDAS = {"photo-q2": 0.01}

_register("factorized", "GDN + factorized prior, untrained template (set in_channels, n, m, depth, lmbda)",
          **FM, lmbda=0.01)
for _name, _lmbda in FM_LAMBDAS.items():
    _register(_name, f"Fashion-MNIST, 7x7x32 latents, factorized prior, lambda {_lmbda}", **FM, lmbda=_lmbda)
for _name, _lmbda in PHOTO_LAMBDAS.items():
    _register(_name, f"RGB photos of any size, stride 8, factorized prior, lambda {_lmbda}", **PHOTO, lmbda=_lmbda)
