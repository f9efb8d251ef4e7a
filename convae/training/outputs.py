"""The files a training run writes beside its weights ``OUT``: checkpoint, history and loss curve."""

from __future__ import annotations

from pathlib import Path


def checkpoint_path(out: Path) -> Path:
    """The per-epoch checkpoint that belongs to ``out``."""
    return out.with_name(out.stem + ".ckpt.safetensors")


def history_path(out: Path) -> Path:
    """The loss history (JSON) that belongs to ``out``."""
    return out.with_name(out.stem + ".history.json")


def curve_path(out: Path) -> Path:
    """The loss-curve PNG that belongs to ``out``."""
    return out.with_name(out.stem + ".loss.png")
