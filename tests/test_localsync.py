"""Gradient averaging over Unix sockets (convae.training.localsync): 3 processes agree bit for bit on the mean."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch import nn

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
WORLD = 3


def _model() -> nn.Module:
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Linear(4, 2), nn.Linear(2, 2))
    model[2].weight.requires_grad_(False)  # frozen: not exchanged
    return model.to(memory_format=torch.channels_last)


def _grad(rank: int, p: torch.Tensor, i: int) -> torch.Tensor:
    """A gradient that differs by rank and parameter, in float32 values whose sums round."""
    return torch.linspace(-1, 1, p.numel()).view(p.shape) * (rank + 1) / 7 + i / 3


def _connect(rank: int, folder: str) -> tuple[nn.Module, object]:
    from convae.training.localsync import LocalGradientSync

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=WORLD)
    torch.manual_seed(rank)  # different parameters on every rank until the broadcast
    model = _model()
    return model, LocalGradientSync.connect(model)


def _worker(rank: int, folder: str) -> None:
    model, sync = _connect(rank, folder)
    params = dict(model.named_parameters())
    out = {f"param.{k}": v.detach().contiguous() for k, v in params.items()}
    for i, (name, p) in enumerate(params.items()):
        if name != "1.bias" and p.requires_grad:  # a parameter without a gradient on every rank counts as zeros
            p.grad = _grad(rank, p, i).to(memory_format=torch.channels_last if p.dim() == 4 else torch.preserve_format)
    sync.average()
    out.update({f"grad.{k}": p.grad.contiguous() for k, p in params.items() if p.requires_grad})
    save_file(out, f"{folder}/rank{rank}.safetensors")
    sync.close()
    dist.destroy_process_group()


def test_three_processes_get_rank_zero_parameters_and_the_same_mean_gradient(tmp_path: Path):
    mp.spawn(_worker, args=(str(tmp_path),), nprocs=WORLD)
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in range(WORLD)]
    torch.manual_seed(0)
    expected = dict(_model().named_parameters())
    keys = {f"param.{k}" for k in expected} | {f"grad.{k}" for k, p in expected.items() if p.requires_grad}
    for r in ranks:
        assert set(r) == keys
        for key, value in r.items():
            assert torch.equal(value, ranks[0][key]), key  # bit for bit on every rank
    for i, (name, p) in enumerate(expected.items()):
        assert torch.equal(ranks[1][f"param.{name}"], p.detach())
        if not p.requires_grad:
            continue
        total = torch.zeros_like(p)
        if name != "1.bias":
            for r in range(WORLD):  # in rank order, as rank 0 adds them
                total = total + _grad(r, p, i)
        assert torch.equal(ranks[2][f"grad.{name}"], (total / WORLD).detach())


def _no_socket_worker(rank: int, folder: str) -> None:
    _, sync = _connect(rank, folder)
    Path(folder, f"rank{rank}").write_text(repr(sync))
    dist.destroy_process_group()


def test_every_process_falls_back_when_rank_zero_cannot_open_a_socket(tmp_path: Path, monkeypatch):
    long = tmp_path / ("t" * 120)  # longer than a Unix socket path may be
    long.mkdir()
    monkeypatch.setenv("TMPDIR", str(long))
    mp.spawn(_no_socket_worker, args=(str(tmp_path),), nprocs=WORLD)
    assert [(tmp_path / f"rank{r}").read_text() for r in range(WORLD)] == ["None"] * WORLD
    assert not list(long.iterdir())  # rank 0 removed its folder
