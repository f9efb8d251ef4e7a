"""Fuzz decompress with structure-aware mutations of format-3 code files (one .npy: header, manifest, codes).

Every case is classified by what the mutation could legitimately give:

- **damage** (bytes flipped, zeroed, cut or inserted in the npy header, the manifest field or the codes;
  a manifest edited without re-signing; one job's manifest over another job's codes; the right file
  decoded with other weights): it must be *refused* with a one-line ``ConvaeError`` or decode to
  exactly the original PNGs. A decode that differs is a **silent corruption** and fails the test.
- **forgery** (a manifest edit or a codes edit re-signed: its checksum and the codes' sha256
  recomputed, so the deeper checks are reached): such a file is well formed by construction, so no
  reader can tell it from a genuine one; it must be refused, decode to the original, or decode to
  exactly what its manifest declares (that many PNGs, of the declared sizes): never a crash, a hang
  or output the manifest does not describe.

The fast run (``pytest``) does ``FAST_CASES``; ``nox -s stress`` does ``STRESS_CASES``; both print
the counts (docs/RELIABILITY.md has the latest). A case over ``CASE_SECONDS`` counts as a hang.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import shutil
import signal
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from convae.codec.format import code_array, manifest_bytes, open_codes
from convae.codec.manifest import manifest_checksum
from convae.errors import ConvaeError
from tests.codec_util import gray, mode_images, save, snapshot
from tests.conftest import make_images, write_pngs

FAST_CASES = 1_200
STRESS_CASES = 20_000
CASE_SECONDS = 10

# Fields whose values size allocations or pick code paths; "*" is any list index.
TARGETS = [
    ("version",), ("coding",), ("model", "variant"), ("model", "sha256"), ("quantizer", "levels"),
    ("quantizer", "mode"), ("codes", "dtype"), ("codes", "shape"), ("codes", "shape", "*"), ("images", "count"),
    ("images", "paths"), ("images", "paths", "*"), ("images", "paths", "*", "*"), ("images", "chunks"),
    ("images", "chunks", "*"), ("images", "chunks", "*", "*"), ("images", "alpha_nbytes", "*"),
    ("images", "groups", "*"), ("images", "groups", "*", "*"), ("images", "groups"), ("shard",), ("images",),
]
HUGE = [2**31, 2**31 - 1, 2**32, 2**63, 2**64 + 1, 10**30, -(2**63), 8192 * 8192, 16385, 10**5]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.sampled_from(HUGE), st.floats(allow_nan=True),
    st.text(max_size=12), st.sampled_from(["uint8", "uint16", "float64", "object", "ans", "raw", "seed", "RGBA",
                                           "..", "/abs", "a/../b", "", "\x00", "A.png", "a\nb"]),
)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6),
                                                                                                inner, max_size=3),
                           max_leaves=8)
EDIT = st.tuples(st.sampled_from(["set", "delete", "wrap", "grow"]), st.one_of(st.sampled_from(TARGETS),
                 st.lists(st.integers(0, 40), min_size=1, max_size=4).map(tuple)), JSON_VALUES, st.integers(0, 99))
BYTE_EDIT = st.tuples(st.sampled_from(["flip", "truncate", "extend", "zero"]), st.integers(0, 1 << 20),
                      st.binary(min_size=1, max_size=16))
IN_PLACE_EDIT = st.tuples(st.sampled_from(["flip", "zero"]), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=4))
KINDS = ["bytes", "manifest-unsigned", "manifest-resigned", "codes-resigned", "splice", "splice-resigned",
         "other-weights"]


@dataclass
class Base:
    """A code file to mutate, its parts, and the PNGs it decodes to."""

    data: bytes
    header_len: int  # bytes before the manifest field
    doc: dict
    codes: np.ndarray
    decoded: dict[str, bytes]


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def hang(*_):
        raise TimeoutError(f"decompress ran over {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def edit_bytes(data: bytes, edits: list[tuple], lo: int = 0, hi: int | None = None) -> bytes:
    """Apply byte edits at positions inside ``data[lo:hi]`` (a cut or an insertion changes the length)."""
    buf = bytearray(data)
    hi = len(buf) if hi is None else hi
    for kind, pos, blob in edits:
        span = max(1, min(hi, len(buf)) - lo)
        at = min(lo + pos % span, len(buf))
        if kind == "flip" and at < len(buf):
            buf[at] ^= blob[0] or 1
        elif kind == "truncate":
            del buf[at:]
        elif kind == "extend":
            buf[at:at] = blob * (1 + pos % 64)
        elif kind == "zero":
            buf[at : at + len(blob) * 8] = bytes(len(buf[at : at + len(blob) * 8]))
    return bytes(buf)


def _children(node) -> list:
    return list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []


def edit_json(doc, edit: tuple):
    """Apply one edit at a path (names, or indices into the keys/items at each level)."""
    kind, path, value, pick = edit
    parent, key, node = None, None, doc
    for step in path:
        options = _children(node)
        if not options:
            break
        if step == "*" or isinstance(step, int):
            choice = options[(pick if step == "*" else step) % len(options)]
        elif step in options:
            choice = step
        else:
            break
        parent, key, node = node, choice, node[choice]
    if parent is None:
        return doc
    if kind == "delete":
        del parent[key]
    elif kind == "wrap":
        parent[key] = [node]
    elif kind == "grow" and isinstance(node, int) and not isinstance(node, bool):
        parent[key] = node * (1 << (pick % 40)) + pick
    else:
        parent[key] = value
    return doc


def assemble(doc: dict, codes: np.ndarray, resign: bool) -> bytes:
    """A code file of ``doc`` over ``codes``; ``resign``: the codes' sha256 and the checksum recomputed."""
    doc = copy.deepcopy(doc)
    if resign:
        if isinstance(doc.get("codes"), dict):
            doc["codes"]["sha256"] = hashlib.sha256(np.ascontiguousarray(codes).tobytes()).hexdigest()
        doc["checksum"] = manifest_checksum(doc)
    buf = io.BytesIO()
    np.save(buf, code_array(manifest_bytes(json.dumps(doc)), codes), allow_pickle=False)
    return buf.getvalue()


