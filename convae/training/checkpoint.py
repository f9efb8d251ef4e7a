"""Resumable training checkpoints: model + Adam state as safetensors, the rest as JSON metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from convae.atomic import write_bytes
from convae.errors import WeightsError
from convae.weightfile import read_raw


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, state: dict[str, Any]) -> None:
    """Atomically write everything needed to continue training exactly."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tensors["rng.torch"] = torch.get_rng_state()  # e.g. quantisation noise continues identically
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in opt["state"].items():
        for name, value in pstate.items():
            if torch.is_tensor(value) and value.dim() > 0:
                tensors[f"optim.{pid}.{name}"] = value.contiguous().cpu()
            else:
                scalars.setdefault(str(pid), {})[name] = float(value)
    meta = {
        "format": "convae-checkpoint",
        "state": json.dumps(state),
        "param_groups": json.dumps(opt["param_groups"]),
        "optim_scalars": json.dumps(scalars),
        "scheduler": json.dumps(scheduler.state_dict() if scheduler else None),
    }
    write_bytes(path, save(tensors, metadata=meta))


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any) -> dict[str, Any]:
    """Restore model, optimiser and scheduler from ``path``; returns the saved training state."""
    tensors, meta, _ = read_raw(path)
    if meta.get("format") != "convae-checkpoint":
        raise WeightsError(f"{path} is not a convae training checkpoint")
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        scalars = json.loads(meta["optim_scalars"])
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                state.setdefault(int(pid), {})[name] = value
        for pid, values in scalars.items():
            for name, v in values.items():
                state.setdefault(int(pid), {})[name] = torch.tensor(v)
        optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
        torch.set_rng_state(tensors["rng.torch"])
        sched = json.loads(meta["scheduler"])
        if scheduler is not None and sched is not None:
            scheduler.load_state_dict(sched)
        return json.loads(meta["state"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path}: checkpoint does not fit this model/recipe ({str(exc).splitlines()[0]})") from exc
