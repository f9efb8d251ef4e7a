"""Bombs and limits: declared sizes refused before allocating, degenerate sizes round-trip, bounded memory.

The 12 and 48 MP memory figures (``stress``) are printed and recorded in docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from convae.errors import DataError, FormatError
from convae.images import MAX_PIXELS, read_image
from tests.codec_util import convae_script, gray, invoke, ok, one_line_error, read_manifest, resign, save
from tests.test_codec_bad_input import png_header


def _peak(fn) -> tuple[int, BaseException | None]:
    """Peak bytes Python allocated while ``fn()`` ran (numpy and Pillow buffers included), and what it raised."""
    tracemalloc.start()
    try:
        fn()
        raised = None
    except Exception as exc:
        raised = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, raised


@pytest.mark.parametrize(("w", "h"), [(100_000, 100_000), (MAX_PIXELS + 1, 1), (1, MAX_PIXELS + 1), (8193, 8192)])
def test_a_bomb_header_is_refused_before_allocating(tmp_path, w, h):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(w, h))
    peak, raised = _peak(lambda: read_image(path))
    assert isinstance(raised, DataError) and "decompression bomb" in str(raised), raised
    assert peak < 1 << 20  # under 1 MiB: no pixel buffer was made


def test_a_manifest_claiming_a_billion_images_is_refused_fast(runner, tiny_model, tmp_path):
    from convae.codec.format import open_codes

    save(Image.fromarray(gray(28, 28)), tmp_path / "src" / "img0000.png")
    npy = tmp_path / "c.npy"
    ok(invoke(runner, "compress", tmp_path / "src", npy, "--model", tiny_model, "--quiet"))
    doc = read_manifest(npy)
    n = 10**9
    doc["images"].update(count=n, paths=[["img", 0, n, 4, ".png"]], groups=[[n, 28, 28, "L", False]],
                         chunks=[[64, 1]] * 1000)
    resign(npy, doc)
    start = time.perf_counter()
    peak, raised = _peak(lambda: open_codes(npy))
    assert isinstance(raised, FormatError) and "chunks disagree with count" in str(raised), raised
    assert time.perf_counter() - start < 2 and peak < 16 << 20


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_tiny_and_thin_images_round_trip_with_the_default_model(runner, tmp_path, mode):
    """1x1, 1xN, Nx1 and smaller-than-stride images come back at their size and mode (photoh-q2: stride 8)."""
    sizes = [(1, 1), (1, 37), (37, 1), (3, 5), (2, 17), (15, 15)]
    for w, h in sizes:
        g = (80 + np.add.outer(np.arange(h) * 40 // h, np.arange(w) * 40 // w)).astype(np.uint8)  # smooth
        pixels = np.dstack([g, g + 30, g + 60]) if mode == "RGB" else g
        save(Image.fromarray(pixels), tmp_path / "src" / f"{w}x{h}.png")
    ok(invoke(runner, "compress", tmp_path / "src", tmp_path / "c.npy", "--quiet"))
    ok(invoke(runner, "decompress", tmp_path / "c.npy", tmp_path / "out", "--quiet"))
    for w, h in sizes:
        with Image.open(tmp_path / "out" / f"{w}x{h}.png") as img:
            assert (img.size, img.mode) == ((w, h), mode)
        src = np.asarray(Image.open(tmp_path / "src" / f"{w}x{h}.png"), dtype=float)
        back = np.asarray(Image.open(tmp_path / "out" / f"{w}x{h}.png"), dtype=float)
        assert np.abs(src - back).mean() < 32, (w, h)  # a picture of the input, not garbage


def test_an_empty_image_file_is_refused_in_one_line(runner, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "empty.png").write_bytes(b"")
    one_line_error(invoke(runner, "compress", tmp_path / "src", tmp_path / "c.npy"), 1, "empty.png")
    assert not (tmp_path / "c.npy").exists()


def max_rss_mib(args: list[str]) -> float:
    """Run the installed convae with ``args`` in a child process; its peak resident memory in MiB."""
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    r = subprocess.run([sys.executable, "-c", code, convae_script(), *args], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[-1]) / 1024


@pytest.mark.stress
@pytest.mark.parametrize("size", [(4000, 3000), (8000, 6000)], ids=["12MP", "48MP"])
def test_memory_of_a_large_photo(tmp_path, size):
    """Peak RSS of ``convae compress`` and ``decompress`` of one 12 or 48 MP RGB photo (default model)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    photo = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    save(photo, tmp_path / "src" / "photo.png")
    rss = {"compress": max_rss_mib(["compress", str(tmp_path / "src"), str(tmp_path / "c.npy"), "--quiet"])}
    rss["decompress"] = max_rss_mib(["decompress", str(tmp_path / "c.npy"), str(tmp_path / "out"), "--quiet"])
    rss["self"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pixels = size[0] * size[1]
    print(f"\n{pixels / 1e6:.0f} MP photo, peak RSS MiB:", json.dumps({k: round(v) for k, v in rss.items()}))
    assert Image.open(tmp_path / "out" / "photo.png").size == size
    bound = 512 + 110 * pixels / 2**20  # 70-85 bytes per pixel measured (docs/RELIABILITY.md), with headroom
    assert rss["compress"] < bound and rss["decompress"] < bound


@pytest.fixture
def pixel_limit(monkeypatch):
    """Restore CONVAE_MAX_PIXELS after the test (``--max-pixels`` sets it in this process)."""
    from convae.images import LIMIT_ENV

    monkeypatch.setenv(LIMIT_ENV, "")
    return LIMIT_ENV


def test_max_pixels_lowers_and_raises_the_limit_on_compress(runner, tiny_model, tmp_path, pixel_limit):
    save(Image.fromarray(gray(100, 200)), tmp_path / "src" / "wide.png")
    npy = tmp_path / "c.npy"
    err = one_line_error(invoke(runner, "compress", tmp_path / "src", npy, "-m", tiny_model, "--max-pixels", 19_999),
                         1, "wide.png")
    assert "200x100" in err and "19,999" in err and "--max-pixels 20000" in err
    assert not npy.exists()
    ok(invoke(runner, "compress", tmp_path / "src", npy, "-m", tiny_model, "--max-pixels", 20_000, "--quiet"))
    assert npy.is_file()


def test_decompress_refuses_an_image_over_the_limit_before_writing(runner, tiny_model, tmp_path, pixel_limit):
    save(Image.fromarray(gray(100, 200)), tmp_path / "src" / "wide.png")
    npy, out = tmp_path / "c.npy", tmp_path / "out"
    ok(invoke(runner, "compress", tmp_path / "src", npy, "-m", tiny_model, "--quiet"))
    err = one_line_error(invoke(runner, "decompress", npy, out, "--max-pixels", 10_000), 1, "wide.png")
    assert "--max-pixels 20000" in err and not out.exists()
    ok(invoke(runner, "decompress", npy, out, "--max-pixels", 20_000, "--quiet"))
    assert (out / "wide.png").is_file()


def test_a_manifest_over_the_default_limit_is_readable_and_decodes_only_when_raised(runner, tiny_model, tmp_path,
                                                                                     pixel_limit):
    """A size above the default but under the ceiling is a valid file: info shows it, decompress names the flag."""
    save(Image.fromarray(gray(28, 28)), tmp_path / "src" / "img.png")
    npy = tmp_path / "c.npy"
    ok(invoke(runner, "compress", tmp_path / "src", npy, "--model", tiny_model, "--quiet"))
    doc = read_manifest(npy)
    doc["images"]["groups"] = [[1, 9000, 9000, "L", False]]
    resign(npy, doc)
    ok(invoke(runner, "info", npy))
    err = one_line_error(invoke(runner, "decompress", npy, tmp_path / "out"), 1, "img")
    assert "9000x9000" in err and f"{MAX_PIXELS:,}" in err and "--max-pixels 81000000" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["0", "-5", "lots", str((1 << 31) + 1)])
def test_a_bad_pixel_limit_is_a_usage_error(runner, tmp_path, value, pixel_limit, monkeypatch):
    save(Image.fromarray(gray(28, 28)), tmp_path / "img.png")
    one_line_error(invoke(runner, "compress", tmp_path / "img.png", tmp_path / "c.npy", "--max-pixels", value), 2,
                   "--max-pixels")
    monkeypatch.setenv(pixel_limit, value)
    one_line_error(invoke(runner, "compress", tmp_path / "img.png", tmp_path / "c.npy"), 2, pixel_limit)
    assert not (tmp_path / "c.npy").exists()


def test_no_limit_admits_a_header_over_the_ceiling(tmp_path, pixel_limit, monkeypatch):
    monkeypatch.setenv(pixel_limit, str(1 << 31))
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(100_000, 100_000))
    peak, raised = _peak(lambda: read_image(path))
    assert isinstance(raised, DataError) and "decompression bomb" in str(raised), raised
    assert peak < 1 << 20
