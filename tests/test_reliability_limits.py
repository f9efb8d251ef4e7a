"""Bombs and limits: declared sizes refused before allocating, degenerate sizes round-trip, bounded memory.

The 12 MP memory figure (``stress``) is printed and recorded in docs/RELIABILITY.md.
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
def test_memory_of_a_12_megapixel_photo(tmp_path):
    """Peak RSS of ``convae compress`` and ``decompress`` of one 4000x3000 RGB photo (default model)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    photo = Image.fromarray(small).resize((4000, 3000), Image.Resampling.BICUBIC)
    save(photo, tmp_path / "src" / "photo.png")
    rss = {"compress": max_rss_mib(["compress", str(tmp_path / "src"), str(tmp_path / "c.npy"), "--quiet"])}
    rss["decompress"] = max_rss_mib(["decompress", str(tmp_path / "c.npy"), str(tmp_path / "out"), "--quiet"])
    rss["self"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("\n12 MP photo, peak RSS MiB:", json.dumps({k: round(v) for k, v in rss.items()}))
    assert Image.open(tmp_path / "out" / "photo.png").size == (4000, 3000)
    assert rss["compress"] < 4096 and rss["decompress"] < 4096  # docs/BATCH.md's SLURM example asks for 3G
