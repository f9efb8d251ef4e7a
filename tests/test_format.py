"""The code format's reader on hand-made hostile manifests, the output names, and the entropy coder's length bound."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convae.entropy import EntropyCoder
from convae.errors import FormatError
from convae.format import open_codes
from convae.images import output_names
from tests.codec_util import invoke, ok, one_line_error, resign


@pytest.fixture
def codes(runner, tiny_model, tmp_path, image_folder) -> Path:
    npy = tmp_path / "c.npy"
    ok(invoke(runner, "compress", image_folder, npy, "--model", tiny_model, "-q"))
    return npy


def _edit(npy: Path, change) -> None:
    doc = json.loads(npy.with_suffix(".json").read_text())
    change(doc)
    resign(npy, doc)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["images"]["groups"][0].__setitem__(0, 10**12), "bad group"),  # no [..] * 10**12 allocation
    (lambda d: d["images"].__setitem__("count", 2**31 - 1), "disagrees with count"),
    (lambda d: d["images"]["paths"].__setitem__(0, "../escape.png"), "bad image path"),
    (lambda d: d["images"]["paths"].__setitem__(0, "/etc/x.png"), "bad image path"),
    (lambda d: d["images"]["paths"].__setitem__(0, "a//b.png"), "bad image path"),
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


def test_huge_declared_size_with_a_short_stream_is_refused_fast(runner, tiny_model, codes, tmp_path):
    """8192 x 8192 declared for a 200-byte stream: the entropy decoder finds it corrupt before any pixel work."""
    _edit(codes, lambda d: d["images"]["groups"].__setitem__(0, [12, 8192, 8192, "L", False]))
    start = time.perf_counter()
    err = one_line_error(invoke(runner, "decompress", codes, tmp_path / "r", "--model", tiny_model), 1)
    assert "corrupt bitstream" in err and time.perf_counter() - start < 10
    assert not (tmp_path / "r").exists()


def test_json_bombs_are_invalid_json(codes):
    manifest = codes.with_suffix(".json")
    for text in ('{"format": ' + "9" * 5000 + "}", "[" * 100000 + "]" * 100000):
        manifest.write_text(text)
        with pytest.raises(FormatError, match="not valid JSON"):
            open_codes(codes)


def test_output_names_are_unique_and_prefer_own_png():
    names = output_names(["a.jpg", "a.jpg.png", "a.png", "b.tif", "b.webp", "c", ".hidden", "d/x.bmp"])
    assert names == ["a.jpg.1.png", "a.jpg.png", "a.png", "b.tif.png", "b.webp.png", "c.png", ".hidden.png",
                     "d/x.png"]
    assert len(set(names)) == len(names)


@settings(max_examples=150, deadline=None, database=None, derandomize=True)
@given(peak=st.integers(1, 10**9), levels=st.sampled_from([2, 16, 256, 4096]), h=st.integers(1, 40),
       w=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_extreme_streams_round_trip(peak, levels, h, w, seed):
    """Very peaked tables and streams of only the most probable symbol (possibly empty) decode exactly."""
    rng = np.random.default_rng(seed)
    freqs = rng.integers(1, 100, (3, levels))
    freqs[:, rng.integers(levels)] = peak
    coder = EntropyCoder(freqs)
    top = np.broadcast_to(freqs.argmax(1)[:, None, None], (3, h, w))
    mixed = np.where(rng.random((3, h, w)) < 0.9, top, rng.integers(0, levels, (3, h, w)))
    for symbols in (top, mixed):
        assert np.array_equal(coder.decode(coder.encode(symbols), (3, h, w)), symbols)
