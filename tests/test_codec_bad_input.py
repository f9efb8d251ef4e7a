"""Every bad input to the codec: a one-line error naming the file, exit != 0, no partial output, no damage."""

from __future__ import annotations

import builtins
import errno
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convae.weightfile import read_weights, save_weights
from convae.zoo import load_model
from tests.codec_util import invoke, ok, one_line_error, read_manifest, resign, snapshot, write_manifest

as_root = pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions; the patched tests cover it")


def clean_failure(result, tmp_path: Path, before: dict, code: int = 1, names: object = None) -> str:
    """One-line error, and every file under tmp_path exactly as before (nothing new, nothing changed)."""
    err = one_line_error(result, code, names)
    assert snapshot(tmp_path) == before
    return err


@pytest.fixture
def codes(runner, tiny_model, tmp_path, image_folder) -> Path:
    npy = tmp_path / "c.npy"
    ok(invoke(runner, "compress", image_folder, npy, "--model", tiny_model, "--quiet"))
    return npy


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` (valid CRCs, a tiny IDAT): a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _encoded(fmt: str) -> bytes:
    """A 64x64 noise image (so the pixel data is most of the file) encoded as ``fmt``."""
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


BAD_FILES = {
    "zero.png": b"",
    "truncated.png": _encoded("PNG")[:2000],
    "truncated.jpg": _encoded("JPEG")[:1000],
    "text.png": b"hello, I am only text\n",
    "bomb.png": png_header(100000, 100000),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_image_file(runner, tiny_model, tmp_path, image_folder, name):
    bad = image_folder / name
    bad.write_bytes(BAD_FILES[name])
    before = snapshot(tmp_path)
    err = clean_failure(invoke(runner, "compress", image_folder, tmp_path / "out.npy", "--model", tiny_model),
                        tmp_path, before, 1, bad)
    if name == "bomb.png":
        assert "bomb" in err
    alone = invoke(runner, "compress", bad, tmp_path / "out.npy", "--model", tiny_model)
    clean_failure(alone, tmp_path, before, 1, bad)


@pytest.mark.parametrize("flags", [["--raw"], ["--bits", "4"]])
def test_transparency_without_entropy_coding_is_refused(runner, tiny_model, tmp_path, image_folder, flags):
    """Uncoded symbols (--raw, or --bits off the calibrated rate) cannot carry alpha: refused, nothing written."""
    alpha = np.zeros((28, 28, 2), dtype=np.uint8)
    alpha[..., 1] = 128
    Image.fromarray(alpha, "LA").save(image_folder / "see-through.png")
    before = snapshot(tmp_path)
    err = clean_failure(invoke(runner, "compress", image_folder, tmp_path / "out.npy", "--model", tiny_model, *flags),
                        tmp_path, before, 1, image_folder / "see-through.png")
    assert "transparency" in err and flags[0] in err
    out = tmp_path / "kept" / "out.npy"  # the entropy-coded default keeps it, losslessly
    out.parent.mkdir()
    ok(invoke(runner, "compress", image_folder, out, "--model", tiny_model, "--quiet"))
    ok(invoke(runner, "decompress", out, tmp_path / "rec", "--model", tiny_model, "--quiet"))
    with Image.open(tmp_path / "rec" / "see-through.png") as img:
        assert img.mode == "LA" and (np.asarray(img)[..., 1] == 128).all()


def test_nonexistent_path_and_empty_folder(runner, tiny_model, tmp_path, image_folder):
    empty = tmp_path / "empty"
    empty.mkdir()
    before = snapshot(tmp_path)
    missing = tmp_path / "nope"
    clean_failure(invoke(runner, "compress", missing, tmp_path / "o.npy", "--model", tiny_model), tmp_path, before, 1,
                  missing)
    clean_failure(invoke(runner, "compress", image_folder, missing, tmp_path / "o.npy", "--model", tiny_model),
                  tmp_path, before, 1, missing)
    clean_failure(invoke(runner, "compress", empty, tmp_path / "o.npy", "--model", tiny_model), tmp_path, before, 1,
                  empty)
    clean_failure(invoke(runner, "decompress", tmp_path / "nope.npy", tmp_path / "r"), tmp_path, before, 1, "nope.npy")
    assert not (tmp_path / "r").exists()


def test_unreadable_image_permission(runner, tiny_model, tmp_path, image_folder, monkeypatch):
    """Simulated in-process (tests run as root, which reads anything): open() raises PermissionError."""
    locked = image_folder / "img0003.png"
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if Path(str(file)) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    before = snapshot(tmp_path)
    err = clean_failure(invoke(runner, "compress", image_folder, tmp_path / "o.npy", "--model", tiny_model),
                        tmp_path, before, 1, locked)
    assert "permission denied" in err


@as_root
def test_unreadable_image_chmod(runner, tiny_model, tmp_path, image_folder):
    locked = image_folder / "img0003.png"
    locked.chmod(0)
    r = invoke(runner, "compress", image_folder, tmp_path / "o.npy", "--model", tiny_model)
    locked.chmod(0o644)
    assert "permission denied" in one_line_error(r, 1, locked)
    assert not (tmp_path / "o.npy").exists()


def test_npy_holding_a_pickle(runner, tiny_model, tmp_path, codes):
    """Object arrays, alone or as the codes field beside a manifest, are refused without unpickling."""
    evil = np.zeros((), [("manifest", np.uint8, (4,)), ("codes", object, (2,))])
    for array in (np.array([{"evil": 1}, None], dtype=object), evil):
        np.save(codes, array, allow_pickle=True)
        before = snapshot(tmp_path)
        err = clean_failure(invoke(runner, "decompress", codes, tmp_path / "r", "--model", tiny_model), tmp_path,
                            before, 1, codes)
        assert "not a convae code file" in err
        assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("cut", [40, 1])
def test_truncated_npy(runner, tiny_model, tmp_path, codes, cut):
    codes.write_bytes(codes.read_bytes()[:-cut])
    before = snapshot(tmp_path)
    err = clean_failure(invoke(runner, "decompress", codes, tmp_path / "r", "--model", tiny_model), tmp_path, before,
                        1, codes)
    assert "truncated" in err
    assert not (tmp_path / "r").exists()


def test_codes_edited_under_a_valid_manifest(runner, tiny_model, tmp_path, codes):
    data = bytearray(codes.read_bytes())
    data[-3] ^= 0x10  # one bit of the last chunk's stream
    codes.write_bytes(bytes(data))
    before = snapshot(tmp_path)
    err = clean_failure(invoke(runner, "decompress", codes, tmp_path / "r", "--model", tiny_model), tmp_path, before,
                        1, codes)
    assert "sha256 of the codes differs" in err


def test_manifest_invalid_json_and_other_version(runner, tiny_model, tmp_path, codes):
    good = json.dumps(read_manifest(codes))
    write_manifest(codes, good[: len(good) // 2] + "\n")  # hand-edited into invalid JSON
    before = snapshot(tmp_path)
    err = clean_failure(invoke(runner, "decompress", codes, tmp_path / "r", "--model", tiny_model), tmp_path, before,
                        1, codes)
    assert "not valid JSON" in err
    one_line_error(invoke(runner, "info", codes), 1, codes)
    doc = json.loads(good)
    doc["version"] = 1  # the format before chunks: never released, refused like any other
    resign(codes, doc)
    before = snapshot(tmp_path)
    err = clean_failure(invoke(runner, "decompress", codes, tmp_path / "r", "--model", tiny_model), tmp_path, before,
                        1, codes)
    assert "version 1 is not supported (this convae reads versions 2 and 3)" in err
    doc["version"] = 2  # a format-2 manifest inside a format-3 file
    resign(codes, doc)
    assert "version-2 manifest" in one_line_error(invoke(runner, "decompress", codes, tmp_path / "r"), 1, codes)
    doc["version"] = 3
    doc["images"]["count"] = 13  # a hand edit without updating the checksum
    write_manifest(codes, json.dumps(doc))
    assert "checksum" in one_line_error(invoke(runner, "decompress", codes, tmp_path / "r", "--model", tiny_model))
    assert not (tmp_path / "r").exists()


def test_plain_arrays_and_images_are_not_code_files(runner, tmp_path, image_folder):
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros(5, np.uint8))
    assert "no manifest field" in one_line_error(invoke(runner, "decompress", plain, tmp_path / "r"), 1, plain)
    png = next(image_folder.glob("*.png"))
    assert "it is a PNG image" in one_line_error(invoke(runner, "info", png), 1, png)
    assert "is a folder" in one_line_error(invoke(runner, "info", image_folder), 1, image_folder)
    assert not (tmp_path / "r").exists()


def _other_weights(tiny_model: Path, tmp_path: Path) -> Path:
    """The tiny model with one bias nudged, saved: same variant and shapes, other weights."""
    other = load_model(str(tiny_model)).model
    other.decoder[0].bias.data += 0.01
    other_path = tmp_path / "other.safetensors"
    save_weights(other, other_path, {})
    return other_path


def test_codes_from_another_model(runner, tiny_model, tmp_path, codes):
    other_path = _other_weights(tiny_model, tmp_path)
    before = snapshot(tmp_path)
    err = clean_failure(invoke(runner, "decompress", codes, tmp_path / "r", "--model", other_path), tmp_path, before,
                        1, other_path)
    assert read_weights(tiny_model)[2][:12] in err and "--model" in err
    assert err.startswith(f"convae: error: {codes}: ")  # decode-stage errors name the code file too
    assert not (tmp_path / "r").exists()
    ok(invoke(runner, "decompress", codes, tmp_path / "r", "--quiet"))  # without --model: the weights the manifest
    assert (tmp_path / "r").is_dir()                                    # names, still there with their sha256


def test_codes_from_retired_shipped_weights_name_the_release(runner, tiny_model, tmp_path, codes, monkeypatch):
    """Weights once shipped under a name and since replaced: the refusal says which release decodes them."""
    import convae.codec.inference

    sha = read_weights(tiny_model)[2]
    monkeypatch.setattr(convae.codec.inference, "retired_weights",
                        lambda s: {"variant": "fmc-q3", "shipped_in": "0.1.0"} if s == sha else None)
    other_path = _other_weights(tiny_model, tmp_path)
    before = snapshot(tmp_path)
    err = clean_failure(invoke(runner, "decompress", codes, tmp_path / "r", "--model", other_path), tmp_path, before,
                        1, "convae 0.1.0")
    assert "fmc-q3 weights have since been replaced or retired" in err and "fmc-q3.safetensors" in err


def test_the_retired_weights_table_names_no_shipped_file():
    from importlib import resources

    from convae.registry import get_spec

    from convae.zoo import retired_weights

    folder = resources.files("convae") / "weights"
    table = json.loads((folder / "retired.json").read_text())["weights"]
    shipped = {read_weights(Path(str(p)))[2] for p in Path(str(folder)).glob("*.safetensors")}
    assert table and not set(table) & shipped  # a retired sha256 never shadows weights that still ship
    for sha, entry in table.items():
        assert len(sha) == 64 and get_spec(entry["variant"]).name == entry["variant"]
        assert retired_weights(sha) == entry


def test_outputs_exist_without_force(runner, tiny_model, tmp_path, image_folder, codes):
    before = snapshot(tmp_path)
    clean_failure(invoke(runner, "compress", image_folder, codes, "--model", tiny_model), tmp_path, before, 1,
                  "--force")
    recon = tmp_path / "r"
    recon.mkdir()
    (recon / "img0005.png").write_bytes(b"precious")
    before = snapshot(tmp_path)
    clean_failure(invoke(runner, "decompress", codes, recon, "--model", tiny_model), tmp_path, before, 1,
                  recon / "img0005.png")
    ok(invoke(runner, "decompress", codes, recon, "--model", tiny_model, "--force", "--quiet"))
    assert Image.open(recon / "img0005.png").size == (28, 28) and len(list(recon.iterdir())) == 12
    ok(invoke(runner, "compress", image_folder, codes, "--model", tiny_model, "--force", "--quiet"))


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_file_or_folder_in_the_way_stops_before_publishing(runner, tiny_model, tmp_path, image_folder, force):
    """A file where a subfolder goes, or a folder where a file goes: refused before any file is published."""
    (image_folder / "sub").mkdir()
    (image_folder / "img0000.png").rename(image_folder / "sub" / "x.png")
    npy = tmp_path / "c.npy"
    ok(invoke(runner, "compress", image_folder, npy, "--model", tiny_model, "--quiet"))
    recon = tmp_path / "r"
    recon.mkdir()
    (recon / "sub").write_bytes(b"precious")  # sorts after every img*.png: they would be published first
    before = snapshot(tmp_path)
    clean_failure(invoke(runner, "decompress", npy, recon, "--model", tiny_model, *force), tmp_path, before, 1,
                  recon / "sub")
    (recon / "sub").unlink()
    (recon / "sub").mkdir()
    (recon / "img0011.png").mkdir()
    before = snapshot(tmp_path)
    clean_failure(invoke(runner, "decompress", npy, recon, "--model", tiny_model, *force), tmp_path, before, 1,
                  recon / "img0011.png")


def test_output_folder_not_writable(runner, tiny_model, tmp_path, image_folder, codes, monkeypatch):
    """Simulated: creating a file in the output folder fails with EACCES (root would bypass chmod)."""
    import convae.atomic

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(convae.atomic.tempfile, "mkstemp", denied)
    monkeypatch.setattr(convae.atomic.tempfile, "mkdtemp", denied)
    before = snapshot(tmp_path)
    err = clean_failure(invoke(runner, "compress", image_folder, tmp_path / "o.npy", "--model", tiny_model), tmp_path,
                        before, 1, tmp_path / "o.npy")
    assert "permission denied" in err
    err = clean_failure(invoke(runner, "decompress", codes, tmp_path / "r", "--model", tiny_model), tmp_path, before,
                        1, tmp_path / "r")
    assert "permission denied" in err and not (tmp_path / "r").exists()


@as_root
def test_output_folder_not_writable_chmod(runner, tiny_model, tmp_path, image_folder):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        r = invoke(runner, "compress", image_folder, locked / "o.npy", "--model", tiny_model)
        one_line_error(r, 1, locked)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_disk_full_while_compressing(runner, tiny_model, tmp_path, image_folder, monkeypatch):
    import convae.codec.format

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(convae.codec.format.shutil, "copyfileobj", full)
    out = tmp_path / "o.npy"
    before = snapshot(tmp_path)
    err = clean_failure(invoke(runner, "compress", image_folder, out, "--model", tiny_model), tmp_path, before, 1, out)
    assert "no space left" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]  # no temp file either


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to tell which file a write is for")
def test_disk_full_while_decompressing(runner, tiny_model, tmp_path, codes, monkeypatch):
    recon = tmp_path / "r"
    recon.mkdir()
    (recon / "keep.txt").write_text("existing file")
    real_write = os.write
    calls = {"n": 0}

    def write_then_fill(fd, data):
        if not os.readlink(f"/proc/self/fd/{fd}").endswith(".png"):
            return real_write(fd, data)
        calls["n"] += 1
        if calls["n"] > 5:  # five PNGs fit, the sixth hits a full disk halfway
            real_write(fd, bytes(data[:10]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write_then_fill)
    before = snapshot(tmp_path)
    err = clean_failure(invoke(runner, "decompress", codes, recon, "--model", tiny_model), tmp_path, before, 1, recon)
    assert "no space left" in err and calls["n"] > 5
    assert [p.name for p in recon.iterdir()] == ["keep.txt"]  # no PNG, no staging folder


def test_failed_rename_over_an_old_output_keeps_it(runner, tiny_model, tmp_path, image_folder, codes, monkeypatch):
    """With --force, the new file replaces the old one only by the final rename: if that fails, the old one stays."""
    import convae.codec.format
    from convae.errors import OutputError

    def commit(tmp, path, replace=True):
        raise OutputError(f"cannot write {path}: simulated")

    monkeypatch.setattr(convae.codec.format, "commit", commit)
    old = codes.read_bytes()
    before = snapshot(tmp_path)
    clean_failure(invoke(runner, "compress", image_folder, codes, "--model", tiny_model, "--force"), tmp_path,
                  before, 1, "simulated")
    assert codes.read_bytes() == old
