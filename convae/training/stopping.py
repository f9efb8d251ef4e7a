"""When a run ends: a time budget (``--time``), and validation that stopped improving.

Validation that fails to improve on its best by ``min_delta`` (relative) ``patience`` times in a row
first divides the learning rate by 10 (``drops`` times), then ends the run. The state is plain
JSON, so a resumed run continues the count; the best weights are kept in memory and restored at
the end (a resumed run starts its best from the weights it resumed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

CHECKS = 40  # validations over a time budget at most: patience 3 then spans >= 7.5 % of the budget


@dataclass
class StopRule:
    """``seconds``: the training budget (None: no limit); ``patience``: validations (None: never stop early)."""

    seconds: float | None = None
    patience: int | None = None
    min_delta: float = 0.0005
    drops: int = 1

    def as_dict(self) -> dict[str, Any]:
        """For the weights' metadata."""
        return {"seconds": self.seconds, "patience": self.patience, "min_delta": self.min_delta, "drops": self.drops}


@dataclass
class Tracker:
    """Follows a run's validation against its ``StopRule``; ``state`` goes into the checkpoint."""

    rule: StopRule
    state: dict[str, Any] = field(default_factory=lambda: {"best": None, "bad": 0, "drops": 0, "reason": None})
    best_weights: dict[str, torch.Tensor] | None = None

    def out_of_time(self, seconds: float) -> bool:
        """True (and the reason recorded) once ``seconds`` of training reach the budget."""
        if self.rule.seconds is not None and seconds >= self.rule.seconds:
            self.state["reason"] = "time limit"
        return self.state["reason"] is not None

    def due(self, seconds: float) -> bool:
        """Validate now? Yes unless the last validation was recent: validating takes at most ~1/4 of the time,
        and with a budget at most ``CHECKS`` validations are made, so patience spans a fair share of it."""
        spacing = max(3 * self.state.get("val_cost", 0.0), (self.rule.seconds or 0.0) / CHECKS)
        return "val_at" not in self.state or seconds - self.state["val_at"] >= spacing

    def validated(self, seconds: float, cost: float) -> None:
        """Note a validation at ``seconds`` of training that took ``cost`` seconds."""
        self.state.update(val_at=seconds, val_cost=cost)

    def observe(self, loss: float, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                record: dict[str, Any]) -> bool:
        """Record one validation loss (of history row ``record``); True when the run should stop (a plateau)."""
        best = self.state["best"]
        if best is None or loss < best * (1 - self.rule.min_delta):
            self.state.update(best=loss, bad=0, best_epoch=record["epoch"], best_val=record.get("val"))
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        self.state["bad"] += 1
        if self.rule.patience is None or self.state["bad"] < self.rule.patience:
            return False
        if self.state["drops"] < self.rule.drops:
            self.state.update(drops=self.state["drops"] + 1, bad=0)
            for group in optimizer.param_groups:
                group["lr"] /= 10
            return False
        self.state["reason"] = "validation stopped improving"
        return True

    def restore_best(self, model: torch.nn.Module) -> bool:
        """Load the best validated weights into ``model``; False when there are none."""
        if self.best_weights is None:
            return False
        model.load_state_dict(self.best_weights)
        return True
