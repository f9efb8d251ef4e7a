"""The model's side of compress and decompress: pick and check the model, run batches through it.

PyTorch loads with this module; ``convae.codec.api`` imports it only once its image workers are
reading, so the two overlap.
"""

from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from convae.codec.chunks import read_chunk
from convae.codec.format import CodeFile
from convae.codec.manifest import Header, ImageEntry, ModelRef, QuantizerSpec, ShardInfo
from convae.codec.refine import refine
from convae.codec.tiles import tiled_decode, tiled_encode
from convae.entropy.coder import ChunkCoder
from convae.entropy.quantize import INTEGER, Quantizer
from convae.errors import ConvaeError, FormatError, UsageError, WeightsError
from convae.images import Decoded
from convae.metrics import Distortion
from convae.models.base import Autoencoder
from convae.registry import UnknownModelError, get_spec
from convae.zoo import LoadedModel, is_weights_path, load_model, retired_weights


def on_device(loaded: LoadedModel, device: str) -> Autoencoder:
    """The loaded model on ``device``, channels-last (faster convolutions on the CPU)."""
    return loaded.model.to(device, memory_format=torch.channels_last)


def pad_to_stride(x: torch.Tensor, stride: int) -> torch.Tensor:
    """``x`` padded at the bottom and right (replicating edges) to multiples of ``stride``."""
    h, w = x.shape[-2:]
    ph, pw = -h % stride, -w % stride
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Model output in [0, 1], (N, C, H, W) -> uint8 (N, H, W, C) pixels."""
    return x.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@contextlib.contextmanager
def model_threads(device: str, small_images: bool) -> Iterator[Callable[[], None]]:
    """On the CPU, for small images (``ImagePool.small_images``), give the model half the cores and
    leave the rest to the image workers, whose per-file work is then a large share; large images
    leave it all of them (docs/PERFORMANCE.md). Yields a function that gives the model every core
    again, for when the workers have nothing left to do.
    """
    before = torch.get_num_threads()
    want = min(before, max(1, (os.cpu_count() or 1) // 2)) if small_images else before

    def all_cores() -> None:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)

    if device != "cpu" or want == before:
        yield all_cores
        return
    torch.set_num_threads(want)
    try:
        yield all_cores
    finally:
        torch.set_num_threads(before)


def select_quantizer(model: Autoencoder, bits: int | None) -> Quantizer:
    """The model's calibrated quantiser, or one with ``bits`` bits per symbol (1 to 16)."""
    q = model.quantizer
    if not q.calibrated:
        raise ConvaeError(f"model {model.variant!r} has no calibrated quantiser; retrain it with `convae train`")
    if bits is not None:
        if not 1 <= bits <= 16:
            raise UsageError(f"--bits {bits}: choose 1 to 16")
        q = q.with_bits(bits)
    return q


def model_header(loaded: LoadedModel, q: Quantizer, coding: str, shard: ShardInfo | None = None) -> Header:
    """The manifest header naming the model, quantiser, coding and shard."""
    model = loaded.model
    spec = QuantizerSpec("integer" if int(q.mode) == INTEGER else "uniform", int(q.levels),
                         tuple(float(v) for v in q.lo.tolist()), tuple(float(v) for v in q.hi.tolist()))
    level = getattr(model, "level", None)  # a variable-rate model's rate, recorded so decoding uses the same
    source = str(Path(loaded.source).resolve()) if is_weights_path(loaded.source) else loaded.source
    return Header(ModelRef(model.variant, source, loaded.sha256, level), spec, coding, shard)


def decoder_model(want: ModelRef, model: str | None) -> LoadedModel:
    """The model that made a code file (``model`` or the one its manifest names), refused unless its sha256 matches."""
    made_with = f"these codes were made with {want.source or want.variant}"
    if model is None and want.source and is_weights_path(want.source):
        model = _recorded_weights(want, made_with)
    if model is None:
        try:
            model = get_spec(want.variant).name
        except UnknownModelError as exc:
            raise FormatError(f"{made_with}, a variant this installation lacks ({exc})") from exc
        try:
            loaded = load_model(model)
        except WeightsError as exc:
            _refuse_retired(want, made_with)
            raise WeightsError(f"{exc}; {made_with}: pass --model with those weights") from exc
    else:
        loaded = load_model(model)
    if loaded.sha256 != want.sha256:
        _refuse_retired(want, made_with)
        raise FormatError(
            f"{made_with} (weights sha256 {want.sha256[:12]}…); {loaded.source} has sha256 "
            f"{loaded.sha256[:12]}… — pass --model with the weights that made them"
        )
    return with_level(loaded, want)


def _refuse_retired(want: ModelRef, made_with: str) -> None:
    """Refuse codes made with weights a release once shipped and has since replaced or retired, naming it."""
    retired = retired_weights(want.sha256)
    if retired:
        raise FormatError(
            f"{made_with} as shipped in convae {retired['shipped_in']}, whose {retired['variant']} weights "
            f"have since been replaced or retired: decode them with convae {retired['shipped_in']}, or pass "
            f"--model with its {retired['variant']}.safetensors"
        )


