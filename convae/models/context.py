"""The ``context`` architecture: hyperprior + checkerboard and channel context (He et al. 2021; Minnen & Singh 2020).

Latents are decoded in four steps: the first half of the channels at the "anchor" positions of a
checkerboard, then the rest of that half, then the anchors and the rest of the second half. The
first step uses the hyperprior's mean and scale as they are; each later step adds a correction
computed by a small network from those and the latents already decoded (zero where not yet
known). At coding time the correction runs on the hyperprior's exact grid, so encoder and decoder
derive the same Gaussian tables on any machine. The shipped variants also refine the decoder's
output with a full-resolution post-filter (``post``) and centre their tables on eighths of the
predicted mean (``mean_steps``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convae.models.hyperprior import (
    A_BITS,
    A_MAX,
    HyperpriorAutoencoder,
    _floor_activation,
    check_exact_layer,
    layer_weights,
)
from convae.registry import register_model


class ContextHyperpriorAutoencoder(HyperpriorAutoencoder):
    """Mean-scale hyperprior plus a per-step context correction with ``ctx_hidden`` hidden channels."""

    steps = 4

    def __init__(self, in_channels: int = 1, n: int = 64, m: int = 48, depth: int = 2, lmbda: float = 0.01,
                 hyper: int = 48, z_channels: int = 16, ctx_hidden: int = 32, post: int = 0,
                 mean_steps: int = 4) -> None:
        super().__init__(in_channels, n, m, depth, lmbda, hyper, z_channels, post, mean_steps)
        self.ctx = nn.ModuleList()
        for _ in range(self.steps - 1):
            out = nn.Conv2d(ctx_hidden, 2 * m, 1)
            nn.init.zeros_(out.weight)  # starts with the plain hyperprior's prediction (for warm starts from fmh)
            nn.init.zeros_(out.bias)
            self.ctx.append(nn.ModuleList([nn.Conv2d(3 * m, ctx_hidden, 3, padding=1), out]))

    def step_ids(self, channels: int, height: int, width: int) -> Tensor:
        """Step ``2 * half + (i + j) % 2`` of the latent at channel ``c``, row ``i``, column ``j``."""
        half = (torch.arange(channels) >= channels // 2).to(torch.int64).view(-1, 1, 1)
        parity = (torch.arange(height).view(-1, 1) + torch.arange(width).view(1, -1)) % 2
        return 2 * half + parity

    def _refine(self, mean: Tensor, log_scale: Tensor, known: Tensor, step: int, exact: bool) -> tuple[Tensor, Tensor]:
        first, last = self.ctx[step - 1]
        params = torch.cat([mean, log_scale], dim=1)
        if exact:
            params = _floor_activation(params, -A_MAX)
        x = torch.cat([params, known], dim=1)
        h = F.relu(F.conv2d(x, *layer_weights(first, exact), padding=1))
        if exact:
            h = _floor_activation(h, 0.0)
        dm, ds = F.conv2d(h, *layer_weights(last, exact)).chunk(2, dim=1)
        return mean + dm, log_scale + ds

    @torch.no_grad()
    def check_exact(self) -> None:
        """Also bound the context layers' exact-grid sums (inputs within the quantiser's range or the grid's)."""
        super().check_exact()
        y_max = float(max(self.quantizer.lo.abs().max(), self.quantizer.hi.abs().max()))
        for k, (first, last) in enumerate(self.ctx, start=1):
            check_exact_layer(first, first.weight[0].numel(), max(A_MAX, y_max), A_BITS, f"context layer {k}a")
            check_exact_layer(last, last.weight[0].numel(), A_MAX, A_BITS, f"context layer {k}b")


@register_model("context", in_channels=1, n=48, m=32, depth=2, post=32, lmbda=0.01, hyper=48, z_channels=16,
                ctx_hidden=32, mean_steps=8)
def context(**config: object) -> ContextHyperpriorAutoencoder:
    """GDN + mean-scale hyperprior + checkerboard/channel context (set the hyperprior's options, ctx_hidden)."""
    return ContextHyperpriorAutoencoder(**config)
