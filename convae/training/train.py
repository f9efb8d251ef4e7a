"""The training loop: seeded, resumable, single process or DistributedDataParallel (torchrun).

Each epoch draws its order from ``DistributedSampler`` (one replica when not distributed), so a
run on N processes with per-rank batch B sees the same global batches as one process with N*B.
Only rank 0 writes checkpoints, history and progress.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler

from convae import __version__
from convae.atomic import check_writable, write_bytes
from convae.data import Dataset, ImageSet
from convae.errors import Interrupted, TrainingError, UsageError
from convae.evaluation.plots import pyplot, save_figure
from convae.models.base import Autoencoder
from convae.training.checkpoint import load_checkpoint, save_checkpoint
from convae.training.distributed import local_processes, peer_failed
from convae.training.recipes import Recipe
from convae.weightfile import save_weights

EpochCallback = Callable[[dict[str, Any]], None]
StepCallback = Callable[[int, float], None]


@dataclass
class TrainResult:
    """The per-epoch history and the saved weights' sha256 (empty on ranks other than 0)."""

    history: list[dict[str, Any]]
    sha256: str


def checkpoint_path(out: Path) -> Path:
    """The per-epoch checkpoint that belongs to ``out``."""
    return out.with_name(out.stem + ".ckpt.safetensors")


def history_path(out: Path) -> Path:
    """The loss history (JSON) that belongs to ``out``."""
    return out.with_name(out.stem + ".history.json")


def curve_path(out: Path) -> Path:
    """The loss-curve PNG that belongs to ``out``."""
    return out.with_name(out.stem + ".loss.png")


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _sampler(n: int, seed: int, rank: int, world: int) -> DistributedSampler:
    return DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed)


def mean_mse(model: Autoencoder, images: ImageSet, batch_size: int = 1000, crop: int | None = None) -> float:
    """True mean squared error over a whole image set (float latents, no quantisation).

    With several training processes each evaluates every N-th batch and the sums are combined.
    """
    return _global_mean(*_squared_error_sums(model, images, batch_size, crop))


@torch.inference_mode()
def _squared_error_sums(model: Autoencoder, images: ImageSet, batch_size: int, crop: int | None) -> tuple[float, int]:
    model.eval()
    device = next(model.parameters()).device
    rank, world = _rank_world()
    total, count = 0.0, 0
    gen = torch.Generator()
    for start in range(rank * batch_size, len(images), world * batch_size):
        idx = torch.arange(start, min(start + batch_size, len(images)))
        gen.manual_seed(start)  # the same crops however many processes share the work
        x = images.batch(idx, crop, gen).to(device).contiguous(memory_format=torch.channels_last)
        total += float(((model(x)[0] - x) ** 2).flatten(1).mean(1).sum())
        count += len(idx)
    return total, count


def train(
    model: Autoencoder,
    data: Dataset,
    out: Path,
    recipe: Recipe,
    seed: int = 0,
    crop: int | None = None,
    resume: bool = False,
    force: bool = False,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
    extra_metadata: dict[str, Any] | None = None,
    device: str = "cpu",
) -> TrainResult:
    """Train ``model`` on ``data`` with ``recipe``; write weights, history and loss curve beside ``out``."""
    rank, world = _rank_world()
    ckpt = checkpoint_path(out)
    _check_inputs(model, data, out, recipe, crop, resume, force)
    torch.manual_seed(seed)
    net = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
    ddp = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net  # every rank starts from rank 0's
    scheduler = _scheduler(optimizer, recipe, len(data.train), world)
    state: dict[str, Any] = {"epoch": 0, "history": [], "seconds": 0.0}
    if resume:
        state = _resume(ckpt, net, optimizer, scheduler)
    try:
        state = _epochs(net, ddp, data, optimizer, scheduler, recipe, state, seed, crop, ckpt, on_step, on_epoch)
    except KeyboardInterrupt:
        where = f"{ckpt} holds epoch {_saved_epoch(ckpt)}" if ckpt.exists() else "no epoch finished"
        raise Interrupted(f"interrupted; {where}; continue with --resume") from None
    except RuntimeError as exc:
        if world == 1:
            raise
        first = re.sub(r"^\[[^\]]*\]\s*", "", (str(exc).strip().splitlines() or [type(exc).__name__])[0])
        raise peer_failed(rank, first) from None
    del ddp  # DDP's reducer holds the process group: destroy_process_group below frees it only once this has gone
    threads = torch.get_num_threads()
    if world > 1:
        _leave_process_group(rank, device, threads)
    try:
        return _finish(net, data, out, recipe, seed, crop, state, extra_metadata or {}, rank, world)
    finally:
        torch.set_num_threads(threads)


