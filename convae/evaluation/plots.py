"""Matplotlib figures written as PNG files: the RD curves here, and the shared helpers training's loss plot uses."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from convae.atomic import write_bytes

_STYLE = {"convae": ("-", "o", 2.5), "mosaic": ("--", "s", 1.2), "": ("-", ".", 1.2)}


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` to ``path`` as a PNG atomically (no software tag: same figure, same bytes) and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    pyplot().close(fig)
    write_bytes(path, buf.getvalue())


def plot_rd(summary: dict[str, Any], path: Path, max_bpp: float = 4.0) -> None:
    """PSNR of the mean MSE against bits per pixel: one panel per data set, one line per lossy codec (lossless PNG,
    of infinite PSNR, left out)."""
    plt = pyplot()
    sets = summary["datasets"]
    fig, axes = plt.subplots(1, max(1, len(sets)), figsize=(6 * max(1, len(sets)), 4.5), dpi=100, squeeze=False)
    for ax, (name, data) in zip(axes[0], sets.items(), strict=False):
        for codec, doc in data["codecs"].items():
            res = doc["results"]
            pts = sorted((b, p) for b, p in zip(res["bpp"], res["psnr"], strict=True) if p is not None and b <= max_bpp)
            if not pts:
                continue
            kind = "convae" if codec.startswith("convae") else "mosaic" if codec.endswith("mosaic") else ""
            line, marker, width = _STYLE[kind]
            ax.plot([b for b, _ in pts], [p for _, p in pts], line, marker=marker, lw=width, label=codec)
        ax.set(xlabel="bits per pixel (real bytes)", ylabel="PSNR of mean MSE (dB)",
               title=f"{name} ({data['images']} images)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
