"""The on-disk code format: ``OUT.npy`` (codes) plus ``OUT.json`` (manifest). See docs/FORMAT.md.

The manifest carries a magic, a version, the model's name and weights sha256, the quantiser,
the sha256 of the .npy, the image paths (runs of numbered names compacted), sizes and modes, the
byte count of each chunk (a run of images coded together), and a checksum over itself. Both
files are written to temporary files and renamed into place; the .npy sha256 in the manifest
ties the pair together, so a reader never accepts one without its partner.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convae.atomic import as_output_error, check_writable, commit, temp_path
from convae.codec.checks import check, is_int, is_str
from convae.codec.pathruns import compact_paths, expand_paths
from convae.errors import ConvaeError, FormatError, OutputError
from convae.images import MAX_PIXELS

MAGIC = "convae-codes"
VERSION = 2
CODINGS = ("ans", "raw")
DTYPES = ("uint8", "uint16")
QUANT_MODES = ("uniform", "integer")
MAX_IMAGES = 1 << 31
CHUNK = 64  # most images per chunk; a chunk never spans a job index that is a multiple of CHUNK
MAX_CHUNK_SYMBOLS = 1 << 22  # latent symbols per chunk of more than one image: bounds decoding memory


@dataclass(frozen=True)
class ImageEntry:
    """One coded image: its path relative to the input root, original size/mode, and its alpha bytes."""

    path: str
    width: int
    height: int
    mode: str
    has_alpha: bool
    alpha_nbytes: int = 0


def manifest_path(codes: Path) -> Path:
    """The manifest that belongs to a codes file: same name, ``.json`` suffix."""
    return codes.with_suffix(".json")


def symbol_dtype(levels: int) -> np.dtype:
    """Smallest unsigned dtype that holds symbols in ``[0, levels)``."""
    return np.dtype(np.uint8 if levels <= 256 else np.uint16)


def _groups(entries: list[ImageEntry]) -> list[list[Any]]:
    runs: list[list[Any]] = []
    for e in entries:
        key = [e.width, e.height, e.mode, e.has_alpha]
        if runs and runs[-1][1:] == key:
            runs[-1][0] += 1
        else:
            runs.append([1, *key])
    return runs


def manifest_checksum(doc: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON (sorted keys, no spaces) without its ``checksum`` field."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def build_manifest(header: dict[str, Any], entries: list[ImageEntry], chunks: list[tuple[int, int]],
                   codes: dict[str, Any]) -> dict[str, Any]:
    """The manifest document for ``entries`` in ``chunks`` (header holds model, quantizer and coding)."""
    images: dict[str, Any] = {
        "count": len(entries),
        "paths": compact_paths([e.path for e in entries]),
        "groups": _groups(entries),
        "chunks": [[count, nbytes] for count, nbytes in chunks],
    }
    if any(e.alpha_nbytes for e in entries):
        images["alpha_nbytes"] = [e.alpha_nbytes for e in entries]
    doc = {"format": MAGIC, "version": VERSION, **header, "codes": codes, "images": images}
    doc["checksum"] = manifest_checksum(doc)
    return doc


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

    def add(self, entries: list[ImageEntry], payload: bytes) -> None:
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

    def commit(self, header: dict[str, Any], dtype: np.dtype, shape: tuple[int, ...] | None) -> dict[str, Any]:
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
                codes = {"sha256": file_sha256(npy_tmp), "dtype": dtype.name, "shape": list(shape)}
                doc = build_manifest(header, self.entries, self.chunks, codes)
                with temp_path(self.manifest) as json_tmp:
                    json_tmp.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
                    commit(npy_tmp, self.out)  # the manifest goes last: it names the .npy's sha256
                    try:
                        commit(json_tmp, self.manifest)
                    except OutputError:
                        self.out.unlink(missing_ok=True)  # no .npy without its manifest
                        raise
        finally:
            self.close()
        return doc

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
    """A validated code file: the manifest, its image entries and chunks, and the codes as a read-only array."""

    path: Path
    manifest: dict[str, Any]
    entries: list[ImageEntry]
    chunks: list[tuple[int, int]]  # (images, bytes) per chunk
    codes: np.ndarray

    def chunk_payloads(self) -> Iterator[tuple[list[ImageEntry], bytes]]:
        """Each chunk's images and payload, in order."""
        flat = self.codes.reshape(-1).view(np.uint8)
        first = offset = 0
        for count, nbytes in self.chunks:
            yield self.entries[first : first + count], flat[offset : offset + nbytes].tobytes()
            first += count
            offset += nbytes


