"""Transcendental functions whose float32 result is the same on every CPU and thread count.

ATen evaluates ``exp``, ``softplus`` and ``sigmoid`` with SIMD code whose last bit differs from its scalar code
(which a thread's leftover elements take) and between vector widths (AVX2, AVX-512), so the same
latents could decode to pixels one level apart. Evaluated in float64 and rounded to float32, the two
paths agree: their float64 results differ by an ulp or two, far below float32's rounding step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def portable(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``fn(x)`` (an elementwise function such as ``torch.exp``) in ``x``'s dtype, the same on every CPU."""
    return fn(x.double()).to(x.dtype)


class PortableSigmoid(nn.Module):
    """``nn.Sigmoid`` through ``portable`` (no parameters: a drop-in for its place in a state dict)."""

    def forward(self, x: Tensor) -> Tensor:
        return portable(torch.sigmoid, x)
