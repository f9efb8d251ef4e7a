"""Per-channel quantisation of latents to integer symbols, with entropy-coding frequency tables.

Two modes share one module so every variant is coded the same way:

- ``uniform``: ``2**bits`` levels spread over the calibrated range ``[lo, hi]`` of each channel
  (for plain autoencoders such as ``seed``; ``--bits`` picks the level count).
- ``integer``: latents are rounded to integers (for variants trained with a learned rate term);
  ``lo``/``hi`` are the calibrated integer bounds of each channel.

``freqs`` holds integer symbol counts per channel measured on training data at calibration; the
entropy coder builds its tables from them, so encoder and decoder use identical integer tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

UNIFORM, INTEGER = 0, 1


class Quantizer(nn.Module):
    """Maps float latents ``(N, C, H, W)`` to integer symbols in ``[0, levels)`` and back."""

    def __init__(self, channels: int, mode: int = UNIFORM, bits: int = 8) -> None:
        super().__init__()
        self.register_buffer("mode", torch.tensor(mode, dtype=torch.int64))
        self.register_buffer("levels", torch.tensor(2**bits if mode == UNIFORM else 1, dtype=torch.int64))
        self.register_buffer("lo", torch.zeros(channels))
        self.register_buffer("hi", torch.ones(channels))
        self.register_buffer("freqs", torch.zeros(channels, 0, dtype=torch.int64))

    @property
    def calibrated(self) -> bool:
        """True once ``lo``/``hi`` (and the frequency tables) come from data."""
        return self.freqs.shape[1] > 0

    @property
    def bits(self) -> int | None:
        """Bits per symbol of a uniform quantiser (None for integer mode)."""
        return int(self.levels).bit_length() - 1 if int(self.mode) == UNIFORM else None

    def with_bits(self, bits: int) -> Quantizer:
        """A copy with ``2**bits`` levels over the same range (no frequency tables unless equal)."""
        if int(self.mode) != UNIFORM:
            from convae.errors import UsageError

            raise UsageError("--bits applies to uniform-quantised variants; this variant rounds to integers")
        if bits == self.bits:
            return self
        q = Quantizer(self.lo.numel(), UNIFORM, bits)
        q.lo.copy_(self.lo)
        q.hi.copy_(self.hi)
        return q

    def _step(self) -> Tensor:
        if int(self.mode) == INTEGER:
            return torch.ones_like(self.lo)
        return (self.hi - self.lo).clamp_min(1e-8) / (int(self.levels) - 1)

    def to_symbols(self, y: Tensor) -> Tensor:
        """Integer symbols (int64) in ``[0, levels)``; values outside the range are clipped."""
        lo, step = self.lo.view(1, -1, 1, 1), self._step().view(1, -1, 1, 1)
        return torch.round((y - lo) / step).clamp_(0, int(self.levels) - 1).to(torch.int64)

    def from_symbols(self, s: Tensor) -> Tensor:
        """Float latents for the decoder."""
        lo, step = self.lo.view(1, -1, 1, 1), self._step().view(1, -1, 1, 1)
        return lo + s.to(lo.dtype) * step

    def quantize(self, y: Tensor) -> Tensor:
        """Quantise and dequantise in one step (what the decoder sees)."""
        return self.from_symbols(self.to_symbols(y))

    @torch.no_grad()
    def fit_range(self, y_min: Tensor, y_max: Tensor) -> None:
        """Set the per-channel range from observed minima and maxima of training latents."""
        if int(self.mode) == INTEGER:
            lo = torch.round(y_min)
            hi = torch.maximum(torch.round(y_max), lo + 1)  # at least two symbols: a one-symbol table cannot code
            self.levels.fill_(int((hi - lo).max().item()) + 1)
        else:
            lo, hi = y_min, torch.maximum(y_max, y_min + 1e-6)
        self.lo.copy_(lo)
        self.hi.copy_(hi)

    @torch.no_grad()
    def fit(self, latents: Callable[[], Iterable[Tensor]]) -> None:
        """Fit range then symbol counts on the ``(N, C, H, W)`` batches of ``latents()`` (iterated twice)."""
        c = self.lo.numel()
        lo, hi = torch.full((c,), math.inf), torch.full((c,), -math.inf)
        for y in latents():
            flat = y.transpose(0, 1).reshape(c, -1)
            lo, hi = torch.minimum(lo, flat.min(1).values), torch.maximum(hi, flat.max(1).values)
        self.fit_range(lo, hi)
        levels = int(self.levels)
        counts = torch.zeros(c, levels, dtype=torch.int64)
        for y in latents():
            s = self.to_symbols(y).transpose(0, 1).reshape(c, -1)
            counts += torch.stack([torch.bincount(s[i], minlength=levels) for i in range(c)])
        self.fit_freqs(counts)

    @torch.no_grad()
    def fit_freqs(self, counts: Tensor) -> None:
        """Store per-channel symbol counts (``C x levels``); +1 so every symbol stays codable."""
        self.freqs = counts.to(torch.int64) + 1

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        adopt_stored_shapes(self, state_dict, prefix, "freqs")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def adopt_stored_shapes(module: nn.Module, state_dict: dict[str, Tensor], prefix: str, *names: str) -> None:
    """Resize buffers ``names`` of ``module`` to their shapes in ``state_dict`` (calibration-dependent sizes).

    Call from ``_load_from_state_dict`` before the parent's, which copies values only into equal shapes.
    """
    for name in names:
        if prefix + name in state_dict:
            setattr(module, name, torch.empty_like(state_dict[prefix + name]))