def read_manifest(codes_path: Path) -> dict[str, Any]:
    """Load and validate a manifest document: JSON, magic, version, checksum, then every field."""
    path = manifest_path(codes_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise FormatError(f"{path}: manifest missing (it must sit beside {codes_path.name})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: cannot read manifest ({exc})") from exc
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, or an integer with too many digits
        raise FormatError(f"{path}: manifest is not valid JSON") from exc
    if not isinstance(doc, dict) or doc.get("format") != MAGIC:
        raise FormatError(f"{path}: not a convae manifest (no {MAGIC!r} magic)")
    if doc.get("version") != VERSION or type(doc.get("version")) is not int:
        raise FormatError(
            f"{path}: manifest format version {doc.get('version')!r:.20} is not supported "
            f"(this convae reads version {VERSION}); use a matching convae release"
        )
    if doc.get("checksum") != manifest_checksum(doc):
        raise FormatError(f"{path}: manifest checksum mismatch (edited or corrupt)")
    try:
        _check_header(doc)
    except ValueError as exc:
        raise FormatError(f"{path}: manifest is malformed ({exc})") from exc
    return doc


def _check_header(doc: dict[str, Any]) -> None:
    """Types and ranges of the fields readers use; raises ``ValueError`` naming the first bad one."""
    model, q, codes, shard = doc.get("model"), doc.get("quantizer"), doc.get("codes"), doc.get("shard")
    check(isinstance(model, dict) and is_str(model.get("variant"), 200) and is_str(model.get("sha256"), 64)
           and (model.get("source") is None or is_str(model["source"])), "model")
    check(isinstance(q, dict) and q.get("mode") in QUANT_MODES and is_int(q.get("levels"), 1, 1 << 16),
           "quantizer")
    check(doc.get("coding") in CODINGS, "coding")
    check(isinstance(codes, dict) and codes.get("dtype") in DTYPES and isinstance(codes.get("sha256"), str),
           "codes")
    shape = codes.get("shape")
    check(isinstance(shape, list) and 1 <= len(shape) <= 4 and all(is_int(v) for v in shape), "codes.shape")
    if shard is not None:
        check(isinstance(shard, dict) and is_int(shard.get("count"), 1, MAX_IMAGES)
               and is_int(shard.get("index"), 1, shard["count"]) and is_int(shard.get("total_images"), 0, MAX_IMAGES)
               and isinstance(shard.get("job"), str), "shard")
    check(isinstance(doc.get("images"), dict), "images")


def _is_rel_path(p: Any) -> bool:
    """A relative POSIX path with no empty, ``.`` or ``..`` component (it becomes an output path)."""
    return is_str(p) and all(part not in ("", ".", "..") for part in p.split("/"))


def _chunks(value: Any, n: int) -> list[tuple[int, int]]:
    """``images.chunks``: ``[count, nbytes]`` pairs, at most ``CHUNK`` images each, ``n`` in all."""
    check(isinstance(value, list) and 1 <= len(value) <= n, "images.chunks")
    chunks: list[tuple[int, int]] = []
    done = 0
    for c in value:
        check(isinstance(c, list) and len(c) == 2 and is_int(c[0], 1, min(CHUNK, n - done)) and is_int(c[1]),
              "bad chunk")
        chunks.append((c[0], c[1]))
        done += c[0]
    check(done == n, "chunks disagree with count")
    return chunks


def _sizes(groups: Any, n: int) -> list[tuple[int, int, str, bool]]:
    """``images.groups`` expanded: ``(width, height, mode, has_alpha)`` per image."""
    check(isinstance(groups, list), "images.groups")
    sizes: list[tuple[int, int, str, bool]] = []
    for g in groups:
        check(isinstance(g, list) and len(g) == 5, "bad group")
        count, w, h, mode, has_alpha = g
        check(is_int(count, 1, n - len(sizes)) and is_str(mode, 16) and isinstance(has_alpha, bool), "bad group")
        check(is_int(w, 1, MAX_PIXELS) and is_int(h, 1, MAX_PIXELS) and w * h <= MAX_PIXELS, "bad image size")
        sizes += [(w, h, mode, has_alpha)] * count
    check(len(sizes) == n, "groups disagree with count")
    return sizes


def _entries(doc: dict[str, Any]) -> tuple[list[ImageEntry], list[tuple[int, int]]]:
    images = doc["images"]
    n = images.get("count")
    check(is_int(n, 1, MAX_IMAGES), "images.count")
    chunks = _chunks(images.get("chunks"), n)
    sizes = _sizes(images.get("groups"), n)
    alpha = images.get("alpha_nbytes", [0] * n)
    check(isinstance(alpha, list) and len(alpha) == n, "images.alpha_nbytes disagrees with count")
    check(all(is_int(a) and (a == 0 or s[3]) for a, s in zip(alpha, sizes, strict=True)), "bad alpha byte count")
    first = 0
    for count, nbytes in chunks:
        check(sum(alpha[first : first + count]) <= nbytes, "alpha bytes exceed their chunk")
        first += count
    paths = expand_paths(images.get("paths"), n)
    check(all(_is_rel_path(p) for p in paths), "bad image path")
    check(len(set(paths)) == n, "duplicate image path")
    return [ImageEntry(p, *s, a) for p, s, a in zip(paths, sizes, alpha, strict=True)], chunks


def open_codes(codes_path: Path) -> CodeFile:
    """Open and cross-check a codes file with its manifest; any mismatch raises ``FormatError``."""
    if not codes_path.is_file():
        raise FormatError(f"{codes_path}: no such codes file")
    doc = read_manifest(codes_path)
    where = manifest_path(codes_path)
    try:
        entries, chunks = _entries(doc)
    except ValueError as exc:
        raise FormatError(f"{where}: manifest is malformed ({exc})") from exc
    codes_meta = doc["codes"]
    try:
        sha = file_sha256(codes_path)
    except OSError as exc:
        raise FormatError(f"{codes_path}: cannot read ({exc.strerror or exc})") from exc
    if sha != codes_meta["sha256"]:
        raise FormatError(f"{codes_path}: codes do not match their manifest (sha256 differs: replaced or corrupt)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. a header only Python 2's parser reads: not written by convae
            codes = np.load(codes_path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # numpy's header parser raises ValueError, SyntaxError, TokenError... on bad headers
        raise FormatError(f"{codes_path}: not a valid .npy file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(codes, np.ndarray):
        raise FormatError(f"{codes_path}: not a single .npy array")
    if codes.dtype.name != codes_meta["dtype"] or list(codes.shape) != codes_meta["shape"]:
        raise FormatError(f"{codes_path}: array dtype/shape disagree with the manifest")
    if codes.nbytes != sum(nbytes for _, nbytes in chunks):
        raise FormatError(f"{codes_path}: array length disagrees with the manifest's byte counts")
    return CodeFile(codes_path, doc, entries, chunks, codes)
