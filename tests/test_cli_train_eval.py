"""`convae train` / `convae eval` through the CLI, including every bad input of the foundation issue."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from convae.cli.app import app

from tests.codec_util import one_line_error
from tests.conftest import FASHION, make_images, needs_fashion


def write_idx(folder: Path, images: np.ndarray) -> Path:
    """A Fashion-MNIST-shaped folder of IDX .gz files holding ``images`` for both splits."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(images)
    header = (2051).to_bytes(4, "big") + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        (folder / name).write_bytes(gzip.compress(header + images.tobytes()))
    return folder


def test_train_and_eval_on_idx_data(runner, tmp_path: Path):
    data = write_idx(tmp_path / "fm", make_images(200, seed=5))
    out = tmp_path / "w.safetensors"
    r = runner.invoke(app, ["train", "--model", "seed", "--data", f"fashion-mnist:{data}", "--epochs", "2",
                            "--batch-size", "50", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "epoch 2/2" in r.stderr and "saved" in r.stderr
    grid = tmp_path / "grid.png"
    r = runner.invoke(app, ["eval", "--model", str(out), "--data", f"fashion-mnist:{data}", "--json",
                            "--grid", str(grid), "--grid-count", "8"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["images"] == 200 and res["variant"] == "seed"
    for key in ("mse", "psnr", "ssim", "bpp", "mse_float", "psnr_float"):
        assert np.isfinite(res[key])
    assert 0 < res["ssim"] <= 1 and res["bpp"] > 0
    from PIL import Image

    assert Image.open(grid).size == (8 * 28, 2 * 28)
    table = runner.invoke(app, ["eval", "--model", str(out), "--data", f"fashion-mnist:{data}:test"])
    assert table.exit_code == 0 and "psnr" in table.stdout


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["--data", "{missing}"], 1, "does not exist"),
        (["--data", "{empty}"], 1, "holds no images"),
        (["--data", "fashion-mnist:{notidx}"], 1, "not"),
        (["--data", "{junkdir}"], 1, "not an image"),
        (["--data", "{folder}", "--model", "sed"], 2, "did you mean seed"),
        (["--data", "{folder}", "--epochs", "0"], 2, "at least 1"),
        (["--data", "{folder}", "--epochs", "-3"], 2, "at least 1"),
        (["--data", "{folder}", "--out", "{file}/w.safetensors"], 1, "does not exist"),
        (["--data", "nosuchkind:{folder}"], 2, "unknown data set kind"),
        (["--data", "{folder}", "--recipe", "slow"], 2, "unknown recipe"),
    ],
)
def test_train_bad_input(runner, tmp_path: Path, image_folder: Path, args, code, needle):
    (tmp_path / "empty").mkdir()
    notidx = tmp_path / "notidx"
    notidx.mkdir()
    (notidx / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"hello world, not idx"))
    (notidx / "t10k-images-idx3-ubyte.gz").write_bytes(b"plain")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_text("this is text")
    (tmp_path / "file").write_text("x")
    subs = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "notidx": notidx, "junkdir": junk,
            "folder": image_folder, "file": tmp_path / "file"}
    argv = ["train", "--out", str(tmp_path / "w.safetensors"), *[a.format(**subs) for a in args]]
    if "--out" in args:
        argv = ["train", *[a.format(**subs) for a in args]]
    before = sorted(p.name for p in tmp_path.iterdir())
    err = one_line_error(runner.invoke(app, argv), code)
    assert needle in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no partial output


def test_eval_bad_weights(runner, tmp_path: Path, tiny_model: Path, image_folder: Path):
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(tiny_model.read_bytes()[:500])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    # weights of another variant: a plugin-shaped state dict labelled as seed
    import torch
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"encoder.0.weight": torch.zeros(8, 1, 3, 3)}, other,
              metadata={"format": "convae-weights", "variant": "seed", "config": "{}"})
    state = {"encoder.0.weight": torch.zeros(16, 1, 3, 3)}
    unknown_arg, not_object = tmp_path / "unknown-arg.safetensors", tmp_path / "not-object.safetensors"
    save_file(state, unknown_arg, metadata={"format": "convae-weights", "variant": "seed", "config": '{"foo": 1}'})
    save_file(state, not_object, metadata={"format": "convae-weights", "variant": "seed", "config": "[1]"})
    for path, needle in ((truncated, "corrupt or truncated"), (garbage, "corrupt or truncated"),
                         (other, "does not fit variant 'seed'"), (tmp_path / "nope.safetensors", "does not exist"),
                         (unknown_arg, "config does not fit variant 'seed'"), (not_object, "not a JSON object")):
        err = one_line_error(runner.invoke(app, ["eval", "--model", str(path), "--data", str(image_folder)]), 1)
        assert needle in err


def test_console_script_runs(tmp_path: Path, tiny_model: Path, image_folder: Path):
    exe = shutil.which("convae") or str(Path(sys.executable).parent / "convae")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("convae ")
    res = subprocess.run([exe, "eval", "--model", str(tiny_model), "--data", str(image_folder), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["images"] == 12
    bad = subprocess.run([exe, "eval", "--model", "sedd", "--data", str(image_folder)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("convae: error: unknown model")


def test_help_on_every_command_has_an_example(runner):
    for cmd in ("train", "eval", "compress", "decompress", "info", "merge", "models"):
        r = runner.invoke(app, [cmd, "--help"])
        assert r.exit_code == 0 and "Example:" in r.stdout, cmd


@needs_fashion
def test_real_fashion_mnist_loads():
    from convae.data import load_fashion_mnist

    sets = load_fashion_mnist(FASHION)
    assert tuple(sets["train"].images.shape) == (60000, 1, 28, 28)
    assert tuple(sets["test"].images.shape) == (10000, 1, 28, 28)


def test_eval_q_sets_a_variable_rate_models_quality(runner, tmp_path: Path):
    """``eval -m photov -q N`` measures photov at quality N: a higher quality, more bits per pixel."""
    data = write_idx(tmp_path / "fm", make_images(20, seed=6))
    bpp = {}
    for q in ("20", "80"):
        r = runner.invoke(app, ["eval", "-m", "photov", "-q", q, "--data", f"fashion-mnist:{data}", "--json"])
        assert r.exit_code == 0, r.output
        bpp[q] = json.loads(r.stdout)["bpp"]
    assert 0 < bpp["20"] < bpp["80"]
