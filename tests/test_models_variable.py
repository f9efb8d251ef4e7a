"""The variable-rate photo model: levels, gains, warm start from photoh-q2, calibration over every rate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from convae.registry import create_model

from convae.models.variable import DEFAULT_LEVEL, LEVELS, level_lmbda
from convae.zoo import load_model, warm_start
from tests.codec_util import invoke, ok, one_line_error, read_manifest, resign
from tests.conftest import check_chunk_round_trip, make_images, train_tiny, write_pngs

TINY = {"in_channels": 1, "n": 8, "m": 4, "depth": 2, "hyper": 8, "z_channels": 4}


def test_levels_and_lambdas():
    net = create_model("photov")
    assert net.in_channels == 3 and net.level == DEFAULT_LEVEL and net.lmbda == pytest.approx(0.01)
    assert [level_lmbda(i) for i in (0, 5, 8)] == pytest.approx([0.01 / 32, 0.01, 0.08])
    for bad in (-0.1, LEVELS - 1 + 1e-6, math.nan):
        with pytest.raises(ValueError, match="outside"):
            net.set_level(bad)
    net.set_level(3.5)
    assert net.lmbda == pytest.approx(level_lmbda(3.5))
    net.train()
    net(torch.rand(1, 3, 32, 32))  # a training pass draws a level
    assert 0 <= net.level <= LEVELS - 1
    net.eval()
    assert net.level == DEFAULT_LEVEL


def test_level_5_of_a_warm_start_is_photoh_q2():
    net = create_model("photov")
    assert int(warm_start(net, "photoh-q2")["init_tensors"]) > 40
    ref = load_model("photoh-q2").model
    net.eval()
    x = torch.rand(2, 3, 40, 48)
    with torch.no_grad():
        assert torch.equal(net.encode(x), ref.encode(x))
        y = torch.round(ref.encode(x))
        assert torch.equal(net.decode(y), ref.decode(y))


def test_gains_grow_with_the_level_and_interpolate():
    net = create_model("photov", **TINY).eval()
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        size = []
        for t in (0, 2, 2.5, 3, 8):
            net.set_level(t)
            size.append(float(net.encode(x).abs().mean()))
    assert size == sorted(size) and size[0] < size[-1] / 10  # level 0 to 8: gain 2^-2.5 to 2^1.5
    assert math.log(size[2]) == pytest.approx((math.log(size[1]) + math.log(size[3])) / 2, rel=1e-5)


@pytest.fixture(scope="module")
def tiny_variable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("vr-train")
    write_pngs(folder, make_images(64, seed=7))
    out = tmp_path_factory.mktemp("vr-model") / "vr.safetensors"
    return train_tiny(out, folder, "photov", epochs=4, lr=3e-3, **TINY)  # 8 steps: a full one-cycle schedule


def test_calibration_covers_every_level_and_coding_is_bit_exact(tiny_variable):
    net = load_model(str(tiny_variable)).model
    assert net.level == DEFAULT_LEVEL
    x = torch.from_numpy(make_images(8, seed=9)).float().div(255)[:, None]
    hi = net.quantizer.hi
    for t in (0.0, 4.25, 8.0):
        net.set_level(t)
        with torch.no_grad():
            y = torch.round(net.encode(x))
        assert bool((y.amax(dim=(0, 2, 3)) <= hi + 1).all())  # the range fitted over all levels holds level 8
        check_chunk_round_trip(net, sizes=((28, 4), (4, 1)))


def test_quality_0_to_100_sets_the_level_the_manifest_records(runner, tiny_variable, tmp_path):
    folder = tmp_path / "in"
    write_pngs(folder, make_images(6, seed=11))
    sizes = {}
    for q in (10, 60, 100):
        out = tmp_path / f"q{q}.npy"
        res = invoke(runner, "compress", folder, out, "-m", tiny_variable, "-q", q, "--json")
        ok(res)
        assert read_manifest(out)["model"]["level"] == pytest.approx(8 * q / 100)
        assert json.loads(res.stdout)["quality"] == q  # what the summary and info say the user got
        assert json.loads(invoke(runner, "info", out, "--json").stdout)["quality"] == q
        ok(invoke(runner, "decompress", out, tmp_path / f"r{q}", "-m", tiny_variable, "--quiet"))
        sizes[q] = out.stat().st_size
    assert sizes[10] < sizes[60] < sizes[100]
    again = tmp_path / "again.npy"
    ok(invoke(runner, "compress", folder, again, "-m", tiny_variable, "-q", 60, "--quiet"))
    assert again.read_bytes() == (tmp_path / "q60.npy").read_bytes()
    assert "takes 0 to 100" in one_line_error(invoke(runner, "compress", folder, tmp_path / "x.npy", "-m",
                                                     tiny_variable, "-q", 101))
    doc = read_manifest(again)
    del doc["model"]["level"]
    resign(again, doc)
    err = one_line_error(invoke(runner, "decompress", again, tmp_path / "bad", "-m", tiny_variable), 1)
    assert "names no rate level" in err and not (tmp_path / "bad").exists()
