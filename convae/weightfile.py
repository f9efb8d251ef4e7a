"""Weights as safetensors: the state dict plus JSON metadata (variant, config, data, losses)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from convae import __version__
from convae.atomic import write_bytes
from convae.errors import WeightsError


def save_weights(model: torch.nn.Module, path: Path, metadata: dict[str, Any]) -> str:
    """Atomically write ``model``'s state dict with ``metadata``; returns the file's sha256."""
    meta = {
        "format": "convae-weights",
        "variant": model.variant,
        "config": json.dumps(model.config, sort_keys=True),
        "in_channels": str(model.in_channels),
        "convae_version": __version__,
    }
    meta.update({k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in metadata.items()})
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    data = save(state, metadata=meta)
    write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def read_raw(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], str]:
    """Tensors, metadata and sha256 of any safetensors file; corrupt files raise ``WeightsError``."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise WeightsError(f"cannot read weights {path}: {exc.strerror or exc}") from exc
    try:
        tensors = load(data)
        meta = _metadata(data)
    except (SafetensorError, ValueError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path} is not a valid safetensors file (corrupt or truncated)") from exc
    return tensors, meta, hashlib.sha256(data).hexdigest()


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], str]:
    """State dict, metadata and sha256 of a convae weights file."""
    state, meta, sha = read_raw(path)
    if meta.get("format") != "convae-weights" or "variant" not in meta:
        raise WeightsError(f"{path} is a safetensors file but not convae weights (no variant metadata)")
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:  # damaged numbers, or a diverged run: such a model codes garbage
        raise WeightsError(f"{path}: tensor {bad} holds NaN or infinite values (corrupt, or from a diverged run)")
    return state, meta, sha


def _metadata(data: bytes) -> dict[str, str]:
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    return header.get("__metadata__", {}) or {}


def save_half(src: Path, dst: Path) -> str:
    """Copy weights ``src`` to ``dst`` with floating-point tensors stored as float16 (half the bytes).

    Loading casts them back to the model's float32; the metadata records ``stored_dtype`` and the
    sha256 of the float32 original. Returns the new file's sha256.
    """
    state, meta, sha = read_weights(src)
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    overflow = [k for k, v in half.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if overflow:
        raise WeightsError(f"{src}: {overflow[0]} does not fit float16")
    data = save(half, metadata={**meta, "stored_dtype": "float16", "float32_sha256": sha})
    write_bytes(dst, data)
    return hashlib.sha256(data).hexdigest()
