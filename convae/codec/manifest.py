"""The manifest of a code file (its ``manifest`` field), typed: what made the codes, the codes, images and chunks.

``Manifest.from_json`` validates every field a reader uses before anything allocates per image, so a
hostile manifest fails with ``FormatError``; ``Manifest.to_json`` writes the canonical text with its
checksum. Image paths are stored compacted: runs of numbered names are one item. See docs/FORMAT.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from convae.errors import FormatError
from convae.images import PIXEL_CEILING

MAGIC = "convae-codes"
VERSION = 3  # what convae writes
READS = (2, 3)  # what it reads: 2 is a .npy + .json pair, 3 one .npy
CODINGS = ("ans", "raw")
DTYPES = ("uint8", "uint16")
QUANT_MODES = ("uniform", "integer")
MAX_IMAGES = 1 << 31
CHUNK = 64  # most images per chunk; a chunk never spans a job index that is a multiple of CHUNK
MAX_CHUNK_SYMBOLS = 1 << 22  # latent symbols per chunk of more than one image: bounds decoding memory
MAX_DIGITS = 18  # longer numbers never start a path run: first + i stays a small int
MAX_PATH = 4096
_LAST_DIGITS = re.compile(r"[0-9]+(?=[^0-9]*\Z)")


@dataclass(frozen=True)
class ImageEntry:
    """One coded image: its path relative to the input root, original size/mode, and its alpha bytes."""

    path: str
    width: int
    height: int
    mode: str
    has_alpha: bool
    alpha_nbytes: int = 0


@dataclass(frozen=True)
class ModelRef:
    """The model that made the codes: registry variant, what ``--model`` was, the weights' sha256, and the
    rate level of a variable-rate model (None for the others)."""

    variant: str
    source: str | None
    sha256: str
    level: float | None = None


@dataclass(frozen=True)
class QuantizerSpec:
    """The quantiser the codes were made with; ``lo``/``hi`` are informational (the weights hold them)."""

    mode: str
    levels: int
    lo: tuple[float, ...]
    hi: tuple[float, ...]


@dataclass(frozen=True)
class ShardInfo:
    """Shard ``index`` of ``count`` of a job of ``total_images`` whose sorted input list hashes to ``job``."""

    index: int
    count: int
    total_images: int
    job: str


@dataclass(frozen=True)
class CodesInfo:
    """The codes the manifest belongs to: their sha256 (format 3: of the codes' bytes; 2: of the .npy), dtype, shape."""

    sha256: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Size of the codes in bytes."""
        return math.prod(self.shape) * (1 if self.dtype == "uint8" else 2)


@dataclass(frozen=True)
class Header:
    """How codes were made: model, quantiser, coding (``ans`` or ``raw``), and the shard of the job, if any."""

    model: ModelRef
    quantizer: QuantizerSpec
    coding: str
    shard: ShardInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        """The header's manifest fields, in file order."""
        m, q = self.model, self.quantizer
        doc: dict[str, Any] = {
            "model": {"variant": m.variant, "source": m.source, "sha256": m.sha256,
                      **({"level": m.level} if m.level is not None else {})},
            "quantizer": {"mode": q.mode, "levels": q.levels, "lo": list(q.lo), "hi": list(q.hi)},
            "coding": self.coding,
        }
        if self.shard is not None:
            s = self.shard
            doc["shard"] = {"index": s.index, "count": s.count, "total_images": s.total_images, "job": s.job}
        return doc


@dataclass(frozen=True)
class Manifest:
    """A code file's manifest: its header, the .npy's identity, every image and the chunks they are coded in."""

    header: Header
    codes: CodesInfo
    entries: tuple[ImageEntry, ...]
    chunks: tuple[tuple[int, int], ...]  # (images, payload bytes) per chunk
    format: str = MAGIC
    version: int = VERSION

    def to_json(self) -> str:
        """The manifest file's text: compact JSON with its checksum, one line."""
        entries = self.entries
        images: dict[str, Any] = {
            "count": len(entries),
            "paths": compact_paths([e.path for e in entries]),
            "groups": _groups(entries),
            "chunks": [[count, nbytes] for count, nbytes in self.chunks],
        }
        if any(e.alpha_nbytes for e in entries):
            images["alpha_nbytes"] = [e.alpha_nbytes for e in entries]
        codes = {"sha256": self.codes.sha256, "dtype": self.codes.dtype, "shape": list(self.codes.shape)}
        doc = {"format": self.format, "version": self.version, **self.header.to_dict(), "codes": codes,
               "images": images}
        doc["checksum"] = manifest_checksum(doc)
        return json.dumps(doc, separators=(",", ":")) + "\n"

    def check_codes(self, dtype: str, shape: tuple[int, ...], where: object) -> None:
        """Codes of ``dtype`` and ``shape`` are this manifest's: the same dtype and shape, its chunks' bytes."""
        if dtype != self.codes.dtype or shape != self.codes.shape:
            raise FormatError(f"{where}: codes dtype/shape disagree with the manifest")
        if self.codes.nbytes != sum(nbytes for _, nbytes in self.chunks):
            raise FormatError(f"{where}: codes length disagrees with the manifest's byte counts")

    @classmethod
    def from_json(cls, text: str, where: object) -> Manifest:
        """Parse and validate a manifest: JSON, magic, version, checksum, then every field.

        Errors raise ``FormatError`` starting with ``where`` (the manifest's path)."""
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, or an integer with too many digits
            raise FormatError(f"{where}: manifest is not valid JSON") from exc
        if not isinstance(doc, dict) or doc.get("format") != MAGIC:
            raise FormatError(f"{where}: not a convae manifest (no {MAGIC!r} magic)")
        if doc.get("version") not in READS or type(doc.get("version")) is not int:
            raise FormatError(
                f"{where}: manifest format version {doc.get('version')!r:.20} is not supported "
                f"(this convae reads versions {' and '.join(map(str, READS))}); use a matching convae release"
            )
        if doc.get("checksum") != manifest_checksum(doc):
            raise FormatError(f"{where}: manifest checksum mismatch (edited or corrupt)")
        try:
            return cls(*_parse(doc), version=doc["version"])
        except ValueError as exc:
            raise FormatError(f"{where}: manifest is malformed ({exc})") from exc


def manifest_checksum(doc: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON (sorted keys, no spaces) without its ``checksum`` field."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _groups(entries: tuple[ImageEntry, ...]) -> list[list[Any]]:
    """``images.groups``: ``[count, width, height, mode, has_alpha]`` per run of alike images."""
    runs: list[list[Any]] = []
    for e in entries:
        key = [e.width, e.height, e.mode, e.has_alpha]
        if runs and runs[-1][1:] == key:
            runs[-1][0] += 1
        else:
            runs.append([1, *key])
    return runs


# ---------------------------------------------------------------- validating untrusted JSON values


def _is_int(v: Any, lo: int = 0, hi: int = 1 << 62) -> bool:
    """``v`` is an int (not a bool) in ``[lo, hi]``."""
    return type(v) is int and lo <= v <= hi


def _is_str(v: Any, max_len: int = 4096) -> bool:
    """``v`` is a non-empty string of at most ``max_len`` characters, without NUL."""
    return isinstance(v, str) and 0 < len(v) <= max_len and "\x00" not in v


def _is_numbers(v: Any) -> bool:
    return isinstance(v, list) and all(type(x) in (int, float) for x in v)


def _check(ok: bool, what: str) -> None:
    """Raise ``ValueError(what)`` unless ``ok``."""
    if not ok:
        raise ValueError(what)


def _parse(doc: dict[str, Any]) -> tuple[Header, CodesInfo, tuple[ImageEntry, ...], tuple[tuple[int, int], ...]]:
    """A manifest's parts, checked in file order; raises ``ValueError`` naming the first bad field."""
    model, q = doc.get("model"), doc.get("quantizer")
    _check(isinstance(model, dict) and _is_str(model.get("variant"), 200) and _is_str(model.get("sha256"), 64)
           and (model.get("source") is None or _is_str(model["source"]))
           and (model.get("level") is None or (type(model["level"]) in (int, float) and 0 <= model["level"] <= 1e3)),
           "model")
    _check(isinstance(q, dict) and q.get("mode") in QUANT_MODES and _is_int(q.get("levels"), 1, 1 << 16)
           and _is_numbers(q.get("lo")) and _is_numbers(q.get("hi")), "quantizer")
    _check(doc.get("coding") in CODINGS, "coding")
    codes = doc.get("codes")
    _check(isinstance(codes, dict) and codes.get("dtype") in DTYPES and isinstance(codes.get("sha256"), str),
           "codes")
    shape = codes.get("shape")
    _check(isinstance(shape, list) and 1 <= len(shape) <= 4 and all(_is_int(v) for v in shape), "codes.shape")
    shard = _shard(doc.get("shard"))
    _check(isinstance(doc.get("images"), dict), "images")
    level = None if model.get("level") is None else float(model["level"])
    header = Header(ModelRef(model["variant"], model.get("source"), model["sha256"], level),
                    QuantizerSpec(q["mode"], q["levels"], tuple(q["lo"]), tuple(q["hi"])), doc["coding"], shard)
    return (header, CodesInfo(codes["sha256"], codes["dtype"], tuple(shape)), *_images(doc["images"]))


def _shard(shard: Any) -> ShardInfo | None:
    if shard is None:
        return None
    _check(isinstance(shard, dict) and _is_int(shard.get("count"), 1, MAX_IMAGES)
           and _is_int(shard.get("index"), 1, shard["count"])
           and _is_int(shard.get("total_images"), 0, MAX_IMAGES) and isinstance(shard.get("job"), str), "shard")
    return ShardInfo(shard["index"], shard["count"], shard["total_images"], shard["job"])


def _images(images: dict[str, Any]) -> tuple[tuple[ImageEntry, ...], tuple[tuple[int, int], ...]]:
    """``images``: the entries and chunks, checked against each other."""
    n = images.get("count")
    _check(_is_int(n, 1, MAX_IMAGES), "images.count")
    chunks = _chunks(images.get("chunks"), n)
    sizes = _sizes(images.get("groups"), n)
    alpha = images.get("alpha_nbytes", [0] * n)
    _check(isinstance(alpha, list) and len(alpha) == n, "images.alpha_nbytes disagrees with count")
    _check(all(_is_int(a) and (a == 0 or s[3]) for a, s in zip(alpha, sizes, strict=True)), "bad alpha byte count")
    first = 0
    for count, nbytes in chunks:
        _check(sum(alpha[first : first + count]) <= nbytes, "alpha bytes exceed their chunk")
        first += count
    paths = expand_paths(images.get("paths"), n)
    _check(all(_is_rel_path(p) for p in paths), "bad image path")
    _check(len(set(paths)) == n, "duplicate image path")
    return tuple(ImageEntry(p, *s, a) for p, s, a in zip(paths, sizes, alpha, strict=True)), chunks


def _chunks(value: Any, n: int) -> tuple[tuple[int, int], ...]:
    """``images.chunks``: ``[count, nbytes]`` pairs, at most ``CHUNK`` images each, ``n`` in all."""
    _check(isinstance(value, list) and 1 <= len(value) <= n, "images.chunks")
    chunks: list[tuple[int, int]] = []
    done = 0
    for c in value:
        _check(isinstance(c, list) and len(c) == 2 and _is_int(c[0], 1, min(CHUNK, n - done)) and _is_int(c[1]),
               "bad chunk")
        chunks.append((c[0], c[1]))
        done += c[0]
    _check(done == n, "chunks disagree with count")
    return tuple(chunks)


def _sizes(groups: Any, n: int) -> list[tuple[int, int, str, bool]]:
    """``images.groups`` expanded: ``(width, height, mode, has_alpha)`` per image."""
    _check(isinstance(groups, list), "images.groups")
    sizes: list[tuple[int, int, str, bool]] = []
    for g in groups:
        _check(isinstance(g, list) and len(g) == 5, "bad group")
        count, w, h, mode, has_alpha = g
        _check(_is_int(count, 1, n - len(sizes)) and _is_str(mode, 16) and isinstance(has_alpha, bool), "bad group")
        _check(_is_int(w, 1, PIXEL_CEILING) and _is_int(h, 1, PIXEL_CEILING) and w * h <= PIXEL_CEILING,
               "bad image size")
        sizes += [(w, h, mode, has_alpha)] * count
    _check(len(sizes) == n, "groups disagree with count")
    return sizes


def _is_rel_path(p: Any) -> bool:
    """A relative POSIX path with no empty, ``.`` or ``..`` component (it becomes an output path)."""
    return _is_str(p) and all(part not in ("", ".", "..") for part in p.split("/"))


# ---------------------------------------------------------------- compact path lists
# An item is a path string or a run ``[prefix, first, count, width, suffix]`` standing for
# ``prefix + str(first + i).zfill(width) + suffix`` for ``i`` in ``range(count)``. A path is split on
# its last run of ASCII digits; runs of one path are written as the plain string.


def _split(path: str) -> tuple[str, int, str, str] | None:
    """``(prefix, number, digits, suffix)`` around the last run of ASCII digits, or None."""
    m = _LAST_DIGITS.search(path)
    if m is None or len(m.group()) > MAX_DIGITS:
        return None
    return path[: m.start()], int(m.group()), m.group(), path[m.end() :]


def _member(run: list[Any], i: int) -> str:
    prefix, first, _, width, suffix = run
    return f"{prefix}{str(first + i).zfill(width)}{suffix}"


def compact_paths(paths: list[str]) -> list[str | list[Any]]:
    """The compact form of ``paths`` (order kept); ``expand_paths`` inverts it."""
    items: list[str | list[Any]] = []
    for path in paths:
        parts = _split(path)
        last = items[-1] if items else None
        if parts and isinstance(last, list) and (parts[0], parts[3]) == (last[0], last[4]) \
                and parts[1] == last[1] + last[2] and str(parts[1]).zfill(last[3]) == parts[2]:
            last[2] += 1
        else:
            items.append([parts[0], parts[1], 1, len(parts[2]), parts[3]] if parts else path)
    return [_member(item, 0) if isinstance(item, list) and item[2] == 1 else item for item in items]


def expand_paths(items: Any, count: int) -> list[str]:
    """The ``count`` paths of a compact list; raises ``ValueError`` on a malformed one, before any large allocation."""
    _check(isinstance(items, list) and len(items) <= count, "images.paths")
    paths: list[str] = []
    for item in items:
        if isinstance(item, str):
            paths.append(item)
            continue
        _check(isinstance(item, list) and len(item) == 5, "bad path run")
        prefix, first, n, width, suffix = item
        _check(isinstance(prefix, str) and isinstance(suffix, str) and _is_int(first)
               and _is_int(width, 1, MAX_PATH) and _is_int(n, 1, count - len(paths)), "bad path run")
        _check(len(prefix) + max(width, len(str(first + n - 1))) + len(suffix) <= MAX_PATH, "bad path run")
        paths += [_member(item, i) for i in range(n)]
    _check(len(paths) == count, "images.paths disagrees with count")
    return paths
