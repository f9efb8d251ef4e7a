"""``convae eval --data DIR`` measures what compress and decompress give: the same bytes, bpp and PSNR."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.codec_util import invoke, ok


def _rgb_folder(folder, n=3):
    folder.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:56]
    for i in range(n):
        base = np.stack([np.sin(xx / (5 + i)) , np.cos(yy / 7), np.sin((xx + yy) / 9)], -1) * 90 + 128
        Image.fromarray(np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.mark.parametrize(("model", "quality", "mode"), [("photov", "40", "RGB"), ("photoh-q2", None, "L"),
                                                         ("fm-q3", "2", "L")])
def test_eval_agrees_with_compress_to_the_last_digit(runner, tmp_path, model, quality, mode):
    folder = _rgb_folder(tmp_path / "in")
    if mode == "L":
        for p in folder.iterdir():
            Image.open(p).convert("L").save(p)
    q = ["-q", quality] if quality else []
    enc = invoke(runner, "compress", folder, tmp_path / "o.npy", "-m", model, *q, "--verify", "--json")
    ok(enc)
    summary = json.loads(enc.stdout.splitlines()[-1])
    ev = invoke(runner, "eval", "--data", folder, "-m", model, *q, "--json")
    ok(ev)
    result = json.loads(ev.stdout)
    assert result["bytes"] == (tmp_path / "o.npy").stat().st_size
    assert (result["bpp"], result["psnr"]) == (summary["bpp"], summary["psnr"]), (result, summary)
    assert result["images"] == 3
