"""The files a training run writes beside its weights ``OUT``: checkpoint, history and loss curve."""

from __future__ import annotations

from pathlib import Path

from convae.atomic import check_writable
from convae.errors import UsageError


def checkpoint_path(out: Path) -> Path:
    """The per-epoch checkpoint that belongs to ``out``."""
    return out.with_name(out.stem + ".ckpt.safetensors")


def history_path(out: Path) -> Path:
    """The loss history (JSON) that belongs to ``out``."""
    return out.with_name(out.stem + ".history.json")


def curve_path(out: Path) -> Path:
    """The loss-curve PNG that belongs to ``out``."""
    return out.with_name(out.stem + ".loss.png")


def check_outputs(out: Path, resume: bool, force: bool) -> None:
    """Refuse, before any work, a ``--resume`` with no checkpoint, and a run whose weights, history or
    curve would overwrite files without ``--force`` or that would start over an earlier run's checkpoint."""
    ckpt = checkpoint_path(out)
    if resume and not ckpt.is_file():
        raise UsageError(f"--resume: no checkpoint {ckpt} to resume from")
    for path in (out, history_path(out), curve_path(out)):
        check_writable(path, force or resume)
    if not resume and ckpt.exists() and not force:
        raise UsageError(f"{ckpt} exists from an earlier run; pass --resume to continue it or --force")
