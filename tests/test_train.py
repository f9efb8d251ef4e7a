"""Training: deterministic, resumable exactly, interruptible, stops cleanly on a non-finite loss."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from convae.registry import create_model
from safetensors.torch import load_file

from convae.data import load_dataset
from convae.errors import Interrupted, TrainingError, UsageError
from convae.training.recipes import RECIPES
from convae.training.train import checkpoint_path, curve_path, history_path, train
from convae.weightfile import read_weights

RECIPE = RECIPES["fast"].override(epochs=3, batch_size=32)


def _train(folder: Path, out: Path, **kw):
    torch.manual_seed(kw.get("seed", 0))  # the caller seeds initialisation, as the CLI does
    return train(create_model("seed"), load_dataset(str(folder), 1), out, kw.pop("recipe", RECIPE), **kw)


def _same(a: Path, b: Path) -> bool:
    sa, sb = load_file(a), load_file(b)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_same_weights_other_seed_differs(train_folder: Path, tmp_path: Path):
    _train(train_folder, tmp_path / "a.safetensors", seed=3)
    _train(train_folder, tmp_path / "b.safetensors", seed=3)
    _train(train_folder, tmp_path / "c.safetensors", seed=4)
    assert _same(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    assert not _same(tmp_path / "a.safetensors", tmp_path / "c.safetensors")


def test_outputs_and_metadata(train_folder: Path, tmp_path: Path):
    out = tmp_path / "m.safetensors"
    result = _train(train_folder, out)
    _, meta, sha = read_weights(out)
    assert sha == result.sha256
    assert meta["variant"] == "seed" and json.loads(meta["config"]) == {"bits": 8}
    assert meta["in_channels"] == "1" and meta["dataset"] == str(train_folder)
    assert json.loads(meta["epochs"]) == 3 and meta["convae_version"]
    assert json.loads(meta["final_train_mse"]) == result.history[-1]["train_mse"]
    history = json.loads(history_path(out).read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_mse"] < history[0]["train_mse"]
    assert curve_path(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert checkpoint_path(out).is_file()


def test_interrupt_keeps_checkpoint_and_resume_is_exact(train_folder: Path, tmp_path: Path):
    full = tmp_path / "full.safetensors"
    _train(train_folder, full, seed=1)

    part = tmp_path / "part.safetensors"
    calls = {"n": 0}

    def ctrl_c(n: int, loss: float) -> None:  # interrupt during epoch 2
        calls["n"] += 1
        if calls["n"] == 12:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="holds epoch 1; continue with --resume"):
        _train(train_folder, part, seed=1, on_step=ctrl_c)
    assert not part.exists() and checkpoint_path(part).is_file()
    _train(train_folder, part, seed=1, resume=True)
    assert _same(full, part)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(train_folder: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "nan.safetensors"
    net = create_model("seed")
    real = net.criterion
    steps = {"n": 0}

    def poisoned(x, o):
        steps["n"] += 1
        loss, terms = real(x, o)
        return (loss * float("nan"), terms) if steps["n"] > 10 else (loss, terms)

    monkeypatch.setattr(net, "criterion", poisoned)
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2.*last good checkpoint"):
        train(net, load_dataset(str(train_folder), 1), out, RECIPE)
    assert not out.exists()
    assert checkpoint_path(out).is_file()


def test_refuses_to_clobber_or_resume_without_checkpoint(train_folder: Path, tmp_path: Path):
    out = tmp_path / "x.safetensors"
    with pytest.raises(UsageError, match="no checkpoint"):
        _train(train_folder, out, resume=True)
    _train(train_folder, out, recipe=RECIPE.override(epochs=1))
    with pytest.raises(Exception, match="already exists"):
        _train(train_folder, out, recipe=RECIPE.override(epochs=1))


def test_epochs_must_be_positive(train_folder: Path, tmp_path: Path):
    with pytest.raises(UsageError, match="at least 1"):
        _train(train_folder, tmp_path / "z.safetensors", recipe=RECIPE.override(epochs=0))


@pytest.mark.parametrize("crop", [None, 24], ids=["whole", "random-crops"])
def test_test_mse_shared_out_between_processes_adds_up_to_one_process(monkeypatch, crop):
    import convae.training.train as train_module
    from convae.data import ImageSet

    torch.manual_seed(0)
    model = create_model("seed")
    images = ImageSet(torch.randint(0, 256, (2500, 1, 28, 28), dtype=torch.uint8))
    whole = train_module._squared_error_sums(model, images, 1000, crop)
    parts = []
    for rank in range(2):  # as ranks 0 and 1 of 2: batches 0 and 2, then batch 1
        monkeypatch.setattr(train_module, "rank_world", lambda rank=rank: (rank, 2))
        parts.append(train_module._squared_error_sums(model, images, 1000, crop))
    assert whole[1] == 2500 and [count for _, count in parts] == [1500, 1000]
    assert sum(total for total, _ in parts) == pytest.approx(whole[0], rel=1e-12)


def test_torch_loading_pauses_the_collector_and_only_the_command_line_freezes():
    """Library imports leave no frozen objects behind; the command line freezes PyTorch's once it is loaded."""
    code = ("import gc\nfrom convae._imports import freeze_imports, torch_loading\nwith torch_loading():\n"
            "    import torch\n    assert not gc.isenabled()\nassert gc.isenabled() and gc.get_freeze_count() == 0\n"
            "freeze_imports()\nassert gc.get_freeze_count() > 100000\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
