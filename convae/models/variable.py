"""One codec for every rate: a mean-scale hyperprior with per-level gain vectors (variable rate).

The encoder's latents are scaled per channel by ``exp(enc_gain[level])`` before rounding, and the
rounded latents by ``exp(dec_gain[level])`` before synthesis, as in the gain units of Cui et al. 2021
(CompressAI's variable-rate models): a larger gain means finer steps, more bits, less distortion.
Level ``t`` in ``[0, 8]`` is continuous: the log-gains between two trained levels interpolate
linearly, and so does the rate. Level ``i`` trains at ``lmbda_i = 0.01 * 2**(i - 5)``; level 5 starts
as the identity, so a model warm-started from ``photoh-q2`` (lambda 0.01) begins as that codec.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from convae.errors import UsageError
from convae.models.hyperprior import HyperpriorAutoencoder
from convae.models.layers.portable import portable
from convae.quality import DEFAULT_LEVEL, LEVELS, level_of
from convae.registry import register_model

BASE_LMBDA = 0.01  # the lambda of DEFAULT_LEVEL


def level_lmbda(t: float) -> float:
    """The rate-distortion weight of (possibly fractional) level ``t``: ``0.01 * 2**(t - 5)``."""
    return BASE_LMBDA * 2 ** (t - DEFAULT_LEVEL)


class VariableRateHyperprior(HyperpriorAutoencoder):
    """``HyperpriorAutoencoder`` with learned per-level gains; ``set_level`` picks the rate."""

    def __init__(self, **config: object) -> None:
        config.pop("lmbda", None)  # each level has its own
        super().__init__(**config, lmbda=BASE_LMBDA)
        init = torch.tensor([0.5 * math.log(level_lmbda(i) / BASE_LMBDA) for i in range(LEVELS)])
        m = self.latent_channels
        self.enc_gain = nn.Parameter(init[:, None].repeat(1, m))  # log-gains, one row per level
        self.dec_gain = nn.Parameter(-init[:, None].repeat(1, m))
        self.level = DEFAULT_LEVEL

    def centre_gains(self, lmbda: float) -> None:
        """Shift the gains so that the level of ``lmbda`` starts as the identity: a warm start from a
        fixed-rate model trained at ``lmbda`` then begins as that model at that level."""
        shift = 0.5 * math.log(lmbda / BASE_LMBDA)
        with torch.no_grad():
            self.enc_gain -= shift
            self.dec_gain += shift

    def set_level(self, t: float) -> None:
        """Code at level ``t`` (a float in ``[0, 8]``; 5 is the default, higher means more bytes, better quality)."""
        if not 0 <= t <= LEVELS - 1:
            raise ValueError(f"level {t} is outside 0..{LEVELS - 1}")
        self.level = float(t)
        self.lmbda = level_lmbda(self.level)

    def set_quality(self, quality: float) -> None:
        """``-q 0..100`` as in JPEG/WebP: level ``8 * quality / 100`` (0: fewest bytes, 100: best quality)."""
        if not 0 <= quality <= 100:
            raise UsageError(f"--quality {quality}: {self.variant or 'a variable-rate model'} takes 0 to 100")
        self.set_level(level_of(quality))

    def _gain(self, table: Tensor) -> Tensor:
        """``exp`` of the log-gains at the current level, interpolated, shaped ``(1, m, 1, 1)``."""
        i = min(int(self.level), LEVELS - 2)
        frac = self.level - i
        g = table[i] * (1 - frac) + table[i + 1] * frac if frac else table[i]
        return portable(torch.exp, g)[None, :, None, None]

    def encode(self, x: Tensor) -> Tensor:
        """Float latents at the current level's scale."""
        return self.encoder(x) * self._gain(self.enc_gain)

    def decode(self, y: Tensor) -> Tensor:
        """Reconstruction from (rounded) latents of the current level; clamped to ``[0, 1]`` outside training."""
        x = self.decoder(y * self._gain(self.dec_gain))
        return x if self.training else x.clamp(0, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Training picks a level uniformly in ``[0, 8]`` per batch (every rate gets the training)."""
        if self.training:
            self.set_level(float(torch.rand(()) * (LEVELS - 1)))
        return super().forward(x)

    def train(self, mode: bool = True) -> VariableRateHyperprior:
        """``eval()`` returns to the default level (training left a random one): ``set_level`` after it."""
        if not mode:
            self.set_level(DEFAULT_LEVEL)
        return super().train(mode)

    def rate_points(self) -> Iterator[None]:
        """Each integer level in turn (calibration covers every rate), then back to the level set before."""
        before = self.level
        try:
            for i in range(LEVELS):
                self.set_level(i)
                yield
        finally:
            self.set_level(before)


@register_model("photov", in_channels=3, n=48, m=64, depth=3, post=0, hyper=64, z_channels=24, mean_steps=4)
def photov(**config: object) -> VariableRateHyperprior:
    """RGB photos, stride 8, mean-scale hyperprior, one model for every rate (levels 0-8)."""
    return VariableRateHyperprior(**config)


@register_model("grayv", in_channels=1, n=48, m=32, depth=2, post=0, hyper=48, z_channels=16, mean_steps=4)
def grayv(**config: object) -> VariableRateHyperprior:
    """Small gray images, stride 4 (``fmh``'s transforms), one model for every rate; no weights ship: the base
    ``convae train --data`` fine-tunes from ``fmh-q3`` for small gray images."""
    return VariableRateHyperprior(**config)
