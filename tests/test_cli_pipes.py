"""`-` for stdin/stdout, `decompress --format npy`, outputs in new folders, user weights found from the manifest."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.codec_util import convae_script, gray, invoke, ok, one_line_error, read_manifest, save


def run(*args: object, stdin: bytes = b"") -> subprocess.CompletedProcess:
    """The installed `convae` as a shell pipeline runs it: bytes in, bytes out."""
    return subprocess.run([convae_script(), *map(str, args)], input=stdin, capture_output=True, timeout=300)


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A small RGB picture (colour, for the default photo model)."""
    g = gray(40, 56)
    path = tmp_path / "photo.png"
    save(Image.fromarray(np.stack([g, g[::-1], 255 - g], axis=2)), path)
    return path


def test_stdin_image_and_stdout_png_match_the_file_route(tmp_path, photo):
    piped = run("compress", "-", tmp_path / "piped.npy", "--quiet", stdin=photo.read_bytes())
    assert piped.returncode == 0, piped.stderr
    ok_file = run("compress", photo, tmp_path / "file.npy", "--quiet")
    assert ok_file.returncode == 0, ok_file.stderr
    assert read_manifest(tmp_path / "piped.npy")["images"]["paths"] == ["stdin"]
    png = run("decompress", tmp_path / "piped.npy", "-")
    assert png.returncode == 0, png.stderr
    assert png.stdout.startswith(b"\x89PNG") and b"decompress" in png.stderr  # the summary went to stderr
    assert run("decompress", tmp_path / "file.npy", tmp_path / "recon", "--quiet").returncode == 0
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.stdout))),
                          np.asarray(Image.open(tmp_path / "recon" / "photo.png")))


def test_code_file_through_a_pipe_both_ways(tmp_path, photo):
    codes = run("compress", photo, "-")
    assert codes.returncode == 0, codes.stderr
    assert np.load(io.BytesIO(codes.stdout), allow_pickle=False).dtype.names == ("manifest", "codes")
    arrays = run("decompress", "-", "-", "--format", "npy", "--quiet", stdin=codes.stdout)
    assert arrays.returncode == 0, arrays.stderr
    pixels = np.load(io.BytesIO(arrays.stdout), allow_pickle=False)
    assert pixels.dtype == np.uint8 and pixels.shape == (40, 56, 3)
    info = run("info", "-", "--json", stdin=codes.stdout)
    assert info.returncode == 0 and json.loads(info.stdout)["images"] == 1, info.stderr


@pytest.mark.parametrize(("args", "stdin", "says"), [
    (("compress", "-", "{tmp}/a.npy"), b"", "stdin was empty"),
    (("compress", "-", "{photo}", "{tmp}/a.npy"), b"x", "only input"),
    (("compress", "{photo}", "-", "--json"), b"", "drop --json"),
    (("decompress", "{two}", "-"), b"", "holds 2 images"),
    (("decompress", "-", "{tmp}/r"), b"not a code file", "not a convae code file"),
    (("info", "-"), b"", "stdin was empty"),
])
def test_pipe_misuse_is_one_line(tmp_path, photo, args, stdin, says):
    two = tmp_path / "two.npy"
    save(Image.open(photo).transpose(Image.Transpose.FLIP_LEFT_RIGHT), tmp_path / "b.png")
    assert run("compress", photo, tmp_path / "b.png", two, "--quiet").returncode == 0
    res = run(*(a.format(tmp=tmp_path, photo=photo, two=two) for a in args), stdin=stdin)
    err = res.stderr.decode().strip()
    assert res.returncode != 0 and len(err.splitlines()) == 1 and says in err, err
    assert res.stdout == b"" and not (tmp_path / "a.npy").exists() and not (tmp_path / "r").exists()


