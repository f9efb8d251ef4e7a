"""The code file: one ``OUT.npy`` holding a NumPy structured array of shape () (format 3, docs/FORMAT.md).

Its two fields are ``manifest`` (uint8: the manifest's JSON, manifest.py) and ``codes`` (the chunks'
payloads, as a uint8/uint16 array). The manifest names the sha256 of the codes' bytes, so a damaged
or swapped part is refused before anything decodes. Writing streams the codes to a temporary file and
assembles header, manifest and codes in a second one that is renamed into place. Format 2's pairs
(``OUT.npy`` + ``OUT.json``) still open, through legacy.py.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from convae.atomic import (
    as_output_error,
    check_not_input,
    check_writable,
    commit,
    make_parents,
    remove_empty,
    temp_path,
)
from convae.codec import legacy
from convae.codec.legacy import file_sha256
from convae.codec.manifest import CHUNK, VERSION, CodesInfo, Header, ImageEntry, Manifest
from convae.errors import ConvaeError, FormatError, UsageError

__all__ = ["VERSION", "CodeFile", "CodeWriter", "code_array", "file_sha256", "open_codes", "symbol_dtype"]

NPY_MAGIC = b"\x93NUMPY"
ALIGN = 16  # the manifest field is padded with spaces so that the codes start 16-byte aligned
CODE_DTYPES = (np.dtype("u1"), np.dtype("<u2"))


def symbol_dtype(levels: int) -> np.dtype:
    """Smallest unsigned dtype that holds symbols in ``[0, levels)``."""
    return np.dtype(np.uint8 if levels <= 256 else np.uint16)


def file_dtype(manifest_len: int, codes: np.dtype, shape: tuple[int, ...]) -> np.dtype:
    """The structured dtype of a code file: ``manifest`` bytes, then ``codes``."""
    return np.dtype([("manifest", np.uint8, (manifest_len,)), ("codes", codes, shape)])


def manifest_bytes(text: str) -> bytes:
    """The ``manifest`` field: the JSON text, UTF-8, padded with spaces (JSON whitespace) to ``ALIGN``."""
    data = text.encode()
    return data + b" " * (-len(data) % ALIGN)


def code_array(manifest: bytes, codes: np.ndarray) -> np.ndarray:
    """A code file's array (``np.save`` writes it): for tools and tests that build one in memory."""
    arr = np.zeros((), file_dtype(len(manifest), codes.dtype, codes.shape))
    arr["manifest"] = np.frombuffer(manifest, np.uint8)
    arr["codes"] = codes
    return arr


