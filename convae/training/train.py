"""The training loop: seeded, resumable, single process or DistributedDataParallel (torchrun).

Each epoch draws its order from ``DistributedSampler`` (one replica when not distributed), so a
run on N processes with per-rank batch B sees the same global batches as one process with N*B.
Only rank 0 writes checkpoints, history and progress.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data.distributed import DistributedSampler

from convae import __version__
from convae.atomic import write_bytes
from convae.data import Crop, Dataset, ImageSet
from convae.errors import Interrupted, TrainingError, UsageError
from convae.models.base import Autoencoder
from convae.training.checkpoint import load_checkpoint, save_checkpoint
from convae.training.collective import agree, global_mean, leave_process_group, rank_world
from convae.training.distributed import peer_failed
from convae.training.outputs import check_outputs, checkpoint_path, curve_path, history_path
from convae.training.plot import plot_history
from convae.training.recipes import Recipe
from convae.training.recipes import scheduler as scheduler_for
from convae.training.stopping import StopRule, Tracker
from convae.training.validate import validate
from convae.weightfile import save_weights

EpochCallback = Callable[[dict[str, Any]], None]
StepCallback = Callable[[int, float], None]


@dataclass
class TrainResult:
    """The per-epoch history and the saved weights' sha256 (empty on ranks other than 0)."""

    history: list[dict[str, Any]]
    sha256: str
    metadata: dict[str, Any] = field(default_factory=dict)  # what the weights record (before JSON encoding)


def _sampler(n: int, seed: int, rank: int, world: int) -> DistributedSampler:
    return DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed)


def mean_mse(model: Autoencoder, images: ImageSet, batch_size: int = 1000, crop: Crop = None) -> float:
    """True mean squared error over a whole image set (float latents, no quantisation).

    With several training processes each evaluates every N-th batch and the sums are combined.
    """
    return global_mean(*_squared_error_sums(model, images, batch_size, crop))


@torch.inference_mode()
def _squared_error_sums(model: Autoencoder, images: ImageSet, batch_size: int, crop: Crop) -> tuple[float, int]:
    model.eval()
    device = next(model.parameters()).device
    rank, world = rank_world()
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
    crop: Crop = None,
    resume: bool = False,
    force: bool = False,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
    extra_metadata: dict[str, Any] | None = None,
    device: str = "cpu",
    stop: StopRule | None = None,
    save: bool = True,
) -> TrainResult:
    """Train ``model`` on ``data`` with ``recipe``; write weights, history and loss curve beside ``out``.

    With ``stop``, ``data.test`` is validated (bpp and PSNR per rate) and the run ends at the rule's time
    budget or when validation stops improving, keeping the best validated weights. ``save=False`` returns
    the history only: no calibration, weights or plot (a trial whose model training goes on with).
    """
    rank, world = rank_world()
    ckpt = checkpoint_path(out)
    _check_inputs(model, data, out, recipe, crop, resume, force)
    torch.manual_seed(seed)
    net = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
    ddp = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net  # every rank starts from rank 0's
    scheduler = scheduler_for(optimizer, recipe, len(data.train), world)
    state: dict[str, Any] = {"epoch": 0, "history": [], "seconds": 0.0}
    if resume:
        state = _resume(ckpt, net, optimizer, scheduler)
    # a resumed run goes on under its new budget: why the run it continues stopped no longer holds
    tracker = Tracker(stop or StopRule(), {**(state.get("stop") or Tracker(StopRule()).state), "reason": None})
    loop = _Loop(net, ddp, data, optimizer, scheduler, recipe, seed, crop, ckpt, on_step, on_epoch, tracker,
                 validating=stop is not None and data.test is not None)
    try:
        state = _epochs(loop, state)
    except KeyboardInterrupt:
        where = f"{ckpt} holds epoch {_saved_epoch(ckpt)}" if ckpt.exists() else "no epoch finished"
        raise Interrupted(f"interrupted; {where}; continue with --resume") from None
    except RuntimeError as exc:
        if world == 1:
            raise
        first = re.sub(r"^\[[^\]]*\]\s*", "", (str(exc).strip().splitlines() or [type(exc).__name__])[0])
        raise peer_failed(rank, first) from None
    del ddp, loop  # DDP's reducer holds the process group: destroy_process_group below frees it only once gone
    threads = torch.get_num_threads()
    if world > 1:
        leave_process_group(rank, device, threads)
    stopped = {"stopped": tracker.state["reason"] or "epochs done", "best_validated": tracker.restore_best(net)}
    try:
        if not save:
            return TrainResult(state["history"], "", stopped)
        return _finish(net, data, out, recipe, seed, crop, state, {**stopped, **(extra_metadata or {})}, rank, world)
    finally:
        torch.set_num_threads(threads)


