"""The ``hyperprior`` architecture: GDN codecs with a mean-scale hyperprior (Ballé et al. 2018; Minnen et al. 2018).

Side information ``z = round(h_a(y))`` is coded with a factorized prior; the hyper-synthesis
``h_s(z)`` predicts a mean and a log-scale for every latent, and each latent is coded with a
discretised Gaussian of that mean and scale. At coding time the hyper-synthesis runs on an exact
grid (``exact_hyper``): weights and biases rounded to multiples of 2^-W_BITS, activations floored
to multiples of 2^-A_BITS and clamped, in float64, where every product and partial sum is exactly
representable. So the decoder derives the same mean and scale index as the encoder on any
machine and thread count, independent of summation order. The Gaussian tables are integer
frequencies fitted at calibration and stored with the weights; ``mean_steps`` sets how finely the
tables' centres follow the predicted mean (4 in the first variants, 8 from the post-filtered fmc).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convae.entropy.hyperprior import HyperpriorCoder
from convae.entropy.prior import FactorizedPrior
from convae.entropy.quantize import INTEGER, Quantizer, adopt_stored_shapes
from convae.models.learned import LearnedCodec
from convae.registry import register_model

SCALE_MIN_LOG, SCALE_STEPS, SCALES = -2.25, 8, 48  # scale index i covers log-scale [-2.25 + i/8, -2.25 + (i+1)/8)
W_BITS, A_BITS, A_MAX = 8, 6, 2.0**12  # the exact grid of the coding-time hyper-synthesis
EXACT_LIMIT = 2.0**52
HYPER_HALO = 4  # side-latent rows of context around a band of the hyper-synthesis (its reach is 2)


def _ste_round(v: Tensor) -> Tensor:
    return v + (torch.round(v) - v).detach()


def _gaussian_bits(y: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """Information content in bits of ``y`` under discretised Gaussians (training's rate, not the coder's tables)."""
    scale = torch.exp(log_scale.clamp(SCALE_MIN_LOG, SCALE_MIN_LOG + SCALES / SCALE_STEPS))
    v = (y - mean).abs()  # evaluate in the lower tail, where the normal CDF is accurate
    p = torch.special.ndtr((0.5 - v) / scale) - torch.special.ndtr((-0.5 - v) / scale)
    return -torch.log2(p.clamp_min(1e-9)).sum()


def _grid(v: Tensor, bits: int) -> Tensor:
    return torch.round(v * 2.0**bits) / 2.0**bits  # exact in float64


def layer_weights(layer: nn.Module, exact: bool) -> tuple[Tensor, Tensor]:
    """A layer's weight and bias; with ``exact``, in float64 rounded to multiples of 2^-W_BITS."""
    if not exact:
        return layer.weight, layer.bias
    return _grid(layer.weight.double(), W_BITS), _grid(layer.bias.double(), W_BITS)


def _floor_activation(x: Tensor, low: float) -> Tensor:
    """Activations on the exact grid: clamped to ``[low, A_MAX]`` and floored to multiples of 2^-A_BITS."""
    return torch.floor(x.clamp(low, A_MAX) * 2.0**A_BITS) / 2.0**A_BITS


def check_exact_layer(layer: nn.Module, fan_in: int, a_max: float, in_bits: int, what: str) -> None:
    """Raise ``ValueError`` if ``layer`` on the exact grid (inputs ``|a| <= a_max`` on a 2^-in_bits grid) could
    sum past 2^52, where float64 stops being exact."""
    w_max, b_max = float(layer.weight.abs().max()), float(layer.bias.abs().max())
    if (fan_in * w_max * a_max + b_max + 1) * 2.0 ** (W_BITS + in_bits) >= EXACT_LIMIT:
        raise ValueError(f"{what} exceeds the exact float64 range")


def _up_padding(size: int, src: int) -> int:
    """``output_padding`` of a stride-2, 5x5, padding-2 transposed conv that maps ``src`` to ``size``."""
    return size - (2 * src - 1)


