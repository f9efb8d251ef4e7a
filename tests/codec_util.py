"""Helpers shared by the compress/decompress tests: CLI calls, error checks, image files of every mode."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from convae.cli.app import app
from PIL import Image

from convae.codec.format import code_array
from convae.codec.manifest import manifest_checksum
from tests.conftest import make_images


def convae_script() -> str:
    """The installed `convae` console script (next to this Python, else on PATH)."""
    beside = Path(sys.executable).with_name("convae")
    found = str(beside) if beside.is_file() else shutil.which("convae")
    assert found, "the convae console script is not installed"
    return found


def invoke(runner, *args: object):
    """Run ``convae ARGS...`` in-process."""
    return runner.invoke(app, [str(a) for a in args])


def ok(result) -> None:
    """Assert a CLI run succeeded, showing its output otherwise."""
    assert result.exit_code == 0, (result.stdout, result.stderr)


def one_line_error(result, code: int | None = None, names: object = None) -> str:
    """Assert a clean failure: exit != 0 (== code), one `convae: error:` line on stderr naming ``names``."""
    assert result.exit_code != 0, result.stdout
    if code is not None:
        assert result.exit_code == code, (result.exit_code, result.stderr)
    err = result.stderr.strip()
    assert "Traceback" not in result.output and "Traceback" not in err, err
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert len(err.splitlines()) == 1, err
    assert err.startswith("convae: error:"), err
    if names is not None:
        assert str(names) in err, err
    return err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) with its bytes: detects partial output and damage."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def gray(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth uint8 (h, w) test picture (learnable, like the training blobs)."""
    size = max(h, w)
    return make_images(1, size=size, seed=seed)[0][:h, :w]


def save(img: Image.Image, path: Path, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def mode_images(folder: Path, h: int = 30, w: int = 45) -> dict[str, Path]:
    """One file per mode the codec supports, all ``w`` x ``h``; keys are the Pillow modes."""
    g = gray(h, w, 3)
    rgb = np.dstack([g, g[::-1], np.roll(g, 5, axis=1)])
    alpha = np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))
    return {
        "L": save(Image.fromarray(g), folder / "l.png"),
        "LA": save(Image.fromarray(np.dstack([g, alpha])), folder / "la.png"),
        "RGB": save(Image.fromarray(rgb), folder / "rgb.png"),
        "RGBA": save(Image.fromarray(np.dstack([rgb, alpha])), folder / "rgba.png"),
        "P": save(Image.fromarray(rgb).quantize(16), folder / "p.png"),
        "I;16": save(Image.fromarray(g.astype("<u2") * 257), folder / "i16.png"),
        "CMYK": save(Image.fromarray(rgb).convert("CMYK"), folder / "cmyk.tif"),
        "1": save(Image.fromarray(g).convert("1"), folder / "one.png"),
    }


def read_manifest(npy: Path) -> dict:
    """The manifest inside a code file, as a dict."""
    return json.loads(bytes(np.load(npy, allow_pickle=False)["manifest"]).decode())


def write_manifest(npy: Path, text: str | bytes) -> None:
    """Replace the manifest inside ``npy`` by ``text`` as is (no checksum), keeping its codes."""
    codes = np.load(npy, allow_pickle=False)["codes"]
    data = text.encode() if isinstance(text, str) else text
    np.save(npy, code_array(data, codes))


def resign(npy: Path, doc: dict | None = None) -> dict:
    """Rewrite ``npy``'s manifest (``doc`` or the current one) with its codes' sha256 and a fresh checksum."""
    doc = doc if doc is not None else read_manifest(npy)
    if isinstance(doc.get("codes"), dict):
        codes = np.load(npy, allow_pickle=False)["codes"]
        doc["codes"]["sha256"] = hashlib.sha256(np.ascontiguousarray(codes).tobytes()).hexdigest()
    doc["checksum"] = manifest_checksum(doc)
    write_manifest(npy, json.dumps(doc))
    return doc