@dataclass
class _Loop:
    """What every epoch of one run uses."""

    net: Autoencoder
    ddp: torch.nn.Module
    data: Dataset
    optimizer: torch.optim.Optimizer
    scheduler: Any
    recipe: Recipe
    seed: int
    crop: Crop
    ckpt: Path
    on_step: StepCallback | None
    on_epoch: EpochCallback | None
    tracker: Tracker
    validating: bool


def _check_inputs(model: Autoencoder, data: Dataset, out: Path, recipe: Recipe, crop: Crop, resume: bool,
                  force: bool) -> None:
    """Refuse, before any work, what would fail later: a missing checkpoint, sizes, outputs in the way, the batch."""
    rank, world = rank_world()
    ckpt = checkpoint_path(out)
    if resume and not ckpt.is_file():
        shared = f" on process {rank}'s machine (multi-node --resume needs a shared file system)" if rank else ""
        raise UsageError(f"--resume: no checkpoint {ckpt} to resume from{shared}")
    _check_size(model, data, crop)
    if rank == 0:
        check_outputs(out, resume, force)
    if recipe.batch_size % world:
        raise UsageError(f"--batch-size {recipe.batch_size} must divide by the {world} processes")


def _check_size(model: Autoencoder, data: Dataset, crop: Crop) -> None:
    """Training images (or crops) must tile into the model's stride; say what to pass instead."""
    stride = model.stride
    if isinstance(crop, tuple):
        if min(crop) < 1 or any(v % stride for v in crop):
            raise UsageError(f"crop {crop[0]}x{crop[1]}: must be multiples of {model.variant}'s stride {stride}")
        return
    if crop is not None:
        if crop < 1 or crop % stride:
            raise UsageError(f"--crop {crop}: must be a positive multiple of {model.variant}'s stride {stride}")
        largest = _largest_side(data.train, stride)
        if crop > largest:  # smaller images are padded to the crop: a huge one would only fill memory
            raise UsageError(f"--crop {crop}: larger than every training image (their longest side, rounded up to "
                             f"the stride, is {largest}); use at most {largest}")
        return
    if data.train.stacked and any(v % stride for v in data.train.images.shape[-2:]):
        h, w = data.train.images.shape[-2:]
        raise UsageError(f"the training images are {w}x{h}, not multiples of {model.variant}'s stride {stride}; "
                         f"pass --crop N with N a multiple of {stride}")