class HyperpriorAutoencoder(LearnedCodec):
    """GDN transforms with a mean-scale hyperprior (``hyper`` hidden channels, ``z_channels`` side channels)."""

    def __init__(self, in_channels: int = 1, n: int = 64, m: int = 48, depth: int = 2, lmbda: float = 0.01,
                 hyper: int = 48, z_channels: int = 16, post: int = 0, mean_steps: int = 4) -> None:
        super().__init__(in_channels, n, m, depth, lmbda, post)
        self.mean_steps = mean_steps  # a Gaussian table per (scale index, 1/mean_steps of the mean)
        self.h_a = nn.Sequential(
            nn.Conv2d(m, hyper, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hyper, hyper, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(hyper, z_channels, 5, stride=2, padding=2),
        )
        self.h_s = nn.ModuleList([
            nn.ConvTranspose2d(z_channels, hyper, 5, stride=2, padding=2),
            nn.ConvTranspose2d(hyper, hyper, 5, stride=2, padding=2),
            nn.Conv2d(hyper, 2 * m, 3, padding=1),
        ])
        self.z_prior = FactorizedPrior(z_channels)
        self.z_quantizer = Quantizer(z_channels, INTEGER)
        self.register_buffer("y_freqs", torch.zeros(0, 0, dtype=torch.int32))

    # ------------------------------------------------------------ hyper-synthesis

    def _hyper_synthesis(self, z: Tensor, size: tuple[int, int], exact: bool) -> tuple[Tensor, Tensor]:
        """Mean and log-scale maps ``(N, m, *size)`` from side latents; ``exact`` runs on the exact grid."""
        sizes = [((size[0] + 1) // 2, (size[1] + 1) // 2), size]
        x = z
        for i, layer in enumerate(self.h_s):
            w, b = layer_weights(layer, exact)
            if exact and i:
                x = _floor_activation(x, 0.0)
            if i < 2:
                pad = (_up_padding(sizes[i][0], x.shape[-2]), _up_padding(sizes[i][1], x.shape[-1]))
                x = F.relu(F.conv_transpose2d(x, w, b, stride=2, padding=2, output_padding=pad))
            else:
                x = F.conv2d(x, w, b, padding=1)
        mean, log_scale = x.chunk(2, dim=1)
        return mean, log_scale

    @torch.no_grad()
    def check_exact(self) -> None:
        """Raise ``ValueError`` unless every exact-grid sum stays below 2^52 (weights from training always do)."""
        z_max = float(max(self.z_quantizer.lo.abs().max(), self.z_quantizer.hi.abs().max()))
        a_max = z_max
        for i, layer in enumerate(self.h_s):
            fan_in = layer.weight[0].numel() if i == 2 else layer.weight[:, 0].numel()
            check_exact_layer(layer, fan_in, a_max, A_BITS if i else 0, f"hyper-synthesis layer {i}")
            a_max = A_MAX

    @staticmethod
    def side_size(height: int, width: int) -> tuple[int, int]:
        """Side-latent size for latents of ``height x width`` (two stride-2 convolutions)."""
        return (height + 3) // 4, (width + 3) // 4

    # ------------------------------------------------------------ decoding steps (one here; see ``context``)

    steps = 1  # latents are decoded in ``steps`` groups; a context model conditions each on the groups before it

    def step_ids(self, channels: int, height: int, width: int) -> Tensor:
        """Decoding step (int64 ``(C, H, W)``) of every latent: all in step 0 here."""
        return torch.zeros(channels, height, width, dtype=torch.int64)

    def _refine(self, mean: Tensor, log_scale: Tensor, known: Tensor, step: int, exact: bool) -> tuple[Tensor, Tensor]:
        """Mean and log-scale for latents of ``step`` given the latents of earlier steps (``known``, 0 elsewhere)."""
        return mean, log_scale

    def _entropy_params(self, y_hat: Tensor, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """Training-time mean and log-scale of every latent: each from its step's context."""
        mean, log_scale = self._hyper_synthesis(z_hat, y_hat.shape[-2:], exact=False)
        if self.steps == 1:
            return mean, log_scale
        ids = self.step_ids(*y_hat.shape[1:]).to(y_hat.device)
        out_mean, out_log_scale = mean, log_scale
        for k in range(1, self.steps):
            m, s = self._refine(mean, log_scale, y_hat * (ids < k), k, exact=False)
            out_mean, out_log_scale = torch.where(ids == k, m, out_mean), torch.where(ids == k, s, out_log_scale)
        return out_mean, out_log_scale

    @torch.no_grad()
    def exact_hyper(self, z: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """The hyper-synthesis' mean and log-scale (float64, on the exact grid) from integer side latents ``z``."""
        return self._hyper_synthesis(z.double(), size, exact=True)

    @torch.no_grad()
    def exact_hyper_rows(self, z: Tensor, size: tuple[int, int], rows: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """``exact_hyper(z, size)`` for latent rows ``rows`` only (the first a multiple of 4), from a window of
        ``z`` rows: the same numbers (every sum on the exact grid is exact), in memory that follows the band."""
        first, last = rows
        z0 = max(0, first // 4 - HYPER_HALO)
        z1 = min(z.shape[-2], -(-last // 4) + HYPER_HALO)
        top = 4 * z0
        height = size[0] - top if z1 == z.shape[-2] else 4 * (z1 - z0)  # the last window ends where the image does
        mean, log_scale = self._hyper_synthesis(z[..., z0:z1, :].double(), (height, size[1]), exact=True)
        return mean[..., first - top:last - top, :], log_scale[..., first - top:last - top, :]

    @torch.no_grad()
    def exact_params(self, hyper: tuple[Tensor, Tensor], known: Tensor | None = None,
                     step: int = 0) -> tuple[Tensor, Tensor]:
        """Mean in steps (``floor(mean_steps * mean)``) and scale index per latent, from ``exact_hyper``'s output.

        Valid for the latents of decoding ``step``, given the integer latents ``known`` of earlier steps (zero
        at the others; unused by a one-step model).
        """
        mean, log_scale = hyper
        if step:
            mean, log_scale = self._refine(mean, log_scale, known.double(), step, exact=True)
        steps = torch.floor(mean * self.mean_steps).to(torch.int64)
        index = torch.floor((log_scale - SCALE_MIN_LOG) * SCALE_STEPS).clamp(0, SCALES - 1).to(torch.int64)
        return steps, index

    # ------------------------------------------------------------ training

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Reconstruction from rounded latents (straight-through) and the bits of latents and side latents."""
        y = self.encode(x)
        y_hat = _ste_round(y) if self.training else torch.round(y)
        z = self.h_a(y_hat)
        z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5) if self.training else torch.round(z)
        mean, log_scale = self._entropy_params(y_hat, _ste_round(z))
        y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5) if self.training else y_hat
        bits = _gaussian_bits(y_noisy, mean, log_scale) + self.z_prior.bits(z_noisy)
        return self.decode(y_hat), bits

    def latent_bits(self, y_hat: Tensor) -> Tensor:
        """Bits of latents ``y_hat`` (rounded, or softly so) and of their rounded side latents (``--effort``)."""
        z_hat = _ste_round(self.h_a(y_hat))
        mean, log_scale = self._entropy_params(y_hat, z_hat)
        return _gaussian_bits(y_hat, mean, log_scale) + self.z_prior.bits(z_hat)

    # ------------------------------------------------------------ calibration and coding

    @torch.no_grad()
    def fit_side(self, latents: Callable[[], Iterator[Tensor]]) -> None:
        """Fit the side-latent quantiser on ``latents()`` (float ``y`` batches) and build the Gaussian tables."""
        q, zq = self.quantizer, self.z_quantizer

        def side():
            for y in latents():
                yield self.h_a(q.quantize(y))

        zq.fit(side)
        self.y_freqs = gaussian_tables(int(q.levels) - 1, self.mean_steps)
        self.check_exact()

    def entropy_coder(self, q: Quantizer) -> HyperpriorCoder | None:
        """The hyperprior chunk coder (``None`` for another quantiser than the calibrated one)."""
        fits = self.y_freqs.numel() and self.y_freqs.shape[0] == SCALES * self.mean_steps
        return HyperpriorCoder(self) if q is self.quantizer and fits else None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        adopt_stored_shapes(self, state_dict, prefix, "y_freqs")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def gaussian_tables(radius: int, mean_steps: int) -> Tensor:
    """Integer frequencies ``(SCALES * mean_steps, 2 * radius + 1)`` (int32) of discretised Gaussians.

    Row ``mean_steps * i + f`` is the scale ``exp(SCALE_MIN_LOG + (i + 0.5) / SCALE_STEPS)`` centred at
    ``(f + 0.5) / mean_steps``, over symbols ``-radius..radius`` (tails folded into the end symbols);
    every symbol keeps a count of at least 1.
    """
    r = torch.arange(-radius, radius + 1, dtype=torch.float64)
    i = torch.arange(SCALES, dtype=torch.float64).repeat_interleave(mean_steps)
    f = torch.arange(mean_steps, dtype=torch.float64).repeat(SCALES)
    scale = torch.exp(SCALE_MIN_LOG + (i + 0.5) / SCALE_STEPS)[:, None]
    mean = ((f + 0.5) / mean_steps)[:, None]
    upper = torch.special.ndtr((r + 0.5 - mean) / scale)
    lower = torch.special.ndtr((r - 0.5 - mean) / scale)
    upper[:, -1], lower[:, 0] = 1.0, 0.0
    return torch.floor((upper - lower).clamp_min(0) * 2**16).to(torch.int32) + 1


@register_model("hyperprior", in_channels=1, n=48, m=32, depth=2, post=0, lmbda=0.01, hyper=48, z_channels=16,
                mean_steps=4)
def hyperprior(**config: object) -> HyperpriorAutoencoder:
    """GDN + mean-scale hyperprior (set in_channels, n, m, depth, lmbda, hyper, z_channels)."""
    return HyperpriorAutoencoder(**config)
