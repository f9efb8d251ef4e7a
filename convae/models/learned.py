"""Shared parts of the rate-distortion trained codecs: GDN transforms, the loss.

The transforms follow Ballé et al. 2018: ``depth`` stride-2 5x5 convolutions with GDN and a 3x3
convolution to ``m`` latent channels, mirrored in the decoder. With ``post`` > 0 a small residual
filter at full resolution (3x3 convolutions, ``post`` hidden channels) refines the output of the
decoder's last layer, which alone is linear in its inputs: cheap capacity that pays most at high
rates. The decoder's last layer is computed as a sub-pixel convolution (layers/subpixel.py:
same parameters, faster). Latents are rounded to integers (quantiser mode ``integer``); the loss is
``lmbda * 255^2 * MSE + bits per pixel``, so ``lmbda`` sets the rate. Subclasses add an entropy
model and ``forward``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from convae.entropy.quantize import INTEGER
from convae.models.base import Autoencoder
from convae.models.layers.gdn import GDN
from convae.models.layers.subpixel import SubPixelConvTranspose2d


def _down(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 5, stride=2, padding=2)


def _up(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)


class PostFilter(nn.Module):
    """``x + conv(relu(conv(relu(conv(x)))))`` with 3x3 convolutions and ``hidden`` channels.

    The last convolution starts at zero, so the filter starts as the identity (a warm start from weights
    without it keeps their output).
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, channels, 3, padding=1),
        )
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x)


class LearnedCodec(Autoencoder):
    """GDN autoencoder with ``2**depth`` downsampling, ``n`` hidden and ``m`` latent channels."""

    def __init__(self, in_channels: int = 1, n: int = 64, m: int = 48, depth: int = 2, lmbda: float = 0.01,
                 post: int = 0) -> None:
        self.in_channels, self.latent_channels, self.stride = in_channels, m, 2**depth
        super().__init__(quant_mode=INTEGER)
        self.lmbda = lmbda
        enc: list[nn.Module] = []
        dec: list[nn.Module] = [nn.Conv2d(m, n, 3, padding=1), GDN(n, inverse=True)]
        for i in range(depth):
            enc += [_down(in_channels if i == 0 else n, n), GDN(n)]
            last = i == depth - 1
            dec += [SubPixelConvTranspose2d(n, in_channels)] if last else [_up(n, n), GDN(n, inverse=True)]
        self.encoder = nn.Sequential(*enc, nn.Conv2d(n, m, 3, padding=1))
        if post:
            dec.append(PostFilter(in_channels, post))
        self.decoder = nn.Sequential(*dec)

    def decode(self, y: Tensor) -> Tensor:
        """Reconstruction; clamped to ``[0, 1]`` outside training."""
        x = self.decoder(y)
        return x if self.training else x.clamp(0, 1)

    def criterion(self, x: Tensor, out: tuple[Tensor, Tensor | None]) -> tuple[Tensor, dict[str, float]]:
        """``lmbda * 255^2 * MSE + bpp``; terms report both."""
        x_hat, bits = out
        mse = F.mse_loss(x_hat, x)
        bpp = bits / (x.shape[0] * x.shape[-2] * x.shape[-1])
        loss = self.lmbda * 255**2 * mse + bpp
        return loss, {"mse": mse.item(), "bpp": bpp.item()}
