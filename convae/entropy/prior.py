"""Factorized entropy model: a learned, non-parametric density per latent channel (Ballé et al. 2018).

Each channel's cumulative distribution is a small monotone network ``R -> R`` followed by a
sigmoid (the "EntropyBottleneck" of CompressAI). The probability of an integer symbol ``k`` is
``CDF(k + 0.5) - CDF(k - 0.5)``; during training, additive uniform noise stands in for rounding.
Coding uses the integer frequency tables fitted at calibration (``convae.entropy.quantize``), not this
network, so the bitstream does not depend on floating-point details.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FactorizedPrior(nn.Module):
    """Per-channel learned density of ``(N, C, H, W)`` latents."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0) -> None:
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def _logits_cdf(self, v: Tensor) -> Tensor:
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            v = torch.matmul(F.softplus(matrix), v) + bias
            if i < len(self.factors):
                v = v + torch.tanh(self.factors[i]) * torch.tanh(v)
        return v

    def likelihood(self, y: Tensor) -> Tensor:
        """Probability mass of the unit interval around each value of ``y`` (same shape as ``y``)."""
        n, c, h, w = y.shape
        v = y.transpose(0, 1).reshape(c, 1, -1)
        lower, upper = self._logits_cdf(v - 0.5), self._logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()  # evaluate in the tail where the sigmoid is accurate
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return p.clamp_min(1e-9).reshape(c, n, h, w).transpose(0, 1)

    def bits(self, y: Tensor) -> Tensor:
        """Total information content of ``y`` in bits."""
        return -torch.log2(self.likelihood(y)).sum()
