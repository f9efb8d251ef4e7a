"""Plugins: another installed distribution adds a variant through the `convae.models` entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.codec_util import read_manifest

PLUGIN_CODE = '''
from torch import nn

from convae.models.base import Autoencoder
from convae.registry import register_model


class TwoStrideAE(Autoencoder):
    """A stride-2 autoencoder from a third-party package."""

    in_channels = 1
    latent_channels = 2
    stride = 2

    def __init__(self, bits=6):
        super().__init__(bits=bits)
        self.encoder = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 2, stride=2))
        self.decoder = nn.Sequential(nn.ConvTranspose2d(2, 8, 2, stride=2), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1),
                                     nn.Sigmoid())


@register_model("plugin-ae", bits=6)
def plugin_ae(bits=6):
    """Plugin variant: stride 2, 2 latent channels, 6 bits."""
    return TwoStrideAE(bits=bits)
'''


def make_plugin(site: Path, name: str, code: str) -> Path:
    """Write an installed-looking distribution (package + dist-info with entry points) into ``site``."""
    pkg = site / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(code))
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[convae.models]\n{name} = {name}\n")
    return site


def run_convae(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "convae", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_plugin(tmp_path_factory.mktemp("site"), "convae_plugin_demo", PLUGIN_CODE)


def test_plugin_variant_is_listed_trained_and_used(plugin_site: Path, train_folder: Path, tmp_path: Path):
    listed = run_convae(["models", "plugin-*", "--json"], plugin_site, tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]  # JSON Lines: one variant a line
    assert [r["name"] for r in rows] == ["plugin-ae"]
    assert rows[0]["latent_28"] == [2, 14, 14] and rows[0]["pretrained"] is False

    weights = tmp_path / "plugin.safetensors"
    trained = run_convae(["train", "--model", "plugin-ae", "--data", str(train_folder), "--epochs", "1",
                          "--batch-size", "64", "--out", str(weights), "--quiet"], plugin_site, tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert weights.is_file()

    codes = tmp_path / "codes.npy"
    done = run_convae(["compress", str(train_folder), str(codes), "--model", str(weights), "--quiet"], plugin_site,
                      tmp_path)
    assert done.returncode == 0, done.stderr
    assert read_manifest(codes)["model"]["variant"] == "plugin-ae"
    back = run_convae(["decompress", str(codes), str(tmp_path / "recon"), "--model", str(weights), "--quiet"],
                      plugin_site, tmp_path)
    assert back.returncode == 0, back.stderr
    assert len(list((tmp_path / "recon").glob("*.png"))) == len(list(train_folder.glob("*.png")))


def test_broken_plugin_warns_and_cli_keeps_working(tmp_path: Path):
    site = make_plugin(tmp_path / "site", "convae_broken_plugin", "raise RuntimeError('boom')\n")
    result = run_convae(["models", "--json"], site, tmp_path)
    assert result.returncode == 0
    assert "seed" in [json.loads(line)["name"] for line in result.stdout.splitlines()]
    assert "convae_broken_plugin" in result.stderr and "boom" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
