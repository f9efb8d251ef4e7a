"""Import PyTorch (and what needs it) faster: the cyclic garbage collector paused while it loads."""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def torch_loading() -> Iterator[None]:
    """Pause the cyclic garbage collector for imports that load PyTorch, then freeze what they made.

    Importing PyTorch creates hundreds of thousands of objects that live until exit; collections
    during the import, and the final one at exit, traverse them all for nothing. Measured here:
    ``python -c "import torch"`` takes 1.2 s this way instead of 1.7 s. Frozen objects are never
    collected, so this does nothing once PyTorch is loaded (a caller's later objects stay collectable).
    """
    if "torch" in sys.modules:
        yield
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
