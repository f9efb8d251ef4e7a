"""Training on 2 CPU processes (DDP over gloo): ranks agree, match one process, resume, fail fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from convae.cli.app import app
from convae.registry import create_model
from safetensors import safe_open
from safetensors.torch import load_file

from convae.data import load_dataset
from convae.training.recipes import RECIPES
from convae.training.train import history_path, train
from convae.weightfile import read_weights

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")

WORKER = Path(__file__).with_name("dist_worker.py")
ARGS = ["--model", "seed", "--batch-size", "32", "--threads", "1", "--device", "cpu"]


def _run(cmd: list[str], timeout: float = 180, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    return proc, time.perf_counter() - start


def _torchrun(args: list[str], **env: str) -> tuple[subprocess.CompletedProcess, float]:
    """2 local processes of tests/dist_worker.py (the CLI plus test hooks) under torchrun."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(WORKER), "train"]
    return _run([*cmd, *args], **env)


def _convae(args: list[str], **env: str) -> tuple[subprocess.CompletedProcess, float]:
    return _run([sys.executable, "-m", "convae", "train", *args], **env)


def _params(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(path).items() if not k.startswith("quantizer.")}


def test_two_ranks_end_identical_loss_falls_and_eval_loads(train_folder: Path, tmp_path: Path, runner):
    out, dump = tmp_path / "run" / "m.safetensors", tmp_path / "dump"
    out.parent.mkdir()
    dump.mkdir()
    proc, _ = _torchrun(["--data", str(train_folder), "--out", str(out), "--epochs", "2", *ARGS],
                        CONVAE_TEST_DUMP=str(dump))
    assert proc.returncode == 0, proc.stderr[-2000:]
    r0, r1 = load_file(dump / "rank0.safetensors"), load_file(dump / "rank1.safetensors")
    assert r0.keys() == r1.keys() and len(r0) == 8
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    for rank in (0, 1):  # the process group was freed and its threads joined: none is left to abort the exit
        with safe_open(dump / f"rank{rank}.safetensors", "pt") as f:
            assert "gloo" not in f.metadata()["threads"], f.metadata()["threads"]
    # only rank 0 reports; it states the global batch split across processes
    assert proc.stderr.count("saved ") == 1 and proc.stderr.count("epoch 1/2") == 1
    assert "global batch 32 = 2 process(es) x 16" in proc.stderr
    history = json.loads(history_path(out).read_text())["history"]
    assert history[1]["train_mse"] < history[0]["train_mse"]
    _, meta, _ = read_weights(out)
    assert json.loads(meta["processes"]) == 2
    assert all(torch.equal(v, r0[k]) for k, v in _params(out).items())
    result = runner.invoke(app, ["eval", "--model", str(out), "--data", str(train_folder), "--json"])
    assert result.exit_code == 0, result.output
    assert 0 < json.loads(result.stdout)["mse"] < history[0]["train_mse"]


def test_dead_rank_stops_the_other_then_resume_matches_one_process(train_folder: Path, tmp_path: Path):
    one, two = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    torch.manual_seed(0)  # as the CLI does before building the model
    recipe = RECIPES["fast"].override(epochs=2, batch_size=32)
    train(create_model("seed"), load_dataset(str(train_folder), 1), one, recipe)
    # 2 processes x 16 = the same global batch of 32 (8 steps per epoch); rank 1 dies in epoch 2 ...
    args = ["--data", str(train_folder), "--out", str(two), "--epochs", "2", *ARGS]
    proc, seconds = _torchrun(args, CONVAE_TEST_FAIL="1:exit:12")
    assert proc.returncode != 0 and not two.exists()
    assert "exitcode  : 7" in proc.stderr  # torchrun names rank 1 as the root cause and stops rank 0
    assert seconds < 90
    # ... and `--nproc 2 --resume` continues from the epoch-1 checkpoint
    proc, _ = _convae(["--nproc", "2", *args, "--resume"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = _params(one), _params(two)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
    h1 = json.loads(history_path(one).read_text())["history"]
    h2 = json.loads(history_path(two).read_text())["history"]
    assert [h["epoch"] for h in h2] == [1, 2]
    assert h2[1]["train_mse"] == pytest.approx(h1[1]["train_mse"], rel=1e-4)


def test_silent_rank_times_out_with_one_line_error(train_folder: Path, tmp_path: Path):
    proc, seconds = _torchrun(["--data", str(train_folder), "--out", str(tmp_path / "m.safetensors"), "--epochs", "3",
                               *ARGS], CONVAE_TEST_FAIL="1:hang:3", CONVAE_DIST_TIMEOUT="5")
    assert proc.returncode != 0
    assert "convae: error: process 0: another training process failed or stopped answering" in proc.stderr
    assert "[rank0]: Traceback" not in proc.stderr
    assert seconds < 90


def test_launcher_reports_rank_zero_error_without_traceback(train_folder: Path, tmp_path: Path):
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"keep")
    proc, seconds = _convae(["--nproc", "2", "--data", str(train_folder), "--out", str(out), "--epochs", "1", *ARGS])
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "already exists" in proc.stderr and "training process 0 of 2 failed (exit code 1)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert out.read_bytes() == b"keep"
    assert seconds < 90


def test_launch_args_drop_nproc_and_keep_the_rest():
    from convae.training.distributed import launch_args

    for argv in (["train", "--nproc", "3", "--data", "d"], ["train", "--nproc=3", "--data", "d"]):
        assert launch_args(argv, 3) == ["--standalone", "--nproc-per-node=3", "-m", "convae", "train", "--data", "d"]
