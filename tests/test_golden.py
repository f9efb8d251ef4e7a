"""Golden vectors: one small code file per shipped family (tests/data/golden/), decoded bit-exactly.

Each ``NAME.npy`` was made by ``convae compress`` from the generated images of
``tests.test_codec_compat._inputs`` (``gray``: three 28x28 L images; ``rgb``: a 48x40 RGB and an RGBA
image); expected.json holds the sha256 of those inputs and of every code file, decoded.npz the decoded pixels.
The tests re-encode the inputs to the same code bytes, on any CPU (the entropy coder's side path is exact),
and decode each file to the recorded pixels: byte-identical PNGs on 1 and on 2 threads of one machine, and
within one level on rare pixels across CPUs (with AVX2 or scalar kernels only, or another vendor's: float32
convolutions round their sums in a CPU-dependent order). After a deliberate change (new weights,
a new format version), regenerate with ``python scripts/make_golden.py`` and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.codec_util import invoke, ok
from tests.test_codec_compat import _inputs, _pngs

DATA = Path(__file__).parent / "data" / "golden"
JOBS = {  # code file: (input folder, variant), one per shipped family
    "seed": ("gray", "seed"), "fm": ("gray", "fm-q2"), "fmh": ("gray", "fmh-q2"), "fmc": ("gray", "fmc-q3"),
    "photoh": ("rgb", "photoh-q2"), "photov": ("rgb", "photov"), "photov-q30": ("rgb", "photov@30"),
}  # NAME@Q: a variable-rate model at quality Q (30: level 2.4, between two trained levels)


def _model(variant: str) -> tuple[str, float | None]:
    name, _, quality = variant.partition("@")
    return name, float(quality) if quality else None


MAX_OFF, MAX_OFF_SHARE = 1, 0.001  # across CPUs: no pixel value more than one level off, and at most 0.1 % off


def _pixels(folder: Path, prefix: str = "") -> dict[str, np.ndarray]:
    """Every decoded PNG under ``folder`` as a uint8 array, keyed ``prefix + relative path``."""
    from PIL import Image

    return {prefix + p.relative_to(folder).as_posix(): np.asarray(Image.open(p))
            for p in sorted(folder.rglob("*.png"))}


def _assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    """``got`` holds the recorded images, each with at most ``MAX_OFF_SHARE`` of its values ``MAX_OFF`` off."""
    assert sorted(got) == sorted(want)
    for key, image in got.items():
        assert image.shape == want[key].shape, key
        off = np.abs(image.astype(np.int16) - want[key])
        assert off.max() <= MAX_OFF and np.count_nonzero(off) <= MAX_OFF_SHARE * off.size, (
            f"{key}: {np.count_nonzero(off)} of {off.size} values off, by up to {off.max()}")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_golden(out: Path, work: Path) -> dict:
    """Write every job's code file and decoded.npz into ``out``; return what expected.json records."""
    from convae.codec.api import compress, decompress

    src = _inputs(work / "in")
    expected: dict = {"inputs": {f: _pngs(src / f) for f in ("gray", "rgb")}, "codes": {}}
    pixels: dict[str, np.ndarray] = {}
    for name, (folder, variant) in JOBS.items():
        npy = out / f"{name}.npy"
        model, quality = _model(variant)
        compress([src / folder], npy, model=model, quality=quality, force=True)
        decompress(npy, work / name)
        expected["codes"][name] = _sha(npy)
        pixels |= _pixels(work / name, f"{name}/")
    np.savez_compressed(out / "decoded.npz", **pixels)
    return expected


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((DATA / "expected.json").read_text())


@pytest.fixture(scope="module")
def recorded() -> dict[str, np.ndarray]:
    with np.load(DATA / "decoded.npz", allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def test_golden_files_are_small_and_as_recorded(expected):
    assert sorted(p.name for p in DATA.glob("*.npy")) == sorted(f"{n}.npy" for n in JOBS)
    assert sum(p.stat().st_size for p in DATA.iterdir()) < 100_000
    assert {n: _sha(DATA / f"{n}.npy") for n in JOBS} == expected["codes"]


@pytest.mark.parametrize("name", JOBS)
def test_golden_codes_decode_to_the_recorded_pixels(runner, tmp_path, recorded, name):
    ok(invoke(runner, "decompress", DATA / f"{name}.npy", tmp_path / "out", "--quiet"))
    want = {k: v for k, v in recorded.items() if k.startswith(f"{name}/")}
    _assert_close(_pixels(tmp_path / "out", f"{name}/"), want)


def test_golden_decode_is_byte_identical_on_one_and_two_threads(tmp_path):
    import torch

    from convae.codec.api import decompress

    before = torch.get_num_threads()
    try:
        for name in ("fmc", "photoh", "photov-q30"):  # the context model, the default, an interpolated level
            for threads in (1, 2):
                torch.set_num_threads(threads)
                decompress(DATA / f"{name}.npy", tmp_path / f"{name}-{threads}")
            assert _pngs(tmp_path / f"{name}-1") == _pngs(tmp_path / f"{name}-2"), name
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("isa", [("AVX2", "avx2"), ("SSE41", "default")], ids=["avx2", "scalar"])
def test_golden_decode_is_close_on_other_cpu_paths(tmp_path, recorded, isa):
    """A process limited to AVX2 or to scalar kernels (as on an older CPU) decodes every file to the recorded
    pixels, give or take one level on rare pixels (``portable`` keeps exp, softplus and sigmoid exact)."""
    code = ("import sys; from pathlib import Path; from convae.codec.api import decompress; "
            "[decompress(Path(a), Path(b)) for a, b in zip(sys.argv[1::2], sys.argv[2::2])]")
    args = [str(p) for n in JOBS for p in (DATA / f"{n}.npy", tmp_path / n)]
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa[0], "ATEN_CPU_CAPABILITY": isa[1]}
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    _assert_close({k: v for n in JOBS for k, v in _pixels(tmp_path / n, f"{n}/").items()}, recorded)


def test_golden_inputs_re_encode_to_the_same_code_bytes(runner, tmp_path, expected):
    src = _inputs(tmp_path / "in")
    for folder, want in expected["inputs"].items():
        assert _pngs(src / folder) == want, f"the generated {folder} inputs changed: fix _inputs, not the data"
    for name, (folder, variant) in JOBS.items():
        out = tmp_path / f"{name}.npy"
        model, quality = _model(variant)
        ok(invoke(runner, "compress", src / folder, out, "-m", model, *(["-q", quality] if quality else []), "--quiet"))
        assert out.read_bytes() == (DATA / f"{name}.npy").read_bytes(), name


def test_codes_of_retired_weights_are_refused_naming_the_release(runner, tmp_path):
    """photo-q2 shipped in 0.2.0 and was retired for photov's room: its codes are refused, never mis-decoded."""
    from tests.codec_util import one_line_error

    err = one_line_error(invoke(runner, "decompress", DATA / "retired" / "photo-q2.npy", tmp_path / "out"), 1)
    assert "photo-q2 as shipped in convae 0.2.0" in err and not (tmp_path / "out").exists()
