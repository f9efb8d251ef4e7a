"""``convae train --data DIR --out NAME``: choices from the data, validation, time budget, user models (issue 23)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from convae.data import ImageSet
from convae.errors import TrainingError, UsageError
from convae.training.auto import Overrides, Plan, crop_for, fold_to_gray, is_gray, parse_val, plan_run
from convae.training.duration import format_duration, parse_duration
from convae.training.stopping import StopRule, Tracker
from convae.weightfile import read_weights
from tests.codec_util import invoke, ok, one_line_error
from tests.conftest import make_images, write_pngs


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("20m", 1200), ("1h", 3600), ("1h30m", 5400),
                                               ("1.5h", 5400), ("600", 600), (" 2M ", 120)])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "20 min", "5x", "0s", "-3m", "m"])
def test_bad_durations_are_refused(text):
    with pytest.raises(UsageError, match="--time"):
        parse_duration(text)


def test_durations_format_back():
    assert [format_duration(s) for s in (1200, 90, 3600, 5400, 0)] == ["20m", "1m30s", "1h", "1h30m", "0s"]


def test_val_is_a_fraction_or_a_folder(tmp_path):
    assert parse_val(None) == 0.1 and parse_val("0.25") == 0.25 and parse_val(str(tmp_path)) == tmp_path
    for bad in ("0", "0.9", "nosuchdir"):
        with pytest.raises(UsageError, match="--val"):
            parse_val(bad)


def _gray_odd_folder(folder: Path, n: int = 20) -> Path:
    write_pngs(folder, make_images(n, size=44, seed=5)[:, :, :36])  # 36 wide, 44 high: not multiples of 8
    return folder


def test_plan_for_gray_images_of_any_size(tmp_path):
    plan = plan_run(str(_gray_odd_folder(tmp_path / "g")), None, None, 0, Overrides(init="photov"))
    assert plan.model == "photov" and plan.config == {"in_channels": 1} and plan.init == "photov"
    assert plan.crop == (48, 40)  # each side edge-padded to a multiple of the stride, as the codec pads it
    assert len(plan.data.train) == 18 and len(plan.data.test) == 2  # 10 % held out
    assert plan.stop.seconds == 20 * 60 and plan.recipe.batch_size == 4  # at least 4 steps an epoch
    assert set(plan.choices) >= {"model", "init", "validation", "crop", "batch_size", "lr", "time"}
    assert len(plan.lines) == len(plan.choices)
    with pytest.raises(UsageError, match="--epochs 0"):
        plan_run(str(tmp_path / "g"), None, None, 0, Overrides(epochs=0))


def test_colour_rule_and_crops():
    gray = torch.from_numpy(make_images(2, seed=1))[:, None].expand(2, 3, 28, 28).contiguous()
    assert is_gray(ImageSet(gray, "g"))
    colour = gray.clone()
    colour[0, 0, 5, 5] = 255 - colour[0, 1, 5, 5] // 2 if colour[0, 1, 5, 5] < 100 else 0
    assert not is_gray(ImageSet(colour, "c"))
    big = ImageSet([torch.zeros(3, 300, 500, dtype=torch.uint8), torch.zeros(3, 200, 130, dtype=torch.uint8)], "b")
    assert crop_for(big, "photov", 8, None)[0] == (128, 128) and crop_for(big, "photov", 8, 64)[0] == 64


def test_gray_bases_are_tried_on_the_validation_images_and_the_lower_loss_wins(tmp_path):
    import re
    import tempfile

    heard: list[str] = []
    before = set(Path(tempfile.gettempdir()).glob("convae-trial-*"))
    plan = plan_run(str(_gray_odd_folder(tmp_path / "g", 12)), None, 60, 0, Overrides(), heard.append)
    assert heard == ["gray images: fine-tuning photov/gray and grayv for 3 s each to choose the base"]
    assert set(Path(tempfile.gettempdir()).glob("convae-trial-*")) == before  # trial folders are removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]  # and nothing is written beside the data
    line = next(x for x in plan.lines if x.startswith("model:"))
    scores = {k: float(v) for k, v in re.findall(r"(photov/gray|grayv) from \S+ ([0-9.]+)", line)}
    assert set(scores) == {"photov/gray", "grayv"}, line
    assert plan.choices["model"] == min(scores, key=lambda k: scores[k])
    given = plan_run(str(_gray_odd_folder(tmp_path / "h", 12)), None, 60, 0, Overrides(init="fmh-q3"))
    assert given.model == "grayv" and given.init == "fmh-q3" and "--init fmh-q3" in given.lines[0]


def test_gray_images_of_several_sizes_train_and_validate_whole(tmp_path):
    """Validation codes each image whole, whatever its size (MRI slices of three views once failed here)."""
    folders = {}
    for name, seed in (("mixed", 1), ("held", 3)):
        folders[name] = tmp_path / name
        write_pngs(folders[name], make_images(6, size=44, seed=seed)[:, :, :36], prefix="a")
        write_pngs(folders[name], make_images(6, size=40, seed=seed + 1), prefix="b")
    plan = plan_run(str(folders["mixed"]), str(folders["held"]), 20, 0, Overrides())
    assert {tuple(t.shape[-2:]) for t in plan.data.test.images} == {(44, 36), (40, 40)}
    assert plan.crop == {"grayv": (40, 36), "photov": (40, 40)}[plan.model]  # smallest sides, stride-padded
    assert "the lower validation loss" in plan.lines[0]


def test_grayv_from_fmh_q3_starts_as_fmh_q3_at_the_level_of_its_lambda():
    from convae.models.variable import level_lmbda
    from convae.training.auto import build
    from convae.zoo import load_model

    plan = Plan("grayv", {}, "fmh-q3", None, None, 0, None)
    net, record = build(plan)
    fmh = load_model("fmh-q3").model.eval()
    level = next(i for i in range(9) if level_lmbda(i) == pytest.approx(0.005))
    net.eval()
    net.set_level(level)
    x = torch.rand(2, 1, 28, 28)
    with torch.inference_mode():
        assert torch.allclose(net.encode(x), fmh.encode(x), atol=1e-5)
        y = torch.round(fmh.encode(x))
        assert torch.allclose(net.decode(y), fmh.decode(y), atol=1e-5)
    assert record["init_gains_centred_on_lmbda"] == "0.005" and record["init_variant"] == "fmh-q3"


def test_fold_to_gray_codes_a_gray_image_as_the_rgb_model_codes_r_eq_g_eq_b():
    from convae.registry import create_model

    rgb = create_model("photov", n=8, m=4, depth=2, hyper=8, z_channels=4)
    gray = create_model("photov", n=8, m=4, depth=2, hyper=8, z_channels=4, in_channels=1)
    own = dict(gray.named_parameters())
    gray.load_state_dict({k: v for k, v in fold_to_gray(rgb.state_dict()).items() if k in own}, strict=False)
    x = torch.rand(1, 1, 32, 32)
    rgb.eval(), gray.eval()
    with torch.no_grad():
        y_rgb, y_gray = rgb.encode(x.expand(1, 3, 32, 32)), gray.encode(x)
    assert torch.allclose(y_rgb, y_gray, atol=1e-5)


def test_a_stop_rule_lowers_the_rate_then_stops_on_a_plateau():
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1.0)
    tracker = Tracker(StopRule(patience=2, drops=1))
    stops = [tracker.observe(loss, net, opt, {"epoch": i}) for i, loss in enumerate([5, 4, 4, 4, 4, 4])]
    assert stops == [False, False, False, False, False, True]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1) and tracker.state["best_epoch"] == 1
    assert tracker.state["reason"] == "validation stopped improving"
    timed = Tracker(StopRule(seconds=100))
    assert not timed.out_of_time(99) and timed.out_of_time(100) and timed.state["reason"] == "time limit"


def test_one_command_trains_a_user_model_used_by_name(runner, tmp_path, monkeypatch):
    """No flag but --data, --out NAME and a short --time: a gray photov in $CONVAE_HOME/models, usable as -m NAME,
    decoded without --model, listed by `convae models`, every choice and the validation in its metadata."""
    monkeypatch.setenv("CONVAE_HOME", str(tmp_path / "home"))
    data = _gray_odd_folder(tmp_path / "faces", 24)
    result = invoke(runner, "train", "--data", data, "--out", "faces", "--time", "8s")
    ok(result)
    assert "auto model: photov/gray (gray images; the lower validation loss" in result.stderr
    assert "best validation" in result.stderr
    weights = tmp_path / "home" / "models" / "faces.safetensors"
    _, meta, _ = read_weights(weights)
    auto, val = json.loads(meta["auto"]), json.loads(meta["validation"])
    assert auto["model"] == "photov/gray" and auto["crop"] == [48, 40] and meta["init_fold"] == "rgb-to-gray"
    assert set(val["points"]) == {"0", "50", "100"} and float(meta["train_seconds"]) < 30
    assert val["points"]["0"]["bpp"] < val["points"]["50"]["bpp"] < val["points"]["100"]["bpp"]
    listed = [json.loads(line) for line in invoke(runner, "models", "faces", "--json").stdout.splitlines()]
    assert [row["name"] for row in listed] == ["faces"] and listed[0]["user"] is True
    ok(invoke(runner, "compress", data, tmp_path / "f.npy", "-m", "faces", "-q", "60", "--quiet"))
    ok(invoke(runner, "decompress", tmp_path / "f.npy", tmp_path / "out", "--quiet"))  # weights from the manifest
    assert len(list((tmp_path / "out").glob("*.png"))) == 24
    again_from = plan_run(str(data), None, 60, 0, Overrides(init=str(weights)))  # a gray photov user model as --init
    net, record = again_from.warm
    assert again_from.model == "photov" and net.in_channels == 1 and "init_fold" not in record
    trained, _, _ = read_weights(weights)
    assert all(torch.equal(p, trained[k]) for k, p in net.named_parameters())
    again = invoke(runner, "train", "--data", data, "--out", "faces", "--time", "1s")
    assert "--force" in one_line_error(again, 1)
    assert "registered variant" in one_line_error(invoke(runner, "train", "--data", data, "--out", "seed"), 2)


def test_a_one_epoch_fast_run_from_scratch_stays_in_range(train_folder, tmp_path):
    """The fast recipe's one-cycle peak (4e-2) on 1-2 steps an epoch once gave 'train MSE 107'."""
    from convae.registry import create_model

    from convae.data import load_dataset
    from convae.training.recipes import RECIPES
    from convae.training.train import train

    torch.manual_seed(0)
    result = train(create_model("seed"), load_dataset(str(train_folder), 1), tmp_path / "w.safetensors",
                   RECIPES["fast"].override(epochs=1))
    assert 0 < result.history[0]["train_mse"] < 0.2 and np.isfinite(result.history[0]["train_mse"])


