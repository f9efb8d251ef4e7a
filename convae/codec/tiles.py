"""Large images through the transforms in overlapping tiles: bounded memory, no seams.

An image over ``TILED_ABOVE`` pixels is cut on its latent grid into cores of ``CORE`` latents a side;
each core runs through ``encode`` or ``decode`` inside a window ``HALO`` latents wider on every side
(clipped at the image's edges), and only the core's part of the result is kept. ``HALO`` reaches past
every convolution of the shipped transforms (at most 3 latents for the stride-8 photo codecs), so a
core sees the same inputs as in one pass over the whole image: the result differs from a one-pass run
at most by float rounding, and depends only on the image's size, so coding stays deterministic.
Peak memory then follows the window (about 1 M pixels), not the image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

CORE = 128  # latents a side of a tile's core (1,024 pixels at stride 8)
HALO = 6  # latents of context on each side of a core
TILED_ABOVE = 1 << 21  # images over this many pixels (2 M) are tiled; smaller ones run in one pass


def _spans(size: int, core: int, halo: int) -> Iterator[tuple[int, int, int, int]]:
    """``(core start, core end, window start, window end)`` along one axis of ``size`` latents."""
    for start in range(0, size, core):
        end = min(start + core, size)
        yield start, end, max(0, start - halo), min(size, end + halo)


def windows(height: int, width: int, core: int, halo: int) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Core and window boxes ``(y0, y1, x0, x1)`` covering a ``height x width`` latent grid, row by row."""
    for ys in _spans(height, core, halo):
        for xs in _spans(width, core, halo):
            yield (ys[0], ys[1], xs[0], xs[1]), (ys[2], ys[3], xs[2], xs[3])


def _tiled(fn: Callable[[Tensor], Tensor], x: Tensor, grid: tuple[int, int], scale_in: int, scale_out: int,
           core: int, halo: int) -> Tensor:
    """``fn`` over windows of ``x``, whose latent ``grid`` is ``scale_in`` input and ``scale_out`` output
    pixels a latent; the cores' outputs assembled into one tensor."""
    out: Tensor | None = None
    for (cy0, cy1, cx0, cx1), (wy0, wy1, wx0, wx1) in windows(*grid, core, halo):
        part = fn(x[..., wy0 * scale_in:wy1 * scale_in, wx0 * scale_in:wx1 * scale_in])
        if out is None:
            out = part.new_empty((*part.shape[:2], grid[0] * scale_out, grid[1] * scale_out))
        s = scale_out
        out[..., cy0 * s:cy1 * s, cx0 * s:cx1 * s] = part[..., (cy0 - wy0) * s:(cy1 - wy0) * s,
                                                          (cx0 - wx0) * s:(cx1 - wx0) * s]
    assert out is not None
    return out.contiguous(memory_format=torch.channels_last)


def tiled_encode(encode: Callable[[Tensor], Tensor], x: Tensor, stride: int, core: int = CORE,
                 halo: int = HALO) -> Tensor:
    """``encode(x)`` for images ``x`` (padded to multiples of ``stride``), tiled when they are large."""
    h, w = x.shape[-2:]
    if h * w <= TILED_ABOVE:
        return encode(x)
    return _tiled(encode, x, (h // stride, w // stride), stride, 1, core, halo)


def tiled_decode(decode: Callable[[Tensor], Tensor], y: Tensor, stride: int, core: int = CORE,
                 halo: int = HALO) -> Tensor:
    """``decode(y)`` for latents ``y`` of images ``stride`` times their size, tiled when those are large."""
    h, w = y.shape[-2:]
    if h * w * stride * stride <= TILED_ABOVE:
        return decode(y)
    return _tiled(decode, y, (h, w), 1, stride, core, halo)
