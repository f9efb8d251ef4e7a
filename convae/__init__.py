"""convae: a command-line image codec toolkit built on convolutional autoencoders.

The Python API, for files and for arrays (imported on first use, so ``import convae`` stays light)::

    import convae
    convae.compress(["photos/"], "out.npy", quality=60)    # image files and folders -> one code file
    convae.decompress("out.npy", "recon/")                 # -> one PNG per image (fmt="npy": arrays)
    data = convae.encode(pixels, quality=60)               # uint8 (H, W[, C]) array(s) -> code file bytes
    images = convae.decode(data)                           # -> list of uint8 (H, W, C) arrays

Errors are ``convae.errors.ConvaeError`` subclasses with a one-line message.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("convae")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

_API = {"compress": "convae.codec.api", "decompress": "convae.codec.api", "encode": "convae.codec.arrays",
        "decode": "convae.codec.arrays", "Summary": "convae.codec.api"}
__all__ = ["Summary", "__version__", "compress", "decode", "decompress", "encode"]

if TYPE_CHECKING:
    from convae.codec.api import Summary, compress, decompress
    from convae.codec.arrays import decode, encode


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})


def __getattr__(name: str) -> Any:
    """The API's functions, imported when first asked for (PEP 562)."""
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'convae' has no attribute {name!r}")