def mutate(bases: list[Base], kind: str, i: int, j: int, byte_edits: list, json_edits: list,
           codes_edits: list) -> bytes:
    """The mutated file's bytes for one case of ``kind``."""
    b = bases[i]
    if kind == "bytes":  # one region: header, manifest field, codes, or anywhere
        m_end = b.header_len + len(manifest_bytes(json.dumps(b.doc)))
        lo, hi = [(0, b.header_len), (b.header_len, m_end), (m_end, len(b.data)), (0, len(b.data))][j % 4]
        return edit_bytes(b.data, byte_edits or [("flip", j, b"\x01")], lo, hi)
    if kind.startswith("manifest"):
        doc = copy.deepcopy(b.doc)
        for e in json_edits:
            doc = edit_json(doc, e)
        return assemble(doc, b.codes, resign=kind.endswith("resigned"))
    if kind == "codes-resigned":
        flat = np.frombuffer(edit_bytes(b.codes.tobytes(), codes_edits or [("flip", j, b"\x80")]), np.uint8)
        return assemble(b.doc, flat.view(b.codes.dtype).reshape(b.codes.shape), resign=True)
    other = bases[(i + 1 + j % (len(bases) - 1)) % len(bases)]  # splices: this manifest over another job's codes
    return assemble(b.doc, other.codes, resign=kind == "splice-resigned")


def matches_manifest(npy: Path, out: Path) -> bool:
    """The decoded PNGs are as many, and of the sizes, as the (forged) manifest declares."""
    declared = Counter((e.width, e.height) for e in open_codes(npy).manifest.entries)
    return declared == Counter(Image.open(p).size for p in out.rglob("*.png"))


@pytest.fixture(scope="module")
def bases(tiny_model, tmp_path_factory) -> list[Base]:
    """Code files to mutate: entropy coded (mixed sizes, gray modes, alpha; two plain jobs of one shape), raw 8-bit
    and 12-bit latents; each with the PNGs it decodes to."""
    from convae.codec.api import compress, decompress

    root = tmp_path_factory.mktemp("fuzzbase")
    mixed = root / "mixed"
    for mode, path in mode_images(mixed, 13, 21).items():
        if mode not in ("L", "LA", "I;16", "1"):  # the tiny model codes gray only
            path.unlink()
    write_pngs(mixed / "sub", make_images(3, seed=3))
    save(Image.fromarray(gray(9, 5)), mixed / "small.png")
    plain = root / "plain"
    write_pngs(plain, make_images(4, seed=4))
    other = root / "other"  # another job of the same shape: splices with it reach the sha256 and the decoder
    write_pngs(other, make_images(4, seed=5))
    out = []
    jobs = (("ans", mixed, {}), ("ans-plain", plain, {}), ("ans-other", other, {}), ("raw", plain, {"raw": True}),
            ("raw12", plain, {"raw": True, "bits": 12}))
    for name, src, kw in jobs:
        npy = root / f"{name}.npy"
        compress([src], npy, model=str(tiny_model), **kw)
        decompress(npy, root / f"{name}-out", model=str(tiny_model))
        arr = np.load(npy, allow_pickle=False)
        data = npy.read_bytes()
        header_len = len(data) - arr.dtype.itemsize
        out.append(Base(data, header_len, json.loads(bytes(arr["manifest"])), np.array(arr["codes"]),
                        snapshot(root / f"{name}-out")))
    return out


def classify(kind: str, identical: bool, npy: Path, out: Path) -> str:
    """A decoded case's outcome; a damaged file decoded to other PNGs fails (silent corruption)."""
    if identical:
        return "identical"
    if kind not in ("manifest-resigned", "codes-resigned", "splice-resigned"):
        raise AssertionError(f"silent corruption: a {kind} mutation decoded to other PNGs")
    assert matches_manifest(npy, out), (kind, "decoded output the forged manifest does not describe")
    return "forged, as declared"


