"""Reading format 2: ``OUT.npy`` (a plain array of codes) with its manifest ``OUT.json`` beside it.

convae 0.2 wrote these pairs; they still decode as they did (no conversion needed). The manifest
names the sha256 of the whole .npy, which ties the pair together.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np

from convae.codec.manifest import Manifest
from convae.errors import FormatError

VERSION = 2


def manifest_path(codes: Path) -> Path:
    """The manifest of a format-2 codes file: same name, ``.json`` suffix."""
    return codes.with_suffix(".json")


def file_sha256(path: Path) -> str:
    """sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def open_pair(path: Path) -> tuple[Manifest, np.ndarray, int]:
    """A .npy with no manifest field, as a format-2 pair if its ``.json`` is beside it: the validated manifest,
    the memory-mapped codes and the manifest file's size."""
    sidecar = manifest_path(path)
    if not sidecar.is_file():
        raise FormatError(f"{path} is not a convae code file (a NumPy array with no manifest field, and no "
                          f"{sidecar.name} beside it)")
    try:
        text = sidecar.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{sidecar}: cannot read manifest ({exc})") from exc
    manifest = Manifest.from_json(text, sidecar)
    if manifest.version != VERSION:
        raise FormatError(f"{sidecar}: a version-{manifest.version} manifest in a separate file; only format 2 "
                          f"keeps one beside the .npy")
    try:
        sha = file_sha256(path)
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if sha != manifest.codes.sha256:
        raise FormatError(f"{path}: codes do not match their manifest (sha256 differs: replaced or corrupt)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. a header only Python 2's parser reads: not written by convae
            codes = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # numpy's header parser raises ValueError, SyntaxError, TokenError... on bad headers
        raise FormatError(f"{path}: not a valid .npy file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(codes, np.ndarray) or codes.dtype.names is not None:
        raise FormatError(f"{path}: not a single .npy array")
    manifest.check_codes(codes.dtype.name, codes.shape, path)
    return manifest, codes, sidecar.stat().st_size
