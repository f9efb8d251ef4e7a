"""Chunk coder of hyperprior variants: side latents with per-channel tables, latents with Gaussian tables.

One constriction ANS stream holds a chunk of equally sized images. Decoding order: the side
latents ``z`` of every image (channel by channel, factorized tables as in ``convae.entropy.factorized``),
then the latents ``y`` step by step (one step for the plain hyperprior; four for a context model,
whose tables for a step depend on the latents of the steps before it), within a step grouped by
Gaussian table (ascending table id, positions in C order within a group). Each latent is coded as
its offset from the predicted mean (in whole steps), with the table of its predicted scale and
mean step (``HyperpriorAutoencoder.exact_hyper`` and ``exact_params``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import constriction
import numpy as np
import torch

from convae.entropy.factorized import EntropyCoder, reading, stream_bytes
from convae.entropy.quantize import Quantizer
from convae.errors import FormatError

BAND_ROWS = 64  # latent rows per band of a one-step model's tables: their memory follows the band, not the image
Tables = Callable[[torch.Tensor | None, int], tuple[np.ndarray, torch.Tensor]]


class HyperpriorNet(Protocol):
    """What the coder needs of a hyperprior model: its quantisers, tables and exact side path."""

    quantizer: Quantizer
    z_quantizer: Quantizer
    y_freqs: torch.Tensor
    mean_steps: int
    steps: int

    def h_a(self, y: torch.Tensor) -> torch.Tensor: ...

    def side_size(self, height: int, width: int) -> tuple[int, int]: ...

    def step_ids(self, channels: int, height: int, width: int) -> torch.Tensor: ...

    def exact_hyper(self, z: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def exact_hyper_rows(self, z: torch.Tensor, size: tuple[int, int],
                         rows: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def exact_params(self, hyper: tuple[torch.Tensor, torch.Tensor], known: torch.Tensor | None = None,
                     step: int = 0) -> tuple[torch.Tensor, torch.Tensor]: ...


class HyperpriorCoder:
    """Encodes/decodes lists of equally shaped ``(C, H, W)`` quantiser symbols of one hyperprior model."""

    def __init__(self, net: HyperpriorNet) -> None:
        self.net = net
        self.q, self.zq = net.quantizer, net.z_quantizer
        self.z_coder = EntropyCoder(self.zq.freqs.cpu().numpy())
        self.freqs = net.y_freqs.cpu().numpy().astype(np.float64)
        self.radius = self.freqs.shape[1] // 2
        self.table_dtype = np.min_scalar_type(len(self.freqs) - 1)  # uint8 for 192 tables: argsort is a radix sort
        self.lo = self.q.lo.cpu().to(torch.int64).view(1, -1, 1, 1)
        self.levels = int(self.q.levels)
        self._models: dict[int, constriction.stream.model.Categorical] = {}

    def _model(self, table: int) -> constriction.stream.model.Categorical:
        if table not in self._models:
            row = self.freqs[table]
            self._models[table] = constriction.stream.model.Categorical(row / row.sum(), perfect=False)
        return self._models[table]

    def _step_tables(self, z_symbols: torch.Tensor, shape: tuple[int, ...]) -> Tables:
        """``tables(known, step)``: table id and centre of every latent of ``shape`` ``(n, C, H, W)`` (flat), valid
        for the latents of ``step``. A one-step model's are made in bands of ``BAND_ROWS`` latent rows; a context
        model's from one hyper-synthesis of the whole grid, shared by its steps."""
        z = self.zq.from_symbols(z_symbols).cpu()
        if self.net.steps == 1:
            return lambda known, step: self._band_tables(z, shape)
        hyper = self.net.exact_hyper(z, shape[-2:])
        return lambda known, step: self._tables(hyper, known, step)

    def _band_tables(self, z: torch.Tensor, shape: tuple[int, ...]) -> tuple[np.ndarray, torch.Tensor]:
        """``_tables`` of a one-step model, band by band: the same numbers as from the whole grid at once."""
        n, c, h, w = shape
        table = np.empty((n, c, h, w), dtype=self.table_dtype)
        centre = torch.empty((n, c, h, w), dtype=torch.int64)
        for first in range(0, h, BAND_ROWS):
            last = min(h, first + BAND_ROWS)
            band_table, band_centre = self._tables(self.net.exact_hyper_rows(z, (h, w), (first, last)), None, 0)
            table[:, :, first:last] = band_table.reshape(n, c, last - first, w)
            centre[:, :, first:last] = band_centre.view(n, c, last - first, w)
        return table.reshape(-1), centre.reshape(-1)

    def _tables(self, hyper: tuple[torch.Tensor, torch.Tensor], known: torch.Tensor | None,
                step: int) -> tuple[np.ndarray, torch.Tensor]:
        """Table id and centre (whole latent value) per latent, valid for the latents of decoding ``step``."""
        steps, index = self.net.exact_params(hyper, known, step)
        k = self.net.mean_steps
        lowest = self.lo * k  # means clamped into the quantiser's range keep every offset within the tables
        steps = torch.minimum(torch.maximum(steps, lowest), lowest + self.levels * k - 1)
        centre = torch.div(steps, k, rounding_mode="floor")
        table = (index * k + (steps - centre * k)).numpy().reshape(-1)
        return table.astype(self.table_dtype), centre.reshape(-1)

    def _groups(self, table: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """``positions`` sorted by their table (stable) and ``(table, start, end)`` of each non-empty group."""
        mine = table[positions]
        order = positions[np.argsort(mine, kind="stable")]
        counts = np.bincount(mine, minlength=len(self.freqs))
        ends = np.cumsum(counts)
        return order, [(int(t), int(ends[t] - counts[t]), int(ends[t])) for t in np.flatnonzero(counts)]

    def _steps(self, n: int, shape: tuple[int, int, int]) -> tuple[torch.Tensor | None, list[tuple[int, np.ndarray]]]:
        """Decoding step of every latent of ``n`` images (``(n, C, H, W)``; None for a one-step model) and
        ``(step, flat positions)`` of each step that has latents (a 1x1 latent has no second checkerboard step)."""
        if self.net.steps == 1:
            return None, [(0, np.arange(n * math.prod(shape)))]
        ids = self.net.step_ids(*shape).expand(n, *shape)
        flat = ids.reshape(-1).numpy()
        steps = [(k, np.flatnonzero(flat == k)) for k in range(self.net.steps)]
        return ids, [(k, where) for k, where in steps if where.size]

    @torch.inference_mode()
    def encode(self, symbols: list[np.ndarray]) -> bytes:
        """One stream for a chunk of equally shaped symbol arrays."""
        s = torch.from_numpy(np.stack(symbols).astype(np.int64))
        z = self.zq.to_symbols(self.net.h_a(self.q.from_symbols(s)))
        values = s.add_(self.lo)  # s is a fresh copy
        ids, positions = self._steps(len(symbols), tuple(s.shape[1:]))
        offsets = np.empty(values.numel(), dtype=np.int32)
        plan = []
        tables = self._step_tables(z, tuple(s.shape))
        for k, where in positions:
            known = values * (ids < k) if k else None
            table, centre = tables(known, k)
            if where.size == offsets.size:  # every latent (a one-step model): no gathered copies
                offsets[:] = (values.reshape(-1) - centre + self.radius).numpy()
            else:
                offsets[where] = (values.reshape(-1)[where] - centre[where] + self.radius).numpy()
            plan.append(self._groups(table, where))
        coder = constriction.stream.stack.AnsCoder()
        for order, groups in reversed(plan):
            for t, a, b in reversed(groups):
                coder.encode_reverse(offsets[order[a:b]], self._model(t))
        z_np = z.numpy()
        for c in reversed(range(z_np.shape[1])):
            coder.encode_reverse(z_np[:, c].reshape(-1).astype(np.int32), self.z_coder.models[c])
        return stream_bytes(coder)

    @torch.inference_mode()
    def decode(self, data: bytes, shapes: list[tuple[int, int, int]]) -> list[np.ndarray]:
        """The symbol arrays of a chunk; a corrupt stream or an out-of-range symbol raises ``FormatError``."""
        if len(set(shapes)) != 1:
            raise FormatError("corrupt chunk (its images have different latent shapes)")
        n, (c, h, w) = len(shapes), shapes[0]
        zh, zw = self.net.side_size(h, w)
        ids, positions = self._steps(n, (c, h, w))
        values = torch.zeros(n * c * h * w, dtype=torch.int64)
        with reading(data) as coder:
            z = np.empty((n, self.zq.lo.numel(), zh, zw), dtype=np.int64)
            for k in range(z.shape[1]):
                z[:, k] = coder.decode(self.z_coder.models[k], n * zh * zw).reshape(n, zh, zw)
            tables = self._step_tables(torch.from_numpy(z), (n, c, h, w))
            for k, where in positions:
                known = values.view(n, c, h, w) * (ids < k) if k else None
                table, centre = tables(known, k)
                order, groups = self._groups(table, where)
                offsets = np.concatenate([coder.decode(self._model(t), b - a) for t, a, b in groups])
                values[order] = torch.from_numpy(offsets.astype(np.int64)) - self.radius + centre[order]
        s = values.view(n, c, h, w) - self.lo
        if int(s.min()) < 0 or int(s.max()) >= self.levels:
            raise FormatError("corrupt bitstream (latent out of the quantiser's range)")
        return list(s.numpy())
