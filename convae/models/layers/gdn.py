"""Generalized divisive normalization (Ballé et al. 2016), the nonlinearity of learned image codecs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convae.models.layers.portable import portable


def _inverse_softplus(x: Tensor) -> Tensor:
    return x + torch.log(-torch.expm1(-x))


class GDN(nn.Module):
    """``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)``; ``inverse=True`` multiplies instead (IGDN).

    ``beta`` and ``gamma`` are kept positive through a softplus of free parameters.
    """

    def __init__(self, channels: int, inverse: bool = False, gamma_init: float = 0.1) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_raw = nn.Parameter(_inverse_softplus(torch.ones(channels)))
        gamma = torch.full((channels, channels), 1e-4) + torch.eye(channels) * gamma_init
        self.gamma_raw = nn.Parameter(_inverse_softplus(gamma))

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        beta = portable(F.softplus, self.beta_raw) + 1e-6
        gamma = portable(F.softplus, self.gamma_raw).view(c, c, 1, 1)
        norm = torch.sqrt(F.conv2d(x * x, gamma, beta))
        return x * norm if self.inverse else x / norm
