"""The on-disk code format: ``OUT.npy`` (codes) plus ``OUT.json`` (its manifest, manifest.py). See docs/FORMAT.md.

Both files are written to temporary files and renamed into place, the manifest last; the .npy
sha256 in the manifest ties the pair together, so a reader never accepts one without its partner.
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convae.atomic import as_output_error, check_writable, commit, temp_path
from convae.codec.manifest import CHUNK, VERSION, CodesInfo, Header, ImageEntry, Manifest
from convae.errors import ConvaeError, FormatError, OutputError

__all__ = ["VERSION", "CodeFile", "CodeWriter", "file_sha256", "manifest_path", "open_codes", "symbol_dtype"]


def manifest_path(codes: Path) -> Path:
    """The manifest that belongs to a codes file: same name, ``.json`` suffix."""
    return codes.with_suffix(".json")


def symbol_dtype(levels: int) -> np.dtype:
    """Smallest unsigned dtype that holds symbols in ``[0, levels)``."""
    return np.dtype(np.uint8 if levels <= 256 else np.uint16)


class CodeWriter:
    """Streams chunk payloads to a temporary file; ``commit`` writes the .npy + manifest pair."""

    def __init__(self, out: Path, force: bool) -> None:
        self.out = out
        self.manifest = manifest_path(out)
        if out.suffix != ".npy":
            raise OutputError(f"{out}: the codes file must end in .npy")
        check_writable(out, force)
        check_writable(self.manifest, force)
        self._stack = ExitStack()
        self._raw_path = self._stack.enter_context(temp_path(out))
        self._raw = self._stack.enter_context(open(self._raw_path, "wb"))  # noqa: SIM115 (closed by the stack)
        self.entries: list[ImageEntry] = []
        self.chunks: list[tuple[int, int]] = []

    def add(self, entries: Sequence[ImageEntry], payload: bytes) -> None:
        """Append one chunk: its images and its payload (code bytes, then the images' alpha bytes)."""
        if not 1 <= len(entries) <= CHUNK or sum(e.alpha_nbytes for e in entries) > len(payload):
            raise AssertionError("a chunk disagrees with its entries")
        try:
            self._raw.write(payload)
        except OSError as exc:
            self.close()
            raise as_output_error(exc, self.out) from exc
        self.entries += entries
        self.chunks.append((len(entries), len(payload)))

    def commit(self, header: Header, dtype: np.dtype, shape: tuple[int, ...] | None) -> Manifest:
        """Write ``out.npy`` with ``dtype`` (flat unless ``shape``) and its manifest; return the manifest."""
        try:
            try:
                self._raw.close()  # flushes the last buffered bytes
            except OSError as exc:
                raise as_output_error(exc, self.out) from exc
            with temp_path(self.out) as npy_tmp:
                total = sum(nbytes for _, nbytes in self.chunks) // dtype.itemsize
                shape = shape or (total,)
                _raw_to_npy(self._raw_path, npy_tmp, dtype, shape)
                codes = CodesInfo(file_sha256(npy_tmp), dtype.name, shape)
                manifest = Manifest(header, codes, tuple(self.entries), tuple(self.chunks))
                with temp_path(self.manifest) as json_tmp:
                    json_tmp.write_text(manifest.to_json())
                    commit(npy_tmp, self.out)  # the manifest goes last: it names the .npy's sha256
                    try:
                        commit(json_tmp, self.manifest)
                    except OutputError:
                        self.out.unlink(missing_ok=True)  # no .npy without its manifest
                        raise
        finally:
            self.close()
        return manifest

    def close(self) -> None:
        """Drop temporary files (called on success and on failure)."""
        self._stack.close()


def _raw_to_npy(raw: Path, npy: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    arr = np.lib.format.open_memmap(npy, mode="w+", dtype=dtype, shape=shape)
    header_len, nbytes = arr.offset, arr.nbytes  # numpy wrote the header; stream the code bytes after it
    del arr
    size = raw.stat().st_size
    if size != nbytes:
        raise ConvaeError(f"{npy}: internal error: {size} code bytes do not fill a {dtype.name} array "
                          f"of shape {shape}; nothing was written")
    with open(raw, "rb") as src, open(npy, "r+b") as dst:
        dst.seek(header_len)
        shutil.copyfileobj(src, dst, 1 << 20)


def file_sha256(path: Path) -> str:
    """sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- reading


@dataclass
class CodeFile:
    """A validated code file: its manifest and the codes as a read-only array."""

    path: Path
    manifest: Manifest
    codes: np.ndarray

    def chunk_payloads(self) -> Iterator[tuple[tuple[ImageEntry, ...], bytes]]:
        """Each chunk's images and payload, in order."""
        flat = self.codes.reshape(-1).view(np.uint8)
        first = offset = 0
        for count, nbytes in self.manifest.chunks:
            yield self.manifest.entries[first : first + count], flat[offset : offset + nbytes].tobytes()
            first += count
            offset += nbytes


def read_manifest(codes_path: Path) -> Manifest:
    """The validated manifest beside ``codes_path``."""
    path = manifest_path(codes_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise FormatError(f"{path}: manifest missing (it must sit beside {codes_path.name})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: cannot read manifest ({exc})") from exc
    return Manifest.from_json(text, path)


def open_codes(codes_path: Path) -> CodeFile:
    """Open and cross-check a codes file with its manifest; any mismatch raises ``FormatError``."""
    if not codes_path.is_file():
        raise FormatError(f"{codes_path}: no such codes file")
    manifest = read_manifest(codes_path)
    try:
        sha = file_sha256(codes_path)
    except OSError as exc:
        raise FormatError(f"{codes_path}: cannot read ({exc.strerror or exc})") from exc
    if sha != manifest.codes.sha256:
        raise FormatError(f"{codes_path}: codes do not match their manifest (sha256 differs: replaced or corrupt)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. a header only Python 2's parser reads: not written by convae
            codes = np.load(codes_path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # numpy's header parser raises ValueError, SyntaxError, TokenError... on bad headers
        raise FormatError(f"{codes_path}: not a valid .npy file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(codes, np.ndarray):
        raise FormatError(f"{codes_path}: not a single .npy array")
    if codes.dtype.name != manifest.codes.dtype or codes.shape != manifest.codes.shape:
        raise FormatError(f"{codes_path}: array dtype/shape disagree with the manifest")
    if codes.nbytes != sum(nbytes for _, nbytes in manifest.chunks):
        raise FormatError(f"{codes_path}: array length disagrees with the manifest's byte counts")
    return CodeFile(codes_path, manifest, codes)
