"""The codec as people meet it (issue 22): colour is never dropped silently, summaries say what the user
got (in the code file's frame, one key set across commands), and a quality can be chosen before compressing
(`convae models`' measured table, `compress --target-psnr` / `--max-bpp`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.codec_util import gray, invoke, ok, one_line_error, save


@pytest.fixture
def colour_job(tmp_path, image_folder):
    """``image_folder``'s 12 gray PNGs, a colour RGB one and an RGB one whose channels are equal (gray)."""
    g = gray(30, 45, 3)
    save(Image.fromarray(np.dstack([g, g[::-1], np.roll(g, 5, axis=1)])), image_folder / "colour.png")
    save(Image.fromarray(np.dstack([g, g, g])), image_folder / "grayish.png")
    return image_folder


def test_a_colour_image_is_refused_by_a_gray_model(runner, tiny_model, tmp_path, colour_job):
    err = one_line_error(invoke(runner, "compress", colour_job, tmp_path / "a.npy", "-m", tiny_model), 1,
                         "colour.png")
    assert "photov" in err and "--gray" in err and "grayish" not in err
    assert not list(tmp_path.glob("*.npy"))


def test_on_error_skip_skips_colour_images_with_the_reason(runner, tiny_model, tmp_path, colour_job):
    r = invoke(runner, "compress", colour_job, tmp_path / "a.npy", "-m", tiny_model, "--on-error", "skip", "--json")
    assert r.exit_code == 1
    s = json.loads(r.stdout)
    assert s["images"] == 13 and [k["path"].endswith("colour.png") for k in s["skipped"]] == [True]
    assert "--gray" in s["skipped"][0]["error"]


def test_gray_codes_colour_as_gray_and_says_so(runner, tiny_model, tmp_path, colour_job):
    r = invoke(runner, "compress", colour_job, tmp_path / "a.npy", "-m", tiny_model, "--gray", "--json")
    ok(r)
    s = json.loads(r.stdout)
    assert s["images"] == 14 and s["colour_as_gray"] == 1  # the equal-channel RGB file is gray already
    t = invoke(runner, "compress", colour_job, tmp_path / "b.npy", "-m", tiny_model, "--gray")
    ok(t)
    assert "1 colour images coded as gray" in t.stdout
    ok(invoke(runner, "decompress", tmp_path / "a.npy", tmp_path / "r", "-m", tiny_model, "--quiet"))
    back = np.asarray(Image.open(tmp_path / "r" / "colour.png"))
    assert back.shape == (30, 45, 3) and np.array_equal(back[..., 0], back[..., 2])  # RGB mode, gray content


def test_summaries_share_keys_in_the_code_files_frame(runner, tiny_model, tmp_path, image_folder):
    c = invoke(runner, "compress", image_folder, tmp_path / "a.npy", "-m", tiny_model, "--json")
    ok(c)
    s = json.loads(c.stdout)
    pixels = 12 * 28 * 28
    assert s["bpp"] == pytest.approx(8 * (tmp_path / "a.npy").stat().st_size / pixels, abs=1e-4)
    assert s["psnr"] is None and s["quality"] is None and "levels" not in s and "bits_per_pixel" not in s
    table = invoke(runner, "compress", image_folder, tmp_path / "b.npy", "-m", tiny_model)
    ok(table)
    assert "--verify" in table.stdout and "levels" not in table.stdout  # psnr: measured with --verify only
    v = json.loads(invoke(runner, "compress", image_folder, tmp_path / "c.npy", "-m", tiny_model, "--verify",
                          "--json").stdout)
    assert v["psnr"] == v["verify"]["psnr_of_mean_mse"] > 10
    d = invoke(runner, "decompress", tmp_path / "a.npy", tmp_path / "r", "-m", tiny_model, "--json")
    ok(d)
    ds = json.loads(d.stdout)
    assert ds["input_bytes"] == (tmp_path / "a.npy").stat().st_size and ds["bpp"] == s["bpp"]
    assert ds["output_bytes"] == sum(p.stat().st_size for p in (tmp_path / "r").glob("*.png"))
    info = json.loads(invoke(runner, "info", tmp_path / "a.npy", "--json").stdout)
    assert info["bpp"] == pytest.approx(s["bpp"], abs=1e-3)


def test_models_shows_measured_rates_and_the_quality_range(runner):
    r = invoke(runner, "models", "fm-*", "--json")
    ok(r)
    rows = {row["name"]: row for row in map(json.loads, r.stdout.splitlines())}
    q2 = rows["fm-q2"]
    assert q2["quality"] == 2 and q2["qualities"] == [1, 2, 3, 4] and "Fashion-MNIST" in q2["eval_set"]
    bpps = [rows[f"fm-q{q}"]["bpp"] for q in (1, 2, 3, 4)]
    assert bpps == sorted(bpps) and 20 < q2["psnr"] < 40
    table = invoke(runner, "models", "photoh-*")
    ok(table)
    assert "2 (0-3)" in table.stdout and "photoh-q2 *" not in table.stdout and "BSDS500" in table.stdout


def _target(runner, image_folder, out, *flags, model="fm-q1"):
    r = invoke(runner, "compress", image_folder, out, "-m", model, "--json", *flags)
    ok(r)
    return json.loads(r.stdout)


def _point(runner, image_folder, out, model, *flags):
    """bpp and PSNR of one plain compress (the job's figures, as targeting measures them)."""
    r = invoke(runner, "compress", image_folder, out, "-m", model, "--verify", "--json", *flags)
    ok(r)
    s = json.loads(r.stdout)
    return s["bpp"], s["psnr"]


