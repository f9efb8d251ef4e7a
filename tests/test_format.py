"""The code format: hostile manifests, compact paths, chunks, output names, and the entropy coder's streams."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convae.codec.format import open_codes
from convae.codec.manifest import compact_paths, expand_paths
from convae.entropy.factorized import EntropyCoder
from convae.errors import FormatError
from convae.images import output_names
from tests.codec_util import invoke, ok, one_line_error, read_manifest, resign, write_manifest
from tests.conftest import make_images, write_pngs


@pytest.fixture
def codes(runner, tiny_model, tmp_path, image_folder) -> Path:
    npy = tmp_path / "c.npy"
    ok(invoke(runner, "compress", image_folder, npy, "--model", tiny_model, "--quiet"))
    return npy


def _edit(npy: Path, change) -> None:
    doc = read_manifest(npy)
    change(doc)
    resign(npy, doc)


def _paths(first: str) -> list:
    """The fixture's 12 paths with the first replaced."""
    return [first, ["img", 1, 11, 4, ".png"]]


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["images"]["groups"][0].__setitem__(0, 10**12), "bad group"),  # no [..] * 10**12 allocation
    (lambda d: d["images"].__setitem__("count", 2**31 - 1), "chunks disagree with count"),
    (lambda d: d["images"].__setitem__("paths", _paths("../escape.png")), "bad image path"),
    (lambda d: d["images"].__setitem__("paths", _paths("/etc/x.png")), "bad image path"),
    (lambda d: d["images"].__setitem__("paths", _paths("a//b.png")), "bad image path"),
    (lambda d: d["images"].__setitem__("paths", _paths("img0001.png")), "duplicate image path"),
    (lambda d: d["images"].__setitem__("paths", [["img", 0, 10**12, 4, ".png"]]), "bad path run"),  # no expansion
    (lambda d: d["images"].__setitem__("paths", [["img", 0, 12, 10**12, ".png"]]), "bad path run"),  # no zfill bomb
    (lambda d: d["images"].__setitem__("paths", [["img", 0, 12, 4, 7]]), "bad path run"),
    (lambda d: d["images"].__setitem__("paths", [["img", 0, 11, 4, ".png"]]), "paths disagrees with count"),
    (lambda d: d["images"]["chunks"].__setitem__(0, [12, -1]), "bad chunk"),
    (lambda d: d["images"].__setitem__("chunks", [[6, 0], [5, d["images"]["chunks"][0][1]]]), "chunks disagree"),
    (lambda d: d["images"].__setitem__("chunks", [[12, 0]] * 2), "bad chunk"),
    (lambda d: d["images"].__setitem__("alpha_nbytes", [1] * 12), "bad alpha byte count"),  # images without alpha
    (lambda d: d["images"]["groups"].__setitem__(0, [12, 100000, 100000, "L", False]), "bad image size"),
    (lambda d: d["quantizer"].__setitem__("levels", 2**40), "quantizer"),
    (lambda d: d["model"].pop("sha256"), "model"),
    (lambda d: d["codes"].__setitem__("dtype", "object"), "codes"),
    (lambda d: d.__setitem__("shard", {"index": 3, "count": 2, "total_images": 1, "job": "x"}), "shard"),
])
def test_hostile_manifest_fields(codes, change, message):
    _edit(codes, change)
    with pytest.raises(FormatError, match="malformed") as err:
        open_codes(codes)
    assert message in str(err.value)


@pytest.mark.parametrize(("count", "message"), [(1, "corrupt bitstream"), (12, "more than a chunk may hold")])
def test_huge_declared_size_with_a_short_stream_is_refused_fast(runner, tiny_model, codes, tmp_path, count, message):
    """8192 x 8192 declared for a 2-kB stream: refused before any pixel work (and a chunk's symbols stay bounded)."""
    def huge(d):
        d["images"]["groups"] = [[count, 8192, 8192, "L", False], *([[12 - count, 28, 28, "L", False]] * (count < 12))]
        d["images"]["chunks"] = [[count, d["images"]["chunks"][0][1]], *([[12 - count, 0]] * (count < 12))]

    _edit(codes, huge)
    start = time.perf_counter()
    err = one_line_error(invoke(runner, "decompress", codes, tmp_path / "r", "--model", tiny_model), 1)
    assert message in err and time.perf_counter() - start < 10
    assert not (tmp_path / "r").exists()


def test_chunk_with_mixed_latent_shapes_is_refused(runner, tiny_model, codes, tmp_path):
    _edit(codes, lambda d: d["images"].__setitem__("groups", [[6, 28, 28, "L", False], [6, 20, 28, "L", False]]))
    err = one_line_error(invoke(runner, "decompress", codes, tmp_path / "r", "--model", tiny_model), 1)
    assert "different latent shapes" in err