def _largest_side(images: Any, stride: int) -> int:
    """The longest side of any image of an ``ImageSet``, rounded up to a multiple of ``stride``."""
    shapes = [images.images.shape[-2:]] if images.stacked else [im.shape[-2:] for im in images.images]
    side = max(max(int(h), int(w)) for h, w in shapes)
    return -(-side // stride) * stride


def _resume(ckpt: Path, net: Autoencoder, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
    """Load the checkpoint into model, optimiser and schedule; the schedule's length must not change."""
    total = scheduler.total_steps if scheduler is not None else None
    state = load_checkpoint(ckpt, net, optimizer, scheduler)
    if scheduler is not None and scheduler.total_steps != total:
        raise UsageError(f"--resume: {ckpt} was made with another --epochs or --batch-size, and the one-cycle"
                         " schedule cannot change length; resume with the original settings")
    return state


def _saved_epoch(ckpt: Path) -> int:
    from convae.weightfile import read_raw

    return json.loads(read_raw(ckpt)[1]["state"])["epoch"]


def _epochs(loop: _Loop, state: dict[str, Any]) -> dict[str, Any]:
    """Epochs until the recipe's count, the time budget or the validation plateau; a checkpoint after each."""
    rank, world = rank_world()
    sampler = _sampler(len(loop.data.train), loop.seed, rank, world)
    gen = torch.Generator()
    for epoch in range(state["epoch"], loop.recipe.epochs):
        if loop.tracker.out_of_time(state["seconds"]):
            break
        loop.net.train()
        sampler.set_epoch(epoch)
        gen.manual_seed(loop.seed * 100003 + epoch * 1009 + rank)
        t0 = time.perf_counter()
        sums, seen = _steps(loop, torch.tensor(list(sampler)), gen, epoch, t0 - state["seconds"])
        record = _record(loop, epoch, sums, seen, time.perf_counter() - t0)
        done = loop.validating and _validate(loop, record, state["seconds"] + time.perf_counter() - t0)
        seconds = time.perf_counter() - t0
        state = {"epoch": epoch + 1, "history": [*state["history"], record], "seconds": state["seconds"] + seconds,
                 "stop": loop.tracker.state}
        if rank == 0:
            save_checkpoint(loop.ckpt, loop.net, loop.optimizer, loop.scheduler, state)
            if loop.on_epoch:
                loop.on_epoch(record)
        if done or loop.tracker.out_of_time(state["seconds"]):
            break
    return state


MAX_TRAIN_MSE = 1.0  # images are in [0, 1]: a model above this mean squared error has diverged


def _steps(loop: _Loop, order: torch.Tensor, gen: torch.Generator, epoch: int,
           started: float) -> tuple[dict[str, float], int]:
    """One epoch's optimiser steps (fewer once the time budget, counted from ``started``, runs out); per-image
    sums of the loss terms."""
    rank, world = rank_world()
    device = next(loop.net.parameters()).device
    local_batch = loop.recipe.batch_size // world
    sums: dict[str, float] = {"mse": 0.0}
    seen = 0
    for step in range(0, len(order), local_batch):
        if seen and agree(loop.tracker.out_of_time(time.perf_counter() - started)):
            break
        idx = order[step : step + local_batch]
        x = loop.data.train.batch(idx, loop.crop, gen).to(device, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last)
        loss, terms = loop.net.criterion(x, loop.ddp(x))
        if not math.isfinite(loss.item()):
            _diverged(loop, f"loss became {loss.item()}", epoch, step // local_batch + 1)
        loop.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if loop.recipe.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(loop.net.parameters(), loop.recipe.clip_norm)
        loop.optimizer.step()
        if loop.scheduler is not None:
            loop.scheduler.step()
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v * len(idx)
        seen += len(idx)
        if loop.on_step and rank == 0:
            loop.on_step(len(idx) * world, sums["mse"] / seen)
    if global_mean(sums["mse"], seen) > MAX_TRAIN_MSE:
        _diverged(loop, f"training diverged: train MSE {global_mean(sums['mse'], seen):.3g} (images are in [0, 1])",
                  epoch, None)
    return sums, seen


def _diverged(loop: _Loop, what: str, epoch: int, step: int | None) -> None:
    """Raise ``TrainingError``: what went wrong, where, and the checkpoint still good (never overwritten)."""
    where = f"epoch {epoch + 1}" + (f", step {step}" if step else "")
    last = f"last good checkpoint: {loop.ckpt}" if loop.ckpt.exists() else "no checkpoint yet"
    raise TrainingError(f"{what} at {where}; {last}; try a lower --lr")


def _record(loop: _Loop, epoch: int, sums: dict[str, float], seen: int, seconds: float) -> dict[str, Any]:
    """The epoch's history row: train means, the test MSE (when not validating), rate and speed."""
    _, world = rank_world()
    test = loop.data.test if not loop.validating else None
    return {
        "epoch": epoch + 1,
        "train_mse": global_mean(sums["mse"], seen),
        "test_mse": mean_mse(loop.net, test, crop=loop.crop) if test is not None else None,
        "lr": loop.optimizer.param_groups[0]["lr"],
        "seconds": round(seconds, 3),
        "images_per_s": round(seen * world / max(seconds, 1e-9), 1),
        **{k: global_mean(v, seen) for k, v in sums.items() if k != "mse"},  # epoch means (e.g. bpp)
        **({"images": seen * world} if seen * world < len(loop.data.train) else {}),  # a partial last epoch
    }


def _validate(loop: _Loop, record: dict[str, Any], seconds: float) -> bool:
    """Validate (when due, and always once time is up) into ``record``; True when the run should stop."""
    tracker = loop.tracker
    if not (tracker.due(seconds) or tracker.out_of_time(seconds) or record["epoch"] == loop.recipe.epochs):
        return False
    t0 = time.perf_counter()
    result = validate(loop.net, loop.data.test)
    tracker.validated(seconds, time.perf_counter() - t0)
    record.update(result, test_mse=result["val_mse"])
    return tracker.observe(result["val_loss"], loop.net, loop.optimizer, record)


def _finish(net: Autoencoder, data: Dataset, out: Path, recipe: Recipe, seed: int, crop: Crop,
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
        **_validation_metadata(state.get("stop") or {}),
        **extra,
    }
    sha = ""
    if rank == 0:
        sha = save_weights(net, out, meta)
        doc = {"version": __version__, "history": history}
        write_bytes(history_path(out), (json.dumps(doc, indent=1) + "\n").encode())
        minutes = f"{state['seconds'] / 60:.1f} min"
        plot_history(history, curve_path(out), f"{out.name}: {net.variant} on {data.spec}, {last['epoch']} epochs, "
                     f"{minutes} (seed {seed})")
    return TrainResult(history, sha, meta)


def _validation_metadata(stop: dict[str, Any]) -> dict[str, Any]:
    """The best validation (epoch, bpp and PSNR per rate) for the weights' metadata; empty without one."""
    if stop.get("best_epoch") is None:
        return {}
    return {"validation": {"epoch": stop["best_epoch"], "loss": stop["best"], "points": stop.get("best_val")}}
