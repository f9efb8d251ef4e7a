"""Quality and rate metrics: MSE, PSNR, SSIM, bits per pixel."""

from __future__ import annotations

import math
from collections.abc import MutableMapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

MAX_PSNR = 100.0  # per-image PSNR cap: a lossless image would count as infinite


def psnr(mse: float, peak: float = 1.0) -> float:
    """PSNR in dB of a mean squared error on ``[0, peak]`` data."""
    return math.inf if mse <= 0 else 10.0 * math.log10(peak * peak / mse)


def per_image_mse(x: Tensor, y: Tensor) -> Tensor:
    """Mean squared error of each image in a batch ``(N, C, H, W)``."""
    return (x.float() - y.float()).pow(2).flatten(1).mean(1)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    coords = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """SSIM of each image (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5), shape ``(N,)``.

    Images smaller than the window use a window of their own size.
    """
    x, y = x.float(), y.float()
    size = min(11, x.shape[-1], x.shape[-2])
    g = _gaussian_window(size, 1.5 * size / 11).to(x.device)
    c = x.shape[1]
    wx = g.view(1, 1, 1, -1).expand(c, 1, 1, size)
    wy = g.view(1, 1, -1, 1).expand(c, 1, size, 1)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, wx, groups=c), wy, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


def bits_per_pixel(nbytes: int, pixels: int) -> float:
    """Bits per pixel of ``nbytes`` over ``pixels`` pixels."""
    return 8.0 * nbytes / pixels if pixels else math.nan


def pixels_to_tensor(images: Sequence[np.ndarray]) -> Tensor:
    """Same-size uint8 ``(H, W, C)`` images as one float ``(N, C, H, W)`` batch in ``[0, 1]``."""
    return torch.from_numpy(np.ascontiguousarray(np.stack(images))).permute(0, 3, 1, 2).float() / 255


class Distortion:
    """Running sums of per-image MSE, capped PSNR and SSIM over batches; ``report`` turns them into means.

    The sums are kept in ``sums`` (a new dict, or one the caller holds), so a plain dict can carry them.
    """

    def __init__(self, sums: MutableMapping[str, float] | None = None, with_ssim: bool = True) -> None:
        self.sums = {} if sums is None else sums
        for key in ("images", "mse", "psnr", "ssim"):
            self.sums.setdefault(key, 0.0)
        self.with_ssim = with_ssim

    def add(self, x: Tensor, y: Tensor) -> None:
        """Add originals ``x`` and reconstructions ``y``, float ``(N, C, H, W)`` batches in ``[0, 1]``."""
        mse = per_image_mse(x, y)
        self.sums["images"] += len(mse)
        self.sums["mse"] += float(mse.sum(dtype=torch.float64))
        self.sums["psnr"] += sum(min(psnr(m), MAX_PSNR) for m in mse.tolist())
        if self.with_ssim:
            self.sums["ssim"] += float(ssim(x, y).sum(dtype=torch.float64))

    def add_pixels(self, originals: Sequence[np.ndarray], recons: Sequence[np.ndarray]) -> None:
        """Add same-size uint8 ``(H, W, C)`` image pairs as one batch."""
        self.add(pixels_to_tensor(originals), pixels_to_tensor(recons))

    def report(self) -> dict[str, float]:
        """``images``; ``mse`` (mean) and ``psnr`` (of that mean); ``mean_psnr`` (of per-image PSNRs, each
        capped at ``MAX_PSNR``); ``ssim`` (mean, unless made without). Means of no images are taken over one."""
        n = self.sums["images"] or 1
        mse = self.sums["mse"] / n
        out = {"images": int(self.sums["images"]), "mse": mse, "psnr": psnr(mse), "mean_psnr": self.sums["psnr"] / n}
        if self.with_ssim:
            out["ssim"] = self.sums["ssim"] / n
        return out
