"""Fuzz decompress with >= 10,000 mutated .npy/manifest pairs: every case succeeds or raises ConvaeError.

Mutations: byte flips, truncations and extensions of the .npy; JSON edits of the manifest (values
replaced by other types, huge or negative numbers, keys deleted) at random and at the fields that
size allocations (counts, path runs, chunks, groups); text edits of the manifest. Half the cases
re-sign the pair (fresh .npy sha256 and manifest checksum) so they get past the integrity checks
into validation and decoding.
A case running longer than ``CASE_SECONDS`` counts as a hang.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import signal
import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from convae.codec.manifest import manifest_checksum
from convae.errors import ConvaeError
from tests.codec_util import gray, mode_images, read_manifest, save
from tests.conftest import make_images, write_pngs

CASES = 10_000
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
                                           "..", "/abs", "a/../b", "", "\x00"]),
)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6),
                                                                                                inner, max_size=3),
                           max_leaves=8)
EDIT = st.tuples(st.sampled_from(["set", "delete", "wrap", "grow"]), st.one_of(st.sampled_from(TARGETS),
                 st.lists(st.integers(0, 40), min_size=1, max_size=4).map(tuple)), JSON_VALUES, st.integers(0, 99))
BYTE_EDIT = st.tuples(st.sampled_from(["flip", "truncate", "extend", "zero"]), st.integers(0, 1 << 20),
                      st.binary(min_size=1, max_size=16))


@contextmanager
def time_limit(seconds: int):
    def hang(*_):
        raise TimeoutError(f"decompress ran over {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def edit_bytes(data: bytes, edits: list[tuple]) -> bytes:
    buf = bytearray(data)
    for kind, pos, blob in edits:
        at = pos % (len(buf) + 1)
        if kind == "flip" and buf:
            buf[at % len(buf)] ^= blob[0] or 1
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


@pytest.fixture(scope="module")
def bases(tiny_model, tmp_path_factory) -> list[tuple[bytes, dict]]:
    """Code files to mutate: entropy coded (mixed sizes, modes, alpha), raw 8-bit latents, raw 12-bit latents."""
    from convae.codec.api import compress

    root = tmp_path_factory.mktemp("fuzzbase")
    mixed = root / "mixed"
    mode_images(mixed, 13, 21)
    write_pngs(mixed / "sub", make_images(3, seed=3))
    save(Image.fromarray(gray(9, 5)), mixed / "small.png")
    plain = root / "plain"
    write_pngs(plain, make_images(4, seed=4))
    out = []
    for name, src, kw in (("ans", mixed, {}), ("raw", plain, {"raw": True}), ("raw12", plain, {"raw": True,
                                                                                                "bits": 12})):
        npy = root / f"{name}.npy"
        compress([src], npy, model=str(tiny_model), **kw)
        out.append((npy.read_bytes(), read_manifest(npy)))
    return out


def test_mutated_code_files_fail_cleanly(bases, tiny_model):
    import convae.atomic
    import convae.codec.api
    import convae.codec.inference
    import convae.zoo

    shm = Path("/dev/shm")  # memory-backed when present: 10,000 small writes stay fast
    work = Path(tempfile.mkdtemp(prefix="convae-fuzz-", dir=shm if shm.is_dir() else None))
    npy, manifest, out = work / "c.npy", work / "c.json", work / "out"
    loaded = convae.zoo.load_model(str(tiny_model))
    outcomes: Counter = Counter()

    @settings(max_examples=CASES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(base=st.integers(0, len(bases) - 1), byte_edits=st.lists(BYTE_EDIT, max_size=3),
           json_edits=st.lists(EDIT, max_size=3), text_edits=st.lists(BYTE_EDIT, max_size=2),
           resign=st.booleans())
    def case(base, byte_edits, json_edits, text_edits, resign):
        data, doc = bases[base]
        data, doc = edit_bytes(data, byte_edits), copy.deepcopy(doc)
        for e in json_edits:
            doc = edit_json(doc, e)
        if resign and isinstance(doc, dict):
            if isinstance(doc.get("codes"), dict):
                doc["codes"]["sha256"] = hashlib.sha256(data).hexdigest()
            doc["checksum"] = manifest_checksum(doc)
        text = edit_bytes(json.dumps(doc).encode(), text_edits if not resign else [])
        npy.write_bytes(data)
        manifest.write_bytes(text)
        try:
            with time_limit(CASE_SECONDS):
                convae.codec.api.decompress(npy, out, model=str(tiny_model), force=True)
            outcomes["decoded"] += 1
        except ConvaeError as exc:
            outcomes[str(exc).replace(str(work), "")[:45]] += 1
        finally:
            shutil.rmtree(out, ignore_errors=True)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(convae.codec.inference, "load_model", lambda _: loaded)  # same weights: skip re-reading
        mp.setattr(convae.atomic.os, "sync", lambda: None)  # durability is not what this test is about
        try:
            case()
        finally:
            shutil.rmtree(work, ignore_errors=True)
    total = sum(outcomes.values())
    print(f"\n{total} cases, the 25 most common outcomes:", dict(outcomes.most_common(25)))
    assert total >= CASES
    assert outcomes["decoded"] >= CASES // 100  # some mutations are harmless and decode
    assert len(outcomes) >= 10  # and the rest fail in many different places, not only at the checksum