def _check_inputs(model: Autoencoder, data: Dataset, out: Path, recipe: Recipe, crop: int | None, resume: bool,
                  force: bool) -> None:
    """Refuse, before any work, what would fail later: a missing checkpoint, sizes, outputs in the way, the batch."""
    rank, world = _rank_world()
    ckpt = checkpoint_path(out)
    if resume and not ckpt.is_file():
        shared = f" on process {rank}'s machine (multi-node --resume needs a shared file system)" if rank else ""
        raise UsageError(f"--resume: no checkpoint {ckpt} to resume from{shared}")
    _check_size(model, data, crop)
    if rank == 0:
        for path in (out, history_path(out), curve_path(out)):
            check_writable(path, force or resume)
        if not resume and ckpt.exists() and not force:
            raise UsageError(f"{ckpt} exists from an earlier run; pass --resume to continue it or --force")
    if recipe.batch_size % world:
        raise UsageError(f"--batch-size {recipe.batch_size} must divide by the {world} processes")


def _steps_per_epoch(n: int, batch_size: int, world: int) -> int:
    return math.ceil(math.ceil(n / world) / (batch_size // world))


def _scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, n: int, world: int) -> Any:
    """The one-cycle schedule over the whole run, or None (a constant rate; also for runs under 8 steps)."""
    steps = _steps_per_epoch(n, recipe.batch_size, world)
    if recipe.schedule != "onecycle" or recipe.epochs * steps < 8:
        return None
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, epochs=recipe.epochs, steps_per_epoch=steps,
                                               pct_start=0.25, cycle_momentum=False)


