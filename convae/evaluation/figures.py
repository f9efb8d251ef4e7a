"""Matplotlib figures written as PNG files: the loss curve and the RD plot share this."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from convae.atomic import write_bytes


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
