"""Code files written by convae 0.2 (tests/data/v0.2) still decode, describe and re-encode byte for byte.

The pairs were made from the generated images below: ``gray`` (3 28x28 L, ``-m fmh-q2``), ``gray-raw``
(the same, ``--raw``), ``gray-shard2of2`` (``--shard 2/2``) and ``rgb`` (an RGB and an RGBA 40x48 image,
the default model photoh-q2). expected.json holds the sha256 of the inputs and of every decoded PNG,
and what ``convae info --json`` said.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.codec_util import gray, invoke, ok, read_manifest, save
from tests.conftest import make_images, write_pngs

DATA = Path(__file__).parent / "data" / "v0.2"
EXPECTED = json.loads((DATA / "expected.json").read_text())
PAIRS = {  # name: (input folder, compress options)
    "gray": ("gray", ("-m", "fmh-q2")),
    "gray-raw": ("gray", ("-m", "fmh-q2", "--raw")),
    "gray-shard2of2": ("gray", ("-m", "fmh-q2", "--shard", "2/2")),
    "rgb": ("rgb", ("-m", "photoh-q2")),  # 0.2's default model (today's is photov)
}


def _pngs(folder: Path) -> dict[str, str]:
    """sha256 of every PNG under ``folder``, by relative path."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.png"))}


def _inputs(root: Path) -> Path:
    """The images the 0.2 files were made from."""
    write_pngs(root / "gray", make_images(3, seed=7))
    g = gray(48, 40, 2)
    rgb = np.dstack([g, g[::-1], np.roll(g, 7, axis=1)])
    alpha = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (48, 1))
    save(Image.fromarray(rgb), root / "rgb" / "a.png")
    save(Image.fromarray(np.dstack([rgb[::-1], alpha])), root / "rgb" / "sub" / "b.png")
    return root


@pytest.mark.parametrize("name", PAIRS)
def test_v02_codes_decode_to_the_same_pngs(runner, tmp_path, name):
    ok(invoke(runner, "decompress", DATA / f"{name}.npy", tmp_path / "out", "--quiet"))
    assert _pngs(tmp_path / "out") == EXPECTED["outputs"][name]


@pytest.mark.parametrize("name", PAIRS)
def test_v02_codes_describe_the_same(runner, name):
    result = invoke(runner, "info", DATA / f"{name}.npy", "--json")
    ok(result)
    info, want = json.loads(result.stdout), EXPECTED["info"][name]
    assert {k: info[k] for k in want} == want  # what 0.2 said; newer keys (per_image) come on top
    assert sum(i["bytes"] for i in info["per_image"]) <= info["codes_bytes"]


def test_v02_inputs_compress_to_the_same_bytes(runner, tmp_path):
    """Today's one-file codes hold the arrays 0.2 wrote, and its manifest but for version and codes' sha256."""
    src = _inputs(tmp_path / "in")
    for folder, want in EXPECTED["inputs"].items():
        assert _pngs(src / folder) == want, f"the generated {folder} inputs changed: fix _inputs, not the data"
    for name, (folder, options) in PAIRS.items():
        out = tmp_path / f"{name}.npy"
        ok(invoke(runner, "compress", src / folder, out, *options, "--quiet"))
        new, old = np.load(out, allow_pickle=False), np.load(DATA / f"{name}.npy", allow_pickle=False)
        assert new["codes"].dtype == old.dtype and np.array_equal(new["codes"], old), name
        doc, old_doc = read_manifest(out), json.loads((DATA / f"{name}.json").read_text())
        assert (doc["version"], old_doc["version"]) == (3, 2)
        assert doc["codes"]["sha256"] == hashlib.sha256(old.tobytes()).hexdigest(), name
        for d in (doc, old_doc):
            del d["version"], d["codes"]["sha256"], d["checksum"]
        assert doc == old_doc, name