def _resume(ckpt: Path, net: Autoencoder, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
    """Load the checkpoint into model, optimiser and schedule; the schedule's length must not change."""
    total = scheduler.total_steps if scheduler is not None else None
    state = load_checkpoint(ckpt, net, optimizer, scheduler)
    if scheduler is not None and scheduler.total_steps != total:
        raise UsageError(f"--resume: {ckpt} was made with another --epochs or --batch-size, and the one-cycle"
                         " schedule cannot change length; resume with the original settings")
    return state


def _leave_process_group(rank: int, device: str, threads: int) -> None:
    """Free the process group after the last collective, joining gloo's threads (alive at exit, they can abort it).

    Rank 0 then calibrates alone; on the CPU it takes the threads of this machine's finished processes too.
    """
    dist.destroy_process_group()
    if rank == 0 and device == "cpu":
        torch.set_num_threads(max(threads, min(threads * local_processes(), os.cpu_count() or 1)))


def _check_size(model: Autoencoder, data: Dataset, crop: int | None) -> None:
    """Training images (or crops) must tile into the model's stride; say what to pass instead."""
    stride = model.stride
    if crop is not None:
        if crop < 1 or crop % stride:
            raise UsageError(f"--crop {crop}: must be a positive multiple of {model.variant}'s stride {stride}")
        return
    if data.train.stacked and any(v % stride for v in data.train.images.shape[-2:]):
        h, w = data.train.images.shape[-2:]
        raise UsageError(f"the training images are {w}x{h}, not multiples of {model.variant}'s stride {stride}; "
                         f"pass --crop N with N a multiple of {stride}")


def _saved_epoch(ckpt: Path) -> int:
    from convae.weightfile import read_raw

    return json.loads(read_raw(ckpt)[1]["state"])["epoch"]


def _epochs(net: Autoencoder, ddp: torch.nn.Module, data: Dataset, optimizer: torch.optim.Optimizer, scheduler: Any,
            recipe: Recipe, state: dict[str, Any], seed: int, crop: int | None, ckpt: Path,
            on_step: StepCallback | None, on_epoch: EpochCallback | None) -> dict[str, Any]:
    rank, world = _rank_world()
    device = next(net.parameters()).device
    local_batch = recipe.batch_size // world
    sampler = _sampler(len(data.train), seed, rank, world)
    gen = torch.Generator()
    for epoch in range(state["epoch"], recipe.epochs):
        net.train()
        sampler.set_epoch(epoch)
        gen.manual_seed(seed * 100003 + epoch * 1009 + rank)
        order = torch.tensor(list(sampler))
        t0 = time.perf_counter()
        sums: dict[str, float] = {"mse": 0.0}  # per-image sums of the loss terms
        seen = 0
        for step in range(0, len(order), local_batch):
            idx = order[step : step + local_batch]
            x = data.train.batch(idx, crop, gen).to(device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
            loss, terms = net.criterion(x, ddp(x))
            if not math.isfinite(loss.item()):
                where = f"epoch {epoch + 1}, step {step // local_batch + 1}"
                last = f"last good checkpoint: {ckpt}" if ckpt.exists() else "no checkpoint yet"
                raise TrainingError(f"loss became {loss.item()} at {where}; {last}; try a lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v * len(idx)
            seen += len(idx)
            if on_step and rank == 0:
                on_step(len(idx) * world, sums["mse"] / seen)
        seconds = time.perf_counter() - t0
        record = {
            "epoch": epoch + 1,
            "train_mse": _global_mean(sums["mse"], seen),
            "test_mse": mean_mse(net, data.test, crop=crop) if data.test is not None else None,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(seconds, 3),
            "images_per_s": round(seen * world / seconds, 1),
            **{k: _global_mean(v, seen) for k, v in sums.items() if k != "mse"},  # epoch means (e.g. bpp)
        }
        state = {"epoch": epoch + 1, "history": [*state["history"], record], "seconds": state["seconds"] + seconds}
        if rank == 0:
            save_checkpoint(ckpt, net, optimizer, scheduler, state)
            if on_epoch:
                on_epoch(record)
    return state


def _global_mean(total: float, count: int) -> float:
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor([total, float(count)], dtype=torch.float64)
        dist.all_reduce(t)
        total, count = float(t[0]), int(t[1])
    return total / max(count, 1)


def _finish(net: Autoencoder, data: Dataset, out: Path, recipe: Recipe, seed: int, crop: int | None,
            state: dict[str, Any], extra: dict[str, Any], rank: int, world: int) -> TrainResult:
    from convae.training.calibrate import calibrate

    net = net.to("cpu").eval()  # calibrated and saved on the CPU (channels_last keeps it fast)
    if rank == 0:  # only rank 0 saves; the others hold the same parameters
        calibrate(net, data.train, crop)
    history = state["history"]
    last = history[-1]
    meta = {
        "dataset": data.spec,
        "dataset_info": data.info,
        "epochs": last["epoch"],
        "recipe": recipe.as_dict(),
        "seed": seed,
        "crop": crop,
        "processes": world,
        "final_train_mse": last["train_mse"],
        "final_test_mse": last["test_mse"],
        "train_seconds": round(state["seconds"], 1),
        **extra,
    }
    sha = ""
    if rank == 0:
        sha = save_weights(net, out, meta)
        doc = {"version": __version__, "history": history}
        write_bytes(history_path(out), (json.dumps(doc, indent=1) + "\n").encode())
        plot_history(history, curve_path(out), f"{net.variant} on {data.spec}")
    return TrainResult(history, sha)


def plot_history(history: list[dict[str, Any]], path: Path, title: str) -> None:
    """Loss-curve PNG: train and test MSE per epoch (log scale)."""
    fig, ax = pyplot().subplots(figsize=(6, 4), dpi=100)
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_mse"] for h in history], marker="o", label="train MSE")
    if history[0].get("test_mse") is not None:
        ax.plot(epochs, [h["test_mse"] for h in history], marker="s", label="test MSE")
    ax.set(xlabel="epoch", ylabel="mean squared error", yscale="log", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
