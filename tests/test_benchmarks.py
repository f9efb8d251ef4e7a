"""The benchmark's building blocks: peak memory of a command's processes, the Pillow baseline, the blog pipeline."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import FASHION, make_images, needs_fashion, write_pngs

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _bench_module(name: str = "run"):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_measure_reports_the_childs_own_peak_memory(tmp_path: Path):
    run = _bench_module()
    big = run.measure([sys.executable, "-c", "b = bytearray(300 << 20); print(len(b))"], dict(os.environ),
                      tmp_path / "big")
    small = run.measure([sys.executable, "-c", "print(1)"], dict(os.environ), tmp_path / "small")
    assert big["stdout"].strip() == str(300 << 20)
    assert big["peak_rss_mib"] >= 300 > small["peak_rss_mib"]  # not the runner's memory (pytest with torch loaded)
    assert big["seconds"] > 0 and big["cpu_seconds"] >= 0


def test_measure_adds_up_the_peaks_of_the_commands_child_processes(tmp_path: Path):
    run = _bench_module()
    child = "import time; b = bytearray(300 << 20); time.sleep(0.5)"  # alive for several 100 ms tree walks
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}], check=True)"
    result = run.measure([sys.executable, "-c", parent], dict(os.environ), tmp_path / "tree")
    assert result["peak_rss_mib"] >= 300  # the parent itself stays small


def test_pillow_baseline_round_trip(tmp_path: Path):
    src = tmp_path / "png"
    write_pngs(src, make_images(3))
    for fmt, suffix in (("webp", ".webp"), ("jpeg", ".jpg")):
        enc, dec = tmp_path / fmt, tmp_path / f"{fmt}-png"
        for action, a, b in (("encode", src, enc), ("decode", enc, dec)):
            out = subprocess.run([sys.executable, str(BENCH / "pillow_codec.py"), action, str(a), str(b), "--format",
                                  fmt], capture_output=True, text=True, check=True).stdout
            assert json.loads(out)["images"] == 3
        assert sorted(p.suffix for p in enc.iterdir()) == [suffix] * 3
        assert sorted(p.name for p in dec.iterdir()) == sorted(p.name for p in src.iterdir())


@needs_fashion
def test_blog_pipeline_runs_without_downloading():
    out = subprocess.run([sys.executable, str(BENCH / "blog_pipeline.py"), "--data", str(FASHION), "--steps", "3",
                          "--threads", "1"], capture_output=True, text=True, check=True).stdout
    stats = json.loads(out)
    assert stats["images"] == 60 and stats["steps"] == 3 and stats["epoch_images"] == 60000
    assert 0 < stats["train_mse"] < 1


def test_blog_network_is_seed_with_stock_layers():
    """The baseline trains the same network as convae's seed (parameters, outputs), with PyTorch's own layers."""
    import torch
    from convae.registry import create_model
    from torch import nn

    blog = _bench_module("blog_pipeline").BlogAutoencoder()
    seed = create_model("seed")
    seed_state = seed.state_dict()
    blog.load_state_dict({k: seed_state[k] for k in blog.state_dict()})  # KeyError: a parameter seed lacks
    assert sum(p.numel() for p in blog.parameters()) == sum(p.numel() for p in seed.parameters()) == 1077
    assert [type(m) for m in blog.decoder] == [nn.ConvTranspose2d, nn.ReLU, nn.ConvTranspose2d, nn.Sigmoid]
    x = torch.rand(4, 1, 28, 28)
    with torch.inference_mode():
        torch.testing.assert_close(blog(x), seed(x)[0])
