"""Encoder-side latent refinement (``compress --effort N``): N gradient steps on each image's latents.

The encoder's latents are a fast guess; a few hundred steps of Adam on the model's own rate-distortion
loss (``lmbda * 255^2 * MSE + bpp``, the loss it was trained on) find latents that code the same image in
fewer bits at the same quality. Rounding is relaxed by stochastic Gumbel annealing (Yang et al. 2020,
"Improving inference for neural image compression"): each latent is a soft mix of its floor and ceiling
whose temperature falls to near zero, so the last steps see almost the hard rounding the coder applies.
The decoder and the code file are unchanged; the noise comes from a generator seeded per batch, so the
same images and weights give the same codes on one machine (the same at 1 and 2 threads where measured);
float gradients on another CPU may pick other latents, which decode exactly all the same.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from convae.errors import UsageError
from convae.models.base import Autoencoder

LR = 0.02  # Adam's step on the latents (in quantisation steps)
TAU_START, TAU_END = 0.5, 0.01  # Gumbel temperature: from soft rounding to almost hard
MAX_PIXELS = 1 << 21  # refinement holds the whole image's gradients: up to 2 M pixels


def _soft_round(y: Tensor, tau: float, gen: torch.Generator) -> Tensor:
    """``floor(y)`` or ``floor(y) + 1``, mixed by a Gumbel-softmax over their distances at temperature ``tau``."""
    low = torch.floor(y)
    frac = y - low
    up, down = torch.atanh((1 - frac).clamp(max=1 - 1e-6)), torch.atanh(frac.clamp(max=1 - 1e-6))
    logits = torch.stack([-down, -up], dim=-1) / tau
    u = torch.rand(logits.shape, generator=gen).clamp(1e-9, 1 - 1e-9)
    return low + torch.softmax(logits - torch.log(-torch.log(u)), dim=-1)[..., 1]


def _loss(net: Autoencoder, x: Tensor, y_hat: Tensor, h: int, w: int) -> Tensor:
    """The model's rate-distortion loss of latents ``y_hat`` for images ``x`` (cropped to ``h`` x ``w``)."""
    bits = net.latent_bits(y_hat)
    mse = (net.decode(y_hat)[..., :h, :w] - x[..., :h, :w]).square().mean()
    return net.lmbda * 255**2 * mse + bits / (x.shape[0] * h * w)


def refine(net: Autoencoder, x: Tensor, y: Tensor, size: tuple[int, int], steps: int) -> Tensor:
    """Latents ``y`` of images ``x`` (padded; ``size`` their true height and width) after ``steps`` steps."""
    if not hasattr(net, "latent_bits"):
        raise UsageError(f"--effort: {net.variant} has no learned entropy model to refine against; give a "
                         "hyperprior model (photoh, photov, fmh, fmc) or drop --effort")
    h, w = size
    if h * w > MAX_PIXELS:
        raise UsageError(f"--effort: an image of {w} x {h} pixels is over the {MAX_PIXELS:,} that refinement "
                         "takes (it holds every pixel's gradient); drop --effort for it")
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode(False), torch.enable_grad():
        x = x.clone()
        y = y.clone().requires_grad_(True)
        opt = torch.optim.Adam([y], lr=LR)
        for i in range(steps):
            tau = max(TAU_START * math.exp(-4 * i / steps), TAU_END)
            loss = _loss(net, x, _soft_round(y, tau, gen), h, w)
            opt.zero_grad(set_to_none=True)
            loss.backward(inputs=[y])
            opt.step()
    return y.detach()
