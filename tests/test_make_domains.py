"""``scripts/make_domains.py``: the MRI domain's slices from a NIfTI volume inside a wheel (issue 23)."""

from __future__ import annotations

import gzip
import importlib.util
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("make_domains", ROOT / "scripts" / "make_domains.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nifti(volume: np.ndarray) -> bytes:
    """A little-endian NIfTI-1 file of unscaled uint8 samples (348-byte header, 4-byte extension flag)."""
    header = np.zeros(348, dtype=np.uint8)
    header[:4] = np.frombuffer(np.int32(348).tobytes(), np.uint8)
    dims = np.array([3, *volume.shape, 1, 1, 1, 1], dtype="<i2")
    header[40:56] = np.frombuffer(dims.tobytes(), np.uint8)
    header[70:74] = np.frombuffer(np.array([2, 8], "<i2").tobytes(), np.uint8)
    header[108:112] = np.frombuffer(np.float32(352).tobytes(), np.uint8)
    return header.tobytes() + bytes(4) + volume.tobytes(order="F")


def test_mri_slices_train_on_two_views_and_hold_out_the_third(tmp_path):
    script = _script()
    rng = np.random.default_rng(0)
    volume = np.zeros((6, 7, 5), np.uint8)
    volume[1:5, 1:6, 1:4] = rng.integers(50, 255, (4, 5, 3))  # the "brain"; the border slices are empty
    wheel = tmp_path / "nilearn.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(script.MRI_FILE, gzip.compress(_nifti(volume)))
    script.mri(wheel, tmp_path / "out")
    train = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "out" / "train").glob("*.png"))]
    test = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "out" / "test").glob("*.png"))]
    assert len(train) == 3 + 4 and len(test) == 5  # axial z 1-3 and sagittal x 1-4; coronal y 1-5 held out
    assert np.array_equal(train[0], np.rot90(volume[:, :, 1])) and np.array_equal(test[0], np.rot90(volume[:, 1, :]))