class CodeWriter:
    """Streams chunk payloads to a temporary file; ``commit`` writes ``out`` (header, manifest, codes)."""

    def __init__(self, out: Path, force: bool, inputs: Sequence[Path] = ()) -> None:
        self.out, self.force = out, force
        if out.suffix != ".npy":
            raise UsageError(f"{out}: the codes file must end in .npy")
        self._created = make_parents(out)  # the output's folder, as decompress makes its folder
        self._done = False
        self._stack = ExitStack()
        try:
            check_not_input(out, inputs)
            check_writable(out, force)
            self._raw_path = self._stack.enter_context(temp_path(out))
            self._raw = self._stack.enter_context(open(self._raw_path, "wb"))  # noqa: SIM115 (closed by the stack)
        except BaseException:
            self.close()
            raise
        self._sha = hashlib.sha256()
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
        self._sha.update(payload)
        self.entries += entries
        self.chunks.append((len(entries), len(payload)))

    def commit(self, header: Header, dtype: np.dtype, shape: tuple[int, ...] | None) -> Manifest:
        """Write ``out`` with codes of ``dtype`` (flat unless ``shape``); return its manifest."""
        try:
            try:
                self._raw.close()  # flushes the last buffered bytes
            except OSError as exc:
                raise as_output_error(exc, self.out) from exc
            nbytes = sum(n for _, n in self.chunks)
            shape = shape or (nbytes // dtype.itemsize,)
            if self._raw_path.stat().st_size != nbytes or int(np.prod(shape)) * dtype.itemsize != nbytes:
                raise ConvaeError(f"{self.out}: internal error: {nbytes} code bytes do not fill a {dtype.name} "
                                  f"array of shape {shape}; nothing was written")
            codes = CodesInfo(self._sha.hexdigest(), dtype.name, shape)
            manifest = Manifest(header, codes, tuple(self.entries), tuple(self.chunks))
            with temp_path(self.out) as tmp:
                _assemble(tmp, manifest_bytes(manifest.to_json()), self._raw_path, dtype, shape)
                commit(tmp, self.out, replace=self.force)
            self._done = True
        finally:
            self.close()
        return manifest

    def close(self) -> None:
        """Drop temporary files (called on success and on failure), and on failure the folders made for ``out``."""
        self._stack.close()
        if not self._done:
            remove_empty(self._created)


def _assemble(path: Path, manifest: bytes, raw: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    """Write the .npy header (as ``np.save`` would), the manifest bytes, then the code bytes of ``raw``."""
    descr = np.lib.format.dtype_to_descr(file_dtype(len(manifest), dtype, shape))
    with open(path, "wb") as dst, open(raw, "rb") as src:
        np.lib.format.write_array_header_1_0(dst, {"descr": descr, "fortran_order": False, "shape": ()})
        dst.write(manifest)
        shutil.copyfileobj(src, dst, 1 << 20)


def _sha256(fh: BinaryIO, nbytes: int) -> str:
    """sha256 of the next ``nbytes`` bytes of ``fh`` (fewer at the end of the file), streamed."""
    h = hashlib.sha256()
    while nbytes > 0 and (block := fh.read(min(nbytes, 1 << 20))):
        h.update(block)
        nbytes -= len(block)
    return h.hexdigest()


# ---------------------------------------------------------------- reading


@dataclass
class CodeFile:
    """A validated code file: its manifest, the codes as a read-only array, and its bytes on disk."""

    path: Path
    manifest: Manifest
    codes: np.ndarray
    file_bytes: int  # the .npy, plus the manifest file for format 2
    manifest_bytes: int

    def chunk_payloads(self) -> Iterator[tuple[tuple[ImageEntry, ...], bytes]]:
        """Each chunk's images and payload, in order."""
        flat = self.codes.reshape(-1).view(np.uint8)
        first = offset = 0
        for count, nbytes in self.manifest.chunks:
            yield self.manifest.entries[first : first + count], flat[offset : offset + nbytes].tobytes()
            first += count
            offset += nbytes


def open_codes(path: Path) -> CodeFile:
    """Open and validate a code file (format 3, or a format-2 pair); any problem raises a one-line ``FormatError``."""
    _check_path(path)
    try:
        with open(path, "rb") as fh:
            if fh.read(len(NPY_MAGIC)) != NPY_MAGIC:
                raise FormatError(f"{path} is not a convae code file{_what_it_is(path)}")
            fh.seek(0)
            layout = _layout(fh, path)
            if layout is not None:
                return _open_v3(fh, path, *layout)
    except OSError as exc:
        raise FormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    manifest, codes, sidecar_bytes = legacy.open_pair(path)
    return CodeFile(path, manifest, codes, path.stat().st_size + sidecar_bytes, sidecar_bytes)


def _check_path(path: Path) -> None:
    if path.is_dir():
        raise FormatError(f"{path} is a folder, not a code file")
    if not path.is_file():
        guess = path.with_name(path.name + ".npy")
        hint = f"; did you mean {guess}?" if path.suffix != ".npy" and guess.is_file() else ""
        raise FormatError(f"{path}: no such code file{hint}")


def _what_it_is(path: Path) -> str:
    """A hint naming what a file that is not a .npy holds, when that is easy to tell."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    images = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
              b"II*\x00": "a TIFF image", b"MM\x00*": "a TIFF image", b"BM": "a BMP image"}
    kind = next((v for k, v in images.items() if head.startswith(k)), None)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "a WebP image"
    if kind:
        return f" (it is {kind}; `convae compress` turns images into code files)"
    if head.lstrip()[:1] == b"{" and path.suffix == ".json":
        return " (a format-2 manifest? give the .npy beside it)"
    return ""


def _layout(fh: BinaryIO, path: Path) -> tuple[int, int, np.dtype, tuple[int, ...]] | None:
    """``(data offset, manifest bytes, codes dtype, codes shape)`` of a format-3 file; None for a plain array."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"header version {version}")
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read(fh)
    except Exception as exc:  # numpy's header parser raises ValueError, SyntaxError, TokenError... on bad headers
        raise FormatError(f"{path}: not a valid .npy file ({type(exc).__name__}: {exc})"[:300]) from exc
    if dtype.names is None or "manifest" not in dtype.names:
        return None
    fields = dtype.fields
    if not (shape == () and not fortran and dtype.names == ("manifest", "codes")):
        raise FormatError(f"{path}: not a convae code file (a structured .npy of another layout)")
    (man, man_at), (codes, codes_at) = fields["manifest"][:2], fields["codes"][:2]
    if not (man.base == np.uint8 and len(man.shape) == 1 and man_at == 0 and codes_at == man.itemsize
            and codes.base in CODE_DTYPES and 1 <= len(codes.shape) <= 4
            and dtype.itemsize == man.itemsize + codes.itemsize):
        raise FormatError(f"{path}: not a convae code file (unexpected manifest or codes field)")
    offset = fh.tell()
    size = fh.seek(0, 2)
    if size != offset + dtype.itemsize:
        raise FormatError(f"{path}: truncated or extended ({size} bytes, its header says {offset + dtype.itemsize})")
    return offset, man.itemsize, codes.base, codes.shape


def _open_v3(fh: BinaryIO, path: Path, offset: int, m: int, dtype: np.dtype, shape: tuple[int, ...]) -> CodeFile:
    """Read and check the manifest field, then the codes' sha256; the codes are memory-mapped."""
    fh.seek(offset)
    try:
        text = fh.read(m).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: manifest is not UTF-8 (corrupt)") from exc
    manifest = Manifest.from_json(text, path)
    if manifest.version != VERSION:
        raise FormatError(f"{path}: holds a version-{manifest.version} manifest; format {VERSION} is expected "
                          "inside a .npy (corrupt or hand-made)")
    manifest.check_codes(dtype.name, shape, path)
    if _sha256(fh, manifest.codes.nbytes) != manifest.codes.sha256:
        raise FormatError(f"{path}: codes do not match their manifest (sha256 of the codes differs: corrupt or "
                          "replaced)")
    if manifest.codes.nbytes:
        codes = np.memmap(path, dtype=dtype, mode="r", offset=offset + m, shape=shape)
    else:
        codes = np.zeros(shape, dtype)
    return CodeFile(path, manifest, codes, offset + m + manifest.codes.nbytes, m)
