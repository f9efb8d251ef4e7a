"""Training recipes by name: the blog's original settings and convae's faster default."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from convae.errors import UsageError


@dataclass(frozen=True)
class Recipe:
    """Adam and schedule settings; batch size, learning rate and epochs can be overridden from the command line."""

    name: str
    batch_size: int
    lr: float  # the peak of a one-cycle schedule
    epochs: int
    schedule: str  # "constant" or "onecycle" (25% warm-up, cosine annealing, Adam betas held fixed)
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    clip_norm: float | None = None  # the gradients' total norm is clipped to this (None: never)

    def __post_init__(self) -> None:
        """Every recipe, named or overridden, is checked once, here."""
        if self.epochs < 1:
            raise UsageError(f"--epochs {self.epochs}: must be at least 1")
        if self.batch_size < 1 or not self.lr > 0:
            raise UsageError("--batch-size and --lr must be positive")

    def override(self, **changes: object) -> Recipe:
        """A copy with the given non-None fields replaced."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict:
        """Plain dict (for metadata)."""
        return asdict(self)


RECIPES = {
    # The blog post: Adam 1e-3, batch 20, MSE, 50 epochs, constant learning rate.
    "blog": Recipe("blog", batch_size=20, lr=1e-3, epochs=50, schedule="constant"),
    # Batches of 256 and a one-cycle schedule peaking at 4e-2; Adam's second-moment average over ~10 steps
    # (beta2 0.9) keeps such high rates stable. Reaches the blog's 50-epoch test MSE in 5 epochs (docs/PERFORMANCE.md).
    "fast": Recipe("fast", batch_size=256, lr=4e-2, epochs=5, schedule="onecycle", betas=(0.9, 0.9)),
}


def get_recipe(name: str, **overrides: object) -> Recipe:
    """The recipe called ``name``, with the given non-None fields replaced."""
    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    return RECIPES[name].override(**overrides)


def steps_per_epoch(n: int, batch_size: int, world: int) -> int:
    """Optimiser steps in one epoch of ``n`` images on ``world`` processes."""
    return math.ceil(math.ceil(n / world) / (batch_size // world))


ONECYCLE_DIV = 25  # a one-cycle schedule starts at its peak / 25 (OneCycleLR's div_factor)


def scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, n: int, world: int) -> Any:
    """The one-cycle schedule over the whole run, or None (a constant rate).

    A one-cycle run under 8 steps is too short to warm up: it keeps the schedule's starting rate
    (peak / 25), never the peak, which from scratch diverges (issue 23: train MSE 107 at 4e-2).
    """
    steps = steps_per_epoch(n, recipe.batch_size, world)
    if recipe.schedule != "onecycle":
        return None
    if recipe.epochs * steps < 8:
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr / ONECYCLE_DIV
        return None
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, epochs=recipe.epochs, steps_per_epoch=steps,
                                               pct_start=0.25, cycle_momentum=False, div_factor=ONECYCLE_DIV)
