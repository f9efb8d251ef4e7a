"""Encoder-side latent refinement (``compress --effort N``): N gradient steps on each image's latents.

The encoder's latents are a fast guess; a few hundred steps of Adam on the model's own rate-distortion
loss (``lmbda * 255^2 * MSE + bpp``, the loss it was trained on) find latents that code the same image in
fewer bits at the same quality. Rounding is relaxed by stochastic Gumbel annealing (Yang et al. 2020,
"Improving inference for neural image compression"): each latent is a soft mix of its floor and ceiling
whose temperature falls to near zero, so the last steps see almost the hard rounding the coder applies.
Images are refined one at a time, and those over ``TILED_ABOVE`` pixels one tile at a time, in the tiles'
order: each core's latents move while the window's other latents stay at their rounded values, so memory
follows the window (at most about 0.75 M pixels), not the image or the batch.
The decoder and the code file are unchanged; the noise comes from a generator seeded per batch, so the
same images and weights give the same codes on one machine (the same at 1 and 2 threads where measured);
float gradients on another CPU may pick other latents, which decode exactly all the same.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from convae.codec.tiles import HALO, windows
from convae.errors import UsageError
from convae.models.base import Autoencoder

LR = 0.02  # Adam's step on the latents (in quantisation steps)
TAU_START, TAU_END = 0.5, 0.01  # Gumbel temperature: from soft rounding to almost hard
CORE = 96  # latents a side of a refined tile's core (768 pixels at stride 8)
TILED_ABOVE = 1 << 20  # images over this many pixels (1 M) are refined tile by tile


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


def _descend(net: Autoencoder, x: Tensor, y: Tensor, core: tuple[slice, slice], size: tuple[int, int],
             steps: int, gen: torch.Generator) -> Tensor:
    """The ``core`` latents of ``y`` after ``steps`` steps on the loss of window ``x`` (``size`` its valid
    pixels); the rest of ``y`` stays as it is, rounded."""
    with torch.inference_mode(False), torch.enable_grad():
        x, fixed = x.clone(), torch.round(y)
        free = y[..., core[0], core[1]].clone().requires_grad_(True)
        opt = torch.optim.Adam([free], lr=LR)
        for i in range(steps):
            tau = max(TAU_START * math.exp(-4 * i / steps), TAU_END)
            y_hat = fixed.clone()
            y_hat[..., core[0], core[1]] = _soft_round(free, tau, gen)
            loss = _loss(net, x, y_hat, *size)
            opt.zero_grad(set_to_none=True)
            loss.backward(inputs=[free])
            opt.step()
    return free.detach()


def _refine_image(net: Autoencoder, x: Tensor, y: Tensor, size: tuple[int, int], steps: int,
                  gen: torch.Generator) -> Tensor:
    """Latents ``y`` of one padded image ``x`` (batch of 1) after ``steps`` steps, tile by tile if it is large."""
    if x.shape[-2] * x.shape[-1] <= TILED_ABOVE:
        return _descend(net, x, y, (slice(None), slice(None)), size, steps, gen)
    y, s = y.clone(), net.stride
    for (cy0, cy1, cx0, cx1), (wy0, wy1, wx0, wx1) in windows(*y.shape[-2:], CORE, HALO):
        window = (min(size[0], wy1 * s) - wy0 * s, min(size[1], wx1 * s) - wx0 * s)
        core = (slice(cy0 - wy0, cy1 - wy0), slice(cx0 - wx0, cx1 - wx0))
        y[..., cy0:cy1, cx0:cx1] = _descend(net, x[..., wy0 * s:wy1 * s, wx0 * s:wx1 * s],
                                            y[..., wy0:wy1, wx0:wx1], core, window, steps, gen)
    return y


def refine(net: Autoencoder, x: Tensor, y: Tensor, size: tuple[int, int], steps: int) -> Tensor:
    """Latents ``y`` of images ``x`` (padded; ``size`` their true height and width) after ``steps`` steps."""
    if not hasattr(net, "latent_bits"):
        raise UsageError(f"--effort: {net.variant} has no learned entropy model to refine against; give a "
                         "hyperprior model (photoh, photov, fmh, fmc) or drop --effort")
    gen = torch.Generator().manual_seed(0)
    return torch.cat([_refine_image(net, x[i:i + 1], y[i:i + 1], size, steps, gen) for i in range(x.shape[0])])
