"""The shared image helpers: in-memory PNG encoding, the two ways of writing it, and batching."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from convae.errors import DataError
from convae.images import batched, find_images, png_bytes, write_png


def test_png_bytes_of_pixels_and_of_an_image_agree():
    rng = np.random.default_rng(0)
    for pixels in (rng.integers(0, 256, (5, 7, 1), dtype=np.uint8), rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)):
        data = png_bytes(pixels)
        img = Image.open(io.BytesIO(data))
        assert img.format == "PNG" and img.mode == ("L" if pixels.shape[2] == 1 else "RGB")
        np.testing.assert_array_equal(np.asarray(img).reshape(pixels.shape), pixels)
        assert png_bytes(img) == data


def test_write_png_new_files_only_unless_atomic(tmp_path):
    pixels = np.full((4, 4, 1), 7, dtype=np.uint8)
    path = tmp_path / "a.png"
    assert write_png(path, pixels) == path.stat().st_size
    assert path.read_bytes() == png_bytes(pixels)
    with pytest.raises(FileExistsError):
        write_png(path, pixels)
    other = np.zeros((3, 3, 3), dtype=np.uint8)
    assert write_png(path, other, atomic=True) == len(png_bytes(other))
    assert path.read_bytes() == png_bytes(other) and [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_batched_by_count_and_by_weight():
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched([], 3)) == []
    assert list(batched(iter([5, 1, 1, 9, 2]), 10, weight=lambda v: v, max_weight=6)) == [[5, 1], [1, 9], [2]]
    assert list(batched(range(4), 1)) == [[0], [1], [2], [3]]


def test_folder_scans_take_every_suffix_pillow_reads(tmp_path):
    """.pgm/.ppm/.gif/.tga files in a folder are found like a .png (as they are when named as files)."""
    sub, empty = tmp_path / "sub", tmp_path / "empty"
    sub.mkdir()
    empty.mkdir()
    g = np.arange(48, dtype=np.uint8).reshape(6, 8)
    for name in ("a.pgm", "c.gif", "d.tga", "e.png"):
        Image.fromarray(g).save(sub / name)
    Image.fromarray(np.dstack([g] * 3)).save(sub / "b.PPM", format="PPM")
    (sub / "notes.txt").write_text("not an image")
    root, files = find_images([tmp_path])
    assert root == tmp_path and [f.name for f in files] == ["a.pgm", "b.PPM", "c.gif", "d.tga", "e.png"]
    with pytest.raises(DataError, match="holds no images"):
        find_images([empty])
