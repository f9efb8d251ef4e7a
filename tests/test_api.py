"""The public Python API: ``convae.compress/decompress`` (files, ``str`` or ``Path``) and ``encode/decode`` (arrays)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convae
from convae.errors import UsageError
from tests.codec_util import gray, save


def colour(h: int, w: int, seed: int = 0) -> np.ndarray:
    g = gray(h, w, seed)
    return np.stack([g, g[::-1], 255 - g], axis=2)


def test_import_is_light_and_exposes_the_api():
    code = "import sys, convae; print('torch' in sys.modules, sorted(convae.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("False")  # PyTorch loads only when a codec function is first used
    assert all(callable(getattr(convae, name)) for name in ("compress", "decompress", "encode", "decode"))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        convae.nope  # noqa: B018


def test_compress_takes_str_and_path_and_matches_the_cli(tmp_path, runner):
    from tests.codec_util import invoke, ok

    save(Image.fromarray(colour(40, 56)), tmp_path / "in" / "a.png")
    summary = convae.compress(str(tmp_path / "in" / "a.png"), str(tmp_path / "api.npy"), quality=1)
    assert summary.images == 1 and summary.as_dict()["quality"] == 1
    ok(invoke(runner, "compress", tmp_path / "in" / "a.png", tmp_path / "cli.npy", "-q", "1", "--quiet"))
    assert (tmp_path / "api.npy").read_bytes() == (tmp_path / "cli.npy").read_bytes()
    back = convae.decompress(tmp_path / "api.npy", str(tmp_path / "recon"))
    assert back.images == 1 and (tmp_path / "recon" / "a.png").is_file()


def test_encode_decode_arrays_match_the_file_route(tmp_path):
    rgb, g = colour(40, 56), gray(30, 20)
    data = convae.encode([rgb, g], quality=2)
    assert np.load(io.BytesIO(data), allow_pickle=False).dtype.names == ("manifest", "codes")
    images = convae.decode(data)
    assert [a.shape for a in images] == [(40, 56, 3), (30, 20, 1)] and all(a.dtype == np.uint8 for a in images)
    assert convae.encode([rgb, g], quality=2) == data  # deterministic
    save(Image.fromarray(rgb), tmp_path / "in" / "0.png")
    save(Image.fromarray(g), tmp_path / "in" / "1.png")
    convae.compress(tmp_path / "in", tmp_path / "f.npy", quality=2)
    convae.decompress(tmp_path / "f.npy", tmp_path / "r")
    assert np.array_equal(images[0], np.asarray(Image.open(tmp_path / "r" / "0.png")))
    assert np.array_equal(images[1][..., 0], np.asarray(Image.open(tmp_path / "r" / "1.png")))
    path = tmp_path / "data.npy"
    path.write_bytes(data)
    assert all(np.array_equal(a, b) for a, b in zip(convae.decode(path), images, strict=True))


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.float32), np.zeros((8, 8, 5), np.uint8),
                                 np.zeros((0, 8), np.uint8)])
def test_encode_refuses_what_it_cannot_code(bad):
    with pytest.raises(UsageError, match="give uint8 arrays"):
        convae.encode(bad)


def test_decode_refuses_other_bytes(tmp_path: Path):
    from convae.errors import FormatError

    with pytest.raises(FormatError, match="not a convae code file"):
        convae.decode(b"\x89PNG not codes")