def test_decompress_format_npy_gives_arrays_of_each_image(runner, tmp_path, photo):
    g = gray(30, 20)
    save(Image.fromarray(g), tmp_path / "in" / "g.png")
    rgba = np.dstack([np.asarray(Image.open(photo)), np.full((40, 56), 200, np.uint8)])
    save(Image.fromarray(rgba), tmp_path / "in" / "sub" / "a.png")
    ok(invoke(runner, "compress", tmp_path / "in", tmp_path / "c.npy", "--quiet"))
    ok(invoke(runner, "decompress", tmp_path / "c.npy", tmp_path / "arr", "--format", "npy", "--quiet"))
    ok(invoke(runner, "decompress", tmp_path / "c.npy", tmp_path / "png", "--quiet"))
    assert sorted(p.relative_to(tmp_path / "arr").as_posix() for p in (tmp_path / "arr").rglob("*.npy")) == \
        ["g.npy", "sub/a.npy"]
    for name in ("g", "sub/a"):
        arr = np.load(tmp_path / "arr" / f"{name}.npy", allow_pickle=False)
        png = np.asarray(Image.open(tmp_path / "png" / f"{name}.png"))
        assert arr.dtype == np.uint8 and np.array_equal(arr, png.reshape(arr.shape))
    assert np.load(tmp_path / "arr" / "g.npy").shape == (30, 20, 1)
    assert np.array_equal(np.load(tmp_path / "arr" / "sub/a.npy")[..., 3], rgba[..., 3])  # alpha kept exactly
    one_line_error(invoke(runner, "decompress", tmp_path / "c.npy", tmp_path / "x", "--format", "jpg"), 2)


def test_compress_makes_the_output_folder_and_takes_it_back_on_failure(runner, tmp_path, photo):
    ok(invoke(runner, "compress", photo, tmp_path / "new" / "deep" / "c.npy", "--quiet"))
    assert (tmp_path / "new" / "deep" / "c.npy").is_file()
    one_line_error(invoke(runner, "compress", tmp_path / "missing.png", tmp_path / "other" / "d" / "c.npy"), 1)
    assert not (tmp_path / "other").exists()


def test_decompress_finds_user_weights_the_manifest_names(runner, tmp_path, photo, monkeypatch):
    from convae.zoo import shipped_weights

    mine = tmp_path / "w" / "mine.safetensors"
    mine.parent.mkdir()
    shutil.copy(shipped_weights("photoh-q1"), mine)
    monkeypatch.chdir(tmp_path)  # a relative --model path: the manifest records where it is
    ok(invoke(runner, "compress", photo, "c.npy", "-m", "w/mine.safetensors", "--quiet"))
    assert read_manifest(tmp_path / "c.npy")["model"]["source"] == str(mine)
    monkeypatch.chdir(tmp_path / "w")
    ok(invoke(runner, "decompress", tmp_path / "c.npy", tmp_path / "r1", "--quiet"))  # no --model
    shutil.copy(shipped_weights("photoh-q0"), mine)  # other weights at that path: refused, never decoded
    one_line_error(invoke(runner, "decompress", tmp_path / "c.npy", tmp_path / "r2"), 1, "pass --model")
    mine.unlink()
    one_line_error(invoke(runner, "decompress", tmp_path / "c.npy", tmp_path / "r2"), 1, "no longer there")
    assert not (tmp_path / "r2").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_a_full_stdout_is_one_line_and_no_summary(tmp_path, photo, command):
    """Data that cannot reach stdout fails in one line naming it, and no summary claims success first."""
    codes = tmp_path / "c.npy"
    assert run("compress", photo, codes, "--quiet").returncode == 0
    args = ("compress", photo, "-") if command == "compress" else ("decompress", codes, "-")
    with open("/dev/full", "wb") as full:
        res = subprocess.run([convae_script(), *map(str, args)], stdout=full, stderr=subprocess.PIPE, timeout=300)
    err = res.stderr.decode().strip()
    assert res.returncode == 1 and err == err.splitlines()[0] and "cannot write to stdout" in err, err
