"""Inputs people have: multi-frame files and ICC profiles are warned about by name, one line each; the
modes convae converts (16-bit, CMYK, palette with transparency, EXIF-rotated) come back as docs/FORMAT.md says.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

from tests.codec_util import convae_script, gray, invoke, ok, save


def _inputs(folder: Path) -> None:
    g = gray(28, 28, 4)
    frames = [Image.fromarray(np.roll(g, i, 0)) for i in range(3)]
    for name in ("anim.gif", "anim.png", "multi.tif"):
        save(frames[0], folder / name, save_all=True, append_images=frames[1:])
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    save(Image.fromarray(g).convert("RGB"), folder / "icc.png", icc_profile=icc)
    save(Image.fromarray(g), folder / "plain.png")


def test_dropped_frames_and_profiles_are_warned_about_by_name(tmp_path):
    """Through the installed script (the image workers are processes): stderr names each file and what is lost."""
    _inputs(tmp_path / "in")
    r = subprocess.run([convae_script(), "compress", str(tmp_path / "in"), str(tmp_path / "c.npy"), "-m", "photoh-q2",
                        "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = sorted(r.stderr.splitlines())
    assert len(lines) == 4, lines
    for line, name in zip(lines, ["anim.gif", "anim.png", "icc.png", "multi.tif"], strict=True):
        assert line.startswith("convae: warning: ") and f"{name}: " in line, line
        assert ("has 3 frames; only the first is coded" in line) != ("ICC colour profile is dropped" in line)


def test_converted_modes_come_back_as_documented(runner, tmp_path):
    g = gray(20, 24, 5)
    rgb = np.dstack([g, g[::-1], 255 - g])
    pal = Image.fromarray(rgb).quantize(8)
    pal.info["transparency"] = 0
    src = tmp_path / "in"
    save(Image.fromarray(g.astype("<u2") * 257), src / "deep.png")
    save(Image.fromarray(rgb).convert("CMYK"), src / "cmyk.jpg")
    save(pal, src / "pal.png", transparency=0)
    rotated = Image.fromarray(rgb)
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    save(rotated, src / "rot.jpg", exif=exif.tobytes())
    ok(invoke(runner, "compress", src, tmp_path / "c.npy", "--quiet"))
    ok(invoke(runner, "decompress", tmp_path / "c.npy", tmp_path / "out", "--quiet"))
    got = {p.name: (Image.open(p).mode, Image.open(p).size) for p in (tmp_path / "out").iterdir()}
    assert got == {"deep.png": ("I;16", (24, 20)), "cmyk.png": ("RGB", (24, 20)), "pal.png": ("RGBA", (24, 20)),
                   "rot.png": ("RGB", (20, 24))}
    alpha = np.asarray(Image.open(tmp_path / "out" / "pal.png"))[:, :, 3]
    assert np.array_equal(alpha, np.asarray(Image.open(src / "pal.png").convert("RGBA"))[:, :, 3])  # exact