def _recorded_weights(want: ModelRef, made_with: str) -> str:
    """The weights file a manifest names (``want.source``), if it is still there: ``decoder_model`` then checks
    its sha256. A missing file is refused with what to pass instead."""
    if not Path(str(want.source)).is_file():
        raise WeightsError(f"{made_with} (sha256 {want.sha256[:12]}…), which is no longer there: pass --model "
                           "with those weights")
    return str(want.source)


def with_level(loaded: LoadedModel, want: ModelRef) -> LoadedModel:
    """``loaded`` set to the rate level the manifest names: required for a variable-rate model, refused otherwise."""
    variable = getattr(loaded.model, "level", None) is not None  # as model_header records it
    if variable != (want.level is not None):
        raise FormatError(f"the manifest {'names no' if variable else 'names a'} rate level for "
                          f"{want.variant}, which {'codes at several' if variable else 'has one rate'}: corrupt")
    if variable:
        try:
            loaded.model.set_level(want.level)
        except ValueError as exc:
            raise FormatError(f"manifest: {exc} of {want.variant}") from exc
    return loaded


def manifest_quantizer(net: Autoencoder, spec: QuantizerSpec) -> Quantizer:
    """The quantiser a code file was made with: the model's own, or its ``--bits`` variant."""
    levels = spec.levels
    q = net.quantizer
    if levels != int(q.levels):
        bits = levels.bit_length() - 1
        if levels != 1 << bits or not 1 <= bits <= 16 or int(q.mode) == INTEGER:
            raise FormatError("manifest quantiser does not fit the model")
        q = q.with_bits(bits)
    return q


def latents(cf: CodeFile, net: Autoencoder, coder: ChunkCoder | None,
            levels: int) -> Iterator[tuple[ImageEntry, np.ndarray, np.ndarray | None]]:
    """``(entry, symbols, alpha or None)`` per image, decoding one chunk at a time."""
    dtype = np.dtype(cf.manifest.codes.dtype)
    for entries, data in cf.chunk_payloads():
        decoded = read_chunk(entries, data, net.latent_shape, coder, dtype, levels)
        yield from ((e, sym, alpha) for e, (sym, alpha) in zip(entries, decoded, strict=True))


@torch.inference_mode()
def encode_batch(
    net: Autoencoder, q: Quantizer, decoded: list[Decoded], device: str, verify: bool, effort: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Symbols (and, with ``verify``, uint8 reconstructions) per image, batching equal sizes; ``effort`` steps of
    latent refinement (``codec.refine``) on each."""
    symbols: list[np.ndarray | None] = [None] * len(decoded)
    recon: list[np.ndarray | None] = [None] * len(decoded)
    by_size = defaultdict(list)
    for i, d in enumerate(decoded):
        by_size[d.pixels.shape].append(i)
    for (h, w, _), idx in by_size.items():
        x = torch.from_numpy(np.stack([decoded[i].pixels for i in idx])).to(device)
        x = pad_to_stride(x.permute(0, 3, 1, 2).float().div_(255), net.stride)
        x = x.contiguous(memory_format=torch.channels_last)
        y = tiled_encode(net.encode, x, net.stride)
        s = q.to_symbols(refine(net, x, y, (h, w), effort) if effort else y)
        if verify:
            y = q.from_symbols(s).contiguous(memory_format=torch.channels_last)
            r = to_uint8(tiled_decode(net.decode, y, net.stride)[..., :h, :w].cpu())
        s = s.cpu().numpy()
        for j, i in enumerate(idx):
            symbols[i] = s[j]
            if verify:
                recon[i] = r[j]
    return symbols, recon


@torch.inference_mode()
def decode_batch(net: Autoencoder, q: Quantizer, parsed: list[tuple], device: str) -> list[tuple]:
    """``(entry, name, symbols, alpha)`` items -> ``(entry, name, uint8 pixels, alpha)``, batching equal shapes."""
    by_shape = defaultdict(list)
    for i, (_, _, sym, _) in enumerate(parsed):
        by_shape[sym.shape].append(i)
    out: list[tuple | None] = [None] * len(parsed)
    for _, idx in by_shape.items():
        s = torch.from_numpy(np.stack([parsed[i][2] for i in idx]).astype(np.int64)).to(device)
        y = q.from_symbols(s).contiguous(memory_format=torch.channels_last)
        x = to_uint8(tiled_decode(net.decode, y, net.stride).cpu())
        for j, i in enumerate(idx):
            e, name, _, alpha = parsed[i]
            out[i] = (e, name, np.ascontiguousarray(x[j, : e.height, : e.width]), alpha)
    return out  # a list, not a generator: inference mode is entered once per batch, not once per image


def accumulate(stats: MutableMapping[str, float], original: np.ndarray, recon: np.ndarray) -> None:
    """Add one uint8 image pair to ``stats``, the running sums of a ``metrics.Distortion`` (for ``verify_report``)."""
    Distortion(stats).add_pixels([original], [recon])


def verify_report(stats: MutableMapping[str, float]) -> dict[str, float]:
    """Mean MSE, PSNR and SSIM of the images ``accumulate`` saw."""
    d = Distortion(stats).report()
    return {
        "mse": round(d["mse"], 6),
        "psnr_of_mean_mse": round(d["psnr"], 3),
        "mean_psnr": round(d["mean_psnr"], 3),
        "ssim": round(d["ssim"], 4),
    }