def test_target_psnr_picks_the_lowest_quality_that_meets_it(runner, tmp_path, image_folder):
    probe = _target(runner, image_folder, tmp_path / "p.npy", "--target-psnr", "99")  # unreachable: the highest
    assert probe["quality"] == 4 and probe["target"]["met"] is False and probe["target"]["missed"] == ["psnr"]
    tried = [t["quality"] for t in probe["target"]["tried"]]
    assert tried == sorted(tried) and 4 in tried and len(tried) < 4  # a bisection, not every quality
    (b2, p2), (b3, p3) = (_point(runner, image_folder, tmp_path / f"q{q}.npy", f"fm-q{q}") for q in (2, 3))
    want = (p2 + p3) / 2  # met by q3, not by q2
    s = _target(runner, image_folder, tmp_path / "t.npy", "--target-psnr", f"{want:.3f}")
    assert s["quality"] == 3 and s["model"] == "fm-q3" and s["target"]["met"] and s["psnr"] >= want
    assert (tmp_path / "t.npy").read_bytes() == (tmp_path / "q3.npy").read_bytes()  # deterministic, same bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "p.npy", "q2.npy", "q3.npy", "t.npy"]
    cap = (b2 + b3) / 2
    m = _target(runner, image_folder, tmp_path / "m.npy", "--max-bpp", f"{cap:.4f}")
    assert m["quality"] == 2 and m["bpp"] <= cap and m["target"]["met"]
    both = _target(runner, image_folder, tmp_path / "b.npy", "--target-psnr", f"{want:.3f}", "--max-bpp", f"{cap:.4f}")
    assert both["quality"] == 2 and both["target"]["missed"] == ["psnr"]  # q3 meets the PSNR but not the cap
    low = _target(runner, image_folder, tmp_path / "l.npy", "--max-bpp", "0.001")
    assert low["quality"] == 1 and low["target"]["missed"] == ["max_bpp"]
    words = invoke(runner, "compress", image_folder, tmp_path / "w.npy", "-m", "fm-q1", "--target-psnr", "99")
    assert "missed (psnr)" in words.stdout and "q4" in words.stdout


def test_targets_search_a_variable_rate_models_whole_quality_scale(runner, tmp_path, image_folder):
    flags = ("--gray",)
    (_, p40), (_, p41) = (_point(runner, image_folder, tmp_path / f"q{q}.npy", "photov", "-q", str(q), *flags)
                          for q in (40, 41))
    assert p41 > p40
    s = _target(runner, image_folder, tmp_path / "t.npy", "--target-psnr", f"{(p40 + p41) / 2:.4f}", *flags,
                model="photov")
    assert s["quality"] == 41 and s["target"]["met"] and len(s["target"]["tried"]) <= 8  # about log2(101) passes
    assert (tmp_path / "t.npy").read_bytes() == (tmp_path / "q41.npy").read_bytes()


def test_targets_are_refused_where_they_cannot_apply(runner, tiny_model, tmp_path, image_folder):
    out = tmp_path / "a.npy"
    one_line_error(invoke(runner, "compress", image_folder, out, "-m", tiny_model, "--target-psnr", "30"), 2,
                   "shipped family")
    one_line_error(invoke(runner, "compress", image_folder, out, "-m", "fm-q1", "-q", "2", "--max-bpp", "1"), 2)
    one_line_error(invoke(runner, "compress", image_folder, out, "-m", "fm-q1", "--shard", "1/2", "--max-bpp", "1"),
                   2, "merged")
    assert not out.exists()



def test_a_fractional_quality_drives_a_variable_rate_model(runner, tmp_path, image_folder):
    for q in ("62", "62.5"):
        ok(invoke(runner, "compress", image_folder, tmp_path / f"{q}.npy", "-m", "photov", "-q", q, "--gray"))
    a, b = ((tmp_path / f"{q}.npy").read_bytes() for q in ("62", "62.5"))
    assert a != b


def test_a_family_name_with_a_quality_picks_that_variant(runner, tmp_path, image_folder):
    ok(invoke(runner, "compress", image_folder, tmp_path / "a.npy", "-m", "photoh", "-q", "1", "--gray"))
    assert "photoh-q1" in invoke(runner, "info", tmp_path / "a.npy").stdout


@pytest.mark.parametrize("args, names", [
    (("-m", "photoh", "-q", "2.5"), "2.5"),
    (("-q", "nan"), "nan"),
    (("-m", ""), "model"),
    (("-m", "  "), "model"),
])
def test_bad_model_or_quality_values_are_one_line_errors(runner, tmp_path, image_folder, args, names):
    one_line_error(invoke(runner, "compress", image_folder, tmp_path / "a.npy", *args), None, names)
    assert not (tmp_path / "a.npy").exists()


def test_without_a_model_q_is_the_default_photov_quality_0_to_100(runner, tmp_path):
    """``-q 40`` alone codes with photov at quality 40, the bytes of ``-m photov -q 40``; higher -q, more bytes."""
    g = gray(40, 48, 9)
    save(Image.fromarray(np.dstack([g, g[::-1], np.roll(g, 7, axis=1)])), tmp_path / "in" / "a.png")
    sizes = {}
    for q in ("3", "40", "90"):
        ok(invoke(runner, "compress", tmp_path / "in", tmp_path / f"q{q}.npy", "-q", q, "--quiet"))
        info = json.loads(invoke(runner, "info", tmp_path / f"q{q}.npy", "--json").stdout)
        assert (info["variant"], info["quality"]) == ("photov", float(q))
        sizes[q] = (tmp_path / f"q{q}.npy").stat().st_size
    assert sizes["3"] < sizes["40"] < sizes["90"]
    ok(invoke(runner, "compress", tmp_path / "in", tmp_path / "m.npy", "-m", "photov", "-q", "40", "--quiet"))
    assert (tmp_path / "m.npy").read_bytes() == (tmp_path / "q40.npy").read_bytes()