def test_manifest_of_numbered_images_stays_small(runner, tiny_model, tmp_path):
    """128 numbered 28x28 images: paths and byte counts are one run and two chunks, whatever N."""
    write_pngs(tmp_path / "in", make_images(128, seed=5))
    npy = tmp_path / "c.npy"
    ok(invoke(runner, "compress", tmp_path / "in", npy, "--model", tiny_model, "--quiet"))
    images = read_manifest(npy)["images"]
    assert images["paths"] == [["img", 0, 128, 4, ".png"]] and [c[0] for c in images["chunks"]] == [64, 64]
    assert open_codes(npy).manifest_bytes < 2048


@pytest.mark.parametrize("paths", [
    ["a.png", "b.png", "c/d.png"],  # no digits
    ["ü/ß0.png", "ü/ß1.png", "ü/ß2.png", "日本/写真١.png"],  # unicode; Arabic-Indic digits are not ASCII digits
    ["run1/x.png", "run2/x.png", "run3/x.png", "run3/y.png"],  # digits in folders
    ["img1.png", "img3.png", "img4.png", "img7.png"],  # gaps
    ["img8.png", "img9.png", "img10.png", "img11.png", "img099.png", "img100.png", "img0999.png", "img1000.png",
     "img1001.png"],  # widths grow: "9" -> "10" keeps width 1, "0999" -> "1000" stays 4 wide
    ["img01.png", "img2.png", "img003.png", "1", "2", "x00.png", "x01.png", "5.png", "12345678901234567890.png",
     "12345678901234567891.png"],  # width changes break runs; no suffix; numbers too long to run
])
def test_compact_paths_round_trip(paths):
    items = compact_paths(paths)
    assert expand_paths(json.loads(json.dumps(items)), len(paths)) == paths
    assert all(isinstance(i, str) or i[2] > 1 for i in items)  # runs of one are plain strings


def test_compact_paths_runs():
    assert compact_paths(["a/img8.png", "a/img9.png", "a/img10.png", "a/img12.png", "b7", "b8"]) == [
        ["a/img", 8, 3, 1, ".png"], "a/img12.png", ["b", 7, 2, 1, ""]]
    assert compact_paths(["x09.png", "x10.png", "x11.png"]) == [["x", 9, 3, 2, ".png"]]
    assert compact_paths(["x9.png", "x010.png"]) == ["x9.png", "x010.png"]
    assert compact_paths(["1/a.png", "2/a.png"]) == [["", 1, 2, 1, "/a.png"]]


def test_json_bombs_are_invalid_json(codes):
    for text in ('{"format": ' + "9" * 5000 + "}", "[" * 100000 + "]" * 100000):
        write_manifest(codes, text)
        with pytest.raises(FormatError, match="not valid JSON"):
            open_codes(codes)


def test_output_names_are_unique_and_prefer_own_png():
    names = output_names(["a.jpg", "a.jpg.png", "a.png", "b.tif", "b.webp", "c", ".hidden", "d/x.bmp"])
    assert names == ["a.jpg.1.png", "a.jpg.png", "a.png", "b.tif.png", "b.webp.png", "c.png", ".hidden.png",
                     "d/x.png"]
    assert len(set(names)) == len(names)


@settings(max_examples=150, deadline=None, database=None, derandomize=True)
@given(peak=st.integers(1, 10**9), levels=st.sampled_from([2, 16, 256, 4096]), h=st.integers(1, 40),
       w=st.integers(1, 40), n=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_extreme_streams_round_trip(peak, levels, h, w, n, seed):
    """Very peaked tables and chunks of only the most probable symbol (possibly empty) decode exactly."""
    rng = np.random.default_rng(seed)
    freqs = rng.integers(1, 100, (3, levels))
    freqs[:, rng.integers(levels)] = peak
    coder = EntropyCoder(freqs)
    top = np.broadcast_to(freqs.argmax(1)[:, None, None], (3, h, w))
    mixed = [np.where(rng.random((3, h, w)) < 0.9, top, rng.integers(0, levels, (3, h, w))) for _ in range(n)]
    for chunk in ([top] * n, mixed):
        decoded = coder.decode(coder.encode(chunk), [(3, h, w)] * n)
        assert len(decoded) == n and all(np.array_equal(d, s) for d, s in zip(decoded, chunk, strict=True))


def test_chunk_is_one_stream_consumed_exactly():
    """A chunk codes smaller than its images one by one, and decoding it as fewer images leaves data: refused."""
    rng = np.random.default_rng(0)
    coder = EntropyCoder(rng.integers(1, 100, (2, 16)))
    chunk = [rng.integers(0, 16, (2, 3, 4)) for _ in range(20)]
    data = coder.encode(chunk)
    assert len(data) < sum(len(coder.encode([s])) for s in chunk)
    with pytest.raises(FormatError, match="data left over"):
        coder.decode(data, [(2, 3, 4)] * 19)
