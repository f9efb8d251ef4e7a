"""Import PyTorch (and what needs it) with the cyclic garbage collector paused; freezing is the command line's."""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def torch_loading() -> Iterator[None]:
    """Pause the cyclic garbage collector for imports that load PyTorch; restore it after.

    The import makes hundreds of thousands of long-lived objects that collections during it would
    only traverse. Does nothing once PyTorch is loaded.
    """
    if "torch" in sys.modules:
        yield
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def freeze_imports() -> None:
    """Collect once, then exempt every live object from later collections (``gc.freeze``).

    For the command line, which owns its process, once PyTorch is loaded: later full collections and
    the exit would traverse PyTorch's objects again (docs/PERFORMANCE.md). Library code never calls it.
    """
    gc.collect()  # garbage frozen with the rest would never be freed
    gc.freeze()
