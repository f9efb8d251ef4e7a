"""The loss-curve PNG of a run: distortion, rate and validation per epoch, titled with the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convae.evaluation.plots import pyplot, save_figure


def plot_history(history: list[dict[str, Any]], path: Path, title: str) -> None:
    """Distortion (train and validation MSE, log scale) beside rate (train and validation bpp) per epoch."""
    epochs = [h["epoch"] for h in history]
    has_rate = any(h.get("bpp") is not None for h in history)
    fig, axes = pyplot().subplots(1, 2 if has_rate else 1, figsize=(10 if has_rate else 6, 4), dpi=100, squeeze=False)
    mse_ax = axes[0][0]
    mse_ax.plot(epochs, [h["train_mse"] for h in history], marker="o", label="train MSE")
    if any(h.get("test_mse") is not None for h in history):
        mse_ax.plot(*_series(history, "test_mse"), marker="s", label="validation MSE")
    mse_ax.set(xlabel="epoch", ylabel="distortion (mean squared error)", yscale="log")
    if has_rate:
        rate_ax = axes[0][1]
        rate_ax.plot(*_series(history, "bpp"), marker="o", label="train bpp (random rates)")
        qualities = {q for h in history for q in h.get("val", {})}
        for q in sorted(qualities, key=lambda v: (v == "-", int(v) if v != "-" else 0)):  # -q 0, 50, 100
            xs = [h["epoch"] for h in history if h.get("val", {}).get(q, {}).get("bpp") is not None]
            ys = [h["val"][q]["bpp"] for h in history if h.get("val", {}).get(q, {}).get("bpp") is not None]
            if xs:
                rate_ax.plot(xs, ys, marker="s", label="validation bpp" + (f" -q {q}" if q != "-" else ""))
        rate_ax.set(xlabel="epoch", ylabel="rate (bits per pixel)")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """The epochs that recorded ``key`` and its values."""
    pairs = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]