def test_a_run_without_save_returns_its_history_and_writes_no_weights(train_folder, tmp_path):
    """``save=False`` (the gray trials): the trained model and its history, no weights, history file or plot."""
    from convae.registry import create_model

    from convae.data import load_dataset
    from convae.training.recipes import RECIPES
    from convae.training.train import train

    torch.manual_seed(0)
    net = create_model("seed")
    start = [p.detach().clone() for p in net.parameters()]
    result = train(net, load_dataset(str(train_folder), 1), tmp_path / "w.safetensors",
                   RECIPES["fast"].override(epochs=1), save=False)
    assert len(result.history) == 1 and result.sha256 == ""
    assert any(not torch.equal(a, b) for a, b in zip(start, net.parameters(), strict=True))  # it did train
    assert not [p for p in tmp_path.iterdir() if not p.name.endswith(".ckpt.safetensors")]


def test_divergence_is_reported_not_saved(train_folder, tmp_path):
    """A train MSE above 1 (images are in [0, 1]) ends the run with the reason, never as saved weights."""
    from convae.registry import create_model

    from convae.data import load_dataset
    from convae.training.recipes import RECIPES
    from convae.training.train import train

    torch.manual_seed(0)
    net = create_model("seed")
    criterion = net.criterion
    net.criterion = lambda x, out: (criterion(x, out)[0], {"mse": 107.0})  # an unbounded decoder gone wrong
    with pytest.raises(TrainingError, match=r"train MSE 107 .*try a lower --lr"):
        train(net, load_dataset(str(train_folder), 1), tmp_path / "w.safetensors", RECIPES["fast"].override(epochs=1))
    assert not (tmp_path / "w.safetensors").exists()