def run_fuzz(bases: list[Base], tiny_model: Path, other_weights: Path, cases: int) -> Counter:
    """Decode ``cases`` mutated files; return the outcome counts (asserting no silent corruption on the way)."""
    import convae.atomic
    import convae.codec.api
    import convae.codec.inference
    import convae.zoo

    shm = Path("/dev/shm")  # memory-backed when present: many small writes stay fast
    work = Path(tempfile.mkdtemp(prefix="convae-fuzz-", dir=shm if shm.is_dir() else None))
    npy, out = work / "c.npy", work / "out"
    loaded = {str(p): convae.zoo.load_model(str(p)) for p in (tiny_model, other_weights)}
    outcomes: Counter = Counter()

    @settings(max_examples=cases, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(kind=st.sampled_from(KINDS), i=st.integers(0, len(bases) - 1), j=st.integers(0, 99),
           byte_edits=st.lists(BYTE_EDIT, max_size=3), json_edits=st.lists(EDIT, min_size=1, max_size=3),
           codes_edits=st.lists(IN_PLACE_EDIT, max_size=2))
    def case(kind, i, j, byte_edits, json_edits, codes_edits):
        npy.write_bytes(mutate(bases, kind, i, j, byte_edits, json_edits, codes_edits))
        weights = other_weights if kind == "other-weights" else tiny_model
        try:
            with time_limit(CASE_SECONDS):
                convae.codec.api.decompress(npy, out, model=str(weights), force=True)
        except ConvaeError as exc:
            assert "\n" not in str(exc), (kind, str(exc))
            outcomes[(kind, "refused")] += 1
            outcomes[("why", str(exc).replace(str(work), "")[:40])] += 1
            assert not out.exists() and list(work.iterdir()) == [npy], "a refused decode left files behind"
            return
        try:
            outcomes[(kind, classify(kind, snapshot(out) == bases[i].decoded, npy, out))] += 1
        finally:
            shutil.rmtree(out, ignore_errors=True)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(convae.codec.inference, "load_model", lambda src: loaded[src])  # skip re-reading weights
        mp.setattr(convae.atomic.os, "sync", lambda: None)  # durability is not what this test is about
        try:
            case()
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return outcomes


def report(outcomes: Counter) -> dict[str, int]:
    """Print the counts per kind and the most common refusals; return the totals by outcome."""
    totals: Counter = Counter()
    for (kind, what), n in sorted(outcomes.items()):
        if kind != "why":
            totals[what] += n
            print(f"  {kind:18} {what:20} {n}")
    why = Counter({w: n for (k, w), n in outcomes.items() if k == "why"})
    print(f"{sum(totals.values())} mutations: {totals['refused']} refused, {totals['identical']} identical, "
          f"{totals['forged, as declared']} forged-and-decoded-as-declared, {totals.get('SILENT', 0)} silent; "
          f"{len(why)} distinct refusals, most common: {dict(why.most_common(8))}")
    return dict(totals)


@pytest.fixture(scope="module")
def other_weights(tiny_model, tmp_path_factory) -> Path:
    from tests.test_codec_bad_input import _other_weights

    return _other_weights(tiny_model, tmp_path_factory.mktemp("other"))


def test_harmless_damage_decodes_identically(bases, tiny_model, tmp_path):
    """Not every changed byte is damage: a tab for a space in the npy header's padding decodes to the same PNGs."""
    from convae.codec.api import decompress

    b = bases[1]
    pad = b.data.rindex(b" ", 0, b.header_len)
    npy = tmp_path / "c.npy"
    npy.write_bytes(b.data[:pad] + b"\t" + b.data[pad + 1 :])
    decompress(npy, tmp_path / "out", model=str(tiny_model))
    assert snapshot(tmp_path / "out") == b.decoded


def _check(outcomes: Counter, cases: int) -> None:
    totals = report(outcomes)
    assert sum(totals.values()) >= cases
    assert totals.get("SILENT", 0) == 0
    for kind in KINDS:  # every kind was drawn, and damage of each kind was refused
        assert outcomes[(kind, "refused")] > 0, kind
    assert outcomes[("other-weights", "identical")] == outcomes[("splice", "identical")] == 0
    assert len([k for k in outcomes if k[0] == "why"]) >= 10  # refused at many checks, not only the checksum


def test_mutated_code_files_fail_cleanly(bases, tiny_model, other_weights):
    _check(run_fuzz(bases, tiny_model, other_weights, FAST_CASES), FAST_CASES)


@pytest.mark.stress
def test_mutated_code_files_fail_cleanly_stress(bases, tiny_model, other_weights):
    _check(run_fuzz(bases, tiny_model, other_weights, STRESS_CASES), STRESS_CASES)
