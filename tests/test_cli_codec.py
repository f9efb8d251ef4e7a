"""`convae compress` / `decompress` / `info` through the CLI: round trips, modes, format, summary, exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convae.codec.imagepool import SMALL_IMAGE_BYTES
from tests.codec_util import gray, invoke, mode_images, ok, one_line_error, read_manifest, save, snapshot
from tests.conftest import make_images, write_pngs


def reference(model: Path, pixels: np.ndarray, bits: int = 8) -> np.ndarray:
    """What decompress must give for a grayscale image, computed directly with the model (the test oracle)."""
    import torch
    import torch.nn.functional as F

    from convae.zoo import load_model

    net = load_model(str(model)).model
    q = net.quantizer.with_bits(bits)
    h, w = pixels.shape
    x = torch.from_numpy(pixels.copy()).float().div(255)[None, None]
    x = F.pad(x, (0, -w % net.stride, 0, -h % net.stride), mode="replicate")
    with torch.inference_mode():
        y = net.decode(q.from_symbols(q.to_symbols(net.encode(x))))[0, 0, :h, :w]
    return y.mul(255).round().clamp(0, 255).to(torch.uint8).numpy()


def roundtrip(runner, tmp_path: Path, model: Path, *inputs: Path, extra: tuple = ()) -> tuple[Path, Path, dict]:
    """Compress ``inputs`` to tmp/codes.npy and decompress to tmp/recon; returns (npy, recon, manifest)."""
    npy, recon = tmp_path / "codes.npy", tmp_path / "recon"
    ok(invoke(runner, "compress", *inputs, npy, "--model", model, "--quiet", *extra))
    ok(invoke(runner, "decompress", npy, recon, "--model", model, "--quiet"))
    return npy, recon, read_manifest(npy)


def test_folder_roundtrip_keeps_nested_paths_sizes_and_order(runner, tiny_model, tmp_path):
    src = tmp_path / "in"
    write_pngs(src / "b", make_images(3, seed=4))
    write_pngs(src / "a" / "deep", make_images(2, seed=5), prefix="x")
    save(Image.fromarray(gray(45, 30)), src / "odd.png")  # 30x45: not a multiple of the stride
    save(Image.fromarray(gray(7, 13)), src / "tiny.png")
    model = tiny_model
    _npy, recon, doc = roundtrip(runner, tmp_path, model, src)
    assert doc["images"]["paths"] == [["a/deep/x", 0, 2, 4, ".png"], ["b/img", 0, 3, 4, ".png"], "odd.png", "tiny.png"]
    paths = ["a/deep/x0000.png", "a/deep/x0001.png", "b/img0000.png", "b/img0001.png", "b/img0002.png", "odd.png",
             "tiny.png"]
    assert [c[0] for c in doc["images"]["chunks"]] == [5, 1, 1]  # a chunk per latent shape
    for rel in paths:
        a, b = Image.open(src / rel), Image.open(recon / rel)
        assert (b.size, b.mode) == (a.size, a.mode), rel
        assert np.array_equal(np.asarray(b), reference(model, np.asarray(a))), rel
    assert sorted(p.relative_to(recon).as_posix() for p in recon.rglob("*.png")) == paths
    assert not [p for p in recon.rglob("*") if p.name.startswith(".")]  # no staging folder left


def test_every_mode_comes_back_in_its_mode_with_alpha_exact(runner, tiny_model, tmp_path):
    files = mode_images(tmp_path / "in")
    _npy, recon, doc = roundtrip(runner, tmp_path, tiny_model, tmp_path / "in", extra=("--gray",))
    groups = doc["images"]["groups"]
    modes = [g[3] for g in groups for _ in range(g[0])]
    assert dict(zip(doc["images"]["paths"], modes, strict=True)) == {p.name: m for m, p in files.items()}
    want = {"L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA", "P": "P", "I;16": "I;16", "CMYK": "RGB", "1": "1"}
    for mode, path in files.items():
        out = Image.open(recon / path.with_suffix(".png").name)
        assert out.mode == want[mode], (mode, out.mode)  # CMYK comes back RGB: PNG has no CMYK
        assert out.size == (45, 30)
        if mode in ("LA", "RGBA"):
            assert out.getchannel("A").tobytes() == Image.open(path).getchannel("A").tobytes()
    wide = np.asarray(Image.open(recon / "i16.png"))
    assert wide.dtype == np.uint16 and wide.max() > 255  # really 16-bit


def test_exif_orientation_is_applied(runner, tiny_model, tmp_path):
    img = Image.fromarray(np.dstack([gray(20, 36)] * 3))  # 36 wide, 20 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    save(img, tmp_path / "in" / "rot.jpg", exif=exif.tobytes(), quality=95)
    _, recon, doc = roundtrip(runner, tmp_path, tiny_model, tmp_path / "in")
    assert doc["images"]["groups"][0][1:3] == [20, 36]  # width, height after rotation
    assert Image.open(recon / "rot.png").size == (20, 36)


def test_common_formats_and_mixed_file_and_folder_inputs(runner, tiny_model, tmp_path):
    g = gray(28, 28, 6)
    folder = tmp_path / "set"
    for ext in ("jpg", "webp", "bmp", "tif"):
        save(Image.fromarray(g), folder / f"pic.{ext}")
    single = save(Image.fromarray(g), tmp_path / "alone" / "one.png")
    _npy, recon, doc = roundtrip(runner, tmp_path, tiny_model, single, folder)
    assert doc["images"]["paths"] == ["alone/one.png", "set/pic.bmp", "set/pic.jpg", "set/pic.tif", "set/pic.webp"]
    # one PNG per input: clashing names keep their old suffix
    got = sorted(p.relative_to(recon).as_posix() for p in recon.rglob("*.png"))
    assert got == ["alone/one.png", "set/pic.bmp.png", "set/pic.jpg.png", "set/pic.tif.png", "set/pic.webp.png"]


def test_npy_is_plain_and_manifest_complete(runner, tiny_model, tmp_path, image_folder):
    npy = tmp_path / "c.npy"
    ok(invoke(runner, "compress", image_folder, npy, "--model", tiny_model, "--quiet"))
    codes = np.load(npy, allow_pickle=False)["codes"]
    doc = read_manifest(npy)
    from convae.weightfile import read_weights

    assert doc["format"] == "convae-codes" and doc["version"] == 3
    assert doc["model"]["variant"] == "seed" and doc["model"]["sha256"] == read_weights(tiny_model)[2]
    assert doc["quantizer"]["mode"] == "uniform" and doc["quantizer"]["levels"] == 256
    assert len(doc["quantizer"]["lo"]) == len(doc["quantizer"]["hi"]) == 4
    assert doc["coding"] == "ans" and codes.dtype == np.uint8 and codes.ndim == 1
    assert doc["codes"] == {"sha256": hashlib.sha256(codes.tobytes()).hexdigest(), "dtype": "uint8",
                            "shape": [codes.size]}
    assert doc["images"]["count"] == 12 and doc["images"]["groups"] == [[12, 28, 28, "L", False]]
    assert doc["images"]["paths"] == [["img", 0, 12, 4, ".png"]]
    assert doc["images"]["chunks"] == [[12, codes.nbytes]] and "alpha_nbytes" not in doc["images"]
    assert codes.nbytes < 12 * 4 * 7 * 7  # entropy coding beats 8 bits per latent


@pytest.mark.parametrize(("bits", "dtype"), [(None, np.uint8), (4, np.uint8), (12, np.uint16)])
def test_raw_latents_and_bits(runner, tiny_model, tmp_path, image_folder, bits, dtype):
    extra = ("--raw",) if bits is None else ("--raw", "--bits", bits)
    npy, recon, doc = roundtrip(runner, tmp_path, tiny_model, image_folder, extra=extra)
    codes = np.load(npy, allow_pickle=False)["codes"]
    assert codes.shape == (12, 4, 7, 7) and codes.dtype == dtype
    assert doc["coding"] == "raw" and doc["quantizer"]["levels"] == 2 ** (bits or 8)
    assert codes.max() < 2 ** (bits or 8) and len(np.unique(codes)) > 2
    assert doc["images"]["chunks"] == [[12, codes.nbytes]]
    for p in (f"img{i:04d}.png" for i in range(12)):
        want = reference(tiny_model, np.asarray(Image.open(image_folder / p)), bits or 8)
        assert np.array_equal(np.asarray(Image.open(recon / p)), want)


def test_bits_without_raw_decodes(runner, tiny_model, tmp_path, image_folder):
    _npy, recon, doc = roundtrip(runner, tmp_path, tiny_model, image_folder, extra=("--bits", "4"))
    assert doc["quantizer"]["levels"] == 16 and len(list(recon.glob("*.png"))) == 12


def test_summary_json_quiet_and_table(runner, tiny_model, tmp_path, image_folder):
    r = invoke(runner, "compress", image_folder, tmp_path / "a.npy", "--model", tiny_model, "--json")
    ok(r)
    s = json.loads(r.stdout)
    assert s["images"] == 12 and s["skipped"] == []
    assert s["input_bytes"] == sum(p.stat().st_size for p in image_folder.glob("*.png"))
    assert s["output_bytes"] == (tmp_path / "a.npy").stat().st_size
    assert not (tmp_path / "a.json").exists()  # one self-contained file
    assert s["bpp"] == pytest.approx(8 * s["output_bytes"] / (12 * 28 * 28), abs=1e-3)
    assert s["ratio"] == pytest.approx(s["input_bytes"] / s["output_bytes"], abs=1e-2)
    assert s["images_per_s"] > 0 and s["coding"] == "ans"
    q = invoke(runner, "compress", image_folder, tmp_path / "b.npy", "--model", tiny_model, "--quiet")
    ok(q)
    assert q.stdout == "" and q.stderr == ""
    t = invoke(runner, "compress", image_folder, tmp_path / "c.npy", "--model", tiny_model)
    ok(t)
    assert "bpp" in t.stdout and "images_per_s" in t.stdout
    d = invoke(runner, "decompress", tmp_path / "a.npy", tmp_path / "r", "--model", tiny_model, "--json")
    ok(d)
    assert json.loads(d.stdout)["images"] == 12
    dq = invoke(runner, "decompress", tmp_path / "a.npy", tmp_path / "r2", "--model", tiny_model, "--quiet")
    ok(dq)
    assert dq.stdout == "" and dq.stderr == ""


def test_verify_reports_the_error_decompress_gives(runner, tiny_model, tmp_path, image_folder):
    r = invoke(runner, "compress", image_folder, tmp_path / "a.npy", "--model", tiny_model, "--verify", "--json",
               "--batch-size", "5")  # batches of 5, 5 and 2 images
    ok(r)
    report = json.loads(r.stdout)["verify"]
    ok(invoke(runner, "decompress", tmp_path / "a.npy", tmp_path / "r", "--model", tiny_model, "--quiet"))
    names = sorted(p.name for p in image_folder.glob("*.png"))
    mses = [np.mean((np.asarray(Image.open(image_folder / n), float) - np.asarray(Image.open(tmp_path / "r" / n),
                                                                                 float)) ** 2) / 255**2
            for n in names]
    assert len(names) == 12 and min(mses) > 0
    assert report["mse"] == pytest.approx(np.mean(mses), abs=2e-6)
    assert 0 < report["ssim"] < 1 and report["mean_psnr"] >= report["psnr_of_mean_mse"]


def test_exit_codes_and_on_error_skip(runner, tiny_model, tmp_path, image_folder):
    (image_folder / "broken.png").write_bytes(b"not a png at all")
    stop = invoke(runner, "compress", image_folder, tmp_path / "a.npy", "--model", tiny_model)
    one_line_error(stop, 1, "broken.png")
    assert not list(tmp_path.glob("a.*")) and not list(tmp_path.glob(".a.*"))
    usage = invoke(runner, "compress", image_folder, tmp_path / "a.npy", "--on-error", "maybe")
    one_line_error(usage, 2, "--on-error")
    one_line_error(invoke(runner, "compress", image_folder, tmp_path / "a.npy", "--shard", "4/3"), 2, "--shard")
    assert invoke(runner, "compress", tmp_path / "only.npy").exit_code == 2
    skip = invoke(runner, "compress", image_folder, tmp_path / "a.npy", "--model", tiny_model,
                  "--on-error", "skip", "--json")
    assert skip.exit_code == 1
    s = json.loads(skip.stdout)
    assert s["images"] == 12 and [Path(x["path"]).name for x in s["skipped"]] == ["broken.png"]
    assert "broken.png" in s["skipped"][0]["error"]
    assert np.load(tmp_path / "a.npy", allow_pickle=False).size > 0  # the good images were written
    quiet = invoke(runner, "compress", image_folder, tmp_path / "b.npy", "--model", tiny_model,
                   "--on-error", "skip", "--quiet")
    assert quiet.exit_code == 1 and quiet.stdout == ""
    assert quiet.stderr.startswith("convae: skipped:") and "broken.png" in quiet.stderr


def test_compress_twice_is_byte_identical(runner, tiny_model, tmp_path):
    src = tmp_path / "in"
    mode_images(src / "modes")
    write_pngs(src / "plain", make_images(5, seed=9))
    for name in ("a", "b"):
        ok(invoke(runner, "compress", src, tmp_path / f"{name}.npy", "--model", tiny_model, "--quiet", "--gray"))
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()


@pytest.mark.parametrize("large", [False, True])
def test_decompress_identical_with_one_or_two_threads(tiny_model, tmp_path, large):
    """Separate processes with 1 and 2 torch threads (and batch sizes) write byte-identical PNGs.

    Small images give the model half the cores (one of two here); large ones (noise PNGs over
    ``SMALL_IMAGE_BYTES``) leave it both, so the second case runs the model on 2 threads."""
    src = tmp_path / "in"
    if large:
        noise = np.random.default_rng(5).integers(0, 256, (4, 150, 170, 3), dtype=np.uint8)
        for i, pixels in enumerate(noise):
            save(Image.fromarray(pixels), src / f"noise{i}.png")
        assert min(p.stat().st_size for p in src.iterdir()) > SMALL_IMAGE_BYTES
    else:
        mode_images(src / "modes")
        write_pngs(src / "plain", make_images(40, seed=8))
        save(Image.fromarray(gray(100, 77, 2)), src / "big.png")
    outs = {}
    for threads, batch in ((1, 256), (2, 7)):
        npy, recon = tmp_path / f"t{threads}.npy", tmp_path / f"r{threads}"
        common = ["--model", str(tiny_model), "--quiet", "--batch-size", str(batch)]
        runs = [["compress", str(src), str(npy), *common, "--gray"], ["decompress", str(npy), str(recon), *common]]
        code = (f"import json, sys, torch; torch.set_num_threads({threads}); assert torch.get_num_threads() == "
                f"{threads}; from convae.cli.app import app; [app(a, standalone_mode=False) for a in json.loads("
                "sys.argv[1])]")
        r = subprocess.run([sys.executable, "-c", code, json.dumps(runs)], capture_output=True, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": str(threads)}, timeout=300)
        assert r.returncode == 0, r.stderr
        outs[threads] = (npy.read_bytes(), snapshot(recon))
    assert outs[1][0] == outs[2][0]
    assert outs[1][1] == outs[2][1] and len(outs[1][1]) == (4 if large else 49)


def test_model_threads_halves_the_cores_only_for_small_images_until_given_all(monkeypatch):
    import torch

    from convae.codec import inference as mi
    from convae.codec.imagepool import ImagePool

    with ImagePool(SMALL_IMAGE_BYTES, processes=False) as small, \
            ImagePool(SMALL_IMAGE_BYTES + 1, processes=False) as large:
        assert small.small_images and not large.small_images
    monkeypatch.setattr(mi.os, "cpu_count", lambda: 4)
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        with mi.model_threads("cpu", small.small_images) as all_cores:
            assert torch.get_num_threads() == 2
            all_cores()  # the image workers are done: the model gets every core
            assert torch.get_num_threads() == 4
        with mi.model_threads("cpu", large.small_images):
            assert torch.get_num_threads() == 4
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_info_table_and_json_without_decoding(runner, tiny_model, tmp_path, image_folder, monkeypatch):
    npy = tmp_path / "c.npy"
    save(Image.fromarray(gray(30, 45)), image_folder / "wide.png")
    ok(invoke(runner, "compress", image_folder, npy, "--model", tiny_model, "--quiet"))
    from convae.entropy.factorized import EntropyCoder
    from convae.models.base import Autoencoder

    def no_decoding(*a, **k):
        raise AssertionError("info must not decode")

    monkeypatch.setattr(Autoencoder, "decode", no_decoding)
    monkeypatch.setattr(EntropyCoder, "decode", no_decoding)
    r = invoke(runner, "info", npy, "--json")
    ok(r)
    info = json.loads(r.stdout)
    from convae.weightfile import read_weights

    assert info["format"] == "convae-codes" and info["version"] == 3 and info["variant"] == "seed"
    assert info["chunks"] == 2  # the 28x28 images, then the one 45x30
    assert info["weights_sha256"] == read_weights(tiny_model)[2]
    assert info["images"] == 13 and info["sizes"] == ["28x28", "45x30"]
    assert info["total_bytes"] == npy.stat().st_size
    assert sum(i["bytes"] for i in info["per_image"]) == info["codes_bytes"]
    assert info["bpp"] == pytest.approx(8 * info["total_bytes"] / (12 * 784 + 45 * 30))
    table = invoke(runner, "info", npy)
    ok(table)
    for key in ("version", "variant", "weights_sha256", "images", "chunks", "total_bytes", "bpp"):
        assert key in table.stdout
    one_line_error(invoke(runner, "info", tmp_path / "nope.npy"), 1, "nope.npy")


@pytest.fixture(scope="module")
def rgb_model(tmp_path_factory) -> Path:
    """An untrained but calibrated 3-channel variant: enough to check that modes survive the conversion."""
    import torch
    from convae.registry import create_model, list_models

    from convae.data import ImageSet
    from convae.training.calibrate import calibrate
    from convae.weightfile import save_weights

    name = next((n for n in list_models() if create_model(n).in_channels == 3), None)
    if name is None:
        pytest.skip("no 3-channel variant is registered")
    torch.manual_seed(0)
    net = create_model(name)
    calibrate(net, ImageSet((torch.rand(16, 3, 32, 32) * 255).to(torch.uint8)))
    path = tmp_path_factory.mktemp("rgb") / f"{name}.safetensors"
    save_weights(net, path, {})
    return path


def test_gray_images_through_an_rgb_model_keep_their_mode(runner, rgb_model, tmp_path):
    files = mode_images(tmp_path / "in", 19, 23)
    _, recon, _ = roundtrip(runner, tmp_path, rgb_model, *[files[m] for m in ("L", "LA", "I;16", "1", "RGBA")])
    for mode, want in (("L", "L"), ("LA", "LA"), ("I;16", "I;16"), ("1", "1"), ("RGBA", "RGBA")):
        out = Image.open(recon / files[mode].with_suffix(".png").name)
        assert (out.mode, out.size) == (want, (23, 19)), mode
        if "A" in mode:
            assert out.getchannel("A").tobytes() == Image.open(files[mode]).getchannel("A").tobytes()


def test_quality_picks_the_rate_within_the_models_family(runner, tmp_path, image_folder):
    out = tmp_path / "q.npy"
    ok(invoke(runner, "compress", image_folder, out, "--model", "fm-q3", "--quality", "1", "--quiet"))
    assert read_manifest(out)["model"]["variant"] == "fm-q1"
    small, big = out.stat().st_size, tmp_path / "q4.npy"
    ok(invoke(runner, "compress", image_folder, big, "--model", "fm-q1", "-q", "4", "--quiet"))
    assert big.stat().st_size > small
    one_line_error(invoke(runner, "compress", image_folder, tmp_path / "x.npy", "--model", "fm-q1", "--quality", "9"),
                   2, "qualities 1, 2, 3, 4")
    one_line_error(invoke(runner, "compress", image_folder, tmp_path / "x.npy", "--model", "seed", "--quality", "1"),
                   2, "one rate only")
    assert not (tmp_path / "x.npy").exists()