def test_a_trained_codec_registers_by_name_as_a_plugin_would(tmp_path):
    """The sharing route (docs/TRAINING.md): a package registers its weights file under a name."""
    from convae.registry import get_spec, register_pretrained
    from convae.registry.registry import _SPECS

    from tests.conftest import train_tiny

    folder = tmp_path / "imgs"
    write_pngs(folder, make_images(16, seed=2))
    weights = train_tiny(tmp_path / "w.safetensors", folder, "photov", in_channels=1, n=8, m=4, depth=2, hyper=8,
                         z_channels=4)
    try:
        register_pretrained("zz-shared-faces", "photov", str(weights), source="a plugin", in_channels=1, n=8, m=4,
                            depth=2, hyper=8, z_channels=4)
        from convae.zoo import load_model, shipped_weights

        assert shipped_weights("zz-shared-faces") == weights and get_spec("zz-shared-faces").pretrained
        assert load_model("zz-shared-faces").sha256 == read_weights(weights)[2]
    finally:
        _SPECS.pop("zz-shared-faces", None)


def test_an_automatic_run_resumes_with_a_longer_budget(runner, tmp_path):
    data = _gray_odd_folder(tmp_path / "g", 16)
    out = tmp_path / "w.safetensors"
    ok(invoke(runner, "train", "--data", data, "--out", out, "--time", "3s", "--quiet"))
    first = json.loads(out.with_name("w.history.json").read_text())["history"]
    ok(invoke(runner, "train", "--data", data, "--out", out, "--time", "6s", "--resume", "--force", "--quiet"))
    second = json.loads(out.with_name("w.history.json").read_text())["history"]
    assert second[: len(first)] == first and len(second) > len(first)
    assert 5 <= float(read_weights(out)[1]["train_seconds"]) < 12
