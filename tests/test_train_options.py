"""Training options for the zoo: --exclude, --limit, --init, --meta, --lmbda, --config."""

from __future__ import annotations

import json

import pytest
from convae.cli.app import app

from convae.data import load_dataset
from convae.errors import DataError, UsageError
from convae.weightfile import read_weights
from tests.conftest import make_images, write_pngs


def test_exclude_leaves_an_evaluation_folder_out(tmp_path):
    write_pngs(tmp_path / "train", make_images(5, seed=1))
    write_pngs(tmp_path / "val", make_images(3, seed=2))
    ds = load_dataset(str(tmp_path), 1, exclude=("val/*",))
    assert len(ds.train) == 5 and ds.info["excluded"] == ["val/*"]
    assert len(load_dataset(str(tmp_path), 1).train) == 8
    with pytest.raises(DataError, match="excluded"):
        load_dataset(str(tmp_path), 1, exclude=("*",))


def test_limit_keeps_the_first_training_images(train_folder):
    ds = load_dataset(str(train_folder), 1, limit=10)
    assert len(ds.train) == 10 and ds.info["train_limit"] == 10
    with pytest.raises(UsageError):
        load_dataset(str(train_folder), 1, limit=0)


def test_init_meta_and_lmbda_are_recorded(runner, train_folder, tmp_path):
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    common = ["train", "--data", str(train_folder), "--epochs", "1", "--batch-size", "64", "--quiet"]
    tiny = ["--model", "factorized"]
    assert runner.invoke(app, [*common, *tiny, "--out", str(first)]).exit_code == 0
    result = runner.invoke(app, [*common, *tiny, "--out", str(second), "--init", str(first), "--lmbda", "0.5",
                                 "--meta", "note=hello"])
    assert result.exit_code == 0, result.output
    _, meta, _ = read_weights(second)
    _, _, first_sha = read_weights(first)
    assert meta["init_sha256"] == first_sha and meta["note"] == "hello"
    assert json.loads(meta["config"])["lmbda"] == 0.5
    bad = runner.invoke(app, [*common, "--model", "seed", "--out", str(tmp_path / "c.safetensors"), "--lmbda", "1"])
    assert bad.exit_code == 2 and "no rate term" in bad.output
    misfit = runner.invoke(app, [*common, "--model", "seed", "--out", str(tmp_path / "d.safetensors"),
                                 "--init", str(first)])
    assert misfit.exit_code != 0 and "does not fit" in misfit.output



def test_init_takes_a_shipped_variant_by_name(runner, train_folder, tmp_path):
    from convae.zoo import shipped_weights

    out = tmp_path / "w.safetensors"
    common = ["train", "--data", str(train_folder), "--epochs", "1", "--batch-size", "64", "--limit", "16", "--quiet"]
    result = runner.invoke(app, [*common, "--model", "fm-q1", "--out", str(out), "--init", "fm-q1"])
    assert result.exit_code == 0, result.output
    _, meta, _ = read_weights(out)
    assert meta["init_from"] == "fm-q1" and meta["init_sha256"] == read_weights(shipped_weights("fm-q1"))[2]
    for init, message in (("fm-q9", "neither a weights file nor a shipped variant"), ("factorized", "ships no weights"),
                          ("nothere.safetensors", "does not exist")):
        bad = runner.invoke(app, [*common, "-m", "fm-q1", "--out", str(tmp_path / "x.safetensors"), "--init", init])
        assert bad.exit_code == 1 and message in bad.output and len(bad.output.strip().splitlines()) == 1, bad.output

def test_bad_train_and_eval_options_get_one_line_errors(runner, train_folder, tiny_model, tmp_path):
    """Sizes off the stride, --threads/--bits/--limit out of range, a history file in the way: refused cleanly."""
    odd = tmp_path / "odd"
    write_pngs(odd, make_images(8, size=30, seed=3))
    out = tmp_path / "w.safetensors"
    common = ["train", "--data", str(train_folder), "--epochs", "1", "--batch-size", "64", "--out", str(out), "--quiet"]
    cases = [
        (["train", "--data", str(odd), "--model", "seed", "--epochs", "1", "--out", str(out), "--quiet"],
         "not multiples of seed's stride 4"),
        ([*common, "--crop", "30"], "--crop 30: must be a positive multiple"),
        ([*common, "--threads", "0"], "--threads 0"),
        (["eval", "--model", str(tiny_model), "--data", str(train_folder), "--bits", "0"], "--bits 0"),
        (["eval", "--model", str(tiny_model), "--data", str(train_folder), "--limit", "0"], "--limit 0"),
    ]
    for args, needle in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "Traceback" not in result.output, (args, result.output)
        assert needle in result.output and not out.exists(), (args, result.output)
    out.with_suffix(".history.json").write_text("precious")  # the history file is an output too
    result = runner.invoke(app, common)
    assert result.exit_code != 0 and "--force" in result.output and not out.exists()
    assert out.with_suffix(".history.json").read_text() == "precious"


def test_config_overrides_the_architecture_and_is_checked(runner, train_folder, tmp_path):
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    common = ["train", "--data", str(train_folder), "--epochs", "1", "--batch-size", "64", "--quiet",
              "--model", "factorized"]
    assert runner.invoke(app, [*common, "--out", str(first)]).exit_code == 0
    result = runner.invoke(app, [*common, "--out", str(second), "--init", str(first), "--config", "post=4"])
    assert result.exit_code == 0, result.output
    _, meta, _ = read_weights(second)
    assert json.loads(meta["config"])["post"] == 4 and int(meta["init_tensors"]) > 0
    for bad, needle in [(["--config", "nosuch=1"], "KEY one of"), (["--config", "post"], "KEY one of"),
                        (["--config", "post=four"], "not a JSON value"),
                        (["--config", "lmbda=0.2", "--lmbda", "0.1"], "not both")]:
        out = tmp_path / "c.safetensors"
        result = runner.invoke(app, [*common, "--out", str(out), *bad])
        assert result.exit_code == 2 and needle in result.output and not out.exists(), (bad, result.output)
        assert "Traceback" not in result.output
